#include "kv/stats.h"

#include <unistd.h>

#include <bit>

#include <fmt/format.h>

namespace qcloud::kv {

StatsSnapshot TakeStatsSnapshot(const ServerShared& shared) {
  StatsSnapshot s;
  s.shared = &shared;
  s.store = shared.store->Stats();
  if (shared.loop != nullptr) s.conn = shared.loop->stats();
  if (shared.workers != nullptr) {
    for (const WorkerCounters& w : *shared.workers) {
      size_t i = 0;
#define QCLOUD_KV_SUM(name) s.counters[i++] += w.name.load(std::memory_order_relaxed);
      QCLOUD_KV_COUNTERS(QCLOUD_KV_SUM)
#undef QCLOUD_KV_SUM
    }
  }
  ::getrusage(RUSAGE_SELF, &s.usage);
  s.uptime = shared.store->Uptime();
  s.now_unix = shared.started_unix + s.uptime;
  return s;
}

namespace {

// Row readers: captureless lambdas, so the table is plain data.
#define QCLOUD_U(expr) [](const StatsSnapshot& s) -> StatValue { return static_cast<uint64_t>(expr); }
#define QCLOUD_I(expr) [](const StatsSnapshot& s) -> StatValue { return static_cast<int64_t>(expr); }
#define QCLOUD_T(expr) [](const StatsSnapshot& s) -> StatValue { return std::string(expr); }
#define QCLOUD_C(name) QCLOUD_U(s.counters[kCounter_##name])
// Rows memcached prints whose value does not depend on the snapshot.
#define QCLOUD_K(expr) [](const StatsSnapshot&) -> StatValue { return static_cast<int64_t>(expr); }

std::string Seconds(const timeval& tv) { return fmt::format("{}.{:06}", tv.tv_sec, tv.tv_usec); }

using enum StatType;

// clang-format off
const StatRow kGeneral[] = {
  {"pid", nullptr, kText, "", QCLOUD_K(::getpid())},
  {"uptime", "uptime_seconds", kGauge, "Seconds since the node started.", QCLOUD_U(s.uptime)},
  {"time", nullptr, kText, "", QCLOUD_I(s.now_unix)},
  {"version", nullptr, kText, "", QCLOUD_T(s.shared->options.version)},
  {"pointer_size", nullptr, kText, "", QCLOUD_K(sizeof(void*) * 8)},
  {"rusage_user", nullptr, kText, "", QCLOUD_T(Seconds(s.usage.ru_utime))},
  {"rusage_system", nullptr, kText, "", QCLOUD_T(Seconds(s.usage.ru_stime))},
  {"max_connections", "max_connections", kGauge, "Connection limit (memcached -c).",
   QCLOUD_U(s.shared->options.max_connections)},
  {"curr_connections", "connections", kGauge, "Open client connections.",
   QCLOUD_I(s.conn.curr_connections)},
  {"total_connections", "connections_accepted", kCounter, "Client connections accepted.",
   QCLOUD_U(s.conn.total_connections)},
  {"rejected_connections", "connections_rejected", kCounter,
   "Connections refused at the connection limit.", QCLOUD_U(s.conn.rejected_connections)},
  {"connection_structures", nullptr, kText, "", QCLOUD_I(s.conn.curr_connections)},
  {"cmd_get", "cmd_get", kCounter, "Keys looked up (get, gets, gat, gats, mg).", QCLOUD_C(cmd_get)},
  {"cmd_set", "cmd_set", kCounter, "Storage commands.", QCLOUD_C(cmd_set)},
  {"cmd_flush", "cmd_flush", kCounter, "flush_all commands.", QCLOUD_C(cmd_flush)},
  {"cmd_touch", "cmd_touch", kCounter, "Touch commands.", QCLOUD_C(cmd_touch)},
  {"cmd_meta", "cmd_meta", kCounter, "Meta commands.", QCLOUD_C(cmd_meta)},
  {"get_hits", "get_hits", kCounter, "Lookups that found the key.", QCLOUD_C(get_hits)},
  {"get_misses", "get_misses", kCounter, "Lookups that did not.", QCLOUD_C(get_misses)},
  {"get_expired", nullptr, kText, "", QCLOUD_K(0)},
  {"get_flushed", nullptr, kText, "", QCLOUD_K(0)},
  {"delete_misses", "delete_misses", kCounter, "Deletes of absent keys.", QCLOUD_C(delete_misses)},
  {"delete_hits", "delete_hits", kCounter, "Deletes that removed an item.", QCLOUD_C(delete_hits)},
  {"incr_misses", "incr_misses", kCounter, "incr of absent keys.", QCLOUD_C(incr_misses)},
  {"incr_hits", "incr_hits", kCounter, "incr that changed a value.", QCLOUD_C(incr_hits)},
  {"decr_misses", "decr_misses", kCounter, "decr of absent keys.", QCLOUD_C(decr_misses)},
  {"decr_hits", "decr_hits", kCounter, "decr that changed a value.", QCLOUD_C(decr_hits)},
  {"cas_misses", "cas_misses", kCounter, "cas of absent keys.", QCLOUD_C(cas_misses)},
  {"cas_hits", "cas_hits", kCounter, "cas that stored.", QCLOUD_C(cas_hits)},
  {"cas_badval", "cas_badval", kCounter, "cas refused: the item had changed.", QCLOUD_C(cas_badval)},
  {"touch_hits", "touch_hits", kCounter, "Touches of present keys.", QCLOUD_C(touch_hits)},
  {"touch_misses", "touch_misses", kCounter, "Touches of absent keys.", QCLOUD_C(touch_misses)},
  {"store_too_large", "store_too_large", kCounter, "Writes refused: value over item_size_max.",
   QCLOUD_C(store_too_large)},
  {"store_no_memory", "store_no_memory", kCounter, "Writes refused: no memory.",
   QCLOUD_C(store_no_memory)},
  {"auth_cmds", nullptr, kText, "", QCLOUD_K(0)},
  {"auth_errors", nullptr, kText, "", QCLOUD_K(0)},
  {"bytes_read", "read_bytes", kCounter, "Bytes received from clients.", QCLOUD_U(s.conn.bytes_read)},
  {"bytes_written", "written_bytes", kCounter, "Bytes sent to clients.",
   QCLOUD_U(s.conn.bytes_written)},
  {"limit_maxbytes", "memory_limit_bytes", kGauge, "Item memory budget.",
   QCLOUD_U(s.store.memory_bytes)},
  {"accepting_conns", nullptr, kText, "", QCLOUD_K(1)},
  {"threads", "threads", kGauge, "Worker threads.", QCLOUD_U(s.shared->options.threads)},
  {"conn_yields", nullptr, kText, "", QCLOUD_K(0)},
  {"hash_power_level", "hash_power_level", kGauge, "log2 of the hash buckets.",
   QCLOUD_U(s.store.hash_buckets == 0 ? 0 : std::bit_width(s.store.hash_buckets) - 1)},
  {"hash_bytes", "hash_bytes", kGauge, "Memory of the hash index.", QCLOUD_U(s.store.index_bytes)},
  {"hash_is_expanding", nullptr, kText, "", QCLOUD_K(0)},
  {"bytes", "item_bytes", kGauge, "Bytes of live items (memcached's accounting).",
   QCLOUD_U(s.store.item_bytes)},
  {"curr_items", "items", kGauge, "Live items, in memory and on the cold tier.",
   QCLOUD_U(s.store.curr_items)},
  {"total_items", "items_stored", kCounter, "Items ever stored.", QCLOUD_U(s.store.total_items)},
  {"expired_unfetched", "expired_unfetched", kCounter, "Items expired without a read.",
   QCLOUD_U(s.store.expired_unfetched)},
  {"evicted_unfetched", "evicted_unfetched", kCounter, "Items evicted without a read.",
   QCLOUD_U(s.store.evicted_unfetched)},
  {"evictions", "evictions", kCounter, "Live items evicted to make room.",
   QCLOUD_U(s.store.evictions)},
  {"reclaimed", "reclaimed", kCounter, "Expired or flushed items whose memory was reused.",
   QCLOUD_U(s.store.reclaimed)},
  {"block_size", "block_size_bytes", kGauge, "Bytes per memory block.", QCLOUD_U(s.store.block_size)},
  {"total_blocks", "blocks", kGauge, "Memory blocks in the pool.", QCLOUD_U(s.store.total_blocks)},
  {"used_blocks", "blocks_used", kGauge, "Memory blocks holding items.", QCLOUD_U(s.store.used_blocks)},
  {"protocol_errors", "protocol_errors", kCounter, "Requests that broke the protocol.",
   QCLOUD_C(protocol_errors)},
  {"cold_items", "cold_items", kGauge, "Items on the cold (SSD) tier.", QCLOUD_U(s.store.cold_items)},
  {"cold_sunk", "cold_sunk", kCounter, "Items written to the cold tier.", QCLOUD_U(s.store.cold_sunk)},
  {"cold_reactivated", "cold_reactivated", kCounter, "Cold items read back into memory.",
   QCLOUD_U(s.store.cold_reactivated)},
  {"cold_errors", "cold_errors", kCounter, "Cold tier I/O or checksum failures.",
   QCLOUD_U(s.store.cold_errors)},
};

const StatRow kCold[] = {
  {"cold_items", "cold_items", kGauge, "", QCLOUD_U(s.store.cold_items)},
  {"cold_segments", "cold_segments", kGauge, "Segment files of the cold tier.",
   QCLOUD_U(s.store.cold_segments)},
  {"cold_disk_bytes", "cold_disk_bytes", kGauge, "Size of the cold tier's segment files.",
   QCLOUD_U(s.store.cold_disk_bytes)},
  {"cold_live_bytes", "cold_live_bytes", kGauge, "Bytes of live records on the cold tier.",
   QCLOUD_U(s.store.cold_live_bytes)},
  {"cold_stub_bytes", "cold_stub_bytes", kGauge, "Memory of the cold items' stubs.",
   QCLOUD_U(s.store.cold_stub_bytes)},
  {"cold_sunk", "cold_sunk", kCounter, "", QCLOUD_U(s.store.cold_sunk)},
  {"cold_reactivated", "cold_reactivated", kCounter, "", QCLOUD_U(s.store.cold_reactivated)},
  {"cold_reads", "cold_reads", kCounter, "Record reads from the cold tier.",
   QCLOUD_U(s.store.cold_reads)},
  {"cold_compactions", "cold_compactions", kCounter, "Segments cleaned.",
   QCLOUD_U(s.store.cold_compactions)},
  {"cold_full", "cold_full", kCounter, "Sinks refused because the tier was full.",
   QCLOUD_U(s.store.cold_full)},
  {"cold_errors", "cold_errors", kCounter, "", QCLOUD_U(s.store.cold_errors)},
  {"cold_recovered", "cold_recovered", kGauge, "Items found on disk at start.",
   QCLOUD_U(s.store.cold_recovered)},
};
// clang-format on

#undef QCLOUD_U
#undef QCLOUD_I
#undef QCLOUD_T
#undef QCLOUD_C
#undef QCLOUD_K

}  // namespace

std::span<const StatRow> GeneralStats() { return kGeneral; }
std::span<const StatRow> ColdStats() { return kCold; }

double StatNumber(const StatValue& v) {
  if (const auto* u = std::get_if<uint64_t>(&v)) return static_cast<double>(*u);
  if (const auto* i = std::get_if<int64_t>(&v)) return static_cast<double>(*i);
  return 0;
}

std::string StatText(const StatValue& v) {
  if (const auto* u = std::get_if<uint64_t>(&v)) return fmt::format("{}", *u);
  if (const auto* i = std::get_if<int64_t>(&v)) return fmt::format("{}", *i);
  return std::get<std::string>(v);
}

}  // namespace qcloud::kv
