// The object store: objects cut into chunks over several disks, ranges
// across chunk boundaries, MD5 ETags and Content-MD5, de-duplication and
// instant upload down to the chunk counts, uploads cut short leaving
// nothing, garbage collected at open, bit rot reported through GET.
#include "qcloud/object/object_store.h"

#include <doctest/doctest.h>

#include <filesystem>
#include <random>
#include <thread>
#include <string>

#include "qcloud/core/hash.h"
#include "qcloud/object/errc.h"
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
  CHECK_ERRC(s->Get("photos", "big.bin", big.size() + 1), qcloud::Errc::kOutOfRange);
  CHECK_ERRC(s->Get("photos", "nothing"), qcloud::Errc::kNotFound);
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
  // What Put returns is what the index holds (it is not read back).
  CHECK(second == REQUIRE_VALUE(s->index().GetObject("photos", "b")));
  const ObjectMeta unique = REQUIRE_VALUE(s->Put("photos", "u", ByteView(Body(77, 90 * 1024))));
  CHECK(unique == REQUIRE_VALUE(s->index().GetObject("photos", "u")));
  REQUIRE_OK(s->Delete("photos", "u"));
  CHECK(Get(*s, "b") == body);
  // Instant upload: hashes and size, no bytes.
  const ObjectMeta instant = REQUIRE_VALUE(s->PutInstant("photos", "c", IdOf(body)));
  CHECK(instant == REQUIRE_VALUE(s->index().GetObject("photos", "c")));
  CHECK(instant.chunks == second.chunks);
  CHECK(instant.etag == second.etag);
  CHECK(Get(*s, "c", 1000, 10) == body.substr(1000, 10));
  CHECK_ERRC(s->PutInstant("photos", "d", IdOf(Body(3, 10))), qcloud::Errc::kNotFound);
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

TEST_CASE("object store: SHA-256 is computed from the chunks only when de-duplication needs it") {
  Fixture f;
  auto s = f.Open();
  const std::string body = Body(12, 200 * 1024);
  REQUIRE_VALUE(s->Put("photos", "a", ByteView(body)));
  // Unique MD5 and size: stored with MD5 only.
  auto unhashed = REQUIRE_VALUE(s->index().UnhashedContents(10));
  REQUIRE(unhashed.size() == 1);
  CHECK(unhashed[0].size == body.size());
  // An instant upload's claim makes the store hash the stored content.
  REQUIRE_VALUE(s->PutInstant("photos", "b", IdOf(body)));
  CHECK(REQUIRE_VALUE(s->index().UnhashedContents(10)).empty());
  CHECK(REQUIRE_VALUE(s->index().ContentReferences(IdOf(body))) == 2);
  // A claim with the right MD5 and size but another SHA-256 is refused.
  ContentId forged = IdOf(body);
  forged.sha256[0] ^= 1;
  CHECK_ERRC(s->PutInstant("photos", "c", forged), qcloud::Errc::kNotFound);
  // A PUT of the same bytes: MD5 and size match, so its own SHA-256 is
  // read back from its chunks, and the duplicate chunks go.
  const uint64_t chunks = s->Stats().chunks;
  const ObjectMeta again = REQUIRE_VALUE(s->Put("photos", "d", ByteView(body)));
  CHECK(s->Stats().chunks == chunks);
  CHECK(again.content == REQUIRE_VALUE(s->index().GetObject("photos", "a")).content);
  CHECK(REQUIRE_VALUE(s->index().ContentReferences(IdOf(body))) == 3);
  // Two unhashed duplicates: the second PUT hashes the first.
  const std::string other = Body(13, 70 * 1024);
  REQUIRE_VALUE(s->Put("photos", "e", ByteView(other)));
  REQUIRE_VALUE(s->Put("photos", "f", ByteView(other)));
  CHECK(REQUIRE_VALUE(s->index().ContentReferences(IdOf(other))) == 2);
  // A small object (all in one chunk, in memory at Finish) is hashed at
  // once; the background hasher works through what is left.
  REQUIRE_VALUE(s->Put("photos", "g", ByteView(Body(14, 10))));
  CHECK(REQUIRE_VALUE(s->index().UnhashedContents(10)).empty());
  REQUIRE_VALUE(s->Put("photos", "h", ByteView(Body(15, 100 * 1024))));
  REQUIRE_VALUE(s->Put("photos", "i", ByteView(Body(16, 300 * 1024))));
  CHECK(REQUIRE_VALUE(s->index().UnhashedContents(10)).size() == 2);
  CHECK(REQUIRE_VALUE(s->HashContents(1)) == 1);  // stops after the budget
  CHECK(REQUIRE_VALUE(s->HashContents(UINT64_MAX)) == 1);
  CHECK(REQUIRE_VALUE(s->index().UnhashedContents(10)).empty());
  CHECK(REQUIRE_VALUE(s->index().ContentReferences(IdOf(Body(15, 100 * 1024)))) == 1);
}

