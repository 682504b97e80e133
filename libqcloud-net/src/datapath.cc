#include "qcloud/net/datapath.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_arp.h>
#include <linux/if_tun.h>
#include <netinet/udp.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <map>
#include <mutex>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <fmt/format.h>

#include "qcloud/net/htb.h"
#include "qcloud/net/offload.h"

namespace qcloud::net {
namespace {

namespace json = boost::json;

constexpr uint32_t kHtbRoot = 1;
constexpr size_t kMaxPooledFrames = 8192;

// What an epoll event is about: the kind in the high 32 bits, a port id low.
enum Tag : uint64_t { kTagWake = 1, kTagTimer, kTagVxlan, kTagGre, kTagProbe, kTagTap };
uint64_t EventKey(Tag tag, uint32_t id = 0) { return (uint64_t{tag} << 32) | id; }

constexpr size_t kControlSlot = CMSG_SPACE(sizeof(int)) + 64;  // UDP_GRO's int, with room

sockaddr_in SockAddr(Ipv4Addr a, uint16_t port) {
  sockaddr_in s{};
  s.sin_family = AF_INET;
  s.sin_addr.s_addr = htonl(a.value);
  s.sin_port = htons(port);
  return s;
}

class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) {
      Reset();
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  ~Fd() { Reset(); }
  int get() const { return fd_; }
  void Reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

Result<Fd> UdpSocket(uint16_t port) {
  Fd fd(::socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) return Status::FromErrno(errno, "socket(udp)");
  int one = 1;
  (void)::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  int buf = 8 << 20;
  if (::setsockopt(fd.get(), SOL_SOCKET, SO_RCVBUFFORCE, &buf, sizeof buf) != 0)
    (void)::setsockopt(fd.get(), SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
  if (::setsockopt(fd.get(), SOL_SOCKET, SO_SNDBUFFORCE, &buf, sizeof buf) != 0)
    (void)::setsockopt(fd.get(), SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
  sockaddr_in a = SockAddr({}, port);
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    int err = errno;
    return Status(err == EADDRINUSE ? Errc::kUnavailable : Errc::kIoError,
                  fmt::format("bind udp port {}: {}", port, std::strerror(err)));
  }
  return fd;
}

// A batch of datagrams to one socket, sent with one sendmmsg().
struct TxBatch {
  size_t slot_size = 0;
  std::vector<uint8_t> mem;
  std::vector<sockaddr_in> addr;
  std::vector<iovec> iov;
  std::vector<mmsghdr> msgs;
  size_t n = 0;

  void Init(size_t batch, size_t slot) {
    slot_size = slot;
    mem.assign(batch * slot, 0);
    addr.resize(batch);
    iov.resize(batch);
    msgs.resize(batch);
  }
  bool full() const { return n == msgs.size(); }
  // Room for one datagram of `len` bytes to `to`; null when len is too big.
  uint8_t* Add(sockaddr_in to, size_t len) {
    if (len > slot_size) return nullptr;
    uint8_t* p = mem.data() + n * slot_size;
    addr[n] = to;
    iov[n] = {p, len};
    msgs[n] = {};
    msgs[n].msg_hdr.msg_name = &addr[n];
    msgs[n].msg_hdr.msg_namelen = sizeof(sockaddr_in);
    msgs[n].msg_hdr.msg_iov = &iov[n];
    msgs[n].msg_hdr.msg_iovlen = 1;
    ++n;
    return p;
  }
  // Sends everything queued; returns the datagrams that failed.
  uint64_t Flush(int fd) {
    uint64_t failed = 0;
    size_t done = 0;
    while (done < n) {
      int r = ::sendmmsg(fd, msgs.data() + done, static_cast<unsigned>(n - done), 0);
      if (r > 0) {
        done += static_cast<size_t>(r);
        continue;
      }
      if (r < 0 && errno == EINTR) continue;
      // The first message of the rest failed (unreachable, buffer full):
      // count it and go on with the others.
      ++failed;
      ++done;
    }
    n = 0;
    return failed;
  }
};

// HTB's time: the real clock, except that a data path that woke up late
// replays the dequeues it missed at the times they were due (at most
// kHtbCatchUp back), so that the rates hold as the kernel's would (its
// qdisc runs in softirq, on time) and only the late packets leave together.
// Never goes back.
constexpr std::chrono::milliseconds kHtbCatchUp{10};

class HtbClock final : public Clock {
 public:
  explicit HtbClock(Clock* real) : real_(real), now_(real->MonotonicNow()) {}
  MonoTime MonotonicNow() const noexcept override { return now_; }
  WallTime WallNow() const noexcept override { return real_->WallNow(); }
  void MoveTo(MonoTime t) {
    if (t > now_) now_ = t;
  }

 private:
  Clock* real_;
  MonoTime now_;
};

struct TapPort {
  TapPortOptions options;
  Fd fd;
  uint32_t leaf = 0;  // HTB class, 0 = unshaped
  std::unique_ptr<TcpCoalescer> gro;  // segments from tunnels, merged for the VM (offload)
  bool gro_pending = false;           // listed in Impl::gro_ports
};

}  // namespace

struct Datapath::Impl final : SwitchSink {
  DatapathOptions o;
  Clock* clock = nullptr;
  Logger* log = nullptr;
  mutable std::mutex mu;
  std::unique_ptr<VSwitch> sw;
  std::unique_ptr<PlaneMonitor> planes;
  std::unique_ptr<Htb> htb;
  std::unique_ptr<HtbClock> htb_clock;
  std::map<uint32_t, VpcOptions> vpcs;
  std::map<uint32_t, TapPort> taps;
  std::map<uint32_t, uint32_t> leaf_port;  // HTB leaf -> port
  DatapathStats stats;
  std::atomic<bool> stop{false};

