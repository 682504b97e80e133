#include "object/chx_format.h"

#include <cstring>

#include "qcloud/core/hash.h"

namespace qcloud::object::chx {

namespace {
constexpr char kVolumeMagic[8] = {'Q', 'C', 'H', 'X', 'V', 'O', 'L', '\0'};
constexpr size_t kRecordSumAt = 20;
constexpr size_t kVolumeSumAt = 24;

uint32_t HeaderSum(const std::byte* header, size_t size, size_t sum_at) {
  std::byte copy[kVolumeHeaderSize];
  std::memcpy(copy, header, size);
  std::memset(copy + sum_at, 0, 4);
  return static_cast<uint32_t>(Xxh3_64(ByteView(copy, size)));
}
}  // namespace

uint64_t DataSum(ByteView data) { return Xxh3_64(data); }

void EncodeRecordHeader(const RecordHeader& h, std::byte out[kRecordHeaderSize]) {
  std::memset(out, 0, kRecordHeaderSize);
  EncodeFixed32(out, kRecordMagic);
  out[4] = static_cast<std::byte>(h.type);
  out[5] = h.aligned ? std::byte{1} : std::byte{0};
  EncodeFixed64(out + 8, h.id);
  EncodeFixed32(out + 16, h.length);
  EncodeFixed64(out + 24, h.data_sum);
  EncodeFixed32(out + kRecordSumAt, HeaderSum(out, kRecordHeaderSize, kRecordSumAt));
}

std::optional<RecordHeader> DecodeRecordHeader(ByteView in, uint32_t max_length) {
  if (in.size() < kRecordHeaderSize) return std::nullopt;
  const std::byte* p = in.data();
  if (DecodeFixed32(p) != kRecordMagic) return std::nullopt;
  if (DecodeFixed32(p + kRecordSumAt) != HeaderSum(p, kRecordHeaderSize, kRecordSumAt)) {
    return std::nullopt;
  }
  const auto type = static_cast<uint8_t>(p[4]);
  if (type != static_cast<uint8_t>(RecordType::kChunk) &&
      type != static_cast<uint8_t>(RecordType::kDeleted) &&
      type != static_cast<uint8_t>(RecordType::kPadding)) {
    return std::nullopt;
  }
  const auto flags = static_cast<uint8_t>(p[5]);
  if (flags > 1 || p[6] != std::byte{0} || p[7] != std::byte{0}) return std::nullopt;
  RecordHeader h;
  h.type = static_cast<RecordType>(type);
  h.aligned = flags == 1;
  h.id = DecodeFixed64(p + 8);
  h.length = DecodeFixed32(p + 16);
  h.data_sum = DecodeFixed64(p + 24);
  if (h.type == RecordType::kPadding) {
    if (h.id != 0 || h.aligned || h.length > kMaxPaddingLength) return std::nullopt;
    return h;
  }
  if (h.id == 0 || h.length > max_length) return std::nullopt;
  return h;
}

void EncodeVolumeHeader(const VolumeHeader& h, std::byte out[kVolumeHeaderSize]) {
  std::memset(out, 0, kVolumeHeaderSize);
  std::memcpy(out, kVolumeMagic, sizeof kVolumeMagic);
  EncodeFixed32(out + 8, h.version);
  EncodeFixed32(out + 12, h.volume_id);
  EncodeFixed64(out + 16, h.created_unix);
  EncodeFixed32(out + kVolumeSumAt, HeaderSum(out, kVolumeHeaderSize, kVolumeSumAt));
}

std::optional<VolumeHeader> DecodeVolumeHeader(ByteView in) {
  if (in.size() < kVolumeHeaderSize) return std::nullopt;
  const std::byte* p = in.data();
  if (std::memcmp(p, kVolumeMagic, sizeof kVolumeMagic) != 0) return std::nullopt;
  if (DecodeFixed32(p + kVolumeSumAt) != HeaderSum(p, kVolumeHeaderSize, kVolumeSumAt)) {
    return std::nullopt;
  }
  VolumeHeader h;
  h.version = DecodeFixed32(p + 8);
  h.volume_id = DecodeFixed32(p + 12);
  h.created_unix = DecodeFixed64(p + 16);
  return h;
}

}  // namespace qcloud::object::chx
