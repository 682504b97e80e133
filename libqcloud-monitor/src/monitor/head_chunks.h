#pragma once

// Closed head chunks on disk, mapped, as Prometheus keeps its
// chunks_head/: once a series' chunk holds 120 samples it is written to a
// file of the store's (data_dir/chunks_head) and read back through a shared
// mapping, so the head keeps in memory only each series' open chunk. The
// bytes go in with pwrite (one system call per closed chunk, about one per
// 120 samples), so they are in the page cache and the file, and in the
// process's RSS only once a query has read them.
//
// The files are a cache of memory, not a format: the write-ahead log holds
// every sample of the head, Open() removes whatever a previous process left,
// and nothing is read from them across restarts (no parser of disk input).
//
// Thread safety: Write() and Release() from one thread at a time (the
// store's appends and cuts, under its append lock); Read() of a live chunk
// from any thread (the caller holds the chunk's series lock, which orders
// it after the Write()).

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "qcloud/core/env.h"
#include "qcloud/core/result.h"

namespace qcloud::monitor::detail {

class HeadChunkFiles {
 public:
  struct Ref {
    uint32_t file = 0;  // 0: not in a file
    uint32_t offset = 0;
  };
  static constexpr uint64_t kFileBytes = uint64_t{64} << 20;

  // Empties `dir` (creating it). Null when the environment's files have no
  // descriptor to map (an in-memory Env): chunks then stay in memory.
  static Result<std::unique_ptr<HeadChunkFiles>> Open(Env& env, const std::string& dir);
  ~HeadChunkFiles();
  HeadChunkFiles(const HeadChunkFiles&) = delete;
  HeadChunkFiles& operator=(const HeadChunkFiles&) = delete;

  // Copies a closed chunk in. false when it cannot (a file could not be
  // made, too many files live): the caller keeps the chunk in memory.
  bool Write(std::span<const uint8_t> bytes, Ref& ref);
  std::span<const uint8_t> Read(Ref ref, uint32_t len) const noexcept;
  // The chunk is gone from the head; a file whose chunks are all gone is
  // unmapped and removed.
  void Release(Ref ref) noexcept;

  // Takes the pages that reads mapped (a cut's, a query's) out of the
  // process: they stay in the page cache, and a later read maps them again.
  // Under the append lock, like Write().
  void UnmapPages() noexcept;

  uint64_t files() const noexcept { return live_files_; }

 private:
  static constexpr uint32_t kSlots = 1024;  // files live at once: 64 GiB of closed head chunks
  struct Mapped {
    char* base = nullptr;
    uint64_t chunks = 0;  // live chunks in it
    std::unique_ptr<File> file;
  };
  HeadChunkFiles(Env& env, std::string dir) : env_(env), dir_(std::move(dir)) {}
  bool StartFile();
  void Drop(uint32_t file) noexcept;
  std::string PathOf(uint32_t file) const;

  Env& env_;
  std::string dir_;
  Mapped maps_[kSlots];
  std::atomic<char*> bases_[kSlots] = {};  // what Read() uses
  uint32_t current_ = 0;                   // the file being written; 0: none
  uint64_t cursor_ = 0;                    // its next free byte
  uint64_t live_files_ = 0;
};

}  // namespace qcloud::monitor::detail
