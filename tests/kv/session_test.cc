// The protocol state machine without sockets: framing across arbitrary
// splits, memcached's recovery rules after bad input, the bounds on lines,
// values and unread replies, and the binary protocol's framing.
#include <doctest/doctest.h>

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "kv/prefix_stats.h"
#include "kv/session.h"
#include "qcloud/core/clock.h"
#include "qcloud/kv/store.h"
#include "qcloud/testing/doctest_helpers.h"

using namespace qcloud;
using namespace qcloud::kv;

namespace {

struct Node {
  explicit Node(StoreOptions so = {}, ServerOptions opts = {})
      : store(REQUIRE_VALUE(Store::Open(so))), workers(1) {
    shared.store = store.get();
    shared.options = opts;
    shared.workers = &workers;
  }
  std::unique_ptr<Store> store;
  std::vector<WorkerCounters> workers;
  ServerShared shared;
};

// Feeds `input` in pieces of `chunk` bytes (0 = all at once), as a socket
// would, and returns everything the session replied.
std::string Run(Node& node, const std::string& input, size_t chunk = 0, bool* closed = nullptr) {
  Session session(node.shared, node.workers[0]);
  std::string pending;
  Buffer out;
  size_t pos = 0;
  while (pos < input.size() && !session.closing()) {
    const size_t n = chunk == 0 ? input.size() - pos : std::min(chunk, input.size() - pos);
    pending.append(input, pos, n);
    pos += n;
    const size_t used = session.Process(ByteView(pending), out);
    pending.erase(0, used);
  }
  if (closed != nullptr) *closed = session.closing();
  return out.readable().ToString();
}

std::string Bin(uint8_t op, std::string_view extras, std::string_view key,
                std::string_view value, uint64_t cas = 0) {
  std::string p(24, '\0');
  p[0] = static_cast<char>(0x80);
  p[1] = static_cast<char>(op);
  p[2] = static_cast<char>(key.size() >> 8);
  p[3] = static_cast<char>(key.size());
  p[4] = static_cast<char>(extras.size());
  const uint32_t body = static_cast<uint32_t>(extras.size() + key.size() + value.size());
  for (int i = 0; i < 4; ++i) p[8 + i] = static_cast<char>(body >> (24 - 8 * i));
  p[12] = '\xde';
  p[13] = '\xad';
  p[14] = '\xbe';
  p[15] = '\xef';
  for (int i = 0; i < 8; ++i) p[16 + i] = static_cast<char>(cas >> (56 - 8 * i));
  return p + std::string(extras) + std::string(key) + std::string(value);
}

}  // namespace

TEST_CASE("a pipeline gives the same replies however the bytes are split") {
  const std::string input =
      "set a 1 0 3\r\nabc\r\nget a b\r\nappend a 0 0 2\r\nde\r\ngets a\r\n"
      "incr n 1\r\nset n 0 0 2\r\n10\r\ndecr n 3\r\nget n\r\nbogus\r\n"
      "ms m 2 T0 F3\r\nhi\r\nmg m v f s k\r\nmn\r\ndelete a\r\nget a\r\n";
  Node whole;
  const std::string expected = Run(whole, input);
  CHECK(expected ==
        "STORED\r\nVALUE a 1 3\r\nabc\r\nEND\r\nSTORED\r\nVALUE a 1 5 2\r\nabcde\r\nEND\r\n"
        "NOT_FOUND\r\nSTORED\r\n7\r\nVALUE n 0 2\r\n7 \r\nEND\r\nERROR\r\n"
        "HD\r\nVA 2 f3 s2 km\r\nhi\r\nMN\r\nDELETED\r\nEND\r\n");
  for (size_t chunk : {1u, 2u, 3u, 7u, 13u}) {
    Node node;
    CAPTURE(chunk);
    CHECK(Run(node, input, chunk) == expected);
  }
}

