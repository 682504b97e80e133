#pragma once

// Status: the one error channel of qcloud. A Status is either ok or carries a
// std::error_code (from one of qcloud's categories, or std::system_category()
// for errno values) and a human-readable message.
//
// Each subsystem owns an error category: core's is `Errc` below; kv, block,
// object... define their own enums the same way, so callers can test
// `status.code() == kv::Errc::kNotStored` while generic code only looks at
// `ok()` and `ToString()`. Errors that mean the same thing everywhere
// (invalid argument, not found, I/O) use core's `Errc`.
//
// Thread safety: a Status is a value; distinct objects may be used from
// distinct threads.

#include <string>
#include <string_view>
#include <system_error>
#include <utility>

#include "qcloud/core/export.h"

namespace qcloud {

// Errors common to every subsystem. Values are stable (they may be logged).
enum class Errc {
  kOk = 0,
  kInvalidArgument = 1,    // caller passed something malformed or out of range
  kNotFound = 2,           // no such key, file, object, volume...
  kAlreadyExists = 3,      // create of something that exists
  kCorruption = 4,         // stored or received data fails its checks
  kIoError = 5,            // the OS reported an I/O failure
  kNotSupported = 6,       // the operation or feature is not available here
  kResourceExhausted = 7,  // a budget (memory, disk, queue) is full
  kOutOfRange = 8,         // read past the end, value overflow
  kAborted = 9,            // concurrent modification, cas mismatch
  kUnavailable = 10,       // stopped, shutting down, peer not reachable
  kProtocolError = 11,     // network input violates the protocol
  kTimedOut = 12,          // a deadline passed
  kTooLarge = 13,          // input exceeds a configured size limit
};

QCLOUD_EXPORT const std::error_category& CoreCategory() noexcept;

inline std::error_code make_error_code(Errc e) noexcept {
  return {static_cast<int>(e), CoreCategory()};
}

}  // namespace qcloud

template <>
struct std::is_error_code_enum<qcloud::Errc> : std::true_type {};

namespace qcloud {

class [[nodiscard]] QCLOUD_EXPORT Status {
 public:
  // An ok status.
  Status() noexcept = default;
  // An error status. `code` must not be a success code (value 0).
  Status(std::error_code code, std::string message);
  Status(Errc code, std::string message) : Status(make_error_code(code), std::move(message)) {}

  static Status Ok() noexcept { return Status(); }
  // From an errno value, e.g. FromErrno(errno, "open /x").
  static Status FromErrno(int err, std::string_view context);

  bool ok() const noexcept { return !code_; }
  explicit operator bool() const noexcept { return ok(); }
  const std::error_code& code() const noexcept { return code_; }
  const std::string& message() const noexcept { return message_; }

  // "OK", or "<category>: <code message>: <message>".
  std::string ToString() const;

  // Returns a copy with `context + ": "` prepended to the message.
  Status WithContext(std::string_view context) const;

  // Compares codes only; messages are for humans.
  friend bool operator==(const Status& a, const Status& b) noexcept { return a.code_ == b.code_; }
  friend bool operator==(const Status& s, Errc e) noexcept { return s.code_ == e; }

 private:
  std::error_code code_;
  std::string message_;
};

// Shorthands for the common categories.
inline Status InvalidArgument(std::string msg) { return {Errc::kInvalidArgument, std::move(msg)}; }
inline Status NotFound(std::string msg) { return {Errc::kNotFound, std::move(msg)}; }
inline Status Corruption(std::string msg) { return {Errc::kCorruption, std::move(msg)}; }
inline Status IoError(std::string msg) { return {Errc::kIoError, std::move(msg)}; }
inline Status NotSupported(std::string msg) { return {Errc::kNotSupported, std::move(msg)}; }

}  // namespace qcloud

// Evaluates `expr` (a Status); returns it from the enclosing function if not ok.
#define QCLOUD_RETURN_IF_ERROR(expr)              \
  do {                                            \
    ::qcloud::Status qcloud_status_ = (expr);     \
    if (!qcloud_status_.ok()) [[unlikely]]        \
      return qcloud_status_;                      \
  } while (0)
