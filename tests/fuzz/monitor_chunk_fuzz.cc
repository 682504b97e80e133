// Fuzzes the TSDB's chunk codecs. Block chunks (monitor/block_codec.h):
// arbitrary bytes decoded within bounds, and decimal-looking series (now
// and then a float of any bits) round-tripped bit for bit. Head chunks (monitor/chunk.h), Gorilla, adaptive
// float and adaptive decimal. Decode: arbitrary bytes as a chunk must be read within bounds,
// and end in a clean stop or a kCorruption status. Round trip: the bytes as
// samples (a timestamp step and 64 value bits each) encoded and decoded
// again must come back bit for bit; in a decimal chunk most values are
// short decimals made from those bits, so that the chunk widens its
// exponent and falls back to Gorilla where the fuzzer leads it.
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>
#include <vector>

#include "monitor/block_codec.h"
#include "monitor/chunk.h"

using namespace qcloud;
using namespace qcloud::monitor::detail;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const ByteView in(reinterpret_cast<const std::byte*>(data + 1), size - 1);
  const int mode = data[0] % 5;
  if (mode == 2) {  // a block chunk (monitor/block_codec.h) from the bytes
    std::vector<qcloud::monitor::Sample> out;
    const Status s = DecodeBlockChunk(in, INT64_MIN, INT64_MAX, out);
    if (out.size() > 65535 || (!s.ok() && s.code() != Errc::kCorruption)) std::abort();
    return 0;
  }
  if (mode == 3) {  // block chunk round trip: decimal-looking values, exactly back
    std::vector<qcloud::monitor::Sample> want;
    int64_t t = 0;
    for (size_t i = 0; i + 6 <= in.size() && want.size() < kMaxBlockChunkSamples; i += 6) {
      uint16_t step;
      int32_t m;
      std::memcpy(&step, in.data() + i, 2);
      std::memcpy(&m, in.data() + i + 2, 4);
      // In time order (the encoder's contract), from far before the epoch
      // when the first step is odd, now and then jumping up to 2^50 ms.
      if (i == 0 && step % 2 == 1) t = -(int64_t{1} << 62);
      t += step % 97 == 0 && t < (int64_t{1} << 61) ? static_cast<int64_t>(uint64_t{static_cast<uint32_t>(m)} << 18) : step;
      // Now and then a float of any bits (NaN too): the chunk goes float.
      // Now and then whole pages (a common divisor for the coded kind).
      const double v = step % 61 == 0   ? std::bit_cast<double>((uint64_t{static_cast<uint32_t>(m)} << 32) | step)
                       : step % 7 == 0 ? static_cast<double>(m) * 4096
                                       : static_cast<double>(m) / (step % 3 == 0 ? 100 : 1);
      want.push_back({t, v});
    }
    if (want.empty()) return 0;
    const std::vector<uint8_t> enc = EncodeBlockChunk(want);
    std::vector<qcloud::monitor::Sample> got;
    if (!DecodeBlockChunk(ByteView(reinterpret_cast<const std::byte*>(enc.data()), enc.size()), INT64_MIN, INT64_MAX, got).ok() ||
        got.size() != want.size()) {
      std::abort();
    }
    for (size_t i = 0; i < got.size(); ++i) {
      if (got[i].t != want[i].t || std::bit_cast<uint64_t>(got[i].v) != std::bit_cast<uint64_t>(want[i].v)) std::abort();
    }
    return 0;
  }
  if (mode == 0) {
    ChunkIterator it(in);
    size_t n = 0;
    while (it.Next()) {
      if (++n > 65535) std::abort();  // a count is 16 bits
    }
    if (n < it.total() && it.status().ok()) std::abort();  // stopped early without saying why
    return 0;
  }
  const bool decimal = mode == 4;
  ChunkAppender a(decimal);
  std::vector<std::pair<int64_t, uint64_t>> want;
  int64_t t = 0;
  for (size_t i = 0; i + 12 <= in.size() && want.size() < kMaxChunkSamples; i += 12) {
    uint32_t step;
    uint64_t bits;
    std::memcpy(&step, in.data() + i, 4);
    std::memcpy(&bits, in.data() + i + 4, 8);
    t += static_cast<int64_t>(step % 2 == 0 ? step : step >> 8);  // small steps and large ones
    if (decimal && (bits & 7) != 0) {  // a short decimal: a mantissa and 0 .. 7 decimals
      static constexpr double kScale[] = {1, 10, 100, 1e3, 1e4, 1e5, 1e6, 1e7};
      bits = std::bit_cast<uint64_t>(static_cast<double>(static_cast<int32_t>(bits >> 16)) / kScale[(bits >> 3) & 7]);
    }
    a.Append(t, std::bit_cast<double>(bits));
    want.push_back({t, bits});
  }
  const auto check = [&](std::span<const uint8_t> bytes) {
    ChunkIterator it(ByteView(reinterpret_cast<const std::byte*>(bytes.data()), bytes.size()));
    for (const auto& [wt, wb] : want) {
      if (!it.Next() || it.t() != wt || it.v_bits() != wb) std::abort();
    }
    if (it.Next() || !it.status().ok()) std::abort();
  };
  check(a.bytes());
  if (!decimal) {  // the same samples as an adaptive float chunk, and the close-time choice
    ChunkAppender f = ChunkAppender::FloatDeltas();
    for (const auto& [wt, wb] : want) f.Append(wt, std::bit_cast<double>(wb));
    check(f.bytes());
    if (const auto smaller = FloatDeltasIfSmaller(a.bytes())) check(smaller->bytes());
  }
  return 0;
}
