#pragma once

// Durations and byte sizes as people write them on command lines and in
// configuration, parsed by one rule for every qcloud program:
//
//   ParseDuration("7d")    -> 604800000 ms   units: ms s m h d (plain = seconds)
//   ParseDuration("250ms") -> 250 ms
//   ParseByteSize("512M")  -> 536870912      units: K M G T (powers of 1024),
//   ParseByteSize("10GiB") -> 10737418240    optional "i"/"B"; plain = bytes
//
// Refused with kInvalidArgument: empty text, signs ("-1" must not wrap to
// 2^64-1), spaces, unknown units, fractions, and values that overflow.

#include <chrono>
#include <cstdint>
#include <string_view>

#include "qcloud/core/export.h"
#include "qcloud/core/result.h"

namespace qcloud {

// Decimal digits only, at most `max`. Errors: kInvalidArgument.
QCLOUD_EXPORT Result<uint64_t> ParseUnsigned(std::string_view text, uint64_t max = UINT64_MAX);

QCLOUD_EXPORT Result<std::chrono::milliseconds> ParseDuration(std::string_view text);

// `plain_unit` scales a number without a unit: 1 reads "1024" as bytes,
// 1 << 20 as MiB (memcached's -m convention).
QCLOUD_EXPORT Result<uint64_t> ParseByteSize(std::string_view text, uint64_t plain_unit = 1);

}  // namespace qcloud
