// kv_null_server: the no-storage limit of this machine for kv_loadgen. It
// speaks enough memcached text protocol for kv_loadgen and stores nothing:
// a get is answered with the very value the loadgen expects for that key
// (kv_loadgen's values are computed from the key index, see its header), a
// set with STORED. It runs on core's connection loop (TcpServer, io_uring),
// the loop under qcloud-kvd, so qcloud-kvd's ops/s divided by this server's
// is the share of the machine left after everything but the storage engine.
//
//   kv_null_server [--listen 127.0.0.1:0] [--value-size 64] [--threads 1]
//
// Prints "kv_null_server listening on 127.0.0.1:PORT" once it accepts;
// stops on SIGTERM/SIGINT. Bounds: a line over 2048 bytes or a value over
// 1 MiB closes the connection; nothing else is kept between requests.
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "qcloud/core/tcp_server.h"

namespace {

using namespace qcloud;

constexpr size_t kMaxLine = 2048;
constexpr size_t kMaxValue = size_t{1} << 20;
constexpr size_t kHighWater = 1 << 20;

struct Config {
  size_t value_size = 64;
  std::string pattern;  // 'a'..'z' repeated: the value of key index k starts at k % 26
};

class NullSession final : public StreamSession {
 public:
  explicit NullSession(const Config& config) : config_(config) {}

  size_t Process(ByteView in, Buffer& out) override {
    const std::string_view text = in.AsStringView();
    size_t used = 0;
    while (!closing_ && out.size() < kHighWater) {
      const size_t nl = text.find('\n', used);
      if (nl == std::string_view::npos) {
        if (text.size() - used > kMaxLine) closing_ = true;
        break;
      }
      std::string_view line = text.substr(used, nl - used);
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      if (line.starts_with("get ")) {
        Get(line.substr(4), out);
        used = nl + 1;
      } else if (line.starts_with("set ")) {
        // set <key> <flags> <exptime> <bytes>: skip the data block.
        const size_t last = line.rfind(' ');
        const unsigned long bytes = std::strtoul(std::string(line.substr(last + 1)).c_str(), nullptr, 10);
        if (bytes > kMaxValue) {
          closing_ = true;
          break;
        }
        if (text.size() - (nl + 1) < bytes + 2) break;  // the data has not arrived
        used = nl + 1 + bytes + 2;
        out.Append(std::string_view("STORED\r\n"));
      } else {
        used = nl + 1;
        out.Append(std::string_view("ERROR\r\n"));
      }
    }
    return used;
  }
  bool closing() const noexcept override { return closing_; }
  bool blocked(const Buffer& out) const noexcept override { return out.size() >= kHighWater; }

 private:
  void Get(std::string_view keys, Buffer& out) {
    while (!keys.empty()) {
      const size_t sp = keys.find(' ');
      const std::string_view key = keys.substr(0, sp);
      keys = sp == std::string_view::npos ? std::string_view() : keys.substr(sp + 1);
      if (key.empty()) continue;
      // The key's index: its trailing digits ("key:000000000042" -> 42).
      uint64_t k = 0, scale = 1;
      for (size_t i = key.size(); i-- > 0 && key[i] >= '0' && key[i] <= '9'; scale *= 10) {
        k += static_cast<uint64_t>(key[i] - '0') * scale;
      }
      char head[300];
      const int n = std::snprintf(head, sizeof head, "VALUE %.*s 0 %zu\r\n", static_cast<int>(key.size()),
                                  key.data(), config_.value_size);
      out.Append(std::string_view(head, static_cast<size_t>(n)));
      out.Append(std::string_view(config_.pattern.data() + k % 26, config_.value_size));
      out.Append(std::string_view("\r\n"));
    }
    out.Append(std::string_view("END\r\n"));
  }

  const Config& config_;
  bool closing_ = false;
};

class Factory final : public SessionFactory {
 public:
  explicit Factory(const Config& config) : config_(config) {}
  std::unique_ptr<StreamSession> NewSession(unsigned) override {
    return std::make_unique<NullSession>(config_);
  }

 private:
  const Config& config_;
};

[[noreturn]] void Usage(const char* why) {
  std::fprintf(stderr, "kv_null_server: %s\nusage: kv_null_server [--listen ADDR] [--value-size B] [--threads N]\n",
               why);
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  Config config;
  std::string listen = "127.0.0.1:0";
  unsigned threads = 1;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (i + 1 >= argc) Usage("missing value");
    if (a == "--listen") {
      listen = argv[++i];
    } else if (a == "--value-size") {
      config.value_size = std::strtoul(argv[++i], nullptr, 10);
      if (config.value_size == 0 || config.value_size > kMaxValue) Usage("--value-size 1..1048576");
    } else if (a == "--threads") {
      threads = static_cast<unsigned>(std::strtoul(argv[++i], nullptr, 10));
    } else {
      Usage("unknown argument");
    }
  }
  config.pattern.resize(config.value_size + 26);
  for (size_t i = 0; i < config.pattern.size(); ++i) config.pattern[i] = static_cast<char>('a' + i % 26);

  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);  // the workers inherit the mask

  Factory factory(config);
  auto server = TcpServer::Open(factory, {.listen = listen, .threads = threads});
  if (!server.ok()) {
    std::cerr << "kv_null_server: " << server.error().ToString() << "\n";
    return 1;
  }
  std::vector<std::thread> workers;
  for (unsigned i = 0; i < (*server)->threads(); ++i) {
    workers.emplace_back([&, i] { (void)(*server)->Serve(i); });
  }
  std::cout << "kv_null_server listening on " << (*server)->address().ToString() << std::endl;
  int sig = 0;
  sigwait(&stop, &sig);
  (*server)->Stop();
  for (auto& t : workers) t.join();
  return 0;
}
