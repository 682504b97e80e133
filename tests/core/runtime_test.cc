#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/post.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>

#include "net_client.h"
#include "qcloud/runtime/runtime.h"
#include "qcloud/testing/doctest_helpers.h"

namespace qcloud {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;
using namespace std::chrono_literals;

// Echoes 8-byte messages until the peer closes.
struct Echo : std::enable_shared_from_this<Echo> {
  explicit Echo(tcp::socket s) : socket(std::move(s)) {}
  void Start() {
    asio::async_read(socket, asio::buffer(buf), [self = shared_from_this()](auto ec, size_t) {
      if (ec) return;
      asio::async_write(self->socket, asio::buffer(self->buf),
                        [self](auto ec2, size_t) {
                          if (!ec2) self->Start();
                        });
    });
  }
  tcp::socket socket;
  char buf[8];
};

TEST_CASE("runtime: serves connections on every shard and stops cleanly") {
  auto rt = REQUIRE_VALUE(Runtime::Open({.threads = 2}));
  CHECK(rt->size() == 2);
  // The handler runs on the shards' threads: it counts, the test checks.
  std::atomic<int> accepted{0};
  std::atomic<int> per_shard[3] = {0, 0, 0};
  auto ep = REQUIRE_VALUE(rt->Listen(REQUIRE_VALUE(ParseEndpoint("127.0.0.1:0")),
                                     [&](tcp::socket s, size_t shard) {
                                       per_shard[std::min<size_t>(shard, 2)]++;
                                       accepted++;
                                       std::make_shared<Echo>(std::move(s))->Start();
                                     }));
  CHECK(ep.port != 0);
  std::atomic<int> hooks{0};
  rt->OnStop([&] { hooks++; });
  rt->Start();
  for (int i = 0; i < 20; ++i) {
    test::BlockingClient c(ToAsio(ep));
    std::string msg = "ping" + std::to_string(1000 + i);
    c.Send(msg);
    CHECK(c.ReadExactly(8) == msg);
  }
  CHECK(accepted.load() == 20);
  CHECK(per_shard[2].load() == 0);  // no shard index out of range
  // SO_REUSEPORT spreads 20 connections over both (all on one: p = 2^-19).
  CHECK(per_shard[0].load() > 0);
  CHECK(per_shard[1].load() > 0);
  rt->Stop();
  rt->Stop();  // idempotent
  CHECK_OK(rt->Join());
  CHECK(hooks.load() == 1);
  // The listeners are closed.
  asio::io_context io;
  tcp::socket s(io);
  boost::system::error_code ec;
  s.connect(ToAsio(ep), ec);
  CHECK(ec);
}

TEST_CASE("runtime: the drain deadline forces a stop") {
  auto rt = REQUIRE_VALUE(Runtime::Open(
      {.threads = 1, .drain_timeout = 200ms}));
  auto ep = REQUIRE_VALUE(rt->Listen(REQUIRE_VALUE(ParseEndpoint("127.0.0.1:0")),
                                     [](tcp::socket s, size_t) {
                                       std::make_shared<Echo>(std::move(s))->Start();
                                     }));
  rt->Start();
  test::BlockingClient idle(ToAsio(ep));  // never closes: its read keeps shard 0 busy
  idle.Send("12345678");
  CHECK(idle.ReadExactly(8) == "12345678");
  rt->Stop();
  CHECK_ERRC(rt->Join(), Errc::kTimedOut);
}

TEST_CASE("runtime: Run serves on the calling thread until Stop") {
  auto rt = REQUIRE_VALUE(Runtime::Open({.threads = 1}));
  std::thread::id ran_on;
  // Posted before Run(): it runs once Run() serves context 0, then stops it.
  boost::asio::post(rt->context(0), [&] {
    ran_on = std::this_thread::get_id();
    rt->Stop();
  });
  CHECK_OK(rt->Run());
  CHECK(ran_on == std::this_thread::get_id());
}

TEST_CASE("runtime: a port held by another socket is an error") {
  asio::io_context io;
  tcp::acceptor holder(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  auto rt = REQUIRE_VALUE(Runtime::Open({.threads = 1}));
  auto r = rt->Listen(FromAsio(holder.local_endpoint()), [](tcp::socket, size_t) {});
  CHECK_FALSE(r.ok());
  CHECK(r.status().message().find("listen on 127.0.0.1") == 0);
}

TEST_CASE("runtime: options are validated") {
  CHECK_ERRC(Runtime::Open({.threads = 5000}), Errc::kInvalidArgument);
}

}  // namespace
}  // namespace qcloud
