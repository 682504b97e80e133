// The chunk codecs (Gorilla and decimal chunks, block chunks): exact round
// trips of every kind of timestamp step and value change, sizes on regular
// data, and bad chunks refused.

#include "monitor/block.h"
#include "monitor/block_codec.h"
#include "monitor/chunk.h"
#include "monitor/range_coder.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "qcloud/core/hash.h"
#include "qcloud/testing/doctest_helpers.h"
#include "qcloud/testing/mem_env.h"

namespace qcloud::monitor::detail {
namespace {

struct S {
  int64_t t;
  uint64_t bits;
};

std::vector<S> RoundTrip(const std::vector<std::pair<int64_t, double>>& in, size_t* bytes = nullptr,
                         bool decimal = false) {
  ChunkAppender a(decimal);
  for (auto [t, v] : in) a.Append(t, v);
  if (bytes) *bytes = a.bytes().size();
  ChunkIterator it(ByteView(reinterpret_cast<const std::byte*>(a.bytes().data()), a.bytes().size()));
  std::vector<S> out;
  while (it.Next()) out.push_back({it.t(), it.v_bits()});
  CHECK(it.status().ok());
  CHECK(it.total() == in.size());
  return out;
}

void CheckSame(const std::vector<std::pair<int64_t, double>>& in, bool decimal = false) {
  const auto out = RoundTrip(in, nullptr, decimal);
  REQUIRE(out.size() == in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    INFO("sample ", i);
    CHECK(out[i].t == in[i].first);
    CHECK(out[i].bits == std::bit_cast<uint64_t>(in[i].second));
  }
}

TEST_CASE("monitor chunk round trips every delta of delta bucket and value pattern") {
  // Steps that land in each bucket and on each bucket's edges.
  std::vector<std::pair<int64_t, double>> in;
  int64_t t = -5000;  // timestamps before 1970 too
  const int64_t steps[] = {15000, 15000, 15001, 14999, 15000 + 8192, 15000 - 8191, 15000 + 8193,
                           15000 + 65536, 15000 - 65535, 15000 + 65537, 15000 + 524288,
                           15000 - 524287, 15000 + 524289, int64_t{1} << 40, 1, 0, 0, 3};
  double v = 1.0;
  for (int64_t s : steps) {
    in.push_back({t, v});
    t += s;
    v = v * 1.5 + 0.25;
  }
  CheckSame(in);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  CheckSame({{0, 0.0}, {1, -0.0}, {2, nan}, {3, inf}, {4, -inf}, {5, 1e-300}, {6, 1e300}, {7, 42}, {8, 42},
             {9, 43}, {10, std::bit_cast<double>(uint64_t{0x8000000000000001})}, {11, 5e-324}});
  CheckSame({{100, 7}});  // one sample
  CheckSame({});
}

TEST_CASE("monitor chunk random series round trip exactly") {
  std::mt19937_64 rng(7);
  for (int round = 0; round < 200; ++round) {
    std::vector<std::pair<int64_t, double>> in;
    int64_t t = static_cast<int64_t>(rng() % 2000000000000);
    double v = 0;
    const size_t n = 1 + rng() % kMaxChunkSamples;
    for (size_t i = 0; i < n; ++i) {
      switch (rng() % 4) {
        case 0: v += 1; break;                                     // a counter
        case 1: v = static_cast<double>(rng() % 100); break;        // a small gauge
        case 2: v = std::bit_cast<double>(rng()); break;            // any bits
        default: break;                                             // unchanged
      }
      in.push_back({t, v});
      t += (rng() % 3 == 0) ? static_cast<int64_t>(rng() % 100000) : 15000;
    }
    CheckSame(in);
  }
}

TEST_CASE("monitor chunk regular scrapes cost under 2 bytes a sample") {
  std::vector<std::pair<int64_t, double>> in;
  double counter = 1000;
  for (int i = 0; i < 120; ++i) {
    in.push_back({1700000000000 + i * 15000, counter});
    counter += 3 + (i % 4);
  }
  size_t bytes = 0;
  RoundTrip(in, &bytes);
  MESSAGE("120 counter samples at a 15 s step: ", bytes, " bytes");
  CHECK(bytes < 2 * 120);
}

// Every prefix of a chunk of `samples` samples stops early with kCorruption.
void CheckEveryCutRefused(const std::vector<uint8_t>& b, size_t samples) {
  for (size_t cut = 0; cut < b.size(); ++cut) {
    ChunkIterator it(ByteView(reinterpret_cast<const std::byte*>(b.data()), cut));
    size_t n = 0;
    while (it.Next()) ++n;
    CHECK(n < samples);
    CHECK(it.status().code() == Errc::kCorruption);
  }
}

TEST_CASE("monitor chunk cut short or with a bad count is refused not read past") {
  ChunkAppender a;
  for (int i = 0; i < 50; ++i) a.Append(i * 1000, i * 0.5);
  std::vector<uint8_t> b(a.bytes().begin(), a.bytes().end());
  CheckEveryCutRefused(b, 50);
  b[0] = 0x7f;  // claims 32k samples
  ChunkIterator it(ByteView(reinterpret_cast<const std::byte*>(b.data()), b.size()));
  size_t n = 0;
  while (it.Next()) ++n;
  CHECK(n >= 50);
  CHECK(it.status().code() == Errc::kCorruption);
}

TEST_CASE("monitor decimal chunks round trip exactly and widen or fall back to Gorilla") {
  SUBCASE("the random series above, every one in both kinds") {
    std::mt19937_64 rng(11);
    for (int round = 0; round < 300; ++round) {
      std::vector<std::pair<int64_t, double>> in;
      int64_t t = static_cast<int64_t>(rng() % 2000000000000);
      double v = static_cast<double>(rng() % 1000) / 100;
      const size_t n = 1 + rng() % kMaxChunkSamples;
      const int odd_every = 1 + static_cast<int>(rng() % 200);  // how often a value is no short decimal
      for (size_t i = 0; i < n; ++i) {
        switch (rng() % 6) {
          case 0: v += static_cast<double>(rng() % 6000) / 100; break;  // cpu seconds
          case 1: v = static_cast<double>(rng() % 100000) / 1000; break;  // a gauge with 3 decimals
          case 2: v = -static_cast<double>(rng() % (uint64_t{1} << 52)); break;
          case 3: v += 1; break;
          default: break;
        }
        if (static_cast<int>(rng() % static_cast<uint64_t>(odd_every)) == 0) v = std::bit_cast<double>(rng());
        in.push_back({t, v});
        t += (rng() % 3 == 0) ? static_cast<int64_t>(rng() % 100000) : 15000;
      }
      CheckSame(in, true);
      CheckSame(in, false);
    }
  }
  SUBCASE("an exponent that grows, then a value that is no decimal") {
    std::vector<std::pair<int64_t, double>> in = {{0, 1500}, {1, 1517}, {2, 0.5}, {3, 0.25}, {4, 12.125}, {5, -3}};
    ChunkAppender a(true);
    for (auto [t, v] : in) a.Append(t, v);
    CHECK(a.decimal());
    CHECK((a.bytes()[2] & 0x1f) == 3);  // E: 12.125 needs three decimals
    CheckSame(in, true);
    for (double odd : {std::numeric_limits<double>::quiet_NaN(), -0.0, 1e300, 0.1 + 0.2, 1.0 / 3, 9007199254740993.0 * 4}) {
      INFO("odd value ", odd);
      auto with = in;
      with.push_back({6, odd});
      with.push_back({7, 4});
      ChunkAppender b(true);
      for (auto [t, v] : with) b.Append(t, v);
      CHECK_FALSE(b.decimal());
      CheckSame(with, true);
    }
  }
  SUBCASE("a chunk that starts with no decimal stays Gorilla") {
    ChunkAppender a(true);
    a.Append(0, 1.0 / 3);
    a.Append(1, 2);
    CHECK_FALSE(a.decimal());
    CheckSame({{0, 1.0 / 3}, {1, 2}, {2, 2.5}}, true);
  }
  SUBCASE("mantissa deltas in every bucket and on their edges") {
    std::vector<std::pair<int64_t, double>> in;
    int64_t m = 0, d = 0;
    int64_t t = 0;
    for (int64_t dod : std::initializer_list<int64_t>{0, 1, -1, 127, -128, 128, -129, 4095, -4096, 4096, 131071, -131072, 131072, 134217727,
                        -134217728, 134217728, int64_t{1} << 50, -(int64_t{1} << 51), 0, 0}) {
      d += dod;
      m += d;
      if (m >= (int64_t{1} << 53) || m <= -(int64_t{1} << 53)) {
        m = 0;
        d = 0;
      }
      in.push_back({t, static_cast<double>(m) / 100});
      t += 15000;
    }
    CheckSame(in, true);
  }
}

TEST_CASE("monitor chunk appender knows its first and last sample through widening and fallback") {
  // The head's order rule reads the newest sample from the open chunk.
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const std::vector<std::pair<int64_t, double>> in = {{-5000, 1500}, {1, 1517}, {2, 0.5}, {3, 12.125}, {40, -0.0},
                                                       {41, 7}, {1700000000000, nan}, {1700000000001, 1.0 / 3}};
  for (int kind = 0; kind < 3; ++kind) {
    CAPTURE(kind);
    ChunkAppender a = kind == 2 ? ChunkAppender::FloatDeltas() : ChunkAppender(kind == 1);
    for (auto [t, v] : in) {
      a.Append(t, v);
      CHECK(a.first_t() == -5000);
      CHECK(a.last_t() == t);
      CHECK(a.last_bits() == std::bit_cast<uint64_t>(v));
    }
  }
}

TEST_CASE("monitor decimal chunks are smaller than Gorilla ones for counters and short gauges") {
  std::vector<std::pair<int64_t, double>> cpu, load;
  std::mt19937_64 rng(5);
  uint64_t ticks = 12345678;
  double l = 0;
  for (size_t i = 0; i < kMaxChunkSamples; ++i) {
    const int64_t t = 1700000000000 + static_cast<int64_t>(i) * 15000;
    ticks += 1400 + rng() % 200;
    l = static_cast<double>(rng() % 400) / 100;  // a load average: 0.00 .. 3.99
    cpu.push_back({t, static_cast<double>(ticks) / 100});  // as node_exporter reads cpu seconds
    load.push_back({t, l});
  }
  for (const auto* series : {&cpu, &load}) {
    size_t gorilla = 0, decimal = 0;
    RoundTrip(*series, &gorilla, false);
    RoundTrip(*series, &decimal, true);
    MESSAGE("120 samples: Gorilla ", gorilla, " bytes, decimal ", decimal);
    CHECK(decimal * 2 < gorilla);
  }
}

TEST_CASE("monitor decimal chunk cut short or with a bad exponent is refused not read past") {
  ChunkAppender a(true);
  for (int i = 0; i < 50; ++i) a.Append(i * 1000, i * 0.5 + (i % 3) * 100);
  REQUIRE(a.decimal());
  std::vector<uint8_t> b(a.bytes().begin(), a.bytes().end());
  CheckEveryCutRefused(b, 50);
  b[2] = 18;  // no decimal chunk has E past 17
  ChunkIterator it(ByteView(reinterpret_cast<const std::byte*>(b.data()), b.size()));
  CHECK_FALSE(it.Next());
  CHECK(it.status().code() == Errc::kCorruption);
}

std::vector<Sample> BlockRoundTrip(const std::vector<Sample>& in, uint8_t* kind = nullptr, size_t* bytes = nullptr) {
  const std::vector<uint8_t> enc = EncodeBlockChunk(in);
  if (kind) *kind = enc[0];
  if (bytes) *bytes = enc.size();
  std::vector<Sample> out;
  CHECK_OK(DecodeBlockChunk(ByteView(reinterpret_cast<const std::byte*>(enc.data()), enc.size()), INT64_MIN,
                            INT64_MAX, out));
  return out;
}

TEST_CASE("monitor block chunks store decimals exactly and fall back to Gorilla for the rest") {
  std::vector<Sample> counter, decimals, big, mixed;
  double c = 0, d = 0;
  for (int i = 0; i < 480; ++i) {
    const int64_t t = 1700000000000 + i * 15000 + (i % 7 == 3 ? 1 : 0);  // a little jitter
    c += 3 + i % 5;
    d = static_cast<double>((i * 7919) % 10000) / 100;  // 0.00 .. 99.99
    counter.push_back({t, c});
    decimals.push_back({t, d});
    big.push_back({t, 1.5e12 + i * 1e9});
    mixed.push_back({t, i % 2 ? 0.25 : 1e6});
  }
  for (const auto* series : {&counter, &decimals, &big, &mixed}) {
    uint8_t kind = 0;
    size_t bytes = 0;
    CHECK(BlockRoundTrip(*series, &kind, &bytes) == *series);
    CHECK(kind != kBlockChunkGorilla);
    MESSAGE("480 samples: ", bytes, " bytes (", static_cast<double>(bytes) / 480, " a sample), kind ", int(kind));
  }
  size_t counter_bytes = 0;
  BlockRoundTrip(counter, nullptr, &counter_bytes);
  CHECK(counter_bytes < 480);  // under a byte a sample
  // Not decimals: NaN (a staleness marker), -0, values past 2^53, any bits.
  for (double odd : {std::numeric_limits<double>::quiet_NaN(), -0.0, 1e300, 0.1 + 0.2, 1.0 / 3}) {
    std::vector<Sample> in = {{1, 5}, {2, odd}, {3, 7}};
    uint8_t kind = 0;
    const auto out = BlockRoundTrip(in, &kind);
    CHECK(kind == kBlockChunkGorilla);
    REQUIRE(out.size() == 3);
    CHECK(std::bit_cast<uint64_t>(out[1].v) == std::bit_cast<uint64_t>(odd));
  }
  // A range: only the samples in it.
  const std::vector<uint8_t> enc = EncodeBlockChunk(counter);
  std::vector<Sample> part;
  CHECK_OK(DecodeBlockChunk(ByteView(reinterpret_cast<const std::byte*>(enc.data()), enc.size()),
                            counter[10].t, counter[19].t, part));
  CHECK(part == std::vector<Sample>(counter.begin() + 10, counter.begin() + 20));
}

TEST_CASE("monitor block chunks split random-walk floats and range-code random counters") {
  std::mt19937_64 rng(7);
  std::vector<Sample> walk, bytes_counter;
  double w = 47.25, c = 1e9;
  for (int i = 0; i < 1440; ++i) {
    const int64_t t = 1700000000000 + i * 60000;
    w += (static_cast<double>(rng() % 2001) - 1000) / 7919.0;  // no short decimal
    c += static_cast<double>(rng() % (1 << 20));                // up to 1 MiB a minute
    walk.push_back({t, w});
    bytes_counter.push_back({t, c});
  }
  ChunkAppender gorilla;
  for (const Sample& x : walk) gorilla.Append(x.t, x.v);
  uint8_t kind = 0;
  size_t walk_bytes = 0, counter_bytes = 0;
  const auto walk_out = BlockRoundTrip(walk, &kind, &walk_bytes);
  REQUIRE(walk_out.size() == walk.size());
  for (size_t i = 0; i < walk.size(); ++i) CHECK(std::bit_cast<uint64_t>(walk_out[i].v) == std::bit_cast<uint64_t>(walk[i].v));
  CHECK((kind == kBlockChunkSplit || kind == kBlockChunkSplitZstd));
  MESSAGE("1440 random-walk floats: ", walk_bytes, " bytes, Gorilla ", gorilla.bytes().size());
  CHECK(walk_bytes * 10 < gorilla.bytes().size() * 9);
  CHECK(BlockRoundTrip(bytes_counter, &kind, &counter_bytes) == bytes_counter);
  CHECK(kind == kBlockChunkCoded);
  // 20 bits of entropy a sample: within half a bit of it.
  MESSAGE("1440 samples of a counter of random increments below 2^20: ", counter_bytes, " bytes");
  CHECK(counter_bytes * 8 < 1440 * 41 / 2);
  // Every cut of the split form is refused.
  const std::vector<uint8_t> enc = EncodeBlockChunk(walk);
  for (size_t cut = 0; cut < enc.size(); ++cut) {
    std::vector<Sample> out;
    CHECK_FALSE(DecodeBlockChunk(ByteView(reinterpret_cast<const std::byte*>(enc.data()), cut), INT64_MIN, INT64_MAX, out).ok());
  }
}

TEST_CASE("monitor range coder round trips adaptive and direct bits and refuses a cut stream") {
  std::mt19937_64 rng(11);
  struct Op {
    int kind;  // 0: an adaptive bit in context ctx; 1: n direct bits
    int ctx;
    unsigned bit;
    uint64_t v;
    int n;
  };
  std::vector<Op> ops;
  for (int i = 0; i < 20000; ++i) {
    if (rng() % 3 == 0) {
      const int n = static_cast<int>(rng() % 65);
      ops.push_back({1, 0, 0, n == 0 ? 0 : rng() >> (64 - n), n});
    } else {
      const int ctx = static_cast<int>(rng() % 4);
      // Context c's bit is 1 with probability c / 3: always 0, rarely 1, often 1, always 1.
      const unsigned bit = ctx == 0 ? 0 : ctx == 3 ? 1 : rng() % 3 < static_cast<uint64_t>(ctx) ? 1 : 0;
      ops.push_back({0, ctx, bit, 0, 0});
    }
  }
  std::vector<uint8_t> bytes;
  {
    RangeEncoder enc(bytes);
    AdaptiveBit p[4];
    for (const Op& op : ops) {
      if (op.kind == 0) {
        enc.Bit(p[op.ctx], op.bit);
      } else {
        enc.Direct(op.v, op.n);
      }
    }
    enc.Finish();
  }
  auto decode = [&](size_t size, bool* same) {
    RangeDecoder dec(bytes.data(), size);
    AdaptiveBit p[4];
    *same = true;
    for (const Op& op : ops) {
      if (op.kind == 0) {
        *same = *same && dec.Bit(p[op.ctx]) == op.bit;
      } else {
        *same = *same && dec.Direct(op.n) == op.v;
      }
    }
    return dec.valid() && dec.ended_exactly();
  };
  bool same = false;
  CHECK(decode(bytes.size(), &same));
  CHECK(same);
  for (size_t cut : {size_t{0}, size_t{1}, bytes.size() / 2, bytes.size() - 1}) {
    CHECK_FALSE(decode(cut, &same));
  }
  bytes.push_back(0);
  CHECK_FALSE(decode(bytes.size(), &same));
}

TEST_CASE("monitor coded block chunks take out a common step and predict gauges from their mean") {
  std::mt19937_64 rng(5);
  std::vector<Sample> pages, load, rare, extremes, bits;
  double page = 4096.0 * 150000;
  for (int i = 0; i < 1440; ++i) {
    const int64_t t = 1700000000000 + i * 60000;
    if (rng() % 2 == 0) page += 4096.0 * (static_cast<double>(rng() % 129) - 64);
    pages.push_back({t, page});                                       // whole 4 KiB pages
    load.push_back({t, static_cast<double>(rng() % 400) / 100});      // 0.00 .. 3.99 at random
    rare.push_back({t, static_cast<double>(i / 500)});                // moves twice
    extremes.push_back({t, i % 2 == 0 ? 9007199254740991.0 : -9007199254740991.0});  // +-(2^53 - 1)
    uint64_t any = rng();
    bits.push_back({t, std::bit_cast<double>(i % 3 == 0 ? (any | 0x7ff0000000000001ULL) : any)});  // NaNs too
  }
  size_t n = 0;
  uint8_t kind = 0;
  CHECK(BlockRoundTrip(pages, &kind, &n) == pages);
  CHECK(kind == kBlockChunkCoded);
  // Half the steps stay, the others one of 129 page counts: 4.5 bits of entropy.
  MESSAGE("1440 page gauges: ", n, " bytes");
  CHECK(n * 8 < 1440 * 5);
  CHECK(BlockRoundTrip(load, &kind, &n) == load);
  CHECK(kind == kBlockChunkCoded);
  // 8.64 bits of entropy; 8.83 against a mean of the last 8 or so, 9.36
  // against the last value.
  MESSAGE("1440 loads: ", n, " bytes");
  CHECK(n * 8 < 1440 * 19 / 2);
  CHECK(BlockRoundTrip(rare, &kind, &n) == rare);
  MESSAGE("1440 samples of a value that moves twice: ", n, " bytes");
  CHECK(n < 64);
  CHECK(BlockRoundTrip(extremes, &kind, &n) == extremes);
  CHECK(kind == kBlockChunkCoded);
  const auto out = BlockRoundTrip(bits, &kind, &n);
  REQUIRE(out.size() == bits.size());
  for (size_t i = 0; i < bits.size(); ++i) CHECK(std::bit_cast<uint64_t>(out[i].v) == std::bit_cast<uint64_t>(bits[i].v));
  // Each cut of a coded chunk is refused, as is a byte after it.
  std::vector<uint8_t> enc = EncodeBlockChunk(load);
  REQUIRE(enc[0] == kBlockChunkCoded);
  for (size_t cut = 0; cut < enc.size(); ++cut) {
    std::vector<Sample> got;
    CHECK_FALSE(DecodeBlockChunk(ByteView(reinterpret_cast<const std::byte*>(enc.data()), cut), INT64_MIN, INT64_MAX, got).ok());
    CHECK(got.empty());
  }
  enc.push_back(0);
  std::vector<Sample> got;
  CHECK(DecodeBlockChunk(ByteView(reinterpret_cast<const std::byte*>(enc.data()), enc.size()), INT64_MIN, INT64_MAX, got).code() ==
        Errc::kCorruption);
}

TEST_CASE("monitor block chunks of kinds 2 3 and 4 that 5c44285 wrote decode the same") {
  // Kinds no longer written (decimals are kind 6 since block version 6)
  // but in every block of versions 2 to 5: golden bytes from 5c44285's
  // encoder (its Packed, Framed and Split), for these samples.
  std::vector<Sample> want;
  for (int k = 0; k < 40; ++k) want.push_back({1700000000000 + k * 15000 + (k % 5 == 2 ? 3 : 0), k * 1.25 + (k % 4) * 0.01});
  const std::vector<uint8_t> kKind2 = {
      0x02, 0x28, 0x80, 0xa0, 0xab, 0xfe, 0xf9, 0x62, 0xb0, 0xea, 0x01, 0x06, 0x0b, 0x06, 0x00, 0x00, 0x06,
      0x0b, 0x06, 0x00, 0x00, 0x06, 0x0b, 0x06, 0x00, 0x00, 0x06, 0x0b, 0x06, 0x00, 0x00, 0x06, 0x0b, 0x06,
      0x00, 0x00, 0x06, 0x0b, 0x06, 0x00, 0x00, 0x06, 0x0b, 0x06, 0x00, 0x00, 0x06, 0x0b, 0x06, 0x02, 0x01,
      0x00, 0xfc, 0x01, 0x00, 0x00, 0x07, 0x08, 0x00, 0x00, 0x07, 0x08, 0x00, 0x00, 0x07, 0x08, 0x00, 0x00,
      0x07, 0x08, 0x00, 0x00, 0x07, 0x08, 0x00, 0x00, 0x07, 0x08, 0x00, 0x00, 0x07, 0x08, 0x00, 0x00, 0x07,
      0x08, 0x00, 0x00, 0x07, 0x08, 0x00, 0x00};
  const std::vector<uint8_t> kKind3 = {
      0x03, 0x28, 0xb5, 0x2f, 0xfd, 0x20, 0x5b, 0x05, 0x01, 0x00, 0xc0, 0x28, 0x80, 0xa0, 0xab, 0xfe, 0xf9,
      0x62, 0xb0, 0xea, 0x01, 0x06, 0x0b, 0x06, 0x00, 0x00, 0x02, 0x01, 0x00, 0xfc, 0x01, 0x00, 0x00, 0x07,
      0x08, 0x02, 0x00, 0x3b, 0xe7, 0xc0, 0x58, 0xea};
  const std::vector<uint8_t> kKind4 = {
      0x04, 0x28, 0x80, 0xa0, 0xab, 0xfe, 0xf9, 0x62, 0xb0, 0xea, 0x01, 0x01, 0x06, 0x01, 0x0b, 0x01, 0x06,
      0x02, 0x00, 0x01, 0x06, 0x01, 0x0b, 0x01, 0x06, 0x02, 0x00, 0x01, 0x06, 0x01, 0x0b, 0x01, 0x06, 0x02,
      0x00, 0x01, 0x06, 0x01, 0x0b, 0x01, 0x06, 0x02, 0x00, 0x01, 0x06, 0x01, 0x0b, 0x01, 0x06, 0x02, 0x00,
      0x01, 0x06, 0x01, 0x0b, 0x01, 0x06, 0x02, 0x00, 0x01, 0x06, 0x01, 0x0b, 0x01, 0x06, 0x02, 0x00, 0x01,
      0x06, 0x01, 0x0b, 0x01, 0x06, 0x00, 0x02, 0x00, 0xfc, 0x01, 0x7e, 0x02, 0x06, 0x8e, 0x08, 0xd3, 0x93,
      0x4e, 0x4d, 0x39, 0x35, 0xcb, 0x5c, 0xb5, 0xcb, 0x5c, 0xb5, 0xc0};
  for (const auto* bytes : {&kKind2, &kKind3, &kKind4}) {
    INFO("kind ", int((*bytes)[0]));
    std::vector<Sample> got;
    REQUIRE_OK(DecodeBlockChunk(ByteView(reinterpret_cast<const std::byte*>(bytes->data()), bytes->size()), INT64_MIN,
                                INT64_MAX, got));
    REQUIRE(got.size() == want.size());
    for (size_t i = 0; i < want.size(); ++i) {
      CHECK(got[i].t == want[i].t);
      CHECK(std::bit_cast<uint64_t>(got[i].v) == std::bit_cast<uint64_t>(want[i].v));
    }
  }
  CHECK(kKind3[0] == kBlockChunkPackedZstd);
}

TEST_CASE("monitor block chunks cut short or altered are refused") {
  std::vector<Sample> in;
  for (int i = 0; i < 200; ++i) in.push_back({i * 1000, static_cast<double>(i % 17) / 4});
  const std::vector<uint8_t> enc = EncodeBlockChunk(in);
  for (size_t cut = 0; cut < enc.size(); ++cut) {
    std::vector<Sample> out;
    const Status s = DecodeBlockChunk(ByteView(reinterpret_cast<const std::byte*>(enc.data()), cut), INT64_MIN, INT64_MAX, out);
    CHECK_FALSE(s.ok());
  }
  std::vector<uint8_t> odd = enc;
  odd[0] = 9;
  std::vector<Sample> out;
  CHECK(DecodeBlockChunk(ByteView(reinterpret_cast<const std::byte*>(odd.data()), odd.size()), INT64_MIN, INT64_MAX, out).code() ==
        Errc::kCorruption);
}

}  // namespace
}  // namespace qcloud::monitor::detail

