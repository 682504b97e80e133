// Why the COS indexes live in RocksDB: the measurement behind the choice.
// RocksDB 7.8 and LMDB 0.9 (both Debian 12) side by side on the operations
// the file index does:
//   1. durable commits from many writers (each PUT is one synced commit):
//      RocksDB's WAL group-commits concurrent writers into one fsync; LMDB
//      has one writer at a time and an fsync per transaction;
//   2. listing: a page of 1000 keys from the middle of 1,000,000 (seek +
//      scan), what ListObjectsV2 does;
//   3. point reads (HEAD/GET of an object's index entry).
//
// Read it with the group-commit column: LMDB's one-writer-at-a-time commit
// is fixed by batching above it, its reads are not matched by RocksDB.
//
//   index_choice [--dir /var/tmp/qcloud-index-choice] [--keys 1000000]
#include <lmdb.h>
#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <rocksdb/write_batch.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

std::string Key(uint64_t i) {
  char b[64];
  std::snprintf(b, sizeof b, "bucket-1/photos/2014/%012llu.jpg", static_cast<unsigned long long>(i));
  return b;
}
const std::string kValue(200, 'v');  // size, ETag, chunk list, times: ~200 bytes

double Seconds(Clock::time_point a) {
  return std::chrono::duration<double>(Clock::now() - a).count();
}

void Check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "index_choice: %s failed\n", what);
    std::exit(1);
  }
}

// --- RocksDB
struct Rocks {
  std::unique_ptr<rocksdb::DB> db;
  explicit Rocks(const std::string& dir) {
    rocksdb::Options o;
    o.create_if_missing = true;
    o.enable_pipelined_write = true;
    rocksdb::DB* raw = nullptr;
    Check(rocksdb::DB::Open(o, dir, &raw).ok(), "rocksdb open");
    db.reset(raw);
  }
  void Put(const std::string& k, bool sync) {
    rocksdb::WriteOptions w;
    w.sync = sync;
    Check(db->Put(w, k, kValue).ok(), "rocksdb put");
  }
  void Load(uint64_t n) {
    rocksdb::WriteBatch b;
    for (uint64_t i = 0; i < n; ++i) {
      b.Put(Key(i), kValue);
      if (b.Count() == 10000) {
        Check(db->Write(rocksdb::WriteOptions(), &b).ok(), "rocksdb batch");
        b.Clear();
      }
    }
    Check(db->Write(rocksdb::WriteOptions(), &b).ok(), "rocksdb batch");
    Check(db->Flush(rocksdb::FlushOptions()).ok(), "rocksdb flush");
  }
  size_t Page(const std::string& from, size_t n) {
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions()));
    size_t got = 0;
    for (it->Seek(from); it->Valid() && got < n; it->Next()) got += it->value().size() > 0;
    return got;
  }
  bool Get(const std::string& k) {
    std::string v;
    return db->Get(rocksdb::ReadOptions(), k, &v).ok();
  }
};

// --- LMDB
struct Lmdb {
  MDB_env* env = nullptr;
  MDB_dbi dbi{};
  explicit Lmdb(const std::string& dir) {
    std::filesystem::create_directories(dir);
    Check(mdb_env_create(&env) == 0, "mdb_env_create");
    mdb_env_set_mapsize(env, size_t{16} << 30);
    Check(mdb_env_open(env, dir.c_str(), 0, 0644) == 0, "mdb_env_open");
    MDB_txn* t = nullptr;
    mdb_txn_begin(env, nullptr, 0, &t);
    Check(mdb_dbi_open(t, nullptr, 0, &dbi) == 0, "mdb_dbi_open");
    mdb_txn_commit(t);
  }
  ~Lmdb() { mdb_env_close(env); }
  void Put(const std::string& k) {
    MDB_txn* t = nullptr;
    Check(mdb_txn_begin(env, nullptr, 0, &t) == 0, "mdb_txn_begin");
    MDB_val key{k.size(), const_cast<char*>(k.data())};
    MDB_val val{kValue.size(), const_cast<char*>(kValue.data())};
    Check(mdb_put(t, dbi, &key, &val, 0) == 0, "mdb_put");
    Check(mdb_txn_commit(t) == 0, "mdb_txn_commit");  // fsync
  }
  void Load(uint64_t n) {
    for (uint64_t i = 0; i < n;) {
      MDB_txn* t = nullptr;
      mdb_txn_begin(env, nullptr, 0, &t);
      for (uint64_t j = 0; j < 10000 && i < n; ++j, ++i) {
        const std::string k = Key(i);
        MDB_val key{k.size(), const_cast<char*>(k.data())};
        MDB_val val{kValue.size(), const_cast<char*>(kValue.data())};
        Check(mdb_put(t, dbi, &key, &val, 0) == 0, "mdb_put load");
      }
      Check(mdb_txn_commit(t) == 0, "mdb commit load");
    }
  }
  size_t Page(const std::string& from, size_t n) {
    MDB_txn* t = nullptr;
    mdb_txn_begin(env, nullptr, MDB_RDONLY, &t);
    MDB_cursor* c = nullptr;
    mdb_cursor_open(t, dbi, &c);
    MDB_val key{from.size(), const_cast<char*>(from.data())}, val;
    size_t got = 0;
    for (int rc = mdb_cursor_get(c, &key, &val, MDB_SET_RANGE); rc == 0 && got < n;
         rc = mdb_cursor_get(c, &key, &val, MDB_NEXT)) {
      got += val.mv_size > 0;
    }
    mdb_cursor_close(c);
    mdb_txn_abort(t);
    return got;
  }
  bool Get(const std::string& k) {
    MDB_txn* t = nullptr;
    mdb_txn_begin(env, nullptr, MDB_RDONLY, &t);
    MDB_val key{k.size(), const_cast<char*>(k.data())}, val;
    const bool ok = mdb_get(t, dbi, &key, &val) == 0;
    mdb_txn_abort(t);
    return ok;
  }
};

