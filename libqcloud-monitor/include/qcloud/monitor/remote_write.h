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
#include <memory>
#include <mutex>
#include <shared_mutex>
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
// A remote-write receiver's fast path (what /api/v1/write uses). A series
// is known by the bytes of its labels on the wire: a sender sends the same
// bytes for it every time, so a series seen before goes to the store by
// reference (Tsdb::AppendRefs) without its labels being decoded, checked,
// hashed and compared again; the others go by labels and are remembered
// (up to `max_cached` series; then the memory starts over). Everything is
// decoded and checked before anything is appended: a bad body takes
// nothing. Errors: DecodeRemoteWrite's, and the store's.
//
// Thread safety: Ingest() from any number of threads at once.
class QCLOUD_EXPORT RemoteWriteIngester {
 public:
  // `db` is not owned and outlives the ingester.
  explicit RemoteWriteIngester(Tsdb& db, RemoteWriteLimits limits = {}, size_t max_cached = size_t{1} << 21);
  ~RemoteWriteIngester();
  Result<AppendResult> Ingest(ByteView body);
  size_t cached() const;  // series remembered
  // Frees the request buffers (a few hundred KiB each, one per request
  // at once) that no request used since the last call, and those grown
  // past twice the largest body they took since then. Call it every few
  // seconds: a busy receiver keeps what its bodies need, an idle one gives
  // it back.
  void ReleaseIdleMemory();
  size_t idle_buffers() const;  // request buffers kept for reuse

 private:
  struct Scratch;
  Result<AppendResult> IngestWith(Scratch& scratch, ByteView body);
  // A series is known by the 128-bit XXH3 of its label fields' bytes,
  // seeded with a secret of this ingester's (a client cannot aim two
  // label sets at one entry); 32 bytes a series instead of ~170 with the
  // bytes kept. Two label sets agree on 128 such bits with a probability of
  // about n^2 / 2^129 among n series.
  // An open-addressing map from the hash's low half to its high half and
  // the series' ref (src/remote_write.cc).
  struct Cache;
  Tsdb& db_;
  RemoteWriteLimits limits_;
  size_t max_cached_;
  uint64_t seed_;
  mutable std::shared_mutex mu_;
  std::unique_ptr<Cache> cache_;  // mu_
  mutable std::mutex scratch_mu_;
  std::vector<std::unique_ptr<Scratch>> idle_scratch_;  // scratch_mu_
};

// The body a remote-write sender POSTs for `series`.
QCLOUD_EXPORT std::string EncodeRemoteWrite(std::span<const SeriesSamples> series);

}  // namespace qcloud::monitor
