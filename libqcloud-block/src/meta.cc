#include "block/meta.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <random>

#include <fmt/format.h>

#include "qcloud/core/bytes.h"

namespace qcloud::block::detail {

namespace {

constexpr uint8_t kRecordVersion = 1;

Status LmdbError(int rc, std::string_view what) {
  switch (rc) {
    case MDB_MAP_FULL:
      return Status(Errc::kResourceExhausted, fmt::format("{}: metadata map full", what));
    case MDB_CORRUPTED:
    case MDB_PAGE_NOTFOUND:
    case MDB_INVALID:
    case MDB_VERSION_MISMATCH:
      return Corruption(fmt::format("{}: {}", what, mdb_strerror(rc)));
    default:
      if (rc > 0) return Status::FromErrno(rc, what);
      return IoError(fmt::format("{}: {}", what, mdb_strerror(rc)));
  }
}

MDB_val Val(std::string_view s) { return {s.size(), const_cast<char*>(s.data())}; }
std::string_view View(const MDB_val& v) { return {static_cast<const char*>(v.mv_data), v.mv_size}; }

// Appends little-endian fields to a record.
struct Writer {
  std::string s;
  void U8(uint8_t v) { s.push_back(static_cast<char>(v)); }
  void U32(uint32_t v) {
    std::byte b[4];
    EncodeFixed32(b, v);
    s.append(reinterpret_cast<const char*>(b), 4);
  }
  void U64(uint64_t v) {
    std::byte b[8];
    EncodeFixed64(b, v);
    s.append(reinterpret_cast<const char*>(b), 8);
  }
  void Str(std::string_view v) {
    U32(static_cast<uint32_t>(v.size()));
    s.append(v);
  }
};

// Reads them back; any short or inconsistent field makes ok() false.
struct Reader {
  std::string_view s;
  bool bad = false;
  bool Need(size_t n) {
    if (bad || s.size() < n) bad = true;
    return !bad;
  }
  uint8_t U8() {
    if (!Need(1)) return 0;
    const auto v = static_cast<uint8_t>(s[0]);
    s.remove_prefix(1);
    return v;
  }
  uint32_t U32() {
    if (!Need(4)) return 0;
    const uint32_t v = DecodeFixed32(reinterpret_cast<const std::byte*>(s.data()));
    s.remove_prefix(4);
    return v;
  }
  uint64_t U64() {
    if (!Need(8)) return 0;
    const uint64_t v = DecodeFixed64(reinterpret_cast<const std::byte*>(s.data()));
    s.remove_prefix(8);
    return v;
  }
  std::string Str() {
    const uint32_t n = U32();
    if (!Need(n)) return {};
    std::string v(s.substr(0, n));
    s.remove_prefix(n);
    return v;
  }
  bool ok() const { return !bad && s.empty(); }
};

std::string U64Key(uint64_t a) {
  std::string k(8, '\0');
  EncodeBigEndian64(reinterpret_cast<std::byte*>(k.data()), a);
  return k;
}
std::string ExtentKey(uint64_t layer, uint64_t index) {
  std::string k(16, '\0');
  EncodeBigEndian64(reinterpret_cast<std::byte*>(k.data()), layer);
  EncodeBigEndian64(reinterpret_cast<std::byte*>(k.data()) + 8, index);
  return k;
}
std::string SnapshotKey(std::string_view volume, std::string_view name) {
  std::string k(volume);
  k.push_back('\0');
  k.append(name);
  return k;
}

Status Put(MDB_txn* txn, MDB_dbi dbi, std::string_view key, std::string_view value,
           std::string_view what) {
  MDB_val k = Val(key), v = Val(value);
  const int rc = mdb_put(txn, dbi, &k, &v, 0);
  return rc == 0 ? Status::Ok() : LmdbError(rc, what);
}
Status Del(MDB_txn* txn, MDB_dbi dbi, std::string_view key, std::string_view what) {
  MDB_val k = Val(key);
  const int rc = mdb_del(txn, dbi, &k, nullptr);
  return rc == 0 || rc == MDB_NOTFOUND ? Status::Ok() : LmdbError(rc, what);
}

// Calls fn(key, value) for every record of `dbi`; fn returns a Status.
template <typename Fn>
Status ForEach(MDB_txn* txn, MDB_dbi dbi, Fn&& fn) {
  MDB_cursor* cur = nullptr;
  int rc = mdb_cursor_open(txn, dbi, &cur);
  if (rc != 0) return LmdbError(rc, "cursor");
  MDB_val k, v;
  Status st;
  for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
    st = fn(View(k), View(v));
    if (!st.ok()) break;
  }
  mdb_cursor_close(cur);
  if (!st.ok()) return st;
  return rc == MDB_NOTFOUND ? Status::Ok() : LmdbError(rc, "scan");
}

}  // namespace

