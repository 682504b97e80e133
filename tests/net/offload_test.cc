#include "qcloud/net/offload.h"

#include <doctest/doctest.h>

#include <vector>

#include "frames.h"

using namespace qcloud::net;
using namespace qcloud::net::testframes;

namespace {

uint32_t Seq(std::span<const uint8_t> f, size_t l4) {
  return (uint32_t{f[l4 + 4]} << 24) | (uint32_t{f[l4 + 5]} << 16) | (uint32_t{f[l4 + 6]} << 8) | f[l4 + 7];
}

bool TcpOk(std::span<const uint8_t> f) {
  FrameInfo info;
  if (ClassifyFrame(f, &info) != ParseError::kOk || info.l4_proto != kIpProtoTcp) return false;
  Ipv4Header ip;
  if (ParseIpv4(f.subspan(14), &ip, true) != ParseError::kOk) return false;
  return TransportChecksumV4(ip.src, ip.dst, kIpProtoTcp, f.subspan(34, ip.total_len - 20)) == 0;
}

}  // namespace

TEST_CASE("net offload virtio header round trip and refusals") {
  Offload o;
  o.gso = Offload::kTcp4;
  o.csum_partial = true;
  o.hdr_len = 66;
  o.gso_size = 1448;
  o.csum_start = 34;
  o.csum_offset = 16;
  uint8_t h[kVirtioNetHdrLen];
  WriteVirtioNetHdr(h, o);
  Offload back;
  REQUIRE(ParseVirtioNetHdr(h, &back));
  CHECK(back.gso == Offload::kTcp4);
  CHECK(back.csum_partial);
  CHECK(back.gso_size == 1448);
  CHECK(back.csum_start == 34);
  CHECK(back.csum_offset == 16);
  CHECK(back.hdr_len == 66);
  uint8_t udp_gso[kVirtioNetHdrLen] = {1, 3, 0, 0, 0x10, 0};
  CHECK_FALSE(ParseVirtioNetHdr(udp_gso, &back));
  uint8_t bad_flags[kVirtioNetHdrLen] = {0x40, 0};
  CHECK_FALSE(ParseVirtioNetHdr(bad_flags, &back));
  uint8_t zero_mss[kVirtioNetHdrLen] = {1, 1};
  CHECK_FALSE(ParseVirtioNetHdr(zero_mss, &back));
  CHECK_FALSE(ParseVirtioNetHdr(std::span(h, 9), &back));
}

TEST_CASE("net offload a partial checksum is completed as the device would") {
  for (uint8_t proto : {kIpProtoUdp, kIpProtoTcp}) {
    auto f = Ipv4Frame(Mac(1), Mac(2), Ip(10, 0, 0, 1), Ip(10, 0, 0, 2), proto, 333);
    const size_t at = 34 + (proto == kIpProtoUdp ? 6 : 16);
    const uint16_t right = static_cast<uint16_t>((f[at] << 8) | f[at + 1]);
    // What a guest leaves: the pseudo-header sum, folded, not complemented.
    size_t len = 20 + 333 - (proto == kIpProtoUdp ? 12 : 0);
    f[at] = f[at + 1] = 0;
    uint16_t pseudo = static_cast<uint16_t>(~TransportChecksumV4(Ip(10, 0, 0, 1), Ip(10, 0, 0, 2), proto, {}) );
    uint32_t sum = pseudo + static_cast<uint32_t>(len);
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    f[at] = static_cast<uint8_t>(sum >> 8);
    f[at + 1] = static_cast<uint8_t>(sum);
    Offload o;
    o.csum_partial = true;
    o.csum_start = 34;
    o.csum_offset = proto == kIpProtoUdp ? 6 : 16;
    REQUIRE(CompleteChecksum(f, o));
    CHECK(static_cast<uint16_t>((f[at] << 8) | f[at + 1]) == right);
    o.csum_start = static_cast<uint16_t>(f.size() - 1);
    CHECK_FALSE(CompleteChecksum(f, o));
  }
}

