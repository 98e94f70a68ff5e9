// A small Prometheus metrics registry: counter, gauge and histogram families
// with labels, written in the Prometheus text exposition format (0.0.4).
//
// prometheus-cpp is not packaged in Debian 12, and the server needs only
// this much of it. Thread-safe: every method may be called from any thread.
//
//   Registry registry;
//   auto* requests = *registry.AddCounter("quantmt_requests_total", "Requests.", {"rpc", "code"});
//   requests->Increment({"Translate", "OK"});
//   std::string text = registry.Expose();
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "quantmt/engine/mutex.h"
#include "quantmt/engine/status.h"

namespace quantmt::server {

// Label values, in the order of the family's label names.
using LabelValues = std::vector<std::string>;

// One metric name with its HELP and TYPE lines and one series per distinct
// label-value tuple. Calls whose label count differs from the family's label
// names are ignored (and counted in dropped_observations()).
class MetricFamily {
 public:
  MetricFamily(std::string name, std::string help, std::string type,
               std::vector<std::string> label_names);
  virtual ~MetricFamily() = default;

  const std::string& name() const { return name_; }
  // Appends this family in the text format; nothing when it has no series.
  void Write(std::string* out) const;
  // Removes every series (e.g. before a collector sets the current ones).
  void Clear();
  int64_t dropped_observations() const;

 protected:
  struct Series {
    double value = 0;               // counter, gauge
    std::vector<uint64_t> buckets;  // histogram: per bucket, not cumulative
    double sum = 0;                 // histogram
    uint64_t count = 0;             // histogram
  };
  // Returns the series for `labels`, creating it; null (and counts a drop)
  // when the label count is wrong.
  Series* FindOrAdd(const LabelValues& labels) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  const Series* Find(const LabelValues& labels) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  virtual void WriteSeries(const std::string& labels, const Series& series,
                           std::string* out) const = 0;
  // `{a="x",b="y"}`, or "" without labels.
  std::string FormatLabels(const LabelValues& values) const;

  mutable Mutex mutex_;
  std::map<LabelValues, Series> series_ ABSL_GUARDED_BY(mutex_);  // sorted: stable output

 private:
  const std::string name_, help_, type_;
  const std::vector<std::string> label_names_;
  int64_t dropped_ ABSL_GUARDED_BY(mutex_) = 0;
};

class CounterFamily : public MetricFamily {
 public:
  CounterFamily(std::string name, std::string help, std::vector<std::string> label_names);
  // Negative amounts are ignored: counters only go up.
  void Increment(const LabelValues& labels, double amount = 1);
  double Value(const LabelValues& labels) const;  // 0 for an unknown series

 private:
  void WriteSeries(const std::string& labels, const Series& series,
                   std::string* out) const override;
};

class GaugeFamily : public MetricFamily {
 public:
  GaugeFamily(std::string name, std::string help, std::vector<std::string> label_names);
  void Set(const LabelValues& labels, double value);
  void Add(const LabelValues& labels, double delta);
  double Value(const LabelValues& labels) const;

 private:
  void WriteSeries(const std::string& labels, const Series& series,
                   std::string* out) const override;
};

class HistogramFamily : public MetricFamily {
 public:
  // `upper_bounds` must be strictly increasing and finite; +Inf is implied.
  HistogramFamily(std::string name, std::string help, std::vector<std::string> label_names,
                  std::vector<double> upper_bounds);
  void Observe(const LabelValues& labels, double value);
  uint64_t Count(const LabelValues& labels) const;
  double Sum(const LabelValues& labels) const;

 private:
  void WriteSeries(const std::string& labels, const Series& series,
                   std::string* out) const override;
  std::vector<double> upper_bounds_;
};

// `count` bounds from `start`, each `factor` times the previous.
std::vector<double> ExponentialBuckets(double start, double factor, int count);

class Registry {
 public:
  // InvalidArgument for a name or label name that Prometheus would reject,
  // a reserved label ("le" on histograms, "__" prefixes), or a bad bucket
  // list; AlreadyExists for a second family of the same name.
  absl::StatusOr<CounterFamily*> AddCounter(const std::string& name, const std::string& help,
                                            const std::vector<std::string>& label_names);
  absl::StatusOr<GaugeFamily*> AddGauge(const std::string& name, const std::string& help,
                                        const std::vector<std::string>& label_names);
  absl::StatusOr<HistogramFamily*> AddHistogram(const std::string& name, const std::string& help,
                                                const std::vector<std::string>& label_names,
                                                const std::vector<double>& upper_bounds);
  // Runs before each Expose(), e.g. to set gauges read from elsewhere.
  void AddCollector(std::function<void()> collector);

  // Every family, in registration order, in the text exposition format.
  std::string Expose() const;

 private:
  absl::Status CheckNew(const std::string& name, const std::vector<std::string>& label_names,
                        bool histogram) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);

  mutable Mutex mutex_;
  std::vector<std::unique_ptr<MetricFamily>> families_ ABSL_GUARDED_BY(mutex_);
  std::vector<std::function<void()>> collectors_ ABSL_GUARDED_BY(mutex_);
};

// The text format's escaping: label values escape backslash, double quote
// and newline; HELP text escapes backslash and newline.
std::string EscapeLabelValue(const std::string& value);
std::string EscapeHelp(const std::string& help);
// A sample value as Prometheus parses it: shortest round-trip decimal,
// "+Inf", "-Inf", "NaN".
std::string FormatSampleValue(double value);

}  // namespace quantmt::server
