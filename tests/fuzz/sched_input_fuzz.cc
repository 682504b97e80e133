// Fuzzes the autoscaler's other inputs: its YAML configuration (disk), a
// Prometheus query answer, a heartbeat and a suspicion report (network). Each parses or fails with
// kInvalidArgument; a config that parses either opens an engine or is
// refused by Engine::Open with kInvalidArgument.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "qcloud/core/clock.h"
#include "qcloud/sched/config.h"
#include "qcloud/sched/failure.h"
#include "qcloud/sched/prometheus.h"
#include "qcloud/sched/trigger.h"

using namespace qcloud;
using namespace qcloud::sched;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  // A heartbeat datagram: decoded, it encodes back to the same bytes.
  auto hb = DecodeHeartbeat(in);
  if (hb.ok() && EncodeHeartbeat(*hb) != in) std::abort();
  if (!hb.ok() && hb.status().code() != Errc::kInvalidArgument) std::abort();
  auto report = DecodeSuspicion(in);
  if (report.ok() && EncodeSuspicion(*report) != in) std::abort();
  if (!report.ok() && report.status().code() != Errc::kInvalidArgument) std::abort();
  auto answer = ParsePrometheusVector(in, MetricQuery{.name = "cpu", .query = "q"});
  if (!answer.ok()) {
    if (answer.status().code() != Errc::kInvalidArgument) std::abort();
  } else {
    for (const MetricSample& s : answer->samples) {
      if (s.metric != "cpu") std::abort();
    }
  }
  auto config = ParseAutoscalerConfig(in);
  if (!config.ok()) {
    if (config.status().code() != Errc::kInvalidArgument) std::abort();
    return 0;
  }
  static ManualClock clock;
  EngineOptions o{.clock = &clock};
  for (const MetricQuery& m : config->metrics) o.metrics.push_back(m.name);
  if (config->groups.size() > 100 || config->alarms.size() > 100 || config->actions.size() > 100) return 0;
  for (const GroupSpec& g : config->groups) {
    if (g.predictive && g.predictive->bucket.count() > 0 && g.predictive->season / g.predictive->bucket > 10000) return 0;
  }
  auto engine = Engine::Open(o, config->groups, config->alarms, config->actions);
  if (!engine.ok() && engine.status().code() != Errc::kInvalidArgument) std::abort();
  if (engine.ok()) {
    clock.Advance(std::chrono::seconds(5));
    (void)(*engine)->Tick();
  }
  return 0;
}
