#include "monitor/block.h"

#include "monitor/block_codec.h"
#include "monitor/chunk.h"
#include "monitor/label_codec.h"

#include <sys/mman.h>
#include <unistd.h>

#include <bit>
#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "qcloud/core/compress.h"
#include "qcloud/core/hash.h"

namespace qcloud::monitor::detail {

namespace {

constexpr std::string_view kMagic = "QTSDBLK1";
constexpr std::string_view kFooterMagic = "QTSB";

uint32_t Sum(ByteView b) { return static_cast<uint32_t>(Xxh3_64(b)); }
Status Bad(const std::string& what) { return Status(Errc::kCorruption, "block: " + what); }
uint64_t Align8(uint64_t n) { return (n + 7) & ~uint64_t{7}; }
// A table's size for `series` series and `chunks` chunks of `entry` bytes.
uint64_t TableSize(uint64_t series, uint64_t chunks, uint32_t entry) {
  return kChunkTableHeader + Align8(4 * (series + 1)) + uint64_t{entry} * chunks;
}

constexpr uint64_t kOffsetMask = (uint64_t{1} << kOffsetBits) - 1;
static_assert(kMaxChunkBytes < (1u << (64 - kOffsetBits)), "a version 6 chunk's length fits above its offset");

}  // namespace

ChunkRef ChunkRefs::operator[](size_t i) const noexcept {
  ChunkRef r;
  switch (form_) {
    case Form::kMemory:
      std::memcpy(&r, p_ + i * sizeof(ChunkRef), sizeof r);
      break;
    case Form::kWide:
    case Form::kWideWithLength: {
      const std::byte* e = p_ + i * kWideEntry;
      r.mint = static_cast<int64_t>(DecodeFixed64(e));
      r.maxt = static_cast<int64_t>(DecodeFixed64(e + 8));
      r.offset = DecodeFixed64(e + 16);
      if (form_ == Form::kWideWithLength) {
        r.length = static_cast<uint32_t>(r.offset >> kOffsetBits);
        r.offset &= kOffsetMask;
      }
      break;
    }
    case Form::kCompact: {
      const std::byte* e = p_ + i * kCompactEntry;
      // Checked when the table was read not to overflow; unsigned here all
      // the same, as the mapping is the file's and not that copy.
      r.mint = static_cast<int64_t>(static_cast<uint64_t>(block_mint_) + DecodeFixed32(e));
      r.maxt = static_cast<int64_t>(static_cast<uint64_t>(r.mint) + DecodeFixed32(e + 4));
      const uint64_t x = DecodeFixed64(e + 8);
      r.offset = x & kOffsetMask;
      r.length = static_cast<uint32_t>(x >> kOffsetBits);
      break;
    }
  }
  return r;
}

std::string BlockFileName(int64_t mint, int64_t maxt) { return fmt::format("{}-{}.qtb", mint, maxt); }

Result<uint64_t> WriteBlock(Env& env, const std::string& dir, int64_t mint, int64_t maxt,
                            const std::vector<SeriesChunks>& series, uint64_t samples, uint32_t version) {
  if (version < 2 || version > kBlockVersion) return InvalidArgument(fmt::format("block: cannot write version {}", version));
  const bool table = version >= 4;
  // Version 6: chunks without their length in front (the table has it),
  // compact table entries when the range allows.
  const bool lengths_in_table = version >= 6;
  uint32_t entry = lengths_in_table ? kCompactEntry : kWideEntry;
  for (const SeriesChunks& s : series) {
    for (const ChunkData& c : s.chunks) {
      if (c.bytes.empty() || c.bytes.size() > kMaxChunkBytes || c.mint < mint || c.maxt < c.mint) {
        return InvalidArgument("block: a chunk before the block, or of no or too many bytes");
      }
      if (static_cast<uint64_t>(c.maxt) - static_cast<uint64_t>(mint) > UINT32_MAX) entry = kWideEntry;
    }
  }
  QCLOUD_RETURN_IF_ERROR(env.CreateDirs(dir));
  const std::string name = BlockFileName(mint, maxt);
  const std::string tmp = JoinPath(dir, name + ".tmp");
  QCLOUD_ASSIGN_OR_RETURN(auto file, env.OpenFile(tmp, OpenMode::kTruncate));
  Buffer out;
  ByteWriter w(out);
  w.PutBytes(ByteView(kMagic));
  w.PutFixed32(version);
  w.PutFixed64(static_cast<uint64_t>(mint));
  w.PutFixed64(static_cast<uint64_t>(maxt));
  w.PutFixed32(lengths_in_table ? entry : 0);
  Buffer index;
  ByteWriter iw(index);
  iw.PutVarint64(series.size());
  std::vector<uint32_t> begin{0};  // version 4's table
  std::vector<ChunkRef> refs;
  for (const SeriesChunks& s : series) {
    EncodeLabels(s.labels, iw);
    if (!table) iw.PutVarint64(s.chunks.size());
    for (const ChunkData& c : s.chunks) {
      if (lengths_in_table) {
        if (out.size() > kOffsetMask) return InvalidArgument("block: chunks past 2^40 bytes");
        refs.push_back({.mint = c.mint, .maxt = c.maxt, .offset = out.size(), .length = static_cast<uint32_t>(c.bytes.size())});
      } else if (table) {
        refs.push_back({.mint = c.mint, .maxt = c.maxt, .offset = out.size()});
      } else {
        iw.PutVarint64(static_cast<uint64_t>(c.mint - mint));
        iw.PutVarint64(static_cast<uint64_t>(c.maxt - c.mint));
        iw.PutVarint64(out.size());
      }
      const ByteView bytes(reinterpret_cast<const std::byte*>(c.bytes.data()), c.bytes.size());
      if (!lengths_in_table) w.PutFixed32(static_cast<uint32_t>(bytes.size()));
      w.PutBytes(bytes);
      w.PutFixed32(Sum(bytes));
    }
    if (refs.size() > UINT32_MAX) return InvalidArgument("block: more than 2^32 chunks");
    begin.push_back(static_cast<uint32_t>(refs.size()));
  }
  // Version 3: the index is one zstd frame. Its label sets repeat names
  // and values from series to series; compressed it is ~1/15 the size.
  Buffer packed;
  if (version >= 3) {
    QCLOUD_ASSIGN_OR_RETURN(packed, ZstdCompress(index.readable(), {.level = 9}));
  } else {
    packed = std::move(index);
  }
  const uint64_t index_at = out.size();
  w.PutBytes(packed.readable());
  if (table) {
    // The table: at the index's end rounded up to 8, fixed-width.
    while (out.size() % 8 != 0) w.PutBytes(ByteView(std::string_view("\0", 1)));
    Buffer t;
    ByteWriter tw(t);
    for (uint32_t b : begin) tw.PutFixed32(b);
    if (begin.size() % 2 != 0) tw.PutFixed32(0);
    for (const ChunkRef& r : refs) {
      const uint64_t at = lengths_in_table ? r.offset | uint64_t{r.length} << kOffsetBits : r.offset;
      if (entry == kCompactEntry) {
        tw.PutFixed32(static_cast<uint32_t>(static_cast<uint64_t>(r.mint) - static_cast<uint64_t>(mint)));
        tw.PutFixed32(static_cast<uint32_t>(static_cast<uint64_t>(r.maxt) - static_cast<uint64_t>(r.mint)));
      } else {
        tw.PutFixed64(static_cast<uint64_t>(r.mint));
        tw.PutFixed64(static_cast<uint64_t>(r.maxt));
      }
      tw.PutFixed64(at);
    }
    w.PutFixed64(series.size());
    w.PutFixed64(refs.size());
    w.PutFixed64(Xxh3_64(t.readable()));
    w.PutBytes(t.readable());
  }
  w.PutFixed64(index_at);
  w.PutFixed64(packed.size());
  w.PutFixed64(samples);
  w.PutFixed32(Sum(packed.readable()));
  w.PutBytes(ByteView(kFooterMagic));
  QCLOUD_RETURN_IF_ERROR(file->WriteAt(0, out.readable()));
  QCLOUD_RETURN_IF_ERROR(file->Sync());
  file.reset();
  QCLOUD_RETURN_IF_ERROR(env.RenameFile(tmp, JoinPath(dir, name)));
  QCLOUD_RETURN_IF_ERROR(env.SyncDir(dir));
  return static_cast<uint64_t>(out.size());
}

Result<BlockIndex> DecodeBlockIndex(ByteView index, int64_t block_mint, uint64_t chunks_end, bool with_refs) {
  ByteReader r(index);
  auto n = r.ReadVarint64();
  if (!n || *n > index.size()) return Bad("series count");
  BlockIndex out;
  std::vector<Labels> labels_of;
  labels_of.reserve(*n);
  if (with_refs) out.chunk_begin.reserve(*n + 1);
  for (uint64_t i = 0; i < *n; ++i) {
    std::optional<Labels> labels = DecodeLabels(r);
    if (!labels || labels->empty()) return Bad("invalid labels");
    if (!with_refs) {
      labels_of.push_back(std::move(*labels));
      continue;
    }
    auto c = r.ReadVarint64();
    if (!c || *c > r.remaining()) return Bad("chunk count");
    if (out.chunks.size() + *c > UINT32_MAX) return Bad("chunk count");
    labels_of.push_back(std::move(*labels));
    for (uint64_t j = 0; j < *c; ++j) {
      auto dmin = r.ReadVarint64();
      auto span = r.ReadVarint64();
      auto off = r.ReadVarint64();
      if (!dmin || !span || !off) return Bad("chunk reference");
      if (*dmin > (uint64_t{1} << 62) || *span > (uint64_t{1} << 62)) return Bad("chunk time range");
      if (*off < kBlockHeaderSize || *off > chunks_end || chunks_end - *off < 8) return Bad("chunk offset");
      int64_t cmin = 0, cmax = 0;
      if (__builtin_add_overflow(block_mint, static_cast<int64_t>(*dmin), &cmin) ||
          __builtin_add_overflow(cmin, static_cast<int64_t>(*span), &cmax)) {
        return Bad("chunk time range");
      }
      out.chunks.push_back({.mint = cmin, .maxt = cmax, .offset = *off});
    }
    out.chunk_begin.push_back(static_cast<uint32_t>(out.chunks.size()));
  }
  if (!r.empty()) return Bad("bytes after the index");
  out.labels = std::make_shared<const std::vector<Labels>>(std::move(labels_of));
  out.chunks.shrink_to_fit();  // kept for the block's life: no growth slack
  if (!with_refs) out.chunk_begin = {};
  return out;
}

Status DecodeChunkTable(ByteView table, size_t series, int64_t block_mint, uint64_t chunks_end, uint32_t version,
                        uint32_t entry, BlockIndex* out) {
  if (entry != kWideEntry && (entry != kCompactEntry || version < 6)) return Bad("chunk table: entry size");
  if (table.size() < kChunkTableHeader) return Bad("chunk table cut short");
  const std::byte* p = table.data();
  const uint64_t n_series = DecodeFixed64(p);
  const uint64_t n_chunks = DecodeFixed64(p + 8);
  if (n_series != series) return Bad("chunk table: series count");
  if (n_chunks > table.size() / entry || n_chunks > UINT32_MAX || TableSize(n_series, n_chunks, entry) != table.size()) {
    return Bad("chunk table: size");
  }
  if (Xxh3_64(table.subview(kChunkTableHeader, table.size() - kChunkTableHeader)) != DecodeFixed64(p + 16)) {
    return Bad("chunk table checksum");
  }
  const std::byte* begin = p + kChunkTableHeader;
  const std::byte* refs = begin + Align8(4 * (series + 1));
  uint32_t prev = 0;
  if (DecodeFixed32(begin) != 0 || DecodeFixed32(begin + 4 * series) != n_chunks) return Bad("chunk table: bounds");
  for (size_t i = 1; i <= series; ++i) {
    const uint32_t b = DecodeFixed32(begin + 4 * i);
    if (b < prev) return Bad("chunk table: order");
    prev = b;
  }
  if (out != nullptr) {
    out->chunk_begin.resize(series + 1);
    for (size_t i = 0; i <= series; ++i) out->chunk_begin[i] = DecodeFixed32(begin + 4 * i);
    out->chunks.resize(n_chunks);
  }
  const bool with_length = version >= 6;
  for (uint64_t j = 0; j < n_chunks; ++j) {
    const std::byte* e = refs + entry * j;
    ChunkRef ref;
    if (entry == kCompactEntry) {
      int64_t mint = 0, maxt = 0;
      if (__builtin_add_overflow(block_mint, int64_t{DecodeFixed32(e)}, &mint) ||
          __builtin_add_overflow(mint, int64_t{DecodeFixed32(e + 4)}, &maxt)) {
        return Bad("chunk time range");
      }
      ref = {.mint = mint, .maxt = maxt, .offset = DecodeFixed64(e + 8)};
    } else {
      ref = {.mint = static_cast<int64_t>(DecodeFixed64(e)),
             .maxt = static_cast<int64_t>(DecodeFixed64(e + 8)),
             .offset = DecodeFixed64(e + 16)};
    }
    if (with_length) {
      ref.length = static_cast<uint32_t>(ref.offset >> kOffsetBits);
      ref.offset &= kOffsetMask;
    }
    if (ref.mint < block_mint || ref.maxt < ref.mint) return Bad("chunk time range");
    if (with_length) {
      // The bytes and their checksum, inside the chunk area.
      if (ref.length == 0 || ref.length > kMaxChunkBytes || ref.offset < kBlockHeaderSize || ref.offset > chunks_end ||
          chunks_end - ref.offset < uint64_t{ref.length} + 4) {
        return Bad("chunk offset");
      }
    } else if (ref.offset < kBlockHeaderSize || ref.offset > chunks_end || chunks_end - ref.offset < 8) {
      return Bad("chunk offset");
    }
    if (out != nullptr) out->chunks[j] = ref;
  }
  return Status::Ok();
}

BlockReader::~BlockReader() {
  if (map_ != nullptr) ::munmap(map_, map_len_);
}

Result<std::unique_ptr<BlockReader>> BlockReader::Open(Env& env, const std::string& path) {
  auto b = std::unique_ptr<BlockReader>(new BlockReader());
  b->path_ = path;
  QCLOUD_ASSIGN_OR_RETURN(b->file_, env.OpenFile(path, OpenMode::kReadOnly));
  QCLOUD_ASSIGN_OR_RETURN(b->size_, b->file_->Size());
  if (b->size_ < kBlockHeaderSize + kBlockFooterSize) return Bad(path + ": too short");
  std::byte head[kBlockHeaderSize];
  QCLOUD_ASSIGN_OR_RETURN(size_t got, b->file_->ReadAt(0, MutableByteView(head, sizeof head)));
  if (got != sizeof head || std::memcmp(head, kMagic.data(), kMagic.size()) != 0) return Bad(path + ": not a block");
  b->version_ = DecodeFixed32(head + 8);
  if (b->version_ < 1 || b->version_ > kBlockVersion) return Bad(path + ": unknown version");
  b->mint_ = static_cast<int64_t>(DecodeFixed64(head + 12));
  b->maxt_ = static_cast<int64_t>(DecodeFixed64(head + 20));
  // A range a store can have written: around timestamps within
  // kMaxTimestamp, 12 block durations of at most 2^50 ms at most.
  if (b->mint_ >= b->maxt_ || b->mint_ < -kMaxBlockTime || b->maxt_ > kMaxBlockTime) return Bad(path + ": time range");
  const uint32_t entry = b->version_ >= 6 ? DecodeFixed32(head + 28) : kWideEntry;
  std::byte foot[kBlockFooterSize];
  QCLOUD_ASSIGN_OR_RETURN(got, b->file_->ReadAt(b->size_ - kBlockFooterSize, MutableByteView(foot, sizeof foot)));
  if (got != sizeof foot || std::memcmp(foot + 28, kFooterMagic.data(), 4) != 0) return Bad(path + ": no footer");
  const uint64_t at = DecodeFixed64(foot);
  const uint64_t len = DecodeFixed64(foot + 8);
  b->samples_ = DecodeFixed64(foot + 16);
  const uint64_t body_end = b->size_ - kBlockFooterSize;  // where the footer starts
  if (len > kMaxBlockIndexBytes || at < kBlockHeaderSize || at > body_end || len > body_end - at ||
      (b->version_ < 4 && len != body_end - at)) {
    return Bad(path + ": index out of place");
  }
  // Version 4: the chunk table, from the index's end rounded up to 8 to
  // the footer.
  const uint64_t table_at = Align8(at + len);
  if (b->version_ >= 4 && (table_at > body_end || body_end - table_at > kMaxBlockIndexBytes)) {
    return Bad(path + ": chunk table out of place");
  }
  std::string index(len, '\0');
  QCLOUD_ASSIGN_OR_RETURN(got, b->file_->ReadAt(at, MutableByteView(reinterpret_cast<std::byte*>(index.data()), len)));
  if (got != len || Sum(ByteView(index)) != DecodeFixed32(foot + 24)) return Bad(path + ": index checksum");
  const bool with_refs = b->version_ < 4;
  if (b->version_ >= 3) {
    auto raw = ZstdDecompress(ByteView(index), kMaxBlockIndexBytes);
    if (!raw.ok()) return Bad(path + ": index: " + raw.status().message());
    QCLOUD_ASSIGN_OR_RETURN(b->index_, DecodeBlockIndex(raw->readable(), b->mint_, at, with_refs));
  } else {
    QCLOUD_ASSIGN_OR_RETURN(b->index_, DecodeBlockIndex(ByteView(index), b->mint_, at, with_refs));
  }
  if (b->version_ >= 4) {
    const uint64_t table_len = body_end - table_at;
    std::string table(table_len, '\0');
    QCLOUD_ASSIGN_OR_RETURN(got, b->file_->ReadAt(table_at, MutableByteView(reinterpret_cast<std::byte*>(table.data()), table_len)));
    if (got != table_len) return Bad(path + ": chunk table cut short");
    const int fd = b->file_->native_handle();
    // Mapped where the file has a descriptor and the table's layout is the
    // host's; else decoded into memory.
    const bool map = fd >= 0 && std::endian::native == std::endian::little;
    Status st = DecodeChunkTable(ByteView(table), b->index_.labels->size(), b->mint_, at, b->version_, entry,
                                 map ? nullptr : &b->index_);
    if (!st.ok()) return Bad(path + ": " + st.message());
    if (map) {
      const auto page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
      const uint64_t from = table_at / page * page;
      void* m = ::mmap(nullptr, body_end - from, PROT_READ, MAP_SHARED, fd, static_cast<off_t>(from));
      if (m == MAP_FAILED) return Status(Errc::kIoError, path + ": mmap: " + std::strerror(errno));
      b->map_ = m;
      b->map_len_ = body_end - from;
      const auto* t = static_cast<const std::byte*>(m) + (table_at - from);
      b->begin_ = reinterpret_cast<const uint32_t*>(t + kChunkTableHeader);
      b->refs_ = t + kChunkTableHeader + Align8(4 * (b->index_.labels->size() + 1));
      b->entry_ = entry;
      b->form_ = entry == kCompactEntry ? ChunkRefs::Form::kCompact
                 : b->version_ >= 6     ? ChunkRefs::Form::kWideWithLength
                                        : ChunkRefs::Form::kWide;
      b->index_.chunk_begin = {};
      b->index_.chunks = {};
      return b;
    }
  }
  b->begin_ = b->index_.chunk_begin.data();
  b->refs_ = reinterpret_cast<const std::byte*>(b->index_.chunks.data());
  return b;
}

Result<std::vector<uint8_t>> BlockReader::ReadChunk(const ChunkRef& ref) const {
  if (ref.length != 0) {  // version 6: the bytes, then their checksum
    const uint32_t n = ref.length;
    std::vector<uint8_t> data(n + 4);
    QCLOUD_ASSIGN_OR_RETURN(size_t got, file_->ReadAt(ref.offset, MutableByteView(reinterpret_cast<std::byte*>(data.data()), n + 4)));
    if (got != n + 4) return Bad(path_ + ": chunk cut short");
    if (Sum(ByteView(reinterpret_cast<const std::byte*>(data.data()), n)) !=
        DecodeFixed32(reinterpret_cast<const std::byte*>(data.data() + n))) {
      return Bad(path_ + ": chunk checksum");
    }
    data.resize(n);
    return data;
  }
  std::byte len_bytes[4];
  QCLOUD_ASSIGN_OR_RETURN(size_t got, file_->ReadAt(ref.offset, MutableByteView(len_bytes, 4)));
  if (got != 4) return Bad(path_ + ": chunk cut short");
  const uint32_t n = DecodeFixed32(len_bytes);
  if (n > kMaxChunkBytes || ref.offset + 8 + n > size_) return Bad(path_ + ": chunk length");
  std::vector<uint8_t> data(n + 4);
  QCLOUD_ASSIGN_OR_RETURN(got, file_->ReadAt(ref.offset + 4, MutableByteView(reinterpret_cast<std::byte*>(data.data()), n + 4)));
  if (got != n + 4) return Bad(path_ + ": chunk cut short");
  const ByteView bytes(reinterpret_cast<const std::byte*>(data.data()), n);
  if (Sum(bytes) != DecodeFixed32(reinterpret_cast<const std::byte*>(data.data() + n))) {
    return Bad(path_ + ": chunk checksum");
  }
  data.resize(n);
  return data;
}

Status BlockReader::ReadSamples(const ChunkRef& ref, int64_t mint, int64_t maxt, std::vector<Sample>& out) const {
  QCLOUD_ASSIGN_OR_RETURN(std::vector<uint8_t> bytes, ReadChunk(ref));
  const ByteView view(reinterpret_cast<const std::byte*>(bytes.data()), bytes.size());
  if (version_ >= 2) return DecodeBlockChunk(view, mint, maxt, out);
  ChunkIterator it(view);
  while (it.Next()) {
    if (it.t() > maxt) break;
    if (it.t() >= mint) out.push_back({it.t(), it.v()});
  }
  return it.status();
}

}  // namespace qcloud::monitor::detail
