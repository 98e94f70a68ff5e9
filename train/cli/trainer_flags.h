// What the tools built on the Trainer (quantmt-train, quantmt-qat) share:
// data, optimization, device and checkpoint flags, their range checks, the
// command line recorded in the provenance, and the run itself.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

#include "train/common/trainer.h"

namespace quantmt::train {

// Flags that are not TrainerOptions fields as such.
struct TrainerFlagValues {
  std::string amp = "none";  // none, bf16, fp16
  int threads = 0;           // CPU threads (0: LibTorch's default)
};

// Adds the shared flags to `app`, bound to `options` and `values`; their
// current values are shown as defaults, so a tool sets its own defaults
// first. Without --tokenizer: a tool may take it from a model directory.
void AddTrainerFlags(CLI::App& app, TrainerOptions* options, TrainerFlagValues* values);

// Range checks CLI11 does not express; "" when all is well.
std::string CheckTrainerFlags(const TrainerOptions& options, const TrainerFlagValues& values);

// Applies `values` (amp mode, CPU threads) and records the command line.
void ApplyTrainerFlags(const TrainerFlagValues& values, int argc, char** argv,
                       TrainerOptions* options);

// The command line as a shell would take it back, for the provenance.
std::string CommandLine(int argc, char** argv);

// Creates the trainer, trains, and exports OUTPUT_DIR/final: all that is
// left to a tool once its options are set.
absl::Status TrainAndExport(const TrainerOptions& options);

}  // namespace quantmt::train
