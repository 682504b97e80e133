// s3_load: an S3 load generator. One thread, one epoll loop, many
// keep-alive connections, each with one request in flight; requests are
// signed with SigV4 (UNSIGNED-PAYLOAD, so a PUT body can change without a
// new signature) once per key before the clock starts, so the client's cost
// per request is the same whatever server it talks to (nginx ignores the
// signature headers).
//
//   s3_load --endpoint 127.0.0.1:9000 --access AK --secret SK --bucket b
//           --op put|get --size 1024 --keys 10000 --conns 64 --seconds 5
//   s3_load --op limits --dir /tmp/x --size 64M    (MD5, SHA-256, disk MB/s)
//   s3_load ... --op put --size 0 --header "x-qcloud-instant-upload: MD5:SHA256:SIZE"
//   s3_load ... --op mkbucket                      (creates --bucket)
//
// Prints one JSON line: op, size, conns, requests, errors, seconds, ops_s,
// mb_s, p50_us, p99_us. PUT bodies are random and differ in their first 16
// bytes per request, so de-duplication never helps.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "qcloud/core/clock.h"
#include "qcloud/core/hash.h"
#include "qcloud/object/sigv4.h"

using namespace qcloud;
using Steady = std::chrono::steady_clock;

namespace {

struct Args {
  std::string endpoint = "127.0.0.1:9000";
  std::string access = "AKIAALICE";
  std::string secret = "alice-secret";
  std::string bucket = "bench";
  std::string op = "get";
  std::string dir = "/tmp";
  std::string prefix = "k";
  uint64_t size = 1024;
  size_t keys = 10000;
  size_t conns = 64;
  double seconds = 5;
  bool once = false;  // each key once (populate), then stop
  std::vector<std::string> headers;  // extra "Name: value" lines on every request (not signed)
};

uint64_t ParseSize(const char* s) {
  char* end = nullptr;
  uint64_t v = std::strtoull(s, &end, 10);
  if (*end == 'K' || *end == 'k') v <<= 10;
  if (*end == 'M' || *end == 'm') v <<= 20;
  if (*end == 'G' || *end == 'g') v <<= 30;
  return v;
}

Args Parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i + 1 < argc || (i < argc && std::string(argv[i]) == "--once"); i += 2) {
    const std::string k = argv[i];
    if (k == "--once") {
      a.once = true;
      --i;
      continue;
    }
    const char* v = argv[i + 1];
    if (k == "--endpoint") a.endpoint = v;
    else if (k == "--access") a.access = v;
    else if (k == "--secret") a.secret = v;
    else if (k == "--bucket") a.bucket = v;
    else if (k == "--op") a.op = v;
    else if (k == "--dir") a.dir = v;
    else if (k == "--prefix") a.prefix = v;
    else if (k == "--size") a.size = ParseSize(v);
    else if (k == "--keys") a.keys = std::strtoull(v, nullptr, 10);
    else if (k == "--conns") a.conns = std::strtoull(v, nullptr, 10);
    else if (k == "--seconds") a.seconds = std::strtod(v, nullptr);
    else if (k == "--header") a.headers.push_back(v);
    else {
      std::fprintf(stderr, "s3_load: unknown option %s\n", k.c_str());
      std::exit(2);
    }
  }
  return a;
}

// Log-linear latency histogram in microseconds (about 3% resolution).
struct Histogram {
  std::vector<uint64_t> buckets = std::vector<uint64_t>(64 * 32, 0);
  static size_t Index(uint64_t us) {
    if (us < 32) return us;
    const int msb = 63 - __builtin_clzll(us);
    const size_t sub = (us >> (msb - 5)) & 31;
    return std::min<size_t>((msb - 4) * 32 + sub, 64 * 32 - 1);
  }
  static uint64_t Value(size_t i) {
    if (i < 32) return i;
    const int msb = static_cast<int>(i / 32) + 4;
    return (uint64_t{32} + i % 32) << (msb - 5);
  }
  void Add(uint64_t us) { ++buckets[Index(us)]; }
  uint64_t Percentile(double p) const {
    uint64_t total = 0;
    for (uint64_t b : buckets) total += b;
    const uint64_t want = static_cast<uint64_t>(p * static_cast<double>(total));
    uint64_t seen = 0;
    for (size_t i = 0; i < buckets.size(); ++i) {
      seen += buckets[i];
      if (seen > want) return Value(i);
    }
    return 0;
  }
};

