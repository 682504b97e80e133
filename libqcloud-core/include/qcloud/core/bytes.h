#pragma once

// Byte views and buffers, and the little-endian / varint codings that every
// on-disk and on-wire format of qcloud is written in.
//
//   ByteView   non-owning (pointer, size) over bytes; converts from string,
//              string_view and spans, so one signature accepts them all.
//   Buffer     owning, growable byte buffer with a read cursor: producers
//              Prepare()/Commit() at the tail (e.g. a socket read), consumers
//              Consume() at the head; memory is reused, not reallocated.
//   ByteWriter appends fixed-width and varint integers to a Buffer.
//   ByteReader decodes them from a ByteView with bounds checks: every read of
//              untrusted input goes through it (see tests/fuzz).

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "qcloud/core/export.h"

namespace qcloud {

class ByteView {
 public:
  constexpr ByteView() noexcept = default;
  ByteView(const void* data, size_t size) noexcept
      : data_(static_cast<const std::byte*>(data)), size_(size) {}
  ByteView(std::string_view s) noexcept : ByteView(s.data(), s.size()) {}  // NOLINT
  ByteView(const std::string& s) noexcept : ByteView(s.data(), s.size()) {}  // NOLINT
  ByteView(const char* s) = delete;  // ambiguous: use std::string_view explicitly
  ByteView(std::span<const std::byte> s) noexcept : data_(s.data()), size_(s.size()) {}  // NOLINT
  ByteView(std::span<const uint8_t> s) noexcept : ByteView(s.data(), s.size()) {}  // NOLINT

  const std::byte* data() const noexcept { return data_; }
  const uint8_t* u8() const noexcept { return reinterpret_cast<const uint8_t*>(data_); }
  const char* chars() const noexcept { return reinterpret_cast<const char*>(data_); }
  size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }
  std::byte operator[](size_t i) const noexcept { return data_[i]; }

  std::string_view AsStringView() const noexcept { return {chars(), size_}; }
  std::string ToString() const { return std::string(chars(), size_); }
  std::span<const std::byte> AsSpan() const noexcept { return {data_, size_}; }

  // Precondition: n <= size().
  ByteView first(size_t n) const noexcept { return {data_, n}; }
  ByteView subview(size_t offset, size_t n) const noexcept { return {data_ + offset, n}; }
  void RemovePrefix(size_t n) noexcept {
    data_ += n;
    size_ -= n;
  }

  friend bool operator==(ByteView a, ByteView b) noexcept {
    return a.size_ == b.size_ && (a.size_ == 0 || std::memcmp(a.data_, b.data_, a.size_) == 0);
  }

 private:
  const std::byte* data_ = nullptr;
  size_t size_ = 0;
};

using MutableByteView = std::span<std::byte>;

// Lower-case hexadecimal of `bytes` ("" for empty input).
QCLOUD_EXPORT std::string ToHex(ByteView bytes);
// ASCII case folding for protocol tokens (header names, host names): no
// locale, no allocation beyond the copy.
inline char AsciiLower(char c) noexcept { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + ('a' - 'A')) : c; }
inline std::string AsciiLower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = AsciiLower(c);
  return out;
}
inline bool EqualsIgnoreCase(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (AsciiLower(a[i]) != AsciiLower(b[i])) return false;
  }
  return true;
}
// The inverse, either case; false (and *out unspecified) for an odd length
// or a character that is not a hex digit.
QCLOUD_EXPORT bool FromHex(std::string_view text, std::string* out);

class QCLOUD_EXPORT Buffer {
 public:
  Buffer() noexcept = default;
  explicit Buffer(size_t initial_capacity);
  explicit Buffer(ByteView contents);
  Buffer(Buffer&&) noexcept;
  Buffer& operator=(Buffer&&) noexcept;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer();

  // The unread bytes.
  ByteView readable() const noexcept { return {storage_.get() + read_, write_ - read_}; }
  const std::byte* data() const noexcept { return storage_.get() + read_; }
  size_t size() const noexcept { return write_ - read_; }
  bool empty() const noexcept { return write_ == read_; }
  size_t capacity() const noexcept { return capacity_; }
  operator ByteView() const noexcept { return readable(); }  // NOLINT

  // Marks n readable bytes as consumed. Precondition: n <= size().
  void Consume(size_t n) noexcept;
  // Drops readable bytes from the tail, keeping the first n (padding read
  // along with a record, say). Precondition: n <= size().
  void KeepFirst(size_t n) noexcept { write_ = read_ + n; }
  void Clear() noexcept { read_ = write_ = 0; }

  // Returns at least `n` writable bytes after the readable ones (moving the
  // unread bytes to the front or growing as needed); then Commit(k) makes the
  // first k of them readable. Pointers into the buffer are invalidated.
  MutableByteView Prepare(size_t n);
  void Commit(size_t n) noexcept;

