#include "monitor/json_out.h"
#include "monitor/utf8.h"

#include <charconv>
#include <cmath>
#include <ctime>

#include <fmt/format.h>

namespace qcloud::monitor::detail {

void JsonString(std::string& out, std::string_view s) {
  out += '"';
  for (size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x80) {
      // Valid UTF-8 as it is; any other byte as U+FFFD, as Go's
      // encoding/json writes it: the body stays valid JSON.
      const size_t n = Utf8SequenceLength(s, i);
      if (n == 0) {
        out += "\\ufffd";
      } else {
        out.append(s.substr(i, n));
        i += n - 1;
      }
      continue;
    }
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          out += fmt::format("\\u{:04x}", c);
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += '"';
}

namespace {

// {"name":"value",...} of anything whose elements have .name and .value.
template <typename Pairs>
void PairsObject(std::string& out, const Pairs& pairs) {
  out += '{';
  bool first = true;
  for (const auto& l : pairs) {
    if (!first) out += ',';
    first = false;
    JsonString(out, l.name);
    out += ':';
    JsonString(out, l.value);
  }
  out += '}';
}

}  // namespace

void JsonPairs(std::string& out, const Labels& labels) { PairsObject(out, labels.pairs()); }
void JsonPairs(std::string& out, const std::vector<Label>& pairs) { PairsObject(out, pairs); }

std::string JsonTime(WallTime t) {
  if (t == WallTime{}) return "0001-01-01T00:00:00Z";
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
  const auto secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                     tm.tm_hour, tm.tm_min, tm.tm_sec, ms % 1000);
}

namespace {

// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
int64_t DaysFromCivil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const auto yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

}  // namespace

Result<int64_t> ParseTime(std::string_view s) {
  double sec = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), sec);
  if (ec == std::errc() && p == s.data() + s.size()) {
    if (!std::isfinite(sec) || std::fabs(sec) > 9.2e15) return InvalidArgument(fmt::format("cannot parse \"{}\" to a valid timestamp", s));
    return static_cast<int64_t>(std::llround(sec * 1000));
  }
  auto num = [&](size_t at, size_t n, int& v) {
    if (at + n > s.size()) return false;
    auto [q, e] = std::from_chars(s.data() + at, s.data() + at + n, v);
    return e == std::errc() && q == s.data() + at + n;
  };
  int y, mo, d, h, mi, se;
  if (s.size() < 20 || !num(0, 4, y) || s[4] != '-' || !num(5, 2, mo) || s[7] != '-' || !num(8, 2, d) ||
      (s[10] != 'T' && s[10] != 't') || !num(11, 2, h) || s[13] != ':' || !num(14, 2, mi) || s[16] != ':' ||
      !num(17, 2, se) || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 60) {
    return InvalidArgument(fmt::format("cannot parse \"{}\" to a valid timestamp", s));
  }
  size_t i = 19;
  int64_t ms = 0;
  if (i < s.size() && s[i] == '.') {
    ++i;
    int digits = 0;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
      if (digits < 3) ms = ms * 10 + (s[i] - '0');
      ++digits;
      ++i;
    }
    if (digits == 0) return InvalidArgument(fmt::format("cannot parse \"{}\" to a valid timestamp", s));
    for (; digits < 3; ++digits) ms *= 10;
  }
  int64_t offset = 0;
  if (i < s.size() && (s[i] == 'Z' || s[i] == 'z')) {
    ++i;
  } else if (i < s.size() && (s[i] == '+' || s[i] == '-')) {
    int oh, om;
    if (!num(i + 1, 2, oh) || i + 3 >= s.size() || s[i + 3] != ':' || !num(i + 4, 2, om)) {
      return InvalidArgument(fmt::format("cannot parse \"{}\" to a valid timestamp", s));
    }
    offset = (s[i] == '+' ? 1 : -1) * (oh * 3600 + om * 60);
    i += 6;
  }
  if (i != s.size()) return InvalidArgument(fmt::format("cannot parse \"{}\" to a valid timestamp", s));
  const int64_t secs = DaysFromCivil(y, static_cast<unsigned>(mo), static_cast<unsigned>(d)) * 86400 + h * 3600 +
                       mi * 60 + se - offset;
  return secs * 1000 + ms;
}

}  // namespace qcloud::monitor::detail
