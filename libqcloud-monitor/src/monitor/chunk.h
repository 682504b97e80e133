#pragma once

// Compressed chunks of one series' samples, of three kinds
// (docs/notes/monitor-format.md, "Chunks"). All three share the timestamps:
// the first as a zigzag varint, the second as a varint delta, then
// delta-of-deltas in prefix-coded buckets ('0'; '10' + 14 bits; '110' + 17;
// '1110' + 20; '1111' + 64).
//
// Adaptive (since block version 5 / log record type 5): values as 64-bit integers x, either
// decimal mantissas m with one exponent E per chunk (v = m / 10^E bit for
// bit: integers, 12.47) or, for a float chunk, the double's bits. The
// first x as a zigzag varint (decimal) or 64 raw bits; then the zigzag
// residual against one of two predictions, the last x (delta) or the last x
// plus the last delta (delta of delta), Rice-coded. Which prediction, the
// Rice parameter and whether a zero residual gets its own flag bit are
// chosen from the residuals before (both ends compute them the same way),
// so nothing but the residuals is written. A counter of random increments
// costs about a bit more than their entropy. Layout: 2 bytes big-endian,
// 0x8000 | the sample count; u8 0x40 | 0x20 for a float chunk | E (0..17,
// 0 for float); the bit stream.
//
// Gorilla (Pelkonen et al., VLDB 2015) as Prometheus uses it: values XORed
// with the previous one: '0' when equal; '10' + the meaningful bits when
// they fit the previous leading/trailing-zero window; '11' + 5 bits of
// leading zeros + 6 bits of length (0 = 64) + the bits. Layout: a 2-byte
// big-endian sample count (below 0x8000), then the bit stream. Written for
// a chunk with a value that is no short decimal (XOR keeps the trailing
// zeros of integer-valued floats cheap); a closed one is written again as
// an adaptive float chunk when that is smaller (a random-walk float: ~46
// bits a sample against ~51).
//
// Read only (written before block version 5): decimal with delta-of-deltas of the
// mantissas in buckets ('0'; '10' + 8 bits; '110' + 13; '1110' + 18;
// '11110' + 28; '11111' + 64); 0x8000 | count, u8 E (0..17).
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

// The adaptive coding's state after each sample, the same at both ends.
struct ResidualModel {
  uint64_t x = 0;      // the last value
  uint64_t delta = 0;  // the last difference (wrapping)
  // Over the last 32-64 residuals, per prediction (0 = delta, 1 = delta of
  // delta): the sum of their bit widths and how many were not zero; how
  // many of the chosen one's were zero; how many there were.
  uint16_t width[2] = {0, 0};
  uint8_t nonzero[2] = {0, 0};
  uint8_t zeros = 0;
  uint8_t n = 0;

  int Choice() const noexcept { return width[1] < width[0] ? 1 : 0; }
  // A zero residual gets its own bit once at least a quarter were zero.
  bool ZeroFlag() const noexcept { return n > 0 && zeros * 4 >= n; }
  // The Rice parameter: the mean bit width of the chosen residuals (the
  // non-zero ones when they have their flag).
  int RiceK(int choice, bool zero_flag) const noexcept {
    const unsigned count = zero_flag ? nonzero[choice] : n;
    const unsigned k = width[choice] / (count == 0 ? 1 : count);
    return static_cast<int>(k > 63 ? 63 : k);
  }
  // The residuals of `next` against both predictions, zigzagged.
  void Residuals(uint64_t next, uint64_t z[2]) const noexcept;
  void Update(uint64_t next, const uint64_t z[2], int choice) noexcept;
};

inline constexpr int kRiceEscape = 32;  // this many 1s: 64 raw bits follow

// Bits appended to `bytes` (PoolBytes or a vector), most significant first;
// `bit_pos` is the bits used in the last byte (8: the next bit starts one).
template <class Bytes>
struct BitOut {
  Bytes& bytes;
  uint8_t& bit_pos;