// LMDB with group commit done above it, as the COS index will: concurrent
// writers queue their puts; whoever finds no commit running becomes the
// leader and commits everything queued in one transaction (one fsync), then
// wakes the followers it carried.
struct LmdbGroupCommit {
  Lmdb& db;
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::string> queue;
  bool committing = false;
  uint64_t committed_upto = 0, queued = 0;
  explicit LmdbGroupCommit(Lmdb& d) : db(d) {}
  void Put(const std::string& k) {
    std::unique_lock lock(mu);
    queue.push_back(k);
    const uint64_t mine = ++queued;
    while (committed_upto < mine) {
      if (!committing) {
        committing = true;
        std::vector<std::string> batch;
        batch.swap(queue);
        const uint64_t upto = queued;
        lock.unlock();
        MDB_txn* t = nullptr;
        Check(mdb_txn_begin(db.env, nullptr, 0, &t) == 0, "mdb_txn_begin");
        for (const auto& key_text : batch) {
          MDB_val key{key_text.size(), const_cast<char*>(key_text.data())};
          MDB_val val{kValue.size(), const_cast<char*>(kValue.data())};
          Check(mdb_put(t, db.dbi, &key, &val, 0) == 0, "mdb_put");
        }
        Check(mdb_txn_commit(t) == 0, "mdb_txn_commit");
        lock.lock();
        committing = false;
        committed_upto = upto;
        cv.notify_all();
      } else {
        cv.wait(lock);
      }
    }
  }
};

// Durable puts/s with `writers` threads for `secs` seconds.
template <typename PutFn>
double SyncedPuts(int writers, double secs, PutFn put) {
  std::atomic<uint64_t> done{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> ts;
  const auto start = Clock::now();
  for (int w = 0; w < writers; ++w) {
    ts.emplace_back([&, w] {
      for (uint64_t i = 0; !stop.load(std::memory_order_relaxed); ++i) {
        put("sync/" + std::to_string(w) + "/" + std::to_string(i));
        done.fetch_add(1, std::memory_order_relaxed);
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(secs));
  stop = true;
  for (auto& t : ts) t.join();
  return static_cast<double>(done.load()) / Seconds(start);
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir = "/var/tmp/qcloud-index-choice";
  uint64_t keys = 1000000;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::string(argv[i]) == "--dir") dir = argv[i + 1];
    if (std::string(argv[i]) == "--keys") keys = std::strtoull(argv[i + 1], nullptr, 10);
  }
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  Rocks rocks(dir + "/rocksdb");
  Lmdb lmdb(dir + "/lmdb");
  std::printf("| measure | RocksDB 7.8 | LMDB 0.9 | RocksDB / LMDB |\n|---|--:|--:|--:|\n");
  for (int writers : {1, 8}) {
    const double r = SyncedPuts(writers, 3, [&](const std::string& k) { rocks.Put(k, true); });
    const double l = SyncedPuts(writers, 3, [&](const std::string& k) { lmdb.Put(k); });
    LmdbGroupCommit group(lmdb);
    const double g = SyncedPuts(writers, 3, [&](const std::string& k) { group.Put(k); });
    std::printf("| durable puts/s, %d writer%s | %.0f | %.0f (group commit: %.0f) | %.2f (%.2f) |\n",
                writers, writers > 1 ? "s" : "", r, l, g, r / l, r / g);
  }
  auto t = Clock::now();
  rocks.Load(keys);
  const double rl = Seconds(t);
  t = Clock::now();
  lmdb.Load(keys);
  const double ll = Seconds(t);
  std::printf("| load %llu keys (batches of 10000), s | %.2f | %.2f | %.2f |\n",
              static_cast<unsigned long long>(keys), rl, ll, rl / ll);
  constexpr int kPages = 200;
  const std::string from = Key(keys / 2);
  size_t got = 0;
  t = Clock::now();
  for (int i = 0; i < kPages; ++i) got += rocks.Page(Key(keys / 2 + i * 997), 1000);
  const double rp = Seconds(t) / kPages * 1e6;
  t = Clock::now();
  for (int i = 0; i < kPages; ++i) got += lmdb.Page(Key(keys / 2 + i * 997), 1000);
  const double lp = Seconds(t) / kPages * 1e6;
  Check(got == 2 * kPages * 1000, "pages");
  std::printf("| a page of 1000 keys from the middle, µs | %.0f | %.0f | %.2f |\n", rp, lp, rp / lp);
  constexpr int kGets = 200000;
  t = Clock::now();
  for (int i = 0; i < kGets; ++i) Check(rocks.Get(Key((i * 7919ull) % keys)), "rocks get");
  const double rg = Seconds(t) / kGets * 1e9;
  t = Clock::now();
  for (int i = 0; i < kGets; ++i) Check(lmdb.Get(Key((i * 7919ull) % keys)), "lmdb get");
  const double lg = Seconds(t) / kGets * 1e9;
  std::printf("| point get, ns | %.0f | %.0f | %.2f |\n", rg, lg, rg / lg);
  std::filesystem::remove_all(dir);
  return 0;
}
