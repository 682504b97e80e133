// qcloud-autoscaler: the scheduling platform's command line.
//
//   qcloud-autoscaler place --hosts HOSTS.json --instances INSTANCES.json [--strategy NAME] [--headroom 0.1]
//
// places the instances on the hosts with qcloud::sched's placement engine
// (formats: qcloud/sched/placement_json.h) and prints one JSON object on
// stdout: {"placements": {...}, "unplaced": [...], "hosts_used": N}. Exit
// 0; 2 with "qcloud-autoscaler: <why>" on stderr for invalid input (a file
// that is not there or not in the format, a bad value, an unknown
// strategy). Strategies: local-search (default), ffd, best-fit, spread,
// dot-product.
//
// The trigger engine's loop (--config FILE) is not in this program yet.

#include <charconv>
#include <iostream>
#include <memory>
#include <string>

#include "cli.h"
#include "qcloud/core/env.h"
#include "qcloud/sched/placement.h"
#include "qcloud/sched/placement_json.h"

using namespace qcloud;

namespace {

constexpr char kProgram[] = "qcloud-autoscaler";

int Fail(const Status& s) {
  std::cerr << kProgram << ": " << s.ToString() << "\n";
  return 2;
}

int Place(int argc, char** argv) {
  std::string hosts_path, instances_path, strategy_name = "local-search", headroom_text = "0";
  examples::CommandLine cli(std::string(kProgram) + " place", "place instances on hosts (multi-resource bin packing)");
  cli.AddString("hosts", &hosts_path, "JSON array of hosts: name, capacity, labels (required)");
  cli.AddString("instances", &instances_path,
                "JSON array of instances: name, demand, anti_affinity, spread_by, affinity, host_labels (required)");
  cli.AddString("strategy", &strategy_name, "local-search, ffd, best-fit, spread or dot-product");
  cli.AddString("headroom", &headroom_text, "fraction of every capacity kept free, 0 <= h < 1");
  if (auto exit = cli.Parse(argc, argv)) return *exit;
  if (hosts_path.empty() || instances_path.empty()) return Fail(InvalidArgument("--hosts and --instances are required"));
  auto strategy = sched::ParseStrategy(strategy_name);
  if (!strategy.ok()) return Fail(strategy.status().WithContext("--strategy"));
  double headroom = 0;
  auto [end, ec] = std::from_chars(headroom_text.data(), headroom_text.data() + headroom_text.size(), headroom);
  if (ec != std::errc() || end != headroom_text.data() + headroom_text.size()) {
    return Fail(InvalidArgument("--headroom: \"" + headroom_text + "\" is not a number"));
  }
  auto env = OpenPosixEnv();
  if (!env.ok()) return Fail(env.status());
  auto hosts_text = ReadFileToString(**env, hosts_path, sched::kMaxPlacementJsonBytes);
  if (!hosts_text.ok()) return Fail(hosts_text.status().WithContext("--hosts " + hosts_path));
  auto instances_text = ReadFileToString(**env, instances_path, sched::kMaxPlacementJsonBytes);
  if (!instances_text.ok()) return Fail(instances_text.status().WithContext("--instances " + instances_path));
  auto hosts = sched::ParseHostsJson(*hosts_text);
  if (!hosts.ok()) return Fail(hosts.status().WithContext(hosts_path));
  auto instances = sched::ParseInstancesJson(*instances_text);
  if (!instances.ok()) return Fail(instances.status().WithContext(instances_path));
  auto placed = sched::Place(*hosts, *instances, {.strategy = *strategy, .headroom = headroom});
  if (!placed.ok()) return Fail(placed.status());
  std::cout << sched::PlacementToJson(*placed) << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 2 && std::string(argv[1]) == "place") return Place(argc - 1, argv + 1);
  std::cerr << "usage: " << kProgram
            << " place --hosts HOSTS.json --instances INSTANCES.json [--strategy NAME] [--headroom H]\n"
               "       (the trigger engine's --config mode is not built yet)\n";
  return 2;
}
