// monitor_codec_bench: the TSDB's chunk codecs on compare.sh's mix
// (bench/monitor/mix.h, 1,000 series x a day a minute apart): head chunks
// (append as the head does, iterate) and block chunks (encode, decode) in
// time per sample, and bytes per sample, overall and, in BM_BitsByKind,
// bits per sample by kind of series.
//
//   build/release/bench/monitor/monitor_codec_bench
#include <benchmark/benchmark.h>

#include <map>
#include <optional>
#include <span>
#include <vector>

#include "mix.h"
#include "monitor/block_codec.h"
#include "monitor/chunk.h"

namespace {

using namespace monitor_mix;
using qcloud::ByteView;
using qcloud::monitor::Sample;
namespace d = qcloud::monitor::detail;

struct Data {
  std::vector<std::vector<Sample>> series;
  std::vector<Kind> kinds;
  size_t samples = 0;
};

const Data& TheData() {
  static const Data data = [] {
    Data out;
    const std::vector<Template> templates = InstanceTemplates();
    for (int inst = 0; inst < 10; ++inst) {
      Instance in(inst, kSeriesPerInstance, 20, templates);
      std::vector<std::vector<Sample>> s(in.size());
      int64_t t = 1700000000000;
      for (int k = 0; k < 1440; ++k) {
        in.Advance();
        t += 60000;
        for (size_t j = 0; j < in.size(); ++j) s[j].push_back({t, in.value(j)});
      }
      for (size_t j = 0; j < in.size(); ++j) {
        out.samples += s[j].size();
        out.series.push_back(std::move(s[j]));
        out.kinds.push_back(templates[j].kind);
      }
    }
    return out;
  }();
  return data;
}

ByteView View(std::span<const uint8_t> b) { return {reinterpret_cast<const std::byte*>(b.data()), b.size()}; }

// Head chunks of 120 samples, closed as the head closes them.
std::vector<std::vector<uint8_t>> HeadChunks(const Data& data, size_t* bytes) {
  std::vector<std::vector<uint8_t>> out;
  for (const auto& s : data.series) {
    for (size_t at = 0; at < s.size(); at += d::kMaxChunkSamples) {
      d::ChunkAppender a(true);
      for (size_t i = at; i < std::min(s.size(), at + d::kMaxChunkSamples); ++i) a.Append(s[i].t, s[i].v);
      const std::optional<d::ChunkAppender> smaller = a.decimal() ? std::nullopt : d::FloatDeltasIfSmaller(a.bytes());
      const auto b = smaller ? smaller->bytes() : a.bytes();
      out.emplace_back(b.begin(), b.end());
      *bytes += b.size();
    }
  }
  return out;
}

void BM_HeadAppend(benchmark::State& state) {
  const Data& data = TheData();
  size_t bytes = 0;
  for (auto _ : state) {
    bytes = 0;
    benchmark::DoNotOptimize(HeadChunks(data, &bytes));
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * data.samples));
  state.counters["bytes_per_sample"] = static_cast<double>(bytes) / static_cast<double>(data.samples);
}
BENCHMARK(BM_HeadAppend)->Unit(benchmark::kMillisecond);

void BM_HeadIterate(benchmark::State& state) {
  const Data& data = TheData();
  size_t bytes = 0;
  const auto chunks = HeadChunks(data, &bytes);
  for (auto _ : state) {
    size_t n = 0;
    for (const auto& c : chunks) {
      d::ChunkIterator it(View(c));
      while (it.Next()) n += it.v_bits() & 1;
    }
    benchmark::DoNotOptimize(n);
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * data.samples));
}
BENCHMARK(BM_HeadIterate)->Unit(benchmark::kMillisecond);

// Block chunks of state.range(0) samples (a 2 h block at 60 s: 120; 24 h: 1440).
// One zstd context for them all, as a block write has.
std::vector<std::vector<uint8_t>> BlockChunks(const Data& data, size_t per_chunk, size_t* bytes) {
  std::vector<std::vector<uint8_t>> out;
  qcloud::ZstdCompressor zstd;
  for (const auto& s : data.series) {
    for (size_t at = 0; at < s.size(); at += per_chunk) {
      out.push_back(d::EncodeBlockChunk(std::span(s).subspan(at, std::min(per_chunk, s.size() - at)), &zstd));
      *bytes += out.back().size();
    }
  }
  return out;
}

void BM_BlockEncode(benchmark::State& state) {
  const Data& data = TheData();
  size_t bytes = 0;
  for (auto _ : state) {
    bytes = 0;
    benchmark::DoNotOptimize(BlockChunks(data, static_cast<size_t>(state.range(0)), &bytes));
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * data.samples));
  state.counters["bytes_per_sample"] = static_cast<double>(bytes) / static_cast<double>(data.samples);
}
BENCHMARK(BM_BlockEncode)->Arg(120)->Arg(1440)->Unit(benchmark::kMillisecond);

void BM_BlockDecode(benchmark::State& state) {
  const Data& data = TheData();
  size_t bytes = 0;
  const auto chunks = BlockChunks(data, static_cast<size_t>(state.range(0)), &bytes);
  std::vector<Sample> out;
  for (auto _ : state) {
    for (const auto& c : chunks) {
      out.clear();
      if (!d::DecodeBlockChunk(View(c), INT64_MIN, INT64_MAX, out).ok()) state.SkipWithError("decode failed");
    }
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * data.samples));
}
BENCHMARK(BM_BlockDecode)->Arg(120)->Arg(1440)->Unit(benchmark::kMillisecond);

// Bits a sample by kind of series, in 1,440-sample block chunks and in
// closed head chunks.
void BM_BitsByKind(benchmark::State& state) {
  const Data& data = TheData();
  for (auto _ : state) {
    std::map<std::string, std::pair<double, double>> block, head;  // bits, samples
    for (size_t k = 0; k < data.series.size(); ++k) {
      const auto& s = data.series[k];
      const std::string name = KindName(data.kinds[k]);
      block[name].first += 8.0 * static_cast<double>(d::EncodeBlockChunk(s).size());
      block[name].second += static_cast<double>(s.size());
      Data one;
      one.series.push_back(s);
      size_t bytes = 0;
      HeadChunks(one, &bytes);
      head[name].first += 8.0 * static_cast<double>(bytes);
      head[name].second += static_cast<double>(s.size());
    }
    for (const auto& [name, v] : block) state.counters["block_" + name] = v.first / v.second;
    for (const auto& [name, v] : head) state.counters["head_" + name] = v.first / v.second;
  }
}
BENCHMARK(BM_BitsByKind)->Iterations(1)->Unit(benchmark::kMillisecond);

}  // namespace
