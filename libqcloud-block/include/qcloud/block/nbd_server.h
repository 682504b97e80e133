#pragma once

// qcloud::block::NbdServer — serves block devices over the Network Block
// Device protocol (the "fixed newstyle" handshake and the transmission
// phase, https://github.com/NetworkBlockDevice/nbd/blob/master/doc/proto.md),
// so qemu, nbdinfo/nbdcopy/nbdfuse (libnbd), fio's nbd engine and the Linux
// kernel's nbd client use them unchanged.
//
//   MyDevices devices;                                    // an ExportDirectory
//   auto server = NbdServer::Open(devices, {.listen = "127.0.0.1:10809"}).value();
//   for (unsigned i = 0; i < server->threads(); ++i)
//     life->Spawn("nbd", [&, i] { return server->Serve(i); });   // qcloud/core/lifecycle.h
//   life->OnStop("nbd", [&] { server->Stop(); return Status::Ok(); });
//
// What the server speaks:
//   handshake: NBD_FLAG_FIXED_NEWSTYLE and NBD_FLAG_NO_ZEROES; options
//     NBD_OPT_EXPORT_NAME, NBD_OPT_ABORT, NBD_OPT_LIST, NBD_OPT_INFO,
//     NBD_OPT_GO (NBD_INFO_EXPORT, NBD_INFO_NAME, NBD_INFO_DESCRIPTION,
//     NBD_INFO_BLOCK_SIZE), NBD_OPT_STRUCTURED_REPLY,
//     NBD_OPT_LIST/SET_META_CONTEXT with "base:allocation"; any other option is
//     answered NBD_REP_ERR_UNSUP and the client may go on;
//   transmission: READ, WRITE (with FUA), FLUSH, TRIM, WRITE_ZEROES (with
//     FUA, NO_HOLE and FAST_ZERO), CACHE (a read-ahead hint), BLOCK_STATUS (base:allocation, REQ_ONE; holes of a
//     thin device are reported so qemu-img and nbdcopy skip them), DISC; many requests in flight per connection,
//     answered in order; with structured replies negotiated, reads are
//     answered with one NBD_REPLY_TYPE_OFFSET_DATA chunk (or an error chunk).
//   transmission flags: HAS_FLAGS, SEND_FLUSH, SEND_FUA, SEND_TRIM,
//     SEND_WRITE_ZEROES, CAN_MULTI_CONN, READ_ONLY as the export says, and
//     SEND_DF with structured replies (a read is always one chunk).
//   handshake_timeout: a connection silent that long before NBD_OPT_GO
//     (or EXPORT_NAME) is closed; one past its handshake may stay idle for
//     as long as its client likes (a mounted device).
//
// Bad input: an option longer than max_option_bytes, a request whose
// length is over max_request_bytes, or a request past the end of the export
// is refused with the protocol's error (EINVAL, EOVERFLOW, ENOSPC or EPERM,
// as the specification asks) and the connection goes on; bytes that cannot
// be a request (wrong magic) close that connection only. A client that
// disconnects mid-request leaves nothing half-applied beyond what a
// completed device write did.
//
// Thread safety: Serve() once per worker index on its own thread; Stop(),
// address() and the statistics from any thread. Export calls come from the
// worker thread that owns the connection, concurrently across workers.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "qcloud/block/store.h"
#include "qcloud/core/bytes.h"
#include "qcloud/core/clock.h"
#include "qcloud/core/export.h"
#include "qcloud/core/log.h"
#include "qcloud/core/metrics.h"
#include "qcloud/core/result.h"
#include "qcloud/core/status.h"
#include "qcloud/core/tcp_server.h"

