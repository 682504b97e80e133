// monitor_loadgen: Prometheus remote-write load generator for
// bench/monitor/compare.sh. It POSTs a deterministic node-exporter-like
// mix to any remote-write receiver (qcloud-monitord, Prometheus 2.42 with
// --web.enable-remote-write-receiver, VictoriaMetrics) and prints one JSON
// line with what it sent and how fast.
//
//   monitor_loadgen --url http://127.0.0.1:9090/api/v1/write [--series 10000]
//       [--span 24h] [--interval 60s] [--end-ms MS] [--batch 5000]
//       [--connections 2] [--seed 20] [--server-pid PID]
//       [--write-bodies FILE | --bodies FILE] [--dry-run]
//
// The mix. Series come in "instances" of 100 (instance="host-NNNN:9100",
// job="node"; the last instance may be partial), like one node_exporter:
//   32 node_cpu_seconds_total{cpu="0".."3",mode=8 modes}: counters of
//      USER_HZ ticks / 100 (two decimals)
//   10 node_memory_*_bytes: integer gauges moving by whole 4 KiB pages
//      (MemTotal constant)
//   10 node_network_{receive,transmit}_{bytes,packets}_total and
//      node_network_receive_errs_total{device="eth0","eth1"}: integer counters
//    4 node_load1/5/15 (two random decimals), node_filefd_allocated
//   14 http_request_duration_seconds: 12 cumulative _bucket{le} counters,
//      _sum (a float that is no short decimal) and _count
//   10 node_disk_*{device="sda","sdb"}: byte and op counters,
//      io_time_seconds_total (three decimals)
//   10 node_hwmon_temp_celsius{sensor}: random-walk floats (no short decimal)
//   10 node_filesystem_{size,avail}_bytes{mountpoint}: constant / slowly
//      moving integers
// Every series gets one sample per --interval, the last one at --end-ms
// (default: now rounded down to the hour), --span / --interval samples in
// all. Each instance has its own random stream (seeded from --seed and the
// instance), so the values do not depend on --connections or --batch.
//
// Order. Remote-write receivers refuse a sample older than the series'
// newest, and Prometheus's also refuses one older than its head's newest
// sample minus an hour. So the samples go out in time order: instances are
// split among the connections (instance k on connection k % C), each
// connection sends its instances' samples step by step (all of them at
// t0, then at t0 + interval, ...), in requests of --batch samples (one
// sample per TimeSeries, as Prometheus sends them; a request holds at most
// a few steps), and no connection starts a step more than 10 minutes of
// data ahead of the slowest one.
//
// Bodies. All request bodies (protobuf + snappy, EncodeRemoteWrite) are
// built before the timed phase, so the sending measures the receiver, not
// the encoder. --write-bodies FILE builds them into FILE and exits;
// --bodies FILE sends those (the run's parameters are read from the file),
// which is how compare.sh feeds the same bytes to every system.
//
// HTTP/1.1 with keep-alive over one TCP connection per sender thread;
// headers as Prometheus sends them (Content-Encoding: snappy, Content-Type:
// application/x-protobuf, X-Prometheus-Remote-Write-Version: 0.1.0). A 2xx
// answer is success; a 5xx or a broken connection is retried up to 5 times
// (100 ms, 200 ms, ... apart); whatever still fails, and any other answer,
// is an error: counted, and the first few printed to stderr.
//
// Output (stdout, one line): {"samples":..,"requests":..,"errors":..,
// "failed_samples":..,"retries":..,"seconds":..,"samples_per_sec":..,
// "server_cpu_seconds":..,"samples_per_server_cpu_sec":..,
// "client_cpu_seconds":..,"body_bytes":..,"p50_ms":..,"p99_ms":..,
// "max_ms":..,"first_ms":..,"end_ms":..,"series":..,"steps":..,
// "gen_seconds":..}. seconds: from the first request to the last answer.
// server_cpu_seconds: utime + stime of --server-pid (all threads) over the
// same window, from /proc/PID/stat. Exit status: 0 ok, 1 usage or setup
// failure, 2 any request error.

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <mutex>
#include <optional>
#include <span>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "mix.h"
#include "qcloud/monitor/labels.h"
#include "qcloud/monitor/remote_write.h"
#include "qcloud/monitor/tsdb.h"

