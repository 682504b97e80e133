#pragma once

// Env: the file system as qcloud's libraries see it. Library code opens files
// only through an Env taken from its Options, so tests can substitute MemEnv
// (in memory) or FaultInjectionEnv (drops unsynced writes, fails on demand)
// from qcloud::testing.
//
// The POSIX Env does its data I/O through io_uring when the kernel allows it
// and falls back to pread/pwrite when io_uring is unavailable or refused
// (old kernels, seccomp profiles that block io_uring_setup, sysctl
// kernel.io_uring_disabled). Both backends pass the same tests. With
// io_uring, batches (Submit) go through the ring in one io_uring_enter; a
// lone ReadAt/WriteAt is a plain pread/pwrite, which is cheaper than a
// ring round trip and never hands a buffered write to a kernel worker.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "qcloud/core/bytes.h"
#include "qcloud/core/export.h"
#include "qcloud/core/result.h"
#include "qcloud/core/status.h"

namespace qcloud {

// One positional read or write in a File::Submit() batch.
struct IoRequest {
  enum class Op { kRead, kWrite };
  Op op = Op::kRead;
  uint64_t offset = 0;              // byte offset in the file
  std::span<std::byte> buffer;      // kRead: filled; kWrite: written (not modified)
  // Set by Submit(): bytes transferred (kRead: fewer than buffer.size() only
  // at end of file; kWrite: all of them on success) and the outcome.
  size_t transferred = 0;
  Status status;
};

// A file opened for positional I/O.
// Thread safety: ReadAt, WriteAt and Submit may run concurrently from several
// threads (they carry their own offsets); overlapping concurrent writes have
// no defined order, as with pwrite(2).
class QCLOUD_EXPORT File {
 public:
  virtual ~File() = default;

  // Reads up to dst.size() bytes at `offset`. Returns how many were read:
  // fewer than asked only at the end of the file.
  virtual Result<size_t> ReadAt(uint64_t offset, MutableByteView dst) = 0;
  // Writes all of `src` at `offset`, extending the file as needed.
  virtual Status WriteAt(uint64_t offset, ByteView src) = 0;
  // Runs a batch of reads and writes (in any order, possibly in parallel) and
  // returns when all have finished; each request's `status` says how it went.
  // Returns the first failure, or ok. io_uring submits the batch with one
  // system call.
  virtual Status Submit(std::span<IoRequest> batch) = 0;
  // Makes written data durable (fdatasync). Until Sync() returns ok, a crash
  // may lose any write since the previous Sync().
  virtual Status Sync() = 0;
  virtual Result<uint64_t> Size() = 0;
  virtual Status Truncate(uint64_t size) = 0;
  // Makes [offset, offset + length) read as zeros without changing the
  // file's size (bytes past the end stay past it). release: give the space
  // back to the file system (a hole, FALLOC_FL_PUNCH_HOLE); otherwise keep
  // it allocated (FALLOC_FL_ZERO_RANGE), so a later write there cannot fail
  // for space. The default writes zeros, for files without holes (an
  // in-memory Env); POSIX falls back to it where fallocate is refused.
  virtual Status ZeroRange(uint64_t offset, uint64_t length, bool release);
  virtual const std::string& path() const noexcept = 0;
  // The operating system's descriptor, for callers that read the file on
  // their own event loop (TcpServer's SessionIo); -1 when the file has none
  // (an in-memory or test Env). Valid while the File lives.
  virtual int native_handle() const noexcept { return -1; }
};

enum class OpenMode {
  kReadOnly,        // must exist
  kReadWrite,       // must exist
  kCreate,          // read-write, created when missing
  kCreateExclusive, // read-write, fails with kAlreadyExists when present
  kTruncate,        // read-write, created or emptied
  // read-write, must exist, O_DIRECT: no page cache; offsets, lengths and
  // buffers must be multiples of 4096 (kInvalidArgument otherwise). Some
  // file systems (tmpfs) refuse it at open. In-memory Envs ignore it.
  kReadWriteDirect,
};

// Thread safety: all methods may be called concurrently.
class QCLOUD_EXPORT Env {
 public:
  virtual ~Env() = default;

  // Errors: kNotFound, kAlreadyExists (kCreateExclusive), kIoError.
  virtual Result<std::unique_ptr<File>> OpenFile(const std::string& path, OpenMode mode) = 0;
  virtual Status RemoveFile(const std::string& path) = 0;
  // Atomically replaces `to` (POSIX rename semantics).
  virtual Status RenameFile(const std::string& from, const std::string& to) = 0;
  // Creates the directory and missing parents; ok when it exists.
  virtual Status CreateDirs(const std::string& path) = 0;
  // Makes creations, renames and removals in `dir` durable.
  virtual Status SyncDir(const std::string& dir) = 0;
  // Entry names (no "." or ".."), in no particular order.
  virtual Result<std::vector<std::string>> ListDir(const std::string& dir) = 0;
  virtual Result<uint64_t> FileSize(const std::string& path) = 0;
  virtual bool FileExists(const std::string& path) = 0;

  // Which data path this Env uses: "io_uring", "posix" or "memory".
  virtual std::string_view io_backend() const noexcept = 0;
};

enum class IoBackend {
  kAuto,     // io_uring when the kernel allows it, else pread/pwrite
  kIoUring,  // io_uring or fail with kNotSupported
  kPosix,    // pread/pwrite
};

struct PosixEnvOptions {
  IoBackend backend = IoBackend::kAuto;  // data path; see IoBackend
  unsigned ring_entries = 64;            // io_uring submission queue depth
};

// The real file system.
QCLOUD_EXPORT Result<std::unique_ptr<Env>> OpenPosixEnv(const PosixEnvOptions& options = {});

// Joins two path pieces with one '/'.
QCLOUD_EXPORT std::string JoinPath(std::string_view dir, std::string_view name);

// Reads a whole (small) file; fails with kTooLarge past `max_size` bytes.
QCLOUD_EXPORT Result<std::string> ReadFileToString(Env& env, const std::string& path,
                                                   size_t max_size = 64 << 20);
// Writes `data` to `path` atomically: a temporary file, Sync, rename, SyncDir.
QCLOUD_EXPORT Status WriteFileAtomically(Env& env, const std::string& path, ByteView data);

}  // namespace qcloud
