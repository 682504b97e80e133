// The cold tier through the Store: memory pressure sinks instead of
// dropping, reads re-activate, deletes and overwrites never resurrect old
// values, idle items sink after cold_after (ManualClock), segments are
// cleaned, a restart (or a power cut after Maintain) recovers the tier, and
// a tier whose disk fails answers I/O errors, never misses.
#include <doctest/doctest.h>

#include <map>
#include <random>
#include <string>
#include <vector>

#include "kv/session.h"
#include "qcloud/core/clock.h"
#include "qcloud/kv/store.h"
#include "qcloud/testing/doctest_helpers.h"
#include "qcloud/testing/fault_injection_env.h"
#include "qcloud/testing/mem_env.h"

using namespace qcloud;
using namespace qcloud::kv;
using namespace std::chrono_literals;

namespace {

StoreOptions Cold(Env& env, Clock& clock, size_t memory = 2 << 20) {
  StoreOptions o;
  o.memory_bytes = memory;
  o.item_size_max = 256 * 1024;
  o.shards = 2;
  o.clock = &clock;
  o.ssd_dir = "/cold";
  o.env = &env;
  o.ssd_bytes = 256 << 20;
  o.segment_bytes = 1 << 20;
  return o;
}

std::string Value(Store& s, std::string_view key) {
  std::string v;
  if (!s.Get(key, &v)) return "<miss>";
  return v;
}

std::string Val(int i, int version = 0) {
  return "value-" + std::to_string(i) + "-v" + std::to_string(version) + std::string(64, 'x');
}

}  // namespace

TEST_CASE("memory pressure sinks to SSD instead of dropping") {
  testing::MemEnv env;
  ManualClock clock;
  auto s = REQUIRE_VALUE(Store::Open(Cold(env, clock)));
  const int n = 80000;  // ~4x the memory budget
  for (int i = 0; i < n; ++i) REQUIRE(s->Set("k" + std::to_string(i), Val(i)).outcome == Outcome::kOk);
  StoreStats st = s->Stats();
  CHECK(st.evictions == 0);
  CHECK(st.cold_items > 0);
  CHECK(st.cold_items + st.curr_items == n);
  for (int i = 0; i < n; ++i) REQUIRE(Value(*s, "k" + std::to_string(i)) == Val(i));
  st = s->Stats();
  CHECK(st.cold_reactivated > 0);
  CHECK(st.evictions == 0);
  CHECK(st.cold_errors == 0);
}

TEST_CASE("deletes, overwrites and appends of sunk items never resurrect old values") {
  testing::MemEnv env;
  ManualClock clock;
  std::map<std::string, std::string> model;
  {
    auto s = REQUIRE_VALUE(Store::Open(Cold(env, clock)));
    std::mt19937 rng(3);
    for (int round = 0; round < 120000; ++round) {
      const int i = static_cast<int>(rng() % 30000);
      const std::string key = "k" + std::to_string(i);
      switch (rng() % 8) {
        case 0:
          CHECK((s->Delete(key) == Outcome::kOk) == (model.count(key) != 0));
          model.erase(key);
          break;
        case 1:
          if (model.count(key)) {
            REQUIRE(s->Write(StoreMode::kAppend, key, ByteView(std::string_view("+")), {}).outcome ==
                    Outcome::kOk);
            model[key] += "+";
          }
          break;
        case 2:
        case 3: {
          auto it = model.find(key);
          REQUIRE(Value(*s, key) == (it == model.end() ? "<miss>" : it->second));
          break;
        }
        default:
          REQUIRE(s->Set(key, Val(i, round)).outcome == Outcome::kOk);
          model[key] = Val(i, round);
      }
    }
    const StoreStats st = s->Stats();
    CHECK(st.evictions == 0);
    CHECK(st.cold_errors == 0);
    CHECK(st.curr_items + st.cold_items == model.size());
    for (const auto& [k, v] : model) REQUIRE(Value(*s, k) == v);
    REQUIRE_OK(s->SinkAll());  // a clean shutdown keeps everything
  }
  // Restart: the tier alone holds every item, at its latest value.
  auto s = REQUIRE_VALUE(Store::Open(Cold(env, clock)));
  CHECK(s->Stats().cold_recovered == model.size());
  for (int i = 0; i < 30000; ++i) {
    const std::string key = "k" + std::to_string(i);
    auto it = model.find(key);
    REQUIRE(Value(*s, key) == (it == model.end() ? "<miss>" : it->second));
  }
}

TEST_CASE("items idle for cold_after sink, and a read brings them back") {
  testing::MemEnv env;
  ManualClock clock;
  StoreOptions o = Cold(env, clock, 64 << 20);
  o.cold_after = 7 * 24h;
  auto s = REQUIRE_VALUE(Store::Open(o));
  for (int i = 0; i < 1000; ++i) s->Set("k" + std::to_string(i), Val(i));
  clock.Advance(6 * 24h);
  for (int i = 0; i < 100; ++i) REQUIRE(Value(*s, "k" + std::to_string(i)) == Val(i));  // stay warm
  clock.Advance(2 * 24h);
  REQUIRE_OK(s->Maintain(1 << 20));
  StoreStats st = s->Stats();
  CHECK(st.cold_items == 900);
  CHECK(st.curr_items == 100);
  CHECK(Value(*s, "k500") == Val(500));
  CHECK(s->Stats().cold_reactivated == 1);
  CHECK(s->Stats().curr_items == 101);
}

