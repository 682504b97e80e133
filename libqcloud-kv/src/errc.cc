#include "qcloud/kv/errc.h"

#include <string>

namespace qcloud::kv {
namespace {

class KvErrorCategory final : public std::error_category {
 public:
  const char* name() const noexcept override { return "qcloud.kv"; }
  std::string message(int ev) const override {
    switch (static_cast<Errc>(ev)) {
      case Errc::kColdTierFull: return "cold tier full";
      case Errc::kColdTierUnreadable: return "cold tier unreadable";
    }
    return "unknown kv error " + std::to_string(ev);
  }
  // Generic code may test kv's codes against the POSIX conditions.
  std::error_condition default_error_condition(int ev) const noexcept override {
    switch (static_cast<Errc>(ev)) {
      case Errc::kColdTierFull: return std::errc::no_space_on_device;
      case Errc::kColdTierUnreadable: return std::errc::io_error;
    }
    return {ev, *this};
  }
};

}  // namespace

const std::error_category& KvCategory() noexcept {
  static const KvErrorCategory kCategory;
  return kCategory;
}

}  // namespace qcloud::kv
