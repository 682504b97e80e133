#pragma once

// FaultInjectionEnv: wraps an Env and remembers what has not been made
// durable, so a test can simulate a power cut and check that the code under
// test loses nothing it acknowledged.
//
//   * File writes after the file's last Sync() are undone by
//     DropUnsyncedData(): overwritten bytes come back, appended bytes go.
//   * Creations, removals and renames in a directory since its last
//     SyncDir() are undone too (a created file vanishes, a removed one
//     returns, a rename is reversed), as on a file system without a
//     directory fsync.
//   * SetFailure() makes writes, syncs or everything fail with an I/O error,
//     as a dying disk would.
//
// Limitation: unsynced writes are remembered by the path the file was opened
// with; a file renamed while it still has unsynced writes is not modelled
// exactly (the usual pattern, write + Sync + rename, is).
//
// Typical crash test: run the code on the env, DropUnsyncedData(), reopen
// the code under test on the same env and check its recovery.
//
// Thread safety: all methods may be called concurrently; DropUnsyncedData()
// must not race with I/O on the files (the "crash" happens while nothing
// runs), and File objects opened before it must not be used after it.

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "qcloud/core/env.h"
#include "qcloud/core/export.h"

namespace qcloud::testing {

enum class FailureMode {
  kNone,    // every call goes through
  kWrites,  // WriteAt/Submit writes/Sync/namespace changes fail with kIoError
  kAll,     // reads fail too
};

class QCLOUD_EXPORT FaultInjectionEnv final : public Env {
 public:
  // `base` must outlive this Env.
  explicit FaultInjectionEnv(Env& base);
  ~FaultInjectionEnv() override;

  Result<std::unique_ptr<File>> OpenFile(const std::string& path, OpenMode mode) override;
  Status RemoveFile(const std::string& path) override;
  Status RenameFile(const std::string& from, const std::string& to) override;
  Status CreateDirs(const std::string& path) override;
  Status SyncDir(const std::string& dir) override;
  Result<std::vector<std::string>> ListDir(const std::string& dir) override;
  Result<uint64_t> FileSize(const std::string& path) override;
  bool FileExists(const std::string& path) override;
  std::string_view io_backend() const noexcept override { return base_.io_backend(); }

  // The power cut: undoes every change that was not made durable.
  Status DropUnsyncedData();
  void SetFailure(FailureMode mode);
  // How many undo records (unsynced writes and namespace changes) are held.
  size_t PendingUndoCount() const;

 private:
  friend class FaultFile;
  struct Undo;
  Status Check(bool is_write) const;
  void RecordWrite(const std::string& path, uint64_t offset, size_t len);
  void ForgetWrites(const std::string& path);

  Env& base_;
  mutable std::mutex mu_;
  FailureMode failure_ = FailureMode::kNone;
  std::vector<Undo> undo_;
};

}  // namespace qcloud::testing
