#include "qcloud/net/switch.h"

#include <algorithm>
#include <unordered_map>

#include "flat_map.h"

#include <fmt/format.h>

namespace qcloud::net {
namespace {

using internal::FlatMap;

constexpr uint32_t kMaxVpcId = 0xffffff;

// Where a MAC of a VPC is reached from here.
struct Fwd {
  enum Kind : uint8_t { kLocal, kRemote, kLearned };
  Kind kind = kLocal;
  bool moved_away = false;  // kRemote that was a local port here until `since`
  uint32_t id = 0;          // kLocal: port; kRemote: host
  Ipv4Addr addr;            // kLearned: the outer source it came from
  MonoTime since{};         // kLearned: last seen; moved_away: when it moved
};

struct Vpc {
  VpcOptions options;
  FlatMap<Fwd> fwd;                                    // MAC -> where
  FlatMap<VmLocation> vms;                             // the controller's entries
  FlatMap<MacAddr> arp;                                // IPv4 -> MAC, for the responder
  std::vector<uint32_t> ports;                         // local ports
  std::unordered_map<uint32_t, uint32_t> host_refs;    // host -> VMs of this VPC there
  size_t learned = 0;
};

struct Port {
  PortOptions options;
  Vpc* vpc = nullptr;
  uint64_t rx = 0, tx = 0, spoofed = 0;
};

struct HostEntry {
  HostOptions options;
  Plane active = Plane::kService;
};

bool Has(const std::vector<Ipv4Addr>& v, Ipv4Addr a) {
  for (const Ipv4Addr& x : v)
    if (x == a) return true;
  return false;
}

}  // namespace

const char* DropName(Drop d) noexcept {
  switch (d) {
    case Drop::kMalformed: return "malformed";
    case Drop::kTooLong: return "too_long";
    case Drop::kUnknownPort: return "unknown_port";
    case Drop::kUnknownVpc: return "unknown_vpc";
    case Drop::kSpoofMac: return "spoof_mac";
    case Drop::kSpoofIp: return "spoof_ip";
    case Drop::kSpoofArp: return "spoof_arp";
    case Drop::kSpoofNd: return "spoof_nd";
    case Drop::kTunnelSpoof: return "tunnel_spoof";
    case Drop::kNoRoute: return "no_route";
    case Drop::kHairpin: return "hairpin";
    case Drop::kCount: break;
  }
  return "unknown";
}

struct VSwitch::Impl {
  SwitchOptions options;
  Clock* clock = nullptr;
  FlatMap<std::unique_ptr<Vpc>> vpcs;
  FlatMap<Port> ports;
  FlatMap<HostEntry> hosts;
  FlatMap<uint32_t> host_by_addr;  // either plane's address -> host
  size_t vm_count = 0;
  SwitchStats stats;
  // The ARP responder's replies are built here.
  alignas(64) uint8_t scratch[kDefaultHeadroom + 64] = {};

  void Count(Drop d) { ++stats.drops[static_cast<size_t>(d)]; }

  // Classifies a frame; false (counted) for one too long or malformed.
  bool Parse(const Packet& frame, FrameInfo* f) {
    if (frame.size() > options.max_frame) {
      Count(Drop::kTooLong);
      return false;
    }
    if (ClassifyFrame(frame.bytes(), f) != ParseError::kOk) {
      Count(Drop::kMalformed);
      return false;
    }
    return true;
  }

  Vpc* FindVpc(uint32_t id) {
    std::unique_ptr<Vpc>* v = vpcs.find(id);
    return v == nullptr ? nullptr : v->get();
  }

  // Drops the responder's entries for `addrs` that still answer with `mac`.
  static void ForgetArp(Vpc& vpc, const std::vector<Ipv4Addr>& addrs, const MacAddr& mac) {
    for (const Ipv4Addr& a : addrs) {
      const MacAddr* arp = vpc.arp.find(a.value);
      if (arp != nullptr && *arp == mac) vpc.arp.erase(a.value);
    }
  }

  void Unref(Vpc& vpc, uint32_t host) {
    auto it = vpc.host_refs.find(host);
    if (it != vpc.host_refs.end() && --it->second == 0) vpc.host_refs.erase(it);
  }

