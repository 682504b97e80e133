#pragma once

// qcloud::monitor::Client — the C++ SDK a program uses to report its own
// metrics to qcloud-monitord (or to any Prometheus remote-write receiver):
//
//   auto client = Client::Open({.endpoint = "127.0.0.1:9090",
//                               .labels = {{"job", "billing"}, {"instance", "host-7"}}}).value();
//   Counter& orders = client->GetCounter("orders_total", {{"region", "gz"}});
//   Gauge& queue = client->GetGauge("queue_depth");
//   Histogram& latency = client->GetHistogram("request_seconds", {0.01, 0.1, 1});
//   orders.Add(1); queue.Set(17); latency.Observe(0.042);
//
// The caller never blocks: updates are atomic operations on the metric.
// Every flush_interval (on the injected Clock) a background thread takes a
// sample of every metric into a bounded queue and sends the queue as
// remote-write batches (snappy + protobuf, remote_write.h) over HTTP/1.1.
// A batch that fails (connection refused, a 5xx, a timeout) stays queued
// and is retried with exponential backoff from min_backoff to max_backoff;
// a 4xx drops it (it would never be taken). When the queue is full the
// oldest samples are dropped and counted (stats().dropped_samples): memory
// stays bounded while the receiver is away.
//
// Histograms are reported as Prometheus does: name_bucket{le="..."}
// (cumulative, +Inf included), name_sum, name_count.
//
// Thread safety: everything, from any thread. Metrics live as long as the
// client.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "qcloud/core/clock.h"
#include "qcloud/core/export.h"
#include "qcloud/core/result.h"
#include "qcloud/core/status.h"
#include "qcloud/monitor/labels.h"

namespace qcloud::monitor {

struct ClientOptions {
  std::string endpoint = "127.0.0.1:9090";  // HOST:PORT of the receiver (endpoint.h grammar)
  std::string path = "/api/v1/write";       // its remote-write path
  std::vector<Label> labels;                // added to every series (job, instance, ...)
  std::chrono::milliseconds flush_interval{10000};  // how often metrics are sampled and sent
  size_t max_queued_samples = 1'000'000;    // beyond: the oldest are dropped
  size_t max_batch_samples = 10'000;        // per request
  std::chrono::milliseconds min_backoff{100};
  std::chrono::milliseconds max_backoff{10000};
  std::chrono::milliseconds timeout{5000};  // connect, send and receive, each
  bool background = true;  // false: no thread; call Flush() yourself (tests, one-shot jobs)
  Clock* clock = nullptr;  // not owned; null = RealClock()
};

class QCLOUD_EXPORT Counter {
 public:
  void Add(double v = 1) noexcept;  // v >= 0 (negative values are ignored)
  double Value() const noexcept { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

class QCLOUD_EXPORT Gauge {
 public:
  void Set(double v) noexcept { value_.store(v, std::memory_order_relaxed); }
  void Add(double d) noexcept;
  double Value() const noexcept { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

class QCLOUD_EXPORT Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void Observe(double v) noexcept;
  const std::vector<double>& bounds() const noexcept { return bounds_; }
  // Cumulative counts per bound, then +Inf; sum.
  std::vector<uint64_t> Cumulative() const;
  double Sum() const noexcept { return sum_.load(std::memory_order_relaxed); }

 private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> counts_;  // bounds_.size() + 1
  std::atomic<double> sum_{0};
};

struct ClientStats {
  uint64_t flushes = 0;
  uint64_t samples_sent = 0;      // acknowledged by the receiver
  uint64_t samples_queued = 0;    // waiting now
  uint64_t dropped_samples = 0;   // queue full, or a batch the receiver refused (4xx)
  uint64_t failed_sends = 0;      // attempts that will be retried
  std::string last_error;
};

class QCLOUD_EXPORT Client {
 public:
  // kInvalidArgument for a bad endpoint or labels. The receiver need not be
  // up: sends are retried.
  static Result<std::unique_ptr<Client>> Open(const ClientOptions& options);
  ~Client();  // stops the thread; one last flush is attempted once
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // The metric named `name` with these labels (created on first use; the
  // same object afterwards). Names and labels follow Prometheus's rules; a
  // bad one is a programming error (QCLOUD_CHECK).
  Counter& GetCounter(const std::string& name, const std::vector<Label>& labels = {});
  Gauge& GetGauge(const std::string& name, const std::vector<Label>& labels = {});
  Histogram& GetHistogram(const std::string& name, std::vector<double> bounds, const std::vector<Label>& labels = {});

  // Samples every metric now, then sends what is queued and due (respecting
  // the backoff). Returns the last send's error, if any.
  Status Flush();
  ClientStats stats() const;

  struct Impl;

 private:
  explicit Client(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace qcloud::monitor
