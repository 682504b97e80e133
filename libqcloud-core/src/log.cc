#include "qcloud/core/log.h"

#include <unistd.h>

#include <chrono>
#include <ctime>

#include <fmt/format.h>

namespace qcloud {
namespace {
class Discard final : public Logger {
 public:
  void Log(LogLevel, std::string_view) noexcept override {}
  LogLevel min_level() const noexcept override { return LogLevel::kError; }
};
}  // namespace

std::string_view LogLevelName(LogLevel level) noexcept {
  switch (level) {
    case LogLevel::kDebug: return "DEBUG";
    case LogLevel::kInfo: return "INFO";
    case LogLevel::kWarning: return "WARN";
    case LogLevel::kError: return "ERROR";
  }
  return "?";
}

Logger& DiscardLogger() noexcept {
  static Discard discard;
  return discard;
}

void StderrLogger::Log(LogLevel level, std::string_view message) noexcept {
  if (!Enabled(level)) return;
  try {
    auto now = std::chrono::system_clock::now();
    std::time_t secs = std::chrono::system_clock::to_time_t(now);
    auto micros = std::chrono::duration_cast<std::chrono::microseconds>(now.time_since_epoch()) %
                  std::chrono::seconds(1);
    std::tm tm{};
    gmtime_r(&secs, &tm);
    std::string line = fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z {} {}\n",
                                   tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                                   tm.tm_min, tm.tm_sec, micros.count(), LogLevelName(level),
                                   message);
    ssize_t ignored = ::write(STDERR_FILENO, line.data(), line.size());
    (void)ignored;
  } catch (...) {
    // Out of memory while logging: drop the line rather than terminate.
  }
}

}  // namespace qcloud
