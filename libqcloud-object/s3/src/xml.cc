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
int64_t FloorDiv(int64_t a, int64_t b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0))); }
constexpr const char* kDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

// UTC calendar fields of a UNIX time, by arithmetic (days to civil date as
// in H. Hinnant's chrono algorithms): no gmtime_r, which takes glibc's
// time-zone lock, on every GET's Last-Modified.
struct Civil {
  int64_t year;
  int month, day, weekday, hour, minute, second;  // month 1..12, weekday 0 = Sunday
};
Civil ToCivil(int64_t unix_s) {
  const int64_t days = FloorDiv(unix_s, 86400);
  const int64_t secs = unix_s - days * 86400;
  const int64_t z = days + 719468;
  const int64_t era = FloorDiv(z, 146097);
  const int64_t doe = z - era * 146097;
  const int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const int64_t mp = (5 * doy + 2) / 153;
  Civil c;
  c.day = static_cast<int>(doy - (153 * mp + 2) / 5 + 1);
  c.month = static_cast<int>(mp < 10 ? mp + 3 : mp - 9);
  c.year = yoe + era * 400 + (c.month <= 2 ? 1 : 0);
  c.weekday = static_cast<int>(FloorDiv(days + 4, 7) * -7 + days + 4);  // 1970-01-01 was a Thursday
  c.hour = static_cast<int>(secs / 3600);
  c.minute = static_cast<int>(secs / 60 % 60);
  c.second = static_cast<int>(secs % 60);
  return c;
}

// Appends v as exactly `width` digits (v >= 0, zero-padded; wider values keep all digits).
void Digits(std::string& out, int64_t v, int width) {
  char buf[24];
  int n = 0;
  do {
    buf[n++] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v > 0 && n < 20);
  for (int i = n; i < width; ++i) out += '0';
  while (n > 0) out += buf[--n];
}

// "HH:MM:SS", the part both formats share.
void AppendClock(std::string& out, const Civil& c) {
  Digits(out, c.hour, 2);
  out += ':';
  Digits(out, c.minute, 2);
  out += ':';
  Digits(out, c.second, 2);
}

}  // namespace

std::string IsoTime(int64_t unix_ms) {
  const int64_t s = FloorDiv(unix_ms, 1000);
  const Civil c = ToCivil(s);
  std::string out;
  out.reserve(24);
  Digits(out, c.year, 4);
  out += '-';
  Digits(out, c.month, 2);
  out += '-';
  Digits(out, c.day, 2);
  out += 'T';
  AppendClock(out, c);
  out += '.';
  Digits(out, unix_ms - s * 1000, 3);
  out += 'Z';
  return out;
}

std::string HttpTime(int64_t unix_ms) {
  const Civil c = ToCivil(FloorDiv(unix_ms, 1000));
  std::string out;
  out.reserve(29);
  out += kDays[c.weekday];
  out += ", ";
  Digits(out, c.day, 2);
  out += ' ';
  out += kMonths[c.month - 1];
  out += ' ';
  Digits(out, c.year, 4);
  out += ' ';
  AppendClock(out, c);
  out += " GMT";
  return out;
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
