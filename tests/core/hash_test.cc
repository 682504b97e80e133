#include <doctest/doctest.h>

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

}  // namespace
}  // namespace qcloud
