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
constexpr uint8_t kDecimalFlag = 0x80;   // in a chunk's first byte: decimal or adaptive (3-byte header)
constexpr uint8_t kAdaptiveFlag = 0x40;  // in the third byte: adaptive, else decimal
constexpr uint8_t kFloatFlag = 0x20;     // in an adaptive chunk's third byte: x is the double's bits
constexpr uint8_t kExpMask = 0x1f;

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

void ResidualModel::Residuals(uint64_t next, uint64_t z[2]) const noexcept {
  z[0] = ZigZag(static_cast<int64_t>(next - x));
  z[1] = ZigZag(static_cast<int64_t>(next - x - delta));
}

void ResidualModel::Update(uint64_t next, const uint64_t z[2], int choice) noexcept {
  for (int j = 0; j < 2; ++j) {
    width[j] = static_cast<uint16_t>(width[j] + std::bit_width(z[j]));
    nonzero[j] = static_cast<uint8_t>(nonzero[j] + (z[j] != 0 ? 1 : 0));
  }
  if (z[choice] == 0) ++zeros;
  if (++n == 64) {  // a window of the last 32-64: the model follows the data
    for (int j = 0; j < 2; ++j) {
      width[j] = static_cast<uint16_t>(width[j] >> 1);
      nonzero[j] = static_cast<uint8_t>(nonzero[j] >> 1);
    }
    zeros = static_cast<uint8_t>(zeros >> 1);
    n = 32;
  }
  delta = next - x;
  x = next;
}

bool GetResidual(BitIn& in, ResidualModel& model, bool second, uint64_t& x) noexcept {
  const int choice = model.Choice();
  uint64_t zc = 0;  // the chosen prediction's residual, zigzagged
  if (second) {
    if (!in.ReadVarint(zc)) return false;
  } else {
    const bool zero_flag = model.ZeroFlag();
    bool nonzero = true;
    if (zero_flag && !in.ReadBit(nonzero)) return false;
    if (nonzero) {
      int q = 0;
      if (!in.ReadUnary(kRiceEscape, q)) return false;
      uint64_t r;
      if (q == kRiceEscape) {
        if (!in.ReadBits(64, r)) return false;
      } else {
        const int k = model.RiceK(choice, zero_flag);
        uint64_t low;
        if (!in.ReadBits(k, low)) return false;
        r = (static_cast<uint64_t>(q) << k) | low;
      }
      zc = zero_flag ? r + 1 : r;
    }
  }
  const uint64_t predicted = choice == 0 ? model.x : model.x + model.delta;
  x = predicted + static_cast<uint64_t>(UnZigZag(zc));
  uint64_t z[2];
  model.Residuals(x, z);
  model.Update(x, z, choice);
  return true;
}

bool BitIn::ReadBit(bool& out) noexcept {
  if (bit >= size * 8) return false;
  out = ((data[bit >> 3] >> (7 - (bit & 7))) & 1) != 0;
  ++bit;
  return true;
}

bool BitIn::ReadBits(int n, uint64_t& out) noexcept {
  if (static_cast<size_t>(n) > size * 8 - bit) return false;
  out = 0;
  while (n > 0) {  // up to a byte at a time
    const int room = 8 - static_cast<int>(bit & 7);
    const int take = n < room ? n : room;
    const unsigned part = (data[bit >> 3] >> (room - take)) & ((1u << take) - 1);
    out = (out << take) | part;
    bit += static_cast<size_t>(take);
    n -= take;
  }
  return true;
}

bool BitIn::ReadUnary(int max, int& ones) noexcept {
  ones = 0;
  while (ones < max) {
    if (bit >= size * 8) return false;
    const int used = static_cast<int>(bit & 7);
    const int avail = 8 - used;
    const auto w = static_cast<uint8_t>(data[bit >> 3] << used);  // the byte's unread bits, then 0s
    const int run = std::countl_one(w);                           // at most avail
    if (ones + run >= max) {
      bit += static_cast<size_t>(max - ones);
      ones = max;
      return true;
    }
    ones += run;
    if (run < avail) {
      bit += static_cast<size_t>(run) + 1;  // and the 0
      return true;
    }
    bit += static_cast<size_t>(avail);
  }
  return true;
}

