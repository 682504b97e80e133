#pragma once

// The block store's metadata database: volumes, snapshots, layers and the
// layers' extent maps, in one LMDB environment (<data_dir>/meta). A
// transaction is atomic and durable at Commit() (LMDB syncs its data pages,
// then its meta page). Records are fixed little-endian layouts that start
// with a version byte; a record that does not decode is kCorruption.
//
//   DB "format"    "format"                      -> u32 version, u32 block, u32 extent
//                  "uuid"                        -> 16 random bytes naming the store
//                  "replicas"                    -> u32 write quorum, then the replica
//                                                   locations, each u32 length + bytes
//   DB "volumes"   name                          -> VolumeRec
//   DB "snapshots" volume '\0' snapshot          -> SnapshotRec
//   DB "layers"    u64be layer id                -> LayerRec
//   DB "extents"   u64be layer id, u64be extent  -> u32 phys, 4 x u64 block bits
//   DB "counters"  "next_layer"                  -> u64
//
// Thread safety: one transaction at a time (the store serializes them).

#include <lmdb.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "qcloud/core/result.h"
#include "qcloud/core/status.h"

namespace qcloud::block::detail {

inline constexpr uint32_t kFormatVersion = 1;

struct VolumeRec {
  std::string name;
  uint64_t size = 0;
  uint64_t layer = 0;
  int64_t created_ns = 0;  // unix time
  std::string origin;      // "volume@snapshot" for a clone
};

struct SnapshotRec {
  std::string volume;
  std::string name;
  uint64_t size = 0;
  uint64_t layer = 0;
  int64_t created_ns = 0;
};

struct LayerRec {
  uint64_t id = 0;
  uint64_t parent = 0;              // 0 = none
  uint64_t limit = UINT64_MAX;      // reads at or past this byte do not descend to the parent
};

// One logical extent of a layer: its physical extent and which of its 256
// blocks the layer holds.
struct ExtentRec {
  uint32_t phys = 0;
  std::array<uint64_t, 4> bits{};
};

struct Loaded {
  std::vector<VolumeRec> volumes;
  std::vector<SnapshotRec> snapshots;
  std::vector<LayerRec> layers;
  // (layer, extent index) -> record
  std::vector<std::pair<std::pair<uint64_t, uint64_t>, ExtentRec>> extents;
  uint64_t next_layer = 1;
};

class MetaDb {
 public:
  // Opens or creates the environment in `dir` (created if absent). A new
  // environment gets the format record; an existing one with another
  // version is kCorruption.
  static Result<std::unique_ptr<MetaDb>> Open(const std::string& dir, size_t map_bytes);
  ~MetaDb();
  MetaDb(const MetaDb&) = delete;
  MetaDb& operator=(const MetaDb&) = delete;

  Result<Loaded> Load();
  // The store's identity, made when the environment was created.
  const std::array<std::byte, 16>& uuid() const noexcept { return uuid_; }
  // The replicas the store was last opened with (and their write quorum, 0
  // = majority), so that an Open() that names none keeps them.
  const std::vector<std::string>& replicas() const noexcept { return replicas_; }
  uint32_t write_quorum() const noexcept { return quorum_; }
  Status PutReplicas(const std::vector<std::string>& replicas, uint32_t quorum);

  // A write transaction. Destroyed without Commit(): aborted.
  class Txn {
   public:
    ~Txn();
    Txn(Txn&& other) noexcept : db_(other.db_), txn_(other.txn_) { other.txn_ = nullptr; }
    Txn(const Txn&) = delete;
    Status PutVolume(const VolumeRec& v);
    Status DeleteVolume(std::string_view name);
    Status PutSnapshot(const SnapshotRec& s);
    Status DeleteSnapshot(std::string_view volume, std::string_view name);
    Status PutLayer(const LayerRec& l);
    // Deletes the layer's record and all its extent records.
    Status DeleteLayer(uint64_t id);
    Status PutExtent(uint64_t layer, uint64_t index, const ExtentRec& e);
    Status DeleteExtent(uint64_t layer, uint64_t index);
    Status PutNextLayer(uint64_t next);
    Status Commit();

   private:
    friend class MetaDb;
    Txn(MetaDb* db, MDB_txn* txn) : db_(db), txn_(txn) {}
    MetaDb* db_;
    MDB_txn* txn_;
  };
  Result<Txn> Begin();

 private:
  MetaDb() = default;
  MDB_env* env_ = nullptr;
  std::array<std::byte, 16> uuid_{};
  std::vector<std::string> replicas_;
  uint32_t quorum_ = 0;
  MDB_dbi format_ = 0, volumes_ = 0, snapshots_ = 0, layers_ = 0, extents_ = 0, counters_ = 0;
};

}  // namespace qcloud::block::detail
