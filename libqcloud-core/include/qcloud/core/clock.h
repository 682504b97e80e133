#pragma once

// Clock: the only source of time in qcloud's libraries. Library code takes a
// Clock& (through its Options) and never calls now() itself, so tests drive
// expiry, cooldowns, heartbeats and alarms with ManualClock, without sleeping.

#include <atomic>
#include <chrono>

#include "qcloud/core/export.h"

namespace qcloud {

using MonoTime = std::chrono::steady_clock::time_point;
using WallTime = std::chrono::system_clock::time_point;

class QCLOUD_EXPORT Clock {
 public:
  virtual ~Clock() = default;
  // Monotonic time, for durations, deadlines and rates. Thread-safe.
  virtual MonoTime MonotonicNow() const noexcept = 0;
  // Wall-clock time since the UNIX epoch, for timestamps that leave the
  // process (expiry times on the wire, records on disk). Thread-safe.
  virtual WallTime WallNow() const noexcept = 0;
};

// The real clocks (steady_clock, system_clock). Stateless; lives forever.
QCLOUD_EXPORT Clock& RealClock() noexcept;

// A clock that moves only when told. Both readings advance together.
// Thread-safe: readers on other threads see each Advance() atomically per
// reading.
class QCLOUD_EXPORT ManualClock final : public Clock {
 public:
  // Starts at monotonic time 0 and at wall time `wall_start`
  // (default 2014-01-01T00:00:00Z, when the seeds were told).
  explicit ManualClock(WallTime wall_start = WallTime(std::chrono::seconds(1388534400)))
      : mono_ns_(0), wall_ns_(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                  wall_start.time_since_epoch())
                                  .count()) {}

  MonoTime MonotonicNow() const noexcept override {
    return MonoTime(std::chrono::nanoseconds(mono_ns_.load(std::memory_order_acquire)));
  }
  WallTime WallNow() const noexcept override {
    return WallTime(std::chrono::duration_cast<WallTime::duration>(
        std::chrono::nanoseconds(wall_ns_.load(std::memory_order_acquire))));
  }

  // Moves both clocks forward. Precondition: d >= 0 (monotonic).
  void Advance(std::chrono::nanoseconds d) noexcept {
    mono_ns_.fetch_add(d.count(), std::memory_order_acq_rel);
    wall_ns_.fetch_add(d.count(), std::memory_order_acq_rel);
  }
  // Sets the wall clock alone (as NTP might); the monotonic clock is unchanged.
  void SetWall(WallTime t) noexcept {
    wall_ns_.store(
        std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count(),
        std::memory_order_release);
  }

 private:
  std::atomic<int64_t> mono_ns_;
  std::atomic<int64_t> wall_ns_;
};

}  // namespace qcloud
