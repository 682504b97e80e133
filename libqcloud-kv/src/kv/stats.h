#pragma once

// The node's statistics as one table: memcached's `stats` command prints
// it (names, order and formats are memcached 1.6's), and /metrics exports
// its numeric rows to Prometheus (Server::ExportMetrics). One list, so the
// two can never disagree.

#include <sys/resource.h>

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <variant>

#include "kv/session.h"
#include "qcloud/core/tcp_server.h"
#include "qcloud/kv/store.h"

namespace qcloud::kv {

// Every figure a table row may read, taken at one moment.
struct StatsSnapshot {
  StoreStats store;
  TcpServerStats conn;
  std::array<uint64_t, kCounterCount> counters{};  // summed over workers
  rusage usage{};
  uint32_t uptime = 0;
  int64_t now_unix = 0;
  const ServerShared* shared = nullptr;
};

StatsSnapshot TakeStatsSnapshot(const ServerShared& shared);

enum class StatType {
  kCounter,  // only goes up (until `stats reset`): Prometheus counter, "_total"
  kGauge,    // goes up and down: Prometheus gauge
  kText,     // memcached only (version, rusage as "s.us", pid)
};

using StatValue = std::variant<uint64_t, int64_t, std::string>;

struct StatRow {
  const char* name;        // memcached's name
  const char* prometheus;  // metric name without the qcloud_kv_ prefix; null = not exported
  StatType type;
  const char* help;
  StatValue (*read)(const StatsSnapshot&);
};

// `stats` (general), in memcached's order.
std::span<const StatRow> GeneralStats();
// `stats cold`: the SSD tier.
std::span<const StatRow> ColdStats();

// A row's value as a number for Prometheus (strings: 0).
double StatNumber(const StatValue& v);
// A row's value as memcached prints it.
std::string StatText(const StatValue& v);

}  // namespace qcloud::kv
