#include "qcloud/monitor/tsdb.h"

#include <algorithm>
#include <atomic>
#include <bit>
#include <charconv>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <shared_mutex>
#include <span>
#include <stdexcept>
#include <string_view>
#include <unordered_map>

#include <boost/unordered/unordered_flat_set.hpp>
#include <fmt/format.h>

#include "monitor/block.h"
#include "monitor/block_codec.h"
#include "monitor/chunk.h"
#include "monitor/head_chunks.h"
#include "monitor/wal.h"

namespace qcloud::monitor {

bool Sample::operator==(const Sample& o) const noexcept {
  return t == o.t && std::bit_cast<uint64_t>(v) == std::bit_cast<uint64_t>(o.v);
}

namespace {

using detail::WalSample;
using detail::WalSeries;

void Bump(std::atomic<uint64_t>& c, uint64_t n = 1) { c.fetch_add(n, std::memory_order_relaxed); }

// A closed chunk: in memory (the pool), or in a head chunk file.
struct Chunk {
  int64_t mint = 0, maxt = 0;
  detail::PoolBytes bytes;  // monitor/chunk_pool.h; empty when in a file
  detail::HeadChunkFiles::Ref at;  // monitor/head_chunks.h; file 0 when in memory
  uint32_t len = 0;                // in the file
};

using HeadFiles = detail::HeadChunkFiles;  // null: every chunk in memory

std::span<const uint8_t> BytesOf(const Chunk& c, const HeadFiles* files) {
  return c.at.file != 0 ? files->Read(c.at, c.len) : c.bytes.span();
}
void ReleaseChunk(const Chunk& c, HeadFiles* files) {
  if (c.at.file != 0) files->Release(c.at);
}

void Decode(ByteView bytes, int64_t mint, int64_t maxt, std::vector<Sample>& out, bool& bad) {
  detail::ChunkIterator it(bytes);
  while (it.Next()) {
    if (it.t() > maxt) break;
    if (it.t() >= mint) out.push_back({it.t(), it.v()});
  }
  if (!it.status().ok()) bad = true;
}

ByteView View(std::span<const uint8_t> b) { return {reinterpret_cast<const std::byte*>(b.data()), b.size()}; }

// Which aligned range of `range` ms holds t ([k * range, (k + 1) * range)).
int64_t RangeIndex(int64_t t, int64_t range) noexcept {
  const int64_t q = t / range;
  return t % range < 0 ? q - 1 : q;
}

// One series in memory: closed chunks and the open one. A series with a
// sample has one in the open chunk (a close starts the next at once, and a
// cut that empties the open chunk empties the series), so the open chunk
// knows the newest sample.
struct MemSeries {
  uint64_t ref = 0;
  Labels labels;  // interned: one copy shared with the blocks (LabelSets)

  // chunks, open: one of a fixed set of locks, not one per series (a
  // std::mutex is 40 bytes; series are many, contention is rare).
  std::mutex& mu() const {
    static std::mutex stripes[1024];
    return stripes[(reinterpret_cast<uintptr_t>(this) / alignof(MemSeries)) % 1024];
  }
  std::vector<Chunk> chunks;
  detail::ChunkAppender open{true};  // decimal while the values are

  // The newest sample's time and value bits, for the order rule: read by
  // appenders (serialized; appends change them) without the lock.
  int64_t MaxT() const noexcept { return open.samples() > 0 ? open.last_t() : INT64_MIN; }
  uint64_t LastBits() const noexcept { return open.samples() > 0 ? open.last_bits() : 0; }

  // `range`: the block duration. A chunk is closed at 120 samples, and
  // when a sample falls in the next block's range (as Prometheus's head
  // chunks end at one), so that a cut drops whole chunks: none is encoded
  // again in memory for the part after the cut.
  void Add(int64_t t, double v, HeadFiles* files, int64_t range) {
    std::lock_guard lock(mu());
    if (open.samples() == detail::kMaxChunkSamples ||
        (open.samples() > 0 && RangeIndex(t, range) != RangeIndex(open.first_t(), range))) {
      // Copied, not moved, and the new appender made (with the sample in)
      // first: if memory runs out, nothing has changed (the log holds the
      // samples either way), and the open chunk still has the newest.
      detail::ChunkAppender fresh(true);
      fresh.Append(t, v);
      // Room first, so that a chunk written to a file is never lost to a
      // push_back that throws. By a quarter: a series holds a few closed
      // chunks (a cut leaves the list exact), each slot unused costs 48
      // bytes a series, and a long block duration still grows it in
      // amortized constant time.
      if (chunks.size() == chunks.capacity()) chunks.reserve(chunks.size() + 1 + chunks.size() / 4);
      // A float chunk as Gorilla while open, then the smaller kind.
      const std::optional<detail::ChunkAppender> smaller =
          open.decimal() ? std::nullopt : detail::FloatDeltasIfSmaller(open.bytes());
      const std::span<const uint8_t> closed = smaller ? smaller->bytes() : open.bytes();
      Chunk c{.mint = open.first_t(), .maxt = open.last_t()};
      if (files == nullptr || !files->Write(closed, c.at)) {
        c.bytes = detail::PoolBytes(closed);
      } else {
        c.len = static_cast<uint32_t>(closed.size());
      }
      chunks.push_back(std::move(c));
      open = std::move(fresh);
      return;
    }
    open.Append(t, v);
  }

  // Copies of its chunks' bytes, closed then open, in time order.
  void ChunkBytes(std::vector<std::vector<uint8_t>>& out, const HeadFiles* files) const {
    std::lock_guard lock(mu());
    for (const Chunk& c : chunks) {
      const auto b = BytesOf(c, files);
      out.emplace_back(b.begin(), b.end());
    }
    if (open.samples() > 0) out.emplace_back(open.bytes().begin(), open.bytes().end());
  }

  void Collect(int64_t mint, int64_t maxt_q, std::vector<Sample>& out, const HeadFiles* files) const {
    std::lock_guard lock(mu());
    bool bad = false;  // memory chunks are our own encoding
    for (const Chunk& c : chunks) {
      if (c.maxt < mint || c.mint > maxt_q) continue;
      Decode(View(BytesOf(c, files)), mint, maxt_q, out, bad);
    }
    if (open.samples() > 0 && open.first_t() <= maxt_q) Decode(View(open.bytes()), mint, maxt_q, out, bad);
  }

  // Moves its chunks out of slabs being emptied (detail::ChunkPoolRepack).
  void Relocate() {
    std::lock_guard lock(mu());
    for (Chunk& c : chunks) c.bytes.Relocate();
    open.RelocateBytes();
  }

  bool Empty() const {
    std::lock_guard lock(mu());
    return chunks.empty() && open.samples() == 0;
  }

  // The oldest sample's time (INT64_MAX with none).
  int64_t MinT() const {
    std::lock_guard lock(mu());
    if (!chunks.empty()) return chunks.front().mint;
    return open.samples() > 0 ? open.first_t() : INT64_MAX;
  }

  // Keeps only the samples at or after `from`: closed chunks before it
  // go, and only the chunks across it are encoded again (a cut holds the
  // appends while every series does this: it costs a chunk, not the head).
  // The newest sample stays unless everything goes (the series then leaves
  // the head): the order rule still holds against it.
  void DropBefore(int64_t from, HeadFiles* files) {
    std::lock_guard lock(mu());
    size_t gone = 0;
    while (gone < chunks.size() && chunks[gone].maxt < from) ReleaseChunk(chunks[gone++], files);
    chunks.erase(chunks.begin(), chunks.begin() + static_cast<std::ptrdiff_t>(gone));
    std::vector<Sample> keep;
    bool bad = false;  // memory chunks are our own encoding
    if (!chunks.empty() && chunks.front().mint < from) {
      Decode(View(BytesOf(chunks.front(), files)), from, INT64_MAX, keep, bad);
      if (keep.empty()) {
        ReleaseChunk(chunks.front(), files);
        chunks.erase(chunks.begin());
      } else {
        detail::ChunkAppender a(true);
        for (const Sample& x : keep) a.Append(x.t, x.v);
        if (!a.decimal()) {
          if (std::optional<detail::ChunkAppender> smaller = detail::FloatDeltasIfSmaller(a.bytes())) a = std::move(*smaller);
        }
        detail::PoolBytes bytes = a.TakeBytes();
        bytes.ShrinkToFit();
        ReleaseChunk(chunks.front(), files);
        chunks.front() = {.mint = keep.front().t, .maxt = keep.back().t, .bytes = std::move(bytes)};
      }
    }
    // The list grew to hold the closed chunks of up to 1.5 block
    // durations; most series keep none or one after a cut.
    if (chunks.capacity() > chunks.size()) chunks.shrink_to_fit();
    if (open.samples() > 0 && open.first_t() < from) {
      keep.clear();
      Decode(View(open.bytes()), from, INT64_MAX, keep, bad);
      detail::ChunkAppender kept(true);  // replaces the open chunk once whole
      for (const Sample& x : keep) kept.Append(x.t, x.v);
      open = std::move(kept);
    }
  }
};

// The head's series, owned, found by ref and by label set: two open-
// addressing sets of pointers (about 14 bytes a series each, where node-based
// maps took about 40, and no allocation per series).
class SeriesTable {
 public:
  SeriesTable() = default;
  SeriesTable(const SeriesTable&) = delete;
  SeriesTable& operator=(const SeriesTable&) = delete;
  ~SeriesTable() {
    for (MemSeries* s : by_ref_) delete s;
  }

