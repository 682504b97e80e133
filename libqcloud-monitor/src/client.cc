#include "qcloud/monitor/client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <thread>

#include <fmt/format.h>

#include "qcloud/core/check.h"
#include "qcloud/core/endpoint.h"
#include "monitor/http_post.h"
#include "qcloud/monitor/remote_write.h"

namespace qcloud::monitor {

namespace {

void AtomicAdd(std::atomic<double>& a, double d) noexcept {
  double cur = a.load(std::memory_order_relaxed);
  while (!a.compare_exchange_weak(cur, cur + d, std::memory_order_relaxed)) {
  }
}

std::string Key(const std::string& name, const std::vector<Label>& labels) {
  std::string k = name;
  for (const Label& l : labels) k += "\xff" + l.name + "\xff" + l.value;
  return k;
}

}  // namespace

void Counter::Add(double v) noexcept {
  if (v >= 0) AtomicAdd(value_, v);
}

void Gauge::Add(double d) noexcept { AtomicAdd(value_, d); }

Histogram::Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)) {
  std::sort(bounds_.begin(), bounds_.end());
  counts_ = std::make_unique<std::atomic<uint64_t>[]>(bounds_.size() + 1);
}

void Histogram::Observe(double v) noexcept {
  const size_t i = static_cast<size_t>(std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin());
  counts_[i].fetch_add(1, std::memory_order_relaxed);
  AtomicAdd(sum_, v);
}

std::vector<uint64_t> Histogram::Cumulative() const {
  std::vector<uint64_t> out(bounds_.size() + 1);
  uint64_t total = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    total += counts_[i].load(std::memory_order_relaxed);
    out[i] = total;
  }
  return out;
}

struct Client::Impl {
  ClientOptions o;
  Endpoint ep;
  Clock* clock = nullptr;

  std::mutex metrics_mu;
  struct Entry {
    std::string name;
    std::vector<Label> labels;
    std::unique_ptr<Counter> counter;
    std::unique_ptr<Gauge> gauge;
    std::unique_ptr<Histogram> histogram;
  };
  std::map<std::string, std::unique_ptr<Entry>> metrics;

  mutable std::mutex queue_mu;  // queue, stats, backoff
  std::deque<std::pair<Labels, Sample>> queue;
  ClientStats st;
  MonoTime next_attempt{};
  std::chrono::milliseconds backoff{0};

  std::mutex flush_mu;  // one flush at a time
  std::mutex thread_mu;
  std::condition_variable cv;
  bool stop = false;
  std::thread thread;

  Entry& Get(const std::string& name, const std::vector<Label>& labels) {
    std::lock_guard lock(metrics_mu);
    auto& e = metrics[Key(name, labels)];
    if (!e) {
      QCLOUD_CHECK_MSG(ValidMetricName(name), "monitor client: bad metric name");
      std::vector<Label> all = o.labels;
      all.insert(all.end(), labels.begin(), labels.end());
      all.push_back({std::string(kMetricNameLabel), name});
      QCLOUD_CHECK_MSG(Labels::FromPairs(all).ok(), "monitor client: bad labels");
      e = std::make_unique<Entry>();
      e->name = name;
      e->labels = std::move(all);
    }
    return *e;
  }

  void Enqueue(std::vector<Label> labels, const std::string& name, int64_t t, double v) {
    for (Label& l : labels) {
      if (l.name == kMetricNameLabel) l.value = name;
    }
    auto parsed = Labels::FromPairs(std::move(labels));
    if (!parsed.ok()) return;
    queue.emplace_back(std::move(parsed).value(), Sample{t, v});
  }

  // Takes a sample of every metric into the queue.
  void Collect() {
    const int64_t t =
        std::chrono::duration_cast<std::chrono::milliseconds>(clock->WallNow().time_since_epoch()).count();
    std::vector<std::tuple<std::vector<Label>, std::string, double>> rows;
    {
      std::lock_guard lock(metrics_mu);
      for (const auto& [key, e] : metrics) {
        if (e->counter) rows.emplace_back(e->labels, e->name, e->counter->Value());
        if (e->gauge) rows.emplace_back(e->labels, e->name, e->gauge->Value());
        if (e->histogram) {
          const auto cum = e->histogram->Cumulative();
          const auto& b = e->histogram->bounds();
          for (size_t i = 0; i < cum.size(); ++i) {
            std::vector<Label> l = e->labels;
            l.push_back({"le", i < b.size() ? fmt::format("{}", b[i]) : "+Inf"});
            rows.emplace_back(std::move(l), e->name + "_bucket", static_cast<double>(cum[i]));
          }
          rows.emplace_back(e->labels, e->name + "_sum", e->histogram->Sum());
          rows.emplace_back(e->labels, e->name + "_count", static_cast<double>(cum.back()));
        }
      }
    }
    std::lock_guard lock(queue_mu);
    for (auto& [labels, name, v] : rows) Enqueue(std::move(labels), name, t, v);
    while (queue.size() > o.max_queued_samples) {
      queue.pop_front();
      st.dropped_samples++;
    }
    st.flushes++;
  }

