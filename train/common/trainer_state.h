// The trainer's own state (step, epoch, position in the epoch, early
// stopping, fp16 loss scale, validation history), saved as
// trainer_state.json next to each checkpoint so that a resumed run picks
// up exactly where the saved one stood.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "quantmt/engine/status.h"

namespace quantmt::train {

struct ValidationRecord {
  int64_t step = 0;
  double epoch = 0;
  double train_loss = 0;
  double dev_loss = 0;
  double dev_nll = 0;
  double dev_bleu = 0;
  double lr = 0;
  double seconds = 0;  // training time so far
};

struct TrainerState {
  int64_t step = 0;
  int64_t epoch = 1;           // epoch in progress, 1-based
  int64_t batch_in_epoch = 0;  // batches of that epoch already consumed
  uint64_t seed = 1;
  double best_bleu = -1.0;
  int64_t best_step = 0;
  int bad_validations = 0;  // since the best BLEU
  bool stopped_early = false;
  double train_seconds = 0;
  double loss_scale = 1.0;
  int64_t good_steps = 0;  // fp16: steps since the last overflow
  std::vector<ValidationRecord> history;
};

// Indented JSON with a final newline.
std::string StateToText(const TrainerState& state);

// `origin` names the file in error messages. Files written before the fp16
// loss scale existed load with a scale of 1.
absl::StatusOr<TrainerState> StateFromText(const std::string& text, const std::string& origin);

}  // namespace quantmt::train
