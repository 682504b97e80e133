#pragma once

// The configuration of qcloud-autoscaler (README, "qcloud-autoscaler"), in
// YAML:
//
//   prometheus: http://127.0.0.1:9090      # a Prometheus-compatible /api/v1/query
//   interval: 5s                           # one query round and one engine tick
//   listen: 127.0.0.1:9105                 # /metrics and /api/v1/decisions
//   state_file: /var/lib/qcloud-autoscaler/state.json   # optional
//   hook:
//     command: /usr/local/bin/scale        # the decision's JSON on stdin; or
//     webhook: http://127.0.0.1:8080/scale # POSTed there
//     timeout: 10s
//   metrics:                               # what the policies may use
//     - name: cpu
//       query: avg by (group, instance) (rate(node_cpu_seconds_total{mode!="idle"}[1m]))
//       group_label: group                 # default "group"
//       instance_label: instance           # default "instance"
//   groups:
//     - {name: web, min_size: 2, max_size: 20, initial_size: 4, warmup: 2m,
//        target_tracking: {metric: cpu, target: 0.6},
//        predictive: {season: 24h, bucket: 5m, lead: 10m}}
//   alarms:
//     - {name: cpu-high, group: web, metric: cpu, aggregation: avg, window: 1m,
//        comparison: ">", threshold: 0.8, duration: 3m, hysteresis: 0.05}
//   actions:
//     - {name: add-two, alarm: cpu-high, kind: scale_out, adjustment: 2, cooldown: 5m}
//
// Keys as in trigger.h's structs; durations by core's rule ("250ms", "5m");
// an adjustment "25%" is a percentage; kinds scale_out, scale_in, set_size,
// migrate, notify, trigger (with `trigger: ACTION`); aggregations avg, max,
// min; comparisons >, >=, <, <=. An unknown key is an error (a misspelt
// "cooldwn" must not pass silently), as is a document over 1 MiB.
// Errors: kInvalidArgument, "config: <where>: <what>". The policies'
// meaning is checked by Engine::Open().

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "qcloud/core/export.h"
#include "qcloud/core/result.h"
#include "qcloud/sched/trigger.h"

namespace qcloud::sched {

struct MetricQuery {
  std::string name;
  std::string query;
  std::string group_label = "group";
  std::string instance_label = "instance";
};

struct HookConfig {
  std::string command;  // run with the decision's JSON on stdin
  std::string webhook;  // or POSTed to this http:// URL
  std::chrono::milliseconds timeout = std::chrono::seconds(10);
};

struct AutoscalerConfig {
  std::string prometheus;
  std::chrono::milliseconds interval = std::chrono::seconds(5);
  std::string listen = "127.0.0.1:9105";
  std::string state_file;
  HookConfig hook;
  std::vector<MetricQuery> metrics;
  std::vector<GroupSpec> groups;
  std::vector<AlarmPolicy> alarms;
  std::vector<ActionPolicy> actions;
};

inline constexpr size_t kMaxConfigBytes = size_t{1} << 20;

QCLOUD_EXPORT Result<AutoscalerConfig> ParseAutoscalerConfig(std::string_view yaml);

}  // namespace qcloud::sched
