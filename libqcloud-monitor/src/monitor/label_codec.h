#pragma once

// Label sets in the monitor's binary records (the log's series records,
// blocks' indexes; docs/notes/monitor-format.md): a varint count, then per
// label the name and the value, each varint-length-prefixed.

#include <optional>

#include "qcloud/core/bytes.h"
#include "qcloud/monitor/labels.h"

namespace qcloud::monitor::detail {

inline void EncodeLabels(const Labels& labels, ByteWriter& w) {
  w.PutVarint64(labels.size());
  for (LabelView l : labels.pairs()) {
    w.PutLengthPrefixed(ByteView(l.name));
    w.PutLengthPrefixed(ByteView(l.value));
  }
}

// Nullopt when cut short, over the bounds of labels.h, or not valid Labels.
inline std::optional<Labels> DecodeLabels(ByteReader& r) {
  auto k = r.ReadVarint64();
  if (!k || *k > kMaxLabels) return std::nullopt;
  std::vector<Label> pairs;
  pairs.reserve(*k);
  for (uint64_t j = 0; j < *k; ++j) {
    auto name = r.ReadLengthPrefixed(kMaxLabelNameBytes);
    auto value = r.ReadLengthPrefixed(kMaxLabelValueBytes);
    if (!name || !value) return std::nullopt;
    pairs.push_back({std::string(name->AsStringView()), std::string(value->AsStringView())});
  }
  auto labels = Labels::FromPairs(std::move(pairs));
  if (!labels.ok()) return std::nullopt;
  return std::move(labels).value();
}

}  // namespace qcloud::monitor::detail
