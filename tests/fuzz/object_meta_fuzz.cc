// Fuzzes the decoder of COS's stored object record (DecodeObjectMeta): any
// bytes either decode to a record that re-encodes and decodes to itself, or
// are refused as kCorruption; never a crash, never an allocation beyond the
// bounds of the input.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "qcloud/object/index_store.h"

using namespace qcloud;
using namespace qcloud::object;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  auto meta = DecodeObjectMeta(in);
  if (!meta.ok()) {
    if (!(meta.status() == Errc::kCorruption)) std::abort();
    return 0;
  }
  auto again = DecodeObjectMeta(EncodeObjectMeta(*meta));
  if (!again.ok() || !(*again == *meta)) std::abort();
  return 0;
}
