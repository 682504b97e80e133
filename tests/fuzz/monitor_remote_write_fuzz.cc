// Fuzzes the remote-write decoder: snappy then protobuf then labels, the
// body a Prometheus (or anyone) POSTs to /api/v1/write. The first byte
// picks: the bytes as a body as they come, or the bytes snappy-compressed
// first, so the protobuf and label checks behind snappy are reached. What
// decodes must encode and decode again to the same series; and the
// ingester (the server's path, into a store on a memory Env) must refuse
// what the decoder refuses and take what it takes.
#include <snappy.h>

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "qcloud/monitor/remote_write.h"
#include "qcloud/testing/mem_env.h"

using namespace qcloud;
using namespace qcloud::monitor;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::string body(reinterpret_cast<const char*>(data + 1), size - 1);
  if (data[0] % 2 == 1) {
    std::string compressed;
    snappy::Compress(body.data(), body.size(), &compressed);
    body.swap(compressed);
  }
  const RemoteWriteLimits limits{.max_body_bytes = 1 << 20, .max_decoded_bytes = 1 << 22};
  auto r = DecodeRemoteWrite(ByteView(body), limits);
  static testing::MemEnv env;
  static std::unique_ptr<Tsdb> db = std::move(Tsdb::Open({.data_dir = "/fuzz", .max_series = 20000, .env = &env})).value();
  static RemoteWriteIngester ingester(*db, limits);
  static int runs = 0;
  if (++runs % 2000 == 0) (void)db->Compact();  // the log starts over: memory stays bounded
  auto taken = ingester.Ingest(ByteView(body));
  if (!r.ok()) {
    if (r.status().code() != Errc::kInvalidArgument) std::abort();
    if (taken.ok() || taken.status().code() != Errc::kInvalidArgument) std::abort();
    return 0;
  }
  if (!taken.ok() && taken.status().code() != Errc::kResourceExhausted) std::abort();
  const std::string again = EncodeRemoteWrite(*r);
  auto back = DecodeRemoteWrite(ByteView(again), {.max_body_bytes = 1 << 22, .max_decoded_bytes = 1 << 24});
  if (!back.ok() || back->size() != r->size()) std::abort();
  for (size_t i = 0; i < r->size(); ++i) {
    if (!((*back)[i].labels == (*r)[i].labels) || !((*back)[i].samples == (*r)[i].samples)) std::abort();
  }
  return 0;
}