bool BitIn::ReadVarint(uint64_t& out) noexcept {
  out = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    uint64_t b;
    if (!ReadBits(8, b)) return false;
    out |= (b & 0x7f) << shift;
    if ((b & 0x80) == 0) return true;
  }
  return false;
}

ChunkAppender::ChunkAppender(bool decimal) : try_decimal_(decimal) { Reset(false, 0); }

ChunkAppender ChunkAppender::FloatDeltas() {
  ChunkAppender a;
  a.float_deltas_ = true;
  a.Reset(false, 0);
  return a;
}

void ChunkAppender::Reset(bool decimal, int e) {
  if (decimal) {
    bytes_.Assign({kDecimalFlag, 0, static_cast<uint8_t>(kAdaptiveFlag | e)});
  } else if (float_deltas_) {
    bytes_.Assign({kDecimalFlag, 0, kAdaptiveFlag | kFloatFlag});
  } else {
    bytes_.Assign({0, 0});
  }
  decimal_ = decimal;
  exp_ = static_cast<int8_t>(e);
  bit_pos_ = 8;
  count_ = 0;
  t_ = delta_ = 0;
  model_ = ResidualModel();
  leading_ = 0xff;
  trailing_ = 0;
}

int64_t ChunkAppender::first_t() const noexcept {
  // Sample 0's time is the first varint after the header, on a byte boundary.
  uint64_t z = 0;
  int shift = 0;
  for (size_t i = (bytes_.data()[0] & kDecimalFlag) != 0 ? 3 : 2; i < bytes_.size() && shift < 64; ++i, shift += 7) {
    z |= uint64_t{bytes_.data()[i] & 0x7fu} << shift;
    if ((bytes_.data()[i] & 0x80) == 0) break;
  }
  return UnZigZag(z);
}

uint64_t ChunkAppender::last_bits() const noexcept {
  return decimal_ ? std::bit_cast<uint64_t>(FromMantissa(static_cast<int64_t>(model_.x), exp_)) : model_.x;
}

void ChunkAppender::Append(int64_t t, double v) {
  if (count_ == 0 && try_decimal_) {
    const std::optional<int> e = ExponentOf(v);
    Reset(e.has_value(), e ? std::max(0, *e) : 0);  // may throw with no sample in
  }
  uint64_t x = std::bit_cast<uint64_t>(v);
  if (decimal_) {
    int64_t m = 0;
    if (!ToMantissa(v, exp_, m)) {
      Widen(t, v);
      return;
    }
    x = static_cast<uint64_t>(m);
  }
  // A sample's bits go out a few at a time, and a byte may be added between
  // them (which can throw): what a throw leaves half written is taken back.
  const size_t size = bytes_.size();
  const uint8_t bit_pos = bit_pos_;
  const uint8_t last = size > 0 ? bytes_.data()[size - 1] : 0;
  const int64_t t0 = t_, delta0 = delta_;
  const ResidualModel model = model_;
  const uint8_t leading = leading_, trailing = trailing_;
  try {
    Put(t, x);
  } catch (...) {
    bytes_.Truncate(size);
    if (size > 0) bytes_.data()[size - 1] = last;
    bit_pos_ = bit_pos;
    t_ = t0;
    delta_ = delta0;
    model_ = model;
    leading_ = leading;
    trailing_ = trailing;
    throw;
  }
}

// `v` has no mantissa at this chunk's exponent: the chunk is written again
// with the smallest exponent that holds every value, or as Gorilla, into a
// new appender that then replaces this one (a throw changes nothing).
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
  ChunkAppender w;
  w.try_decimal_ = try_decimal_;
  w.float_deltas_ = float_deltas_;
  w.Reset(decimal, decimal ? exp : 0);
  for (size_t i = 0; i < all.size(); ++i) {
    w.Put(all[i].first, decimal ? static_cast<uint64_t>(ms[i]) : std::bit_cast<uint64_t>(all[i].second));
  }
  *this = std::move(w);
}

