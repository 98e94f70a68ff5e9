#include "client/load/latency_stats.h"

#include <algorithm>
#include <cmath>

namespace quantmt::client {

double Percentile(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return 0;
  // Nearest rank: the smallest value with at least q of the samples at or below it.
  const double rank = std::ceil(std::clamp(q, 0.0, 1.0) * sorted.size());
  const size_t index = rank < 1 ? 0 : static_cast<size_t>(rank) - 1;
  return sorted[std::min(index, sorted.size() - 1)];
}

std::vector<HistogramBin> LatencyHistogram(const std::vector<double>& sorted, int bins) {
  std::vector<HistogramBin> histogram;
  if (sorted.empty() || bins < 1) return histogram;
  const double low = sorted.front(), high = sorted.back();
  if (high <= low) return {{high, static_cast<int64_t>(sorted.size())}};
  const double width = (high - low) / bins;
  for (int i = 0; i < bins; ++i) histogram.push_back({low + width * (i + 1), 0});
  histogram.back().upper = high;
  for (double value : sorted) {
    int bin = static_cast<int>((value - low) / width);
    // A value on a bin's upper edge belongs to that bin.
    if (bin > 0 && value <= histogram[bin - 1].upper) --bin;
    ++histogram[std::min(bin, bins - 1)].count;
  }
  return histogram;
}

}  // namespace quantmt::client
