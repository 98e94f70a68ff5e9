// The load tester's core: sends Translate requests as LoadOptions says and
// collects what came back. Printing lives in load_report.h.
#pragma once

#include <grpcpp/grpcpp.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "client/load/load_options.h"

namespace quantmt::client {

// Counted requests only (started after warm-up).
struct LoadResult {
  double seconds = 0;  // measured wall time: end of warm-up to the last answer
  int64_t requests = 0;
  int64_t skipped = 0;                   // rate mode: arrivals not sent (max_inflight reached)
  int64_t client_cancels = 0;            // calls this client cancelled (cancel_fraction)
  int64_t short_deadlines = 0;           // calls sent with a short deadline (deadline_fraction)
  std::map<std::string, int64_t> codes;  // "OK", "RESOURCE_EXHAUSTED", ...
  // "CODE: message" -> count, for the first 32 distinct messages; later
  // ones count under "CODE: (other messages)".
  std::map<std::string, int64_t> error_messages;
  std::vector<double> latencies_ok;  // seconds, sorted, successful requests
  int64_t sentences_ok = 0;
  int64_t source_tokens = 0;
  int64_t generated_tokens = 0;
};

// A moment of a running test, for the live progress line.
struct LoadProgress {
  double elapsed_s = 0;
  double level = 0;
  int64_t sent = 0, answered = 0, ok = 0, errors = 0;
  int inflight = 0;
};

// Runs the test to its end (duration or count, then waits for the requests
// in flight, at most request_timeout). `progress` (may be empty) is called
// about every `progress_interval` from the calling thread.
LoadResult RunLoad(std::shared_ptr<grpc::Channel> channel, const LoadOptions& options,
                   const std::function<void(const LoadProgress&)>& progress,
                   absl::Duration progress_interval = absl::Seconds(1));

}  // namespace quantmt::client