  Fd epoll, wake, timer, vxlan, gre, probe;
  TxBatch vxlan_tx, gre_tx;
  // Receive buffers: one frame from a TAP, a batch from a socket.
  std::vector<uint8_t> tap_buf;
  std::vector<uint8_t> rx_mem;
  std::vector<iovec> rx_iov;
  std::vector<sockaddr_in> rx_addr;
  std::vector<mmsghdr> rx_msgs;
  size_t rx_slot = 0;
  // Frames waiting in HTB queues.
  std::vector<std::vector<uint8_t>> pool;
  std::vector<uint32_t> pool_len;
  std::vector<Offload> pool_offload;
  // Offloads: super-frames cut for the wire; ports with merged segments waiting.
  std::vector<uint8_t> gso_buf;
  std::vector<uint32_t> gro_ports;
  std::vector<uint8_t> rx_control;  // one cmsg area per receive slot (UDP_GRO's segment size)
  std::vector<uint32_t> free_slots;
  MonoTime next_expire{};

  // The largest frame a TAP hands over: a TSO super-frame with offloads.
  size_t FrameCap() const { return o.offload ? std::max(o.max_frame, kMaxSuperFrame) : o.max_frame; }

  // ---- the sink: where the switch's decisions go ------------------------------

  void WriteTap(TapPort& tap, std::span<const uint8_t> frame, const Offload& off) {
    ssize_t w;
    size_t want = frame.size();
    if (o.offload) {
      uint8_t hdr[kVirtioNetHdrLen];
      WriteVirtioNetHdr(hdr, off);
      iovec iov[2] = {{hdr, sizeof hdr}, {const_cast<uint8_t*>(frame.data()), frame.size()}};
      w = ::writev(tap.fd.get(), iov, 2);
      want += sizeof hdr;
    } else {
      w = ::write(tap.fd.get(), frame.data(), frame.size());
    }
    if (w == static_cast<ssize_t>(want)) {
      ++stats.tap_tx;
    } else {
      ++stats.tap_errors;  // EIO: the device is down; EAGAIN: its queue is full
    }
  }

  void FlushGro(TapPort& tap) {
    if (tap.gro && !tap.gro->empty()) {
      Offload off;
      std::span<const uint8_t> super = tap.gro->Take(&off);
      if (off.gso != Offload::kNone) ++stats.gro_merged;
      WriteTap(tap, super, off);
    }
  }

  void ToPort(uint32_t port, Packet& frame) override {
    auto it = taps.find(port);
    if (it == taps.end()) return;
    TapPort& tap = it->second;
    const Offload& off = frame.offload();
    if (o.offload && off.gso == Offload::kNone && !off.csum_partial) {
      // Segments from the wire: merged into one super-frame per flow and
      // batch, as the kernel's GRO would, when the VM takes TSO.
      if (!tap.gro) tap.gro = std::make_unique<TcpCoalescer>();
      bool merged = tap.gro->Add(frame.bytes());
      if (!merged && !tap.gro->empty()) {  // another flow, or not contiguous: what is pending goes first
        FlushGro(tap);
        merged = tap.gro->Add(frame.bytes());
      }
      if (merged) {
        if (tap.gro->closed()) FlushGro(tap);
        else if (!tap.gro_pending) {
          tap.gro_pending = true;
          gro_ports.push_back(port);
        }
        return;
      }
    }
    FlushGro(tap);  // what was merged goes first: order within a flow
    if (!o.offload && (off.gso != Offload::kNone || off.csum_partial)) {
      ++stats.tap_errors;  // cannot happen: frames with offloads only come from TAPs that take them
      return;
    }
    WriteTap(tap, frame.bytes(), off);
  }


  void ToTunnel(const TunnelTarget& t, Packet& frame) override {
    Offload& off = frame.offload();
    if (off.gso != Offload::kNone) {
      SendSegmented(t, frame);
      return;
    }
    if (off.csum_partial) {
      // The wire needs the checksum the VM left to its device.
      if (!CompleteChecksum(frame.bytes(), off)) {
        ++stats.send_errors;
        return;
      }
      off.csum_partial = false;
    }
    if (t.type == Tunnel::kVxlan) {
      uint8_t* p = vxlan_tx.Add(SockAddr(t.dst, o.vxlan_port), kVxlanHeaderLen + frame.size());
      if (p == nullptr) {
        ++stats.send_errors;
        return;
      }
      WriteVxlan(p, t.vni);
      std::memcpy(p + kVxlanHeaderLen, frame.data(), frame.size());
      ++stats.vxlan_tx;
      if (vxlan_tx.full()) stats.send_errors += vxlan_tx.Flush(vxlan.get());
    } else {
      if (gre.get() < 0) {
        ++stats.send_errors;
        return;
      }
      uint8_t* p = gre_tx.Add(SockAddr(t.dst, 0), kGreKeyHeaderLen + frame.size());
      if (p == nullptr) {
        ++stats.send_errors;
        return;
      }
      WriteGre(p, t.vni);
      std::memcpy(p + kGreKeyHeaderLen, frame.data(), frame.size());
      ++stats.gre_tx;
      if (gre_tx.full()) stats.send_errors += gre_tx.Flush(gre.get());
    }
  }