TEST_CASE("bad input: memcached's replies and recovery") {
  Node node;
  // Invalid command line: the data block is not consumed and reads as a command.
  CHECK(Run(node, "set k abc 0 1\r\na\r\n") ==
        "CLIENT_ERROR bad command line format\r\nERROR\r\n");
  // Bad data chunk: resynchronise by byte count.
  CHECK(Run(node, "set k 0 0 1\r\nABCDEFG\r\nget k\r\n") ==
        "CLIENT_ERROR bad data chunk\r\nERROR\r\nEND\r\n");
  CHECK(Run(node, std::string("set ") + std::string(251, 'k') + " 0 0 1\r\na\r\n") ==
        "CLIENT_ERROR bad command line format\r\nERROR\r\n");
  CHECK(Run(node, "delete a b\r\n") ==
        "CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n");
  CHECK(Run(node, "incr k abc\r\n") == "CLIENT_ERROR invalid numeric delta argument\r\n");
  CHECK(Run(node, "touch k abc\r\n") == "CLIENT_ERROR invalid exptime argument\r\n");
  CHECK(Run(node, "set k 0 0 1 noreply\r\nAB\r\n") == "ERROR\r\n");
  CHECK(Run(node, "\r\n \r\nSET k 0 0 1\r\nget\r\n") == "ERROR\r\nERROR\r\nERROR\r\nERROR\r\n");
  CHECK(Run(node, "mg k v v\r\nms k 1 Z\r\nx\r\nmn\r\n") ==
        "CLIENT_ERROR duplicate flag\r\nCLIENT_ERROR invalid flag\r\nMN\r\n");
}

TEST_CASE("an oversized value is swallowed by count, then answered") {
  Node node;
  Run(node, "set big 0 0 1\r\nZ\r\n");
  const std::string body(2000000, 'y');
  for (size_t chunk : {0u, 4096u, 65536u}) {
    CAPTURE(chunk);
    CHECK(Run(node, "set big 0 0 2000000\r\n" + body + "\r\nget big\r\n", chunk) ==
          "SERVER_ERROR object too large for cache\r\nEND\r\n");
  }
  Run(node, "set big 0 0 1\r\nZ\r\n");
  CHECK(Run(node, "replace big 0 0 2000000\r\n" + body + "\r\nget big\r\n") ==
        "SERVER_ERROR object too large for cache\r\nVALUE big 0 1\r\nZ\r\nEND\r\n");
}

TEST_CASE("a line without a newline is bounded") {
  Node node;
  bool closed = false;
  CHECK(Run(node, std::string(2048, 'a'), 0, &closed).empty());
  CHECK_FALSE(closed);
  CHECK(Run(node, std::string(2049, 'a'), 0, &closed).empty());
  CHECK(closed);
  // get/gets may carry many keys on one line.
  std::string keys = "get";
  for (int i = 0; i < 2000; ++i) keys += " key" + std::to_string(i);
  CHECK(Run(node, keys, 512, &closed).empty());
  CHECK_FALSE(closed);
  CHECK(Run(node, keys + "\r\n", 512, &closed) == "END\r\n");
  // ...up to max_get_line.
  Node small({}, {.max_get_line = 4096});
  CHECK(Run(small, "get " + std::string(5000, 'k'), 1000, &closed).empty());
  CHECK(closed);
}

TEST_CASE("replies to a client that does not read stay bounded") {
  Node node({}, {.output_high_water = 64 * 1024});
  Run(node, "set v 0 0 10000\r\n" + std::string(10000, 'v') + "\r\n");
  std::string line = "get";
  for (int i = 0; i < 1000; ++i) line += " v";  // 10 MB of replies asked for
  line += "\r\nversion\r\n";
  Session session(node.shared, node.workers[0]);
  Buffer out;
  std::string pending = line;
  size_t total_out = 0;
  size_t max_out = 0;
  for (int round = 0; round < 10000 && !pending.empty(); ++round) {
    const size_t used = session.Process(ByteView(pending), out);
    pending.erase(0, used);
    max_out = std::max(max_out, out.size());
    total_out += out.size();
    const bool done = out.readable().AsStringView().ends_with("VERSION 1.6.18-qcloud\r\n");
    out.Clear();  // the client reads everything that was queued
    if (done) break;
  }
  CHECK(pending.empty());
  CHECK(max_out <= 64 * 1024 + 10100);  // one value over the mark at most
  CHECK(total_out > 1000 * 10000);
}

