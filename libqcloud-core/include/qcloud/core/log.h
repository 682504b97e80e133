#pragma once

// The logging hook. Libraries never write to stdout/stderr: they log through
// the Logger their Options carry (default: discard), and the program that
// embeds them decides where lines go.

#include <string_view>

#include "qcloud/core/export.h"

namespace qcloud {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

QCLOUD_EXPORT std::string_view LogLevelName(LogLevel level) noexcept;

class QCLOUD_EXPORT Logger {
 public:
  virtual ~Logger() = default;
  // Called from any thread the library runs on; must be thread-safe. `message`
  // is one line without a trailing newline and is valid only for the call.
  virtual void Log(LogLevel level, std::string_view message) noexcept = 0;
  // Lines below this level are not formatted at all.
  virtual LogLevel min_level() const noexcept { return LogLevel::kInfo; }

  bool Enabled(LogLevel level) const noexcept { return level >= min_level(); }
};

// Discards everything. Stateless; lives forever.
QCLOUD_EXPORT Logger& DiscardLogger() noexcept;

// Writes "<UTC time> <LEVEL> <message>\n" to stderr with one write(2) per
// line (lines from different threads do not interleave). For programs, not
// for use inside libraries.
class QCLOUD_EXPORT StderrLogger final : public Logger {
 public:
  explicit StderrLogger(LogLevel min_level = LogLevel::kInfo) : min_level_(min_level) {}
  void Log(LogLevel level, std::string_view message) noexcept override;
  LogLevel min_level() const noexcept override { return min_level_; }

 private:
  LogLevel min_level_;
};

}  // namespace qcloud