namespace {

using qcloud::monitor::Labels;
using qcloud::monitor::SeriesSamples;
using namespace monitor_mix;

constexpr int64_t kMaxLeadMs = 10 * 60 * 1000;  // how far a connection may run ahead
constexpr int kMaxAttempts = 6;                 // a request and 5 retries
constexpr int kErrorsPrinted = 5;
constexpr char kBodiesMagic[] = "monitor_loadgen bodies v1";

struct Options {
  std::string url = "http://127.0.0.1:9090/api/v1/write";
  int series = 10000;
  int64_t span_ms = 24 * 3600 * 1000LL;
  int64_t interval_ms = 60 * 1000;
  std::optional<int64_t> end_ms;
  int batch = 5000;
  int connections = 2;
  uint64_t seed = 20;
  int server_pid = 0;
  std::string write_bodies;
  std::string bodies;
  bool dry_run = false;
};

[[noreturn]] void Die(const std::string& msg) {
  std::cerr << "monitor_loadgen: " << msg << "\n";
  std::exit(1);
}

// "90s", "15m", "24h", "2d", "500ms" or plain milliseconds.
int64_t ParseDurationMs(std::string_view s) {
  size_t i = 0;
  while (i < s.size() && (std::isdigit(static_cast<unsigned char>(s[i])) != 0)) ++i;
  if (i == 0) Die("bad duration " + std::string(s));
  const int64_t n = std::stoll(std::string(s.substr(0, i)));
  const std::string_view unit = s.substr(i);
  if (unit.empty() || unit == "ms") return n;
  if (unit == "s") return n * 1000;
  if (unit == "m") return n * 60 * 1000;
  if (unit == "h") return n * 3600 * 1000;
  if (unit == "d") return n * 86400 * 1000;
  Die("bad duration unit in " + std::string(s));
}

Options ParseFlags(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) Die(a + " needs a value");
      return argv[++i];
    };
    if (a == "--url")
      o.url = next();
    else if (a == "--series")
      o.series = std::stoi(next());
    else if (a == "--span")
      o.span_ms = ParseDurationMs(next());
    else if (a == "--interval")
      o.interval_ms = ParseDurationMs(next());
    else if (a == "--end-ms")
      o.end_ms = std::stoll(next());
    else if (a == "--batch")
      o.batch = std::stoi(next());
    else if (a == "--connections")
      o.connections = std::stoi(next());
    else if (a == "--seed")
      o.seed = std::stoull(next());
    else if (a == "--server-pid")
      o.server_pid = std::stoi(next());
    else if (a == "--write-bodies")
      o.write_bodies = next();
    else if (a == "--bodies")
      o.bodies = next();
    else if (a == "--dry-run")
      o.dry_run = true;
    else if (a == "-h" || a == "--help") {
      std::cout << "usage: monitor_loadgen --url URL [--series N] [--span 24h] [--interval 60s] "
                   "[--end-ms MS]\n"
                   "  [--batch 5000] [--connections 2] [--seed 20] [--server-pid PID]\n"
                   "  [--write-bodies FILE | --bodies FILE] [--dry-run]   (see loadgen.cc)\n";
      std::exit(0);
    } else {
      Die("unknown argument " + a);
    }
  }
  if (o.series <= 0 || o.batch <= 0 || o.connections <= 0 || o.interval_ms <= 0 ||
      o.span_ms < o.interval_ms) {
    Die("--series, --batch, --connections, --interval must be > 0 and --span >= --interval");
  }
  return o;
}

struct Body {
  int64_t first_step = 0;
  int64_t last_step = 0;
  uint32_t samples = 0;
  std::string bytes;
};

struct Plan {
  int series = 0, connections = 0, batch = 0;
  int64_t interval_ms = 0, first_ms = 0, end_ms = 0, steps = 0;
  uint64_t seed = 0;
  std::vector<std::vector<Body>> bodies;  // per connection, in send order

  std::string Header() const {
    std::ostringstream h;
    h << kBodiesMagic << " series=" << series << " connections=" << connections
      << " batch=" << batch << " interval_ms=" << interval_ms << " first_ms=" << first_ms
      << " end_ms=" << end_ms << " steps=" << steps << " seed=" << seed;
    return h.str();
  }
};