  // A TCP super-frame from a VM: cut into wire segments behind room for
  // the tunnel header; VXLAN leaves in UDP GSO sends (the kernel cuts the
  // datagrams), GRE as single packets.
  void SendSegmented(const TunnelTarget& t, Packet& frame) {
    const size_t prefix = t.type == Tunnel::kVxlan ? kVxlanHeaderLen : kGreKeyHeaderLen;
    auto cut = SegmentTcp(frame.bytes(), frame.offload(), prefix, gso_buf);
    if (!cut) {
      ++stats.send_errors;
      return;
    }
    ++stats.gso_sent;
    for (size_t i = 0; i < cut->count; ++i) {
      uint8_t* h = gso_buf.data() + i * cut->stride;
      if (t.type == Tunnel::kVxlan) WriteVxlan(h, t.vni);
      else WriteGre(h, t.vni);
    }
    if (t.type == Tunnel::kGre) {
      for (size_t i = 0; i < cut->count; ++i) {
        size_t len = prefix + (i + 1 == cut->count ? cut->last_len : cut->segment_len);
        uint8_t* p = gre_tx.Add(SockAddr(t.dst, 0), len);
        if (p == nullptr) {
          ++stats.send_errors;
          continue;
        }
        std::memcpy(p, gso_buf.data() + i * cut->stride, len);
        ++stats.gre_tx;
        if (gre_tx.full()) stats.send_errors += gre_tx.Flush(gre.get());
      }
      return;
    }
    if (vxlan_tx.n) stats.send_errors += vxlan_tx.Flush(vxlan.get());  // keep the order
    sockaddr_in to = SockAddr(t.dst, o.vxlan_port);
    // At most 64 datagrams and 64 KB per send (the kernel's UDP GSO limits).
    const size_t per_send = std::max<size_t>(1, std::min<size_t>(64, 65000 / cut->stride));
    for (size_t first = 0; first < cut->count; first += per_send) {
      size_t n = std::min(per_send, cut->count - first);
      size_t bytes = (n - 1) * cut->stride + prefix + (first + n == cut->count ? cut->last_len : cut->segment_len);
      iovec iov{gso_buf.data() + first * cut->stride, bytes};
      alignas(cmsghdr) char control[CMSG_SPACE(sizeof(uint16_t))] = {};
      msghdr msg{};
      msg.msg_name = &to;
      msg.msg_namelen = sizeof to;
      msg.msg_iov = &iov;
      msg.msg_iovlen = 1;
      if (n > 1) {
        msg.msg_control = control;
        msg.msg_controllen = sizeof control;
        cmsghdr* c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_UDP;
        c->cmsg_type = UDP_SEGMENT;
        c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
        const uint16_t size = static_cast<uint16_t>(cut->stride);
        std::memcpy(CMSG_DATA(c), &size, sizeof size);
      }
      if (::sendmsg(vxlan.get(), &msg, 0) == static_cast<ssize_t>(bytes)) stats.vxlan_tx += n;
      else stats.send_errors += n;
    }
  }

  void Flush() {
    for (uint32_t id : gro_ports) {
      auto it = taps.find(id);
      if (it == taps.end()) continue;
      it->second.gro_pending = false;
      FlushGro(it->second);
    }
    gro_ports.clear();
    if (vxlan_tx.n) stats.send_errors += vxlan_tx.Flush(vxlan.get());
    if (gre_tx.n) stats.send_errors += gre_tx.Flush(gre.get());
  }

  // ---- HTB ----------------------------------------------------------------------

  // The tree is rebuilt when shaped ports come or go; what waited is dropped.
  Status RebuildHtb() {
    std::vector<HtbClass> classes;
    classes.push_back({.id = kHtbRoot, .rate = o.link_rate, .ceil = o.link_rate});
    leaf_port.clear();
    uint32_t next = 2;
    for (auto& [id, tap] : taps) {
      tap.leaf = 0;
      if (tap.options.qos.rate == 0) continue;
      const PortQos& q = tap.options.qos;
      HtbClass c{.id = next, .parent = kHtbRoot, .rate = q.rate, .ceil = q.ceil ? q.ceil : q.rate,
                 .burst = q.burst, .cburst = q.cburst, .prio = q.prio};
      classes.push_back(c);
      tap.leaf = next;
      leaf_port[next] = id;
      ++next;
    }
    if (htb) {
      stats.qos_drops += htb->backlog();
      free_slots.clear();
      for (uint32_t i = 0; i < pool.size(); ++i) free_slots.push_back(i);
    }
    htb.reset();
    if (classes.size() == 1) return Status::Ok();
    auto h = Htb::Open({.clock = htb_clock.get(), .queue_limit = o.qos_queue}, std::move(classes));
    if (!h.ok()) return h.status();
    htb = std::move(*h);
    return Status::Ok();
  }

  void Shape(TapPort& tap, const uint8_t* frame, size_t len, const Offload& off) {
    if (free_slots.empty()) {
      if (pool.size() >= kMaxPooledFrames) {
        ++stats.qos_drops;
        return;
      }
      pool.emplace_back();
      pool_len.push_back(0);
      pool_offload.emplace_back();
      free_slots.push_back(static_cast<uint32_t>(pool.size() - 1));
    }
    uint32_t slot = free_slots.back();
    // A super-frame is charged what its segments will be on the wire (the
    // kernel's qdisc_pkt_len_init does the same): its headers once per segment.
    size_t charge = len;
    if (off.gso != Offload::kNone && off.gso_size != 0 && size_t{off.csum_start} + 13 < len) {
      size_t hdr = off.csum_start + static_cast<size_t>(frame[off.csum_start + 12] >> 4) * 4;
      if (hdr < len) charge = len + ((len - hdr + off.gso_size - 1) / off.gso_size - 1) * hdr;
    }
    if (!htb->Enqueue(tap.leaf, static_cast<uint32_t>(std::min<size_t>(charge, UINT32_MAX)), slot)) {
      ++stats.qos_drops;
      return;
    }
    free_slots.pop_back();
    // A slot grows to the largest frame it has held (a super-frame: 64 KiB).
    if (pool[slot].size() < kDefaultHeadroom + len) pool[slot].resize(kDefaultHeadroom + len);
    std::memcpy(pool[slot].data() + kDefaultHeadroom, frame, len);
    pool_len[slot] = static_cast<uint32_t>(len);
    pool_offload[slot] = off;
  }

