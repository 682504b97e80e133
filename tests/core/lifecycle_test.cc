#include "qcloud/core/lifecycle.h"

#include <doctest/doctest.h>
#include <signal.h>

#include <atomic>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "qcloud/testing/doctest_helpers.h"

namespace qcloud {
namespace {

using namespace std::chrono_literals;

TEST_CASE("lifecycle: periodic tasks run on the injected clock") {
  ManualClock clock;
  auto life = REQUIRE_VALUE(Lifecycle::Open({.clock = &clock}));
  int fast = 0, slow = 0;
  life->Every("fast", 1s, [&] {
    ++fast;
    return Status::Ok();
  });
  life->Every("slow", 5s, [&] {
    ++slow;
    return Status(Errc::kIoError, "a failing task keeps its schedule");
  });
  CHECK(life->RunDue() == MonoTime(1s));
  CHECK(fast == 0);
  clock.Advance(1s);
  CHECK(life->RunDue() == MonoTime(2s));
  CHECK(fast == 1);
  clock.Advance(4s);  // missed runs are skipped, not run back to back
  CHECK(life->RunDue() == MonoTime(6s));
  CHECK(fast == 2);
  CHECK(slow == 1);
  clock.Advance(5s);
  life->RunDue();
  CHECK(slow == 2);
}

TEST_CASE("lifecycle: a stop runs hooks in order, joins workers, then the drained hooks") {
  auto life = REQUIRE_VALUE(Lifecycle::Open({}));
  std::mutex mu;
  std::vector<std::string> order;
  auto note = [&](std::string what) {
    std::lock_guard lock(mu);
    order.push_back(std::move(what));
  };
  std::atomic<bool> quit{false};
  for (int i = 0; i < 2; ++i) {
    life->Spawn("worker", [&, i] {
      while (!quit.load()) std::this_thread::sleep_for(1ms);
      note("worker " + std::to_string(i) + " done");
      return Status::Ok();
    });
  }
  life->OnStop("first", [&] {
    note("stop 1");
    return Status::Ok();
  });
  life->OnStop("second", [&] {
    note("stop 2");
    quit = true;
    return Status::Ok();
  });
  life->OnDrained("drained", [&] {
    note("drained");
    return Status::Ok();
  });
  std::thread stopper([&] {
    std::this_thread::sleep_for(20ms);
    life->Stop();
    life->Stop();  // idempotent
  });
  CHECK_OK(life->Run());
  stopper.join();
  REQUIRE(order.size() == 5);
  CHECK(order[0] == "stop 1");
  CHECK(order[1] == "stop 2");
  CHECK(order[4] == "drained");
  CHECK(life->stopping());
}

TEST_CASE("lifecycle: a failing worker stops the process and is the result") {
  auto life = REQUIRE_VALUE(Lifecycle::Open({}));
  std::atomic<bool> other_stopped{false};
  life->Spawn("bad", [] { return Status(Errc::kIoError, "disk gone"); });
  life->Spawn("good", [&] {
    while (!other_stopped.load()) std::this_thread::sleep_for(1ms);
    return Status::Ok();
  });
  life->OnStop("good", [&] {
    other_stopped = true;
    return Status::Ok();
  });
  Status s = life->Run();
  CHECK(s == Errc::kIoError);
  CHECK(s.message().find("bad") != std::string::npos);
}

TEST_CASE("lifecycle: workers that outlive the drain deadline make Run time out") {
  auto life = REQUIRE_VALUE(Lifecycle::Open({.drain_timeout = 50ms}));
  auto release = std::make_shared<std::promise<void>>();
  auto released = release->get_future().share();
  life->Spawn("stuck", [released] {
    released.wait();
    return Status::Ok();
  });
  life->Stop();
  CHECK_ERRC(life->Run(), Errc::kTimedOut);
  release->set_value();  // the detached worker ends on its own
}

TEST_CASE("lifecycle: SIGTERM begins the stop") {
  // HandleSignals blocks SIGTERM in this thread; the signal is then taken
  // from the signalfd by Run(), never delivered as a handler call.
  sigset_t old;
  pthread_sigmask(SIG_SETMASK, nullptr, &old);
  {
    auto life = REQUIRE_VALUE(Lifecycle::Open({}));
    CHECK_OK(life->HandleSignals());
    std::atomic<bool> stopped{false};
    life->OnStop("note", [&] {
      stopped = true;
      return Status::Ok();
    });
    // To this thread, where it is blocked and waits for the signalfd; a
    // process-wide kill could land on another test's thread instead.
    ::pthread_kill(::pthread_self(), SIGTERM);
    CHECK_OK(life->Run());
    CHECK(stopped.load());
  }
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
}

TEST_CASE("lifecycle: options are checked") {
  CHECK_ERRC(Lifecycle::Open({.drain_timeout = -1ms}), Errc::kInvalidArgument);
}

}  // namespace
}  // namespace qcloud
