#pragma once

// The NBD wire format (fixed newstyle handshake, simple and structured
// replies), as written in the protocol's specification:
// https://github.com/NetworkBlockDevice/nbd/blob/master/doc/proto.md
// Every number on the wire is big-endian. The format carries no version
// field of its own: features are negotiated by flags and options.
//
// Handshake (S = server, C = client):
//   S: u64 NBDMAGIC, u64 IHAVEOPT, u16 handshake flags
//   C: u32 client flags
//   then, repeated, an option and its reply:
//   C: u64 IHAVEOPT, u32 option, u32 length, length bytes of data
//   S: u64 kOptionReplyMagic, u32 option, u32 reply type, u32 length, data
//   except NBD_OPT_EXPORT_NAME, answered (no reply header)
//   S: u64 size, u16 transmission flags, 124 zero bytes unless NO_ZEROES
// Transmission:
//   C: request  u32 magic, u16 command flags, u16 type, u64 handle,
//               u64 offset, u32 length (then length bytes for a write)
//   S: simple   u32 magic, u32 error, u64 handle (then data for a read)
//   S: chunk    u32 magic, u16 flags, u16 type, u64 handle, u32 length,
//               payload (structured replies, once negotiated)

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "qcloud/core/bytes.h"

namespace qcloud::block::nbd {

// Magics.
inline constexpr uint64_t kNbdMagic = 0x4e42444d41474943;     // "NBDMAGIC"
inline constexpr uint64_t kOptionMagic = 0x49484156454F5054;  // "IHAVEOPT"
inline constexpr uint64_t kOptionReplyMagic = 0x0003e889045565a9;
inline constexpr uint32_t kRequestMagic = 0x25609513;
inline constexpr uint32_t kSimpleReplyMagic = 0x67446698;
inline constexpr uint32_t kStructuredReplyMagic = 0x668e33ef;

// Handshake flags (server) and client flags.
inline constexpr uint16_t kFlagFixedNewstyle = 1 << 0;
inline constexpr uint16_t kFlagNoZeroes = 1 << 1;
inline constexpr uint32_t kClientFlagFixedNewstyle = 1 << 0;
inline constexpr uint32_t kClientFlagNoZeroes = 1 << 1;

// Transmission flags.
inline constexpr uint16_t kFlagHasFlags = 1 << 0;
inline constexpr uint16_t kFlagReadOnly = 1 << 1;
inline constexpr uint16_t kFlagSendFlush = 1 << 2;
inline constexpr uint16_t kFlagSendFua = 1 << 3;
inline constexpr uint16_t kFlagRotational = 1 << 4;
inline constexpr uint16_t kFlagSendTrim = 1 << 5;
inline constexpr uint16_t kFlagSendWriteZeroes = 1 << 6;
inline constexpr uint16_t kFlagSendDf = 1 << 7;
inline constexpr uint16_t kFlagCanMultiConn = 1 << 8;
inline constexpr uint16_t kFlagSendCache = 1 << 10;
inline constexpr uint16_t kFlagSendFastZero = 1 << 11;

// Options.
inline constexpr uint32_t kOptExportName = 1;
inline constexpr uint32_t kOptAbort = 2;
inline constexpr uint32_t kOptList = 3;
inline constexpr uint32_t kOptStartTls = 5;
inline constexpr uint32_t kOptInfo = 6;
inline constexpr uint32_t kOptGo = 7;
inline constexpr uint32_t kOptStructuredReply = 8;
inline constexpr uint32_t kOptListMetaContext = 9;
inline constexpr uint32_t kOptSetMetaContext = 10;

// Option reply types; errors have bit 31 set.
inline constexpr uint32_t kRepAck = 1;
inline constexpr uint32_t kRepServer = 2;
inline constexpr uint32_t kRepInfo = 3;
inline constexpr uint32_t kRepMetaContext = 4;
// The one metadata context served: "base:allocation", its id and flags.
inline constexpr std::string_view kBaseAllocation = "base:allocation";
inline constexpr uint32_t kBaseAllocationId = 1;
inline constexpr uint32_t kStateHole = 1;
inline constexpr uint32_t kStateZero = 2;
inline constexpr uint32_t kRepErrBit = 1u << 31;
inline constexpr uint32_t kRepErrUnsup = kRepErrBit | 1;
inline constexpr uint32_t kRepErrPolicy = kRepErrBit | 2;
inline constexpr uint32_t kRepErrInvalid = kRepErrBit | 3;
inline constexpr uint32_t kRepErrPlatform = kRepErrBit | 4;
inline constexpr uint32_t kRepErrTlsReqd = kRepErrBit | 5;
inline constexpr uint32_t kRepErrUnknown = kRepErrBit | 6;
inline constexpr uint32_t kRepErrShutdown = kRepErrBit | 7;
inline constexpr uint32_t kRepErrBlockSizeReqd = kRepErrBit | 8;
inline constexpr uint32_t kRepErrTooBig = kRepErrBit | 9;

// NBD_REP_INFO types (NBD_OPT_INFO / NBD_OPT_GO).
inline constexpr uint16_t kInfoExport = 0;
inline constexpr uint16_t kInfoName = 1;
inline constexpr uint16_t kInfoDescription = 2;
inline constexpr uint16_t kInfoBlockSize = 3;

// Commands and command flags.
inline constexpr uint16_t kCmdRead = 0;
inline constexpr uint16_t kCmdWrite = 1;
inline constexpr uint16_t kCmdDisc = 2;
inline constexpr uint16_t kCmdFlush = 3;
inline constexpr uint16_t kCmdTrim = 4;
inline constexpr uint16_t kCmdCache = 5;
inline constexpr uint16_t kCmdWriteZeroes = 6;
inline constexpr uint16_t kCmdBlockStatus = 7;
inline constexpr uint16_t kCmdFlagFua = 1 << 0;
inline constexpr uint16_t kCmdFlagNoHole = 1 << 1;
inline constexpr uint16_t kCmdFlagDf = 1 << 2;
inline constexpr uint16_t kCmdFlagReqOne = 1 << 3;
inline constexpr uint16_t kCmdFlagFastZero = 1 << 4;

// Structured reply flags and chunk types.
inline constexpr uint16_t kReplyFlagDone = 1 << 0;
inline constexpr uint16_t kReplyTypeNone = 0;
inline constexpr uint16_t kReplyTypeOffsetData = 1;
inline constexpr uint16_t kReplyTypeBlockStatus = 5;
inline constexpr uint16_t kReplyTypeError = (1u << 15) | 1;

// Error values of replies (the spec fixes them; they equal Linux errno).
inline constexpr uint32_t kEperm = 1;
inline constexpr uint32_t kEio = 5;
inline constexpr uint32_t kEnomem = 12;
inline constexpr uint32_t kEinval = 22;
inline constexpr uint32_t kEnospc = 28;
inline constexpr uint32_t kEoverflow = 75;
inline constexpr uint32_t kEnotsup = 95;
inline constexpr uint32_t kEshutdown = 108;

// Sizes of the fixed parts.
inline constexpr size_t kGreetingSize = 8 + 8 + 2;
inline constexpr size_t kClientFlagsSize = 4;
inline constexpr size_t kOptionHeaderSize = 8 + 4 + 4;
inline constexpr size_t kOptionReplyHeaderSize = 8 + 4 + 4 + 4;
inline constexpr size_t kExportNameReplySize = 8 + 2;  // then kExportNameZeroes unless NO_ZEROES
inline constexpr size_t kExportNameZeroes = 124;
inline constexpr size_t kRequestSize = 4 + 2 + 2 + 8 + 8 + 4;
inline constexpr size_t kSimpleReplySize = 4 + 4 + 8;
inline constexpr size_t kChunkHeaderSize = 4 + 2 + 2 + 8 + 4;
inline constexpr size_t kOffsetDataPrefix = 8;      // OFFSET_DATA: u64 offset, then the data
inline constexpr size_t kErrorChunkPrefix = 4 + 2;  // ERROR: u32 error, u16 message length
inline constexpr size_t kInfoExportSize = 2 + 8 + 2;
inline constexpr size_t kInfoBlockSizeSize = 2 + 4 + 4 + 4;
// NBD_OPT_INFO/GO data: u32 name length, name, u16 count, count x u16.
inline constexpr size_t kInfoRequestMinSize = 4 + 2;
// The spec's bound on any string (export names, descriptions, messages).
inline constexpr size_t kMaxString = 4096;

// Appends big-endian integers to a Buffer.
inline void Put16(Buffer& out, uint16_t v) {
  EncodeBigEndian16(out.Prepare(2).data(), v);
  out.Commit(2);
}
inline void Put32(Buffer& out, uint32_t v) {
  EncodeBigEndian32(out.Prepare(4).data(), v);
  out.Commit(4);
}
inline void Put64(Buffer& out, uint64_t v) {
  EncodeBigEndian64(out.Prepare(8).data(), v);
  out.Commit(8);
}

}  // namespace qcloud::block::nbd
