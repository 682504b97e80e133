// Fuzzes the CHX volume scanner (ChxStore::Open's recovery) with arbitrary
// volume files: any bytes after a good volume header, or a damaged header.
// Besides ASan/UBSan: Open either refuses with a clear error or yields a
// store in which every chunk it reports reads back as data or as a reported
// corruption, and which still appends and reads a new chunk.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "object/chx_format.h"
#include "qcloud/object/chx_store.h"
#include "qcloud/testing/mem_env.h"

using namespace qcloud;
using namespace qcloud::object;

#define FUZZ_ASSERT(cond)      \
  do {                         \
    if (!(cond)) std::abort(); \
  } while (0)

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0 || size > (1 << 20)) return 0;
  std::string file;
  if (data[0] & 1) {  // most inputs: a good header, then the fuzzer's records
    std::byte h[chx::kVolumeHeaderSize];
    chx::EncodeVolumeHeader({.volume_id = 1}, h);
    file.assign(reinterpret_cast<const char*>(h), sizeof h);
  }
  file.append(reinterpret_cast<const char*>(data + 1), size - 1);
  testing::MemEnv env;
  FUZZ_ASSERT(env.CreateDirs("/chx").ok());
  {
    auto f = env.OpenFile("/chx/vol-00000001.chx", OpenMode::kCreate);
    FUZZ_ASSERT(f.ok());
    FUZZ_ASSERT((*f)->WriteAt(0, std::string_view(file)).ok());
  }
  auto store = ChxStore::Open(
      {.dir = "/chx", .env = &env, .volume_bytes = 1 << 20, .max_chunk_bytes = 64 * 1024});
  if (!store.ok()) return 0;
  ChxStore& s = **store;
  // Ids the input itself names, 8 bytes at a time.
  for (size_t i = 1; i + 8 <= size && i < 512; i += 8) {
    uint64_t id = 0;
    for (int b = 0; b < 8; ++b) id |= uint64_t{data[i + b]} << (8 * b);
    auto r = s.Read(ChunkId{id});
    FUZZ_ASSERT(r.ok() || r.status() == Errc::kNotFound || r.status() == Errc::kCorruption);
  }
  auto id = s.Append(std::string_view("after recovery"));
  FUZZ_ASSERT(id.ok());
  auto back = s.Read(*id);
  FUZZ_ASSERT(back.ok() && back->readable().AsStringView() == "after recovery");
  (void)s.Compact();
  return 0;
}
