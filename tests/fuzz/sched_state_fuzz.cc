// Fuzzes the trigger engine's saved state (disk input: RestoreState()).
// Every input is taken or refused with kInvalidArgument; a refused state
// changes nothing; a taken one leaves an engine that ticks and saves.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "qcloud/core/clock.h"
#include "qcloud/sched/trigger.h"

using namespace qcloud;
using namespace qcloud::sched;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static ManualClock clock;
  GroupSpec web{.name = "web", .min_size = 1, .max_size = 50, .initial_size = 4};
  web.target_tracking = TargetTracking{.metric = "cpu", .target = 0.5};
  web.predictive = Predictive{.season = std::chrono::hours(1), .bucket = std::chrono::minutes(5)};
  auto engine = Engine::Open({.clock = &clock}, {web},
                             {{.name = "hot", .group = "web", .metric = "cpu", .threshold = 0.8},
                              {.name = "mem", .group = "web", .metric = "mem", .threshold = 0.9, .per_instance = true}},
                             {{.name = "out", .alarm = "hot"}, {.name = "move", .alarm = "mem", .kind = ActionKind::kMigrate}});
  if (!engine.ok()) std::abort();
  const std::string before = (*engine)->SaveState();
  const Status s = (*engine)->RestoreState(std::string_view(reinterpret_cast<const char*>(data), size));
  if (!s.ok()) {
    if (s.code() != Errc::kInvalidArgument) std::abort();
    if ((*engine)->SaveState() != before) std::abort();
    return 0;
  }
  const int n = (*engine)->Size("web").value();
  if (n < 1 || n > 50) std::abort();
  std::vector<MetricSample> samples = {{"web", "a", "cpu", 0.9}, {"web", "a", "mem", 0.95}};
  (*engine)->Observe(samples);
  clock.Advance(std::chrono::seconds(5));
  for (const Decision& d : (*engine)->Tick()) {
    if (d.to < 1 || d.to > 50) std::abort();
  }
  (void)(*engine)->SaveState();
  return 0;
}
