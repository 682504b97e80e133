#pragma once

// qcloud-monitord's configuration, in the YAML its users already write:
// Prometheus's for scraping and alarm rules, Alertmanager's for the route,
// receivers and inhibit rules (the parts qcloud implements).
//
//   global:                          # Prometheus's
//     scrape_interval: 15s           # default 1m
//     scrape_timeout: 10s            # default 10s
//     evaluation_interval: 5s        # default 5s (also accepted at top level)
//   scrape_configs:                  # Prometheus's (scrape.h)
//     - job_name: node
//       scrape_interval: 15s
//       metrics_path: /metrics
//       honor_labels: false
//       static_configs:
//         - targets: ['127.0.0.1:9100']
//           labels: {rack: r1}
//   groups:                          # Prometheus rule files
//     - name: node
//       interval: 5s                 # default: evaluation_interval
//       rules:
//         - alert: HostDown
//           expr: up == 0
//           for: 1m
//           labels: {severity: page}
//           annotations: {summary: "{{ $labels.instance }} is down"}
//   evaluation_interval: 5s          # default 5s
//   route:                           # Alertmanager's root route
//     receiver: sms
//     group_by: [alertname, cluster]
//     group_wait: 30s
//     group_interval: 5m
//     repeat_interval: 4h
//   receivers:
//     - name: sms
//       webhook_configs:
//         - url: http://127.0.0.1:5001/hook
//           send_resolved: true
//       max_per_minute: 10           # qcloud's: a rate limit per receiver
//   inhibit_rules:
//     - source_matchers: ['alertname="HostDown"']
//       target_matchers: ['alertname=~"Service.*"']
//       equal: [instance]
//
// Parsed with yaml-cpp (Debian libyaml-cpp-dev). Unknown keys are errors,
// as in Prometheus, so a typo does not pass for a setting.

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "qcloud/core/export.h"
#include "qcloud/core/result.h"
#include "qcloud/monitor/notify.h"
#include "qcloud/monitor/rules.h"
#include "qcloud/monitor/scrape.h"
#include "qcloud/monitor/webhook.h"

namespace qcloud::monitor {

struct RuleGroup {
  std::string name;
  std::chrono::milliseconds interval{0};  // 0 = evaluation_interval
  std::vector<AlertRule> rules;
};

struct MonitorConfig {
  std::chrono::milliseconds evaluation_interval = std::chrono::seconds(5);
  std::vector<ScrapeTarget> scrape_targets;  // one per static target of every scrape_config
  std::vector<RuleGroup> groups;
  RouteOptions route;               // with its inhibit rules
  std::string receiver;             // the route's receiver ("" = none: alarms are not sent)
  std::vector<WebhookOptions> webhooks;  // the route's receiver's webhook_configs
  bool send_resolved = true;
};

// kInvalidArgument naming the key or line for a bad document.
QCLOUD_EXPORT Result<MonitorConfig> ParseConfig(std::string_view yaml);

}  // namespace qcloud::monitor
