#pragma once

// qcloud::object_s3 — COS's S3-compatible front end over an ObjectStore,
// spoken by s3cmd, rclone, boto3 and awscli unchanged.
//
//   auto store = ObjectStore::Open({...}).value();
//   auto s3 = S3Server::Open(*store, {.listen = "127.0.0.1:9000", .threads = 2,
//                                     .users = {{"alice", "AKIA...", "secret"}}}).value();
//   for (unsigned i = 0; i < s3->threads(); ++i)
//     life->Spawn("s3", [&, i] { return s3->Serve(i); });   // see lifecycle.h
//   life->OnStop("s3", [&] { s3->Stop(); return Status::Ok(); });
//
// HTTP/1.1 runs on core's connection loop (qcloud/core/tcp_server.h:
// io_uring, or epoll where refused), one loop per thread; Boost.Beast's
// parser reads the requests. A GET streams the object a chunk at a time
// as the client takes it, so a large object costs one chunk of memory per
// connection, and a connection whose client does not read is not read
// either.
//
// What it serves (S3's REST API, path-style and virtual-host-style
// addressing): buckets (Create, Delete, List, Head, GetBucketLocation);
// objects (Put, Get with Range and the If-* conditions, Head, Delete,
// DeleteObjects, Copy with the metadata directive); listings (ListObjectsV2
// and ListObjects, prefix, delimiter, max-keys, continuation, start-after,
// encoding-type=url); multipart uploads (Create, UploadPart, UploadPartCopy,
// Complete, Abort, ListParts, ListMultipartUploads); x-amz-meta-*;
// Content-MD5; AWS Signature V4 in the Authorization header and in
// presigned URLs, with signed, unsigned and aws-chunked
// (STREAMING-AWS4-HMAC-SHA256-PAYLOAD) bodies; S3's XML errors.
//
// COS's own, beside S3:
// - Users: every bucket has an owner; a request signed by another user's
//   key gets AccessDenied.
// - Instant upload: a PutObject with an empty body and the header
//   `x-qcloud-instant-upload: <md5 hex>:<sha256 hex>:<size>` names stored
//   content without sending it (200 with the ETag), or is refused with 412
//   PreconditionFailed when no such content is stored.
// - Anti-leech (防盗链): `PUT /<bucket>?referer` with COS's
//   RefererConfiguration XML (Status, RefererType White-List/Black-List,
//   DomainList/Domain with '*.' wildcards, EmptyReferConfiguration
//   Allow/Deny) limits presigned and anonymous reads of the bucket's objects
//   by their Referer; `GET ?referer` reads it back.
//
// Bounds: request headers 16 KiB in all (larger: 400
// RequestHeaderSectionTooLarge), XML bodies 1 MiB, objects and parts
// 5 GiB (S3's single-PUT limit), keys 1024 bytes, no NUL in keys, stored
// headers 2 KiB of x-amz-meta-* and 4 KiB per system header, a connection
// idle for idle_timeout closed. A client
// that sends a bad request gets an S3 error and, when its body can no
// longer be framed, a closed connection; other connections never notice.
//
// Thread safety: Serve(i) once per worker on its own thread; Stop(),
// Stats() and the metrics from any thread.

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "qcloud/core/clock.h"
#include "qcloud/core/endpoint.h"
#include "qcloud/core/export.h"
#include "qcloud/core/log.h"
#include "qcloud/core/metrics.h"
#include "qcloud/core/result.h"
#include "qcloud/core/tcp_server.h"
#include "qcloud/object/object_store.h"

namespace qcloud::object {

struct S3User {
  std::string name;        // the owner recorded on buckets
  std::string access_key;  // AWS_ACCESS_KEY_ID
  std::string secret_key;  // AWS_SECRET_ACCESS_KEY
};

struct S3ServerOptions {
  std::string listen = "127.0.0.1:9000";  // endpoint.h grammar; port 0 = pick a free port
  unsigned threads = 1;                    // worker loops (call Serve(i) for each)
  size_t max_connections = 4096;           // beyond: 503 SlowDown and close
  std::chrono::milliseconds drain_timeout{5000};  // at Stop(): time for responses in flight
  // A connection silent this long (no request bytes in, no response bytes
  // out) is closed, so sockets opened and left idle cannot pile up to
  // max_connections; 0 = never.
  std::chrono::milliseconds idle_timeout{60000};
  LoopBackend backend = LoopBackend::kAuto;        // io_uring, or epoll where refused
  // > 0: the final commit of a request with a body (PUT, UploadPart,
  // CompleteMultipartUpload, ...) runs on one of this many threads while
  // the loops serve other connections, and the client is answered when it
  // is done. With a Durability::kDurable store, concurrent commits then
  // share their fsyncs (group commit); 0 = commit on the loop's thread (the
  // fastest when nothing waits for the disk).
  unsigned commit_threads = 0;
  // With commit_threads: only bodies of at least this many bytes are
  // committed there (a large PUT's last chunk write and its transaction
  // then no longer stall the loop); smaller ones on the loop. 0 = all.
  uint64_t commit_offload_min = 0;
  std::vector<S3User> users;     // at least one; access keys unique
  std::string region = "us-east-1";  // what GetBucketLocation answers and SigV4 scopes name
  // Host names under which "<bucket>.<domain>" is virtual-host-style
  // addressing; any other Host is path-style.
  std::vector<std::string> domains = {"localhost"};
  uint64_t max_object_bytes = uint64_t{5} << 30;  // one PUT or part; 5 GiB
  uint64_t min_part_bytes = uint64_t{5} << 20;    // every part but the last; S3: 5 MiB
  Clock* clock = nullptr;     // signature times, drain deadline; not owned; null = real
  Logger* logger = nullptr;   // not owned; null = discard
};

struct S3ServerStats {
  uint64_t requests = 0;
  uint64_t errors = 0;          // answered with a 4xx or 5xx
  uint64_t bytes_in = 0;        // request bodies
  uint64_t bytes_out = 0;       // object bytes served
  uint64_t instant_uploads = 0; // PUTs completed without their body
  int64_t connections = 0;      // open now
};

class QCLOUD_EXPORT S3Server {
 public:
  // Binds the listening sockets (one per worker). `store` must outlive the
  // server. Errors: kInvalidArgument (no users, duplicate access keys,
  // empty keys, bad address), the bind failure, kNotSupported (backend
  // kIoUring where the kernel refuses it).
  static Result<std::unique_ptr<S3Server>> Open(ObjectStore& store, const S3ServerOptions& options);
  ~S3Server();
  S3Server(const S3Server&) = delete;
  S3Server& operator=(const S3Server&) = delete;

  // The bound address (the real port when 0 was asked).
  const Endpoint& address() const noexcept;
  unsigned threads() const noexcept;
  LoopBackend backend() const noexcept;
  // Runs worker `index` until Stop() and the drain. Errors: the loop's.
  Status Serve(unsigned index);
  // Begins the stop of every worker. Idempotent; any thread.
  void Stop();
  // qcloud_object_* families: requests by operation and status, latency,
  // bytes, the store's chunk counts and cache. The registry is then also
  // served at GET /metrics on the S3 port to unsigned requests (Prometheus'
  // scrape); a signed request for /metrics is S3's, as is any other path.
  // `registry` must outlive the server.
  Status ExportMetrics(MetricsRegistry& registry);
  S3ServerStats Stats() const;

  struct Impl;

 private:
  explicit S3Server(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace qcloud::object
