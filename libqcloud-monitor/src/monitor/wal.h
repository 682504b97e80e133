#pragma once

// The TSDB's write-ahead log: what a sample needs to survive kill -9 before
// it is in a block. Segment files wal/00000001, 00000002, ... each a run of
// records:
//
//   u32 length of type + payload (little endian) | u32 checksum (xxh3-64 of
//   type + payload, low 32 bits) | u8 type | payload
//
//   type 1, series:  varint n, then n x (varint ref, varint k, k x (name, value)
//                    as varint-length-prefixed bytes)
//   type 2, samples: varint n, then n x (varint ref, zigzag varint t, u64 value bits)
//   type 5, chunks:  varint n, then n x (varint ref, varint length, a chunk
//                    as monitor/chunk.h writes it, any kind): a checkpoint's
//                    copy of the head, ~2 bytes a sample instead of ~17
//   type 4, chunks:  the same without adaptive chunks (Gorilla or decimal),
//                    written in sessions 15 to 17; type 3: Gorilla only,
//                    written before. Both still read. A build from before a
//                    kind skips the type that may hold it as a newer
//                    version's record (it cannot take a log back) rather
//                    than misread the chunks.
//
// A record is written with one write(2) and acknowledged after it (and
// after fdatasync with sync_wal). Replay reads records until the end or
// the first one that is cut short or fails its checksum: a write torn by a
// crash. The log is cut there, and what follows is dropped.

#include <cstdint>
#include <string>
#include <vector>

#include "qcloud/core/bytes.h"
#include "qcloud/core/result.h"
#include "qcloud/monitor/labels.h"

namespace qcloud::monitor::detail {

inline constexpr uint8_t kRecordSeries = 1;
inline constexpr uint8_t kRecordSamples = 2;
inline constexpr uint8_t kRecordGorillaChunks = 3;  // read only
inline constexpr uint8_t kRecordDecimalChunks = 4;  // read only: Gorilla or (old) decimal chunks
inline constexpr uint8_t kRecordChunks = 5;         // any kind, adaptive included
inline constexpr size_t kRecordHeader = 9;
inline constexpr size_t kMaxRecordBytes = 64 << 20;  // a record longer than this is corrupt

struct WalSeries {
  uint64_t ref = 0;
  Labels labels;
};
struct WalSample {
  uint64_t ref = 0;
  int64_t t = 0;
  double v = 0;
};

struct WalChunk {
  uint64_t ref = 0;
  std::vector<uint8_t> bytes;  // a chunk (monitor/chunk.h), its header included
};

// Appends one framed record to `out`.
void EncodeSeriesRecord(const std::vector<WalSeries>& series, Buffer& out);
void EncodeSamplesRecord(const std::vector<WalSample>& samples, Buffer& out);
void EncodeChunksRecord(const std::vector<WalChunk>& chunks, Buffer& out);

// One framed record from the front of `in`: its type and payload, and the
// bytes it took. kOutOfRange when `in` holds only part of one (a torn
// tail); kCorruption when the checksum or the length is wrong.
struct Record {
  uint8_t type = 0;
  ByteView payload;
  size_t size = 0;
};
Result<Record> DecodeRecord(ByteView in);
// The payloads; kCorruption when malformed (labels are validated again).
Result<std::vector<WalSeries>> DecodeSeries(ByteView payload);
Result<std::vector<WalSample>> DecodeSamples(ByteView payload);
// The chunks' bytes are not checked here: ChunkIterator checks them as it reads.
Result<std::vector<WalChunk>> DecodeChunks(ByteView payload);

}  // namespace qcloud::monitor::detail
