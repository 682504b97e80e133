#include "monitor/chunk.h"

#include <bit>
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

bool Fits(int64_t v, int bits) {
  const int64_t lo = -(int64_t{1} << (bits - 1)) + 1;
  const int64_t hi = int64_t{1} << (bits - 1);
  return v >= lo && v <= hi;
}

}  // namespace

XorAppender::XorAppender() : bytes_{0, 0} {}

void XorAppender::WriteBits(uint64_t value, int n) {
  // Up to a byte at a time: fill the last byte's free bits, then whole bytes.
  if (n < 64) value &= (uint64_t{1} << n) - 1;
  while (n > 0) {
    if (bit_pos_ == 8) {
      bytes_.push_back(0);
      bit_pos_ = 0;
    }
    const int room = 8 - bit_pos_;
    const int take = n < room ? n : room;
    const auto part = static_cast<uint8_t>((value >> (n - take)) & ((1u << take) - 1));
    bytes_.back() |= static_cast<uint8_t>(part << (room - take));
    bit_pos_ += take;
    n -= take;
  }
}

void XorAppender::WriteVarint(uint64_t v) {
  while (v >= 0x80) {
    WriteBits((v & 0x7f) | 0x80, 8);
    v >>= 7;
  }
  WriteBits(v, 8);
}

void XorAppender::Append(int64_t t, double v) {
  const uint64_t bits = std::bit_cast<uint64_t>(v);
  if (count_ == 0) {
    WriteVarint(ZigZag(t));
    WriteBits(bits, 64);
  } else {
    const int64_t delta = t - t_;
    if (count_ == 1) {
      WriteVarint(static_cast<uint64_t>(delta));
    } else {
      const int64_t dod = delta - delta_;
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
    const uint64_t x = bits ^ v_;
    if (x == 0) {
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
        leading_ = leading;
        trailing_ = trailing;
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
  bytes_[0] = static_cast<uint8_t>(count_ >> 8);
  bytes_[1] = static_cast<uint8_t>(count_);
}

XorIterator::XorIterator(ByteView chunk) noexcept
    : data_(reinterpret_cast<const uint8_t*>(chunk.data())), size_(chunk.size()) {
  if (size_ < 2) {
    Fail("chunk shorter than its header");
    return;
  }
  total_ = (size_t{data_[0]} << 8) | data_[1];
}

double XorIterator::v() const noexcept { return std::bit_cast<double>(v_); }

bool XorIterator::Fail(const char* why) noexcept {
  if (status_.ok()) status_ = Status(Errc::kCorruption, std::string("bad chunk: ") + why);
  read_ = total_;
  return false;
}

bool XorIterator::ReadBit(bool& bit) noexcept {
  if (bit_ >= size_ * 8) return false;
  bit = ((data_[bit_ >> 3] >> (7 - (bit_ & 7))) & 1) != 0;
  ++bit_;
  return true;
}

bool XorIterator::ReadBits(int n, uint64_t& out) noexcept {
  if (static_cast<size_t>(n) > size_ * 8 - bit_) return false;
  out = 0;
  for (int i = 0; i < n; ++i) {
    out = (out << 1) | ((data_[bit_ >> 3] >> (7 - (bit_ & 7))) & 1);
    ++bit_;
  }
  return true;
}

bool XorIterator::ReadVarint(uint64_t& out) noexcept {
  out = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    uint64_t b;
    if (!ReadBits(8, b)) return false;
    out |= (b & 0x7f) << shift;
    if ((b & 0x80) == 0) return true;
  }
  return false;
}

bool XorIterator::Next() noexcept {
  if (!status_.ok() || read_ >= total_) return false;
  if (read_ == 0) {
    uint64_t t;
    if (!ReadVarint(t) || !ReadBits(64, v_)) return Fail("first sample cut short");
    t_ = UnZigZag(t);
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
    delta_ += dod;
  }
  t_ += delta_;
  bool bit;
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