void ChunkAppender::Put(int64_t t, uint64_t x) {
  BitOut<PoolBytes> out = Out();
  if (count_ == 0) {
    out.WriteVarint(ZigZag(t));
    if (decimal_) {
      out.WriteVarint(ZigZag(static_cast<int64_t>(x)));
    } else {
      out.WriteBits(x, 64);
    }
    model_.x = x;  // Gorilla: the last value's bits
  } else {
    // Differences wrap at 64 bits (no signed overflow on any timestamps);
    // the iterator wraps the same way.
    const auto delta = static_cast<int64_t>(static_cast<uint64_t>(t) - static_cast<uint64_t>(t_));
    if (count_ == 1) {
      out.WriteVarint(static_cast<uint64_t>(delta));
    } else {
      const auto dod = static_cast<int64_t>(static_cast<uint64_t>(delta) - static_cast<uint64_t>(delta_));
      if (dod == 0) {
        out.WriteBit(false);
      } else {
        bool done = false;
        for (const Bucket& b : kBuckets) {
          if (Fits(dod, b.value_bits)) {
            out.WriteBits(b.prefix, b.prefix_bits);
            out.WriteBits(static_cast<uint64_t>(dod), b.value_bits);
            done = true;
            break;
          }
        }
        if (!done) {
          out.WriteBits(0b1111, 4);
          out.WriteBits(static_cast<uint64_t>(dod), 64);
        }
      }
    }
    delta_ = delta;
    if (decimal_ || float_deltas_) {
      PutResidual(out, model_, x, count_ == 1);
    } else {
      PutXor(x);
    }
  }
  t_ = t;
  ++count_;
  bytes_[0] = static_cast<uint8_t>((decimal_ || float_deltas_ ? kDecimalFlag : 0) | (count_ >> 8));
  bytes_[1] = static_cast<uint8_t>(count_);
}

void ChunkAppender::PutXor(uint64_t bits) {
  BitOut<PoolBytes> out = Out();
  const uint64_t x = bits ^ model_.x;
  model_.x = bits;
  if (x == 0) {
    out.WriteBit(false);
    return;
  }
  out.WriteBit(true);
  int leading = std::countl_zero(x);
  const int trailing = std::countr_zero(x);
  if (leading >= 32) leading = 31;  // 5 bits
  if (leading_ != 0xff && leading >= leading_ && trailing >= trailing_) {
    out.WriteBit(false);
    out.WriteBits(x >> trailing_, 64 - leading_ - trailing_);
  } else {
    leading_ = static_cast<uint8_t>(leading);
    trailing_ = static_cast<uint8_t>(trailing);
    out.WriteBit(true);
    out.WriteBits(static_cast<uint64_t>(leading), 5);
    const int sig = 64 - leading - trailing;
    out.WriteBits(static_cast<uint64_t>(sig == 64 ? 0 : sig), 6);
    out.WriteBits(x >> trailing, sig);
  }
}

std::optional<ChunkAppender> FloatDeltasIfSmaller(std::span<const uint8_t> chunk) {
  if (chunk.empty() || (chunk[0] & kDecimalFlag) != 0) return std::nullopt;
  ChunkAppender a = ChunkAppender::FloatDeltas();
  ChunkIterator it(ByteView(reinterpret_cast<const std::byte*>(chunk.data()), chunk.size()));
  while (it.Next()) {
    a.Append(it.t(), it.v());
    if (a.bytes().size() >= chunk.size()) return std::nullopt;
  }
  if (!it.status().ok() || a.samples() != it.total()) return std::nullopt;
  return a;
}

ChunkIterator::ChunkIterator(ByteView chunk) noexcept
    : in_{.data = reinterpret_cast<const uint8_t*>(chunk.data()), .size = chunk.size(), .bit = 16} {
  if (in_.size < 2) {
    Fail("chunk shorter than its header");
    return;
  }
  total_ = (size_t{in_.data[0] & 0x7fu} << 8) | in_.data[1];
  if ((in_.data[0] & kDecimalFlag) == 0) return;  // Gorilla
  if (in_.size < 3) {
    Fail("chunk shorter than its header");
    return;
  }
  const uint8_t b = in_.data[2];
  in_.bit = 24;
  if ((b & kAdaptiveFlag) != 0) {
    kind_ = Kind::kAdaptive;
    float_ = (b & kFloatFlag) != 0;
    exp_ = b & kExpMask;
    if ((b & 0x80) != 0 || exp_ > kMaxChunkExp || (float_ && exp_ != 0)) Fail("chunk header");
    return;
  }
  kind_ = Kind::kDecimal;
  exp_ = b;
  if (exp_ > kMaxChunkExp) Fail("decimal exponent");
}

