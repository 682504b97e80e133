#pragma once

// Private: the data path under PosixEnv's files.
//
// Invariants: a backend never owns file descriptors (PosixFile does); Run()
// completes every request in the batch before returning, retrying short
// transfers, so callers see a read shorter than asked only at end of file.

#include <memory>
#include <span>
#include <string_view>

#include "qcloud/core/env.h"

namespace qcloud::core_internal {

class IoBackendImpl {
 public:
  virtual ~IoBackendImpl() = default;
  virtual Status Run(int fd, std::span<IoRequest> batch) = 0;
  virtual std::string_view name() const noexcept = 0;
};

// pread/pwrite, one system call per request (plus retries).
std::unique_ptr<IoBackendImpl> NewPosixBackend();

// io_uring: the batch goes to the kernel in one io_uring_enter. Errors when
// the kernel refuses io_uring_setup (ENOSYS, EPERM under seccomp or
// kernel.io_uring_disabled); PosixEnv then falls back to NewPosixBackend().
Result<std::unique_ptr<IoBackendImpl>> NewIoUringBackend(unsigned entries);

// True when this thread may set up an io_uring: kernel support, no seccomp
// refusal, kernel.io_uring_disabled off. Used to pick fallbacks, and by
// tests to skip (with the reason) what needs io_uring.
bool IoUringAllowed() noexcept;

// Completes one request synchronously with pread/pwrite from where it stands
// (request.transferred bytes already done).
void FinishWithPosix(int fd, IoRequest& request) noexcept;

}  // namespace qcloud::core_internal
