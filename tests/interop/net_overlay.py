#!/usr/bin/env python3
"""qcloud-vswitchd between real network namespaces (root):

(a) two hosts, each a namespace running qcloud-vswitchd, VMs as namespaces
    on its TAP ports: ping and an iperf3 TCP transfer between VMs of one VPC
    across hosts work; nothing crosses between VPCs, though VPC 100 (VXLAN)
    and VPC 200 (GRE) use the same subnet, 192.168.0.0/24;
(b) a VM behind qcloud-vswitchd talks to the Linux kernel's own `vxlan`
    interface (VNI 100) in another namespace;
(c) tshark decodes the captured underlay as VXLAN with VNI 100 and GRE with
    key 200, inner ICMP included, nothing malformed;
(d) a VM that spoofs its source IP, its MAC or ARP gets nothing through,
    and the switch counts each drop.
"""

import json
import os
import select
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import net_lib  # noqa: E402
from interop_util import check, stop  # noqa: E402
from net_lib import mac, switch_config  # noqa: E402

VM = {  # name: (host, vpc, tap, ip, mac)
    'vm1': (1, 100, 'vm1', '192.168.0.1', mac(0x101)),
    'vm2': (2, 100, 'vm2', '192.168.0.2', mac(0x102)),
    'vm3': (1, 200, 'vm3', '192.168.0.2', mac(0x203)),
    'vm4': (2, 200, 'vm4', '192.168.0.1', mac(0x204)),
    'vm5': (2, 200, 'vm5', '192.168.0.5', mac(0x205)),
}
KERNEL_VM = ('192.168.0.9', mac(0x109))  # the kernel's vxlan interface, on "host 9"


def config(host):
    ports, vms = [], []
    for name, (h, vpc, tap, ip, m) in VM.items():
        if h == host:
            ports.append({'id': len(ports) + 1, 'vpc': vpc, 'tap': tap, 'mac': m, 'ipv4': [ip], 'mtu': 1450})
        else:
            vms.append({'vpc': vpc, 'mac': m, 'ipv4': [ip], 'host': h})
    vms.append({'vpc': 100, 'mac': KERNEL_VM[1], 'ipv4': [KERNEL_VM[0]], 'host': 9})
    other = 2 if host == 1 else 1
    return switch_config(host, vpcs=[{'id': 100, 'tunnel': 'vxlan'}, {'id': 200, 'tunnel': 'gre'}],
                         hosts=[{'id': other, 'service': '10.1.0.%d' % other, 'storage': '10.2.0.%d' % other},
                                {'id': 9, 'service': '10.1.0.9'}],
                         ports=ports, vms=vms)


def neigh_mac(net, vm, addr):
    r = net.ip(net.vm_ns(vm), 'neigh', 'show', addr, check_rc=False)
    parts = r.stdout.split()
    return parts[parts.index('lladdr') + 1] if 'lladdr' in parts else None


def echo_requests_in(net, vm):
    """ICMP echo requests the VM's kernel received (IcmpMsg InType8), broadcast ones included."""
    lines = [ln.split() for ln in net.sh(net.vm_ns(vm), 'cat', '/proc/net/snmp').stdout.splitlines()
             if ln.startswith('IcmpMsg:')]
    if len(lines) < 2:
        return 0  # no ICMP message counted yet
    return int(dict(zip(lines[0][1:], lines[1][1:])).get('InType8', 0))


def drops(net, host):
    return net.state(host)['stats']['drops']


def send_raw(net, vm, frame_hex):
    tap = VM[vm][2]
    code = ("import socket; s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW); s.bind(('%s', 0)); "
            "s.send(bytes.fromhex('%s'))" % (tap, frame_hex))
    net.sh(net.vm_ns(vm), '/usr/bin/python3', '-c', code)


def arp_frame(src_mac, sender_mac, sender_ip, target_ip, op=2):
    m = lambda s: s.replace(':', '')  # noqa: E731
    ip = lambda s: ''.join('%02x' % int(x) for x in s.split('.'))  # noqa: E731
    return ('ff' * 6 + m(src_mac) + '0806' + '0001' + '0800' + '06' + '04' + '%04x' % op +
            m(sender_mac) + ip(sender_ip) + '00' * 6 + ip(target_ip)).ljust(120, '0')


