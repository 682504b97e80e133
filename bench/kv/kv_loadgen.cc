// kv_loadgen: closed-loop load generator for servers speaking the memcached
// text protocol (memcached itself, qcloud-kvd). Standard library + Linux only:
//
//   g++ -std=c++20 -O2 -Wall -Wextra -Werror -pthread kv_loadgen.cc -o kv_loadgen
//
// Model. T client threads (--threads), each running one edge-triggered epoll
// loop over its share of the N connections (connection i belongs to thread
// i % T). Every connection keeps exactly D requests outstanding (--pipeline):
// each complete reply is matched to the oldest outstanding request of its
// connection and at once replaced by a new request. All requests a connection
// produces while one epoll wakeup is handled go out in a single send().
//
// Latency of a request: from just before the send() that carries it to the
// recv() that completes its reply (steady_clock). With D > 1 this includes the
// time the request waits behind the D-1 before it: the latency a pipelining
// client sees. Values go into a log-linear histogram (128 linear sub-buckets
// per power of two: <= 0.8% relative error, like HdrHistogram with 2
// significant digits); percentiles report the highest value of their bucket.
//
// Phases, in order, each one finished on every connection before the next:
//   --prefill   set every key once (pipelined); every reply must be STORED
//   --verify    get every key once; every reply must be a hit with the value
//               that prefill stored
//   warmup      --warmup s of the measured workload, not counted
//   measure     --duration s; a reply counts if it completes in this window
// --load-only is --prefill with no timed phase (same as --duration 0).
//
// Keys: "key:" followed by the key index in decimal, zero-padded so every key
// is exactly --key-size bytes: index 42 with --key-size 16 is
// "key:000000000042". Values: --value-size bytes of 'a'..'z', rotated by the
// key index, so every stored value is predictable and every get hit is
// compared byte for byte (key, flags 0, length, data).
//
// Key choice: --dist uniform picks each key uniformly from [0, K).
// --dist zipf draws a rank r in [0, K) from a bounded Zipf law,
// P(r) proportional to 1/(r+1)^theta (--zipf-theta, 0 < theta < 1), with the
// closed-form method of Gray et al., "Quickly Generating Billion-Record
// Synthetic Databases" (SIGMOD 1994), as in YCSB's ZipfianGenerator; zeta(K,
// theta) is summed exactly once at start-up (O(K)). The closed form is exact
// for ranks 0 and 1 and approximate beyond (K = 100 000, theta 0.99: rank 0
// is drawn 7.8% of the time as it should be, rank 2 3.2% instead of 2.6%; the
// hottest 1% of ranks get 61% of draws instead of 60.5%). The rank is then
// scrambled to key FNV-1a-64(r as 8 little-endian bytes) mod K, like YCSB's
// ScrambledZipfianGenerator, so the hot keys are spread over the key space
// (and over the server's hash buckets and slabs) instead of being keys 0, 1,
// 2, ... The scramble is a hash, not a permutation: some ranks share a key,
// so some keys are never drawn (29% of them for K = 100 000). That only moves
// probability mass around in the cold tail: the 1000 hottest ranks map to
// 1000 distinct keys for K = 100 000.
//
// Errors. Any unexpected reply counts as an error (over the whole run:
// prefill, verify, warmup and window); the first one is printed to stderr.
// A full ERROR / CLIENT_ERROR / SERVER_ERROR line answering a get, or
// SERVER_ERROR answering a set (memcached swallows the data), keeps the
// connection. Anything that leaves the framing in doubt (CLIENT_ERROR or ERROR
// after a set, an unknown line, a VALUE with the wrong trailer, a closed
// connection) also closes the connection and opens a fresh one; its
// outstanding requests are dropped.
//
// Diagnostics, so that a result can be checked for being client-bound:
// "cores" gives how busy (not idle) this process's CPUs and, with
// --server-pid, the server's CPUs were during the window, from /proc/stat:
// unlike process CPU time this includes softirq, where much of loopback TCP
// runs. With --server-pid the server process's own CPU time is reported too.
// The client's epoll_wait/send/recv calls per request show how well it
// batches (the floor at --pipeline 1 is one send and one recv per request).
// --busy-poll makes epoll_wait never sleep (client CPU always 100%).
//
// Exit status: 0 ok, 1 usage or connection failure, 2 any reply error, a
// prefill that was not all STORED, or a verify that was not all hits.

#include <arpa/inet.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <barrier>
#include <bit>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {

uint64_t NowNs() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::steady_clock::now().time_since_epoch())
                                   .count());
}

uint64_t ThreadCpuNs() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

// utime + stime of a whole process (all its threads), in ns; 0 if unknown.
uint64_t ProcessCpuNs(int pid) {
  if (pid <= 0) return 0;
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  size_t rp = s.rfind(')');
  if (rp == std::string::npos) return 0;
  std::istringstream in(s.substr(rp + 1));
  std::string tok;
  uint64_t utime = 0, stime = 0;
  for (int field = 3; in >> tok; ++field) {  // the token after ')' is field 3 (state)
    if (field == 14) utime = std::strtoull(tok.c_str(), nullptr, 10);
    if (field == 15) {
      stime = std::strtoull(tok.c_str(), nullptr, 10);
      break;
    }
  }
  const long hz = sysconf(_SC_CLK_TCK);
  return (utime + stime) * (1000000000ull / static_cast<uint64_t>(hz > 0 ? hz : 100));
}

// Busy and total jiffies of a set of CPUs, from /proc/stat. Unlike a
// process's CPU time this includes softirq work done on those CPUs: with
// loopback TCP much of the receive path of one side runs as softirq on the
// CPU of the other side's sender.
struct CpuTicks {
  uint64_t busy = 0, total = 0;
};
CpuTicks ReadCpuTicks(const cpu_set_t& set) {
  CpuTicks t;
  std::ifstream f("/proc/stat");
  std::string line;
  while (std::getline(f, line)) {
    if (line.size() < 4 || line.compare(0, 3, "cpu") != 0 ||
        !std::isdigit(static_cast<unsigned char>(line[3])))
      continue;
    std::istringstream in(line.substr(3));
    int cpu = -1;
    uint64_t v[8] = {};  // user nice system idle iowait irq softirq steal
    in >> cpu;
    for (auto& x : v) in >> x;
    if (cpu < 0 || cpu >= CPU_SETSIZE || !CPU_ISSET(cpu, &set)) continue;
    const uint64_t idle = v[3] + v[4];
    const uint64_t busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
    t.busy += busy;
    t.total += busy + idle;
  }
  return t;
}
double BusyPct(const CpuTicks& a, const CpuTicks& b) {
  return b.total > a.total
             ? 100.0 * static_cast<double>(b.busy - a.busy) / static_cast<double>(b.total - a.total)
             : -1.0;
}

