// The training loop: walks the epochs' batches in their seeded order, steps
// the optimizer, and interleaves progress lines, validations and checkpoints.
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "train/common/optimization.h"
#include "train/common/progress_log.h"
#include "train/common/trainer_impl.h"

namespace quantmt::train {
namespace {

// Non-finite gradients in a row before giving up (fp16 overflows excepted:
// those only lower the loss scale).
constexpr int kMaxSkippedSteps = 10;

}  // namespace

const std::vector<std::vector<int64_t>>& Trainer::Impl::EpochBatches() {
  if (batches_epoch != state.epoch) {
    BatchingOptions batching;
    batching.max_tokens = options.max_tokens;
    batches = MakeBatches(train, batching, state.seed, state.epoch);
    batches_epoch = state.epoch;
  }
  return batches;
}

double Trainer::Impl::EpochProgress() {
  const auto& b = EpochBatches();
  return static_cast<double>(state.epoch - 1) +
         (b.empty() ? 0.0 : static_cast<double>(state.batch_in_epoch) / b.size());
}

int64_t Trainer::Impl::RemainingSteps() {
  int64_t remaining = -1;
  if (options.max_steps > 0) remaining = std::max<int64_t>(0, options.max_steps - state.step);
  if (options.max_epochs > 0) {
    const int64_t per_epoch = static_cast<int64_t>(EpochBatches().size());
    const int64_t by_epochs = std::max<int64_t>(
        0, (options.max_epochs - state.epoch + 1) * per_epoch - state.batch_in_epoch);
    remaining = remaining < 0 ? by_epochs : std::min(remaining, by_epochs);
  }
  return remaining;
}

absl::StatusOr<TrainSummary> Trainer::Impl::Train() {
  TrainSummary summary;
  summary.first_step = state.step;
  const auto start = Clock::now();
  const double seconds_before = state.train_seconds;
  model->train();
  model->set_dropout(options.dropout);

  // Averages since the last progress line, and since the last validation.
  ProgressWindow window;
  double since_validation_loss = 0;
  int64_t since_validation_tokens = 0;
  auto last_log = Clock::now();
  int skipped_in_row = 0;
  double lr = 0;

  if (state.stopped_early) Log("training stopped early before; nothing to do");
  while (!state.stopped_early) {
    if (options.max_steps > 0 && state.step >= options.max_steps) break;
    const auto& epoch_batches = EpochBatches();
    if (state.batch_in_epoch >= static_cast<int64_t>(epoch_batches.size())) {
      if (options.max_epochs > 0 && state.epoch >= options.max_epochs) break;
      ++state.epoch;
      state.batch_in_epoch = 0;
      continue;
    }
    const Batch batch = Collate(train, epoch_batches[state.batch_in_epoch], ids);
    lr = InverseSqrtLearningRate(options.lr, options.warmup, state.step + 1);
    torch::manual_seed(StepSeed(state.seed, state.step + 1));
    double loss_sum = 0, nll_sum = 0, grad_norm = 0;
    const bool stepped = Step(batch, lr, &loss_sum, &nll_sum, &grad_norm);
    ++state.batch_in_epoch;
    if (!stepped) {
      if (options.amp == AmpMode::kFloat16) {
        Log(Format("step %ld: fp16 overflow, loss scale now %g", static_cast<long>(state.step + 1),
                   state.loss_scale));
      } else if (++skipped_in_row >= kMaxSkippedSteps) {
        return absl::InternalError(absl::StrCat("non-finite gradients in ", skipped_in_row,
                                                " steps in a row at step ", state.step + 1,
                                                "; lower --lr or set --clip_norm"));
      }
      continue;
    }
    skipped_in_row = 0;
    ++state.step;
    state.train_seconds = seconds_before + Seconds(start);
    summary.losses.push_back(loss_sum / std::max<int64_t>(1, batch.target_tokens));
    window.Add(batch, loss_sum, nll_sum, grad_norm);
    since_validation_loss += loss_sum;
    since_validation_tokens += batch.target_tokens;

    const double since_log = Seconds(last_log);
    if (since_log >= options.log_every_seconds) {
      const double elapsed = Seconds(start);
      const double steps_per_second = (state.step - summary.first_step) / std::max(elapsed, 1e-9);
      const int64_t remaining = RemainingSteps();
      const double eta = remaining < 0 ? -1.0 : remaining / std::max(steps_per_second, 1e-9);
      Log(window.Line(state.step, EpochProgress(), lr, since_log, state.train_seconds, eta));
      window = ProgressWindow();
      last_log = Clock::now();
    }
    // Validation and saving do not count against the throughput of the next
    // progress line.
    const auto side_tasks = Clock::now();
    bool stop = false;
    if (has_dev && options.validate_every > 0 && state.step % options.validate_every == 0) {
      ASSIGN_OR_RETURN(
          stop, ValidateAndTrack(
                    since_validation_loss / std::max<int64_t>(1, since_validation_tokens), lr));
      since_validation_loss = 0;
      since_validation_tokens = 0;
    }
    if (options.save_every > 0 && state.step % options.save_every == 0) {
      RETURN_IF_ERROR(SaveCheckpoint());
    }
    last_log += Clock::now() - side_tasks;
    if (stop) break;
  }
  state.train_seconds = seconds_before + Seconds(start);
  if (has_dev && state.step > summary.first_step && last_validated_step != state.step) {
    ASSIGN_OR_RETURN(
        bool stop, ValidateAndTrack(
                       since_validation_loss / std::max<int64_t>(1, since_validation_tokens), lr));
    (void)stop;  // training ends anyway
  }
  if (state.step > 0 && last_saved_step != state.step) RETURN_IF_ERROR(SaveCheckpoint());
  summary.step = state.step;
  summary.epoch = state.epoch;
  summary.early_stopped = state.stopped_early;
  summary.best_bleu = state.best_bleu;
  Log(absl::StrCat("training done: step ", state.step, ", epoch ", Format("%.2f", EpochProgress()),
                   ", ", FormatDuration(state.train_seconds), " of training"));
  return summary;
}

}  // namespace quantmt::train
