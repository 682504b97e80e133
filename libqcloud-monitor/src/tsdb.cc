#include "qcloud/monitor/tsdb.h"

#include <algorithm>
#include <atomic>
#include <bit>
#include <charconv>
#include <map>
#include <mutex>
#include <shared_mutex>
#include <unordered_map>

#include <fmt/format.h>

#include "monitor/chunk.h"
#include "monitor/wal.h"

namespace qcloud::monitor {

bool Sample::operator==(const Sample& o) const noexcept {
  return t == o.t && std::bit_cast<uint64_t>(v) == std::bit_cast<uint64_t>(o.v);
}

namespace {

using detail::WalSample;
using detail::WalSeries;

void Bump(std::atomic<uint64_t>& c, uint64_t n = 1) { c.fetch_add(n, std::memory_order_relaxed); }

struct Chunk {
  int64_t mint = 0, maxt = 0;
  std::vector<uint8_t> bytes;
};

// One series in memory: closed chunks and the open one. `maxt` and
// `last_bits` are read and written by appenders only (serialized).
struct MemSeries {
  uint64_t ref = 0;
  Labels labels;
  int64_t maxt = INT64_MIN;
  uint64_t last_bits = 0;

  mutable std::mutex mu;  // chunks, open, open_mint
  std::vector<Chunk> chunks;
  detail::XorAppender open;
  int64_t open_mint = 0;

  void Add(int64_t t, double v) {
    std::lock_guard lock(mu);
    if (open.samples() == detail::kMaxChunkSamples) {
      chunks.push_back({.mint = open_mint, .maxt = maxt, .bytes = open.bytes()});
      open = detail::XorAppender();
    }
    if (open.samples() == 0) open_mint = t;
    open.Append(t, v);
    maxt = t;
    last_bits = std::bit_cast<uint64_t>(v);
  }

  void Collect(int64_t mint, int64_t maxt_q, std::vector<Sample>& out) const {
    std::lock_guard lock(mu);
    auto scan = [&](ByteView bytes) {
      detail::XorIterator it(bytes);
      while (it.Next()) {
        if (it.t() > maxt_q) break;
        if (it.t() >= mint) out.push_back({it.t(), it.v()});
      }
    };
    for (const Chunk& c : chunks) {
      if (c.maxt < mint || c.mint > maxt_q) continue;
      scan(ByteView(reinterpret_cast<const std::byte*>(c.bytes.data()), c.bytes.size()));
    }
    if (open.samples() > 0 && open_mint <= maxt_q) {
      const auto& b = open.bytes();
      scan(ByteView(reinterpret_cast<const std::byte*>(b.data()), b.size()));
    }
  }

  bool HasSampleIn(int64_t mint, int64_t maxt_q) const {
    std::vector<Sample> s;
    Collect(mint, maxt_q, s);
    return !s.empty();
  }
};

struct Counters {
  std::atomic<uint64_t> samples{0}, wal_bytes{0}, replayed{0}, torn{0};
  std::atomic<uint64_t> appended{0}, out_of_order{0}, duplicates{0}, conflicts{0};
};

std::string SegmentName(uint32_t seq) { return fmt::format("{:08}", seq); }

class TsdbImpl final : public Tsdb {
 public:
  static Result<std::unique_ptr<Tsdb>> Open(const TsdbOptions& options);

  Result<AppendResult> Append(std::span<const SeriesSamples> batch) override;
  Result<std::vector<SeriesSamples>> Select(std::span<const Matcher> matchers, int64_t mint,
                                            int64_t maxt) override;
  Result<std::vector<Labels>> Series(std::span<const Matcher> matchers, int64_t mint, int64_t maxt) override;
  std::vector<std::string> LabelNames() override;
  std::vector<std::string> LabelValues(std::string_view name) override;
  TsdbStats stats() override;

 private:
  Status Replay();
  Status OpenSegment(uint32_t seq);
  Status WriteWal(ByteView record);
  // The series with these labels, or null. mu_ held (either way).
  MemSeries* FindLocked(const Labels& labels) const;
  // Adds a series under `ref`. mu_ held exclusively.
  MemSeries* InsertLocked(uint64_t ref, Labels labels);
  // The series matching every matcher. mu_ held shared.
  Result<std::vector<MemSeries*>> MatchLocked(std::span<const Matcher> matchers) const;

  TsdbOptions options_;
  std::unique_ptr<Env> own_env_;
  Env* env_ = nullptr;
  std::string wal_dir_;

  std::mutex append_mu_;  // appends and the log
  std::unique_ptr<File> wal_;
  uint32_t wal_seq_ = 0;
  uint64_t wal_off_ = 0;
  uint64_t wal_segments_ = 0;

  mutable std::shared_mutex mu_;  // the maps below
  std::unordered_map<uint64_t, std::vector<MemSeries*>> by_hash_;
  std::unordered_map<uint64_t, std::unique_ptr<MemSeries>> by_ref_;
  // label name -> value -> refs, ascending.
  std::map<std::string, std::map<std::string, std::vector<uint64_t>, std::less<>>, std::less<>> postings_;
  uint64_t next_ref_ = 1;