  // Sends what HTB lets go now. Called after every source of events, not
  // once per pass: at 100 Mbit/s tc's default 1,600-byte bucket holds
  // 128 us of tokens, and a pass that writes a batch of ACKs into VMs can
  // take longer than that.
  void DrainHtb() {
    if (!htb) return;
    const MonoTime real = clock->MonotonicNow();
    htb_clock->MoveTo(real - kHtbCatchUp);
    for (size_t left = htb->backlog(); left > 0; --left) {
      const MonoTime due = htb->NextReady();
      if (due > real) break;
      htb_clock->MoveTo(due);
      auto sent = htb->Dequeue();
      if (!sent) break;
      auto slot = static_cast<uint32_t>(sent->cookie);
      auto port = leaf_port.find(sent->leaf);
      if (port != leaf_port.end()) {
        Packet p(pool[slot].data(), pool[slot].size(), kDefaultHeadroom, pool_len[slot]);
        p.offload() = pool_offload[slot];
        sw->FromPort(port->second, p, *this);
      }
      free_slots.push_back(slot);
    }
    htb_clock->MoveTo(real);
  }

  // ---- input ----------------------------------------------------------------------

  void ReadTap(uint32_t id) {
    for (size_t i = 0; i < o.batch; ++i) {
      auto it = taps.find(id);
      if (it == taps.end()) return;
      // With offloads the device puts a virtio_net_hdr before the frame.
      const size_t vh = o.offload ? kVirtioNetHdrLen : 0;
      uint8_t* at = tap_buf.data() + kDefaultHeadroom - vh;
      ssize_t r = ::read(it->second.fd.get(), at, tap_buf.size() - kDefaultHeadroom + vh);
      if (r <= 0) return;  // EAGAIN: drained; EIO: detached
      ++stats.tap_rx;
      Offload off;
      if (vh != 0 && (static_cast<size_t>(r) < vh || !ParseVirtioNetHdr({at, vh}, &off))) {
        ++stats.tap_malformed;
        continue;
      }
      size_t len = static_cast<size_t>(r) - vh;
      // Nothing larger than the port's MTU goes on: a frame, or each
      // segment a super-frame is cut into.
      const size_t mtu = it->second.options.mtu;
      if (off.gso == Offload::kNone ? len > mtu + kEthernetHeaderLen + 2 * kVlanTagLen : off.gso_size > mtu) {
        ++stats.tap_malformed;
        continue;
      }
      if (off.gso != Offload::kNone) ++stats.tso_rx;
      if (it->second.leaf != 0 && htb) {
        Shape(it->second, at + vh, len, off);
        continue;
      }
      Packet p(tap_buf.data(), tap_buf.size(), kDefaultHeadroom, len);
      p.offload() = off;
      sw->FromPort(id, p, *this);
    }
  }

  int ReceiveBatch(int fd) {
    for (size_t i = 0; i < rx_msgs.size(); ++i) {
      rx_iov[i] = {rx_mem.data() + i * rx_slot, rx_slot};
      rx_msgs[i] = {};
      rx_msgs[i].msg_hdr.msg_name = &rx_addr[i];
      rx_msgs[i].msg_hdr.msg_namelen = sizeof(sockaddr_in);
      rx_msgs[i].msg_hdr.msg_iov = &rx_iov[i];
      rx_msgs[i].msg_hdr.msg_iovlen = 1;
      rx_msgs[i].msg_hdr.msg_control = rx_control.data() + i * kControlSlot;
      rx_msgs[i].msg_hdr.msg_controllen = kControlSlot;
    }
    return ::recvmmsg(fd, rx_msgs.data(), static_cast<unsigned>(rx_msgs.size()), MSG_DONTWAIT, nullptr);
  }

  void ReadVxlan() {
    int n = ReceiveBatch(vxlan.get());
    for (int i = 0; i < n; ++i) {
      size_t len = rx_msgs[i].msg_len;
      uint8_t* base = rx_mem.data() + static_cast<size_t>(i) * rx_slot;
      if ((rx_msgs[i].msg_hdr.msg_flags & MSG_TRUNC) != 0) {
        ++stats.underlay_malformed;
        continue;
      }
      // UDP GRO hands over several datagrams of one size back to back.
      size_t each = len;
      for (cmsghdr* c = CMSG_FIRSTHDR(&rx_msgs[i].msg_hdr); c != nullptr; c = CMSG_NXTHDR(&rx_msgs[i].msg_hdr, c)) {
        if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO) {
          int size = 0;
          std::memcpy(&size, CMSG_DATA(c), sizeof size);
          if (size > 0) each = static_cast<size_t>(size);
        }
      }
      Ipv4Addr from{ntohl(rx_addr[i].sin_addr.s_addr)};
      for (size_t off = 0; off < len; off += each) {
        size_t dlen = std::min(each, len - off);
        ++stats.vxlan_rx;
        VxlanHeader h;
        if (ParseVxlan({base + off, dlen}, &h) != ParseError::kOk) {
          ++stats.underlay_malformed;
          continue;
        }
        Packet p(base + off, dlen, kVxlanHeaderLen, dlen - kVxlanHeaderLen);
        sw->FromTunnel(Tunnel::kVxlan, h.vni, from, p, *this);
      }
      DrainHtb();
    }
  }

  void ReadGre() {
    int n = ReceiveBatch(gre.get());
    for (int i = 0; i < n; ++i) {
      ++stats.gre_rx;
      size_t len = rx_msgs[i].msg_len;
      uint8_t* base = rx_mem.data() + static_cast<size_t>(i) * rx_slot;
      // A raw IPv4 socket gets the IP header too.
      Ipv4Header ip;
      GreHeader g;
      if ((rx_msgs[i].msg_hdr.msg_flags & MSG_TRUNC) != 0 || ParseIpv4({base, len}, &ip, false) != ParseError::kOk ||
          ip.IsFragment() ||
          ParseGre({base + ip.header_len, static_cast<size_t>(ip.total_len - ip.header_len)}, &g) != ParseError::kOk || !g.has_key ||
          g.protocol != kEtherTypeTeb) {
        ++stats.underlay_malformed;
        continue;
      }
      size_t head = ip.header_len + g.header_len;
      Packet p(base, rx_slot, head, ip.total_len - head);
      sw->FromTunnel(Tunnel::kGre, g.key, ip.src, p, *this);
    }
  }

