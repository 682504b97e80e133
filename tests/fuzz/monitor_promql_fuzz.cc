// Fuzzes the PromQL parser and evaluator, the query API's input. Each
// input is a query: parsed (never crashing, nesting bounded); what parses
// must print back to a query that parses to the same text; and it is
// evaluated over a small in-memory store (a few counters and gauges),
// where every error must be a Status, and every value written as the API
// writes it reads back as the same double. After a NUL byte, the input
// gives the range query's start, end and step (3 x 8 bytes, any values:
// the API takes times up to 9.2e18 ms).
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
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

// Each value formatted as the API writes it parses back to itself.
void CheckValues(const Result<QueryResult>& r) {
  if (!r.ok()) return;
  for (const SeriesPoints& s : r->series) {
    for (const Point& p : s.points) {
      for (const std::string& text : {FormatValue(p.v), FormatScalarValue(p.v)}) {
        const double back = std::strtod(text.c_str(), nullptr);
        const bool same = std::isnan(p.v) ? std::isnan(back) : std::memcmp(&back, &p.v, sizeof back) == 0;
        if (!same && !(text == "+Inf" && std::isinf(back))) std::abort();
      }
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Store* store = new Store();
  std::string_view q(reinterpret_cast<const char*>(data), size);
  int64_t range[3] = {0, 600000, 60000};
  if (const size_t nul = q.find('\0'); nul != std::string_view::npos) {
    std::memcpy(range, data + nul + 1, std::min(sizeof range, size - nul - 1));
    q = q.substr(0, nul);
  }
  auto e = Expr::Parse(q);
  if (!e.ok()) return 0;
  const std::string printed = e->ToString();
  auto again = Expr::Parse(printed);
  if (!again.ok() || again->ToString() != printed) std::abort();
  QueryEngine engine(*store->db, {.max_samples = 100000});
  CheckValues(engine.Instant(*e, 300000));
  if (e->type() == ValueType::kScalar || e->type() == ValueType::kVector) {
    // The API's bounds on what reaches the engine: times within 9.2e18 ms,
    // a step of at least 1 ms.
    const auto clamp = [](int64_t v) { return std::clamp<int64_t>(v, -9'200'000'000'000'000'000, 9'200'000'000'000'000'000); };
    CheckValues(engine.Range(*e, clamp(range[0]), clamp(range[1]), range[2]));
  }
  return 0;
}
