#pragma once

// memcached's one rule for numbers in commands and in stored values
// (safe_strtoull / safe_strtoul / safe_strtol): the C parsers with their
// quirks (leading spaces and '+', wrap-around into 32 bits), the number
// ending at a space, a control character or the end, and a '-' refused where
// the result would look negative. The text protocol, the meta flags and
// incr/decr on a stored value all parse through here, so they cannot drift
// apart.

#include <cstdint>
#include <string>
#include <string_view>

#include "qcloud/core/bytes.h"

namespace qcloud::kv {

bool SafeStrtoull(std::string_view text, uint64_t* out);
// Into 32 bits, wrapping modulo 2^32 as memcached's does on LP64.
bool SafeStrtoul32(std::string_view text, uint32_t* out);
bool SafeStrtol32(std::string_view text, int32_t* out);

void AppendUnsigned(Buffer& out, uint64_t v);
void AppendSigned(Buffer& out, int64_t v);

// A meta command's base64 key ("b" flag): RFC 4648 and not empty.
bool DecodeBinaryKey(std::string_view text, std::string* out);

}  // namespace qcloud::kv
