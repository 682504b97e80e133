// Fuzzes core's decoders of untrusted bytes: ByteReader (the base of every
// on-disk and on-wire record), bounded zstd decompression, Base64, and the
// text grammars of endpoints, durations and sizes. Besides
// "no crash, no out-of-bounds read" (ASan), it checks that what decodes
// re-encodes to the same bytes and that the zstd cap holds.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "qcloud/core/bytes.h"
#include "qcloud/core/compress.h"
#include "qcloud/core/endpoint.h"
#include "qcloud/core/units.h"

using namespace qcloud;

#define FUZZ_ASSERT(cond) \
  do {                    \
    if (!(cond)) std::abort(); \
  } while (0)

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  ByteView input(data + 1, size - 1);
  switch (data[0] % 5) {
    case 0: {
      // A sequence of reads chosen by the input itself.
      ByteReader r(input);
      size_t steps = 0;
      while (!r.empty() && steps++ < 256) {
        size_t before = r.remaining();
        std::optional<uint8_t> op = r.ReadU8();
        if (!op) break;
        switch (*op % 5) {
          case 0: (void)r.ReadFixed32(); break;
          case 1: (void)r.ReadFixed64(); break;
          case 2: {
            ByteView start = r.rest();
            auto v = r.ReadVarint64();
            if (v) {
              // Canonical or not, the value must re-encode and decode equal.
              Buffer b;
              ByteWriter(b).PutVarint64(*v);
              FUZZ_ASSERT(ByteReader(b.readable()).ReadVarint64() == v);
              FUZZ_ASSERT(start.size() - r.remaining() <= kMaxVarint64Length);
            } else {
              FUZZ_ASSERT(r.rest().size() == start.size());  // nothing consumed
            }
            break;
          }
          case 3: {
            auto len = r.ReadLengthPrefixed(1 << 20);
            if (len) FUZZ_ASSERT(len->size() <= (1 << 20));
            break;
          }
          case 4: (void)r.ReadBytes(*op); break;
        }
        FUZZ_ASSERT(r.remaining() < before);
      }
      break;
    }
    case 1: {
      constexpr size_t kCap = 1 << 16;
      auto out = ZstdDecompress(input, kCap);
      if (out.ok()) {
        FUZZ_ASSERT(out->size() <= kCap);
        // What decompressed must survive a round trip.
        auto again = ZstdCompress(out->readable());
        FUZZ_ASSERT(again.ok());
        auto back = ZstdDecompress(again->readable(), kCap);
        FUZZ_ASSERT(back.ok() && back->readable() == out->readable());
      }
      break;
    }
    case 2: {
      auto c = ZstdCompress(input, {.level = 1});
      FUZZ_ASSERT(c.ok());
      auto d = ZstdDecompress(c->readable(), input.size());
      FUZZ_ASSERT(d.ok() && d->readable() == input);
      break;
    }
    case 3: {
      // Base64: what decodes re-encodes to text that decodes the same; any
      // bytes survive encode + decode.
      std::string decoded, again;
      if (Base64Decode(input.AsStringView(), &decoded)) {
        FUZZ_ASSERT(decoded.size() <= input.size() / 4 * 3);
        FUZZ_ASSERT(Base64Decode(Base64Encode(ByteView(decoded)), &again) && again == decoded);
      }
      FUZZ_ASSERT(Base64Decode(Base64Encode(input), &again) && ByteView(again) == input);
      break;
    }
    case 4: {
      // Endpoints print as they parse; sizes and durations never wrap.
      const std::string_view text = input.AsStringView();
      if (auto ep = ParseEndpoint(text); ep.ok()) {
        auto back = ParseEndpoint(ep->ToString());
        FUZZ_ASSERT(back.ok() && *back == *ep);
      }
      if (auto d = ParseDuration(text); d.ok()) FUZZ_ASSERT(d->count() >= 0);
      (void)ParseByteSize(text, 1 << 20);
      break;
    }
  }
  return 0;
}
