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
//           varint-length-prefixed; then, before version 4: varint chunk
//           count; per chunk: varint mint - block mint, varint maxt - chunk
//           mint, varint file offset. One zstd frame from version 3.
//   table   version 4, at the index's end rounded up to 8: u64 series |
//           u64 chunks | u64 xxh3-64 of the rest | u32 first chunk per
//           series, and the chunk count after the last (series + 1), zero
//           padded to 8 | per chunk i64 mint | i64 maxt | u64 file offset
//   footer  u64 index offset | u64 index length | u64 samples | u32 index
//           checksum | "QTSB"
//
// Version 4's table is fixed-width so that a reader maps it rather than
// decode it into memory: the chunk references of a year of blocks would
// otherwise cost tens of KiB per series.
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

// Written; 5 (no range-coded block chunks), 4 (no adaptive chunks either),
// 3 (chunk references in the index), 2 (index not compressed) and 1
// (Gorilla chunks only) are still read. 5 has 4's layout (the version tells
// an older reader, which cannot read its chunks, to leave the block alone);
// 6 moves the chunks' lengths into the table and may have compact entries.
inline constexpr uint32_t kBlockVersion = 6;
// The farthest a block's mint or maxt lies from the epoch: timestamps
// within kMaxTimestamp (2^62 ms), ranges of at most 12 x 2^50 ms.
inline constexpr int64_t kMaxBlockTime = kMaxTimestamp + (int64_t{1} << 56);
inline constexpr size_t kBlockHeaderSize = 32;
inline constexpr size_t kBlockFooterSize = 32;
inline constexpr uint64_t kMaxBlockIndexBytes = uint64_t{1} << 31;  // 2 GiB
inline constexpr uint32_t kMaxChunkBytes = 1 << 20;

struct ChunkRef {
  int64_t mint = 0, maxt = 0;
  // Versions 1 to 5: where the chunk's length field is in the file, and
  // `length` is 0. Version 6: where its bytes are, and their count.
  uint64_t offset = 0;
  uint32_t length = 0;
};

// Version 6's table entries: compact (16 bytes) when every chunk's maxt is
// within 2^32 - 1 ms of the block's mint, else wide (24 bytes); the
// header's last field says which.
// The entries of versions 4 and 5 are wide without a length.
inline constexpr uint32_t kWideEntry = 24;
inline constexpr uint32_t kCompactEntry = 16;
inline constexpr int kOffsetBits = 40;  // version 6: offset | length << 40

// A series' chunk references as the block holds them: decoded one at a
// time from the mapped table (or read from memory), by value.
class ChunkRefs {
 public:
  enum class Form : uint8_t { kMemory, kWide, kWideWithLength, kCompact };
  ChunkRefs(const std::byte* p, size_t n, Form form, int64_t block_mint) noexcept
      : p_(p), n_(n), form_(form), block_mint_(block_mint) {}
  size_t size() const noexcept { return n_; }
  bool empty() const noexcept { return n_ == 0; }
  ChunkRef operator[](size_t i) const noexcept;

  class Iterator {
   public:
    Iterator(const ChunkRefs* refs, size_t i) noexcept : refs_(refs), i_(i) {}
    ChunkRef operator*() const noexcept { return (*refs_)[i_]; }
    Iterator& operator++() noexcept {
      ++i_;
      return *this;
    }
    bool operator!=(const Iterator& o) const noexcept { return i_ != o.i_; }

   private:
    const ChunkRefs* refs_;
    size_t i_;
  };
  Iterator begin() const noexcept { return Iterator(this, 0); }
  Iterator end() const noexcept { return Iterator(this, n_); }

 private:
  const std::byte* p_;
  size_t n_;
  Form form_;
  int64_t block_mint_;
};
inline constexpr size_t kChunkTableHeader = 24;


