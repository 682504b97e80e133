#include "qcloud/core/hash.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <xxhash.h>

#include "qcloud/core/check.h"

namespace qcloud {
namespace {

// EVP digests fail only when OpenSSL itself is broken (no provider, out of
// memory): that is an invariant violation for qcloud, not a runtime error.
template <size_t N>
std::array<std::byte, N> Digest(const EVP_MD* md, ByteView data) {
  std::array<std::byte, N> out{};
  unsigned len = 0;
  QCLOUD_CHECK(EVP_Digest(data.data(), data.size(), reinterpret_cast<unsigned char*>(out.data()),
                          &len, md, nullptr) == 1);
  QCLOUD_CHECK(len == N);
  return out;
}

struct EvpCtxDeleter {
  void operator()(EVP_MD_CTX* c) const noexcept { EVP_MD_CTX_free(c); }
};
using EvpCtxPtr = std::unique_ptr<EVP_MD_CTX, EvpCtxDeleter>;

EvpCtxPtr NewCtx(const EVP_MD* md) {
  EvpCtxPtr ctx(EVP_MD_CTX_new());
  QCLOUD_CHECK(ctx && EVP_DigestInit_ex(ctx.get(), md, nullptr) == 1);
  return ctx;
}

template <size_t N>
std::array<std::byte, N> FinishCtx(EVP_MD_CTX* ctx, const EVP_MD* md) {
  std::array<std::byte, N> out{};
  unsigned len = 0;
  QCLOUD_CHECK(EVP_DigestFinal_ex(ctx, reinterpret_cast<unsigned char*>(out.data()), &len) == 1);
  QCLOUD_CHECK(len == N && EVP_DigestInit_ex(ctx, md, nullptr) == 1);
  return out;
}

}  // namespace

uint64_t Xxh3_64(ByteView data, uint64_t seed) noexcept {
  return seed == 0 ? XXH3_64bits(data.data(), data.size())
                   : XXH3_64bits_withSeed(data.data(), data.size(), seed);
}

Md5Digest Md5(ByteView data) { return Digest<16>(EVP_md5(), data); }
Sha256Digest Sha256(ByteView data) { return Digest<32>(EVP_sha256(), data); }

Sha256Digest HmacSha256(ByteView key, ByteView data) {
  Sha256Digest out{};
  unsigned len = 0;
  QCLOUD_CHECK(HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), data.u8(),
                    data.size(), reinterpret_cast<unsigned char*>(out.data()), &len) != nullptr);
  QCLOUD_CHECK(len == out.size());
  return out;
}

struct Md5Hasher::Ctx {
  EvpCtxPtr evp = NewCtx(EVP_md5());
};
Md5Hasher::Md5Hasher() : ctx_(std::make_unique<Ctx>()) {}
Md5Hasher::~Md5Hasher() = default;
Md5Hasher::Md5Hasher(Md5Hasher&&) noexcept = default;
Md5Hasher& Md5Hasher::operator=(Md5Hasher&&) noexcept = default;
void Md5Hasher::Update(ByteView data) {
  QCLOUD_CHECK(EVP_DigestUpdate(ctx_->evp.get(), data.data(), data.size()) == 1);
}
Md5Digest Md5Hasher::Finish() { return FinishCtx<16>(ctx_->evp.get(), EVP_md5()); }

struct Sha256Hasher::Ctx {
  EvpCtxPtr evp = NewCtx(EVP_sha256());
};
Sha256Hasher::Sha256Hasher() : ctx_(std::make_unique<Ctx>()) {}
Sha256Hasher::~Sha256Hasher() = default;
Sha256Hasher::Sha256Hasher(Sha256Hasher&&) noexcept = default;
Sha256Hasher& Sha256Hasher::operator=(Sha256Hasher&&) noexcept = default;
void Sha256Hasher::Update(ByteView data) {
  QCLOUD_CHECK(EVP_DigestUpdate(ctx_->evp.get(), data.data(), data.size()) == 1);
}
Sha256Digest Sha256Hasher::Finish() { return FinishCtx<32>(ctx_->evp.get(), EVP_sha256()); }

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
