#pragma once

// qcloud::net Datapath — a VSwitch on real devices: one TAP device per VM
// port, VXLAN over a UDP socket, GRE over a raw IP socket, plane probes
// over UDP, and per-VM HTB shaping, all on one data-path thread (Run()).
//
//   auto dp = Datapath::Open({.host_id = 1, .service = svc, .storage = sto}).value();
//   dp->AddVpc({.id = 100});
//   dp->SetHost({.id = 2, .service = svc2, .storage = sto2});
//   dp->AddTapPort({.port = {.id = 1, .vpc = 100, .mac = m, .ipv4 = {ip}}, .tap = "vm1"});
//   std::thread t([&] { dp->Run(); });         // until Stop()
//   dp->SetVm({...});                           // the controller's updates, from any thread
//
// Devices: AddTapPort() creates the TAP device (IFF_TAP | IFF_NO_PI) with
// the VM's MAC and the port's MTU, down; whoever plays the VM moves it
// into its namespace and brings it up (the switch keeps the file
// descriptor, which works across namespaces). RemovePort() closes it,
// which deletes the device.
//
// Offloads (offload.h): each TAP takes a virtio_net_hdr, so a VM hands over
// TCP super-frames of up to 64 KiB and partial checksums; a super-frame
// for another host is cut into wire segments and sent as UDP GSO trains,
// the VXLAN socket receives UDP GRO trains, and consecutive segments of a
// flow for a local VM are merged back into one super-frame.
//
// Tunnels: VXLAN datagrams go from and to `vxlan_port` (4789) on every
// local address; GRE packets (key = VPC id, protocol 0x6558) through a raw
// socket for IP protocol 47, which needs no GRE device in the kernel. The
// outer addresses are the peers' plane addresses; the kernel routes them
// out of the matching plane. Batches: recvmmsg() of up to `batch`
// datagrams and one sendmmsg() per socket per batch.
//
// Planes: every `probe_interval` each peer host is probed on both planes
// (planes.h); a change of plane takes effect for the next frame.
//
// QoS: a port with `qos.rate` is a leaf of one HTB tree (htb.h) under a
// root class of `link_rate`: frames its VM sends wait in the leaf's queue
// until HTB lets them go, then enter the switch.
//
// Errors: Open() fails with the socket's errno (kUnavailable for a busy
// port); AddTapPort() with kNotSupported where /dev/net/tun is missing or
// refused. A failing device or socket write is counted, never fatal.
//
// Thread safety: Run() on one thread; every other call from any thread
// (a mutex is held around each batch of the data path and each control call).

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "qcloud/core/clock.h"
#include "qcloud/core/export.h"
#include "qcloud/core/log.h"
#include "qcloud/core/metrics.h"
#include "qcloud/core/result.h"
#include "qcloud/core/status.h"
#include "qcloud/net/config.h"
#include "qcloud/net/planes.h"
#include "qcloud/net/switch.h"

namespace qcloud::net {

struct DatapathOptions {
  uint32_t host_id = 0;                              // nonzero
  Ipv4Addr service;                                  // this host's service-plane address (required)
  Ipv4Addr storage;                                  // its storage-plane address; 0 = one plane
  uint16_t vxlan_port = kVxlanPort;
  uint16_t probe_port = 4788;
  bool gre = true;                                   // open the raw GRE socket
  std::chrono::milliseconds probe_interval{100};
  std::chrono::milliseconds dead_after{500};
  uint64_t link_rate = 1'250'000'000;                // bytes per second: the HTB root
  size_t batch = 32;                                 // datagrams per recvmmsg/sendmmsg
  size_t max_frame = 9216 + kEthernetHeaderLen;      // largest frame from a TAP (MTU 9000 and tags)
  size_t qos_queue = 1000;                           // frames waiting per shaped port
  bool offload = true;                               // TAPs with virtio_net_hdr: TSO/checksum in, GRO out
  Clock* clock = nullptr;                            // not owned; null = RealClock()
  Logger* logger = nullptr;                          // not owned; null = discard
};

struct DatapathStats {
  SwitchStats sw;
  uint64_t tap_rx = 0, tap_tx = 0, tap_errors = 0;
  uint64_t vxlan_rx = 0, vxlan_tx = 0, gre_rx = 0, gre_tx = 0;
  uint64_t underlay_malformed = 0;                   // datagrams that are not VXLAN/GRE of ours
  uint64_t send_errors = 0;
  uint64_t probes_tx = 0, probes_rx = 0;
  uint64_t qos_drops = 0;                            // frames refused by a full HTB queue
  uint64_t plane_switches = 0;
  uint64_t tap_malformed = 0;                        // frames with a virtio_net_hdr not understood
  uint64_t tso_rx = 0;                               // TCP super-frames from VMs
  uint64_t gso_sent = 0;                             // super-frames cut for the wire
  uint64_t gro_merged = 0;                           // super-frames merged for VMs
};

class QCLOUD_EXPORT Datapath {
 public:
  static Result<std::unique_ptr<Datapath>> Open(const DatapathOptions& options);
  ~Datapath();
  Datapath(const Datapath&) = delete;
  Datapath& operator=(const Datapath&) = delete;

  // The loop: returns Ok after Stop(), or the error that ended it. Sets the
  // calling thread's timer slack to 1 ns (HTB's deadlines are tens of us).
  Status Run();
  void Stop();

  // The controller's word (switch.h's rules), from any thread.
  Status AddVpc(const VpcOptions& vpc);
  Status RemoveVpc(uint32_t id);
  Status AddTapPort(const TapPortOptions& port);
  Status RemovePort(uint32_t id);
  Status SetHost(const HostOptions& host);
  Status RemoveHost(uint32_t id);
  Status SetVm(const VmLocation& vm);
  Status RemoveVm(uint32_t vpc, const MacAddr& mac);

  // What is configured and counted, as JSON (the control API's GET /v1/state).
  std::string StateJson() const;
  DatapathStats stats() const;
  // qcloud_vswitch_* families: frames, drops by reason, tunnels, planes, QoS.
  Status RegisterMetrics(MetricsRegistry& registry);

 private:
  struct Impl;
  explicit Datapath(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace qcloud::net
