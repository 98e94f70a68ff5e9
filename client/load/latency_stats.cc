#include "client/load/latency_stats.h"

#include <algorithm>

namespace quantmt::client {

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
