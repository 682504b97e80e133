#include "qcloud/core/hash.h"

#include "core/md5.h"

#include <openssl/evp.h>
#include <xxhash.h>

#include <algorithm>
#include <initializer_list>

#include "qcloud/core/check.h"

namespace qcloud {
namespace {

// EVP digests fail only when OpenSSL itself is broken (no provider, out of
// memory): that is an invariant violation for qcloud, not a runtime error.
//
// Speed: OpenSSL 3 looks an algorithm up (a lock, a provider query) every
// time EVP_md5()/EVP_sha256() is passed to an init, and one-shot HMAC()
// builds and frees a MAC context per call: over a microsecond for a
// 64-byte digest. So the algorithms are fetched once, each thread keeps one
// context, and HMAC is the two hashes of RFC 2104 on that context.
const EVP_MD* FetchedSha256() {
  static const EVP_MD* md = [] {
    EVP_MD* m = EVP_MD_fetch(nullptr, "SHA256", nullptr);
    QCLOUD_CHECK(m != nullptr);
    return m;
  }();
  return md;
}

struct EvpCtxDeleter {
  void operator()(EVP_MD_CTX* c) const noexcept { EVP_MD_CTX_free(c); }
};
using EvpCtxPtr = std::unique_ptr<EVP_MD_CTX, EvpCtxDeleter>;

// This thread's scratch context for one-shot digests.
EVP_MD_CTX* ThreadCtx() {
  thread_local EvpCtxPtr ctx(EVP_MD_CTX_new());
  QCLOUD_CHECK(ctx != nullptr);
  return ctx.get();
}

template <size_t N>
std::array<std::byte, N> Digest(const EVP_MD* md, std::initializer_list<ByteView> parts) {
  EVP_MD_CTX* ctx = ThreadCtx();
  QCLOUD_CHECK(EVP_DigestInit_ex2(ctx, md, nullptr) == 1);
  for (ByteView p : parts) QCLOUD_CHECK(EVP_DigestUpdate(ctx, p.data(), p.size()) == 1);
  std::array<std::byte, N> out{};
  unsigned len = 0;
  QCLOUD_CHECK(EVP_DigestFinal_ex(ctx, reinterpret_cast<unsigned char*>(out.data()), &len) == 1);
  QCLOUD_CHECK(len == N);
  return out;
}

EvpCtxPtr NewCtx(const EVP_MD* md) {
  EvpCtxPtr ctx(EVP_MD_CTX_new());
  QCLOUD_CHECK(ctx && EVP_DigestInit_ex2(ctx.get(), md, nullptr) == 1);
  return ctx;
}

template <size_t N>
std::array<std::byte, N> FinishCtx(EVP_MD_CTX* ctx, const EVP_MD* md) {
  std::array<std::byte, N> out{};
  unsigned len = 0;
  QCLOUD_CHECK(EVP_DigestFinal_ex(ctx, reinterpret_cast<unsigned char*>(out.data()), &len) == 1);
  QCLOUD_CHECK(len == N && EVP_DigestInit_ex2(ctx, md, nullptr) == 1);
  return out;
}

}  // namespace

uint64_t Xxh3_64(ByteView data, uint64_t seed) noexcept {
  return seed == 0 ? XXH3_64bits(data.data(), data.size())
                   : XXH3_64bits_withSeed(data.data(), data.size(), seed);
}

Hash128 Xxh3_128(ByteView data, uint64_t seed) noexcept {
  const XXH128_hash_t h = XXH3_128bits_withSeed(data.data(), data.size(), seed);
  return {h.low64, h.high64};
}

Md5Digest Md5(ByteView data) {
  md5::State s;
  md5::Update(s, data);
  return md5::Finish(s);
}
Sha256Digest Sha256(ByteView data) { return Digest<32>(FetchedSha256(), {data}); }

Sha256Digest HmacSha256(ByteView key, ByteView data) {
  // RFC 2104: H((K ^ opad) || H((K ^ ipad) || data)), K padded to the block.
  constexpr size_t kBlock = 64;
  std::array<std::byte, kBlock> k{};
  if (key.size() > kBlock) {
    const Sha256Digest hashed = Sha256(key);
    std::copy(hashed.begin(), hashed.end(), k.begin());
  } else {
    std::copy(key.data(), key.data() + key.size(), k.begin());
  }
  std::array<std::byte, kBlock> pad;
  for (size_t i = 0; i < kBlock; ++i) pad[i] = k[i] ^ std::byte{0x36};
  const Sha256Digest inner = Digest<32>(FetchedSha256(), {ByteView(pad.data(), kBlock), data});
  for (size_t i = 0; i < kBlock; ++i) pad[i] = k[i] ^ std::byte{0x5c};
  return Digest<32>(FetchedSha256(), {ByteView(pad.data(), kBlock), ByteView(inner.data(), inner.size())});
}

// MD5 is ours (core/md5.h): as fast as OpenSSL's on one stream, and able
// to hash two at once.
struct Md5Hasher::Ctx {
  md5::State state;
};
Md5Hasher::Md5Hasher() : ctx_(std::make_unique<Ctx>()) {}
Md5Hasher::~Md5Hasher() = default;
Md5Hasher::Md5Hasher(Md5Hasher&&) noexcept = default;
Md5Hasher& Md5Hasher::operator=(Md5Hasher&&) noexcept = default;
void Md5Hasher::Update(ByteView data) { md5::Update(ctx_->state, data); }
Md5Digest Md5Hasher::Finish() { return md5::Finish(ctx_->state); }
void Md5Hasher::UpdatePair(Md5Hasher& a, ByteView da, Md5Hasher& b, ByteView db) {
  md5::UpdatePair(a.ctx_->state, da, b.ctx_->state, db);
}

struct Sha256Hasher::Ctx {
  EvpCtxPtr evp = NewCtx(FetchedSha256());
};
Sha256Hasher::Sha256Hasher() : ctx_(std::make_unique<Ctx>()) {}
Sha256Hasher::~Sha256Hasher() = default;
Sha256Hasher::Sha256Hasher(Sha256Hasher&&) noexcept = default;
Sha256Hasher& Sha256Hasher::operator=(Sha256Hasher&&) noexcept = default;
void Sha256Hasher::Update(ByteView data) {
  QCLOUD_CHECK(EVP_DigestUpdate(ctx_->evp.get(), data.data(), data.size()) == 1);
}
Sha256Digest Sha256Hasher::Finish() { return FinishCtx<32>(ctx_->evp.get(), FetchedSha256()); }

struct Xxh3Hasher::State {
  XXH3_state_t* s = XXH3_createState();
  ~State() { XXH3_freeState(s); }
};
Xxh3Hasher::Xxh3Hasher(uint64_t seed) : state_(std::make_unique<State>()) {
  QCLOUD_CHECK(state_->s != nullptr);
  QCLOUD_CHECK(XXH3_64bits_reset_withSeed(state_->s, seed) == XXH_OK);
}
Xxh3Hasher::~Xxh3Hasher() = default;
Xxh3Hasher::Xxh3Hasher(Xxh3Hasher&&) noexcept = default;
Xxh3Hasher& Xxh3Hasher::operator=(Xxh3Hasher&&) noexcept = default;
void Xxh3Hasher::Update(ByteView data) noexcept {
  (void)XXH3_64bits_update(state_->s, data.data(), data.size());
}
uint64_t Xxh3Hasher::Digest() const noexcept { return XXH3_64bits_digest(state_->s); }

}  // namespace qcloud
