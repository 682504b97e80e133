// Fuzzes the placement command's input: hosts JSON, a 0x00 byte, then
// instances JSON (Boost.JSON underneath, then the engine). Every input
// parses or fails with kInvalidArgument; a problem that parses is placed
// by every strategy, and every answer passes Check(): no constraint is
// broken, each instance is placed or reported, whatever the input; a
// rebalancing of the spread placement keeps every constraint as well.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "qcloud/sched/placement.h"
#include "qcloud/sched/placement_json.h"

using namespace qcloud;
using namespace qcloud::sched;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  const size_t cut = in.find('\0');
  if (cut == std::string_view::npos) return 0;
  auto hosts = ParseHostsJson(in.substr(0, cut));
  auto instances = ParseInstancesJson(in.substr(cut + 1));
  for (const Status& s : {hosts.status(), instances.status()}) {
    if (!s.ok() && s.code() != Errc::kInvalidArgument) std::abort();
  }
  if (!hosts.ok() || !instances.ok() || hosts->size() > 64 || instances->size() > 64) return 0;
  for (Strategy s : {Strategy::kFirstFitDecreasing, Strategy::kBestFit, Strategy::kSpread, Strategy::kDotProduct,
                     Strategy::kLocalSearch}) {
    auto placed = Place(*hosts, *instances, {.strategy = s});
    if (!placed.ok()) {
      if (placed.status().code() != Errc::kInvalidArgument) std::abort();
      return 0;  // the values were refused (negative, NaN, names twice...)
    }
    if (placed->placements.size() + placed->unplaced.size() != instances->size()) std::abort();
    if (!Check(*hosts, *instances, *placed).ok()) std::abort();
    // The answer reads back as itself.
    auto back = ParsePlacementJson(PlacementToJson(*placed));
    if (!back.ok() || back->placements != placed->placements || back->unplaced.size() != placed->unplaced.size()) {
      std::abort();
    }
    if (s != Strategy::kSpread) continue;
    // Rebalancing what was placed keeps every constraint too.
    std::vector<Instance> running;
    for (const Instance& in : *instances) {
      if (placed->placements.contains(in.name)) running.push_back(in);
    }
    for (RebalanceGoal goal : {RebalanceGoal::kFreeHosts, RebalanceGoal::kLowerPeak}) {
      auto plan = Rebalance(*hosts, running, placed->placements, {}, {.goal = goal, .max_moves = 20});
      if (!plan.ok()) std::abort();  // a valid placement is always accepted
      if (plan->moves.size() > 20) std::abort();
      Placement after;
      after.placements = placed->placements;
      for (const Migration& m : plan->moves) {
        if (after.placements.at(m.instance) != m.from) std::abort();
        after.placements[m.instance] = m.to;
      }
      if (!Check(*hosts, running, after).ok()) std::abort();
    }
  }
  return 0;
}
