#pragma once

// qcloud::sched placement — which host each instance (VM, container) runs
// on: multi-dimensional bin packing under constraints, as CEE's scheduler
// places by resource use.
//
//   std::vector<Host> hosts = {{.name = "h1", .capacity = {{"cpu", 32}, {"mem", 128}}, .labels = {{"rack", "r1"}}}};
//   std::vector<Instance> vms = {{.name = "i1", .demand = {{"cpu", 2}, {"mem", 8}}, .anti_affinity = "svc-a"}};
//   Placement p = Place(hosts, vms, {.strategy = Strategy::kLocalSearch}).value();
//   p.placements.at("i1");  // "h1"
//
// Resources are free-form names ("cpu", "mem", "disk", "net", "gpu", ...);
// a resource a host does not list is 0 there. The constraints, never
// violated by any strategy (Check() verifies a placement against them):
//   capacity      the demands on a host fit in (1 - headroom) of each of its
//                 capacities;
//   anti_affinity at most one instance of a group per host, or, with
//                 spread_by = a host label name, per value of that label
//                 (one replica per rack); a host without the label takes
//                 none of such a group;
//   affinity      instances of one affinity group share one host (placed
//                 together, or not at all);
//   host_labels   a host must carry each of these label values;
//   pinned_host   the instance runs there already and is not moved (its
//                 demand counts there first; unplaced if it no longer fits).
// An instance that cannot be placed is listed in `unplaced` with the
// reason (no host large enough in a resource, no host with its labels,
// its anti-affinity domains all taken, or no room left).
//
// Strategies:
//   kFirstFitDecreasing  the reference: instances by size (the sum over
//                        resources of demand / the largest capacity),
//                        largest first, each on the first host it fits;
//   kBestFit             the same order, each on the host it leaves the
//                        least room in (by its tightest resource), among the
//                        first few with room;
//   kSpread              the same order, each on the host it leaves the most
//                        room in: load spread over all hosts;
//   kDotProduct          Tetris, host by host: a host takes the instance whose
//                        demand best aligns with what the host has left (dot
//                        product, normalized by its capacity) until none fits;
//   kLocalSearch         kDotProduct, then hosts emptied, least filled first,
//                        by moving their instances onto the other hosts in use
//                        while that frees a host (default).
// Hosts are tried in the order given; for packing, give the preferred
// (cheaper, fuller) hosts first. Every strategy ends with a first-fit pass
// over what is left, so an instance is unplaced only when no host takes it.
//
// Bounds: at most kMaxResources distinct resource names in one problem;
// demands and capacities finite and >= 0; names unique. Violations are
// kInvalidArgument with the offending name.
//
// Thread safety: Place() and Check() are pure functions.

#include <cstddef>
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "qcloud/core/export.h"
#include "qcloud/core/result.h"
#include "qcloud/core/status.h"

namespace qcloud::sched {

inline constexpr size_t kMaxResources = 16;

struct Host {
  std::string name;
  std::map<std::string, double> capacity;     // resource -> amount; absent = 0
  std::map<std::string, std::string> labels;  // e.g. rack -> r1
};

struct Instance {
  std::string name;
  std::map<std::string, double> demand;            // resource -> amount; absent = 0
  std::string anti_affinity;                       // group; "" = none
  std::string spread_by;                           // with anti_affinity: a host label; "" = per host
  std::string affinity;                            // group placed on one host together; "" = none
  std::map<std::string, std::string> host_labels;  // required host labels; empty = any host
  std::string pinned_host;                         // already runs there and stays; "" = free to place
};

enum class Strategy : uint8_t {
  kFirstFitDecreasing,
  kBestFit,
  kSpread,
  kDotProduct,
  kLocalSearch,
};

// "ffd", "best-fit", "spread", "dot-product", "local-search".
QCLOUD_EXPORT const char* StrategyName(Strategy s) noexcept;
// kInvalidArgument for an unknown name.
QCLOUD_EXPORT Result<Strategy> ParseStrategy(std::string_view name);

struct PlacementOptions {
  Strategy strategy = Strategy::kLocalSearch;  // see the header comment; default local search
  double headroom = 0.0;                       // fraction of each capacity kept free, 0 <= h < 1; default 0
  int local_search_passes = 16;                // kLocalSearch: rounds of emptying hosts; default 16
};

struct Unplaced {
  std::string name;
  std::string reason;
};

struct Placement {
  std::map<std::string, std::string> placements;  // instance -> host
  std::vector<Unplaced> unplaced;                 // in input order
  size_t hosts_used = 0;
};

// Places every instance it can. kInvalidArgument for invalid input (see
// Bounds; also an anti_affinity group whose members disagree on
// spread_by, or an affinity group with two members of one anti-affinity
// group).
QCLOUD_EXPORT Result<Placement> Place(std::span<const Host> hosts, std::span<const Instance> instances,
                                      const PlacementOptions& options = {});

// Verifies `placement` against the constraints (and that each instance is
// either placed or unplaced, on a known host): kInvalidArgument naming the
// first violation, or the input's fault (see Place()).
QCLOUD_EXPORT Status Check(std::span<const Host> hosts, std::span<const Instance> instances,
                           const Placement& placement, double headroom = 0.0);

// The fewest hosts that could hold the instances by capacity alone: per
// resource, the fewest of the largest hosts whose capacities add up to the
// total demand; the largest over resources (for identical hosts,
// ceil(total demand / capacity)). Constraints ignored.
QCLOUD_EXPORT size_t LowerBound(std::span<const Host> hosts, std::span<const Instance> instances,
                                double headroom = 0.0);

// Rebalancing: from where instances run now (`current`: instance -> host)
// and, optionally, what they have used (`usage`: instance -> samples of
// resource -> amount; an instance's demand is then the given percentile of
// its samples per resource instead of its declared demand), a bounded list
// of migrations that either frees hosts (kFreeHosts: the least-filled
// hosts emptied onto the others, a host only when all of it fits) or lowers
// the peak (kLowerPeak: an instance moved off the most loaded host, by its
// tightest resource, onto the host where the peak falls most, while it
// falls). Every step keeps every constraint (Check() of the result holds
// against the same demands); pinned instances and affinity groups stay.
enum class RebalanceGoal : uint8_t { kFreeHosts, kLowerPeak };

struct RebalanceOptions {
  RebalanceGoal goal = RebalanceGoal::kFreeHosts;
  size_t max_moves = 100;       // migrations at most
  double percentile = 95;       // of usage samples, when given
  double headroom = 0.0;        // as in PlacementOptions
};

struct Migration {
  std::string instance, from, to;
  double gain = 0;              // kFreeHosts: 1 on the move that frees a host, else 0; kLowerPeak: peak drop
  std::string why;              // "frees h7", "peak 0.97 -> 0.91 (h3 cpu)"
};

struct RebalancePlan {
  std::vector<Migration> moves;  // in order
  size_t hosts_before = 0, hosts_after = 0;
  double peak_before = 0, peak_after = 0;  // the most loaded host's tightest resource, used / capacity
};

// kInvalidArgument for invalid input (as Place()), an instance placed on an
// unknown host, or a placement that breaks a constraint already.
QCLOUD_EXPORT Result<RebalancePlan> Rebalance(
    std::span<const Host> hosts, std::span<const Instance> instances, const std::map<std::string, std::string>& current,
    const std::map<std::string, std::vector<std::map<std::string, double>>>& usage = {},
    const RebalanceOptions& options = {});

}  // namespace qcloud::sched
