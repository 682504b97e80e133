#include <doctest/doctest.h>

#include <limits>
#include <string>
#include <vector>

#include "qcloud/core/bytes.h"

namespace qcloud {
namespace {

TEST_CASE("bytes: buffer prepare/commit/consume") {
  Buffer b;
  CHECK(b.empty());
  b.Append(std::string_view("hello "));
  b.Append(std::string_view("world"));
  CHECK(b.readable().AsStringView() == "hello world");
  b.Consume(6);
  CHECK(b.readable().AsStringView() == "world");
  auto tail = b.Prepare(3);
  REQUIRE(tail.size() >= 3);
  std::memcpy(tail.data(), "!!!", 3);
  b.Commit(3);
  CHECK(b.readable().AsStringView() == "world!!!");
  b.Consume(b.size());
  CHECK(b.empty());
  // Growth keeps the unread bytes.
  std::string big(100000, 'x');
  b.Append(std::string_view("ab"));
  b.Consume(1);
  b.Append(big);
  CHECK(b.size() == 100001);
  CHECK(b.readable().AsStringView().substr(0, 2) == "bx");
  b.Consume(b.size());
  b.ShrinkIfIdle(4096);
  CHECK(b.capacity() == 0);
}

TEST_CASE("bytes: hex") {
  CHECK(ToHex(std::string_view("")) == "");
  CHECK(ToHex(std::string_view("\x00\xff\x10", 3)) == "00ff10");
}

TEST_CASE("bytes: fixed and varint round trip") {
  Buffer b;
  ByteWriter w(b);
  std::vector<uint64_t> values = {0, 1, 127, 128, 300, 16383, 16384, (1ull << 32) - 1,
                                  1ull << 32, std::numeric_limits<uint64_t>::max()};
  for (auto v : values) w.PutVarint64(v);
  w.PutFixed32(0xdeadbeef);
  w.PutFixed64(0x0123456789abcdefull);
  w.PutLengthPrefixed(std::string_view("payload"));
  w.PutU8(9);

  ByteReader r(b.readable());
  for (auto v : values) CHECK(r.ReadVarint64() == v);
  CHECK(r.ReadFixed32() == 0xdeadbeefu);
  CHECK(r.ReadFixed64() == 0x0123456789abcdefull);
  auto p = r.ReadLengthPrefixed();
  REQUIRE(p);
  CHECK(p->AsStringView() == "payload");
  CHECK(r.ReadU8() == 9);
  CHECK(r.empty());
  CHECK_FALSE(r.ReadU8());
}

TEST_CASE("bytes: fixed encodings are little-endian") {
  std::byte buf[8];
  EncodeFixed32(buf, 0x04030201);
  CHECK(static_cast<int>(buf[0]) == 1);
  CHECK(static_cast<int>(buf[3]) == 4);
  EncodeFixed64(buf, 0x0807060504030201ull);
  CHECK(static_cast<int>(buf[7]) == 8);
}

TEST_CASE("bytes: malformed varints are rejected without consuming") {
  // Truncated: continuation bit set on the last byte.
  std::string t("\x80\x80", 2);
  ByteReader r1{ByteView(t)};
  CHECK_FALSE(r1.ReadVarint64());
  CHECK(r1.remaining() == 2);
  // Eleven bytes.
  std::string longer(10, '\x80');
  longer += '\x01';
  ByteReader r2{ByteView(longer)};
  CHECK_FALSE(r2.ReadVarint64());
  // Ten bytes whose last carries more than bit 63.
  std::string overflow(9, '\xff');
  overflow += '\x02';
  ByteReader r3{ByteView(overflow)};
  CHECK_FALSE(r3.ReadVarint64());
  // Length prefix longer than the data, and longer than the limit.
  std::string lp("\x05" "abc", 4);
  ByteReader r4{ByteView(lp)};
  CHECK_FALSE(r4.ReadLengthPrefixed());
  CHECK(r4.remaining() == 4);
  std::string lp2("\x03" "abc", 4);
  ByteReader r5{ByteView(lp2)};
  CHECK_FALSE(r5.ReadLengthPrefixed(2));
  CHECK(r5.ReadLengthPrefixed(3));
}

}  // namespace
}  // namespace qcloud