  size_t size() const noexcept { return by_ref_.size(); }
  MemSeries* Find(uint64_t ref) const {
    auto it = by_ref_.find(ref);
    return it == by_ref_.end() ? nullptr : *it;
  }
  // `ref` must be there (std::out_of_range otherwise).
  MemSeries& At(uint64_t ref) const {
    MemSeries* s = Find(ref);
    if (s == nullptr) throw std::out_of_range("tsdb: no head series with this ref");
    return *s;
  }
  MemSeries* Find(const Labels& labels) const {
    auto it = by_labels_.find(labels);
    return it == by_labels_.end() ? nullptr : *it;
  }
  // Its ref and its labels must be new to the table. Either both sets
  // hold it or, when memory runs out (bad_alloc), neither.
  MemSeries* Insert(std::unique_ptr<MemSeries> s) {
    MemSeries* raw = s.get();
    by_ref_.insert(raw);
    try {
      by_labels_.insert(raw);
    } catch (...) {
      by_ref_.erase(raw->ref);
      throw;
    }
    return s.release();
  }
  void Erase(MemSeries* s) {
    auto it = by_labels_.find(s->labels);
    if (it != by_labels_.end() && *it == s) by_labels_.erase(it);
    by_ref_.erase(s->ref);
    delete s;
  }
  auto begin() const { return by_ref_.begin(); }
  auto end() const { return by_ref_.end(); }

 private:
  struct ByRef {
    using is_transparent = void;
    size_t operator()(const MemSeries* s) const noexcept { return (*this)(s->ref); }
    size_t operator()(uint64_t ref) const noexcept { return std::hash<uint64_t>{}(ref); }
    bool operator()(const MemSeries* a, const MemSeries* b) const noexcept { return a->ref == b->ref; }
    bool operator()(uint64_t a, const MemSeries* b) const noexcept { return a == b->ref; }
    bool operator()(const MemSeries* a, uint64_t b) const noexcept { return a->ref == b; }
  };
  struct ByLabels {
    using is_transparent = void;
    size_t operator()(const MemSeries* s) const noexcept { return s->labels.Hash(); }
    size_t operator()(const Labels& l) const noexcept { return l.Hash(); }
    bool operator()(const MemSeries* a, const MemSeries* b) const noexcept { return a->labels == b->labels; }
    bool operator()(const Labels& a, const MemSeries* b) const noexcept { return a == b->labels; }
    bool operator()(const MemSeries* a, const Labels& b) const noexcept { return a->labels == b; }
  };
  boost::unordered_flat_set<MemSeries*, ByRef, ByRef> by_ref_;
  boost::unordered_flat_set<MemSeries*, ByLabels, ByLabels> by_labels_;
};

// Label name -> value -> ids (ascending): the head's (series refs).
using Postings = std::map<std::string, std::map<std::string, std::vector<uint64_t>, std::less<>>, std::less<>>;

// A block's: the same, flat and frozen, its names and values views of the
// block's (shared) label sets. Per series and label 4 bytes, per distinct
// pair one entry.
struct FlatPostings {
  struct Entry {
    std::string_view name, value;
    uint32_t begin = 0, count = 0;
  };
  std::vector<Entry> entries;  // by (name, value)
  std::vector<uint32_t> ids;   // ascending within each entry

  std::span<const Entry> Values(std::string_view name) const {
    auto lo = std::lower_bound(entries.begin(), entries.end(), name,
                               [](const Entry& e, std::string_view n) { return e.name < n; });
    auto hi = lo;
    while (hi != entries.end() && hi->name == name) ++hi;
    return {lo, hi};
  }
  std::span<const uint32_t> Ids(const Entry& e) const { return std::span<const uint32_t>(ids).subspan(e.begin, e.count); }
};

// The two kinds seen alike by MatchPostings: fn(value, ids) per value of `name`.
template <typename Fn>
void ForEachValue(const Postings& p, std::string_view name, Fn&& fn) {
  auto it = p.find(name);
  if (it == p.end()) return;
  for (const auto& [value, ids] : it->second) fn(std::string_view(value), std::span<const uint64_t>(ids));
}
template <typename Fn>
void ForEachValue(const FlatPostings& p, std::string_view name, Fn&& fn) {
  for (const FlatPostings::Entry& e : p.Values(name)) fn(e.value, p.Ids(e));
}
template <typename Id>
std::vector<uint64_t> Widen(std::span<const Id> ids) {
  return std::vector<uint64_t>(ids.begin(), ids.end());
}

// The ids whose labels match every matcher: postings narrow by the
// matchers that do not match "" (at least one is required); the others
// are checked on each candidate's labels.
template <typename P, typename LabelsOf>
Result<std::vector<uint64_t>> MatchPostings(const P& postings, std::span<const Matcher> matchers,
                                            LabelsOf&& labels_of) {
  bool any = false;
  std::vector<uint64_t> ids;
  for (const Matcher& m : matchers) {
    if (m.Matches("")) continue;
    std::vector<uint64_t> these;
    ForEachValue(postings, m.name(), [&](std::string_view value, auto list) {
      if (m.type() == MatchType::kEqual) {
        if (value == m.value()) these = Widen(list);
        return;
      }
      if (!m.Matches(value)) return;
      std::vector<uint64_t> merged;
      merged.reserve(these.size() + list.size());
      std::set_union(these.begin(), these.end(), list.begin(), list.end(), std::back_inserter(merged));
      these.swap(merged);
    });
    if (!any) {
      ids.swap(these);
      any = true;
    } else {
      std::vector<uint64_t> both;
      std::set_intersection(ids.begin(), ids.end(), these.begin(), these.end(), std::back_inserter(both));
      ids.swap(both);
    }
  }
  if (!any) {
    return InvalidArgument("a selector needs at least one matcher that does not match the empty string");
  }
  std::erase_if(ids, [&](uint64_t id) {
    const Labels& l = labels_of(id);
    for (const Matcher& m : matchers) {
      if (m.Matches("") && !m.Matches(l.Get(m.name()))) return true;
    }
    return false;
  });
  return ids;
}

// A block on disk with its index in memory. Blocks with the very same
// series (most of them: a series lives for days) share one label list and
// one set of postings.
struct LoadedBlock {
  std::unique_ptr<detail::BlockReader> reader;
  std::shared_ptr<const FlatPostings> postings;
  uint64_t samples = 0;
};

// One copy of each label set for the head and all blocks: a series in the
// head and in a day of blocks costs one set, not one per block.
class LabelSets {
 public:
  // The equal set already held, or `labels` now held.
  Labels Intern(Labels labels) {
    std::lock_guard lock(mu_);
    return *sets_.insert(std::move(labels)).first;
  }
  // Forgets the sets held by no one else (their series left the head and
  // every block). A set's only other holders copy it from a holder, so a
  // count of 1 cannot rise meanwhile.
  void Sweep() {
    std::lock_guard lock(mu_);
    boost::unordered::erase_if(sets_, [](const Labels& l) { return l.use_count() == 1; });
  }

