// The CHX chunk store: round trips, volumes rolling, recovery at open (torn
// tails, damaged regions, power cuts, an interrupted compaction), bit rot
// reported and never served, compaction reclaiming space while reads go on.
#include "qcloud/object/chx_store.h"

#include <doctest/doctest.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "object/chx_format.h"
#include "qcloud/testing/doctest_helpers.h"
#include "qcloud/testing/fault_injection_env.h"
#include "qcloud/testing/mem_env.h"

namespace qcloud::object {
namespace {

constexpr const char* kDir = "/disk1/chx";

std::string Content(int i, size_t size) {
  std::string s(size, '\0');
  std::mt19937 rng(static_cast<unsigned>(i));
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

ChxOptions Small(Env& env) {
  return {.dir = kDir, .env = &env, .volume_bytes = 64 * 1024, .max_chunk_bytes = 32 * 1024};
}

std::string Get(ChxStore& s, ChunkId id) {
  auto r = s.Read(id);
  if (!r.ok()) return "<" + r.status().ToString() + ">";
  return r->readable().ToString();
}

// Rewrites `n` bytes at `offset` of a file, as a disk might.
void Scribble(Env& env, const std::string& path, uint64_t offset, std::string_view bytes) {
  auto f = REQUIRE_VALUE(env.OpenFile(path, OpenMode::kCreate));
  REQUIRE_OK(f->WriteAt(offset, bytes));
}

std::string VolumePath(uint32_t v) {
  char name[32];
  std::snprintf(name, sizeof name, "vol-%08u.chx", v);
  return JoinPath(kDir, name);
}

TEST_CASE("chx: chunks of every size round-trip, deletes answer not found") {
  testing::MemEnv env;
  auto s = REQUIRE_VALUE(ChxStore::Open({.dir = kDir, .env = &env}));
  std::vector<std::pair<ChunkId, std::string>> kept;
  for (size_t size : {0, 1, 7, 8, 31, 4096, 65536, 1 << 20}) {
    std::string data = Content(static_cast<int>(size), size);
    ChunkId id = REQUIRE_VALUE(s->Append(data));
    CHECK(id.value != 0);
    kept.emplace_back(id, std::move(data));
  }
  for (const auto& [id, data] : kept) CHECK(Get(*s, id) == data);
  // The 1 MiB chunk went to an aligned record; its padding is dead space.
  const uint64_t padding = s->Stats().dead_bytes;
  CHECK(padding < chx::kDirectAlign + chx::kRecordHeaderSize);
  CHECK_OK(s->Delete(kept[2].first));
  CHECK_ERRC(s->Read(kept[2].first), Errc::kNotFound);
  CHECK_ERRC(s->Delete(kept[2].first), Errc::kNotFound);
  CHECK_ERRC(s->Read(ChunkId{12345}), Errc::kNotFound);
  const ChxStats st = s->Stats();
  CHECK(st.chunks == kept.size() - 1);
  CHECK(st.dead_bytes == padding + chx::RecordSpan(kept[2].second.size()));
  // Recovery counts the same dead space.
  s.reset();
  s = REQUIRE_VALUE(ChxStore::Open({.dir = kDir, .env = &env}));
  CHECK(s->Stats().dead_bytes == st.dead_bytes);
  CHECK_ERRC(s->Append(std::string((64u << 20) + 1, 'x')), Errc::kTooLarge);
}

TEST_CASE("chx: volumes roll at volume_bytes and a reopen finds every chunk") {
  testing::MemEnv env;
  std::map<uint64_t, std::string> model;
  {
    auto s = REQUIRE_VALUE(ChxStore::Open(Small(env)));
    for (int i = 0; i < 400; ++i) {
      std::string data = Content(i, 100 + (i * 37) % 3000);
      model[REQUIRE_VALUE(s->Append(data)).value] = data;
    }
    CHECK(s->Stats().volumes > 10);
    REQUIRE_OK(s->Sync());
  }
  auto s = REQUIRE_VALUE(ChxStore::Open(Small(env)));
  CHECK(s->Stats().recovered_chunks == model.size());
  int wrong = 0;
  for (const auto& [id, data] : model) wrong += Get(*s, ChunkId{id}) != data;
  CHECK(wrong == 0);
  // New ids never collide with old ones.
  const ChunkId fresh = REQUIRE_VALUE(s->Append(std::string_view("after reopen")));
  CHECK(model.count(fresh.value) == 0);
  CHECK(Get(*s, fresh) == "after reopen");
}

TEST_CASE("chx: bit rot is reported and never served") {
  testing::MemEnv env;
  auto s = REQUIRE_VALUE(ChxStore::Open({.dir = kDir, .env = &env}));
  const ChunkId a = REQUIRE_VALUE(s->Append(Content(1, 1000)));
  const ChunkId b = REQUIRE_VALUE(s->Append(Content(2, 1000)));
  // One byte in the middle of a's data, behind the store's back.
  Scribble(env, VolumePath(1), chx::kVolumeHeaderSize + chx::kRecordHeaderSize + 500, "\x7f");
  auto r = s->Read(a);
  CHECK_ERRC(r, Errc::kCorruption);
  CHECK(r.status().message().find("checksum") != std::string::npos);
  CHECK(s->Stats().corrupt_reads == 1);
  CHECK(Get(*s, b) == Content(2, 1000));
}

TEST_CASE("chx: a torn tail is cut at open and the store goes on") {
  testing::MemEnv env;
  std::vector<std::pair<ChunkId, std::string>> kept;
  uint64_t end = 0;
  {
    auto s = REQUIRE_VALUE(ChxStore::Open({.dir = kDir, .env = &env}));
    for (int i = 0; i < 10; ++i) kept.emplace_back(REQUIRE_VALUE(s->Append(Content(i, 300))), Content(i, 300));
    REQUIRE_OK(s->Sync());
    end = s->Stats().disk_bytes;
  }
  // Half a record: a good header whose data never made it, then nothing.
  std::byte h[chx::kRecordHeaderSize];
  chx::EncodeRecordHeader({.id = uint64_t{1} << 32 | 99, .length = 5000, .data_sum = 1}, h);
  Scribble(env, VolumePath(1), end, std::string(reinterpret_cast<char*>(h), sizeof h) + "partial");
  auto s = REQUIRE_VALUE(ChxStore::Open({.dir = kDir, .env = &env}));
  const ChxStats st = s->Stats();
  CHECK(st.truncated_bytes == chx::kRecordHeaderSize + 7);
  CHECK(st.recovered_chunks == 10);
  CHECK(REQUIRE_VALUE(env.FileSize(VolumePath(1))) == end);
  for (const auto& [id, data] : kept) CHECK(Get(*s, id) == data);
  const ChunkId next = REQUIRE_VALUE(s->Append(std::string_view("next")));
  CHECK(Get(*s, next) == "next");
}

TEST_CASE("chx: a damaged region is skipped, the records after it survive") {
  testing::MemEnv env;
  std::vector<std::pair<ChunkId, std::string>> kept;
  {
    auto s = REQUIRE_VALUE(ChxStore::Open({.dir = kDir, .env = &env}));
    for (int i = 0; i < 10; ++i) kept.emplace_back(REQUIRE_VALUE(s->Append(Content(i, 200))), Content(i, 200));
    REQUIRE_OK(s->Sync());
  }
  // The 4th record's header is garbage now.
  const uint64_t fourth = chx::kVolumeHeaderSize + 3 * chx::RecordSpan(200);
  Scribble(env, VolumePath(1), fourth, std::string(chx::kRecordHeaderSize, '\xee'));
  auto s = REQUIRE_VALUE(ChxStore::Open({.dir = kDir, .env = &env}));
  CHECK(s->Stats().skipped_bytes == chx::RecordSpan(200));
  CHECK(s->Stats().recovered_chunks == 9);
  for (size_t i = 0; i < kept.size(); ++i) {
    if (i == 3) {
      CHECK_ERRC(s->Read(kept[i].first), Errc::kNotFound);
    } else {
      CHECK(Get(*s, kept[i].first) == kept[i].second);
    }
  }
}

TEST_CASE("chx: after a power cut what Sync covered is intact") {
  testing::MemEnv base;
  testing::FaultInjectionEnv env(base);
  std::vector<std::pair<ChunkId, std::string>> synced;
  std::vector<ChunkId> unsynced;
  {
    auto s = REQUIRE_VALUE(ChxStore::Open(Small(env)));
    for (int i = 0; i < 100; ++i) synced.emplace_back(REQUIRE_VALUE(s->Append(Content(i, 1500))), Content(i, 1500));
    REQUIRE_OK(s->Sync());
    for (int i = 100; i < 150; ++i) unsynced.push_back(REQUIRE_VALUE(s->Append(Content(i, 1500))));
    REQUIRE_OK(env.DropUnsyncedData());
  }
  REQUIRE_OK(env.DropUnsyncedData());  // the abandoned store's last writes, too
  auto s = REQUIRE_VALUE(ChxStore::Open(Small(env)));
  int wrong = 0;
  for (const auto& [id, data] : synced) wrong += Get(*s, id) != data;
  CHECK(wrong == 0);
  int found = 0;
  for (ChunkId id : unsynced) found += s->Read(id).ok();
  CHECK(found == 0);
}

TEST_CASE("chx: compaction reclaims deleted space and keeps every live chunk") {
  testing::MemEnv env;
  std::map<uint64_t, std::string> live;
  std::vector<ChunkId> gone;
  auto s = REQUIRE_VALUE(ChxStore::Open(Small(env)));
  for (int i = 0; i < 300; ++i) {
    std::string data = Content(i, 1000);
    const ChunkId id = REQUIRE_VALUE(s->Append(data));
    if (i % 4 == 0) {
      live[id.value] = data;
    } else {
      gone.push_back(id);
    }
  }
  for (ChunkId id : gone) REQUIRE_OK(s->Delete(id));
  const ChxStats before = s->Stats();
  const size_t compacted = REQUIRE_VALUE(s->Compact());
  const ChxStats after = s->Stats();
  CHECK(compacted > 0);
  CHECK(after.compactions == compacted);
  CHECK(after.disk_bytes < before.disk_bytes / 2);
  CHECK(after.dead_bytes < before.dead_bytes / 4);
  CHECK(after.chunks == live.size());
  int wrong = 0;
  for (const auto& [id, data] : live) wrong += Get(*s, ChunkId{id}) != data;
  CHECK(wrong == 0);
  for (ChunkId id : gone) CHECK_ERRC(s->Read(id), Errc::kNotFound);
  // And so after a restart.
  s.reset();
  s = REQUIRE_VALUE(ChxStore::Open(Small(env)));
  CHECK(s->Stats().recovered_chunks == live.size());
  wrong = 0;
  for (const auto& [id, data] : live) wrong += Get(*s, ChunkId{id}) != data;
  CHECK(wrong == 0);
  for (ChunkId id : gone) CHECK_ERRC(s->Read(id), Errc::kNotFound);
}

TEST_CASE("chx: a compaction cut short by a crash is finished at open") {
  testing::MemEnv env;
  std::map<uint64_t, std::string> live;
  ChunkId deleted_after_move;
  std::string old_volume;
  {
    auto s = REQUIRE_VALUE(ChxStore::Open(Small(env)));
    for (int i = 0; i < 40; ++i) {
      std::string data = Content(i, 3000);
      const ChunkId id = REQUIRE_VALUE(s->Append(data));
      if (id.volume() == 1 && i % 2 == 0) {
        REQUIRE_OK(s->Delete(id));
      } else {
        live[id.value] = data;
      }
    }
    REQUIRE_OK(s->Sync());
    // Keep volume 1 as it was before its compaction...
    auto f = REQUIRE_VALUE(env.OpenFile(VolumePath(1), OpenMode::kReadOnly));
    const uint64_t size = REQUIRE_VALUE(f->Size());
    old_volume.resize(size);
    REQUIRE(REQUIRE_VALUE(f->ReadAt(0, {reinterpret_cast<std::byte*>(old_volume.data()), size})) == size);
    REQUIRE(REQUIRE_VALUE(s->Compact()) >= 1);
    REQUIRE_FALSE(env.FileExists(VolumePath(1)));
    // ...then delete one of the chunks it moved.
    for (const auto& [id, data] : live) {
      if (ChunkId{id}.volume() == 1) {
        deleted_after_move = ChunkId{id};
        break;
      }
    }
    REQUIRE(deleted_after_move.value != 0);
    REQUIRE_OK(s->Delete(deleted_after_move));
    live.erase(deleted_after_move.value);
    REQUIRE_OK(s->Sync());
  }
  // The crash: volume 1 is still there, as if its removal never happened.
  Scribble(env, VolumePath(1), 0, old_volume);
  for (int round = 0; round < 2; ++round) {
    auto s = REQUIRE_VALUE(ChxStore::Open(Small(env)));
    CHECK_FALSE(env.FileExists(VolumePath(1)));  // finished at open
    CHECK_ERRC(s->Read(deleted_after_move), Errc::kNotFound);
    int wrong = 0;
    for (const auto& [id, data] : live) wrong += Get(*s, ChunkId{id}) != data;
    CHECK(wrong == 0);
    CHECK(s->Stats().chunks == live.size());
  }
}

TEST_CASE("chx: reads go on while appends, deletes and compaction run") {
  testing::MemEnv env;
  auto s = REQUIRE_VALUE(ChxStore::Open(Small(env)));
  std::vector<std::pair<ChunkId, std::string>> stable;
  for (int i = 0; i < 200; ++i) stable.emplace_back(REQUIRE_VALUE(s->Append(Content(i, 700))), Content(i, 700));
  std::atomic<bool> done{false};
  std::atomic<int> bad_reads{0}, reads{0}, writer_errors{0};
  std::thread writer([&] {
    std::mt19937 rng(3);
    std::vector<ChunkId> mine;
    for (int i = 0; i < 2000; ++i) {
      auto id = s->Append(Content(1000 + i, 500 + rng() % 1500));
      if (!id.ok()) ++writer_errors;
      if (id.ok()) mine.push_back(*id);
      if (mine.size() > 50) {
        if (!s->Delete(mine.front()).ok()) ++writer_errors;
        mine.erase(mine.begin());
      }
      if (i % 200 == 0 && !s->Compact().ok()) ++writer_errors;
    }
    done = true;
  });
  std::mt19937 rng(5);
  while (!done.load()) {
    const auto& [id, data] = stable[rng() % stable.size()];
    auto r = s->Read(id);
    ++reads;
    if (!r.ok() || r->readable().AsStringView() != data) ++bad_reads;
  }
  writer.join();
  CHECK(writer_errors.load() == 0);
  CHECK(bad_reads.load() == 0);
  CHECK(reads.load() > 0);
  CHECK(s->Stats().compactions > 0);
}

TEST_CASE("chx: large chunks go in 4 KiB-aligned records between small ones, across reopen and compaction") {
  auto check_store = [](Env& env, const std::string& dir) {
    ChxOptions o{.dir = dir, .env = &env, .volume_bytes = 64 * 1024, .max_chunk_bytes = 32 * 1024,
                 .direct_io_min = 8192};
    std::vector<std::pair<ChunkId, std::string>> kept;
    {
      auto s = REQUIRE_VALUE(ChxStore::Open(o));
      // Small and large chunks interleaved, so that the large ones need padding.
      for (int i = 0; i < 24; ++i) {
        const size_t size = i % 3 == 0 ? 8192 + static_cast<size_t>(i) * 1000 : 100 + static_cast<size_t>(i) * 37;
        std::string data = Content(500 + i, size);
        kept.emplace_back(REQUIRE_VALUE(s->Append(ByteView(data))), data);
      }
      for (const auto& [id, data] : kept) CHECK(Get(*s, id) == data);
      REQUIRE_OK(s->Sync());
    }
    auto s = REQUIRE_VALUE(ChxStore::Open(o));
    CHECK(s->Stats().skipped_bytes == 0);   // padding is a record, not damage
    CHECK(s->Stats().truncated_bytes == 0);
    CHECK(s->Stats().chunks == kept.size());
    for (const auto& [id, data] : kept) CHECK(Get(*s, id) == data);
    // Delete most, compact: the aligned records move whole and still read.
    for (size_t i = 0; i < kept.size(); ++i) {
      if (i % 4 != 0) REQUIRE_OK(s->Delete(kept[i].first));
    }
    CHECK(REQUIRE_VALUE(s->Compact()) >= 1);
    for (size_t i = 0; i < kept.size(); i += 4) CHECK(Get(*s, kept[i].first) == kept[i].second);
    s.reset();
    s = REQUIRE_VALUE(ChxStore::Open(o));
    CHECK(s->Stats().skipped_bytes == 0);
    for (size_t i = 0; i < kept.size(); i += 4) CHECK(Get(*s, kept[i].first) == kept[i].second);
  };
  SUBCASE("in memory") {
    testing::MemEnv env;
    check_store(env, kDir);
  }
  SUBCASE("on a real file system with O_DIRECT") {
    char tmpl[] = "/var/tmp/qcloud-chx-direct-XXXXXX";
    const std::string dir = ::mkdtemp(tmpl);
    auto env = REQUIRE_VALUE(OpenPosixEnv());
    check_store(*env, dir + "/chx");
    std::filesystem::remove_all(dir);
  }
}

TEST_CASE("chx: a large record torn by a crash is cut at open") {
  testing::MemEnv env;
  ChxOptions o{.dir = kDir, .env = &env, .max_chunk_bytes = 256 * 1024, .direct_io_min = 8192};
  const std::string small = Content(1, 100), large = Content(2, 50000);
  ChunkId a, b;
  {
    auto s = REQUIRE_VALUE(ChxStore::Open(o));
    a = REQUIRE_VALUE(s->Append(ByteView(small)));
    b = REQUIRE_VALUE(s->Append(ByteView(large)));
  }
  {
    // The crash: only part of the large record reached the disk.
    auto f = REQUIRE_VALUE(env.OpenFile(VolumePath(1), OpenMode::kReadWrite));
    const uint64_t size = REQUIRE_VALUE(f->Size());
    REQUIRE_OK(f->Truncate(size - 20000));
  }
  auto s = REQUIRE_VALUE(ChxStore::Open(o));
  CHECK(Get(*s, a) == small);
  CHECK(s->Read(b).status() == Errc::kNotFound);
  CHECK(s->Stats().truncated_bytes > 0);
  // And the store goes on, aligned again.
  const ChunkId c = REQUIRE_VALUE(s->Append(ByteView(large)));
  CHECK(Get(*s, c) == large);
}

TEST_CASE("chx: options and damaged volume headers are refused") {
  testing::MemEnv env;
  CHECK_ERRC(ChxStore::Open({.dir = "", .env = &env}), Errc::kInvalidArgument);
  CHECK_ERRC(ChxStore::Open({.dir = kDir, .env = &env, .volume_bytes = 1000}), Errc::kInvalidArgument);
  CHECK_ERRC(ChxStore::Open({.dir = kDir, .env = &env, .max_chunk_bytes = 300u << 20}),
             Errc::kInvalidArgument);
  CHECK_ERRC(ChxStore::Open({.dir = kDir, .env = &env, .compact_dead_ratio = 0}),
             Errc::kInvalidArgument);
  {
    auto s = REQUIRE_VALUE(ChxStore::Open({.dir = kDir, .env = &env}));
    REQUIRE_VALUE(s->Append(std::string_view("x")));
  }
  Scribble(env, VolumePath(1), 9, "\x09");  // the format version
  CHECK_ERRC(ChxStore::Open({.dir = kDir, .env = &env}), Errc::kCorruption);
}

}  // namespace
}  // namespace qcloud::object
