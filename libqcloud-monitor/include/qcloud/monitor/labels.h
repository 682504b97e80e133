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

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <compare>
#include <initializer_list>
#include <iterator>
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

// One pair of a Labels: views into its storage, valid while a copy of that
// label set lives.
struct LabelView {
  std::string_view name;
  std::string_view value;
  bool operator==(const LabelView&) const = default;
  auto operator<=>(const LabelView&) const = default;
  Label ToLabel() const { return {std::string(name), std::string(value)}; }
};

class QCLOUD_EXPORT Labels {
 public:
  // The pairs in name order, as views (a forward range).
  class Iterator {
   public:
    using iterator_category = std::forward_iterator_tag;
    using value_type = LabelView;
    using difference_type = std::ptrdiff_t;
    using pointer = void;
    using reference = LabelView;
    Iterator() = default;
    LabelView operator*() const noexcept;
    Iterator& operator++() noexcept;
    Iterator operator++(int) noexcept {
      Iterator old = *this;
      ++*this;
      return old;
    }
    bool operator==(const Iterator& o) const noexcept { return i_ == o.i_; }

   private:
    friend class Labels;
    Iterator(const char* lens, const char* chars, size_t i) noexcept : lens_(lens), chars_(chars), i_(i) {}
    const char* lens_ = nullptr;   // this pair's two u16 lengths
    const char* chars_ = nullptr;  // this pair's name, then its value
    size_t i_ = 0;
  };
  class Pairs {
   public:
    Iterator begin() const noexcept;
    Iterator end() const noexcept { return Iterator(nullptr, nullptr, n_); }
    size_t size() const noexcept { return n_; }
    bool empty() const noexcept { return n_ == 0; }
    LabelView operator[](size_t i) const noexcept;  // walks i pairs

   private:
    friend class Labels;
    Pairs(const char* rep, size_t n) noexcept : rep_(rep), n_(n) {}
    const char* rep_;
    size_t n_;
  };

  Labels() = default;
  Labels(const Labels& o) noexcept : rep_(o.rep_) { Ref(); }
  Labels(Labels&& o) noexcept : rep_(o.rep_) { o.rep_ = nullptr; }
  Labels& operator=(const Labels& o) noexcept {
    if (rep_ != o.rep_) {
      o.Ref();
      Unref();
      rep_ = o.rep_;
    }
    return *this;
  }
  Labels& operator=(Labels&& o) noexcept {
    if (this != &o) {
      Unref();
      rep_ = o.rep_;
      o.rep_ = nullptr;
    }
    return *this;
  }
  ~Labels() { Unref(); }

  // Sorts, drops empty values, and checks names, values and bounds.
  // kInvalidArgument: a bad name, a duplicate name, invalid UTF-8, a bound.
  static Result<Labels> FromPairs(std::vector<Label> pairs);
  static Result<Labels> FromPairs(std::initializer_list<std::pair<std::string_view, std::string_view>> pairs);

  Pairs pairs() const noexcept { return Pairs(rep_, size()); }
  std::vector<Label> ToVector() const;
  size_t size() const noexcept;
  bool empty() const noexcept { return rep_ == nullptr; }
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
  // How many Labels share this one's storage (0 for an empty set).
  long use_count() const noexcept { return rep_ != nullptr ? Refs()->load(std::memory_order_relaxed) : 0; }

  bool operator==(const Labels& o) const noexcept;
  std::strong_ordering operator<=>(const Labels& o) const noexcept;

 private:
  explicit Labels(const std::vector<LabelView>& pairs);  // valid ones, in order
  // One block, shared by copies and never changed (a copy of a label set,
  // of which PromQL makes many, is a reference count): u32 its size in
  // bytes | u16 n | n x (u16 name length, u16 value length) | the names and
  // values in pair order. A name most series have (__name__, instance,
  // job, le, ...: labels.cc) is 0x8000 | its index in a fixed list instead
  // of a length, and takes no bytes. About a third of a vector of string
  // pairs.
  // The reference count is the u32 before it, in the same allocation: 8
  // bytes a Labels and 4 a set, where a shared_ptr took 16 and 16.
  const char* rep_ = nullptr;

  std::atomic<uint32_t>* Refs() const noexcept {
    return reinterpret_cast<std::atomic<uint32_t>*>(const_cast<char*>(rep_) - sizeof(std::atomic<uint32_t>));
  }
  void Ref() const noexcept {
    if (rep_ != nullptr) Refs()->fetch_add(1, std::memory_order_relaxed);
  }
  void Unref() noexcept {
    if (rep_ != nullptr && Refs()->fetch_sub(1, std::memory_order_acq_rel) == 1) Free(rep_);
    rep_ = nullptr;
  }
  static void Free(const char* rep) noexcept;
};

// Prometheus's label name and metric name rules.
QCLOUD_EXPORT bool ValidLabelName(std::string_view name) noexcept;
QCLOUD_EXPORT bool ValidMetricName(std::string_view name) noexcept;
QCLOUD_EXPORT bool ValidUtf8(std::string_view s) noexcept;

}  // namespace qcloud::monitor
