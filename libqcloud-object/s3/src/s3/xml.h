#pragma once

// Writing S3's XML responses (a small escaping writer) and the time formats
// S3 uses. Parsing request XML is pugixml's job (service.cc).

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace qcloud::object::s3 {

// Text and attribute escaping: & < > " ' and control characters.
std::string XmlEscape(std::string_view text);

class XmlWriter {
 public:
  // Starts the document with the XML declaration and the root element (in
  // S3's namespace when `ns`).
  XmlWriter(std::string_view root, bool ns = true);
  XmlWriter& Open(std::string_view name);
  XmlWriter& Close(std::string_view name);
  XmlWriter& Element(std::string_view name, std::string_view text);
  XmlWriter& Element(std::string_view name, uint64_t value);
  XmlWriter& Bool(std::string_view name, bool value);
  // Closes the root and returns the document.
  std::string Finish();

 private:
  std::string root_;
  std::string out_;
};

// "2014-01-01T00:00:00.000Z" (ListObjects' LastModified and the like).
std::string IsoTime(int64_t unix_ms);
// "Wed, 01 Jan 2014 00:00:00 GMT" (Last-Modified, Date).
std::string HttpTime(int64_t unix_ms);
// An HTTP date (RFC 1123; RFC 850 and asctime too) as UNIX seconds.
std::optional<int64_t> ParseHttpTime(std::string_view text);

}  // namespace qcloud::object::s3