 private:
  std::mutex mu_;
  struct Hash {
    size_t operator()(const Labels& l) const noexcept { return l.Hash(); }
  };
  boost::unordered_flat_set<Labels, Hash> sets_;
};

// A block opened: its label sets swapped for the shared ones, and its label
// list and postings those of a recent block in `others` (blocks come in time
// order, and neighbours hold the same series) with the same series, or built.
LoadedBlock Load(std::unique_ptr<detail::BlockReader> reader, LabelSets& sets, const std::vector<LoadedBlock>& others) {
  LoadedBlock b;
  b.reader = std::move(reader);
  b.samples = b.reader->samples();
  const std::vector<Labels>& read = *b.reader->label_list();
  std::vector<Labels> interned;
  interned.reserve(read.size());
  for (const Labels& l : read) interned.push_back(sets.Intern(l));
  constexpr size_t kCandidates = 8;  // not every block: a year of them would make opening quadratic
  for (size_t k = others.size(); k > 0 && others.size() - k < kCandidates; --k) {
    const LoadedBlock& o = others[k - 1];
    if (o.reader && *o.reader->label_list() == interned) {  // interned: equal sets are one block, compared by pointer
      b.reader->ShareLabels(o.reader->label_list());
      b.postings = o.postings;
      return b;
    }
  }
  b.reader->ShareLabels(std::make_shared<const std::vector<Labels>>(std::move(interned)));
  std::map<std::string_view, std::map<std::string_view, std::vector<uint32_t>>> postings;
  for (uint32_t id = 0; id < b.reader->series_count(); ++id) {
    for (LabelView l : b.reader->labels(id).pairs()) postings[l.name][l.value].push_back(id);
  }
  auto flat = std::make_shared<FlatPostings>();
  for (auto& [name, values] : postings) {
    for (auto& [value, ids] : values) {
      flat->entries.push_back({.name = name,
                               .value = value,
                               .begin = static_cast<uint32_t>(flat->ids.size()),
                               .count = static_cast<uint32_t>(ids.size())});
      flat->ids.insert(flat->ids.end(), ids.begin(), ids.end());
    }
  }
  flat->entries.shrink_to_fit();
  flat->ids.shrink_to_fit();
  b.postings = std::move(flat);
  return b;
}

struct Counters {
  std::atomic<uint64_t> samples{0}, wal_bytes{0}, replayed{0}, torn{0};
  std::atomic<uint64_t> appended{0}, out_of_order{0}, duplicates{0}, conflicts{0}, too_old{0}, out_of_range{0};
  std::atomic<uint64_t> compactions{0}, corrupt_chunks{0}, merges{0}, repacks{0};
};

std::string SegmentName(uint32_t seq) { return fmt::format("{:08}", seq); }
// A checkpoint being written: its segment's name and this.
constexpr std::string_view kCheckpointSuffix = ".checkpoint";
// The number of a segment's file name (SegmentName), or nothing for other names.
std::optional<uint32_t> SegmentSeq(std::string_view name) {
  uint32_t seq = 0;
  auto [end, ec] = std::from_chars(name.data(), name.data() + name.size(), seq);
  if (ec != std::errc() || end != name.data() + name.size() || name.size() != 8) return std::nullopt;
  return seq;
}

class TsdbImpl final : public Tsdb {
 public:
  static Result<std::unique_ptr<Tsdb>> Open(const TsdbOptions& options);

  Result<AppendResult> Append(std::span<const SeriesSamples> batch) override;
  uint64_t Ref(const Labels& labels) override;
  Result<AppendResult> AppendRefs(std::span<const RefSamples> batch, std::vector<size_t>* unknown) override;
  Result<std::vector<SeriesSamples>> Select(std::span<const Matcher> matchers, int64_t mint,
                                            int64_t maxt) override;
  Result<std::vector<Labels>> Series(std::span<const Matcher> matchers, int64_t mint, int64_t maxt) override;
  std::vector<std::string> LabelNames() override;
  std::vector<std::string> LabelValues(std::string_view name) override;
  Status Compact() override;
  TsdbStats stats() override;

 private:
  Status LoadBlocks();
  Status Replay();
  // Writes [start, end) of the head as a block, appends going on (their
  // floor already past `end`), then drops the range from the head with
  // appends held.
  Status CutBlock(int64_t start, int64_t end);
  // The cuts Compact() makes, then the log's checkpoint. compact_mu_ held.
  Status CutHead();
  // Merges finished windows of blocks (see Blocks in tsdb.h). compact_mu_ held.
  Status MergeBlocks();
  // Frees append scratch a burst left, and repacks the chunk pool when it
  // is worth it (Compact()'s last step, whatever the cut did).
  void ReleaseMemory();
  Status MergeWindow(int64_t start, int64_t end, const std::vector<const detail::BlockReader*>& sources);
  // A new segment holding the head as it is (its series and samples), then
  // the older segments removed. compact_mu_ held; appends go on meanwhile.
  Status Checkpoint();
  void ApplyRetention();
  Status OpenSegment(uint32_t seq);
  Status WriteWal(ByteView record);
  // The series with these labels, or null. mu_ held (either way).
  MemSeries* FindLocked(const Labels& labels) const;
  // One entry of an append: an existing series (found) or one being created.
  struct Target {
    MemSeries* found = nullptr;
    uint64_t ref = 0;
    std::span<const Sample> samples;
  };
  // The order rule, the log, then the head. append_mu_ held.
  Result<AppendResult> AppendTargets(std::span<const Target> targets, std::vector<WalSeries>& created, size_t total);
  // Adds a series under `ref`. mu_ held exclusively.
  MemSeries* InsertLocked(uint64_t ref, Labels labels);
  // The series's ref out of the postings of its labels (those it is in). mu_ held.
  void RemovePostingsLocked(const MemSeries& s) noexcept;
  // The head series matching every matcher. mu_ held shared.
  Result<std::vector<MemSeries*>> MatchLocked(std::span<const Matcher> matchers) const;
  // Per matching series (blocks, then the head), its samples in [mint,
  // maxt], in time order. mu_ held shared.
  Result<std::map<Labels, std::vector<Sample>>> CollectLocked(std::span<const Matcher> matchers, int64_t mint,
                                                             int64_t maxt, bool first_only);

  TsdbOptions options_;
  std::unique_ptr<Env> own_env_;
  Env* env_ = nullptr;
  std::string wal_dir_;
  std::string blocks_dir_;

  std::mutex compact_mu_;  // one Compact() at a time; blocks_ changes only under it
  std::set<std::pair<int64_t, int64_t>> failed_merges_;  // (start, range) of merges that failed; compact_mu_
  std::mutex merge_errors_mu_;
  std::vector<std::string> merge_errors_;   // why; merge_errors_mu_
  std::mutex append_mu_;  // appends and the log
  // Appends refuse samples before this: head_mint_, or the end of a range
  // being cut into a block. append_mu_.
  int64_t append_floor_ = INT64_MIN;
  struct NewestSlot {
    uint64_t ref = 0;  // 0 = empty (refs start at 1)
    int64_t t = 0;
    uint64_t bits = 0;
  };
  std::vector<NewestSlot> newest_;  // Append's scratch table; append_mu_
  // Append's other scratch, reused so that a batch's worth of memory is not
  // allocated and freed per call (holes the head's chunks would pin). append_mu_.
  std::vector<WalSample> accepted_;
  Buffer wal_record_;
  std::vector<Target> targets_;
  // The largest batch (samples) since the last Compact(), which frees the
  // scratch above when it holds more than twice that: a burst's worth does
  // not stay for good. append_mu_.
  size_t append_peak_ = 0;
  std::unique_ptr<File> wal_;
  uint32_t wal_seq_ = 0;
  uint64_t wal_off_ = 0;
  std::atomic<uint64_t> wal_segments_{0};

  mutable std::shared_mutex mu_;  // the maps below
  SeriesTable series_;
  // Closed head chunks on disk (data_dir/chunks_head); null with an
  // in-memory Env. Written and released under append_mu_.
  std::unique_ptr<detail::HeadChunkFiles> head_files_;
  Postings postings_;  // of the head: refs
  uint64_t next_ref_ = 1;
  std::vector<LoadedBlock> blocks_;  // by time
  std::vector<std::string> corrupt_blocks_;
  LabelSets label_sets_;  // its own lock
  // Samples before this are in blocks (or dropped): the head starts here.
  int64_t head_mint_ = INT64_MIN;
  std::atomic<int64_t> head_maxt_{INT64_MIN};  // the newest sample appended
  std::atomic<int64_t> head_first_{INT64_MAX};  // the oldest sample in the head (an estimate after cuts)