// Builds every request body, connection by connection, step by step.
Plan Generate(const Options& o) {
  Plan p;
  p.series = o.series;
  p.connections = o.connections;
  p.batch = o.batch;
  p.interval_ms = o.interval_ms;
  p.seed = o.seed;
  p.steps = o.span_ms / o.interval_ms;
  if (o.end_ms) {
    p.end_ms = *o.end_ms;
  } else {
    const int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count();
    p.end_ms = now / 3600000 * 3600000;
  }
  p.first_ms = p.end_ms - (p.steps - 1) * o.interval_ms;
  const std::vector<Template> templates = InstanceTemplates();
  const int instances = (o.series + kSeriesPerInstance - 1) / kSeriesPerInstance;
  // A request holds at most this many steps (half the lead a connection may have).
  const int64_t max_steps_per_body = std::max<int64_t>(1, kMaxLeadMs / 2 / o.interval_ms);
  p.bodies.resize(static_cast<size_t>(o.connections));
  for (int c = 0; c < o.connections; ++c) {
    std::vector<Instance> mine;
    for (int k = c; k < instances; k += o.connections) {
      mine.emplace_back(k, std::min(kSeriesPerInstance, o.series - k * kSeriesPerInstance), o.seed,
                        templates);
    }
    std::vector<SeriesSamples> batch;
    batch.reserve(static_cast<size_t>(o.batch));
    int64_t batch_first = 0;
    auto flush = [&](int64_t last_step) {
      if (batch.empty()) return;
      p.bodies[static_cast<size_t>(c)].push_back({batch_first, last_step,
                                                  static_cast<uint32_t>(batch.size()),
                                                  qcloud::monitor::EncodeRemoteWrite(batch)});
      batch.clear();
    };
    for (int64_t step = 0; step < p.steps; ++step) {
      const int64_t t = p.first_ms + step * o.interval_ms;
      for (Instance& inst : mine) {
        inst.Advance();
        for (size_t j = 0; j < inst.size(); ++j) {
          if (batch.empty()) batch_first = step;
          batch.push_back({inst.labels(j), {{t, inst.value(j)}}});
          if (batch.size() == static_cast<size_t>(o.batch)) flush(step);
        }
      }
      if (!batch.empty() && step + 1 - batch_first >= max_steps_per_body) flush(step);
    }
    flush(p.steps - 1);
  }
  return p;
}

void WriteBodies(const Plan& p, const std::string& path) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  if (!f) Die("cannot write " + path);
  f << p.Header() << "\n";
  for (size_t c = 0; c < p.bodies.size(); ++c) {
    for (const Body& b : p.bodies[c]) {
      f << c << ' ' << b.first_step << ' ' << b.last_step << ' ' << b.samples << ' '
        << b.bytes.size() << '\n';
      f.write(b.bytes.data(), static_cast<std::streamsize>(b.bytes.size()));
    }
  }
  if (!f.flush()) Die("write to " + path + " failed");
}

Plan ReadBodies(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) Die("cannot read " + path);
  std::string header;
  std::getline(f, header);
  if (header.rfind(kBodiesMagic, 0) != 0) Die(path + " is not a bodies file");
  Plan p;
  std::istringstream h(header.substr(sizeof kBodiesMagic - 1));
  std::string kv;
  while (h >> kv) {
    const size_t eq = kv.find('=');
    const std::string k = kv.substr(0, eq);
    const int64_t v = std::stoll(kv.substr(eq + 1));
    if (k == "series")
      p.series = static_cast<int>(v);
    else if (k == "connections")
      p.connections = static_cast<int>(v);
    else if (k == "batch")
      p.batch = static_cast<int>(v);
    else if (k == "interval_ms")
      p.interval_ms = v;
    else if (k == "first_ms")
      p.first_ms = v;
    else if (k == "end_ms")
      p.end_ms = v;
    else if (k == "steps")
      p.steps = v;
    else if (k == "seed")
      p.seed = static_cast<uint64_t>(v);
  }
  p.bodies.resize(static_cast<size_t>(p.connections));
  size_t c = 0, size = 0;
  Body b;
  while (f >> c >> b.first_step >> b.last_step >> b.samples >> size) {
    f.get();  // the newline
    if (c >= p.bodies.size()) Die(path + ": bad connection index");
    b.bytes.resize(size);
    if (!f.read(b.bytes.data(), static_cast<std::streamsize>(size))) Die(path + " is truncated");
    p.bodies[c].push_back(std::move(b));
    b = Body{};
  }
  return p;
}

struct Url {
  std::string host, port, path;
};