  void ReadProbes() {
    for (int i = 0; i < 64; ++i) {
      uint8_t buf[64];
      sockaddr_in from{};
      socklen_t fl = sizeof from;
      ssize_t r = ::recvfrom(probe.get(), buf, sizeof buf, MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&from), &fl);
      if (r < 0) return;
      auto p = DecodeProbe({buf, static_cast<size_t>(r)});
      if (!p) {
        ++stats.underlay_malformed;
        continue;
      }
      ++stats.probes_rx;
      if (p->kind == PlaneProbe::kReply) {
        // Only from the address the probe went to.
        auto host = sw->Host(p->from);
        Ipv4Addr src{ntohl(from.sin_addr.s_addr)};
        if (host.ok() && src == (p->plane == Plane::kStorage ? host->storage : host->service)) planes->OnReply(*p);
      } else if (auto answer = planes->Answer(*p)) {
        uint8_t out[kProbeLen];
        EncodeProbe(*answer, out);
        (void)::sendto(probe.get(), out, sizeof out, MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&from), fl);
      }
    }
  }

  void Probe() {
    for (const PlaneProbe& p : planes->Due()) {
      auto host = sw->Host(p.to);
      if (!host.ok()) continue;
      Ipv4Addr dst = p.plane == Plane::kStorage ? host->storage : host->service;
      if (dst.value == 0) continue;
      uint8_t out[kProbeLen];
      EncodeProbe(p, out);
      sockaddr_in a = SockAddr(dst, o.probe_port);
      if (::sendto(probe.get(), out, sizeof out, MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&a), sizeof a) == kProbeLen)
        ++stats.probes_tx;
    }
    for (const PlaneChange& c : planes->Changes()) {
      if (sw->SetActivePlane(c.host, c.plane).ok()) {
        ++stats.plane_switches;
        if (log) log->Log(LogLevel::kInfo, fmt::format("host {}: tunnels now on the {} plane", c.host,
                                       c.plane == Plane::kStorage ? "storage" : "service"));
      }
    }
  }

  MonoTime NextDeadline() const {
    MonoTime next = std::min(planes->NextDue(), next_expire);
    if (htb && htb->backlog() != 0) next = std::min(next, htb->NextReady());
    return next;
  }

  void ArmTimer(MonoTime at) {
    itimerspec its{};
    auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(at.time_since_epoch()).count();
    if (ns <= 0) ns = 1;
    its.it_value.tv_sec = ns / 1'000'000'000;
    its.it_value.tv_nsec = ns % 1'000'000'000;
    (void)::timerfd_settime(timer.get(), TFD_TIMER_ABSTIME, &its, nullptr);
  }

  void Wake() {
    uint64_t one = 1;
    (void)!::write(wake.get(), &one, sizeof one);
  }
};

Datapath::Datapath(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Datapath::~Datapath() = default;

Result<std::unique_ptr<Datapath>> Datapath::Open(const DatapathOptions& options) {
  if (options.host_id == 0) return InvalidArgument("host_id must be nonzero");
  if (options.service.value == 0) return InvalidArgument("a service-plane address is required");
  if (options.batch == 0 || options.batch > 1024) return InvalidArgument("batch must be in 1..1024");
  if (options.max_frame < 64 || options.max_frame > kMaxFrame) return InvalidArgument("max_frame out of range");
  auto impl = std::make_unique<Impl>();
  Impl& m = *impl;
  m.o = options;
  m.clock = options.clock != nullptr ? options.clock : &RealClock();
  m.log = options.logger;
  m.htb_clock = std::make_unique<HtbClock>(m.clock);
  auto sw = VSwitch::Open({.clock = m.clock, .host_id = options.host_id, .max_frame = m.FrameCap()});
  if (!sw.ok()) return sw.status();
  m.sw = std::move(*sw);
  m.planes = std::make_unique<PlaneMonitor>(PlaneMonitorOptions{
      .clock = m.clock, .host_id = options.host_id, .interval = options.probe_interval, .dead_after = options.dead_after});

  m.epoll = Fd(::epoll_create1(EPOLL_CLOEXEC));
  m.wake = Fd(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  m.timer = Fd(::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC));
  if (m.epoll.get() < 0 || m.wake.get() < 0 || m.timer.get() < 0) return Status::FromErrno(errno, "epoll/eventfd/timerfd");
  auto vx = UdpSocket(options.vxlan_port);
  if (!vx.ok()) return vx.status().WithContext("vxlan");
  m.vxlan = std::move(*vx);
  // The outer UDP checksum stays on: UDP GSO refuses sockets without it
  // (SO_NO_CHECK), and veth or a NIC offloads it.
  auto pr = UdpSocket(options.probe_port);
  if (!pr.ok()) return pr.status().WithContext("probes");
  m.probe = std::move(*pr);
  if (options.gre) {
    m.gre = Fd(::socket(AF_INET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_GRE));
    if (m.gre.get() < 0) return Status::FromErrno(errno, "socket(raw, GRE) (needs CAP_NET_RAW)");
    int buf = 8 << 20;
    (void)::setsockopt(m.gre.get(), SOL_SOCKET, SO_RCVBUFFORCE, &buf, sizeof buf);
  }
  auto add = [&m](int fd, uint64_t key) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = key;
    return ::epoll_ctl(m.epoll.get(), EPOLL_CTL_ADD, fd, &ev) == 0;
  };
  if (!add(m.wake.get(), EventKey(kTagWake)) || !add(m.timer.get(), EventKey(kTagTimer)) ||
      !add(m.vxlan.get(), EventKey(kTagVxlan)) || !add(m.probe.get(), EventKey(kTagProbe)) ||
      (m.gre.get() >= 0 && !add(m.gre.get(), EventKey(kTagGre))))
    return Status::FromErrno(errno, "epoll_ctl");

  size_t slot = options.max_frame + 64;
  m.vxlan_tx.Init(options.batch, slot);
  m.gre_tx.Init(options.batch, slot);
  m.tap_buf.assign(kDefaultHeadroom + m.FrameCap(), 0);
  // Room for the outer IPv4 + GRE headers of a raw socket; with offloads,
  // for a UDP GRO train of datagrams (up to 64 KiB).
  m.rx_slot = options.offload ? 65536 + 128 : options.max_frame + 128;
  m.rx_mem.assign(options.batch * m.rx_slot, 0);
  m.rx_control.assign(options.batch * kControlSlot, 0);
  if (options.offload) {
    // A super-frame's payload once, plus the headers and tunnel header of
    // each of at most kMaxSegments segments.
    m.gso_buf.assign(kMaxSuperFrame + kMaxSegments * (kGreKeyHeaderLen + 256), 0);
    int one = 1;
    // The kernel merges VXLAN datagrams of one flow; refused on old kernels, then not used.
    (void)::setsockopt(m.vxlan.get(), SOL_UDP, UDP_GRO, &one, sizeof one);
  }
  m.rx_iov.resize(options.batch);
  m.rx_addr.resize(options.batch);
  m.rx_msgs.resize(options.batch);
  m.next_expire = m.clock->MonotonicNow() + std::chrono::seconds(1);
  return std::unique_ptr<Datapath>(new Datapath(std::move(impl)));
}