  Counters counters_;
  std::atomic<uint64_t> compacting_{0};  // 1 while Compact() runs
};

Result<std::unique_ptr<Tsdb>> TsdbImpl::Open(const TsdbOptions& options) {
  if (options.data_dir.empty()) return InvalidArgument("tsdb: data_dir is required");
  std::unique_ptr<TsdbImpl> db(new TsdbImpl());
  db->options_ = options;
  db->env_ = options.env;
  if (db->env_ == nullptr) {
    QCLOUD_ASSIGN_OR_RETURN(db->own_env_, OpenPosixEnv());
    db->env_ = db->own_env_.get();
  }
  // Up to 2^50 ms (35,000 years): with timestamps within 2^62 ms, a range's
  // start plus 1.5 durations stays an int64.
  if (options.block_duration.count() <= 0 || options.block_duration.count() > (int64_t{1} << 50)) {
    return InvalidArgument("tsdb: block_duration must be positive and at most 2^50 ms");
  }
  // Longer than any two timestamps apart is forever (milliseconds::max()
  // included): the newest minus it stays an int64.
  db->options_.retention = std::min(options.retention, std::chrono::milliseconds(kMaxTimestamp));
  db->wal_dir_ = JoinPath(options.data_dir, "wal");
  db->blocks_dir_ = JoinPath(options.data_dir, "blocks");
  QCLOUD_RETURN_IF_ERROR(db->env_->CreateDirs(db->wal_dir_));
  QCLOUD_RETURN_IF_ERROR(db->env_->CreateDirs(db->blocks_dir_));
  QCLOUD_RETURN_IF_ERROR(db->LoadBlocks());
  db->append_floor_ = db->head_mint_;
  QCLOUD_ASSIGN_OR_RETURN(db->head_files_,
                          detail::HeadChunkFiles::Open(*db->env_, JoinPath(options.data_dir, "chunks_head")));
  QCLOUD_RETURN_IF_ERROR(db->Replay());
  return std::unique_ptr<Tsdb>(std::move(db));
}

Status TsdbImpl::OpenSegment(uint32_t seq) {
  const std::string path = JoinPath(wal_dir_, SegmentName(seq));
  QCLOUD_ASSIGN_OR_RETURN(wal_, env_->OpenFile(path, OpenMode::kTruncate));
  QCLOUD_RETURN_IF_ERROR(env_->SyncDir(wal_dir_));
  wal_seq_ = seq;
  wal_off_ = 0;
  wal_segments_.fetch_add(1, std::memory_order_relaxed);
  return Status::Ok();
}

Status TsdbImpl::Replay() {
  QCLOUD_ASSIGN_OR_RETURN(std::vector<std::string> names, env_->ListDir(wal_dir_));
  std::vector<uint32_t> seqs;
  for (const std::string& n : names) {
    if (n.ends_with(kCheckpointSuffix)) {  // a checkpoint a crash cut short: the segments before it stand
      QCLOUD_RETURN_IF_ERROR(env_->RemoveFile(JoinPath(wal_dir_, n)));
      continue;
    }
    if (std::optional<uint32_t> seq = SegmentSeq(n)) seqs.push_back(*seq);
  }
  std::sort(seqs.begin(), seqs.end());
  std::unique_lock lock(mu_);
  auto replay_one = [this](MemSeries& series, int64_t t, double v) {
    // (A log of an older build may hold timestamps out of range: skipped.)
    if (t <= series.MaxT() || t < head_mint_ || t < -kMaxTimestamp || t > kMaxTimestamp) return;
    series.Add(t, v, head_files_.get(), options_.block_duration.count());
    if (t > head_maxt_.load(std::memory_order_relaxed)) head_maxt_.store(t, std::memory_order_relaxed);
    if (t < head_first_.load(std::memory_order_relaxed)) head_first_.store(t, std::memory_order_relaxed);
    Bump(counters_.samples);
    Bump(counters_.replayed);
  };
  // A label set under a second ref (a cut dropped the series and a later
  // append made it again before the checkpoint landed): its records go to
  // the series the set has.
  std::unordered_map<uint64_t, MemSeries*> aliases;
  auto find_ref = [&](uint64_t ref) -> MemSeries* {
    if (MemSeries* m = series_.Find(ref)) return m;
    auto it = aliases.find(ref);
    return it == aliases.end() ? nullptr : it->second;
  };
  bool cut = false;
  for (uint32_t seq : seqs) {
    const std::string path = JoinPath(wal_dir_, SegmentName(seq));
    if (cut) {  // after a torn record: nothing here was acknowledged after it
      QCLOUD_ASSIGN_OR_RETURN(uint64_t size, env_->FileSize(path));
      Bump(counters_.torn, size);
      QCLOUD_RETURN_IF_ERROR(env_->RemoveFile(path));
      continue;
    }
    QCLOUD_ASSIGN_OR_RETURN(std::string data,
                            ReadFileToString(*env_, path, options_.wal_segment_bytes + detail::kMaxRecordBytes * 2));
    ByteView rest(data);
    size_t good = 0;
    while (!rest.empty()) {
      Result<detail::Record> rec = detail::DecodeRecord(rest);
      if (!rec.ok()) {
        cut = true;
        break;
      }
      if (rec->type == detail::kRecordSeries) {
        auto series = detail::DecodeSeries(rec->payload);
        if (!series.ok()) {
          cut = true;
          break;
        }
        for (WalSeries& s : *series) {
          if (s.ref == 0 || find_ref(s.ref) != nullptr) continue;
          if (MemSeries* same = series_.Find(s.labels)) {
            aliases.emplace(s.ref, same);
          } else {
            InsertLocked(s.ref, std::move(s.labels));
          }
          next_ref_ = std::max(next_ref_, s.ref + 1);
        }
      } else if (rec->type == detail::kRecordSamples) {
        auto samples = detail::DecodeSamples(rec->payload);
        if (!samples.ok()) {
          cut = true;
          break;
        }
        for (const WalSample& s : *samples) {
          if (MemSeries* m = find_ref(s.ref)) replay_one(*m, s.t, s.v);
        }
      } else if (rec->type == detail::kRecordChunks || rec->type == detail::kRecordDecimalChunks ||
                 rec->type == detail::kRecordGorillaChunks) {
        auto chunks = detail::DecodeChunks(rec->payload);
        if (!chunks.ok()) {
          cut = true;
          break;
        }
        for (const detail::WalChunk& c : *chunks) {
          MemSeries* m = find_ref(c.ref);
          if (m == nullptr) continue;
          detail::ChunkIterator x(ByteView(c.bytes.data(), c.bytes.size()));
          while (x.Next()) replay_one(*m, x.t(), x.v());
          // The record's checksum held, so this is no torn write: count it, go on.
          if (!x.status().ok()) Bump(counters_.corrupt_chunks);
        }
      }  // other types: from a newer version, skipped
      good += rec->size;
      rest = rest.subview(rec->size, rest.size() - rec->size);
    }
    Bump(counters_.wal_bytes, good);
    if (cut) {
      Bump(counters_.torn, data.size() - good);
      QCLOUD_ASSIGN_OR_RETURN(auto f, env_->OpenFile(path, OpenMode::kReadWrite));
      QCLOUD_RETURN_IF_ERROR(f->Truncate(good));
      QCLOUD_RETURN_IF_ERROR(f->Sync());
    }
    wal_segments_.fetch_add(1, std::memory_order_relaxed);
  }
  lock.unlock();
  std::lock_guard append(append_mu_);
  return OpenSegment(seqs.empty() ? 1 : seqs.back() + 1);
}

MemSeries* TsdbImpl::FindLocked(const Labels& labels) const {
  return series_.Find(labels);
}

void TsdbImpl::RemovePostingsLocked(const MemSeries& s) noexcept {
  for (LabelView l : s.labels.pairs()) {
    auto name = postings_.find(l.name);
    if (name == postings_.end()) continue;
    auto value = name->second.find(l.value);
    if (value == name->second.end()) continue;
    std::erase(value->second, s.ref);
    if (value->second.empty()) name->second.erase(value);
    if (name->second.empty()) postings_.erase(name);
  }
}

MemSeries* TsdbImpl::InsertLocked(uint64_t ref, Labels labels) {
  auto s = std::make_unique<MemSeries>();
  s->ref = ref;
  s->labels = label_sets_.Intern(std::move(labels));
  MemSeries* raw = series_.Insert(std::move(s));
  try {
    for (LabelView l : raw->labels.pairs()) {
      auto name = postings_.find(l.name);
      if (name == postings_.end()) name = postings_.try_emplace(std::string(l.name)).first;
      auto value = name->second.find(l.value);
      if (value == name->second.end()) value = name->second.try_emplace(std::string(l.value)).first;
      std::vector<uint64_t>& refs = value->second;
      // Refs arrive ascending, except at replay after a gap: keep the order.
      refs.insert(std::upper_bound(refs.begin(), refs.end(), ref), ref);
    }
  } catch (...) {  // out of memory: the series goes, and the postings it got
    RemovePostingsLocked(*raw);
    series_.Erase(raw);
    throw;
  }
  return raw;
}

Status TsdbImpl::WriteWal(ByteView record) {
  if (wal_off_ > 0 && wal_off_ + record.size() > options_.wal_segment_bytes) {
    QCLOUD_RETURN_IF_ERROR(wal_->Sync());  // the old segment is complete on disk
    QCLOUD_RETURN_IF_ERROR(OpenSegment(wal_seq_ + 1));
  }
  Status st = wal_->WriteAt(wal_off_, record);
  if (st.ok() && options_.sync_wal) st = wal_->Sync();
  if (!st.ok()) {
    (void)wal_->Truncate(wal_off_);  // no half record for the next one to follow
    return st;
  }
  wal_off_ += record.size();
  Bump(counters_.wal_bytes, record.size());
  return Status::Ok();
}

Result<AppendResult> TsdbImpl::Append(std::span<const SeriesSamples> batch) {
  size_t total = 0;
  for (const SeriesSamples& s : batch) total += s.samples.size();
  if (total > options_.max_batch_samples) {
    return InvalidArgument(fmt::format("{} samples in one append: at most {}", total, options_.max_batch_samples));
  }
  std::lock_guard append(append_mu_);
  // Each entry's series: found, or to be created (shared by equal entries).
  std::vector<MemSeries*> found(batch.size(), nullptr);
  std::vector<int> pending(batch.size(), -1);
  std::vector<WalSeries> created;
  {
    std::shared_lock lock(mu_);
    std::unordered_map<uint64_t, std::vector<int>> new_by_hash;
    for (size_t i = 0; i < batch.size(); ++i) {
      if (batch[i].samples.empty()) continue;
      found[i] = FindLocked(batch[i].labels);
      if (found[i] != nullptr) continue;
      if (batch[i].labels.empty()) return InvalidArgument("a series needs at least one label");
      auto& same = new_by_hash[batch[i].labels.Hash()];
      for (int c : same) {
        if (created[static_cast<size_t>(c)].labels == batch[i].labels) pending[i] = c;
      }
      if (pending[i] < 0) {
        pending[i] = static_cast<int>(created.size());
        same.push_back(pending[i]);
        created.push_back({.ref = next_ref_ + created.size(), .labels = batch[i].labels});
      }
    }
    if (series_.size() + created.size() > options_.max_series) {
      return Status(Errc::kResourceExhausted,
                    fmt::format("{} series: at most {} (max_series)", series_.size() + created.size(),
                                options_.max_series));
    }
  }
  std::vector<Target>& targets = targets_;
  targets.clear();
  targets.reserve(batch.size());
  for (size_t i = 0; i < batch.size(); ++i) {
    if (batch[i].samples.empty()) continue;
    targets.push_back({.found = found[i],
                       .ref = found[i] ? found[i]->ref : created[static_cast<size_t>(pending[i])].ref,
                       .samples = batch[i].samples});
  }
  return AppendTargets(targets, created, total);
}

uint64_t TsdbImpl::Ref(const Labels& labels) {
  std::shared_lock lock(mu_);
  const MemSeries* s = FindLocked(labels);
  return s != nullptr ? s->ref : 0;
}

Result<AppendResult> TsdbImpl::AppendRefs(std::span<const RefSamples> batch, std::vector<size_t>* unknown) {
  size_t total = 0;
  for (const RefSamples& s : batch) total += s.samples.size();
  if (total > options_.max_batch_samples) {
    return InvalidArgument(fmt::format("{} samples in one append: at most {}", total, options_.max_batch_samples));
  }
  std::lock_guard append(append_mu_);
  std::vector<Target>& targets = targets_;
  targets.clear();
  targets.reserve(batch.size());
  {
    std::shared_lock lock(mu_);
    for (size_t i = 0; i < batch.size(); ++i) {
      MemSeries* found = series_.Find(batch[i].ref);
      if (found == nullptr) {
        if (unknown != nullptr) unknown->push_back(i);
        continue;
      }
      if (!batch[i].samples.empty()) targets.push_back({.found = found, .ref = batch[i].ref, .samples = batch[i].samples});
    }
  }
  std::vector<WalSeries> none;
  return AppendTargets(targets, none, total);
}

Result<AppendResult> TsdbImpl::AppendTargets(std::span<const Target> targets, std::vector<WalSeries>& created,
                                             size_t total) {
  append_peak_ = std::max(append_peak_, total);
  AppendResult res;
  // The order rule, per series, against its newest sample so far (in the
  // store or earlier in this batch): an open-addressing table by ref, kept
  // between calls (append_mu_ held), so a batch allocates nothing here.
  size_t slots = 16;
  while (slots < targets.size() * 2) slots *= 2;
  if (newest_.size() < slots) newest_.resize(slots);
  std::fill_n(newest_.begin(), slots, NewestSlot{});
  std::vector<WalSample>& accepted = accepted_;
  accepted.clear();
  accepted.reserve(total);
  for (const Target& target : targets) {
    const uint64_t ref = target.ref;
    size_t at = (ref * 0x9E3779B97F4A7C15ULL >> 20) & (slots - 1);
    while (newest_[at].ref != 0 && newest_[at].ref != ref) at = (at + 1) & (slots - 1);
    NewestSlot& n = newest_[at];
    if (n.ref == 0) {
      n.ref = ref;
      n.t = target.found ? target.found->MaxT() : INT64_MIN;
      n.bits = target.found ? target.found->LastBits() : 0;
    }
    for (const Sample& s : target.samples) {
      const uint64_t bits = std::bit_cast<uint64_t>(s.v);
      if (s.t < -kMaxTimestamp || s.t > kMaxTimestamp) {
        ++res.out_of_range;
      } else if (s.t < append_floor_) {
        ++res.too_old;
      } else if (s.t < n.t) {
        ++res.out_of_order;
      } else if (s.t == n.t) {
        if (bits == n.bits) {
          ++res.duplicates;
        } else {
          ++res.conflicts;
        }
      } else {
        n.t = s.t;
        n.bits = bits;
        accepted.push_back({.ref = ref, .t = s.t, .v = s.v});
      }
    }
  }
  if (!created.empty() || !accepted.empty()) {
    Buffer& record = wal_record_;
    record.Clear();
    if (!created.empty()) detail::EncodeSeriesRecord(created, record);
    if (!accepted.empty()) detail::EncodeSamplesRecord(accepted, record);
    QCLOUD_RETURN_IF_ERROR(WriteWal(record.readable()));
  }
  // Logged: now visible.
  if (!created.empty()) {
    std::unique_lock lock(mu_);
    for (WalSeries& s : created) InsertLocked(s.ref, std::move(s.labels));
    next_ref_ += created.size();
  }
  {
    std::shared_lock lock(mu_);
    MemSeries* last = nullptr;
    const int64_t range = options_.block_duration.count();
    int64_t head_max = head_maxt_.load(std::memory_order_relaxed);
    int64_t head_min = head_first_.load(std::memory_order_relaxed);
    for (const WalSample& s : accepted) {
      if (last == nullptr || last->ref != s.ref) last = &series_.At(s.ref);
      last->Add(s.t, s.v, head_files_.get(), range);
      head_max = std::max(head_max, s.t);
      head_min = std::min(head_min, s.t);
    }
    head_maxt_.store(head_max, std::memory_order_relaxed);
    head_first_.store(head_min, std::memory_order_relaxed);
  }
  res.appended = accepted.size();
  res.new_series = created.size();
  Bump(counters_.samples, res.appended);
  Bump(counters_.appended, res.appended);
  Bump(counters_.out_of_order, res.out_of_order);
  Bump(counters_.duplicates, res.duplicates);
  Bump(counters_.conflicts, res.conflicts);
  Bump(counters_.too_old, res.too_old);
  Bump(counters_.out_of_range, res.out_of_range);
  return res;
}

Result<std::vector<MemSeries*>> TsdbImpl::MatchLocked(std::span<const Matcher> matchers) const {
  QCLOUD_ASSIGN_OR_RETURN(std::vector<uint64_t> refs, MatchPostings(postings_, matchers, [&](uint64_t ref) -> const Labels& {
                            return series_.At(ref).labels;
                          }));
  std::vector<MemSeries*> out;
  out.reserve(refs.size());
  for (uint64_t ref : refs) out.push_back(&series_.At(ref));
  return out;
}

Result<std::map<Labels, std::vector<Sample>>> TsdbImpl::CollectLocked(std::span<const Matcher> matchers,
                                                                     int64_t mint, int64_t maxt,
                                                                     bool first_only) {
  std::map<Labels, std::vector<Sample>> out;
  for (const LoadedBlock& b : blocks_) {
    if (b.reader->maxt() <= mint || b.reader->mint() > maxt) continue;
    QCLOUD_ASSIGN_OR_RETURN(std::vector<uint64_t> ids,
                            MatchPostings(*b.postings, matchers, [&](uint64_t id) -> const Labels& {
                              return b.reader->labels(id);
                            }));
    for (uint64_t id : ids) {
      // first_only: a series found in an earlier block is not read again,
      // and of one found here one sample is kept (the answer is its labels).
      if (first_only) {
        auto it = out.find(b.reader->labels(id));
        if (it != out.end() && !it->second.empty()) continue;
      }
      std::vector<Sample>* dst = nullptr;
      for (const detail::ChunkRef& ref : b.reader->chunks(id)) {
        if (ref.maxt < mint || ref.mint > maxt) continue;
        if (!dst) dst = &out[b.reader->labels(id)];
        const size_t before = dst->size();
        if (!b.reader->ReadSamples(ref, mint, maxt, *dst).ok()) {
          dst->resize(before);
          Bump(counters_.corrupt_chunks);  // skipped; the rest answers
        }
        if (first_only && !dst->empty()) {
          dst->resize(1);
          break;
        }
      }
    }
  }
  QCLOUD_ASSIGN_OR_RETURN(std::vector<MemSeries*> head, MatchLocked(matchers));
  for (MemSeries* s : head) {
    if (first_only) {
      auto it = out.find(s->labels);
      if (it != out.end() && !it->second.empty()) continue;
      std::vector<Sample> found;
      s->Collect(mint, maxt, found, head_files_.get());
      if (!found.empty()) out[s->labels].push_back(found.front());
      continue;
    }
    s->Collect(mint, maxt, out[s->labels], head_files_.get());
  }
  std::erase_if(out, [](const auto& kv) { return kv.second.empty(); });
  return out;
}

Result<std::vector<SeriesSamples>> TsdbImpl::Select(std::span<const Matcher> matchers, int64_t mint,
                                                    int64_t maxt) {
  std::shared_lock lock(mu_);
  QCLOUD_ASSIGN_OR_RETURN(auto found, CollectLocked(matchers, mint, maxt, false));
  std::vector<SeriesSamples> out;
  out.reserve(found.size());
  for (auto& [labels, samples] : found) out.push_back({labels, std::move(samples)});
  return out;
}

Result<std::vector<Labels>> TsdbImpl::Series(std::span<const Matcher> matchers, int64_t mint, int64_t maxt) {
  std::shared_lock lock(mu_);
  QCLOUD_ASSIGN_OR_RETURN(auto found, CollectLocked(matchers, mint, maxt, true));
  std::vector<Labels> out;
  out.reserve(found.size());
  for (auto& [labels, samples] : found) out.push_back(labels);
  return out;
}

std::vector<std::string> TsdbImpl::LabelNames() {
  std::shared_lock lock(mu_);
  std::set<std::string> names;
  for (const auto& [name, values] : postings_) names.insert(name);
  for (const LoadedBlock& b : blocks_) {
    std::string_view last;
    for (const FlatPostings::Entry& e : b.postings->entries) {
      if (e.name != last) names.emplace(e.name);
      last = e.name;
    }
  }
  return {names.begin(), names.end()};
}

std::vector<std::string> TsdbImpl::LabelValues(std::string_view name) {
  std::shared_lock lock(mu_);
  std::set<std::string> values;
  auto add = [&](const auto& p) { ForEachValue(p, name, [&](std::string_view v, auto) { values.emplace(v); }); };
  add(postings_);
  for (const LoadedBlock& b : blocks_) add(*b.postings);
  return {values.begin(), values.end()};
}

// ---- blocks ----

Status TsdbImpl::LoadBlocks() {
  QCLOUD_ASSIGN_OR_RETURN(std::vector<std::string> names, env_->ListDir(blocks_dir_));
  std::sort(names.begin(), names.end());
  for (const std::string& n : names) {
    const std::string path = JoinPath(blocks_dir_, n);
    if (n.ends_with(".tmp")) {  // a cut that did not finish: its samples are still in the log
      QCLOUD_RETURN_IF_ERROR(env_->RemoveFile(path));
      continue;
    }
    if (!n.ends_with(".qtb")) continue;
    auto reader = detail::BlockReader::Open(*env_, path);
    if (!reader.ok()) {
      corrupt_blocks_.push_back(path + ": " + reader.status().message());
      continue;
    }
    head_mint_ = std::max(head_mint_, (*reader)->maxt());
    blocks_.push_back(Load(std::move(reader).value(), label_sets_, blocks_));
  }
  // A merge that crashed after writing its block but before removing its
  // sources leaves both: the sources (inside another block's range) go.
  std::set<const detail::BlockReader*> inside;
  for (const LoadedBlock& b : blocks_) {
    for (const LoadedBlock& o : blocks_) {
      const bool within = o.reader->mint() <= b.reader->mint() && b.reader->maxt() <= o.reader->maxt();
      const bool same = o.reader->mint() == b.reader->mint() && o.reader->maxt() == b.reader->maxt();
      if (within && !same) inside.insert(b.reader.get());
    }
  }
  std::erase_if(blocks_, [&](const LoadedBlock& b) {
    if (!inside.contains(b.reader.get())) return false;
    (void)env_->RemoveFile(b.reader->path());
    return true;
  });
  std::sort(blocks_.begin(), blocks_.end(),
            [](const LoadedBlock& a, const LoadedBlock& b) { return a.reader->mint() < b.reader->mint(); });
  return Status::Ok();
}

Status TsdbImpl::MergeBlocks() {
  const int64_t d = options_.block_duration.count();
  for (const int64_t range : {3 * d, 12 * d}) {
    if (range > options_.max_block_duration.count() || range > options_.retention.count()) break;
    for (;;) {
      // The first finished window of `range` with two or more blocks, all
      // inside it (and none failed before).
      std::vector<const detail::BlockReader*> sources;
      int64_t start = 0;
      {
        std::shared_lock lock(mu_);
        std::map<int64_t, std::vector<const detail::BlockReader*>> windows;
        for (const LoadedBlock& b : blocks_) {
          const int64_t w = RangeIndex(b.reader->mint(), range);
          if (b.reader->maxt() > (w + 1) * range) continue;  // wider than the window already
          windows[w * range].push_back(b.reader.get());
        }
        for (auto& [w, in] : windows) {
          if (in.size() < 2 || w + range > head_mint_ || failed_merges_.contains({w, range})) continue;
          start = w;
          sources = std::move(in);
          break;
        }
      }
      if (sources.empty()) break;
      Status st = MergeWindow(start, start + range, sources);
      if (!st.ok()) {
        // Left as they are (each still answers); not tried again.
        failed_merges_.insert({start, range});
        std::lock_guard errors(merge_errors_mu_);
        merge_errors_.push_back(st.ToString());
        break;
      }
    }
  }
  return Status::Ok();
}

Status TsdbImpl::MergeWindow(int64_t start, int64_t end, const std::vector<const detail::BlockReader*>& sources) {
  // A k-way merge of the sources' series (each sorted by labels); each
  // series' samples are the sources' in time order (they do not overlap).
  std::vector<size_t> at(sources.size(), 0);
  std::vector<detail::SeriesChunks> out;
  uint64_t samples = 0;
  std::vector<Sample> all;
  ZstdCompressor zstd;  // one context for the block's chunks
  for (;;) {
    const Labels* next = nullptr;
    for (size_t k = 0; k < sources.size(); ++k) {
      if (at[k] < sources[k]->series_count() && (next == nullptr || sources[k]->labels(at[k]) < *next)) {
        next = &sources[k]->labels(at[k]);
      }
    }
    if (next == nullptr) break;
    all.clear();
    const Labels labels = *next;
    for (size_t k = 0; k < sources.size(); ++k) {
      if (at[k] >= sources[k]->series_count() || !(sources[k]->labels(at[k]) == labels)) continue;
      for (const detail::ChunkRef& ref : sources[k]->chunks(at[k])) {
        QCLOUD_RETURN_IF_ERROR(sources[k]->ReadSamples(ref, INT64_MIN, INT64_MAX, all));
      }
      ++at[k];
    }
    std::sort(all.begin(), all.end(), [](const Sample& a, const Sample& b) { return a.t < b.t; });
    all.erase(std::unique(all.begin(), all.end(), [](const Sample& a, const Sample& b) { return a.t == b.t; }),
              all.end());
    if (all.empty()) continue;
    samples += all.size();
    detail::SeriesChunks sc{.labels = labels, .chunks = {}};
    for (size_t i = 0; i < all.size(); i += detail::kMaxBlockChunkSamples) {
      const std::span<const Sample> piece(all.data() + i, std::min(all.size() - i, detail::kMaxBlockChunkSamples));
      sc.chunks.push_back({.mint = piece.front().t, .maxt = piece.back().t, .bytes = detail::EncodeBlockChunk(piece, &zstd)});
    }
    out.push_back(std::move(sc));
  }
  QCLOUD_ASSIGN_OR_RETURN(uint64_t bytes, detail::WriteBlock(*env_, blocks_dir_, start, end, out, samples));
  (void)bytes;
  QCLOUD_ASSIGN_OR_RETURN(auto reader,
                          detail::BlockReader::Open(*env_, JoinPath(blocks_dir_, detail::BlockFileName(start, end))));
  LoadedBlock merged = Load(std::move(reader), label_sets_, blocks_);  // blocks_ changes only under compact_mu_, held
  std::vector<std::string> gone;
  {
    std::unique_lock lock(mu_);
    std::erase_if(blocks_, [&](const LoadedBlock& b) {
      if (std::find(sources.begin(), sources.end(), b.reader.get()) == sources.end()) return false;
      gone.push_back(b.reader->path());
      return true;
    });
    blocks_.push_back(std::move(merged));
    std::sort(blocks_.begin(), blocks_.end(),
              [](const LoadedBlock& a, const LoadedBlock& b) { return a.reader->mint() < b.reader->mint(); });
  }
  for (const std::string& path : gone) (void)env_->RemoveFile(path);
  Bump(counters_.merges);
  return env_->SyncDir(blocks_dir_);
}

Status TsdbImpl::Compact() {
  std::lock_guard compacting(compact_mu_);
  compacting_.store(1, std::memory_order_relaxed);
  struct Done {
    std::atomic<uint64_t>& flag;
    ~Done() { flag.store(0, std::memory_order_relaxed); }
  } done{compacting_};
  Status st = CutHead();
  // Merging reads and writes blocks only: appends go on meanwhile.
  if (st.ok()) st = MergeBlocks();
  if (st.ok()) {
    ApplyRetention();
    label_sets_.Sweep();
  }
  ReleaseMemory();
  return st;
}

void TsdbImpl::ReleaseMemory() {
  {
    std::lock_guard append(append_mu_);
    const size_t peak = append_peak_;
    append_peak_ = 0;
    // Each scratch holds about one entry (or 32 bytes of log) per sample
    // of the largest batch: more than twice the recent peak is a burst's.
    auto over = [peak](size_t have) { return have > 2 * peak + 1024; };
    if (over(accepted_.capacity())) decltype(accepted_)().swap(accepted_);
    if (over(targets_.capacity())) decltype(targets_)().swap(targets_);
    if (over(newest_.size() / 4)) decltype(newest_)().swap(newest_);
    wal_record_.Clear();
    if (over(wal_record_.capacity() / 32)) wal_record_.ShrinkIfIdle(0);
    if (head_files_ != nullptr) head_files_->UnmapPages();
  }
  if (detail::ChunkPoolWorthRepacking()) {
    // Chunks in the emptiest slabs of each class move into the free slots of
    // the others (a copy of what those few slabs hold), and those slabs
    // empty; appends go on.
    detail::ChunkPoolRepack repack;
    std::shared_lock lock(mu_);
    for (MemSeries* s : series_) s->Relocate();
    Bump(counters_.repacks);
  }
}

Status TsdbImpl::CutHead() {
  const int64_t d = options_.block_duration.count();
  bool cut = false;
  for (;;) {
    int64_t start = 0;
    {
      std::lock_guard append(append_mu_);
      const int64_t newest = head_maxt_.load(std::memory_order_relaxed);
      if (newest == INT64_MIN) break;
      start = head_mint_;
      const int64_t first = head_first_.load(std::memory_order_relaxed);
      // From the range of the oldest sample when that is past the head's
      // start: the ranges between hold nothing.
      if (start == INT64_MIN ||
          (first != INT64_MAX && first > start && static_cast<uint64_t>(first) - static_cast<uint64_t>(start) >= static_cast<uint64_t>(d))) {
        start = RangeIndex(first, d) * d;
      }
      if (newest < start + d + d / 2) break;  // the range may still get samples
      // The range is closed from here: appends refuse samples before its
      // end (too_old), so the block can be written while they go on.
      append_floor_ = std::max(append_floor_, start + d);
    }
    QCLOUD_RETURN_IF_ERROR(CutBlock(start, start + d));
    cut = true;
  }
  if (cut) QCLOUD_RETURN_IF_ERROR(Checkpoint());
  return Status::Ok();
}

Status TsdbImpl::CutBlock(int64_t start, int64_t end) {
  std::vector<detail::SeriesChunks> series;
  uint64_t samples = 0;
  ZstdCompressor zstd;  // one context for the block's chunks
  {
    std::shared_lock lock(mu_);
    for (const MemSeries* s : series_) {
      std::vector<Sample> part;
      s->Collect(start, end - 1, part, head_files_.get());
      if (part.empty()) continue;
      samples += part.size();
      detail::SeriesChunks sc{.labels = s->labels, .chunks = {}};
      for (size_t i = 0; i < part.size(); i += detail::kMaxBlockChunkSamples) {
        const size_t n = std::min(part.size() - i, detail::kMaxBlockChunkSamples);
        const std::span<const Sample> piece(part.data() + i, n);
        sc.chunks.push_back({.mint = piece.front().t, .maxt = piece.back().t, .bytes = detail::EncodeBlockChunk(piece, &zstd)});
      }
      series.push_back(std::move(sc));
    }
  }
  std::sort(series.begin(), series.end(), [](const auto& a, const auto& b) { return a.labels < b.labels; });
  LoadedBlock block;
  if (!series.empty()) {
    QCLOUD_ASSIGN_OR_RETURN(uint64_t bytes, detail::WriteBlock(*env_, blocks_dir_, start, end, series, samples));
    (void)bytes;
    QCLOUD_ASSIGN_OR_RETURN(auto reader,
                            detail::BlockReader::Open(*env_, JoinPath(blocks_dir_, detail::BlockFileName(start, end))));
    block = Load(std::move(reader), label_sets_, blocks_);  // blocks_ changes only under compact_mu_, held
  }
  // Now the block answers for [start, end): the head lets go of it (with
  // appends held: they keep pointers to series, some of which go).
  std::lock_guard append(append_mu_);
  std::unique_lock lock(mu_);
  if (block.reader) blocks_.push_back(std::move(block));
  head_mint_ = end;
  std::vector<MemSeries*> gone;
  int64_t oldest = INT64_MAX;  // the oldest sample left
  for (MemSeries* s : series_) {
    s->DropBefore(end, head_files_.get());
    const int64_t first = s->MinT();
    if (first == INT64_MAX) gone.push_back(s);  // empty
    oldest = std::min(oldest, first);
  }
  // Series with nothing left in the head leave it (their refs are not
  // reused; the log's checkpoint forgets them).
  for (MemSeries* s : gone) {
    RemovePostingsLocked(*s);
    series_.Erase(s);
  }
  counters_.samples.fetch_sub(std::min(samples, counters_.samples.load()), std::memory_order_relaxed);
  // The next cut starts at the oldest sample's range, not at the next one
  // (samples far apart would otherwise cost a pass over the head for every
  // empty range between them).
  head_first_.store(std::max(oldest, end), std::memory_order_relaxed);
  Bump(counters_.compactions);
  return Status::Ok();
}

Status TsdbImpl::Checkpoint() {
  // The checkpoint takes the number after the live segment, appends go on
  // in the one after it: replay reads the old segments, the checkpoint,
  // then what came since, and skips what it has already (a series known,
  // a sample not after the series' newest).
  uint32_t seq = 0;
  {
    std::lock_guard append(append_mu_);
    QCLOUD_RETURN_IF_ERROR(wal_->Sync());
    seq = wal_seq_ + 1;
    QCLOUD_RETURN_IF_ERROR(OpenSegment(wal_seq_ + 2));
  }
  // Written under another name and renamed once synced: a segment named
  // so is whole (a crash meanwhile leaves the old segments, still valid).
  const std::string path = JoinPath(wal_dir_, SegmentName(seq));
  const std::string tmp = path + std::string(kCheckpointSuffix);
  QCLOUD_ASSIGN_OR_RETURN(std::unique_ptr<File> file, env_->OpenFile(tmp, OpenMode::kTruncate));
  // The series now in the head. They stay while this runs: series leave
  // the head only in CutBlock, under compact_mu_, which the caller holds.
  std::vector<std::pair<uint64_t, const MemSeries*>> head;
  std::vector<WalSeries> labels;
  {
    std::shared_lock lock(mu_);
    head.reserve(series_.size());
    for (MemSeries* s : series_) head.emplace_back(s->ref, s);
  }
  std::sort(head.begin(), head.end());
  // Streamed in records of bounded size, so a big head costs no big
  // buffer: the series, then each series' chunks as they are (type 3).
  constexpr size_t kFlushBytes = size_t{4} << 20;
  Buffer record;
  uint64_t off = 0;
  auto flush = [&]() -> Status {
    if (record.size() == 0) return Status::Ok();
    QCLOUD_RETURN_IF_ERROR(file->WriteAt(off, record.readable()));
    off += record.size();
    record.Clear();
    return Status::Ok();
  };
  for (const auto& [ref, s] : head) {
    labels.push_back({.ref = ref, .labels = s->labels});
    if (labels.size() == 10000) {
      detail::EncodeSeriesRecord(labels, record);
      labels.clear();
      if (record.size() >= kFlushBytes) QCLOUD_RETURN_IF_ERROR(flush());
    }
  }
  if (!labels.empty()) detail::EncodeSeriesRecord(labels, record);
  std::vector<detail::WalChunk> chunks;
  std::vector<std::vector<uint8_t>> mine;
  size_t pending = 0;
  for (const auto& [ref, s] : head) {
    mine.clear();
    s->ChunkBytes(mine, head_files_.get());  // under the series' lock: appends to it wait this long only
    for (std::vector<uint8_t>& b : mine) {
      pending += b.size();
      chunks.push_back({.ref = ref, .bytes = std::move(b)});
    }
    if (pending >= kFlushBytes) {
      detail::EncodeChunksRecord(chunks, record);
      chunks.clear();
      pending = 0;
      QCLOUD_RETURN_IF_ERROR(flush());
    }
  }
  if (!chunks.empty()) detail::EncodeChunksRecord(chunks, record);
  QCLOUD_RETURN_IF_ERROR(flush());
  QCLOUD_RETURN_IF_ERROR(file->Sync());
  file.reset();
  QCLOUD_RETURN_IF_ERROR(env_->RenameFile(tmp, path));
  QCLOUD_RETURN_IF_ERROR(env_->SyncDir(wal_dir_));
  wal_segments_.fetch_add(1, std::memory_order_relaxed);
  Bump(counters_.wal_bytes, off);
  // The checkpoint holds all the head had: the older segments can go.
  QCLOUD_ASSIGN_OR_RETURN(std::vector<std::string> names, env_->ListDir(wal_dir_));
  for (const std::string& n : names) {
    if (std::optional<uint32_t> old = SegmentSeq(n); old && *old < seq) {
      QCLOUD_RETURN_IF_ERROR(env_->RemoveFile(JoinPath(wal_dir_, n)));
      wal_segments_.fetch_sub(1, std::memory_order_relaxed);
    }
  }
  return env_->SyncDir(wal_dir_);
}

void TsdbImpl::ApplyRetention() {
  int64_t newest = head_maxt_.load(std::memory_order_relaxed);
  std::unique_lock lock(mu_);
  for (const LoadedBlock& b : blocks_) newest = std::max(newest, b.reader->maxt() - 1);
  if (newest == INT64_MIN) return;
  const int64_t keep_from = newest - options_.retention.count();
  std::erase_if(blocks_, [&](LoadedBlock& b) {
    if (b.reader->maxt() > keep_from) return false;
    (void)env_->RemoveFile(b.reader->path());
    return true;
  });
}

TsdbStats TsdbImpl::stats() {
  TsdbStats st;
  {
    std::shared_lock lock(mu_);
    st.series = series_.size();
    for (const MemSeries* s : series_) {
      std::lock_guard slock(s->mu());
      st.chunks += s->chunks.size();
      for (const Chunk& c : s->chunks) st.chunk_bytes += c.at.file != 0 ? c.len : c.bytes.size();
      st.chunk_bytes += s->open.bytes().size();
    }
  }
  {
    std::lock_guard append(append_mu_);
    st.wal_segments = wal_segments_.load(std::memory_order_relaxed);
  }
  const detail::ChunkPoolStats pool = detail::GetChunkPoolStats();
  st.chunk_memory_bytes = pool.resident_bytes;
  st.chunk_memory_used_bytes = pool.allocated_bytes;
  st.chunk_repacks = counters_.repacks.load(std::memory_order_relaxed);
  const auto r = std::memory_order_relaxed;
  st.samples = counters_.samples.load(r);
  st.wal_bytes = counters_.wal_bytes.load(r);
  st.replayed_samples = counters_.replayed.load(r);
  st.wal_torn_bytes = counters_.torn.load(r);
  st.appended = counters_.appended.load(r);
  st.out_of_order = counters_.out_of_order.load(r);
  st.duplicates = counters_.duplicates.load(r);
  st.conflicts = counters_.conflicts.load(r);
  st.too_old = counters_.too_old.load(r);
  st.out_of_range = counters_.out_of_range.load(r);
  st.compactions = counters_.compactions.load(r);
  st.merges = counters_.merges.load(r);
  st.compacting = compacting_.load(r);
  {
    std::lock_guard lock(merge_errors_mu_);
    st.merge_errors = merge_errors_;
  }
  st.corrupt_chunks = counters_.corrupt_chunks.load(r);
  {
    std::shared_lock lock(mu_);
    st.blocks = blocks_.size();
    for (const LoadedBlock& b : blocks_) {
      st.block_bytes += b.reader->size();
      st.block_samples += b.samples;
    }
    st.corrupt_blocks = corrupt_blocks_;
  }
  return st;
}

}  // namespace

Result<std::unique_ptr<Tsdb>> Tsdb::Open(const TsdbOptions& options) { return TsdbImpl::Open(options); }

}  // namespace qcloud::monitor