namespace qcloud::monitor::detail {
namespace {

TEST_CASE("monitor blocks of versions 2 to 6 read the same and versions 4 to 6 map their chunk table") {
  std::vector<SeriesChunks> series;
  uint64_t samples = 0;
  size_t chunks = 0;
  for (int i = 0; i < 300; ++i) {
    std::vector<Sample> s;
    for (int k = 0; k < 120; ++k) s.push_back({1000 + k * 60'000, static_cast<double>(i * 1000 + k)});
    samples += s.size();
    series.push_back({(REQUIRE_VALUE(Labels::FromPairs({{"__name__", "node_network_receive_bytes_total"},
                                                       {"device", "eth" + std::to_string(i % 4)},
                                                       {"instance", "host-" + std::to_string(i) + ":9100"},
                                                       {"job", "node"}}))),
                      {{.mint = s.front().t, .maxt = s.back().t, .bytes = EncodeBlockChunk(s)}}});
    ++chunks;
  }
  std::sort(series.begin(), series.end(), [](const auto& a, const auto& b) { return a.labels < b.labels; });
  // A second chunk for every third series: tables with uneven runs.
  for (size_t i = 0; i < series.size(); i += 3) {
    std::vector<Sample> s{{7'300'000, 1.5}, {7'360'000, 2.5}};
    series[i].chunks.push_back({.mint = s.front().t, .maxt = s.back().t, .bytes = EncodeBlockChunk(s)});
    samples += 2;
    ++chunks;
  }
  // The same with a last chunk 2^32 ms past the block's start: version 6
  // writes wide entries.
  std::vector<SeriesChunks> far = series;
  const int64_t far_t = (int64_t{1} << 32) + 5000;
  far.back().chunks.push_back({.mint = far_t, .maxt = far_t, .bytes = EncodeBlockChunk(std::vector<Sample>{{far_t, 9}})});
  testing::MemEnv env;
  testing::TempDir dir("qcloud-block-v6");
  auto posix = REQUIRE_VALUE(OpenPosixEnv());
  const int64_t end = 7'200'000 * 2;
  const uint64_t v2 = REQUIRE_VALUE(WriteBlock(env, "/v2", 0, end, series, samples, 2));
  const uint64_t v3 = REQUIRE_VALUE(WriteBlock(env, "/v3", 0, end, series, samples, 3));
  const uint64_t v4 = REQUIRE_VALUE(WriteBlock(env, "/v4", 0, end, series, samples, 4));
  const uint64_t v5 = REQUIRE_VALUE(WriteBlock(*posix, JoinPath(dir.path, "v5"), 0, end, series, samples, 5));
  const uint64_t v6 = REQUIRE_VALUE(WriteBlock(env, "/v6", 0, end, series, samples));
  REQUIRE_VALUE(WriteBlock(*posix, JoinPath(dir.path, "v6"), 0, end, series, samples));
  const uint64_t wide = REQUIRE_VALUE(WriteBlock(*posix, JoinPath(dir.path, "wide"), 0, far_t + 1, far, samples + 1));
  MESSAGE("300 series x 120 samples: version 2 ", v2, " bytes, version 3 ", v3, ", version 4 ", v4, ", version 5 ", v5,
          ", version 6 ", v6);
  CHECK(v3 < v2);
  // Version 6: no length before a chunk, 16-byte table entries instead of 24.
  CHECK(v5 - v6 == 12 * chunks);
  const std::string name = BlockFileName(0, end);
  std::vector<std::unique_ptr<BlockReader>> readers;
  readers.push_back(REQUIRE_VALUE(BlockReader::Open(env, "/v2/" + name)));
  readers.push_back(REQUIRE_VALUE(BlockReader::Open(env, "/v3/" + name)));
  readers.push_back(REQUIRE_VALUE(BlockReader::Open(env, "/v4/" + name)));  // no descriptor: decoded
  readers.push_back(REQUIRE_VALUE(BlockReader::Open(*posix, JoinPath(dir.path, "v5/" + name))));
  readers.push_back(REQUIRE_VALUE(BlockReader::Open(env, "/v6/" + name)));  // decoded
  readers.push_back(REQUIRE_VALUE(BlockReader::Open(*posix, JoinPath(dir.path, "v6/" + name))));
  auto wide_reader = REQUIRE_VALUE(BlockReader::Open(*posix, JoinPath(dir.path, "wide/" + BlockFileName(0, far_t + 1))));
  const uint32_t versions[] = {2, 3, 4, 5, 6, 6};
  for (size_t k = 0; k < readers.size(); ++k) CHECK(readers[k]->version() == versions[k]);
  CHECK_FALSE(readers[2]->mapped());
  CHECK(readers[3]->mapped());
  CHECK_FALSE(readers[4]->mapped());
  CHECK(readers[5]->mapped());
  CHECK(wide_reader->mapped());
  MESSAGE("with a chunk 2^32 ms on (wide entries): ", wide, " bytes");
  CHECK(wide > v6 + 8 * chunks);  // 8 bytes more an entry
  readers.push_back(std::move(wide_reader));
  for (size_t k = 0; k < readers.size(); ++k) {
    const auto& r = readers[k];
    const auto& want = k + 1 == readers.size() ? far : series;
    REQUIRE(r->series_count() == 300);
    for (size_t i = 0; i < 300; ++i) {
      CHECK(r->labels(i) == want[i].labels);
      REQUIRE(r->chunks(i).size() == want[i].chunks.size());
      for (size_t j = 0; j < want[i].chunks.size(); ++j) {
        const ChunkRef ref = r->chunks(i)[j];
        CHECK(ref.mint == want[i].chunks[j].mint);
        CHECK(ref.maxt == want[i].chunks[j].maxt);
        std::vector<Sample> x;
        REQUIRE_OK(r->ReadSamples(ref, INT64_MIN, INT64_MAX, x));
        CHECK(x.size() == (j == 0 ? 120 : j == 1 && ref.mint < far_t ? 2 : 1));
      }
    }
  }
  CHECK_ERRC(WriteBlock(env, "/v1", 0, 1, series, samples, 1), Errc::kInvalidArgument);
  CHECK_ERRC(WriteBlock(env, "/late", 2000, end, series, samples), Errc::kInvalidArgument);  // a chunk before mint
}

TEST_CASE("monitor blocks with a damaged or misplaced chunk table are refused") {
  std::vector<SeriesChunks> series;
  for (int i = 0; i < 20; ++i) {
    std::vector<Sample> s{{1000, 1}, {61'000, static_cast<double>(i)}};
    series.push_back({REQUIRE_VALUE(Labels::FromPairs({{"__name__", "up"}, {"i", std::to_string(i)}})),
                      {{.mint = 1000, .maxt = 61'000, .bytes = EncodeBlockChunk(s)}}});
  }
  std::sort(series.begin(), series.end(), [](const auto& a, const auto& b) { return a.labels < b.labels; });
  for (uint32_t version : {5u, 6u}) {
    INFO("version ", version);
    testing::MemEnv env;
    const uint64_t size = REQUIRE_VALUE(WriteBlock(env, "/b", 0, 7'200'000, series, 40, version));
    const std::string path = "/b/" + BlockFileName(0, 7'200'000);
    const std::string good = REQUIRE_VALUE(ReadFileToString(env, path));
    REQUIRE(good.size() == size);
    // The table is the 24 + 88 + 20 * 24 (16) bytes before the footer.
    const size_t entry = version == 6 ? kCompactEntry : kWideEntry;
    const size_t table_len = 24 + 88 + 20 * entry;
    const size_t table_at = size - kBlockFooterSize - table_len;
    auto refused = [&](const std::string& bytes) {
      REQUIRE_OK(WriteFileAtomically(env, path, ByteView(bytes)));
      return BlockReader::Open(env, path).status().code() == Errc::kCorruption;
    };
    CHECK_FALSE(refused(good));
    // The header's range: mint far out (it has no checksum: its bounds
    // keep a store's range arithmetic in int64), or not below maxt.
    for (const int64_t mint : {INT64_MIN, -kMaxBlockTime - 1, int64_t{7'200'000}}) {
      std::string bad = good;
      for (int i = 0; i < 8; ++i) bad[12 + i] = static_cast<char>(static_cast<uint64_t>(mint) >> (8 * i));
      CHECK(refused(bad));
    }
    for (size_t at = table_at; at < table_at + table_len; at += 7) {
      std::string bad = good;
      bad[at] = static_cast<char>(bad[at] ^ 0x40);
      INFO("byte ", at - table_at, " of the table");
      CHECK(refused(bad));  // the header's counts or sum, or the checksum of the rest
    }
    // The table cut short (the footer moved up) and one entry too many.
    std::string cut = good.substr(0, table_at + table_len - entry) + good.substr(size - kBlockFooterSize);
    CHECK(refused(cut));
    std::string more =
        good.substr(0, size - kBlockFooterSize) + std::string(entry, '\0') + good.substr(size - kBlockFooterSize);
    CHECK(refused(more));
    if (version == 6) {
      // Entries that point past the chunk area, their checksum made right;
      // and an entry size the header may not give.
      auto with_sum = [&](std::string t) {
        const uint64_t sum = Xxh3_64(ByteView(t).subview(table_at + kChunkTableHeader, table_len - kChunkTableHeader));
        for (int i = 0; i < 8; ++i) t[table_at + 16 + i] = static_cast<char>(sum >> (8 * i));
        return t;
      };
      CHECK_FALSE(refused(with_sum(good)));
      const size_t last = table_at + table_len - kCompactEntry;  // the last entry
      std::string long_chunk = good;
      long_chunk[last + 8 + 5] = static_cast<char>(long_chunk[last + 8 + 5] + 1);  // its length + 1
      CHECK(refused(with_sum(long_chunk)));
      std::string zero = good;
      for (int i = 5; i < 8; ++i) zero[last + 8 + i] = 0;  // its length 0
      CHECK(refused(with_sum(zero)));
      std::string odd_entry = good;
      odd_entry[28] = 20;
      CHECK(refused(odd_entry));
    }
  }
}

}  // namespace
}  // namespace qcloud::monitor::detail
