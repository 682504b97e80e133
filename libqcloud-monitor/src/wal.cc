#include "monitor/wal.h"

#include "monitor/label_codec.h"

#include <bit>

#include <fmt/format.h>

#include "qcloud/core/hash.h"

namespace qcloud::monitor::detail {

namespace {

uint64_t ZigZag(int64_t v) { return (static_cast<uint64_t>(v) << 1) ^ static_cast<uint64_t>(v >> 63); }
int64_t UnZigZag(uint64_t v) { return static_cast<int64_t>(v >> 1) ^ -static_cast<int64_t>(v & 1); }

uint32_t Checksum(ByteView typed_payload) { return static_cast<uint32_t>(Xxh3_64(typed_payload)); }

// Appends the framed record: header, then `typed` (type byte + payload).
void Frame(const Buffer& typed, Buffer& out) {
  ByteWriter w(out);
  w.PutFixed32(static_cast<uint32_t>(typed.size()));
  w.PutFixed32(Checksum(typed.readable()));
  w.PutBytes(typed.readable());
}

Status Bad(const char* what) { return Status(Errc::kCorruption, std::string("WAL record: ") + what); }

}  // namespace

void EncodeSeriesRecord(const std::vector<WalSeries>& series, Buffer& out) {
  Buffer typed;
  ByteWriter w(typed);
  w.PutU8(kRecordSeries);
  w.PutVarint64(series.size());
  for (const WalSeries& s : series) {
    w.PutVarint64(s.ref);
    EncodeLabels(s.labels, w);
  }
  Frame(typed, out);
}

void EncodeSamplesRecord(const std::vector<WalSample>& samples, Buffer& out) {
  Buffer typed;
  ByteWriter w(typed);
  w.PutU8(kRecordSamples);
  w.PutVarint64(samples.size());
  for (const WalSample& s : samples) {
    w.PutVarint64(s.ref);
    w.PutVarint64(ZigZag(s.t));
    w.PutFixed64(std::bit_cast<uint64_t>(s.v));
  }
  Frame(typed, out);
}

void EncodeChunksRecord(const std::vector<WalChunk>& chunks, Buffer& out) {
  Buffer typed;
  ByteWriter w(typed);
  w.PutU8(kRecordChunks);
  w.PutVarint64(chunks.size());
  for (const WalChunk& c : chunks) {
    w.PutVarint64(c.ref);
    w.PutVarint64(c.bytes.size());
    w.PutBytes(ByteView(c.bytes.data(), c.bytes.size()));
  }
  Frame(typed, out);
}

Result<Record> DecodeRecord(ByteView in) {
  if (in.size() < kRecordHeader) return Status(Errc::kOutOfRange, "WAL record cut short");
  const uint32_t body = DecodeFixed32(in.data());
  const uint32_t sum = DecodeFixed32(in.data() + 4);
  if (body == 0 || body > kMaxRecordBytes) return Bad("impossible length");
  if (in.size() - 8 < body) return Status(Errc::kOutOfRange, "WAL record cut short");
  const ByteView typed(in.data() + 8, body);
  if (Checksum(typed) != sum) return Bad("checksum mismatch");
  return Record{.type = static_cast<uint8_t>(typed.data()[0]), .payload = typed.subview(1, body - 1),
                .size = size_t{8} + body};
}

Result<std::vector<WalSeries>> DecodeSeries(ByteView payload) {
  ByteReader r(payload);
  auto n = r.ReadVarint64();
  if (!n || *n > payload.size()) return Bad("series count");
  std::vector<WalSeries> out;
  out.reserve(*n);
  for (uint64_t i = 0; i < *n; ++i) {
    auto ref = r.ReadVarint64();
    if (!ref) return Bad("series entry");
    std::optional<Labels> labels = DecodeLabels(r);
    if (!labels) return Bad("invalid labels");
    out.push_back({.ref = *ref, .labels = std::move(*labels)});
  }
  if (!r.empty()) return Bad("bytes after the series");
  return out;
}

Result<std::vector<WalSample>> DecodeSamples(ByteView payload) {
  ByteReader r(payload);
  auto n = r.ReadVarint64();
  if (!n || *n > payload.size()) return Bad("sample count");
  std::vector<WalSample> out;
  out.reserve(*n);
  for (uint64_t i = 0; i < *n; ++i) {
    auto ref = r.ReadVarint64();
    auto t = r.ReadVarint64();
    auto v = r.ReadFixed64();
    if (!ref || !t || !v) return Bad("sample");
    out.push_back({.ref = *ref, .t = UnZigZag(*t), .v = std::bit_cast<double>(*v)});
  }
  if (!r.empty()) return Bad("bytes after the samples");
  return out;
}

Result<std::vector<WalChunk>> DecodeChunks(ByteView payload) {
  ByteReader r(payload);
  auto n = r.ReadVarint64();
  if (!n || *n > payload.size()) return Bad("chunk count");
  std::vector<WalChunk> out;
  out.reserve(*n);
  for (uint64_t i = 0; i < *n; ++i) {
    auto ref = r.ReadVarint64();
    auto len = r.ReadVarint64();
    if (!ref || !len || *len > r.remaining()) return Bad("chunk entry");
    auto bytes = r.ReadBytes(static_cast<size_t>(*len));
    if (!bytes) return Bad("chunk entry");
    const auto* p = reinterpret_cast<const uint8_t*>(bytes->data());
    out.push_back({.ref = *ref, .bytes = std::vector<uint8_t>(p, p + bytes->size())});
  }
  if (!r.empty()) return Bad("bytes after the chunks");
  return out;
}

}  // namespace qcloud::monitor::detail
