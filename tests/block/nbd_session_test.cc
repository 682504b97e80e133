// The NBD protocol state machine over an in-memory device, fed across
// every read split (byte by byte, a few bytes, whole messages): the
// handshake (LIST, INFO, GO, EXPORT_NAME, STRUCTURED_REPLY), transmission
// (reads, writes, flush, trim, write zeroes), the bounds (out-of-range,
// oversized requests and options skipped without buffering), bad input, and
// one real NbdServer over a loopback socket.

#include "block/nbd_session.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <future>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "../core/socket_client.h"
#include "block/nbd_proto.h"

#include "qcloud/block/nbd_server.h"
#include "qcloud/core/clock.h"
#include "qcloud/core/metrics.h"
#include "qcloud/testing/doctest_helpers.h"

namespace qcloud::block {
namespace {

using namespace nbd;
using namespace std::chrono_literals;

// A device in a vector; counts what the tests look at; can be told to fail.
class MemExport final : public Export {
 public:
  explicit MemExport(ExportInfo info) : info_(std::move(info)), data(info_.size) {}
  const ExportInfo& info() const noexcept override { return info_; }
  Status Read(uint64_t offset, MutableByteView dst) override {
    if (!fail.ok()) return fail;
    std::memcpy(dst.data(), data.data() + offset, dst.size());
    return Status::Ok();
  }
  Status Write(uint64_t offset, ByteView src, bool fua) override {
    if (!fail.ok()) return fail;
    std::memcpy(data.data() + offset, src.data(), src.size());
    fua_writes += fua ? 1 : 0;
    return Status::Ok();
  }
  Status Flush() override {
    ++flushes;
    return fail;
  }
  Status Trim(uint64_t offset, uint64_t length, bool) override {
    std::fill_n(data.begin() + static_cast<ptrdiff_t>(offset), length, std::byte{0});
    ++trims;
    return fail;
  }
  Status WriteZeroes(uint64_t offset, uint64_t length, bool, bool no_hole) override {
    std::fill_n(data.begin() + static_cast<ptrdiff_t>(offset), length, std::byte{0});
    no_hole_zeroes += no_hole ? 1 : 0;
    return fail;
  }

  ExportInfo info_;
  std::vector<std::byte> data;
  Status fail;
  int fua_writes = 0, flushes = 0, trims = 0, no_hole_zeroes = 0;
};

class MemDirectory final : public ExportDirectory {
 public:
  MemDirectory() {
    Add({.name = "disk", .description = "a test disk", .size = 1 << 20});
    Add({.name = "ro", .size = 64 * 1024, .read_only = true});
  }
  void Add(ExportInfo info) {
    const std::string name = info.name;
    exports[name] = std::make_shared<MemExport>(std::move(info));
  }
  std::vector<ExportInfo> List() override {
    std::vector<ExportInfo> all;
    for (auto& [name, e] : exports) all.push_back(e->info());
    return all;
  }
  Result<std::shared_ptr<Export>> Open(std::string_view name) override {
    auto it = exports.find(std::string(name.empty() ? "disk" : name));
    if (it == exports.end()) return NotFound("no export " + std::string(name));
    return std::shared_ptr<Export>(it->second);
  }
  MemExport& disk() { return *exports["disk"]; }

  std::map<std::string, std::shared_ptr<MemExport>> exports;
};

// Client-side encoders.
std::string Be16(uint16_t v) {
  std::string s(2, '\0');
  EncodeBigEndian16(reinterpret_cast<std::byte*>(s.data()), v);
  return s;
}
std::string Be32(uint32_t v) {
  std::string s(4, '\0');
  EncodeBigEndian32(reinterpret_cast<std::byte*>(s.data()), v);
  return s;
}
std::string Be64(uint64_t v) {
  std::string s(8, '\0');
  EncodeBigEndian64(reinterpret_cast<std::byte*>(s.data()), v);
  return s;
}
std::string Opt(uint32_t option, const std::string& data = "") {
  return Be64(kOptionMagic) + Be32(option) + Be32(static_cast<uint32_t>(data.size())) + data;
}
std::string InfoData(const std::string& name, std::vector<uint16_t> infos) {
  std::string d =
      Be32(static_cast<uint32_t>(name.size())) + name + Be16(static_cast<uint16_t>(infos.size()));
  for (uint16_t i : infos) d += Be16(i);
  return d;
}
std::string Req(uint16_t type, uint64_t handle, uint64_t offset, uint32_t length,
                uint16_t flags = 0, const std::string& payload = "") {
  return Be32(kRequestMagic) + Be16(flags) + Be16(type) + Be64(handle) + Be64(offset) +
         Be32(length) + payload;
}
const std::string kFlags = Be32(kClientFlagFixedNewstyle | kClientFlagNoZeroes);

// Reads server bytes in order; a short read fails the test.
class Reply {
 public:
  explicit Reply(std::string bytes) : s_(std::move(bytes)) {}
  std::string Take(size_t n) {
    REQUIRE(pos_ + n <= s_.size());
    std::string r = s_.substr(pos_, n);
    pos_ += n;
    return r;
  }
  uint16_t U16() { return DecodeBigEndian16(reinterpret_cast<const std::byte*>(Take(2).data())); }
  uint32_t U32() { return DecodeBigEndian32(reinterpret_cast<const std::byte*>(Take(4).data())); }
  uint64_t U64() { return DecodeBigEndian64(reinterpret_cast<const std::byte*>(Take(8).data())); }
  size_t left() const { return s_.size() - pos_; }

