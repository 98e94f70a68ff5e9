// Summaries of a list of latencies: a text-friendly histogram (percentiles
// come from eval/percentile.h). Plain C++, no gRPC.
#pragma once

#include <cstdint>
#include <vector>

namespace quantmt::client {

struct HistogramBin {
  double upper = 0;  // seconds, inclusive
  int64_t count = 0;
};

// `bins` equal-width bins from the minimum to the maximum of `sorted`
// (one bin when they are equal; none when empty). Counts sum to the size.
std::vector<HistogramBin> LatencyHistogram(const std::vector<double>& sorted, int bins);

}  // namespace quantmt::client
