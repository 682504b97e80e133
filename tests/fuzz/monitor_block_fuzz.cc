// Fuzzes the TSDB's block reader, the disk input of every query. The first
// byte picks: the index decoder alone over the bytes, or a whole block
// file built around them (a valid header and footer with the right index
// checksum, the bytes as chunk area and index: as they are in a version 2
// file, zstd-compressed in a version 3 one), opened and every chunk it
// names read and decoded (block chunks, monitor/block_codec.h). Everything must stay in bounds, and each
// failure must be a Status, never a crash.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "monitor/block.h"
#include "monitor/chunk.h"
#include "qcloud/core/compress.h"
#include "qcloud/core/hash.h"
#include "qcloud/testing/mem_env.h"

using namespace qcloud;
using namespace qcloud::monitor::detail;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const ByteView in(reinterpret_cast<const std::byte*>(data + 2), size - 2);
  if (data[0] % 2 == 0) {
    (void)DecodeBlockIndex(in, 1000, uint64_t{1} << 20);
    return 0;
  }
  // Split the rest: the first data[1] * 4 bytes are the chunk area.
  const size_t chunk_bytes = std::min<size_t>(in.size(), size_t{data[1]} * 4);
  const ByteView chunks = in.subview(0, chunk_bytes);
  ByteView index = in.subview(chunk_bytes, in.size() - chunk_bytes);
  const uint32_t version = data[0] % 4 == 3 ? 3 : 2;
  Buffer packed;
  if (version == 3) {
    auto z = ZstdCompress(index);
    if (!z.ok()) std::abort();
    packed = std::move(z).value();
    index = packed.readable();
  }
  Buffer file;
  ByteWriter w(file);
  w.PutBytes(ByteView(std::string_view("QTSDBLK1")));
  w.PutFixed32(version);
  w.PutFixed64(1000);
  w.PutFixed64(2000);
  w.PutFixed32(0);
  w.PutBytes(chunks);
  const uint64_t at = file.size();
  w.PutBytes(index);
  w.PutFixed64(at);
  w.PutFixed64(index.size());
  w.PutFixed64(7);
  w.PutFixed32(static_cast<uint32_t>(Xxh3_64(index)));
  w.PutBytes(ByteView(std::string_view("QTSB")));
  testing::MemEnv env;
  {
    auto f = env.OpenFile("/b.qtb", OpenMode::kTruncate);
    if (!f.ok() || !(*f)->WriteAt(0, file.readable()).ok()) std::abort();
  }
  auto reader = BlockReader::Open(env, "/b.qtb");
  if (!reader.ok()) return 0;
  for (size_t i = 0; i < (*reader)->series_count(); ++i) {
    for (const ChunkRef& ref : (*reader)->chunks(i)) {
      std::vector<qcloud::monitor::Sample> out;
      (void)(*reader)->ReadSamples(ref, INT64_MIN, INT64_MAX, out);
      if (out.size() > 65535) std::abort();
    }
  }
  return 0;
}
