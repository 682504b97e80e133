// The memory engine against a model (std::map), plus its edges: chains of
// many blocks, keys spanning blocks, expiry on a ManualClock, flush_all,
// CLOCK eviction, the no-eviction budget and incr/decr quirks.
#include <doctest/doctest.h>

#include <map>
#include <random>
#include <string>
#include <atomic>
#include <thread>

#include "qcloud/core/clock.h"
#include "qcloud/kv/store.h"
#include "qcloud/testing/doctest_helpers.h"

using namespace qcloud;
using namespace qcloud::kv;
using namespace std::chrono_literals;

namespace {

std::unique_ptr<Store> Make(StoreOptions o) { return REQUIRE_VALUE(Store::Open(o)); }

std::string Value(Store& s, std::string_view key) {
  std::string v;
  if (!s.Get(key, &v)) return "<miss>";
  return v;
}

}  // namespace

TEST_CASE("options are validated") {
  CHECK_ERRC(Store::Open({.block_size = 32}), qcloud::Errc::kInvalidArgument);
  CHECK_ERRC(Store::Open({.block_size = 66}), qcloud::Errc::kInvalidArgument);
  CHECK_ERRC(Store::Open({.shards = 3}), qcloud::Errc::kInvalidArgument);
  CHECK_ERRC(Store::Open({.memory_bytes = 1 << 20, .item_size_max = 1 << 20}),
             qcloud::Errc::kInvalidArgument);
  CHECK(Store::Open({.memory_bytes = 4 << 20, .shards = 64}).ok());  // shards reduced to fit
}

TEST_CASE("set, add, replace, append, prepend and cas follow memcached") {
  auto s = Make({});
  CHECK(s->Set("k", "v1", {.flags = 7}).outcome == Outcome::kOk);
  CHECK(s->Write(StoreMode::kAdd, "k", ByteView(std::string_view("x")), {}).outcome ==
        Outcome::kNotStored);
  CHECK(s->Write(StoreMode::kReplace, "nope", ByteView(std::string_view("x")), {}).outcome ==
        Outcome::kNotStored);
  CHECK(s->Write(StoreMode::kAppend, "k", ByteView(std::string_view("+a")), {.flags = 99})
            .outcome == Outcome::kOk);
  CHECK(s->Write(StoreMode::kPrepend, "k", ByteView(std::string_view("p-")), {}).outcome ==
        Outcome::kOk);
  uint32_t flags = 0;
  uint64_t cas = 0;
  std::string v;
  REQUIRE(s->Get("k", &v, &flags, &cas));
  CHECK(v == "p-v1+a");
  CHECK(flags == 7);  // append/prepend keep the item's flags
  CHECK(s->Set("k", "v2", {.cas = cas + 100}).outcome == Outcome::kExists);
  CHECK(s->Set("missing", "v2", {.cas = 5}).outcome == Outcome::kNotFound);
  const WriteResult r = s->Set("k", "v3", {.cas = cas});
  CHECK(r.outcome == Outcome::kOk);
  CHECK(r.cas > cas);
  CHECK(Value(*s, "k") == "v3");
  CHECK(s->Delete("k") == Outcome::kOk);
  CHECK(s->Delete("k") == Outcome::kNotFound);
  CHECK(s->Set("", "x").outcome == Outcome::kBadKey);
  CHECK(s->Set(std::string(251, 'k'), "x").outcome == Outcome::kBadKey);
  CHECK(s->Set(std::string(250, 'k'), "x").outcome == Outcome::kOk);
}