Status Datapath::Run() {
  Impl& m = *impl_;
  // Wake-ups on time: HTB's buckets at tc's defaults hold 128 us of tokens
  // at 100 Mbit/s, and the default timer slack is 50 us.
  (void)::prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
  epoll_event events[64];
  while (!m.stop.load(std::memory_order_acquire)) {
    {
      std::lock_guard lock(m.mu);
      m.ArmTimer(m.NextDeadline());
    }
    int n = ::epoll_wait(m.epoll.get(), events, 64, 1000);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::FromErrno(errno, "epoll_wait");
    }
    std::lock_guard lock(m.mu);
    for (int i = 0; i < n; ++i) {
      uint64_t key = events[i].data.u64;
      switch (static_cast<Tag>(key >> 32)) {
        case kTagWake:
        case kTagTimer: {
          uint64_t v;
          (void)!::read(static_cast<Tag>(key >> 32) == kTagWake ? m.wake.get() : m.timer.get(), &v, sizeof v);
          break;
        }
        case kTagVxlan: m.ReadVxlan(); break;
        case kTagGre: m.ReadGre(); break;
        case kTagProbe: m.ReadProbes(); break;
        case kTagTap: m.ReadTap(static_cast<uint32_t>(key)); break;
      }
      m.DrainHtb();
    }
    m.DrainHtb();
    MonoTime now = m.clock->MonotonicNow();
    m.Probe();  // what is due; and plane changes found by time alone
    if (now >= m.next_expire) {
      m.sw->Expire();
      m.next_expire = now + std::chrono::seconds(1);
    }
    m.Flush();
  }
  return Status::Ok();
}

void Datapath::Stop() {
  impl_->stop.store(true, std::memory_order_release);
  impl_->Wake();
}

// ---- control ---------------------------------------------------------------------------

Status Datapath::AddVpc(const VpcOptions& vpc) {
  std::lock_guard lock(impl_->mu);
  Status s = impl_->sw->AddVpc(vpc);
  if (s.ok()) impl_->vpcs[vpc.id] = vpc;
  return s;
}

Status Datapath::RemoveVpc(uint32_t id) {
  Impl& m = *impl_;
  std::lock_guard lock(m.mu);
  Status s = m.sw->RemoveVpc(id);
  if (!s.ok()) return s;
  m.vpcs.erase(id);
  bool shaped = false;
  for (auto it = m.taps.begin(); it != m.taps.end();) {
    if (it->second.options.port.vpc == id) {
      shaped = shaped || it->second.leaf != 0;
      it = m.taps.erase(it);
    } else {
      ++it;
    }
  }
  return shaped ? m.RebuildHtb() : Status::Ok();
}

Status Datapath::AddTapPort(const TapPortOptions& port) {
  Impl& m = *impl_;
  if (port.tap.empty() || port.tap.size() >= IFNAMSIZ) return InvalidArgument(fmt::format("tap name \"{}\"", port.tap));
  if (port.mtu + kEthernetHeaderLen + 2 * kVlanTagLen > m.o.max_frame)
    return InvalidArgument(fmt::format("port {}: mtu {} over max_frame", port.port.id, port.mtu));
  Fd fd(::open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC));
  if (fd.get() < 0) return Status(Errc::kNotSupported, fmt::format("open /dev/net/tun: {}", std::strerror(errno)));
  ifreq ifr{};
  ifr.ifr_flags = static_cast<short>(IFF_TAP | IFF_NO_PI | (m.o.offload ? IFF_VNET_HDR : 0));
  std::memcpy(ifr.ifr_name, port.tap.data(), port.tap.size());
  if (::ioctl(fd.get(), TUNSETIFF, &ifr) != 0)
    return Status(Errc::kNotSupported, fmt::format("TUNSETIFF {}: {}", port.tap, std::strerror(errno)));
  if (m.o.offload) {
    // The VM may hand over TCP super-frames and partial checksums, and
    // takes them back (the switch cuts and merges; see offload.h).
    unsigned offloads = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN;
    if (::ioctl(fd.get(), TUNSETOFFLOAD, offloads) != 0)
      return Status::FromErrno(errno, fmt::format("TUNSETOFFLOAD {}", port.tap));
  }
  Fd ctl(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  ifreq hw{};
  std::memcpy(hw.ifr_name, port.tap.data(), port.tap.size());
  hw.ifr_hwaddr.sa_family = ARPHRD_ETHER;
  std::memcpy(hw.ifr_hwaddr.sa_data, port.port.mac.b.data(), 6);
  if (ctl.get() < 0 || ::ioctl(ctl.get(), SIOCSIFHWADDR, &hw) != 0)
    return Status::FromErrno(errno, fmt::format("set MAC of {}", port.tap));
  ifreq mtu{};
  std::memcpy(mtu.ifr_name, port.tap.data(), port.tap.size());
  mtu.ifr_mtu = static_cast<int>(port.mtu);
  if (::ioctl(ctl.get(), SIOCSIFMTU, &mtu) != 0) return Status::FromErrno(errno, fmt::format("set MTU of {}", port.tap));

  std::lock_guard lock(m.mu);
  if (m.taps.contains(port.port.id)) return Status(Errc::kAlreadyExists, fmt::format("port {}", port.port.id));
  for (const auto& [id, t] : m.taps)
    if (t.options.tap == port.tap) return Status(Errc::kAlreadyExists, fmt::format("tap {} is port {}'s", port.tap, id));
  if (Status s = m.sw->AddPort(port.port); !s.ok()) return s;
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = EventKey(kTagTap, port.port.id);
  if (::epoll_ctl(m.epoll.get(), EPOLL_CTL_ADD, fd.get(), &ev) != 0) {
    int err = errno;
    (void)m.sw->RemovePort(port.port.id);
    return Status::FromErrno(err, "epoll_ctl(tap)");
  }
  TapPort& t = m.taps[port.port.id];
  t.options = port;
  t.fd = std::move(fd);
  if (port.qos.rate != 0) {
    if (Status s = m.RebuildHtb(); !s.ok()) {
      m.taps.erase(port.port.id);
      (void)m.sw->RemovePort(port.port.id);
      (void)m.RebuildHtb();
      return s.WithContext(fmt::format("port {} qos", port.port.id));
    }
  }
  return Status::Ok();
}

