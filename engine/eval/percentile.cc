#include "quantmt/eval/percentile.h"

#include <algorithm>
#include <cmath>

namespace quantmt::eval {

double Percentile(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return 0;
  const double rank = std::ceil(std::clamp(q, 0.0, 1.0) * sorted.size());
  const size_t index = rank < 1 ? 0 : static_cast<size_t>(rank) - 1;
  return sorted[std::min(index, sorted.size() - 1)];
}

double PercentileOfUnsorted(std::vector<double> values, double q) {
  std::sort(values.begin(), values.end());
  return Percentile(values, q);
}

}  // namespace quantmt::eval
