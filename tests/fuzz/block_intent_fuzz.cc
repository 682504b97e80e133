// Fuzzes the decoder of the block store's write-intent map (intent.map,
// docs/notes/block-format.md): any bytes, as a file read back after a
// crash. Checks, besides ASan/UBSan: a map that is not exactly the store's
// (magic, uuid, granule size, size bounds) reads as every granule dirty;
// otherwise no more words than the file holds bytes for, no trailing zero
// word, and at most kMaxStaleCopies stale copies (none when all); and the
// same input with its `all` byte set reads as all.
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "block/device.h"

using namespace qcloud;
using namespace qcloud::block::detail;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::array<std::byte, 16> uuid{};
  for (size_t i = 0; i < uuid.size(); ++i) uuid[i] = std::byte{static_cast<uint8_t>(0xa0 + i)};
  const ByteView in(reinterpret_cast<const std::byte*>(data), size);
  const IntentImage img = ParseIntentMap(in, uuid);
  if (size < kIntentHeader || size > kIntentHeader + kIntentMaxBytes) {
    if (!img.all) std::abort();
  }
  if (img.all && (!img.bits.empty() || !img.stale.empty())) std::abort();
  if (img.stale.size() > kMaxStaleCopies) std::abort();
  if (!img.all) {
    if (img.bits.size() > (size - kIntentHeader + 7) / 8) std::abort();
    if (!img.bits.empty() && img.bits.back() == 0) std::abort();
    std::vector<std::byte> copy(in.data(), in.data() + in.size());
    copy[48] = std::byte{1};
    if (!ParseIntentMap(ByteView(copy.data(), copy.size()), uuid).all) std::abort();
  }
  return 0;
}