TEST_CASE("values of every length round-trip through block chains") {
  for (size_t block : {40u, 64u, 4096u}) {
    CAPTURE(block);
    auto s = Make({.memory_bytes = 64 << 20, .block_size = block});
    std::mt19937 rng(1);
    for (size_t len : {0u, 1u, 2u, 29u, 30u, 31u, 59u, 60u, 61u, 63u, 64u, 65u, 1000u, 4095u,
                       4096u, 65536u, 1048000u}) {
      std::string key = "key" + std::to_string(len) + std::string(len % 200, 'x');
      std::string val(len, '\0');
      for (auto& c : val) c = static_cast<char>(rng());
      CAPTURE(len);
      REQUIRE(s->Set(key, val).outcome == Outcome::kOk);
      CHECK(Value(*s, key) == val);
    }
    // A 250-byte key spans several blocks when the blocks are small.
    const std::string long_key(250, 'L');
    REQUIRE(s->Set(long_key, "payload").outcome == Outcome::kOk);
    CHECK(Value(*s, long_key) == "payload");
    s->Read(long_key, {}, [&](const ItemView& item) { CHECK(item.key() == long_key); });
  }
}

TEST_CASE("optional header fields: flags, expiry, long lengths, and touch rewriting an item") {
  // An item carries exptime and flags only when they are not 0; touching an
  // item that has no exptime field rewrites it. Every layout must keep the
  // key, the value, the CAS and the other fields.
  ManualClock clock;
  for (size_t block : {40u, 44u, 100u, 104u, 256u}) {
    CAPTURE(block);
    auto s = Make({.memory_bytes = 32 << 20, .block_size = block, .clock = &clock});
    for (size_t len : {0u, 1u, 15u, 16u, 56u, 60u, 64u, 76u, 80u, 84u, 200u, 5000u}) {
      for (uint32_t flags : {0u, 0xdeadbeefu}) {
        CAPTURE(len);
        CAPTURE(flags);
        const std::string key = "k" + std::to_string(len) + "-" + std::to_string(flags) +
                                std::string(len % 17, 'x');
        std::string val(len, '\0');
        for (size_t i = 0; i < len; ++i) val[i] = static_cast<char>(i * 7 + len);
        const uint64_t cas = s->Set(key, val, {.flags = flags}).cas;
        s->Read(key, {}, [&](const ItemView& item) {
          CHECK(item.ttl() == -1);
          CHECK(item.flags() == flags);
          CHECK(item.key() == key);
        });
        CHECK(s->Touch(key, 100) == Outcome::kOk);  // gains an exptime field
        std::string got;
        uint32_t got_flags = 1;
        uint64_t got_cas = 0;
        REQUIRE(s->Get(key, &got, &got_flags, &got_cas));
        CHECK(got == val);
        CHECK(got_flags == flags);
        CHECK(got_cas == cas);  // touch keeps the CAS, as in memcached
        s->Read(key, {}, [&](const ItemView& item) {
          CHECK(item.ttl() == 100);
          CHECK(item.key() == key);
        });
        CHECK(s->Touch(key, 0) == Outcome::kOk);  // the field stays, holding 0
        s->Read(key, {}, [&](const ItemView& item) { CHECK(item.ttl() == -1); });
        CHECK(s->Write(StoreMode::kAppend, key, ByteView(std::string_view("+")), {}).outcome ==
              Outcome::kOk);
        REQUIRE(s->Get(key, &got, &got_flags));
        CHECK(got == val + "+");
        CHECK(got_flags == flags);
      }
    }
    const StoreStats st = s->Stats();
    CHECK(st.curr_items == 24);
  }
  SUBCASE("a value of 16 MiB or more stores its length in an extra field") {
    auto s = Make({.memory_bytes = 128 << 20, .item_size_max = 32 << 20, .clock = &clock});
    for (size_t len : {size_t{0xffffff} - 1, size_t{0xffffff}, size_t{0xffffff} + 1,
                       size_t{20} << 20}) {
      CAPTURE(len);
      std::string val(len, 'v');
      val[len - 1] = 'e';
      REQUIRE(s->Set("big", val, {.flags = 3, .exptime = 50}).outcome == Outcome::kOk);
      std::string got;
      uint32_t flags = 0;
      REQUIRE(s->Get("big", &got, &flags));
      CHECK(got.size() == len);
      CHECK(got == val);
      CHECK(flags == 3);
      s->Read("big", {}, [&](const ItemView& item) { CHECK(item.ttl() == 50); });
    }
  }
}

