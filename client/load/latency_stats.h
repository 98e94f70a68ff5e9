// Summaries of a list of latencies: percentiles and a text-friendly
// histogram. Plain C++, no gRPC.
#pragma once

#include <cstdint>
#include <vector>

namespace quantmt::client {

// Nearest-rank percentile (q in 0..1) of `sorted` (ascending); 0 if empty.
double Percentile(const std::vector<double>& sorted, double q);

struct HistogramBin {
  double upper = 0;  // seconds, inclusive
  int64_t count = 0;
};

// `bins` equal-width bins from the minimum to the maximum of `sorted`
// (one bin when they are equal; none when empty). Counts sum to the size.
std::vector<HistogramBin> LatencyHistogram(const std::vector<double>& sorted, int bins);

}  // namespace quantmt::client
