#pragma once

// Prometheus remote-write 1.0 bodies: a WriteRequest protobuf
// (prompb, proto/remote.proto) compressed with snappy's block format, as a
// real Prometheus POSTs it to /api/v1/write (Content-Encoding: snappy,
// Content-Type: application/x-protobuf). Encoding uses libprotobuf's
// generated code; decoding reads the wire format in place, as libprotobuf
// would parse it (unknown fields skipped), because it is the store's
// hottest input path (bench/monitor). Decoding is bounded: the body and
// its uncompressed size are limited, every label set is checked as
// Labels checks it, so a bad body is a clear error (HTTP 400) and costs
// bounded memory. Exemplars, native histograms and metadata in a body are
// skipped.

#include <cstddef>
#include <span>
#include <string>
#include <vector>

#include "qcloud/core/bytes.h"
#include "qcloud/core/export.h"
#include "qcloud/core/result.h"
#include "qcloud/monitor/tsdb.h"

namespace qcloud::monitor {

struct RemoteWriteLimits {
  size_t max_body_bytes = size_t{32} << 20;      // compressed
  size_t max_decoded_bytes = size_t{256} << 20;  // uncompressed protobuf
};

// kInvalidArgument: over a limit, snappy that does not decode, protobuf
// that does not parse, invalid labels or a series without labels.
QCLOUD_EXPORT Result<std::vector<SeriesSamples>> DecodeRemoteWrite(ByteView body,
                                                                   const RemoteWriteLimits& limits = {});
// The body a remote-write sender POSTs for `series`.
QCLOUD_EXPORT std::string EncodeRemoteWrite(std::span<const SeriesSamples> series);

}  // namespace qcloud::monitor
