#include "qcloud/testing/fault_injection_env.h"

#include <algorithm>

namespace qcloud::testing {

namespace {
std::string ParentOf(const std::string& path) {
  auto slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}
}  // namespace

// One change that a power cut would undo.
struct FaultInjectionEnv::Undo {
  enum class Kind { kWrite, kCreate, kRemove, kRename };
  Kind kind;
  std::string path;       // the file (kRename: the new name)
  std::string from;       // kRename: the old name
  std::string dir;        // namespace changes: the directory whose SyncDir makes them durable
  uint64_t offset = 0;    // kWrite: where old_bytes go back
  std::string old_bytes;  // kWrite: bytes overwritten; kRemove/kRename: a replaced file
  uint64_t old_size = 0;  // kWrite: file size before the write
  bool had_target = false;  // kRename: `path` existed before and old_bytes hold it
};

class FaultFile final : public File {
 public:
  FaultFile(FaultInjectionEnv& env, std::unique_ptr<File> base) : env_(env), base_(std::move(base)) {}

  Result<size_t> ReadAt(uint64_t offset, MutableByteView dst) override {
    QCLOUD_RETURN_IF_ERROR(env_.Check(false));
    return base_->ReadAt(offset, dst);
  }

  Status WriteAt(uint64_t offset, ByteView src) override {
    QCLOUD_RETURN_IF_ERROR(env_.Check(true));
    QCLOUD_RETURN_IF_ERROR(Remember(offset, src.size()));
    return base_->WriteAt(offset, src);
  }

  Status Submit(std::span<IoRequest> batch) override {
    bool writes = std::any_of(batch.begin(), batch.end(),
                              [](const IoRequest& r) { return r.op == IoRequest::Op::kWrite; });
    QCLOUD_RETURN_IF_ERROR(env_.Check(writes));
    for (const auto& r : batch) {
      if (r.op == IoRequest::Op::kWrite) QCLOUD_RETURN_IF_ERROR(Remember(r.offset, r.buffer.size()));
    }
    return base_->Submit(batch);
  }

  Status Sync() override {
    QCLOUD_RETURN_IF_ERROR(env_.Check(true));
    QCLOUD_RETURN_IF_ERROR(base_->Sync());
    env_.ForgetWrites(base_->path());
    return Status::Ok();
  }

  Result<uint64_t> Size() override { return base_->Size(); }

  Status Truncate(uint64_t size) override {
    QCLOUD_RETURN_IF_ERROR(env_.Check(true));
    QCLOUD_ASSIGN_OR_RETURN(uint64_t cur, base_->Size());
    if (size < cur) QCLOUD_RETURN_IF_ERROR(Remember(size, static_cast<size_t>(cur - size)));
    else QCLOUD_RETURN_IF_ERROR(Remember(cur, 0));
    return base_->Truncate(size);
  }

  const std::string& path() const noexcept override { return base_->path(); }

 private:
  // Saves what [offset, offset+len) holds now, and the size, for the undo.
  Status Remember(uint64_t offset, size_t len) {
    FaultInjectionEnv::Undo u{.kind = FaultInjectionEnv::Undo::Kind::kWrite, .path = base_->path()};
    QCLOUD_ASSIGN_OR_RETURN(u.old_size, base_->Size());
    u.offset = offset;
    if (offset < u.old_size) {
      u.old_bytes.resize(static_cast<size_t>(std::min<uint64_t>(len, u.old_size - offset)));
      QCLOUD_ASSIGN_OR_RETURN(
          size_t n, base_->ReadAt(offset, {reinterpret_cast<std::byte*>(u.old_bytes.data()),
                                           u.old_bytes.size()}));
      u.old_bytes.resize(n);
    }
    std::lock_guard lock(env_.mu_);
    env_.undo_.push_back(std::move(u));
    return Status::Ok();
  }