// A published MD5 collision (Wang and Yu, 2004): two 128-byte messages,
// one MD5 (79054025255fb1a26e4bc422aef54eb4).
std::string Unhex(std::string_view hex) {
  std::string out;
  return FromHex(hex, &out) ? out : std::string();
}
const std::string kCollisionA = Unhex(
    "d131dd02c5e6eec4693d9a0698aff95c2fcab58712467eab4004583eb8fb7f89"
    "55ad340609f4b30283e488832571415a085125e8f7cdc99fd91dbdf280373c5b"
    "d8823e3156348f5bae6dacd436c919c6dd53e2b487da03fd02396306d248cda0"
    "e99f33420f577ee8ce54b67080a80d1ec69821bcb6a8839396f9652b6ff72a70");
const std::string kCollisionB = Unhex(
    "d131dd02c5e6eec4693d9a0698aff95c2fcab50712467eab4004583eb8fb7f89"
    "55ad340609f4b30283e4888325f1415a085125e8f7cdc99fd91dbd7280373c5b"
    "d8823e3156348f5bae6dacd436c919c6dd53e23487da03fd02396306d248cda0"
    "e99f33420f577ee8ce54b67080280d1ec69821bcb6a8839396f965ab6ff72a70");

TEST_CASE("object store: two contents with one MD5 stay two") {
  REQUIRE(kCollisionA.size() == 128);
  REQUIRE(kCollisionA != kCollisionB);
  REQUIRE(Md5(ByteView(kCollisionA)) == Md5(ByteView(kCollisionB)));
  Fixture f;
  auto s = f.Open();
  const ObjectMeta a = REQUIRE_VALUE(s->Put("photos", "a", ByteView(kCollisionA)));
  const ObjectMeta b = REQUIRE_VALUE(s->Put("photos", "b", ByteView(kCollisionB)));
  CHECK(a.etag == b.etag);  // S3's ETag is the MD5: the same
  CHECK(a.content != b.content);
  CHECK(a.chunks != b.chunks);
  CHECK(Get(*s, "a") == kCollisionA);
  CHECK(Get(*s, "b") == kCollisionB);
  // Each instant-upload claim finds its own bytes, a third PUT of either
  // shares the right one.
  const ObjectMeta ia = REQUIRE_VALUE(s->PutInstant("photos", "ia", IdOf(kCollisionA)));
  const ObjectMeta ib = REQUIRE_VALUE(s->PutInstant("photos", "ib", IdOf(kCollisionB)));
  CHECK(ia.content == a.content);
  CHECK(ib.content == b.content);
  CHECK(Get(*s, "ib") == kCollisionB);
  const ObjectMeta b2 = REQUIRE_VALUE(s->Put("photos", "b2", ByteView(kCollisionB)));
  CHECK(b2.content == b.content);
  CHECK(REQUIRE_VALUE(s->index().ContentReferences(IdOf(kCollisionA))) == 2);
  CHECK(REQUIRE_VALUE(s->index().ContentReferences(IdOf(kCollisionB))) == 3);
  // Deleting one content's objects leaves the other's bytes alone.
  for (const char* k : {"a", "ia"}) REQUIRE_OK(s->Delete("photos", k));
  CHECK(REQUIRE_VALUE(s->index().ContentReferences(IdOf(kCollisionA))) == 0);
  CHECK(Get(*s, "b2") == kCollisionB);
}