std::string AmzDate() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%dT%H%M%SZ", &tm);
  return buf;
}

// A signed request head for one key.
std::string Head(const Args& a, const std::string& method, const std::string& key, const std::string& host,
                 const std::string& amz) {
  const std::string path = key.empty() ? "/" + a.bucket : "/" + a.bucket + "/" + key;
  std::vector<std::pair<std::string, std::string>> headers = {
      {"host", host}, {"x-amz-content-sha256", "UNSIGNED-PAYLOAD"}, {"x-amz-date", amz}};
  object::sigv4::Request r{.method = method, .path = path, .query = "", .headers = headers};
  const std::string scope = amz.substr(0, 8) + "/us-east-1/s3/aws4_request";
  const std::string canonical =
      object::sigv4::CanonicalRequest(r, {"host", "x-amz-content-sha256", "x-amz-date"}, "UNSIGNED-PAYLOAD", false);
  const std::string sig = object::sigv4::Signature(object::sigv4::SigningKey(a.secret, amz.substr(0, 8), "us-east-1", "s3"),
                                                   object::sigv4::StringToSign(amz, scope, canonical));
  std::string h = method + " " + path + " HTTP/1.1\r\nHost: " + host +
                  "\r\nx-amz-content-sha256: UNSIGNED-PAYLOAD\r\nx-amz-date: " + amz +
                  "\r\nAuthorization: AWS4-HMAC-SHA256 Credential=" + a.access + "/" + scope +
                  ", SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature=" + sig + "\r\n";
  if (method == "PUT") h += "Content-Length: " + std::to_string(a.size) + "\r\n";
  for (const std::string& extra : a.headers) h += extra + "\r\n";
  h += "\r\n";
  return h;
}

struct Conn {
  int fd = -1;
  size_t key = 0;
  size_t sent = 0;          // bytes of head + body sent
  std::string in;           // response bytes so far (head)
  uint64_t body_left = 0;   // response body bytes still to read
  bool head_done = false;
  int status = 0;
  Steady::time_point started;
};

int Connect(const std::string& endpoint) {
  const size_t colon = endpoint.rfind(':');
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<uint16_t>(std::atoi(endpoint.c_str() + colon + 1)));
  ::inet_pton(AF_INET, endpoint.substr(0, colon).c_str(), &sa.sin_addr);
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
    std::perror("connect");
    std::exit(1);
  }
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  ::fcntl(fd, F_SETFL, O_NONBLOCK);
  return fd;
}

