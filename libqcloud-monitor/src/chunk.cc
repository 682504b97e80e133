#include "monitor/chunk.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>

namespace qcloud::monitor::detail {

namespace {

uint64_t ZigZag(int64_t v) { return (static_cast<uint64_t>(v) << 1) ^ static_cast<uint64_t>(v >> 63); }
int64_t UnZigZag(uint64_t v) { return static_cast<int64_t>(v >> 1) ^ -static_cast<int64_t>(v & 1); }

// Delta-of-delta buckets: (prefix, prefix bits, value bits).
struct Bucket {
  uint64_t prefix;
  int prefix_bits;
  int value_bits;
};
constexpr Bucket kBuckets[] = {{0b10, 2, 14}, {0b110, 3, 17}, {0b1110, 4, 20}};
// A decimal chunk's mantissa delta-of-delta, zigzagged: '0' for 0, then
// these, then '11111' + 64 bits.
constexpr Bucket kValueBuckets[] = {{0b10, 2, 8}, {0b110, 3, 13}, {0b1110, 4, 18}, {0b11110, 5, 28}};
constexpr uint8_t kDecimalFlag = 0x80;  // in a chunk's first byte

constexpr double kPow10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                             1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
constexpr double kMaxMantissa = 9007199254740992.0;  // 2^53: integers a double holds exactly
constexpr int kMaxChunkExp = 17;  // a decimal chunk's E; ExponentOf's largest

bool Fits(int64_t v, int bits) {
  const int64_t lo = -(int64_t{1} << (bits - 1)) + 1;
  const int64_t hi = int64_t{1} << (bits - 1);
  return v >= lo && v <= hi;
}

}  // namespace

double FromMantissa(int64_t m, int e) noexcept {
  return e >= 0 ? static_cast<double>(m) / kPow10[e] : static_cast<double>(m) * kPow10[-e];
}

bool ToMantissa(double v, int e, int64_t& m) noexcept {
  const double x = e >= 0 ? v * kPow10[e] : v / kPow10[-e];
  if (!std::isfinite(x) || std::fabs(x) >= kMaxMantissa) return false;
  const double r = std::nearbyint(x);
  m = static_cast<int64_t>(r);
  return std::bit_cast<uint64_t>(FromMantissa(m, e)) == std::bit_cast<uint64_t>(v);
}

std::optional<int> ExponentOf(double v) noexcept {
  if (!std::isfinite(v)) return std::nullopt;
  if (v == 0) return std::signbit(v) ? std::nullopt : std::optional<int>(0);
  int64_t m;
  for (int e = 0; e <= kMaxChunkExp; ++e) {
    if (ToMantissa(v, e, m)) {
      if (e > 0) return e;
      int z = 0;  // trailing decimal zeros of an integer
      while (z < kMaxDecimalExp && m % 10 == 0 && ToMantissa(v, -(z + 1), m)) ++z;
      return -z;
    }
  }
  return std::nullopt;
}

ChunkAppender::ChunkAppender(bool decimal) : try_decimal_(decimal) { bytes_.Assign({0, 0}); }

void ChunkAppender::Reset(bool decimal, int e) {
  if (decimal) {
    bytes_.Assign({kDecimalFlag, 0, static_cast<uint8_t>(e)});
  } else {
    bytes_.Assign({0, 0});
  }
  decimal_ = decimal;
  exp_ = static_cast<int8_t>(e);
  bit_pos_ = 8;
  count_ = 0;
  t_ = delta_ = 0;
  v_ = m_ = mdelta_ = 0;
  leading_ = 0xff;
  trailing_ = 0;
}

void ChunkAppender::WriteBits(uint64_t value, int n) {
  // Up to a byte at a time: fill the last byte's free bits, then whole bytes.
  if (n < 64) value &= (uint64_t{1} << n) - 1;
  while (n > 0) {
    if (bit_pos_ == 8) NextByte();
    const int room = 8 - bit_pos_;
    const int take = n < room ? n : room;
    const auto part = static_cast<uint8_t>((value >> (n - take)) & ((1u << take) - 1));
    bytes_.back() |= static_cast<uint8_t>(part << (room - take));
    bit_pos_ += take;
    n -= take;
  }
}

void ChunkAppender::WriteVarint(uint64_t v) {
  while (v >= 0x80) {
    WriteBits((v & 0x7f) | 0x80, 8);
    v >>= 7;
  }
  WriteBits(v, 8);
}

void ChunkAppender::Append(int64_t t, double v) {
  if (count_ == 0 && try_decimal_) {
    const std::optional<int> e = ExponentOf(v);
    Reset(e.has_value(), e ? std::max(0, *e) : 0);
  }
  int64_t m = 0;
  if (decimal_ && !ToMantissa(v, exp_, m)) {
    Widen(t, v);
    return;
  }
  Put(t, v, m);
}

// `v` has no mantissa at this chunk's exponent: the chunk is written again
// with the smallest exponent that holds every value, or as Gorilla.
void ChunkAppender::Widen(int64_t t, double v) {
  std::vector<std::pair<int64_t, double>> all;
  all.reserve(count_ + 1);
  ChunkIterator it(ByteView(reinterpret_cast<const std::byte*>(bytes_.data()), bytes_.size()));
  while (it.Next()) all.emplace_back(it.t(), it.v());
  all.emplace_back(t, v);
  const std::optional<int> e = ExponentOf(v);
  bool decimal = e.has_value();
  const int exp = decimal ? std::max<int>(exp_, *e) : 0;
  std::vector<int64_t> ms(all.size(), 0);
  for (size_t i = 0; decimal && i < all.size(); ++i) decimal = ToMantissa(all[i].second, exp, ms[i]);
  Reset(decimal, decimal ? exp : 0);
  for (size_t i = 0; i < all.size(); ++i) Put(all[i].first, all[i].second, ms[i]);
}

void ChunkAppender::Put(int64_t t, double v, int64_t m) {
  const uint64_t bits = std::bit_cast<uint64_t>(v);
  if (count_ == 0) {
    WriteVarint(ZigZag(t));
    if (decimal_) {
      WriteVarint(ZigZag(m));
      m_ = static_cast<uint64_t>(m);
    } else {
      WriteBits(bits, 64);
    }
  } else {
    // Differences wrap at 64 bits (no signed overflow on any timestamps);
    // the iterator wraps the same way.
    const auto delta = static_cast<int64_t>(static_cast<uint64_t>(t) - static_cast<uint64_t>(t_));
    if (count_ == 1) {
      WriteVarint(static_cast<uint64_t>(delta));
    } else {
      const auto dod = static_cast<int64_t>(static_cast<uint64_t>(delta) - static_cast<uint64_t>(delta_));
      if (dod == 0) {
        WriteBit(false);
      } else {
        bool done = false;
        for (const Bucket& b : kBuckets) {
          if (Fits(dod, b.value_bits)) {
            WriteBits(b.prefix, b.prefix_bits);
            WriteBits(static_cast<uint64_t>(dod), b.value_bits);
            done = true;
            break;
          }
        }
        if (!done) {
          WriteBits(0b1111, 4);
          WriteBits(static_cast<uint64_t>(dod), 64);
        }
      }
    }
    delta_ = delta;
    if (decimal_) {
      const uint64_t d = static_cast<uint64_t>(m) - m_;
      const uint64_t z = ZigZag(static_cast<int64_t>(d - mdelta_));
      if (z == 0) {
        WriteBit(false);
      } else {
        bool done = false;
        for (const Bucket& b : kValueBuckets) {
          if (z < (uint64_t{1} << b.value_bits)) {
            WriteBits(b.prefix, b.prefix_bits);
            WriteBits(z, b.value_bits);
            done = true;
            break;
          }
        }
        if (!done) {
          WriteBits(0b11111, 5);
          WriteBits(z, 64);
        }
      }
      m_ = static_cast<uint64_t>(m);
      mdelta_ = d;
    } else if (const uint64_t x = bits ^ v_; x == 0) {
      WriteBit(false);
    } else {
      WriteBit(true);
      int leading = std::countl_zero(x);
      const int trailing = std::countr_zero(x);
      if (leading >= 32) leading = 31;  // 5 bits
      if (leading_ != 0xff && leading >= leading_ && trailing >= trailing_) {
        WriteBit(false);
        WriteBits(x >> trailing_, 64 - leading_ - trailing_);
      } else {
        leading_ = static_cast<uint8_t>(leading);
        trailing_ = static_cast<uint8_t>(trailing);
        WriteBit(true);
        WriteBits(static_cast<uint64_t>(leading), 5);
        const int sig = 64 - leading - trailing;
        WriteBits(static_cast<uint64_t>(sig == 64 ? 0 : sig), 6);
        WriteBits(x >> trailing, sig);
      }
    }
  }
  t_ = t;
  v_ = bits;
  ++count_;
  bytes_[0] = static_cast<uint8_t>((decimal_ ? kDecimalFlag : 0) | (count_ >> 8));
  bytes_[1] = static_cast<uint8_t>(count_);
}

ChunkIterator::ChunkIterator(ByteView chunk) noexcept
    : data_(reinterpret_cast<const uint8_t*>(chunk.data())), size_(chunk.size()) {
  if (size_ < 2) {
    Fail("chunk shorter than its header");
    return;
  }
  decimal_ = (data_[0] & kDecimalFlag) != 0;
  total_ = (size_t{data_[0] & 0x7fu} << 8) | data_[1];
  if (decimal_) {
    if (size_ < 3) {
      Fail("chunk shorter than its header");
      return;
    }
    exp_ = data_[2];
    if (exp_ > kMaxChunkExp) {
      Fail("decimal exponent");
      return;
    }
    bit_ = 24;
  }
}

double ChunkIterator::v() const noexcept { return std::bit_cast<double>(v_); }

bool ChunkIterator::Fail(const char* why) noexcept {
  if (status_.ok()) status_ = Status(Errc::kCorruption, std::string("bad chunk: ") + why);
  read_ = total_;
  return false;
}

bool ChunkIterator::ReadBit(bool& bit) noexcept {
  if (bit_ >= size_ * 8) return false;
  bit = ((data_[bit_ >> 3] >> (7 - (bit_ & 7))) & 1) != 0;
  ++bit_;
  return true;
}

bool ChunkIterator::ReadBits(int n, uint64_t& out) noexcept {
  if (static_cast<size_t>(n) > size_ * 8 - bit_) return false;
  out = 0;
  for (int i = 0; i < n; ++i) {
    out = (out << 1) | ((data_[bit_ >> 3] >> (7 - (bit_ & 7))) & 1);
    ++bit_;
  }
  return true;
}

bool ChunkIterator::ReadVarint(uint64_t& out) noexcept {
  out = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    uint64_t b;
    if (!ReadBits(8, b)) return false;
    out |= (b & 0x7f) << shift;
    if ((b & 0x80) == 0) return true;
  }
  return false;
}

