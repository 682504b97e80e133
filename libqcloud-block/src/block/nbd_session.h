#pragma once

// One NBD connection's protocol state machine, independent of sockets
// (core's TcpServer drives it): Start() makes the greeting, Process()
// consumes complete messages from the front of the input and appends the
// replies. Wire format: block/nbd_proto.h.
//
// Phases: client flags -> options -> transmission, or closed. Requests are
// executed one at a time, in order, on the calling thread; replies go out
// in the order of the requests.
//
// Invariants and bounds (network input never grows memory without limit):
//   - the input kept unconsumed is at most one incomplete message: an
//     option of up to max_option_bytes of data, or a request with up to
//     max_request_bytes of write payload (the loop's max_input must exceed
//     both plus a read's worth of bytes);
//   - an option with more data than max_option_bytes, or a write refused
//     before its payload is seen (too long, past the end, read-only, bad
//     flags), has its data discarded as it arrives (`skip_`) and is
//     answered once the last byte is gone; the connection goes on;
//   - bytes that cannot be NBD (a wrong magic, unknown client flags, an
//     NBD_OPT_EXPORT_NAME that cannot be answered) close the connection and
//     count in protocol_errors;
//   - no request is taken while `out` holds output_high_water bytes or
//     more; one read reply may overshoot it by max_request_bytes.
//
// Thread safety: one session is used by one thread at a time; the counters
// it updates have one writer (its worker) and any number of readers.

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "qcloud/block/nbd_server.h"
#include "qcloud/core/bytes.h"
#include "qcloud/core/tcp_server.h"
#include "qcloud/core/worker_pool.h"

namespace qcloud::block {

// The protocol counters of one worker (NbdServerStats, less the
// connection counts, which are the loop's).
struct alignas(64) NbdCounters {
  std::atomic<uint64_t> handshakes{0};
  std::atomic<uint64_t> reads{0}, writes{0}, flushes{0}, trims{0}, zeroes{0};
  std::atomic<uint64_t> read_bytes{0}, write_bytes{0};
  std::atomic<uint64_t> errors{0};
  std::atomic<uint64_t> protocol_errors{0};
};

class NbdSession final : public StreamSession {
 public:
  // `exports` and `counters` are not owned and outlive the session; of
  // `options` the session keeps the byte limits.
  // `pool`: where requests run (replies in completion order); null = on
  // the calling thread, in order. Not owned; outlives the session's jobs.
  NbdSession(ExportDirectory& exports, const NbdServerOptions& options,
             NbdCounters& counters, WorkerPool* pool = nullptr) noexcept;
  ~NbdSession() override;
  NbdSession(const NbdSession&) = delete;
  NbdSession& operator=(const NbdSession&) = delete;

  // The server's greeting: NBDMAGIC, IHAVEOPT, FIXED_NEWSTYLE | NO_ZEROES.
  void Start(Buffer& out) override;
  size_t Process(ByteView in, Buffer& out) override;
  // After NBD_CMD_DISC the requests still running are answered first.
  bool closing() const noexcept override { return closing_ || (disc_ && in_flight_ == 0); }
  void Attach(std::shared_ptr<SessionWaker> waker) override { waker_ = std::move(waker); }
  // Reads of kZeroCopyMin bytes or more go out with SessionIo::SendFile
  // where the loop and the export can (no pool: the loop's thread only).
  void AttachIo(SessionIo* io) override { io_ = io; }
  bool busy() const noexcept override { return in_flight_ > 0; }
  // Also while the session has paused with complete requests still in its
  // input (see kRequestsPerCall): the loop sends the replies so far, then
  // calls Process() again without waiting for more input.
  bool blocked(const Buffer& out) const noexcept override {
    return paused_ || OutputBytes(out) >= output_high_water_ || in_flight_ >= kMaxInFlight ||
           in_flight_bytes_ >= max_in_flight_bytes_;
  }
  // Past the handshake a client may be silent for as long as it likes (an
  // idle mounted device): the handshake timeout no longer applies.
  bool idle_exempt() const noexcept override { return phase_ == Phase::kTransmission; }
  size_t input_needed() const noexcept override { return needed_; }

  // For tests: the phase reached and what was negotiated.
  bool in_transmission() const noexcept { return phase_ == Phase::kTransmission; }
  bool structured_replies() const noexcept { return structured_; }

