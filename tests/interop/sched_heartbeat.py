#!/usr/bin/env python3
"""qcloud-autoscaler heartbeat on real UDP sockets: three hosts on
127.0.0.1, each with two network paths (127.0.0.1 and 127.0.0.2, its own
port), heartbeating each other every 100 ms and sending their verdicts to a
qcloud-autoscaler arbiter (quorum 2) that knows the cluster's hosts,
instances and placement. No suspicion while all live; kill -9 one and the
other two suspect it within 3 s, the arbiter declares it dead and prints
its evacuation plan (its instances on the live hosts, within capacity and
anti-affinity); start it again and it is heard, and alive, within 4 s. A
stray datagram (not a heartbeat) changes nothing. Started here, stopped by
PID.

  sched_heartbeat.py --autoscaler PATH
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from interop_util import check, finish, free_port, stop  # noqa: E402


class Node:
    def __init__(self, binary, name, ports, all_ports, arbiter=None, args=None):
        self.name, self.lines, self.lock = name, [], threading.Lock()
        if args is None:  # a host's heartbeat process, peering with all the others
            # phi threshold 30 instead of 8: with 100 ms heartbeats a path is
            # suspect after ~1.5 s of silence instead of ~1.1 s, so a busy
            # machine's stall makes no false suspicion, and a killed host is
            # still suspected well within the 3 s checked below.
            args = [binary, 'heartbeat', '--name', name, '--interval', '100ms', '--threshold', '30',
                    '--listen', '127.0.0.1:%d,127.0.0.2:%d' % (ports, ports), '--arbiter', '127.0.0.1:%d' % arbiter]
            for other, p in all_ports.items():
                if other != name:
                    args += ['--peer', '%s=127.0.0.1:%d,127.0.0.2:%d' % (other, p, p)]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.banner = self.proc.stdout.readline()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            with self.lock:
                self.lines.append((time.time(), ev))

    def events(self):
        with self.lock:
            return list(self.lines)


def first(node, peer, suspect, since):
    for t, ev in node.events():
        if t >= since and ev.get('peer') == peer and ev.get('suspect') == suspect:
            return t
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--autoscaler', required=True)
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix='qcloud-heartbeat-')
    ports = {'a': free_port(), 'b': free_port(), 'c': free_port()}
    aport = free_port()
    hosts = [{'name': n, 'capacity': {'cpu': 8}} for n in 'abc']
    instances = [{'name': 'db-1', 'demand': {'cpu': 2}, 'anti_affinity': 'db'},
                 {'name': 'db-2', 'demand': {'cpu': 2}, 'anti_affinity': 'db'},
                 {'name': 'web', 'demand': {'cpu': 5}}, {'name': 'cache', 'demand': {'cpu': 1}}]
    placement = {'placements': {'db-1': 'a', 'db-2': 'c', 'web': 'c', 'cache': 'b'}, 'unplaced': [], 'hosts_used': 3}
    for name, data in (('hosts.json', hosts), ('instances.json', instances), ('placement.json', placement)):
        with open(os.path.join(work, name), 'w') as f:
            json.dump(data, f)
    arbiter = Node(a.autoscaler, 'arbiter', 0, {}, args=[
        a.autoscaler, 'arbiter', '--listen', '127.0.0.1:%d' % aport, '--quorum', '2',
        '--hosts', os.path.join(work, 'hosts.json'), '--instances', os.path.join(work, 'instances.json'),
        '--placement', os.path.join(work, 'placement.json')])
    nodes = {n: Node(a.autoscaler, n, p, ports, arbiter=aport) for n, p in ports.items()}
    try:
        check('the arbiter says where it listens', arbiter.banner.startswith('qcloud-autoscaler arbiter'), arbiter.banner)
        check('each says where it listens', all(x.banner.startswith('qcloud-autoscaler heartbeat') for x in nodes.values()),
              [x.banner for x in nodes.values()])
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for _ in range(20):
            s.sendto(b'QHB1\x00\xffnot a heartbeat', ('127.0.0.1', ports['a']))
        time.sleep(3)
        quiet = [ev for x in nodes.values() for _, ev in x.events()]
        check('3 s all alive (and stray datagrams): no suspicion', not quiet, quiet)
        killed = time.time()
        nodes['c'].proc.kill()
        nodes['c'].proc.wait()
        deadline = killed + 5
        while time.time() < deadline and not all(first(nodes[n], 'c', True, killed) for n in 'ab'):
            time.sleep(0.05)
        took = [first(nodes[n], 'c', True, killed) for n in 'ab']
        check('kill -9 c: a and b suspect it within 3 s (%s)' % ', '.join('%.2f s' % (t - killed) if t else 'never' for t in took),
              all(t is not None and t - killed <= 3 for t in took), took)
        others = [ev for n in 'ab' for t, ev in nodes[n].events() if ev.get('peer') != 'c']
        check('nobody else is suspected', not others, others)
        deadline = killed + 5
        while time.time() < deadline and len(arbiter.events()) < 2:
            time.sleep(0.05)
        evs = arbiter.events()
        dead = [(t, ev) for t, ev in evs if ev.get('dead') is True]
        check('the arbiter declares c dead within 3 s, and only c',
              len(dead) == 1 and dead[0][1].get('host') == 'c' and dead[0][0] - killed <= 3, evs)
        plan = [ev.get('plan') for _, ev in evs if ev.get('evacuate') == 'c']
        moves = plan[0].get('placements', {}) if plan else {}
        check('its evacuation plan moves db-2 and web to live hosts, db-2 not beside db-1',
              set(moves) == {'db-2', 'web'} and moves.get('db-2') == 'b' and moves.get('web') in ('a', 'b') and
              not plan[0].get('unplaced'), plan)
        back = time.time()
        nodes['c'] = Node(a.autoscaler, 'c', ports['c'], ports, arbiter=aport)
        deadline = back + 6
        while time.time() < deadline and not all(first(nodes[n], 'c', False, back) for n in 'ab'):
            time.sleep(0.05)
        again = [first(nodes[n], 'c', False, back) for n in 'ab']
        check('c back: heard again within 4 s', all(t is not None and t - back <= 4 for t in again), again)
        deadline = back + 6
        while time.time() < deadline and not any(ev.get('dead') is False for _, ev in arbiter.events()):
            time.sleep(0.05)
        check('the arbiter takes c back', any(ev.get('host') == 'c' and ev.get('dead') is False
                                              for _, ev in arbiter.events()), arbiter.events())
    finally:
        for x in list(nodes.values()) + [arbiter]:
            stop(x.proc)
    return finish(work, keep_on_success=False)


if __name__ == '__main__':
    sys.exit(main())