  // An option reply header; returns its type, leaves its data in *data.
  uint32_t Option(uint32_t option, std::string* data = nullptr) {
    CHECK(U64() == kOptionReplyMagic);
    CHECK(U32() == option);
    const uint32_t type = U32();
    const std::string d = Take(U32());
    if (data != nullptr) *data = d;
    return type;
  }
  // A simple reply; returns its error.
  uint32_t Simple(uint64_t handle) {
    CHECK(U32() == kSimpleReplyMagic);
    const uint32_t error = U32();
    CHECK(U64() == handle);
    return error;
  }
  // A structured chunk's header; returns its type, *length its payload size.
  uint16_t Chunk(uint64_t handle, uint16_t want_flags, uint32_t* length) {
    CHECK(U32() == kStructuredReplyMagic);
    CHECK(U16() == want_flags);
    const uint16_t type = U16();
    CHECK(U64() == handle);
    *length = U32();
    return type;
  }
  // An error chunk (DONE); returns the error.
  uint32_t ErrorChunk(uint64_t handle) {
    uint32_t length = 0;
    CHECK(Chunk(handle, kReplyFlagDone, &length) == kReplyTypeError);
    const uint32_t error = U32();
    const uint16_t message = U16();
    CHECK(length == 6u + message);
    Take(message);
    return error;
  }

 private:
  std::string s_;
  size_t pos_ = 0;
};

NbdServerOptions SmallLimits() {
  return {.max_option_bytes = 8192, .max_request_bytes = 64 * 1024, .output_high_water = 1 << 20};
}

// A session driven the way the loop drives it: input arrives `chunk`
// bytes at a time (0 = whole), what is not consumed is offered again.
struct Client {
  explicit Client(MemDirectory& dir, size_t chunk_size = 0, NbdServerOptions o = SmallLimits())
      : session(dir, o, counters), chunk(chunk_size) {
    Buffer first;
    session.Start(first);
    greeting = first.readable().ToString();
  }
  // Feeds `bytes`; returns everything the session answered.
  std::string Send(const std::string& bytes) {
    size_t pos = 0;
    while (pos < bytes.size()) {
      const size_t n = chunk == 0 ? bytes.size() - pos : std::min(chunk, bytes.size() - pos);
      pending.append(bytes, pos, n);
      pos += n;
      Pump();
    }
    Pump();
    std::string r = out.readable().ToString();
    out.Clear();
    return r;
  }
  void Pump() {
    // Again while the session paused with requests left (see
    // kRequestsPerCall): the loop calls it again once replies are out.
    for (;;) {
      const size_t used = session.Process(ByteView(pending), out);
      REQUIRE(used <= pending.size());
      pending.erase(0, used);
      if (used == 0 || pending.empty() || !session.blocked(out)) break;
    }
  }
  // Client flags (unless sent already), then NBD_OPT_GO on `name` (after
  // STRUCTURED_REPLY when asked); checks the replies.
  void Go(const std::string& name = "disk", bool structured = false, bool flags_sent = false) {
    std::string req = flags_sent ? "" : kFlags;
    if (structured) req += Opt(kOptStructuredReply);
    req += Opt(kOptGo, InfoData(name, {}));
    Reply r(Send(req));
    if (structured) CHECK(r.Option(kOptStructuredReply) == kRepAck);
    std::string info;
    CHECK(r.Option(kOptGo, &info) == kRepInfo);
    CHECK(r.Option(kOptGo) == kRepAck);
    CHECK(r.left() == 0);
    REQUIRE(session.in_transmission());
  }

