#include "qcloud/core/env.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <linux/falloc.h>

#include <algorithm>
#include <cerrno>

#include <fmt/format.h>

#include "core/io_backend.h"

namespace qcloud {
namespace {

using core_internal::IoBackendImpl;

class PosixFile final : public File {
 public:
  PosixFile(int fd, std::string path, IoBackendImpl* backend)
      : fd_(fd), path_(std::move(path)), backend_(backend) {}
  ~PosixFile() override { ::close(fd_); }
  int native_handle() const noexcept override { return fd_; }

  Result<size_t> ReadAt(uint64_t offset, MutableByteView dst) override {
    IoRequest r{.op = IoRequest::Op::kRead, .offset = offset, .buffer = dst};
    QCLOUD_RETURN_IF_ERROR(backend_->Run(fd_, {&r, 1}).WithContext(path_));
    return r.transferred;
  }

  Status WriteAt(uint64_t offset, ByteView src) override {
    // The request type carries a mutable span for both directions; a write
    // never modifies it.
    IoRequest r{.op = IoRequest::Op::kWrite,
                .offset = offset,
                .buffer = {const_cast<std::byte*>(src.data()), src.size()}};
    return backend_->Run(fd_, {&r, 1}).WithContext(path_);
  }

  Status Submit(std::span<IoRequest> batch) override {
    return backend_->Run(fd_, batch).WithContext(path_);
  }

  Status Sync() override {
    if (::fdatasync(fd_) != 0) return Status::FromErrno(errno, "fdatasync " + path_);
    return Status::Ok();
  }

  Result<uint64_t> Size() override {
    struct stat st {};
    if (::fstat(fd_, &st) != 0) return Status::FromErrno(errno, "fstat " + path_);
    return static_cast<uint64_t>(st.st_size);
  }

  Status Truncate(uint64_t size) override {
    if (::ftruncate(fd_, static_cast<off_t>(size)) != 0) {
      return Status::FromErrno(errno, "ftruncate " + path_);
    }
    return Status::Ok();
  }

  Status ZeroRange(uint64_t offset, uint64_t length, bool release) override {
    QCLOUD_ASSIGN_OR_RETURN(const uint64_t size, Size());
    if (offset >= size || length == 0) return Status::Ok();
    length = std::min(length, size - offset);
    const int mode = release ? FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE : FALLOC_FL_ZERO_RANGE;
    if (::fallocate(fd_, mode, static_cast<off_t>(offset), static_cast<off_t>(length)) == 0) {
      return Status::Ok();
    }
    if (errno != EOPNOTSUPP && errno != ENOSYS) {
      return Status::FromErrno(errno, "fallocate " + path_);
    }
    return File::ZeroRange(offset, length, release);
  }

  const std::string& path() const noexcept override { return path_; }

 private:
  int fd_;
  std::string path_;
  IoBackendImpl* backend_;
};

class PosixEnv final : public Env {
 public:
  explicit PosixEnv(std::unique_ptr<IoBackendImpl> backend) : backend_(std::move(backend)) {}

  Result<std::unique_ptr<File>> OpenFile(const std::string& path, OpenMode mode) override {
    int flags = O_CLOEXEC;
    switch (mode) {
      case OpenMode::kReadOnly: flags |= O_RDONLY; break;
      case OpenMode::kReadWrite: flags |= O_RDWR; break;
      case OpenMode::kCreate: flags |= O_RDWR | O_CREAT; break;
      case OpenMode::kCreateExclusive: flags |= O_RDWR | O_CREAT | O_EXCL; break;
      case OpenMode::kTruncate: flags |= O_RDWR | O_CREAT | O_TRUNC; break;
      case OpenMode::kReadWriteDirect: flags |= O_RDWR | O_DIRECT; break;
    }
    int fd;
    do {
      fd = ::open(path.c_str(), flags, 0644);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) return Status::FromErrno(errno, "open " + path);
    return std::unique_ptr<File>(new PosixFile(fd, path, backend_.get()));
  }

  Status RemoveFile(const std::string& path) override {
    if (::unlink(path.c_str()) != 0) return Status::FromErrno(errno, "unlink " + path);
    return Status::Ok();
  }

  Status RenameFile(const std::string& from, const std::string& to) override {
    if (::rename(from.c_str(), to.c_str()) != 0) {
      return Status::FromErrno(errno, fmt::format("rename {} -> {}", from, to));
    }
    return Status::Ok();
  }

