#include "core/md5.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <utility>

namespace qcloud::md5 {

namespace {

// floor(2^32 * |sin(i + 1)|)
constexpr uint32_t kT[64] = {
    0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee, 0xf57c0faf, 0x4787c62a, 0xa8304613, 0xfd469501,
    0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be, 0x6b901122, 0xfd987193, 0xa679438e, 0x49b40821,
    0xf61e2562, 0xc040b340, 0x265e5a51, 0xe9b6c7aa, 0xd62f105d, 0x02441453, 0xd8a1e681, 0xe7d3fbc8,
    0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed, 0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a,
    0xfffa3942, 0x8771f681, 0x6d9d6122, 0xfde5380c, 0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70,
    0x289b7ec6, 0xeaa127fa, 0xd4ef3085, 0x04881d05, 0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665,
    0xf4292244, 0x432aff97, 0xab9423a7, 0xfc93a039, 0x655b59c3, 0x8f0ccc92, 0xffeff47d, 0x85845dd1,
    0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1, 0xf7537e82, 0xbd3af235, 0x2ad7d2bb, 0xeb86d391};

constexpr int kShift[4][4] = {{7, 12, 17, 22}, {5, 9, 14, 20}, {4, 11, 16, 23}, {6, 10, 15, 21}};

// The message word step i reads.
constexpr int Word(int i) {
  switch (i / 16) {
    case 0: return i;
    case 1: return (5 * i + 1) % 16;
    case 2: return (3 * i + 5) % 16;
    default: return (7 * i) % 16;
  }
}

template <int I>
inline uint32_t Mix(uint32_t b, uint32_t c, uint32_t d) {
  if constexpr (I < 16) {
    return d ^ (b & (c ^ d));  // F
  } else if constexpr (I < 32) {
    return (b & d) | (c & ~d);  // G
  } else if constexpr (I < 48) {
    return b ^ c ^ d;  // H
  } else {
    return c ^ (b | ~d);  // I
  }
}

// Step I of N lanes. The roles of the four words rotate every step, so the
// caller passes them in the order this step sees them.
template <int I, size_t N>
[[gnu::always_inline]] inline void Step(uint32_t (&a)[N], const uint32_t (&b)[N], const uint32_t (&c)[N],
                                        const uint32_t (&d)[N], const uint32_t (&m)[N][16]) {
#pragma GCC unroll 4
  for (size_t l = 0; l < N; ++l) {
    // a + T + M does not wait for the previous step (b): only the mix
    // does, and in round 2 only half of it, (b & d) + (c & ~d) being G.
    uint32_t early = a[l] + (kT[I] + m[l][Word(I)]);
    uint32_t mix;
    if constexpr (I >= 16 && I < 32) {
      early += c[l] & ~d[l];
      mix = b[l] & d[l];
    } else {
      mix = Mix<I>(b[l], c[l], d[l]);
    }
    a[l] = b[l] + std::rotl(early + mix, kShift[I / 16][I % 4]);
  }
}

template <int I, size_t N>
[[gnu::always_inline]] inline void Four(uint32_t (&a)[N], uint32_t (&b)[N], uint32_t (&c)[N], uint32_t (&d)[N],
                 const uint32_t (&m)[N][16]) {
  Step<I, N>(a, b, c, d, m);
  Step<I + 1, N>(d, a, b, c, m);
  Step<I + 2, N>(c, d, a, b, m);
  Step<I + 3, N>(b, c, d, a, m);
}

template <size_t N, int... G>
[[gnu::always_inline]] inline void Steps(uint32_t (&a)[N], uint32_t (&b)[N], uint32_t (&c)[N], uint32_t (&d)[N],
                  const uint32_t (&m)[N][16], std::integer_sequence<int, G...>) {
  (Four<G * 4, N>(a, b, c, d, m), ...);
}

// `blocks` 64-byte blocks of each of N inputs into their states.
template <size_t N>
void Blocks(uint32_t* const (&h)[N], const std::byte* const (&in)[N], size_t blocks) {
  for (size_t k = 0; k < blocks; ++k) {
    uint32_t m[N][16];
    uint32_t a[N], b[N], c[N], d[N];
    for (size_t l = 0; l < N; ++l) {
      const std::byte* p = in[l] + k * 64;
      for (int w = 0; w < 16; ++w) m[l][w] = DecodeFixed32(p + 4 * w);  // little-endian
      a[l] = h[l][0];
      b[l] = h[l][1];
      c[l] = h[l][2];
      d[l] = h[l][3];
    }
    Steps<N>(a, b, c, d, m, std::make_integer_sequence<int, 16>{});
    for (size_t l = 0; l < N; ++l) {
      h[l][0] += a[l];
      h[l][1] += b[l];
      h[l][2] += c[l];
      h[l][3] += d[l];
    }
  }
}

void Blocks1(State& s, const std::byte* p, size_t blocks) {
  uint32_t* const h[1] = {s.h};
  const std::byte* const in[1] = {p};
  Blocks<1>(h, in, blocks);
}

// Tops up the tail from `data`; a tail that becomes whole is hashed.
void FillTail(State& s, ByteView& data) {
  if (s.tail_size == 0) return;
  const size_t take = std::min(data.size(), sizeof s.tail - s.tail_size);
  std::memcpy(s.tail + s.tail_size, data.data(), take);
  s.tail_size += take;
  data.RemovePrefix(take);
  if (s.tail_size == sizeof s.tail) {
    Blocks1(s, s.tail, 1);
    s.tail_size = 0;
  }
}

void KeepTail(State& s, ByteView data) {
  std::memcpy(s.tail + s.tail_size, data.data(), data.size());
  s.tail_size += data.size();
}

}  // namespace

void Update(State& s, ByteView data) {
  s.length += data.size();
  FillTail(s, data);
  const size_t blocks = data.size() / 64;
  if (blocks > 0) {
    Blocks1(s, data.data(), blocks);
    data.RemovePrefix(blocks * 64);
  }
  KeepTail(s, data);
}

void UpdatePair(State& a, ByteView da, State& b, ByteView db) {
  a.length += da.size();
  b.length += db.size();
  FillTail(a, da);
  FillTail(b, db);
  const size_t common = std::min(da.size(), db.size()) / 64;
  if (common > 0) {
    uint32_t* const h[2] = {a.h, b.h};
    const std::byte* const in[2] = {da.data(), db.data()};
    Blocks<2>(h, in, common);
    da.RemovePrefix(common * 64);
    db.RemovePrefix(common * 64);
  }
  for (auto [s, rest] : {std::pair<State*, ByteView>{&a, da}, std::pair<State*, ByteView>{&b, db}}) {
    // One of the two is shorter than a block now (or both).
    const size_t blocks = rest.size() / 64;
    if (blocks > 0) {
      Blocks1(*s, rest.data(), blocks);
      rest.RemovePrefix(blocks * 64);
    }
    if (s->tail_size == 0) KeepTail(*s, rest);  // else FillTail left rest empty
  }
}

Md5Digest Finish(State& s) {
  const uint64_t bits = s.length * 8;
  std::byte pad[128]{};
  pad[0] = std::byte{0x80};
  const size_t used = s.tail_size;
  const size_t pad_len = (used < 56 ? 56 : 120) - used;
  std::byte len[8];
  EncodeFixed64(len, bits);
  Update(s, ByteView(pad, pad_len));
  Update(s, ByteView(len, 8));
  Md5Digest out;
  for (int i = 0; i < 4; ++i) EncodeFixed32(out.data() + 4 * i, s.h[i]);
  s = State{};
  return out;
}

}  // namespace qcloud::md5