TEST_CASE("quit closes after the replies before it") {
  Node node;
  bool closed = false;
  CHECK(Run(node, "version\r\nquit\r\nversion\r\n", 0, &closed) == "VERSION 1.6.18-qcloud\r\n");
  CHECK(closed);
}

TEST_CASE("binary protocol: set, get, quiet commands, errors") {
  Node node;
  const std::string extras_set("\0\0\xca\xfe\0\0\0\0", 8);
  std::string in = Bin(0x01, extras_set, "k", "val") + Bin(0x00, "", "k", "") +
                   Bin(0x09, "", "nokey", "") + Bin(0x0c, "", "nokey", "") + Bin(0x0a, "", "", "");
  const std::string out = Run(node, in, 5);
  // SET ok (24), GET hit (24+4+3), GETQ miss (silent), GETK miss (24+5), NOOP (24)
  REQUIRE(out.size() == 24 + 31 + 29 + 24);
  CHECK(static_cast<uint8_t>(out[0]) == 0x81);
  CHECK(out.substr(24 + 24, 7) == std::string("\0\0\xca\xfeval", 7));
  CHECK(out.substr(24 + 31 + 6, 2) == std::string("\0\x01", 2));  // KEY_ENOENT
  CHECK(out.substr(24 + 31 + 24, 5) == "nokey");
  // Key longer than 250: Invalid arguments and close.
  bool closed = false;
  const std::string bad = Run(node, Bin(0x00, "", std::string(251, 'k'), ""), 0, &closed);
  CHECK(closed);
  CHECK(bad.substr(24) == "Invalid arguments");
  // Bad magic: close without a reply.
  CHECK(Run(node, Bin(0x0a, "", "", "") + std::string(24, '\x42'), 0, &closed).size() == 24);
  CHECK(closed);
}

TEST_CASE("random bytes never break the session - a smoke test, the fuzzer goes further") {
  Node node({.memory_bytes = 4 << 20, .item_size_max = 64 * 1024});
  std::mt19937 rng(7);
  const char* pieces[] = {"set ", "get ", "mg ", "ms ", " 0 ", " 1 ", "\r\n", "\n", "k", "noreply",
                          "incr ", "cas ", "gat ", "99999999999", "-1", " v", " T", " b"};
  for (int i = 0; i < 2000; ++i) {
    std::string input;
    for (int j = 0; j < 30; ++j) {
      if (rng() % 4 == 0) {
        input.push_back(static_cast<char>(rng()));
      } else {
        input += pieces[rng() % std::size(pieces)];
      }
    }
    bool closed = false;
    const std::string replies = Run(node, input, 1 + rng() % 16, &closed);
    // Thirty pieces can only store and fetch small values: a large reply
    // would mean a framing bug replaying input.
    CHECK(replies.size() < 64 * 1024);
    // The node still answers a well-formed request afterwards.
    REQUIRE(Run(node, "set after 0 0 2\r\nok\r\nget after\r\n") ==
            "STORED\r\nVALUE after 0 2\r\nok\r\nEND\r\n");
  }
}

