// Micro benchmarks of libqcloud-core's hot pieces. Run:
//   build/release/bench/core/core_bench --benchmark_min_time=0.2
#include <benchmark/benchmark.h>
#include <openssl/evp.h>
#include <stdlib.h>

#include <filesystem>
#include <string>
#include <vector>

#include "qcloud/core/bytes.h"
#include "qcloud/core/compress.h"
#include "qcloud/core/env.h"
#include "qcloud/core/hash.h"
#include "qcloud/core/metrics.h"

namespace {
using namespace qcloud;

std::string Data(size_t n) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>((i * 2654435761u) >> 13);
  return s;
}

void BM_Xxh3(benchmark::State& state) {
  std::string d = Data(static_cast<size_t>(state.range(0)));
  for (auto _ : state) benchmark::DoNotOptimize(Xxh3_64(d));
  state.SetBytesProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_Xxh3)->Arg(16)->Arg(64)->Arg(4096);

void BM_Md5(benchmark::State& state) {
  std::string d = Data(static_cast<size_t>(state.range(0)));
  for (auto _ : state) benchmark::DoNotOptimize(Md5(d));
  state.SetBytesProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_Md5)->Arg(64)->Arg(1 << 20);

// Two streams at once (Md5Hasher::UpdatePair): bytes of both per second.
void BM_Md5Pair(benchmark::State& state) {
  std::string a = Data(static_cast<size_t>(state.range(0)));
  std::string b = a;
  b[0] ^= 1;
  Md5Hasher ha, hb;
  for (auto _ : state) {
    Md5Hasher::UpdatePair(ha, ByteView(a), hb, ByteView(b));
    benchmark::DoNotOptimize(ha.Finish());
    benchmark::DoNotOptimize(hb.Finish());
  }
  state.SetBytesProcessed(state.iterations() * 2 * state.range(0));
}
BENCHMARK(BM_Md5Pair)->Arg(64)->Arg(1 << 20);

// OpenSSL's MD5, the reference for ours.
void BM_Md5OpenSsl(benchmark::State& state) {
  std::string d = Data(static_cast<size_t>(state.range(0)));
  unsigned char out[16];
  unsigned int len = 0;
  for (auto _ : state) {
    EVP_Digest(d.data(), d.size(), out, &len, EVP_md5(), nullptr);
    benchmark::DoNotOptimize(out);
  }
  state.SetBytesProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_Md5OpenSsl)->Arg(64)->Arg(1 << 20);

void BM_Sha256(benchmark::State& state) {
  std::string d = Data(static_cast<size_t>(state.range(0)));
  for (auto _ : state) benchmark::DoNotOptimize(Sha256(d));
  state.SetBytesProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_Sha256)->Arg(64)->Arg(1 << 20);

// SigV4 does five of these per request (four for the signing key, one for
// the signature) on 8..200-byte inputs.
static void BM_HmacSha256(benchmark::State& state) {
  const std::string key(32, 'k');
  const std::string data(static_cast<size_t>(state.range(0)), 'd');
  for (auto _ : state) benchmark::DoNotOptimize(qcloud::HmacSha256(qcloud::ByteView(key), qcloud::ByteView(data)));
}
BENCHMARK(BM_HmacSha256)->Arg(16)->Arg(200);

void BM_ZstdRoundTrip(benchmark::State& state) {
  std::string d;
  while (d.size() < 65536) d += "key-" + std::to_string(d.size() % 1000) + ",value;";
  for (auto _ : state) {
    auto c = ZstdCompress(d, {.level = static_cast<int>(state.range(0))});
    auto back = ZstdDecompress(c->readable(), d.size());
    benchmark::DoNotOptimize(back);
  }
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(d.size()));
}
BENCHMARK(BM_ZstdRoundTrip)->Arg(1)->Arg(3);

void BM_BufferAppendConsume(benchmark::State& state) {
  Buffer b;
  std::string line = "get key:0000000000000001\r\n";
  for (auto _ : state) {
    for (int i = 0; i < 16; ++i) b.Append(line);
    while (!b.empty()) b.Consume(std::min(b.size(), line.size()));
  }
  state.SetItemsProcessed(state.iterations() * 16);
}
BENCHMARK(BM_BufferAppendConsume);

void BM_CounterIncrement(benchmark::State& state) {
  static MetricsRegistry reg;
  static Counter& c = reg.AddCounter("bench_total", "x").value()->Get();
  for (auto _ : state) c.Increment();
}
BENCHMARK(BM_CounterIncrement)->Threads(1)->Threads(2);

void BM_RenderText(benchmark::State& state) {
  MetricsRegistry reg;
  auto* f = reg.AddCounter("requests_total", "x", {"cmd", "shard"}).value();
  for (int i = 0; i < state.range(0); ++i) {
    f->WithLabels({"cmd" + std::to_string(i % 20), std::to_string(i)}).Increment(i);
  }
  for (auto _ : state) benchmark::DoNotOptimize(reg.RenderText());
  state.SetItemsProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_RenderText)->Arg(1000);

// 4 KiB reads of a page-cached file: `batch` reads per Submit. io_uring
// sends a batch in one system call; the fallback makes one pread each.
void FileReads(benchmark::State& state, IoBackend backend) {
  auto opened = OpenPosixEnv({.backend = backend});
  if (!opened.ok()) {  // io_uring refused on this host
    state.SkipWithError(opened.error().ToString().c_str());
    return;
  }
  auto env = std::move(*opened);
  char dir[] = "/tmp/qcloud-bench-XXXXXX";
  if (mkdtemp(dir) == nullptr) {
    state.SkipWithError("mkdtemp");
    return;
  }
  std::string path = JoinPath(dir, "f");
  constexpr size_t kBlocks = 1024, kBlock = 4096;
  {
    auto f = env->OpenFile(path, OpenMode::kTruncate).value();
    (void)f->WriteAt(0, Data(kBlocks * kBlock));
  }
  auto f = env->OpenFile(path, OpenMode::kReadOnly).value();
  size_t batch = static_cast<size_t>(state.range(0));
  std::vector<std::string> bufs(batch, std::string(kBlock, '\0'));
  std::vector<IoRequest> reqs(batch);
  uint64_t next = 0;
  for (auto _ : state) {
    for (size_t i = 0; i < batch; ++i) {
      reqs[i] = {.op = IoRequest::Op::kRead,
                 .offset = (next++ * 7919 % kBlocks) * kBlock,
                 .buffer = {reinterpret_cast<std::byte*>(bufs[i].data()), kBlock}};
    }
    if (!f->Submit(reqs).ok()) state.SkipWithError("read failed");
  }
  state.SetItemsProcessed(state.iterations() * state.range(0));
  state.SetBytesProcessed(state.iterations() * state.range(0) * kBlock);
  std::filesystem::remove_all(dir);
}
void BM_FileReadsIoUring(benchmark::State& s) { FileReads(s, IoBackend::kIoUring); }
void BM_FileReadsPosix(benchmark::State& s) { FileReads(s, IoBackend::kPosix); }
BENCHMARK(BM_FileReadsIoUring)->Arg(1)->Arg(32);
BENCHMARK(BM_FileReadsPosix)->Arg(1)->Arg(32);

}  // namespace
