// The volume store against a model: a byte array per volume that every
// operation is applied to as well, then the store read back and compared;
// across reopen, simulated power cuts, snapshots, clones and rollbacks.

#include "qcloud/block/store.h"

#include <doctest/doctest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>
#include <thread>
#include <vector>

#include "block/device.h"
#include "qcloud/testing/doctest_helpers.h"
#include "qcloud/testing/fault_injection_env.h"

namespace qcloud::block {
namespace {

using testing::TempDir;
using Bytes = std::vector<std::byte>;

constexpr uint64_t kMiB = uint64_t{1} << 20;

Bytes Pattern(size_t n, uint32_t seed) {
  Bytes b(n);
  std::mt19937 rng(seed);
  for (auto& x : b) x = static_cast<std::byte>(rng());
  return b;
}

ByteView V(const Bytes& b) { return {b.data(), b.size()}; }

Bytes ReadAll(Volume& v, uint64_t offset, size_t n) {
  Bytes b(n, std::byte{0x5a});
  REQUIRE_OK(v.Read(offset, b));
  return b;
}

std::unique_ptr<Store> OpenStore(const std::string& dir, Env* env = nullptr, uint64_t capacity = 0) {
  auto s = Store::Open({.data_dir = dir, .capacity_bytes = capacity, .env = env});
  REQUIRE_OK(s);
  return std::move(s).value();
}

// Applies random writes, trims and zeroes to both the volume and `model`.
void RandomOps(Volume& v, Bytes& model, uint32_t seed, int count) {
  std::mt19937_64 rng(seed);
  for (int i = 0; i < count; ++i) {
    const uint64_t len = 1 + rng() % (3 * 4096 + 700);
    const uint64_t off = rng() % (model.size() - len);
    switch (rng() % 6) {
      case 0: {
        REQUIRE_OK(v.Trim(off, len, false));
        std::fill(model.begin() + off, model.begin() + off + len, std::byte{0});
        break;
      }
      case 1: {
        REQUIRE_OK(v.WriteZeroes(off, len, false, rng() % 2 == 0));
        std::fill(model.begin() + off, model.begin() + off + len, std::byte{0});
        break;
      }
      default: {
        const Bytes data = Pattern(len, static_cast<uint32_t>(rng()));
        REQUIRE_OK(v.Write(off, V(data), false));
        std::copy(data.begin(), data.end(), model.begin() + off);
      }
    }
  }
}

TEST_CASE("block store new volumes read as zeros and keep aligned and unaligned writes") {
  TempDir dir("qcloud-block");
  auto store = OpenStore(dir.path);
  REQUIRE_OK(store->CreateVolume("v1", 8 * kMiB));
  CHECK(store->CreateVolume("v1", kMiB).code() == Errc::kAlreadyExists);
  CHECK(store->CreateVolume("bad/name", kMiB).code() == Errc::kInvalidArgument);
  CHECK(store->CreateVolume("zero", 0).code() == Errc::kInvalidArgument);
  // One process (one Store) at a time.
  CHECK(Store::Open({.data_dir = dir.path}).status().code() == Errc::kUnavailable);
  auto v = store->OpenVolume("v1").value();
  CHECK(v->size() == 8 * kMiB);
  CHECK(ReadAll(*v, 0, 64 * 1024) == Bytes(64 * 1024));
  CHECK(store->stats().extents_allocated == 0);

  Bytes model(8 * kMiB);
  RandomOps(*v, model, 1, 400);
  CHECK(ReadAll(*v, 0, model.size()) == model);
  // Reads that start and end anywhere.
  for (uint64_t off : {uint64_t{1}, uint64_t{4095}, kMiB - 3, 3 * kMiB + 17}) {
    const Bytes got = ReadAll(*v, off, 9000);
    CHECK(std::equal(got.begin(), got.end(), model.begin() + off));
  }
  // Past the end.
  Bytes one(1);
  CHECK(v->Read(8 * kMiB, one).code() == Errc::kOutOfRange);
  CHECK(v->Write(8 * kMiB - 1, V(Bytes(2)), false).code() == Errc::kOutOfRange);
  CHECK(v->Trim(UINT64_MAX - 1, 4, false).code() == Errc::kOutOfRange);
}

TEST_CASE("block store flushed writes survive reopen and trims free extents") {
  TempDir dir("qcloud-block");
  Bytes model(6 * kMiB);
  {
    auto store = OpenStore(dir.path);
    REQUIRE_OK(store->CreateVolume("data", model.size()));
    auto v = store->OpenVolume("data").value();
    RandomOps(*v, model, 7, 300);
    REQUIRE_OK(v->Flush());
  }
  auto store = OpenStore(dir.path);
  auto v = store->OpenVolume("data").value();
  CHECK(ReadAll(*v, 0, model.size()) == model);
  const uint64_t before = store->stats().extents_allocated;
  CHECK(before > 0);
  REQUIRE_OK(v->Trim(0, model.size(), false));
  REQUIRE_OK(store->Flush());
  CHECK(store->stats().extents_allocated == 0);
  CHECK(ReadAll(*v, 0, model.size()) == Bytes(model.size()));
}

TEST_CASE("block store thin provisioning refuses a write with no extent left and loses nothing") {
  TempDir dir("qcloud-block");
  auto store = OpenStore(dir.path, nullptr, 2 * kMiB);
  // Volumes may add up to more than the capacity.
  REQUIRE_OK(store->CreateVolume("a", 100 * kMiB));
  REQUIRE_OK(store->CreateVolume("b", 100 * kMiB));
  auto a = store->OpenVolume("a").value();
  auto b = store->OpenVolume("b").value();
  const Bytes x = Pattern(4096, 1), y = Pattern(4096, 2);
  REQUIRE_OK(a->Write(0, V(x), false));
  REQUIRE_OK(b->Write(50 * kMiB, V(y), false));
  // A write that needs two more extents takes none.
  CHECK(a->Write(10 * kMiB - 10, V(Bytes(20, std::byte{1})), false).code() == Errc::kResourceExhausted);
  CHECK(store->stats().enospc == 1);
  // Writes into extents already held still work.
  REQUIRE_OK(a->Write(4096, V(y), false));
  CHECK(ReadAll(*a, 0, 4096) == x);
  CHECK(ReadAll(*a, 4096, 4096) == y);
  CHECK(ReadAll(*b, 50 * kMiB, 4096) == y);
  CHECK(ReadAll(*a, 10 * kMiB - 10, 20) == Bytes(20));
  // A trimmed extent comes back after the next flush.
  REQUIRE_OK(b->Trim(50 * kMiB, kMiB, false));
  CHECK(a->Write(20 * kMiB, V(x), false).code() == Errc::kResourceExhausted);
  REQUIRE_OK(store->Flush());
  REQUIRE_OK(a->Write(20 * kMiB, V(x), false));
  CHECK(ReadAll(*a, 20 * kMiB, 4096) == x);
}

TEST_CASE("block store a power cut keeps every write flushed before it") {
  TempDir dir("qcloud-block");
  auto base = OpenPosixEnv().value();
  testing::FaultInjectionEnv env(*base);
  Bytes model(4 * kMiB);
  {
    auto store = OpenStore(dir.path, &env);
    REQUIRE_OK(store->CreateVolume("v", model.size()));
    auto v = store->OpenVolume("v").value();
    RandomOps(*v, model, 3, 200);
    REQUIRE_OK(v->Flush());
    // Then more, unflushed, which the cut may take: over every extent.
    Bytes later = model;
    RandomOps(*v, later, 4, 200);
    const Bytes fua = Pattern(8192, 9);
    REQUIRE_OK(v->Write(kMiB + 4096, V(fua), true));  // FUA: durable on return
    std::copy(fua.begin(), fua.end(), model.begin() + kMiB + 4096);
    // What the FUA write flushed includes the writes before it.
    model = later;
    std::copy(fua.begin(), fua.end(), model.begin() + kMiB + 4096);
  }
  REQUIRE_OK(env.DropUnsyncedData());
  auto store = OpenStore(dir.path, &env);
  auto v = store->OpenVolume("v").value();
  CHECK(ReadAll(*v, 0, model.size()) == model);
}

TEST_CASE("block store unflushed writes lost by a crash never show other data") {
  // Two crashes: kill -9 (every write reached the page cache and stays,
  // but the metadata after the last commit is gone) and a power cut (no
  // unsynced write stays).
  for (const bool power_cut : {false, true}) {
    CAPTURE(power_cut);
    TempDir dir("qcloud-block");
    auto base = OpenPosixEnv().value();
    testing::FaultInjectionEnv env(*base);
    const Bytes old = Pattern(kMiB, 5);
    {
      auto store = OpenStore(dir.path, &env);
      REQUIRE_OK(store->CreateVolume("v", 4 * kMiB));
      REQUIRE_OK(store->CreateVolume("w", 4 * kMiB));
      auto v = store->OpenVolume("v").value();
      auto w = store->OpenVolume("w").value();
      REQUIRE_OK(v->Write(0, V(old), false));
      REQUIRE_OK(store->Flush());
      // v's extent is freed (not yet committed) and w writes: w must not
      // get v's committed extent before the commit that frees it.
      REQUIRE_OK(v->Trim(0, kMiB, false));
      REQUIRE_OK(w->Write(0, V(Pattern(kMiB, 6)), false));
    }
    if (power_cut) REQUIRE_OK(env.DropUnsyncedData());
    auto store = OpenStore(dir.path, &env);
    CHECK(ReadAll(*store->OpenVolume("v").value(), 0, kMiB) == old);
    CHECK(ReadAll(*store->OpenVolume("w").value(), 0, kMiB) == Bytes(kMiB));
  }
}

TEST_CASE("block store snapshots are redirect on write and clones and rollbacks read them") {
  TempDir dir("qcloud-block");
  auto store = OpenStore(dir.path);
  REQUIRE_OK(store->CreateVolume("vol", 4 * kMiB));
  auto v = store->OpenVolume("vol").value();
  Bytes model(4 * kMiB);
  RandomOps(*v, model, 11, 200);
  REQUIRE_OK(store->CreateSnapshot("vol", "s1"));
  CHECK(store->CreateSnapshot("vol", "s1").code() == Errc::kAlreadyExists);
  const Bytes at_s1 = model;

  // One aligned overwrite after the snapshot: exactly one data write
  // (once written out: it may wait in a merge run until the flush).
  const uint64_t writes_before = store->stats().data_writes;
  const Bytes blk = Pattern(4096, 12);
  REQUIRE_OK(v->Write(2 * kMiB + 8192, V(blk), false));
  REQUIRE_OK(store->Flush());
  CHECK(store->stats().data_writes - writes_before == 1);
  std::copy(blk.begin(), blk.end(), model.begin() + 2 * kMiB + 8192);
  RandomOps(*v, model, 13, 200);
  CHECK(ReadAll(*v, 0, model.size()) == model);

  REQUIRE_OK(store->Clone("vol", "s1", "copy"));
  auto c = store->OpenVolume("copy").value();
  CHECK(ReadAll(*c, 0, at_s1.size()) == at_s1);
  CHECK(store->GetVolume("copy").value().origin == "vol@s1");
  // The clone writes on its own.
  Bytes cmodel = at_s1;
  RandomOps(*c, cmodel, 14, 100);
  CHECK(ReadAll(*c, 0, cmodel.size()) == cmodel);
  CHECK(ReadAll(*v, 0, model.size()) == model);

  REQUIRE_OK(store->CreateSnapshot("vol", "s2"));
  const Bytes at_s2 = model;
  RandomOps(*v, model, 15, 100);
  REQUIRE_OK(store->Rollback("vol", "s1"));
  CHECK(ReadAll(*v, 0, at_s1.size()) == at_s1);
  REQUIRE_OK(store->Rollback("vol", "s2"));
  CHECK(ReadAll(*v, 0, at_s2.size()) == at_s2);
  CHECK(store->ListSnapshots("vol").size() == 2);

  // Everything holds across a reopen.
  REQUIRE_OK(store->Flush());
  store.reset();
  v.reset();
  c.reset();
  store = OpenStore(dir.path);
  CHECK(ReadAll(*store->OpenVolume("vol").value(), 0, at_s2.size()) == at_s2);
  CHECK(ReadAll(*store->OpenVolume("copy").value(), 0, cmodel.size()) == cmodel);
}

TEST_CASE("block store deleting snapshots and volumes reclaims what only they held") {
  TempDir dir("qcloud-block");
  auto store = OpenStore(dir.path);
  REQUIRE_OK(store->CreateVolume("vol", 8 * kMiB));
  auto v = store->OpenVolume("vol").value();
  Bytes model(8 * kMiB);
  const Bytes full = Pattern(8 * kMiB, 21);
  REQUIRE_OK(v->Write(0, V(full), false));
  model = full;
  REQUIRE_OK(store->CreateSnapshot("vol", "base"));
  // Overwrite half of it: the snapshot still holds the old half.
  const Bytes half = Pattern(4 * kMiB, 22);
  REQUIRE_OK(v->Write(0, V(half), false));
  std::copy(half.begin(), half.end(), model.begin());
  REQUIRE_OK(store->Flush());
  CHECK(store->stats().extents_allocated == 12);
  // Deleting the snapshot merges the blocks the volume still reads from it
  // into the volume's layer; the overwritten half is freed.
  REQUIRE_OK(store->DeleteSnapshot("vol", "base"));
  CHECK(store->stats().extents_allocated == 8);
  CHECK(store->stats().layers == 1);
  CHECK(ReadAll(*v, 0, model.size()) == model);

  // A clone keeps a deleted volume's snapshot alive; deleting it frees all.
  REQUIRE_OK(store->CreateSnapshot("vol", "img"));
  REQUIRE_OK(store->Clone("vol", "img", "vm"));
  REQUIRE_OK(store->DeleteVolume("vol"));
  Bytes one(1);
  CHECK(v->Read(0, one).code() == Errc::kNotFound);
  auto vm = store->OpenVolume("vm").value();
  CHECK(ReadAll(*vm, 0, model.size()) == model);
  CHECK(store->stats().extents_allocated == 8);
  REQUIRE_OK(vm->Write(0, V(Pattern(4096, 23)), false));
  REQUIRE_OK(store->DeleteVolume("vm"));
  REQUIRE_OK(store->Flush());
  CHECK(store->stats().extents_allocated == 0);
  CHECK(store->stats().layers == 0);
  CHECK(store->ListVolumes().empty());
}

TEST_CASE("block store snapshot of a 100 GiB thin volume is metadata only") {
  TempDir dir("qcloud-block");
  auto store = OpenStore(dir.path);
  REQUIRE_OK(store->CreateVolume("big", 100ull << 30));
  auto v = store->OpenVolume("big").value();
  const Bytes x = Pattern(4096, 31);
  REQUIRE_OK(v->Write((100ull << 30) - 4096, V(x), false));
  REQUIRE_OK(store->Flush());
  const uint64_t writes = store->stats().data_writes;
  REQUIRE_OK(store->CreateSnapshot("big", "s"));
  CHECK(store->stats().data_writes == writes);
  CHECK(ReadAll(*v, (100ull << 30) - 4096, 4096) == x);
}

TEST_CASE("block store resize drops data past a shrink and grows with zeros") {
  TempDir dir("qcloud-block");
  auto store = OpenStore(dir.path);
  REQUIRE_OK(store->CreateVolume("r", 4 * kMiB));
  auto v = store->OpenVolume("r").value();
  const Bytes data = Pattern(4 * kMiB, 41);
  REQUIRE_OK(v->Write(0, V(data), false));
  REQUIRE_OK(store->CreateSnapshot("r", "s"));
  REQUIRE_OK(store->ResizeVolume("r", kMiB + 8192));
  CHECK(v->size() == kMiB + 8192);
  REQUIRE_OK(store->ResizeVolume("r", 3 * kMiB));
  CHECK(ReadAll(*v, 0, kMiB + 8192) == Bytes(data.begin(), data.begin() + kMiB + 8192));
  CHECK(ReadAll(*v, kMiB + 8192, 2 * kMiB - 8192) == Bytes(2 * kMiB - 8192));
  // The snapshot is whole, and a rollback brings the size back.
  REQUIRE_OK(store->Rollback("r", "s"));
  CHECK(v->size() == 4 * kMiB);
  CHECK(ReadAll(*v, 0, 4 * kMiB) == data);
}

TEST_CASE("block store concurrent unaligned writes to one block lose no bytes") {
  TempDir dir("qcloud-block");
  auto store = OpenStore(dir.path);
  REQUIRE_OK(store->CreateVolume("c", kMiB));
  REQUIRE_OK(store->CreateSnapshot("c", "empty"));  // unaligned writes now merge with the layer below
  auto v = store->OpenVolume("c").value();
  // 4 threads write 512-byte sectors of the same blocks, interleaved.
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int blk = 0; blk < 64; ++blk) {
        for (int s = t; s < 8; s += 4) {
          const Bytes sector(512, static_cast<std::byte>(blk * 8 + s + 1));
          CHECK(v->Write(uint64_t(blk) * 4096 + uint64_t(s) * 512, V(sector), false).ok());
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  const Bytes got = ReadAll(*v, 0, 64 * 4096);
  for (int blk = 0; blk < 64; ++blk) {
    for (int s = 0; s < 8; ++s) {
      CHECK(got[size_t(blk) * 4096 + size_t(s) * 512] == static_cast<std::byte>(blk * 8 + s + 1));
    }
  }
}

}  // namespace
}  // namespace qcloud::block

namespace qcloud::block {
namespace {

// A copy's extents.dat, zero-padded to `size` (holes and a shorter file
// read as zeros, as the store reads them).
Bytes CopyBytes(const std::string& dir, size_t size) {
  Bytes b(size);
  std::FILE* f = std::fopen((dir + "/extents.dat").c_str(), "rb");
  if (f == nullptr) return b;
  const size_t got = std::fread(b.data(), 1, size, f);
  (void)got;
  std::fclose(f);
  return b;
}

TEST_CASE("block store replicas hold the same bytes and a wiped one is rebuilt while I/O goes on") {
  TempDir dir("qcloud-block"), r1("qcloud-replica"), r2("qcloud-replica");
  auto opened = Store::Open({.data_dir = dir.path, .replicas = {"dir:" + r1.path, r2.path}});
  REQUIRE_OK(opened);
  auto store = std::move(opened).value();
  REQUIRE_OK(store->CreateVolume("v", 8 * kMiB));
  auto v = store->OpenVolume("v").value();
  Bytes model(8 * kMiB);
  RandomOps(*v, model, 51, 300);
  REQUIRE_OK(store->Flush());
  const size_t span = 12 * kMiB;  // header extent + 8 data extents + slack
  CHECK(CopyBytes(r1.path, span) == CopyBytes(dir.path, span));
  CHECK(CopyBytes(r2.path, span) == CopyBytes(dir.path, span));
  for (const CopyInfo& c : store->copies()) CHECK(c.health == "whole");

  // r1's directory disappears under the running store; writes go on.
  std::filesystem::remove_all(r1.path);
  RandomOps(*v, model, 52, 100);
  REQUIRE_OK(store->Maintain());
  const auto copies = store->copies();
  REQUIRE(copies.size() == 3);
  CHECK(copies[1].health == "whole");
  CHECK(copies[1].failures == 1);
  CHECK(copies[1].rebuilt_extents >= 8);
  RandomOps(*v, model, 53, 100);
  REQUIRE_OK(store->Flush());
  CHECK(ReadAll(*v, 0, model.size()) == model);
  CHECK(CopyBytes(r1.path, span) == CopyBytes(dir.path, span));
  CHECK(CopyBytes(r2.path, span) == CopyBytes(dir.path, span));

  // Reopened, the copies are whole and read the same.
  v.reset();
  store.reset();
  store = Store::Open({.data_dir = dir.path, .replicas = {"dir:" + r1.path, r2.path}}).value();
  CHECK(ReadAll(*store->OpenVolume("v").value(), 0, model.size()) == model);
  // Opened by a tool that names no replicas: the store keeps its three copies.
  store.reset();
  store = Store::Open({.data_dir = dir.path}).value();
  CHECK(store->copies().size() == 3);
  CHECK(ReadAll(*store->OpenVolume("v").value(), 0, model.size()) == model);
}

TEST_CASE("block store rebuilds its own data directory from a replica") {
  TempDir dir("qcloud-block"), r1("qcloud-replica");
  Bytes model(4 * kMiB);
  {
    auto store = Store::Open({.data_dir = dir.path, .replicas = {r1.path}, .write_quorum = 1}).value();
    REQUIRE_OK(store->CreateVolume("v", model.size()));
    RandomOps(*store->OpenVolume("v").value(), model, 61, 200);
    REQUIRE_OK(store->Flush());
  }
  // The data file is lost (the metadata is not): copy 0 comes back empty.
  std::filesystem::remove(dir.path + "/extents.dat");
  auto store = Store::Open({.data_dir = dir.path, .replicas = {r1.path}, .write_quorum = 1}).value();
  CHECK(store->copies()[0].health == "failed");
  auto v = store->OpenVolume("v").value();
  CHECK(ReadAll(*v, 0, model.size()) == model);  // from the replica
  REQUIRE_OK(store->Maintain());
  CHECK(store->copies()[0].health == "whole");
  CHECK(CopyBytes(dir.path, 6 * kMiB) == CopyBytes(r1.path, 6 * kMiB));
}

void Scribble(const std::string& dir, uint64_t offset, size_t n) {
  std::FILE* f = std::fopen((dir + "/extents.dat").c_str(), "r+b");
  REQUIRE(f != nullptr);
  const Bytes junk = Pattern(n, 77);
  REQUIRE(std::fseek(f, static_cast<long>(offset), SEEK_SET) == 0);
  REQUIRE(std::fwrite(junk.data(), 1, n, f) == n);
  std::fclose(f);
}

// Bytes [offset, offset + n) of a copy's extents.dat.
Bytes Slice(const std::string& dir, uint64_t offset, size_t n) {
  const Bytes all = CopyBytes(dir, offset + n);
  return Bytes(all.begin() + static_cast<ptrdiff_t>(offset), all.end());
}

TEST_CASE("block store resyncs its copies after a crash and not after a clean close") {
  TempDir dir("qcloud-block"), r1("qcloud-replica");
  const size_t span = 6 * kMiB;
  Bytes model(4 * kMiB);
  {
    auto store = Store::Open({.data_dir = dir.path, .replicas = {r1.path}, .write_quorum = 1}).value();
    REQUIRE_OK(store->CreateVolume("v", model.size()));
    RandomOps(*store->OpenVolume("v").value(), model, 71, 200);
    REQUIRE_OK(store->Flush());
    // Destroyed without Close(): a crash. Writes in flight at it reached
    // one copy and not the other: the replica differs in two extents.
  }
  Scribble(r1.path, kMiB + 4096, 8192);
  Scribble(r1.path, 3 * kMiB + 100, 300);
  REQUIRE(CopyBytes(r1.path, span) != CopyBytes(dir.path, span));
  {
    auto store = Store::Open({.data_dir = dir.path, .replicas = {r1.path}, .write_quorum = 1}).value();
    auto copies = store->copies();
    CHECK(!copies[0].resyncing);
    CHECK(copies[1].resyncing);
    CHECK(copies[1].health == "whole");
    auto v = store->OpenVolume("v").value();
    CHECK(ReadAll(*v, 0, model.size()) == model);  // from copy 0 only
    REQUIRE_OK(store->Maintain());
    copies = store->copies();
    CHECK(!copies[1].resyncing);
    CHECK(copies[1].rebuilt_extents >= 4);
    CHECK(CopyBytes(r1.path, span) == CopyBytes(dir.path, span));
    RandomOps(*v, model, 72, 50);
    REQUIRE_OK(store->Close());
    CHECK(v->Write(0, V(Pattern(4096, 1)), false).code() == Errc::kUnavailable);
    CHECK(CopyBytes(r1.path, span) == CopyBytes(dir.path, span));
  }
  // Closed cleanly: nothing to resync; a difference now would stay (and
  // none is there).
  auto store = Store::Open({.data_dir = dir.path, .replicas = {r1.path}, .write_quorum = 1}).value();
  CHECK(!store->copies()[1].resyncing);
  CHECK(ReadAll(*store->OpenVolume("v").value(), 0, model.size()) == model);
}

TEST_CASE("block store after a crash resyncs only the granules the intent map marked") {
  TempDir dir("qcloud-block"), r1("qcloud-replica");
  constexpr uint64_t kExtents = 150;  // physical extents 1..150: granules 0, 1 and 2
  const Bytes block = Pattern(4096, 5);
  auto open = [&] {
    return REQUIRE_VALUE(Store::Open({.data_dir = dir.path, .replicas = {r1.path}, .write_quorum = 1}));
  };
  auto crash_after_writes = [&] {
    auto store = open();
    if (!store->OpenVolume("v").ok()) REQUIRE_OK(store->CreateVolume("v", 256 * kMiB));
    auto v = REQUIRE_VALUE(store->OpenVolume("v"));
    for (uint64_t e = 0; e < kExtents; ++e) REQUIRE_OK(v->Write(e * kMiB, V(block), false));
    // Two syncs with no write between them clear every mark.
    for (int i = 0; i < 3; ++i) REQUIRE_OK(store->Flush());
    // The crash comes while logical extent 0 (physical 1) is written.
    REQUIRE_OK(v->Write(100, V(Pattern(300, 6)), false));
    // Destroyed without Close().
  };
  crash_after_writes();
  // Copies that differ where the write was in flight (physical extent 2,
  // granule 0) and, as no crash can make them, far from it (extent 140).
  Scribble(r1.path, 2 * kMiB, 4096);
  Scribble(r1.path, 140 * kMiB, 4096);
  {
    auto store = open();
    CHECK(store->copies()[1].resyncing);
    REQUIRE_OK(store->Maintain());
    const auto copies = store->copies();
    CHECK(!copies[1].resyncing);
    // Granule 0's allocated extents (1..63), not all 150.
    CHECK(copies[1].rebuilt_extents == detail::kIntentGranule - 1);
    CHECK(CopyBytes(r1.path, 64 * kMiB) == CopyBytes(dir.path, 64 * kMiB));
    CHECK(Slice(r1.path, 140 * kMiB, 4096) != Slice(dir.path, 140 * kMiB, 4096));
    Scribble(dir.path, 140 * kMiB, 4096);  // the same junk: the copies agree again
    REQUIRE_OK(store->Close());
  }
  // Without its intent map (a store from before it, or a lost file) the
  // resync after a crash copies every allocated extent.
  crash_after_writes();
  REQUIRE(std::remove((dir.path + "/intent.map").c_str()) == 0);
  Scribble(r1.path, 140 * kMiB, 4096);
  {
    auto store = open();
    REQUIRE_OK(store->Maintain());
    CHECK(store->copies()[1].rebuilt_extents == kExtents);
    CHECK(CopyBytes(r1.path, 151 * kMiB) == CopyBytes(dir.path, 151 * kMiB));
    REQUIRE_OK(store->Close());
  }
}

TEST_CASE("block store marks made after a clean reopen are durable before their writes") {
  TempDir dir("qcloud-block"), r1("qcloud-replica");
  auto open = [&] {
    return REQUIRE_VALUE(Store::Open({.data_dir = dir.path, .replicas = {r1.path}, .write_quorum = 1}));
  };
  {
    // Closed cleanly: its syncs clear the mark of this write.
    auto store = open();
    REQUIRE_OK(store->CreateVolume("v", 8 * kMiB));
    REQUIRE_OK(REQUIRE_VALUE(store->OpenVolume("v"))->Write(0, V(Pattern(4096, 1)), false));
    REQUIRE_OK(store->Close());
  }
  const std::string map = dir.path + "/intent.map";
  {
    // The close's clears lost (they are not synced): granule 0 marked.
    std::FILE* f = std::fopen(map.c_str(), "r+b");
    REQUIRE(f != nullptr);
    REQUIRE(std::fseek(f, static_cast<long>(detail::kIntentHeader), SEEK_SET) == 0);
    const unsigned char word[8] = {1, 0, 0, 0, 0, 0, 0, 0};
    REQUIRE(std::fwrite(word, 1, 8, f) == 8);
    std::fclose(f);
  }
  {
    // Reopened cleanly: the map starts empty, so this write must mark
    // granule 0 again, on disk, before it reaches the copies.
    auto store = open();
    CHECK(std::filesystem::file_size(map) == detail::kIntentHeader);
    REQUIRE_OK(REQUIRE_VALUE(store->OpenVolume("v"))->Write(0, V(Pattern(4096, 2)), false));
    REQUIRE_OK(store->Flush());  // through the write merging, to the copies
    CHECK(std::filesystem::file_size(map) > detail::kIntentHeader);
    // Destroyed without Close(): a crash.
  }
  Scribble(r1.path, kMiB, 4096);
  auto store = open();
  CHECK(store->copies()[1].resyncing);
  REQUIRE_OK(store->Maintain());
  CHECK(CopyBytes(r1.path, 2 * kMiB) == CopyBytes(dir.path, 2 * kMiB));
  CHECK(ReadAll(*REQUIRE_VALUE(store->OpenVolume("v")), 0, 4096) == Pattern(4096, 2));
}

TEST_CASE("block store a copy that missed writes is rebuilt after a crash and never resynced from") {
  TempDir dir("qcloud-block"), r1("qcloud-replica");
  auto open = [&] {
    return REQUIRE_VALUE(Store::Open({.data_dir = dir.path, .replicas = {r1.path}, .write_quorum = 1}));
  };
  const std::string data = dir.path + "/extents.dat", aside = dir.path + "/extents.aside";
  {
    auto store = open();
    REQUIRE_OK(store->CreateVolume("v", 8 * kMiB));
    auto v = REQUIRE_VALUE(store->OpenVolume("v"));
    REQUIRE_OK(v->Write(0, V(Pattern(8192, 1)), false));
    REQUIRE_OK(store->Flush());
    // The data directory's copy goes away and cannot come back (a
    // directory stands where its file was): it fails, and the replica
    // alone takes the next write (quorum 1).
    std::filesystem::rename(data, aside);
    std::filesystem::create_directory(data);
    CHECK_FALSE(store->Maintain().ok());  // it cannot be reopened
    CHECK(store->copies()[0].health == "failed");
    REQUIRE_OK(v->Write(0, V(Pattern(8192, 2)), false));
    REQUIRE_OK(store->Flush());
    // Destroyed without Close(): a crash. Then the old copy comes back,
    // whole by its header, without the second write.
  }
  std::filesystem::remove(data);
  std::filesystem::rename(aside, data);
  auto store = open();
  CHECK(store->copies()[0].health != "whole");
  auto v = REQUIRE_VALUE(store->OpenVolume("v"));
  CHECK(ReadAll(*v, 0, 8192) == Pattern(8192, 2));  // from the replica
  REQUIRE_OK(store->Maintain());
  CHECK(store->copies()[0].health == "whole");
  CHECK(CopyBytes(r1.path, 2 * kMiB) == CopyBytes(dir.path, 2 * kMiB));
  CHECK(ReadAll(*v, 0, 8192) == Pattern(8192, 2));
}

TEST_CASE("block store intent maps that are short foreign damaged or too large read as all dirty") {
  std::array<std::byte, 16> uuid{};
  uuid[3] = std::byte{9};
  // A good one: the header, then granules 1 and 70 marked.
  Bytes good(detail::kIntentHeader + 16, std::byte{0});
  const std::string_view magic = "QCLOUD-BLOCK-INTENT v1\n";
  std::memcpy(good.data(), magic.data(), magic.size());
  std::memcpy(good.data() + 32, uuid.data(), uuid.size());
  good[56] = std::byte{64};
  good[detail::kIntentHeader] = std::byte{2};
  good[detail::kIntentHeader + 8] = std::byte{64};
  detail::IntentImage img = detail::ParseIntentMap(V(good), uuid);
  CHECK_FALSE(img.all);
  CHECK(img.bits == std::vector<uint64_t>{2, 64});
  // A torn last word keeps the bits it has.
  img = detail::ParseIntentMap(ByteView(good.data(), good.size() - 7), uuid);
  CHECK_FALSE(img.all);
  CHECK(img.bits == std::vector<uint64_t>{2, 64});
  auto all = [&](Bytes b) { return detail::ParseIntentMap(V(b), uuid).all; };
  CHECK(all(Bytes{}));
  CHECK(all(Bytes(good.begin(), good.begin() + 100)));  // shorter than its header
  Bytes b = good;
  b[0] = std::byte{'q'};
  CHECK(all(b));  // not the magic
  b = good;
  b[40] = std::byte{1};
  CHECK(all(b));  // another store's
  b = good;
  b[56] = std::byte{32};
  CHECK(all(b));  // another granule size
  b = good;
  b[48] = std::byte{1};
  CHECK(all(b));  // says so itself
  b = good;
  b.resize(detail::kIntentHeader + detail::kIntentMaxBytes + 1);
  CHECK(all(b));  // more bits than extents can be numbered
  b = good;
  b[64] = std::byte{17};
  CHECK(all(b));  // more stale copies than can be listed
  // Two stale copies listed: their ids come back.
  b = good;
  b[64] = std::byte{2};
  b[72] = std::byte{7};
  b[80 + 7] = std::byte{1};
  img = detail::ParseIntentMap(V(b), uuid);
  CHECK_FALSE(img.all);
  CHECK(img.stale == std::vector<uint64_t>{7, uint64_t{1} << 56});
}

TEST_CASE("block store refuses another store's replica and too few whole copies") {
  TempDir a("qcloud-block"), b("qcloud-block"), r("qcloud-replica");
  {
    auto sa = Store::Open({.data_dir = a.path, .replicas = {r.path}});
    REQUIRE_OK(sa);
  }
  CHECK(Store::Open({.data_dir = b.path, .replicas = {r.path}}).status().code() == Errc::kCorruption);
  CHECK(Store::Open({.data_dir = b.path, .replicas = {"x", "y", "z", "w", "v"}}).status().code() ==
        Errc::kInvalidArgument);
  // An NBD replica nobody serves: with a quorum of 2 of 2 the store cannot
  // open; with 1 it opens and reports the copy failed.
  TempDir c("qcloud-block");
  CHECK(Store::Open({.data_dir = c.path, .replicas = {"nbd://127.0.0.1:1/none"}, .write_quorum = 2})
            .status()
            .code() == Errc::kUnavailable);
  auto sc = Store::Open({.data_dir = c.path, .replicas = {"nbd://127.0.0.1:1/none"}, .write_quorum = 1});
  REQUIRE_OK(sc);
  CHECK((*sc)->copies()[1].health == "failed");
  REQUIRE_OK((*sc)->CreateVolume("v", kMiB));
  REQUIRE_OK((*sc)->OpenVolume("v").value()->Write(0, V(Pattern(4096, 1)), true));
  CHECK((*sc)->copies()[1].missed_extents == 1);
  CHECK(!(*sc)->Maintain().ok());  // still nobody there
}

}  // namespace
}  // namespace qcloud::block

namespace qcloud::block {
namespace {

TEST_CASE("block store merges sequential small writes into few large ones") {
  TempDir dir("qcloud-block");
  auto store = OpenStore(dir.path);
  REQUIRE_OK(store->CreateVolume("m", 8 * kMiB));
  auto v = store->OpenVolume("m").value();
  Bytes model(8 * kMiB);
  // 512 sequential 4 KiB writes (2 MiB): runs of 256 KiB.
  const uint64_t before = store->stats().data_writes;
  for (int i = 0; i < 512; ++i) {
    const Bytes b = Pattern(4096, 100 + i);
    REQUIRE_OK(v->Write(uint64_t(i) * 4096, V(b), false));
    std::copy(b.begin(), b.end(), model.begin() + i * 4096);
    // Every write is readable at once, from the run or the copies.
    if (i % 97 == 0) CHECK(ReadAll(*v, uint64_t(i) * 4096, 4096) == b);
  }
  REQUIRE_OK(store->Flush());
  const uint64_t backend = store->stats().data_writes - before;
  CHECK(backend <= 512 / 8);
  MESSAGE("512 sequential 4 KiB writes: " << backend << " writes to the data file");
  CHECK(store->stats().merged_writes >= 400);
  CHECK(ReadAll(*v, 0, model.size()) == model);
  // Interleaved with random writes, trims and reads: still the model.
  RandomOps(*v, model, 71, 300);
  for (int i = 600; i < 700; ++i) {
    const Bytes b = Pattern(4096, 100 + i);
    REQUIRE_OK(v->Write(uint64_t(i) * 4096, V(b), false));
    std::copy(b.begin(), b.end(), model.begin() + i * 4096);
  }
  REQUIRE_OK(v->Trim(650 * 4096, 4096, false));
  std::fill(model.begin() + 650 * 4096, model.begin() + 651 * 4096, std::byte{0});
  CHECK(ReadAll(*v, 0, model.size()) == model);
  // A run not yet written out survives a clean reopen (written at the flush
  // a clean close does not do: so flush) and a rollback drops it.
  REQUIRE_OK(store->CreateSnapshot("m", "s"));
  const Bytes after = Pattern(4096, 9999);
  REQUIRE_OK(v->Write(0, V(after), false));
  REQUIRE_OK(store->Rollback("m", "s"));
  CHECK(ReadAll(*v, 0, model.size()) == model);
}

}  // namespace
}  // namespace qcloud::block

namespace qcloud::block {
namespace {

TEST_CASE("block store reads ahead for a sequential reader only") {
  TempDir dir("qcloud-block");
  auto store = OpenStore(dir.path);
  REQUIRE_OK(store->CreateVolume("ra", 16 * kMiB));
  auto v = store->OpenVolume("ra").value();
  const Bytes data = Pattern(16 * kMiB, 81);
  REQUIRE_OK(v->Write(0, V(data), false));
  // Random reads: no read-ahead.
  std::mt19937_64 rng(1);
  for (int i = 0; i < 50; ++i) (void)ReadAll(*v, (rng() % 4000) * 4096, 4096);
  CHECK(store->stats().readaheads == 0);
  // 64 KiB reads in order: read-ahead starts at the third and keeps ahead
  // in windows, not once per read.
  for (uint64_t off = 0; off < 8 * kMiB; off += 64 * 1024) {
    CHECK(ReadAll(*v, off, 64 * 1024) == Bytes(data.begin() + off, data.begin() + off + 64 * 1024));
  }
  const StoreStats st = store->stats();
  MESSAGE("128 sequential reads: " << st.readaheads << " read-ahead windows, " << st.readahead_bytes << " bytes");
  CHECK(st.readaheads >= 4);
  CHECK(st.readaheads <= 64);
  CHECK(st.readahead_bytes >= 7 * kMiB);
}

// Reads a plan back the way a server would send it: file pieces with
// pread, holes as zeros; a piece also in memory must hold the same bytes
// there. `mapped`, if given, counts those.
Bytes ReadPlanned(const Volume::ReadPlan& plan, size_t* mapped = nullptr) {
  Bytes b;
  for (const Volume::FilePiece& p : plan.pieces) {
    const size_t at = b.size();
    b.resize(at + p.length, std::byte{0});
    if (p.fd < 0) {
      CHECK(p.mem == nullptr);
      continue;
    }
    const ssize_t n = ::pread(p.fd, b.data() + at, p.length, static_cast<off_t>(p.offset));
    REQUIRE(n >= 0);
    if (p.mem != nullptr) {
      CHECK(std::memcmp(p.mem, b.data() + at, p.length) == 0);
      if (mapped != nullptr) ++*mapped;
    }
  }
  return b;
}

TEST_CASE("block store zero copy plans read what Read reads and pin their extents") {
  TempDir dir("qcloud-block");
  auto store = OpenStore(dir.path);
  REQUIRE_OK(store->CreateVolume("a", 8 * kMiB));
  REQUIRE_OK(store->CreateVolume("b", 8 * kMiB));
  auto a = REQUIRE_VALUE(store->OpenVolume("a"));
  auto b = REQUIRE_VALUE(store->OpenVolume("b"));
  Volume::ReadPlan plan;
  const Result<bool> can = a->PlanRead(0, kMiB, plan);
  REQUIRE_OK(can);
  if (!*can) {
    MESSAGE("zero-copy reads are off on this kernel or file system (cachestat, punch hole)");
    return;
  }
  // Data, holes, a snapshot below and an unaligned tail: the plan reads the same.
  Bytes model(8 * kMiB, std::byte{0});
  RandomOps(*a, model, 7, 200);
  REQUIRE_OK(store->CreateSnapshot("a", "s"));
  RandomOps(*a, model, 8, 100);
  size_t mapped = 0;  // pieces also in memory: the data was just written, so cached
  for (auto [off, len] : std::vector<std::pair<uint64_t, uint64_t>>{
           {0, 8 * kMiB}, {4095, 3 * kMiB + 17}, {7 * kMiB, kMiB}, {12345, 1}}) {
    INFO("range ", off, " +", len);
    REQUIRE_OK(a->PlanRead(off, len, plan));
    uint64_t total = 0;
    for (const auto& p : plan.pieces) total += p.length;
    CHECK(total == len);
    CHECK(ReadPlanned(plan, &mapped) == Bytes(model.begin() + off, model.begin() + off + len));
    CHECK(ReadAll(*a, off, len) == Bytes(model.begin() + off, model.begin() + off + len));
  }
  CHECK(mapped > 0);
  CHECK(a->PlanRead(8 * kMiB - 1, 2, plan).status().code() == Errc::kOutOfRange);

  // A plan's extent is not reused while the plan is held, even once freed:
  // volume c's first extent lands elsewhere; after the release it may not.
  REQUIRE_OK(store->CreateVolume("c", 8 * kMiB));
  const Bytes data = Pattern(kMiB, 9);
  REQUIRE_OK(b->Write(0, V(data), false));
  REQUIRE_OK(b->Flush());
  REQUIRE_OK(b->PlanRead(0, kMiB, plan));
  REQUIRE(plan.pieces.size() == 1);
  const uint64_t held_at = plan.pieces[0].offset;
  // Sent from memory: the store's mapping of the file then maps these
  // pages, which must not keep the extent from coming back below.
  mapped = 0;
  CHECK(ReadPlanned(plan, &mapped) == data);
  CHECK(mapped == 1);
  REQUIRE_OK(b->Trim(0, kMiB, false));  // frees the whole extent
  REQUIRE_OK(store->Flush());           // the commit that frees it
  auto c = REQUIRE_VALUE(store->OpenVolume("c"));
  REQUIRE_OK(c->Write(0, V(Pattern(kMiB, 10)), false));
  Volume::ReadPlan other;
  REQUIRE_OK(c->PlanRead(0, kMiB, other));
  REQUIRE(other.pieces.size() == 1);
  CHECK(other.pieces[0].offset != held_at);
  plan = {};  // released: the extent can come back once its pages are gone
  REQUIRE_OK(store->Maintain());
  REQUIRE_OK(c->Write(kMiB, V(Pattern(kMiB, 11)), false));
  REQUIRE_OK(c->PlanRead(kMiB, kMiB, other));
  REQUIRE(other.pieces.size() == 1);
  CHECK(other.pieces[0].offset == held_at);
  CHECK(ReadPlanned(other) == Pattern(kMiB, 11));
}

TEST_CASE("block store zero copy is off with an SSD tier") {
  TempDir dir("qcloud-block");
  TempDir ssd("qcloud-ssd");
  auto store = REQUIRE_VALUE(Store::Open({.data_dir = dir.path, .ssd_dir = ssd.path, .ssd_bytes = 4 * kMiB}));
  REQUIRE_OK(store->CreateVolume("a", 8 * kMiB));
  auto a = REQUIRE_VALUE(store->OpenVolume("a"));
  Volume::ReadPlan plan;
  CHECK(REQUIRE_VALUE(a->PlanRead(0, kMiB, plan)) == false);
  CHECK(plan.pieces.empty());
}

}  // namespace
}  // namespace qcloud::block
