#include "op_profile.h"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <vector>

#if __has_include(<torch/csrc/autograd/profiler_legacy.h>)
#include <torch/csrc/autograd/profiler_legacy.h>
#define QUANTMT_HAS_LEGACY_PROFILER 1
#endif

namespace quantmt::bench {

#ifdef QUANTMT_HAS_LEGACY_PROFILER

namespace {

namespace profiler = torch::autograd::profiler;

struct OpTotals {
  double self_us = 0;
  int64_t calls = 0;
};

// Push/pop events arrive in order per thread: a stack gives each op its
// duration, and subtracting its children's durations gives its self time.
void FoldThread(const std::vector<profiler::LegacyEvent>& events,
                std::map<std::string, OpTotals>* totals) {
  struct Open {
    const profiler::LegacyEvent* push;
    double children_us;
  };
  std::vector<Open> stack;
  for (const auto& event : events) {
    if (event.kind() == profiler::EventKind::PushRange) {
      stack.push_back({&event, 0.0});
    } else if (event.kind() == profiler::EventKind::PopRange && !stack.empty()) {
      const Open open = stack.back();
      stack.pop_back();
      const double duration = open.push->cpuElapsedUs(event);
      std::string key = open.push->name();
      // QUANTMT_PROFILE_SHAPES=1: one row per op and input shapes.
      if (std::getenv("QUANTMT_PROFILE_SHAPES") != nullptr) {
        for (const auto& shape : open.push->shapes()) {
          key += " [";
          for (size_t i = 0; i < shape.size(); ++i) {
            key += (i ? "," : "") + std::to_string(shape[i]);
          }
          key += "]";
        }
      }
      OpTotals& op = (*totals)[key];
      op.self_us += duration - open.children_us;
      op.calls += 1;
      if (!stack.empty()) stack.back().children_us += duration;
    }
  }
}

}  // namespace

bool PrintOpProfile(const std::function<void()>& work, int top, const std::string& title) {
  std::map<std::string, OpTotals> totals;
  double wall_us = 0;
  {
    profiler::TLSLegacyProfilerGuard guard(
        torch::profiler::impl::ProfilerConfig(torch::profiler::impl::ProfilerState::CPU,
                                              std::getenv("QUANTMT_PROFILE_SHAPES") != nullptr),
        [&](const profiler::thread_event_lists& threads) {
          for (const auto& thread : threads) FoldThread(thread, &totals);
        });
    const auto start = std::chrono::steady_clock::now();
    work();
    wall_us =
        std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count();
  }
  std::vector<std::pair<std::string, OpTotals>> rows(totals.begin(), totals.end());
  std::sort(rows.begin(), rows.end(),
            [](const auto& a, const auto& b) { return a.second.self_us > b.second.self_us; });
  double in_ops_us = 0;
  for (const auto& row : rows) in_ops_us += row.second.self_us;
  std::printf("\n%s: %.1f ms wall (profiler overhead included)\n", title.c_str(), wall_us / 1e3);
  std::printf("%-60s %10s %8s %8s\n", "op (self time)", "ms", "share", "calls");
  for (int i = 0; i < top && i < static_cast<int>(rows.size()); ++i) {
    const auto& [name, op] = rows[i];
    std::printf("%-60s %10.2f %7.1f%% %8lld\n", name.c_str(), op.self_us / 1e3,
                100.0 * op.self_us / wall_us, static_cast<long long>(op.calls));
  }
  const double outside_us = std::max(0.0, wall_us - in_ops_us);
  std::printf("%-60s %10.2f %7.1f%%\n", "(outside any op)", outside_us / 1e3,
              100.0 * outside_us / wall_us);
  return true;
}

#else

bool PrintOpProfile(const std::function<void()>&, int, const std::string&) { return false; }

#endif

}  // namespace quantmt::bench
