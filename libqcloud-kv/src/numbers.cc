#include "kv/numbers.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace qcloud::kv {

namespace {

// Copies a token into a NUL-terminated buffer for the C parsers memcached
// uses, so that their quirks (leading '+', spaces, wrap-around) match.
struct CToken {
  explicit CToken(std::string_view t) : s(t) {}
  std::string s;
  const char* c_str() const { return s.c_str(); }
};

bool EndOk(const char* str, const char* end) {
  const unsigned char c = static_cast<unsigned char>(*end);
  return c == ' ' || (c >= '\t' && c <= '\r') || (c == '\0' && end != str);
}

}  // namespace

// memcached's safe_strtoull.
bool SafeStrtoull(std::string_view t, uint64_t* out) {
  CToken tok(t);
  const char* str = tok.c_str();
  errno = 0;
  char* end = nullptr;
  const unsigned long long v = std::strtoull(str, &end, 10);
  if (errno == ERANGE || end == str) return false;
  if (!EndOk(str, end)) return false;
  if (static_cast<long long>(v) < 0 && std::memchr(str, '-', static_cast<size_t>(end - str))) {
    return false;
  }
  *out = v;
  return true;
}

// memcached's safe_strtoul into 32 bits (unsigned long is 64-bit here, so
// the value wraps modulo 2^32 as memcached's does).
bool SafeStrtoul32(std::string_view t, uint32_t* out) {
  uint64_t v = 0;
  if (!SafeStrtoull(t, &v)) return false;
  *out = static_cast<uint32_t>(v);
  return true;
}

// memcached's safe_strtol into int32 (wraps like memcached's).
bool SafeStrtol32(std::string_view t, int32_t* out) {
  CToken tok(t);
  const char* str = tok.c_str();
  errno = 0;
  char* end = nullptr;
  const long v = std::strtol(str, &end, 10);
  if (errno == ERANGE || end == str) return false;
  if (!EndOk(str, end)) return false;
  *out = static_cast<int32_t>(v);
  return true;
}

void AppendUnsigned(Buffer& out, uint64_t v) {
  char buf[24];
  char* p = buf + sizeof buf;
  do {
    *--p = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v != 0);
  out.Append(ByteView(p, static_cast<size_t>(buf + sizeof buf - p)));
}

void AppendSigned(Buffer& out, int64_t v) {
  if (v < 0) {
    out.Append(ByteView(std::string_view("-")));
    AppendUnsigned(out, static_cast<uint64_t>(-(v + 1)) + 1);
  } else {
    AppendUnsigned(out, static_cast<uint64_t>(v));
  }
}

bool DecodeBinaryKey(std::string_view text, std::string* out) {
  return Base64Decode(text, out) && !out->empty();
}

}  // namespace qcloud::kv