TEST_CASE("object store: large PUTs on one thread share MD5 and keep their own ETags") {
  Fixture f;
  ObjectStoreOptions o = f.Options();
  o.chunk_bytes = 1 << 20;  // batches of 128 KiB are hashed before a chunk fills
  o.volume_bytes = 16 << 20;
  auto s = REQUIRE_VALUE(ObjectStore::Open(o));
  REQUIRE_OK(s->index().CreateBucket("alice", "photos"));
  std::mt19937 rng(5);
  constexpr int kWriters = 3;
  std::vector<std::string> bodies;
  std::vector<std::unique_ptr<ObjectWriter>> writers;
  std::vector<size_t> sent(kWriters, 0);
  for (int i = 0; i < kWriters; ++i) {
    bodies.push_back(Body(60 + i, (3 << 20) + 1000 * static_cast<size_t>(i) + 7));
    writers.push_back(s->BeginPut());
  }
  // Interleaved pieces of 1..100 KiB; writer 0 is finished on another
  // thread half-way through the others.
  bool finished0 = false;
  for (bool more = true; more;) {
    more = false;
    for (int i = 0; i < kWriters; ++i) {
      const size_t n = std::min<size_t>(bodies[i].size() - sent[i], 1 + rng() % (100 * 1024));
      if (n == 0) continue;
      more = true;
      REQUIRE_OK(writers[i]->Write(ByteView(std::string_view(bodies[i]).substr(sent[i], n))));
      sent[i] += n;
    }
    if (!finished0 && sent[0] == bodies[0].size()) {
      finished0 = true;
      Result<ObjectMeta> meta = Status(qcloud::Errc::kAborted, "not run");
      std::thread t([&] { meta = writers[0]->Finish("photos", "w0", {}); });
      t.join();
      REQUIRE(meta.ok());
      CHECK(meta->etag == ToHex(AsBytes(Md5(ByteView(bodies[0])))));
    }
  }
  for (int i = 1; i < kWriters; ++i) {
    const ObjectMeta meta = REQUIRE_VALUE(writers[i]->Finish("photos", "w" + std::to_string(i), {}));
    CHECK(meta.etag == ToHex(AsBytes(Md5(ByteView(bodies[i])))));
  }
  for (int i = 0; i < kWriters; ++i) CHECK(Get(*s, "w" + std::to_string(i)) == bodies[i]);
}

TEST_CASE("object store: an upload cut short or refused leaves nothing") {
  Fixture f;
  auto s = f.Open();
  {
    auto w = s->BeginPut();
    REQUIRE_OK(w->Write(ByteView(Body(6, 300 * 1024))));
    // Written as they came: the last full chunk may still be on its way.
    CHECK(s->Stats().chunks >= 3);
  }  // the client went away: no Finish
  CHECK(s->Stats().chunks == 0);
  CHECK_ERRC(s->index().GetObject("photos", "never"), qcloud::Errc::kNotFound);
  // A wrong Content-MD5 (S3's BadDigest) and a missing bucket refuse the PUT whole.
  const std::string body = Body(7, 100 * 1024);
  Md5Digest wrong{};
  CHECK_ERRC(s->Put("photos", "bad", ByteView(body), {.expected_md5 = wrong}), qcloud::Errc::kCorruption);
  CHECK_ERRC(s->Put("nosuch", "k", ByteView(body)), qcloud::Errc::kNotFound);
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
  CHECK_ERRC(s->Get("photos", "k"), qcloud::Errc::kCorruption);
}

TEST_CASE("object store: a damaged stored content matches nothing and blocks no PUT") {
  Fixture f;
  auto s = f.Open();
  // 100 KiB: two chunks, hashed lazily. Then its first chunk rots.
  const std::string body = Body(30, 100 * 1024);
  const ObjectMeta meta = REQUIRE_VALUE(s->Put("photos", "k", ByteView(body)));
  REQUIRE(REQUIRE_VALUE(s->index().UnhashedContents(10)).size() == 1);
  const std::string vol = "/d" + std::to_string(meta.chunks[0].store) + "/vol-00000001.chx";
  {
    auto file = REQUIRE_VALUE(f.env.OpenFile(vol, OpenMode::kReadWrite));
    REQUIRE_OK(file->WriteAt(64 + 32 + 10, std::string_view("\x01")));
  }
  // The background hasher skips it and hashes the others, before or after
  // it in key order.
  for (int i = 0; i < 3; ++i) REQUIRE_VALUE(s->Put("photos", "o" + std::to_string(i), ByteView(Body(40 + i, 70 * 1024))));
  CHECK(REQUIRE_VALUE(s->HashContents(UINT64_MAX)) == 3);
  CHECK(REQUIRE_VALUE(s->index().UnhashedContents(10)).size() == 1);  // the damaged one
  // The same bytes again: the stored content cannot be hashed, so the new
  // object keeps its own chunks, whole and readable.
  const ObjectMeta again = REQUIRE_VALUE(s->Put("photos", "k2", ByteView(body)));
  CHECK(again.chunks != meta.chunks);
  CHECK(Get(*s, "k2") == body);
  CHECK_ERRC(s->Get("photos", "k"), qcloud::Errc::kCorruption);
}

