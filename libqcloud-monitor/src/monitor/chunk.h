#pragma once

// Compressed chunks of one series' samples, of two kinds
// (docs/notes/monitor-format.md, "Chunks"):
//
// Gorilla (Pelkonen et al., VLDB 2015) as Prometheus uses it. Timestamps:
// the first as a zigzag varint, the second as a varint delta, then
// delta-of-deltas in prefix-coded buckets ('0'; '10' + 14 bits; '110' + 17;
// '1110' + 20; '1111' + 64). Values: the first as 64 raw bits, then the XOR
// with the previous value: '0' when equal; '10' + the meaningful bits when
// they fit the previous leading/trailing-zero window; '11' + 5 bits of
// leading zeros + 6 bits of length (0 = 64) + the bits otherwise. Layout: a
// 2-byte big-endian sample count (below 0x8000), then the bit stream.
//
// Decimal: the values monitoring data is mostly made of (integers, 12.47)
// as integer mantissas m with one exponent E per chunk, v = m / 10^E bit
// for bit. Timestamps as above; values: the first mantissa as a zigzag
// varint, then the zigzag delta-of-delta of the mantissas: '0' when 0;
// '10' + 8 bits; '110' + 13; '1110' + 18; '11110' + 28; '11111' + 64.
// Layout: 2 bytes big-endian, 0x8000 | the sample count; u8 E (0..17); the
// bit stream. A counter or a two-decimal gauge costs 1-3 bytes a sample
// here against 3-6 in Gorilla's XOR.
//
// A chunk is disk and network input (blocks, the WAL's chunk records):
// the iterator checks every read against the end and reports a bad chunk
// instead of reading past it.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "monitor/chunk_pool.h"
#include "qcloud/core/bytes.h"
#include "qcloud/core/status.h"

namespace qcloud::monitor::detail {

inline constexpr size_t kMaxChunkSamples = 120;  // a chunk is closed after this many
inline constexpr int kMaxDecimalExp = 22;  // of 10^E as a double, exactly

// Decimals, shared with the block codec (monitor/block_codec.h).
// v from its mantissa: m / 10^e (e >= 0) or m * 10^-e.
double FromMantissa(int64_t m, int e) noexcept;
// The m with FromMantissa(m, e) == v bit for bit, when there is one below 2^53.
bool ToMantissa(double v, int e, int64_t& m) noexcept;
// The smallest exponent that writes v exactly, -22 .. 17 (e < 0 for an
// integer with trailing zeros: 1.5e9 is 15 * 10^8), or nothing (NaN, -0, 1/3).
std::optional<int> ExponentOf(double v) noexcept;

class ChunkAppender {
 public:
  // `decimal`: a decimal chunk while every value is an exact short decimal,
  // encoded again with a larger exponent, or as Gorilla, when a value is
  // not (at most 18 times a chunk; a chunk holds at most 0x7fff samples).
  // Otherwise always Gorilla.
  explicit ChunkAppender(bool decimal = false);
  // Timestamps must not decrease (the head checks).
  void Append(int64_t t, double v);
  size_t samples() const noexcept { return count_; }
  bool decimal() const noexcept { return decimal_; }
  // The encoded chunk, header included.
  std::span<const uint8_t> bytes() const noexcept { return bytes_.span(); }
  // The encoded chunk's storage, moved out: the appender is empty after
  // this until it is assigned a new one.
  PoolBytes TakeBytes() noexcept { return std::move(bytes_); }
  // PoolBytes::Relocate() of the chunk's storage (a repack).
  void RelocateBytes() { bytes_.Relocate(); }

 private:
  void Reset(bool decimal, int e);
  void Put(int64_t t, double v, int64_t m);
  void Widen(int64_t t, double v);
  // A new last byte (PoolBytes grows by a quarter, not double: the head
  // keeps a chunk per series open for hours).
  void NextByte() {
    bytes_.push_back(0);
    bit_pos_ = 0;
  }
  void WriteBit(bool bit) {
    if (bit_pos_ == 8) NextByte();
    if (bit) bytes_.back() |= static_cast<uint8_t>(0x80 >> bit_pos_);
    ++bit_pos_;
  }
  void WriteBits(uint64_t value, int n);  // the low n bits, most significant first
  void WriteVarint(uint64_t v);

  // Small fields: the head keeps one appender per series.
  PoolBytes bytes_;
  int64_t t_ = 0;
  int64_t delta_ = 0;
  uint64_t v_ = 0;
  uint64_t m_ = 0, mdelta_ = 0;  // decimal: the last mantissa and its delta (wrapping)
  uint16_t count_ = 0;           // below 0x8000
  uint8_t bit_pos_ = 8;          // bits used in the last byte (8 = full: the next bit starts a byte)
  int8_t exp_ = 0;
  uint8_t leading_ = 0xff;  // of the last XOR window; 0xff = none yet
  uint8_t trailing_ = 0;
  bool try_decimal_ = false;
  bool decimal_ = false;
};

class ChunkIterator {
 public:
  explicit ChunkIterator(ByteView chunk) noexcept;
  // Moves to the next sample; false at the end or on a bad chunk (status()).
  bool Next() noexcept;
  int64_t t() const noexcept { return t_; }
  double v() const noexcept;
  uint64_t v_bits() const noexcept { return v_; }
  // kCorruption when the chunk ended early or a count disagrees.
  const Status& status() const noexcept { return status_; }
  size_t total() const noexcept { return total_; }

 private:
  bool ReadBit(bool& bit) noexcept;
  bool ReadBits(int n, uint64_t& out) noexcept;
  bool ReadVarint(uint64_t& out) noexcept;
  bool Fail(const char* why) noexcept;

  const uint8_t* data_;
  size_t size_;
  size_t bit_ = 16;  // position in bits (after the header)
  bool decimal_ = false;
  int exp_ = 0;
  uint64_t m_ = 0, mdelta_ = 0;
  size_t total_ = 0;
  size_t read_ = 0;
  int64_t t_ = 0;
  int64_t delta_ = 0;
  uint64_t v_ = 0;
  int leading_ = 0;
  int trailing_ = 0;
  Status status_;
};

}  // namespace qcloud::monitor::detail
