#include "qcloud/core/check.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>

namespace qcloud::detail {

void CheckFailed(const char* file, int line, const char* expr, const char* msg) noexcept {
  // snprintf into a stack buffer and one write(2): no allocation, since the
  // failure may be an allocator or heap invariant.
  char buf[1024];
  int n = std::snprintf(buf, sizeof(buf), "qcloud: check failed at %s:%d: %s%s%s\n", file, line,
                        expr, msg ? ": " : "", msg ? msg : "");
  if (n > 0) {
    size_t len = static_cast<size_t>(n) < sizeof(buf) ? static_cast<size_t>(n) : sizeof(buf) - 1;
    ssize_t ignored = ::write(STDERR_FILENO, buf, len);
    (void)ignored;
  }
  std::abort();
}

}  // namespace qcloud::detail
