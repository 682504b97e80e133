#include "monitor/block_codec.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <numeric>
#include <optional>

#include "monitor/chunk.h"
#include "monitor/range_coder.h"
#include "qcloud/core/compress.h"

namespace qcloud::monitor::detail {

namespace {

constexpr int kMaxExp = kMaxDecimalExp;
static_assert(kMaxBlockChunkSamples < 0x8000, "a Gorilla chunk's count is below 0x8000 (monitor/chunk.h)");

uint64_t ZigZag(int64_t v) { return (static_cast<uint64_t>(v) << 1) ^ static_cast<uint64_t>(v >> 63); }
int64_t UnZigZag(uint64_t v) { return static_cast<int64_t>(v >> 1) ^ -static_cast<int64_t>(v & 1); }

void PutVarint(std::vector<uint8_t>& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<uint8_t>(v | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<uint8_t>(v));
}

bool GetSeries(ByteReader& r, size_t n, int order, std::vector<int64_t>& xs) {
  xs.resize(n);
  uint64_t prev = 0, prev_delta = 0;
  for (size_t i = 0; i < n; ++i) {
    auto z = r.ReadVarint64();
    if (!z) return false;
    const auto v = static_cast<uint64_t>(UnZigZag(*z));
    uint64_t x;
    if (i == 0) {
      x = v;
    } else {
      const uint64_t d = (order == 1 || i == 1) ? v : prev_delta + v;
      x = prev + d;
      prev_delta = d;
    }
    xs[i] = static_cast<int64_t>(x);
    prev = x;
  }
  return true;
}

// Split timestamps: t0, t1 - t0, then (run length, delta of delta) pairs
// for the rest; every run at least 1, together exactly n - 2.
bool GetRuns(ByteReader& r, size_t n, std::vector<int64_t>& ts) {
  ts.resize(n);
  auto t0 = r.ReadVarint64();
  if (!t0) return false;
  uint64_t t = static_cast<uint64_t>(UnZigZag(*t0));
  ts[0] = static_cast<int64_t>(t);
  if (n == 1) return true;
  auto d1 = r.ReadVarint64();
  if (!d1) return false;
  uint64_t delta = static_cast<uint64_t>(UnZigZag(*d1));
  t += delta;
  ts[1] = static_cast<int64_t>(t);
  for (size_t i = 2; i < n;) {
    auto run = r.ReadVarint64();
    auto dod = r.ReadVarint64();
    if (!run || !dod || *run == 0 || *run > n - i) return false;
    const auto step = static_cast<uint64_t>(UnZigZag(*dod));
    for (uint64_t k = 0; k < *run; ++k, ++i) {
      delta += step;
      t += delta;
      ts[i] = static_cast<int64_t>(t);
    }
  }
  return true;
}

Status Bad(const char* what) { return Status(Errc::kCorruption, std::string("block chunk: ") + what); }

}  // namespace

namespace {

// Split timestamps (kinds 4 and 6): t0, t1 - t0, then runs of equal
// deltas of deltas.
void PutRuns(std::vector<uint8_t>& out, std::span<const Sample> samples) {
  PutVarint(out, ZigZag(samples[0].t));
  if (samples.size() == 1) return;
  uint64_t delta = static_cast<uint64_t>(samples[1].t) - static_cast<uint64_t>(samples[0].t);
  PutVarint(out, ZigZag(static_cast<int64_t>(delta)));
  uint64_t run_dod = 0, run = 0;
  for (size_t i = 2; i < samples.size(); ++i) {
    const uint64_t d = static_cast<uint64_t>(samples[i].t) - static_cast<uint64_t>(samples[i - 1].t);
    const uint64_t dod = d - delta;
    delta = d;
    if (run > 0 && dod == run_dod) {
      ++run;
      continue;
    }
    if (run > 0) {
      PutVarint(out, run);
      PutVarint(out, ZigZag(static_cast<int64_t>(run_dod)));
    }
    run_dod = dod;
    run = 1;
  }
  if (run > 0) {
    PutVarint(out, run);
    PutVarint(out, ZigZag(static_cast<int64_t>(run_dod)));
  }
}

// Kind 4's bytes for floats (decimals are kind 6 since version 6; kind 4
// decimals are still read): timestamps as runs of deltas of deltas, then
// the values' bits as an adaptive chunk's residuals.
std::vector<uint8_t> SplitFloats(std::span<const Sample> samples) {
  std::vector<uint8_t> out;
  PutVarint(out, samples.size());
  PutRuns(out, samples);
  out.push_back(1);  // floats
  out.push_back(0);  // E
  VectorBitOut bits(out);
  ResidualModel model;
  for (size_t i = 0; i < samples.size(); ++i) {
    const auto x = std::bit_cast<uint64_t>(samples[i].v);
    if (i > 0) {
      PutResidual(bits, model, x, i == 1);
    } else {
      bits.WriteBits(x, 64);
      model.x = x;
    }
  }
  bits.Finish();
  return out;
}

// Kind 6's values: y_i = (x_i - x_0) / g, each coded as its residual
// against one prediction, the same for the whole chunk: 0 the last y
// (delta), 1 the last y plus the last delta (delta of delta), 2 a moving
// mean (a gauge that wanders around a level). The encoder picks the one
// whose residuals' estimated entropy is the least. A residual is coded as
// its bit width (a 7-bit tree of adaptive bits, in one of two contexts: the
// last residual zero or not), its sign (adaptive: a counter's are all +),
// the two bits below its top bit (adaptive, per width: where a uniform
// step's range ends shows there), and the rest as direct bits. That is
// within about half a bit of the entropy of a counter's random increments.
struct CodedModel {
  static constexpr int kPredictions = 3;
  static constexpr int kMeanShift = 3;  // the mean moves an 8th of the way

