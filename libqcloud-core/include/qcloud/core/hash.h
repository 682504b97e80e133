#pragma once

// Hashing: XXH3 (xxHash) for hash tables, routing and checksums; MD5 (S3
// ETags, COS dedup; our own, see Md5Hasher::UpdatePair); SHA-256 and
// HMAC-SHA256 (AWS Signature V4) through OpenSSL's EVP interface.
//
// One-shot functions are thread-safe. Streaming hashers are values owned by
// one thread at a time.

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "qcloud/core/bytes.h"
#include "qcloud/core/export.h"

namespace qcloud {

using Md5Digest = std::array<std::byte, 16>;
using Sha256Digest = std::array<std::byte, 32>;

// XXH3 64-bit; stable across versions and machines (it may be stored).
QCLOUD_EXPORT uint64_t Xxh3_64(ByteView data, uint64_t seed = 0) noexcept;

// XXH3 128-bit, for identifying byte strings by hash where keeping them
// costs too much. Not cryptographic: seed it with a secret where a client
// could choose the inputs.
struct Hash128 {
  uint64_t low = 0, high = 0;
  bool operator==(const Hash128&) const = default;
};
QCLOUD_EXPORT Hash128 Xxh3_128(ByteView data, uint64_t seed = 0) noexcept;

QCLOUD_EXPORT Md5Digest Md5(ByteView data);
QCLOUD_EXPORT Sha256Digest Sha256(ByteView data);
QCLOUD_EXPORT Sha256Digest HmacSha256(ByteView key, ByteView data);

inline ByteView AsBytes(const Md5Digest& d) noexcept { return {d.data(), d.size()}; }
inline ByteView AsBytes(const Sha256Digest& d) noexcept { return {d.data(), d.size()}; }

// Incremental digests for data that arrives in pieces (uploads, chains).
class QCLOUD_EXPORT Md5Hasher {
 public:
  Md5Hasher();
  ~Md5Hasher();
  Md5Hasher(Md5Hasher&&) noexcept;
  Md5Hasher& operator=(Md5Hasher&&) noexcept;
  void Update(ByteView data);
  // Returns the digest and resets the hasher for new input.
  Md5Digest Finish();
  // a.Update(da) and b.Update(db) at once: about 1.5 times the bytes per
  // second of one stream on one core (MD5 is one long dependency chain;
  // two interleaved keep more of the core busy). For a server that hashes
  // several uploads on one thread.
  static void UpdatePair(Md5Hasher& a, ByteView da, Md5Hasher& b, ByteView db);

 private:
  struct Ctx;
  std::unique_ptr<Ctx> ctx_;
};

class QCLOUD_EXPORT Sha256Hasher {
 public:
  Sha256Hasher();
  ~Sha256Hasher();
  Sha256Hasher(Sha256Hasher&&) noexcept;
  Sha256Hasher& operator=(Sha256Hasher&&) noexcept;
  void Update(ByteView data);
  Sha256Digest Finish();

 private:
  struct Ctx;
  std::unique_ptr<Ctx> ctx_;
};

// Streaming XXH3 64-bit, equal to Xxh3_64() of the concatenated input.
class QCLOUD_EXPORT Xxh3Hasher {
 public:
  explicit Xxh3Hasher(uint64_t seed = 0);
  ~Xxh3Hasher();
  Xxh3Hasher(Xxh3Hasher&&) noexcept;
  Xxh3Hasher& operator=(Xxh3Hasher&&) noexcept;
  void Update(ByteView data) noexcept;
  uint64_t Digest() const noexcept;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace qcloud