// ---------------------------------------------------------------------------
// Log-linear latency histogram (ns). Values below 256 are exact; above, each
// power of two [2^k, 2^(k+1)) is split into 128 equal buckets.
class Histogram {
 public:
  static constexpr int kSubBits = 7;
  static constexpr uint64_t kSub = uint64_t{1} << kSubBits;
  static constexpr size_t kBuckets = (64 - kSubBits + 1) * kSub;

  Histogram() : counts_(kBuckets, 0) {}

  void Record(uint64_t v) {
    ++counts_[Index(v)];
    ++total_;
    sum_ += v;
    max_ = std::max(max_, v);
  }
  void Merge(const Histogram& o) {
    for (size_t i = 0; i < kBuckets; ++i) counts_[i] += o.counts_[i];
    total_ += o.total_;
    sum_ += o.sum_;
    max_ = std::max(max_, o.max_);
  }
  void Reset() {
    std::fill(counts_.begin(), counts_.end(), 0);
    total_ = sum_ = max_ = 0;
  }
  uint64_t Max() const { return max_; }
  double Mean() const {
    return total_ ? static_cast<double>(sum_) / static_cast<double>(total_) : 0;
  }
  // Smallest bucket whose cumulative count reaches p% of the total; reports
  // the highest value that bucket can hold (never above the exact max).
  uint64_t Percentile(double p) const {
    if (total_ == 0) return 0;
    uint64_t want = static_cast<uint64_t>(std::ceil(p / 100.0 * static_cast<double>(total_)));
    want = std::clamp<uint64_t>(want, 1, total_);
    uint64_t seen = 0;
    for (size_t i = 0; i < kBuckets; ++i) {
      seen += counts_[i];
      if (seen >= want) return std::min(HighestEquivalent(i), max_);
    }
    return max_;
  }

 private:
  static size_t Index(uint64_t v) {
    if (v < 2 * kSub) return static_cast<size_t>(v);
    const int shift = (63 - std::countl_zero(v)) - kSubBits;
    return static_cast<size_t>(shift + 1) * kSub + static_cast<size_t>((v >> shift) - kSub);
  }
  static uint64_t HighestEquivalent(size_t i) {
    if (i < 2 * kSub) return i;
    const size_t shift = i / kSub - 1;
    const uint64_t sub = i % kSub + kSub;
    return ((sub + 1) << shift) - 1;
  }

  std::vector<uint64_t> counts_;
  uint64_t total_ = 0, sum_ = 0, max_ = 0;
};

// ---------------------------------------------------------------------------
// Random numbers: xoshiro256** seeded with splitmix64.
class Rng {
 public:
  explicit Rng(uint64_t seed) {
    for (auto& w : s_) {
      seed += 0x9e3779b97f4a7c15ull;
      uint64_t z = seed;
      z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
      z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
      w = z ^ (z >> 31);
    }
  }
  uint64_t Next() {
    const uint64_t result = std::rotl(s_[1] * 5, 7) * 9;
    const uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = std::rotl(s_[3], 45);
    return result;
  }
  double Uniform() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }  // [0, 1)

 private:
  uint64_t s_[4];
};

// Bounded Zipf over ranks [0, n): Gray et al. (SIGMOD '94) / YCSB.
class Zipf {
 public:
  Zipf(uint64_t n, double theta) : n_(n) {
    for (uint64_t i = 1; i <= n; ++i) zetan_ += 1.0 / std::pow(static_cast<double>(i), theta);
    const double zeta2 = 1.0 + std::pow(0.5, theta);
    alpha_ = 1.0 / (1.0 - theta);
    half_pow_theta_ = std::pow(0.5, theta);
    // n <= 2 never reaches the formula below (the two explicit ranks cover it).
    eta_ =
        n > 2 ? (1.0 - std::pow(2.0 / static_cast<double>(n), 1.0 - theta)) / (1.0 - zeta2 / zetan_)
              : 0;
  }
  uint64_t Rank(double u) const {
    const double uz = u * zetan_;
    if (uz < 1.0) return 0;
    if (uz < 1.0 + half_pow_theta_) return 1;
    const auto r =
        static_cast<uint64_t>(static_cast<double>(n_) * std::pow(eta_ * u - eta_ + 1.0, alpha_));
    return r < n_ ? r : n_ - 1;
  }

 private:
  uint64_t n_;
  double zetan_ = 0, alpha_ = 0, eta_ = 0, half_pow_theta_ = 0;
};

uint64_t Fnv1a64(uint64_t v) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (int i = 0; i < 8; ++i) {
    h ^= (v >> (8 * i)) & 0xff;
    h *= 0x100000001b3ull;
  }
  return h;
}

// ---------------------------------------------------------------------------
struct Options {
  std::string host = "127.0.0.1";
  std::string port = "11211";
  int connections = 64;
  int pipeline = 1;
  int threads = 1;
  double duration = 10;
  double warmup = 2;
  double get_ratio = 0.9;
  size_t value_size = 64;
  uint64_t keys = 100000;
  int key_size = 16;
  bool zipf = false;
  double zipf_theta = 0.99;
  bool prefill = false;
  bool verify = false;
  bool load_only = false;
  bool json = false;
  bool busy_poll = false;
  int server_pid = 0;
  uint64_t seed = 1;
};

constexpr int kSweepWindow = 64;  // requests in flight per connection in prefill / verify

enum class Op : uint8_t { kGet, kSet };
enum class Phase : uint8_t { kPrefill, kVerify, kTimed };

struct Request {
  uint64_t key;
  uint64_t sent_ns;
  Op op;
};

// Fixed-capacity FIFO of outstanding requests.
class RequestRing {
 public:
  explicit RequestRing(size_t cap) : buf_(cap) {}
  size_t size() const { return n_; }
  void Push(const Request& r) {
    buf_[(head_ + n_) % buf_.size()] = r;
    ++n_;
  }
  Request& Front() { return buf_[head_]; }
  Request& At(size_t i) { return buf_[(head_ + i) % buf_.size()]; }
  void Pop() {
    head_ = (head_ + 1) % buf_.size();
    --n_;
  }
  void Clear() { head_ = n_ = 0; }

 private:
  std::vector<Request> buf_;
  size_t head_ = 0, n_ = 0;
};

