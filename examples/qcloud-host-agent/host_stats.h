#pragma once

// Reads a Linux host's counters from procfs: the monitoring agent's view of
// a machine (CPU time by mode, memory, load, network traffic).
//
// Every reader takes the procfs root so tests can point it at a fixture.
// Malformed or missing files give empty results, never a crash: procfs
// layouts differ across kernels.

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace qcloud::agent {

struct CpuTimes {
  std::string cpu;                       // "0", "1", ...
  std::map<std::string, double> seconds;  // mode -> seconds since boot
};

struct NetDevice {
  std::string name;
  uint64_t rx_bytes = 0, rx_packets = 0, tx_bytes = 0, tx_packets = 0;
};

struct HostSnapshot {
  std::vector<CpuTimes> cpus;
  std::map<std::string, double> memory_bytes;  // total, available, free, buffers, cached
  double load1 = 0, load5 = 0, load15 = 0;
  std::vector<NetDevice> net;
};

HostSnapshot ReadHost(const std::string& proc_root);

// Busy fraction of all CPUs between two snapshots, 0..1 (0 when unknown).
double CpuBusyFraction(const HostSnapshot& before, const HostSnapshot& after);

}  // namespace qcloud::agent
