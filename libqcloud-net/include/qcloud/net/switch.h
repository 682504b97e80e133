#pragma once

// qcloud::net VSwitch — the virtual switch on every host of the overlay
// (the seeds' "虚拟交换机"): each VM's port belongs to one VPC; frames move
// between the VPC's ports on this host and, through VXLAN or GRE tunnels
// keyed by the VPC id, to the hosts where its other VMs live. The
// controller supplies where every VM is (SetVm); nothing is learned unless
// a VPC asks for it.
//
//   auto sw = VSwitch::Open({.host_id = 1}).value();
//   sw->AddVpc({.id = 100});
//   sw->SetHost({.id = 2, .service = *Ipv4Addr::Parse("10.1.0.2"), .storage = *Ipv4Addr::Parse("10.2.0.2")});
//   sw->AddPort({.id = 1, .vpc = 100, .mac = m1, .ipv4 = {ip1}});       // a VM here
//   sw->SetVm({.vpc = 100, .mac = m2, .ipv4 = {ip2}, .host = 2});       // a VM on host 2
//   sw->FromPort(1, frame, sink);            // VM 1 sent a frame: sink.ToTunnel(host 2's address, vni 100, ...)
//   sw->FromTunnel(Tunnel::kVxlan, 100, outer_src, frame, sink);        // decapsulated on arrival
//
// Rules of the data path:
// - Isolation: a frame is only ever delivered inside the VPC it came from
//   (its port's VPC, or the tunnel's VNI/key); two VPCs may use the same
//   MACs and addresses. Broadcast, multicast and unknown unicast are
//   flooded to the VPC's other local ports and to the hosts with VMs of
//   that VPC (plus its flood_peers), never elsewhere.
// - Anti-spoofing (ports with anti_spoof, the default): a frame whose
//   source MAC is not its port's, an IPv4 packet whose source is not one
//   of the port's addresses (0.0.0.0 allowed for DHCP), an IPv6 packet
//   whose source is not one of the port's addresses or link-local or ::,
//   and an ARP packet whose sender MAC or IP is not the port's, are
//   dropped and counted; so is the IPv6 form of ARP spoofing: a neighbour
//   advertisement for an address not the port's (link-local aside), a
//   link-layer address option that is not the port's MAC, and router
//   advertisements and redirects, which are no VM's to send.
// - ARP responder: a request from a port for an address of a known VM of
//   the same VPC is answered by the switch itself and goes no further.
// - From a tunnel: frames go to local ports only (split horizon), except
//   a unicast frame for a VM that moved away from this host less than
//   redirect_for ago, which is sent on to the VM's new host (so frames in
//   flight during a move still arrive). A frame whose source MAC is a
//   local port's, or whose outer source is neither a known host nor a
//   flood peer of the VPC (in a VPC without learning), is dropped.
// - Learning (VPCs with learning): source MACs of tunnel frames are
//   learned with their outer source address, for learned_ttl, never over
//   a controller-supplied entry; at most max_learned per VPC.
// - Malformed frames (packet.h's ParseError) and frames longer than
//   max_frame are dropped and counted by reason.
//
// Moves: the controller's latest word wins. SetVm() of a MAC that is a
// local port's here sends its traffic to the new host at once (the port
// stays until RemovePort); AddPort() of a MAC known elsewhere makes it local.
//
// Planes: each host has a service-plane and a storage-plane address;
// SetActivePlane() picks the one its tunnels use (planes.h decides which).
//
// The sink is called synchronously; a frame handed to it is valid only
// during the call. It may Push() outer headers into the frame's headroom
// (the switch's own frames have kDefaultHeadroom) but must leave the frame
// as it found it before it returns, since a flooded frame goes to it again.
//
// Thread safety: one thread at a time (the data path takes a lock around
// batches, the control API around updates).

#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "qcloud/core/clock.h"
#include "qcloud/core/export.h"
#include "qcloud/core/result.h"
#include "qcloud/core/status.h"
#include "qcloud/net/packet.h"

