#include "core/io_backend.h"

#include <liburing.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <mutex>

#include <fmt/format.h>

#include "qcloud/core/check.h"

namespace qcloud::core_internal {

void FinishWithPosix(int fd, IoRequest& r) noexcept {
  while (r.transferred < r.buffer.size()) {
    std::byte* p = r.buffer.data() + r.transferred;
    size_t left = r.buffer.size() - r.transferred;
    auto off = static_cast<off_t>(r.offset + r.transferred);
    ssize_t n = r.op == IoRequest::Op::kRead ? ::pread(fd, p, left, off) : ::pwrite(fd, p, left, off);
    if (n < 0) {
      if (errno == EINTR) continue;
      r.status = Status::FromErrno(errno, r.op == IoRequest::Op::kRead ? "pread" : "pwrite");
      return;
    }
    if (n == 0) {
      if (r.op == IoRequest::Op::kRead) break;  // end of file
      r.status = IoError("pwrite wrote nothing");
      return;
    }
    r.transferred += static_cast<size_t>(n);
  }
  r.status = Status::Ok();
}

namespace {

class PosixBackend final : public IoBackendImpl {
 public:
  Status Run(int fd, std::span<IoRequest> batch) override {
    Status first;
    for (auto& r : batch) {
      r.transferred = 0;
      FinishWithPosix(fd, r);
      if (!r.status.ok() && first.ok()) first = r.status;
    }
    return first;
  }
  std::string_view name() const noexcept override { return "posix"; }
};

// One ring shared by all files of an Env, guarded by a mutex: io_uring's
// submission and completion queues are single-producer/single-consumer.
// Batches larger than the ring go in ring-sized slices.
class IoUringBackend final : public IoBackendImpl {
 public:
  ~IoUringBackend() override { io_uring_queue_exit(&ring_); }

  static Result<std::unique_ptr<IoBackendImpl>> Create(unsigned entries) {
    auto b = std::unique_ptr<IoUringBackend>(new IoUringBackend());
    int rc = io_uring_queue_init(entries, &b->ring_, 0);
    if (rc < 0) {
      return Status(Errc::kNotSupported,
                    fmt::format("io_uring_setup refused: {}", std::strerror(-rc)));
    }
    b->entries_ = entries;
    return std::unique_ptr<IoBackendImpl>(std::move(b));
  }

  Status Run(int fd, std::span<IoRequest> batch) override {
    for (auto& r : batch) {
      r.transferred = 0;
      r.status = Status::Ok();
    }
    if (batch.size() == 1) {
      // A lone request gains nothing from the ring: one pread/pwrite is one
      // system call too, takes no lock, and a buffered write that would
      // block is not handed to an io-wq kernel thread (a context switch
      // each way; measured: it halved 1 KiB PUTs of qcloud-cosd). The ring
      // is for batches, where one io_uring_enter does the work of many.
      FinishWithPosix(fd, batch[0]);
      return batch[0].status;
    }
    {
      std::lock_guard lock(mu_);
      for (size_t start = 0; start < batch.size(); start += entries_) {
        size_t n = std::min<size_t>(entries_, batch.size() - start);
        RunSlice(fd, batch.subspan(start, n));
      }
    }
    // Short transfers (a signal, a page-cache boundary) and end of file: the
    // remainder goes through pread/pwrite, which also tells EOF from short.
    Status first;
    for (auto& r : batch) {
      if (r.status.ok() && r.transferred < r.buffer.size()) FinishWithPosix(fd, r);
      if (!r.status.ok() && first.ok()) first = r.status;
    }
    return first;
  }

  std::string_view name() const noexcept override { return "io_uring"; }

 private:
  IoUringBackend() = default;

  void RunSlice(int fd, std::span<IoRequest> slice) {
    for (size_t i = 0; i < slice.size(); ++i) {
      io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
      // Cannot fail: the slice is no larger than the ring and the ring is
      // empty at entry (every earlier submission was reaped).
      QCLOUD_CHECK(sqe != nullptr);
      auto& r = slice[i];
      // One SQE moves at most 1 GiB; FinishWithPosix completes the rest.
      auto len = static_cast<unsigned>(std::min<size_t>(r.buffer.size(), size_t{1} << 30));
      if (r.op == IoRequest::Op::kRead) {
        io_uring_prep_read(sqe, fd, r.buffer.data(), len, r.offset);
      } else {
        io_uring_prep_write(sqe, fd, r.buffer.data(), len, r.offset);
      }
      io_uring_sqe_set_data64(sqe, i);
    }
    // submit_and_wait may return -EINTR after the kernel took the entries;
    // liburing then has nothing left to flush, so retrying is safe. Other
    // errors on a ring that was set up fine mean the kernel broke its
    // contract, and the prepared entries still point at the caller's
    // buffers: stopping is the only safe answer.
    int rc;
    do {
      rc = io_uring_submit_and_wait(&ring_, static_cast<unsigned>(slice.size()));
    } while (rc == -EINTR || rc == -EAGAIN);
    QCLOUD_CHECK_MSG(rc >= 0, "io_uring_submit_and_wait failed");
    for (size_t done = 0; done < slice.size();) {
      io_uring_cqe* cqe = nullptr;
      rc = io_uring_wait_cqe(&ring_, &cqe);
      if (rc == -EINTR || rc == -EAGAIN) continue;
      QCLOUD_CHECK_MSG(rc == 0, "io_uring_wait_cqe failed");
      auto& r = slice[io_uring_cqe_get_data64(cqe)];
      if (cqe->res < 0) {
        r.status = Status::FromErrno(
            -cqe->res, r.op == IoRequest::Op::kRead ? "io_uring read" : "io_uring write");
      } else {
        r.transferred = static_cast<size_t>(cqe->res);
      }
      io_uring_cqe_seen(&ring_, cqe);
      ++done;
    }
  }

  std::mutex mu_;
  io_uring ring_{};
  unsigned entries_ = 0;
};

}  // namespace

std::unique_ptr<IoBackendImpl> NewPosixBackend() { return std::make_unique<PosixBackend>(); }

Result<std::unique_ptr<IoBackendImpl>> NewIoUringBackend(unsigned entries) {
  return IoUringBackend::Create(entries);
}

bool IoUringAllowed() noexcept {
  constexpr unsigned kProbeEntries = 4;
  io_uring probe;
  if (io_uring_queue_init(kProbeEntries, &probe, 0) < 0) return false;
  io_uring_queue_exit(&probe);
  return true;
}

}  // namespace qcloud::core_internal