  Status CreateDirs(const std::string& path) override {
    if (path.empty()) return InvalidArgument("CreateDirs: empty path");
    // Walk the components so that missing parents are created too.
    for (size_t pos = 1; pos <= path.size(); ++pos) {
      if (pos != path.size() && path[pos] != '/') continue;
      std::string prefix = path.substr(0, pos);
      if (::mkdir(prefix.c_str(), 0755) != 0 && errno != EEXIST) {
        return Status::FromErrno(errno, "mkdir " + prefix);
      }
    }
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) return Status::FromErrno(errno, "stat " + path);
    if (!S_ISDIR(st.st_mode)) return Status(Errc::kAlreadyExists, path + " is not a directory");
    return Status::Ok();
  }

  Status SyncDir(const std::string& dir) override {
    int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return Status::FromErrno(errno, "open dir " + dir);
    int rc = ::fsync(fd);
    int err = errno;
    ::close(fd);
    if (rc != 0) return Status::FromErrno(err, "fsync dir " + dir);
    return Status::Ok();
  }

  Result<std::vector<std::string>> ListDir(const std::string& dir) override {
    DIR* d = ::opendir(dir.c_str());
    if (d == nullptr) return Status::FromErrno(errno, "opendir " + dir);
    std::vector<std::string> names;
    errno = 0;
    while (dirent* e = ::readdir(d)) {
      std::string_view n = e->d_name;
      if (n != "." && n != "..") names.emplace_back(n);
    }
    int err = errno;
    ::closedir(d);
    if (err != 0) return Status::FromErrno(err, "readdir " + dir);
    return names;
  }

  Result<uint64_t> FileSize(const std::string& path) override {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) return Status::FromErrno(errno, "stat " + path);
    return static_cast<uint64_t>(st.st_size);
  }

  bool FileExists(const std::string& path) override { return ::access(path.c_str(), F_OK) == 0; }

  std::string_view io_backend() const noexcept override { return backend_->name(); }

 private:
  std::unique_ptr<IoBackendImpl> backend_;
};

}  // namespace

Result<std::unique_ptr<Env>> OpenPosixEnv(const PosixEnvOptions& options) {
  if (options.ring_entries == 0 || options.ring_entries > 4096) {
    return InvalidArgument(fmt::format("ring_entries {} not in 1..4096", options.ring_entries));
  }
  std::unique_ptr<IoBackendImpl> backend;
  if (options.backend != IoBackend::kPosix) {
    auto ring = core_internal::NewIoUringBackend(options.ring_entries);
    if (ring.has_value()) {
      backend = std::move(ring).value();
    } else if (options.backend == IoBackend::kIoUring) {
      return ring.error();
    }
  }
  if (!backend) backend = core_internal::NewPosixBackend();
  return std::unique_ptr<Env>(new PosixEnv(std::move(backend)));
}

std::string JoinPath(std::string_view dir, std::string_view name) {
  if (dir.empty()) return std::string(name);
  if (dir.back() == '/') return fmt::format("{}{}", dir, name);
  return fmt::format("{}/{}", dir, name);
}

Result<std::string> ReadFileToString(Env& env, const std::string& path, size_t max_size) {
  QCLOUD_ASSIGN_OR_RETURN(auto file, env.OpenFile(path, OpenMode::kReadOnly));
  QCLOUD_ASSIGN_OR_RETURN(uint64_t size, file->Size());
  if (size > max_size) {
    return Status(Errc::kTooLarge, fmt::format("{}: {} bytes, limit {}", path, size, max_size));
  }
  std::string out(static_cast<size_t>(size), '\0');
  QCLOUD_ASSIGN_OR_RETURN(
      size_t n, file->ReadAt(0, {reinterpret_cast<std::byte*>(out.data()), out.size()}));
  out.resize(n);
  return out;
}

Status WriteFileAtomically(Env& env, const std::string& path, ByteView data) {
  std::string tmp = path + ".tmp";
  {
    QCLOUD_ASSIGN_OR_RETURN(auto file, env.OpenFile(tmp, OpenMode::kTruncate));
    QCLOUD_RETURN_IF_ERROR(file->WriteAt(0, data));
    QCLOUD_RETURN_IF_ERROR(file->Sync());
  }
  QCLOUD_RETURN_IF_ERROR(env.RenameFile(tmp, path));
  auto slash = path.rfind('/');
  return env.SyncDir(slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash)));
}

Status File::ZeroRange(uint64_t offset, uint64_t length, bool release) {
  (void)release;
  QCLOUD_ASSIGN_OR_RETURN(const uint64_t size, Size());
  if (offset >= size) return Status::Ok();
  uint64_t left = std::min(length, size - offset);
  static constexpr std::byte kZeros[64 * 1024] = {};
  while (left > 0) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(left, sizeof kZeros));
    QCLOUD_RETURN_IF_ERROR(WriteAt(offset, ByteView(kZeros, n)));
    offset += n;
    left -= n;
  }
  return Status::Ok();
}

}  // namespace qcloud
