// Prints a registry full of corner cases in the text exposition format, for
// prometheus_text_parse.py to parse back with Prometheus' own parsers. The
// expected samples are listed in that script; keep the two in step.
#include <cmath>
#include <iostream>
#include <limits>

#include "qcloud/core/metrics.h"

int main() {
  using namespace qcloud;
  MetricsRegistry reg;
  auto* c = reg.AddCounter("qcloud_test_requests_total", "Requests by command.\nSecond line \\ end.",
                           {"cmd", "note"})
                .value();
  c->WithLabels({"get", "plain"}).Increment(12345);
  c->WithLabels({"set", "quote \" backslash \\ newline \n done"}).Increment(7);
  c->WithLabels({"delete", "utf-8: 缓存 ✓"}).Increment(1);
  c->WithLabels({"empty", ""}).Increment(0);

  auto* g = reg.AddGauge("qcloud_test_temperature_celsius", "A gauge with odd values.", {"where"})
                .value();
  g->WithLabels({"neg"}).Set(-12.5);
  g->WithLabels({"big"}).Set(1e300);
  g->WithLabels({"tiny"}).Set(1.5e-9);
  g->WithLabels({"inf"}).Set(std::numeric_limits<double>::infinity());
  g->WithLabels({"neginf"}).Set(-std::numeric_limits<double>::infinity());
  g->WithLabels({"nan"}).Set(std::nan(""));

  auto* h = reg.AddHistogram("qcloud_test_latency_seconds", "Request latency.", {0.001, 0.01, 0.1},
                             {"op"})
                .value();
  for (double v : {0.0005, 0.002, 0.05, 0.5, 0.0001}) h->WithLabels({"get"}).Observe(v);

  (void)reg.AddCallback("qcloud_test_items", "Items stored.", MetricType::kGauge,
                        [] { return 42.0; });
  std::cout << reg.RenderText();
  return 0;
}
