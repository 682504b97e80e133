#include "qcloud/core/bytes.h"

#include <array>

#include <algorithm>
#include <utility>

#include "qcloud/core/check.h"

namespace qcloud {

std::string ToHex(ByteView bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(bytes.size() * 2, '\0');
  for (size_t i = 0; i < bytes.size(); ++i) {
    auto b = static_cast<uint8_t>(bytes[i]);
    out[2 * i] = kDigits[b >> 4];
    out[2 * i + 1] = kDigits[b & 0xf];
  }
  return out;
}

bool FromHex(std::string_view text, std::string* out) {
  if (text.size() % 2 != 0) return false;
  auto digit = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  out->clear();
  out->reserve(text.size() / 2);
  for (size_t i = 0; i < text.size(); i += 2) {
    const int hi = digit(text[i]), lo = digit(text[i + 1]);
    if (hi < 0 || lo < 0) return false;
    out->push_back(static_cast<char>(hi << 4 | lo));
  }
  return true;
}

namespace {
constexpr char kBase64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
constexpr int8_t kNotBase64 = -1;
constexpr auto kBase64Values = [] {
  std::array<int8_t, 256> t{};
  t.fill(kNotBase64);
  for (int i = 0; i < 64; ++i) t[static_cast<unsigned char>(kBase64[i])] = static_cast<int8_t>(i);
  return t;
}();
}  // namespace

std::string Base64Encode(ByteView bytes) {
  const uint8_t* in = bytes.u8();
  const size_t n = bytes.size();
  std::string out;
  out.reserve((n + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= n; i += 3) {
    const uint32_t v = (uint32_t{in[i]} << 16) | (uint32_t{in[i + 1]} << 8) | in[i + 2];
    out += kBase64[v >> 18];
    out += kBase64[(v >> 12) & 63];
    out += kBase64[(v >> 6) & 63];
    out += kBase64[v & 63];
  }
  if (i < n) {
    uint32_t v = uint32_t{in[i]} << 16;
    if (i + 1 < n) v |= uint32_t{in[i + 1]} << 8;
    out += kBase64[v >> 18];
    out += kBase64[(v >> 12) & 63];
    out += i + 1 < n ? kBase64[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

bool Base64Decode(std::string_view text, std::string* out) {
  if (text.size() % 4 != 0) return false;
  out->clear();
  out->reserve(text.size() / 4 * 3);
  size_t pad = 0;
  if (!text.empty() && text.back() == '=') pad = text[text.size() - 2] == '=' ? 2 : 1;
  uint32_t acc = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    int v = 0;
    if (i < text.size() - pad) {
      v = kBase64Values[static_cast<unsigned char>(text[i])];
      if (v == kNotBase64) return false;  // includes a '=' before the end
    }
    acc = (acc << 6) | static_cast<uint32_t>(v);
    if (i % 4 == 3) {
      out->push_back(static_cast<char>(acc >> 16));
      out->push_back(static_cast<char>(acc >> 8));
      out->push_back(static_cast<char>(acc));
      acc = 0;
    }
  }
  out->resize(out->size() - pad);
  return true;
}

Buffer::Buffer(size_t initial_capacity)
    : storage_(new std::byte[initial_capacity]), capacity_(initial_capacity) {}

Buffer::Buffer(ByteView contents) : Buffer(contents.size()) { Append(contents); }

Buffer::Buffer(Buffer&& other) noexcept
    : storage_(std::move(other.storage_)),
      capacity_(std::exchange(other.capacity_, 0)),
      read_(std::exchange(other.read_, 0)),
      write_(std::exchange(other.write_, 0)) {}

Buffer& Buffer::operator=(Buffer&& other) noexcept {
  storage_ = std::move(other.storage_);
  capacity_ = std::exchange(other.capacity_, 0);
  read_ = std::exchange(other.read_, 0);
  write_ = std::exchange(other.write_, 0);
  return *this;
}

Buffer::~Buffer() = default;

void Buffer::Consume(size_t n) noexcept {
  QCLOUD_DCHECK(n <= size());
  read_ += n;
  if (read_ == write_) read_ = write_ = 0;  // cheap reset keeps the tail long
}

MutableByteView Buffer::Prepare(size_t n) {
  if (capacity_ - write_ >= n) return {storage_.get() + write_, capacity_ - write_};
  size_t unread = size();
  if (read_ > 0 && capacity_ - unread >= n && unread <= capacity_ / 2) {
    // Enough room once the consumed prefix is reclaimed; a move of at most
    // half the buffer keeps the amortised cost linear.
    std::memmove(storage_.get(), storage_.get() + read_, unread);
  } else {
    size_t cap = std::max<size_t>({64, capacity_ * 2, unread + n});
    std::unique_ptr<std::byte[]> grown(new std::byte[cap]);
    if (unread) std::memcpy(grown.get(), storage_.get() + read_, unread);
    storage_ = std::move(grown);
    capacity_ = cap;
  }
  read_ = 0;
  write_ = unread;
  return {storage_.get() + write_, capacity_ - write_};
}

void Buffer::Commit(size_t n) noexcept {
  QCLOUD_DCHECK(n <= capacity_ - write_);
  write_ += n;
}

void Buffer::Append(ByteView bytes) {
  if (bytes.empty()) return;
  auto dst = Prepare(bytes.size());
  std::memcpy(dst.data(), bytes.data(), bytes.size());
  Commit(bytes.size());
}

void Buffer::ShrinkIfIdle(size_t keep) noexcept {
  if (empty() && capacity_ > keep) {
    storage_.reset();
    capacity_ = read_ = write_ = 0;
  }
}

void ByteWriter::PutU8(uint8_t v) { out_.PushBack(static_cast<std::byte>(v)); }

void ByteWriter::PutFixed32(uint32_t v) {
  EncodeFixed32(out_.Prepare(4).data(), v);
  out_.Commit(4);
}

void ByteWriter::PutFixed64(uint64_t v) {
  EncodeFixed64(out_.Prepare(8).data(), v);
  out_.Commit(8);
}

void ByteWriter::PutVarint64(uint64_t v) {
  std::byte* p = out_.Prepare(kMaxVarint64Length).data();
  size_t n = 0;
  while (v >= 0x80) {
    p[n++] = static_cast<std::byte>((v & 0x7f) | 0x80);
    v >>= 7;
  }
  p[n++] = static_cast<std::byte>(v);
  out_.Commit(n);
}

void ByteWriter::PutLengthPrefixed(ByteView bytes) {
  PutVarint64(bytes.size());
  PutBytes(bytes);
}

std::optional<uint8_t> ByteReader::ReadU8() noexcept {
  if (in_.size() < 1) return std::nullopt;
  auto v = static_cast<uint8_t>(in_[0]);
  in_.RemovePrefix(1);
  return v;
}

std::optional<uint32_t> ByteReader::ReadFixed32() noexcept {
  if (in_.size() < 4) return std::nullopt;
  uint32_t v = DecodeFixed32(in_.data());
  in_.RemovePrefix(4);
  return v;
}

std::optional<uint64_t> ByteReader::ReadFixed64() noexcept {
  if (in_.size() < 8) return std::nullopt;
  uint64_t v = DecodeFixed64(in_.data());
  in_.RemovePrefix(8);
  return v;
}

std::optional<uint64_t> ByteReader::ReadVarint64() noexcept {
  uint64_t v = 0;
  size_t limit = std::min(in_.size(), kMaxVarint64Length);
  for (size_t i = 0; i < limit; ++i) {
    auto b = static_cast<uint8_t>(in_[i]);
    // The tenth byte may carry only the top bit of a 64-bit value.
    if (i == kMaxVarint64Length - 1 && b > 1) return std::nullopt;
    v |= static_cast<uint64_t>(b & 0x7f) << (7 * i);
    if ((b & 0x80) == 0) {
      in_.RemovePrefix(i + 1);
      return v;
    }
  }
  return std::nullopt;  // truncated, or longer than 10 bytes
}

std::optional<ByteView> ByteReader::ReadBytes(size_t n) noexcept {
  if (in_.size() < n) return std::nullopt;
  ByteView v = in_.first(n);
  in_.RemovePrefix(n);
  return v;
}

std::optional<ByteView> ByteReader::ReadLengthPrefixed(size_t max_len) noexcept {
  ByteReader probe = *this;
  auto len = probe.ReadVarint64();
  if (!len || *len > max_len || *len > probe.remaining()) return std::nullopt;
  auto bytes = probe.ReadBytes(static_cast<size_t>(*len));
  *this = probe;
  return bytes;
}

}  // namespace qcloud
