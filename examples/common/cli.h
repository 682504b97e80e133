#pragma once

// The command line of every example server: --help, --version and
// --log-level for all of them, and typed options parsed by core's rules
// (qcloud/core/units.h, endpoint.h), so "7d", "512M", "-1" and
// "127.0.0.1:11311" mean the same thing, or fail the same way, everywhere.
//
//   CommandLine cli("qcloud-kvd", "a memcached-compatible cache node");
//   Endpoint listen = ParseEndpoint("127.0.0.1:11311").value();
//   cli.AddEndpoint("listen", &listen, "address to serve");
//   std::chrono::milliseconds cold;
//   cli.AddDuration("cold-after", &cold, "7d", "sink items not read for this long");
//   if (auto exit = cli.Parse(argc, argv)) return *exit;
//
// Errors go to stderr as "<program>: --<option>: <reason>" with exit code 2;
// --help and --version print to stdout and exit 0.

#include <chrono>
#include <concepts>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "qcloud/core/endpoint.h"
#include "qcloud/core/log.h"
#include "qcloud/core/status.h"

namespace qcloud::examples {

class CommandLine {
 public:
  CommandLine(std::string program, std::string summary);
  ~CommandLine();

  // A switch: present = true.
  void AddFlag(const char* name, bool* out, const char* help);
  // Free text; the default is *out.
  void AddString(const char* name, std::string* out, const char* help);
  // Free text, given any number of times (each occurrence appended).
  void AddStrings(const char* name, std::vector<std::string>* out, const char* help);
  // Decimal digits only, at most `max`; the default is *out.
  template <std::unsigned_integral T>
  void AddNumber(const char* name, T* out, const char* help,
                 T max = std::numeric_limits<T>::max()) {
    AddParsed(name, std::to_string(*out), help, [out, max](std::string_view text) {
      return ParseNumberInto(text, max, [out](uint64_t v) { *out = static_cast<T>(v); });
    });
  }
  // "250ms", "30s", "12h", "7d"; a plain number is seconds.
  void AddDuration(const char* name, std::chrono::milliseconds* out, const char* default_text,
                   const char* help);
  // "512M", "10G"; a plain number counts `plain_unit` bytes.
  void AddBytes(const char* name, uint64_t* out, const char* default_text, const char* help,
                uint64_t plain_unit = 1);
  // "host:port", "[v6]:port", ":port"; the default is *out.
  void AddEndpoint(const char* name, Endpoint* out, const char* help);

  // Parses argv. nullopt: go on; a value: exit with it now.
  std::optional<int> Parse(int argc, char** argv);

  // After Parse(): a stderr logger at --log-level (default info).
  Logger& logger();
  // Prints "<program>: <status>" when `s` failed; returns the exit code
  // (0 ok, 1 failure).
  int Exit(const Status& s);

 private:
  using Apply = std::function<Status(std::string_view)>;
  void AddParsed(const char* name, std::string default_text, const char* help, Apply apply);
  static Status ParseNumberInto(std::string_view text, uint64_t max,
                                const std::function<void(uint64_t)>& set);

  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace qcloud::examples
