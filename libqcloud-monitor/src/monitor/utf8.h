#pragma once

// UTF-8 as RFC 3629 has it (no overlong forms, no surrogates, nothing past
// U+10FFFF): label values are checked with it on the way in
// (ValidUtf8), JSON strings on the way out (json_out.h).

#include <cstddef>
#include <string_view>

namespace qcloud::monitor::detail {

// The length of the well-formed sequence at s[i], s[i] >= 0x80; 0 if none.
inline size_t Utf8SequenceLength(std::string_view s, size_t i) noexcept {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(s[i + k]); };
  const unsigned char c = b(0);
  size_t n = 0;
  unsigned char lo = 0x80, hi = 0xBF;  // the second byte's bounds
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    if (c == 0xE0) lo = 0xA0;  // overlong
    if (c == 0xED) hi = 0x9F;  // surrogates
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    if (c == 0xF0) lo = 0x90;  // overlong
    if (c == 0xF4) hi = 0x8F;  // past U+10FFFF
  } else {
    return 0;
  }
  if (i + n > s.size() || b(1) < lo || b(1) > hi) return 0;
  for (size_t k = 2; k < n; ++k) {
    if (b(k) < 0x80 || b(k) > 0xBF) return 0;
  }
  return n;
}

}  // namespace qcloud::monitor::detail