TEST_CASE("net offload a TCP super-frame cut into wire segments and merged back") {
  const size_t payload = 10000, mss = 1448;
  auto super = Ipv4Frame(Mac(1), Mac(2), Ip(10, 0, 0, 1), Ip(10, 0, 0, 2), kIpProtoTcp, payload, 40000, 5201);
  REQUIRE(TcpOk(super));
  Offload o;
  o.gso = Offload::kTcp4;
  o.gso_size = mss;
  o.csum_partial = true;
  o.csum_start = 34;
  o.csum_offset = 16;
  std::vector<uint8_t> out(20 * 2000);
  auto s = SegmentTcp(super, o, kVxlanHeaderLen, out);
  REQUIRE(s);
  CHECK(s->count == 7);
  CHECK(s->segment_len == 54 + mss);
  CHECK(s->last_len == 54 + payload - 6 * mss);
  CHECK(s->stride == kVxlanHeaderLen + s->segment_len);
  std::vector<uint8_t> joined;
  TcpCoalescer gro;
  for (size_t i = 0; i < s->count; ++i) {
    std::span<const uint8_t> seg(out.data() + i * s->stride + kVxlanHeaderLen,
                                 i + 1 == s->count ? s->last_len : s->segment_len);
    CHECK_MESSAGE(TcpOk(seg), "segment " << i);
    CHECK(Seq(seg, 34) == Seq(super, 34) + i * mss);
    CHECK(((seg[18] << 8) | seg[19]) == 7 + static_cast<int>(i));  // IP id
    CHECK((seg[34 + 13] & 0x08) == (i + 1 == s->count ? 0x08 : 0));  // PSH on the last only
    joined.insert(joined.end(), seg.begin() + 54, seg.end());
    CHECK(gro.Add(seg));
  }
  CHECK(std::vector<uint8_t>(super.begin() + 54, super.end()) == joined);
  CHECK(gro.closed());  // the short last segment (and PSH) ended it
  Offload merged;
  auto back = gro.Take(&merged);
  CHECK(merged.gso == Offload::kTcp4);
  CHECK(merged.gso_size == mss);
  CHECK(merged.csum_partial);
  CHECK(merged.csum_start == 34);
  CHECK(back.size() == super.size());
  // The merged frame completes to the original exactly.
  std::vector<uint8_t> completed(back.begin(), back.end());
  REQUIRE(CompleteChecksum(completed, merged));
  CHECK(completed == super);
  CHECK(gro.empty());

  SUBCASE("too small a buffer, a mismatched type, nonsense sizes") {
    std::vector<uint8_t> tiny(5000);
    CHECK_FALSE(SegmentTcp(super, o, 8, tiny));
    Offload v6 = o;
    v6.gso = Offload::kTcp6;
    CHECK_FALSE(SegmentTcp(super, v6, 8, out));
    Offload many = o;
    many.gso_size = 5;  // 2,000 segments
    std::vector<uint8_t> big(2000 * 100);
    CHECK_FALSE(SegmentTcp(super, many, 0, big));
    auto udp = Ipv4Frame(Mac(1), Mac(2), Ip(10, 0, 0, 1), Ip(10, 0, 0, 2), kIpProtoUdp, 3000);
    CHECK_FALSE(SegmentTcp(udp, o, 0, out));
  }
}

TEST_CASE("net offload the coalescer merges only what GRO would") {
  auto seg = [](uint32_t seq, size_t len, uint16_t sport = 40000) {
    auto f = Ipv4Frame(Mac(1), Mac(2), Ip(10, 0, 0, 1), Ip(10, 0, 0, 2), kIpProtoTcp, len, sport, 5201);
    f[34 + 13] = 0x10;  // ACK only
    f[34 + 4] = static_cast<uint8_t>(seq >> 24);
    f[34 + 5] = static_cast<uint8_t>(seq >> 16);
    f[34 + 6] = static_cast<uint8_t>(seq >> 8);
    f[34 + 7] = static_cast<uint8_t>(seq);
    f[34 + 16] = f[34 + 17] = 0;
    uint16_t c = TransportChecksumV4(Ip(10, 0, 0, 1), Ip(10, 0, 0, 2), kIpProtoTcp, std::span(f).subspan(34, 20 + len));
    f[34 + 16] = static_cast<uint8_t>(c >> 8);
    f[34 + 17] = static_cast<uint8_t>(c);
    return f;
  };
  TcpCoalescer gro;
  REQUIRE(gro.Add(seg(1000, 1000)));
  CHECK_FALSE(gro.Add(seg(3000, 1000)));             // a gap
  CHECK_FALSE(gro.Add(seg(2000, 1000, 40001)));      // another flow
  auto bad = seg(2000, 1000);
  bad[100] ^= 1;
  CHECK_FALSE(gro.Add(bad));                          // a damaged segment
  CHECK_FALSE(TcpCoalescer::Mergeable(bad));
  auto syn = seg(2000, 1000);
  syn[34 + 13] = 0x12;
  CHECK_FALSE(TcpCoalescer::Mergeable(syn));
  CHECK_FALSE(TcpCoalescer::Mergeable(seg(2000, 0)));  // a pure ACK
  CHECK_FALSE(gro.Add(seg(2000, 1200)));              // longer than the first
  REQUIRE(gro.Add(seg(2000, 1000)));
  REQUIRE(gro.Add(seg(3000, 500)));                    // shorter: the end
  CHECK(gro.closed());
  CHECK_FALSE(gro.Add(seg(3500, 500)));
  Offload o;
  auto out = gro.Take(&o);
  CHECK(out.size() == 54 + 2500);
  CHECK(o.gso_size == 1000);
  // One segment alone comes back as it was, no offload.
  auto one = seg(5000, 700);
  REQUIRE(gro.Add(one));
  auto same = gro.Take(&o);
  CHECK(o.gso == Offload::kNone);
  CHECK(std::vector<uint8_t>(same.begin(), same.end()) == one);
}