  void Append(ByteView bytes);
  void PushBack(std::byte b) {
    Prepare(1)[0] = b;
    Commit(1);
  }

  // Frees the storage when more than `keep` bytes are allocated and none are
  // unread, so an idle connection does not pin a burst's memory.
  void ShrinkIfIdle(size_t keep) noexcept;

 private:
  std::unique_ptr<std::byte[]> storage_;
  size_t capacity_ = 0;
  size_t read_ = 0;
  size_t write_ = 0;
};

// Little-endian fixed-width codings.
inline void EncodeFixed32(std::byte* dst, uint32_t v) noexcept {
  for (int i = 0; i < 4; ++i) dst[i] = static_cast<std::byte>(v >> (8 * i));
}
inline void EncodeFixed64(std::byte* dst, uint64_t v) noexcept {
  for (int i = 0; i < 8; ++i) dst[i] = static_cast<std::byte>(v >> (8 * i));
}
inline uint32_t DecodeFixed32(const std::byte* src) noexcept {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= static_cast<uint32_t>(src[i]) << (8 * i);
  return v;
}
inline uint64_t DecodeFixed64(const std::byte* src) noexcept {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= static_cast<uint64_t>(src[i]) << (8 * i);
  return v;
}

// Big-endian (network order) fixed-width codings, for wire formats that
// define them: memcached's binary protocol, NBD, VXLAN, GRE, IP headers.
inline void EncodeBigEndian16(std::byte* dst, uint16_t v) noexcept {
  dst[0] = static_cast<std::byte>(v >> 8);
  dst[1] = static_cast<std::byte>(v);
}
inline void EncodeBigEndian32(std::byte* dst, uint32_t v) noexcept {
  for (int i = 0; i < 4; ++i) dst[i] = static_cast<std::byte>(v >> (24 - 8 * i));
}
inline void EncodeBigEndian64(std::byte* dst, uint64_t v) noexcept {
  for (int i = 0; i < 8; ++i) dst[i] = static_cast<std::byte>(v >> (56 - 8 * i));
}
inline uint16_t DecodeBigEndian16(const std::byte* src) noexcept {
  return static_cast<uint16_t>((static_cast<unsigned>(src[0]) << 8) | static_cast<unsigned>(src[1]));
}
inline uint32_t DecodeBigEndian32(const std::byte* src) noexcept {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v = (v << 8) | static_cast<uint32_t>(src[i]);
  return v;
}
inline uint64_t DecodeBigEndian64(const std::byte* src) noexcept {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<uint64_t>(src[i]);
  return v;
}

// Base64, RFC 4648 section 4 (standard alphabet, '=' padding), as memcached's
// meta protocol, S3 (Content-MD5) and HTTP Basic use it.
QCLOUD_EXPORT std::string Base64Encode(ByteView bytes);
// Strict: the length must be a multiple of 4, padding only at the end, no
// whitespace or other characters. False (and *out unspecified) otherwise.
QCLOUD_EXPORT bool Base64Decode(std::string_view text, std::string* out);

// Longest varint64 encoding in bytes.
inline constexpr size_t kMaxVarint64Length = 10;

class QCLOUD_EXPORT ByteWriter {
 public:
  explicit ByteWriter(Buffer& out) noexcept : out_(out) {}
  void PutU8(uint8_t v);
  void PutFixed32(uint32_t v);
  void PutFixed64(uint64_t v);
  // LEB128, 7 bits a byte, least significant group first.
  void PutVarint64(uint64_t v);
  void PutBytes(ByteView bytes) { out_.Append(bytes); }
  // varint64 length followed by the bytes.
  void PutLengthPrefixed(ByteView bytes);

 private:
  Buffer& out_;
};

// Decodes from a view; each Read* returns nullopt (and consumes nothing) when
// the input is too short or malformed, so a truncated record is an error
// rather than an out-of-bounds read.
class QCLOUD_EXPORT ByteReader {
 public:
  explicit ByteReader(ByteView in) noexcept : in_(in) {}

  size_t remaining() const noexcept { return in_.size(); }
  bool empty() const noexcept { return in_.empty(); }
  ByteView rest() const noexcept { return in_; }

  std::optional<uint8_t> ReadU8() noexcept;
  std::optional<uint32_t> ReadFixed32() noexcept;
  std::optional<uint64_t> ReadFixed64() noexcept;
  // Rejects encodings longer than 10 bytes or that overflow 64 bits.
  std::optional<uint64_t> ReadVarint64() noexcept;
  std::optional<ByteView> ReadBytes(size_t n) noexcept;
  // A varint64 length, then that many bytes; rejects lengths above max_len.
  std::optional<ByteView> ReadLengthPrefixed(size_t max_len = SIZE_MAX) noexcept;

 private:
  ByteView in_;
};

}  // namespace qcloud
