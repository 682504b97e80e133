// memcached's text and meta protocols, reply for reply. The exact strings,
// token counts and the order of checks follow memcached 1.6.18 (see
// docs/notes/memcached-protocol.md and tests/interop/kv_differential.py,
// which compares every reply with a real memcached). Where memcached's
// behaviour looks odd it is kept on purpose when a client can see it:
//   - a storage command whose line is invalid does not consume its data
//     block: the data line is then read as a command (usually "ERROR");
//   - a data block is exactly <bytes> + "\r\n", checked by count only;
//   - an oversized value is discarded by count, then answered;
//   - "noreply" is found before validation, so it also hides errors.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>
#include <utility>

#include <fmt/format.h>

#include "kv/numbers.h"
#include "kv/session.h"
#include "kv/stats.h"

namespace qcloud::kv {

namespace {

constexpr size_t kMaxTokens = 24;  // memcached's MAX_TOKENS (incl. the terminal one)

// memcached's tokenizer: split on ' ' only, at most kMaxTokens-1 words; the
// unsplit remainder (if any) is returned in *rest. A NUL ends the line
// (memcached works on C strings).
void Tokenize(std::string_view line, std::vector<std::string_view>& words,
              std::string_view* rest) {
  words.clear();
  if (size_t nul = line.find('\0'); nul != std::string_view::npos) line = line.substr(0, nul);
  size_t i = 0;
  const size_t n = line.size();
  while (i < n) {
    while (i < n && line[i] == ' ') ++i;
    if (i >= n) break;
    size_t j = i;
    while (j < n && line[j] != ' ') ++j;
    words.push_back(line.substr(i, j - i));
    i = j;
    if (words.size() == kMaxTokens - 1) {
      if (i < n) ++i;  // the separating space
      if (rest != nullptr) *rest = line.substr(std::min(i, n));
      return;
    }
  }
  if (rest != nullptr) *rest = {};
}

void Put(Buffer& out, std::string_view s) { out.Append(ByteView(s)); }

// A cold-tier failure on the key: memcached's form for a server-side error.
// The item may exist, so it is never answered as a miss.
constexpr std::string_view kColdTierError = "SERVER_ERROR cold tier I/O error";

bool IsNoreply(const std::vector<std::string_view>& t) {
  return t.size() >= 2 && t.back() == "noreply";
}

enum StorageKind { kSetCmd, kAddCmd, kReplaceCmd, kAppendCmd, kPrependCmd, kCasCmd };
// Their names in `watch mutations` lines.
constexpr std::string_view kCmdNames[] = {"set", "add", "replace", "append", "prepend", "cas"};

}  // namespace

void ServerShared::ResetCounters() {
  for (auto& w : *workers) {
#define QCLOUD_KV_RESET(name) w.name.store(0, std::memory_order_relaxed);
    QCLOUD_KV_COUNTERS(QCLOUD_KV_RESET)
#undef QCLOUD_KV_RESET
  }
  if (loop != nullptr) loop->ResetStats();
  prefix_stats.Clear();
}

void Session::Reply(Buffer& out, std::string_view s) {
  if (noreply_) return;
  Put(out, s);
  Put(out, "\r\n");
}

namespace {
constexpr int64_t kReadPending = INT64_MIN;  // cold_result_ until the loop sets it
}  // namespace

uint32_t Session::CoarseSeconds() noexcept {
  // The coarse clock is a plain memory read in the vDSO: cheap enough for
  // every Process() call, and seconds are all `stats conns` shows.
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return static_cast<uint32_t>(ts.tv_sec);
}

void Session::PrefetchGets(ByteView in) {
  // Only pipelined input: with one request there is nothing to overlap.
  std::string_view text = in.AsStringView();
  const size_t first = text.find('\n');
  if (first == std::string_view::npos || first + 1 >= text.size()) return;
  constexpr int kMaxLines = 32;
  std::string_view keys[kMaxLines];
  size_t count = 0;
  for (int n = 0; n < kMaxLines && !text.empty(); ++n) {
    const size_t nl = text.find('\n');
    if (nl == std::string_view::npos) break;
    std::string_view line = text.substr(0, nl);
    text.remove_prefix(nl + 1);
    if (!line.starts_with("get ") && !line.starts_with("gets ") && !line.starts_with("mg ")) continue;
    line.remove_prefix(line.find(' ') + 1);
    keys[count++] = line.substr(0, line.find_first_of(" \r"));
  }
  if (count > 1) shared_.store->Prefetch(std::span<const std::string_view>(keys, count));
}

void Session::StartColdRead(std::string_view key) {
  cold_key_.assign(key);
  cold_record_.resize(cold_fetch_.length);
  cold_result_ = kReadPending;
  cold_reading_ = true;
  MutableByteView dst(reinterpret_cast<std::byte*>(cold_record_.data()), cold_record_.size());
  if (!io_->Read(cold_fetch_.fd, cold_fetch_.offset, dst, &cold_result_)) {
    cold_result_ = -EBUSY;  // not started: the repeated request reads it itself
  }
}

void Session::FinishColdRead() {
  if (cold_result_ == static_cast<int64_t>(cold_record_.size())) {
    // Whatever this says, the request runs again without deferring.
    (void)shared_.store->FaultIn(cold_key_, cold_fetch_, ByteView(cold_record_));
  }
  cold_fetch_.hold.reset();
  cold_retry_key_.swap(cold_key_);
  cold_reading_ = false;
  if (cold_record_.capacity() > 64 * 1024) std::string().swap(cold_record_);
}

size_t Session::Process(ByteView in, Buffer& out) {
  if (watcher_ != nullptr) {
    // A watcher takes no more commands (its input is read and dropped, so
    // that its close is seen); it sends the lines logged for it.
    if (out.size() < shared_.options.output_high_water) {
      watcher_->Take(&watch_lines_);
      Put(out, watch_lines_);
    }
    return in.size();
  }
  size_t used = 0;
  if (cold_reading_ && cold_result_ != kReadPending) FinishColdRead();
  if (mode_ == Mode::kText) PrefetchGets(in);
  // Replies of the previous call have been handed to the loop: memcached's
  // batch of one read is written out.
  batch_unflushed_ = false;
  held_.clear();
  while (!closing_ && !blocked(out)) {
    ByteView rest = in.subview(used, in.size() - used);
    if (swallow_ > 0) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(swallow_, rest.size()));
      used += n;
      swallow_ -= n;
      if (swallow_ > 0) break;
      Put(out, after_swallow_);
      after_swallow_.clear();
      continue;
    }
    if (dump_) {
      // Input after a metadump waits for its END, as on memcached.
      ProduceDump(out);
      if (dump_) break;
      continue;
    }
    if (rest.empty()) break;
    if (mode_ == Mode::kUnknown) {
      mode_ = rest.u8()[0] == 0x80 ? Mode::kBinary : Mode::kText;
    }
    if (mode_ == Mode::kBinary) {
      const size_t n = Binary(rest, out);
      if (n == 0) break;  // incomplete, or waiting for a cold read
      used += n;
      cold_retry_key_.clear();
      continue;
    }
    const char* begin = rest.chars();
    const void* nl = std::memchr(begin, '\n', rest.size());
    if (nl == nullptr) {
      // No complete line. memcached closes a connection that buffers more
      // than 2048 bytes without a newline unless the line is a get/gets
      // (which may list many keys), allowing up to 100 leading spaces.
      if (rest.size() > shared_.options.max_line) {
        size_t s = 0;
        while (s < rest.size() && s < 100 && begin[s] == ' ') ++s;
        std::string_view head(begin + s, rest.size() - s);
        const bool is_get = head.starts_with("get ") || head.starts_with("gets ");
        if (!is_get || rest.size() > shared_.options.max_get_line) {
          Bump(counters_.protocol_errors);
          closing_ = true;
        }
      }
      break;
    }
    const size_t line_len = static_cast<size_t>(static_cast<const char*>(nl) - begin);
    std::string_view line(begin, line_len);
    if (line_len > 0 && line.back() == '\r') line.remove_suffix(1);
    const ByteView after = rest.subview(line_len + 1, rest.size() - line_len - 1);
    const size_t out_before = out.size();
    noreply_ = false;
    const int64_t data = Text(line, after, out);
    awaiting_data_ = data < 0 && !cold_reading_;
    if (data < 0) break;  // the value has not fully arrived, or a cold read runs
    if (cold_reading_) break;  // a multi-get waits for a cold read (get_resume_ says where)
    if (watcher_ != nullptr) return in.size();  // what follows `watch` is dropped
    if (get_resume_ != 0) break;  // multi-get paused on a full output buffer
    used += line_len + 1 + static_cast<size_t>(data);
    cold_retry_key_.clear();
    if (cmd_flushes_) {
      batch_unflushed_ = false;
      held_.clear();
    } else {
      batch_unflushed_ = true;
    }
    (void)out_before;
  }
  ConnState state = ConnState::kRead;
  if (cold_reading_) {
    state = ConnState::kIoQueue;
  } else if (swallow_ > 0) {
    state = ConnState::kSwallow;
  } else if (awaiting_data_) {
    state = ConnState::kNread;
  }
  conn_state_.store(state, std::memory_order_relaxed);
  if (used > 0) last_cmd_.store(CoarseSeconds(), std::memory_order_relaxed);
  return used;
}