  explicit CodedModel(int prediction) : j(prediction) {}

  static uint64_t Magnitude(uint64_t r) noexcept { return static_cast<int64_t>(r) < 0 ? 0 - r : r; }
  uint64_t Prediction(int k) const noexcept { return k == 0 ? y : k == 1 ? y + delta : mean; }
  void Update(uint64_t next) noexcept {
    delta = next - y;
    y = next;
    mean += static_cast<uint64_t>(static_cast<int64_t>(next - mean) >> kMeanShift);
  }

  int j;
  uint64_t y = 0, delta = 0, mean = 0;
  bool last_zero = false;
  AdaptiveBit widths[2][128];
  AdaptiveBit sign;
  AdaptiveBit top[65][3];
};

// The prediction whose residuals of `ys` (y_1 ..) would cost the fewest
// bits: the entropy of their widths and of their signs, and the bits below
// the top one.
int ChoosePrediction(const std::vector<uint64_t>& ys) {
  CodedModel m(0);
  uint32_t hist[CodedModel::kPredictions][65] = {};
  uint64_t low_bits[CodedModel::kPredictions] = {}, neg[CodedModel::kPredictions] = {};
  for (uint64_t y : ys) {
    for (int k = 0; k < CodedModel::kPredictions; ++k) {
      const uint64_t r = y - m.Prediction(k);
      const int w = std::bit_width(CodedModel::Magnitude(r));
      ++hist[k][w];
      if (w > 0) low_bits[k] += static_cast<uint64_t>(w - 1);
      if (static_cast<int64_t>(r) < 0) ++neg[k];
    }
    m.Update(y);
  }
  auto entropy = [](double count, double total) { return count > 0 ? -count * std::log2(count / total) : 0.0; };
  const double n = static_cast<double>(ys.size());
  int best = 0;
  double best_bits = 0;
  for (int k = 0; k < CodedModel::kPredictions; ++k) {
    double bits = static_cast<double>(low_bits[k]);
    for (uint32_t c : hist[k]) bits += entropy(c, n);
    const double nonzero = n - hist[k][0];
    bits += entropy(static_cast<double>(neg[k]), nonzero) + entropy(nonzero - static_cast<double>(neg[k]), nonzero);
    if (k == 0 || bits < best_bits) {
      best = k;
      best_bits = bits;
    }
  }
  return best;
}

void PutCoded(RangeEncoder& rc, CodedModel& m, uint64_t y) {
  const uint64_t r = y - m.Prediction(m.j);
  const bool neg = static_cast<int64_t>(r) < 0;
  const uint64_t mag = neg ? 0 - r : r;
  const int w = std::bit_width(mag);
  AdaptiveBit* tree = m.widths[m.last_zero ? 1 : 0];
  unsigned node = 1;
  for (int b = 6; b >= 0; --b) {
    const unsigned bit = (static_cast<unsigned>(w) >> b) & 1;
    rc.Bit(tree[node], bit);
    node = node * 2 + bit;
  }
  if (w > 0) {
    rc.Bit(m.sign, neg ? 1 : 0);
    if (w >= 2) {
      const unsigned b1 = static_cast<unsigned>(mag >> (w - 2)) & 1;
      rc.Bit(m.top[w][0], b1);
      if (w >= 3) {
        rc.Bit(m.top[w][1 + b1], static_cast<unsigned>(mag >> (w - 3)) & 1);
        rc.Direct(mag, w - 3);
      }
    }
  }
  m.last_zero = w == 0;
  m.Update(y);
}

bool GetCoded(RangeDecoder& rc, CodedModel& m, uint64_t& y) noexcept {
  AdaptiveBit* tree = m.widths[m.last_zero ? 1 : 0];
  unsigned node = 1;
  for (int b = 0; b < 7; ++b) node = node * 2 + rc.Bit(tree[node]);
  const int w = static_cast<int>(node - 128);
  if (w > 64) return false;
  uint64_t r = 0;
  if (w > 0) {
    const bool neg = rc.Bit(m.sign) != 0;
    uint64_t mag = uint64_t{1} << (w - 1);
    if (w >= 2) {
      const unsigned b1 = rc.Bit(m.top[w][0]);
      mag |= uint64_t{b1} << (w - 2);
      if (w >= 3) {
        mag |= uint64_t{rc.Bit(m.top[w][1 + b1])} << (w - 3);
        mag |= rc.Direct(w - 3);
      }
    }
    r = neg ? 0 - mag : mag;
  }
  y = m.Prediction(m.j) + r;
  m.last_zero = w == 0;
  m.Update(y);
  return true;
}

// One sequence of kind 6 (the timestamps, the values): x_i = x_0 + g y_i,
// g the largest common divisor of the x_i - x_0 (1000 for timestamps in
// whole seconds, 4096 for a gauge of whole pages). Two predictions more
// leave the sequence out of the coded stream: every y_i is i (a regular
// scrape's timestamps, a counter of equal steps), or 0 (a constant).
constexpr int kLinear = CodedModel::kPredictions;
constexpr int kConstant = CodedModel::kPredictions + 1;
struct CodedSeq {
  uint64_t g = 0;
  int prediction = 0;
  std::vector<uint64_t> ys;  // y_1 .. y_(n-1)
};

template <class At>
CodedSeq PrepareSeq(size_t n, At x_at) {
  CodedSeq s;
  const uint64_t x0 = x_at(0);
  for (size_t i = 1; i < n && s.g != 1; ++i) s.g = std::gcd(s.g, CodedModel::Magnitude(x_at(i) - x0));
  if (s.g == 0 || s.g > static_cast<uint64_t>(INT64_MAX)) s.g = 1;
  s.ys.reserve(n - 1);
  for (size_t i = 1; i < n; ++i) s.ys.push_back(static_cast<uint64_t>(static_cast<int64_t>(x_at(i) - x0) / static_cast<int64_t>(s.g)));
  bool constant = true, linear = true;
  for (size_t i = 0; i < s.ys.size(); ++i) {
    constant = constant && s.ys[i] == 0;
    linear = linear && s.ys[i] == i + 1;
  }
  s.prediction = constant ? kConstant : linear ? kLinear : ChoosePrediction(s.ys);
  return s;
}

// Kind 6's bytes: the headers of the two sequences, then their residuals
// range-coded, a timestamp's and a value's for each sample after the first.
std::vector<uint8_t> Coded(std::span<const Sample> samples, const std::vector<int64_t>* mantissas, int e) {
  std::vector<uint8_t> out;
  const size_t n = samples.size();
  PutVarint(out, n);
  const CodedSeq ts = PrepareSeq(n, [&](size_t i) { return static_cast<uint64_t>(samples[i].t); });
  PutVarint(out, ZigZag(samples[0].t));
  PutVarint(out, ts.g);
  out.push_back(static_cast<uint8_t>(ts.prediction));
  auto x_at = [&](size_t i) {
    return mantissas != nullptr ? static_cast<uint64_t>((*mantissas)[i]) : std::bit_cast<uint64_t>(samples[i].v);
  };
  const CodedSeq xs = PrepareSeq(n, x_at);
  out.push_back(mantissas != nullptr ? 0 : 1);
  out.push_back(static_cast<uint8_t>(static_cast<int8_t>(e)));
  const uint64_t x0 = x_at(0);
  if (mantissas != nullptr) {
    PutVarint(out, ZigZag(static_cast<int64_t>(x0)));
  } else {
    for (int b = 0; b < 64; b += 8) out.push_back(static_cast<uint8_t>(x0 >> b));
  }
  PutVarint(out, xs.g);
  out.push_back(static_cast<uint8_t>(xs.prediction));
  if (ts.prediction >= kLinear && xs.prediction >= kLinear) return out;  // nothing to code
  RangeEncoder rc(out);
  CodedModel tm(ts.prediction < kLinear ? ts.prediction : 0), xm(xs.prediction < kLinear ? xs.prediction : 0);
  for (size_t i = 0; i + 1 < n; ++i) {
    if (ts.prediction < kLinear) PutCoded(rc, tm, ts.ys[i]);
    if (xs.prediction < kLinear) PutCoded(rc, xm, xs.ys[i]);
  }
  rc.Finish();
  return out;
}

// `plain` as kind `kind`, or as `kind + 1` (one zstd frame) when smaller.
std::vector<uint8_t> Framed(uint8_t kind, const std::vector<uint8_t>& plain, ZstdCompressor* zstd) {
  std::vector<uint8_t> out;
  const ByteView in(reinterpret_cast<const std::byte*>(plain.data()), plain.size());
  auto z = zstd != nullptr ? zstd->Compress(in, {.level = 3}) : ZstdCompress(in, {.level = 3});
  if (z.ok() && z->size() + 1 < plain.size()) {
    out.push_back(static_cast<uint8_t>(kind + 1));
    const ByteView zb = z->readable();
    out.insert(out.end(), reinterpret_cast<const uint8_t*>(zb.data()), reinterpret_cast<const uint8_t*>(zb.data()) + zb.size());
  } else {
    out.push_back(kind);
    out.insert(out.end(), plain.begin(), plain.end());
  }
  return out;
}

}  // namespace

std::vector<uint8_t> EncodeBlockChunk(std::span<const Sample> samples, ZstdCompressor* zstd) {
  // Values as decimals with one exponent, when every one is one.
  int e = INT32_MIN;
  bool decimal = !samples.empty();
  for (const Sample& s : samples) {
    auto x = ExponentOf(s.v);
    if (!x) {
      decimal = false;
      break;
    }
    e = std::max(e, *x);
  }
  std::vector<int64_t> mantissas;
  if (decimal) {
    mantissas.reserve(samples.size());
    for (const Sample& s : samples) {
      int64_t m;
      if (!ToMantissa(s.v, e, m)) {
        decimal = false;
        break;
      }
      mantissas.push_back(m);
    }
  }
  // Decimals: kind 6, which was the smallest of all forms for every kind
  // of series bench/monitor's mix has (bench/README.md, session 19).
  // Floats: the smallest of kinds 1, 4 or 5 (zstd finds a walk that repeats
  // its steps) and 6.
  std::vector<uint8_t> coded{kBlockChunkCoded};
  const std::vector<uint8_t> body = Coded(samples, decimal ? &mantissas : nullptr, decimal ? e : 0);
  coded.insert(coded.end(), body.begin(), body.end());
  if (decimal) return coded;
  std::vector<uint8_t> best{kBlockChunkGorilla};
  {
    ChunkAppender a;
    for (const Sample& s : samples) a.Append(s.t, s.v);
    best.insert(best.end(), a.bytes().begin(), a.bytes().end());
  }
  std::vector<uint8_t> split = Framed(kBlockChunkSplit, SplitFloats(samples), zstd);
  if (split.size() < best.size()) best = std::move(split);
  return coded.size() < best.size() ? coded : best;
}

namespace {

Status DecodeCoded(ByteView body, int64_t mint, int64_t maxt, std::vector<Sample>& out) {
  ByteReader r(body);
  auto n = r.ReadVarint64();
  if (!n || *n == 0 || *n > kMaxBlockChunkSamples) return Bad("sample count");
  auto t0 = r.ReadVarint64();
  auto tg = r.ReadVarint64();
  auto tp = r.ReadU8();
  if (!t0 || !tg || !tp || *tg == 0 || *tg > static_cast<uint64_t>(INT64_MAX) || *tp > kConstant) {
    return Bad("timestamps");
  }
  auto mode = r.ReadU8();
  auto e8 = r.ReadU8();
  if (!mode || !e8 || *mode > 1) return Bad("value header");
  const bool floats = *mode == 1;
  const int e = static_cast<int8_t>(*e8);
  if (e > kMaxExp || e < -kMaxExp || (floats && e != 0)) return Bad("exponent");
  uint64_t x0 = 0;
  if (floats) {
    for (int b = 0; b < 64; b += 8) {
      auto byte = r.ReadU8();
      if (!byte) return Bad("first value");
      x0 |= uint64_t{*byte} << b;
    }
  } else {
    auto z = r.ReadVarint64();
    if (!z) return Bad("first value");
    x0 = static_cast<uint64_t>(UnZigZag(*z));
  }
  auto g = r.ReadVarint64();
  auto prediction = r.ReadU8();
  if (!g || *g == 0 || *g > static_cast<uint64_t>(INT64_MAX)) return Bad("divisor");
  if (!prediction || *prediction > kConstant) return Bad("prediction");
  const ByteView rest = r.rest();
  const bool coded = *tp < kLinear || *prediction < kLinear;
  if (!coded && !rest.empty()) return Bad("bytes after the values");
  RangeDecoder rc(reinterpret_cast<const uint8_t*>(rest.data()), rest.size());
  // The models of the coded sequences (a sequence of kLinear or kConstant
  // reads nothing).
  CodedModel tm(*tp < kLinear ? *tp : 0), xm(*prediction < kLinear ? *prediction : 0);
  const size_t first = out.size();
  const auto t_first = static_cast<uint64_t>(UnZigZag(*t0));
  for (size_t i = 0; i < *n; ++i) {
    uint64_t ty = 0, y = 0;
    if (i > 0 && ((*tp < kLinear && !GetCoded(rc, tm, ty)) || (*prediction < kLinear && !GetCoded(rc, xm, y)))) {
      out.resize(first);
      return Bad("values");
    }
    if (*tp == kLinear) ty = i;
    if (*prediction == kLinear) y = i;
    const auto t = static_cast<int64_t>(t_first + *tg * ty);
    // Samples past maxt are not decoded (the chunk's checksum has vouched
    // for its bytes); a chunk decoded to its end is checked to end there.
    if (t > maxt) return Status::Ok();
    const uint64_t x = x0 + *g * y;
    if (t >= mint) out.push_back({t, floats ? std::bit_cast<double>(x) : FromMantissa(static_cast<int64_t>(x), e)});
  }
  if (coded && (!rc.valid() || !rc.ended_exactly())) {
    out.resize(first);
    return Bad("values cut short, or bytes after them");
  }
  return Status::Ok();
}

}  // namespace

Status DecodeBlockChunk(ByteView bytes, int64_t mint, int64_t maxt, std::vector<Sample>& out) {
  if (bytes.empty()) return Bad("empty");
  const auto kind = static_cast<uint8_t>(bytes.data()[0]);
  ByteView body = bytes.subview(1, bytes.size() - 1);
  if (kind == kBlockChunkGorilla) {
    ChunkIterator it(body);
    while (it.Next()) {
      if (it.t() > maxt) break;
      if (it.t() >= mint) out.push_back({it.t(), it.v()});
    }
    return it.status();
  }
  if (kind == kBlockChunkCoded) return DecodeCoded(body, mint, maxt, out);
  if (kind < kBlockChunkPacked || kind > kBlockChunkSplitZstd) return Bad("unknown kind");
  Buffer unpacked;
  if (kind == kBlockChunkPackedZstd || kind == kBlockChunkSplitZstd) {
    // Bounded: at most ~22 bytes a sample (two 10-byte varints and some;
    // split: a run's two varints, 12 bytes of an escaped residual).
    auto raw = ZstdDecompress(body, kMaxBlockChunkSamples * 24 + 64);
    if (!raw.ok()) return Bad("zstd frame");
    unpacked = std::move(raw).value();
    body = unpacked.readable();
  }
  const bool split = kind == kBlockChunkSplit || kind == kBlockChunkSplitZstd;
  ByteReader r(body);
  auto n = r.ReadVarint64();
  if (!n || *n == 0 || *n > kMaxBlockChunkSamples) return Bad("sample count");
  std::vector<int64_t> ts;
  if (split ? !GetRuns(r, *n, ts) : !GetSeries(r, *n, 2, ts)) return Bad("timestamps");
  std::optional<uint8_t> mode, e8;
  if (split) {
    mode = r.ReadU8();
    e8 = r.ReadU8();
  } else {
    e8 = r.ReadU8();
    mode = r.ReadU8();
  }
  if (!e8 || !mode || *mode > 1) return Bad("value header");
  const int e = static_cast<int8_t>(*e8);
  if (e > kMaxExp || e < -kMaxExp || (split && *mode == 1 && e != 0)) return Bad("exponent");
  std::vector<int64_t> xs;
  if (split) {
    const ByteView rest = r.rest();
    BitIn in{.data = reinterpret_cast<const uint8_t*>(rest.data()), .size = rest.size(), .bit = 0};
    const bool floats = *mode == 1;
    ResidualModel model;
    xs.resize(*n);
    for (size_t i = 0; i < *n; ++i) {
      uint64_t x;
      bool ok;
      if (i > 0) {
        ok = GetResidual(in, model, i == 1, x);
      } else if (floats) {
        ok = in.ReadBits(64, x);
        model.x = x;
      } else {
        uint64_t z = 0;
        ok = in.ReadVarint(z);
        x = model.x = static_cast<uint64_t>(UnZigZag(z));
      }
      if (!ok) return Bad("values");
      xs[i] = static_cast<int64_t>(x);
    }
    if ((in.bit + 7) / 8 != in.size) return Bad("bytes after the values");
    if (floats) {
      for (size_t i = 0; i < *n; ++i) {
        if (ts[i] > maxt) break;
        if (ts[i] >= mint) out.push_back({ts[i], std::bit_cast<double>(xs[i])});
      }
      return Status::Ok();
    }
  } else {
    if (!GetSeries(r, *n, *mode == 1 ? 2 : 1, xs)) return Bad("values");
    if (!r.empty()) return Bad("bytes after the values");
  }
  for (size_t i = 0; i < *n; ++i) {
    if (ts[i] > maxt) break;
    if (ts[i] >= mint) out.push_back({ts[i], FromMantissa(xs[i], e)});
  }
  return Status::Ok();
}

}  // namespace qcloud::monitor::detail
