#include "qcloud/core/clock.h"

namespace qcloud {
namespace {
class Real final : public Clock {
 public:
  MonoTime MonotonicNow() const noexcept override { return std::chrono::steady_clock::now(); }
  WallTime WallNow() const noexcept override { return std::chrono::system_clock::now(); }
};
}  // namespace

Clock& RealClock() noexcept {
  static Real clock;
  return clock;
}

}  // namespace qcloud