TEST_CASE("object store: multipart parts become one object whole with S3's ETag") {
  Fixture f;
  auto s = f.Open();
  const std::string p1 = Body(20, 100 * 1024), p2 = Body(21, 70 * 1024), p3 = Body(22, 1000);
  const std::string id = REQUIRE_VALUE(s->CreateUpload("photos", "big", "alice", {.content_type = "video/mp4"}));
  CHECK(id.size() == 32);
  auto put_part = [&](uint32_t n, const std::string& body) {
    auto w = s->BeginPut();
    REQUIRE_OK(w->Write(ByteView(body)));
    return REQUIRE_VALUE(w->FinishPart(id, n));
  };
  const PartInfo a = put_part(1, p1);
  put_part(2, Body(23, 5000));  // replaced below: its chunk is freed
  const PartInfo b = put_part(2, p2);
  const PartInfo c = put_part(3, p3);
  put_part(4, Body(24, 3000));  // uploaded, left out of the completion: freed
  CHECK(a.etag == ToHex(AsBytes(Md5(ByteView(p1)))));
  const ListPartsResult listed = REQUIRE_VALUE(s->index().ListParts(id, 0, 2));
  REQUIRE(listed.parts.size() == 2);
  CHECK(listed.truncated);
  CHECK(listed.next_marker == 2);
  CHECK(REQUIRE_VALUE(s->index().ListParts(id, 2, 10)).parts.size() == 2);
  const ListUploadsResult uploads = REQUIRE_VALUE(s->index().ListUploads("photos", {}));
  REQUIRE(uploads.uploads.size() == 1);
  CHECK(uploads.uploads[0].key == "big");
  // Not yet visible; S3's refusals.
  CHECK_ERRC(s->index().GetObject("photos", "big"), qcloud::Errc::kNotFound);
  CHECK_ERRC(s->CompleteUpload(id, {{2, b.etag}, {1, a.etag}}, 50 * 1024), object::Errc::kInvalidPartOrder);
  CHECK_ERRC(s->CompleteUpload(id, {{1, a.etag}, {2, a.etag}}, 50 * 1024), object::Errc::kInvalidPart);
  CHECK_ERRC(s->CompleteUpload(id, {{1, a.etag}, {5, a.etag}}, 50 * 1024), object::Errc::kInvalidPart);
  CHECK_ERRC(s->CompleteUpload(id, {{1, a.etag}, {2, b.etag}, {3, c.etag}}), object::Errc::kEntityTooSmall);
  const ObjectMeta meta = REQUIRE_VALUE(
      s->CompleteUpload(id, {{1, '"' + a.etag + '"'}, {2, b.etag}, {3, c.etag}}, 50 * 1024));
  std::string digests;
  for (const PartInfo* p : {&a, &b, &c}) {
    std::string raw;
    REQUIRE(FromHex(p->etag, &raw));
    digests += raw;
  }
  CHECK(meta.etag == ToHex(AsBytes(Md5(ByteView(digests)))) + "-3");
  CHECK(meta.content_type == "video/mp4");
  CHECK(Get(*s, "big") == p1 + p2 + p3);
  CHECK(Get(*s, "big", 100 * 1024 - 5, 10) == (p1 + p2).substr(100 * 1024 - 5, 10));
  CHECK_ERRC(s->index().GetUpload(id), object::Errc::kNoSuchUpload);
  CHECK_ERRC(s->CompleteUpload(id, {{1, a.etag}}, 0), object::Errc::kNoSuchUpload);
  CHECK(REQUIRE_VALUE(s->index().ListUploads("photos", {})).uploads.empty());
  // Only the completed object's chunks remain: 2 + 2 + 1.
  CHECK(s->Stats().chunks == 5);
  // Survives a restart: nothing collected.
  s.reset();
  s = f.Open();
  CHECK(s->Stats().collected_chunks == 0);
  CHECK(Get(*s, "big") == p1 + p2 + p3);
  REQUIRE_OK(s->Delete("photos", "big"));
  CHECK(s->Stats().chunks == 0);
}

