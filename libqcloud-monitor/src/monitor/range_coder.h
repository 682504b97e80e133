#pragma once

// An adaptive binary range coder, the kind LZMA made common: each coded bit
// has a probability (AdaptiveBit) that learns from the bits it codes, so a
// bit that is nearly always the same costs a few hundredths of a bit;
// direct bits cost one bit each. The block codec's "coded" chunks
// (monitor/block_codec.h) write their values with it.
//
// Byte stream: the encoder's first byte is always 0 and is not written; it
// ends with 4 bytes of the final interval. A decoder of a stream the
// encoder wrote reads exactly every byte of it, so `ended_exactly()` tells
// a stream cut short or with bytes after it, and `code < range` holds
// throughout, so `valid()` tells one no encoder wrote. Neither is a
// checksum (a block chunk has its own): a changed byte mostly decodes to
// other values.

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace qcloud::monitor::detail {

inline constexpr int kRangeProbBits = 12;
inline constexpr uint32_t kRangeTop = 1u << 24;
inline constexpr int kRangeRateShift = 5;
inline constexpr int kRangeRateLimit = 1 << kRangeRateShift;

// A bit's probability of being 0 (out of 2^12). It starts at 1/2 and
// learns as a count would (the k-th bit it sees moves it 1/(k+1) of the
// way) until it moves 1/32 of the way for good, and stays within
// [16, 4080] / 4096:
// quick to learn what a short chunk holds, steady over a long one.
struct AdaptiveBit {
  uint16_t p = 1u << (kRangeProbBits - 1);
  uint16_t seen = 0;

  void Update(unsigned bit) noexcept {
    const int target = bit == 0 ? 1 << kRangeProbBits : 0;
    int next;
    if (seen >= kRangeRateLimit - 2) {
      next = p + ((target - p) >> kRangeRateShift);
    } else {
      static constexpr auto kRecip = [] {
        std::array<uint32_t, kRangeRateLimit> r{};
        for (int i = 2; i < kRangeRateLimit; ++i) r[static_cast<size_t>(i)] = (1u << 16) / static_cast<uint32_t>(i);
        return r;
      }();
      next = p + static_cast<int>((static_cast<int64_t>(target - p) * kRecip[static_cast<size_t>(seen + 2)]) >> 16);
      ++seen;
    }
    p = static_cast<uint16_t>(std::clamp(next, kMinP, (1 << kRangeProbBits) - kMinP));
  }
  static constexpr int kMinP = 16;
};

class RangeEncoder {
 public:
  explicit RangeEncoder(std::vector<uint8_t>& out) : out_(out) {}

  // `bit` with the probability `p` holds; then `p` learns it.
  void Bit(AdaptiveBit& p, unsigned bit) {
    const uint32_t bound = (range_ >> kRangeProbBits) * p.p;
    if (bit == 0) {
      range_ = bound;
    } else {
      low_ += bound;
      range_ -= bound;
    }
    p.Update(bit);
    while (range_ < kRangeTop) {
      range_ <<= 8;
      ShiftLow();
    }
  }

  // The low `n` bits of `v` (0 <= n <= 64), each of probability 1/2:
  // up to 16 at a time, as one of 2^k equal parts of the range.
  void Direct(uint64_t v, int n) {
    while (n > 0) {
      const int k = n < 16 ? n : 16;
      n -= k;
      const uint32_t part = range_ >> k;
      low_ += static_cast<uint64_t>(part) * ((v >> n) & ((1u << k) - 1));
      range_ = part;
      while (range_ < kRangeTop) {
        range_ <<= 8;
        ShiftLow();
      }
    }
  }

  void Finish() {
    for (int i = 0; i < 5; ++i) ShiftLow();
  }

 private:
  void ShiftLow() {
    if (static_cast<uint32_t>(low_) < 0xFF000000u || (low_ >> 32) != 0) {
      uint8_t carry = static_cast<uint8_t>(low_ >> 32);
      uint8_t byte = cache_;
      do {
        Emit(static_cast<uint8_t>(byte + carry));
        byte = 0xFF;
      } while (--pending_ != 0);
      cache_ = static_cast<uint8_t>(low_ >> 24);
    }
    ++pending_;
    low_ = (low_ & 0x00FFFFFFu) << 8;
  }
  void Emit(uint8_t b) {
    if (skip_first_) {
      skip_first_ = false;  // always 0: the interval starts inside [0, 1)
      return;
    }
    out_.push_back(b);
  }

  std::vector<uint8_t>& out_;
  uint64_t low_ = 0;
  uint32_t range_ = 0xFFFFFFFFu;
  uint8_t cache_ = 0;
  uint64_t pending_ = 1;
  bool skip_first_ = true;
};

class RangeDecoder {
 public:
  RangeDecoder(const uint8_t* data, size_t size) noexcept : p_(data), end_(data + size) {
    for (int i = 0; i < 4; ++i) code_ = (code_ << 8) | Next();
  }

  unsigned Bit(AdaptiveBit& p) noexcept {
    const uint32_t bound = (range_ >> kRangeProbBits) * p.p;
    unsigned bit;
    if (code_ < bound) {
      range_ = bound;
      bit = 0;
    } else {
      code_ -= bound;
      range_ -= bound;
      bit = 1;
    }
    p.Update(bit);
    while (range_ < kRangeTop) {
      range_ <<= 8;
      code_ = (code_ << 8) | Next();
    }
    return bit;
  }

  uint64_t Direct(int n) noexcept {
    uint64_t v = 0;
    while (n > 0) {
      const int k = n < 16 ? n : 16;
      n -= k;
      const uint32_t part = range_ >> k;
      uint32_t q = code_ / part;
      if (q >> k != 0) {  // not from an encoder: keep going, report at the end
        q = (1u << k) - 1;
        bad_ = true;
      }
      code_ -= q * part;
      range_ = part;
      v = (v << k) | q;
      while (range_ < kRangeTop) {
        range_ <<= 8;
        code_ = (code_ << 8) | Next();
      }
    }
    return v;
  }

  bool valid() const noexcept { return !bad_ && code_ < range_; }
  bool ended_exactly() const noexcept { return p_ == end_ && !past_end_; }

 private:
  uint32_t Next() noexcept {
    if (p_ < end_) return *p_++;
    past_end_ = true;  // zeros from here: the caller's loop still ends
    return 0;
  }

  const uint8_t* p_;
  const uint8_t* end_;
  uint32_t code_ = 0;
  uint32_t range_ = 0xFFFFFFFFu;
  bool bad_ = false;
  bool past_end_ = false;
};

}  // namespace qcloud::monitor::detail
