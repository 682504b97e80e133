#include "host_stats.h"

#include <unistd.h>

#include <fstream>
#include <sstream>

namespace qcloud::agent {
namespace {

constexpr size_t kMaxLines = 4096;  // bound on lines read from any proc file

// The mode names of /proc/stat's cpu lines, in column order (proc(5)).
constexpr const char* kCpuModes[] = {"user", "nice",  "system", "idle",  "iowait",
                                     "irq",  "softirq", "steal", "guest", "guest_nice"};

void ReadCpu(const std::string& root, HostSnapshot& s) {
  std::ifstream in(root + "/stat");
  std::string line;
  double hz = static_cast<double>(sysconf(_SC_CLK_TCK));
  if (hz <= 0) hz = 100;
  for (size_t n = 0; n < kMaxLines && std::getline(in, line); ++n) {
    if (line.size() < 4 || line.compare(0, 3, "cpu") != 0 || line[3] == ' ') continue;
    std::istringstream fields(line);
    std::string name;
    fields >> name;
    CpuTimes t{.cpu = name.substr(3)};
    uint64_t ticks;
    for (const char* mode : kCpuModes) {
      if (!(fields >> ticks)) break;
      t.seconds[mode] = static_cast<double>(ticks) / hz;
    }
    if (!t.seconds.empty()) s.cpus.push_back(std::move(t));
  }
}

void ReadMemory(const std::string& root, HostSnapshot& s) {
  static const std::map<std::string, std::string> kFields = {
      {"MemTotal:", "total"},     {"MemAvailable:", "available"}, {"MemFree:", "free"},
      {"Buffers:", "buffers"},    {"Cached:", "cached"}};
  std::ifstream in(root + "/meminfo");
  std::string key, unit;
  uint64_t kib;
  std::string line;
  for (size_t n = 0; n < kMaxLines && std::getline(in, line); ++n) {
    std::istringstream fields(line);
    if (!(fields >> key >> kib)) continue;
    auto it = kFields.find(key);
    if (it != kFields.end()) s.memory_bytes[it->second] = static_cast<double>(kib) * 1024;
  }
}

void ReadLoad(const std::string& root, HostSnapshot& s) {
  std::ifstream in(root + "/loadavg");
  in >> s.load1 >> s.load5 >> s.load15;
  if (!in) s.load1 = s.load5 = s.load15 = 0;
}

void ReadNet(const std::string& root, HostSnapshot& s) {
  std::ifstream in(root + "/net/dev");
  std::string line;
  for (size_t n = 0; n < kMaxLines && std::getline(in, line); ++n) {
    auto colon = line.find(':');
    if (colon == std::string::npos) continue;  // the two header lines
    NetDevice d;
    std::istringstream name(line.substr(0, colon));
    name >> d.name;
    std::istringstream fields(line.substr(colon + 1));
    uint64_t v[16];
    int i = 0;
    while (i < 16 && fields >> v[i]) ++i;
    if (i < 10 || d.name.empty()) continue;
    // receive: bytes packets errs drop fifo frame compressed multicast;
    // transmit: bytes packets ...
    d.rx_bytes = v[0];
    d.rx_packets = v[1];
    d.tx_bytes = v[8];
    d.tx_packets = v[9];
    s.net.push_back(std::move(d));
  }
}

}  // namespace

HostSnapshot ReadHost(const std::string& proc_root) {
  HostSnapshot s;
  ReadCpu(proc_root, s);
  ReadMemory(proc_root, s);
  ReadLoad(proc_root, s);
  ReadNet(proc_root, s);
  return s;
}

double CpuBusyFraction(const HostSnapshot& before, const HostSnapshot& after) {
  auto totals = [](const HostSnapshot& s, double& all, double& idle) {
    all = idle = 0;
    for (const auto& c : s.cpus) {
      for (const auto& [mode, secs] : c.seconds) {
        // guest time is already counted in user/nice (proc(5)).
        if (mode == "guest" || mode == "guest_nice") continue;
        all += secs;
        if (mode == "idle" || mode == "iowait") idle += secs;
      }
    }
  };
  double a0, i0, a1, i1;
  totals(before, a0, i0);
  totals(after, a1, i1);
  double d = a1 - a0;
  if (d <= 0) return 0;
  double busy = 1.0 - (i1 - i0) / d;
  return busy < 0 ? 0 : (busy > 1 ? 1 : busy);
}

}  // namespace qcloud::agent