Result<std::unique_ptr<MetaDb>> MetaDb::Open(const std::string& dir, size_t map_bytes) {
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
    return Status::FromErrno(errno, "mkdir " + dir);
  }
  std::unique_ptr<MetaDb> db(new MetaDb());
  int rc = mdb_env_create(&db->env_);
  if (rc != 0) return LmdbError(rc, "mdb_env_create");
  mdb_env_set_maxdbs(db->env_, 8);
  rc = mdb_env_set_mapsize(db->env_, map_bytes);
  if (rc != 0) return LmdbError(rc, "mdb_env_set_mapsize");
  // Synchronous commits (no MDB_NOSYNC): a commit is what a flush promises.
  rc = mdb_env_open(db->env_, dir.c_str(), MDB_NOTLS, 0644);
  if (rc != 0) return LmdbError(rc, "open metadata " + dir);
  MDB_txn* txn = nullptr;
  rc = mdb_txn_begin(db->env_, nullptr, 0, &txn);
  if (rc != 0) return LmdbError(rc, "begin");
  for (auto [name, dbi] : {std::pair{"format", &db->format_}, std::pair{"volumes", &db->volumes_},
                           std::pair{"snapshots", &db->snapshots_}, std::pair{"layers", &db->layers_},
                           std::pair{"extents", &db->extents_}, std::pair{"counters", &db->counters_}}) {
    rc = mdb_dbi_open(txn, name, MDB_CREATE, dbi);
    if (rc != 0) {
      mdb_txn_abort(txn);
      return LmdbError(rc, std::string("open table ") + name);
    }
  }
  MDB_val k = Val("format"), v;
  rc = mdb_get(txn, db->format_, &k, &v);
  if (rc == MDB_NOTFOUND) {
    Writer w;
    w.U32(kFormatVersion);
    w.U32(4096);
    w.U32(1u << 20);
    MDB_val nv = Val(w.s);
    rc = mdb_put(txn, db->format_, &k, &nv, 0);
  } else if (rc == 0) {
    Reader r{View(v)};
    const uint32_t version = r.U32(), block = r.U32(), extent = r.U32();
    if (!r.ok() || version != kFormatVersion || block != 4096 || extent != (1u << 20)) {
      mdb_txn_abort(txn);
      return Corruption(fmt::format("{}: block store format {} (block {}, extent {}); this build reads {}",
                                    dir, version, block, extent, kFormatVersion));
    }
  }
  if (rc != 0) {
    mdb_txn_abort(txn);
    return LmdbError(rc, "format record");
  }
  MDB_val uk = Val("uuid"), uv;
  rc = mdb_get(txn, db->format_, &uk, &uv);
  if (rc == MDB_NOTFOUND) {
    std::random_device rd;
    for (size_t i = 0; i < db->uuid_.size(); i += 4) {
      const uint32_t r = rd();
      std::memcpy(db->uuid_.data() + i, &r, 4);
    }
    MDB_val nv{db->uuid_.size(), db->uuid_.data()};
    rc = mdb_put(txn, db->format_, &uk, &nv, 0);
  } else if (rc == 0) {
    if (uv.mv_size != db->uuid_.size()) {
      mdb_txn_abort(txn);
      return Corruption(dir + ": bad store uuid record");
    }
    std::memcpy(db->uuid_.data(), uv.mv_data, uv.mv_size);
  }
  if (rc != 0) {
    mdb_txn_abort(txn);
    return LmdbError(rc, "uuid record");
  }
  MDB_val rk = Val("replicas"), rv;
  rc = mdb_get(txn, db->format_, &rk, &rv);
  if (rc == 0) {
    Reader r{View(rv)};
    db->quorum_ = r.U32();
    while (!r.bad && !r.s.empty()) db->replicas_.push_back(r.Str());
    if (r.bad) {
      mdb_txn_abort(txn);
      return Corruption(dir + ": bad replicas record");
    }
  } else if (rc != MDB_NOTFOUND) {
    mdb_txn_abort(txn);
    return LmdbError(rc, "replicas record");
  }
  rc = mdb_txn_commit(txn);
  if (rc != 0) return LmdbError(rc, "commit");
  return db;
}

