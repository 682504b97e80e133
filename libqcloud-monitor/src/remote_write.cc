#include "qcloud/monitor/remote_write.h"

#include <snappy.h>

#include <bit>
#include <cstring>
#include <mutex>
#include <random>

#include "qcloud/core/hash.h"

#include <boost/unordered/unordered_flat_map.hpp>
#include <fmt/format.h>

#include "proto/remote.pb.h"  // generated from proto/remote.proto

namespace qcloud::monitor {

namespace {

// Protocol-buffer wire format, read in place (no copies of the body, no
// message objects): the remote-write path is the store's hottest input,
// and libprotobuf's generated parser spent most of its time allocating.
// Decodes as libprotobuf does: unknown fields (and known ones with another
// wire type) skipped, groups included; the last value of a scalar field
// wins; a varint of more than 10 bytes, a length past its end or field
// number 0 is an error.
class Wire {
 public:
  explicit Wire(std::string_view b) : p_(b.data()), end_(b.data() + b.size()) {}
  bool done() const { return p_ == end_; }
  bool Varint(uint64_t& v) {
    v = 0;
    for (int shift = 0; shift < 70; shift += 7) {
      if (p_ == end_) return false;
      const auto byte = static_cast<uint8_t>(*p_++);
      if (shift < 64) v |= uint64_t{byte & 0x7fu} << shift;
      if ((byte & 0x80) == 0) return true;
    }
    return false;
  }
  // The next field's number and wire type.
  bool Tag(uint32_t& field, uint32_t& type) {
    uint64_t t;
    if (!Varint(t) || (t >> 3) == 0 || (t >> 3) > 0x1fffffff) return false;
    field = static_cast<uint32_t>(t >> 3);
    type = static_cast<uint32_t>(t & 7);
    return true;
  }
  bool Bytes(std::string_view& out) {
    uint64_t n;
    if (!Varint(n) || n > static_cast<uint64_t>(end_ - p_)) return false;
    out = std::string_view(p_, static_cast<size_t>(n));
    p_ += n;
    return true;
  }
  bool Fixed64(uint64_t& v) {
    if (end_ - p_ < 8) return false;
    std::memcpy(&v, p_, 8);  // little-endian, as the wire
    p_ += 8;
    return true;
  }
  // Skips a field's value of wire type `type` (a group up to its end).
  bool Skip(uint32_t field, uint32_t type, int depth = 0) {
    uint64_t v;
    std::string_view b;
    switch (type) {
      case 0:
        return Varint(v);
      case 1:
        return Fixed64(v);
      case 2:
        return Bytes(b);
      case 5:
        if (end_ - p_ < 4) return false;
        p_ += 4;
        return true;
      case 3:
        if (depth >= 100) return false;
        for (;;) {
          uint32_t f, t;
          if (!Tag(f, t)) return false;
          if (t == 4) return f == field;
          if (!Skip(f, t, depth + 1)) return false;
        }
      default:
        return false;
    }
  }

