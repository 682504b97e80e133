#pragma once

// QCLOUD_CHECK(cond): an invariant of qcloud's own code. When it does not hold
// the process prints where and why to stderr and aborts. Never used for input
// from users or the network: those get a Status.

#include "qcloud/core/export.h"

namespace qcloud::detail {
[[noreturn]] QCLOUD_EXPORT void CheckFailed(const char* file, int line, const char* expr,
                                            const char* msg) noexcept;
}  // namespace qcloud::detail

#define QCLOUD_CHECK(cond)                                                   \
  do {                                                                       \
    if (!(cond)) [[unlikely]]                                                \
      ::qcloud::detail::CheckFailed(__FILE__, __LINE__, #cond, nullptr);     \
  } while (0)

#define QCLOUD_CHECK_MSG(cond, msg)                                          \
  do {                                                                       \
    if (!(cond)) [[unlikely]]                                                \
      ::qcloud::detail::CheckFailed(__FILE__, __LINE__, #cond, (msg));       \
  } while (0)

#ifdef NDEBUG
#define QCLOUD_DCHECK(cond) \
  do {                      \
  } while (false && (cond))
#else
#define QCLOUD_DCHECK(cond) QCLOUD_CHECK(cond)
#endif
