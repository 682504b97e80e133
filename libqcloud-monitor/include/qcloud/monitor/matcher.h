#pragma once

// Label matchers, as in a PromQL selector: name="v", name!="v", name=~"re",
// name!~"re". Regexes are RE2 syntax and fully anchored, as Prometheus
// anchors them ("a.*" matches "abc", not "xabc"). A label a series lacks
// has the value "": {env=""} matches series without env, {env=~".+"}
// those with one.

#include <memory>
#include <string>
#include <string_view>

#include "qcloud/core/export.h"
#include "qcloud/core/result.h"

namespace qcloud::monitor {

enum class MatchType { kEqual, kNotEqual, kRegex, kNotRegex };

namespace detail {
class Regex;
}

class QCLOUD_EXPORT Matcher {
 public:
  // kInvalidArgument for a regex RE2 refuses (or longer than 64 KiB).
  static Result<Matcher> Make(MatchType type, std::string name, std::string value);
  // Shorthands for tests and callers with fixed matchers.
  static Matcher Equal(std::string name, std::string value);

  MatchType type() const noexcept { return type_; }
  const std::string& name() const noexcept { return name_; }
  const std::string& value() const noexcept { return value_; }
  // Whether a label value ("" = the label is absent) satisfies it.
  bool Matches(std::string_view v) const;
  // PromQL notation: name=~"value".
  std::string ToString() const;

 private:
  MatchType type_ = MatchType::kEqual;
  std::string name_, value_;
  std::shared_ptr<const detail::Regex> re_;
};

}  // namespace qcloud::monitor