MetaDb::~MetaDb() {
  if (env_ != nullptr) mdb_env_close(env_);
}

Result<Loaded> MetaDb::Load() {
  MDB_txn* txn = nullptr;
  int rc = mdb_txn_begin(env_, nullptr, MDB_RDONLY, &txn);
  if (rc != 0) return LmdbError(rc, "begin");
  Loaded out;
  auto bad = [](std::string_view table) { return Corruption(fmt::format("bad {} record", table)); };
  Status st = ForEach(txn, volumes_, [&](std::string_view key, std::string_view val) {
    Reader r{val};
    VolumeRec v;
    v.name = std::string(key);
    if (r.U8() != kRecordVersion) return bad("volume");
    v.size = r.U64();
    v.layer = r.U64();
    v.created_ns = static_cast<int64_t>(r.U64());
    v.origin = r.Str();
    if (!r.ok()) return bad("volume");
    out.volumes.push_back(std::move(v));
    return Status::Ok();
  });
  if (st.ok()) {
    st = ForEach(txn, snapshots_, [&](std::string_view key, std::string_view val) {
      const size_t nul = key.find('\0');
      if (nul == std::string_view::npos) return bad("snapshot");
      Reader r{val};
      SnapshotRec s;
      s.volume = std::string(key.substr(0, nul));
      s.name = std::string(key.substr(nul + 1));
      if (r.U8() != kRecordVersion) return bad("snapshot");
      s.size = r.U64();
      s.layer = r.U64();
      s.created_ns = static_cast<int64_t>(r.U64());
      if (!r.ok()) return bad("snapshot");
      out.snapshots.push_back(std::move(s));
      return Status::Ok();
    });
  }
  if (st.ok()) {
    st = ForEach(txn, layers_, [&](std::string_view key, std::string_view val) {
      if (key.size() != 8) return bad("layer");
      Reader r{val};
      LayerRec l;
      l.id = DecodeBigEndian64(reinterpret_cast<const std::byte*>(key.data()));
      if (r.U8() != kRecordVersion) return bad("layer");
      l.parent = r.U64();
      l.limit = r.U64();
      if (!r.ok()) return bad("layer");
      out.layers.push_back(l);
      return Status::Ok();
    });
  }
  if (st.ok()) {
    st = ForEach(txn, extents_, [&](std::string_view key, std::string_view val) {
      if (key.size() != 16) return bad("extent");
      const auto* kb = reinterpret_cast<const std::byte*>(key.data());
      Reader r{val};
      ExtentRec e;
      if (r.U8() != kRecordVersion) return bad("extent");
      e.phys = r.U32();
      for (auto& w : e.bits) w = r.U64();
      if (!r.ok() || e.phys == 0) return bad("extent");
      out.extents.push_back({{DecodeBigEndian64(kb), DecodeBigEndian64(kb + 8)}, e});
      return Status::Ok();
    });
  }
  if (st.ok()) {
    MDB_val k = Val("next_layer"), v;
    rc = mdb_get(txn, counters_, &k, &v);
    if (rc == 0) {
      Reader r{View(v)};
      out.next_layer = r.U64();
      if (!r.ok()) st = bad("counter");
    } else if (rc != MDB_NOTFOUND) {
      st = LmdbError(rc, "counters");
    }
  }
  mdb_txn_abort(txn);
  if (!st.ok()) return st;
  return out;
}

