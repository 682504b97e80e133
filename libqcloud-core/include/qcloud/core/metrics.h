#pragma once

// Metrics registry: counters, gauges and histograms with labels, rendered in
// the Prometheus text exposition format (version 0.0.4), which Prometheus,
// promtool and every exporter-aware tool read.
//
//   MetricsRegistry registry;
//   auto* requests = registry.AddCounter("qcloud_kv_requests_total",
//                                        "Requests by command.", {"cmd"}).value();
//   requests->WithLabels({"get"}).Increment();
//   std::string page = registry.RenderText();
//
// Thread safety: everything may be called concurrently. Updating a metric is
// one relaxed atomic operation; WithLabels() takes the family's lock, so hot
// paths look a child up once and keep the reference (children live as long
// as the registry).

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "qcloud/core/export.h"
#include "qcloud/core/result.h"
#include "qcloud/core/status.h"

namespace qcloud {

// A monotonically increasing count (requests, bytes, errors).
class QCLOUD_EXPORT Counter {
 public:
  void Increment(uint64_t n = 1) noexcept { value_.fetch_add(n, std::memory_order_relaxed); }
  uint64_t Value() const noexcept { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> value_{0};
};

// A value that goes up and down (connections, bytes in use).
class QCLOUD_EXPORT Gauge {
 public:
  void Set(double v) noexcept { value_.store(v, std::memory_order_relaxed); }
  void Add(double d) noexcept;
  void Sub(double d) noexcept { Add(-d); }
  double Value() const noexcept { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

// Counts observations into cumulative buckets (latencies, sizes).
class QCLOUD_EXPORT Histogram {
 public:
  // `bounds`: strictly increasing finite upper bounds; +Inf is implicit.
  explicit Histogram(std::vector<double> bounds);
  void Observe(double v) noexcept;

  const std::vector<double>& bounds() const noexcept { return bounds_; }
  // Per-bucket (non-cumulative) counts; the last is the +Inf bucket.
  std::vector<uint64_t> BucketCounts() const;
  uint64_t Count() const noexcept { return count_.load(std::memory_order_relaxed); }
  double Sum() const noexcept { return sum_.load(std::memory_order_relaxed); }

 private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> buckets_;  // bounds_.size() + 1
  std::atomic<uint64_t> count_{0};
  std::atomic<double> sum_{0.0};
};

// Buckets for latencies in seconds, 50 us .. 10 s.
QCLOUD_EXPORT std::vector<double> LatencyBuckets();
// `count` buckets starting at `start`, each `factor` times the previous.
QCLOUD_EXPORT std::vector<double> ExponentialBuckets(double start, double factor, int count);

enum class MetricType { kCounter, kGauge, kHistogram };

namespace detail {
class QCLOUD_EXPORT FamilyBase {
 public:
  FamilyBase(std::string name, std::string help, MetricType type,
             std::vector<std::string> label_names);
  virtual ~FamilyBase() = default;
  const std::string& name() const noexcept { return name_; }
  const std::string& help() const noexcept { return help_; }
  MetricType type() const noexcept { return type_; }
  const std::vector<std::string>& label_names() const noexcept { return label_names_; }
  virtual void Render(std::string& out) const = 0;

 protected:
  // Checks (QCLOUD_CHECK) that `values` has one value per label name.
  void CheckArity(size_t n) const;

  std::string name_;
  std::string help_;
  MetricType type_;
  std::vector<std::string> label_names_;
  mutable std::mutex mu_;
};
}  // namespace detail

// All children of one metric name, one per distinct label-value tuple.
template <typename M>
class QCLOUD_EXPORT Family final : public detail::FamilyBase {
 public:
  using FamilyBase::FamilyBase;

  // The child for these label values (in label_names() order), created on
  // first use. Any string is a valid label value; it is escaped on output.
  // Precondition: values.size() == label_names().size().
  M& WithLabels(std::initializer_list<std::string_view> values) {
    return WithLabels(std::vector<std::string>(values.begin(), values.end()));
  }
  M& WithLabels(const std::vector<std::string>& values);
  // The child of a family without labels.
  M& Get() { return WithLabels(std::vector<std::string>{}); }

  void Render(std::string& out) const override;

 private:
  friend class MetricsRegistry;
  std::vector<double> bounds_;  // histograms only
  std::map<std::vector<std::string>, std::unique_ptr<M>> children_;
};

// Instantiated once, in metrics.cc.
extern template class Family<Counter>;
extern template class Family<Gauge>;
extern template class Family<Histogram>;

using CounterFamily = Family<Counter>;
using GaugeFamily = Family<Gauge>;
using HistogramFamily = Family<Histogram>;

class QCLOUD_EXPORT MetricsRegistry {
 public:
  MetricsRegistry();
  ~MetricsRegistry();
  MetricsRegistry(const MetricsRegistry&) = delete;
  MetricsRegistry& operator=(const MetricsRegistry&) = delete;

  // Registers a family. Names follow Prometheus: metric [a-zA-Z_:][a-zA-Z0-9_:]*,
  // label [a-zA-Z_][a-zA-Z0-9_]* not starting with "__" (and not "le" for
  // histograms). Errors: kInvalidArgument for a bad name, kAlreadyExists
  // when the name is taken. The family lives as long as the registry.
  Result<CounterFamily*> AddCounter(std::string name, std::string help,
                                    std::vector<std::string> label_names = {});
  Result<GaugeFamily*> AddGauge(std::string name, std::string help,
                                std::vector<std::string> label_names = {});
  Result<HistogramFamily*> AddHistogram(std::string name, std::string help,
                                        std::vector<double> bounds,
                                        std::vector<std::string> label_names = {});

  // A metric without labels whose value is read at render time, for state a
  // library already keeps (items stored, bytes in use). `read` runs on the
  // rendering thread and must be thread-safe.
  Status AddCallback(std::string name, std::string help, MetricType type,
                     std::function<double()> read);

  // A labelled counter or gauge family whose samples are produced at render
  // time (values read from /proc, a library's stats struct). Each sample
  // must carry one value per label name. `collect` runs on the rendering
  // thread, under the registry's lock: it must not call into the registry.
  struct Sample {
    std::vector<std::string> label_values;
    double value = 0;
  };
  Status AddCollector(std::string name, std::string help, MetricType type,
                      std::vector<std::string> label_names,
                      std::function<std::vector<Sample>()> collect);

  // The whole registry in the text exposition format, families in
  // registration order.
  std::string RenderText() const;

  // Content-Type of RenderText()'s output.
  static constexpr std::string_view kContentType = "text/plain; version=0.0.4; charset=utf-8";

 private:
  Status Register(std::unique_ptr<detail::FamilyBase> family);

  mutable std::mutex mu_;
  std::deque<std::unique_ptr<detail::FamilyBase>> families_;
};

// Escapes a label value for the text format: \ " and newline.
QCLOUD_EXPORT std::string EscapeLabelValue(std::string_view v);
// Formats a sample value as Prometheus does: integers without a fraction,
// shortest round-trip otherwise, "+Inf", "-Inf", "NaN".
QCLOUD_EXPORT std::string FormatMetricValue(double v);

}  // namespace qcloud