 private:
  const char* p_;
  const char* end_;
};

bool DecodeSample(std::string_view m, Sample& s) {
  Wire w(m);
  s = {};
  while (!w.done()) {
    uint32_t f, t;
    if (!w.Tag(f, t)) return false;
    if (f == 1 && t == 1) {
      uint64_t bits;
      if (!w.Fixed64(bits)) return false;
      s.v = std::bit_cast<double>(bits);
    } else if (f == 2 && t == 0) {
      uint64_t v;
      if (!w.Varint(v)) return false;
      s.t = static_cast<int64_t>(v);
    } else if (!w.Skip(f, t)) {
      return false;
    }
  }
  return true;
}

bool DecodeLabel(std::string_view m, Label& l) {
  Wire w(m);
  std::string_view name, value;
  while (!w.done()) {
    uint32_t f, t;
    if (!w.Tag(f, t)) return false;
    if (f == 1 && t == 2) {
      if (!w.Bytes(name)) return false;
    } else if (f == 2 && t == 2) {
      if (!w.Bytes(value)) return false;
    } else if (!w.Skip(f, t)) {
      return false;
    }
  }
  l.name.assign(name);
  l.value.assign(value);
  return true;
}

struct Entry {
  std::string_view series;
  Hash128 id;  // of its label fields' bytes
  size_t samples_at = 0, samples_n = 0;
  uint64_t ref = 0;  // 0: not known by its bytes
};

// The body's protobuf, decompressed into `raw`.
Result<std::string_view> Uncompress(ByteView body, const RemoteWriteLimits& limits, std::string& raw) {
  if (body.size() > limits.max_body_bytes) {
    return InvalidArgument(fmt::format("remote write: body of {} bytes, at most {}", body.size(), limits.max_body_bytes));
  }
  size_t raw_size = 0;
  if (!snappy::GetUncompressedLength(body.chars(), body.size(), &raw_size)) {
    return InvalidArgument("remote write: snappy: corrupt input");
  }
  if (raw_size > limits.max_decoded_bytes) {
    return InvalidArgument(fmt::format("remote write: decompresses to {} bytes, at most {}", raw_size,
                                       limits.max_decoded_bytes));
  }
  raw.resize(raw_size);
  if (!snappy::RawUncompress(body.chars(), body.size(), raw.data())) {
    return InvalidArgument("remote write: snappy: corrupt input");
  }
  return std::string_view(raw);
}

Status NotProtobuf() { return InvalidArgument("remote write: the body is not a WriteRequest protobuf"); }

// A series' labels from its TimeSeries message, checked as Labels checks them.
Result<Labels> SeriesLabels(std::string_view series) {
  size_t n = 0;
  for (Wire scan(series); !scan.done();) {
    uint32_t f, t;
    if (!scan.Tag(f, t) || !scan.Skip(f, t)) return NotProtobuf();
    n += f == 1 && t == 2;
  }
  if (n > kMaxLabels) return InvalidArgument(fmt::format("remote write: more than {} labels", kMaxLabels));
  std::vector<Label> pairs;
  pairs.reserve(n);
  for (Wire w(series); !w.done();) {
    uint32_t f, t;
    std::string_view m;
    if (!w.Tag(f, t)) return NotProtobuf();
    if (f == 1 && t == 2) {
      if (!w.Bytes(m) || !DecodeLabel(m, pairs.emplace_back())) return NotProtobuf();
    } else if (!w.Skip(f, t)) {
      return NotProtobuf();
    }
  }
  auto labels = Labels::FromPairs(std::move(pairs));
  if (!labels.ok()) return InvalidArgument("remote write: " + labels.status().message());
  if (labels->empty()) return InvalidArgument("remote write: a series without labels");
  return labels;
}

// Calls fn(series message) for each TimeSeries of a WriteRequest.
template <typename Fn>
Status ForEachSeries(std::string_view raw, Fn&& fn) {
  Wire req(raw);
  while (!req.done()) {
    uint32_t f, t;
    if (!req.Tag(f, t)) return NotProtobuf();
    if (f != 1 || t != 2) {
      if (!req.Skip(f, t)) return NotProtobuf();
      continue;
    }
    std::string_view series;
    if (!req.Bytes(series)) return NotProtobuf();
    QCLOUD_RETURN_IF_ERROR(fn(series));
  }
  return Status::Ok();
}

// A series' samples appended to `out`; its label fields' bytes (each
// length-prefixed) appended to `key` when given.
Status SeriesSamplesAndKey(std::string_view series, std::vector<Sample>& out, std::string* key) {
  for (Wire w(series); !w.done();) {
    uint32_t f, t;
    std::string_view m;
    if (!w.Tag(f, t)) return NotProtobuf();
    if (f == 2 && t == 2) {
      if (!w.Bytes(m) || !DecodeSample(m, out.emplace_back())) return NotProtobuf();
    } else if (f == 1 && t == 2 && key != nullptr) {
      if (!w.Bytes(m)) return NotProtobuf();
      const auto n = static_cast<uint32_t>(m.size());
      key->append(reinterpret_cast<const char*>(&n), sizeof n);
      key->append(m);
    } else if (!w.Skip(f, t)) {
      return NotProtobuf();
    }
  }
  return Status::Ok();
}

}  // namespace

Result<std::vector<SeriesSamples>> DecodeRemoteWrite(ByteView body, const RemoteWriteLimits& limits) {
  std::string buffer;
  QCLOUD_ASSIGN_OR_RETURN(std::string_view raw, Uncompress(body, limits, buffer));
  std::vector<SeriesSamples> out;
  const Status walked = ForEachSeries(raw, [&](std::string_view series) -> Status {
    QCLOUD_ASSIGN_OR_RETURN(Labels labels, SeriesLabels(series));
    SeriesSamples s{std::move(labels), {}};
    QCLOUD_RETURN_IF_ERROR(SeriesSamplesAndKey(series, s.samples, nullptr));
    out.push_back(std::move(s));
    return Status::Ok();
  });
  if (!walked.ok()) return walked;
  return out;
}

struct RemoteWriteIngester::Cache {
  struct Entry {
    uint64_t high = 0;  // the hash's high half; its low half is the key
    uint64_t ref = 0;
  };
  boost::unordered_flat_map<uint64_t, Entry> map;  // ~38 bytes a series where a node map took ~56
};

RemoteWriteIngester::RemoteWriteIngester(Tsdb& db, RemoteWriteLimits limits, size_t max_cached)
    : db_(db),
      limits_(limits),
      max_cached_(max_cached),
      seed_(std::random_device{}() | uint64_t{std::random_device{}()} << 32),
      cache_(std::make_unique<Cache>()) {}

size_t RemoteWriteIngester::cached() const {
  std::shared_lock lock(mu_);
  return cache_->map.size();
}

// A request's buffers, reused by later requests: a body's worth of entries
// is a few hundred KiB, and allocating it per request costs page faults
// (measured: 15% of the server's CPU with bench/monitor's bodies) and leaves
// holes in the heap. ReleaseIdleMemory() frees the ones no request took
// since its last call.
struct RemoteWriteIngester::Scratch {
  std::string raw;   // the body, decompressed
  std::string keys;  // one series's label bytes at a time
  std::vector<Sample> samples;
  std::vector<Entry> entries;
  std::vector<RefSamples> refs;
  std::vector<size_t> refs_entry;
  bool used = true;  // since the last ReleaseIdleMemory()
  size_t peak = 0;   // the largest body (decoded) since then
};

RemoteWriteIngester::~RemoteWriteIngester() = default;

void RemoteWriteIngester::ReleaseIdleMemory() {
  std::lock_guard lock(scratch_mu_);
  std::erase_if(idle_scratch_, [](const std::unique_ptr<Scratch>& s) { return !s->used; });
  for (auto& s : idle_scratch_) {
    // Buffers grown by a burst of larger bodies than the recent ones go too.
    if (s->raw.capacity() > 2 * s->peak + (size_t{64} << 10)) s = std::make_unique<Scratch>();
    s->used = false;
    s->peak = 0;
  }
}

size_t RemoteWriteIngester::idle_buffers() const {
  std::lock_guard lock(scratch_mu_);
  return idle_scratch_.size();
}

Result<AppendResult> RemoteWriteIngester::Ingest(ByteView body) {
  std::unique_ptr<Scratch> scratch;
  {
    std::lock_guard lock(scratch_mu_);
    if (!idle_scratch_.empty()) {
      scratch = std::move(idle_scratch_.back());
      idle_scratch_.pop_back();
    }
  }
  if (scratch == nullptr) scratch = std::make_unique<Scratch>();
  Result<AppendResult> r = IngestWith(*scratch, body);
  scratch->used = true;
  scratch->peak = std::max(scratch->peak, scratch->raw.size());
  std::lock_guard lock(scratch_mu_);
  idle_scratch_.push_back(std::move(scratch));
  return r;
}

Result<AppendResult> RemoteWriteIngester::IngestWith(Scratch& scratch, ByteView body) {
  QCLOUD_ASSIGN_OR_RETURN(std::string_view raw, Uncompress(body, limits_, scratch.raw));
  std::string& keys = scratch.keys;
  std::vector<Sample>& samples = scratch.samples;
  std::vector<Entry>& entries = scratch.entries;
  std::vector<RefSamples>& refs = scratch.refs;
  std::vector<size_t>& refs_entry = scratch.refs_entry;
  keys.clear();
  samples.clear();
  entries.clear();
  refs.clear();
  refs_entry.clear();
  // 1. Walk the body: each series' samples, and the hash of its label bytes.
  const Status walked = ForEachSeries(raw, [&](std::string_view series) -> Status {
    Entry e{.series = series, .samples_at = samples.size()};
    keys.clear();
    QCLOUD_RETURN_IF_ERROR(SeriesSamplesAndKey(series, samples, &keys));
    e.samples_n = samples.size() - e.samples_at;
    e.id = Xxh3_128(ByteView(keys), seed_);
    entries.push_back(e);
    return Status::Ok();
  });
  if (!walked.ok()) return walked;
  auto samples_of = [&](const Entry& e) { return std::span<const Sample>(samples.data() + e.samples_at, e.samples_n); };
  // 2. Label bytes seen before are known series.
  {
    std::shared_lock lock(mu_);
    for (Entry& e : entries) {
      auto it = cache_->map.find(e.id.low);
      if (it != cache_->map.end() && it->second.high == e.id.high) e.ref = it->second.ref;
    }
  }
  // 3. The others are decoded and checked before anything is appended: a
  //    bad body takes nothing.
  std::vector<SeriesSamples> by_labels;
  std::vector<size_t> by_labels_entry;
  for (size_t i = 0; i < entries.size(); ++i) {
    if (entries[i].ref != 0) continue;
    QCLOUD_ASSIGN_OR_RETURN(Labels labels, SeriesLabels(entries[i].series));
    const auto sp = samples_of(entries[i]);
    by_labels.push_back({std::move(labels), std::vector<Sample>(sp.begin(), sp.end())});
    by_labels_entry.push_back(i);
  }
  AppendResult total;
  auto add = [&total](const AppendResult& r) {
    total.appended += r.appended;
    total.new_series += r.new_series;
    total.out_of_order += r.out_of_order;
    total.duplicates += r.duplicates;
    total.conflicts += r.conflicts;
    total.too_old += r.too_old;
    total.out_of_range += r.out_of_range;
  };
  // 4. New series first: what can refuse a whole batch (max_series) does
  //    so before the known series are taken.
  if (!by_labels.empty()) {
    QCLOUD_ASSIGN_OR_RETURN(AppendResult r, db_.Append(by_labels));
    add(r);
  }
  // 5. Known series by reference; those the head let go of, by labels.
  for (size_t i = 0; i < entries.size(); ++i) {
    if (entries[i].ref == 0) continue;
    refs.push_back({entries[i].ref, samples_of(entries[i])});
    refs_entry.push_back(i);
  }
  if (!refs.empty()) {
    std::vector<size_t> unknown;
    QCLOUD_ASSIGN_OR_RETURN(AppendResult r, db_.AppendRefs(refs, &unknown));
    add(r);
    std::vector<SeriesSamples> again;
    for (size_t k : unknown) {
      const size_t i = refs_entry[k];
      QCLOUD_ASSIGN_OR_RETURN(Labels labels, SeriesLabels(entries[i].series));
      const auto sp = samples_of(entries[i]);
      again.push_back({std::move(labels), std::vector<Sample>(sp.begin(), sp.end())});
      by_labels_entry.push_back(i);
    }
    if (!again.empty()) {
      QCLOUD_ASSIGN_OR_RETURN(AppendResult ra, db_.Append(again));
      add(ra);
      for (SeriesSamples& x : again) by_labels.push_back(std::move(x));
    }
  }
  // 6. Remember the series appended by labels, by their bytes (the store
  //    looked up before the cache is locked).
  if (!by_labels.empty()) {
    std::vector<uint64_t> got(by_labels.size());
    for (size_t k = 0; k < by_labels.size(); ++k) got[k] = db_.Ref(by_labels[k].labels);
    std::unique_lock lock(mu_);
    if (cache_->map.size() + by_labels.size() > max_cached_) cache_->map.clear();
    for (size_t k = 0; k < by_labels.size(); ++k) {
      if (got[k] == 0) continue;  // no sample taken: not in the head
      const Entry& e = entries[by_labels_entry[k]];
      cache_->map.insert_or_assign(e.id.low, Cache::Entry{e.id.high, got[k]});
    }
  }
  return total;
}

std::string EncodeRemoteWrite(std::span<const SeriesSamples> series) {
  prompb::WriteRequest req;
  for (const SeriesSamples& s : series) {
    prompb::TimeSeries* ts = req.add_timeseries();
    for (LabelView l : s.labels.pairs()) {
      prompb::Label* pl = ts->add_labels();
      pl->set_name(std::string(l.name));
      pl->set_value(std::string(l.value));
    }
    for (const Sample& x : s.samples) {
      prompb::Sample* ps = ts->add_samples();
      ps->set_value(x.v);
      ps->set_timestamp(x.t);
    }
  }
  std::string raw = req.SerializeAsString();
  std::string out;
  snappy::Compress(raw.data(), raw.size(), &out);
  return out;
}

}  // namespace qcloud::monitor
