#pragma once

// Immutable blocks of the TSDB: every series' samples of one time range
// [mint, maxt), written once when the head is cut, then only read. One
// file per block, blocks/<mint>-<maxt>.qtb (docs/notes/monitor-format.md):
//
//   header  "QTSDBLK1" | u32 version (1) | i64 mint | i64 maxt | u32 0
//   chunks  per chunk: u32 n | n bytes | u32 xxh3-64 low 32 bits of them; the
//           bytes are a block chunk (monitor/block_codec.h) in version 2, a
//           Gorilla chunk (monitor/chunk.h) in version 1
//   index   varint series count; per series: varint k, k x (name, value)
//           varint-length-prefixed; varint chunk count; per chunk: varint
//           mint - block mint, varint maxt - chunk mint, varint file offset
//   footer  u64 index offset | u64 index length | u64 samples | u32 index
//           checksum | "QTSB"
//
// Integers little endian. A block is written to a temporary name, synced,
// renamed and its directory synced: a block either exists whole or not.
// Reading checks the footer and the index's checksum at open (a block that
// fails is reported and left out; the rest stays queryable) and each
// chunk's checksum as it is read (a bad chunk is skipped and counted).

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "qcloud/core/bytes.h"
#include "qcloud/core/env.h"
#include "qcloud/core/result.h"
#include "qcloud/monitor/labels.h"
#include "qcloud/monitor/tsdb.h"

namespace qcloud::monitor::detail {

inline constexpr uint32_t kBlockVersion = 3;  // written; 2 (index not compressed) and 1 (Gorilla chunks only) are still read
inline constexpr size_t kBlockHeaderSize = 32;
inline constexpr size_t kBlockFooterSize = 32;
inline constexpr uint64_t kMaxBlockIndexBytes = uint64_t{1} << 31;  // 2 GiB
inline constexpr uint32_t kMaxChunkBytes = 1 << 20;

struct ChunkRef {
  int64_t mint = 0, maxt = 0;
  uint64_t offset = 0;  // of the chunk's length field in the file
};


// A block's index in memory: per series (in the block's order, by labels)
// its labels, and its chunks [chunk_begin[i], chunk_begin[i + 1]) of
// `chunks`. The label list is shared: blocks with the very same series
// hold one list between them (the Tsdb swaps it in; monitor/tsdb.cc).
struct BlockIndex {
  std::shared_ptr<const std::vector<Labels>> labels;
  std::vector<uint32_t> chunk_begin{0};  // series count + 1
  std::vector<ChunkRef> chunks;
};

// What a block writer is given: per series, its encoded chunks in time order.
struct ChunkData {
  int64_t mint = 0, maxt = 0;
  std::vector<uint8_t> bytes;
};
struct SeriesChunks {
  Labels labels;
  std::vector<ChunkData> chunks;
};

// The block file's name for [mint, maxt).
std::string BlockFileName(int64_t mint, int64_t maxt);

// Writes the block for [mint, maxt) into `dir` (atomically, durably).
// Returns its size in bytes.
// `version` is kBlockVersion but for tests of older readers (2 or 3; the
// chunks must be block chunks).
Result<uint64_t> WriteBlock(Env& env, const std::string& dir, int64_t mint, int64_t maxt,
                            const std::vector<SeriesChunks>& series, uint64_t samples,
                            uint32_t version = kBlockVersion);

// Decodes an index (disk input: bounded, checked). kCorruption when malformed.
Result<BlockIndex> DecodeBlockIndex(ByteView index, int64_t block_mint, uint64_t file_size);

class BlockReader {
 public:
  // Reads the header, footer and index. kCorruption when any fails its checks.
  static Result<std::unique_ptr<BlockReader>> Open(Env& env, const std::string& path);
  int64_t mint() const noexcept { return mint_; }
  int64_t maxt() const noexcept { return maxt_; }
  const std::string& path() const noexcept { return path_; }
  uint64_t size() const noexcept { return size_; }
  uint64_t samples() const noexcept { return samples_; }
  size_t series_count() const noexcept { return index_.chunk_begin.size() - 1; }
  const Labels& labels(size_t i) const noexcept { return (*index_.labels)[i]; }
  const std::shared_ptr<const std::vector<Labels>>& label_list() const noexcept { return index_.labels; }
  // The owner may swap the label list for an equal one: the same sets in
  // the same order, shared with the head and other blocks.
  void ShareLabels(std::shared_ptr<const std::vector<Labels>> labels) noexcept { index_.labels = std::move(labels); }
  std::span<const ChunkRef> chunks(size_t i) const noexcept {
    return std::span<const ChunkRef>(index_.chunks)
        .subspan(index_.chunk_begin[i], index_.chunk_begin[i + 1] - index_.chunk_begin[i]);
  }
  uint32_t version() const noexcept { return version_; }
  // One chunk's bytes, checksum verified (kCorruption otherwise).
  Result<std::vector<uint8_t>> ReadChunk(const ChunkRef& ref) const;
  // One chunk's samples in [mint, maxt], appended to `out`, decoded as the
  // block's version says. kCorruption for a bad checksum or encoding.
  Status ReadSamples(const ChunkRef& ref, int64_t mint, int64_t maxt, std::vector<Sample>& out) const;

 private:
  std::unique_ptr<File> file_;
  std::string path_;
  int64_t mint_ = 0, maxt_ = 0;
  uint64_t size_ = 0;
  uint64_t samples_ = 0;
  uint32_t version_ = kBlockVersion;
  BlockIndex index_;
};

}  // namespace qcloud::monitor::detail