namespace qcloud::block {

// What a client learns of a device before it uses it.
struct ExportInfo {
  std::string name;
  std::string description;        // "" = none
  uint64_t size = 0;              // bytes
  bool read_only = false;
  bool can_flush = true;
  bool can_fua = true;
  bool can_trim = true;
  bool can_zero = true;
  bool can_multi_conn = true;     // FLUSH on one connection covers writes done on all
  uint32_t min_block = 1;         // NBD_INFO_BLOCK_SIZE: minimum, preferred, maximum
  uint32_t preferred_block = 4096;
  uint32_t max_block = 32u << 20;
};

// A run of bytes of one allocation state, for NBD_CMD_BLOCK_STATUS.
struct AllocationRun {
  uint32_t length = 0;
  bool hole = false;  // holds no data: reads as zeros (NBD_STATE_HOLE | NBD_STATE_ZERO)
};

// One open device. Calls may come from several threads at once (one per
// connection worker); a device serializes what it must itself. Offsets and
// lengths are in bytes and already checked against size() by the server.
// Errors map to NBD's: kInvalidArgument/kOutOfRange → EINVAL,
// kResourceExhausted → ENOSPC, kNotSupported → ENOTSUP, kUnavailable →
// ESHUTDOWN, read-only → EPERM, everything else → EIO.
class Export {
 public:
  virtual ~Export() = default;
  virtual const ExportInfo& info() const noexcept = 0;
  // Fills `dst` with the bytes at [offset, offset + dst.size()).
  virtual Status Read(uint64_t offset, MutableByteView dst) = 0;
  // Stores `src` at `offset`; with fua, durable before it returns.
  virtual Status Write(uint64_t offset, ByteView src, bool fua) = 0;
  // Makes every write completed before the call durable.
  virtual Status Flush() = 0;
  // The range's contents become unspecified (qcloud: read as zeros) and its
  // space may be released.
  virtual Status Trim(uint64_t offset, uint64_t length, bool fua) = 0;
  // The range reads as zeros; no_hole: keep it allocated (NBD_CMD_FLAG_NO_HOLE).
  virtual Status WriteZeroes(uint64_t offset, uint64_t length, bool fua, bool no_hole) = 0;
  // A hint (NBD_CMD_CACHE): the range will be read soon. Default: nothing.
  virtual Status Cache(uint64_t offset, uint64_t length) {
    (void)offset, (void)length;
    return Status::Ok();
  }
  // Zero-copy reads: where the bytes of [offset, offset + length) are, as
  // Volume::PlanRead says (store.h); the server sends them with splice(2)
  // where its loop can. False: use Read(). Default: false.
  virtual Result<bool> PlanRead(uint64_t offset, uint64_t length, Volume::ReadPlan& plan) {
    (void)offset, (void)length, (void)plan;
    return false;
  }
  // The "base:allocation" state of [offset, offset + length): runs in
  // order from `offset`, at least one, together at most `length` bytes
  // (fewer is allowed: the client asks again). Default: all data.
  virtual Status Allocation(uint64_t offset, uint32_t length, std::vector<AllocationRun>& runs) {
    (void)offset;
    runs.push_back({.length = length, .hole = false});
    return Status::Ok();
  }
};

// The devices a server offers, by name.
class ExportDirectory {
 public:
  virtual ~ExportDirectory() = default;
  // Every export's info, for NBD_OPT_LIST.
  virtual std::vector<ExportInfo> List() = 0;
  // Opens `name` for a connection ("" = the default export, if there is
  // one). kNotFound when there is no such export. Each connection holds its
  // own shared_ptr for as long as it is in the transmission phase.
  virtual Result<std::shared_ptr<Export>> Open(std::string_view name) = 0;
};

struct NbdServerOptions {
  std::string listen = "127.0.0.1:10809";  // "host:port", numeric host; port 0 = pick one
  unsigned threads = 1;                    // worker loops (call Serve(i) for each)
  // Threads that run requests (device calls), shared by all connections:
  // a connection then has up to 128 requests running at once, answered
  // as they finish (NBD allows any order), so slow device calls (NBD
  // replicas' round trips) overlap. 0 = each request runs on its
  // connection's loop thread, one at a time, answered in order.
  unsigned io_threads = 0;
  size_t max_connections = 1024;           // across workers; more are closed at once
  uint32_t max_option_bytes = 64 * 1024;   // an option's data beyond this: NBD_REP_ERR_TOO_BIG
  uint32_t max_request_bytes = 32u << 20;  // READ/WRITE length beyond this: EINVAL (payload skipped)
  size_t output_high_water = size_t{64} << 20;  // stop reading a client with this much unsent
  std::chrono::milliseconds handshake_timeout{10000};  // silence before GO that closes; 0 = none
  std::chrono::milliseconds drain_timeout{1000};  // at Stop(): time to send replies already made
  LoopBackend backend = LoopBackend::kAuto;  // io_uring, or epoll where refused (tcp_server.h)
  Clock* clock = nullptr;    // drain deadline; not owned, outlives the server; null = real
  Logger* logger = nullptr;  // not owned, outlives the server; null = discard
};

// Counters over all connections.
struct NbdServerStats {
  uint64_t connections = 0;        // accepted
  int64_t curr_connections = 0;
  uint64_t handshakes = 0;         // reached the transmission phase
  uint64_t reads = 0, writes = 0, flushes = 0, trims = 0, zeroes = 0;
  uint64_t read_bytes = 0, write_bytes = 0;
  uint64_t errors = 0;             // requests answered with an error
  uint64_t protocol_errors = 0;    // connections closed for bytes that are not NBD (bad
                                   // magic, unknown client flags, an over-long export name)
};

class QCLOUD_EXPORT NbdServer {
 public:
  // Binds the listening sockets (one per worker). `exports` is not owned and
  // must outlive the server. Errors: kInvalidArgument (bad options or
  // address), the bind/listen failure, kNotSupported when backend =
  // kIoUring and the kernel refuses io_uring.
  static Result<std::unique_ptr<NbdServer>> Open(ExportDirectory& exports,
                                                 const NbdServerOptions& options);
  ~NbdServer();
  NbdServer(const NbdServer&) = delete;
  NbdServer& operator=(const NbdServer&) = delete;

  const std::string& address() const noexcept;  // "127.0.0.1:PORT", the real port
  unsigned threads() const noexcept;
  LoopBackend backend() const noexcept;

  // Runs worker `index`'s loop until Stop(). Errors: the loop's.
  Status Serve(unsigned index);
  // Asks every worker to finish. Idempotent; any thread.
  void Stop();

  NbdServerStats stats() const;
  // Registers the counters above as qcloud_nbd_* metrics in `registry`
  // (read at scrape time; the server must outlive the registry's scrapes).
  // Errors: kAlreadyExists when a name is taken (registered twice).
  Status RegisterMetrics(MetricsRegistry& registry);

 private:
  struct Impl;
  explicit NbdServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace qcloud::block