TEST_CASE("object store: aborted uploads and deleted buckets free their parts") {
  Fixture f;
  auto s = f.Open();
  const std::string id = REQUIRE_VALUE(s->CreateUpload("photos", "k", "alice"));
  auto w = s->BeginPut();
  REQUIRE_OK(w->Write(ByteView(Body(30, 100 * 1024))));
  REQUIRE_VALUE(w->FinishPart(id, 1));
  CHECK(s->Stats().chunks == 2);
  // Parts are referenced: a restart keeps them.
  s.reset();
  s = f.Open();
  CHECK(s->Stats().chunks == 2);
  REQUIRE_OK(s->AbortUpload(id));
  CHECK(s->Stats().chunks == 0);
  CHECK_ERRC(s->AbortUpload(id), object::Errc::kNoSuchUpload);
  auto w2 = s->BeginPut();
  REQUIRE_OK(w2->Write(ByteView(Body(31, 10))));
  CHECK_ERRC(w2->FinishPart(id, 1), object::Errc::kNoSuchUpload);
  CHECK(s->Stats().chunks == 0);
  const std::string id2 = REQUIRE_VALUE(s->CreateUpload("photos", "k", "alice"));
  auto w3 = s->BeginPut();
  REQUIRE_OK(w3->Write(ByteView(Body(32, 10))));
  CHECK_ERRC(w3->FinishPart(id2, 10001), qcloud::Errc::kInvalidArgument);
  auto w4 = s->BeginPut();
  REQUIRE_OK(w4->Write(ByteView(Body(32, 10))));
  REQUIRE_VALUE(w4->FinishPart(id2, 7));
  CHECK(s->Stats().chunks == 1);
  REQUIRE_OK(s->DeleteBucket("photos"));
  CHECK(s->Stats().chunks == 0);
  CHECK_ERRC(s->index().GetUpload(id2), object::Errc::kNoSuchUpload);
}

TEST_CASE("object store: a copy shares the content and keeps or replaces the metadata") {
  Fixture f;
  auto s = f.Open();
  const std::string body = Body(40, 150 * 1024);
  REQUIRE_VALUE(s->Put("photos", "src", ByteView(body),
                       {.content_type = "text/plain", .user_metadata = {{"a", "1"}}}));
  const uint64_t chunks = s->Stats().chunks;
  const ObjectMeta same = REQUIRE_VALUE(s->Copy("photos", "src", "photos", "dst"));
  CHECK(same.content_type == "text/plain");
  CHECK(same.user_metadata == std::vector<std::pair<std::string, std::string>>{{"a", "1"}});
  PutOptions replaced{.content_type = "image/png", .user_metadata = {{"b", "2"}}};
  const ObjectMeta other = REQUIRE_VALUE(s->Copy("photos", "src", "photos", "dst2", &replaced));
  CHECK(other.content_type == "image/png");
  // In place with new metadata (S3's way to change metadata).
  REQUIRE_VALUE(s->Copy("photos", "src", "photos", "src", &replaced));
  CHECK(REQUIRE_VALUE(s->index().GetObject("photos", "src")).content_type == "image/png");
  CHECK(s->Stats().chunks == chunks);
  CHECK(Get(*s, "dst2") == body);
  CHECK(REQUIRE_VALUE(s->HashContents(UINT64_MAX)) == 1);
  CHECK(REQUIRE_VALUE(s->index().ContentReferences(IdOf(body))) == 3);
  CHECK_ERRC(s->Copy("photos", "nope", "photos", "x"), qcloud::Errc::kNotFound);
  CHECK_ERRC(s->Copy("photos", "src", "nobucket", "x"), qcloud::Errc::kNotFound);
  for (const char* k : {"src", "dst", "dst2"}) REQUIRE_OK(s->Delete("photos", k));
  CHECK(s->Stats().chunks == 0);
  // A multipart object is copied by reference too.
  const std::string id = REQUIRE_VALUE(s->CreateUpload("photos", "mp", "alice"));
  auto w = s->BeginPut();
  REQUIRE_OK(w->Write(ByteView(body)));
  const PartInfo p = REQUIRE_VALUE(w->FinishPart(id, 1));
  REQUIRE_VALUE(s->CompleteUpload(id, {{1, p.etag}}));
  REQUIRE_VALUE(s->Copy("photos", "mp", "photos", "mp2"));
  REQUIRE_OK(s->Delete("photos", "mp"));
  CHECK(Get(*s, "mp2") == body);
  REQUIRE_OK(s->Delete("photos", "mp2"));
  CHECK(s->Stats().chunks == 0);
}

TEST_CASE("object store: options are checked") {
  Fixture f;
  auto o = f.Options();
  o.disks.clear();
  CHECK_ERRC(ObjectStore::Open(o), qcloud::Errc::kInvalidArgument);
  o = f.Options();
  o.chunk_bytes = 100;
  CHECK_ERRC(ObjectStore::Open(o), qcloud::Errc::kInvalidArgument);
}

}  // namespace
}  // namespace qcloud::object
