#!/usr/bin/env python3
"""iperf3 TCP between two VMs on two hosts, through qcloud-vswitchd and
through the Linux kernel's own VXLAN devices, in the same run (root).

Both topologies are network namespaces built here (tests/interop/net_lib.py):
two hosts on a bridged underlay, one VM per host, MTU 1450 in the VMs.
  qcloud: VM -- TAP -- qcloud-vswitchd (VXLAN over UDP 4789) -- underlay -- ...
  kernel: VM -- veth -- bridge + vxlan device (VNI 100)      -- underlay -- ...
Rounds alternate between the two; the medians and their ratio are printed.

  sudo bench/net/compare.py --vswitchd build/release/examples/qcloud-vswitchd/qcloud-vswitchd \
       [--rounds 3] [--seconds 5] [--streams 1]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, '..', '..', 'tests', 'interop'))
import net_lib  # noqa: E402
from net_lib import mac, switch_config  # noqa: E402

VM1 = ('192.168.0.1', mac(0x101))
VM2 = ('192.168.0.2', mac(0x102))


def qcloud_topology(vswitchd):
    net = net_lib.Overlay(vswitchd, prefix='qb%dq' % (os.getpid() % 10000))
    for h, (ip, m), (oip, om) in ((1, VM1, VM2), (2, VM2, VM1)):
        net.add_host(h)
        other = 3 - h
        net.start_switch(h, switch_config(
            h, vpcs=[{'id': 100}], hosts=[{'id': other, 'service': '10.1.0.%d' % other}],
            ports=[{'id': 1, 'vpc': 100, 'tap': 'vm%d' % h, 'mac': m, 'ipv4': [ip]}],
            vms=[{'vpc': 100, 'mac': om, 'ipv4': [oip], 'host': other}]))
    for h, (ip, m) in ((1, VM1), (2, VM2)):
        net.netns('vm%d' % h)
        net.plug('vm%d' % h, h, 'vm%d' % h, ip + '/24')
    return net


def kernel_topology():
    net = net_lib.Overlay(None, prefix='qb%dk' % (os.getpid() % 10000))
    for h, (ip, m) in ((1, VM1), (2, VM2)):
        hns = net.add_host(h)
        other = 3 - h
        net.ip(hns, 'link', 'add', 'br0', 'type', 'bridge')
        net.ip(hns, 'link', 'add', 'vx100', 'type', 'vxlan', 'id', '100', 'dstport', '4789', 'local',
               '10.1.0.%d' % h, 'remote', '10.1.0.%d' % other, 'dev', 'svc0')
        net.ip(hns, 'link', 'set', 'vx100', 'master', 'br0')
        vns = net.netns('vm%d' % h)
        net.ip(hns, 'link', 'add', 'vm%d' % h, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', vns)
        net.ip(hns, 'link', 'set', 'vm%d' % h, 'master', 'br0')
        for dev in ('vx100', 'br0', 'vm%d' % h):
            net.ip(hns, 'link', 'set', dev, 'up')
        net.ip(vns, 'link', 'set', 'eth0', 'address', m, 'mtu', '1450')
        net.ip(vns, 'addr', 'add', ip + '/24', 'dev', 'eth0')
        net.ip(vns, 'link', 'set', 'eth0', 'up')
    return net


def iperf(net, seconds, streams):
    """Mbit/s received, vm1 -> vm2."""
    server = net.popen(net.vm_ns('vm2'), 'iperf3', '-s', '-1', '-B', VM2[0], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
    time.sleep(0.3)
    r = net.sh(net.vm_ns('vm1'), 'iperf3', '-c', VM2[0], '-t', str(seconds), '-P', str(streams), '-J',
               check_rc=False, timeout=seconds + 30)
    server.wait(10)
    try:
        return json.loads(r.stdout)['end']['sum_received']['bits_per_second'] / 1e6
    except (ValueError, KeyError):
        raise RuntimeError('iperf3 failed: ' + r.stdout[-400:] + r.stderr[-400:])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--vswitchd', required=True)
    ap.add_argument('--rounds', type=int, default=3)
    ap.add_argument('--seconds', type=int, default=5)
    ap.add_argument('--streams', type=int, default=1)
    args = ap.parse_args()
    reason = net_lib.kernel_refuses()
    if reason:
        sys.exit('compare.py: ' + reason)
    nets = []
    try:
        q = qcloud_topology(args.vswitchd)
        nets.append(q)
        k = kernel_topology()
        nets.append(k)
        for n in nets:  # warm up: ARP, and the first connection
            if n.ping('vm1', VM2[0], count=2) != 2:
                sys.exit('compare.py: no connectivity in %s' % n.p)
        results = {'qcloud': [], 'kernel': []}
        for i in range(args.rounds):
            for name, n in (('kernel', k), ('qcloud', q)) if i % 2 == 0 else (('qcloud', q), ('kernel', k)):
                mbps = iperf(n, args.seconds, args.streams)
                results[name].append(mbps)
                print('round %d %-6s %8.0f Mbit/s' % (i + 1, name, mbps), flush=True)
        mq, mk = statistics.median(results['qcloud']), statistics.median(results['kernel'])
        print('iperf3 TCP VM->VM across two hosts, %d stream(s), %d s, median of %d:' %
              (args.streams, args.seconds, args.rounds))
        print('  qcloud-vswitchd %8.0f Mbit/s' % mq)
        print('  kernel VXLAN    %8.0f Mbit/s' % mk)
        print('  ratio           %8.2fx' % (mq / mk))
    finally:
        for n in nets:
            n.close()


if __name__ == '__main__':
    main()
