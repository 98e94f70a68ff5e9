// Validation on the dev set: loss and perplexity by teacher forcing, BLEU of
// decoded translations, and the early-stopping bookkeeping around them.
#include "train/common/validation.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "decoding/search.h"
#include "train/common/progress_log.h"
#include "train/common/trainer_impl.h"

namespace quantmt::train {

absl::StatusOr<Validation> Trainer::Impl::Validate(Transformer& net, int beam) {
  const auto start = Clock::now();
  const bool was_training = net.is_training();
  net.eval();
  torch::NoGradGuard no_grad;
  Validation result;

  BatchingOptions batching;
  batching.max_tokens = options.max_tokens;
  batching.shuffle = false;
  int64_t tokens = 0;
  for (const auto& indices : MakeBatches(dev.examples, batching, 0, 0)) {
    const Batch batch = Collate(dev.examples, indices, ids).To(device);
    const auto logits = net.Forward(batch.source, batch.target_in);
    const LossSums sums =
        LabelSmoothedCrossEntropy(logits, batch.target_out, ids.pad, options.label_smoothing);
    result.loss += sums.loss.item<double>();
    result.nll += sums.nll.item<double>();
    tokens += sums.tokens;
  }
  result.loss /= std::max<int64_t>(1, tokens);
  result.nll /= std::max<int64_t>(1, tokens);

  // Decode in order of length so that a batch wastes little on padding.
  std::vector<int64_t> order(dev.sources.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
    return dev.sources[a].size() < dev.sources[b].size();
  });
  std::vector<std::string> hypotheses(dev.sources.size());
  for (size_t begin = 0; begin < order.size();) {
    std::vector<std::vector<int64_t>> sources;
    std::vector<int64_t> rows;
    for (size_t k = begin; k < order.size(); ++k) {
      const int64_t length = static_cast<int64_t>(dev.sources[order[k]].size());
      if (!rows.empty() && (static_cast<int64_t>(rows.size()) + 1) * length * beam * 2 >
                               std::max<int64_t>(options.max_tokens, 1024)) {
        break;
      }
      sources.push_back(dev.sources[order[k]]);
      rows.push_back(order[k]);
    }
    SearchOptions search;
    search.beam_size = beam;
    // Sorted: the last source is the longest. A young model may never emit
    // eos; this bound keeps its validation short.
    const int64_t longest = static_cast<int64_t>(sources.back().size());
    search.max_length =
        static_cast<int>(std::min<int64_t>(config.max_target_positions, 2 * longest + 10));
    const SearchResults results = Search(net, sources, search, device);
    for (size_t r = 0; r < rows.size(); ++r) {
      const auto& tokens_out = results[r].front().tokens;
      hypotheses[rows[r]] =
          tokenizer->Decode(std::vector<int>(tokens_out.begin(), tokens_out.end()));
    }
    begin += rows.size();
  }
  ASSIGN_OR_RETURN(result.bleu, eval::CorpusBleu(hypotheses, {dev.references}));
  if (was_training) net.train();
  result.seconds = Seconds(start);
  return result;
}

absl::StatusOr<bool> Trainer::Impl::ValidateAndTrack(double train_loss, double lr) {
  ASSIGN_OR_RETURN(Validation v, Validate(*model, /*beam=*/1));
  last_validated_step = state.step;
  const bool improved = v.bleu.score > state.best_bleu;
  if (improved) {
    state.best_bleu = v.bleu.score;
    state.best_step = state.step;
    state.bad_validations = 0;
  } else {
    ++state.bad_validations;
  }
  state.history.push_back({state.step, EpochProgress(), train_loss, v.loss, v.nll, v.bleu.score, lr,
                           state.train_seconds});
  Log(
      Format("valid | step %ld | epoch %.2f | dev loss %.3f | dev nll %.3f | ppl %.1f | BLEU %.2f "
             "(greedy) | best %.2f @ %ld | %.1fs",
             static_cast<long>(state.step), EpochProgress(), v.loss, v.nll, std::exp(v.nll),
             v.bleu.score, state.best_bleu, static_cast<long>(state.best_step), v.seconds));
  Log("valid | " + v.bleu.ToString());
  if (options.patience > 0 && state.bad_validations >= options.patience) {
    Log(absl::StrCat("early stop: no better dev BLEU for ", state.bad_validations,
                     " validations (best ", state.best_bleu, " at step ", state.best_step, ")"));
    state.stopped_early = true;
    return true;
  }
  return false;
}

}  // namespace quantmt::train
