#pragma once

// The placement problem and its answer as JSON, the format of
// `qcloud-autoscaler place` (README, "Placement"):
//
//   hosts:     [{"name": "h1", "capacity": {"cpu": 32, "mem": 128}, "labels": {"rack": "r1"}}, ...]
//   instances: [{"name": "i1", "demand": {"cpu": 2, "mem": 8}, "anti_affinity": "svc-a",
//                "spread_by": "rack", "affinity": "pair-1", "host_labels": {"ssd": "yes"},
//                "pinned_host": "h1"}, ...]
//   answer:    {"placements": {"i1": "h1", ...}, "unplaced": [{"name": ..., "reason": ...}], "hosts_used": N}
//
// "labels", "anti_affinity", "spread_by", "affinity", "host_labels" and
// "pinned_host" are optional; resource names are free-form; amounts are JSON numbers. A
// key the format does not have is refused (a misspelt constraint must not
// be silently dropped). Input is bounded: kMaxPlacementJsonBytes, nesting.
// Errors: kInvalidArgument saying where ("hosts[3].capacity.cpu: not a
// number"); Place() then checks the values themselves.

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "qcloud/core/export.h"
#include "qcloud/core/result.h"
#include "qcloud/sched/placement.h"

namespace qcloud::sched {

inline constexpr size_t kMaxPlacementJsonBytes = size_t{256} << 20;

QCLOUD_EXPORT Result<std::vector<Host>> ParseHostsJson(std::string_view json);
QCLOUD_EXPORT Result<std::vector<Instance>> ParseInstancesJson(std::string_view json);
// One line, keys in the order above, placements sorted by instance name.
QCLOUD_EXPORT std::string PlacementToJson(const Placement& placement);
// The answer read back ("unplaced" and "hosts_used" optional): what runs
// where, for rebalancing and evacuation.
QCLOUD_EXPORT Result<Placement> ParsePlacementJson(std::string_view json);

}  // namespace qcloud::sched
