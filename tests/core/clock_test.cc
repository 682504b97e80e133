#include <doctest/doctest.h>

#include <thread>

#include "qcloud/core/clock.h"

namespace qcloud {
namespace {

using namespace std::chrono_literals;

TEST_CASE("clock: manual clock moves only when told") {
  ManualClock clock;
  auto m0 = clock.MonotonicNow();
  auto w0 = clock.WallNow();
  CHECK(clock.MonotonicNow() == m0);
  clock.Advance(7 * 24h);
  CHECK(clock.MonotonicNow() - m0 == 7 * 24h);
  CHECK(clock.WallNow() - w0 == 7 * 24h);
  clock.SetWall(WallTime(0s));
  CHECK(clock.WallNow().time_since_epoch() == 0s);
  CHECK(clock.MonotonicNow() - m0 == 7 * 24h);
}

TEST_CASE("clock: manual clock is safe across threads") {
  ManualClock clock;
  auto m0 = clock.MonotonicNow();
  std::thread t([&] {
    for (int i = 0; i < 1000; ++i) clock.Advance(1ms);
  });
  for (int i = 0; i < 1000; ++i) clock.Advance(1ms);
  t.join();
  CHECK(clock.MonotonicNow() - m0 == 2000ms);
}

TEST_CASE("clock: real clock is monotonic") {
  Clock& c = RealClock();
  auto a = c.MonotonicNow();
  auto b = c.MonotonicNow();
  CHECK(b >= a);
  CHECK(c.WallNow().time_since_epoch() > 1'600'000'000s);
}

}  // namespace
}  // namespace qcloud
