// Uses a slice of every part of qcloud::core, and qcloud::kv's store,
// through the installed headers.
#include <cstdio>
#include <cstdlib>
#include <string>

#include "qcloud/core/compress.h"
#include "qcloud/core/env.h"
#include "qcloud/core/hash.h"
#include "qcloud/core/metrics.h"
#include "qcloud/core/result.h"
#include "qcloud/core/runtime.h"
#include "qcloud/kv/store.h"

#define EXPECT(cond)                                              \
  do {                                                            \
    if (!(cond)) {                                                \
      std::fprintf(stderr, "consumer: failed: %s\n", #cond);     \
      return 1;                                                   \
    }                                                             \
  } while (0)

int main() {
  using namespace qcloud;
  EXPECT(ToHex(AsBytes(Md5(std::string_view("abc")))) == "900150983cd24fb0d6963f7d28e17f72");

  std::string text(10000, 'q');
  auto packed = ZstdCompress(text);
  EXPECT(packed.ok());
  auto unpacked = ZstdDecompress(packed->readable(), text.size());
  EXPECT(unpacked.ok() && unpacked->readable().AsStringView() == text);

  auto env = OpenPosixEnv();
  EXPECT(env.ok());
  char dir[] = "/tmp/qcloud-consumer-XXXXXX";
  EXPECT(mkdtemp(dir) != nullptr);
  std::string path = JoinPath(dir, "f");
  EXPECT(WriteFileAtomically(**env, path, std::string_view("installed")).ok());
  EXPECT(ReadFileToString(**env, path).value_or("") == "installed");
  EXPECT((*env)->RemoveFile(path).ok());

  MetricsRegistry reg;
  auto* c = reg.AddCounter("consumer_runs_total", "Runs.").value();
  c->Get().Increment();
  EXPECT(reg.RenderText().find("consumer_runs_total 1") != std::string::npos);

  auto rt = Runtime::Open({.threads = 1, .stop_signals = StopSignals::kIgnore});
  EXPECT(rt.ok());
  auto ep = (*rt)->Listen(ParseEndpoint("127.0.0.1:0").value(),
                          [](boost::asio::ip::tcp::socket, size_t) {});
  EXPECT(ep.ok() && ep->port() != 0);
  (*rt)->Start();
  (*rt)->Stop();
  EXPECT((*rt)->Join().ok());

  auto store = kv::Store::Open({.memory_bytes = 8 << 20});
  EXPECT(store.ok());
  EXPECT((*store)->Set("user:42", "alice", {.flags = 5}).outcome == kv::Outcome::kOk);
  std::string value;
  uint32_t flags = 0;
  EXPECT((*store)->Get("user:42", &value, &flags) && value == "alice" && flags == 5);

  std::printf("consumer: qcloud::core and qcloud::kv work (io backend %s)\n",
              std::string((*env)->io_backend()).c_str());
  return 0;
}
