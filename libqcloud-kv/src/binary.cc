// memcached's binary protocol (protocol_binary.h; behaviour checked against
// memcached 1.6.18 in docs/notes/memcached-protocol.md, section 8).
//
// Packet: a 24-byte big-endian header, then extras, key and value.
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

enum Status : uint16_t {
  kSuccess = 0x00, kKeyEnoent = 0x01, kKeyEexists = 0x02, kE2big = 0x03, kEinval = 0x04,
  kNotStored = 0x05, kDeltaBadval = 0x06, kUnknownCommand = 0x81, kEnomem = 0x82,
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
    default: return "";
  }
}

uint16_t Be16(const uint8_t* p) { return static_cast<uint16_t>((p[0] << 8) | p[1]); }
uint32_t Be32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}
uint64_t Be64(const uint8_t* p) { return (uint64_t{Be32(p)} << 32) | Be32(p + 4); }
void PutBe16(std::byte* p, uint16_t v) {
  p[0] = std::byte(v >> 8);
  p[1] = std::byte(v);
}
void PutBe32(std::byte* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = std::byte(v >> (24 - 8 * i));
}
void PutBe64(std::byte* p, uint64_t v) {
  PutBe32(p, static_cast<uint32_t>(v >> 32));
  PutBe32(p + 4, static_cast<uint32_t>(v));
}

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
  std::byte* p = out.Prepare(24).data();
  p[0] = std::byte{0x81};
  p[1] = std::byte{h.opcode};
  PutBe16(p + 2, keylen);
  p[4] = std::byte{extlen};
  p[5] = std::byte{0};
  PutBe16(p + 6, status);
  PutBe32(p + 8, static_cast<uint32_t>(extlen + keylen + valuelen));
  std::memcpy(p + 12, h.opaque, 4);
  PutBe64(p + 16, cas);
  out.Commit(24);
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
      return ext == 8 && key > 0;
    case kGet: case kGetQ: case kGetK: case kGetKQ:
      return ext == 0 && body == key && key > 0;
    case kDelete: case kDeleteQ:
      return key > 0 && ext == 0 && body == key;
    case kIncrement: case kDecrement: case kIncrementQ: case kDecrementQ:
      return key > 0 && ext == 20 && body == key + 20;
    case kAppend: case kPrepend: case kAppendQ: case kPrependQ:
      return key > 0 && ext == 0;
    case kStat:
      return ext == 0;
    case kVersion: case kNoop: case kQuit: case kQuitQ:
      return ext == 0 && key == 0 && body == 0;
    case kFlush: case kFlushQ:
      return key == 0 && body == ext && (ext == 0 || ext == 4);
    case kTouch: case kGat: case kGatQ: case kGatK: case kGatKQ:
      return ext == 4 && key > 0 && body == key + 4;
    default:
      return true;
  }
}

bool KnownOpcode(uint8_t op) {
  return op <= kGatKQ && op != 0x1b && op != 0x1f && op != 0x20 && op != 0x21 && op != 0x22;
}

}  // namespace