  FaultInjectionEnv& env_;
  std::unique_ptr<File> base_;
};

FaultInjectionEnv::FaultInjectionEnv(Env& base) : base_(base) {}
FaultInjectionEnv::~FaultInjectionEnv() = default;

Status FaultInjectionEnv::Check(bool is_write) const {
  std::lock_guard lock(mu_);
  if (failure_ == FailureMode::kAll || (is_write && failure_ == FailureMode::kWrites)) {
    return IoError("injected fault");
  }
  return Status::Ok();
}

void FaultInjectionEnv::ForgetWrites(const std::string& path) {
  std::lock_guard lock(mu_);
  std::erase_if(undo_, [&](const Undo& u) { return u.kind == Undo::Kind::kWrite && u.path == path; });
}

Result<std::unique_ptr<File>> FaultInjectionEnv::OpenFile(const std::string& path, OpenMode mode) {
  bool creates = mode != OpenMode::kReadOnly && mode != OpenMode::kReadWrite &&
                 mode != OpenMode::kReadWriteDirect;
  QCLOUD_RETURN_IF_ERROR(Check(creates));
  bool existed = base_.FileExists(path);
  std::string old;
  if (existed && mode == OpenMode::kTruncate) {
    QCLOUD_ASSIGN_OR_RETURN(old, ReadFileToString(base_, path, SIZE_MAX));
  }
  QCLOUD_ASSIGN_OR_RETURN(auto file, base_.OpenFile(path, mode));
  std::lock_guard lock(mu_);
  if (creates && !existed) {
    undo_.push_back({.kind = Undo::Kind::kCreate, .path = path, .dir = ParentOf(path)});
  } else if (existed && mode == OpenMode::kTruncate && !old.empty()) {
    // Truncation is a write of the whole file: unsynced until Sync().
    undo_.push_back({.kind = Undo::Kind::kWrite, .path = path, .offset = 0,
                     .old_bytes = std::move(old), .old_size = 0});
    undo_.back().old_size = undo_.back().old_bytes.size();
  }
  return std::unique_ptr<File>(new FaultFile(*this, std::move(file)));
}

Status FaultInjectionEnv::RemoveFile(const std::string& path) {
  QCLOUD_RETURN_IF_ERROR(Check(true));
  QCLOUD_ASSIGN_OR_RETURN(std::string old, ReadFileToString(base_, path, SIZE_MAX));
  QCLOUD_RETURN_IF_ERROR(base_.RemoveFile(path));
  std::lock_guard lock(mu_);
  undo_.push_back({.kind = Undo::Kind::kRemove, .path = path, .dir = ParentOf(path),
                   .old_bytes = std::move(old)});
  return Status::Ok();
}

Status FaultInjectionEnv::RenameFile(const std::string& from, const std::string& to) {
  QCLOUD_RETURN_IF_ERROR(Check(true));
  Undo u{.kind = Undo::Kind::kRename, .path = to, .from = from, .dir = ParentOf(to)};
  if (base_.FileExists(to)) {
    QCLOUD_ASSIGN_OR_RETURN(u.old_bytes, ReadFileToString(base_, to, SIZE_MAX));
    u.had_target = true;
  }
  QCLOUD_RETURN_IF_ERROR(base_.RenameFile(from, to));
  std::lock_guard lock(mu_);
  undo_.push_back(std::move(u));
  return Status::Ok();
}

Status FaultInjectionEnv::CreateDirs(const std::string& path) {
  QCLOUD_RETURN_IF_ERROR(Check(true));
  return base_.CreateDirs(path);
}

Status FaultInjectionEnv::SyncDir(const std::string& dir) {
  QCLOUD_RETURN_IF_ERROR(Check(true));
  QCLOUD_RETURN_IF_ERROR(base_.SyncDir(dir));
  std::lock_guard lock(mu_);
  std::erase_if(undo_, [&](const Undo& u) { return u.kind != Undo::Kind::kWrite && u.dir == dir; });
  return Status::Ok();
}

Result<std::vector<std::string>> FaultInjectionEnv::ListDir(const std::string& dir) {
  QCLOUD_RETURN_IF_ERROR(Check(false));
  return base_.ListDir(dir);
}

Result<uint64_t> FaultInjectionEnv::FileSize(const std::string& path) {
  QCLOUD_RETURN_IF_ERROR(Check(false));
  return base_.FileSize(path);
}

bool FaultInjectionEnv::FileExists(const std::string& path) { return base_.FileExists(path); }

void FaultInjectionEnv::SetFailure(FailureMode mode) {
  std::lock_guard lock(mu_);
  failure_ = mode;
}

size_t FaultInjectionEnv::PendingUndoCount() const {
  std::lock_guard lock(mu_);
  return undo_.size();
}

Status FaultInjectionEnv::DropUnsyncedData() {
  std::vector<Undo> undo;
  {
    std::lock_guard lock(mu_);
    undo.swap(undo_);
  }
  auto write_whole = [&](const std::string& path, const std::string& bytes) -> Status {
    QCLOUD_ASSIGN_OR_RETURN(auto f, base_.OpenFile(path, OpenMode::kTruncate));
    return f->WriteAt(0, ByteView(bytes));
  };
  // Newest first, so each undo sees the state its change was made on.
  for (auto it = undo.rbegin(); it != undo.rend(); ++it) {
    const Undo& u = *it;
    switch (u.kind) {
      case Undo::Kind::kWrite: {
        if (!base_.FileExists(u.path)) break;  // removed durably later
        QCLOUD_ASSIGN_OR_RETURN(auto f, base_.OpenFile(u.path, OpenMode::kReadWrite));
        if (!u.old_bytes.empty()) QCLOUD_RETURN_IF_ERROR(f->WriteAt(u.offset, ByteView(u.old_bytes)));
        QCLOUD_RETURN_IF_ERROR(f->Truncate(u.old_size));
        break;
      }
      case Undo::Kind::kCreate:
        if (base_.FileExists(u.path)) QCLOUD_RETURN_IF_ERROR(base_.RemoveFile(u.path));
        break;
      case Undo::Kind::kRemove:
        QCLOUD_RETURN_IF_ERROR(write_whole(u.path, u.old_bytes));
        break;
      case Undo::Kind::kRename:
        QCLOUD_RETURN_IF_ERROR(base_.RenameFile(u.path, u.from));
        if (u.had_target) QCLOUD_RETURN_IF_ERROR(write_whole(u.path, u.old_bytes));
        break;
    }
  }
  return Status::Ok();
}

}  // namespace qcloud::testing
