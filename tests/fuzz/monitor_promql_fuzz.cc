// Fuzzes the PromQL parser and evaluator, the query API's input. Each
// input is a query: parsed (never crashing, nesting bounded); what parses
// must print back to a query that parses to the same text; and it is
// evaluated at a fixed time over a small in-memory store (a few counters
// and gauges), where every error must be a Status.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>

#include "qcloud/monitor/promql.h"
#include "qcloud/testing/mem_env.h"

using namespace qcloud;
using namespace qcloud::monitor;

namespace {

struct Store {
  testing::MemEnv env;
  std::unique_ptr<Tsdb> db;
  Store() {
    db = std::move(Tsdb::Open({.data_dir = "/tsdb", .env = &env})).value();
    std::vector<SeriesSamples> batch;
    for (int s = 0; s < 4; ++s) {
      SeriesSamples ss{*Labels::FromPairs({{"__name__", s % 2 ? "c" : "g"}, {"job", s < 2 ? "a" : "b"},
                                           {"i", std::to_string(s)}}),
                       {}};
      for (int k = 0; k < 40; ++k) ss.samples.push_back({k * 15000, s % 2 ? k * 3.0 : (k * 7 % 5) - 2.0});
      batch.push_back(std::move(ss));
    }
    if (!db->Append(batch).ok()) std::abort();
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Store* store = new Store();
  const std::string_view q(reinterpret_cast<const char*>(data), size);
  auto e = Expr::Parse(q);
  if (!e.ok()) return 0;
  const std::string printed = e->ToString();
  auto again = Expr::Parse(printed);
  if (!again.ok() || again->ToString() != printed) std::abort();
  QueryEngine engine(*store->db, {.max_samples = 100000});
  (void)engine.Instant(*e, 300000);
  if (e->type() == ValueType::kScalar || e->type() == ValueType::kVector) {
    (void)engine.Range(*e, 0, 600000, 60000);
  }
  return 0;
}