int64_t Session::Text(std::string_view line, ByteView rest, Buffer& out) {
  std::vector<std::string_view>& t = tokens_;
  std::string_view remainder;
  Tokenize(line, t, &remainder);
  if (t.empty() || t[0].size() < 2) {
    Reply(out, "ERROR");
    return 0;
  }
  const size_t ntokens = t.size() + 1;  // memcached counts a terminal token
  const std::string_view cmd = t[0];
  cmd_flushes_ = cmd == "get" || cmd == "gets" || cmd == "gat" || cmd == "gats" || cmd == "mn";
  auto error = [&] {
    Reply(out, "ERROR");
    return int64_t{0};
  };
  if (cmd[0] == 'm' && cmd.size() == 2) {
    switch (cmd[1]) {
      case 'g':
        return MetaGet(t, out);
      case 's':
        return MetaSet(t, rest, out);
      case 'd':
        return MetaDelete(t, out);
      case 'a':
        return MetaArith(t, out);
      case 'n':
        Put(out, "MN\r\n");
        return 0;
      case 'e':
        MetaDebug(t, out);
        return 0;
      default:
        return error();
    }
  }
  if (cmd == "get" || cmd == "gets" || cmd == "gat" || cmd == "gats") {
    if (ntokens < 3) return error();
    Retrieval(line, t, cmd == "gets" || cmd == "gats", cmd[1] == 'a', out);
    return 0;
  }
  int kind = -1;
  if (cmd == "set") kind = kSetCmd;
  if (cmd == "add") kind = kAddCmd;
  if (cmd == "replace") kind = kReplaceCmd;
  if (cmd == "append") kind = kAppendCmd;
  if (cmd == "prepend") kind = kPrependCmd;
  if (cmd == "cas") kind = kCasCmd;
  if (kind >= 0) {
    const size_t want = kind == kCasCmd ? 7 : 6;
    if (ntokens != want && ntokens != want + 1) return error();
    return Storage(t, kind, rest, out);
  }
  if (cmd == "incr" || cmd == "decr") {
    if (ntokens != 4 && ntokens != 5) return error();
    Arithmetic(t, cmd == "incr", out);
    return 0;
  }
  if (cmd == "touch") {
    if (ntokens != 4 && ntokens != 5) return error();
    Touch(t, out);
    return 0;
  }
  if (cmd == "delete") {
    if (ntokens < 3 || ntokens > 5) return error();
    DeleteCmd(t, out);
    return 0;
  }
  if (cmd == "stats") {
    Stats(t, out);
    return 0;
  }
  if (cmd == "slabs") {
    Slabs(t, out);
    return 0;
  }
  if (cmd == "lru_crawler") {
    LruCrawler(t, out);
    return 0;
  }
  if (cmd == "lru") {
    Lru(t, out);
    return 0;
  }
  if (cmd == "flush_all") {
    if (ntokens < 2 || ntokens > 4) return error();
    FlushAll(t, out);
    return 0;
  }
  if (cmd == "version") {
    Put(out, "VERSION ");
    Put(out, shared_.options.version);
    Put(out, "\r\n");
    return 0;
  }
  if (cmd == "quit") {
    closing_ = true;
    return 0;
  }
  if (cmd == "verbosity") {
    if (ntokens != 3 && ntokens != 4) return error();
    Verbosity(t, out);
    return 0;
  }
  if (cmd == "watch") {
    Watch(t, out);
    return 0;
  }
  if (cmd == "cache_memlimit") {
    if (ntokens != 3 && ntokens != 4) return error();
    noreply_ = IsNoreply(t);
    uint32_t mb = 0;
    if (!SafeStrtoul32(t[1], &mb)) {
      Reply(out, "ERROR");
    } else if (mb < 8) {
      Reply(out, "MEMLIMIT_TOO_SMALL cannot set maxbytes to less than 8m");
    } else if (mb > 1000000000) {
      Reply(out, "MEMLIMIT_ADJUST_FAILED input value is megabytes not bytes");
    } else if ((uint64_t{mb} << 20) == shared_.store->options().memory_bytes) {
      Reply(out, "OK");
    } else {
      // The block pool is sized once, at start; memcached's own reply for
      // a limit it cannot apply.
      Reply(out, "MEMLIMIT_ADJUST_FAILED out of bounds or unable to adjust");
    }
    return 0;
  }
  if (cmd == "shutdown") {
    Put(out, "ERROR: shutdown not enabled\r\n");
    return 0;
  }
  // memcached drops connections that speak HTTP to it.
  if (t.size() >= 2 && t[t.size() - 1].starts_with("HTTP/")) {
    closing_ = true;
    return 0;
  }
  return error();
}

int64_t Session::Storage(const std::vector<std::string_view>& t, int kind, ByteView rest,
                         Buffer& out) {
  noreply_ = IsNoreply(t);
  const std::string_view key = t[1];
  if (key.size() > kMaxKeyLength) {
    Reply(out, "CLIENT_ERROR bad command line format");
    return 0;
  }
  uint32_t flags = 0;
  int32_t exptime = 0;
  int32_t vlen = 0;
  if (!(SafeStrtoul32(t[2], &flags) && SafeStrtol32(t[3], &exptime) && SafeStrtol32(t[4], &vlen))) {
    Reply(out, "CLIENT_ERROR bad command line format");
    return 0;
  }
  uint64_t cas = 0;
  if (kind == kCasCmd && !SafeStrtoull(t[5], &cas)) {
    Reply(out, "CLIENT_ERROR bad command line format");
    return 0;
  }
  if (vlen < 0 || vlen > INT_MAX - 2) {
    Reply(out, "CLIENT_ERROR bad command line format");
    return 0;
  }
  const size_t total = static_cast<size_t>(vlen) + 2;
  Store& store = *shared_.store;
  if (static_cast<size_t>(vlen) > store.MaxValueSize(key.size())) {
    // Discard the data as it arrives, then answer (memcached's swallow).
    shared_.prefix_stats.RecordSet(key);
    Bump(counters_.store_too_large);
    LogStore(key, Outcome::kTooLarge, kCmdNames[kind], 0, 0, 0);
    if (kind == kSetCmd) {
      LogFetch(key);
      store.Delete(key);  // no stale value survives a failed set
    }
    const size_t now_n = std::min(total, rest.size());
    swallow_ = total - now_n;
    std::string reply = noreply_ ? "" : "SERVER_ERROR object too large for cache\r\n";
    if (swallow_ == 0) {
      Put(out, reply);
    } else {
      after_swallow_ = std::move(reply);
    }
    return static_cast<int64_t>(now_n);
  }
  if (rest.size() < total) return -1;
  const ByteView data = rest.first(static_cast<size_t>(vlen));
  if (rest.chars()[vlen] != '\r' || rest.chars()[vlen + 1] != '\n') {
    shared_.prefix_stats.RecordSet(key);
    Bump(counters_.cmd_set);
    Reply(out, "CLIENT_ERROR bad data chunk");
    return static_cast<int64_t>(total);
  }
  static constexpr StoreMode kModes[] = {StoreMode::kSet,    StoreMode::kAdd,
                                         StoreMode::kReplace, StoreMode::kAppend,
                                         StoreMode::kPrepend, StoreMode::kSet};
  WriteOptions w;
  w.flags = flags;
  w.exptime = exptime;
  w.cas = cas;
  w.defer_cold = Defer(key);
  LogFetch(key);
  WriteResult r;
  if (kind == kCasCmd && cas == 0) {
    // Store::Write treats cas 0 as "no cas"; memcached's text cas 0 is a
    // real comparison that fails (EXISTS) or misses (NOT_FOUND).
    r.outcome = store.Get(key, nullptr) ? Outcome::kExists : Outcome::kNotFound;
  } else {
    r = store.Write(kModes[kind], key, data, w);
  }
  if (r.outcome == Outcome::kColdPending) {
    StartColdRead(key);
    return -1;  // the command runs again when the record is in
  }
  shared_.prefix_stats.RecordSet(key);
  Bump(counters_.cmd_set);
  LogStore(key, r.outcome, kCmdNames[kind], exptime, data.size(), flags);
  switch (r.outcome) {
    case Outcome::kOk:
      if (kind == kCasCmd) Bump(counters_.cas_hits);
      Reply(out, "STORED");
      break;
    case Outcome::kNotStored:
      Reply(out, "NOT_STORED");
      break;
    case Outcome::kExists:
      Bump(counters_.cas_badval);
      Reply(out, "EXISTS");
      break;
    case Outcome::kNotFound:
      Bump(counters_.cas_misses);
      Reply(out, "NOT_FOUND");
      break;
    case Outcome::kTooLarge:
      Bump(counters_.store_too_large);
      Reply(out, "SERVER_ERROR object too large for cache");
      break;
    case Outcome::kNoMemory:
      Bump(counters_.store_no_memory);
      Reply(out, "SERVER_ERROR out of memory storing object");
      break;
    case Outcome::kIoError:
      Reply(out, kColdTierError);
      break;
    default:
      Reply(out, "CLIENT_ERROR bad command line format");
      break;
  }
  return static_cast<int64_t>(total);
}

