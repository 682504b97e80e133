#include "qcloud/core/units.h"

#include <charconv>
#include <limits>

#include <fmt/format.h>

namespace qcloud {
namespace {

// Splits "123unit" into the number and the unit; the number must be there.
Result<std::pair<uint64_t, std::string_view>> SplitNumber(std::string_view text,
                                                          std::string_view what) {
  size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  if (digits == 0) {
    return InvalidArgument(fmt::format("bad {} '{}': want digits, then a unit", what, text));
  }
  uint64_t n = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + digits, n);
  if (ec != std::errc() || end != text.data() + digits) {
    return InvalidArgument(fmt::format("{} '{}' is too large", what, text));
  }
  return std::pair{n, text.substr(digits)};
}

Result<uint64_t> Scale(uint64_t n, uint64_t unit, std::string_view what, std::string_view text,
                       uint64_t max) {
  if (n > max / unit) return InvalidArgument(fmt::format("{} '{}' is too large", what, text));
  return n * unit;
}

}  // namespace

Result<uint64_t> ParseUnsigned(std::string_view text, uint64_t max) {
  QCLOUD_ASSIGN_OR_RETURN(auto split, SplitNumber(text, "number"));
  if (!split.second.empty()) {
    return InvalidArgument(fmt::format("bad number '{}': want decimal digits only", text));
  }
  if (split.first > max) {
    return InvalidArgument(fmt::format("number {} is above the limit {}", text, max));
  }
  return split.first;
}

Result<std::chrono::milliseconds> ParseDuration(std::string_view text) {
  QCLOUD_ASSIGN_OR_RETURN(auto split, SplitNumber(text, "duration"));
  const auto [n, unit] = split;
  uint64_t ms_per_unit = 0;
  if (unit == "ms") {
    ms_per_unit = 1;
  } else if (unit.empty() || unit == "s") {
    ms_per_unit = 1000;
  } else if (unit == "m") {
    ms_per_unit = 60'000;
  } else if (unit == "h") {
    ms_per_unit = 3'600'000;
  } else if (unit == "d") {
    ms_per_unit = 86'400'000;
  } else {
    return InvalidArgument(
        fmt::format("bad duration '{}': unit must be ms, s, m, h or d", text));
  }
  // Bounded so that adding the duration to any clock reading cannot overflow.
  constexpr uint64_t kMaxMs = uint64_t{1} << 52;
  QCLOUD_ASSIGN_OR_RETURN(uint64_t ms, Scale(n, ms_per_unit, "duration", text, kMaxMs));
  return std::chrono::milliseconds(static_cast<int64_t>(ms));
}

Result<uint64_t> ParseByteSize(std::string_view text, uint64_t plain_unit) {
  QCLOUD_ASSIGN_OR_RETURN(auto split, SplitNumber(text, "size"));
  auto [n, unit] = split;
  if (unit.ends_with('B')) unit.remove_suffix(1);
  if (unit.size() == 2 && unit[1] == 'i') unit.remove_suffix(1);
  if (unit.empty() && split.second.empty()) {
    return Scale(n, plain_unit == 0 ? 1 : plain_unit, "size", text, UINT64_MAX);
  }
  unsigned shift = 0;
  if (unit.empty()) {
    shift = 0;  // "B" alone: bytes
  } else if (unit.size() == 1) {
    switch (unit[0]) {
      case 'K': case 'k': shift = 10; break;
      case 'M': case 'm': shift = 20; break;
      case 'G': case 'g': shift = 30; break;
      case 'T': case 't': shift = 40; break;
      default: shift = 64; break;
    }
  } else {
    shift = 64;
  }
  if (shift == 64) {
    return InvalidArgument(fmt::format("bad size '{}': unit must be K, M, G or T", text));
  }
  return Scale(n, uint64_t{1} << shift, "size", text, UINT64_MAX);
}

}  // namespace qcloud
