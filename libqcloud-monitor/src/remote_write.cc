#include "qcloud/monitor/remote_write.h"

#include <snappy.h>

#include <bit>
#include <cstring>

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

}  // namespace

Result<std::vector<SeriesSamples>> DecodeRemoteWrite(ByteView body, const RemoteWriteLimits& limits) {
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
  // One buffer per thread, kept: a body's protobuf is large and short-lived.
  thread_local std::string raw;
  raw.resize(raw_size);
  if (!snappy::RawUncompress(body.chars(), body.size(), raw.data())) {
    return InvalidArgument("remote write: snappy: corrupt input");
  }
  const auto not_protobuf = [] { return InvalidArgument("remote write: the body is not a WriteRequest protobuf"); };
  std::vector<SeriesSamples> out;
  Wire req(raw);
  std::vector<Label> pairs;
  while (!req.done()) {
    uint32_t f, t;
    if (!req.Tag(f, t)) return not_protobuf();
    if (f != 1 || t != 2) {
      if (!req.Skip(f, t)) return not_protobuf();
      continue;
    }
    std::string_view series;
    if (!req.Bytes(series)) return not_protobuf();
    // Count the labels first, so the series' labels are one allocation.
    size_t nlabels = 0;
    for (Wire scan(series); !scan.done();) {
      uint32_t sf, st;
      if (!scan.Tag(sf, st) || !scan.Skip(sf, st)) return not_protobuf();
      nlabels += sf == 1 && st == 2;
    }
    if (nlabels > kMaxLabels) return InvalidArgument(fmt::format("remote write: more than {} labels", kMaxLabels));
    pairs.reserve(nlabels);
    Wire ts(series);
    SeriesSamples s;
    while (!ts.done()) {
      uint32_t tf, tt;
      if (!ts.Tag(tf, tt)) return not_protobuf();
      std::string_view m;
      if (tf == 1 && tt == 2) {
        if (!ts.Bytes(m) || !DecodeLabel(m, pairs.emplace_back())) return not_protobuf();
      } else if (tf == 2 && tt == 2) {
        if (!ts.Bytes(m) || !DecodeSample(m, s.samples.emplace_back())) return not_protobuf();
      } else if (!ts.Skip(tf, tt)) {
        return not_protobuf();
      }
    }
    auto labels = Labels::FromPairs(std::move(pairs));
    pairs = {};  // moved from: empty, no capacity
    if (!labels.ok()) return InvalidArgument("remote write: " + labels.status().message());
    if (labels->empty()) return InvalidArgument("remote write: a series without labels");
    s.labels = std::move(labels).value();
    out.push_back(std::move(s));
  }
  return out;
}

std::string EncodeRemoteWrite(std::span<const SeriesSamples> series) {
  prompb::WriteRequest req;
  for (const SeriesSamples& s : series) {
    prompb::TimeSeries* ts = req.add_timeseries();
    for (const Label& l : s.labels.pairs()) {
      prompb::Label* pl = ts->add_labels();
      pl->set_name(l.name);
      pl->set_value(l.value);
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