namespace qcloud::kv {
namespace {

TEST_CASE("stats detail: MurmurHash3 as memcached hashes prefixes") {
  CHECK(Murmur3_32("") == 0u);
  CHECK(Murmur3_32("hello") == 0x248bfa47u);
  CHECK(Murmur3_32("The quick brown fox jumps over the lazy dog") == 0x2e4ff723u);
  CHECK(Murmur3_32("", 1) == 0x514e28b7u);
}

TEST_CASE("stats detail: counts per prefix in memcached's order and bounded") {
  PrefixStats p;
  p.RecordGet("a:1", true);  // off: not counted
  CHECK(p.Dump() == "END\r\n");
  p.Enable(true);
  for (const char* k : {"b:1", "x:1", "a:1", ":1", "nodelim"}) p.RecordSet(k);
  p.RecordGet("b:2", false);
  p.RecordGet("b:1", true);
  p.RecordDelete("b:1");
  // Buckets by MurmurHash3 % 256: "" 0, "b" 3, "x" 27, "a" 178.
  CHECK(p.Dump() ==
        "PREFIX  get 0 hit 0 set 1 del 0\r\nPREFIX b get 2 hit 1 set 1 del 1\r\n"
        "PREFIX x get 0 hit 0 set 1 del 0\r\nPREFIX a get 0 hit 0 set 1 del 0\r\nEND\r\n");
  p.Enable(false);
  p.RecordSet("b:9");
  CHECK(p.Dump().find("set 1 del 1") != std::string::npos);  // kept while off
  p.Clear();
  CHECK(p.Dump() == "END\r\n");
  // Bounded: prefixes beyond the limit are not counted.
  p.Enable(true);
  for (size_t i = 0; i < PrefixStats::kMaxPrefixes + 10; ++i) p.RecordSet(std::to_string(i) + ":k");
  const std::string dump = p.Dump();
  CHECK(static_cast<size_t>(std::count(dump.begin(), dump.end(), '\n')) == PrefixStats::kMaxPrefixes + 1);
}

TEST_CASE("me reports memcached's fields and reads nothing") {
  ManualClock clock;  // la= counts whole seconds: no tick between set and me
  StoreOptions so;
  so.clock = &clock;
  Node node(so);
  const std::string r = Run(node, "set k:1 5 0 3\r\nbar\r\nme k:1\r\nme k:1\r\nme nokey\r\nme\r\n");
  CHECK(r ==
        "STORED\r\nME k:1 exp=-1 la=0 cas=1 fetch=no cls=1 size=69\r\n"
        "ME k:1 exp=-1 la=0 cas=1 fetch=no cls=1 size=69\r\nEN\r\n"
        "CLIENT_ERROR bad command line format\r\n");
}

}  // namespace
}  // namespace qcloud::kv

namespace qcloud::kv {
namespace {

TEST_CASE("metadump streams every item once in bounded pieces and requests after it wait") {
  ServerOptions so;
  so.output_high_water = 4096;
  Node node({}, so);
  constexpr int kItems = 3000;
  for (int i = 0; i < kItems; ++i) {
    REQUIRE(node.store->Set("key:" + std::to_string(i), "x").outcome == Outcome::kOk);
  }
  Session session(node.shared, node.workers[0]);
  const std::string req = "lru_crawler metadump all\r\nmn\r\n";
  std::string pending = req;
  std::string all;
  Buffer out;
  size_t max_out = 0;
  for (int round = 0; round < 100000; ++round) {
    const size_t used = session.Process(ByteView(pending), out);
    pending.erase(0, used);
    max_out = std::max(max_out, out.size());
    all += out.readable().ToString();  // the socket took it all
    out.Consume(out.size());
    if (!session.producing() && pending.empty()) break;
  }
  CHECK(max_out < 4096 + 64 * 1024 + 512);  // one piece past the mark at most
  REQUIRE(all.size() > 11);
  CHECK(all.ends_with("END\r\nMN\r\n"));
  std::set<std::string> keys;
  size_t lines = 0;
  for (size_t pos = 0; (pos = all.find("key=", pos)) != std::string::npos; ++pos) {
    keys.insert(all.substr(pos + 4, all.find(' ', pos) - pos - 4));
    ++lines;
  }
  CHECK(lines == kItems);
  CHECK(keys.size() == kItems);
  CHECK(keys.count("key%3A0") == 1);
  // A class filter: 1-byte values are all class 1.
  CHECK(Run(node, "lru_crawler metadump 2\r\n") == "END\r\n");
}

// A SessionIo that holds each read until the test performs it with pread.
struct HeldIo final : SessionIo {
  bool Read(int fd, uint64_t offset, MutableByteView dst, int64_t* result) override {
    if (held) return false;
    held = true;
    fd_ = fd;
    offset_ = offset;
    dst_ = dst;
    result_ = result;
    ++reads;
    return true;
  }
  void Complete() {
    REQUIRE(held);
    held = false;
    const ssize_t n = ::pread(fd_, dst_.data(), dst_.size(), static_cast<off_t>(offset_));
    *result_ = n < 0 ? -errno : n;
  }
  int socket_fd() const noexcept override { return 7; }
  bool held = false;
  int reads = 0;