TEST_CASE("the largest value matches memcached's -I arithmetic") {
  auto s = Make({.memory_bytes = 64 << 20});
  CHECK(s->MaxValueSize(3) == 1048514);  // measured on memcached 1.6.18, -I 1m, key of 3 bytes
  CHECK(s->Set("abc", std::string(1048514, 'v')).outcome == Outcome::kOk);
  CHECK(s->Set("abc", std::string(1048515, 'v')).outcome == Outcome::kTooLarge);
  CHECK(Value(*s, "abc") == "<miss>");  // a failed set removes the stale value
}

TEST_CASE("random operations agree with a model") {
  auto s = Make({.memory_bytes = 256 << 20, .block_size = 48, .shards = 4});
  // 20000 keys over 4 shards of 1024 buckets: the index must grow.
  std::map<std::string, std::string> model;
  std::mt19937 rng(42);
  for (int i = 0; i < 200000; ++i) {
    const std::string key = "k" + std::to_string(rng() % 20000);
    switch (rng() % 6) {
      case 0:
      case 1: {
        std::string v(rng() % 300, static_cast<char>('a' + rng() % 26));
        REQUIRE(s->Set(key, v).outcome == Outcome::kOk);
        model[key] = v;
        break;
      }
      case 2: {
        const bool had = model.count(key) != 0;
        CHECK((s->Delete(key) == Outcome::kOk) == had);
        model.erase(key);
        break;
      }
      case 3: {
        const auto r = s->Write(StoreMode::kAppend, key, ByteView(std::string_view("++")), {});
        if (model.count(key)) {
          CHECK(r.outcome == Outcome::kOk);
          model[key] += "++";
        } else {
          CHECK(r.outcome == Outcome::kNotStored);
        }
        break;
      }
      default: {
        auto it = model.find(key);
        CHECK(Value(*s, key) == (it == model.end() ? "<miss>" : it->second));
      }
    }
  }
  const StoreStats st = s->Stats();
  CHECK(st.curr_items == model.size());
  CHECK(st.evictions == 0);
  CHECK(st.hash_expansions > 0);  // 4 shards x 1024 buckets grow past 2 items/bucket
  for (const auto& [k, v] : model) REQUIRE(Value(*s, k) == v);
}

TEST_CASE("expiry follows memcached's exptime rules on the store's clock") {
  ManualClock clock;
  auto s = Make({.clock = &clock});
  const int64_t wall =
      std::chrono::duration_cast<std::chrono::seconds>(clock.WallNow().time_since_epoch()).count();
  CHECK(s->Set("rel", "v", {.exptime = 10}).outcome == Outcome::kOk);
  CHECK(s->Set("abs", "v", {.exptime = wall + 20}).outcome == Outcome::kOk);
  CHECK(s->Set("past", "v", {.exptime = wall - 20}).outcome == Outcome::kOk);
  CHECK(s->Set("neg", "v", {.exptime = -1}).outcome == Outcome::kOk);
  CHECK(s->Set("forever", "v").outcome == Outcome::kOk);
  CHECK(Value(*s, "past") == "<miss>");
  CHECK(Value(*s, "neg") == "<miss>");
  s->Read("rel", {}, [](const ItemView& item) { CHECK(item.ttl() == 10); });
  clock.Advance(9s);
  CHECK(Value(*s, "rel") == "v");
  clock.Advance(1s);
  CHECK(Value(*s, "rel") == "<miss>");
  CHECK(Value(*s, "abs") == "v");
  CHECK(s->Touch("abs", 100) == Outcome::kOk);
  clock.Advance(50s);
  CHECK(Value(*s, "abs") == "v");
  CHECK(s->Touch("abs", -1) == Outcome::kOk);
  CHECK(Value(*s, "abs") == "<miss>");
  CHECK(s->Touch("nothing", 5) == Outcome::kNotFound);
  clock.Advance(24h * 365);
  CHECK(Value(*s, "forever") == "v");
}

