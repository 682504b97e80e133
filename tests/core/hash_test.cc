#include <doctest/doctest.h>
#include <openssl/evp.h>

#include <cstring>
#include <random>

#include <string>

#include "qcloud/core/hash.h"

namespace qcloud {
namespace {

std::string Hex(const Md5Digest& d) { return ToHex(AsBytes(d)); }
std::string Hex(const Sha256Digest& d) { return ToHex(AsBytes(d)); }

TEST_CASE("hash: MD5 vectors (RFC 1321)") {
  CHECK(Hex(Md5(std::string_view(""))) == "d41d8cd98f00b204e9800998ecf8427e");
  CHECK(Hex(Md5(std::string_view("abc"))) == "900150983cd24fb0d6963f7d28e17f72");
  CHECK(Hex(Md5(std::string_view("message digest"))) == "f96b697d7cb7938d525a2f31aaf161d0");
}

TEST_CASE("hash: SHA-256 vectors (FIPS 180-2)") {
  CHECK(Hex(Sha256(std::string_view("abc"))) ==
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(Hex(Sha256(std::string_view(""))) ==
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST_CASE("hash: HMAC-SHA256 vectors (RFC 4231)") {
  std::string key1(20, '\x0b');
  CHECK(Hex(HmacSha256(key1, std::string_view("Hi There"))) ==
        "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
  CHECK(Hex(HmacSha256(std::string_view("Jefe"), std::string_view("what do ya want for nothing?"))) ==
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

TEST_CASE("hash: XXH3 known value and seeds") {
  CHECK(Xxh3_64(std::string_view("")) == 0x2D06800538D394C2ull);
  CHECK(Xxh3_64(std::string_view("a")) != Xxh3_64(std::string_view("b")));
  CHECK(Xxh3_64(std::string_view("a"), 1) != Xxh3_64(std::string_view("a"), 2));
  // XXH3-128 of "" (xxHash's test vectors): 0x99aa06d3014798d86001c324468d497f.
  CHECK(Xxh3_128(std::string_view("")) == Hash128{0x6001c324468d497fULL, 0x99aa06d3014798d8ULL});
  CHECK(Xxh3_128(std::string_view("a"), 7) == Xxh3_128(std::string_view("a"), 7));
  CHECK(Xxh3_128(std::string_view("a"), 7) != Xxh3_128(std::string_view("a"), 8));
  CHECK(Xxh3_128(std::string_view("a")) != Xxh3_128(std::string_view("b")));
}

TEST_CASE("hash: streaming equals one-shot") {
  std::string data;
  for (int i = 0; i < 10000; ++i) data += static_cast<char>(i * 7);
  Md5Hasher md5;
  Sha256Hasher sha;
  Xxh3Hasher xxh(42);
  for (size_t off = 0; off < data.size(); off += 333) {
    std::string_view piece = std::string_view(data).substr(off, 333);
    md5.Update(piece);
    sha.Update(piece);
    xxh.Update(piece);
  }
  CHECK(md5.Finish() == Md5(data));
  CHECK(sha.Finish() == Sha256(data));
  CHECK(xxh.Digest() == Xxh3_64(data, 42));
  // Finish resets: a second digest is of new input only.
  md5.Update(std::string_view("abc"));
  CHECK(Hex(md5.Finish()) == "900150983cd24fb0d6963f7d28e17f72");
}

TEST_CASE("hash: MD5 is RFC 1321's and OpenSSL's at every length") {
  // RFC 1321, appendix A.5.
  CHECK(Hex(Md5(std::string_view("a"))) == "0cc175b9c0f1b6a831c399e269772661");
  CHECK(Hex(Md5(std::string_view("abcdefghijklmnopqrstuvwxyz"))) == "c3fcd3d76192e4007dfb496cca67e13b");
  CHECK(Hex(Md5(std::string_view("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"))) ==
        "d174ab98d277d9f5a5611c2c9f419d9f");
  std::string eighty;
  for (int i = 0; i < 8; ++i) eighty += "1234567890";
  CHECK(Hex(Md5(eighty)) == "57edf4a22be3c955ac49da2e2107b67a");
  // Every length around the padding's edges (55, 56, 63, 64, ...), against OpenSSL.
  std::mt19937 rng(7);
  std::string data(1100, '\0');
  for (char& c : data) c = static_cast<char>(rng());
  bool same = true;
  for (size_t n = 0; n <= data.size(); ++n) {
    unsigned char want[16];
    unsigned int len = 0;
    REQUIRE(EVP_Digest(data.data(), n, want, &len, EVP_md5(), nullptr) == 1);
    const Md5Digest got = Md5(std::string_view(data).substr(0, n));
    same = same && std::memcmp(got.data(), want, 16) == 0;
  }
  CHECK(same);
}

TEST_CASE("hash: two MD5 streams at once equal each alone") {
  std::mt19937 rng(11);
  int mismatches = 0;
  for (int round = 0; round < 300; ++round) {
    std::string a(rng() % 5000, '\0'), b(rng() % 5000, '\0');
    for (char& c : a) c = static_cast<char>(rng());
    for (char& c : b) c = static_cast<char>(rng());
    Md5Hasher ha, hb;
    size_t ia = 0, ib = 0;
    // Random pieces, some through UpdatePair, some alone.
    while (ia < a.size() || ib < b.size()) {
      const size_t ka = std::min<size_t>(a.size() - ia, rng() % 400);
      const size_t kb = std::min<size_t>(b.size() - ib, rng() % 400);
      if (rng() % 4 == 0) {
        ha.Update(std::string_view(a).substr(ia, ka));
        hb.Update(std::string_view(b).substr(ib, kb));
      } else {
        Md5Hasher::UpdatePair(ha, ByteView(std::string_view(a).substr(ia, ka)), hb,
                              ByteView(std::string_view(b).substr(ib, kb)));
      }
      ia += ka;
      ib += kb;
    }
    if (ha.Finish() != Md5(a) || hb.Finish() != Md5(b)) ++mismatches;
  }
  CHECK(mismatches == 0);
}

}  // namespace
}  // namespace qcloud