struct Conn {
  explicit Conn(size_t cap) : pending(cap), in(size_t{64} * 1024) {}
  int fd = -1;
  int index = 0;  // global connection number
  RequestRing pending;
  size_t unstamped = 0;  // requests at the tail of `pending` not yet handed to send()
  std::string out;       // bytes not yet accepted by send(): out[out_off..]
  size_t out_off = 0;
  std::vector<char> in;  // received bytes in[in_beg..in_end)
  size_t in_beg = 0, in_end = 0;
  uint64_t sweep_next = 0, sweep_end = 0;  // prefill / verify key range
  bool dead = false;
};

struct Stats {
  uint64_t gets = 0, sets = 0, hits = 0, misses = 0, errors = 0;
  Histogram hist;
  uint64_t cpu_ns = 0;
  // prefill / verify
  uint64_t sweep_ok = 0, sweep_misses = 0, sweep_errors = 0;
  uint64_t reconnects = 0, dead_conns = 0;
  // client-side cost in the window: epoll_wait calls, events, send()/recv() calls
  uint64_t waits = 0, events = 0, sends = 0, recvs = 0;
};

std::atomic<bool> g_error_printed{false};
std::atomic<bool> g_reconnect_error_printed{false};

std::string Printable(std::string_view s) {
  std::string r;
  for (char c : s.substr(0, 160)) {
    if (c == '\r')
      r += "\\r";
    else if (c == '\n')
      r += "\\n";
    else if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f) {
      char b[8];
      std::snprintf(b, sizeof b, "\\x%02x", static_cast<unsigned char>(c));
      r += b;
    } else {
      r += c;
    }
  }
  if (s.size() > 160) r += "...";
  return r;
}

// Shared, read-only after start-up.
struct Setup {
  Options opt;
  sockaddr_storage addr{};
  socklen_t addr_len = 0;
  std::string value_pattern;  // value for key k: value_pattern.substr(k % 26, value_size)
  std::string set_suffix;     // " 0 0 <value_size>\r\n"
  std::unique_ptr<Zipf> zipf;
  cpu_set_t client_cpus{};  // our affinity, and the server's (--server-pid)
  cpu_set_t server_cpus{};
  bool have_server_cpus = false;

  void WriteKey(char* out, uint64_t k) const {
    std::memcpy(out, "key:", 4);
    char* p = out + opt.key_size;
    for (int i = 4; i < opt.key_size; ++i) {
      *--p = static_cast<char>('0' + k % 10);
      k /= 10;
    }
  }
  const char* Value(uint64_t k) const { return value_pattern.data() + k % 26; }
};

