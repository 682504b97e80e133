#!/usr/bin/env python3
"""qcloud-vswitchd's dual planes and VM moves between real namespaces (root):

(e) cutting host 1's service-plane link keeps a VM-to-VM ping going over the
    storage plane with at most 1 s of loss, and tunnels go back to the
    service plane once it is restored;
(f) moving a VM from host 2 to host 1 (same MAC and IP; the controller's
    updates through both switches' control APIs) keeps an iperf3 TCP stream
    alive.
"""

import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import net_lib  # noqa: E402
from interop_util import check  # noqa: E402
from net_lib import mac, switch_config  # noqa: E402

VM1 = ('192.168.0.1', mac(0x101))
VM2 = ('192.168.0.2', mac(0x102))


def config(host):
    if host == 1:
        ports = [{'id': 1, 'vpc': 100, 'tap': 'vm1', 'mac': VM1[1], 'ipv4': [VM1[0]]}]
        vms = [{'vpc': 100, 'mac': VM2[1], 'ipv4': [VM2[0]], 'host': 2}]
    else:
        ports = [{'id': 2, 'vpc': 100, 'tap': 'vm2', 'mac': VM2[1], 'ipv4': [VM2[0]]}]
        vms = [{'vpc': 100, 'mac': VM1[1], 'ipv4': [VM1[0]], 'host': 1}]
    other = 2 if host == 1 else 1
    return switch_config(host, vpcs=[{'id': 100}],
                         hosts=[{'id': other, 'service': '10.1.0.%d' % other, 'storage': '10.2.0.%d' % other}],
                         ports=ports, vms=vms)


def active_plane(net, host, peer):
    for h in net.state(host)['hosts']:
        if h['id'] == peer:
            return h['active_plane']
    return None


def plane_failover(net):
    interval, count = 0.02, 200  # 4 s of pings
    ping = net.popen(net.vm_ns('vm1'), 'ping', '-n', '-q', '-i', str(interval), '-c', str(count), '-W', '1',
                     VM2[0], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(1.0)
    net.cut(1, 'svc')
    cut_at = time.time()
    switched = None
    while time.time() - cut_at < 3 and switched is None:
        if active_plane(net, 1, 2) == 'storage' and active_plane(net, 2, 1) == 'storage':
            switched = time.time() - cut_at
        else:
            time.sleep(0.05)
    out, _ = ping.communicate(timeout=30)
    received = 0
    for line in out.splitlines():
        if 'received' in line:
            received = int(line.split(',')[1].split()[0])
    lost_s = (count - received) * interval
    check('e: both hosts moved to the storage plane (%.2f s after the cut)' % (switched or -1),
          switched is not None and switched <= 1.0, switched)
    check('e: ping across the cut lost %.2f s (at most 1 s)' % lost_s, received > 0 and lost_s <= 1.0, out[-300:])
    net.cut(1, 'svc', up=True)
    back = None
    t0 = time.time()
    while time.time() - t0 < 3 and back is None:
        if active_plane(net, 1, 2) == 'service' and active_plane(net, 2, 1) == 'service':
            back = time.time() - t0
        else:
            time.sleep(0.05)
    check('e: back on the service plane once it answers again (%.2f s)' % (back or -1), back is not None, back)
    check('e: ping after the plane came back', net.ping('vm1', VM2[0]) == 3)
    m = net.metrics(1)
    check('e: /metrics counts the plane switches', 'qcloud_vswitch_plane_switches_total 2' in m,
          [line for line in m.splitlines() if 'plane' in line])


def move(net):
    server = net.popen(net.vm_ns('vm2'), 'iperf3', '-s', '-1', '-B', VM2[0], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
    net.wait_listening(net.vm_ns('vm2'), 5201)  # iperf3's port
    client = net.popen(net.vm_ns('vm1'), 'iperf3', '-c', VM2[0], '-t', '5', '-i', '0.5', '-J',
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)
    ns2 = net.vm_ns('vm2')
    t0 = time.time()
    # Host 1 gets the VM's new port; the VM's namespace moves onto it.
    code, body = net.api(1, 'POST', '/v1/ports', {'id': 10, 'vpc': 100, 'tap': 'vm2n', 'mac': VM2[1],
                                                  'ipv4': [VM2[0]]})
    check('f: host 1 takes the VM\'s port', code == 200, body)
    net.plug('vm2', 1, 'vm2n')
    net.ip(ns2, 'addr', 'del', VM2[0] + '/24', 'dev', 'vm2')
    net.ip(ns2, 'link', 'set', 'vm2', 'down')
    net.ip(ns2, 'addr', 'add', VM2[0] + '/24', 'dev', 'vm2n')
    # Host 2 learns where it went (and forwards what still arrives), then
    # drops the old port.
    code, body = net.api(2, 'PUT', '/v1/vms', {'vpc': 100, 'mac': VM2[1], 'ipv4': [VM2[0]], 'host': 1})
    check('f: host 2 told the VM moved to host 1', code == 200, body)
    code, body = net.api(2, 'DELETE', '/v1/ports/2')
    check('f: host 2 removes the old port', code == 200, body)
    moved = time.time() - t0
    out, err = client.communicate(timeout=30)
    server.wait(10)
    try:
        result = json.loads(out)
    except ValueError:
        result = {}
    error = result.get('error')
    intervals = [i['sum']['bytes'] for i in result.get('intervals', [])]
    after = intervals[4:] if len(intervals) > 4 else []
    received = result.get('end', {}).get('sum_received', {}).get('bytes', 0)
    check('f: the iperf3 stream survived the move (%d intervals, %.1f MB received, move took %.2f s)' %
          (len(intervals), received / 1e6, moved), not error and received > 0 and len(intervals) >= 9,
          error or err[-300:])
    check('f: bytes flowed after the move', after and all(b > 0 for b in after[1:]), intervals)
    check('f: ping to the moved VM (now local to host 1)', net.ping('vm1', VM2[0]) == 3)
    st = net.state(1)
    local = [p for p in st['ports'] if p['mac'] == VM2[1]]
    check('f: host 1 serves the VM on its own port', local and local[0]['tx'] > 0, local)
    print('  host 2 forwarded %d frames in flight to host 1' % net.state(2)['stats']['redirected'])


def test(args):
    net = net_lib.Overlay(args.vswitchd)
    try:
        for h in (1, 2):
            net.add_host(h)
            net.start_switch(h, config(h))
        for name, host, ip in (('vm1', 1, VM1[0]), ('vm2', 2, VM2[0])):
            ns = net.netns(name)
            net.sh(ns, 'sysctl', '-q', '-w', 'net.ipv6.conf.all.disable_ipv6=1')
            net.plug(name, host, name, ip + '/24')
        check('vm1 -> vm2 on the service plane', net.ping('vm1', VM2[0]) == 3 and
              active_plane(net, 1, 2) == 'service')
        plane_failover(net)
        move(net)
    finally:
        net.close()


def main():
    net_lib.main(test)


if __name__ == '__main__':
    main()