 private:
  enum class Phase : uint8_t { kClientFlags, kOptions, kTransmission };
  // What is answered once skipped data has all been discarded.
  struct Skip {
    bool active = false;
    uint64_t remaining = 0;
    bool option = false;   // an option's error reply, else a request's
    uint32_t code = 0;     // option: the option; request: the NBD error
    uint64_t handle = 0;   // request only
    const char* why = "";  // request only: the error message
  };
  // Why a request is refused before it runs; error 0 = it is not.
  struct Refusal {
    uint32_t error = 0;
    const char* why = "";
  };
  struct Request {
    uint16_t flags = 0;
    uint16_t type = 0;
    uint64_t handle = 0;
    uint64_t offset = 0;
    uint32_t length = 0;
  };

  // Each takes one complete message from the front of `in` and returns its
  // size, or 0 when more bytes are needed (or the session is closing).
  size_t ClientFlags(ByteView in);
  size_t Option(ByteView in, Buffer& out);
  size_t Transmission(ByteView in, Buffer& out);

  void HandleOption(uint32_t option, ByteView data, Buffer& out);
  void ExportName(ByteView name, Buffer& out);
  void List(uint32_t option, ByteView data, Buffer& out);
  void InfoOrGo(uint32_t option, ByteView data, Buffer& out);
  void MetaContext(uint32_t option, ByteView data, Buffer& out);

  // Flags, support, read-only, length and bounds.
  Refusal Check(const Request& r) const;
  // What running a request needs, apart from the session: a request may
  // run on a pool thread (see NbdServerOptions::io_threads) after its
  // session is gone.
  struct Ctx {
    Export* exp = nullptr;
    bool structured = false;
    NbdCounters* counters = nullptr;
    SessionIo* io = nullptr;  // null on a pool thread
  };
  Ctx ctx() noexcept { return {export_.get(), structured_, &counters_, pool_ ? nullptr : io_}; }
  // Output made and not yet sent: `out` and the file bytes queued with it.
  uint64_t OutputBytes(const Buffer& out) const noexcept {
    return out.size() + (io_ != nullptr ? io_->queued_file_bytes() : 0);
  }
  // A read answered by the loop's zero-copy output; false: not possible
  // here, nothing was written.
  static bool ReadZeroCopy(const Ctx& c, const Request& r, Buffer& out);
  static void Execute(const Ctx& c, const Request& r, ByteView payload, Buffer& out);
  void Execute(const Request& r, ByteView payload, Buffer& out) { Execute(ctx(), r, payload, out); }
  // Runs the request on the pool; its reply joins `completed_`.
  void Submit(const Request& r, ByteView payload);
  static void Read(const Ctx& c, const Request& r, Buffer& out);
  static void BlockStatus(const Ctx& c, const Request& r, Buffer& out);

  uint16_t TransmissionFlags(const ExportInfo& info) const noexcept;
  static void ReplyOk(uint64_t handle, Buffer& out);
  // Counts the error; a structured error chunk carries `message`.
  static void ReplyError(const Ctx& c, uint64_t handle, uint32_t error, std::string_view message,
                         Buffer& out);
  void ReplyError(uint64_t handle, uint32_t error, std::string_view message, Buffer& out) {
    ReplyError(ctx(), handle, error, message, out);
  }
  void ProtocolError();

  ExportDirectory& exports_;
  NbdCounters& counters_;
  const uint32_t max_option_bytes_;
  const uint32_t max_request_bytes_;
  const size_t output_high_water_;
  Phase phase_ = Phase::kClientFlags;
  bool closing_ = false;
  bool no_zeroes_ = false;
  bool structured_ = false;
  // NBD_OPT_SET_META_CONTEXT: base:allocation was selected, for this export.
  bool meta_allocation_ = false;
  std::string meta_export_;
  bool block_status_ = false;  // in transmission: BLOCK_STATUS may be sent
  bool paused_ = false;  // the last Process() stopped with requests left to run
  size_t needed_ = 0;    // the write waiting for its payload: its whole size (input_needed())
  // With a pool: requests running there and their replies once done.
  static constexpr size_t kMaxInFlight = 128;
  struct Completed {
    std::mutex mu;
    std::vector<std::pair<std::string, uint64_t>> replies;  // reply bytes, the request's byte count
  };
  WorkerPool* pool_ = nullptr;
  SessionIo* io_ = nullptr;
  std::shared_ptr<SessionWaker> waker_;
  std::shared_ptr<Completed> completed_ = std::make_shared<Completed>();
  size_t in_flight_ = 0;
  uint64_t in_flight_bytes_ = 0;  // payloads and read lengths of the requests running
  uint64_t max_in_flight_bytes_ = 0;
  bool disc_ = false;  // NBD_CMD_DISC seen with requests still running
  Skip skip_;
  std::shared_ptr<Export> export_;  // in transmission
};

}  // namespace qcloud::block