int Connect(const Setup& s, std::string* err) {
  int fd = socket(s.addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    *err = std::string("socket: ") + std::strerror(errno);
    return -1;
  }
  if (connect(fd, reinterpret_cast<const sockaddr*>(&s.addr), s.addr_len) != 0) {
    *err = std::string("connect: ") + std::strerror(errno);
    close(fd);
    return -1;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  return fd;
}

// ---------------------------------------------------------------------------
class Worker {
 public:
  Worker(const Setup& s, int id)
      : s_(s), id_(id), rng_(s.opt.seed * 0x100000001b3ull + static_cast<uint64_t>(id)) {
    ep_ = epoll_create1(EPOLL_CLOEXEC);
  }
  ~Worker() {
    for (auto& c : conns_)
      if (c->fd >= 0) close(c->fd);
    if (ep_ >= 0) close(ep_);
  }

  bool AddConnection(int index, std::string* err) {
    const size_t cap = static_cast<size_t>(std::max(s_.opt.pipeline, kSweepWindow));
    auto c = std::make_unique<Conn>(cap);
    c->index = index;
    c->fd = Connect(s_, err);
    if (c->fd < 0) return false;
    Register(*c);
    conns_.push_back(std::move(c));
    return true;
  }

  // Runs prefill / verify sweeps and the timed phase; `sync` separates them.
  template <typename Barrier>
  void Run(Barrier& sync, const std::atomic<uint64_t>& timed_start) {
    if (s_.opt.prefill) {
      Sweep(Phase::kPrefill);
      sync.arrive_and_wait();
    }
    if (s_.opt.verify) {
      Sweep(Phase::kVerify);
      sync.arrive_and_wait();
    }
    if (s_.opt.duration > 0) {
      sync.arrive_and_wait();  // completion stamps timed_start
      Timed(timed_start.load());
    }
  }

  Stats& Results() { return st_; }
  uint64_t server_cpu_ns = 0;  // thread 0 only: server CPU during the window
  double client_cores_busy = -1, server_cores_busy = -1;  // thread 0 only, %
  uint64_t window_ns = 0;

 private:
  void Register(Conn& c) {
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
    ev.data.ptr = &c;
    epoll_ctl(ep_, EPOLL_CTL_ADD, c.fd, &ev);
  }

  void ReportError(const Conn& c, const std::string& what, std::string_view got) {
    ++st_.errors;
    if (phase_ != Phase::kTimed) ++st_.sweep_errors;
    bool expected = false;
    if (g_error_printed.compare_exchange_strong(expected, true))
      std::fprintf(stderr, "kv_loadgen: first error (connection %d): %s; got \"%s\"\n", c.index,
                   what.c_str(), Printable(got).c_str());
  }

  // Close and reopen a connection whose framing is no longer trusted.
  void Reconnect(Conn& c) {
    epoll_ctl(ep_, EPOLL_CTL_DEL, c.fd, nullptr);
    close(c.fd);
    c.fd = -1;
    c.pending.Clear();
    c.unstamped = 0;
    c.out.clear();
    c.out_off = 0;
    c.in_beg = c.in_end = 0;
    if (phase_ != Phase::kTimed) c.sweep_next = c.sweep_end;  // the sweep failed anyway
    std::string err;
    c.fd = Connect(s_, &err);
    if (c.fd < 0) {
      bool expected = false;
      if (g_reconnect_error_printed.compare_exchange_strong(expected, true))
        std::fprintf(stderr, "kv_loadgen: reconnect failed (connection %d): %s\n", c.index,
                     err.c_str());
      c.dead = true;
      ++st_.dead_conns;
      return;
    }
    ++st_.reconnects;
    Register(c);
    Refill(c);
  }

  uint64_t PickKey() {
    if (s_.zipf) return Fnv1a64(s_.zipf->Rank(rng_.Uniform())) % s_.opt.keys;
    return rng_.Next() % s_.opt.keys;
  }

  void AppendRequest(Conn& c, Op op, uint64_t key) {
    char line[300];
    const size_t ks = static_cast<size_t>(s_.opt.key_size);
    if (op == Op::kGet) {
      std::memcpy(line, "get ", 4);
      s_.WriteKey(line + 4, key);
      std::memcpy(line + 4 + ks, "\r\n", 2);
      c.out.append(line, 4 + ks + 2);
    } else {
      std::memcpy(line, "set ", 4);
      s_.WriteKey(line + 4, key);
      c.out.append(line, 4 + ks);
      c.out.append(s_.set_suffix);
      c.out.append(s_.Value(key), s_.opt.value_size);
      c.out.append("\r\n", 2);
    }
    c.pending.Push(Request{key, 0, op});
    ++c.unstamped;
  }

  // Tops the connection up to its window for the current phase.
  void Refill(Conn& c) {
    if (c.dead) return;
    if (phase_ == Phase::kTimed) {
      while (c.pending.size() < static_cast<size_t>(s_.opt.pipeline)) {
        const bool get =
            s_.opt.get_ratio >= 1.0 || (s_.opt.get_ratio > 0 && rng_.Uniform() < s_.opt.get_ratio);
        AppendRequest(c, get ? Op::kGet : Op::kSet, PickKey());
      }
    } else {
      const Op op = phase_ == Phase::kPrefill ? Op::kSet : Op::kGet;
      while (c.pending.size() < static_cast<size_t>(kSweepWindow) && c.sweep_next < c.sweep_end)
        AppendRequest(c, op, c.sweep_next++);
    }
  }

  void Flush(Conn& c) {
    if (c.dead || c.out_off == c.out.size()) return;
    if (c.unstamped) {
      const uint64_t now = NowNs();
      for (size_t i = c.pending.size() - c.unstamped; i < c.pending.size(); ++i)
        c.pending.At(i).sent_ns = now;
      c.unstamped = 0;
    }
    while (c.out_off < c.out.size()) {
      const ssize_t n =
          send(c.fd, c.out.data() + c.out_off, c.out.size() - c.out_off, MSG_NOSIGNAL);
      ++sends_;
      if (n > 0) {
        c.out_off += static_cast<size_t>(n);
      } else if (n < 0 && errno == EINTR) {
        continue;
      } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        break;  // EPOLLOUT (edge-triggered) resumes
      } else {
        ReportError(c, std::string("send failed: ") + std::strerror(errno), "");
        Reconnect(c);
        return;
      }
    }
    if (c.out_off == c.out.size()) {
      c.out.clear();
      c.out_off = 0;
    } else if (c.out_off > (1u << 20)) {
      c.out.erase(0, c.out_off);
      c.out_off = 0;
    }
  }

  enum class Parse { kNeedMore, kDone, kBroken };

  // Counts a finished request (timed phase: only if it completed in the window).
  void Complete(const Request& r, uint64_t now, bool hit) {
    if (phase_ != Phase::kTimed) {
      if (r.op == Op::kSet || hit)
        ++st_.sweep_ok;
      else
        ++st_.sweep_misses;
      return;
    }
    if (now < measure_start_ || now >= measure_end_) return;
    st_.hist.Record(now - r.sent_ns);
    if (r.op == Op::kSet) {
      ++st_.sets;
    } else {
      ++st_.gets;
      if (hit)
        ++st_.hits;
      else
        ++st_.misses;
    }
  }

  // Parses one reply for c.pending.Front() from c.in.
  Parse ParseOne(Conn& c, uint64_t now) {
    const char* beg = c.in.data() + c.in_beg;
    const size_t avail = c.in_end - c.in_beg;
    const char* nl = static_cast<const char*>(std::memchr(beg, '\n', avail));
    if (!nl) {
      if (avail > 8192) {
        ReportError(c, "reply line longer than 8 KiB", std::string_view(beg, 200));
        return Parse::kBroken;
      }
      return Parse::kNeedMore;
    }
    const size_t line_total = static_cast<size_t>(nl - beg) + 1;
    std::string_view line(beg, line_total);
    const Request r = c.pending.Front();
    if (line.size() < 2 || line[line.size() - 2] != '\r') {
      ReportError(c, "reply line not ending in \\r\\n", line);
      return Parse::kBroken;
    }
    std::string_view body = line.substr(0, line.size() - 2);
    auto consume = [&](size_t n) {
      c.in_beg += n;
      c.pending.Pop();
    };
    const bool is_error = body == "ERROR" || body.starts_with("ERROR ") ||
                          body.starts_with("CLIENT_ERROR") || body.starts_with("SERVER_ERROR");
    if (r.op == Op::kSet) {
      if (body == "STORED") {
        Complete(r, now, false);
        consume(line_total);
        return Parse::kDone;
      }
      ReportError(c, "set: expected STORED", line);
      if (body.starts_with("SERVER_ERROR")) {  // memcached swallowed the data: framing intact
        consume(line_total);
        return Parse::kDone;
      }
      return Parse::kBroken;
    }
    // get
    if (body == "END") {
      Complete(r, now, false);
      consume(line_total);
      return Parse::kDone;
    }
    if (is_error) {
      ReportError(c, "get: error reply", line);
      consume(line_total);
      return Parse::kDone;
    }
    if (!body.starts_with("VALUE ")) {
      ReportError(c, "get: expected VALUE or END", line);
      return Parse::kBroken;
    }
    // VALUE <key> <flags> <bytes>[ <cas>]
    std::string_view rest = body.substr(6);
    std::string_view tok[4];
    int ntok = 0;
    while (!rest.empty() && ntok < 4) {
      const size_t sp = rest.find(' ');
      tok[ntok++] = rest.substr(0, sp);
      rest = sp == std::string_view::npos ? std::string_view() : rest.substr(sp + 1);
    }
    char* endp = nullptr;
    const std::string bytes_str(ntok >= 3 ? tok[2] : std::string_view());
    const unsigned long long bytes = std::strtoull(bytes_str.c_str(), &endp, 10);
    if (ntok < 3 || bytes_str.empty() || *endp != '\0' || bytes > (1ull << 30)) {
      ReportError(c, "get: malformed VALUE line", line);
      return Parse::kBroken;
    }
    const size_t need = line_total + bytes + 2 + 5;
    if (avail < need) {
      if (need > c.in.size()) {  // grow so the whole reply fits
        std::memmove(c.in.data(), beg, avail);
        c.in_end = avail;
        c.in_beg = 0;
        c.in.resize(need * 2);
      }
      return Parse::kNeedMore;
    }
    const char* data = beg + line_total;
    if (std::memcmp(data + bytes, "\r\nEND\r\n", 7) != 0) {
      ReportError(c, "get: VALUE data not followed by \\r\\nEND\\r\\n",
                  std::string_view(data + bytes, 7));
      return Parse::kBroken;
    }
    char key[300];
    s_.WriteKey(key, r.key);
    const bool ok = tok[0] == std::string_view(key, static_cast<size_t>(s_.opt.key_size)) &&
                    tok[1] == "0" && bytes == s_.opt.value_size &&
                    std::memcmp(data, s_.Value(r.key), bytes) == 0;
    if (!ok)
      ReportError(c,
                  "get: wrong key, flags, length or data for " + std::string(key, s_.opt.key_size),
                  line);
    else
      Complete(r, now, true);
    consume(need);
    return Parse::kDone;
  }

  void OnReadable(Conn& c) {
    for (;;) {
      if (c.in_beg == c.in_end) {
        c.in_beg = c.in_end = 0;
      } else if (c.in.size() - c.in_end < 16384 && c.in_beg > 0) {
        std::memmove(c.in.data(), c.in.data() + c.in_beg, c.in_end - c.in_beg);
        c.in_end -= c.in_beg;
        c.in_beg = 0;
      }
      if (c.in_end == c.in.size()) c.in.resize(c.in.size() * 2);
      const size_t room = c.in.size() - c.in_end;
      const ssize_t n = recv(c.fd, c.in.data() + c.in_end, room, 0);
      ++recvs_;
      if (n == 0) {
        ReportError(c, "server closed the connection", "");
        Reconnect(c);
        return;
      }
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return;
        ReportError(c, std::string("recv failed: ") + std::strerror(errno), "");
        Reconnect(c);
        return;
      }
      c.in_end += static_cast<size_t>(n);
      const uint64_t now = NowNs();
      while (c.in_beg < c.in_end) {
        if (c.pending.size() == 0) {
          ReportError(c, "reply with no request outstanding",
                      std::string_view(c.in.data() + c.in_beg, c.in_end - c.in_beg));
          Reconnect(c);
          return;
        }
        const Parse p = ParseOne(c, now);
        if (p == Parse::kNeedMore) break;
        if (p == Parse::kBroken) {
          Reconnect(c);
          return;
        }
      }
      Refill(c);
      // Edge-triggered: a short read means the socket is drained; more data
      // arriving later raises a new edge.
      if (static_cast<size_t>(n) < room) return;
    }
  }

  void HandleEvent(Conn& c, uint32_t ev) {
    if (c.dead) return;
    if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) OnReadable(c);
    Flush(c);
  }

  void Sweep(Phase phase) {
    phase_ = phase;
    const uint64_t n = s_.opt.keys, total = static_cast<uint64_t>(s_.opt.connections);
    for (auto& c : conns_) {
      const auto i = static_cast<uint64_t>(c->index);
      c->sweep_next = n * i / total;
      c->sweep_end = n * (i + 1) / total;
      Refill(*c);
      Flush(*c);
    }
    epoll_event evs[256];
    uint64_t last_progress = NowNs(), last_done = 0;
    for (;;) {
      bool busy = false;
      for (auto& c : conns_)
        if (!c->dead && (c->pending.size() > 0 || c->sweep_next < c->sweep_end)) busy = true;
      if (!busy) break;
      const int k = epoll_wait(ep_, evs, 256, 100);
      for (int i = 0; i < k; ++i) HandleEvent(*static_cast<Conn*>(evs[i].data.ptr), evs[i].events);
      const uint64_t done = st_.sweep_ok + st_.sweep_misses + st_.sweep_errors, now = NowNs();
      if (done != last_done) {
        last_done = done;
        last_progress = now;
      } else if (now - last_progress > 10'000'000'000ull) {
        std::fprintf(stderr, "kv_loadgen: %s stalled: no reply for 10 s\n",
                     phase == Phase::kPrefill ? "prefill" : "verify");
        for (auto& c : conns_) {
          st_.sweep_errors += c->pending.size() + (c->sweep_end - c->sweep_next);
          c->pending.Clear();
          c->sweep_next = c->sweep_end;
        }
        break;
      }
    }
  }

  void Timed(uint64_t start) {
    phase_ = Phase::kTimed;
    measure_start_ = start + static_cast<uint64_t>(s_.opt.warmup * 1e9);
    measure_end_ = measure_start_ + static_cast<uint64_t>(s_.opt.duration * 1e9);
    for (auto& c : conns_) {
      Refill(*c);
      Flush(*c);
    }
    epoll_event evs[256];
    bool in_window = false;
    uint64_t cpu0 = 0, srv0 = 0, waits = 0, events = 0;
    CpuTicks cli0, srvc0;
    for (;;) {
      const uint64_t now = NowNs();
      if (!in_window && now >= measure_start_) {
        in_window = true;
        cpu0 = ThreadCpuNs();
        if (id_ == 0) {
          srv0 = ProcessCpuNs(s_.opt.server_pid);
          cli0 = ReadCpuTicks(s_.client_cpus);
          if (s_.have_server_cpus) srvc0 = ReadCpuTicks(s_.server_cpus);
        }
        waits = events = sends_ = recvs_ = 0;
      }
      if (now >= measure_end_) break;
      const uint64_t next = in_window ? measure_end_ : measure_start_;
      const int timeout_ms =
          s_.opt.busy_poll
              ? 0
              : static_cast<int>(std::min<uint64_t>((next - now + 999'999) / 1'000'000, 100));
      const int k = epoll_wait(ep_, evs, 256, timeout_ms);
      ++waits;
      if (k > 0) events += static_cast<uint64_t>(k);
      for (int i = 0; i < k; ++i) HandleEvent(*static_cast<Conn*>(evs[i].data.ptr), evs[i].events);
    }
    st_.waits = waits;
    st_.events = events;
    st_.sends = sends_;
    st_.recvs = recvs_;
    st_.cpu_ns = ThreadCpuNs() - cpu0;
    if (id_ == 0) {
      client_cores_busy = BusyPct(cli0, ReadCpuTicks(s_.client_cpus));
      if (s_.have_server_cpus) server_cores_busy = BusyPct(srvc0, ReadCpuTicks(s_.server_cpus));
      if (s_.opt.server_pid > 0) server_cpu_ns = ProcessCpuNs(s_.opt.server_pid) - srv0;
    }
    window_ns = measure_end_ - measure_start_;
  }

  const Setup& s_;
  int id_;
  int ep_ = -1;
  Rng rng_;
  std::vector<std::unique_ptr<Conn>> conns_;
  Stats st_;
  Phase phase_ = Phase::kTimed;
  uint64_t measure_start_ = 0, measure_end_ = 0;
  uint64_t sends_ = 0, recvs_ = 0;
};

// ---------------------------------------------------------------------------
void Usage(FILE* f) {
  std::fprintf(f,
               "usage: kv_loadgen --server HOST:PORT [options]\n"
               "  --connections N   connections (default 64)\n"
               "  --pipeline D      requests in flight per connection (default 1)\n"
               "  --threads T       client threads; connections spread over them (default 1)\n"
               "  --duration S      measured seconds (default 10; 0 = no timed phase)\n"
               "  --warmup S        unmeasured seconds before (default 2)\n"
               "  --get-ratio R     fraction of gets, 0..1 (default 0.9; the rest are sets)\n"
               "  --value-size B    value bytes (default 64)\n"
               "  --keys K          key space (default 100000)\n"
               "  --key-size N      bytes per key, \"key:\" + zero-padded index (default 16)\n"
               "  --dist uniform|zipf, --zipf-theta T (default 0.99): key popularity\n"
               "  --prefill         set every key once before measuring; all must be STORED\n"
               "  --verify          get every key once (after prefill); all must hit\n"
               "  --load-only       prefill and exit (= --prefill --duration 0)\n"
               "  --server-pid PID  also report the server's CPU use during the window\n"
               "  --seed N          random seed (default 1)\n"
               "  --busy-poll       never sleep in epoll_wait (timeout 0)\n"
               "  --json            print one JSON object instead of text\n");
}

bool ParseDouble(const char* s, double* out) {
  char* end = nullptr;
  errno = 0;
  *out = std::strtod(s, &end);
  return errno == 0 && end != s && *end == '\0' && std::isfinite(*out);
}
bool ParseU64(const char* s, uint64_t* out) {
  char* end = nullptr;
  errno = 0;
  if (*s == '-') return false;
  *out = std::strtoull(s, &end, 10);
  return errno == 0 && end != s && *end == '\0';
}

std::string CpuList(const cpu_set_t& set) {
  std::string r;
  for (int i = 0; i < CPU_SETSIZE; ++i) {
    if (!CPU_ISSET(i, &set)) continue;
    int j = i;
    while (j + 1 < CPU_SETSIZE && CPU_ISSET(j + 1, &set)) ++j;
    if (!r.empty()) r += ',';
    r += std::to_string(i);
    if (j > i) r += '-' + std::to_string(j);
    i = j;
  }
  return r;
}

int Digits(uint64_t v) {
  int d = 1;
  while (v >= 10) {
    v /= 10;
    ++d;
  }
  return d;
}

}  // namespace

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);
  Setup s;
  Options& o = s.opt;
  std::string server;
  enum {
    kServer = 256,
    kConnections,
    kPipeline,
    kThreads,
    kDuration,
    kWarmup,
    kGetRatio,
    kValueSize,
    kKeys,
    kKeySize,
    kDist,
    kZipfTheta,
    kPrefill,
    kVerify,
    kLoadOnly,
    kJson,
    kServerPid,
    kSeed,
    kBusyPoll,
    kHelp
  };
  static const option kLong[] = {{"server", required_argument, nullptr, kServer},
                                 {"connections", required_argument, nullptr, kConnections},
                                 {"pipeline", required_argument, nullptr, kPipeline},
                                 {"threads", required_argument, nullptr, kThreads},
                                 {"duration", required_argument, nullptr, kDuration},
                                 {"warmup", required_argument, nullptr, kWarmup},
                                 {"get-ratio", required_argument, nullptr, kGetRatio},
                                 {"value-size", required_argument, nullptr, kValueSize},
                                 {"keys", required_argument, nullptr, kKeys},
                                 {"key-size", required_argument, nullptr, kKeySize},
                                 {"dist", required_argument, nullptr, kDist},
                                 {"zipf-theta", required_argument, nullptr, kZipfTheta},
                                 {"prefill", no_argument, nullptr, kPrefill},
                                 {"verify", no_argument, nullptr, kVerify},
                                 {"load-only", no_argument, nullptr, kLoadOnly},
                                 {"json", no_argument, nullptr, kJson},
                                 {"server-pid", required_argument, nullptr, kServerPid},
                                 {"seed", required_argument, nullptr, kSeed},
                                 {"busy-poll", no_argument, nullptr, kBusyPoll},
                                 {"help", no_argument, nullptr, kHelp},
                                 {nullptr, 0, nullptr, 0}};
  auto bad = [](const char* what) {
    std::fprintf(stderr, "kv_loadgen: bad %s\n", what);
    std::exit(1);
  };
  for (int ch; (ch = getopt_long(argc, argv, "", kLong, nullptr)) != -1;) {
    uint64_t u = 0;
    double d = 0;
    switch (ch) {
      case kServer:
        server = optarg;
        break;
      case kConnections:
        if (!ParseU64(optarg, &u) || u < 1 || u > 100000) bad("--connections");
        o.connections = static_cast<int>(u);
        break;
      case kPipeline:
        if (!ParseU64(optarg, &u) || u < 1 || u > 65536) bad("--pipeline");
        o.pipeline = static_cast<int>(u);
        break;
      case kThreads:
        if (!ParseU64(optarg, &u) || u < 1 || u > 1024) bad("--threads");
        o.threads = static_cast<int>(u);
        break;
      case kDuration:
        if (!ParseDouble(optarg, &d) || d < 0) bad("--duration");
        o.duration = d;
        break;
      case kWarmup:
        if (!ParseDouble(optarg, &d) || d < 0) bad("--warmup");
        o.warmup = d;
        break;
      case kGetRatio:
        if (!ParseDouble(optarg, &d) || d < 0 || d > 1) bad("--get-ratio (0..1)");
        o.get_ratio = d;
        break;
      case kValueSize:
        if (!ParseU64(optarg, &u) || u > (1u << 30)) bad("--value-size");
        o.value_size = u;
        break;
      case kKeys:
        if (!ParseU64(optarg, &u) || u < 1) bad("--keys");
        o.keys = u;
        break;
      case kKeySize:
        if (!ParseU64(optarg, &u) || u > 250) bad("--key-size (max 250)");
        o.key_size = static_cast<int>(u);
        break;
      case kDist:
        if (std::string_view(optarg) == "zipf")
          o.zipf = true;
        else if (std::string_view(optarg) == "uniform")
          o.zipf = false;
        else
          bad("--dist (uniform|zipf)");
        break;
      case kZipfTheta:
        if (!ParseDouble(optarg, &d) || d <= 0 || d >= 1) bad("--zipf-theta (0 < theta < 1)");
        o.zipf_theta = d;
        break;
      case kPrefill:
        o.prefill = true;
        break;
      case kVerify:
        o.verify = true;
        break;
      case kLoadOnly:
        o.load_only = true;
        break;
      case kJson:
        o.json = true;
        break;
      case kBusyPoll:
        o.busy_poll = true;
        break;
      case kServerPid:
        if (!ParseU64(optarg, &u) || u < 1 || u > 1u << 30) bad("--server-pid");
        o.server_pid = static_cast<int>(u);
        break;
      case kSeed:
        if (!ParseU64(optarg, &u)) bad("--seed");
        o.seed = u;
        break;
      case kHelp:
        Usage(stdout);
        return 0;
      default:
        Usage(stderr);
        return 1;
    }
  }
  if (optind != argc || server.empty()) {
    Usage(stderr);
    return 1;
  }
  if (o.load_only) {
    o.prefill = true;
    o.duration = 0;
  }
  if (o.key_size < 4 + Digits(o.keys - 1)) {
    std::fprintf(stderr, "kv_loadgen: --key-size %d too small for %" PRIu64 " keys (need %d)\n",
                 o.key_size, o.keys, 4 + Digits(o.keys - 1));
    return 1;
  }
  if (o.threads > o.connections) o.threads = o.connections;

  // HOST:PORT, HOST may be [v6]
  const size_t colon = server.rfind(':');
  if (colon == std::string::npos || colon + 1 == server.size()) bad("--server (HOST:PORT)");
  o.host = server.substr(0, colon);
  o.port = server.substr(colon + 1);
  if (o.host.size() >= 2 && o.host.front() == '[' && o.host.back() == ']')
    o.host = o.host.substr(1, o.host.size() - 2);
  addrinfo hints{}, *res = nullptr;
  hints.ai_socktype = SOCK_STREAM;
  if (int rc = getaddrinfo(o.host.c_str(), o.port.c_str(), &hints, &res); rc != 0 || !res) {
    std::fprintf(stderr, "kv_loadgen: %s: %s\n", server.c_str(), gai_strerror(rc));
    return 1;
  }
  std::memcpy(&s.addr, res->ai_addr, res->ai_addrlen);
  s.addr_len = res->ai_addrlen;
  freeaddrinfo(res);

  s.value_pattern.resize(o.value_size + 26);
  for (size_t i = 0; i < s.value_pattern.size(); ++i)
    s.value_pattern[i] = static_cast<char>('a' + i % 26);
  s.set_suffix = " 0 0 " + std::to_string(o.value_size) + "\r\n";
  sched_getaffinity(0, sizeof s.client_cpus, &s.client_cpus);
  if (o.server_pid > 0)
    s.have_server_cpus = sched_getaffinity(o.server_pid, sizeof s.server_cpus, &s.server_cpus) == 0;
  if (o.zipf && o.duration > 0) s.zipf = std::make_unique<Zipf>(o.keys, o.zipf_theta);

  std::vector<std::unique_ptr<Worker>> workers;
  for (int t = 0; t < o.threads; ++t) workers.push_back(std::make_unique<Worker>(s, t));
  for (int i = 0; i < o.connections; ++i) {
    std::string err;
    if (!workers[static_cast<size_t>(i % o.threads)]->AddConnection(i, &err)) {
      std::fprintf(stderr, "kv_loadgen: connection %d to %s: %s\n", i, server.c_str(), err.c_str());
      return 1;
    }
  }

  // Phase boundaries: every thread finishes a phase before any starts the
  // next; the completion step stamps phase times.
  std::atomic<uint64_t> timed_start{0};
  uint64_t phase_t0 = NowNs();
  std::vector<double> phase_secs;  // prefill, verify (those that ran)
  auto on_phase_done = [&]() noexcept {
    const uint64_t now = NowNs();
    phase_secs.push_back(static_cast<double>(now - phase_t0) / 1e9);
    phase_t0 = now;
    timed_start.store(now);
  };
  std::barrier sync(o.threads, on_phase_done);
  std::vector<std::thread> threads;
  for (auto& w : workers)
    threads.emplace_back([&sync, &timed_start, &w] { w->Run(sync, timed_start); });
  for (auto& t : threads) t.join();

  Stats total;
  uint64_t server_cpu_ns = 0, window_ns = 0;
  const double client_busy = workers[0]->client_cores_busy,
               server_busy = workers[0]->server_cores_busy;
  for (auto& w : workers) {
    Stats& st = w->Results();
    total.gets += st.gets;
    total.sets += st.sets;
    total.hits += st.hits;
    total.misses += st.misses;
    total.errors += st.errors;
    total.hist.Merge(st.hist);
    total.cpu_ns += st.cpu_ns;
    total.sweep_ok += st.sweep_ok;
    total.sweep_misses += st.sweep_misses;
    total.sweep_errors += st.sweep_errors;
    total.reconnects += st.reconnects;
    total.dead_conns += st.dead_conns;
    total.waits += st.waits;
    total.events += st.events;
    total.sends += st.sends;
    total.recvs += st.recvs;
    server_cpu_ns += w->server_cpu_ns;
    window_ns = std::max(window_ns, w->window_ns);
  }
  // Prefill and verify share sweep counters; split them by what each expects.
  const double prefill_s = o.prefill ? phase_secs.at(0) : 0;
  const double verify_s = o.verify ? phase_secs.at(o.prefill ? 1 : 0) : 0;
  const uint64_t sweep_expected = o.keys * ((o.prefill ? 1 : 0) + (o.verify ? 1 : 0));
  const bool sweep_ok =
      total.sweep_ok == sweep_expected && total.sweep_misses == 0 && total.sweep_errors == 0;

  const double secs = window_ns ? static_cast<double>(window_ns) / 1e9 : 0;
  const uint64_t ops = total.gets + total.sets;
  auto rate = [&](uint64_t n) { return secs > 0 ? static_cast<double>(n) / secs : 0.0; };
  auto us = [&](double p) { return static_cast<double>(total.hist.Percentile(p)) / 1e3; };
  const double hit_ratio =
      total.gets ? static_cast<double>(total.hits) / static_cast<double>(total.gets) : 0;
  const double client_cpu = secs > 0 ? 100.0 * static_cast<double>(total.cpu_ns) / 1e9 / secs : 0;
  const double server_cpu =
      secs > 0 && o.server_pid ? 100.0 * static_cast<double>(server_cpu_ns) / 1e9 / secs : -1;
  const char* dist = o.zipf ? "zipf" : "uniform";
  auto per_op = [&](uint64_t n) {
    return ops ? static_cast<double>(n) / static_cast<double>(ops) : 0.0;
  };
  const double per_wait =
      total.waits ? static_cast<double>(total.events) / static_cast<double>(total.waits) : 0;

  if (o.json) {
    std::printf(
        "{\"server\":\"%s\",\"threads\":%d,\"connections\":%d,\"pipeline\":%d,\"get_ratio\":%g,"
        "\"value_size\":%zu,\"key_size\":%d,\"keys\":%" PRIu64
        ",\"dist\":\"%s\",\"zipf_theta\":%g,"
        "\"prefill\":%s,\"prefill_s\":%.3f,\"verify\":%s,\"verify_s\":%.3f,"
        "\"sweep_ok\":%" PRIu64 ",\"sweep_misses\":%" PRIu64 ",\"sweep_errors\":%" PRIu64
        ","
        "\"warmup_s\":%g,\"duration_s\":%.3f,\"ops\":%" PRIu64
        ",\"ops_per_sec\":%.1f,\"gets_per_sec\":%.1f,"
        "\"sets_per_sec\":%.1f,\"hits\":%" PRIu64 ",\"misses\":%" PRIu64
        ",\"hit_ratio\":%.6f,"
        "\"errors\":%" PRIu64 ",\"reconnects\":%" PRIu64
        ",\"p50_us\":%.1f,\"p99_us\":%.1f,\"p999_us\":%.1f,"
        "\"max_us\":%.1f,\"mean_us\":%.1f,\"client_cpu_pct\":%.1f,\"server_cpu_pct\":%.1f,"
        "\"client_waits_per_op\":%.3f,\"client_events_per_wait\":%.2f,\"client_sends_per_op\":%.3f,"
        "\"client_recvs_per_op\":%.3f,\"client_cores\":\"%s\",\"client_cores_busy_pct\":%.1f,"
        "\"server_cores\":\"%s\",\"server_cores_busy_pct\":%.1f}\n",
        server.c_str(), o.threads, o.connections, o.pipeline, o.get_ratio, o.value_size, o.key_size,
        o.keys, dist, o.zipf ? o.zipf_theta : 0.0, o.prefill ? "true" : "false", prefill_s,
        o.verify ? "true" : "false", verify_s, total.sweep_ok, total.sweep_misses,
        total.sweep_errors, o.warmup, secs, ops, rate(ops), rate(total.gets), rate(total.sets),
        total.hits, total.misses, hit_ratio, total.errors, total.reconnects, us(50), us(99),
        us(99.9), static_cast<double>(total.hist.Max()) / 1e3, total.hist.Mean() / 1e3, client_cpu,
        server_cpu, per_op(total.waits), per_wait, per_op(total.sends), per_op(total.recvs),
        CpuList(s.client_cpus).c_str(), client_busy,
        s.have_server_cpus ? CpuList(s.server_cpus).c_str() : "", server_busy);
  } else {
    std::printf("server %s: %d connection(s) x pipeline %d over %d thread(s); keys %" PRIu64
                " x %d B (%s), values %zu B\n",
                server.c_str(), o.connections, o.pipeline, o.threads, o.keys, o.key_size, dist,
                o.value_size);
    if (o.prefill)
      std::printf("prefill   %" PRIu64 " keys in %.2f s (%.0f sets/s)\n", o.keys, prefill_s,
                  prefill_s > 0 ? static_cast<double>(o.keys) / prefill_s : 0.0);
    if (o.verify) std::printf("verify    %" PRIu64 " keys in %.2f s\n", o.keys, verify_s);
    if (o.prefill || o.verify)
      std::printf("sweeps    %s: %" PRIu64 " ok, %" PRIu64 " misses, %" PRIu64 " errors\n",
                  sweep_ok ? "OK" : "FAILED", total.sweep_ok, total.sweep_misses,
                  total.sweep_errors);
    if (o.duration > 0) {
      std::printf("workload  get ratio %.2f%s, %.2f s measured after %.2f s warmup\n", o.get_ratio,
                  o.zipf ? (", zipf theta " + std::to_string(o.zipf_theta)).c_str() : "", secs,
                  o.warmup);
      std::printf("ops/s     %.0f  (gets/s %.0f, sets/s %.0f)\n", rate(ops), rate(total.gets),
                  rate(total.sets));
      std::printf("hits      %.2f %% of gets  (%" PRIu64 " hits, %" PRIu64 " misses)\n",
                  100 * hit_ratio, total.hits, total.misses);
      std::printf("latency   p50 %.1f us  p99 %.1f us  p999 %.1f us  max %.1f us  mean %.1f us\n",
                  us(50), us(99), us(99.9), static_cast<double>(total.hist.Max()) / 1e3,
                  total.hist.Mean() / 1e3);
      std::printf("cpu       client %.0f %% (sum over threads)", client_cpu);
      if (server_cpu >= 0) std::printf(", server %.0f %%", server_cpu);
      std::printf("\n");
      std::printf("cores     client cpus %s %.0f %% busy", CpuList(s.client_cpus).c_str(),
                  client_busy);
      if (s.have_server_cpus)
        std::printf(", server cpus %s %.0f %% busy", CpuList(s.server_cpus).c_str(), server_busy);
      std::printf(" (incl. softirq; /proc/stat)\n");
      std::printf("client    per op: %.2f epoll_wait (%.1f events each), %.2f send, %.2f recv%s\n",
                  per_op(total.waits), per_wait, per_op(total.sends), per_op(total.recvs),
                  o.busy_poll ? " (busy-poll)" : "");
    }
    std::printf(
        "errors    %" PRIu64 "%s\n", total.errors,
        total.reconnects ? (" (" + std::to_string(total.reconnects) + " reconnects)").c_str() : "");
  }
  if (total.dead_conns)
    std::fprintf(stderr, "kv_loadgen: %" PRIu64 " connection(s) lost\n", total.dead_conns);
  if (total.errors || total.dead_conns || ((o.prefill || o.verify) && !sweep_ok)) return 2;
  return 0;
}