Url ParseUrl(const std::string& url) {
  constexpr std::string_view kScheme = "http://";
  if (url.rfind(kScheme, 0) != 0) Die("--url must start with http://");
  const std::string rest = url.substr(kScheme.size());
  const size_t slash = rest.find('/');
  const std::string hostport = rest.substr(0, slash);
  Url u;
  u.path = slash == std::string::npos ? "/" : rest.substr(slash);
  const size_t colon = hostport.rfind(':');
  u.host = hostport.substr(0, colon);
  u.port = colon == std::string::npos ? "80" : hostport.substr(colon + 1);
  return u;
}

// One HTTP/1.1 keep-alive connection; blocking sockets.
class HttpConnection {
 public:
  explicit HttpConnection(Url url) : url_(std::move(url)) {}
  ~HttpConnection() { Close(); }
  HttpConnection(const HttpConnection&) = delete;
  HttpConnection& operator=(const HttpConnection&) = delete;

  // The status code, or -1 (and *error) when the connection broke.
  int Post(const std::string& body, std::string* answer, std::string* error) {
    if (fd_ < 0 && !Connect(error)) return -1;
    const std::string head =
        "POST " + url_.path + " HTTP/1.1\r\nHost: " + url_.host + ":" + url_.port +
        "\r\nUser-Agent: qcloud-monitor-loadgen\r\nContent-Type: application/x-protobuf\r\n"
        "Content-Encoding: snappy\r\nX-Prometheus-Remote-Write-Version: 0.1.0\r\n"
        "Content-Length: " +
        std::to_string(body.size()) + "\r\n\r\n";
    if (!SendAll(head, body, error)) return Fail();
    return ReadAnswer(answer, error);
  }

 private:
  bool Connect(std::string* error) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    if (int rc = ::getaddrinfo(url_.host.c_str(), url_.port.c_str(), &hints, &res); rc != 0) {
      *error = std::string("getaddrinfo: ") + gai_strerror(rc);
      return false;
    }
    for (addrinfo* a = res; a != nullptr; a = a->ai_next) {
      fd_ = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
      if (fd_ < 0) continue;
      if (::connect(fd_, a->ai_addr, a->ai_addrlen) == 0) break;
      ::close(fd_);
      fd_ = -1;
    }
    ::freeaddrinfo(res);
    if (fd_ < 0) {
      *error = std::string("connect: ") + std::strerror(errno);
      return false;
    }
    const int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    buf_.clear();
    return true;
  }

  void Close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  int Fail() {
    Close();
    return -1;
  }

  bool SendAll(const std::string& head, const std::string& body, std::string* error) {
    size_t done = 0;
    const size_t total = head.size() + body.size();
    while (done < total) {
      iovec iov[2];
      int n = 0;
      if (done < head.size()) {
        iov[n++] = {const_cast<char*>(head.data() + done), head.size() - done};
        iov[n++] = {const_cast<char*>(body.data()), body.size()};
      } else {
        iov[n++] = {const_cast<char*>(body.data() + (done - head.size())), total - done};
      }
      msghdr msg{};
      msg.msg_iov = iov;
      msg.msg_iovlen = static_cast<size_t>(n);
      const ssize_t w = ::sendmsg(fd_, &msg, MSG_NOSIGNAL);
      if (w < 0) {
        if (errno == EINTR) continue;
        *error = std::string("send: ") + std::strerror(errno);
        return false;
      }
      done += static_cast<size_t>(w);
    }
    return true;
  }

  // Reads into buf_ until it holds at least `n` bytes; false on EOF/error.
  bool Fill(size_t n, std::string* error) {
    char tmp[65536];
    while (buf_.size() < n) {
      const ssize_t r = ::recv(fd_, tmp, sizeof tmp, 0);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) {
        *error = r == 0 ? "connection closed by the server"
                        : std::string("recv: ") + std::strerror(errno);
        return false;
      }
      buf_.append(tmp, static_cast<size_t>(r));
    }
    return true;
  }

  // Reads until `delim` is in buf_; its position (after it), or npos.
  size_t FillUntil(std::string_view delim, std::string* error) {
    size_t pos;
    while ((pos = buf_.find(delim)) == std::string::npos) {
      if (!Fill(buf_.size() + 1, error)) return std::string::npos;
    }
    return pos + delim.size();
  }

  int ReadAnswer(std::string* answer, std::string* error) {
    const size_t head_end = FillUntil("\r\n\r\n", error);
    if (head_end == std::string::npos) return Fail();
    std::string head = buf_.substr(0, head_end);
    buf_.erase(0, head_end);
    int status = 0;
    if (std::sscanf(head.c_str(), "HTTP/1.%*d %d", &status) != 1) {
      *error = "bad status line: " + head.substr(0, head.find('\r'));
      return Fail();
    }
    std::transform(head.begin(), head.end(), head.begin(),
                   [](unsigned char ch) { return std::tolower(ch); });
    const bool chunked = head.find("\r\ntransfer-encoding: chunked") != std::string::npos;
    const bool close = head.find("\r\nconnection: close") != std::string::npos;
    const size_t cl = head.find("\r\ncontent-length:");
    answer->clear();
    if (status == 204 || status == 304 || (status >= 100 && status < 200)) {
      // no body
    } else if (chunked) {
      for (;;) {
        const size_t line_end = FillUntil("\r\n", error);
        if (line_end == std::string::npos) return Fail();
        const size_t n = std::strtoul(buf_.c_str(), nullptr, 16);
        buf_.erase(0, line_end);
        if (!Fill(n + 2, error)) return Fail();
        answer->append(buf_, 0, n);
        buf_.erase(0, n + 2);
        if (n == 0) break;  // (no trailers expected)
      }
    } else if (cl != std::string::npos) {
      const size_t n = std::strtoul(head.c_str() + cl + 17, nullptr, 10);
      if (!Fill(n, error)) return Fail();
      answer->assign(buf_, 0, n);
      buf_.erase(0, n);
    } else {
      std::string ignored;
      while (Fill(buf_.size() + 1, &ignored)) {
      }
      *answer = std::move(buf_);
      buf_.clear();
      Close();
    }
    if (close) Close();
    return status;
  }

  Url url_;
  int fd_ = -1;
  std::string buf_;
};