TEST_CASE("expiry and flush_all apply to cold items") {
  testing::MemEnv env;
  ManualClock clock;
  StoreOptions o = Cold(env, clock, 64 << 20);
  o.cold_after = 60s;
  auto s = REQUIRE_VALUE(Store::Open(o));
  s->Set("short", "v", {.exptime = 100});
  s->Set("long", "v", {.exptime = 1000});
  clock.Advance(70s);
  REQUIRE_OK(s->Maintain(1 << 20));
  CHECK(s->Stats().cold_items == 2);
  clock.Advance(40s);
  CHECK(Value(*s, "short") == "<miss>");
  CHECK(Value(*s, "long") == "v");
  clock.Advance(70s);
  REQUIRE_OK(s->Maintain(1 << 20));
  CHECK(s->Stats().cold_items == 1);
  s->FlushAll();
  CHECK(Value(*s, "long") == "<miss>");
  CHECK(s->Stats().cold_items == 0);
}

TEST_CASE("cleaning keeps the tier bounded and the data whole") {
  testing::MemEnv env;
  ManualClock clock;
  StoreOptions o = Cold(env, clock);
  o.ssd_bytes = 16 << 20;  // 16 segments of 1 MiB
  auto s = REQUIRE_VALUE(Store::Open(o));
  // 40 MB of writes over 10000 keys (~10 MB live): the log must be cleaned.
  for (int round = 0; round < 4; ++round) {
    for (int i = 0; i < 10000; ++i) {
      REQUIRE(s->Set("k" + std::to_string(i), Val(i, round) + std::string(900, 'p')).outcome ==
              Outcome::kOk);
    }
    REQUIRE_OK(s->Maintain());
  }
  const StoreStats st = s->Stats();
  CHECK(st.cold_compactions > 0);
  CHECK(st.cold_disk_bytes <= o.ssd_bytes);
  CHECK(st.evictions == 0);
  for (int i = 0; i < 10000; ++i) {
    REQUIRE(Value(*s, "k" + std::to_string(i)) == Val(i, 3) + std::string(900, 'p'));
  }
}

TEST_CASE("a full tier evicts, and says so") {
  testing::MemEnv env;
  ManualClock clock;
  StoreOptions o = Cold(env, clock);
  o.ssd_bytes = 2 << 20;  // tiny
  auto s = REQUIRE_VALUE(Store::Open(o));
  for (int i = 0; i < 60000; ++i) s->Set("k" + std::to_string(i), Val(i));
  const StoreStats st = s->Stats();
  CHECK(st.cold_full > 0);
  CHECK(st.evictions > 0);
  CHECK(st.cold_disk_bytes <= o.ssd_bytes);
}

TEST_CASE("after a power cut, what Maintain synced is recovered") {
  testing::MemEnv base;
  testing::FaultInjectionEnv env(base);
  ManualClock clock;
  uint64_t synced = 0;
  {
    auto s = REQUIRE_VALUE(Store::Open(Cold(env, clock)));
    for (int i = 0; i < 40000; ++i) s->Set("k" + std::to_string(i), Val(i));
    REQUIRE_OK(s->Maintain());
    synced = s->Stats().cold_items;
    CHECK(synced > 0);
    for (int i = 40000; i < 50000; ++i) s->Set("k" + std::to_string(i), Val(i));  // not synced
    REQUIRE_OK(env.DropUnsyncedData());
    // The store object is abandoned as after a crash: its destructor's
    // writes would land after the cut, so cut again once it is gone.
  }
  REQUIRE_OK(env.DropUnsyncedData());
  auto s = REQUIRE_VALUE(Store::Open(Cold(env, clock)));
  const uint64_t recovered = s->Stats().cold_recovered;
  // Everything Maintain synced survives the cut (more may have reached the
  // disk since, when a full segment was written out).
  CHECK(recovered >= synced);
  uint64_t found = 0;
  for (int i = 0; i < 50000; ++i) {
    const std::string v = Value(*s, "k" + std::to_string(i));
    if (v != "<miss>") {
      REQUIRE(v == Val(i));  // never a wrong or torn value
      ++found;
    }
  }
  CHECK(found == recovered);
}