TEST_CASE("a workload that keeps replacing expired items holds its memory flat") {
  ManualClock clock;
  auto s = Make({.memory_bytes = 64 << 20, .clock = &clock});
  constexpr int kRound = 20000;
  uint64_t touched_after_two = 0;
  for (int round = 0; round < 30; ++round) {
    for (int i = 0; i < kRound; ++i) {
      const std::string key = "r" + std::to_string(round) + ":" + std::to_string(i);
      REQUIRE(s->Set(key, std::string(100, 'v'), {.exptime = 1}).outcome == Outcome::kOk);
    }
    clock.Advance(2s);  // this round's items are dead now
    if (round == 1) touched_after_two = s->Stats().touched_blocks;
  }
  const StoreStats st = s->Stats();
  MESSAGE("touched blocks after 2 rounds " << touched_after_two << ", after 30 " << st.touched_blocks
          << " of " << st.total_blocks << "; reclaimed " << st.reclaimed);
  CHECK(st.evictions == 0);                                       // nothing live was pushed out
  CHECK(st.reclaimed >= 27 * kRound);                             // the dead were reused
  CHECK(st.touched_blocks <= touched_after_two * 3 / 2);          // memory flat
  CHECK(st.touched_blocks < st.total_blocks / 2);                 // far from the whole pool
  // A store that never saw an expiry does not look for dead items.
  auto plain = Make({.memory_bytes = 64 << 20, .clock = &clock});
  for (int i = 0; i < kRound; ++i) REQUIRE(plain->Set("k" + std::to_string(i), "v").outcome == Outcome::kOk);
  CHECK(plain->Stats().reclaimed == 0);
}

TEST_CASE("Scan visits every live item once, a few buckets at a time, and reads nothing") {
  ManualClock clock;
  auto s = Make({.memory_bytes = 16 << 20, .shards = 4, .clock = &clock});
  for (int i = 0; i < 5000; ++i) {
    REQUIRE(s->Set("k" + std::to_string(i), "v", {.exptime = i % 10 == 0 ? 5 : 0}).outcome == Outcome::kOk);
  }
  clock.Advance(std::chrono::seconds(6));  // every tenth item has expired
  std::map<std::string, int> seen;
  ScanCursor cursor;
  int calls = 0;
  while (!cursor.done && calls < 1000000) {
    s->Scan(&cursor, 7, [&](const ItemView& item) {
      ++seen[std::string(item.key())];
      CHECK_FALSE(item.fetched_before());
    });
    ++calls;
  }
  CHECK(cursor.done);
  CHECK(calls > 10);  // in pieces
  CHECK(seen.size() == 4500);
  bool once = true;
  for (const auto& [key, n] : seen) once = once && n == 1;
  CHECK(once);
  CHECK(seen.count("k10") == 0);
  // Scanning is not reading: nothing became fetched.
  s->Read("k1", {.update_access = false}, [](const ItemView& item) { CHECK_FALSE(item.fetched_before()); });
}

TEST_CASE("flush_all now and with a delay") {
  ManualClock clock;
  auto s = Make({.clock = &clock});
  s->Set("a", "1");
  s->FlushAll();
  CHECK(Value(*s, "a") == "<miss>");
  s->Set("b", "2");  // written after the flush, same second: visible
  CHECK(Value(*s, "b") == "2");
  clock.Advance(5s);
  s->FlushAll(3);  // memcached: items used up to deadline-1 vanish at deadline-1
  CHECK(Value(*s, "b") == "2");
  clock.Advance(1s);
  CHECK(Value(*s, "b") == "2");
  clock.Advance(1s);
  CHECK(Value(*s, "b") == "<miss>");
  clock.Advance(1s);  // (as in memcached, a write in the flush's own second is flushed too)
  s->Set("c", "3");
  CHECK(Value(*s, "c") == "3");
}