  // Sends to a host's active plane.
  void SendToHost(const Vpc& vpc, uint32_t host, Packet& frame, SwitchSink& sink) {
    HostEntry* h = hosts.find(host);
    if (h == nullptr) {
      Count(Drop::kNoRoute);
      return;
    }
    TunnelTarget t;
    t.type = vpc.options.tunnel;
    t.vni = vpc.options.id;
    t.host = host;
    t.plane = h->active;
    t.dst = t.plane == Plane::kStorage && h->options.storage.value != 0 ? h->options.storage : h->options.service;
    ++stats.tunnel_tx;
    sink.ToTunnel(t, frame);
  }

  void SendToAddr(const Vpc& vpc, Ipv4Addr addr, Packet& frame, SwitchSink& sink) {
    TunnelTarget t;
    t.type = vpc.options.tunnel;
    t.vni = vpc.options.id;
    t.dst = addr;
    ++stats.tunnel_tx;
    sink.ToTunnel(t, frame);
  }

  void SendToPort(Port& port, Packet& frame, SwitchSink& sink) {
    ++port.tx;
    ++stats.port_tx;
    sink.ToPort(port.options.id, frame);
  }

  void SendToPortId(uint32_t id, Packet& frame, SwitchSink& sink) {
    if (Port* out = ports.find(id)) SendToPort(*out, frame, sink);
    else Count(Drop::kNoRoute);
  }

  void FloodLocal(Vpc& vpc, uint32_t except_port, Packet& frame, SwitchSink& sink) {
    for (uint32_t id : vpc.ports) {
      if (id == except_port) continue;
      if (Port* p = ports.find(id)) SendToPort(*p, frame, sink);
    }
  }

  void Flood(Vpc& vpc, uint32_t except_port, Packet& frame, SwitchSink& sink) {
    ++stats.flooded;
    FloodLocal(vpc, except_port, frame, sink);
    for (const auto& [host, refs] : vpc.host_refs) SendToHost(vpc, host, frame, sink);
    for (const Ipv4Addr& a : vpc.options.flood_peers) SendToAddr(vpc, a, frame, sink);
    // Learned addresses that are not flood peers get broadcasts too, once each.
    if (vpc.options.learning && vpc.learned != 0) {
      std::vector<Ipv4Addr> seen;
      vpc.fwd.ForEach([&](uint64_t, const Fwd& f) {
        if (f.kind != Fwd::kLearned || Has(vpc.options.flood_peers, f.addr) || Has(seen, f.addr)) return;
        seen.push_back(f.addr);
      });
      for (const Ipv4Addr& a : seen) SendToAddr(vpc, a, frame, sink);
    }
  }

  // A VM's offload request may only concern its frame's own L4 checksum
  // (and, for a super-frame, its TCP): otherwise completing the checksum
  // would write two bytes the VM chose anywhere in a frame already checked
  // for spoofing.
  static bool OffloadConsistent(const Offload& o, const FrameInfo& f) {
    if (o.gso != Offload::kNone) {
      if (f.l4_proto != kIpProtoTcp || f.l4_offset == 0) return false;
      if ((o.gso == Offload::kTcp4) != (f.l3 == L3::kIpv4) || (o.gso == Offload::kTcp6) != (f.l3 == L3::kIpv6))
        return false;
    }
    if (!o.csum_partial) return true;
    if (f.l4_offset == 0 || o.csum_start != f.l4_offset) return false;
    switch (f.l4_proto) {
      case kIpProtoTcp: return o.csum_offset == 16;
      case kIpProtoUdp: return o.csum_offset == 6;
      case kIpProtoIcmp:
      case kIpProtoIcmpv6: return o.csum_offset == 2;
      default: return false;
    }
  }

