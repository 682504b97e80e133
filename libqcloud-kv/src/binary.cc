// memcached's binary protocol (protocol_binary.h; behaviour checked against
// memcached 1.6.18 in docs/notes/memcached-protocol.md, section 8).
//
// Packet: a 24-byte big-endian header, then extras, key and value
// (Session::Binary frames and validates it, one handler per command family
// answers it).
//   request : 0x80 opcode keylen(2) extlen(1) datatype(1) vbucket(2)
//             bodylen(4) opaque(4) cas(8)
//   response: 0x81 opcode keylen(2) extlen(1) 0 status(2) bodylen(4)
//             opaque(4) cas(8)
// Quiet opcodes suppress success replies only (errors are still sent);
// GETQ/GETKQ/GATQ/GATKQ suppress misses. A header that breaks the
// per-opcode length rules gets "Invalid arguments" and the connection is
// closed, as memcached does. Unlike memcached, an unknown opcode discards
// exactly its body (memcached discards extras+key twice and eats into the
// next packet).

#include <algorithm>
#include <cstring>
#include <string>
#include <string_view>

#include "kv/session.h"

namespace qcloud::kv {

namespace {

enum Op : uint8_t {
  kGet = 0x00, kSet = 0x01, kAdd = 0x02, kReplace = 0x03, kDelete = 0x04, kIncrement = 0x05,
  kDecrement = 0x06, kQuit = 0x07, kFlush = 0x08, kGetQ = 0x09, kNoop = 0x0a, kVersion = 0x0b,
  kGetK = 0x0c, kGetKQ = 0x0d, kAppend = 0x0e, kPrepend = 0x0f, kStat = 0x10, kSetQ = 0x11,
  kAddQ = 0x12, kReplaceQ = 0x13, kDeleteQ = 0x14, kIncrementQ = 0x15, kDecrementQ = 0x16,
  kQuitQ = 0x17, kFlushQ = 0x18, kAppendQ = 0x19, kPrependQ = 0x1a, kTouch = 0x1c, kGat = 0x1d,
  kGatQ = 0x1e, kGatK = 0x23, kGatKQ = 0x24,
};

// Response status codes (named BinaryStatus so as not to hide qcloud::Status).
enum BinaryStatus : uint16_t {
  kSuccess = 0x00, kKeyEnoent = 0x01, kKeyEexists = 0x02, kE2big = 0x03, kEinval = 0x04,
  kNotStored = 0x05, kDeltaBadval = 0x06, kUnknownCommand = 0x81, kEnomem = 0x82,
  kInternalError = 0x84,  // PROTOCOL_BINARY_RESPONSE_EINTERNAL: the cold tier's failures
};

std::string_view StatusText(uint16_t s) {
  switch (s) {
    case kKeyEnoent: return "Not found";
    case kKeyEexists: return "Data exists for key.";
    case kE2big: return "Too large.";
    case kEinval: return "Invalid arguments";
    case kNotStored: return "Not stored.";
    case kDeltaBadval: return "Non-numeric server-side value for incr or decr";
    case kUnknownCommand: return "Unknown command";
    case kEnomem: return "Out of memory allocating item";
    case kInternalError: return "Internal error";
    default: return "";
  }
}

// The fixed part of every packet (request and response).
constexpr size_t kHeaderSize = 24;
constexpr uint8_t kRequestMagic = 0x80;
constexpr std::byte kResponseMagic{0x81};
// Extras lengths memcached's binary protocol fixes per command.
constexpr uint8_t kStoreExtras = 8;   // flags(4) exptime(4)
constexpr uint8_t kArithExtras = 20;  // delta(8) initial(8) exptime(4)
constexpr uint8_t kTouchExtras = 4;   // exptime(4)
// An arithmetic exptime of all ones: do not create a missing counter.
constexpr uint32_t kArithNoCreate = 0xffffffffu;

uint16_t Be16(const uint8_t* p) { return DecodeBigEndian16(reinterpret_cast<const std::byte*>(p)); }
uint32_t Be32(const uint8_t* p) { return DecodeBigEndian32(reinterpret_cast<const std::byte*>(p)); }
uint64_t Be64(const uint8_t* p) { return DecodeBigEndian64(reinterpret_cast<const std::byte*>(p)); }

struct Header {
  uint8_t opcode;
  uint16_t keylen;
  uint8_t extlen;
  uint32_t bodylen;
  const uint8_t* opaque;
  uint64_t cas;
};

// Writes a response header; the body (extlen + keylen + valuelen bytes)
// follows from the caller.
void ResponseHeader(Buffer& out, const Header& h, uint16_t status, uint8_t extlen,
                    uint16_t keylen, size_t valuelen, uint64_t cas) {
  std::byte* p = out.Prepare(kHeaderSize).data();
  p[0] = kResponseMagic;
  p[1] = std::byte{h.opcode};
  EncodeBigEndian16(p + 2, keylen);
  p[4] = std::byte{extlen};
  p[5] = std::byte{0};
  EncodeBigEndian16(p + 6, status);
  EncodeBigEndian32(p + 8, static_cast<uint32_t>(extlen + keylen + valuelen));
  std::memcpy(p + 12, h.opaque, 4);
  EncodeBigEndian64(p + 16, cas);
  out.Commit(kHeaderSize);
}

void Simple(Buffer& out, const Header& h, uint16_t status, uint64_t cas = 0) {
  const std::string_view text = StatusText(status);
  ResponseHeader(out, h, status, 0, 0, text.size(), status == kSuccess ? cas : 0);
  out.Append(ByteView(text));
}

bool IsQuiet(uint8_t op) {
  switch (op) {
    case kGetQ: case kGetKQ: case kSetQ: case kAddQ: case kReplaceQ: case kDeleteQ:
    case kIncrementQ: case kDecrementQ: case kQuitQ: case kFlushQ: case kAppendQ:
    case kPrependQ: case kGatQ: case kGatKQ:
      return true;
    default:
      return false;
  }
}

// memcached's per-opcode header rules (dispatch_bin_command).
bool ValidLengths(const Header& h) {
  const uint32_t key = h.keylen, ext = h.extlen, body = h.bodylen;
  switch (h.opcode) {
    case kSet: case kAdd: case kReplace: case kSetQ: case kAddQ: case kReplaceQ:
      return ext == kStoreExtras && key > 0;
    case kGet: case kGetQ: case kGetK: case kGetKQ:
      return ext == 0 && body == key && key > 0;
    case kDelete: case kDeleteQ:
      return key > 0 && ext == 0 && body == key;
    case kIncrement: case kDecrement: case kIncrementQ: case kDecrementQ:
      return key > 0 && ext == kArithExtras && body == key + kArithExtras;
    case kAppend: case kPrepend: case kAppendQ: case kPrependQ:
      return key > 0 && ext == 0;
    case kStat:
      return ext == 0;
    case kVersion: case kNoop: case kQuit: case kQuitQ:
      return ext == 0 && key == 0 && body == 0;
    case kFlush: case kFlushQ:
      return key == 0 && body == ext && (ext == 0 || ext == 4);
    case kTouch: case kGat: case kGatQ: case kGatK: case kGatKQ:
      return ext == kTouchExtras && key > 0 && body == key + kTouchExtras;
    default:
      return true;
  }
}

bool KnownOpcode(uint8_t op) {
  return op <= kGatKQ && op != 0x1b && op != 0x1f && op != 0x20 && op != 0x21 && op != 0x22;
}

}  // namespace

// One packet whose body has fully arrived.
struct Session::BinaryRequest {
  Header h;
  const uint8_t* extras;
  std::string_view key;
  ByteView value;
  bool quiet;
};

size_t Session::Binary(ByteView in, Buffer& out) {
  if (in.size() < kHeaderSize) return 0;
  const uint8_t* p = in.u8();
  if (p[0] != kRequestMagic) {  // bad magic: memcached closes without a reply
    Bump(counters_.protocol_errors);
    closing_ = true;
    return in.size();
  }
  Header h{p[1], Be16(p + 2), p[4], Be32(p + 8), p + 12, Be64(p + 16)};
  Store& store = *shared_.store;
  const size_t max_body = store.options().item_size_max + kStoreExtras + kMaxKeyLength;
  if (uint64_t{h.keylen} + h.extlen > h.bodylen) {
    Bump(counters_.protocol_errors);
    Simple(out, h, kUnknownCommand);
    closing_ = true;
    return in.size();
  }
  if (h.keylen > kMaxKeyLength || !ValidLengths(h)) {
    Bump(counters_.protocol_errors);
    Simple(out, h, kEinval);
    closing_ = true;
    return in.size();
  }
  if (h.bodylen > max_body) {
    // Too big to buffer: answer now and discard the body as it arrives.
    if (h.opcode == kSet || h.opcode == kSetQ) {
      const size_t have = in.size() - kHeaderSize;
      if (have >= size_t{h.extlen} + h.keylen) {  // memcached drops the stale value
        store.Delete(std::string_view(reinterpret_cast<const char*>(p + kHeaderSize + h.extlen),
                                      h.keylen));
      }
    }
    Bump(counters_.store_too_large);
    Simple(out, h, KnownOpcode(h.opcode) ? kE2big : kUnknownCommand);
    const size_t now_n = std::min<size_t>(in.size(), kHeaderSize + size_t{h.bodylen});
    swallow_ = kHeaderSize + uint64_t{h.bodylen} - now_n;
    return now_n;
  }
  const size_t consumed = kHeaderSize + size_t{h.bodylen};
  if (in.size() < consumed) return 0;
  const uint8_t* extras = p + kHeaderSize;
  const BinaryRequest r{
      h, extras, std::string_view(reinterpret_cast<const char*>(extras + h.extlen), h.keylen),
      ByteView(extras + h.extlen + h.keylen, h.bodylen - h.extlen - h.keylen), IsQuiet(h.opcode)};
  switch (h.opcode) {
    case kGet: case kGetQ: case kGetK: case kGetKQ:
    case kGat: case kGatQ: case kGatK: case kGatKQ:
      BinaryRetrieve(r, out);
      break;
    case kSet: case kAdd: case kReplace: case kSetQ: case kAddQ: case kReplaceQ:
    case kAppend: case kPrepend: case kAppendQ: case kPrependQ:
      BinaryStore(r, out);
      break;
    case kDelete: case kDeleteQ:
      BinaryDelete(r, out);
      break;
    case kIncrement: case kDecrement: case kIncrementQ: case kDecrementQ:
      BinaryArith(r, out);
      break;
    case kTouch:
      BinaryTouch(r, out);
      break;
    case kFlush: case kFlushQ:
      Bump(counters_.cmd_flush);
      store.FlushAll(h.extlen == 4 ? static_cast<int32_t>(Be32(extras)) : 0);
      if (!r.quiet) ResponseHeader(out, h, kSuccess, 0, 0, 0, 0);
      break;
    case kNoop:
      ResponseHeader(out, h, kSuccess, 0, 0, 0, 0);
      break;
    case kVersion: {
      const std::string& v = shared_.options.version;
      ResponseHeader(out, h, kSuccess, 0, 0, v.size(), 0);
      out.Append(ByteView(v));
      break;
    }
    case kQuit:
      ResponseHeader(out, h, kSuccess, 0, 0, 0, 0);
      closing_ = true;
      break;
    case kQuitQ:
      closing_ = true;
      break;
    case kStat:
      BinaryStat(r, out);
      break;
    default:
      Bump(counters_.protocol_errors);
      Simple(out, h, kUnknownCommand);
      break;
  }
  if (cold_reading_) return 0;  // the packet runs again once its item's record is in
  return consumed;
}

void Session::BinaryRetrieve(const BinaryRequest& r, Buffer& out) {
  const Header& h = r.h;
  const bool touch = h.opcode >= kGat;
  const bool with_key =
      h.opcode == kGetK || h.opcode == kGetKQ || h.opcode == kGatK || h.opcode == kGatKQ;
  ReadOptions ro;
  if (touch) ro.touch_exptime = static_cast<int32_t>(Be32(r.extras));
  ro.defer_cold = Defer(r.key);
  LogFetch(r.key);
  const Outcome o = shared_.store->Read(r.key, ro, [&](const ItemView& item) {
    const uint16_t klen = with_key ? h.keylen : 0;
    ResponseHeader(out, h, kSuccess, 4, klen, item.value_size(), item.cas());
    EncodeBigEndian32(out.Prepare(4).data(), item.flags());
    out.Commit(4);
    if (with_key) out.Append(ByteView(r.key));
    item.AppendValueTo(out);
  });
  if (o == Outcome::kColdPending) {
    StartColdRead(r.key);
    return;
  }
  Bump(touch ? counters_.cmd_touch : counters_.cmd_get);
  shared_.prefix_stats.RecordGet(r.key, o == Outcome::kOk);
  if (o == Outcome::kOk) {
    Bump(touch ? counters_.touch_hits : counters_.get_hits);
    return;
  }
  if (o == Outcome::kIoError) {
    Simple(out, h, kInternalError);  // even for quiet gets: not a miss
    return;
  }
  Bump(touch ? counters_.touch_misses : counters_.get_misses);
  if (r.quiet) return;
  if (with_key) {
    ResponseHeader(out, h, kKeyEnoent, 0, h.keylen, 0, 0);
    out.Append(ByteView(r.key));
  } else {
    Simple(out, h, kKeyEnoent);
  }
}

void Session::BinaryStore(const BinaryRequest& r, Buffer& out) {
  const Header& h = r.h;
  StoreMode mode = StoreMode::kSet;
  WriteOptions w;
  w.cas = h.cas;
  switch (h.opcode) {
    case kAdd: case kAddQ: mode = StoreMode::kAdd; w.cas = 0; break;
    case kReplace: case kReplaceQ: mode = StoreMode::kReplace; break;
    case kAppend: case kAppendQ: mode = StoreMode::kAppend; break;
    case kPrepend: case kPrependQ: mode = StoreMode::kPrepend; break;
    default: break;
  }
  if (h.extlen == kStoreExtras) {
    w.flags = Be32(r.extras);
    w.exptime = static_cast<int32_t>(Be32(r.extras + 4));
  }
  w.defer_cold = Defer(r.key);
  LogFetch(r.key);
  const WriteResult res = shared_.store->Write(mode, r.key, r.value, w);
  if (res.outcome == Outcome::kColdPending) {
    StartColdRead(r.key);
    return;
  }
  Bump(counters_.cmd_set);
  shared_.prefix_stats.RecordSet(r.key);  // every binary store, as memcached counts
  {
    static constexpr std::string_view kNames[] = {"set", "add", "replace", "append", "prepend"};
    const std::string_view cmd = w.cas != 0 ? std::string_view("cas") : kNames[static_cast<int>(mode)];
    LogStore(r.key, res.outcome, cmd, w.exptime, r.value.size(), w.flags);
  }
  switch (res.outcome) {
    case Outcome::kOk:
      if (!r.quiet) ResponseHeader(out, h, kSuccess, 0, 0, 0, res.cas);
      break;
    case Outcome::kNotStored:
      Simple(out, h, mode == StoreMode::kAdd       ? kKeyEexists
                     : mode == StoreMode::kReplace ? kKeyEnoent
                                                   : kNotStored);
      break;
    case Outcome::kExists:
      Simple(out, h, kKeyEexists);
      break;
    case Outcome::kNotFound:
      Simple(out, h, kKeyEnoent);
      break;
    case Outcome::kTooLarge:
      Bump(counters_.store_too_large);
      Simple(out, h, kE2big);
      break;
    case Outcome::kIoError:
      Simple(out, h, kInternalError);
      break;
    default:
      Bump(counters_.store_no_memory);
      Simple(out, h, kEnomem);
      break;
  }
}

void Session::BinaryDelete(const BinaryRequest& r, Buffer& out) {
  DeleteOptions d;
  d.cas = r.h.cas;
  d.defer_cold = Defer(r.key);
  LogFetch(r.key);
  const Outcome o = shared_.store->Delete(r.key, d);
  if (o == Outcome::kColdPending) {
    StartColdRead(r.key);
    return;
  }
  shared_.prefix_stats.RecordDelete(r.key);
  if (o == Outcome::kOk) {
    Bump(counters_.delete_hits);
    if (!r.quiet) ResponseHeader(out, r.h, kSuccess, 0, 0, 0, 0);
  } else if (o == Outcome::kExists) {
    Simple(out, r.h, kKeyEexists);
  } else if (o == Outcome::kIoError) {
    Simple(out, r.h, kInternalError);
  } else {
    Bump(counters_.delete_misses);
    Simple(out, r.h, kKeyEnoent);
  }
}

void Session::BinaryArith(const BinaryRequest& r, Buffer& out) {
  const Header& h = r.h;
  const bool incr = h.opcode == kIncrement || h.opcode == kIncrementQ;
  ArithOptions a;
  a.increment = incr;
  a.delta = Be64(r.extras);
  a.cas = h.cas;
  const uint32_t exp = Be32(r.extras + 16);
  if (exp != kArithNoCreate) {
    a.initial = Be64(r.extras + 8);
    a.exptime = static_cast<int32_t>(exp);
  }
  a.defer_cold = Defer(r.key);
  LogFetch(r.key);
  const ArithResult res = shared_.store->Arith(r.key, a);
  if (res.outcome == Outcome::kColdPending) {
    StartColdRead(r.key);
    return;
  }
  switch (res.outcome) {
    case Outcome::kOk:
      Bump(incr ? counters_.incr_hits : counters_.decr_hits);
      if (!r.quiet) {
        ResponseHeader(out, h, kSuccess, 0, 0, 8, res.cas);
        EncodeBigEndian64(out.Prepare(8).data(), res.value);
        out.Commit(8);
      }
      break;
    case Outcome::kNonNumeric:
      Simple(out, h, kDeltaBadval);
      break;
    case Outcome::kExists:
      Simple(out, h, kKeyEexists);
      break;
    case Outcome::kNoMemory:
      Simple(out, h, kEnomem);
      break;
    case Outcome::kIoError:
      Simple(out, h, kInternalError);
      break;
    default:
      Bump(incr ? counters_.incr_misses : counters_.decr_misses);
      Simple(out, h, kKeyEnoent);
      break;
  }
}

void Session::BinaryTouch(const BinaryRequest& r, Buffer& out) {
  ReadOptions ro;
  ro.touch_exptime = static_cast<int32_t>(Be32(r.extras));
  ro.defer_cold = Defer(r.key);
  LogFetch(r.key);
  const Outcome o = shared_.store->Read(r.key, ro, [&](const ItemView& item) {
    ResponseHeader(out, r.h, kSuccess, 4, 0, 0, item.cas());
    EncodeBigEndian32(out.Prepare(4).data(), item.flags());
    out.Commit(4);
  });
  if (o == Outcome::kColdPending) {
    StartColdRead(r.key);
    return;
  }
  Bump(counters_.cmd_touch);
  shared_.prefix_stats.RecordGet(r.key, o == Outcome::kOk);  // memcached counts a touch as a get
  if (o == Outcome::kOk) {
    Bump(counters_.touch_hits);
  } else if (o == Outcome::kIoError) {
    Simple(out, r.h, kInternalError);
  } else {
    Bump(counters_.touch_misses);
    Simple(out, r.h, kKeyEnoent);
  }
}

// The text protocol's stats, one packet per line, then an empty packet.
void Session::BinaryStat(const BinaryRequest& r, Buffer& out) {
  std::vector<std::string_view> words{"stats"};
  if (!r.key.empty()) words.push_back(r.key);
  if (r.key.starts_with("detail")) {
    // memcached: "detail on" / "detail off" answer the terminator alone;
    // "detail dump" one stat named "detailed" holding the text dump, then
    // the terminator; anything else ENOENT.
    const std::string_view arg = r.key.substr(6);
    if (arg.starts_with(" dump")) {
      const std::string dump = shared_.prefix_stats.Dump();
      constexpr std::string_view kName = "detailed";
      ResponseHeader(out, r.h, kSuccess, 0, static_cast<uint16_t>(kName.size()), dump.size(), 0);
      out.Append(ByteView(kName));
      out.Append(ByteView(dump));
      ResponseHeader(out, r.h, kSuccess, 0, 0, 0, 0);
      return;
    }
    if (arg.starts_with(" on") || arg.starts_with(" off")) {
      shared_.prefix_stats.Enable(arg.starts_with(" on"));
      ResponseHeader(out, r.h, kSuccess, 0, 0, 0, 0);
      return;
    }
    Simple(out, r.h, kKeyEnoent);
    return;
  }
  if (r.key == "conns") {
    Simple(out, r.h, kKeyEnoent);  // memcached answers "stats conns" in text only
    return;
  }
  if (r.key == "reset") {
    shared_.ResetCounters();
  } else {
    Buffer text;
    Stats(words, text);
    std::string_view all = text.readable().AsStringView();
    if (all == "ERROR\r\n") {
      Simple(out, r.h, kKeyEnoent);
      return;
    }
    while (!all.empty()) {
      const size_t eol = all.find("\r\n");
      std::string_view line = all.substr(0, eol);
      all.remove_prefix(eol + 2);
      if (!line.starts_with("STAT ")) continue;
      line.remove_prefix(5);
      const size_t sp = line.find(' ');
      const std::string_view name = line.substr(0, sp);
      const std::string_view val = sp == std::string_view::npos ? "" : line.substr(sp + 1);
      ResponseHeader(out, r.h, kSuccess, 0, static_cast<uint16_t>(name.size()), val.size(), 0);
      out.Append(ByteView(name));
      out.Append(ByteView(val));
    }
  }
  ResponseHeader(out, r.h, kSuccess, 0, 0, 0, 0);
}

}  // namespace qcloud::kv