void Session::Retrieval(std::string_view line, const std::vector<std::string_view>& t, bool cas,
                        bool touch, Buffer& out) {
  Store& store = *shared_.store;
  size_t first = 1;
  ReadOptions ro;
  if (touch) {
    int32_t exptime = 0;
    if (!SafeStrtol32(t[1], &exptime)) {
      Put(out, "CLIENT_ERROR invalid exptime argument\r\n");
      return;
    }
    ro.touch_exptime = exptime;
    first = 2;
  }
  // Keys are walked over the whole line (memcached re-tokenizes past its
  // 24-token window, so a get may name any number of keys).
  std::string_view keys = line.substr(0, line.find('\0'));
  size_t pos = 0;
  for (size_t skip = 0; skip < first; ++skip) {
    while (pos < keys.size() && keys[pos] == ' ') ++pos;
    while (pos < keys.size() && keys[pos] != ' ') ++pos;
  }
  // A key over 250 bytes anywhere fails the whole command before any
  // VALUE is sent (memcached drops the replies it had built).
  if (get_resume_ == 0) {
    for (size_t p = pos; p < keys.size();) {
      while (p < keys.size() && keys[p] == ' ') ++p;
      size_t e = p;
      while (e < keys.size() && keys[e] != ' ') ++e;
      if (e - p > kMaxKeyLength) {
        Put(out, "CLIENT_ERROR bad command line format\r\n");
        return;
      }
      p = e;
    }
  }
  size_t index = 0;
  while (true) {
    while (pos < keys.size() && keys[pos] == ' ') ++pos;
    if (pos >= keys.size()) break;
    size_t end = pos;
    while (end < keys.size() && keys[end] != ' ') ++end;
    const std::string_view key = keys.substr(pos, end - pos);
    pos = end;
    if (index++ < get_resume_) continue;
    if (key.size() > kMaxKeyLength) {
      get_resume_ = 0;
      Put(out, "CLIENT_ERROR bad command line format\r\n");
      return;
    }
    ro.defer_cold = Defer(key);
    LogFetch(key);
    const Outcome o = store.Read(key, ro, [&](const ItemView& item) {
      Put(out, "VALUE ");
      Put(out, key);
      Put(out, " ");
      AppendUnsigned(out, item.flags());
      Put(out, " ");
      AppendUnsigned(out, item.value_size());
      if (cas) {
        Put(out, " ");
        AppendUnsigned(out, item.cas());
      }
      Put(out, "\r\n");
      item.AppendValueTo(out);
      Put(out, "\r\n");
    });
    if (o == Outcome::kColdPending) {
      get_resume_ = index - 1;  // the keys before this one are answered
      StartColdRead(key);
      return;
    }
    Bump(touch ? counters_.cmd_touch : counters_.cmd_get);
    shared_.prefix_stats.RecordGet(key, o == Outcome::kOk);
    if (o == Outcome::kOk) {
      Bump(touch ? counters_.touch_hits : counters_.get_hits);
    } else if (o == Outcome::kIoError) {
      // As memcached ends a get it cannot complete: the error, no END.
      get_resume_ = 0;
      Put(out, kColdTierError);
      Put(out, "\r\n");
      return;
    } else {
      Bump(touch ? counters_.touch_misses : counters_.get_misses);
    }
    if (blocked(out)) {
      get_resume_ = index;  // continue after this key once the client reads
      return;
    }
  }
  get_resume_ = 0;
  Put(out, "END\r\n");
}

void Session::Arithmetic(const std::vector<std::string_view>& t, bool incr, Buffer& out) {
  noreply_ = IsNoreply(t);
  if (t[1].size() > kMaxKeyLength) {
    Reply(out, "CLIENT_ERROR bad command line format");
    return;
  }
  uint64_t delta = 0;
  if (!SafeStrtoull(t[2], &delta)) {
    Reply(out, "CLIENT_ERROR invalid numeric delta argument");
    return;
  }
  ArithOptions o;
  // memcached rewrites an item in place only if no queued reply holds it.
  o.in_place = !Held(t[1]);
  o.increment = incr;
  o.delta = delta;
  o.defer_cold = Defer(t[1]);
  LogFetch(t[1]);
  const ArithResult r = shared_.store->Arith(t[1], o);
  if (r.outcome == Outcome::kColdPending) {
    StartColdRead(t[1]);  // runs again once the item is in memory
    return;
  }
  switch (r.outcome) {
    case Outcome::kOk: {
      Bump(incr ? counters_.incr_hits : counters_.decr_hits);
      if (noreply_) return;
      AppendUnsigned(out, r.value);
      Put(out, "\r\n");
      return;
    }
    case Outcome::kNonNumeric:
      Reply(out, "CLIENT_ERROR cannot increment or decrement non-numeric value");
      return;
    case Outcome::kNoMemory:
      Reply(out, "SERVER_ERROR out of memory");
      return;
    case Outcome::kIoError:
      Reply(out, kColdTierError);
      return;
    default:
      Bump(incr ? counters_.incr_misses : counters_.decr_misses);
      Reply(out, "NOT_FOUND");
      return;
  }
}

void Session::Touch(const std::vector<std::string_view>& t, Buffer& out) {
  noreply_ = IsNoreply(t);
  if (t[1].size() > kMaxKeyLength) {
    Reply(out, "CLIENT_ERROR bad command line format");
    return;
  }
  int32_t exptime = 0;
  if (!SafeStrtol32(t[2], &exptime)) {
    Reply(out, "CLIENT_ERROR invalid exptime argument");
    return;
  }
  ReadOptions ro;
  ro.touch_exptime = exptime;
  ro.defer_cold = Defer(t[1]);
  LogFetch(t[1]);
  const Outcome o = shared_.store->Read(t[1], ro, [](const ItemView&) {});
  if (o == Outcome::kColdPending) {
    StartColdRead(t[1]);
    return;
  }
  Bump(counters_.cmd_touch);
  if (o == Outcome::kOk) {
    Bump(counters_.touch_hits);
    Reply(out, "TOUCHED");
  } else if (o == Outcome::kIoError) {
    Reply(out, kColdTierError);
  } else {
    Bump(counters_.touch_misses);
    Reply(out, "NOT_FOUND");
  }
}

void Session::DeleteCmd(const std::vector<std::string_view>& t, Buffer& out) {
  const size_t ntokens = t.size() + 1;
  if (ntokens > 3) {
    const bool hold_is_zero = t[2] == "0";
    const bool sets_noreply = IsNoreply(t);
    noreply_ = sets_noreply;
    const bool valid =
        (ntokens == 4 && (hold_is_zero || sets_noreply)) || (ntokens == 5 && hold_is_zero && sets_noreply);
    if (!valid) {
      Reply(out, "CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]");
      return;
    }
  }
  if (t[1].size() > kMaxKeyLength) {
    Reply(out, "CLIENT_ERROR bad command line format");
    return;
  }
  LogFetch(t[1]);
  const Outcome o = shared_.store->Delete(t[1], {.defer_cold = Defer(t[1])});
  if (o == Outcome::kColdPending) {
    StartColdRead(t[1]);
    return;
  }
  shared_.prefix_stats.RecordDelete(t[1]);
  if (o == Outcome::kOk) {
    Bump(counters_.delete_hits);
    Reply(out, "DELETED");
  } else if (o == Outcome::kIoError) {
    Reply(out, kColdTierError);
  } else {
    Bump(counters_.delete_misses);
    Reply(out, "NOT_FOUND");
  }
}

void Session::FlushAll(const std::vector<std::string_view>& t, Buffer& out) {
  noreply_ = IsNoreply(t);
  const size_t ntokens = t.size() + 1;
  int32_t delay = 0;
  if (ntokens != (noreply_ ? 3u : 2u)) {
    if (!SafeStrtol32(t[1], &delay)) {
      Reply(out, "CLIENT_ERROR invalid exptime argument");
      return;
    }
  }
  Bump(counters_.cmd_flush);
  shared_.store->FlushAll(delay);
  Reply(out, "OK");
}

namespace {

// memcached's slab classes with its defaults (-n 48 -f 1.25, 1 MiB items,
// 512 KiB largest chunk): what "cls" means in `me` and metadump lines. This
// server keeps items in one block pool; reporting memcached's class for an
// item's size keeps tools that read the field working.
constexpr unsigned kLargestChunk = 512 * 1024;
const std::vector<unsigned>& MemcachedClassSizes() {
  static const std::vector<unsigned> sizes = [] {
    std::vector<unsigned> v{0};  // class 0 is memcached's global page pool
    unsigned size = 48 + 48;     // sizeof(item) + chunk_size
    while (v.size() < 63 && size < kLargestChunk / 1.25) {
      if (size % 8 != 0) size += 8 - size % 8;
      v.push_back(size);
      size = static_cast<unsigned>(size * 1.25);
    }
    v.push_back(kLargestChunk);
    return v;
  }();
  return sizes;
}
unsigned MemcachedClass(uint64_t item_bytes) {
  const auto& sizes = MemcachedClassSizes();
  for (size_t i = 1; i < sizes.size(); ++i) {
    if (item_bytes <= sizes[i]) return static_cast<unsigned>(i);
  }
  return static_cast<unsigned>(sizes.size() - 1);  // chunked items: the largest class
}
// memcached's ITEM_ntotal: header, key and NUL, value and CRLF, CAS, and
// the client flags when they are not zero.
uint64_t MemcachedItemBytes(size_t key, size_t value, uint32_t flags) {
  return 48 + key + 1 + value + 2 + 8 + (flags != 0 ? 4 : 0);
}

// memcached's safe_strtod: the whole token, a finite number.
bool SafeStrtod(std::string_view text, double* out) {
  if (text.empty()) return false;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), *out);
  return ec == std::errc() && end == text.data() + text.size();
}

}  // namespace

unsigned MemcachedSlabClass(size_t key, size_t value, uint32_t flags) {
  return MemcachedClass(MemcachedItemBytes(key, value, flags));
}

void Session::MetaDebug(const std::vector<std::string_view>& t, Buffer& out) {
  Bump(counters_.cmd_meta);
  const size_t ntokens = t.size() + 1;
  if (ntokens < 3 || t[1].size() > kMaxKeyLength) {
    Put(out, "CLIENT_ERROR bad command line format\r\n");
    return;
  }
  std::string_view key = t[1];
  std::string decoded;
  if (ntokens >= 4 && t[2] == "b") {
    if (!DecodeBinaryKey(key, &decoded)) {
      Put(out, "CLIENT_ERROR bad command line format\r\n");
      return;
    }
    key = decoded;
  }
  ReadOptions ro;
  ro.inspect = true;
  ro.defer_cold = Defer(key);
  LogFetch(key);
  const Outcome o = shared_.store->Read(key, ro, [&](const ItemView& item) {
    Put(out, "ME ");
    if (item.binary_key()) {
      Put(out, Base64Encode(ByteView(item.key())));
    } else {
      Put(out, item.key());
    }
    const int64_t ttl = item.ttl();
    const uint64_t bytes = MemcachedItemBytes(item.key().size(), item.value_size(), item.flags());
    // memcached 1.6.18 prints exp as current_time - exptime: minus the TTL.
    Put(out, fmt::format(" exp={} la={} cas={} fetch={} cls={} size={}\r\n", ttl < 0 ? -1 : -ttl,
                         item.idle_seconds(), item.cas(), item.fetched_before() ? "yes" : "no",
                         MemcachedClass(bytes), bytes));
  });
  if (o == Outcome::kColdPending) {
    Unbump(counters_.cmd_meta);  // counted when the command runs again
    StartColdRead(key);
  } else if (o == Outcome::kIoError) {
    Put(out, kColdTierError);
    Put(out, "\r\n");
  } else if (o != Outcome::kOk) {
    Put(out, "EN\r\n");
  }
}