TEST_CASE("a cold read that fails is an I/O error, never a miss") {
  testing::MemEnv base;
  testing::FaultInjectionEnv env(base);
  ManualClock clock;
  auto s = REQUIRE_VALUE(Store::Open(Cold(env, clock)));
  for (int i = 0; i < 40000; ++i) s->Set("k" + std::to_string(i), Val(i));
  REQUIRE_OK(s->Maintain());  // the tier's buffer is on disk now
  REQUIRE(s->Stats().cold_items > 0);

  env.SetFailure(testing::FailureMode::kAll);
  int io_errors = 0, hits = 0, wrong = 0;
  std::string first_failed;
  for (int i = 0; i < 40000; ++i) {
    const std::string key = "k" + std::to_string(i);
    std::string v;
    const Outcome o = s->Read(key, {}, [&](const ItemView& item) {
      v.resize(item.value_size());
      item.CopyValueTo(v.data());
    });
    if (o == Outcome::kIoError) {
      if (first_failed.empty()) first_failed = key;
      ++io_errors;
    } else if (o == Outcome::kOk) {
      ++hits;
      if (v != Val(i)) ++wrong;
    }
  }
  CHECK(io_errors > 0);
  CHECK(hits + io_errors == 40000);  // no key was answered as a miss
  CHECK(wrong == 0);
  CHECK(s->Stats().cold_errors >= static_cast<uint64_t>(io_errors));
  // Writes, deletes and arithmetic on such a key fail the same way: the
  // old copy can be neither read nor erased.
  CHECK(s->Delete(first_failed) == Outcome::kIoError);
  CHECK(s->Touch(first_failed, 100) == Outcome::kIoError);
  CHECK(s->Arith(first_failed, {}).outcome == Outcome::kIoError);

  // The memcached front end says so too.
  std::vector<WorkerCounters> workers(1);
  ServerShared shared;
  shared.store = s.get();
  shared.workers = &workers;
  Session session(shared, workers[0]);
  Buffer out;
  const std::string get = "get " + first_failed + "\r\nmg " + first_failed + " v\r\n";
  CHECK(session.Process(ByteView(get), out) == get.size());
  CHECK(out.readable().AsStringView() ==
        "SERVER_ERROR cold tier I/O error\r\nSERVER_ERROR cold tier I/O error\r\n");

  // Once the disk answers again, the item is there, whole.
  env.SetFailure(testing::FailureMode::kNone);
  const int index = std::stoi(first_failed.substr(1));
  CHECK(Value(*s, first_failed) == Val(index));
}

TEST_CASE("a scan lists every item once, in memory and on the tier, without reading values") {
  testing::MemEnv env;
  ManualClock clock;
  auto s = REQUIRE_VALUE(Store::Open(Cold(env, clock)));
  const int n = 40000;  // ~2x the memory: half sinks
  for (int i = 0; i < n; ++i) {
    REQUIRE(s->Set("k" + std::to_string(i), Val(i), {.flags = static_cast<uint32_t>(i % 7),
                                                     .exptime = i % 10 == 0 ? 1000 : 0})
                .outcome == Outcome::kOk);
  }
  for (int i = 1; i < n; i += 100) REQUIRE(s->Delete("k" + std::to_string(i)) == Outcome::kOk);
  REQUIRE_OK(s->Maintain());  // part of the tier is buffered, part on "disk"
  const StoreStats before = s->Stats();
  REQUIRE(before.cold_items > 10000);
  std::map<std::string, int> seen;
  ScanCursor mem;
  while (!mem.done) {
    s->Scan(&mem, 100, [&](const ItemView& item) { ++seen[std::string(item.key())]; });
  }
  ColdScanCursor cold;
  int calls = 0;
  bool flags_ok = true, ttl_ok = true, size_ok = true;
  while (!cold.done && calls < 100000) {
    ++calls;
    s->ScanCold(&cold, 8192, [&](const ColdItemInfo& item) {
      const std::string key(item.key);
      ++seen[key];
      const int i = std::stoi(key.substr(1));
      flags_ok = flags_ok && item.flags == static_cast<uint32_t>(i % 7);
      ttl_ok = ttl_ok && (i % 10 == 0 ? item.ttl > 990 && item.ttl <= 1000 : item.ttl == -1);
      size_ok = size_ok && item.value_size == Val(i).size();
    });
  }
  CHECK(cold.done);
  CHECK(calls > 10);  // in pieces
  CHECK(flags_ok);
  CHECK(ttl_ok);
  CHECK(size_ok);
  int missing = 0, twice = 0, deleted_seen = 0;
  for (int i = 0; i < n; ++i) {
    const auto it = seen.find("k" + std::to_string(i));
    if (i % 100 == 1) {
      deleted_seen += it != seen.end();
    } else if (it == seen.end()) {
      ++missing;
    } else if (it->second != 1) {
      ++twice;
    }
  }
  CHECK(missing == 0);
  CHECK(twice == 0);
  CHECK(deleted_seen == 0);
  const StoreStats after = s->Stats();
  CHECK(after.cold_reactivated == before.cold_reactivated);  // nothing was read back
  CHECK(after.cold_items == before.cold_items);
  // Expired items on the tier are not listed.
  clock.Advance(std::chrono::seconds(2000));
  ColdScanCursor later;
  int with_ttl = 0;
  while (!later.done) {
    s->ScanCold(&later, 1 << 20, [&](const ColdItemInfo& item) { with_ttl += item.ttl != -1; });
  }
  CHECK(with_ttl == 0);
}