 private:
  int fd_ = -1;
  uint64_t offset_ = 0;
  MutableByteView dst_;
  int64_t* result_ = nullptr;
};

struct ColdNode {
  ColdNode() {
    char tmpl[] = "/tmp/qcloud-kv-cold-XXXXXX";
    REQUIRE(::mkdtemp(tmpl) != nullptr);
    dir = tmpl;
    StoreOptions so;
    so.memory_bytes = 2 << 20;
    so.item_size_max = 256 * 1024;
    so.shards = 2;
    so.ssd_dir = dir;
    so.ssd_bytes = 256 << 20;
    so.segment_bytes = 1 << 20;
    node = std::make_unique<Node>(so);
    // ~4x the memory: most of the early keys sink; the tier's buffer is
    // written out so that their records are on disk.
    for (int i = 0; i < 40000; ++i) {
      const std::string v = "value-" + std::to_string(i) + std::string(80, 'v');
      REQUIRE(node->store->Set("k" + std::to_string(i), v, {.flags = static_cast<uint32_t>(i)}).outcome ==
              Outcome::kOk);
    }
    REQUIRE_OK(node->store->Maintain());
    REQUIRE(node->store->Stats().cold_items > 20000);
  }
  ~ColdNode() {
    node.reset();
    std::filesystem::remove_all(dir);
  }
  std::string dir;
  std::unique_ptr<Node> node;
};

// Runs `input` on a session with `io` (null: the store reads cold records
// itself), completing each held read; checks the session waits meanwhile.
std::string RunCold(Node& node, const std::string& input, HeldIo* io) {
  Session session(node.shared, node.workers[0]);
  if (io != nullptr) session.AttachIo(io);
  std::string pending = input;
  Buffer out;
  for (int round = 0; round < 10000 && !pending.empty(); ++round) {
    const size_t used = session.Process(ByteView(pending), out);
    pending.erase(0, used);
    if (io != nullptr && io->held) {
      CHECK(session.busy());
      CHECK(session.blocked(out));
      // Nothing more is taken while the read is out.
      CHECK(session.Process(ByteView(pending), out) == 0);
      io->Complete();
    }
  }
  CHECK(pending.empty());
  return out.readable().ToString();
}

// `me`'s la= is seconds since the item was last touched; the two nodes were
// filled one after the other, so it may differ by a second between them.
std::string WithoutIdleTimes(std::string s) {
  for (size_t pos = 0; (pos = s.find(" la=", pos)) != std::string::npos;) {
    pos += 4;
    size_t end = pos;
    while (end < s.size() && s[end] >= '0' && s[end] <= '9') ++end;
    s.replace(pos, end - pos, "?");
  }
  return s;
}

TEST_CASE("cold reads through the loop: requests wait for the record and answer as a blocking read does") {
  ColdNode with_io;
  ColdNode blocking;
  std::string text = "get k1 k2 nothere k3\r\ngets k4\r\nset k5 1 0 3\r\nnew\r\nget k5\r\n"
                     "mg k6 v f c t\r\nms k7 2\r\nhi\r\nmg k7 v\r\nadd k8 0 0 1\r\nx\r\n"
                     "gat 100 k9\r\nappend k10 0 0 2\r\n++\r\nget k10\r\nmn\r\n"
                     "touch k11 100\r\nincr k12 1\r\ndelete k13\r\nget k13\r\nmd k14\r\nma k15\r\n"
                     "me k16\r\nmd k17 I T30\r\nmg k17 v c\r\n";
  for (int i = 100; i < 140; ++i) text += "get k" + std::to_string(i) + "\r\n";
  HeldIo io;
  const std::string got = RunCold(*with_io.node, text, &io);
  const std::string want = RunCold(*blocking.node, text, nullptr);
  CHECK(WithoutIdleTimes(got) == WithoutIdleTimes(want));
  CHECK(got.find("ME k16 exp=-1 la=") != std::string::npos);
  CHECK(io.reads >= 30);  // most early keys were on the tier
  CHECK(got.starts_with("VALUE k1 1 87\r\nvalue-1"));
  CHECK(got.find("VALUE k10 10 90\r\nvalue-10" + std::string(80, 'v') + "++\r\n") != std::string::npos);
  CHECK(got.ends_with("VALUE k139 139 89\r\nvalue-139" + std::string(80, 'v') + "\r\nEND\r\n"));
  // Each command counted once, though it ran twice.
  const WorkerCounters& a = with_io.node->workers[0];
  const WorkerCounters& b = blocking.node->workers[0];
  CHECK(a.cmd_get.load() == b.cmd_get.load());
  CHECK(a.cmd_set.load() == b.cmd_set.load());
  CHECK(a.cmd_meta.load() == b.cmd_meta.load());
  CHECK(a.get_hits.load() == b.get_hits.load());
  CHECK(a.cmd_touch.load() == b.cmd_touch.load());
  CHECK(a.get_misses.load() == 2);  // nothere, and k13 after its delete
  CHECK(with_io.node->store->Stats().cold_errors == 0);

  // Binary gets and sets of sunk items wait the same way.
  std::string bin = Bin(0x00, "", "k200", "") + Bin(0x0c, "", "k201", "") +
                    Bin(0x01, std::string(8, '\0'), "k202", "zz") + Bin(0x00, "", "k202", "") +
                    Bin(0x04, "", "k203", "") + Bin(0x00, "", "k203", "") +
                    Bin(0x05, std::string(8, '\0') + std::string(8, '\0') + std::string(4, '\xff'), "k204", "") +
                    Bin(0x1c, std::string(4, '\0'), "k205", "") + Bin(0x0a, "", "", "");
  HeldIo io2;
  CHECK(RunCold(*with_io.node, bin, &io2) == RunCold(*blocking.node, bin, nullptr));
  CHECK(io2.reads >= 3);
}

TEST_CASE("cold reads through the loop: an item deleted while its record is read stays deleted") {
  ColdNode n;
  Store& store = *n.node->store;
  Session session(n.node->shared, n.node->workers[0]);
  HeldIo io;
  session.AttachIo(&io);
  Buffer out;
  // The next early key still on the tier: its get waits for a read.
  int next = 0;
  auto cold_get = [&]() -> std::string {
    while (next < 1000) {
      const std::string req = "get k" + std::to_string(next++) + "\r\n";
      const size_t used = session.Process(ByteView(req), out);
      if (io.held) {
        CHECK(used == 0);
        return req;
      }
      out.Consume(out.size());
    }
    FAIL("no key on the tier");
    return "";
  };
  const std::string req = cold_get();
  const std::string key = req.substr(4, req.size() - 6);
  CHECK(store.Delete(key) == Outcome::kOk);  // another connection, meanwhile
  io.Complete();
  CHECK(session.Process(ByteView(req), out) == req.size());
  CHECK(out.readable().ToString() == "END\r\n");
  std::string v;
  CHECK_FALSE(store.Get(key, &v));
  // And one overwritten meanwhile answers the new value.
  out.Consume(out.size());
  const std::string req2 = cold_get();
  const std::string key2 = req2.substr(4, req2.size() - 6);
  CHECK(store.Set(key2, "fresh").outcome == Outcome::kOk);
  io.Complete();
  CHECK(session.Process(ByteView(req2), out) == req2.size());
  CHECK(out.readable().ToString() == "VALUE " + key2 + " 0 5\r\nfresh\r\nEND\r\n");
}

TEST_CASE("metadump lists the items on the cold tier too, in bounded pieces") {
  ColdNode n;
  n.node->shared.options.output_high_water = 4096;
  Session session(n.node->shared, n.node->workers[0]);
  const std::string req = "lru_crawler metadump all\r\n";
  std::string pending = req;
  std::string all;
  Buffer out;
  for (int round = 0; round < 100000; ++round) {
    const size_t used = session.Process(ByteView(pending), out);
    pending.erase(0, used);
    CHECK(out.size() < 4096 + 64 * 1024 + 512);
    all += out.readable().ToString();
    out.Consume(out.size());
    if (!session.producing() && pending.empty()) break;
  }
  REQUIRE(all.ends_with("END\r\n"));
  std::set<std::string> keys;
  size_t lines = 0;
  for (size_t pos = 0; (pos = all.find("key=", pos)) != std::string::npos; ++pos) {
    keys.insert(all.substr(pos + 4, all.find(' ', pos) - pos - 4));
    ++lines;
  }
  CHECK(lines == 40000);
  CHECK(keys.size() == 40000);
  CHECK(keys.count("k0") == 1);
  CHECK(keys.count("k39999") == 1);
}

}  // namespace
}  // namespace qcloud::kv