Status Datapath::RemovePort(uint32_t id) {
  Impl& m = *impl_;
  std::lock_guard lock(m.mu);
  auto it = m.taps.find(id);
  if (it == m.taps.end()) return Status(Errc::kNotFound, fmt::format("port {}", id));
  bool shaped = it->second.leaf != 0;
  (void)m.sw->RemovePort(id);
  m.taps.erase(it);  // closing the descriptor deletes the device (and its epoll entry)
  return shaped ? m.RebuildHtb() : Status::Ok();
}

Status Datapath::SetHost(const HostOptions& host) {
  std::lock_guard lock(impl_->mu);
  Status s = impl_->sw->SetHost(host);
  if (s.ok()) impl_->planes->AddPeer(host.id, host.storage.value != 0);
  return s;
}

Status Datapath::RemoveHost(uint32_t id) {
  std::lock_guard lock(impl_->mu);
  Status s = impl_->sw->RemoveHost(id);
  if (s.ok()) impl_->planes->RemovePeer(id);
  return s;
}

Status Datapath::SetVm(const VmLocation& vm) {
  std::lock_guard lock(impl_->mu);
  return impl_->sw->SetVm(vm);
}

Status Datapath::RemoveVm(uint32_t vpc, const MacAddr& mac) {
  std::lock_guard lock(impl_->mu);
  return impl_->sw->RemoveVm(vpc, mac);
}

// ---- introspection ---------------------------------------------------------------------------

DatapathStats Datapath::stats() const {
  std::lock_guard lock(impl_->mu);
  DatapathStats s = impl_->stats;
  s.sw = impl_->sw->stats();
  return s;
}

std::string Datapath::StateJson() const {
  Impl& m = *impl_;
  std::lock_guard lock(m.mu);
  json::object root;
  root["host_id"] = m.o.host_id;
  root["service"] = m.o.service.ToString();
  if (m.o.storage.value != 0) root["storage"] = m.o.storage.ToString();
  json::array vpcs;
  for (const auto& [id, v] : m.vpcs) vpcs.push_back(json::parse(VpcToJson(v)));
  root["vpcs"] = std::move(vpcs);
  json::array ports;
  for (const VSwitch::PortInfo& p : m.sw->Ports()) {
    auto t = m.taps.find(p.options.id);
    if (t == m.taps.end()) continue;
    json::value v = json::parse(PortToJson(t->second.options));
    v.as_object()["rx"] = p.rx;
    v.as_object()["tx"] = p.tx;
    v.as_object()["spoofed"] = p.spoofed;
    if (t->second.leaf != 0 && m.htb) {
      if (auto hs = m.htb->Stats(t->second.leaf); hs.ok()) {
        v.as_object()["qos_sent_bytes"] = hs->sent_bytes;
        v.as_object()["qos_dropped"] = hs->dropped;
        v.as_object()["qos_borrowed"] = hs->borrowed;
      }
    }
    ports.push_back(std::move(v));
  }
  root["ports"] = std::move(ports);
  json::array hosts;
  for (const HostOptions& h : m.sw->Hosts()) {
    json::value v = json::parse(HostToJson(h));
    Plane active = m.sw->ActivePlane(h.id).value_or(Plane::kService);
    v.as_object()["active_plane"] = active == Plane::kStorage ? "storage" : "service";
    for (Plane p : {Plane::kService, Plane::kStorage}) {
      PlanePathState ps = m.planes->Path(h.id, p);
      json::object path;
      path["up"] = ps.up;
      path["probes"] = ps.sent;
      path["replies"] = ps.replies;
      path["rtt_ms"] = ps.last_rtt_ms;
      v.as_object()[p == Plane::kStorage ? "storage_path" : "service_path"] = std::move(path);
    }
    hosts.push_back(std::move(v));
  }
  root["hosts"] = std::move(hosts);
  json::array vms;
  for (const VmLocation& vm : m.sw->Vms()) vms.push_back(json::parse(VmToJson(vm)));
  root["vms"] = std::move(vms);
  const SwitchStats& s = m.sw->stats();
  json::object st;
  st["port_rx"] = s.port_rx;
  st["port_tx"] = s.port_tx;
  st["tunnel_rx"] = s.tunnel_rx;
  st["tunnel_tx"] = s.tunnel_tx;
  st["flooded"] = s.flooded;
  st["arp_replies"] = s.arp_replies;
  st["redirected"] = s.redirected;
  st["learned"] = s.learned;
  json::object drops;
  for (size_t i = 0; i < static_cast<size_t>(Drop::kCount); ++i) drops[DropName(static_cast<Drop>(i))] = s.drops[i];
  st["drops"] = std::move(drops);
  st["vxlan_rx"] = m.stats.vxlan_rx;
  st["vxlan_tx"] = m.stats.vxlan_tx;
  st["gre_rx"] = m.stats.gre_rx;
  st["gre_tx"] = m.stats.gre_tx;
  st["underlay_malformed"] = m.stats.underlay_malformed;
  st["send_errors"] = m.stats.send_errors;
  st["tap_errors"] = m.stats.tap_errors;
  st["qos_drops"] = m.stats.qos_drops;
  st["plane_switches"] = m.stats.plane_switches;
  st["tap_malformed"] = m.stats.tap_malformed;
  st["tso_rx"] = m.stats.tso_rx;
  st["gso_sent"] = m.stats.gso_sent;
  st["gro_merged"] = m.stats.gro_merged;
  root["stats"] = std::move(st);
  return json::serialize(root);
}