  // Sends what is queued, batch by batch, while sends succeed and none is
  // held back by the backoff.
  Status Send() {
    Status last;
    for (;;) {
      std::vector<SeriesSamples> batch;
      size_t taken = 0;
      {
        std::lock_guard lock(queue_mu);
        if (queue.empty() || clock->MonotonicNow() < next_attempt) return last;
        std::map<Labels, size_t> index;
        for (auto it = queue.begin(); it != queue.end() && taken < o.max_batch_samples; ++it, ++taken) {
          auto [pos, fresh] = index.try_emplace(it->first, batch.size());
          if (fresh) batch.push_back({it->first, {}});
          batch[pos->second].samples.push_back(it->second);
        }
      }
      const std::string body = EncodeRemoteWrite(batch);
      Result<int> status = detail::HttpPost(ep, o.path,
                                            "Content-Type: application/x-protobuf\r\nContent-Encoding: snappy\r\n"
                                            "X-Prometheus-Remote-Write-Version: 0.1.0\r\n",
                                            body, o.timeout);
      std::lock_guard lock(queue_mu);
      if (status.ok() && *status / 100 == 2) {
        queue.erase(queue.begin(), queue.begin() + static_cast<ptrdiff_t>(std::min(taken, queue.size())));
        st.samples_sent += taken;
        backoff = std::chrono::milliseconds(0);
        continue;
      }
      if (status.ok() && *status / 100 == 4 && *status != 429) {
        // Refused for good: retrying would not help.
        queue.erase(queue.begin(), queue.begin() + static_cast<ptrdiff_t>(std::min(taken, queue.size())));
        st.dropped_samples += taken;
        st.last_error = fmt::format("the receiver refused a batch: HTTP {}", *status);
        last = Status(Errc::kInvalidArgument, st.last_error);
        continue;
      }
      st.failed_sends++;
      st.last_error = status.ok() ? fmt::format("HTTP {}", *status) : status.status().ToString();
      backoff = backoff.count() == 0 ? o.min_backoff : std::min(o.max_backoff, backoff * 2);
      next_attempt = clock->MonotonicNow() + backoff;
      return Status(Errc::kUnavailable, st.last_error);
    }
  }
};

Client::Client(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Result<std::unique_ptr<Client>> Client::Open(const ClientOptions& options) {
  auto impl = std::make_unique<Impl>();
  impl->o = options;
  impl->clock = options.clock ? options.clock : &RealClock();
  QCLOUD_ASSIGN_OR_RETURN(impl->ep, ParseEndpoint(options.endpoint));
  if (impl->ep.port == 0) return InvalidArgument("monitor client: the endpoint needs a port");
  QCLOUD_RETURN_IF_ERROR(Labels::FromPairs(options.labels).status());
  if (options.max_batch_samples == 0 || options.flush_interval.count() <= 0) {
    return InvalidArgument("monitor client: max_batch_samples and flush_interval must be positive");
  }
  std::unique_ptr<Client> c(new Client(std::move(impl)));
  if (options.background) {
    Impl* raw = c->impl_.get();
    Client* self = c.get();
    raw->thread = std::thread([raw, self] {
      std::unique_lock lock(raw->thread_mu);
      while (!raw->stop) {
        raw->cv.wait_for(lock, raw->o.flush_interval);
        if (raw->stop) break;
        lock.unlock();
        (void)self->Flush();
        lock.lock();
      }
    });
  }
  return c;
}

Client::~Client() {
  if (impl_->thread.joinable()) {
    {
      std::lock_guard lock(impl_->thread_mu);
      impl_->stop = true;
    }
    impl_->cv.notify_all();
    impl_->thread.join();
  }
  impl_->next_attempt = MonoTime{};  // one last try, whatever the backoff says
  (void)Flush();
}

Counter& Client::GetCounter(const std::string& name, const std::vector<Label>& labels) {
  auto& e = impl_->Get(name, labels);
  std::lock_guard lock(impl_->metrics_mu);
  QCLOUD_CHECK_MSG(!e.gauge && !e.histogram, "monitor client: the name is taken by another kind");
  if (!e.counter) e.counter = std::make_unique<Counter>();
  return *e.counter;
}

Gauge& Client::GetGauge(const std::string& name, const std::vector<Label>& labels) {
  auto& e = impl_->Get(name, labels);
  std::lock_guard lock(impl_->metrics_mu);
  QCLOUD_CHECK_MSG(!e.counter && !e.histogram, "monitor client: the name is taken by another kind");
  if (!e.gauge) e.gauge = std::make_unique<Gauge>();
  return *e.gauge;
}

Histogram& Client::GetHistogram(const std::string& name, std::vector<double> bounds, const std::vector<Label>& labels) {
  auto& e = impl_->Get(name, labels);
  std::lock_guard lock(impl_->metrics_mu);
  QCLOUD_CHECK_MSG(!e.counter && !e.gauge, "monitor client: the name is taken by another kind");
  if (!e.histogram) e.histogram = std::make_unique<Histogram>(std::move(bounds));
  return *e.histogram;
}

Status Client::Flush() {
  std::lock_guard lock(impl_->flush_mu);
  impl_->Collect();
  return impl_->Send();
}

ClientStats Client::stats() const {
  std::lock_guard lock(impl_->queue_mu);
  ClientStats s = impl_->st;
  s.samples_queued = impl_->queue.size();
  return s;
}

}  // namespace qcloud::monitor
