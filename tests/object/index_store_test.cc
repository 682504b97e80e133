// COS's file and user indexes on LMDB: the stored record's codec, buckets,
// objects, S3 listing against a brute-force model and across pages, a page
// from a bucket of a million keys, concurrent PUTs to one key, and kill -9
// in the middle of replacing objects.
#include "qcloud/object/index_store.h"
#include "qcloud/object/errc.h"

#include <doctest/doctest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <map>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "qcloud/testing/doctest_helpers.h"

namespace qcloud::object {
namespace {

struct TempDir {
  TempDir() {
    char tmpl[] = "/tmp/qcloud-index-XXXXXX";
    path = ::mkdtemp(tmpl);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  std::string path;
};

ObjectMeta Meta(uint64_t version, uint64_t size = 10) {
  ObjectMeta m;
  m.size = size;
  m.etag = "v" + std::to_string(version);
  m.content_type = "image/jpeg";
  m.mtime_ms = 1388534400000 + static_cast<int64_t>(version);
  m.user_metadata = {{"version", std::to_string(version)}, {"camera", "x100"}};
  m.chunks = {{.store = 1, .chunk = ChunkId{version + 1}, .length = size / 2},
              {.store = 2, .chunk = ChunkId{version + 2}, .length = size - size / 2}};
  return m;
}

TEST_CASE("index: the object record round-trips and damaged records are refused") {
  const ObjectMeta m = Meta(7, 12345);
  const std::string bytes = EncodeObjectMeta(m);
  CHECK(REQUIRE_VALUE(DecodeObjectMeta(bytes)) == m);
  for (size_t cut = 0; cut < bytes.size(); ++cut) {
    INFO("cut at " << cut);
    CHECK_ERRC(DecodeObjectMeta(std::string_view(bytes).substr(0, cut)), qcloud::Errc::kCorruption);
  }
  CHECK_ERRC(DecodeObjectMeta(bytes + "x"), qcloud::Errc::kCorruption);
  std::string bad_version = bytes;
  bad_version[0] = 9;
  CHECK_ERRC(DecodeObjectMeta(bad_version), qcloud::Errc::kCorruption);
  ObjectMeta lying = m;
  lying.size += 1;  // the chunks no longer add up
  CHECK_ERRC(DecodeObjectMeta(EncodeObjectMeta(lying)), qcloud::Errc::kCorruption);
}

TEST_CASE("index: buckets belong to users, are listed in order, and must be empty to go") {
  TempDir dir;
  auto index = REQUIRE_VALUE(IndexStore::Open({.dir = dir.path}));
  CHECK_OK(index->CreateBucket("alice", "photos"));
  CHECK_OK(index->CreateBucket("alice", "backups"));
  CHECK_OK(index->CreateBucket("bob", "logs-2014"));
  CHECK_ERRC(index->CreateBucket("bob", "photos"), qcloud::Errc::kAlreadyExists);
  for (const std::string& bad : std::vector<std::string>{"ab", "Photos", "-photos", "photos-", "a..b",
                                                         "under_score", std::string(64, 'a')}) {
    INFO(bad);
    CHECK_ERRC(index->CreateBucket("alice", bad), qcloud::Errc::kInvalidArgument);
  }
  auto alice = REQUIRE_VALUE(index->ListBuckets("alice"));
  REQUIRE(alice.size() == 2);
  CHECK(alice[0].name == "backups");
  CHECK(alice[1].name == "photos");
  CHECK(alice[1].owner == "alice");
  CHECK(REQUIRE_VALUE(index->ListBuckets("bob")).size() == 1);
  CHECK(REQUIRE_VALUE(index->ListBuckets("carol")).empty());
  CHECK(REQUIRE_VALUE(index->GetBucket("logs-2014")).owner == "bob");

  CHECK_OK(index->PutObject("photos", "a.jpg", Meta(1)));
  CHECK_ERRC(index->DeleteBucket("photos"), qcloud::Errc::kAborted);  // S3's BucketNotEmpty
  CHECK_OK(index->DeleteObject("photos", "a.jpg"));
  CHECK_OK(index->DeleteBucket("photos"));
  CHECK_ERRC(index->GetBucket("photos"), qcloud::Errc::kNotFound);
  CHECK_ERRC(index->DeleteBucket("photos"), qcloud::Errc::kNotFound);
  CHECK(REQUIRE_VALUE(index->ListBuckets("alice")).size() == 1);
  // A bucket of the same name may come back, for someone else.
  CHECK_OK(index->CreateBucket("bob", "photos"));
}

TEST_CASE("index: objects are put, replaced, read and deleted whole") {
  TempDir dir;
  auto index = REQUIRE_VALUE(IndexStore::Open({.dir = dir.path}));
  REQUIRE_OK(index->CreateBucket("alice", "photos"));
  WriteOutcome out;
  CHECK_OK(index->PutObject("photos", "2014/a.jpg", Meta(1), &out));
  CHECK_FALSE(out.previous.has_value());
  CHECK(out.free_chunks.empty());
  CHECK(REQUIRE_VALUE(index->GetObject("photos", "2014/a.jpg")) == Meta(1));
  CHECK_OK(index->PutObject("photos", "2014/a.jpg", Meta(2), &out));
  REQUIRE(out.previous.has_value());
  CHECK(*out.previous == Meta(1));
  CHECK(out.free_chunks == Meta(1).chunks);  // not shared: the caller frees them
  CHECK(REQUIRE_VALUE(index->GetObject("photos", "2014/a.jpg")) == Meta(2));
  CHECK_OK(index->DeleteObject("photos", "2014/a.jpg", &out));
  CHECK(out.previous == Meta(2));
  CHECK(out.free_chunks == Meta(2).chunks);
  CHECK_ERRC(index->GetObject("photos", "2014/a.jpg"), qcloud::Errc::kNotFound);
  CHECK_ERRC(index->DeleteObject("photos", "2014/a.jpg"), qcloud::Errc::kNotFound);
  CHECK_ERRC(index->PutObject("nosuch", "k", Meta(1)), qcloud::Errc::kNotFound);
  CHECK_ERRC(index->PutObject("photos", std::string(1025, 'k'), Meta(1)), qcloud::Errc::kInvalidArgument);
  CHECK_OK(index->PutObject("photos", std::string(1024, 'k'), Meta(1)));
  CHECK_ERRC(index->PutObject("photos", "", Meta(1)), qcloud::Errc::kInvalidArgument);
  ObjectMeta lying = Meta(3);
  lying.size = 99;
  CHECK_ERRC(index->PutObject("photos", "x", lying), qcloud::Errc::kInvalidArgument);
  // Never writes a record it could not read back: metadata values over 8 KiB.
  ObjectMeta huge = Meta(3);
  huge.user_metadata = {{"k", std::string(9000, 'v')}};
  CHECK_ERRC(index->PutObject("photos", "x", huge), qcloud::Errc::kInvalidArgument);
  CHECK_ERRC(index->CreateUpload({.bucket = "photos", .key = "x", .owner = "alice", .user_metadata = huge.user_metadata}),
             qcloud::Errc::kInvalidArgument);
  // Keys with any bytes: NUL, "..", %00, non-UTF-8.
  for (std::string key : {std::string("a\0b", 3), std::string("../../etc/passwd"), std::string("%00"),
                          std::string("\xff\xfe")}) {
    CHECK_OK(index->PutObject("photos", key, Meta(4)));
    CHECK(REQUIRE_VALUE(index->GetObject("photos", key)) == Meta(4));
  }
  // Another bucket's key of the same name is another object.
  REQUIRE_OK(index->CreateBucket("alice", "photos2"));
  CHECK_ERRC(index->GetObject("photos2", "%00"), qcloud::Errc::kNotFound);
}

ContentId Content(uint8_t md5_byte, uint8_t sha_byte, uint64_t size) {
  ContentId c;
  std::fill(std::begin(c.md5), std::end(c.md5), md5_byte);
  std::fill(std::begin(c.sha256), std::end(c.sha256), sha_byte);
  c.size = size;
  return c;
}

ObjectMeta WithContent(uint64_t version, const ContentId& c) { return Meta(version, c.size); }

TEST_CASE("index: identical content is stored once, counted, and freed with its last object") {
  TempDir dir;
  auto index = REQUIRE_VALUE(IndexStore::Open({.dir = dir.path}));
  REQUIRE_OK(index->CreateBucket("alice", "photos"));
  REQUIRE_OK(index->CreateBucket("bob", "backup"));
  const ContentId c = Content(1, 2, 100);
  const ObjectMeta first = WithContent(10, c);  // chunks 11, 12
  WriteOutcome out;
  REQUIRE_OK(index->PutObject("photos", "a.jpg", first, c, &out));
  CHECK_FALSE(out.deduplicated);
  CHECK(out.free_chunks.empty());
  // The same bytes again, by another user: the new chunks are not needed.
  const ObjectMeta second = WithContent(20, c);  // chunks 21, 22
  REQUIRE_OK(index->PutObject("backup", "copy.jpg", second, c, &out));
  CHECK(out.deduplicated);
  CHECK(out.free_chunks == second.chunks);
  CHECK(REQUIRE_VALUE(index->GetObject("backup", "copy.jpg")).chunks == first.chunks);
  CHECK(REQUIRE_VALUE(index->ContentReferences(c)) == 2);
  // Instant upload: the hashes and size only.
  ObjectMeta instant = WithContent(30, c);
  instant.chunks.clear();
  REQUIRE_OK(index->PutObject("photos", "b.jpg", instant, c, &out));
  CHECK(out.deduplicated);
  CHECK(out.free_chunks.empty());
  CHECK(REQUIRE_VALUE(index->GetObject("photos", "b.jpg")).chunks == first.chunks);
  CHECK(REQUIRE_VALUE(index->FindContent(c)) == first.chunks);
  CHECK(REQUIRE_VALUE(index->ContentReferences(c)) == 3);
  // Unknown content cannot be uploaded instantly...
  ObjectMeta unknown = WithContent(40, Content(9, 9, 100));
  unknown.chunks.clear();
  CHECK_ERRC(index->PutObject("photos", "c.jpg", unknown, Content(9, 9, 100)), qcloud::Errc::kNotFound);
  CHECK_ERRC(index->GetObject("photos", "c.jpg"), qcloud::Errc::kNotFound);
  // ...and the same MD5 with another SHA-256 is other content.
  const ContentId collision = Content(1, 3, 100);
  REQUIRE_OK(index->PutObject("photos", "d.jpg", WithContent(50, collision), collision, &out));
  CHECK_FALSE(out.deduplicated);
  CHECK(REQUIRE_VALUE(index->ContentReferences(collision)) == 1);
  // Replacing an object by the same content changes nothing.
  REQUIRE_OK(index->PutObject("photos", "a.jpg", WithContent(60, c), c, &out));
  CHECK(out.free_chunks == WithContent(60, c).chunks);  // only the duplicates just written
  CHECK(REQUIRE_VALUE(index->ContentReferences(c)) == 3);
  // References go; the chunks are handed back with the last one.
  REQUIRE_OK(index->DeleteObject("photos", "a.jpg", &out));
  CHECK(out.free_chunks.empty());
  REQUIRE_OK(index->PutObject("photos", "b.jpg", Meta(70), &out));  // replaced by unshared bytes
  CHECK(out.free_chunks.empty());
  CHECK(REQUIRE_VALUE(index->ContentReferences(c)) == 1);
  REQUIRE_OK(index->DeleteObject("backup", "copy.jpg", &out));
  CHECK(out.free_chunks == first.chunks);
  CHECK(REQUIRE_VALUE(index->ContentReferences(c)) == 0);
  CHECK_ERRC(index->FindContent(c), qcloud::Errc::kNotFound);
  // A batch releases what it replaces too.
  std::vector<ChunkRef> freed;
  REQUIRE_OK(index->PutObjects("photos", {{"b.jpg", Meta(80)}, {"d.jpg", Meta(90)}}, &freed));
  std::vector<ChunkRef> want = Meta(70).chunks;
  const std::vector<ChunkRef> d_chunks = WithContent(50, collision).chunks;
  want.insert(want.end(), d_chunks.begin(), d_chunks.end());
  CHECK(freed == want);
  ObjectMeta bad = WithContent(1, c);
  bad.content = "short";
  CHECK_ERRC(index->PutObject("photos", "e", bad), qcloud::Errc::kInvalidArgument);
  // A content key that is not stored is not a way to make one.
  bad.content = std::string(kContentKeyBytes, 'x');
  CHECK_ERRC(index->PutObject("photos", "e", bad), qcloud::Errc::kNotFound);
  ContentId wrong_size = c;
  wrong_size.size = 99;
  CHECK_ERRC(index->PutObject("photos", "e", WithContent(1, c), wrong_size), qcloud::Errc::kInvalidArgument);
}

TEST_CASE("index: SHA-256 is asked for only when stored content has the same MD5 and size") {
  TempDir dir;
  auto index = REQUIRE_VALUE(IndexStore::Open({.dir = dir.path}));
  REQUIRE_OK(index->CreateBucket("alice", "photos"));
  ContentId lazy = Content(1, 2, 100);
  lazy.has_sha256 = false;
  WriteOutcome out;
  // Unique MD5 and size: stored without its SHA-256, listed as unhashed.
  REQUIRE_OK(index->PutObject("photos", "a", WithContent(10, lazy), lazy, &out));
  CHECK_FALSE(out.deduplicated);
  auto unhashed = REQUIRE_VALUE(index->UnhashedContents(10));
  REQUIRE(unhashed.size() == 1);
  CHECK(unhashed[0].size == 100);
  CHECK(unhashed[0].references == 1);
  CHECK_FALSE(unhashed[0].sha256.has_value());
  CHECK(unhashed[0].chunks == WithContent(10, lazy).chunks);
  CHECK(REQUIRE_VALUE(index->GetObject("photos", "a")).content == unhashed[0].key);
  // Same MD5 and size again: undecidable until both sides are hashed, and
  // nothing changes meanwhile.
  CHECK(index->PutObject("photos", "b", WithContent(20, lazy), lazy).code() == object::Errc::kContentUnhashed);
  CHECK_ERRC(index->GetObject("photos", "b"), qcloud::Errc::kNotFound);
  const ContentId hashed = Content(1, 2, 100);
  CHECK(index->PutObject("photos", "b", WithContent(20, hashed), hashed).code() ==
        object::Errc::kContentUnhashed);
  CHECK(index->FindContent(hashed).status().code() == object::Errc::kContentUnhashed);
  // Once the stored content learns its SHA-256, the write decides.
  Sha256Digest sha;
  std::memcpy(sha.data(), hashed.sha256, sha.size());
  REQUIRE_OK(index->SetContentSha256(unhashed[0].key, sha));
  CHECK(REQUIRE_VALUE(index->UnhashedContents(10)).empty());
  REQUIRE_OK(index->PutObject("photos", "b", WithContent(20, hashed), hashed, &out));
  CHECK(out.deduplicated);
  CHECK(out.free_chunks == WithContent(20, hashed).chunks);
  CHECK(REQUIRE_VALUE(index->ContentReferences(hashed)) == 2);
  // An MD5 collision: same MD5 and size, other SHA-256, other content,
  // under the next ordinal.
  const ContentId other = Content(1, 7, 100);
  REQUIRE_OK(index->PutObject("photos", "c", WithContent(30, other), other, &out));
  CHECK_FALSE(out.deduplicated);
  auto same = REQUIRE_VALUE(index->ContentsWith(hashed.md5, 100));
  REQUIRE(same.size() == 2);
  CHECK(same[0].key != same[1].key);
  CHECK(same[0].key.substr(0, 24) == same[1].key.substr(0, 24));
  CHECK(REQUIRE_VALUE(index->ContentReferences(other)) == 1);
  CHECK(REQUIRE_VALUE(index->GetObject("photos", "c")).chunks == WithContent(30, other).chunks);
  // A hashed content is not listed, a deleted unhashed one leaves the list.
  ContentId lone = Content(5, 0, 10);
  lone.has_sha256 = false;
  REQUIRE_OK(index->PutObject("photos", "d", WithContent(40, lone), lone));
  const auto listed = REQUIRE_VALUE(index->UnhashedContents(10));
  REQUIRE(listed.size() == 1);
  CHECK(REQUIRE_VALUE(index->UnhashedContents(10, listed[0].key)).empty());  // paged after it
  REQUIRE_OK(index->DeleteObject("photos", "d", &out));
  CHECK(out.free_chunks == WithContent(40, lone).chunks);
  CHECK(REQUIRE_VALUE(index->UnhashedContents(10)).empty());
  // The content record's stored form round-trips; damage is refused.
  StoredContent rec{.key = "", .size = 15, .references = 3, .chunks = WithContent(1, lone).chunks, .sha256 = sha};
  rec.size = 10;
  const std::string bytes = EncodeContentRecord(rec);
  const StoredContent back = REQUIRE_VALUE(DecodeContentRecord(bytes));
  CHECK(back.references == 3);
  CHECK(back.sha256 == sha);
  CHECK(back.chunks == rec.chunks);
  CHECK(back.size == 10);
  for (size_t cut = 0; cut < bytes.size(); ++cut) {
    CHECK_ERRC(DecodeContentRecord(std::string_view(bytes).substr(0, cut)), qcloud::Errc::kCorruption);
  }
  CHECK_ERRC(DecodeContentRecord(bytes + "x"), qcloud::Errc::kCorruption);
  // SetContentSha256 of a content that is gone does nothing.
  REQUIRE_OK(index->SetContentSha256(std::string(kContentKeyBytes, 'z'), sha));
}

// S3's listing, by brute force over a sorted key set.
ListResult ModelList(const std::set<std::string>& keys, const ListOptions& o) {
  ListResult out;
  size_t count = 0;
  std::string last_cp;
  bool skip_cp = !o.start_after.empty() && !o.delimiter.empty() && o.start_after.ends_with(o.delimiter) &&
                 o.start_after.starts_with(o.prefix) &&
                 o.start_after.find(o.delimiter, o.prefix.size()) == o.start_after.size() - o.delimiter.size();
  for (const std::string& k : keys) {
    if (!k.starts_with(o.prefix)) continue;
    if (!o.start_after.empty() && k <= o.start_after) continue;
    if (skip_cp && k.starts_with(o.start_after)) continue;
    std::string cp;
    if (!o.delimiter.empty()) {
      const size_t at = k.find(o.delimiter, o.prefix.size());
      if (at != std::string::npos) cp = k.substr(0, at + o.delimiter.size());
    }
    if (!cp.empty() && cp == last_cp) continue;
    if (count == o.max_keys) {
      out.truncated = true;
      break;
    }
    ++count;
    if (!cp.empty()) {
      out.common_prefixes.push_back(cp);
      last_cp = cp;
      out.next_start_after = cp;
    } else {
      out.objects.push_back({k, 0, "", 0});
      out.next_start_after = k;
    }
  }
  if (!out.truncated) out.next_start_after.clear();
  return out;
}

std::vector<std::string> Names(const ListResult& r) {
  std::vector<std::string> v;
  for (const auto& o : r.objects) v.push_back(o.key);
  return v;
}

TEST_CASE("index: listings equal a brute-force model, page after page") {
  TempDir dir;
  auto index = REQUIRE_VALUE(IndexStore::Open({.dir = dir.path}));
  REQUIRE_OK(index->CreateBucket("alice", "photos"));
  REQUIRE_OK(index->CreateBucket("alice", "other"));
  REQUIRE_OK(index->PutObject("other", "a/1", Meta(1)));  // must never show up
  std::mt19937 rng(11);
  std::set<std::string> keys;
  const char* parts[] = {"a", "b", "2014", "2015", "x.jpg", "y.png", "-", "/", "//", "z"};
  while (keys.size() < 600) {
    std::string k;
    const int n = 1 + static_cast<int>(rng() % 5);
    for (int i = 0; i < n; ++i) k += parts[rng() % std::size(parts)];
    keys.insert(k);
  }
  // Keys past LMDB's 511-byte key limit (S3 allows 1024), sharing long
  // prefixes, with short keys that are their prefixes.
  const std::string longp(470, 'a');
  for (int i = 0; i < 40; ++i) {
    std::string k = longp;
    const int n = 1 + static_cast<int>(rng() % 60);
    for (int j = 0; j < n; ++j) k += parts[rng() % std::size(parts)];
    if (k.size() <= 1024) keys.insert(k);
  }
  keys.insert(longp);
  keys.insert(std::string(1024, 'b'));
  keys.insert(std::string(1023, 'b') + "/");
  for (const auto& k : keys) REQUIRE_OK(index->PutObject("photos", k, Meta(1)));
  // Replacing and deleting a bundled key.
  const std::string bundled = std::string(1024, 'b');
  CHECK_OK(index->PutObject("photos", bundled, Meta(2)));
  CHECK(REQUIRE_VALUE(index->GetObject("photos", bundled)) == Meta(2));
  CHECK_OK(index->DeleteObject("photos", bundled));
  CHECK_ERRC(index->GetObject("photos", bundled), qcloud::Errc::kNotFound);
  CHECK_OK(index->PutObject("photos", bundled, Meta(1)));
  int cases = 0, mismatches = 0;
  for (const std::string& prefix : std::vector<std::string>{"", "a", "a/", "2014", "b/2015/", "zz", longp,
                                                            longp + "a", "bbbb"}) {
    for (const std::string delimiter : {"", "/", "-", "//", "4"}) {
      for (size_t max_keys : {1, 7, 1000}) {
        // Walk every page; compare each with the model from the same point.
        ListOptions o{.prefix = prefix, .delimiter = delimiter, .max_keys = max_keys};
        for (int page = 0; page < 1000; ++page) {
          const ListResult got = REQUIRE_VALUE(index->List("photos", o));
          const ListResult want = ModelList(keys, o);
          ++cases;
          if (Names(got) != Names(want) || got.common_prefixes != want.common_prefixes ||
              got.truncated != want.truncated || got.next_start_after != want.next_start_after) {
            ++mismatches;
            MESSAGE("prefix '" << prefix << "' delimiter '" << delimiter << "' max " << max_keys
                               << " page " << page);
            break;
          }
          if (!got.truncated) break;
          o.start_after = got.next_start_after;
        }
      }
    }
  }
  CHECK(cases > 130);
  CHECK(mismatches == 0);
  CHECK_ERRC(index->List("photos", {.max_keys = 0}), qcloud::Errc::kInvalidArgument);
  CHECK_ERRC(index->List("photos", {.max_keys = 1001}), qcloud::Errc::kInvalidArgument);
  CHECK_ERRC(index->List("nosuch", {}), qcloud::Errc::kNotFound);
}

TEST_CASE("index: a page from a bucket of a million keys") {
  TempDir dir;
  auto index = REQUIRE_VALUE(IndexStore::Open({.dir = dir.path}));
  REQUIRE_OK(index->CreateBucket("alice", "big"));
  // 1000 directories of 1000 files, imported a directory per transaction.
  for (int d = 0; d < 1000; ++d) {
    std::vector<std::pair<std::string, ObjectMeta>> batch;
    char key[32];
    for (int f = 0; f < 1000; ++f) {
      std::snprintf(key, sizeof key, "d%03d/f%03d", d, f);
      batch.emplace_back(key, Meta(static_cast<uint64_t>(d * 1000 + f), 1));
    }
    REQUIRE_OK(index->PutObjects("big", batch));
  }
  // From the middle, flat.
  ListResult flat = REQUIRE_VALUE(index->List("big", {.start_after = "d500/f499", .max_keys = 1000}));
  REQUIRE(flat.objects.size() == 1000);
  CHECK(flat.objects.front().key == "d500/f500");
  CHECK(flat.objects.back().key == "d501/f499");
  CHECK(flat.truncated);
  CHECK(flat.objects.front().etag == "v500500");
  // Rolled up: each directory is one seek, not 1000 keys read.
  ListResult dirs = REQUIRE_VALUE(index->List("big", {.delimiter = "/", .max_keys = 1000}));
  REQUIRE(dirs.common_prefixes.size() == 1000);
  CHECK(dirs.objects.empty());
  CHECK(dirs.common_prefixes[0] == "d000/");
  CHECK(dirs.common_prefixes[999] == "d999/");
  CHECK_FALSE(dirs.truncated);
  ListResult some = REQUIRE_VALUE(index->List("big", {.delimiter = "/", .start_after = "d997/", .max_keys = 1000}));
  CHECK(some.common_prefixes == std::vector<std::string>{"d998/", "d999/"});
  ListResult one_dir = REQUIRE_VALUE(index->List("big", {.prefix = "d123/", .delimiter = "/", .max_keys = 10}));
  CHECK(one_dir.objects.size() == 10);
  CHECK(one_dir.objects[0].key == "d123/f000");
  CHECK(one_dir.next_start_after == "d123/f009");
}

TEST_CASE("index: concurrent PUTs to one key leave exactly one of them, intact") {
  TempDir dir;
  auto index = REQUIRE_VALUE(IndexStore::Open({.dir = dir.path, .durability = Durability::kDurable}));
  REQUIRE_OK(index->CreateBucket("alice", "photos"));
  std::atomic<int> failures{0};
  std::vector<std::thread> writers;
  for (int t = 0; t < 8; ++t) {
    writers.emplace_back([&, t] {
      for (int i = 0; i < 25; ++i) {
        if (!index->PutObject("photos", "same", Meta(static_cast<uint64_t>(t * 1000 + i), 100)).ok()) ++failures;
      }
    });
  }
  for (auto& w : writers) w.join();
  CHECK(failures.load() == 0);
  const ObjectMeta got = REQUIRE_VALUE(index->GetObject("photos", "same"));
  const uint64_t v = std::stoull(got.etag.substr(1));
  CHECK(got == Meta(v, 100));  // one writer's whole record
  CHECK(v % 1000 == 24);       // the last PUT of some writer
}

TEST_CASE("index: kill -9 while replacing objects leaves each one old or new, whole") {
  TempDir dir;
  {
    auto index = REQUIRE_VALUE(IndexStore::Open({.dir = dir.path}));
    REQUIRE_OK(index->CreateBucket("alice", "photos"));
  }
  std::mt19937 rng(3);
  uint64_t seen_max = 0;
  for (int round = 0; round < 8; ++round) {
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      auto index = IndexStore::Open({.dir = dir.path});
      if (!index.ok()) ::_exit(3);
      for (uint64_t v = (static_cast<uint64_t>(round) + 1) << 32;; ++v) {
        // Five keys in turn, each record self-consistent: version in the
        // ETag, the metadata, the chunk ids and the time.
        if (!(*index)->PutObject("photos", "k" + std::to_string(v % 5), Meta(v, 1000)).ok()) ::_exit(4);
      }
    }
    ::usleep(20000 + static_cast<useconds_t>(rng() % 60000));
    REQUIRE(::kill(pid, SIGKILL) == 0);
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    REQUIRE(WIFSIGNALED(status));
    auto index = REQUIRE_VALUE(IndexStore::Open({.dir = dir.path}));
    for (int k = 0; k < 5; ++k) {
      auto got = index->GetObject("photos", "k" + std::to_string(k));
      if (!got.ok()) {
        CHECK_ERRC(got, qcloud::Errc::kNotFound);  // killed before its first PUT of this key
        continue;
      }
      const uint64_t v = std::stoull(got->etag.substr(1));
      CHECK(*got == Meta(v, 1000));
      seen_max = std::max(seen_max, v);
    }
  }
  CHECK(seen_max > 0);
}

TEST_CASE("index: options are checked") {
  CHECK_ERRC(IndexStore::Open({.dir = ""}), qcloud::Errc::kInvalidArgument);
  TempDir dir;
  CHECK_ERRC(IndexStore::Open({.dir = dir.path, .map_bytes = 1000}), qcloud::Errc::kInvalidArgument);
}

}  // namespace
}  // namespace qcloud::object
