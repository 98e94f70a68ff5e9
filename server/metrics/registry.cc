#include "server/metrics/registry.h"

#include <charconv>
#include <cmath>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace quantmt::server {
namespace {

bool IsValidName(const std::string& name, bool allow_colon) {
  if (name.empty()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool letter =
        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (allow_colon && c == ':');
    if (!letter && !(i > 0 && c >= '0' && c <= '9')) return false;
  }
  return true;
}

}  // namespace

std::string EscapeLabelValue(const std::string& value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string EscapeHelp(const std::string& help) {
  std::string out;
  for (char c : help) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string FormatSampleValue(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  char buffer[32];
  auto result = std::to_chars(buffer, buffer + sizeof(buffer), value);
  return std::string(buffer, result.ptr);
}

std::vector<double> ExponentialBuckets(double start, double factor, int count) {
  std::vector<double> bounds;
  for (double bound = start; static_cast<int>(bounds.size()) < count; bound *= factor) {
    bounds.push_back(bound);
  }
  return bounds;
}

MetricFamily::MetricFamily(std::string name, std::string help, std::string type,
                           std::vector<std::string> label_names)
    : name_(std::move(name)),
      help_(std::move(help)),
      type_(std::move(type)),
      label_names_(std::move(label_names)) {}

void MetricFamily::Write(std::string* out) const {
  MutexLock lock(&mutex_);
  if (series_.empty()) return;
  absl::StrAppend(out, "# HELP ", name_, " ", EscapeHelp(help_), "\n# TYPE ", name_, " ", type_,
                  "\n");
  for (const auto& [labels, series] : series_) WriteSeries(FormatLabels(labels), series, out);
}

void MetricFamily::Clear() {
  MutexLock lock(&mutex_);
  series_.clear();
}

int64_t MetricFamily::dropped_observations() const {
  MutexLock lock(&mutex_);
  return dropped_;
}

MetricFamily::Series* MetricFamily::FindOrAdd(const LabelValues& labels) {
  if (labels.size() != label_names_.size()) {
    ++dropped_;
    return nullptr;
  }
  return &series_[labels];
}

const MetricFamily::Series* MetricFamily::Find(const LabelValues& labels) const {
  auto it = series_.find(labels);
  return it == series_.end() ? nullptr : &it->second;
}

std::string MetricFamily::FormatLabels(const LabelValues& values) const {
  if (values.empty()) return "";
  std::string out = "{";
  for (size_t i = 0; i < values.size(); ++i) {
    absl::StrAppend(&out, i ? "," : "", label_names_[i], "=\"", EscapeLabelValue(values[i]), "\"");
  }
  return out + "}";
}

CounterFamily::CounterFamily(std::string name, std::string help,
                             std::vector<std::string> label_names)
    : MetricFamily(std::move(name), std::move(help), "counter", std::move(label_names)) {}

void CounterFamily::Increment(const LabelValues& labels, double amount) {
  if (!(amount >= 0)) return;
  MutexLock lock(&mutex_);
  if (Series* series = FindOrAdd(labels)) series->value += amount;
}

double CounterFamily::Value(const LabelValues& labels) const {
  MutexLock lock(&mutex_);
  const Series* series = Find(labels);
  return series ? series->value : 0;
}

void CounterFamily::WriteSeries(const std::string& labels, const Series& series,
                                std::string* out) const {
  absl::StrAppend(out, name(), labels, " ", FormatSampleValue(series.value), "\n");
}

GaugeFamily::GaugeFamily(std::string name, std::string help, std::vector<std::string> label_names)
    : MetricFamily(std::move(name), std::move(help), "gauge", std::move(label_names)) {}

void GaugeFamily::Set(const LabelValues& labels, double value) {
  MutexLock lock(&mutex_);
  if (Series* series = FindOrAdd(labels)) series->value = value;
}

void GaugeFamily::Add(const LabelValues& labels, double delta) {
  MutexLock lock(&mutex_);
  if (Series* series = FindOrAdd(labels)) series->value += delta;
}

double GaugeFamily::Value(const LabelValues& labels) const {
  MutexLock lock(&mutex_);
  const Series* series = Find(labels);
  return series ? series->value : 0;
}

void GaugeFamily::WriteSeries(const std::string& labels, const Series& series,
                              std::string* out) const {
  absl::StrAppend(out, name(), labels, " ", FormatSampleValue(series.value), "\n");
}

HistogramFamily::HistogramFamily(std::string name, std::string help,
                                 std::vector<std::string> label_names,
                                 std::vector<double> upper_bounds)
    : MetricFamily(std::move(name), std::move(help), "histogram", std::move(label_names)),
      upper_bounds_(std::move(upper_bounds)) {}

void HistogramFamily::Observe(const LabelValues& labels, double value) {
  if (std::isnan(value)) return;
  MutexLock lock(&mutex_);
  Series* series = FindOrAdd(labels);
  if (!series) return;
  if (series->buckets.empty()) series->buckets.assign(upper_bounds_.size() + 1, 0);
  size_t bucket = 0;
  while (bucket < upper_bounds_.size() && value > upper_bounds_[bucket]) ++bucket;
  ++series->buckets[bucket];
  series->sum += value;
  ++series->count;
}

uint64_t HistogramFamily::Count(const LabelValues& labels) const {
  MutexLock lock(&mutex_);
  const Series* series = Find(labels);
  return series ? series->count : 0;
}

double HistogramFamily::Sum(const LabelValues& labels) const {
  MutexLock lock(&mutex_);
  const Series* series = Find(labels);
  return series ? series->sum : 0;
}

void HistogramFamily::WriteSeries(const std::string& labels, const Series& series,
                                  std::string* out) const {
  // The series' label values are recovered from `labels` by inserting `le`
  // before its closing brace.
  const std::string prefix = labels.empty() ? "{" : labels.substr(0, labels.size() - 1) + ",";
  uint64_t cumulative = 0;
  for (size_t i = 0; i <= upper_bounds_.size(); ++i) {
    cumulative += series.buckets.empty() ? 0 : series.buckets[i];
    const std::string le =
        i < upper_bounds_.size() ? FormatSampleValue(upper_bounds_[i]) : std::string("+Inf");
    absl::StrAppend(out, name(), "_bucket", prefix, "le=\"", le, "\"} ", cumulative, "\n");
  }
  absl::StrAppend(out, name(), "_sum", labels, " ", FormatSampleValue(series.sum), "\n");
  absl::StrAppend(out, name(), "_count", labels, " ", series.count, "\n");
}

absl::Status Registry::CheckNew(const std::string& name,
                                const std::vector<std::string>& label_names, bool histogram) const {
  if (!IsValidName(name, /*allow_colon=*/true)) {
    return absl::InvalidArgumentError(
        absl::StrCat("metric name \"", name, "\" must match [a-zA-Z_:][a-zA-Z0-9_:]*"));
  }
  for (const std::string& label : label_names) {
    if (!IsValidName(label, /*allow_colon=*/false) || absl::StartsWith(label, "__") ||
        (histogram && label == "le")) {
      return absl::InvalidArgumentError(absl::StrCat(
          "label \"", label, "\" of ", name,
          " must match [a-zA-Z_][a-zA-Z0-9_]*, not start with __, and not be \"le\" on a "
          "histogram"));
    }
  }
  for (const auto& family : families_) {
    if (family->name() == name) {
      return absl::AlreadyExistsError(absl::StrCat("metric ", name, " is registered twice"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<CounterFamily*> Registry::AddCounter(const std::string& name,
                                                    const std::string& help,
                                                    const std::vector<std::string>& label_names) {
  MutexLock lock(&mutex_);
  RETURN_IF_ERROR(CheckNew(name, label_names, false));
  auto family = std::make_unique<CounterFamily>(name, help, label_names);
  CounterFamily* result = family.get();
  families_.push_back(std::move(family));
  return result;
}

absl::StatusOr<GaugeFamily*> Registry::AddGauge(const std::string& name, const std::string& help,
                                                const std::vector<std::string>& label_names) {
  MutexLock lock(&mutex_);
  RETURN_IF_ERROR(CheckNew(name, label_names, false));
  auto family = std::make_unique<GaugeFamily>(name, help, label_names);
  GaugeFamily* result = family.get();
  families_.push_back(std::move(family));
  return result;
}

absl::StatusOr<HistogramFamily*> Registry::AddHistogram(const std::string& name,
                                                        const std::string& help,
                                                        const std::vector<std::string>& label_names,
                                                        const std::vector<double>& upper_bounds) {
  MutexLock lock(&mutex_);
  RETURN_IF_ERROR(CheckNew(name, label_names, true));
  for (size_t i = 0; i < upper_bounds.size(); ++i) {
    if (!std::isfinite(upper_bounds[i]) || (i > 0 && upper_bounds[i] <= upper_bounds[i - 1])) {
      return absl::InvalidArgumentError(
          absl::StrCat("buckets of ", name, " must be finite and strictly increasing"));
    }
  }
  auto family = std::make_unique<HistogramFamily>(name, help, label_names, upper_bounds);
  HistogramFamily* result = family.get();
  families_.push_back(std::move(family));
  return result;
}

void Registry::AddCollector(std::function<void()> collector) {
  MutexLock lock(&mutex_);
  collectors_.push_back(std::move(collector));
}

std::string Registry::Expose() const {
  MutexLock lock(&mutex_);
  for (const auto& collector : collectors_) collector();
  std::string out;
  for (const auto& family : families_) family->Write(&out);
  return out;
}

}  // namespace quantmt::server
