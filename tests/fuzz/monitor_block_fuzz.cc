// Fuzzes the TSDB's block reader, the disk input of every query. The first
// byte picks: the index decoder alone over the bytes, the chunk table
// decoder alone (version 5 wide entries, version 6 wide or compact ones; its
// checksum made right), or a whole block file built around them (a valid
// header and footer with the right index checksum, the bytes as chunk area
// and index: as they are in a version 2 file, zstd-compressed in a version
// 3 one, and in a version 4 or 6 one the second half of them as the chunk
// table, its checksum made right), opened and every chunk it names read and
// decoded (block chunks, monitor/block_codec.h). Everything must stay in
// bounds, and each failure must be a Status, never a crash.
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
  ByteView in(reinterpret_cast<const std::byte*>(data + 2), size - 2);
  // With bit 6 of the first byte, the block's mint and maxt come from the
  // next 16 bytes (the overflow checks of the chunk times, the header's
  // range check); else [1000, 2000).
  int64_t mint = 1000, maxt = 2000;
  if ((data[0] & 64) != 0 && in.size() >= 16) {
    mint = static_cast<int64_t>(DecodeFixed64(in.data()));
    maxt = static_cast<int64_t>(DecodeFixed64(in.data() + 8));
    in = in.subview(16, in.size() - 16);
  }
  // A table's checksum over its bytes after the header, made right.
  auto fix_table = [](std::string& t) {
    if (t.size() < kChunkTableHeader) return;
    const uint64_t sum = Xxh3_64(ByteView(t).subview(kChunkTableHeader, t.size() - kChunkTableHeader));
    for (int i = 0; i < 8; ++i) t[16 + i] = static_cast<char>(sum >> (8 * i));
  };
  if (data[0] % 4 == 0) {
    (void)DecodeBlockIndex(in, mint, uint64_t{1} << 20, data[1] % 2 == 0);
    return 0;
  }
  if (data[0] % 4 == 2) {
    std::string t(reinterpret_cast<const char*>(in.data()), in.size());
    fix_table(t);
    BlockIndex idx;
    // Versions 5 and 6, wide entries or (6 only) compact ones.
    const uint32_t version = (data[0] & 8) != 0 ? 6 : 5;
    const uint32_t entry = (data[0] & 16) != 0 ? kCompactEntry : kWideEntry;
    if (DecodeChunkTable(ByteView(t), data[1], mint, uint64_t{1} << 20, version, entry, &idx).ok()) {
      if (idx.chunk_begin.size() != size_t{data[1]} + 1 || idx.chunk_begin.back() != idx.chunks.size()) std::abort();
    }
    return 0;
  }
  // Split the rest: the first data[1] * 4 bytes are the chunk area.
  const size_t chunk_bytes = std::min<size_t>(in.size(), size_t{data[1]} * 4);
  const ByteView chunks = in.subview(0, chunk_bytes);
  ByteView index = in.subview(chunk_bytes, in.size() - chunk_bytes);
  const uint32_t version = data[0] % 4 == 3 ? 3 : data[0] % 8 == 5 ? 4 : data[0] % 16 == 9 ? 6 : 2;
  const uint32_t entry = version == 6 && (data[0] & 16) != 0 ? kCompactEntry : kWideEntry;
  std::string table;
  if (version >= 4) {
    const size_t half = index.size() / 2;
    table.assign(reinterpret_cast<const char*>(index.data()) + half, index.size() - half);
    fix_table(table);
    index = index.subview(0, half);
  }
  Buffer packed;
  if (version >= 3) {
    auto z = ZstdCompress(index);
    if (!z.ok()) std::abort();
    packed = std::move(z).value();
    index = packed.readable();
  }
  Buffer file;
  ByteWriter w(file);
  w.PutBytes(ByteView(std::string_view("QTSDBLK1")));
  w.PutFixed32(version);
  w.PutFixed64(static_cast<uint64_t>(mint));
  w.PutFixed64(static_cast<uint64_t>(maxt));
  w.PutFixed32(version == 6 ? entry : 0);
  w.PutBytes(chunks);
  const uint64_t at = file.size();
  w.PutBytes(index);
  if (version >= 4) {
    while (file.size() % 8 != 0) w.PutBytes(ByteView(std::string_view("\0", 1)));
    w.PutBytes(ByteView(table));
  }
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
    for (const ChunkRef ref : (*reader)->chunks(i)) {
      std::vector<qcloud::monitor::Sample> out;
      (void)(*reader)->ReadSamples(ref, INT64_MIN, INT64_MAX, out);
      if (out.size() > 65535) std::abort();
    }
  }
  return 0;
}
