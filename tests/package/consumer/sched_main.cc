// Links qcloud::sched from the installed SDK: two replicas of one service
// placed on two hosts of different racks.
#include <cstdio>
#include <string>
#include <vector>

#include "qcloud/sched/placement.h"

int main() {
  using namespace qcloud::sched;
  std::vector<Host> hosts = {{.name = "h1", .capacity = {{"cpu", 8}}, .labels = {{"rack", "r1"}}},
                             {.name = "h2", .capacity = {{"cpu", 8}}, .labels = {{"rack", "r1"}}},
                             {.name = "h3", .capacity = {{"cpu", 8}}, .labels = {{"rack", "r2"}}}};
  std::vector<Instance> vms = {{.name = "a", .demand = {{"cpu", 2}}, .anti_affinity = "svc", .spread_by = "rack"},
                               {.name = "b", .demand = {{"cpu", 2}}, .anti_affinity = "svc", .spread_by = "rack"}};
  auto p = Place(hosts, vms);
  auto rack = [&](const std::string& host) { return host == "h3" ? "r2" : "r1"; };
  if (!p.ok() || p->placements.size() != 2 ||
      std::string(rack(p->placements.at("a"))) == rack(p->placements.at("b")) || !Check(hosts, vms, *p).ok()) {
    std::fprintf(stderr, "sched consumer: wrong placement\n");
    return 1;
  }
  std::printf("sched consumer: a on %s, b on %s\n", p->placements.at("a").c_str(), p->placements.at("b").c_str());
  return 0;
}
