#include "qcloud/testing/mem_env.h"

#include <algorithm>
#include <cstring>
#include <vector>

namespace qcloud::testing {

struct MemEnv::Data {
  std::mutex mu;
  std::vector<std::byte> bytes;
};

namespace {
std::string ParentOf(const std::string& path) {
  auto slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}
}  // namespace

class MemEnv::MemFile final : public File {
 public:
  MemFile(std::string path, std::shared_ptr<Data> data, bool writable)
      : path_(std::move(path)), data_(std::move(data)), writable_(writable) {}

  Result<size_t> ReadAt(uint64_t offset, MutableByteView dst) override {
    std::lock_guard lock(data_->mu);
    return ReadLocked(offset, dst);
  }

  Status WriteAt(uint64_t offset, ByteView src) override {
    if (!writable_) return Status(Errc::kIoError, path_ + ": file opened read-only");
    std::lock_guard lock(data_->mu);
    WriteLocked(offset, src);
    return Status::Ok();
  }

  Status Submit(std::span<IoRequest> batch) override {
    Status first;
    for (auto& r : batch) {
      if (r.op == IoRequest::Op::kRead) {
        auto n = ReadAt(r.offset, r.buffer);
        r.transferred = n.value_or(0);
        r.status = n.status();
      } else {
        r.status = WriteAt(r.offset, ByteView(r.buffer.data(), r.buffer.size()));
        r.transferred = r.status.ok() ? r.buffer.size() : 0;
      }
      if (!r.status.ok() && first.ok()) first = r.status;
    }
    return first;
  }

  Status Sync() override { return Status::Ok(); }

  Result<uint64_t> Size() override {
    std::lock_guard lock(data_->mu);
    return static_cast<uint64_t>(data_->bytes.size());
  }

  Status Truncate(uint64_t size) override {
    if (!writable_) return Status(Errc::kIoError, path_ + ": file opened read-only");
    std::lock_guard lock(data_->mu);
    data_->bytes.resize(static_cast<size_t>(size));
    return Status::Ok();
  }

  const std::string& path() const noexcept override { return path_; }

 private:
  size_t ReadLocked(uint64_t offset, MutableByteView dst) {
    const auto& b = data_->bytes;
    if (offset >= b.size()) return 0;
    size_t n = std::min<size_t>(dst.size(), b.size() - static_cast<size_t>(offset));
    std::memcpy(dst.data(), b.data() + offset, n);
    return n;
  }
  void WriteLocked(uint64_t offset, ByteView src) {
    auto& b = data_->bytes;
    if (offset + src.size() > b.size()) b.resize(static_cast<size_t>(offset + src.size()));
    if (!src.empty()) std::memcpy(b.data() + offset, src.data(), src.size());
  }

  std::string path_;
  std::shared_ptr<Data> data_;
  bool writable_;
};

MemEnv::MemEnv() { dirs_.insert("."); dirs_.insert("/"); }
MemEnv::~MemEnv() = default;

Result<std::unique_ptr<File>> MemEnv::OpenFile(const std::string& path, OpenMode mode) {
  std::lock_guard lock(mu_);
  if (!dirs_.contains(ParentOf(path))) return NotFound("open " + path + ": no such directory");
  if (dirs_.contains(path)) return Status(Errc::kInvalidArgument, "open " + path + ": a directory");
  auto it = files_.find(path);
  bool exists = it != files_.end();
  switch (mode) {
    case OpenMode::kReadOnly:
    case OpenMode::kReadWrite:
    case OpenMode::kReadWriteDirect:  // no page cache to bypass here
      if (!exists) return NotFound("open " + path);
      break;
    case OpenMode::kCreateExclusive:
      if (exists) return Status(Errc::kAlreadyExists, "open " + path);
      [[fallthrough]];
    case OpenMode::kCreate:
    case OpenMode::kTruncate:
      if (!exists) it = files_.emplace(path, std::make_shared<Data>()).first;
      break;
  }
  if (mode == OpenMode::kTruncate) {
    std::lock_guard data_lock(it->second->mu);
    it->second->bytes.clear();
  }
  return std::unique_ptr<File>(new MemFile(path, it->second, mode != OpenMode::kReadOnly));
}

Status MemEnv::RemoveFile(const std::string& path) {
  std::lock_guard lock(mu_);
  if (files_.erase(path) == 0) return NotFound("unlink " + path);
  return Status::Ok();
}

Status MemEnv::RenameFile(const std::string& from, const std::string& to) {
  std::lock_guard lock(mu_);
  auto it = files_.find(from);
  if (it == files_.end()) return NotFound("rename " + from);
  if (!dirs_.contains(ParentOf(to))) return NotFound("rename to " + to + ": no such directory");
  auto data = it->second;
  files_.erase(it);
  files_[to] = std::move(data);
  return Status::Ok();
}

Status MemEnv::CreateDirs(const std::string& path) {
  if (path.empty()) return InvalidArgument("CreateDirs: empty path");
  std::lock_guard lock(mu_);
  for (size_t pos = 1; pos <= path.size(); ++pos) {
    if (pos != path.size() && path[pos] != '/') continue;
    std::string prefix = path.substr(0, pos);
    if (files_.contains(prefix)) return Status(Errc::kAlreadyExists, prefix + " is a file");
    dirs_.insert(prefix);
  }
  return Status::Ok();
}

Status MemEnv::SyncDir(const std::string& dir) {
  std::lock_guard lock(mu_);
  if (!dirs_.contains(dir)) return NotFound("sync dir " + dir);
  return Status::Ok();
}

Result<std::vector<std::string>> MemEnv::ListDir(const std::string& dir) {
  std::lock_guard lock(mu_);
  if (!dirs_.contains(dir)) return NotFound("opendir " + dir);
  std::vector<std::string> names;
  auto add_child = [&](const std::string& p) {
    if (p != dir && ParentOf(p) == dir) names.push_back(p.substr(p.rfind('/') + 1));
  };
  for (const auto& [p, d] : files_) add_child(p);
  for (const auto& p : dirs_) add_child(p);
  return names;
}

Result<uint64_t> MemEnv::FileSize(const std::string& path) {
  std::lock_guard lock(mu_);
  auto it = files_.find(path);
  if (it == files_.end()) return NotFound("stat " + path);
  std::lock_guard data_lock(it->second->mu);
  return static_cast<uint64_t>(it->second->bytes.size());
}

bool MemEnv::FileExists(const std::string& path) {
  std::lock_guard lock(mu_);
  return files_.contains(path) || dirs_.contains(path);
}

uint64_t MemEnv::BytesStored() const {
  std::lock_guard lock(mu_);
  uint64_t total = 0;
  for (const auto& [p, d] : files_) {
    std::lock_guard data_lock(d->mu);
    total += d->bytes.size();
  }
  return total;
}

}  // namespace qcloud::testing