  // IPv6 neighbour discovery from a VM (RFC 4861): router advertisements
  // and redirects are not a VM's to send; a neighbour advertisement may
  // claim only the port's addresses (or a link-local one, as any link-local
  // source is allowed); a source or target link-layer address option must
  // be the port's MAC. Options are walked with their lengths checked.
  static bool NdAllowed(const PortOptions& o, const FrameInfo& f, std::span<const uint8_t> frame) {
    if (f.l4_proto != kIpProtoIcmpv6 || f.l4_offset == 0) return true;
    const size_t end = std::min(frame.size(), size_t{f.l3_offset} + kIpv6HeaderLen +
                                                  ((size_t{frame[f.l3_offset + 4]} << 8) | frame[f.l3_offset + 5]));
    if (end <= f.l4_offset) return false;
    std::span<const uint8_t> icmp = frame.subspan(f.l4_offset, end - f.l4_offset);
    size_t body = 0;
    switch (icmp[0]) {
      case 133: body = 8; break;    // router solicitation
      case 134:                     // router advertisement
      case 137: return false;       // redirect
      case 135: body = 24; break;   // neighbour solicitation
      case 136: body = 24; break;   // neighbour advertisement
      default: return true;
    }
    if (icmp.size() < body) return false;
    if (icmp[0] == 136) {
      Ipv6Addr target = Ipv6Addr::From(icmp.data() + 8);
      bool mine = target.IsLinkLocal();
      for (const Ipv6Addr& a : o.ipv6) mine = mine || a == target;
      if (!mine) return false;
    }
    for (size_t off = body; off + 2 <= icmp.size();) {
      size_t len = size_t{icmp[off + 1]} * 8;
      if (len == 0 || off + len > icmp.size()) return false;
      if ((icmp[off] == 1 || icmp[off] == 2) && (len < 8 || MacAddr::From(icmp.data() + off + 2) != o.mac)) return false;
      off += len;
    }
    return true;
  }

  bool SourceAllowed(const Port& port, const FrameInfo& f, std::span<const uint8_t> frame, Drop* why) const {
    const PortOptions& o = port.options;
    if (f.eth.src != o.mac) {
      *why = Drop::kSpoofMac;
      return false;
    }
    switch (f.l3) {
      case L3::kArp:
        if (f.arp.sha != o.mac || (f.arp.spa.value != 0 && !Has(o.ipv4, f.arp.spa))) {
          *why = Drop::kSpoofArp;
          return false;
        }
        return true;
      case L3::kIpv4:
        if (Has(o.ipv4, f.src4)) return true;
        // DHCP discovery comes from 0.0.0.0.
        if (f.src4.value == 0 && f.l4_proto == kIpProtoUdp && f.dst_port == 67) return true;
        *why = Drop::kSpoofIp;
        return false;
      case L3::kIpv6: {
        bool own = f.src6.IsLinkLocal() || f.src6.IsUnspecified();
        for (const Ipv6Addr& a : o.ipv6) own = own || a == f.src6;
        if (!own) {
          *why = Drop::kSpoofIp;
          return false;
        }
        if (!NdAllowed(o, f, frame)) {
          *why = Drop::kSpoofNd;
          return false;
        }
        return true;
      }
      case L3::kNone:
        return true;
    }
    return true;
  }

  // Answers an ARP request for a known VM of the VPC. True when answered.
  bool ArpRespond(Vpc& vpc, Port& port, const FrameInfo& f, SwitchSink& sink) {
    if (!vpc.options.arp_responder || f.arp.op != kArpRequest || f.arp.tpa == f.arp.spa) return false;
    const MacAddr* target = vpc.arp.find(f.arp.tpa.value);
    if (target == nullptr || *target == port.options.mac) return false;
    const MacAddr target_mac = *target;
    Packet reply(scratch, sizeof scratch, kDefaultHeadroom, 60);
    uint8_t* p = reply.data();
    std::memset(p, 0, 60);
    WriteEthernet(p, f.eth.src, target_mac, kEtherTypeArp);
    ArpPacket a;
    a.op = kArpReply;
    a.sha = target_mac;
    a.spa = f.arp.tpa;
    a.tha = f.arp.sha;
    a.tpa = f.arp.spa;
    WriteArp(p + kEthernetHeaderLen, a);
    ++stats.arp_replies;
    SendToPort(port, reply, sink);
    return true;
  }

