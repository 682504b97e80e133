#pragma once

// MemEnv: an Env whose files live in memory. Fast, hermetic, and the base a
// FaultInjectionEnv is usually stacked on. Paths are plain strings: "a/b"
// and "a//b" are different paths, as callers should only build paths with
// JoinPath().
//
// Semantics follow POSIX where tests can tell: an open File keeps its data
// after RemoveFile (unlink), RenameFile replaces the target atomically,
// reads past the end are short. Everything written is "durable" (Sync is a
// no-op): to model crashes, wrap it in a FaultInjectionEnv.
//
// Thread safety: all methods may be called concurrently.

#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>

#include "qcloud/core/env.h"
#include "qcloud/core/export.h"

namespace qcloud::testing {

class QCLOUD_EXPORT MemEnv final : public Env {
 public:
  MemEnv();
  ~MemEnv() override;

  Result<std::unique_ptr<File>> OpenFile(const std::string& path, OpenMode mode) override;
  Status RemoveFile(const std::string& path) override;
  Status RenameFile(const std::string& from, const std::string& to) override;
  Status CreateDirs(const std::string& path) override;
  Status SyncDir(const std::string& dir) override;
  Result<std::vector<std::string>> ListDir(const std::string& dir) override;
  Result<uint64_t> FileSize(const std::string& path) override;
  bool FileExists(const std::string& path) override;
  std::string_view io_backend() const noexcept override { return "memory"; }

  // Total bytes held by files reachable by name.
  uint64_t BytesStored() const;

 private:
  struct Data;
  class MemFile;

  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<Data>> files_;
  std::set<std::string> dirs_;
};

}  // namespace qcloud::testing
