#pragma once

// qcloud::net offloads: what lets a software switch move TCP at the speed
// of the kernel's own tunnels. A VM's TAP device with IFF_VNET_HDR hands
// over TCP "super-frames" of up to 64 KiB (TSO) with a virtio_net_hdr that
// says how to cut them, and frames whose checksum is left partial; in the
// other direction it takes such super-frames whole.
//
//   Offload o;
//   if (!ParseVirtioNetHdr(hdr, &o)) drop();            // 10 bytes before the frame
//   if (o.gso != Offload::kNone) {
//     auto cut = SegmentTcp(frame, o, kVxlanHeaderLen, out);   // wire segments, headers fixed
//   } else if (o.csum_partial) {
//     CompleteChecksum(frame, o);
//   }
//
//   TcpCoalescer gro;                  // the other way: segments back into one super-frame
//   if (!gro.Add(segment)) { write(gro.Take()); gro.Add(segment); }
//
// Bounds: a header whose offsets point outside the frame, a GSO type other
// than TCP over IPv4/IPv6, a segment size of 0, a super-frame that would
// cut into more than kMaxSegments pieces, or an output buffer too small is
// refused (false / nullopt), never a write out of bounds.
//
// Thread safety: free functions on caller memory; a TcpCoalescer is one
// thread's.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "qcloud/core/export.h"
#include "qcloud/net/packet.h"

namespace qcloud::net {

inline constexpr size_t kVirtioNetHdrLen = 10;  // struct virtio_net_hdr
inline constexpr size_t kMaxSegments = 1024;  // an MSS of 64 bytes still fits
inline constexpr size_t kMaxSuperFrame = 65535 + kEthernetHeaderLen;

// virtio_net_hdr in the host's byte order (a TAP device's default on
// little-endian hosts). False for flags or GSO types not known here.
QCLOUD_EXPORT bool ParseVirtioNetHdr(std::span<const uint8_t> in, Offload* out) noexcept;
QCLOUD_EXPORT void WriteVirtioNetHdr(uint8_t out[kVirtioNetHdrLen], const Offload& o) noexcept;

// Computes the L4 checksum a partial frame left to the device; false when
// the offsets are outside the frame.
QCLOUD_EXPORT bool CompleteChecksum(std::span<uint8_t> frame, const Offload& o) noexcept;

// A TCP super-frame cut into segments of at most o.gso_size payload bytes,
// each a complete frame (IPv4 total length, id and header checksum, or
// IPv6 payload length; TCP sequence number, FIN/PSH on the last segment
// only, CWR on the first only, full checksum). Segment i is written at
// out + i * stride + prefix (the prefix is left for the caller, e.g. a
// VXLAN header), stride = prefix + segment_len.
struct Segments {
  size_t count = 0;
  size_t segment_len = 0;  // every segment but the last
  size_t last_len = 0;
  size_t stride = 0;
};
QCLOUD_EXPORT std::optional<Segments> SegmentTcp(std::span<const uint8_t> super, const Offload& o, size_t prefix,
                                                 std::span<uint8_t> out) noexcept;

// Consecutive segments of one TCP flow merged back into a super-frame (as
// the kernel's GRO does): same addresses, ports, ACK, window and options,
// contiguous sequence numbers, only ACK/PSH flags, payloads no larger than
// the first. Each segment's TCP checksum is verified before it is merged
// (the receiver of a super-frame trusts it), so a damaged segment is never
// hidden in one. A PSH, or a shorter segment, ends the super-frame.
class QCLOUD_EXPORT TcpCoalescer {
 public:
  TcpCoalescer();
  // True when `frame` joined (or started) the pending super-frame; false
  // when it cannot: Take() what is pending, then Add() it again, or send
  // it as it is when it is not mergeable TCP at all (Mergeable()).
  bool Add(std::span<const uint8_t> frame);
  // Whether a frame could ever start a super-frame (TCP with payload,
  // ACK/PSH only, its checksum right).
  static bool Mergeable(std::span<const uint8_t> frame);
  bool empty() const { return segments_ == 0; }
  bool closed() const { return closed_; }  // a PSH or short segment ended it: Take() it
  size_t segments() const { return segments_; }
  // The pending super-frame and its offload (gso kNone when one segment);
  // valid until the next Add(). Empties the coalescer.
  std::span<const uint8_t> Take(Offload* o);

 private:
  std::vector<uint8_t> buf_;
  size_t len_ = 0;
  size_t segments_ = 0;
  bool closed_ = false;
  bool v6_ = false;
  uint16_t l4_ = 0;        // TCP header offset
  uint16_t hdr_ = 0;       // headers' length
  uint16_t mss_ = 0;
  uint32_t next_seq_ = 0;
};

}  // namespace qcloud::net
