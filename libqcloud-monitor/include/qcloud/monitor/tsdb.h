#pragma once

// qcloud::monitor::Tsdb — the time-series store under the monitoring
// platform: series of (millisecond timestamp, double) samples, named by
// labels, compressed in memory, logged ahead to disk.
//
//   auto db = Tsdb::Open({.data_dir = "/var/lib/qcloud-monitor"}).value();
//   auto cpu = Labels::FromPairs({{"__name__", "cpu_usage"}, {"host", "h1"}}).value();
//   db->Append({{cpu, {{t, 0.97}}}});                       // durable when it returns
//   auto got = db->Select({Matcher::Equal("host", "h1")}, t - 3600'000, t).value();
//
// Samples. A series' samples go into compressed chunks of up to 120
// samples, closed also where a block range ends (monitor/chunk.h; about 1.8
// bytes a sample on node-exporter data in memory, 1.3-1.6 in blocks). The
// rule for order (Prometheus's): a sample older than the series' newest is
// out of order and refused; one at the newest's timestamp is a duplicate:
// taken silently when its value is the same bits, refused otherwise.
// Timestamps beyond ±kMaxTimestamp (2^62 ms) are refused as out of range.
// Refusals are counted per sample (AppendResult); the rest of the batch
// goes in. NaN (Prometheus's staleness marker among them) and ±Inf are
// values like any other.
//
// Durability. Append() writes the batch's new series and samples to the
// write-ahead log (wal/, monitor/wal.h) with one write(2) before it
// returns, so a sample acknowledged survives kill -9; with sync_wal the
// log is also fdatasync'ed (survives a power cut). Open() replays the log;
// a torn last record is cut off.
//
// Blocks. Compact() cuts the head into immutable blocks on disk, one per
// block_duration of time (aligned: [k*D, (k+1)*D)), once the head holds
// samples 1.5 D past a range's start; the cut samples leave memory and the
// log is rewritten to hold only what the head still has. A block is
// checksummed (its index at open, each chunk when read): a corrupt one is
// reported (stats) and left out while the rest stays queryable. A sample
// older than the last cut is refused (too_old). Finished ranges of 3 D
// and then 12 D (6 h and 24 h by default) that hold two or more blocks are
// merged into one block, as Prometheus merges its blocks: fewer, larger
// blocks cost less disk (one index, longer chunks) and memory. The merged
// block is written before its sources go; a crash between leaves both, and
// Open() drops the sources. Retention: blocks wholly
// older than the newest sample minus `retention` are deleted (data time,
// as Prometheus does). Format: docs/notes/monitor-format.md.
//
// Queries. An inverted index maps each label pair to the series that have
// it (the head's, and each block's). Select() takes matchers (matcher.h) of which at least one must not
// match the empty string, as Prometheus requires of a selector.
//
// Limits (a bad client cannot make memory grow without end): labels per
// series and their sizes (labels.h); max_series; samples per Append().
//
// Thread safety: every method, from any thread. Appends are serialized
// (one log); queries run alongside them.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "qcloud/core/clock.h"
#include "qcloud/core/env.h"
#include "qcloud/core/export.h"
#include "qcloud/core/result.h"
#include "qcloud/core/status.h"
#include "qcloud/monitor/labels.h"
#include "qcloud/monitor/matcher.h"

