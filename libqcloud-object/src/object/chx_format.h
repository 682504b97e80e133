#pragma once

// The CHX volume format, version 1. All integers little-endian.
//
// Volume file `vol-NNNNNNNN.chx` (NNNNNNNN = volume id, decimal, 8 digits):
//   [0, 64)   volume header
//             [0,8)   magic "QCHXVOL\0"
//             [8,12)  format version (1)
//             [12,16) volume id (equals the file name's)
//             [16,24) creation time, UNIX seconds
//             [24,28) low 32 bits of XXH3-64 of the 64 header bytes with
//                     this field zero
//             [28,64) zero
//   [64, ...) records, each starting at a multiple of 8
//
// Record: a 32-byte header, `length` data bytes, zero padding to 8 (or,
// for an aligned record, to 4096).
//   [0,4)   magic 0x52584843 ("CHXR")
//   [4]     type: 1 chunk, 2 deleted chunk (the header rewritten in place),
//           3 padding (zero data; id 0; keeps the next record 4 KiB-aligned)
//   [5]     flags: bit 0 "aligned": the record's span is rounded up to 4096
//           (large chunks, written 4 KiB-aligned with O_DIRECT so that the
//           device's DMA, not the CPU, moves the bytes; a compaction may
//           later copy the whole span elsewhere)
//   [6,8)   zero
//   [8,16)  chunk id (volume id << 32 | sequence in that volume, never 0)
//   [16,20) data length
//   [20,24) low 32 bits of XXH3-64 of the 32 header bytes with this field zero
//   [24,32) XXH3-64 of the data
//
// Why: the header checksum lets a scan tell a real record from garbage and
// resynchronise after a damaged region (records are 8-aligned, so it looks
// at every 8th byte); the data checksum is checked on every read, so bit rot
// is detected where it is served; the type byte is the only thing a delete
// rewrites, together with the header checksum, in one 32-byte write.

#include <cstddef>
#include <cstdint>
#include <optional>

#include "qcloud/core/bytes.h"

namespace qcloud::object::chx {

inline constexpr uint32_t kFormatVersion = 1;
inline constexpr size_t kVolumeHeaderSize = 64;
inline constexpr size_t kRecordHeaderSize = 32;
inline constexpr size_t kRecordAlign = 8;
inline constexpr uint32_t kRecordMagic = 0x52584843;  // "CHXR" read little-endian

inline constexpr uint64_t kDirectAlign = 4096;
inline constexpr uint32_t kMaxPaddingLength = 2 * kDirectAlign;
enum class RecordType : uint8_t { kChunk = 1, kDeleted = 2, kPadding = 3 };

struct RecordHeader {
  RecordType type = RecordType::kChunk;
  bool aligned = false;  // flags bit 0
  uint64_t id = 0;
  uint32_t length = 0;
  uint64_t data_sum = 0;
};

struct VolumeHeader {
  uint32_t version = kFormatVersion;
  uint32_t volume_id = 0;
  uint64_t created_unix = 0;
};

// Bytes a record with `length` data bytes occupies, padding included.
inline constexpr uint64_t RecordSpan(uint64_t length) {
  return (kRecordHeaderSize + length + kRecordAlign - 1) / kRecordAlign * kRecordAlign;
}
inline constexpr uint64_t AlignedSpan(uint64_t length) {
  return (kRecordHeaderSize + length + kDirectAlign - 1) / kDirectAlign * kDirectAlign;
}
// The span of the record `h` heads.
inline uint64_t RecordSpan(const RecordHeader& h) {
  return h.aligned ? AlignedSpan(h.length) : RecordSpan(h.length);
}

uint64_t DataSum(ByteView data);

void EncodeRecordHeader(const RecordHeader& h, std::byte out[kRecordHeaderSize]);
// nullopt unless `in` (at least 32 bytes) holds a record header: magic,
// header checksum, a known type and flags, a non-zero id and length <=
// max_length (padding: id 0, length <= kMaxPaddingLength).
std::optional<RecordHeader> DecodeRecordHeader(ByteView in, uint32_t max_length);

void EncodeVolumeHeader(const VolumeHeader& h, std::byte out[kVolumeHeaderSize]);
// nullopt unless `in` (at least 64 bytes) holds a volume header with a good
// checksum. The version is returned as found: the caller refuses unknown ones.
std::optional<VolumeHeader> DecodeVolumeHeader(ByteView in);

}  // namespace qcloud::object::chx
