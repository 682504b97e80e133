// Fuzzes qcloud-kvd's request parser: the whole session state machine
// (memcached text, meta and binary protocols) over a small real store.
// The first byte picks how the input is cut into socket reads, so framing
// across every split is exercised. Checks, besides ASan/UBSan: the session
// never consumes more than it was given, and the replies waiting at any
// time stay under the output high-water mark plus one item, and a watcher
// of every event kind receives at most its bound.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "kv/session.h"
#include "qcloud/kv/store.h"

using namespace qcloud;
using namespace qcloud::kv;

#define FUZZ_ASSERT(cond)      \
  do {                         \
    if (!(cond)) std::abort(); \
  } while (0)

namespace {

struct Node {
  Node() : workers(1) {
    StoreOptions so;
    so.memory_bytes = 2 << 20;
    so.item_size_max = 64 * 1024;
    so.shards = 1;
    store = std::move(Store::Open(so).value());
    shared.store = store.get();
    shared.options.output_high_water = 256 * 1024;
    shared.options.max_get_line = 64 * 1024;
    shared.workers = &workers;
  }
  std::unique_ptr<Store> store;
  std::vector<WorkerCounters> workers;
  ServerShared shared;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  // A fresh store per input, so a crash reproduces from that one input.
  auto node = std::make_unique<Node>();
  const size_t chunk = 1 + data[0] % 64;
  ByteView input(data + 1, size - 1);
  // A watcher of every event kind, so that the log lines of whatever the
  // input does are made (keys of any bytes); it must stay bounded.
  Session watcher(node->shared, node->workers[0]);
  Buffer watched;
  const std::string watch = "watch fetchers mutations evictions connevents\r\n";
  FUZZ_ASSERT(watcher.Process(ByteView(watch), watched) == watch.size());
  Session session(node->shared, node->workers[0]);
  std::string pending;
  Buffer out;
  size_t pos = 0;
  int idle_rounds = 0;
  while (!session.closing() && idle_rounds < 2) {
    const size_t n = std::min(chunk, input.size() - pos);
    pending.append(input.chars() + pos, n);
    pos += n;
    const size_t used = session.Process(ByteView(pending), out);
    FUZZ_ASSERT(used <= pending.size());
    pending.erase(0, used);
    // A reply may overshoot the high-water mark by one item at most.
    FUZZ_ASSERT(out.size() <= node->shared.options.output_high_water + 70 * 1024);
    out.Clear();  // the client reads everything
    watched.Clear();
    (void)watcher.Process(ByteView(), watched);
    FUZZ_ASSERT(watched.size() <= WatchHub::kBufferBytes);
    if (pos == input.size()) ++idle_rounds;
  }
  return 0;
}