int RunLoad(const Args& a) {
  const bool put = a.op == "put" || a.op == "mkbucket";
  const std::string amz = AmzDate();
  std::vector<std::string> heads;
  heads.reserve(a.keys);
  for (size_t i = 0; i < a.keys; ++i) {
    heads.push_back(Head(a, put ? "PUT" : "GET", a.op == "mkbucket" ? "" : a.prefix + std::to_string(i),
                         a.endpoint, amz));
  }
  std::string body(put ? a.size : 0, '\0');
  std::mt19937_64 rng(12345);
  for (size_t i = 0; i < body.size(); i += 8) {
    const uint64_t r = rng();
    std::memcpy(body.data() + i, &r, std::min<size_t>(8, body.size() - i));
  }
  // Bodies differ by a counter in their first 8 bytes, from a start drawn
  // per process: no two runs send the same content (which the server would
  // de-duplicate, a different workload).
  uint64_t counter = (uint64_t{std::random_device{}()} << 32) ^ std::random_device{}() ^
                     static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());

  const int ep = ::epoll_create1(0);
  std::vector<Conn> conns(std::min(a.conns, a.once ? a.keys : a.conns));
  size_t next_key = 0;
  auto pick = [&]() -> size_t {
    if (a.once) return next_key++;
    return static_cast<size_t>(rng() % a.keys);
  };
  Histogram hist;
  uint64_t done = 0, errors = 0, bytes = 0;
  std::vector<char> buf(1 << 20);
  const auto start = Steady::now();
  const auto stop = start + std::chrono::duration_cast<Steady::duration>(std::chrono::duration<double>(a.seconds));
  size_t active = 0;

  auto begin = [&](Conn& c) {
    c.key = pick();
    c.sent = 0;
    c.in.clear();
    c.head_done = false;
    c.body_left = 0;
    c.started = Steady::now();
    ++active;
  };
  auto send_some = [&](Conn& c) {
    const std::string& h = heads[c.key];
    const size_t total = h.size() + body.size();
    while (c.sent < total) {
      iovec iov[2];
      int n = 0;
      if (c.sent < h.size()) iov[n++] = {const_cast<char*>(h.data()) + c.sent, h.size() - c.sent};
      const size_t boff = c.sent > h.size() ? c.sent - h.size() : 0;
      if (boff < body.size()) iov[n++] = {body.data() + boff, body.size() - boff};
      const ssize_t w = ::writev(c.fd, iov, n);
      if (w < 0) {
        if (errno == EAGAIN) return;
        std::perror("writev");
        std::exit(1);
      }
      c.sent += static_cast<size_t>(w);
    }
  };
  for (auto& c : conns) {
    c.fd = Connect(a.endpoint);
    epoll_event ev{.events = EPOLLIN | EPOLLOUT, .data = {.ptr = &c}};
    ::epoll_ctl(ep, EPOLL_CTL_ADD, c.fd, &ev);
    if (a.once && next_key >= a.keys) continue;
    begin(c);
    if (body.size() >= 8) {
      ++counter;
      std::memcpy(body.data(), &counter, 8);
    }
    send_some(c);
  }
  std::vector<epoll_event> events(256);
  while (active > 0) {
    const int n = ::epoll_wait(ep, events.data(), static_cast<int>(events.size()), 1000);
    for (int i = 0; i < n; ++i) {
      Conn& c = *static_cast<Conn*>(events[i].data.ptr);
      if (c.sent < heads[c.key].size() + body.size()) {
        send_some(c);
        continue;
      }
      for (;;) {
        const ssize_t r = ::read(c.fd, buf.data(), buf.size());
        if (r == 0) {
          std::fprintf(stderr, "s3_load: the server closed a connection\n");
          std::exit(1);
        }
        if (r < 0) {
          if (errno == EAGAIN) break;
          std::perror("read");
          std::exit(1);
        }
        size_t used = 0;
        if (!c.head_done) {
          c.in.append(buf.data(), static_cast<size_t>(r));
          const size_t end = c.in.find("\r\n\r\n");
          if (end == std::string::npos) continue;
          c.head_done = true;
          c.status = std::atoi(c.in.c_str() + 9);
          uint64_t len = 0;
          std::string lower = c.in.substr(0, end);
          for (char& ch : lower) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
          const size_t cl = lower.find("\r\ncontent-length:");
          if (cl != std::string::npos) len = std::strtoull(lower.c_str() + cl + 17, nullptr, 10);
          const size_t have = c.in.size() - end - 4;
          c.body_left = len - std::min<uint64_t>(len, have);
          used = static_cast<size_t>(r);
        } else {
          c.body_left -= std::min<uint64_t>(c.body_left, static_cast<uint64_t>(r));
          used = static_cast<size_t>(r);
        }
        (void)used;
        if (c.body_left > 0) continue;
        // One response complete.
        --active;
        const auto now = Steady::now();
        if (c.status / 100 == 2) {
          ++done;
          bytes += a.size;
          hist.Add(static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(now - c.started).count()));
        } else {
          if (errors < 3) std::fprintf(stderr, "s3_load: HTTP %d: %.200s\n", c.status, c.in.c_str());
          ++errors;
        }
        if ((a.once && next_key >= a.keys) || (!a.once && now >= stop)) break;
        begin(c);
        if (body.size() >= 8) {
          ++counter;
          std::memcpy(body.data(), &counter, 8);
        }
        send_some(c);
        break;
      }
    }
  }
  const double secs = std::chrono::duration<double>(Steady::now() - start).count();
  std::printf("{\"op\":\"%s\",\"size\":%llu,\"conns\":%zu,\"requests\":%llu,\"errors\":%llu,\"seconds\":%.3f,"
              "\"ops_s\":%.0f,\"mb_s\":%.1f,\"p50_us\":%llu,\"p99_us\":%llu}\n",
              a.op.c_str(), static_cast<unsigned long long>(a.size), conns.size(),
              static_cast<unsigned long long>(done), static_cast<unsigned long long>(errors), secs,
              static_cast<double>(done) / secs, static_cast<double>(bytes) / secs / 1e6,
              static_cast<unsigned long long>(hist.Percentile(0.5)),
              static_cast<unsigned long long>(hist.Percentile(0.99)));
  return errors == 0 ? 0 : 1;
}