double CpuSecondsOf(int pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  const size_t paren = s.rfind(')');
  if (paren == std::string::npos) return 0;
  std::istringstream rest(s.substr(paren + 2));
  std::string field;
  uint64_t utime = 0, stime = 0;
  // Fields after the name: state (3) ... utime (14), stime (15).
  for (int i = 3; i <= 15 && rest >> field; ++i) {
    if (i == 14) utime = std::stoull(field);
    if (i == 15) stime = std::stoull(field);
  }
  return static_cast<double>(utime + stime) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

double OwnCpuSeconds() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

// Keeps the connections within kMaxLeadMs of data of each other.
class StepGate {
 public:
  StepGate(int connections, int64_t lead_steps)
      : done_(static_cast<size_t>(connections), 0), lead_(lead_steps) {}
  // Blocks until every connection has sent all steps before `step - lead`.
  void WaitFor(int64_t step) {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return *std::min_element(done_.begin(), done_.end()) >= step - lead_; });
  }
  // Connection `c` has sent every step before `step`.
  void Done(int c, int64_t step) {
    {
      std::lock_guard lock(mu_);
      done_[static_cast<size_t>(c)] = step;
    }
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<int64_t> done_;
  int64_t lead_;
};

struct SenderResult {
  uint64_t samples = 0, requests = 0, errors = 0, failed_samples = 0, retries = 0, bytes = 0;
  std::vector<double> latencies_ms;
};

std::mutex g_print_mu;
std::atomic<int> g_printed{0};

void PrintError(const std::string& what) {
  if (g_printed.fetch_add(1) >= kErrorsPrinted) return;
  std::lock_guard lock(g_print_mu);
  std::cerr << "monitor_loadgen: " << what << "\n";
}

void Send(int c, const std::vector<Body>& bodies, const Url& url, int64_t steps, StepGate& gate,
          SenderResult& r) {
  HttpConnection conn(url);
  std::string answer, error;
  for (const Body& b : bodies) {
    gate.WaitFor(b.first_step);
    const auto t0 = std::chrono::steady_clock::now();
    int status = -1;
    for (int attempt = 0; attempt < kMaxAttempts; ++attempt) {
      if (attempt > 0) {
        ++r.retries;
        std::this_thread::sleep_for(std::chrono::milliseconds(100 * attempt));
      }
      status = conn.Post(b.bytes, &answer, &error);
      if (status >= 200 && status < 500) break;
    }
    r.latencies_ms.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    ++r.requests;
    r.bytes += b.bytes.size();
    if (status >= 200 && status < 300) {
      r.samples += b.samples;
    } else {
      ++r.errors;
      r.failed_samples += b.samples;
      PrintError(status < 0 ? "connection " + std::to_string(c) + ": " + error
                            : "HTTP " + std::to_string(status) + ": " + answer.substr(0, 300));
    }
    // Steps before last_step are complete on this connection.
    gate.Done(c, b.last_step);
  }
  gate.Done(c, steps);
}