  void WriteBit(bool bit) {
    if (bit_pos == 8) {
      bytes.push_back(0);
      bit_pos = 0;
    }
    if (bit) bytes.back() |= static_cast<uint8_t>(0x80 >> bit_pos);
    ++bit_pos;
  }
  // The low n bits of `value`.
  void WriteBits(uint64_t value, int n) {
    if (n < 64) value &= (uint64_t{1} << n) - 1;
    while (n > 0) {  // fill the last byte's free bits, then whole bytes
      if (bit_pos == 8) {
        bytes.push_back(0);
        bit_pos = 0;
      }
      const int room = 8 - bit_pos;
      const int take = n < room ? n : room;
      const auto part = static_cast<uint8_t>((value >> (n - take)) & ((1u << take) - 1));
      bytes.back() |= static_cast<uint8_t>(part << (room - take));
      bit_pos = static_cast<uint8_t>(bit_pos + take);
      n -= take;
    }
  }
  void WriteVarint(uint64_t v) {
    while (v >= 0x80) {
      WriteBits((v & 0x7f) | 0x80, 8);
      v >>= 7;
    }
    WriteBits(v, 8);
  }
};

// Bits appended to a vector through a 64-bit accumulator (faster than
// BitOut when the stream is written at once); Finish() writes the last
// byte, its unused bits 0.
class VectorBitOut {
 public:
  explicit VectorBitOut(std::vector<uint8_t>& out) : out_(out) {}
  void WriteBit(bool bit) { WriteBits(bit ? 1 : 0, 1); }
  void WriteBits(uint64_t value, int n) {
    if (n > 32) {
      WriteBits(value >> 32, n - 32);
      n = 32;
    }
    if (n == 0) return;
    acc_ = (acc_ << n) | (value & ((uint64_t{1} << n) - 1));
    fill_ += n;  // below 8 + 32
    while (fill_ >= 8) {
      fill_ -= 8;
      out_.push_back(static_cast<uint8_t>(acc_ >> fill_));
    }
  }
  void WriteVarint(uint64_t v) {
    while (v >= 0x80) {
      WriteBits((v & 0x7f) | 0x80, 8);
      v >>= 7;
    }
    WriteBits(v, 8);
  }
  void Finish() {
    if (fill_ > 0) out_.push_back(static_cast<uint8_t>(acc_ << (8 - fill_)));
    fill_ = 0;
  }

 private:
  std::vector<uint8_t>& out_;
  uint64_t acc_ = 0;
  int fill_ = 0;  // bits of acc_ not yet written
};

// Bits read from [data, data + size), every read checked against the end.
struct BitIn {
  const uint8_t* data = nullptr;
  size_t size = 0;
  size_t bit = 0;  // position in bits

  bool ReadBit(bool& out) noexcept;
  bool ReadBits(int n, uint64_t& out) noexcept;
  bool ReadVarint(uint64_t& out) noexcept;
  // 1s up to `max` of them; the 0 that ends fewer is read too.
  bool ReadUnary(int max, int& ones) noexcept;
};