double ChunkIterator::v() const noexcept { return std::bit_cast<double>(v_); }

bool ChunkIterator::Fail(const char* why) noexcept {
  if (status_.ok()) status_ = Status(Errc::kCorruption, std::string("bad chunk: ") + why);
  read_ = total_;
  return false;
}

bool ChunkIterator::Next() noexcept {
  if (!status_.ok() || read_ >= total_) return false;
  if (read_ == 0) {
    uint64_t t;
    if (!in_.ReadVarint(t)) return Fail("first sample cut short");
    t_ = UnZigZag(t);
    if (kind_ == Kind::kGorilla || float_) {
      if (!in_.ReadBits(64, v_)) return Fail("first sample cut short");
      model_.x = v_;
    } else {
      uint64_t z;
      if (!in_.ReadVarint(z)) return Fail("first sample cut short");
      m_ = model_.x = static_cast<uint64_t>(UnZigZag(z));
      v_ = std::bit_cast<uint64_t>(FromMantissa(static_cast<int64_t>(m_), exp_));
    }
    ++read_;
    return true;
  }
  if (read_ == 1) {
    uint64_t d;
    if (!in_.ReadVarint(d)) return Fail("second timestamp cut short");
    delta_ = static_cast<int64_t>(d);
  } else {
    int ones = 0;
    bool bit;
    while (ones < 4) {
      if (!in_.ReadBit(bit)) return Fail("timestamp cut short");
      if (!bit) break;
      ++ones;
    }
    int64_t dod = 0;
    if (ones > 0) {
      const int bits = ones == 4 ? 64 : kBuckets[ones - 1].value_bits;
      uint64_t raw;
      if (!in_.ReadBits(bits, raw)) return Fail("timestamp cut short");
      // The buckets hold [-(2^(b-1) - 1), 2^(b-1)]: above the top, negative.
      if (bits < 64 && raw > (uint64_t{1} << (bits - 1))) raw |= ~uint64_t{0} << bits;
      dod = static_cast<int64_t>(raw);
    }
    delta_ = static_cast<int64_t>(static_cast<uint64_t>(delta_) + static_cast<uint64_t>(dod));
  }
  t_ = static_cast<int64_t>(static_cast<uint64_t>(t_) + static_cast<uint64_t>(delta_));
  if (kind_ == Kind::kAdaptive) {
    uint64_t x;
    if (!GetResidual(in_, model_, read_ == 1, x)) return Fail("value cut short");
    v_ = float_ ? x : std::bit_cast<uint64_t>(FromMantissa(static_cast<int64_t>(x), exp_));
    ++read_;
    return true;
  }
  bool bit;
  if (kind_ == Kind::kDecimal) {
    int ones = 0;
    while (ones < 5) {
      if (!in_.ReadBit(bit)) return Fail("value cut short");
      if (!bit) break;
      ++ones;
    }
    uint64_t z = 0;
    if (ones > 0 && !in_.ReadBits(ones == 5 ? 64 : kValueBuckets[ones - 1].value_bits, z)) {
      return Fail("value cut short");
    }
    mdelta_ += static_cast<uint64_t>(UnZigZag(z));
    m_ += mdelta_;
    v_ = std::bit_cast<uint64_t>(FromMantissa(static_cast<int64_t>(m_), exp_));
    ++read_;
    return true;
  }
  if (!in_.ReadBit(bit)) return Fail("value cut short");
  if (bit) {
    if (!in_.ReadBit(bit)) return Fail("value cut short");
    if (bit) {
      uint64_t lead, sig;
      if (!in_.ReadBits(5, lead) || !in_.ReadBits(6, sig)) return Fail("value cut short");
      if (sig == 0) sig = 64;
      if (lead + sig > 64) return Fail("value window past 64 bits");
      leading_ = static_cast<int>(lead);
      trailing_ = 64 - leading_ - static_cast<int>(sig);
    }  // else the last window again (before any: 64 bits, still bounded)
    uint64_t x;
    const int n = 64 - leading_ - trailing_;
    if (!in_.ReadBits(n, x)) return Fail("value cut short");
    v_ ^= n == 64 ? x : (x << trailing_);
  }
  ++read_;
  return true;
}

}  // namespace qcloud::monitor::detail
