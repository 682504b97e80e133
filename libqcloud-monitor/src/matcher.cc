#include "qcloud/monitor/matcher.h"

#include <re2/re2.h>

#include <fmt/format.h>

#include "qcloud/core/metrics.h"

namespace qcloud::monitor {

namespace detail {
class Regex {
 public:
  explicit Regex(const std::string& pattern) : re_("^(?:" + pattern + ")$", Options()) {}
  const re2::RE2& re() const { return re_; }

 private:
  static re2::RE2::Options Options() {
    re2::RE2::Options o;
    o.set_log_errors(false);
    // Prometheus 2.x compiles ^(?:re)$ without (?s): "." does not match a
    // newline (3.0 changed that; the peer here is 2.42).
    o.set_dot_nl(false);
    return o;
  }
  re2::RE2 re_;
};
}  // namespace detail

namespace {
constexpr size_t kMaxRegexBytes = 64 * 1024;
}

Result<Matcher> Matcher::Make(MatchType type, std::string name, std::string value) {
  Matcher m;
  m.type_ = type;
  m.name_ = std::move(name);
  m.value_ = std::move(value);
  if (type == MatchType::kRegex || type == MatchType::kNotRegex) {
    if (m.value_.size() > kMaxRegexBytes) return InvalidArgument("regex longer than 64 KiB");
    auto re = std::make_shared<detail::Regex>(m.value_);
    if (!re->re().ok()) {
      return InvalidArgument(fmt::format("invalid regex \"{}\": {}", m.value_.substr(0, 64), re->re().error()));
    }
    m.re_ = std::move(re);
  }
  return m;
}

Matcher Matcher::Equal(std::string name, std::string value) {
  Matcher m;
  m.name_ = std::move(name);
  m.value_ = std::move(value);
  return m;
}

bool Matcher::Matches(std::string_view v) const {
  switch (type_) {
    case MatchType::kEqual: return v == value_;
    case MatchType::kNotEqual: return v != value_;
    case MatchType::kRegex: return re2::RE2::FullMatch(v, re_->re());
    case MatchType::kNotRegex: return !re2::RE2::FullMatch(v, re_->re());
  }
  return false;
}

std::string Matcher::ToString() const {
  static constexpr const char* kOps[] = {"=", "!=", "=~", "!~"};
  return fmt::format("{}{}\"{}\"", name_, kOps[static_cast<int>(type_)], EscapeLabelValue(value_));
}

}  // namespace qcloud::monitor
