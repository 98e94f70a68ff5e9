// Names for the AMP mode and the hardware, best effort: a run never fails
// because its hardware could not be named.
#include "train/common/run_info.h"

#include <cstdio>
#include <fstream>

#include "absl/strings/str_cat.h"

namespace quantmt::train {
namespace {

// First line of a command's output, or "".
std::string CommandOutput(const char* command) {
  FILE* pipe = popen(command, "r");
  if (pipe == nullptr) return "";
  char buffer[256] = {0};
  std::string line = fgets(buffer, sizeof(buffer), pipe) != nullptr ? buffer : "";
  pclose(pipe);
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
  return line;
}

}  // namespace

std::string AmpName(AmpMode amp) {
  switch (amp) {
    case AmpMode::kBFloat16:
      return "bf16";
    case AmpMode::kFloat16:
      return "fp16";
    case AmpMode::kNone:
      break;
  }
  return "none";
}

std::string HardwareDescription(const torch::Device& device) {
  if (device.is_cuda()) {
    // No CUDA headers here (the CPU build has none); nvidia-smi names the GPU.
    const std::string gpu =
        CommandOutput("nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null");
    return absl::StrCat("cuda: ", gpu.empty() ? "unknown GPU" : gpu, " (",
                        torch::cuda::device_count(), " visible)");
  }
  std::string cpu = "unknown CPU";
  std::ifstream info("/proc/cpuinfo");
  for (std::string line; std::getline(info, line);) {
    if (line.rfind("model name", 0) == 0 && line.find(':') != std::string::npos) {
      cpu = line.substr(line.find(':') + 2);
      break;
    }
  }
  return absl::StrCat("cpu: ", cpu, ", ", torch::get_num_threads(), " threads");
}

}  // namespace quantmt::train