void Session::Slabs(const std::vector<std::string_view>& t, Buffer& out) {
  const size_t ntokens = t.size() + 1;
  if (ntokens == 5 && t[1] == "reassign") {
    int32_t src = 0, dst = 0;
    if (!SafeStrtol32(t[2], &src) || !SafeStrtol32(t[3], &dst)) {
      Put(out, "CLIENT_ERROR bad command line format\r\n");
      return;
    }
    const int32_t largest = static_cast<int32_t>(MemcachedClassSizes().size() - 1);
    if (src == dst) {
      Put(out, "SAME src and dst class are identical\r\n");
    } else if (src < 0 || src > largest || dst < 0 || dst > largest) {
      // (src -1, "pick any class with pages to spare", finds none here)
      Put(out, "BADCLASS invalid src or dst class id\r\n");
    } else {
      // One block pool: no class ever holds pages to give away.
      Put(out, "NOSPARE source class has no spare pages\r\n");
    }
    return;
  }
  if (ntokens >= 4 && t[1] == "automove") {
    noreply_ = IsNoreply(t);
    if (t[2] == "ratio") {
      double ratio = 0;
      if (ntokens < 5 || !SafeStrtod(t[3], &ratio)) {
        Reply(out, "ERROR");
        return;
      }
      std::lock_guard lock(shared_.tuning_mu);
      shared_.tuning.slab_automove_ratio = ratio;
      Reply(out, "OK");
      return;
    }
    uint32_t level = 0;
    if (!SafeStrtoul32(t[2], &level)) {
      Reply(out, "CLIENT_ERROR bad command line format");
    } else if (level > 2) {
      Reply(out, "ERROR");
    } else {
      std::lock_guard lock(shared_.tuning_mu);
      shared_.tuning.slab_automove = static_cast<int>(level);
      Reply(out, "OK");
    }
    return;
  }
  Put(out, "ERROR\r\n");
}

void Session::LruCrawler(const std::vector<std::string_view>& t, Buffer& out) {
  const size_t ntokens = t.size() + 1;
  // A class list: "all" (or, for metadump, "hash") or ids 1..63 separated
  // by commas (empty ones skipped); the set of classes, 0 when invalid.
  auto classes = [&](std::string_view list) -> uint64_t {
    if (list == "all" || (list == "hash" && t[1] == "metadump")) return ~uint64_t{0};
    uint64_t set = 0;
    for (size_t pos = 0; pos <= list.size();) {
      size_t comma = list.find(',', pos);
      if (comma == std::string_view::npos) comma = list.size();
      const std::string_view id = list.substr(pos, comma - pos);
      pos = comma + 1;
      if (id.empty()) continue;
      uint32_t n = 0;
      if (!SafeStrtoul32(id, &n) || n == 0 || n >= 64) return 0;
      set |= uint64_t{1} << n;
    }
    return set;
  };
  ServerShared::Tuning& tuning = shared_.tuning;
  std::unique_lock lock(shared_.tuning_mu);
  const bool enabled = tuning.lru_crawler;
  if (ntokens == 4 && (t[1] == "crawl" || t[1] == "metadump")) {
    if (!enabled) {
      Put(out, "CLIENT_ERROR lru crawler disabled\r\n");
    } else if (const uint64_t set = classes(t[2]); set == 0) {
      Put(out, "BADCLASS invalid class id\r\n");
    } else if (t[1] == "crawl") {
      // Expired items are reclaimed as they are met; there is no separate
      // crawl to start.
      Put(out, "OK\r\n");
    } else {
      // Requests after it wait for its END (memcached streams a dump from
      // its crawler thread; it may also refuse one pipelined behind other
      // replies, which this server need not).
      lock.unlock();
      dump_ = ScanCursor{};
      dump_cold_ = ColdScanCursor{};
      dump_classes_ = set;
      ProduceDump(out);
    }
    return;
  }
  if (ntokens == 4 && (t[1] == "tocrawl" || t[1] == "sleep")) {
    uint32_t n = 0;
    if (!SafeStrtoul32(t[2], &n)) {
      Put(out, "CLIENT_ERROR bad command line format\r\n");
    } else if (t[1] == "sleep" && n > 1000000) {
      Put(out, "CLIENT_ERROR sleep must be one second or less\r\n");
    } else {
      (t[1] == "sleep" ? tuning.lru_crawler_sleep : tuning.lru_crawler_tocrawl) = n;
      Put(out, "OK\r\n");
    }
    return;
  }
  if (ntokens == 3 && t[1] == "enable") {
    // memcached: enabling a running crawler fails to start a second thread.
    const bool was = std::exchange(tuning.lru_crawler, true);
    Put(out, was ? "ERROR failed to start lru crawler thread\r\n" : "OK\r\n");
    return;
  }
  if (ntokens == 3 && t[1] == "disable") {
    tuning.lru_crawler = false;
    Put(out, "OK\r\n");
    return;
  }
  Put(out, "ERROR\r\n");
}


void Session::ProduceDump(Buffer& out) {
  // Absolute times as memcached prints them: its clock's start plus the
  // item's relative times, i.e. now minus what has passed.
  const int64_t now_unix = static_cast<int64_t>(::time(nullptr));
  const size_t budget = 64 * 1024;
  const size_t start = out.size();
  std::string line;
  auto emit = [&](std::string_view key, int64_t ttl, uint32_t idle, uint64_t cas, bool fetched,
                  size_t value_size, uint32_t flags) {
    const uint64_t bytes = MemcachedItemBytes(key.size(), value_size, flags);
    if ((dump_classes_ >> MemcachedClass(bytes) & 1) == 0) return;
    line = "key=";
    AppendUriEncoded(line, key);
    line += fmt::format(" exp={} la={} cas={} fetch={} cls={} size={}\n", ttl < 0 ? -1 : now_unix + ttl,
                        now_unix - idle, cas, fetched ? "yes" : "no", MemcachedClass(bytes), bytes);
    Put(out, line);
  };
  while (dump_ && out.size() - start < budget && !blocked(out)) {
    if (!dump_->done) {
      shared_.store->Scan(&*dump_, 64, [&](const ItemView& item) {
        emit(item.key(), item.ttl(), item.idle_seconds(), item.cas(), item.fetched_before(),
             item.value_size(), item.flags());
      });
      continue;
    }
    // Then the items on the cold tier (memcached lists its flash items too):
    // a sunk item had been read, or not, before it sank; the tier does not
    // keep that, so "no" as for an item never read.
    shared_.store->ScanCold(&dump_cold_, 4096, [&](const ColdItemInfo& item) {
      emit(item.key, item.ttl, item.idle_seconds, item.cas, false, item.value_size, item.flags);
    });
    if (dump_cold_.done) {
      Put(out, "END\r\n");
      dump_.reset();
    }
  }
}

void Session::Lru(const std::vector<std::string_view>& t, Buffer& out) {
  const size_t ntokens = t.size() + 1;
  // The block pool has one CLOCK, not memcached's segmented LRU: the tuning
  // is validated as memcached validates it and changes nothing.
  if (ntokens >= 7 && t[1] == "tune") {
    uint32_t hot = 0, warm = 0;
    double hot_factor = 0, warm_factor = 0;
    if (!SafeStrtoul32(t[2], &hot) || !SafeStrtoul32(t[3], &warm) || !SafeStrtod(t[4], &hot_factor) ||
        !SafeStrtod(t[5], &warm_factor)) {
      Put(out, "ERROR\r\n");
    } else if (uint64_t{hot} + warm > 80) {
      Put(out, "ERROR hot and warm pcts must not exceed 80\r\n");
    } else if (warm_factor <= 0 || hot_factor <= 0) {
      Put(out, "ERROR hot/warm age factors must be greater than 0\r\n");
    } else {
      std::lock_guard lock(shared_.tuning_mu);
      ServerShared::Tuning& tuning = shared_.tuning;
      tuning.hot_lru_pct = hot;
      tuning.warm_lru_pct = warm;
      tuning.hot_max_factor = hot_factor;
      tuning.warm_max_factor = warm_factor;
      Put(out, "OK\r\n");
    }
    return;
  }
  if (ntokens >= 4 && t[1] == "mode") {
    if (t[2] == "flat" || t[2] == "segmented") {
      std::lock_guard lock(shared_.tuning_mu);
      shared_.tuning.lru_segmented = t[2] == "segmented";
      Put(out, "OK\r\n");
    } else {
      Put(out, "ERROR\r\n");
    }
    return;
  }
  if (ntokens >= 4 && t[1] == "temp_ttl") {
    int32_t ttl = 0;
    if (!SafeStrtol32(t[2], &ttl)) {
      Put(out, "ERROR\r\n");
      return;
    }
    std::lock_guard lock(shared_.tuning_mu);
    shared_.tuning.temp_lru = ttl >= 0;
    if (ttl >= 0) shared_.tuning.temporary_ttl = ttl;
    Put(out, "OK\r\n");
    return;
  }
  Put(out, "ERROR\r\n");
}

