#pragma once

// qcloud::monitor labels: a series is a metric name plus label pairs, as in
// Prometheus. The name is the label "__name__". A Labels value is kept
// sorted by label name, names unique, no empty values (a label with an
// empty value is the same as no label, as in Prometheus).
//
//   Labels l = Labels::FromPairs({{"__name__", "http_requests_total"}, {"code", "200"}}).value();
//   l.Get("code");        // "200"
//   l.ToString();         // http_requests_total{code="200"}
//
// Validation follows Prometheus's rules: label names [a-zA-Z_][a-zA-Z0-9_]*
// (names starting "__" are reserved, "__name__" excepted), metric names
// [a-zA-Z_:][a-zA-Z0-9_:]*, values any UTF-8. Bounds keep a series from
// costing unbounded memory: at most kMaxLabels labels, kMaxLabelNameBytes
// per name, kMaxLabelValueBytes per value.

#include <cstddef>
#include <cstdint>
#include <compare>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "qcloud/core/export.h"
#include "qcloud/core/result.h"
#include "qcloud/core/status.h"

namespace qcloud::monitor {

inline constexpr std::string_view kMetricNameLabel = "__name__";
inline constexpr size_t kMaxLabels = 64;
inline constexpr size_t kMaxLabelNameBytes = 256;
inline constexpr size_t kMaxLabelValueBytes = 4096;

struct Label {
  std::string name;
  std::string value;
  bool operator==(const Label&) const = default;
  auto operator<=>(const Label&) const = default;
};

class QCLOUD_EXPORT Labels {
 public:
  Labels() = default;
  // Sorts, drops empty values, and checks names, values and bounds.
  // kInvalidArgument: a bad name, a duplicate name, invalid UTF-8, a bound.
  static Result<Labels> FromPairs(std::vector<Label> pairs);
  static Result<Labels> FromPairs(std::initializer_list<std::pair<std::string_view, std::string_view>> pairs);

  const std::vector<Label>& pairs() const noexcept { return pairs_ ? *pairs_ : NoPairs(); }
  size_t size() const noexcept { return pairs().size(); }
  bool empty() const noexcept { return pairs().empty(); }
  // "" when absent.
  std::string_view Get(std::string_view name) const noexcept;
  std::string_view metric_name() const noexcept { return Get(kMetricNameLabel); }
  // A stable 64-bit hash of the pairs (xxh3), for maps of series.
  uint64_t Hash() const noexcept;
  // Prometheus's notation: name{a="b", c="d"}, values escaped.
  std::string ToString() const;
  // A copy without the named labels (and without __name__ when `drop_name`).
  Labels Without(const std::vector<std::string>& names, bool drop_name) const;
  // A copy with only the named labels.
  Labels Only(const std::vector<std::string>& names) const;

  bool operator==(const Labels& o) const noexcept { return pairs_ == o.pairs_ || pairs() == o.pairs(); }
  std::strong_ordering operator<=>(const Labels& o) const noexcept { return pairs() <=> o.pairs(); }

 private:
  explicit Labels(std::vector<Label> pairs);  // valid ones
  static const std::vector<Label>& NoPairs() noexcept;
  // Shared by copies and never changed: a copy of a label set (PromQL
  // makes many, per step and per series) is a reference count.
  std::shared_ptr<const std::vector<Label>> pairs_;
};

// Prometheus's label name and metric name rules.
QCLOUD_EXPORT bool ValidLabelName(std::string_view name) noexcept;
QCLOUD_EXPORT bool ValidMetricName(std::string_view name) noexcept;
QCLOUD_EXPORT bool ValidUtf8(std::string_view s) noexcept;

}  // namespace qcloud::monitor
