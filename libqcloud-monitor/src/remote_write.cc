#include "qcloud/monitor/remote_write.h"

#include <snappy.h>

#include <fmt/format.h>

#include "proto/remote.pb.h"  // generated from proto/remote.proto

namespace qcloud::monitor {

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
  std::string raw;
  if (!snappy::Uncompress(body.chars(), body.size(), &raw)) return InvalidArgument("remote write: snappy: corrupt input");
  prompb::WriteRequest req;
  if (!req.ParseFromString(raw)) return InvalidArgument("remote write: the body is not a WriteRequest protobuf");
  std::vector<SeriesSamples> out;
  out.reserve(static_cast<size_t>(req.timeseries_size()));
  for (const prompb::TimeSeries& ts : req.timeseries()) {
    std::vector<Label> pairs;
    pairs.reserve(static_cast<size_t>(ts.labels_size()));
    for (const prompb::Label& l : ts.labels()) pairs.push_back({l.name(), l.value()});
    auto labels = Labels::FromPairs(std::move(pairs));
    if (!labels.ok()) return InvalidArgument("remote write: " + labels.status().message());
    if (labels->empty()) return InvalidArgument("remote write: a series without labels");
    SeriesSamples s{std::move(labels).value(), {}};
    s.samples.reserve(static_cast<size_t>(ts.samples_size()));
    for (const prompb::Sample& x : ts.samples()) s.samples.push_back({x.timestamp(), x.value()});
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
