#pragma once

// MD5 (RFC 1321) written out, so that two streams can be hashed at once:
// MD5's 64 steps are one dependency chain, which leaves most of a core's
// execution units idle; two interleaved chains run in about the time of
// one. Md5Hasher (hash.h) is built on this.

#include <cstddef>
#include <cstdint>

#include "qcloud/core/bytes.h"
#include "qcloud/core/hash.h"

namespace qcloud::md5 {

struct State {
  uint32_t h[4] = {0x67452301u, 0xefcdab89u, 0x98badcfeu, 0x10325476u};
  uint64_t length = 0;   // bytes hashed so far
  std::byte tail[64]{};  // input not yet a whole block
  size_t tail_size = 0;
};

void Update(State& s, ByteView data);
// Equal to Update(a, da); Update(b, db); the blocks they have in common
// are hashed interleaved.
void UpdatePair(State& a, ByteView da, State& b, ByteView db);
// The digest; the state is reset.
Md5Digest Finish(State& s);

}  // namespace qcloud::md5
