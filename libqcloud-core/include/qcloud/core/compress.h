#pragma once

// zstd compression. Decompression of untrusted input is bounded: the caller
// says how large the output may be, and frames that claim or produce more
// are rejected with Errc::kTooLarge instead of allocating.

#include <cstddef>

#include "qcloud/core/bytes.h"
#include "qcloud/core/export.h"
#include "qcloud/core/result.h"

namespace qcloud {

struct ZstdOptions {
  int level = 3;  // zstd level, 1 (fastest) .. 19 (smallest); zstd's default 3
};

// Compresses `input` into one zstd frame that records its content size.
QCLOUD_EXPORT Result<Buffer> ZstdCompress(ByteView input, const ZstdOptions& options = {});

// The same, through one compression context kept for the object's life:
// for many small inputs in a row (creating a context per call costs more
// than compressing a few KiB). Not thread-safe; the context's memory (up to
// ~1 MiB, by the largest input) goes with the object.
class QCLOUD_EXPORT ZstdCompressor {
 public:
  ZstdCompressor();
  ~ZstdCompressor();
  ZstdCompressor(const ZstdCompressor&) = delete;
  ZstdCompressor& operator=(const ZstdCompressor&) = delete;
  Result<Buffer> Compress(ByteView input, const ZstdOptions& options = {});

 private:
  struct Context;
  Context* ctx_;
};

// Decompresses one or more concatenated zstd frames.
// Errors: kCorruption for malformed input, kTooLarge when the output would
// exceed `max_output` bytes.
QCLOUD_EXPORT Result<Buffer> ZstdDecompress(ByteView input, size_t max_output);

}  // namespace qcloud