  Counters counters_;
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
  db->wal_dir_ = JoinPath(options.data_dir, "wal");
  QCLOUD_RETURN_IF_ERROR(db->env_->CreateDirs(db->wal_dir_));
  QCLOUD_RETURN_IF_ERROR(db->Replay());
  return std::unique_ptr<Tsdb>(std::move(db));
}

Status TsdbImpl::OpenSegment(uint32_t seq) {
  const std::string path = JoinPath(wal_dir_, SegmentName(seq));
  QCLOUD_ASSIGN_OR_RETURN(wal_, env_->OpenFile(path, OpenMode::kTruncate));
  QCLOUD_RETURN_IF_ERROR(env_->SyncDir(wal_dir_));
  wal_seq_ = seq;
  wal_off_ = 0;
  ++wal_segments_;
  return Status::Ok();
}

Status TsdbImpl::Replay() {
  QCLOUD_ASSIGN_OR_RETURN(std::vector<std::string> names, env_->ListDir(wal_dir_));
  std::vector<uint32_t> seqs;
  for (const std::string& n : names) {
    uint32_t seq = 0;
    auto [end, ec] = std::from_chars(n.data(), n.data() + n.size(), seq);
    if (ec != std::errc() || end != n.data() + n.size() || n.size() != 8) continue;  // not a segment
    seqs.push_back(seq);
  }
  std::sort(seqs.begin(), seqs.end());
  std::unique_lock lock(mu_);
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
          if (by_ref_.contains(s.ref) || s.ref == 0) continue;
          InsertLocked(s.ref, std::move(s.labels));
          next_ref_ = std::max(next_ref_, s.ref + 1);
        }
      } else if (rec->type == detail::kRecordSamples) {
        auto samples = detail::DecodeSamples(rec->payload);
        if (!samples.ok()) {
          cut = true;
          break;
        }
        for (const WalSample& s : *samples) {
          auto it = by_ref_.find(s.ref);
          if (it == by_ref_.end() || s.t < it->second->maxt) continue;
          it->second->Add(s.t, s.v);
          Bump(counters_.samples);
          Bump(counters_.replayed);
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
    ++wal_segments_;
  }
  lock.unlock();
  std::lock_guard append(append_mu_);
  return OpenSegment(seqs.empty() ? 1 : seqs.back() + 1);
}

MemSeries* TsdbImpl::FindLocked(const Labels& labels) const {
  auto it = by_hash_.find(labels.Hash());
  if (it == by_hash_.end()) return nullptr;
  for (MemSeries* s : it->second) {
    if (s->labels == labels) return s;
  }
  return nullptr;
}

MemSeries* TsdbImpl::InsertLocked(uint64_t ref, Labels labels) {
  auto s = std::make_unique<MemSeries>();
  s->ref = ref;
  s->labels = std::move(labels);
  MemSeries* raw = s.get();
  by_hash_[raw->labels.Hash()].push_back(raw);
  for (const Label& l : raw->labels.pairs()) {
    auto& refs = postings_[l.name][l.value];
    // Refs arrive ascending, except at replay after a gap: keep the order.
    refs.insert(std::upper_bound(refs.begin(), refs.end(), ref), ref);
  }
  by_ref_.emplace(ref, std::move(s));
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
  AppendResult res;
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
    if (by_ref_.size() + created.size() > options_.max_series) {
      return Status(Errc::kResourceExhausted,
                    fmt::format("{} series: at most {} (max_series)", by_ref_.size() + created.size(),
                                options_.max_series));
    }
  }
  // The order rule, per series, against its newest sample so far.
  std::unordered_map<uint64_t, std::pair<int64_t, uint64_t>> newest;  // ref -> (t, value bits)
  std::vector<WalSample> accepted;
  accepted.reserve(total);
  for (size_t i = 0; i < batch.size(); ++i) {
    if (batch[i].samples.empty()) continue;
    const uint64_t ref = found[i] ? found[i]->ref : created[static_cast<size_t>(pending[i])].ref;
    auto [it, fresh] = newest.try_emplace(ref, found[i] ? std::pair{found[i]->maxt, found[i]->last_bits}
                                                        : std::pair{INT64_MIN, uint64_t{0}});
    (void)fresh;
    for (const Sample& s : batch[i].samples) {
      const uint64_t bits = std::bit_cast<uint64_t>(s.v);
      if (s.t < it->second.first) {
        ++res.out_of_order;
      } else if (s.t == it->second.first) {
        if (bits == it->second.second) {
          ++res.duplicates;
        } else {
          ++res.conflicts;
        }
      } else {
        it->second = {s.t, bits};
        accepted.push_back({.ref = ref, .t = s.t, .v = s.v});
      }
    }
  }
  if (!created.empty() || !accepted.empty()) {
    Buffer record;
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
    for (const WalSample& s : accepted) {
      if (last == nullptr || last->ref != s.ref) last = by_ref_.at(s.ref).get();
      last->Add(s.t, s.v);
    }
  }
  res.appended = accepted.size();
  res.new_series = created.size();
  Bump(counters_.samples, res.appended);
  Bump(counters_.appended, res.appended);
  Bump(counters_.out_of_order, res.out_of_order);
  Bump(counters_.duplicates, res.duplicates);
  Bump(counters_.conflicts, res.conflicts);
  return res;
}