Session::~Session() {
  if (watcher_ != nullptr) shared_.watch.Remove(watcher_.get());
  if (io_ != nullptr) {
    std::lock_guard lock(shared_.conns_mu);
    std::erase(shared_.conns, this);
  }
  LogConn("conn_close");
}

void Session::AttachIo(SessionIo* io) {
  io_ = io;
  // The peer's address, for connevents lines (the socket is closed before
  // the session, so conn_close cannot ask then).
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  if (::getpeername(io_->socket_fd(), reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    char ip[INET6_ADDRSTRLEN] = "";
    if (addr.ss_family == AF_INET) {
      const auto* a = reinterpret_cast<const sockaddr_in*>(&addr);
      ::inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
      peer_port_ = ntohs(a->sin_port);
    } else if (addr.ss_family == AF_INET6) {
      const auto* a = reinterpret_cast<const sockaddr_in6*>(&addr);
      ::inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof ip);
      peer_port_ = ntohs(a->sin6_port);
    }
    peer_ip_ = ip;
    if (addr.ss_family == AF_INET6) peer_ip_ = "[" + peer_ip_ + "]";
  }
  last_cmd_.store(CoarseSeconds(), std::memory_order_relaxed);
  {
    std::lock_guard lock(shared_.conns_mu);
    shared_.conns.push_back(this);
  }
  LogConn("conn_new");
}

void Session::LogConn(const char* type) {
  if (io_ == nullptr || !shared_.watch.Wants(kWatchConnevents)) return;
  const bool close = std::string_view(type) == "conn_close";
  shared_.watch.Publish(kWatchConnevents,
                        fmt::format("type={} rip={} rport={} transport=tcp{} cfd={}", type, peer_ip_,
                                    peer_port_, close ? " reason=normal" : "", cfd()));
}

void Session::Watch(const std::vector<std::string_view>& t, Buffer& out) {
  noreply_ = IsNoreply(t);
  if (batch_unflushed_) {
    // memcached hands the connection to its logger only with no reply of
    // this batch still queued (a get or mn writes its batch out at once).
    Reply(out, "ERROR cannot pipeline other commands before watch");
    return;
  }
  uint16_t flags = 0;
  // memcached: without flags, the fetchers; an unknown word (noreply too:
  // it stays in the list) is an error.
  for (size_t i = 1; i < t.size(); ++i) {
    const uint16_t f = ParseWatchFlag(t[i]);
    if (f == 0) {
      Reply(out, "ERROR");
      return;
    }
    flags |= f;
  }
  if (t.size() == 1) flags = kWatchFetchers;
  watcher_ = shared_.watch.Add(flags, waker_);
  if (watcher_ == nullptr) {
    Reply(out, "WATCHER_TOO_MANY log watcher limit reached");
    return;
  }
  conn_state_.store(ConnState::kWatch, std::memory_order_relaxed);
  Put(out, "OK\r\n");
}

namespace {

// The TTL memcached's logger prints for an item stored with `exptime`:
// seconds left (unsigned), 0 for none; an exptime already past is memcached's
// internal time 1, which prints as 1 - (its clock: uptime + 60) wrapped.
uint32_t LoggedTtl(const Store& store, int64_t exptime, int64_t now_unix) {
  if (exptime == 0) return 0;
  const int64_t clock = int64_t{store.Uptime()} + 60;
  int64_t left = 1 - clock;
  if (exptime > 0 && exptime <= 30 * 24 * 3600) left = exptime;
  if (exptime > 30 * 24 * 3600 && exptime > now_unix) left = exptime - now_unix;
  return static_cast<uint32_t>(left);
}

}  // namespace

void Session::LogFetch(std::string_view key) {
  if (!shared_.watch.Wants(kWatchFetchers)) return;
  std::string line = "type=item_get key=";
  AppendUriEncoded(line, key);
  bool found = false;
  (void)shared_.store->Read(key, {.inspect = true}, [&](const ItemView& item) {
    found = true;
    const uint64_t bytes = MemcachedItemBytes(key.size(), item.value_size(), item.flags());
    line += fmt::format(" status=found clsid={} cfd={} size={}", MemcachedClass(bytes), cfd(),
                        item.value_size());
  });
  if (!found) line += fmt::format(" status=not_found clsid=0 cfd={} size=0", cfd());
  shared_.watch.Publish(kWatchFetchers, line);
}

void Session::LogStore(std::string_view key, Outcome outcome, std::string_view cmd,
                       int64_t exptime, size_t value_size, uint32_t flags) {
  if (!shared_.watch.Wants(kWatchMutations)) return;
  std::string_view status;
  switch (outcome) {
    case Outcome::kOk: status = "stored"; break;
    case Outcome::kNotStored: status = "not_stored"; break;
    case Outcome::kExists: status = "exists"; break;
    case Outcome::kNotFound: status = "not_found"; break;
    case Outcome::kTooLarge: status = "too_large"; break;
    case Outcome::kNoMemory: status = "no_memory"; break;
    default: return;  // I/O errors and the like are no memcached status
  }
  std::string line = "type=item_store key=";
  AppendUriEncoded(line, key);
  if (outcome == Outcome::kTooLarge) {  // nothing was allocated
    line += fmt::format(" status={} cmd={} ttl=0 clsid=0 cfd={} size=0", status, cmd, cfd());
    shared_.watch.Publish(kWatchMutations, line);
    return;
  }
  const int64_t now_unix = shared_.started_unix + shared_.store->Uptime();
  uint32_t ttl = LoggedTtl(*shared_.store, exptime, now_unix);
  if (outcome == Outcome::kOk && (cmd == "append" || cmd == "prepend")) {
    // The stored item is the joined one, with the old item's flags and TTL.
    (void)shared_.store->Read(key, {.inspect = true}, [&](const ItemView& item) {
      value_size = item.value_size();
      flags = item.flags();
      ttl = item.ttl() < 0 ? 0 : static_cast<uint32_t>(item.ttl());
    });
  }
  const uint64_t bytes = MemcachedItemBytes(key.size(), value_size, flags);
  line += fmt::format(" status={} cmd={} ttl={} clsid={} cfd={} size={}", status, cmd, ttl,
                      MemcachedClass(bytes), cfd(), value_size);
  shared_.watch.Publish(kWatchMutations, line);
}

void Session::Verbosity(const std::vector<std::string_view>& t, Buffer& out) {
  noreply_ = IsNoreply(t);
  uint32_t level = 0;
  if (!SafeStrtoul32(t[1], &level)) {
    Reply(out, "CLIENT_ERROR bad command line format");
    return;
  }
  shared_.verbosity.store(std::min<uint32_t>(level, 2), std::memory_order_relaxed);
  Reply(out, "OK");
}

void Session::StatsConns(Buffer& out) {
  // memcached's list: its listening socket, then every connection by
  // descriptor (this one is parsing the command), with its peer, the
  // address it came in on, its state and the seconds since its last command.
  static constexpr std::string_view kStates[] = {"conn_new_cmd", "conn_read",    "conn_parse_cmd",
                                                 "conn_nread",   "conn_swallow", "conn_watch",
                                                 "conn_io_queue"};
  const uint32_t uptime = shared_.store->Uptime();
  const uint32_t now = CoarseSeconds();
  const std::string listen = "tcp:" + shared_.options.listen;
  std::string text;
  if (shared_.loop != nullptr) {
    for (unsigned i = 0; i < shared_.options.threads; ++i) {
      const int fd = shared_.loop->listen_fd(i);
      text += fmt::format("STAT {0}:addr {1}\r\nSTAT {0}:state conn_listening\r\n"
                          "STAT {0}:secs_since_last_cmd {2}\r\n",
                          fd, listen, uint64_t{uptime} + 60);
    }
  }
  struct Row {
    int fd;
    std::string text;
  };
  std::vector<Row> rows;
  {
    std::lock_guard lock(shared_.conns_mu);
    for (const Session* s : shared_.conns) {
      const ConnState st =
          s == this ? ConnState::kParseCmd : s->conn_state_.load(std::memory_order_relaxed);
      const uint32_t last = s->last_cmd_.load(std::memory_order_relaxed);
      rows.push_back({s->cfd(), fmt::format("STAT {0}:addr tcp:{1}:{2}\r\nSTAT {0}:listen_addr {3}\r\n"
                                            "STAT {0}:state {4}\r\nSTAT {0}:secs_since_last_cmd {5}\r\n",
                                            s->cfd(), s->peer_ip_, s->peer_port_, listen,
                                            kStates[static_cast<size_t>(st)], now > last ? now - last : 0)});
    }
  }
  std::sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) { return a.fd < b.fd; });
  for (const Row& r : rows) text += r.text;
  Put(out, text);
  Put(out, "END\r\n");
}

