// Uses a slice of every part of qcloud::core, and qcloud::kv's store and
// server, through the installed headers, without Boost.
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include "qcloud/core/compress.h"
#include "qcloud/core/env.h"
#include "qcloud/core/hash.h"
#include "qcloud/core/metrics.h"
#include "qcloud/core/result.h"
#include "qcloud/core/tcp_server.h"
#include "qcloud/kv/server.h"
#include "qcloud/kv/store.h"

// A program that links only core and kv has no Boost anywhere.
#ifdef BOOST_VERSION
#error "a qcloud::core/kv header pulled in Boost"
#endif

#define EXPECT(cond)                                              \
  do {                                                            \
    if (!(cond)) {                                                \
      std::fprintf(stderr, "consumer: failed: %s\n", #cond);     \
      return 1;                                                   \
    }                                                             \
  } while (0)

#define EXPECT_VOID(cond) \
  do {                                                        \
    if (!(cond)) std::fprintf(stderr, "consumer: failed: %s\n", #cond), std::abort(); \
  } while (0)

// Sends `request` and reads `want` reply bytes (or until the server closes).
static std::string Roundtrip(const std::string& address, const std::string& request, size_t want) {
  auto ep = qcloud::ParseEndpoint(address);
  if (!ep.ok()) return "";
  sockaddr_storage ss{};
  const socklen_t len = ep->ToSockaddr(&ss);
  const int fd = ::socket(ss.ss_family, SOCK_STREAM, 0);
  std::string out;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&ss), len) == 0 &&
      ::send(fd, request.data(), request.size(), 0) == static_cast<ssize_t>(request.size())) {
    char buf[256];
    while (out.size() < want) {
      const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) break;
      out.append(buf, static_cast<size_t>(n));
    }
  }
  ::close(fd);
  return out;
}

int main() {
  using namespace qcloud;
  EXPECT(ToHex(AsBytes(Md5(std::string_view("abc")))) == "900150983cd24fb0d6963f7d28e17f72");

  std::string text(10000, 'q');
  auto packed = ZstdCompress(text);
  EXPECT(packed.ok());
  auto unpacked = ZstdDecompress(packed->readable(), text.size());
  EXPECT(unpacked.ok() && unpacked->readable().AsStringView() == text);

  auto env = OpenPosixEnv();
  EXPECT(env.ok());
  char dir[] = "/tmp/qcloud-consumer-XXXXXX";
  EXPECT(mkdtemp(dir) != nullptr);
  std::string path = JoinPath(dir, "f");
  EXPECT(WriteFileAtomically(**env, path, std::string_view("installed")).ok());
  EXPECT(ReadFileToString(**env, path).value_or("") == "installed");
  EXPECT((*env)->RemoveFile(path).ok());

  MetricsRegistry reg;
  auto* c = reg.AddCounter("consumer_runs_total", "Runs.").value();
  c->Get().Increment();
  EXPECT(reg.RenderText().find("consumer_runs_total 1") != std::string::npos);

  auto ep = ParseEndpoint("[::1]:11311");
  EXPECT(ep.ok() && ep->ToString() == "[::1]:11311");

  auto store = kv::Store::Open({.memory_bytes = 8 << 20});
  EXPECT(store.ok());
  EXPECT((*store)->Set("user:42", "alice", {.flags = 5}).outcome == kv::Outcome::kOk);
  std::string value;
  uint32_t flags = 0;
  EXPECT((*store)->Get("user:42", &value, &flags) && value == "alice" && flags == 5);

  // The memcached front end over core's connection loop, on a free port.
  auto server = kv::Server::Open(**store, {.listen = "127.0.0.1:0"});
  EXPECT(server.ok());
  std::thread worker([&] { EXPECT_VOID((*server)->Serve(0).ok()); });
  auto reply = Roundtrip((*server)->address(), "get user:42\r\n", 31);
  (*server)->Stop();
  worker.join();
  EXPECT(reply == "VALUE user:42 5 5\r\nalice\r\nEND\r\n");

  std::printf("consumer: qcloud::core and qcloud::kv work (io backend %s)\n",
              std::string((*env)->io_backend()).c_str());
  return 0;
}