  NbdCounters counters;
  NbdSession session;
  size_t chunk;
  std::string greeting;
  std::string pending;
  Buffer out;
};

const size_t kChunks[] = {1, 5, 0};

TEST_CASE("nbd session: the greeting is fixed newstyle with NO_ZEROES") {
  MemDirectory dir;
  Client c(dir);
  Reply g(c.greeting);
  CHECK(g.U64() == kNbdMagic);
  CHECK(g.U64() == kOptionMagic);
  CHECK(g.U16() == (kFlagFixedNewstyle | kFlagNoZeroes));
  CHECK(g.left() == 0);
  CHECK_FALSE(c.session.idle_exempt());
}

TEST_CASE("nbd session: GO with information requests across any split") {
  for (size_t chunk : kChunks) {
    INFO("chunk ", chunk);
    MemDirectory dir;
    Client c(dir, chunk);
    Reply r(c.Send(kFlags +
                   Opt(kOptGo, InfoData("disk", {kInfoName, kInfoDescription, kInfoBlockSize}))));
    std::string d;
    REQUIRE(r.Option(kOptGo, &d) == kRepInfo);
    Reply e(d);
    CHECK(e.U16() == kInfoExport);
    CHECK(e.U64() == (1u << 20));
    CHECK(e.U16() == (kFlagHasFlags | kFlagSendFlush | kFlagSendFua | kFlagSendTrim | kFlagSendCache | kFlagSendFastZero |
                      kFlagSendWriteZeroes | kFlagCanMultiConn));
    REQUIRE(r.Option(kOptGo, &d) == kRepInfo);
    CHECK(d == Be16(kInfoName) + "disk");
    REQUIRE(r.Option(kOptGo, &d) == kRepInfo);
    CHECK(d == Be16(kInfoDescription) + "a test disk");
    REQUIRE(r.Option(kOptGo, &d) == kRepInfo);
    Reply b(d);
    CHECK(b.U16() == kInfoBlockSize);
    CHECK(b.U32() == 1);
    CHECK(b.U32() == 4096);
    CHECK(b.U32() == 64 * 1024);  // the device's 32 MiB, bounded by max_request_bytes
    CHECK(r.Option(kOptGo) == kRepAck);
    CHECK(r.left() == 0);
    CHECK(c.session.in_transmission());
    CHECK(c.session.idle_exempt());
    CHECK(c.counters.handshakes == 1);
  }
}

TEST_CASE(
    "nbd session: GO without requests sends only NBD_INFO_EXPORT and the default export is named") {
  MemDirectory dir;
  Client c(dir);
  Reply r(c.Send(kFlags + Opt(kOptGo, InfoData("", {}))));
  std::string d;
  REQUIRE(r.Option(kOptGo, &d) == kRepInfo);
  CHECK(d.size() == kInfoExportSize);
  CHECK(r.Option(kOptGo) == kRepAck);
  CHECK(r.left() == 0);
  CHECK(c.session.in_transmission());
}

TEST_CASE(
    "nbd session: INFO answers and stays in negotiation and an unknown export is "
    "NBD_REP_ERR_UNKNOWN") {
  MemDirectory dir;
  Client c(dir);
  Reply r(c.Send(kFlags + Opt(kOptInfo, InfoData("ro", {kInfoDescription})) +
                 Opt(kOptGo, InfoData("nope", {})) + Opt(kOptInfo, std::string(2, '\0'))));
  std::string d;
  REQUIRE(r.Option(kOptInfo, &d) == kRepInfo);
  Reply e(d);
  CHECK(e.U16() == kInfoExport);
  CHECK(e.U64() == 64 * 1024);
  CHECK(e.U16() ==
        (kFlagHasFlags | kFlagReadOnly | kFlagSendFlush | kFlagSendFua | kFlagCanMultiConn | kFlagSendCache));
  CHECK(r.Option(kOptInfo) == kRepAck);  // no description to send
  CHECK(r.Option(kOptGo) == kRepErrUnknown);
  CHECK(r.Option(kOptInfo) == kRepErrInvalid);  // too short
  CHECK(r.left() == 0);
  CHECK_FALSE(c.session.in_transmission());
  // Counts that do not add up to the length are invalid too.
  Reply bad(
      c.Send(Opt(kOptGo, InfoData("disk", {}) + "x") + Opt(kOptGo, Be32(100) + "disk" + Be16(0))));
  CHECK(bad.Option(kOptGo) == kRepErrInvalid);
  CHECK(bad.Option(kOptGo) == kRepErrInvalid);
  CHECK_FALSE(c.session.closing());
  c.Go("disk", false, true);
}

TEST_CASE("nbd session: LIST names every export and LIST with data is invalid") {
  for (size_t chunk : kChunks) {
    INFO("chunk ", chunk);
    MemDirectory dir;
    Client c(dir, chunk);
    Reply r(c.Send(kFlags + Opt(kOptList) + Opt(kOptList, "junk")));
    std::string d;
    REQUIRE(r.Option(kOptList, &d) == kRepServer);
    CHECK(d == Be32(4) + "disk" + "a test disk");
    REQUIRE(r.Option(kOptList, &d) == kRepServer);
    CHECK(d == Be32(2) + "ro");
    CHECK(r.Option(kOptList) == kRepAck);
    CHECK(r.Option(kOptList) == kRepErrInvalid);
    CHECK(r.left() == 0);
  }
}

TEST_CASE("nbd session: EXPORT_NAME with and without NO_ZEROES and an unknown name closes") {
  MemDirectory dir;
  {
    Client c(dir);
    Reply r(c.Send(kFlags + Opt(kOptExportName, "disk")));
    CHECK(r.U64() == (1u << 20));
    CHECK((r.U16() & kFlagHasFlags) != 0);
    CHECK(r.left() == 0);
    CHECK(c.session.in_transmission());
  }
  {
    Client c(dir);
    Reply r(c.Send(Be32(kClientFlagFixedNewstyle) + Opt(kOptExportName, "ro")));
    CHECK(r.U64() == 64 * 1024);
    CHECK((r.U16() & kFlagReadOnly) != 0);
    CHECK(r.Take(kExportNameZeroes) == std::string(kExportNameZeroes, '\0'));
    CHECK(r.left() == 0);
  }
  {
    Client c(dir);
    CHECK(c.Send(kFlags + Opt(kOptExportName, "nope")).empty());
    CHECK(c.session.closing());
  }
}

TEST_CASE("nbd session: write read flush trim and write zeroes with simple replies") {
  for (size_t chunk : kChunks) {
    INFO("chunk ", chunk);
    MemDirectory dir;
    Client c(dir, chunk);
    c.Go();
    const std::string data(4096, 'q');
    Reply w(c.Send(Req(kCmdWrite, 1, 8192, 4096, kCmdFlagFua, data) + Req(kCmdFlush, 2, 0, 0) +
                   Req(kCmdRead, 3, 8190, 4)));
    CHECK(w.Simple(1) == 0);
    CHECK(w.Simple(2) == 0);
    CHECK(w.Simple(3) == 0);
    CHECK(w.Take(4) == std::string("\0\0qq", 4));
    CHECK(w.left() == 0);
    CHECK(dir.disk().fua_writes == 1);
    CHECK(dir.disk().flushes == 1);

    Reply t(c.Send(Req(kCmdTrim, 4, 8192, 1024) +
                   Req(kCmdWriteZeroes, 5, 9216, 1024, kCmdFlagNoHole | kCmdFlagFua) +
                   Req(kCmdRead, 6, 8192, 4096) + Req(kCmdRead, 7, 0, 0)));
    CHECK(t.Simple(4) == 0);
    CHECK(t.Simple(5) == 0);
    CHECK(t.Simple(6) == 0);
    CHECK(t.Take(4096) == std::string(2048, '\0') + std::string(2048, 'q'));
    CHECK(t.Simple(7) == 0);  // an empty read: the header alone
    CHECK(t.left() == 0);
    CHECK(dir.disk().trims == 1);
    CHECK(dir.disk().no_hole_zeroes == 1);
    CHECK(c.counters.reads == 3);
    CHECK(c.counters.writes == 1);
    CHECK(c.counters.write_bytes == 4096);
    CHECK(c.counters.read_bytes == 4100);
    CHECK(c.counters.errors == 0);
    CHECK(c.session.input_needed() == 0);  // nothing awaited between requests
  }
}

TEST_CASE("nbd session: structured reads are one OFFSET_DATA chunk and errors are error chunks") {
  for (size_t chunk : kChunks) {
    INFO("chunk ", chunk);
    MemDirectory dir;
    Client c(dir, chunk);
    c.Go("disk", true);
    CHECK(c.session.structured_replies());
    std::memset(dir.disk().data.data() + 100, 'z', 50);
    Reply r(c.Send(Req(kCmdRead, 9, 100, 50, kCmdFlagDf) + Req(kCmdRead, 10, 1 << 20, 1) +
                   Req(kCmdRead, 11, 0, 0) + Req(kCmdWrite, 12, 0, 2, 0, "ab")));
    uint32_t length = 0;
    CHECK(r.Chunk(9, kReplyFlagDone, &length) == kReplyTypeOffsetData);
    CHECK(length == 58);
    CHECK(r.U64() == 100);
    CHECK(r.Take(50) == std::string(50, 'z'));
    CHECK(r.ErrorChunk(10) == kEinval);  // past the end
    CHECK(r.Chunk(11, kReplyFlagDone, &length) == kReplyTypeNone);
    CHECK(length == 0);
    CHECK(r.Simple(12) == 0);  // no payload: a simple reply is allowed
    CHECK(r.left() == 0);
  }
}

TEST_CASE(
    "nbd session: requests past the end are EINVAL or ENOSPC for writes and the connection goes "
    "on") {
  MemDirectory dir;
  Client c(dir);
  c.Go();
  const uint64_t size = 1 << 20;
  Reply r(c.Send(Req(kCmdRead, 1, size - 1, 2) + Req(kCmdTrim, 2, size, 1) +
                 Req(kCmdWrite, 3, size - 2, 4, 0, "abcd") +
                 Req(kCmdWriteZeroes, 4, ~uint64_t{0}, 2) + Req(kCmdRead, 5, ~uint64_t{0} - 1, 4) +
                 Req(kCmdRead, 6, size - 2, 2)));
  CHECK(r.Simple(1) == kEinval);
  CHECK(r.Simple(2) == kEinval);
  CHECK(r.Simple(3) == kEnospc);
  CHECK(r.Simple(4) == kEnospc);
  CHECK(r.Simple(5) == kEinval);  // offset + length wraps around
  CHECK(r.Simple(6) == 0);
  CHECK(r.Take(2) == std::string(2, '\0'));
  CHECK(r.left() == 0);
  CHECK(c.counters.errors == 5);
  CHECK_FALSE(c.session.closing());
}

TEST_CASE("nbd session: an oversized write is refused and its payload skipped and never buffered") {
  for (size_t chunk : {size_t{1}, size_t{4096}, size_t{0}}) {
    INFO("chunk ", chunk);
    MemDirectory dir;
    Client c(dir, chunk);
    c.Go();
    const uint32_t big = 64 * 1024 + 1;  // one over max_request_bytes
    std::string req = Req(kCmdWrite, 1, 0, big) + std::string(big, 'x');
    req += Req(kCmdRead, 2, 0, 1 << 20);  // a read over the limit: EINVAL, no payload
    req += Req(kCmdWrite, 3, 0, 3, 0, "abc");
    // Fed piecewise, the session consumes the skipped payload as it comes.
    size_t fed = 0;
    std::string replies;
    while (fed < req.size()) {
      const size_t n = std::min<size_t>(chunk == 0 ? req.size() : chunk, req.size() - fed);
      replies += c.Send(req.substr(fed, n));
      fed += n;
      if (fed > kRequestSize && fed <= kRequestSize + big) CHECK(c.pending.size() < kRequestSize);
    }
    Reply r(replies);
    CHECK(r.Simple(1) == kEinval);
    CHECK(r.Simple(2) == kEinval);
    CHECK(r.Simple(3) == 0);
    CHECK(r.left() == 0);
    CHECK(std::string(reinterpret_cast<char*>(dir.disk().data.data()), 4) ==
          std::string("abc\0", 4));
  }
}

TEST_CASE("nbd session: a DF read over the limit is EOVERFLOW") {
  MemDirectory dir;
  Client c(dir);
  c.Go("disk", true);
  Reply r(c.Send(Req(kCmdRead, 1, 0, 128 * 1024, kCmdFlagDf)));
  CHECK(r.ErrorChunk(1) == kEoverflow);
  CHECK(r.left() == 0);
}

TEST_CASE(
    "nbd session: an option over max_option_bytes is NBD_REP_ERR_TOO_BIG and its data skipped") {
  for (size_t chunk : {size_t{1}, size_t{0}}) {
    INFO("chunk ", chunk);
    MemDirectory dir;
    Client c(dir, chunk);
    std::string opt = Opt(kOptGo, std::string(8193, 'n'));
    Reply r(c.Send(kFlags + opt + Opt(kOptList)));
    CHECK(r.Option(kOptGo) == kRepErrTooBig);
    CHECK(r.Option(kOptList) == kRepServer);
    CHECK(r.Option(kOptList) == kRepServer);
    CHECK(r.Option(kOptList) == kRepAck);
    CHECK(c.pending.empty());
    c.Go("disk", false, true);
  }
  // EXPORT_NAME has no error reply: an over-long one closes.
  MemDirectory dir;
  Client c(dir);
  CHECK(c.Send(kFlags + Opt(kOptExportName, std::string(8193, 'n'))).empty());
  CHECK(c.session.closing());
  CHECK(c.counters.protocol_errors == 1);
}

TEST_CASE(
    "nbd session: unknown options and commands and flags are refused and the client goes on") {
  MemDirectory dir;
  Client c(dir);
  Reply o(c.Send(kFlags + Opt(kOptStartTls) + Opt(kOptSetMetaContext, "xxxx") + Opt(999) +
                 Opt(kOptStructuredReply, "x")));
  CHECK(o.Option(kOptStartTls) == kRepErrUnsup);
  CHECK(o.Option(kOptSetMetaContext) == kRepErrInvalid);  // before structured replies
  CHECK(o.Option(999) == kRepErrUnsup);
  CHECK(o.Option(kOptStructuredReply) == kRepErrInvalid);
  CHECK(o.left() == 0);
  CHECK_FALSE(c.session.structured_replies());
  c.Go("disk", false, true);
  Reply r(c.Send(Req(77, 1, 0, 0) + Req(kCmdBlockStatus, 2, 0, 512) +
                 Req(kCmdRead, 3, 0, 1, 1 << 9) +
                 Req(kCmdRead, 4, 0, 1, kCmdFlagDf) +  // DF without structured replies
                 Req(kCmdWrite, 5, 0, 1, kCmdFlagNoHole, "x") + Req(kCmdFlush, 6, 0, 0)));
  for (uint64_t h = 1; h <= 5; ++h) CHECK(r.Simple(h) == kEinval);
  CHECK(r.Simple(6) == 0);
  CHECK(r.left() == 0);
  CHECK(dir.disk().data[0] == std::byte{0});  // the refused write's byte was skipped
}

TEST_CASE("nbd session: a read-only export refuses writes and trims and zeroes with EPERM") {
  MemDirectory dir;
  Client c(dir);
  c.Go("ro");
  Reply r(c.Send(Req(kCmdWrite, 1, 0, 2, 0, "ab") + Req(kCmdTrim, 2, 0, 2) +
                 Req(kCmdWriteZeroes, 3, 0, 2) + Req(kCmdRead, 4, 0, 2)));
  CHECK(r.Simple(1) == kEperm);
  CHECK(r.Simple(2) == kEperm);  // as the spec asks, though SEND_TRIM is not offered
  CHECK(r.Simple(3) == kEperm);
  CHECK(r.Simple(4) == 0);
  CHECK(r.Take(2) == std::string(2, '\0'));
}

TEST_CASE("nbd session: device errors become NBD errors and a failed read sends no data") {
  MemDirectory dir;
  Client c(dir);
  c.Go();
  dir.disk().fail = Status(Errc::kResourceExhausted, "full");
  Reply r(c.Send(Req(kCmdWrite, 1, 0, 2, 0, "ab") + Req(kCmdFlush, 2, 0, 0)));
  CHECK(r.Simple(1) == kEnospc);
  CHECK(r.Simple(2) == kEnospc);
  dir.disk().fail = IoError("disk on fire");
  Reply e(c.Send(Req(kCmdRead, 3, 0, 4096)));
  CHECK(e.Simple(3) == kEio);
  CHECK(e.left() == 0);
  dir.disk().fail = Status(Errc::kUnavailable, "stopping");
  Reply s(c.Send(Req(kCmdFlush, 4, 0, 0)));
  CHECK(s.Simple(4) == kEshutdown);
  CHECK(c.counters.errors == 4);
}

TEST_CASE("nbd session: bad magic or unknown client flags close and count a protocol error") {
  MemDirectory dir;
  {
    Client c(dir);
    CHECK(c.Send(Be32(1 << 5)).empty());
    CHECK(c.session.closing());
    CHECK(c.counters.protocol_errors == 1);
  }
  {
    Client c(dir);
    CHECK(c.Send(kFlags + "GET / HTTP/1.1\r\n\r\n").empty());
    CHECK(c.session.closing());
    CHECK(c.counters.protocol_errors == 1);
  }
  {
    Client c(dir, 1);
    c.Go();
    std::string bad = Req(kCmdRead, 1, 0, 1);
    bad[0] = 'X';
    Reply r(c.Send(Req(kCmdRead, 0, 0, 1) + bad + Req(kCmdRead, 2, 0, 1)));
    CHECK(r.Simple(0) == 0);  // what came before is answered
    r.Take(1);
    CHECK(r.left() == 0);  // nothing after
    CHECK(c.session.closing());
    CHECK(c.counters.protocol_errors == 1);
  }
}

TEST_CASE("nbd session: ABORT is acknowledged and closes and DISC closes without a reply") {
  MemDirectory dir;
  {
    Client c(dir);
    Reply r(c.Send(kFlags + Opt(kOptAbort) + Opt(kOptList)));
    CHECK(r.Option(kOptAbort) == kRepAck);
    CHECK(r.left() == 0);
    CHECK(c.session.closing());
  }
  {
    Client c(dir);
    c.Go();
    Reply r(c.Send(Req(kCmdFlush, 1, 0, 0) + Req(kCmdDisc, 2, 0, 0) + Req(kCmdFlush, 3, 0, 0)));
    CHECK(r.Simple(1) == 0);
    CHECK(r.left() == 0);
    CHECK(c.session.closing());
    CHECK(c.counters.protocol_errors == 0);
  }
}

TEST_CASE("nbd session: a client gone mid-write leaves the device untouched") {
  MemDirectory dir;
  {
    Client c(dir, 7);
    c.Go();
    CHECK(c.Send(Req(kCmdWrite, 1, 0, 4096) + std::string(4000, 'w')).empty());
    CHECK(c.pending.size() == kRequestSize + 4000);  // the whole write is awaited
    CHECK(c.session.input_needed() == kRequestSize + 4096);  // the loop keeps room for it
  }                                                  // the connection ends here
  CHECK(std::all_of(dir.disk().data.begin(), dir.disk().data.end(),
                    [](std::byte b) { return b == std::byte{0}; }));
}

TEST_CASE("nbd session: no request is taken while the output is over the high-water mark") {
  MemDirectory dir;
  NbdServerOptions o = SmallLimits();
  o.output_high_water = 4096;
  NbdCounters counters;
  NbdSession s(dir, o, counters);
  Buffer out;
  s.Start(out);
  const std::string hs = kFlags + Opt(kOptGo, InfoData("disk", {}));
  REQUIRE(s.Process(ByteView(hs), out) == hs.size());
  out.Clear();
  const std::string reads = Req(kCmdRead, 1, 0, 4096) + Req(kCmdRead, 2, 0, 4096);
  CHECK(s.Process(ByteView(reads), out) == kRequestSize);  // the first reply fills it
  CHECK(s.blocked(out));
  out.Clear();
  CHECK(s.Process(ByteView(reads).subview(kRequestSize, kRequestSize), out) == kRequestSize);
}

// --- a real server over a loopback socket -----------------------------------

TEST_CASE("nbd server: a client over TCP negotiates then writes and reads back and disconnects") {
  MemDirectory dir;
  ManualClock clock;
  auto server = REQUIRE_VALUE(
      NbdServer::Open(dir, {.listen = "127.0.0.1:0", .handshake_timeout = 5s, .clock = &clock}));
  auto serving = std::async(std::launch::async, [&] { return server->Serve(0); });
  const Endpoint ep = REQUIRE_VALUE(ParseEndpoint(server->address()));
  {
    test::SocketClient c(ep);
    REQUIRE(c.connected());
    test::SocketClient silent(ep);
    REQUIRE(silent.connected());
    CHECK(silent.Read(kGreetingSize).size() == kGreetingSize);

    Reply g(c.Read(kGreetingSize));
    CHECK(g.U64() == kNbdMagic);
    CHECK(g.U64() == kOptionMagic);
    REQUIRE(c.Send(kFlags + Opt(kOptStructuredReply) +
                   Opt(kOptGo, InfoData("disk", {kInfoBlockSize}))));
    Reply h(c.Read(kOptionReplyHeaderSize * 4 + kInfoExportSize + kInfoBlockSizeSize));
    CHECK(h.Option(kOptStructuredReply) == kRepAck);
    CHECK(h.Option(kOptGo) == kRepInfo);
    CHECK(h.Option(kOptGo) == kRepInfo);
    CHECK(h.Option(kOptGo) == kRepAck);

    const std::string data(32 * 1024, 'k');
    REQUIRE(c.Send(Req(kCmdWrite, 1, 4096, 32 * 1024, kCmdFlagFua, data) +
                   Req(kCmdRead, 2, 4096, 32 * 1024)));
    Reply r(c.Read(kSimpleReplySize + kChunkHeaderSize + 8 + data.size()));
    CHECK(r.Simple(1) == 0);
    uint32_t length = 0;
    CHECK(r.Chunk(2, kReplyFlagDone, &length) == kReplyTypeOffsetData);
    CHECK(r.U64() == 4096);
    CHECK(r.Take(data.size()) == data);

    // Past the handshake timeout: the silent connection is closed, the
    // one in transmission is not.
    // (Once more if the worker noted the greeting's send after the first
    // Advance: an io_uring completion may be reaped late.)
    bool closed = false;
    for (int i = 0; i < 3 && !closed; ++i) {
      clock.Advance(6s);
      closed = silent.ClosedByPeer(2000);
    }
    CHECK(closed);
    REQUIRE(c.Send(Req(kCmdFlush, 3, 0, 0)));
    Reply f(c.Read(kSimpleReplySize));
    CHECK(f.Simple(3) == 0);
    REQUIRE(c.Send(Req(kCmdDisc, 4, 0, 0)));
    CHECK(c.ClosedByPeer());
  }
  const NbdServerStats s = server->stats();
  CHECK(s.connections == 2);
  CHECK(s.handshakes == 1);
  CHECK(s.writes == 1);
  CHECK(s.reads == 1);
  CHECK(s.flushes == 1);
  CHECK(s.write_bytes == 32 * 1024);
  CHECK(s.read_bytes == 32 * 1024);
  MetricsRegistry registry;
  CHECK_OK(server->RegisterMetrics(registry));
  const std::string page = registry.RenderText();
  CHECK(page.find("qcloud_nbd_handshakes_total 1") != std::string::npos);
  CHECK(page.find("qcloud_nbd_requests_total{cmd=\"write\"} 1") != std::string::npos);
  CHECK_ERRC(server->RegisterMetrics(registry), Errc::kAlreadyExists);
  server->Stop();
  CHECK_OK(serving.get());
}

TEST_CASE("nbd server: options are checked") {
  MemDirectory dir;
  CHECK_ERRC(NbdServer::Open(dir, {.threads = 0}), Errc::kInvalidArgument);
  CHECK_ERRC(NbdServer::Open(dir, {.listen = "127.0.0.1:0", .max_option_bytes = 10}),
             Errc::kInvalidArgument);
  CHECK_ERRC(NbdServer::Open(dir, {.listen = "127.0.0.1:0", .max_request_bytes = 0}),
             Errc::kInvalidArgument);
  CHECK_ERRC(NbdServer::Open(dir, {.listen = "nowhere"}), Errc::kInvalidArgument);
}

}  // namespace
}  // namespace qcloud::block

