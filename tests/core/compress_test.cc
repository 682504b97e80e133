#include <doctest/doctest.h>
#include <zstd.h>

#include <string>

#include "qcloud/core/compress.h"
#include "qcloud/testing/doctest_helpers.h"

namespace qcloud {
namespace {

std::string Sample(size_t n) {
  std::string s;
  for (size_t i = 0; s.size() < n; ++i) s += "key:" + std::to_string(i % 97) + ";";
  s.resize(n);
  return s;
}

TEST_CASE("compress: round trip") {
  for (size_t n : {size_t{0}, size_t{1}, size_t{1000}, size_t{1} << 20}) {
    std::string in = Sample(n);
    Buffer c = REQUIRE_VALUE(ZstdCompress(in));
    if (n >= 1000) CHECK(c.size() < n / 4);
    Buffer d = REQUIRE_VALUE(ZstdDecompress(c, n));
    CHECK(d.readable().AsStringView() == in);
  }
}

TEST_CASE("compress: bad level is an argument error") {
  CHECK_ERRC(ZstdCompress(std::string_view("x"), {.level = 1000}), Errc::kInvalidArgument);
}

TEST_CASE("compress: output limit from the frame header") {
  std::string in = Sample(100000);
  Buffer c = REQUIRE_VALUE(ZstdCompress(in));
  CHECK_ERRC(ZstdDecompress(c, 99999), Errc::kTooLarge);
}

TEST_CASE("compress: output limit without a content size (streamed frame)") {
  // A frame written by the streaming API does not record its size, so only
  // the decompressed byte count can enforce the cap.
  std::string in = Sample(200000);
  std::string out(ZSTD_compressBound(in.size()), '\0');
  ZSTD_CCtx* cctx = ZSTD_createCCtx();
  ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, 0);
  ZSTD_inBuffer ib{in.data(), in.size(), 0};
  ZSTD_outBuffer ob{out.data(), out.size(), 0};
  REQUIRE(ZSTD_compressStream2(cctx, &ob, &ib, ZSTD_e_end) == 0);
  ZSTD_freeCCtx(cctx);
  out.resize(ob.pos);
  REQUIRE(ZSTD_getFrameContentSize(out.data(), out.size()) == ZSTD_CONTENTSIZE_UNKNOWN);
  CHECK_ERRC(ZstdDecompress(out, 150000), Errc::kTooLarge);
  Buffer d = REQUIRE_VALUE(ZstdDecompress(out, 200000));
  CHECK(d.readable().AsStringView() == in);
}

TEST_CASE("compress: corrupt, truncated and concatenated input") {
  CHECK_ERRC(ZstdDecompress(std::string_view(""), 10), Errc::kCorruption);
  CHECK_ERRC(ZstdDecompress(std::string_view("not zstd at all"), 100), Errc::kCorruption);
  std::string in = Sample(5000);
  Buffer c = REQUIRE_VALUE(ZstdCompress(in));
  std::string frame(c.readable().AsStringView());
  CHECK_ERRC(ZstdDecompress(std::string_view(frame).substr(0, frame.size() - 3), 5000),
             Errc::kCorruption);
  std::string flipped = frame;
  flipped[flipped.size() / 2] ^= 0x5a;
  auto r = ZstdDecompress(flipped, 5000);
  // A flipped bit either breaks the frame or changes the content; either
  // way nothing is read out of bounds (the fuzzer covers the rest).
  if (r.ok()) CHECK(r->readable().AsStringView() != in);
  std::string two = frame + frame;
  Buffer d = REQUIRE_VALUE(ZstdDecompress(two, 10000));
  CHECK(d.readable().AsStringView() == in + in);
  CHECK_ERRC(ZstdDecompress(two, 9999), Errc::kTooLarge);
}

}  // namespace
}  // namespace qcloud