namespace qcloud::monitor {

// Prometheus's staleness marker: a NaN with this bit pattern, written when
// a series disappears (stored like any value; queries end the series there).
inline constexpr uint64_t kStaleNaNBits = 0x7ff0000000000002ULL;

struct Sample {
  int64_t t = 0;  // milliseconds since the Unix epoch
  double v = 0;
  bool operator==(const Sample& o) const noexcept;  // value compared by bits (NaN == NaN)
};

struct SeriesSamples {
  Labels labels;
  std::vector<Sample> samples;  // in time order
};

// Samples for a series known by its reference (Tsdb::Ref).
struct RefSamples {
  uint64_t ref = 0;
  std::span<const Sample> samples;  // in time order
};

struct TsdbOptions {
  std::string data_dir;                 // required; created if absent
  bool sync_wal = false;                // fdatasync the log at each Append (power-cut safe)
  size_t max_series = size_t{1} << 22;  // more new series are refused (kResourceExhausted)
  size_t max_batch_samples = size_t{1} << 22;  // samples in one Append()
  uint64_t wal_segment_bytes = uint64_t{128} << 20;  // a new log segment after this many
  std::chrono::milliseconds block_duration = std::chrono::hours(2);    // time range of one block
  // Blocks are merged into ranges of 3 and 12 block_durations up to this
  // (Prometheus's max-block-duration); block_duration = no merging.
  std::chrono::milliseconds max_block_duration = std::chrono::hours(24);
  std::chrono::milliseconds retention = std::chrono::hours(24 * 365);  // raw samples kept this long
  Env* env = nullptr;                   // not owned, outlives the store; null = POSIX
};

// Timestamps a store takes: within 2^62 ms (146 million years) of the
// epoch, so that block ranges around them are int64 arithmetic.
inline constexpr int64_t kMaxTimestamp = int64_t{1} << 62;

struct AppendResult {
  uint64_t appended = 0;
  uint64_t new_series = 0;
  uint64_t out_of_order = 0;  // older than the series' newest sample: refused
  uint64_t duplicates = 0;    // same timestamp and value as the newest: taken silently
  uint64_t conflicts = 0;     // same timestamp, another value: refused
  uint64_t too_old = 0;       // older than the last cut into a block: refused
  uint64_t out_of_range = 0;  // a timestamp beyond +-kMaxTimestamp: refused
};

struct TsdbStats {
  uint64_t series = 0;
  uint64_t samples = 0;          // in memory
  uint64_t chunks = 0;           // closed chunks in memory
  uint64_t chunk_bytes = 0;      // their encoded size, open chunks included
  uint64_t chunk_memory_bytes = 0;  // the pages that hold chunks in memory (all stores of the process)
  uint64_t chunk_memory_used_bytes = 0;  // of them, the slots of live chunks
  uint64_t chunk_repacks = 0;    // times Compact() moved the head's chunks to give pages back
  uint64_t wal_bytes = 0;        // log written since open, replayed included
  uint64_t wal_segments = 0;
  uint64_t replayed_samples = 0; // at open
  uint64_t wal_torn_bytes = 0;   // cut off the log's end at open
  uint64_t appended = 0, out_of_order = 0, duplicates = 0, conflicts = 0, too_old = 0, out_of_range = 0;
  uint64_t blocks = 0;
  uint64_t block_bytes = 0;      // on disk
  uint64_t block_samples = 0;    // in blocks
  uint64_t compactions = 0;      // head cuts
  uint64_t merges = 0;           // blocks merged into a larger one
  uint64_t compacting = 0;       // 1 while Compact() runs (a cut, merges, retention)
  std::vector<std::string> merge_errors;  // merges that failed (their blocks stay as they were)
  uint64_t corrupt_chunks = 0;   // failed their checksum when read (skipped)
  std::vector<std::string> corrupt_blocks;  // left out at open: path and why
};

class QCLOUD_EXPORT Tsdb {
 public:
  // Opens (creating if absent) the store and replays its log. Errors:
  // kInvalidArgument, kIoError, kCorruption (a log segment that is not one).
  static Result<std::unique_ptr<Tsdb>> Open(const TsdbOptions& options);
  virtual ~Tsdb() = default;

  // Adds samples to series (created on first sight). Returns what was taken
  // and refused (see the order rule). Errors: kInvalidArgument (a batch
  // over max_batch_samples; labels are validated by Labels), kResourceExhausted
  // (max_series reached: nothing of the batch is taken), kIoError (the log
  // write failed: nothing is acknowledged).
  virtual Result<AppendResult> Append(std::span<const SeriesSamples> batch) = 0;
  // The reference of the series with these labels while it is in the head;
  // 0 when it is not. For callers that append to the same series again and
  // again (the remote-write receiver): labels looked up once, then
  // AppendRefs(), which skips building and comparing label sets.
  virtual uint64_t Ref(const Labels& labels) = 0;
  // Append() by reference. A reference the head no longer has (its series
  // left the head at a cut, or never was) takes nothing; its entry's index
  // goes to `unknown` (if given), for the caller to append by labels.
  virtual Result<AppendResult> AppendRefs(std::span<const RefSamples> batch, std::vector<size_t>* unknown) = 0;

  // The series that match every matcher, with their samples in [mint,
  // maxt] (series with none are left out), ordered by labels.
  // kInvalidArgument when every matcher matches the empty string.
  virtual Result<std::vector<SeriesSamples>> Select(std::span<const Matcher> matchers, int64_t mint,
                                                    int64_t maxt) = 0;
  // The labels of the matching series with a sample in [mint, maxt].
  virtual Result<std::vector<Labels>> Series(std::span<const Matcher> matchers, int64_t mint,
                                             int64_t maxt) = 0;
  // Cuts the head into blocks where it holds enough (see Blocks), then
  // applies retention. Call it every minute or so; cheap when there is
  // nothing to do. Errors: kIoError (the head stays as it was).
  virtual Status Compact() = 0;

  // Every label name, sorted; the values of one, sorted.
  virtual std::vector<std::string> LabelNames() = 0;
  virtual std::vector<std::string> LabelValues(std::string_view name) = 0;

  virtual TsdbStats stats() = 0;
};

}  // namespace qcloud::monitor
