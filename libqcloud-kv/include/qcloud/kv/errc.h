#pragma once

// kv's error category. The error rule (docs/errors.md): answers a cache
// gives every day — a miss, "not stored", a CAS conflict — are values
// (kv::Outcome); a failure of the node itself is a Status. Failures that
// mean the same everywhere (bad options, I/O) use core's qcloud::Errc; these
// are the ones only a cache node has.

#include <system_error>

#include "qcloud/core/export.h"

namespace qcloud::kv {

enum class Errc {
  kColdTierFull = 1,        // the SSD tier has no room for what must sink (SinkAll)
  kColdTierUnreadable = 2,  // a sunk item could not be read back (I/O or checksum)
};

QCLOUD_EXPORT const std::error_category& KvCategory() noexcept;

inline std::error_code make_error_code(Errc e) noexcept {
  return {static_cast<int>(e), KvCategory()};
}

}  // namespace qcloud::kv

template <>
struct std::is_error_code_enum<qcloud::kv::Errc> : std::true_type {};
