// Fuzzes the decoders of COS's stored index records: the object record
// (DecodeObjectMeta) and, when the first byte is 'C', the content record
// (DecodeContentRecord). Any bytes either decode to a record that
// re-encodes and decodes to itself, or are refused as kCorruption; never a
// crash, never an allocation beyond the bounds of the input.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "qcloud/object/index_store.h"

using namespace qcloud;
using namespace qcloud::object;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  if (!in.empty() && in[0] == 'C') {
    auto content = DecodeContentRecord(in.substr(1));
    if (!content.ok()) {
      if (!(content.status() == Errc::kCorruption)) std::abort();
      return 0;
    }
    auto again = DecodeContentRecord(EncodeContentRecord(*content));
    if (!again.ok() || again->references != content->references || again->sha256 != content->sha256 ||
        again->chunks != content->chunks || again->size != content->size) {
      std::abort();
    }
    return 0;
  }
  auto meta = DecodeObjectMeta(in);
  if (!meta.ok()) {
    if (!(meta.status() == Errc::kCorruption)) std::abort();
    return 0;
  }
  auto again = DecodeObjectMeta(EncodeObjectMeta(*meta));
  if (!again.ok() || !(*again == *meta)) std::abort();
  return 0;
}
