#include "serving/replica.h"

#include <algorithm>
#include <unordered_map>

#include "absl/strings/str_cat.h"
#include "decoding/batch_decoder.h"
#include "serving/cpu_threads.h"
#include "serving/loaded_model.h"

namespace quantmt {
namespace {

TranslationResult ToResult(DecodeOutput& output, const Tokenizer* tokenizer) {
  TranslationResult result;
  for (SearchHypothesis& found : output.hypotheses) {
    Hypothesis hypothesis;
    hypothesis.token_ids.assign(found.tokens.begin(), found.tokens.end());
    if (tokenizer != nullptr) hypothesis.text = tokenizer->Decode(hypothesis.token_ids);
    hypothesis.score = found.score;
    hypothesis.log_prob = found.log_prob;
    result.hypotheses.push_back(std::move(hypothesis));
  }
  return result;
}

TokenEvent MakeEvent(int index, const std::vector<int64_t>& tokens, bool finished,
                     const Tokenizer* tokenizer) {
  TokenEvent event;
  event.sentence_index = index;
  event.token_ids.assign(tokens.begin(), tokens.end());
  if (tokenizer != nullptr) event.text = tokenizer->Decode(event.token_ids);
  event.finished = finished;
  return event;
}

}  // namespace

Replica::Replica(std::string model_name, std::shared_ptr<const LoadedModel> model,
                 RequestQueue* queue, bool continuous_batching, int intra_op_threads,
                 const BatchBudget& budget, EngineObserver* observer)
    : model_name_(std::move(model_name)),
      model_(std::move(model)),
      queue_(queue),
      continuous_batching_(continuous_batching),
      intra_op_threads_(intra_op_threads),
      budget_(budget),
      observer_(observer),
      thread_([this] { Run(); }) {}

Replica::~Replica() { Join(); }

void Replica::Join() {
  if (thread_.joinable()) thread_.join();
}

void Replica::Run() {
  if (model_->device.is_cpu()) SetIntraOpThreadsOfThisThread(intra_op_threads_);
  Transformer& transformer = *model_->transformer;
  const Tokenizer* tokenizer = model_->target_tokenizer.get();
  auto decoder = MakeBatchDecoder(transformer, model_->device, model_->cuda_graphs,
                                  budget_.max_rows, budget_.max_cache_bytes);
  std::unordered_map<int64_t, SentenceTask> running;  // by decoder id
  int64_t next_id = 0;

  // The gauges follow every change of the batch (admission, removal, a
  // step), so that a batch emptied by cancels does not linger in them.
  auto publish = [&] {
    running_sentences_.store(static_cast<int>(running.size()));
    cache_bytes_.store(decoder->cache_bytes());
  };

  // After a kernel error the batch state cannot be trusted: fail what runs
  // and start over with an empty batch.
  auto fail_running = [&](const absl::Status& status) {
    for (auto& entry : running) entry.second.request->Fail(status);
    running.clear();
    decoder = MakeBatchDecoder(transformer, model_->device, model_->cuda_graphs, budget_.max_rows,
                               budget_.max_cache_bytes);
    publish();
  };

  while (true) {
    if (abort_.load()) {
      fail_running(absl::CancelledError("the engine shut down before the request finished"));
      break;
    }
    if (continuous_batching_ || decoder->empty()) {
      const BatchShape shape{decoder->rows(), decoder->padded_source_length(),
                             decoder->max_target_length()};
      TakeResult taken = queue_->Take(shape, /*block=*/decoder->empty());
      for (auto& [task, status] : taken.dropped) task.request->Fail(status);
      if (taken.closed && decoder->empty()) break;
      if (!taken.admitted.empty()) {
        // Sorted by length: the encoder pass pads less.
        std::stable_sort(taken.admitted.begin(), taken.admitted.end(),
                         [](const SentenceTask& a, const SentenceTask& b) {
                           return a.source_length < b.source_length;
                         });
        std::vector<DecodeInput> inputs;
        const absl::Time now = absl::Now();
        int64_t longest = 0;
        for (SentenceTask& task : taken.admitted) {
          DecodeInput input;
          input.id = next_id++;
          const auto& source = task.request->sources()[task.index];
          input.source.assign(source.begin(), source.end());
          input.options = ToSearchOptions(task.request->options(), transformer.config());
          longest = std::max(longest, task.source_length);
          task.request->MarkStarted(now);
          inputs.push_back(std::move(input));
        }
        try {
          decoder->Add(inputs);
          for (size_t i = 0; i < inputs.size(); ++i) {
            running.emplace(inputs[i].id, std::move(taken.admitted[i]));
          }
        } catch (const std::exception& e) {
          const absl::Status error =
              absl::InternalError(absl::StrCat("encoding failed: ", e.what()));
          for (SentenceTask& task : taken.admitted) task.request->Fail(error);
        }
        if (observer_ != nullptr) {
          observer_->OnBatch(model_name_, static_cast<int>(inputs.size()),
                             static_cast<int>(inputs.size() * longest));
        }
        publish();
      }
    }
    if (decoder->empty()) continue;

    // Cancelled, failed and expired requests stop using compute here.
    const absl::Time now = absl::Now();
    std::vector<std::pair<int64_t, absl::Status>> dead;
    decoder->RemoveIf([&](int64_t id) {
      absl::Status alive = running.at(id).request->CheckAlive(now);
      if (alive.ok()) return false;
      dead.emplace_back(id, std::move(alive));
      return true;
    });
    for (auto& [id, status] : dead) {
      running.at(id).request->Fail(status);
      running.erase(id);
    }
    if (!dead.empty()) publish();
    if (decoder->empty()) continue;

    const int rows = static_cast<int>(decoder->rows());
    const int context = static_cast<int>(decoder->context_tokens());
    std::vector<DecodeOutput> outputs;
    try {
      outputs = decoder->Step();
    } catch (const std::exception& e) {
      fail_running(absl::InternalError(absl::StrCat("decoding failed: ", e.what())));
      continue;
    }
    if (observer_ != nullptr) observer_->OnBatch(model_name_, rows, context);

    decoder->ForEachBestPrefix([&](int64_t id, const std::vector<int64_t>& tokens) {
      const SentenceTask& task = running.at(id);
      if (task.request->streaming()) {
        task.request->Stream(MakeEvent(task.index, tokens, false, tokenizer));
      }
    });
    const absl::Time finished_at = absl::Now();
    for (DecodeOutput& output : outputs) {
      SentenceTask task = std::move(running.at(output.id));
      running.erase(output.id);
      const std::vector<int64_t> best =
          output.hypotheses.empty() ? std::vector<int64_t>() : output.hypotheses[0].tokens;
      if (task.request->streaming()) {
        task.request->Stream(MakeEvent(task.index, best, true, tokenizer));
      }
      task.request->SentenceDone(task.index, ToResult(output, tokenizer),
                                 static_cast<int>(best.size()), finished_at);
    }
    publish();
  }
  running_sentences_.store(0);
  cache_bytes_.store(0);
  exited_.store(true);
}

}  // namespace quantmt