// The residual of sample n >= 1 of a stream of x's (sample 0's x is the
// caller's, in `model.x`), written and read as adaptive chunks do
// (monitor-format.md, "Chunks"); the model moves on to x. `Out` is a
// BitOut or a VectorBitOut.
template <class Out>
void PutResidual(Out& out, ResidualModel& model, uint64_t x, bool second) {
  uint64_t z[2];
  model.Residuals(x, z);
  const int choice = model.Choice();
  if (second) {
    out.WriteVarint(z[choice]);  // no residuals to go by yet
  } else {
    const bool zero_flag = model.ZeroFlag();
    uint64_t r = z[choice];
    if (zero_flag && r == 0) {
      out.WriteBit(false);
    } else {
      if (zero_flag) --r;  // 0 has its flag
      const int k = model.RiceK(choice, zero_flag);
      const uint64_t q = r >> k;
      const int flag = zero_flag ? 1 : 0;  // a 1 first
      if (q < kRiceEscape) {
        // [1] q 1s, a 0, the low k bits of r: at once when they fit 64 bits.
        const int head = flag + static_cast<int>(q) + 1;
        const uint64_t code = ((uint64_t{1} << (head - 1)) - 1) << 1;
        if (head + k <= 64) {
          out.WriteBits(k == 0 ? code : (code << k) | (r & ((uint64_t{1} << k) - 1)), head + k);
        } else {
          out.WriteBits(code, head);
          out.WriteBits(r, k);
        }
      } else {
        out.WriteBits((uint64_t{1} << (flag + kRiceEscape)) - 1, flag + kRiceEscape);
        out.WriteBits(r, 64);
      }
    }
  }
  model.Update(x, z, choice);
}
bool GetResidual(BitIn& in, ResidualModel& model, bool second, uint64_t& x) noexcept;

class ChunkAppender {
 public:
  // `decimal`: decimal values while every value is an exact short decimal,
  // encoded again with a larger exponent, or as Gorilla, when a value is
  // not (at most 18 times a chunk; a chunk holds at most 0x7fff samples).
  // Otherwise Gorilla.
  explicit ChunkAppender(bool decimal = false);
  // An adaptive float chunk (any values).
  static ChunkAppender FloatDeltas();
  // Timestamps must not decrease (the head checks). When memory runs out
  // (bad_alloc), the appender is as it was.
  void Append(int64_t t, double v);
  size_t samples() const noexcept { return count_; }
  bool decimal() const noexcept { return decimal_; }
  // The first and the last sample's time, and the last value's bits (with
  // a sample appended).
  int64_t first_t() const noexcept;
  int64_t last_t() const noexcept { return t_; }
  uint64_t last_bits() const noexcept;
  // The encoded chunk, header included.
  std::span<const uint8_t> bytes() const noexcept { return bytes_.span(); }
  // The encoded chunk's storage, moved out: the appender is empty after
  // this until it is assigned a new one.
  PoolBytes TakeBytes() noexcept { return std::move(bytes_); }
  // PoolBytes::Relocate() of the chunk's storage (a repack).
  void RelocateBytes() { bytes_.Relocate(); }

 private:
  void Reset(bool decimal, int e);
  void Put(int64_t t, uint64_t x);
  void PutXor(uint64_t bits);
  void Widen(int64_t t, double v);
  BitOut<PoolBytes> Out() { return {bytes_, bit_pos_}; }

  // Small fields: the head keeps one appender per series.
  PoolBytes bytes_;
  int64_t t_ = 0;
  int64_t delta_ = 0;
  ResidualModel model_;
  uint16_t count_ = 0;           // below 0x8000
  uint8_t bit_pos_ = 8;          // bits used in the last byte (8 = full: the next bit starts a byte)
  int8_t exp_ = 0;
  uint8_t leading_ = 0xff;  // Gorilla: of the last XOR window; 0xff = none yet
  uint8_t trailing_ = 0;
  bool try_decimal_ : 1 = false;
  bool decimal_ : 1 = false;
  bool float_deltas_ : 1 = false;
};

// A closed Gorilla chunk written again as an adaptive float chunk, when
// that is smaller; nothing otherwise (or for another kind of chunk).
std::optional<ChunkAppender> FloatDeltasIfSmaller(std::span<const uint8_t> chunk);

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
  enum class Kind : uint8_t { kGorilla, kDecimal, kAdaptive };
  bool Fail(const char* why) noexcept;

  BitIn in_;  // from after the header
  Kind kind_ = Kind::kGorilla;
  bool float_ = false;  // adaptive: x is the double's bits
  int exp_ = 0;
  uint64_t m_ = 0, mdelta_ = 0;
  ResidualModel model_;
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