Status Datapath::RegisterMetrics(MetricsRegistry& registry) {
  Datapath* self = this;
  auto counter = [&](const char* name, const char* help, uint64_t DatapathStats::*field) {
    return registry.AddCallback(name, help, MetricType::kCounter,
                                [self, field] { return static_cast<double>(self->stats().*field); });
  };
  struct { const char* name; const char* help; uint64_t DatapathStats::*field; } kCounters[] = {
      {"qcloud_vswitch_tap_rx_frames_total", "Frames read from VM ports (TAP).", &DatapathStats::tap_rx},
      {"qcloud_vswitch_tap_tx_frames_total", "Frames written to VM ports (TAP).", &DatapathStats::tap_tx},
      {"qcloud_vswitch_tap_errors_total", "Frames a TAP device refused (down or full).", &DatapathStats::tap_errors},
      {"qcloud_vswitch_vxlan_rx_total", "VXLAN datagrams received.", &DatapathStats::vxlan_rx},
      {"qcloud_vswitch_vxlan_tx_total", "VXLAN datagrams sent.", &DatapathStats::vxlan_tx},
      {"qcloud_vswitch_gre_rx_total", "GRE packets received.", &DatapathStats::gre_rx},
      {"qcloud_vswitch_gre_tx_total", "GRE packets sent.", &DatapathStats::gre_tx},
      {"qcloud_vswitch_underlay_malformed_total", "Underlay datagrams that were not a tunnel frame of ours.",
       &DatapathStats::underlay_malformed},
      {"qcloud_vswitch_send_errors_total", "Tunnel packets the kernel refused to send.", &DatapathStats::send_errors},
      {"qcloud_vswitch_probes_sent_total", "Plane probes sent.", &DatapathStats::probes_tx},
      {"qcloud_vswitch_probes_received_total", "Plane probes and replies received.", &DatapathStats::probes_rx},
      {"qcloud_vswitch_qos_drops_total", "Frames dropped by a full HTB queue.", &DatapathStats::qos_drops},
      {"qcloud_vswitch_plane_switches_total", "Times a peer's tunnels changed plane.", &DatapathStats::plane_switches},
      {"qcloud_vswitch_tap_malformed_total", "Frames from a TAP with a virtio_net_hdr not understood.",
       &DatapathStats::tap_malformed},
      {"qcloud_vswitch_tso_frames_total", "TCP super-frames (TSO) from VMs.", &DatapathStats::tso_rx},
      {"qcloud_vswitch_gso_frames_total", "Super-frames cut into segments for the wire.", &DatapathStats::gso_sent},
      {"qcloud_vswitch_gro_frames_total", "Super-frames merged from wire segments for VMs.", &DatapathStats::gro_merged},
  };
  for (const auto& c : kCounters)
    if (Status s = counter(c.name, c.help, c.field); !s.ok()) return s;
  if (Status s = registry.AddCollector(
          "qcloud_vswitch_drops_total", "Frames the switch dropped, by reason.", MetricType::kCounter, {"reason"},
          [self] {
            DatapathStats st = self->stats();
            std::vector<MetricsRegistry::Sample> out;
            for (size_t i = 0; i < static_cast<size_t>(Drop::kCount); ++i)
              out.push_back({{DropName(static_cast<Drop>(i))}, static_cast<double>(st.sw.drops[i])});
            return out;
          });
      !s.ok())
    return s;
  if (Status s = registry.AddCollector(
          "qcloud_vswitch_frames_total", "Frames through the switch, by direction.", MetricType::kCounter,
          {"direction"},
          [self] {
            DatapathStats st = self->stats();
            return std::vector<MetricsRegistry::Sample>{{{"port_rx"}, static_cast<double>(st.sw.port_rx)},
                                                        {{"port_tx"}, static_cast<double>(st.sw.port_tx)},
                                                        {{"tunnel_rx"}, static_cast<double>(st.sw.tunnel_rx)},
                                                        {{"tunnel_tx"}, static_cast<double>(st.sw.tunnel_tx)},
                                                        {{"flooded"}, static_cast<double>(st.sw.flooded)},
                                                        {{"arp_replies"}, static_cast<double>(st.sw.arp_replies)},
                                                        {{"redirected"}, static_cast<double>(st.sw.redirected)}};
          });
      !s.ok())
    return s;
  return registry.AddCollector("qcloud_vswitch_active_plane", "Per peer host: 0 service plane, 1 storage plane.",
                               MetricType::kGauge, {"host"}, [self] {
                                 std::lock_guard lock(self->impl_->mu);
                                 std::vector<MetricsRegistry::Sample> out;
                                 for (const HostOptions& h : self->impl_->sw->Hosts())
                                   out.push_back({{std::to_string(h.id)},
                                                  self->impl_->sw->ActivePlane(h.id).value_or(Plane::kService) ==
                                                          Plane::kStorage
                                                      ? 1.0
                                                      : 0.0});
                                 return out;
                               });
}

}  // namespace qcloud::net