double Percentile(std::vector<double>& v, double q) {
  if (v.empty()) return 0;
  const size_t k = std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size())));
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
  return v[k];
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = ParseFlags(argc, argv);
  const auto g0 = std::chrono::steady_clock::now();
  Plan plan = o.bodies.empty() ? Generate(o) : ReadBodies(o.bodies);
  const double gen_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - g0).count();
  uint64_t total_bytes = 0, total_samples = 0;
  for (const auto& per : plan.bodies) {
    for (const Body& b : per) total_bytes += b.bytes.size(), total_samples += b.samples;
  }
  if (!o.write_bodies.empty()) {
    WriteBodies(plan, o.write_bodies);
    std::cerr << "monitor_loadgen: wrote " << total_samples << " samples in " << total_bytes
              << " bytes to " << o.write_bodies << " (" << gen_seconds << " s)\n";
    return 0;
  }
  if (o.dry_run) {
    std::cout << "{\"samples\":" << total_samples << ",\"body_bytes\":" << total_bytes
              << ",\"gen_seconds\":" << gen_seconds << ",\"first_ms\":" << plan.first_ms
              << ",\"end_ms\":" << plan.end_ms << "}\n";
    return 0;
  }

  const Url url = ParseUrl(o.url);
  const int n = plan.connections;
  StepGate gate(n, std::max<int64_t>(1, kMaxLeadMs / plan.interval_ms));
  std::vector<SenderResult> results(static_cast<size_t>(n));
  const double server0 = o.server_pid > 0 ? CpuSecondsOf(o.server_pid) : 0;
  const double client0 = OwnCpuSeconds();
  const auto t0 = std::chrono::steady_clock::now();
  {
    std::vector<std::jthread> threads;
    for (int c = 0; c < n; ++c) {
      threads.emplace_back([&, c] {
        Send(c, plan.bodies[static_cast<size_t>(c)], url, plan.steps, gate,
             results[static_cast<size_t>(c)]);
      });
    }
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double server_cpu = o.server_pid > 0 ? CpuSecondsOf(o.server_pid) - server0 : 0;
  const double client_cpu = OwnCpuSeconds() - client0;

  SenderResult all;
  for (SenderResult& r : results) {
    all.samples += r.samples, all.requests += r.requests, all.errors += r.errors;
    all.failed_samples += r.failed_samples, all.retries += r.retries, all.bytes += r.bytes;
    all.latencies_ms.insert(all.latencies_ms.end(), r.latencies_ms.begin(), r.latencies_ms.end());
  }
  const double p50 = Percentile(all.latencies_ms, 0.5), p99 = Percentile(all.latencies_ms, 0.99);
  const double max = all.latencies_ms.empty()
                         ? 0
                         : *std::max_element(all.latencies_ms.begin(), all.latencies_ms.end());
  char line[1024];
  std::snprintf(
      line, sizeof line,
      "{\"samples\":%llu,\"requests\":%llu,\"errors\":%llu,\"failed_samples\":%llu,\"retries\":%"
      "llu,"
      "\"seconds\":%.3f,\"samples_per_sec\":%.0f,\"server_cpu_seconds\":%.2f,"
      "\"samples_per_server_cpu_sec\":%.0f,\"client_cpu_seconds\":%.2f,\"body_bytes\":%llu,"
      "\"p50_ms\":%.2f,\"p99_ms\":%.2f,\"max_ms\":%.2f,\"first_ms\":%lld,\"end_ms\":%lld,"
      "\"series\":%d,\"steps\":%lld,\"gen_seconds\":%.2f}",
      static_cast<unsigned long long>(all.samples), static_cast<unsigned long long>(all.requests),
      static_cast<unsigned long long>(all.errors),
      static_cast<unsigned long long>(all.failed_samples),
      static_cast<unsigned long long>(all.retries), seconds,
      seconds > 0 ? static_cast<double>(all.samples) / seconds : 0, server_cpu,
      server_cpu > 0 ? static_cast<double>(all.samples) / server_cpu : 0, client_cpu,
      static_cast<unsigned long long>(all.bytes), p50, p99, max,
      static_cast<long long>(plan.first_ms), static_cast<long long>(plan.end_ms), plan.series,
      static_cast<long long>(plan.steps), gen_seconds);
  std::cout << line << std::endl;
  return all.errors > 0 ? 2 : 0;
}
