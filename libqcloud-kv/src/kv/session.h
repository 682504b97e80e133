#pragma once

// One client connection's protocol state machine, independent of sockets:
// the I/O loop hands it the bytes received so far, it consumes the complete
// requests at their front and appends the replies. The protocol (memcached
// text + meta, or memcached binary) is chosen by the connection's first byte
// (0x80 = binary), as memcached does.
//
// Bounds (network input never makes the server allocate without limit):
//   - a text line may be at most `max_line` bytes (2048, memcached's limit)
//     unless it is a get/gets, whose key lists may reach `max_get_line`;
//     beyond that the connection is closed without a reply, as memcached;
//   - a value is buffered only up to item_size_max; larger ones are
//     discarded as they arrive ("swallowed") and answered with an error;
//   - Process() stops taking requests while more than `output_high_water`
//     reply bytes wait (a client that does not read its replies stops being
//     read; its memory stays bounded); a multi-get resumes key by key.

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <vector>
#include <algorithm>

#include "kv/prefix_stats.h"
#include "kv/watch.h"
#include "qcloud/core/bytes.h"
#include "qcloud/core/hash.h"
#include "qcloud/core/tcp_server.h"
#include "qcloud/kv/server.h"
#include "qcloud/kv/store.h"

namespace qcloud::kv {

// The protocol's counters of one worker thread (one writer, read by `stats`
// and /metrics from any). Connection and byte counts are the connection
// loop's (TcpServerStats).
#define QCLOUD_KV_COUNTERS(X)                                                                 \
  X(cmd_get) X(cmd_set) X(cmd_flush) X(cmd_touch) X(cmd_meta) X(get_hits) X(get_misses)       \
      X(delete_misses) X(delete_hits) X(incr_misses) X(incr_hits) X(decr_misses) X(decr_hits) \
          X(cas_misses) X(cas_hits) X(cas_badval) X(touch_hits) X(touch_misses)               \
              X(store_too_large) X(store_no_memory) X(protocol_errors)

enum CounterIndex : size_t {
#define QCLOUD_KV_INDEX(name) kCounter_##name,
  QCLOUD_KV_COUNTERS(QCLOUD_KV_INDEX)
#undef QCLOUD_KV_INDEX
  kCounterCount
};

struct alignas(64) WorkerCounters {
#define QCLOUD_KV_DECLARE(name) std::atomic<uint64_t> name{0};
  QCLOUD_KV_COUNTERS(QCLOUD_KV_DECLARE)
#undef QCLOUD_KV_DECLARE
};

inline void Bump(std::atomic<uint64_t>& c, uint64_t n = 1) noexcept {
  c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}
// Takes back a Bump of a command that will run again (and count then).
inline void Unbump(std::atomic<uint64_t>& c) noexcept {
  c.store(c.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
}

// The memcached slab class (default -n 48 -f 1.25) of an item with this
// key, value and flags: the "cls"/"clsid" of me, metadump and watch lines.
unsigned MemcachedSlabClass(size_t key, size_t value, uint32_t flags);

// What every session of a server shares.
struct ServerShared {
  Store* store = nullptr;
  ServerOptions options;
  std::vector<WorkerCounters>* workers = nullptr;  // one per worker thread
  TcpServer* loop = nullptr;  // connection and byte counts; null in tests without sockets
  std::atomic<uint32_t> verbosity{0};
  int64_t started_unix = 0;
  PrefixStats prefix_stats;  // `stats detail`
  WatchHub watch;            // `watch` log streams
  // The connections (`stats conns`): each session is listed while it lives.
  std::mutex conns_mu;
  std::vector<class Session*> conns;
  // Settings of memcached's slab and LRU model that its commands change
  // (slabs automove, lru_crawler, lru): validated and kept as memcached
  // does, shown by `stats settings`; they change nothing in this server's
  // one block pool with its CLOCK.
  struct Tuning {
    int slab_automove = 1;
    double slab_automove_ratio = 0.8;
    bool lru_crawler = true;
    uint32_t lru_crawler_sleep = 100;
    uint32_t lru_crawler_tocrawl = 0;
    bool lru_segmented = true;
    uint32_t hot_lru_pct = 20, warm_lru_pct = 40;
    double hot_max_factor = 0.2, warm_max_factor = 2.0;
    bool temp_lru = false;
    int32_t temporary_ttl = 61;
  };
  std::mutex tuning_mu;
  Tuning tuning;
  // `stats reset`: zeroes the protocol's and the loop's counters and the
  // prefix counts.
  void ResetCounters();
};

class Session final : public StreamSession {
 public:
  Session(ServerShared& shared, WorkerCounters& counters) noexcept
      : shared_(shared), counters_(counters) {}
  ~Session() override;
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;
  // The waker resumes a watcher when lines arrive for it.
  void Attach(std::shared_ptr<SessionWaker> waker) override { waker_ = std::move(waker); }

  // Consumes complete requests from the front of `in` and appends their
  // replies to `out`. Returns the number of bytes consumed; the rest (an
  // incomplete request) must be offered again with more bytes after it.
  size_t Process(ByteView in, Buffer& out) override;

  // The connection must close once `out` has been sent (quit, or input that
  // violates the protocol beyond recovery).
  bool closing() const noexcept override { return closing_; }
  // Process() stopped early because `out` is over the high-water mark.
  bool blocked(const Buffer& out) const noexcept override {
    return out.size() >= shared_.options.output_high_water || cold_reading_;
  }
  // Waiting for a sunk item's record (see AttachIo).
  bool busy() const noexcept override { return cold_reading_; }
  // With `io`, a request on a key whose item is on the cold tier does not
  // block the worker: the session reads the record through `io` (the
  // worker's io_uring), stops taking requests (replies stay in order), and
  // when the read completes brings the item into memory and runs the
  // request again. Without it (tests with no loop) the store reads it.
  void AttachIo(SessionIo* io) override;

  // What `stats conns` shows of a connection (memcached's conn states).
  enum class ConnState : uint8_t { kNewCmd, kRead, kParseCmd, kNread, kSwallow, kWatch, kIoQueue };
  // A metadump is being written (in bounded pieces, as `out` drains).
  bool producing() const noexcept override { return dump_.has_value(); }

 private:
  enum class Mode : uint8_t { kUnknown, kText, kBinary };
  // Text protocol. Each returns the bytes consumed after the line, or -1
  // when the data block has not fully arrived (nothing is consumed then).
  int64_t Text(std::string_view line, ByteView rest, Buffer& out);
  int64_t Storage(const std::vector<std::string_view>& t, int kind, ByteView rest, Buffer& out);
  void Retrieval(std::string_view line, const std::vector<std::string_view>& t, bool cas,
                 bool touch, Buffer& out);
  void Arithmetic(const std::vector<std::string_view>& t, bool incr, Buffer& out);
  void Touch(const std::vector<std::string_view>& t, Buffer& out);
  void DeleteCmd(const std::vector<std::string_view>& t, Buffer& out);
  void FlushAll(const std::vector<std::string_view>& t, Buffer& out);
  void Verbosity(const std::vector<std::string_view>& t, Buffer& out);
  void Watch(const std::vector<std::string_view>& t, Buffer& out);        // watch [flags]
  // `watch` events of this connection's requests (no-ops unless watched):
  // the lookup memcached logs before every command on a key (found or not,
  // as the item is now), and a store's outcome.
  void LogFetch(std::string_view key);
  void LogStore(std::string_view key, Outcome outcome, std::string_view cmd, int64_t exptime,
                size_t value_size, uint32_t flags);
  void LogConn(const char* type);
  int cfd() const noexcept { return io_ != nullptr ? io_->socket_fd() : -1; }
  void Stats(const std::vector<std::string_view>& t, Buffer& out);
  void StatsConns(Buffer& out);  // stats conns
  void MetaDebug(const std::vector<std::string_view>& t, Buffer& out);    // me
  void Slabs(const std::vector<std::string_view>& t, Buffer& out);        // slabs automove|reassign
  void LruCrawler(const std::vector<std::string_view>& t, Buffer& out);   // lru_crawler ...
  void Lru(const std::vector<std::string_view>& t, Buffer& out);          // lru mode|temp_ttl|tune
  // Appends the next lines of a metadump (at least one, or its END).
  void ProduceDump(Buffer& out);
  int64_t MetaGet(const std::vector<std::string_view>& t, Buffer& out);
  int64_t MetaSet(const std::vector<std::string_view>& t, ByteView rest, Buffer& out);
  int64_t MetaDelete(const std::vector<std::string_view>& t, Buffer& out);
  int64_t MetaArith(const std::vector<std::string_view>& t, Buffer& out);
  void Reply(Buffer& out, std::string_view s);
  // Binary protocol: one packet; returns bytes consumed, 0 = incomplete.
  size_t Binary(ByteView in, Buffer& out);
  struct BinaryRequest;  // a packet whose body has arrived (binary.cc)
  void BinaryRetrieve(const BinaryRequest& r, Buffer& out);  // get/getk/gat(k), quiet or not
  void BinaryStore(const BinaryRequest& r, Buffer& out);     // set/add/replace/append/prepend
  void BinaryDelete(const BinaryRequest& r, Buffer& out);
  void BinaryArith(const BinaryRequest& r, Buffer& out);     // incr/decr
  void BinaryTouch(const BinaryRequest& r, Buffer& out);
  void BinaryStat(const BinaryRequest& r, Buffer& out);

  // The ColdFetch to pass for a request on `key`: none for the request being
  // repeated after its read (it may block once, so it always finishes).
  ColdFetch* Defer(std::string_view key) noexcept {
    return io_ != nullptr && key != cold_retry_key_ ? &cold_fetch_ : nullptr;
  }
  // Hints the store at the keys of the first pipelined gets in `in`.
  void PrefetchGets(ByteView in);
  // A request got Outcome::kColdPending for `key`: starts reading the record.
  void StartColdRead(std::string_view key);
  // At the top of Process(): a finished read's item goes into the store.
  void FinishColdRead();

  ServerShared& shared_;
  WorkerCounters& counters_;
  SessionIo* io_ = nullptr;
  std::shared_ptr<SessionWaker> waker_;
  std::shared_ptr<Watcher> watcher_;  // set once this connection watches
  std::string watch_lines_;           // lines taken from watcher_ (reused)
  // memcached's write-out batch (the replies to one read): whether a reply
  // of it is still queued (watch refuses to start then), and the keys
  // whose items mg replies of it hold (incr/ma do not rewrite them in place).
  bool Held(std::string_view key) const noexcept {
    if (held_.empty()) return false;
    const uint64_t h = Xxh3_64(ByteView(key));
    return std::find(held_.begin(), held_.end(), h) != held_.end();
  }
  // Published at the end of each Process() for `stats conns` on other threads.
  std::atomic<ConnState> conn_state_{ConnState::kNewCmd};
  std::atomic<uint32_t> last_cmd_{0};  // CoarseSeconds() of the last command
  static uint32_t CoarseSeconds() noexcept;  // monotonic seconds, coarse (for last_cmd_)
  bool awaiting_data_ = false;         // a storage command waits for its data block
  bool cmd_flushes_ = false;          // the current command writes its batch out (get, mn)
  bool batch_unflushed_ = false;
  std::vector<uint64_t> held_;
  std::string peer_ip_;               // the client's address (connevents)
  uint16_t peer_port_ = 0;
  bool cold_reading_ = false;     // a record read is in flight (or its result unseen)
  int64_t cold_result_ = 0;       // its bytes or -errno, set by the loop
  ColdFetch cold_fetch_;          // where the record lies
  std::string cold_key_;          // whose record it is
  std::string cold_record_;       // the record's bytes
  std::string cold_retry_key_;    // the key of the request being repeated
  Mode mode_ = Mode::kUnknown;
  bool closing_ = false;
  bool noreply_ = false;       // the current text command asked for no reply
  uint64_t swallow_ = 0;       // bytes still to discard (oversized value)
  std::string after_swallow_;  // reply sent once the discard completes
  size_t get_resume_ = 0;      // multi-get paused on output: keys already answered
  std::vector<std::string_view> tokens_;  // the current text line's words (reused)
  std::optional<ScanCursor> dump_;        // lru_crawler metadump in progress (memory)
  ColdScanCursor dump_cold_;              // ... then its cold tier part
  uint64_t dump_classes_ = 0;             // bit n: memcached slab class n is dumped
};

}  // namespace qcloud::kv