  void Learn(Vpc& vpc, const MacAddr& mac, Ipv4Addr outer) {
    if (mac.IsMulticast()) return;
    if (Fwd* known = vpc.fwd.find(mac.Key())) {
      if (known->kind == Fwd::kLearned) {
        known->addr = outer;
        known->since = clock->MonotonicNow();
      }
      return;  // never over the controller's word
    }
    if (vpc.learned >= options.max_learned) return;
    Fwd f;
    f.kind = Fwd::kLearned;
    f.addr = outer;
    f.since = clock->MonotonicNow();
    vpc.fwd[mac.Key()] = f;
    ++vpc.learned;
    ++stats.learned;
  }
};

VSwitch::VSwitch(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
VSwitch::~VSwitch() = default;

Result<std::unique_ptr<VSwitch>> VSwitch::Open(const SwitchOptions& options) {
  if (options.host_id == 0) return Status(Errc::kInvalidArgument, "host_id must be nonzero");
  if (options.max_frame < 64 || options.max_ports == 0 || options.max_vpcs == 0 || options.max_vms == 0)
    return Status(Errc::kInvalidArgument, "max_frame (>= 64), max_ports, max_vpcs and max_vms must be set");
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  impl->options.max_frame = std::min(options.max_frame, kMaxFrame);
  impl->clock = options.clock != nullptr ? options.clock : &RealClock();
  return std::unique_ptr<VSwitch>(new VSwitch(std::move(impl)));
}

// ---- control ---------------------------------------------------------------------

Status VSwitch::AddVpc(const VpcOptions& vpc) {
  if (vpc.id == 0 || vpc.id > kMaxVpcId)
    return Status(Errc::kInvalidArgument, fmt::format("vpc id {} outside 1..{}", vpc.id, kMaxVpcId));
  if (impl_->vpcs.contains(vpc.id)) return Status(Errc::kAlreadyExists, fmt::format("vpc {}", vpc.id));
  if (impl_->vpcs.size() >= impl_->options.max_vpcs) return Status(Errc::kResourceExhausted, "max_vpcs reached");
  auto v = std::make_unique<Vpc>();
  v->options = vpc;
  impl_->vpcs[vpc.id] = std::move(v);
  return Status::Ok();
}

Status VSwitch::RemoveVpc(uint32_t id) {
  Vpc* vpc = impl_->FindVpc(id);
  if (vpc == nullptr) return Status(Errc::kNotFound, fmt::format("vpc {}", id));
  for (uint32_t p : vpc->ports) impl_->ports.erase(p);
  impl_->vm_count -= vpc->vms.size();
  impl_->vpcs.erase(id);
  return Status::Ok();
}

Status VSwitch::AddPort(const PortOptions& port) {
  if (port.id == 0) return Status(Errc::kInvalidArgument, "port id must be nonzero");
  if (port.mac.IsMulticast() || port.mac.IsZero())
    return Status(Errc::kInvalidArgument, fmt::format("port {}: MAC {} is not unicast", port.id, port.mac.ToString()));
  if (impl_->ports.contains(port.id)) return Status(Errc::kAlreadyExists, fmt::format("port {}", port.id));
  if (impl_->ports.size() >= impl_->options.max_ports) return Status(Errc::kResourceExhausted, "max_ports reached");
  Vpc* vpc = impl_->FindVpc(port.vpc);
  if (vpc == nullptr) return Status(Errc::kNotFound, fmt::format("port {}: vpc {}", port.id, port.vpc));
  const Fwd* existing = vpc->fwd.find(port.mac.Key());
  if (existing != nullptr && existing->kind == Fwd::kLocal)
    return Status(Errc::kAlreadyExists,
                  fmt::format("port {}: MAC {} is port {}'s", port.id, port.mac.ToString(), existing->id));
  if (existing != nullptr && existing->kind == Fwd::kLearned) --vpc->learned;
  Fwd f;
  f.kind = Fwd::kLocal;
  f.id = port.id;
  vpc->fwd[port.mac.Key()] = f;
  // The VM is here now: a controller entry placing it elsewhere is gone.
  if (const VmLocation* vm = vpc->vms.find(port.mac.Key())) {
    impl_->Unref(*vpc, vm->host);
    impl_->ForgetArp(*vpc, vm->ipv4, port.mac);
    vpc->vms.erase(port.mac.Key());
    --impl_->vm_count;
  }
  for (const Ipv4Addr& a : port.ipv4) vpc->arp[a.value] = port.mac;
  vpc->ports.push_back(port.id);
  Port p;
  p.options = port;
  p.vpc = vpc;
  impl_->ports[port.id] = std::move(p);
  return Status::Ok();
}

Status VSwitch::RemovePort(uint32_t id) {
  Port* port = impl_->ports.find(id);
  if (port == nullptr) return Status(Errc::kNotFound, fmt::format("port {}", id));
  Vpc& vpc = *port->vpc;
  const PortOptions& o = port->options;
  const Fwd* f = vpc.fwd.find(o.mac.Key());
  // Only while the MAC is still this port's: a VM that moved away (SetVm)
  // or came back on another port keeps its entries.
  if (f != nullptr && f->kind == Fwd::kLocal && f->id == id) {
    vpc.fwd.erase(o.mac.Key());
    impl_->ForgetArp(vpc, o.ipv4, o.mac);
  }
  std::erase(vpc.ports, id);
  impl_->ports.erase(id);
  return Status::Ok();
}

Status VSwitch::SetHost(const HostOptions& host) {
  if (host.id == 0 || host.id == impl_->options.host_id)
    return Status(Errc::kInvalidArgument, fmt::format("host id {} is 0 or this host's", host.id));
  if (host.service.value == 0) return Status(Errc::kInvalidArgument, fmt::format("host {}: no service address", host.id));
  for (Ipv4Addr a : {host.service, host.storage}) {
    if (a.value == 0) continue;
    const uint32_t* other = impl_->host_by_addr.find(a.value);
    if (other != nullptr && *other != host.id)
      return Status(Errc::kAlreadyExists, fmt::format("host {}: address {} is host {}'s", host.id, a.ToString(), *other));
  }
  if (HostEntry* known = impl_->hosts.find(host.id)) {
    impl_->host_by_addr.erase(known->options.service.value);
    impl_->host_by_addr.erase(known->options.storage.value);
    known->options = host;
    if (host.storage.value == 0) known->active = Plane::kService;
  } else {
    impl_->hosts[host.id] = HostEntry{host, Plane::kService};
  }
  impl_->host_by_addr[host.service.value] = host.id;
  if (host.storage.value != 0) impl_->host_by_addr[host.storage.value] = host.id;
  return Status::Ok();
}

Status VSwitch::RemoveHost(uint32_t id) {
  HostEntry* known = impl_->hosts.find(id);
  if (known == nullptr) return Status(Errc::kNotFound, fmt::format("host {}", id));
  uint64_t busy = 0;
  impl_->vpcs.ForEach([&](uint64_t vid, const std::unique_ptr<Vpc>& vpc) {
    if (vpc->host_refs.contains(id)) busy = vid;
  });
  if (busy != 0) return Status(Errc::kInvalidArgument, fmt::format("host {} still has VMs of vpc {}", id, busy));
  impl_->host_by_addr.erase(known->options.service.value);
  impl_->host_by_addr.erase(known->options.storage.value);
  impl_->hosts.erase(id);
  return Status::Ok();
}

Status VSwitch::SetActivePlane(uint32_t host, Plane plane) {
  HostEntry* known = impl_->hosts.find(host);
  if (known == nullptr) return Status(Errc::kNotFound, fmt::format("host {}", host));
  if (plane == Plane::kStorage && known->options.storage.value == 0)
    return Status(Errc::kInvalidArgument, fmt::format("host {} has no storage-plane address", host));
  known->active = plane;
  return Status::Ok();
}

Status VSwitch::SetVm(const VmLocation& vm) {
  Vpc* vpc = impl_->FindVpc(vm.vpc);
  if (vpc == nullptr) return Status(Errc::kNotFound, fmt::format("vpc {}", vm.vpc));
  if (vm.mac.IsMulticast() || vm.mac.IsZero())
    return Status(Errc::kInvalidArgument, fmt::format("MAC {} is not unicast", vm.mac.ToString()));
  if (!impl_->hosts.contains(vm.host))
    return Status(Errc::kNotFound, fmt::format("vm {}: host {} (SetHost first)", vm.mac.ToString(), vm.host));
  uint64_t key = vm.mac.Key();
  const VmLocation* old = vpc->vms.find(key);
  if (old == nullptr) {
    if (impl_->vm_count >= impl_->options.max_vms) return Status(Errc::kResourceExhausted, "max_vms reached");
    ++impl_->vm_count;
  } else {
    impl_->Unref(*vpc, old->host);
    impl_->ForgetArp(*vpc, old->ipv4, vm.mac);
  }
  bool was_local = false, keep_moved = false;
  if (const Fwd* fit = vpc->fwd.find(key)) {
    if (fit->kind == Fwd::kLearned) --vpc->learned;
    was_local = fit->kind == Fwd::kLocal && impl_->ports.contains(fit->id);
    keep_moved = fit->kind == Fwd::kRemote && fit->moved_away;
  }
  Fwd& f = vpc->fwd[key];
  f.kind = Fwd::kRemote;
  f.id = vm.host;
  f.addr = {};
  if (was_local) {
    f.moved_away = true;
    f.since = impl_->clock->MonotonicNow();
  } else if (!keep_moved) {
    f.moved_away = false;
  }
  vpc->vms[key] = vm;
  ++vpc->host_refs[vm.host];
  for (const Ipv4Addr& a : vm.ipv4) vpc->arp[a.value] = vm.mac;
  return Status::Ok();
}

Status VSwitch::RemoveVm(uint32_t vpc_id, const MacAddr& mac) {
  Vpc* vpc = impl_->FindVpc(vpc_id);
  if (vpc == nullptr) return Status(Errc::kNotFound, fmt::format("vpc {}", vpc_id));
  const VmLocation* vm = vpc->vms.find(mac.Key());
  if (vm == nullptr) return Status(Errc::kNotFound, fmt::format("vm {} in vpc {}", mac.ToString(), vpc_id));
  impl_->Unref(*vpc, vm->host);
  impl_->ForgetArp(*vpc, vm->ipv4, mac);
  const Fwd* f = vpc->fwd.find(mac.Key());
  if (f != nullptr && f->kind == Fwd::kRemote) vpc->fwd.erase(mac.Key());
  vpc->vms.erase(mac.Key());
  --impl_->vm_count;
  // A move called off: the VM's port is still here, so it is local again.
  for (uint32_t id : vpc->ports) {
    const Port* port = impl_->ports.find(id);
    if (port == nullptr || port->options.mac != mac) continue;
    Fwd local;
    local.kind = Fwd::kLocal;
    local.id = id;
    vpc->fwd[mac.Key()] = local;
    for (const Ipv4Addr& a : port->options.ipv4) vpc->arp[a.value] = mac;
    break;
  }
  return Status::Ok();
}

// ---- data path ---------------------------------------------------------------------

void VSwitch::FromPort(uint32_t port_id, Packet& frame, SwitchSink& sink) {
  Impl& m = *impl_;
  ++m.stats.port_rx;
  Port* portp = m.ports.find(port_id);
  if (portp == nullptr) {
    m.Count(Drop::kUnknownPort);
    return;
  }
  Port& port = *portp;
  ++port.rx;
  FrameInfo f;
  if (!m.Parse(frame, &f)) return;
  if (!m.OffloadConsistent(frame.offload(), f)) {
    m.Count(Drop::kMalformed);
    return;
  }
  Drop why = Drop::kCount;
  if (port.options.anti_spoof && !m.SourceAllowed(port, f, frame.bytes(), &why)) {
    ++port.spoofed;
    m.Count(why);
    return;
  }
  Vpc& vpc = *port.vpc;
  if (f.l3 == L3::kArp && m.ArpRespond(vpc, port, f, sink)) return;
  if (f.eth.dst.IsMulticast()) {
    m.Flood(vpc, port_id, frame, sink);
    return;
  }
  const Fwd* fwd = vpc.fwd.find(f.eth.dst.Key());
  if (fwd == nullptr) {
    m.Flood(vpc, port_id, frame, sink);
    return;
  }
  const Fwd to = *fwd;
  switch (to.kind) {
    case Fwd::kLocal: {
      if (to.id == port_id) {
        m.Count(Drop::kHairpin);
        return;
      }
      m.SendToPortId(to.id, frame, sink);
      return;
    }
    case Fwd::kRemote:
      m.SendToHost(vpc, to.id, frame, sink);
      return;
    case Fwd::kLearned:
      m.SendToAddr(vpc, to.addr, frame, sink);
      return;
  }
}

void VSwitch::FromTunnel(Tunnel, uint32_t vni, Ipv4Addr outer_src, Packet& frame, SwitchSink& sink) {
  Impl& m = *impl_;
  ++m.stats.tunnel_rx;
  Vpc* vpcp = m.FindVpc(vni);
  if (vpcp == nullptr) {
    m.Count(Drop::kUnknownVpc);
    return;
  }
  Vpc& vpc = *vpcp;
  FrameInfo f;
  if (!m.Parse(frame, &f)) return;
  bool known_underlay = m.host_by_addr.contains(outer_src.value) || Has(vpc.options.flood_peers, outer_src);
  if (!known_underlay && !vpc.options.learning) {
    m.Count(Drop::kTunnelSpoof);
    return;
  }
  if (const Fwd* src = vpc.fwd.find(f.eth.src.Key()); src != nullptr && src->kind == Fwd::kLocal) {
    m.Count(Drop::kTunnelSpoof);
    return;
  }
  if (vpc.options.learning) m.Learn(vpc, f.eth.src, outer_src);
  if (f.eth.dst.IsMulticast()) {
    ++m.stats.flooded;
    m.FloodLocal(vpc, 0, frame, sink);
    return;
  }
  const Fwd* fwd = vpc.fwd.find(f.eth.dst.Key());
  if (fwd == nullptr) {
    if (vpc.options.learning) {
      ++m.stats.flooded;
      m.FloodLocal(vpc, 0, frame, sink);
    } else {
      m.Count(Drop::kNoRoute);
    }
    return;
  }
  const Fwd to = *fwd;
  if (to.kind == Fwd::kLocal) {
    m.SendToPortId(to.id, frame, sink);
    return;
  }
  if (to.kind == Fwd::kRemote && to.moved_away &&
      m.clock->MonotonicNow() - to.since < m.options.redirect_for) {
    // Still in flight to the VM's old home: send it on, once (the new host
    // has it locally, so it never comes back).
    const HostEntry* host = m.hosts.find(to.id);
    if (host != nullptr && host->options.service != outer_src && host->options.storage != outer_src) {
      ++m.stats.redirected;
      m.SendToHost(vpc, to.id, frame, sink);
      return;
    }
  }
  m.Count(Drop::kNoRoute);
}

void VSwitch::Expire() {
  Impl& m = *impl_;
  MonoTime now = m.clock->MonotonicNow();
  m.vpcs.ForEach([&](uint64_t, std::unique_ptr<Vpc>& vpc) {
    std::vector<uint64_t> stale;
    vpc->fwd.ForEach([&](uint64_t mac, Fwd& f) {
      if (f.kind == Fwd::kLearned && now - f.since >= m.options.learned_ttl) stale.push_back(mac);
      if (f.kind == Fwd::kRemote && f.moved_away && now - f.since >= m.options.redirect_for) f.moved_away = false;
    });
    for (uint64_t mac : stale) vpc->fwd.erase(mac);
    vpc->learned -= stale.size();
  });
}

// ---- introspection -------------------------------------------------------------------

const SwitchStats& VSwitch::stats() const noexcept { return impl_->stats; }
uint32_t VSwitch::host_id() const noexcept { return impl_->options.host_id; }

std::vector<VSwitch::PortInfo> VSwitch::Ports() const {
  std::vector<PortInfo> out;
  impl_->ports.ForEach([&](uint64_t, const Port& p) { out.push_back({p.options, p.rx, p.tx, p.spoofed}); });
  std::sort(out.begin(), out.end(), [](const PortInfo& a, const PortInfo& b) { return a.options.id < b.options.id; });
  return out;
}

std::vector<VmLocation> VSwitch::Vms() const {
  std::vector<VmLocation> out;
  impl_->vpcs.ForEach([&](uint64_t, const std::unique_ptr<Vpc>& vpc) {
    vpc->vms.ForEach([&](uint64_t, const VmLocation& vm) { out.push_back(vm); });
  });
  std::sort(out.begin(), out.end(), [](const VmLocation& a, const VmLocation& b) {
    return a.vpc != b.vpc ? a.vpc < b.vpc : a.mac.Key() < b.mac.Key();
  });
  return out;
}

Result<HostOptions> VSwitch::Host(uint32_t id) const {
  const HostEntry* h = impl_->hosts.find(id);
  if (h == nullptr) return Status(Errc::kNotFound, fmt::format("host {}", id));
  return h->options;
}

Result<Plane> VSwitch::ActivePlane(uint32_t host) const {
  const HostEntry* h = impl_->hosts.find(host);
  if (h == nullptr) return Status(Errc::kNotFound, fmt::format("host {}", host));
  return h->active;
}

std::vector<HostOptions> VSwitch::Hosts() const {
  std::vector<HostOptions> out;
  impl_->hosts.ForEach([&](uint64_t, const HostEntry& h) { out.push_back(h.options); });
  std::sort(out.begin(), out.end(), [](const HostOptions& a, const HostOptions& b) { return a.id < b.id; });
  return out;
}

}  // namespace qcloud::net
