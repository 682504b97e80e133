#include "monitor/block_codec.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <optional>

#include "monitor/chunk.h"
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

// Deltas (order 1) or deltas of deltas (order 2) of `xs`, wrapping.
void PutSeries(std::vector<uint8_t>& out, const std::vector<int64_t>& xs, int order) {
  uint64_t prev = 0, prev_delta = 0;
  for (size_t i = 0; i < xs.size(); ++i) {
    const auto x = static_cast<uint64_t>(xs[i]);
    if (i == 0) {
      PutVarint(out, ZigZag(xs[0]));
    } else {
      const uint64_t d = x - prev;
      if (order == 1 || i == 1) {
        PutVarint(out, ZigZag(static_cast<int64_t>(d)));
      } else {
        PutVarint(out, ZigZag(static_cast<int64_t>(d - prev_delta)));
      }
      prev_delta = d;
    }
    prev = x;
  }
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

// Kinds 2 and 3's bytes: varint timestamps and mantissas.
std::vector<uint8_t> Packed(std::span<const Sample> samples, const std::vector<int64_t>& mantissas, int e) {
  std::vector<uint8_t> packed;
  PutVarint(packed, samples.size());
  std::vector<int64_t> ts;
  ts.reserve(samples.size());
  for (const Sample& s : samples) ts.push_back(s.t);
  PutSeries(packed, ts, 2);
  packed.push_back(static_cast<uint8_t>(static_cast<int8_t>(e)));
  std::vector<uint8_t> d1, d2;
  PutSeries(d1, mantissas, 1);
  PutSeries(d2, mantissas, 2);
  const bool second = d2.size() < d1.size();
  packed.push_back(second ? 1 : 0);
  const auto& m = second ? d2 : d1;
  packed.insert(packed.end(), m.begin(), m.end());
  return packed;
}

// Kind 4's bytes: timestamps as runs of deltas of deltas, then the values
// as an adaptive chunk's residuals (mantissas, or a float's bits).
std::vector<uint8_t> Split(std::span<const Sample> samples, const std::vector<int64_t>* mantissas, int e) {
  std::vector<uint8_t> out;
  PutVarint(out, samples.size());
  PutVarint(out, ZigZag(samples[0].t));
  if (samples.size() > 1) {
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
  out.push_back(mantissas != nullptr ? 0 : 1);
  out.push_back(static_cast<uint8_t>(static_cast<int8_t>(e)));
  VectorBitOut bits(out);
  ResidualModel model;
  for (size_t i = 0; i < samples.size(); ++i) {
    const uint64_t x = mantissas != nullptr ? static_cast<uint64_t>((*mantissas)[i]) : std::bit_cast<uint64_t>(samples[i].v);
    if (i > 0) {
      PutResidual(bits, model, x, i == 1);
    } else if (mantissas != nullptr) {
      bits.WriteVarint(ZigZag(static_cast<int64_t>(x)));
      model.x = x;
    } else {
      bits.WriteBits(x, 64);
      model.x = x;
    }
  }
  bits.Finish();
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
  // The smallest of the forms that can hold the values.
  std::vector<uint8_t> best;
  if (decimal) {
    best = Framed(kBlockChunkPacked, Packed(samples, mantissas, e), zstd);
  } else {
    ChunkAppender a;
    for (const Sample& s : samples) a.Append(s.t, s.v);
    best.push_back(kBlockChunkGorilla);
    best.insert(best.end(), a.bytes().begin(), a.bytes().end());
  }
  // Split: decimals plain (zstd already had its go at them packed), floats
  // also through zstd.
  std::vector<uint8_t> plain = Split(samples, decimal ? &mantissas : nullptr, decimal ? e : 0);
  std::vector<uint8_t> split;
  if (decimal) {
    split.reserve(plain.size() + 1);
    split.push_back(kBlockChunkSplit);
    split.insert(split.end(), plain.begin(), plain.end());
  } else {
    split = Framed(kBlockChunkSplit, plain, zstd);
  }
  return split.size() < best.size() ? split : best;
}

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
