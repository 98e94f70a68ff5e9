// Percentiles of latency samples, one definition for the server's Benchmark,
// the load tester and the benchmarks: nearest rank, so every reported value
// is one that was measured. Plain C++.
#pragma once

#include <vector>

namespace quantmt::eval {

// The smallest value with at least a share `q` (0..1, clamped) of the
// samples at or below it. `sorted` is ascending; 0 when it is empty.
double Percentile(const std::vector<double>& sorted, double q);

// The same for samples in any order (sorts a copy).
double PercentileOfUnsorted(std::vector<double> values, double q);

}  // namespace quantmt::eval