namespace qcloud::net {

enum class Tunnel : uint8_t { kVxlan, kGre };
enum class Plane : uint8_t { kService = 0, kStorage = 1 };

struct VpcOptions {
  uint32_t id = 0;                       // 1 .. 2^24-1: the VXLAN VNI and the GRE key
  Tunnel tunnel = Tunnel::kVxlan;        // how this VPC's frames leave the host
  bool learning = false;                 // learn MACs behind tunnels (for peers the controller does not know)
  bool arp_responder = true;
  std::vector<Ipv4Addr> flood_peers;     // underlay addresses that also get this VPC's broadcasts
};

struct PortOptions {
  uint32_t id = 0;                       // nonzero, unique on this switch
  uint32_t vpc = 0;                      // an existing VPC
  MacAddr mac;                           // unicast
  std::vector<Ipv4Addr> ipv4;            // the addresses the VM may send from
  std::vector<Ipv6Addr> ipv6;
  bool anti_spoof = true;
};

struct HostOptions {
  uint32_t id = 0;                       // nonzero; not this switch's own host_id
  Ipv4Addr service;                      // service-plane underlay address
  Ipv4Addr storage;                      // storage-plane address; 0.0.0.0 = none
};

struct VmLocation {
  uint32_t vpc = 0;
  MacAddr mac;
  std::vector<Ipv4Addr> ipv4;            // answered by the ARP responder
  std::vector<Ipv6Addr> ipv6;
  uint32_t host = 0;                     // a host given by SetHost()
};

// Where the sink sends a tunnelled frame.
struct TunnelTarget {
  Tunnel type = Tunnel::kVxlan;
  uint32_t vni = 0;                      // VXLAN VNI or GRE key
  Ipv4Addr dst;                          // the outer destination (the host's active plane)
  uint32_t host = 0;                     // 0 for a flood peer or a learned address
  Plane plane = Plane::kService;
};

class SwitchSink {
 public:
  virtual ~SwitchSink() = default;
  virtual void ToPort(uint32_t port, Packet& frame) = 0;
  virtual void ToTunnel(const TunnelTarget& target, Packet& frame) = 0;
};

enum class Drop : uint8_t {
  kMalformed = 0,   // a ParseError
  kTooLong,         // over max_frame
  kUnknownPort,
  kUnknownVpc,      // a tunnel frame with a VNI/key of no VPC here
  kSpoofMac,
  kSpoofIp,
  kSpoofArp,
  kSpoofNd,         // IPv6 neighbour discovery claiming another's address or MAC; router advertisements, redirects
  kTunnelSpoof,     // a tunnel frame claiming a local VM's MAC, or from an unknown underlay address
  kNoRoute,         // unicast from a tunnel for no local VM
  kHairpin,         // to the port it came from
  kCount,
};
QCLOUD_EXPORT const char* DropName(Drop d) noexcept;

struct SwitchStats {
  uint64_t port_rx = 0;        // frames from ports
  uint64_t port_tx = 0;        // frames to ports (each copy)
  uint64_t tunnel_rx = 0;      // frames from tunnels
  uint64_t tunnel_tx = 0;      // frames to tunnels (each copy)
  uint64_t flooded = 0;        // frames flooded (broadcast, multicast, unknown)
  uint64_t arp_replies = 0;    // answered by the responder
  uint64_t redirected = 0;     // tunnel frames sent on to a moved VM's new host
  uint64_t learned = 0;        // MACs learned
  uint64_t drops[static_cast<size_t>(Drop::kCount)] = {};
};

struct SwitchOptions {
  Clock* clock = nullptr;                                   // not owned; null = RealClock()
  uint32_t host_id = 0;                                     // this host, nonzero
  size_t max_frame = kMaxFrame;                             // longer frames are dropped
  size_t max_ports = 4096;
  size_t max_vpcs = 65536;
  size_t max_vms = size_t{1} << 22;                         // controller entries, all VPCs
  size_t max_learned = 4096;                                // per VPC
  std::chrono::milliseconds learned_ttl{300000};
  std::chrono::milliseconds redirect_for{30000};            // after a VM moves away
};

class QCLOUD_EXPORT VSwitch {
 public:
  // kInvalidArgument for host_id 0 or zero limits.
  static Result<std::unique_ptr<VSwitch>> Open(const SwitchOptions& options);
  ~VSwitch();
  VSwitch(const VSwitch&) = delete;
  VSwitch& operator=(const VSwitch&) = delete;

  // ---- control (the controller's word) -----------------------------------
  // Errors: kInvalidArgument (id out of range, multicast MAC, a limit),
  // kAlreadyExists, kNotFound, as the names say.
  Status AddVpc(const VpcOptions& vpc);
  Status RemoveVpc(uint32_t id);        // its ports and VMs go with it
  Status AddPort(const PortOptions& port);
  Status RemovePort(uint32_t id);
  Status SetHost(const HostOptions& host);       // adds or changes
  Status RemoveHost(uint32_t id);                // kInvalidArgument while VMs live there
  Status SetActivePlane(uint32_t host, Plane plane);
  Status SetVm(const VmLocation& vm);            // adds or moves
  Status RemoveVm(uint32_t vpc, const MacAddr& mac);

  // ---- data path -----------------------------------------------------------
  void FromPort(uint32_t port, Packet& frame, SwitchSink& sink);
  void FromTunnel(Tunnel type, uint32_t vni, Ipv4Addr outer_src, Packet& frame, SwitchSink& sink);
  // Forgets learned entries older than learned_ttl and moves older than
  // redirect_for; call now and then (the daemon: every second).
  void Expire();

  // ---- introspection ---------------------------------------------------------
  const SwitchStats& stats() const noexcept;
  uint32_t host_id() const noexcept;
  struct PortInfo {
    PortOptions options;
    uint64_t rx = 0, tx = 0, spoofed = 0;
  };
  std::vector<PortInfo> Ports() const;
  std::vector<VmLocation> Vms() const;           // the controller's entries
  Result<HostOptions> Host(uint32_t id) const;
  Result<Plane> ActivePlane(uint32_t host) const;
  std::vector<HostOptions> Hosts() const;

 private:
  struct Impl;
  explicit VSwitch(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace qcloud::net