void Session::Stats(const std::vector<std::string_view>& t, Buffer& out) {
  auto stat = [&](std::string_view name, auto value) {
    Put(out, "STAT ");
    Put(out, name);
    Put(out, " ");
    Put(out, fmt::format("{}", value));
    Put(out, "\r\n");
  };
  Store& store = *shared_.store;
  const StatsSnapshot snap = TakeStatsSnapshot(shared_);
  const StoreStats& ss = snap.store;
  auto rows = [&](std::span<const StatRow> table) {
    for (const StatRow& row : table) stat(row.name, StatText(row.read(snap)));
    Put(out, "END\r\n");
  };
  if (t.size() == 1) {
    rows(GeneralStats());
    return;
  }
  const std::string_view sub = t[1];
  if (sub == "reset") {
    shared_.ResetCounters();
    Put(out, "RESET\r\n");
    return;
  }
  if (sub == "detail") {
    // memcached: on/off answer OK (noreply or not), dump lists the counts.
    const std::string_view arg = t.size() > 2 ? t[2] : std::string_view();
    if (arg == "on" || arg == "off") {
      shared_.prefix_stats.Enable(arg == "on");
      Put(out, "OK\r\n");
    } else if (arg == "dump") {
      Put(out, shared_.prefix_stats.Dump());
    } else {
      Put(out, "CLIENT_ERROR usage: stats detail on|off|dump\r\n");
    }
    return;
  }
  if (sub == "conns") {
    StatsConns(out);
    return;
  }
  if (sub == "settings") {
    // Every key memcached 1.6.18 prints, in its order: this server's value
    // where it has the setting, memcached's default (or the value its
    // commands set, see Tuning) where it does not.
    ServerShared::Tuning tu;
    {
      std::lock_guard lock(shared_.tuning_mu);
      tu = shared_.tuning;
    }
    const std::string& listen = shared_.options.listen;
    const size_t colon = listen.rfind(':');
    std::string host = listen.substr(0, colon == std::string::npos ? 0 : colon);
    if (host.size() >= 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
    const StoreOptions& so = store.options();
    auto yes = [](bool b) { return b ? "yes" : "no"; };
    stat("maxbytes", ss.memory_bytes);
    stat("maxconns", shared_.options.max_connections);
    stat("tcpport", colon == std::string::npos ? listen : listen.substr(colon + 1));
    stat("udpport", 0);
    stat("inter", host.empty() ? std::string("NULL") : host);
    stat("verbosity", shared_.verbosity.load(std::memory_order_relaxed));
    stat("oldest", 0);
    stat("evictions", so.eviction == Eviction::kClock ? "on" : "off");
    stat("domain_socket", "NULL");
    stat("umask", 700);
    stat("shutdown_command", "no");
    stat("growth_factor", "1.25");
    stat("chunk_size", 48);
    stat("num_threads", shared_.options.threads);
    stat("num_threads_per_udp", shared_.options.threads);
    stat("stat_key_prefix", ":");
    stat("detail_enabled", yes(shared_.prefix_stats.enabled()));
    stat("reqs_per_event", 20);
    stat("cas_enabled", "yes");
    stat("tcp_backlog", shared_.options.listen_backlog);
    stat("binding_protocol", "auto-negotiate");
    stat("auth_enabled_sasl", "no");
    stat("auth_enabled_ascii", "no");
    stat("item_size_max", so.item_size_max);
    stat("maxconns_fast", "yes");
    stat("hashpower_init", 0);
    stat("slab_reassign", "yes");
    stat("slab_automove", tu.slab_automove);
    stat("slab_automove_ratio", fmt::format("{:.2f}", tu.slab_automove_ratio));
    stat("slab_automove_window", 30);
    stat("slab_chunk_max", kLargestChunk);
    stat("lru_crawler", yes(tu.lru_crawler));
    stat("lru_crawler_sleep", tu.lru_crawler_sleep);
    stat("lru_crawler_tocrawl", tu.lru_crawler_tocrawl);
    stat("tail_repair_time", 0);
    stat("flush_enabled", "yes");
    stat("dump_enabled", "yes");
    stat("hash_algorithm", "xxh3");  // the store's hash (a memcached option value too)
    stat("lru_maintainer_thread", "yes");
    stat("lru_segmented", yes(tu.lru_segmented));
    stat("hot_lru_pct", tu.hot_lru_pct);
    stat("warm_lru_pct", tu.warm_lru_pct);
    stat("hot_max_factor", fmt::format("{:.2f}", tu.hot_max_factor));
    stat("warm_max_factor", fmt::format("{:.2f}", tu.warm_max_factor));
    stat("temp_lru", yes(tu.temp_lru));
    stat("temporary_ttl", tu.temporary_ttl);
    stat("idle_timeout", 0);
    stat("watcher_logbuf_size", 262144);
    stat("worker_logbuf_size", 65536);
    stat("read_buf_mem_limit", 0);
    stat("track_sizes", "no");
    stat("inline_ascii_response", "no");
    stat("ext_item_size", 512);
    stat("ext_item_age", 4294967295u);
    stat("ext_low_ttl", 0);
    stat("ext_recache_rate", 2000);
    stat("ext_wbuf_size", 4194304);
    stat("ext_compact_under", 0);
    stat("ext_drop_under", 0);
    stat("ext_max_sleep", 1000000);
    stat("ext_max_frag", "0.80");
    stat("slab_automove_freeratio", "0.010");
    stat("ext_drop_unread", "no");
    stat("ssl_enabled", "no");
    stat("ssl_chain_cert", "(null)");
    stat("ssl_key", "(null)");
    stat("ssl_verify_mode", 0);
    stat("ssl_keyformat", 1);
    stat("ssl_ciphers", "NULL");
    stat("ssl_ca_cert", "NULL");
    stat("ssl_wbuf_size", 16384);
    stat("ssl_session_cache", "no");
    stat("ssl_kernel_tls", "no");
    stat("ssl_min_version", "tlsv1.2");
    stat("num_napi_ids", "(null)");
    stat("memory_file", "(null)");
    stat("block_size", so.block_size);  // this server's own: the block pool's unit
    Put(out, "END\r\n");
    return;
  }
  if (sub == "slabs" || sub == "items") {
    // The block pool is this server's one slab class ("1"), in memcached's
    // fields: pages of 1 MiB as the pool is touched, chunks = blocks. What
    // a segmented LRU would count (hot/warm moves, crawler) is 0 here.
    const auto c = [&](CounterIndex i) { return snap.counters[i]; };
    const uint64_t per_page = std::max<uint64_t>(1, (uint64_t{1} << 20) / std::max<uint64_t>(1, ss.block_size));
    const uint64_t pages = (ss.touched_blocks + per_page - 1) / per_page;
    if (sub == "slabs") {
      if (ss.touched_blocks > 0) {
        stat("1:chunk_size", ss.block_size);
        stat("1:chunks_per_page", per_page);
        stat("1:total_pages", pages);
        stat("1:total_chunks", pages * per_page);
        stat("1:used_chunks", ss.used_blocks);
        stat("1:free_chunks", pages * per_page - std::min(pages * per_page, ss.used_blocks));
        stat("1:free_chunks_end", 0);
        stat("1:get_hits", c(kCounter_get_hits));
        stat("1:cmd_set", c(kCounter_cmd_set));
        stat("1:delete_hits", c(kCounter_delete_hits));
        stat("1:incr_hits", c(kCounter_incr_hits));
        stat("1:decr_hits", c(kCounter_decr_hits));
        stat("1:cas_hits", c(kCounter_cas_hits));
        stat("1:cas_badval", c(kCounter_cas_badval));
        stat("1:touch_hits", c(kCounter_touch_hits));
      }
      stat("active_slabs", ss.touched_blocks > 0 ? 1 : 0);
      stat("total_malloced", pages << 20);
    } else if (ss.curr_items > 0) {
      stat("items:1:number", ss.curr_items);
      stat("items:1:number_hot", 0);
      stat("items:1:number_warm", 0);
      stat("items:1:number_cold", ss.curr_items);  // one CLOCK: every item is an eviction candidate
      stat("items:1:age_hot", 0);
      stat("items:1:age_warm", 0);
      stat("items:1:age", 0);  // not tracked
      stat("items:1:mem_requested", ss.item_bytes);
      stat("items:1:evicted", ss.evictions);
      stat("items:1:evicted_nonzero", 0);
      stat("items:1:evicted_time", 0);
      stat("items:1:outofmemory", c(kCounter_store_no_memory));
      stat("items:1:tailrepairs", 0);
      stat("items:1:reclaimed", ss.reclaimed);
      stat("items:1:expired_unfetched", ss.expired_unfetched);
      stat("items:1:evicted_unfetched", ss.evicted_unfetched);
      for (const char* name : {"evicted_active", "crawler_reclaimed", "crawler_items_checked", "lrutail_reflocked",
                               "moves_to_cold", "moves_to_warm", "moves_within_lru", "direct_reclaims",
                               "hits_to_hot", "hits_to_warm", "hits_to_cold", "hits_to_temp"}) {
        stat(std::string("items:1:") + name, 0);
      }
    }
    Put(out, "END\r\n");
    return;
  }
  if (sub == "sizes") {
    // memcached's item size histogram (-o track_sizes); not kept here.
    Put(out, "STAT sizes_status disabled\r\nEND\r\n");
    return;
  }
  if (sub == "sizes_enable" || sub == "sizes_disable") {
    Put(out, "STAT sizes_status disabled\r\n");
    return;
  }
  if (sub == "cold") {
    rows(ColdStats());  // the SSD tier (zeros when the node runs without one)
    return;
  }
  if (sub == "blocks") {
    stat("block_size", ss.block_size);
    stat("total_blocks", ss.total_blocks);
    stat("used_blocks", ss.used_blocks);
    stat("free_blocks", ss.total_blocks - ss.used_blocks);
    stat("touched_blocks", ss.touched_blocks);
    stat("memory_bytes", ss.memory_bytes);
    stat("hash_buckets", ss.hash_buckets);
    stat("hash_expansions", ss.hash_expansions);
    stat("index_bytes", ss.index_bytes);
    Put(out, "END\r\n");
    return;
  }
  Put(out, "ERROR\r\n");
}

// ---------------------------------------------------------------------------
// Meta commands.

namespace {

struct MetaFlags {
  std::string_view order;  // return flags in request order (one char each)
  std::string_view opaque;
  bool base64 = false, value = false, quiet = false, no_update = false, invalidate = false;
  bool has_mode = false;
  char mode = 0;
  std::optional<int32_t> ttl;      // T
  std::optional<int32_t> vivify;   // N
  std::optional<int32_t> recache;  // R
  std::optional<uint32_t> client_flags;  // F
  std::optional<uint64_t> cas;     // C
  std::optional<uint64_t> delta;   // D
  std::optional<uint64_t> initial;  // J
  std::string ret;  // storage for `order`
  const char* error = nullptr;
};

// memcached's _meta_flag_preparse: one pass over the flag tokens, every
// flag at most once, numeric arguments checked.
// An ms command's name in `watch mutations` lines: its mode, or "cas"
// when it compares a CAS.
std::string_view MetaCmdName(const MetaFlags& f, StoreMode mode) {
  if (f.cas) return "cas";
  return kCmdNames[mode == StoreMode::kAdd       ? kAddCmd
                   : mode == StoreMode::kReplace ? kReplaceCmd
                   : mode == StoreMode::kAppend  ? kAppendCmd
                   : mode == StoreMode::kPrepend ? kPrependCmd
                                                 : kSetCmd];
}

bool ParseMetaFlags(const std::vector<std::string_view>& t, size_t start, MetaFlags& f) {
  bool seen[128] = {};
  for (size_t i = start; i < t.size(); ++i) {
    const std::string_view tok = t[i];
    const unsigned char o = static_cast<unsigned char>(tok[0]);
    if (o >= 127 || seen[o]) {
      f.error = "CLIENT_ERROR duplicate flag";
      return false;
    }
    seen[o] = true;
    const std::string_view arg = tok.substr(1);
    switch (o) {
      case 'b':
        f.base64 = true;
        break;
      case 'N':
      case 'T':
      case 'R': {
        int32_t v = 0;
        if (!SafeStrtol32(arg, &v)) {
          f.error = "CLIENT_ERROR bad token in command line format";
          return false;
        }
        (o == 'N' ? f.vivify : o == 'T' ? f.ttl : f.recache) = v;
        break;
      }
      case 'O':
        if (tok.size() > 32) {
          f.error = "CLIENT_ERROR opaque token too long";
          return false;
        }
        f.opaque = arg;
        f.ret.push_back('O');
        break;
      case 'k':
      case 's':
      case 't':
      case 'c':
      case 'f':
      case 'h':
      case 'l':
        f.ret.push_back(static_cast<char>(o));
        break;
      case 'P':
      case 'L':
        break;
      case 'v':
        f.value = true;
        break;
      case 'u':
        f.no_update = true;
        break;
      case 'q':
        f.quiet = true;
        break;
      case 'I':
        f.invalidate = true;
        break;
      case 'M':
        if (tok.size() != 2) {
          f.error = "CLIENT_ERROR incorrect length for M token";
          return false;
        }
        f.has_mode = true;
        f.mode = tok[1];
        break;
      case 'F': {
        uint32_t v = 0;
        if (!SafeStrtoul32(arg, &v)) {
          f.error = "CLIENT_ERROR bad command line format";
          return false;
        }
        f.client_flags = v;
        break;
      }
      case 'C': {
        uint64_t v = 0;
        if (!SafeStrtoull(arg, &v)) {
          f.error = "CLIENT_ERROR bad token in command line format";
          return false;
        }
        f.cas = v;
        break;
      }
      case 'D':
      case 'J': {
        uint64_t v = 0;
        if (!SafeStrtoull(arg, &v)) {
          f.error = "CLIENT_ERROR bad token in command line format";
          return false;
        }
        (o == 'D' ? f.delta : f.initial) = v;
        break;
      }
      default:
        f.error = "CLIENT_ERROR invalid flag";
        return false;
    }
  }
  f.order = f.ret;
  return true;
}

// Appends " k<key>" (base64 and " b" for binary keys).
void MetaKey(Buffer& out, std::string_view key, bool binary) {
  Put(out, " k");
  if (binary) {
    Put(out, Base64Encode(ByteView(key)));
    Put(out, " b");
  } else {
    Put(out, key);
  }
}

// Echoes the return flags in request order (no line end): O (opaque) and k
// (key) the same way for every meta command; the others through `other(flag)`.
template <typename Other>
void EchoFlags(Buffer& out, const MetaFlags& f, std::string_view key, bool binary_key,
               Other&& other) {
  for (char c : f.order) {
    if (c == 'O') {
      Put(out, " O");
      Put(out, f.opaque);
    } else if (c == 'k') {
      MetaKey(out, key, binary_key);
    } else {
      other(c);
    }
  }
}
void EchoFlags(Buffer& out, const MetaFlags& f, std::string_view key, bool binary_key) {
  EchoFlags(out, f, key, binary_key, [](char) {});
}

// md and ma: the key and flags, with memcached's replies to bad ones (they
// differ from mg's and ms's). False when an error was written.
bool MetaKeyAndFlags(const std::vector<std::string_view>& t, Buffer& out, std::string_view& key,
                     MetaFlags& f, std::string& decoded) {
  if (t.size() < 2) {
    Put(out, "ERROR\r\n");
    return false;
  }
  key = t[1];
  if (key.size() > kMaxKeyLength) {
    Put(out, "CLIENT_ERROR bad command line format\r\n");
    return false;
  }
  if (t.size() >= 20) {
    Put(out, "CLIENT_ERROR options flags too long\r\n");
    return false;
  }
  bool ok = ParseMetaFlags(t, 2, f);
  if (ok && f.base64 && !DecodeBinaryKey(key, &decoded)) ok = false;
  if (!ok) {
    Put(out, "CLIENT_ERROR invalid or duplicate flag\r\n");
    return false;
  }
  if (f.base64) key = decoded;
  return true;
}

}  // namespace

int64_t Session::MetaGet(const std::vector<std::string_view>& t, Buffer& out) {
  Bump(counters_.cmd_meta);
  if (t.size() < 2) {
    Put(out, "ERROR\r\n");
    return 0;
  }
  std::string_view key = t[1];
  if (key.size() > kMaxKeyLength) {
    Put(out, "CLIENT_ERROR bad command line format\r\n");
    return 0;
  }
  if (t.size() >= 20) {  // memcached: more than 20 tokens with the terminal one
    Put(out, "CLIENT_ERROR options flags are too long\r\n");
    return 0;
  }
  MetaFlags f;
  if (!ParseMetaFlags(t, 2, f)) {
    Put(out, f.error);
    Put(out, "\r\n");
    return 0;
  }
  std::string decoded;
  if (f.base64) {
    if (!DecodeBinaryKey(key, &decoded)) {
      Put(out, "CLIENT_ERROR error decoding key\r\n");
      return 0;
    }
    key = decoded;
  }
  ReadOptions ro;
  ro.update_access = !f.no_update;
  if (f.ttl) ro.touch_exptime = *f.ttl;
  if (f.vivify) ro.vivify_exptime = *f.vivify;
  if (f.recache && *f.recache > 0) ro.recache_below = static_cast<uint32_t>(*f.recache);
  ro.defer_cold = Defer(key);
  LogFetch(key);
  bool hit = false;
  const Outcome read = shared_.store->Read(key, ro, [&](const ItemView& item) {
    hit = true;
    if (f.value) {
      Put(out, "VA ");
      AppendUnsigned(out, item.value_size());
    } else {
      Put(out, "HD");
    }
    EchoFlags(out, f, item.key(), item.binary_key(), [&](char c) {
      switch (c) {
        case 's':
          Put(out, " s");
          AppendUnsigned(out, item.value_size());
          break;
        case 't':
          Put(out, " t");
          AppendSigned(out, item.ttl());
          break;
        case 'c':
          Put(out, " c");
          AppendUnsigned(out, item.cas());
          break;
        case 'f':
          Put(out, " f");
          AppendUnsigned(out, item.flags());
          break;
        case 'h':
          Put(out, item.fetched_before() ? " h1" : " h0");
          break;
        case 'l':
          Put(out, " l");
          AppendUnsigned(out, item.idle_seconds());
          break;
      }
    });
    if (item.win_token_taken()) Put(out, " Z");
    if (item.stale()) Put(out, " X");
    if (item.won()) Put(out, " W");
    Put(out, "\r\n");
    if (f.value) {
      item.AppendValueTo(out);
      Put(out, "\r\n");
    }
  });
  if (read == Outcome::kColdPending) {
    Unbump(counters_.cmd_meta);  // counted when the command runs again
    StartColdRead(key);
    return -1;
  }
  // memcached's mg reply keeps a reference to the item until the batch is
  // written: an incr or ma on it meanwhile makes a new item.
  if (hit) held_.push_back(Xxh3_64(ByteView(key)));
  Bump(counters_.cmd_get);
  if (hit) {
    Bump(counters_.get_hits);
    if (f.ttl) Bump(counters_.touch_hits);
    return 0;
  }
  if (read == Outcome::kIoError) {
    Put(out, kColdTierError);
    Put(out, "\r\n");
    return 0;
  }
  Bump(counters_.get_misses);
  if (f.quiet) return 0;
  Put(out, "EN");
  EchoFlags(out, f, key, f.base64);
  Put(out, "\r\n");
  return 0;
}

int64_t Session::MetaSet(const std::vector<std::string_view>& t, ByteView rest, Buffer& out) {
  Bump(counters_.cmd_meta);
  if (t.size() < 2) {
    Put(out, "ERROR\r\n");
    return 0;
  }
  std::string_view key = t[1];
  if (key.size() > kMaxKeyLength || t.size() < 3) {
    Put(out, "CLIENT_ERROR bad command line format\r\n");
    return 0;
  }
  if (t.size() >= 20) {  // checked before the data length: nothing is swallowed
    Put(out, "CLIENT_ERROR options flags too long\r\n");
    return 0;
  }
  int32_t vlen = 0;
  if (!SafeStrtol32(t[2], &vlen) || vlen < 0 || vlen > INT_MAX - 2) {
    Put(out, "CLIENT_ERROR bad command line format\r\n");
    return 0;
  }
  const size_t total = static_cast<size_t>(vlen) + 2;
  // From here on every error discards the data block.
  auto fail = [&](std::string_view msg) -> int64_t {
    const size_t now_n = std::min(total, rest.size());
    swallow_ = total - now_n;
    std::string reply = std::string(msg) + "\r\n";
    if (swallow_ == 0) {
      Put(out, reply);
    } else {
      after_swallow_ = std::move(reply);
    }
    return static_cast<int64_t>(now_n);
  };
  MetaFlags f;
  if (!ParseMetaFlags(t, 3, f)) return fail(f.error);
  std::string decoded;
  if (f.base64) {
    if (!DecodeBinaryKey(key, &decoded)) return fail("CLIENT_ERROR error decoding key");
    key = decoded;
  }
  StoreMode mode = StoreMode::kSet;
  if (f.has_mode) {
    switch (f.mode) {
      case 'S': mode = StoreMode::kSet; break;
      case 'E': mode = StoreMode::kAdd; break;
      case 'R': mode = StoreMode::kReplace; break;
      case 'A': mode = StoreMode::kAppend; break;
      case 'P': mode = StoreMode::kPrepend; break;
      default:
        return fail("CLIENT_ERROR invalid mode for ms M token");
    }
  }
  Store& store = *shared_.store;
  if (static_cast<size_t>(vlen) > store.MaxValueSize(key.size())) {
    Bump(counters_.store_too_large);
    LogStore(key, Outcome::kTooLarge, MetaCmdName(f, mode), 0, 0, 0);
    if (mode == StoreMode::kSet) LogFetch(key);
    store.Delete(key);  // memcached: a failed ms never leaves the old value
    return fail("SERVER_ERROR object too large for cache");
  }
  if (rest.size() < total) return -1;
  if (rest.chars()[vlen] != '\r' || rest.chars()[vlen + 1] != '\n') {
    Put(out, "CLIENT_ERROR bad data chunk\r\n");
    return static_cast<int64_t>(total);
  }
  WriteOptions w;
  w.flags = f.client_flags.value_or(0);
  w.exptime = f.ttl.value_or(0);
  w.cas = f.cas.value_or(0);
  w.binary_key = f.base64;
  w.invalidate_if_cas_older = f.invalidate;
  w.defer_cold = Defer(key);
  LogFetch(key);
  WriteResult r;
  if (f.cas && *f.cas == 0) {
    uint64_t cur = 0;
    r.outcome = store.Get(key, nullptr, nullptr, &cur) ? Outcome::kExists : Outcome::kNotFound;
  } else {
    r = store.Write(mode, key, rest.first(static_cast<size_t>(vlen)), w);
  }
  if (r.outcome == Outcome::kColdPending) {
    Unbump(counters_.cmd_meta);  // counted when the command runs again
    StartColdRead(key);
    return -1;
  }
  Bump(counters_.cmd_set);
  LogStore(key, r.outcome, MetaCmdName(f, mode), w.exptime, static_cast<size_t>(vlen), w.flags);
  std::string_view code;
  switch (r.outcome) {
    case Outcome::kOk: code = "HD"; break;
    case Outcome::kNotStored: code = "NS"; break;
    case Outcome::kExists: code = "EX"; break;
    case Outcome::kNotFound: code = "NF"; break;
    case Outcome::kNoMemory:
      Bump(counters_.store_no_memory);
      Put(out, "SERVER_ERROR out of memory storing object\r\n");
      return static_cast<int64_t>(total);
    case Outcome::kIoError:
      Put(out, kColdTierError);
      Put(out, "\r\n");
      return static_cast<int64_t>(total);
    default:
      Put(out, "SERVER_ERROR object too large for cache\r\n");
      return static_cast<int64_t>(total);
  }
  if (f.quiet && r.outcome == Outcome::kOk) return static_cast<int64_t>(total);
  Put(out, code);
  EchoFlags(out, f, key, f.base64, [&](char c) {
    if (c == 'c') {
      Put(out, " c");
      AppendUnsigned(out, r.outcome == Outcome::kOk ? r.cas : 0);
    }
  });
  Put(out, "\r\n");
  return static_cast<int64_t>(total);
}

int64_t Session::MetaDelete(const std::vector<std::string_view>& t, Buffer& out) {
  Bump(counters_.cmd_meta);
  std::string_view key;
  MetaFlags f;
  std::string decoded;
  if (!MetaKeyAndFlags(t, out, key, f, decoded)) return 0;
  DeleteOptions d;
  d.cas = f.cas.value_or(0);
  d.invalidate = f.invalidate;
  if (f.ttl) d.exptime = *f.ttl;
  d.defer_cold = Defer(key);
  LogFetch(key);
  const Outcome o = shared_.store->Delete(key, d);
  if (o == Outcome::kColdPending) {
    Unbump(counters_.cmd_meta);  // counted when the command runs again
    StartColdRead(key);
    return -1;
  }
  std::string_view code;
  switch (o) {
    case Outcome::kOk:
      Bump(counters_.delete_hits);
      code = "HD";
      break;
    case Outcome::kExists:
      code = "EX";
      break;
    case Outcome::kIoError:
      Put(out, kColdTierError);
      Put(out, "\r\n");
      return 0;
    default:
      Bump(counters_.delete_misses);
      code = "NF";
      break;
  }
  if (f.quiet && o == Outcome::kOk) return 0;
  Put(out, code);
  EchoFlags(out, f, key, f.base64);
  Put(out, "\r\n");
  return 0;
}

int64_t Session::MetaArith(const std::vector<std::string_view>& t, Buffer& out) {
  Bump(counters_.cmd_meta);
  std::string_view key;
  MetaFlags f;
  std::string decoded;
  if (!MetaKeyAndFlags(t, out, key, f, decoded)) return 0;
  bool incr = true;
  if (f.has_mode) {
    switch (f.mode) {
      case 'I': case '+': incr = true; break;
      case 'D': case '-': incr = false; break;
      default:
        Put(out, "CLIENT_ERROR invalid mode for ma M token\r\n");
        return 0;
    }
  }
  ArithOptions a;
  a.in_place = !Held(key);
  a.increment = incr;
  a.delta = f.delta.value_or(1);
  a.cas = f.cas.value_or(0);
  if (f.vivify) {
    a.initial = f.initial.value_or(0);
    a.exptime = *f.vivify;
  }
  a.defer_cold = Defer(key);
  LogFetch(key);
  const ArithResult r = shared_.store->Arith(key, a);
  if (r.outcome == Outcome::kColdPending) {
    Unbump(counters_.cmd_meta);
    StartColdRead(key);
    return -1;
  }
  auto echo = [&] {
    EchoFlags(out, f, key, f.base64);
    Put(out, "\r\n");
  };
  switch (r.outcome) {
    case Outcome::kOk:
      Bump(incr ? counters_.incr_hits : counters_.decr_hits);
      break;
    case Outcome::kNonNumeric:
      Put(out, "CLIENT_ERROR cannot increment or decrement non-numeric value\r\n");
      return 0;
    case Outcome::kNoMemory:
      Put(out, "SERVER_ERROR out of memory\r\n");
      return 0;
    case Outcome::kIoError:
      Put(out, kColdTierError);
      Put(out, "\r\n");
      return 0;
    case Outcome::kExists:
      Put(out, "EX");
      echo();
      return 0;
    default:
      Bump(incr ? counters_.incr_misses : counters_.decr_misses);
      Put(out, "NF");  // q hides only HD
      echo();
      return 0;
  }
  // T and N, in request order, as memcached 1.6.18 applies them: to an
  // item this request created (N sets its TTL, T overrides it), the last
  // one is kept; on an existing item T changes only the `t` reported after
  // it (memcached sets it on the replaced copy), the item keeps its TTL.
  // `t` shows the TTL as of its place among the flags.
  int64_t ttl = -1;
  const bool wants_ttl = f.order.find('t') != std::string_view::npos;
  if (wants_ttl && !r.created) {
    shared_.store->Read(key, {.update_access = false}, [&](const ItemView& item) { ttl = item.ttl(); });
  }
  auto ttl_of = [](int64_t spec) -> int64_t {
    if (spec == 0) return -1;
    return spec <= 60 * 60 * 24 * 30 ? spec : spec - static_cast<int64_t>(::time(nullptr));
  };
  int64_t ttl_at_t = ttl;
  std::optional<int64_t> keep;  // exptime to store on a created item
  for (size_t i = 2; i < t.size(); ++i) {
    const char flag = t[i][0];
    int32_t v = 0;
    if (flag == 'T' && SafeStrtol32(t[i].substr(1), &v)) {
      ttl = ttl_of(v);
      if (r.created) keep = v;
    } else if (flag == 'N' && r.created && SafeStrtol32(t[i].substr(1), &v)) {
      ttl = ttl_of(v);
      keep = v;
    } else if (flag == 't') {
      ttl_at_t = ttl;
    }
  }
  if (r.created && keep && f.vivify && *keep != *f.vivify) shared_.store->Touch(key, *keep);
  // q hides the HD of an update, not of an item it created (memcached).
  if (f.quiet && !f.value && !r.created) return 0;
  std::string digits = fmt::format("{}", r.value);
  if (f.value) {
    Put(out, "VA ");
    AppendUnsigned(out, digits.size());
  } else {
    Put(out, "HD");
  }
  ttl = ttl_at_t;
  EchoFlags(out, f, key, f.base64, [&](char c) {
    if (c == 'c') {
      Put(out, " c");
      AppendUnsigned(out, r.cas);
    } else if (c == 't') {
      Put(out, " t");
      AppendSigned(out, ttl);
    }
  });
  Put(out, "\r\n");
  if (f.value) {
    Put(out, digits);
    Put(out, "\r\n");
  }
  return 0;
}

}  // namespace qcloud::kv
