// The object store: objects cut into chunks over several disks, ranges
// across chunk boundaries, MD5 ETags and Content-MD5, de-duplication and
// instant upload down to the chunk counts, uploads cut short leaving
// nothing, garbage collected at open, bit rot reported through GET.
#include "qcloud/object/object_store.h"

#include <doctest/doctest.h>

#include <filesystem>
#include <random>
#include <string>

#include "qcloud/core/hash.h"
#include "qcloud/testing/doctest_helpers.h"
#include "qcloud/testing/mem_env.h"

namespace qcloud::object {
namespace {

struct Fixture {
  Fixture() {
    char tmpl[] = "/tmp/qcloud-objstore-XXXXXX";
    index_dir = ::mkdtemp(tmpl);
  }
  ~Fixture() { std::filesystem::remove_all(index_dir); }
  ObjectStoreOptions Options() {
    return {.disks = {"/d0", "/d1", "/d2"},
            .index_dir = index_dir,
            .env = &env,
            .chunk_bytes = 64 * 1024,
            .volume_bytes = 1 << 20,
            .clock = &clock};
  }
  std::unique_ptr<ObjectStore> Open() {
    auto s = REQUIRE_VALUE(ObjectStore::Open(Options()));
    if (!s->index().GetBucket("photos").ok()) REQUIRE_OK(s->index().CreateBucket("alice", "photos"));
    return s;
  }
  testing::MemEnv env;
  ManualClock clock;  // 2014-01-01T00:00:00Z
  std::string index_dir;
};

std::string Body(int seed, size_t size) {
  std::string s(size, '\0');
  std::mt19937 rng(static_cast<unsigned>(seed));
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

ContentId IdOf(const std::string& body) {
  ContentId c;
  const Md5Digest md5 = Md5(ByteView(body));
  const Sha256Digest sha = Sha256(ByteView(body));
  std::memcpy(c.md5, md5.data(), md5.size());
  std::memcpy(c.sha256, sha.data(), sha.size());
  c.size = body.size();
  return c;
}

std::string Get(ObjectStore& s, std::string_view key, uint64_t offset = 0,
                std::optional<uint64_t> length = std::nullopt) {
  auto r = s.Get("photos", key, offset, length);
  if (!r.ok()) return "<" + r.status().ToString() + ">";
  return r->readable().ToString();
}

TEST_CASE("object store: bodies are cut into chunks over the disks and read back by range") {
  Fixture f;
  auto s = f.Open();
  const std::string big = Body(1, 300 * 1024 + 123);  // 5 chunks of 64 KiB
  const ObjectMeta meta = REQUIRE_VALUE(s->Put("photos", "big.bin", ByteView(big), {.content_type = "application/octet-stream"}));
  CHECK(meta.size == big.size());
  CHECK(meta.chunks.size() == 5);
  CHECK(meta.etag == ToHex(AsBytes(Md5(ByteView(big)))));
  CHECK(meta.mtime_ms == 1388534400000);  // the injected clock's time
  CHECK(s->index().GetBucket("photos").value().created_ms == 1388534400000);
  std::set<uint32_t> disks;
  for (const ChunkRef& c : meta.chunks) disks.insert(c.store);
  CHECK(disks.size() == 3);  // spread over every disk
  CHECK(Get(*s, "big.bin") == big);
  for (auto [off, len] : {std::pair<uint64_t, uint64_t>{0, 1}, {65535, 2}, {65536, 65536},
                          {100000, 200000}, {big.size() - 1, 10}}) {
    INFO(off << "+" << len);
    CHECK(Get(*s, "big.bin", off, len) == big.substr(off, len));
  }
  CHECK_ERRC(s->Get("photos", "big.bin", big.size() + 1), Errc::kOutOfRange);
  CHECK_ERRC(s->Get("photos", "nothing"), Errc::kNotFound);
  // Empty objects exist too.
  REQUIRE_VALUE(s->Put("photos", "empty", ByteView()));
  CHECK(Get(*s, "empty").empty());
  // Streaming, in odd pieces.
  auto w = s->BeginPut();
  for (size_t at = 0; at < big.size(); at += 7777) {
    REQUIRE_OK(w->Write(ByteView(big).subview(at, std::min<size_t>(7777, big.size() - at))));
  }
  REQUIRE_VALUE(w->Finish("photos", "streamed", {}));
  CHECK(Get(*s, "streamed") == big);
}

TEST_CASE("object store: identical content is stored once and freed with its last object") {
  Fixture f;
  auto s = f.Open();
  const std::string body = Body(2, 200 * 1024);
  REQUIRE_VALUE(s->Put("photos", "a", ByteView(body)));
  const uint64_t chunks_one = s->Stats().chunks;
  CHECK(chunks_one == 4);
  const ObjectMeta second = REQUIRE_VALUE(s->Put("photos", "b", ByteView(body)));
  CHECK(s->Stats().chunks == chunks_one);  // the second copy's chunks went
  CHECK(Get(*s, "b") == body);
  // Instant upload: hashes and size, no bytes.
  const ObjectMeta instant = REQUIRE_VALUE(s->PutInstant("photos", "c", IdOf(body)));
  CHECK(instant.chunks == second.chunks);
  CHECK(instant.etag == second.etag);
  CHECK(Get(*s, "c", 1000, 10) == body.substr(1000, 10));
  CHECK_ERRC(s->PutInstant("photos", "d", IdOf(Body(3, 10))), Errc::kNotFound);
  REQUIRE_OK(s->Delete("photos", "a"));
  REQUIRE_OK(s->Delete("photos", "b"));
  CHECK(s->Stats().chunks == chunks_one);
  REQUIRE_OK(s->Delete("photos", "c"));
  CHECK(s->Stats().chunks == 0);
  CHECK_OK(s->Maintain().status());
  // Replacing an unshared object frees its chunks.
  REQUIRE_VALUE(s->Put("photos", "x", ByteView(Body(4, 100 * 1024))));
  REQUIRE_VALUE(s->Put("photos", "x", ByteView(Body(5, 10))));
  CHECK(s->Stats().chunks == 1);
}

TEST_CASE("object store: an upload cut short or refused leaves nothing") {
  Fixture f;
  auto s = f.Open();
  {
    auto w = s->BeginPut();
    REQUIRE_OK(w->Write(ByteView(Body(6, 300 * 1024))));
    CHECK(s->Stats().chunks == 4);  // written as they came
  }  // the client went away: no Finish
  CHECK(s->Stats().chunks == 0);
  CHECK_ERRC(s->index().GetObject("photos", "never"), Errc::kNotFound);
  // A wrong Content-MD5 (S3's BadDigest) and a missing bucket refuse the PUT whole.
  const std::string body = Body(7, 100 * 1024);
  Md5Digest wrong{};
  CHECK_ERRC(s->Put("photos", "bad", ByteView(body), {.expected_md5 = wrong}), Errc::kCorruption);
  CHECK_ERRC(s->Put("nosuch", "k", ByteView(body)), Errc::kNotFound);
  CHECK(s->Stats().chunks == 0);
  CHECK_OK(s->Put("photos", "good", ByteView(body), {.expected_md5 = Md5(ByteView(body))}).status());
}

TEST_CASE("object store: chunks a crash left unreferenced are collected at open") {
  Fixture f;
  std::string body = Body(8, 150 * 1024);
  {
    auto s = f.Open();
    REQUIRE_VALUE(s->Put("photos", "kept", ByteView(body)));
  }
  {
    // A PUT's chunks written, then the crash before the index named them.
    auto chx = REQUIRE_VALUE(ChxStore::Open({.dir = "/d1", .env = &f.env, .volume_bytes = 1 << 20}));
    for (int i = 0; i < 5; ++i) REQUIRE_VALUE(chx->Append(ByteView(Body(100 + i, 5000))));
    REQUIRE_OK(chx->Sync());
  }
  auto s = f.Open();
  CHECK(s->Stats().collected_chunks == 5);
  CHECK(s->Stats().chunks == 3);
  CHECK(Get(*s, "kept") == body);
}

TEST_CASE("object store: a chunk with bit rot fails the GET, it is never served") {
  Fixture f;
  auto s = f.Open();
  const std::string body = Body(9, 1000);
  const ObjectMeta meta = REQUIRE_VALUE(s->Put("photos", "k", ByteView(body)));
  REQUIRE(meta.chunks.size() == 1);
  const std::string vol = "/d" + std::to_string(meta.chunks[0].store) + "/vol-00000001.chx";
  {
    auto file = REQUIRE_VALUE(f.env.OpenFile(vol, OpenMode::kReadWrite));
    REQUIRE_OK(file->WriteAt(64 + 32 + 10, std::string_view("\x01")));
  }
  CHECK_ERRC(s->Get("photos", "k"), Errc::kCorruption);
}

TEST_CASE("object store: options are checked") {
  Fixture f;
  auto o = f.Options();
  o.disks.clear();
  CHECK_ERRC(ObjectStore::Open(o), Errc::kInvalidArgument);
  o = f.Options();
  o.chunk_bytes = 100;
  CHECK_ERRC(ObjectStore::Open(o), Errc::kInvalidArgument);
}

}  // namespace
}  // namespace qcloud::object
