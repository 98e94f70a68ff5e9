#include "client/load/load_report.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "client/load/latency_stats.h"
#include "quantmt/eval/percentile.h"

namespace quantmt::client {
namespace {

constexpr std::pair<const char*, double> kPercentiles[] = {
    {"p50", 0.5}, {"p90", 0.9}, {"p95", 0.95}, {"p99", 0.99}, {"p99_9", 0.999}};

double PerSecond(double count, double seconds) { return seconds > 0 ? count / seconds : 0; }

std::string Millis(double seconds) { return absl::StrFormat("%.2f ms", seconds * 1e3); }

}  // namespace

std::string ProgressLine(const LoadProgress& p) {
  return absl::StrFormat("%7.1fs  level %-6.1f sent %-8d ok %-8d err %-6d inflight %d", p.elapsed_s,
                         p.level, p.sent, p.ok, p.errors, p.inflight);
}

std::string SummaryText(const LoadResult& r) {
  std::string out = "\nSummary:\n";
  const double ok = r.latencies_ok.size();
  absl::StrAppendFormat(&out, "  Requests:      %d in %.2f s (%d skipped at the in-flight bound)\n",
                        r.requests, r.seconds, r.skipped);
  if (r.client_cancels > 0 || r.short_deadlines > 0) {
    absl::StrAppendFormat(&out,
                          "  Impatience:    %d cancelled by this client, %d short deadlines\n",
                          r.client_cancels, r.short_deadlines);
  }
  absl::StrAppendFormat(&out, "  Throughput:    %.1f requests/s, %.1f OK requests/s\n",
                        PerSecond(r.requests, r.seconds), PerSecond(ok, r.seconds));
  absl::StrAppendFormat(&out, "  Tokens:        %.1f generated tokens/s, %.1f source tokens/s\n",
                        PerSecond(r.generated_tokens, r.seconds),
                        PerSecond(r.source_tokens, r.seconds));
  if (!r.latencies_ok.empty()) {
    double sum = 0;
    for (double latency : r.latencies_ok) sum += latency;
    absl::StrAppend(&out, "\nLatency (OK requests):\n");
    absl::StrAppend(&out, "  min ", Millis(r.latencies_ok.front()), "  mean ", Millis(sum / ok),
                    "  max ", Millis(r.latencies_ok.back()), "\n");
    for (const auto& [name, q] : kPercentiles) {
      absl::StrAppendFormat(&out, "  %-6s %s\n", name, Millis(eval::Percentile(r.latencies_ok, q)));
    }
    absl::StrAppend(&out, "\nLatency histogram:\n");
    const auto histogram = LatencyHistogram(r.latencies_ok, 10);
    int64_t largest = 1;
    for (const auto& bin : histogram) largest = std::max(largest, bin.count);
    for (const auto& bin : histogram) {
      absl::StrAppendFormat(&out, "  %10s [%7d] |%s\n", Millis(bin.upper), bin.count,
                            std::string(bin.count * 40 / largest, '#'));
    }
  }
  absl::StrAppend(&out, "\nStatus codes:\n");
  for (const auto& [code, count] : r.codes)
    absl::StrAppendFormat(&out, "  %-20s %d\n", code, count);
  if (!r.error_messages.empty()) absl::StrAppend(&out, "\nError messages:\n");
  for (const auto& [message, count] : r.error_messages) {
    absl::StrAppendFormat(&out, "  [%d] %s\n", count, message);
  }
  return out;
}

namespace {

nlohmann::ordered_json SummaryObject(const LoadResult& r) {
  nlohmann::ordered_json json;
  json["seconds"] = r.seconds;
  json["requests"] = r.requests;
  json["skipped"] = r.skipped;
  json["client_cancels"] = r.client_cancels;
  json["short_deadlines"] = r.short_deadlines;
  json["ok"] = r.latencies_ok.size();
  json["requests_per_second"] = PerSecond(r.requests, r.seconds);
  json["generated_tokens_per_second"] = PerSecond(r.generated_tokens, r.seconds);
  json["source_tokens_per_second"] = PerSecond(r.source_tokens, r.seconds);
  json["sentences_ok"] = r.sentences_ok;
  json["generated_tokens"] = r.generated_tokens;
  for (const auto& [name, q] : kPercentiles) {
    json[std::string("latency_") + name + "_seconds"] = eval::Percentile(r.latencies_ok, q);
  }
  json["latency_max_seconds"] = r.latencies_ok.empty() ? 0.0 : r.latencies_ok.back();
  return json;
}

}  // namespace

std::string SummaryJson(const LoadResult& r) {
  nlohmann::ordered_json json = SummaryObject(r);
  json["codes"] = r.codes;
  json["error_messages"] = r.error_messages;
  return json.dump(2) + "\n";
}

std::string SummaryCsv(const LoadResult& r) {
  const nlohmann::ordered_json json = SummaryObject(r);
  std::string header, row;
  for (const auto& [key, value] : json.items()) {
    absl::StrAppend(&header, header.empty() ? "" : ",", key);
    absl::StrAppend(&row, row.empty() ? "" : ",", value.dump());
  }
  for (const auto& [code, count] : r.codes) {
    absl::StrAppend(&header, ",code_", code);
    absl::StrAppend(&row, ",", count);
  }
  return header + "\n" + row + "\n";
}

}  // namespace quantmt::client