// A block's index in memory: per series (in the block's order, by labels)
// its labels, and its chunks [chunk_begin[i], chunk_begin[i + 1]) of
// `chunks` (left empty where a version 4 table is mapped instead). The
// label list is shared: blocks with the very same series hold one list
// between them (the Tsdb swaps it in; monitor/tsdb.cc).
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
// `version` is kBlockVersion but for tests of older readers (2 to 5): the
// chunks are written as given, so such a block may hold chunk kinds the
// version had not (which this reader reads all the same).
Result<uint64_t> WriteBlock(Env& env, const std::string& dir, int64_t mint, int64_t maxt,
                            const std::vector<SeriesChunks>& series, uint64_t samples,
                            uint32_t version = kBlockVersion);

// Decodes an index (disk input: bounded, checked). kCorruption when
// malformed. `chunks_end`: where the chunk area ends (the index's offset).
// `with_refs`: the index holds chunk references (versions 1-3).
Result<BlockIndex> DecodeBlockIndex(ByteView index, int64_t block_mint, uint64_t chunks_end, bool with_refs = true);
// Checks a chunk table (versions 4 to 6) of `series` series (disk input:
// bounded, checked) and, with `out`, decodes it into out->chunk_begin and
// out->chunks. `entry`: kWideEntry, or kCompactEntry (version 6 only).
// kCorruption when malformed.
Status DecodeChunkTable(ByteView table, size_t series, int64_t block_mint, uint64_t chunks_end, uint32_t version,
                        uint32_t entry, BlockIndex* out);

class BlockReader {
 public:
  // Reads the header, footer and index. kCorruption when any fails its checks.
  static Result<std::unique_ptr<BlockReader>> Open(Env& env, const std::string& path);
  ~BlockReader();
  BlockReader(const BlockReader&) = delete;
  BlockReader& operator=(const BlockReader&) = delete;
  int64_t mint() const noexcept { return mint_; }
  int64_t maxt() const noexcept { return maxt_; }
  const std::string& path() const noexcept { return path_; }
  uint64_t size() const noexcept { return size_; }
  uint64_t samples() const noexcept { return samples_; }
  size_t series_count() const noexcept { return index_.labels->size(); }
  const Labels& labels(size_t i) const noexcept { return (*index_.labels)[i]; }
  const std::shared_ptr<const std::vector<Labels>>& label_list() const noexcept { return index_.labels; }
  // The owner may swap the label list for an equal one: the same sets in
  // the same order, shared with the head and other blocks.
  void ShareLabels(std::shared_ptr<const std::vector<Labels>> labels) noexcept { index_.labels = std::move(labels); }
  ChunkRefs chunks(size_t i) const noexcept {
    return ChunkRefs(refs_ + begin_[i] * static_cast<size_t>(entry_), begin_[i + 1] - begin_[i], form_, mint_);
  }
  // Whether the chunk references are a mapping of the file (version 4 on
  // a file with a descriptor), not decoded into memory.
  bool mapped() const noexcept { return map_ != nullptr; }
  uint32_t version() const noexcept { return version_; }
  // One chunk's bytes, checksum verified (kCorruption otherwise).
  Result<std::vector<uint8_t>> ReadChunk(const ChunkRef& ref) const;
  // One chunk's samples in [mint, maxt], appended to `out`, decoded as the
  // block's version says. kCorruption for a bad checksum or encoding.
  Status ReadSamples(const ChunkRef& ref, int64_t mint, int64_t maxt, std::vector<Sample>& out) const;

 private:
  BlockReader() = default;
  std::unique_ptr<File> file_;
  std::string path_;
  int64_t mint_ = 0, maxt_ = 0;
  uint64_t size_ = 0;
  uint64_t samples_ = 0;
  uint32_t version_ = kBlockVersion;
  BlockIndex index_;
  // The chunk references: index_'s vectors, or the mapped table.
  const uint32_t* begin_ = nullptr;
  const std::byte* refs_ = nullptr;
  uint32_t entry_ = sizeof(ChunkRef);  // bytes per reference at refs_
  ChunkRefs::Form form_ = ChunkRefs::Form::kMemory;
  void* map_ = nullptr;
  size_t map_len_ = 0;
};

}  // namespace qcloud::monitor::detail
