#include "qcloud/core/metrics.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "qcloud/core/check.h"

namespace qcloud {
namespace {

void AtomicAdd(std::atomic<double>& a, double d) noexcept {
  double cur = a.load(std::memory_order_relaxed);
  while (!a.compare_exchange_weak(cur, cur + d, std::memory_order_relaxed)) {
  }
}

bool ValidMetricName(std::string_view n) {
  if (n.empty()) return false;
  for (size_t i = 0; i < n.size(); ++i) {
    char c = n[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
              (i > 0 && c >= '0' && c <= '9');
    if (!ok) return false;
  }
  return true;
}

bool ValidLabelName(std::string_view n) {
  if (n.empty() || n.starts_with("__")) return false;
  for (size_t i = 0; i < n.size(); ++i) {
    char c = n[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
              (i > 0 && c >= '0' && c <= '9');
    if (!ok) return false;
  }
  return true;
}

// HELP text escapes backslash and newline only (the text format spec).
std::string EscapeHelp(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
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

std::string_view TypeName(MetricType t) {
  switch (t) {
    case MetricType::kCounter: return "counter";
    case MetricType::kGauge: return "gauge";
    case MetricType::kHistogram: return "histogram";
  }
  return "untyped";
}

void RenderHeader(std::string& out, const detail::FamilyBase& f) {
  fmt::format_to(std::back_inserter(out), "# HELP {} {}\n# TYPE {} {}\n", f.name(),
                 EscapeHelp(f.help()), f.name(), TypeName(f.type()));
}

// `{a="x",b="y"` plus an optional extra pair, then `}`; nothing for no labels.
void RenderLabels(std::string& out, const std::vector<std::string>& names,
                  const std::vector<std::string>& values, std::string_view extra_name = {},
                  std::string_view extra_value = {}) {
  if (names.empty() && extra_name.empty()) return;
  out += '{';
  for (size_t i = 0; i < names.size(); ++i) {
    if (i) out += ',';
    fmt::format_to(std::back_inserter(out), "{}=\"{}\"", names[i], EscapeLabelValue(values[i]));
  }
  if (!extra_name.empty()) {
    if (!names.empty()) out += ',';
    fmt::format_to(std::back_inserter(out), "{}=\"{}\"", extra_name, extra_value);
  }
  out += '}';
}

// A family whose samples are produced by a callback at render time.
class CollectorFamily final : public detail::FamilyBase {
 public:
  using Collect = std::function<std::vector<MetricsRegistry::Sample>()>;
  CollectorFamily(std::string name, std::string help, MetricType type,
                  std::vector<std::string> label_names, Collect collect)
      : FamilyBase(std::move(name), std::move(help), type, std::move(label_names)),
        collect_(std::move(collect)) {}
  void Render(std::string& out) const override {
    RenderHeader(out, *this);
    for (const auto& sample : collect_()) {
      CheckArity(sample.label_values.size());
      out += name_;
      RenderLabels(out, label_names_, sample.label_values);
      fmt::format_to(std::back_inserter(out), " {}\n", FormatMetricValue(sample.value));
    }
  }

 private:
  Collect collect_;
};

}  // namespace

std::string EscapeLabelValue(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    switch (c) {
      case '\\': out += "\\\\"; break;
      case '"': out += "\\\""; break;
      case '\n': out += "\\n"; break;
      default: out += c;
    }
  }
  return out;
}

std::string FormatMetricValue(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  // Integers up to 2^53 print exactly without exponent or fraction.
  if (v == std::trunc(v) && std::fabs(v) < 9007199254740992.0) {
    return fmt::format("{}", static_cast<int64_t>(v));
  }
  return fmt::format("{}", v);  // shortest representation that round-trips
}

void Gauge::Add(double d) noexcept { AtomicAdd(value_, d); }

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), buckets_(new std::atomic<uint64_t>[bounds_.size() + 1]) {
  for (size_t i = 0; i <= bounds_.size(); ++i) buckets_[i].store(0, std::memory_order_relaxed);
}

void Histogram::Observe(double v) noexcept {
  // Buckets are "less than or equal" upper bounds.
  size_t i = static_cast<size_t>(std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin());
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
  AtomicAdd(sum_, v);
}

std::vector<uint64_t> Histogram::BucketCounts() const {
  std::vector<uint64_t> out(bounds_.size() + 1);
  for (size_t i = 0; i < out.size(); ++i) out[i] = buckets_[i].load(std::memory_order_relaxed);
  return out;
}

std::vector<double> LatencyBuckets() {
  return {0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
          0.01,    0.025,  0.05,    0.1,    0.25,  0.5,    1,     2.5, 5, 10};
}

std::vector<double> ExponentialBuckets(double start, double factor, int count) {
  std::vector<double> out;
  double v = start;
  for (int i = 0; i < count; ++i, v *= factor) out.push_back(v);
  return out;
}

namespace detail {
FamilyBase::FamilyBase(std::string name, std::string help, MetricType type,
                       std::vector<std::string> label_names)
    : name_(std::move(name)),
      help_(std::move(help)),
      type_(type),
      label_names_(std::move(label_names)) {}

void FamilyBase::CheckArity(size_t n) const {
  QCLOUD_CHECK_MSG(n == label_names_.size(), "label value count differs from label names");
}
}  // namespace detail

template <typename M>
M& Family<M>::WithLabels(const std::vector<std::string>& values) {
  CheckArity(values.size());
  std::lock_guard lock(mu_);
  auto it = children_.find(values);
  if (it == children_.end()) {
    std::unique_ptr<M> child;
    if constexpr (std::is_same_v<M, Histogram>) {
      child = std::make_unique<M>(bounds_);
    } else {
      child = std::make_unique<M>();
    }
    it = children_.emplace(values, std::move(child)).first;
  }
  return *it->second;
}

template <typename M>
void Family<M>::Render(std::string& out) const {
  RenderHeader(out, *this);
  std::lock_guard lock(mu_);
  for (const auto& [values, child] : children_) {
    if constexpr (std::is_same_v<M, Histogram>) {
      auto counts = child->BucketCounts();
      uint64_t cumulative = 0;
      for (size_t i = 0; i < counts.size(); ++i) {
        cumulative += counts[i];
        std::string le = i < bounds_.size() ? FormatMetricValue(bounds_[i]) : "+Inf";
        fmt::format_to(std::back_inserter(out), "{}_bucket", name_);
        RenderLabels(out, label_names_, values, "le", le);
        fmt::format_to(std::back_inserter(out), " {}\n", cumulative);
      }
      // _count equals the +Inf bucket by definition, so take it from the
      // buckets just summed rather than from a separately updated counter.
      fmt::format_to(std::back_inserter(out), "{}_sum", name_);
      RenderLabels(out, label_names_, values);
      fmt::format_to(std::back_inserter(out), " {}\n{}_count", FormatMetricValue(child->Sum()), name_);
      RenderLabels(out, label_names_, values);
      fmt::format_to(std::back_inserter(out), " {}\n", cumulative);
    } else {
      out += name_;
      RenderLabels(out, label_names_, values);
      if constexpr (std::is_same_v<M, Counter>) {
        fmt::format_to(std::back_inserter(out), " {}\n", child->Value());
      } else {
        fmt::format_to(std::back_inserter(out), " {}\n", FormatMetricValue(child->Value()));
      }
    }
  }
}

template class Family<Counter>;
template class Family<Gauge>;
template class Family<Histogram>;

MetricsRegistry::MetricsRegistry() = default;
MetricsRegistry::~MetricsRegistry() = default;

Status MetricsRegistry::Register(std::unique_ptr<detail::FamilyBase> family) {
  if (!ValidMetricName(family->name())) {
    return InvalidArgument(fmt::format("invalid metric name '{}'", family->name()));
  }
  for (const auto& l : family->label_names()) {
    if (!ValidLabelName(l) || (family->type() == MetricType::kHistogram && l == "le")) {
      return InvalidArgument(fmt::format("invalid label name '{}' for {}", l, family->name()));
    }
  }
  std::lock_guard lock(mu_);
  for (const auto& f : families_) {
    if (f->name() == family->name()) {
      return Status(Errc::kAlreadyExists, fmt::format("metric {} already registered", f->name()));
    }
  }
  families_.push_back(std::move(family));
  return Status::Ok();
}

Result<CounterFamily*> MetricsRegistry::AddCounter(std::string name, std::string help,
                                                   std::vector<std::string> label_names) {
  auto f = std::make_unique<CounterFamily>(std::move(name), std::move(help), MetricType::kCounter,
                                           std::move(label_names));
  auto* raw = f.get();
  QCLOUD_RETURN_IF_ERROR(Register(std::move(f)));
  if (raw->label_names().empty()) raw->Get();  // exported as 0 from the start
  return raw;
}

Result<GaugeFamily*> MetricsRegistry::AddGauge(std::string name, std::string help,
                                               std::vector<std::string> label_names) {
  auto f = std::make_unique<GaugeFamily>(std::move(name), std::move(help), MetricType::kGauge,
                                         std::move(label_names));
  auto* raw = f.get();
  QCLOUD_RETURN_IF_ERROR(Register(std::move(f)));
  if (raw->label_names().empty()) raw->Get();
  return raw;
}

Result<HistogramFamily*> MetricsRegistry::AddHistogram(std::string name, std::string help,
                                                       std::vector<double> bounds,
                                                       std::vector<std::string> label_names) {
  for (size_t i = 0; i < bounds.size(); ++i) {
    if (!std::isfinite(bounds[i]) || (i > 0 && bounds[i] <= bounds[i - 1])) {
      return InvalidArgument(
          fmt::format("histogram {}: bounds must be finite and strictly increasing", name));
    }
  }
  auto f = std::make_unique<HistogramFamily>(std::move(name), std::move(help),
                                             MetricType::kHistogram, std::move(label_names));
  f->bounds_ = std::move(bounds);
  auto* raw = f.get();
  QCLOUD_RETURN_IF_ERROR(Register(std::move(f)));
  if (raw->label_names().empty()) raw->Get();
  return raw;
}

Status MetricsRegistry::AddCallback(std::string name, std::string help, MetricType type,
                                    std::function<double()> read) {
  if (!read) return InvalidArgument("callback metric without a callback");
  return AddCollector(std::move(name), std::move(help), type, {},
                      [read = std::move(read)] { return std::vector<Sample>{{{}, read()}}; });
}

Status MetricsRegistry::AddCollector(std::string name, std::string help, MetricType type,
                                     std::vector<std::string> label_names,
                                     std::function<std::vector<Sample>()> collect) {
  if (type == MetricType::kHistogram) {
    return InvalidArgument("collected metrics are counters or gauges");
  }
  if (!collect) return InvalidArgument("collector without a callback");
  return Register(std::make_unique<CollectorFamily>(std::move(name), std::move(help), type,
                                                    std::move(label_names), std::move(collect)));
}

std::string MetricsRegistry::RenderText() const {
  std::string out;
  std::lock_guard lock(mu_);
  for (const auto& f : families_) f->Render(out);
  return out;
}

}  // namespace qcloud
