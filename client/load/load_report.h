// How a load run is shown: a live progress line, a human summary (throughput,
// percentiles, histogram, status codes), JSON and CSV.
#pragma once

#include <string>

#include "client/load/load_tester.h"

namespace quantmt::client {

// One line, no newline: "  12.0s  level 16  sent 340  ok 320  err 4  inflight 16".
std::string ProgressLine(const LoadProgress& progress);

std::string SummaryText(const LoadResult& result);
std::string SummaryJson(const LoadResult& result);
// A header line and one row of the same fields as the JSON.
std::string SummaryCsv(const LoadResult& result);

}  // namespace quantmt::client