namespace qcloud::block {
namespace {

std::string MetaData(const std::string& name, std::vector<std::string> queries) {
  std::string d = Be32(static_cast<uint32_t>(name.size())) + name + Be32(static_cast<uint32_t>(queries.size()));
  for (const auto& q : queries) d += Be32(static_cast<uint32_t>(q.size())) + q;
  return d;
}

TEST_CASE("nbd session: base allocation is listed and selected and answers block status") {
  for (size_t chunk : kChunks) {
    CAPTURE(chunk);
    MemDirectory dir;
    Client c(dir, chunk);
    Reply o(c.Send(kFlags + Opt(kOptListMetaContext, MetaData("disk", {})) +
                   Opt(kOptListMetaContext, MetaData("disk", {"base:"})) +
                   Opt(kOptListMetaContext, MetaData("disk", {"qemu:dirty-bitmap:x"})) +
                   Opt(kOptListMetaContext, MetaData("nope", {})) +
                   Opt(kOptListMetaContext, MetaData("disk", {"base:allocation"}).substr(0, 12)) +
                   Opt(kOptStructuredReply) +
                   Opt(kOptSetMetaContext, MetaData("disk", {"x:y", "base:allocation"}))));
    std::string data;
    for (int i = 0; i < 2; ++i) {
      REQUIRE(o.Option(kOptListMetaContext, &data) == kRepMetaContext);
      CHECK(data == Be32(0) + "base:allocation");
      CHECK(o.Option(kOptListMetaContext) == kRepAck);
    }
    CHECK(o.Option(kOptListMetaContext) == kRepAck);             // nothing matches
    CHECK(o.Option(kOptListMetaContext) == kRepErrUnknown);      // no such export
    CHECK(o.Option(kOptListMetaContext) == kRepErrInvalid);      // lengths do not add up
    CHECK(o.Option(kOptStructuredReply) == kRepAck);
    REQUIRE(o.Option(kOptSetMetaContext, &data) == kRepMetaContext);
    CHECK(data == Be32(kBaseAllocationId) + "base:allocation");
    CHECK(o.Option(kOptSetMetaContext) == kRepAck);
    CHECK(o.left() == 0);
    c.Go("disk", false, true);
    // The in-memory device says "all data": one descriptor; REQ_ONE too.
    Reply r(c.Send(Req(kCmdBlockStatus, 5, 4096, 8192) + Req(kCmdBlockStatus, 6, 0, 512, kCmdFlagReqOne) +
                   Req(kCmdBlockStatus, 7, 0, 0) + Req(kCmdBlockStatus, 8, 1 << 30, 512)));
    for (uint64_t h : {5, 6}) {
      uint32_t length = 0;
      REQUIRE(r.Chunk(h, kReplyFlagDone, &length) == kReplyTypeBlockStatus);
      CHECK(length == 12);
      CHECK(r.U32() == kBaseAllocationId);
      CHECK(r.U32() == (h == 5 ? 8192u : 512u));
      CHECK(r.U32() == 0);
    }
    CHECK(r.ErrorChunk(7) == kEinval);  // no bytes
    CHECK(r.ErrorChunk(8) == kEinval);  // past the end
    CHECK(r.left() == 0);
  }
}

TEST_CASE("nbd session: block status needs the context selected for the export in use") {
  MemDirectory dir;
  Client c(dir);
  Reply o(c.Send(kFlags + Opt(kOptStructuredReply) + Opt(kOptSetMetaContext, MetaData("other", {"base:allocation"}))));
  CHECK(o.Option(kOptStructuredReply) == kRepAck);
  CHECK(o.Option(kOptSetMetaContext) == kRepErrUnknown);
  c.Go("disk", false, true);
  Reply r(c.Send(Req(kCmdBlockStatus, 1, 0, 512)));
  CHECK(r.ErrorChunk(1) == kEinval);
}

}  // namespace
}  // namespace qcloud::block
