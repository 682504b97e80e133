#include "s3/xml.h"

#include <ctime>

#include <fmt/format.h>

namespace qcloud::object::s3 {

std::string XmlEscape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&apos;"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20 && c != '\t' && c != '\n' && c != '\r') {
          // Not representable in XML 1.0: S3 escapes these as character references.
          out += fmt::format("&#x{:X};", static_cast<unsigned>(static_cast<unsigned char>(c)));
        } else {
          out.push_back(c);
        }
    }
  }
  return out;
}

XmlWriter::XmlWriter(std::string_view root, bool ns) : root_(root) {
  out_ = R"(<?xml version="1.0" encoding="UTF-8"?>)" "\n";
  out_ += '<';
  out_ += root;
  if (ns) out_ += R"( xmlns="http://s3.amazonaws.com/doc/2006-03-01/")";
  out_ += '>';
}

XmlWriter& XmlWriter::Open(std::string_view name) {
  out_ += '<';
  out_ += name;
  out_ += '>';
  return *this;
}

XmlWriter& XmlWriter::Close(std::string_view name) {
  out_ += "</";
  out_ += name;
  out_ += '>';
  return *this;
}

XmlWriter& XmlWriter::Element(std::string_view name, std::string_view text) {
  Open(name);
  out_ += XmlEscape(text);
  return Close(name);
}

XmlWriter& XmlWriter::Element(std::string_view name, uint64_t value) {
  return Element(name, std::to_string(value));
}

XmlWriter& XmlWriter::Bool(std::string_view name, bool value) {
  return Element(name, value ? "true" : "false");
}

std::string XmlWriter::Finish() {
  Close(root_);
  return std::move(out_);
}

namespace {
std::tm Utc(int64_t unix_s) {
  std::tm tm{};
  const std::time_t t = static_cast<std::time_t>(unix_s);
  ::gmtime_r(&t, &tm);
  return tm;
}
int64_t FloorDiv(int64_t a, int64_t b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0))); }
constexpr const char* kDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
}  // namespace

std::string IsoTime(int64_t unix_ms) {
  const int64_t s = FloorDiv(unix_ms, 1000);
  const std::tm tm = Utc(s);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", tm.tm_year + 1900, tm.tm_mon + 1,
                     tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, unix_ms - s * 1000);
}

std::string HttpTime(int64_t unix_ms) {
  const std::tm tm = Utc(FloorDiv(unix_ms, 1000));
  return fmt::format("{}, {:02} {} {:04} {:02}:{:02}:{:02} GMT", kDays[tm.tm_wday], tm.tm_mday,
                     kMonths[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

std::optional<int64_t> ParseHttpTime(std::string_view text) {
  if (text.size() > 64) return std::nullopt;
  const std::string s(text);
  std::tm tm{};
  // RFC 1123, RFC 850, asctime: the three forms HTTP/1.1 accepts.
  for (const char* format : {"%a, %d %b %Y %H:%M:%S GMT", "%A, %d-%b-%y %H:%M:%S GMT", "%a %b %e %H:%M:%S %Y"}) {
    tm = {};
    const char* end = ::strptime(s.c_str(), format, &tm);
    if (end != nullptr && *end == '\0') return static_cast<int64_t>(::timegm(&tm));
  }
  return std::nullopt;
}

}  // namespace qcloud::object::s3