bool ChunkIterator::Next() noexcept {
  if (!status_.ok() || read_ >= total_) return false;
  if (read_ == 0) {
    uint64_t t;
    if (!ReadVarint(t)) return Fail("first sample cut short");
    t_ = UnZigZag(t);
    if (decimal_) {
      uint64_t z;
      if (!ReadVarint(z)) return Fail("first sample cut short");
      m_ = static_cast<uint64_t>(UnZigZag(z));
      v_ = std::bit_cast<uint64_t>(FromMantissa(static_cast<int64_t>(m_), exp_));
    } else if (!ReadBits(64, v_)) {
      return Fail("first sample cut short");
    }
    ++read_;
    return true;
  }
  if (read_ == 1) {
    uint64_t d;
    if (!ReadVarint(d)) return Fail("second timestamp cut short");
    delta_ = static_cast<int64_t>(d);
  } else {
    int ones = 0;
    bool bit;
    while (ones < 4) {
      if (!ReadBit(bit)) return Fail("timestamp cut short");
      if (!bit) break;
      ++ones;
    }
    int64_t dod = 0;
    if (ones > 0) {
      const int bits = ones == 4 ? 64 : kBuckets[ones - 1].value_bits;
      uint64_t raw;
      if (!ReadBits(bits, raw)) return Fail("timestamp cut short");
      // The buckets hold [-(2^(b-1) - 1), 2^(b-1)]: above the top, negative.
      if (bits < 64 && raw > (uint64_t{1} << (bits - 1))) raw |= ~uint64_t{0} << bits;
      dod = static_cast<int64_t>(raw);
    }
    delta_ = static_cast<int64_t>(static_cast<uint64_t>(delta_) + static_cast<uint64_t>(dod));
  }
  t_ = static_cast<int64_t>(static_cast<uint64_t>(t_) + static_cast<uint64_t>(delta_));
  bool bit;
  if (decimal_) {
    int ones = 0;
    while (ones < 5) {
      if (!ReadBit(bit)) return Fail("value cut short");
      if (!bit) break;
      ++ones;
    }
    uint64_t z = 0;
    if (ones > 0 && !ReadBits(ones == 5 ? 64 : kValueBuckets[ones - 1].value_bits, z)) {
      return Fail("value cut short");
    }
    mdelta_ += static_cast<uint64_t>(UnZigZag(z));
    m_ += mdelta_;
    v_ = std::bit_cast<uint64_t>(FromMantissa(static_cast<int64_t>(m_), exp_));
    ++read_;
    return true;
  }
  if (!ReadBit(bit)) return Fail("value cut short");
  if (bit) {
    if (!ReadBit(bit)) return Fail("value cut short");
    if (bit) {
      uint64_t lead, sig;
      if (!ReadBits(5, lead) || !ReadBits(6, sig)) return Fail("value cut short");
      if (sig == 0) sig = 64;
      if (lead + sig > 64) return Fail("value window past 64 bits");
      leading_ = static_cast<int>(lead);
      trailing_ = 64 - leading_ - static_cast<int>(sig);
    }  // else the last window again (before any: 64 bits, still bounded)
    uint64_t x;
    const int n = 64 - leading_ - trailing_;
    if (!ReadBits(n, x)) return Fail("value cut short");
    v_ ^= n == 64 ? x : (x << trailing_);
  }
  ++read_;
  return true;
}

}  // namespace qcloud::monitor::detail