def test(args):
    net = net_lib.Overlay(args.vswitchd)
    try:
        for h in (1, 2):
            net.add_host(h)
        kns = net.add_host(9, planes=('svc',))
        # The kernel's VXLAN device, unicast to host 1 only.
        net.ip(kns, 'link', 'add', 'vx100', 'address', KERNEL_VM[1], 'type', 'vxlan', 'id', '100',
               'dstport', '4789', 'local', '10.1.0.9', 'remote', '10.1.0.1', 'dev', 'svc0')
        # Broadcasts to both hosts (head-end replication), as a VTEP in a
        # two-host VPC would be set up.
        net_lib.run('ip', 'netns', 'exec', kns, 'bridge', 'fdb', 'append', '00:00:00:00:00:00', 'dev', 'vx100',
                    'dst', '10.1.0.2')
        net.ip(kns, 'addr', 'add', KERNEL_VM[0] + '/24', 'dev', 'vx100')
        net.ip(kns, 'link', 'set', 'vx100', 'up')
        for h in (1, 2):
            net.start_switch(h, config(h))
        for name, (h, vpc, tap, ip, m) in VM.items():
            ns = net.netns(name)
            net.sh(ns, 'sysctl', '-q', '-w', 'net.ipv6.conf.all.disable_ipv6=1')
            net.plug(name, h, tap, ip + '/24')

        # (a) one VPC across hosts, both tunnel kinds; nothing across VPCs.
        check('a: vm1 -> vm2 (VPC 100, VXLAN, across hosts)', net.ping('vm1', '192.168.0.2') == 3)
        check('a: vm1 resolved 192.168.0.2 to vm2, not to vm3 of VPC 200',
              neigh_mac(net, 'vm1', '192.168.0.2') == VM['vm2'][4], neigh_mac(net, 'vm1', '192.168.0.2'))
        check('a: vm3 -> vm4 (VPC 200, GRE, same subnet)', net.ping('vm3', '192.168.0.1') == 3)
        check('a: vm3 resolved 192.168.0.1 to vm4, not to vm1 of VPC 100',
              neigh_mac(net, 'vm3', '192.168.0.1') == VM['vm4'][4], neigh_mac(net, 'vm3', '192.168.0.1'))
        check('a: vm1 (VPC 100) cannot reach vm5 (VPC 200 only)', net.ping('vm1', '192.168.0.5', count=2) == 0)
        check('a: vm5 (VPC 200) cannot reach the kernel VM (VPC 100)', net.ping('vm5', '192.168.0.9', count=2) == 0)
        # Echo requests counted by each VM's kernel, not packets: VPC 100's
        # own ARP retries (vm1 still looking for 192.168.0.5) are no leak.
        before = {v: echo_requests_in(net, v) for v in ('vm1', 'vm2', 'vm4')}
        net.ping('vm3', '192.168.0.255', count=10, interval=0.05, extra=('-b',))
        grew = {v: echo_requests_in(net, v) - before[v] for v in before}
        check('a: VPC 200 broadcasts reach VPC 200 (vm4 counts them)', grew['vm4'] > 0, grew)
        check('a: VPC 200 broadcasts reach no VM of VPC 100', grew['vm1'] == 0 and grew['vm2'] == 0, grew)
        server = net.popen(net.vm_ns('vm2'), 'iperf3', '-s', '-1', '-B', '192.168.0.2',
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        net.wait_listening(net.vm_ns('vm2'), 5201)  # iperf3's port
        r = net.sh(net.vm_ns('vm1'), 'iperf3', '-c', '192.168.0.2', '-t', '2', '-J', check_rc=False, timeout=30)
        server.wait(10)
        try:
            result = json.loads(r.stdout)
            sent = result['end']['sum_sent']['bytes']
            rate = result['end']['sum_received']['bits_per_second'] / 1e6
        except (ValueError, KeyError):
            sent, rate = 0, 0
        check('a: iperf3 TCP vm1 -> vm2 across hosts (%.0f Mbit/s)' % rate, sent > 0 and rate > 0, r.stdout[-300:])

        # (b) the kernel's own VXLAN device in the same VPC.
        check('b: vm1 -> the kernel vxlan interface (VNI 100)', net.ping('vm1', KERNEL_VM[0]) == 3)
        check('b: the kernel vxlan interface -> vm1',
              net.sh(kns, 'ping', '-n', '-q', '-c', '3', '-i', '0.2', '-W', '1', '192.168.0.1',
                     check_rc=False).returncode == 0)
        check('b: vm2 (host 2) reaches the kernel VM through the table', net.ping('vm2', KERNEL_VM[0]) == 3)

        # (c) tshark reads the underlay.
        cap = os.path.join(net.tmp, 'underlay.pcap')
        # No duration: on a busy machine tshark can take longer to start than
        # any fixed capture window leaves for the pings. It is stopped with
        # SIGINT (which writes the file out) once the pings are done; the
        # autostop is only a bound.
        shark = net.popen(net.fab, 'tshark', '-q', '-i', 'h1s', '-a', 'duration:90', '-w', cap,
                          '-f', 'udp port 4789 or ip proto 47', stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        # Ping once the capture runs: tshark says so on stderr ("Capturing
        # on 'h1s'").
        started, said = time.monotonic(), b''
        while time.monotonic() - started < 60 and b'Capturing on' not in said:
            ready, _, _ = select.select([shark.stderr], [], [], 0.2)
            if ready:
                more = os.read(shark.stderr.fileno(), 4096)
                if not more:
                    break
                said += more
        capturing = b'Capturing on' in said
        check('c: tshark captures on the underlay', capturing, said[-400:])
        time.sleep(0.3)
        net.ping('vm1', '192.168.0.2', count=4, interval=0.1)
        net.ping('vm3', '192.168.0.1', count=4, interval=0.1)
        time.sleep(0.5)
        stop(shark, signal.SIGINT, grace=30)  # SIGINT: tshark writes the file out
        os.chmod(net.tmp, 0o755)
        fields = net_lib.run('tshark', '-r', cap, '-T', 'fields', '-E', 'separator=;', '-e', 'frame.protocols',
                             '-e', 'vxlan.vni', '-e', 'gre.key', '-e', '_ws.malformed', check_rc=False).stdout
        rows = [line.split(';') for line in fields.splitlines() if line]
        vx = [r for r in rows if r[1] == '100' and 'icmp' in r[0]]
        gre = [r for r in rows if r[2] and int(r[2], 0) == 200 and 'icmp' in r[0]]
        check('c: tshark decodes VXLAN VNI 100 with ICMP inside (%d packets)' % len(vx), len(vx) >= 8, fields[:400])
        check('c: tshark decodes GRE key 200 carrying Ethernet with ICMP inside (%d packets)' % len(gre),
              len(gre) >= 8 and all('eth:ethertype:ip:icmp' in r[0] for r in gre), fields[:400])
        check('c: nothing malformed', rows and not any(r[3] for r in rows), fields[:400])

        # (d) spoofing from vm1 is dropped and counted.
        ns1 = net.vm_ns('vm1')
        d0 = drops(net, 1)
        net.ip(ns1, 'addr', 'add', '192.168.0.77/24', 'dev', 'vm1')
        check('d: from a source IP not its own: nothing through',
              net.ping('vm1', '192.168.0.2', count=3, extra=('-I', '192.168.0.77')) == 0)
        net.ip(ns1, 'addr', 'del', '192.168.0.77/24', 'dev', 'vm1')
        d1 = drops(net, 1)
        check('d: spoof_ip counted', d1['spoof_ip'] >= d0['spoof_ip'] + 3, (d0, d1))
        net.ip(ns1, 'link', 'set', 'vm1', 'address', mac(0x1ee))
        net.ip(ns1, 'neigh', 'flush', 'all')
        check('d: from a MAC not its own: nothing through', net.ping('vm1', '192.168.0.2', count=3) == 0)
        net.ip(ns1, 'link', 'set', 'vm1', 'address', VM['vm1'][4])
        d2 = drops(net, 1)
        check('d: spoof_mac counted', d2['spoof_mac'] >= d1['spoof_mac'] + 1, (d1, d2))
        # Gratuitous ARP claiming the kernel VM's address, and one with a
        # forged sender MAC.
        send_raw(net, 'vm1', arp_frame(VM['vm1'][4], VM['vm1'][4], KERNEL_VM[0], KERNEL_VM[0]))
        send_raw(net, 'vm1', arp_frame(VM['vm1'][4], VM['vm2'][4], '192.168.0.1', '192.168.0.1'))
        deadline = time.time() + 10
        d3 = drops(net, 1)
        while d3['spoof_arp'] < d2['spoof_arp'] + 2 and time.time() < deadline:  # counted yet? (10 s at most)
            time.sleep(0.05)
            d3 = drops(net, 1)
        check('d: ARP spoofing counted', d3['spoof_arp'] >= d2['spoof_arp'] + 2, (d2, d3))
        check('d: vm2 still reaches the kernel VM at its own MAC',
              net.ping('vm2', KERNEL_VM[0]) == 3 and neigh_mac(net, 'vm2', KERNEL_VM[0]) == KERNEL_VM[1],
              neigh_mac(net, 'vm2', KERNEL_VM[0]))
        check('d: vm1 with its own addresses works again', net.ping('vm1', '192.168.0.2') == 3)
        metrics = net.metrics(1)
        check('d: /metrics counts drops by reason', 'qcloud_vswitch_drops_total{reason="spoof_arp"}' in metrics,
              metrics[:300])
    finally:
        net.close()


def main():
    net_lib.main(test)


if __name__ == '__main__':
    main()