TEST_CASE("CLOCK eviction keeps recently read items and the budget") {
  auto s = Make({.memory_bytes = 4 << 20, .block_size = 64, .item_size_max = 1 << 20,
                 .shards = 1});
  const std::string value(100, 'v');
  REQUIRE(s->Set("hot", value).outcome == Outcome::kOk);
  for (int i = 0; i < 200000; ++i) {
    REQUIRE(s->Set("cold" + std::to_string(i), value).outcome == Outcome::kOk);
    if (i % 64 == 0) REQUIRE(Value(*s, "hot") == value);
  }
  const StoreStats st = s->Stats();
  CHECK(st.evictions > 0);
  CHECK(st.used_blocks <= st.total_blocks);
  CHECK(Value(*s, "hot") == value);
  CHECK(Value(*s, "cold199999") == value);  // the newest survive
  CHECK(Value(*s, "cold0") == "<miss>");
}

TEST_CASE("without eviction a full store refuses writes and keeps its data") {
  auto s = Make({.memory_bytes = 2 << 20, .block_size = 64, .item_size_max = 1 << 20,
                 .shards = 1, .eviction = Eviction::kNone});
  int stored = 0;
  Outcome last = Outcome::kOk;
  for (int i = 0; i < 100000 && last == Outcome::kOk; ++i) {
    last = s->Set("k" + std::to_string(i), std::string(100, 'v')).outcome;
    if (last == Outcome::kOk) ++stored;
  }
  CHECK(last == Outcome::kNoMemory);
  CHECK(stored > 10000);
  for (int i = 0; i < stored; ++i) REQUIRE(Value(*s, "k" + std::to_string(i)) != "<miss>");
  CHECK(s->Stats().evictions == 0);
}

TEST_CASE("incr and decr: wrap, clamp, padding, non-numeric, auto-create") {
  auto s = Make({});
  s->Set("n", "5");
  CHECK(s->Arith("n", {.delta = 10}).value == 15);
  CHECK(Value(*s, "n") == "15");  // grew: a new item
  CHECK(s->Arith("n", {.increment = false, .delta = 100}).value == 0);
  CHECK(Value(*s, "n") == "0 ");  // in place, padded (memcached does the same)
  s->Set("max", "18446744073709551615");
  CHECK(s->Arith("max", {.delta = 2}).value == 1);
  s->Set("txt", "12a");
  CHECK(s->Arith("txt", {}).outcome == Outcome::kNonNumeric);
  s->Set("neg", "-1");
  CHECK(s->Arith("neg", {}).outcome == Outcome::kNonNumeric);
  s->Set("sp", " 12");
  CHECK(s->Arith("sp", {}).value == 13);
  CHECK(s->Arith("none", {}).outcome == Outcome::kNotFound);
  const ArithResult c = s->Arith("created", {.delta = 5, .initial = 100});
  CHECK(c.created);
  CHECK(c.value == 100);  // the initial value, delta not applied (memcached binary)
  CHECK(s->Arith("created", {.delta = 5}).value == 105);
  uint64_t cas = 0;
  s->Get("created", nullptr, nullptr, &cas);
  CHECK(s->Arith("created", {.cas = cas + 1}).outcome == Outcome::kExists);
}

TEST_CASE("concurrent writers and readers on shared keys") {
  auto s = Make({.memory_bytes = 64 << 20});
  std::vector<std::thread> threads;
  // doctest's assertions are not for other threads (a failing REQUIRE there
  // terminates): count what is wrong and check it after the join.
  std::atomic<int> torn{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&s, &torn, t] {
      for (int i = 0; i < 20000; ++i) {
        const std::string key = "k" + std::to_string(i % 1000);
        if ((i + t) % 3 == 0) {
          s->Set(key, std::string(static_cast<size_t>(i % 500), 'x'));
        } else {
          std::string v;
          if (s->Get(key, &v) && v != std::string(v.size(), 'x')) torn++;
        }
        s->Arith("counter", {.initial = 0});
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(torn.load() == 0);
  std::string v;
  REQUIRE(s->Get("counter", &v));
  CHECK(std::stoull(v) == 4 * 20000 - 1);  // the first call created it with 0
}