Status MetaDb::PutReplicas(const std::vector<std::string>& replicas, uint32_t quorum) {
  Writer w;
  w.U32(quorum);
  for (const std::string& r : replicas) w.Str(r);
  MDB_txn* txn = nullptr;
  int rc = mdb_txn_begin(env_, nullptr, 0, &txn);
  if (rc != 0) return LmdbError(rc, "begin");
  Status st = Put(txn, format_, "replicas", w.s, "put replicas");
  if (!st.ok()) {
    mdb_txn_abort(txn);
    return st;
  }
  rc = mdb_txn_commit(txn);
  if (rc != 0) return LmdbError(rc, "commit");
  replicas_ = replicas;
  quorum_ = quorum;
  return Status::Ok();
}

Result<MetaDb::Txn> MetaDb::Begin() {
  MDB_txn* txn = nullptr;
  const int rc = mdb_txn_begin(env_, nullptr, 0, &txn);
  if (rc != 0) return LmdbError(rc, "begin");
  return Txn(this, txn);
}

MetaDb::Txn::~Txn() {
  if (txn_ != nullptr) mdb_txn_abort(txn_);
}

Status MetaDb::Txn::PutVolume(const VolumeRec& v) {
  Writer w;
  w.U8(kRecordVersion);
  w.U64(v.size);
  w.U64(v.layer);
  w.U64(static_cast<uint64_t>(v.created_ns));
  w.Str(v.origin);
  return Put(txn_, db_->volumes_, v.name, w.s, "put volume");
}

Status MetaDb::Txn::DeleteVolume(std::string_view name) {
  return Del(txn_, db_->volumes_, name, "delete volume");
}

Status MetaDb::Txn::PutSnapshot(const SnapshotRec& s) {
  Writer w;
  w.U8(kRecordVersion);
  w.U64(s.size);
  w.U64(s.layer);
  w.U64(static_cast<uint64_t>(s.created_ns));
  return Put(txn_, db_->snapshots_, SnapshotKey(s.volume, s.name), w.s, "put snapshot");
}

Status MetaDb::Txn::DeleteSnapshot(std::string_view volume, std::string_view name) {
  return Del(txn_, db_->snapshots_, SnapshotKey(volume, name), "delete snapshot");
}

Status MetaDb::Txn::PutLayer(const LayerRec& l) {
  Writer w;
  w.U8(kRecordVersion);
  w.U64(l.parent);
  w.U64(l.limit);
  return Put(txn_, db_->layers_, U64Key(l.id), w.s, "put layer");
}

Status MetaDb::Txn::DeleteLayer(uint64_t id) {
  QCLOUD_RETURN_IF_ERROR(Del(txn_, db_->layers_, U64Key(id), "delete layer"));
  // Its extents are the keys that start with the layer's 8 bytes.
  MDB_cursor* cur = nullptr;
  int rc = mdb_cursor_open(txn_, db_->extents_, &cur);
  if (rc != 0) return LmdbError(rc, "cursor");
  const std::string from = ExtentKey(id, 0);
  MDB_val k = Val(from), v;
  for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
       rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
    if (k.mv_size != 16 || std::memcmp(k.mv_data, from.data(), 8) != 0) break;
    rc = mdb_cursor_del(cur, 0);
    if (rc != 0) break;
  }
  mdb_cursor_close(cur);
  return rc == 0 || rc == MDB_NOTFOUND ? Status::Ok() : LmdbError(rc, "delete layer extents");
}

Status MetaDb::Txn::PutExtent(uint64_t layer, uint64_t index, const ExtentRec& e) {
  Writer w;
  w.U8(kRecordVersion);
  w.U32(e.phys);
  for (uint64_t b : e.bits) w.U64(b);
  return Put(txn_, db_->extents_, ExtentKey(layer, index), w.s, "put extent");
}

Status MetaDb::Txn::DeleteExtent(uint64_t layer, uint64_t index) {
  return Del(txn_, db_->extents_, ExtentKey(layer, index), "delete extent");
}

Status MetaDb::Txn::PutNextLayer(uint64_t next) {
  Writer w;
  w.U64(next);
  return Put(txn_, db_->counters_, "next_layer", w.s, "put counter");
}

Status MetaDb::Txn::Commit() {
  const int rc = mdb_txn_commit(txn_);
  txn_ = nullptr;
  return rc == 0 ? Status::Ok() : LmdbError(rc, "commit");
}

}  // namespace qcloud::block::detail