// The limits a PUT of a large object runs into on this machine: MD5 and
// SHA-256 of the body (both are computed for the ETag and the content id)
// and the disk, written sequentially (through the page cache, and then with
// fdatasync) and read back.
int RunLimits(const Args& a) {
  std::string data(a.size, '\0');
  std::mt19937_64 rng(7);
  for (size_t i = 0; i + 8 <= data.size(); i += 8) {
    const uint64_t r = rng();
    std::memcpy(data.data() + i, &r, 8);
  }
  auto rate = [&](auto fn, int reps) {
    const auto t0 = Steady::now();
    for (int i = 0; i < reps; ++i) fn();
    const double s = std::chrono::duration<double>(Steady::now() - t0).count();
    return static_cast<double>(a.size) * reps / s / 1e6;
  };
  volatile uint8_t sink = 0;
  const double md5 = rate([&] { sink = static_cast<uint8_t>(Md5(ByteView(data))[0]); }, 4);
  const double sha = rate([&] { sink = static_cast<uint8_t>(Sha256(ByteView(data))[0]); }, 4);
  const std::string path = a.dir + "/s3_load_limits.tmp";
  auto write_file = [&](bool sync) {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    for (size_t off = 0; off < data.size();) {
      const ssize_t w = ::write(fd, data.data() + off, std::min<size_t>(8 << 20, data.size() - off));
      if (w <= 0) std::exit(1);
      off += static_cast<size_t>(w);
    }
    if (sync) ::fdatasync(fd);
    ::close(fd);
  };
  const double disk_write = rate([&] { write_file(false); }, 4);
  const double disk_sync = rate([&] { write_file(true); }, 2);
  const double disk_read = rate(
      [&] {
        const int fd = ::open(path.c_str(), O_RDONLY);
        ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);  // from the device, not the cache
        std::vector<char> buf(8 << 20);
        while (::read(fd, buf.data(), buf.size()) > 0) {
        }
        ::close(fd);
      },
      2);
  ::unlink(path.c_str());
  std::printf("{\"op\":\"limits\",\"size\":%llu,\"md5_mb_s\":%.0f,\"sha256_mb_s\":%.0f,"
              "\"disk_write_mb_s\":%.0f,\"disk_write_fdatasync_mb_s\":%.0f,\"disk_read_mb_s\":%.0f}\n",
              static_cast<unsigned long long>(a.size), md5, sha, disk_write, disk_sync, disk_read);
  return sink == 255 ? 0 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  const Args a = Parse(argc, argv);
  if (a.op == "limits") return RunLimits(a);
  if (a.op == "mkbucket") {
    Args m = a;
    m.size = 0;
    m.keys = 1;
    m.conns = 1;
    m.once = true;
    return RunLoad(m);
  }
  if (a.op != "put" && a.op != "get") {
    std::fprintf(stderr, "s3_load: --op put|get|mkbucket|limits\n");
    return 2;
  }
  return RunLoad(a);
}
