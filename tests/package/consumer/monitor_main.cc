// Links qcloud::monitor from the installed SDK: a TSDB in a temporary
// directory, samples in through a remote-write body (protobuf + snappy
// stay the library's private business), a PromQL query out.
#include <stdlib.h>

#include <cstdio>
#include <filesystem>
#include <string>

#include "qcloud/monitor/promql.h"
#include "qcloud/monitor/remote_write.h"
#include "qcloud/monitor/tsdb.h"

int main() {
  using namespace qcloud::monitor;
  char tmpl[] = "/tmp/qcloud-monitor-consumer-XXXXXX";
  const std::string dir = ::mkdtemp(tmpl);
  int rc = 1;
  {
    auto db = Tsdb::Open({.data_dir = dir}).value();
    std::vector<SeriesSamples> in = {{Labels::FromPairs({{"__name__", "requests_total"}, {"job", "api"}}).value(),
                                      {{0, 0}, {60000, 60}, {120000, 120}}}};
    const std::string body = EncodeRemoteWrite(in);
    auto decoded = DecodeRemoteWrite(qcloud::ByteView(body)).value();
    (void)db->Append(decoded).value();
    QueryEngine engine(*db);
    auto r = engine.Instant("sum by (job) (rate(requests_total[2m]))", 120000).value();
    if (r.series.size() == 1 && r.series[0].points[0].v == 1.0) rc = 0;
    std::printf("consumer: qcloud::monitor works (rate %s)\n",
                r.series.empty() ? "none" : FormatValue(r.series[0].points[0].v).c_str());
  }
  std::filesystem::remove_all(dir);
  return rc;
}
