// The NBD protocol state machine (block/nbd_session.h): the fixed newstyle
// handshake and the transmission phase.

#include "block/nbd_session.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "block/nbd_proto.h"
#include "qcloud/core/check.h"

namespace qcloud::block {

using namespace nbd;

namespace {

// One writer per counter (the worker that owns the session).
void Bump(std::atomic<uint64_t>& c, uint64_t n = 1) noexcept {
  c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}

// Error messages go to a human; a device's message is cut to this.
constexpr size_t kMaxMessage = 256;
// Requests run per Process() call, and the output after which it stops:
// see Process().
constexpr size_t kRequestsPerCall = 8;
constexpr size_t kOutputPerCall = 256 * 1024;
// Reads this long or longer are sent from the page cache without a copy
// where possible (NbdSession::AttachIo); shorter ones cost more in
// splices than the copy they save.
constexpr uint64_t kZeroCopyMin = 64 * 1024;

// The NBD error for a device's Status (nbd_server.h lists the mapping).
uint32_t NbdError(const Status& s) noexcept {
  const std::error_code& c = s.code();
  if (c == Errc::kInvalidArgument || c == Errc::kOutOfRange) return kEinval;
  if (c == Errc::kResourceExhausted || c == std::errc::no_space_on_device ||
      c == std::errc::file_too_large) {
    return kEnospc;
  }
  if (c == Errc::kNotSupported) return kEnotsup;
  if (c == Errc::kUnavailable) return kEshutdown;
  if (c == std::errc::read_only_file_system || c == std::errc::permission_denied ||
      c == std::errc::operation_not_permitted) {
    return kEperm;
  }
  return kEio;
}

void PutOptionReply(Buffer& out, uint32_t option, uint32_t type, ByteView data = {}) {
  Put64(out, kOptionReplyMagic);
  Put32(out, option);
  Put32(out, type);
  Put32(out, static_cast<uint32_t>(data.size()));
  out.Append(data);
}

// An option error with a message for the user (error replies may carry one).
void PutOptionError(Buffer& out, uint32_t option, uint32_t type, std::string_view message) {
  PutOptionReply(out, option, type, ByteView(message.substr(0, kMaxMessage)));
}

// NBD_REP_INFO: u16 type, then the type's payload.
void PutInfoString(Buffer& out, uint32_t option, uint16_t type, std::string_view s) {
  s = s.substr(0, kMaxString);
  Put64(out, kOptionReplyMagic);
  Put32(out, option);
  Put32(out, kRepInfo);
  Put32(out, static_cast<uint32_t>(2 + s.size()));
  Put16(out, type);
  out.Append(ByteView(s));
}

}  // namespace

NbdSession::NbdSession(ExportDirectory& exports, const NbdServerOptions& options,
                       NbdCounters& counters, WorkerPool* pool) noexcept
    : exports_(exports),
      counters_(counters),
      max_option_bytes_(options.max_option_bytes),
      max_request_bytes_(options.max_request_bytes),
      output_high_water_(options.output_high_water),
      pool_(pool),
      max_in_flight_bytes_(uint64_t{options.max_request_bytes} * 2) {}

NbdSession::~NbdSession() = default;

void NbdSession::Start(Buffer& out) {
  Put64(out, kNbdMagic);
  Put64(out, kOptionMagic);
  Put16(out, kFlagFixedNewstyle | kFlagNoZeroes);
}

size_t NbdSession::Process(ByteView in, Buffer& out) {
  if (pool_ != nullptr) {
    // Replies of requests the pool finished, in the order they finished.
    std::vector<std::pair<std::string, uint64_t>> done;
    {
      std::lock_guard lock(completed_->mu);
      done.swap(completed_->replies);
    }
    for (auto& [reply, bytes] : done) {
      out.Append(ByteView(reply));
      --in_flight_;
      in_flight_bytes_ -= bytes;
    }
  }
  size_t used = 0;
  size_t requests = 0;
  paused_ = false;
  needed_ = 0;
  while (!closing_ && !disc_ && !blocked(out)) {
    if (requests == kRequestsPerCall || OutputBytes(out) >= kOutputPerCall) {
      // Replies go out in slices while the rest runs, so a client with a
      // deep queue gets its first answers early and works in parallel
      // with the server instead of waiting for the whole batch.
      paused_ = used < in.size();
      break;
    }
    ByteView rest = in.subview(used, in.size() - used);
    if (skip_.active) {
      // Data refused before it arrived: dropped as it comes, never kept.
      const size_t n = static_cast<size_t>(std::min<uint64_t>(skip_.remaining, rest.size()));
      used += n;
      skip_.remaining -= n;
      if (skip_.remaining > 0) break;
      skip_.active = false;
      if (skip_.option) {
        PutOptionError(out, skip_.code, kRepErrTooBig, "option data over the server's limit");
      } else {
        ReplyError(skip_.handle, skip_.code, skip_.why, out);
      }
      continue;
    }
    size_t n = 0;
    switch (phase_) {
      case Phase::kClientFlags:
        n = ClientFlags(rest);
        break;
      case Phase::kOptions:
        n = Option(rest, out);
        break;
      case Phase::kTransmission:
        n = Transmission(rest, out);
        requests += n > 0 ? 1 : 0;
        break;
    }
    if (n == 0) break;
    used += n;
  }
  return used;
}

void NbdSession::ProtocolError() {
  Bump(counters_.protocol_errors);
  closing_ = true;
}

size_t NbdSession::ClientFlags(ByteView in) {
  if (in.size() < kClientFlagsSize) return 0;
  const uint32_t flags = DecodeBigEndian32(in.data());
  // The spec: the server MUST drop the connection on a flag it does not know.
  if ((flags & ~(kClientFlagFixedNewstyle | kClientFlagNoZeroes)) != 0) {
    ProtocolError();
    return 0;
  }
  // A client without FIXED_NEWSTYLE gets fixed newstyle all the same (the
  // spec allows it): such a client sends only NBD_OPT_EXPORT_NAME anyway.
  no_zeroes_ = (flags & kClientFlagNoZeroes) != 0;
  phase_ = Phase::kOptions;
  return kClientFlagsSize;
}

size_t NbdSession::Option(ByteView in, Buffer& out) {
  if (in.size() < kOptionHeaderSize) return 0;
  if (DecodeBigEndian64(in.data()) != kOptionMagic) {
    ProtocolError();
    return 0;
  }
  const uint32_t option = DecodeBigEndian32(in.data() + 8);
  const uint32_t length = DecodeBigEndian32(in.data() + 12);
  if (length > max_option_bytes_) {
    if (option == kOptExportName) {
      // No error reply exists for EXPORT_NAME, and no name is this long.
      ProtocolError();
      return 0;
    }
    skip_ = {.active = true, .remaining = length, .option = true, .code = option};
    return kOptionHeaderSize;
  }
  if (in.size() - kOptionHeaderSize < length) return 0;
  HandleOption(option, in.subview(kOptionHeaderSize, length), out);
  return kOptionHeaderSize + length;
}

void NbdSession::HandleOption(uint32_t option, ByteView data, Buffer& out) {
  switch (option) {
    case kOptExportName:
      ExportName(data, out);
      return;
    case kOptAbort:
      // The spec asks for an ACK; the client may already be gone.
      PutOptionReply(out, option, kRepAck);
      closing_ = true;
      return;
    case kOptList:
      List(option, data, out);
      return;
    case kOptInfo:
    case kOptGo:
      InfoOrGo(option, data, out);
      return;
    case kOptListMetaContext:
    case kOptSetMetaContext:
      MetaContext(option, data, out);
      return;
    case kOptStructuredReply:
      if (!data.empty()) {
        PutOptionError(out, option, kRepErrInvalid, "NBD_OPT_STRUCTURED_REPLY takes no data");
        return;
      }
      structured_ = true;
      PutOptionReply(out, option, kRepAck);
      return;
    default:
      // STARTTLS, meta contexts, extended headers, anything newer: the
      // client may go on without them.
      PutOptionReply(out, option, kRepErrUnsup);
      return;
  }
}

void NbdSession::ExportName(ByteView name, Buffer& out) {
  auto opened = exports_.Open(name.AsStringView());
  if (!opened.ok()) {
    // The spec: an export that cannot be given ends the session (there is
    // no error reply to NBD_OPT_EXPORT_NAME).
    closing_ = true;
    return;
  }
  export_ = std::move(opened).value();
  block_status_ = meta_allocation_ && meta_export_ == name.AsStringView();
  const ExportInfo& info = export_->info();
  Put64(out, info.size);
  Put16(out, TransmissionFlags(info));
  if (!no_zeroes_) {
    const auto zeroes = out.Prepare(kExportNameZeroes);
    std::fill(zeroes.begin(), zeroes.begin() + kExportNameZeroes, std::byte{0});
    out.Commit(kExportNameZeroes);
  }
  phase_ = Phase::kTransmission;
  Bump(counters_.handshakes);
}

void NbdSession::List(uint32_t option, ByteView data, Buffer& out) {
  if (!data.empty()) {
    PutOptionError(out, option, kRepErrInvalid, "NBD_OPT_LIST takes no data");
    return;
  }
  for (const ExportInfo& e : exports_.List()) {
    // NBD_REP_SERVER: u32 name length, name, then (free text) the description.
    const std::string_view name = std::string_view(e.name).substr(0, kMaxString);
    const std::string_view description = std::string_view(e.description).substr(0, kMaxString);
    Put64(out, kOptionReplyMagic);
    Put32(out, option);
    Put32(out, kRepServer);
    Put32(out, static_cast<uint32_t>(4 + name.size() + description.size()));
    Put32(out, static_cast<uint32_t>(name.size()));
    out.Append(ByteView(name));
    out.Append(ByteView(description));
  }
  PutOptionReply(out, option, kRepAck);
}

void NbdSession::InfoOrGo(uint32_t option, ByteView data, Buffer& out) {
  // Data: u32 name length, name, u16 count, count x u16 info types; the
  // lengths must add up exactly.
  if (data.size() < kInfoRequestMinSize) {
    PutOptionError(out, option, kRepErrInvalid, "option data too short");
    return;
  }
  const uint32_t name_length = DecodeBigEndian32(data.data());
  if (name_length > data.size() - kInfoRequestMinSize) {
    PutOptionError(out, option, kRepErrInvalid, "export name longer than the option");
    return;
  }
  const ByteView name = data.subview(4, name_length);
  const size_t count_at = 4 + size_t{name_length};
  const size_t count = DecodeBigEndian16(data.data() + count_at);
  if (data.size() != count_at + 2 + 2 * count) {
    PutOptionError(out, option, kRepErrInvalid,
                   "information request count does not match the length");
    return;
  }
  bool want_name = false, want_description = false, want_block_size = false;
  for (size_t i = 0; i < count; ++i) {
    switch (DecodeBigEndian16(data.data() + count_at + 2 + 2 * i)) {
      case kInfoName:
        want_name = true;
        break;
      case kInfoDescription:
        want_description = true;
        break;
      case kInfoBlockSize:
        want_block_size = true;
        break;
      default:
        break;  // NBD_INFO_EXPORT is always sent; unknown types are ignored
    }
  }
  auto opened = exports_.Open(name.AsStringView());
  if (!opened.ok()) {
    const Status& s = opened.status();
    const uint32_t type = s.code() == Errc::kNotFound      ? kRepErrUnknown
                          : s.code() == Errc::kUnavailable ? kRepErrShutdown
                                                           : kRepErrUnknown;
    PutOptionError(out, option, type, s.message());
    return;
  }
  std::shared_ptr<Export> e = std::move(opened).value();
  const ExportInfo& info = e->info();

  Put64(out, kOptionReplyMagic);
  Put32(out, option);
  Put32(out, kRepInfo);
  Put32(out, kInfoExportSize);
  Put16(out, kInfoExport);
  Put64(out, info.size);
  Put16(out, TransmissionFlags(info));
  // NAME, DESCRIPTION and BLOCK_SIZE only when asked: a client that did
  // not ask for block sizes may not expect to be bound by them.
  if (want_name) PutInfoString(out, option, kInfoName, info.name);
  if (want_description && !info.description.empty()) {
    PutInfoString(out, option, kInfoDescription, info.description);
  }
  if (want_block_size) {
    Put64(out, kOptionReplyMagic);
    Put32(out, option);
    Put32(out, kRepInfo);
    Put32(out, kInfoBlockSizeSize);
    Put16(out, kInfoBlockSize);
    Put32(out, info.min_block);
    Put32(out, info.preferred_block);
    // The payload bound is this server's as much as the device's.
    Put32(out, std::min(info.max_block, max_request_bytes_));
  }
  PutOptionReply(out, option, kRepAck);
  if (option == kOptGo) {
    block_status_ = meta_allocation_ && meta_export_ == name.AsStringView();
    export_ = std::move(e);
    phase_ = Phase::kTransmission;
    Bump(counters_.handshakes);
  }
}

void NbdSession::MetaContext(uint32_t option, ByteView data, Buffer& out) {
  // Data: u32 export name length, name, u32 query count, each query a u32
  // length and the string; the lengths must add up exactly.
  const bool set = option == kOptSetMetaContext;
  if (set) meta_allocation_ = false;  // SET replaces the selection, even when it fails
  if (set && !structured_) {
    PutOptionError(out, option, kRepErrInvalid, "meta contexts need structured replies first");
    return;
  }
  auto bad = [&] { PutOptionError(out, option, kRepErrInvalid, "malformed meta context request"); };
  if (data.size() < 8) return bad();
  const uint32_t name_length = DecodeBigEndian32(data.data());
  if (name_length > data.size() - 8) return bad();
  const std::string_view name = data.subview(4, name_length).AsStringView();
  size_t at = 4 + size_t{name_length};
  const uint32_t count = DecodeBigEndian32(data.data() + at);
  at += 4;
  bool selected = false;
  for (uint32_t i = 0; i < count; ++i) {
    if (data.size() - at < 4) return bad();
    const uint32_t len = DecodeBigEndian32(data.data() + at);
    at += 4;
    if (len > data.size() - at) return bad();
    const std::string_view query = data.subview(at, len).AsStringView();
    at += len;
    // base:allocation by its name; LIST also takes the namespace alone.
    if (query == kBaseAllocation || (!set && query == "base:")) selected = true;
  }
  if (at != data.size()) return bad();
  if (!set && count == 0) selected = true;  // LIST with no query: everything there is
  auto opened = exports_.Open(name);
  if (!opened.ok()) {
    PutOptionError(out, option, kRepErrUnknown, opened.status().message());
    return;
  }
  if (selected) {
    // NBD_REP_META_CONTEXT: u32 id (LIST: 0, reserved), the name.
    Put64(out, kOptionReplyMagic);
    Put32(out, option);
    Put32(out, kRepMetaContext);
    Put32(out, static_cast<uint32_t>(4 + kBaseAllocation.size()));
    Put32(out, set ? kBaseAllocationId : 0);
    out.Append(ByteView(kBaseAllocation));
  }
  if (set) {
    meta_allocation_ = selected;
    meta_export_ = std::string(name);
  }
  PutOptionReply(out, option, kRepAck);
}

uint16_t NbdSession::TransmissionFlags(const ExportInfo& info) const noexcept {
  uint16_t f = kFlagHasFlags;
  if (info.read_only) f |= kFlagReadOnly;
  if (info.can_flush) f |= kFlagSendFlush;
  if (info.can_fua) f |= kFlagSendFua;
  if (info.can_trim && !info.read_only) f |= kFlagSendTrim;
  if (info.can_zero && !info.read_only) f |= kFlagSendWriteZeroes;
  if (info.can_multi_conn) f |= kFlagCanMultiConn;
  // CACHE is a hint every export takes; a device's write-zeroes is always
  // fast here (holes, or zeroed ranges), so FAST_ZERO never has to fail.
  f |= kFlagSendCache;
  if (info.can_zero && !info.read_only) f |= kFlagSendFastZero;
  // A read is always answered in one chunk, so "don't fragment" costs
  // nothing; the flag is only valid with structured replies.
  if (structured_) f |= kFlagSendDf;
  return f;
}

size_t NbdSession::Transmission(ByteView in, Buffer& out) {
  if (in.size() < kRequestSize) return 0;
  const std::byte* p = in.data();
  if (DecodeBigEndian32(p) != kRequestMagic) {
    ProtocolError();
    return 0;
  }
  const Request r{.flags = DecodeBigEndian16(p + 4),
                  .type = DecodeBigEndian16(p + 6),
                  .handle = DecodeBigEndian64(p + 8),
                  .offset = DecodeBigEndian64(p + 16),
                  .length = DecodeBigEndian32(p + 24)};
  if (r.type == kCmdDisc) {
    // No reply; the replies already made (and those still running) go out.
    if (in_flight_ > 0) {
      disc_ = true;
    } else {
      closing_ = true;
    }
    return kRequestSize;
  }
  const Refusal refusal = Check(r);
  if (r.type == kCmdWrite) {
    if (refusal.error != 0) {
      Bump(counters_.writes);
      // Refused before its payload is read: the payload is skipped as it
      // arrives (it may be far longer than anything we would buffer).
      skip_ = {.active = true,
               .remaining = r.length,
               .option = false,
               .code = refusal.error,
               .handle = r.handle,
               .why = refusal.why};
      return kRequestSize;
    }
    if (in.size() - kRequestSize < r.length) {
      needed_ = kRequestSize + size_t{r.length};  // wait for the whole payload, received in place
      return 0;
    }
    Bump(counters_.writes);
    if (pool_ != nullptr) {
      Submit(r, in.subview(kRequestSize, r.length));
    } else {
      Execute(r, in.subview(kRequestSize, r.length), out);
    }
    return kRequestSize + r.length;
  }
  switch (r.type) {
    case kCmdRead:
      Bump(counters_.reads);
      break;
    case kCmdFlush:
      Bump(counters_.flushes);
      break;
    case kCmdTrim:
      Bump(counters_.trims);
      break;
    case kCmdWriteZeroes:
      Bump(counters_.zeroes);
      break;
    default:
      break;
  }
  if (refusal.error != 0) {
    ReplyError(r.handle, refusal.error, refusal.why, out);
  } else if (pool_ != nullptr) {
    Submit(r, {});
  } else {
    Execute(r, {}, out);
  }
  return kRequestSize;
}

NbdSession::Refusal NbdSession::Check(const Request& r) const {
  const ExportInfo& info = export_->info();
  uint16_t allowed = kCmdFlagFua;  // valid on every command once SEND_FUA is sent
  bool writes = false;
  bool supported = true;
  switch (r.type) {
    case kCmdRead:
      if (structured_) allowed |= kCmdFlagDf;
      break;
    case kCmdWrite:
      writes = true;
      break;
    case kCmdFlush:
      supported = info.can_flush;
      break;
    case kCmdTrim:
      writes = true;
      supported = info.can_trim;
      break;
    case kCmdWriteZeroes:
      writes = true;
      supported = info.can_zero;
      allowed |= kCmdFlagNoHole | kCmdFlagFastZero;
      break;
    case kCmdCache:
      break;
    case kCmdBlockStatus:
      supported = block_status_;
      allowed |= kCmdFlagReqOne;
      if (supported && r.length == 0) return {kEinval, "block status of no bytes"};
      break;
    default:
      return {kEinval, "unknown command"};  // as the spec asks
  }
  if (!info.can_fua) allowed &= static_cast<uint16_t>(~kCmdFlagFua);
  if ((r.flags & ~allowed) != 0) return {kEinval, "command flag not valid here"};
  if (!supported) return {kEinval, "command not offered by this export"};
  if (writes && info.read_only) return {kEperm, "export is read-only"};
  if ((r.type == kCmdRead || r.type == kCmdWrite) && r.length > max_request_bytes_) {
    // DF asks for one chunk; one this long is refused with EOVERFLOW.
    return {(r.flags & kCmdFlagDf) != 0 ? kEoverflow : kEinval,
            "request longer than the server's limit"};
  }
  if (r.type != kCmdFlush && (r.offset > info.size || r.length > info.size - r.offset)) {
    // The spec: ENOSPC for a write past the end, EINVAL otherwise.
    return {r.type == kCmdWrite || r.type == kCmdWriteZeroes ? kEnospc : kEinval,
            "request past the end of the export"};
  }
  return {};
}

void NbdSession::Execute(const Ctx& c, const Request& r, ByteView payload, Buffer& out) {
  const bool fua = (r.flags & kCmdFlagFua) != 0;
  Status s;
  switch (r.type) {
    case kCmdRead:
      Read(c, r, out);
      return;
    case kCmdBlockStatus:
      BlockStatus(c, r, out);
      return;
    case kCmdCache:
      if (r.length > 0) s = c.exp->Cache(r.offset, r.length);
      break;
    case kCmdWrite:
      if (!payload.empty()) s = c.exp->Write(r.offset, payload, fua);
      if (s.ok()) Bump(c.counters->write_bytes, payload.size());
      break;
    case kCmdFlush:
      s = c.exp->Flush();
      break;
    case kCmdTrim:
      if (r.length > 0) s = c.exp->Trim(r.offset, r.length, fua);
      break;
    case kCmdWriteZeroes:
      if (r.length > 0) {
        s = c.exp->WriteZeroes(r.offset, r.length, fua, (r.flags & kCmdFlagNoHole) != 0);
      }
      break;
    default:
      break;  // Check() refused the others
  }
  if (s.ok()) {
    ReplyOk(r.handle, out);
  } else {
    ReplyError(c, r.handle, NbdError(s), s.message(), out);
  }
}

void NbdSession::Submit(const Request& r, ByteView payload) {
  const uint64_t bytes = payload.size() + (r.type == kCmdRead ? r.length : 0);
  ++in_flight_;
  in_flight_bytes_ += bytes;
  // The job holds what it uses (the export, the reply list, the waker),
  // never the session: the connection may close before it runs.
  pool_->Post([exp = export_, c = ctx(), r, data = payload.ToString(), done = completed_, waker = waker_,
               bytes] {
    Buffer reply;
    Execute(c, r, ByteView(data), reply);
    {
      std::lock_guard lock(done->mu);
      done->replies.emplace_back(reply.readable().ToString(), bytes);
    }
    if (waker) waker->Wake();
  });
}

void NbdSession::Read(const Ctx& c, const Request& r, Buffer& out) {
  if (r.length == 0) {
    if (!c.structured) {
      ReplyOk(r.handle, out);
      return;
    }
    // OFFSET_DATA must carry at least one byte: an empty read is NONE.
    Put32(out, kStructuredReplyMagic);
    Put16(out, kReplyFlagDone);
    Put16(out, kReplyTypeNone);
    Put64(out, r.handle);
    Put32(out, 0);
    return;
  }
  if (ReadZeroCopy(c, r, out)) return;
  // The header, then the device reads straight into the output buffer; it
  // is committed only when the read succeeded, so an error reply can take
  // its place (a simple reply cannot take back a header once sent).
  const size_t header = c.structured ? kChunkHeaderSize + kOffsetDataPrefix : kSimpleReplySize;
  const MutableByteView space = out.Prepare(header + r.length);
  std::byte* h = space.data();
  if (c.structured) {
    EncodeBigEndian32(h, kStructuredReplyMagic);
    EncodeBigEndian16(h + 4, kReplyFlagDone);
    EncodeBigEndian16(h + 6, kReplyTypeOffsetData);
    EncodeBigEndian64(h + 8, r.handle);
    EncodeBigEndian32(h + 16, static_cast<uint32_t>(kOffsetDataPrefix + r.length));
    EncodeBigEndian64(h + 20, r.offset);
  } else {
    EncodeBigEndian32(h, kSimpleReplyMagic);
    EncodeBigEndian32(h + 4, 0);
    EncodeBigEndian64(h + 8, r.handle);
  }
  const Status s = c.exp->Read(r.offset, space.subspan(header, r.length));
  if (!s.ok()) {
    ReplyError(c, r.handle, NbdError(s), s.message(), out);
    return;
  }
  out.Commit(header + r.length);
  Bump(c.counters->read_bytes, r.length);
}

bool NbdSession::ReadZeroCopy(const Ctx& c, const Request& r, Buffer& out) {
  if (c.io == nullptr || r.length < kZeroCopyMin || !c.io->zero_copy()) return false;
  Volume::ReadPlan plan;
  Result<bool> planned = c.exp->PlanRead(r.offset, r.length, plan);
  if (!planned.ok()) {
    ReplyError(c, r.handle, NbdError(planned.status()), planned.status().message(), out);
    return true;
  }
  if (!*planned) return false;
  if (c.structured) {
    Put32(out, kStructuredReplyMagic);
    Put16(out, kReplyFlagDone);
    Put16(out, kReplyTypeOffsetData);
    Put64(out, r.handle);
    Put32(out, static_cast<uint32_t>(kOffsetDataPrefix + r.length));
    Put64(out, r.offset);
  } else {
    Put32(out, kSimpleReplyMagic);
    Put32(out, 0);
    Put64(out, r.handle);
  }
  for (const Volume::FilePiece& p : plan.pieces) {
    if (p.mem != nullptr && c.io->SendMemory(out, ByteView(p.mem, p.length), plan.hold)) continue;
    if (p.fd >= 0) {
      // zero_copy() said the loop takes file bytes.
      QCLOUD_CHECK(c.io->SendFile(out, p.fd, p.offset, p.length, plan.hold));
      continue;
    }
    const MutableByteView dst = out.Prepare(p.length);  // a hole: zeros
    std::memset(dst.data(), 0, p.length);
    out.Commit(p.length);
  }
  Bump(c.counters->read_bytes, r.length);
  return true;
}

void NbdSession::BlockStatus(const Ctx& c, const Request& r, Buffer& out) {
  // At most this many descriptors in one reply: the client asks again
  // from where the reply stopped.
  constexpr size_t kMaxRuns = 4096;
  std::vector<AllocationRun> runs;
  const Status s = c.exp->Allocation(r.offset, r.length, runs);
  if (!s.ok()) {
    ReplyError(c, r.handle, NbdError(s), s.message(), out);
    return;
  }
  // Keep what the spec allows: nonzero runs, within the request.
  size_t n = 0;
  uint64_t covered = 0;
  for (const AllocationRun& run : runs) {
    if (run.length == 0 || covered + run.length > r.length || n == kMaxRuns) break;
    covered += run.length;
    ++n;
    if ((r.flags & kCmdFlagReqOne) != 0) break;
  }
  if (n == 0) {
    ReplyError(c, r.handle, kEinval, "no allocation information", out);
    return;
  }
  Put32(out, kStructuredReplyMagic);
  Put16(out, kReplyFlagDone);
  Put16(out, kReplyTypeBlockStatus);
  Put64(out, r.handle);
  Put32(out, static_cast<uint32_t>(4 + 8 * n));
  Put32(out, kBaseAllocationId);
  for (size_t i = 0; i < n; ++i) {
    Put32(out, runs[i].length);
    Put32(out, runs[i].hole ? kStateHole | kStateZero : 0);
  }
}

void NbdSession::ReplyOk(uint64_t handle, Buffer& out) {
  // A simple reply even with structured replies on: allowed for any
  // request whose reply has no payload, and every client takes it.
  Put32(out, kSimpleReplyMagic);
  Put32(out, 0);
  Put64(out, handle);
}

void NbdSession::ReplyError(const Ctx& c, uint64_t handle, uint32_t error, std::string_view message,
                            Buffer& out) {
  Bump(c.counters->errors);
  if (!c.structured) {
    Put32(out, kSimpleReplyMagic);
    Put32(out, error);
    Put64(out, handle);
    return;
  }
  // An error chunk (required for reads, preferred for the rest): it can
  // carry a message for the user.
  message = message.substr(0, kMaxMessage);
  Put32(out, kStructuredReplyMagic);
  Put16(out, kReplyFlagDone);
  Put16(out, kReplyTypeError);
  Put64(out, handle);
  Put32(out, static_cast<uint32_t>(kErrorChunkPrefix + message.size()));
  Put32(out, error);
  Put16(out, static_cast<uint16_t>(message.size()));
  out.Append(ByteView(message));
}

}  // namespace qcloud::block
