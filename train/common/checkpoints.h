// Names inside OUTPUT_DIR that the setup, the checkpoints and the export
// agree on.
#pragma once

namespace quantmt::train {

constexpr char kCheckpointDir[] = "checkpoints";
constexpr char kStateFile[] = "trainer_state.json";
constexpr char kOptimizerFile[] = "optimizer.pt";
constexpr char kTokenizerFile[] = "spm.model";

}  // namespace quantmt::train
