#include "monitor/json_out.h"

#include <ctime>

#include <fmt/format.h>

namespace qcloud::monitor::detail {

void JsonString(std::string& out, std::string_view s) {
  out += '"';
  for (unsigned char c : s) {
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

void JsonPairs(std::string& out, const std::vector<Label>& pairs) {
  out += '{';
  for (size_t i = 0; i < pairs.size(); ++i) {
    if (i) out += ',';
    JsonString(out, pairs[i].name);
    out += ':';
    JsonString(out, pairs[i].value);
  }
  out += '}';
}

std::string JsonTime(WallTime t) {
  if (t == WallTime{}) return "0001-01-01T00:00:00Z";
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
  const auto secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                     tm.tm_hour, tm.tm_min, tm.tm_sec, ms % 1000);
}

}  // namespace qcloud::monitor::detail