size_t Session::Binary(ByteView in, Buffer& out) {
  if (in.size() < 24) return 0;
  const uint8_t* p = in.u8();
  if (p[0] != 0x80) {  // bad magic: memcached closes without a reply
    Bump(counters_.protocol_errors);
    closing_ = true;
    return in.size();
  }
  Header h{p[1], Be16(p + 2), p[4], Be32(p + 8), p + 12, Be64(p + 16)};
  Store& store = *shared_.store;
  const size_t max_body = store.options().item_size_max + 8 + kMaxKeyLength;
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
      const size_t klen = std::min<size_t>(h.keylen, in.size() - 24 > h.extlen ? in.size() - 24 - h.extlen : 0);
      if (klen == h.keylen) {
        store.Delete(std::string_view(reinterpret_cast<const char*>(p + 24 + h.extlen), h.keylen));
      }
    }
    Bump(counters_.store_too_large);
    Simple(out, h, KnownOpcode(h.opcode) ? kE2big : kUnknownCommand);
    const size_t now_n = std::min<size_t>(in.size(), 24 + size_t{h.bodylen});
    swallow_ = 24 + uint64_t{h.bodylen} - now_n;
    return now_n;
  }
  if (in.size() < 24 + size_t{h.bodylen}) return 0;
  const size_t consumed = 24 + size_t{h.bodylen};
  const uint8_t* extras = p + 24;
  const std::string_view key(reinterpret_cast<const char*>(extras + h.extlen), h.keylen);
  const ByteView value(extras + h.extlen + h.keylen, h.bodylen - h.extlen - h.keylen);
  const bool quiet = IsQuiet(h.opcode);

  switch (h.opcode) {
    case kGet: case kGetQ: case kGetK: case kGetKQ:
    case kGat: case kGatQ: case kGatK: case kGatKQ: {
      const bool touch = h.opcode >= kGat;
      const bool with_key = h.opcode == kGetK || h.opcode == kGetKQ || h.opcode == kGatK ||
                            h.opcode == kGatKQ;
      ReadOptions ro;
      if (touch) ro.touch_exptime = static_cast<int32_t>(Be32(extras));
      Bump(touch ? counters_.cmd_touch : counters_.cmd_get);
      const Outcome o = store.Read(key, ro, [&](const ItemView& item) {
        const uint16_t klen = with_key ? h.keylen : 0;
        ResponseHeader(out, h, kSuccess, 4, klen, item.value_size(), item.cas());
        std::byte* e = out.Prepare(4).data();
        PutBe32(e, item.flags());
        out.Commit(4);
        if (with_key) out.Append(ByteView(key));
        item.AppendValueTo(out);
      });
      if (o == Outcome::kOk) {
        Bump(touch ? counters_.touch_hits : counters_.get_hits);
      } else {
        Bump(touch ? counters_.touch_misses : counters_.get_misses);
        if (!quiet) {
          if (with_key) {
            ResponseHeader(out, h, kKeyEnoent, 0, h.keylen, 0, 0);
            out.Append(ByteView(key));
          } else {
            Simple(out, h, kKeyEnoent);
          }
        }
      }
      break;
    }
    case kSet: case kAdd: case kReplace: case kSetQ: case kAddQ: case kReplaceQ:
    case kAppend: case kPrepend: case kAppendQ: case kPrependQ: {
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
      if (h.extlen == 8) {
        w.flags = Be32(extras);
        w.exptime = static_cast<int32_t>(Be32(extras + 4));
      }
      Bump(counters_.cmd_set);
      const WriteResult r = store.Write(mode, key, value, w);
      switch (r.outcome) {
        case Outcome::kOk:
          if (!quiet) ResponseHeader(out, h, kSuccess, 0, 0, 0, r.cas);
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
        default:
          Bump(counters_.store_no_memory);
          Simple(out, h, kEnomem);
          break;
      }
      break;
    }
    case kDelete: case kDeleteQ: {
      DeleteOptions d;
      d.cas = h.cas;
      const Outcome o = store.Delete(key, d);
      if (o == Outcome::kOk) {
        Bump(counters_.delete_hits);
        if (!quiet) ResponseHeader(out, h, kSuccess, 0, 0, 0, 0);
      } else if (o == Outcome::kExists) {
        Simple(out, h, kKeyEexists);
      } else {
        Bump(counters_.delete_misses);
        Simple(out, h, kKeyEnoent);
      }
      break;
    }
    case kIncrement: case kDecrement: case kIncrementQ: case kDecrementQ: {
      const bool incr = h.opcode == kIncrement || h.opcode == kIncrementQ;
      ArithOptions a;
      a.increment = incr;
      a.delta = Be64(extras);
      a.cas = h.cas;
      const uint32_t exp = Be32(extras + 16);
      if (exp != 0xffffffffu) {
        a.initial = Be64(extras + 8);
        a.exptime = static_cast<int32_t>(exp);
      }
      const ArithResult r = store.Arith(key, a);
      switch (r.outcome) {
        case Outcome::kOk:
          Bump(incr ? counters_.incr_hits : counters_.decr_hits);
          if (!quiet) {
            ResponseHeader(out, h, kSuccess, 0, 0, 8, r.cas);
            PutBe64(out.Prepare(8).data(), r.value);
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
        default:
          Bump(incr ? counters_.incr_misses : counters_.decr_misses);
          Simple(out, h, kKeyEnoent);
          break;
      }
      break;
    }
    case kTouch: {
      ReadOptions ro;
      ro.touch_exptime = static_cast<int32_t>(Be32(extras));
      Bump(counters_.cmd_touch);
      const Outcome o = store.Read(key, ro, [&](const ItemView& item) {
        ResponseHeader(out, h, kSuccess, 4, 0, 0, item.cas());
        PutBe32(out.Prepare(4).data(), item.flags());
        out.Commit(4);
      });
      if (o == Outcome::kOk) {
        Bump(counters_.touch_hits);
      } else {
        Bump(counters_.touch_misses);
        Simple(out, h, kKeyEnoent);
      }
      break;
    }
    case kFlush: case kFlushQ:
      Bump(counters_.cmd_flush);
      store.FlushAll(h.extlen == 4 ? static_cast<int32_t>(Be32(extras)) : 0);
      if (!quiet) ResponseHeader(out, h, kSuccess, 0, 0, 0, 0);
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
    case kStat: {
      // The text protocol's stats, one packet per line.
      std::vector<std::string_view> words{"stats"};
      if (!key.empty()) words.push_back(key);
      if (key == "reset") {
        shared_.ResetCounters();
      } else {
        Buffer text;
        Stats(words, text);
        std::string_view all = text.readable().AsStringView();
        if (all == "ERROR\r\n") {
          Simple(out, h, kKeyEnoent);
          break;
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
          ResponseHeader(out, h, kSuccess, 0, static_cast<uint16_t>(name.size()), val.size(), 0);
          out.Append(ByteView(name));
          out.Append(ByteView(val));
        }
      }
      ResponseHeader(out, h, kSuccess, 0, 0, 0, 0);
      break;
    }
    default:
      Bump(counters_.protocol_errors);
      Simple(out, h, kUnknownCommand);
      break;
  }
  return consumed;
}

}  // namespace qcloud::kv
