#include "qcloud/core/status.h"

#include <cstring>

#include <fmt/format.h>

#include "qcloud/core/check.h"

namespace qcloud {
namespace {

class CoreErrorCategory final : public std::error_category {
 public:
  const char* name() const noexcept override { return "qcloud"; }
  std::string message(int ev) const override {
    switch (static_cast<Errc>(ev)) {
      case Errc::kOk: return "ok";
      case Errc::kInvalidArgument: return "invalid argument";
      case Errc::kNotFound: return "not found";
      case Errc::kAlreadyExists: return "already exists";
      case Errc::kCorruption: return "corruption";
      case Errc::kIoError: return "I/O error";
      case Errc::kNotSupported: return "not supported";
      case Errc::kResourceExhausted: return "resource exhausted";
      case Errc::kOutOfRange: return "out of range";
      case Errc::kAborted: return "aborted";
      case Errc::kUnavailable: return "unavailable";
      case Errc::kProtocolError: return "protocol error";
      case Errc::kTimedOut: return "timed out";
      case Errc::kTooLarge: return "too large";
    }
    return fmt::format("unknown error {}", ev);
  }
  // Lets `code == std::errc::no_such_file_or_directory` style checks and
  // generic code treat core's codes like their POSIX counterparts.
  std::error_condition default_error_condition(int ev) const noexcept override {
    switch (static_cast<Errc>(ev)) {
      case Errc::kInvalidArgument: return std::errc::invalid_argument;
      case Errc::kNotFound: return std::errc::no_such_file_or_directory;
      case Errc::kAlreadyExists: return std::errc::file_exists;
      case Errc::kIoError: return std::errc::io_error;
      case Errc::kNotSupported: return std::errc::not_supported;
      case Errc::kTimedOut: return std::errc::timed_out;
      default: return {ev, *this};
    }
  }
};

}  // namespace

const std::error_category& CoreCategory() noexcept {
  static const CoreErrorCategory kCategory;
  return kCategory;
}

Status::Status(std::error_code code, std::string message)
    : code_(code), message_(std::move(message)) {
  QCLOUD_CHECK_MSG(code_, "error Status constructed with a success code");
}

Status Status::FromErrno(int err, std::string_view context) {
  // Map the errno values that callers test for onto core's codes; keep the
  // rest as system errors so nothing is lost.
  Errc mapped = Errc::kOk;
  switch (err) {
    case ENOENT: mapped = Errc::kNotFound; break;
    case EEXIST: mapped = Errc::kAlreadyExists; break;
    case EINVAL: mapped = Errc::kInvalidArgument; break;
    case ENOSPC: mapped = Errc::kResourceExhausted; break;
    case EIO: mapped = Errc::kIoError; break;
    case ETIMEDOUT: mapped = Errc::kTimedOut; break;
    default: break;
  }
  std::string msg = fmt::format("{}: {}", context, std::strerror(err));
  if (mapped != Errc::kOk) return Status(mapped, std::move(msg));
  if (err == 0) err = EIO;
  return Status(std::error_code(err, std::system_category()), std::move(msg));
}

std::string Status::ToString() const {
  if (ok()) return "OK";
  if (message_.empty()) return fmt::format("{}: {}", code_.category().name(), code_.message());
  return fmt::format("{}: {}: {}", code_.category().name(), code_.message(), message_);
}

Status Status::WithContext(std::string_view context) const {
  if (ok()) return *this;
  return Status(code_, fmt::format("{}: {}", context, message_));
}

}  // namespace qcloud