Result<std::vector<MemSeries*>> TsdbImpl::MatchLocked(std::span<const Matcher> matchers) const {
  bool any = false;
  std::vector<uint64_t> refs;
  for (const Matcher& m : matchers) {
    if (m.Matches("")) continue;  // a filter below: it also matches series without the label
    std::vector<uint64_t> these;
    auto name = postings_.find(m.name());
    if (name != postings_.end()) {
      if (m.type() == MatchType::kEqual) {
        auto v = name->second.find(m.value());
        if (v != name->second.end()) these = v->second;
      } else {
        for (const auto& [value, ids] : name->second) {
          if (!m.Matches(value)) continue;
          std::vector<uint64_t> merged;
          merged.reserve(these.size() + ids.size());
          std::set_union(these.begin(), these.end(), ids.begin(), ids.end(), std::back_inserter(merged));
          these.swap(merged);
        }
      }
    }
    if (!any) {
      refs.swap(these);
      any = true;
    } else {
      std::vector<uint64_t> both;
      std::set_intersection(refs.begin(), refs.end(), these.begin(), these.end(), std::back_inserter(both));
      refs.swap(both);
    }
  }
  if (!any) {
    return InvalidArgument("a selector needs at least one matcher that does not match the empty string");
  }
  std::vector<MemSeries*> out;
  for (uint64_t ref : refs) {
    MemSeries* s = by_ref_.at(ref).get();
    bool ok = true;
    for (const Matcher& m : matchers) {
      if (m.Matches("") && !m.Matches(s->labels.Get(m.name()))) {
        ok = false;
        break;
      }
    }
    if (ok) out.push_back(s);
  }
  return out;
}

Result<std::vector<SeriesSamples>> TsdbImpl::Select(std::span<const Matcher> matchers, int64_t mint,
                                                    int64_t maxt) {
  std::vector<MemSeries*> series;
  {
    std::shared_lock lock(mu_);
    QCLOUD_ASSIGN_OR_RETURN(series, MatchLocked(matchers));
  }
  std::vector<SeriesSamples> out;
  for (MemSeries* s : series) {  // never freed while the store is open
    SeriesSamples ss;
    s->Collect(mint, maxt, ss.samples);
    if (ss.samples.empty()) continue;
    ss.labels = s->labels;
    out.push_back(std::move(ss));
  }
  std::sort(out.begin(), out.end(), [](const SeriesSamples& a, const SeriesSamples& b) { return a.labels < b.labels; });
  return out;
}

Result<std::vector<Labels>> TsdbImpl::Series(std::span<const Matcher> matchers, int64_t mint, int64_t maxt) {
  std::vector<MemSeries*> series;
  {
    std::shared_lock lock(mu_);
    QCLOUD_ASSIGN_OR_RETURN(series, MatchLocked(matchers));
  }
  std::vector<Labels> out;
  for (MemSeries* s : series) {
    if (s->HasSampleIn(mint, maxt)) out.push_back(s->labels);
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<std::string> TsdbImpl::LabelNames() {
  std::shared_lock lock(mu_);
  std::vector<std::string> out;
  for (const auto& [name, values] : postings_) out.push_back(name);
  return out;
}

std::vector<std::string> TsdbImpl::LabelValues(std::string_view name) {
  std::shared_lock lock(mu_);
  std::vector<std::string> out;
  auto it = postings_.find(name);
  if (it != postings_.end()) {
    for (const auto& [value, refs] : it->second) out.push_back(value);
  }
  return out;
}

TsdbStats TsdbImpl::stats() {
  TsdbStats st;
  {
    std::shared_lock lock(mu_);
    st.series = by_ref_.size();
    for (const auto& [ref, s] : by_ref_) {
      std::lock_guard slock(s->mu);
      st.chunks += s->chunks.size();
      for (const Chunk& c : s->chunks) st.chunk_bytes += c.bytes.size();
      st.chunk_bytes += s->open.bytes().size();
    }
  }
  {
    std::lock_guard append(append_mu_);
    st.wal_segments = wal_segments_;
  }
  const auto r = std::memory_order_relaxed;
  st.samples = counters_.samples.load(r);
  st.wal_bytes = counters_.wal_bytes.load(r);
  st.replayed_samples = counters_.replayed.load(r);
  st.wal_torn_bytes = counters_.torn.load(r);
  st.appended = counters_.appended.load(r);
  st.out_of_order = counters_.out_of_order.load(r);
  st.duplicates = counters_.duplicates.load(r);
  st.conflicts = counters_.conflicts.load(r);
  return st;
}

}  // namespace

Result<std::unique_ptr<Tsdb>> Tsdb::Open(const TsdbOptions& options) { return TsdbImpl::Open(options); }

}  // namespace qcloud::monitor
