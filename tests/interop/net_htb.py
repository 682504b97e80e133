#!/usr/bin/env python3
"""qcloud-vswitchd's HTB shaping against the kernel's `tc htb` (root), the
overlay issue's acceptance point (g): two VMs sharing a ceiling get their
guaranteed rates and borrow idle bandwidth, measured with iperf3 (TCP),
within 5% of the kernel's result on the same configuration.

The configuration, the same on both sides:
  root class 1    rate = ceil = 100mbit (qcloud: the switch's link_rate)
  leaf A (1:2)    rate 30mbit, ceil 100mbit      VM A's frames
  leaf B (1:3)    rate 10mbit, ceil 60mbit       VM B's frames
  default bursts (tc's: 1600 b at these rates), r2q 10, so quantum
  A = 3.75 MB/s / 10 clamped to 200,000 B, quantum B = 125,000 B; prio 0;
  1000 frames per leaf queue; MTU 1450 in every VM.

qcloud: two hosts (net_lib.Overlay); VMs A and B on host 1 with that qos on
their ports, VM C on host 2 running two iperf3 servers. The HTB sees each
frame A or B sends, Ethernet header included (1464 bytes for a full TCP
segment), before VXLAN.

kernel: namespaces ka, kb, kc, each a veth to a bridge in namespace kh (the
"host"); the HTB is the root qdisc of kh's port toward kc (pc), leaves chosen by
source IP (u32), pfifo limit 1000; TSO/GSO off in the senders (gso_max_segs
1) so that it, like qcloud, shapes one Ethernet frame per packet, counted
with its 14-byte header (veth, no VXLAN).

Phases, each an iperf3 TCP run (-t 3 after -O 1 s of slow start omitted),
qcloud and kernel one after the other:
  1. A alone: borrows up to the ceiling (100mbit);
  2. A and B: each its rate plus the spare 60mbit shared by quantum,
     A 30 + 60 x 200/325 = 66.9, B 10 + 60 x 125/325 = 33.1 mbit;
  3. B alone: borrows up to its own ceil (60mbit).
Theory in goodput: x 1398/1464 (TCP payload per frame, timestamps on).
PASS when each qcloud figure is within 5% of the kernel's and within 10%
of theory; the ports' qos counters (GET /v1/state) agree with iperf3 and
with the share that had to be borrowed.
"""

import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import net_lib  # noqa: E402
from interop_util import RESULTS, check, stop  # noqa: E402
from net_lib import mac, switch_config  # noqa: E402

MBIT = 125000  # bytes per second
ROOT = 100  # mbit, rate = ceil
LEAF = {'A': {'rate': 30, 'ceil': 100, 'classid': 2}, 'B': {'rate': 10, 'ceil': 60, 'classid': 3}}
MTU = 1450
FRAME = MTU + 14            # bytes the HTB counts per full-size segment
PAYLOAD = MTU - 20 - 20 - 12  # TCP payload per segment (timestamps)
GOODPUT = PAYLOAD / FRAME
OMIT, SECONDS = 1, 3
CC = 'cubic'
TOL_KERNEL, TOL_THEORY = 0.05, 0.10
PORT = {'A': 5201, 'B': 5202}

# qcloud's VMs (VPC 100), the kernel's (one bridge)
QVM = {'A': ('192.168.0.1', mac(0x101)), 'B': ('192.168.0.2', mac(0x102)), 'C': ('192.168.0.3', mac(0x103))}
KVM = {'A': '192.168.1.1', 'B': '192.168.1.2', 'C': '192.168.1.3'}

PHASES = [('1: A alone', ('A',)), ('2: A and B', ('A', 'B')), ('3: B alone', ('B',))]


def quantum(rate_mbit):
    return min(max(rate_mbit * MBIT // 10, 1000), 200000)


def theory(active):
    """Each active leaf's HTB share in mbit: its rate (or ceil when alone), the
    spare root rate shared by quantum, capped at its ceil."""
    share = {}
    spare = ROOT - sum(LEAF[v]['rate'] for v in active)
    q = {v: quantum(LEAF[v]['rate']) for v in active}
    for v in active:
        share[v] = min(LEAF[v]['ceil'], LEAF[v]['rate'] + spare * q[v] / sum(q.values()))
    return share


def qos(v):
    return {'rate': '%dmbit' % LEAF[v]['rate'], 'ceil': '%dmbit' % LEAF[v]['ceil']}


def config(host):
    ports, vms = [], []
    for i, v in enumerate('ABC'):
        ip, m = QVM[v]
        if (host == 1) == (v != 'C'):
            port = {'id': i + 1, 'vpc': 100, 'tap': 'vm' + v.lower(), 'mac': m, 'ipv4': [ip], 'mtu': MTU}
            if v in LEAF:
                port['qos'] = qos(v)
            ports.append(port)
        else:
            vms.append({'vpc': 100, 'mac': m, 'ipv4': [ip], 'host': 2 if v == 'C' else 1})
    other = 2 if host == 1 else 1
    extra = {'link_rate': '%dmbit' % ROOT} if host == 1 else {}
    return switch_config(host, vpcs=[{'id': 100}],
                         hosts=[{'id': other, 'service': '10.1.0.%d' % other, 'storage': '10.2.0.%d' % other}],
                         ports=ports, vms=vms, **extra)


# ---- the two sides ------------------------------------------------------------------

class Qcloud:
    name = 'qcloud'

    def __init__(self, net):
        self.net = net
        for h in (1, 2):
            net.add_host(h)
            net.start_switch(h, config(h))
        for v, host in (('A', 1), ('B', 1), ('C', 2)):
            ns = net.netns('q' + v.lower())
            net.sh(ns, 'sysctl', '-q', '-w', 'net.ipv6.conf.all.disable_ipv6=1')
            net.plug('q' + v.lower(), host, 'vm' + v.lower(), QVM[v][0] + '/24', mtu=MTU)
        self.client = {v: net.vm_ns('q' + v.lower()) for v in LEAF}
        self.server_ns = net.vm_ns('qc')
        self.server_ip = QVM['C'][0]

    def counters(self):
        """{leaf: (sent bytes, borrowed packets, dropped)} of the shaper."""
        out = {}
        for p in self.net.state(1)['ports']:
            for v in LEAF:
                if p['mac'] == QVM[v][1]:
                    out[v] = (p.get('qos_sent_bytes', 0), p.get('qos_borrowed', 0), p.get('qos_dropped', 0))
        return out


class Kernel:
    name = 'kernel'

    def __init__(self, net):
        self.net = net
        self.host = net.netns('kh')
        net.ip(self.host, 'link', 'add', 'kbr', 'type', 'bridge')
        net.ip(self.host, 'link', 'set', 'kbr', 'up')
        for v in 'ABC':
            ns = net.netns('k' + v.lower())
            net.sh(ns, 'sysctl', '-q', '-w', 'net.ipv6.conf.all.disable_ipv6=1')
            port = 'p' + v.lower()
            net.ip(self.host, 'link', 'add', port, 'mtu', str(MTU), 'type', 'veth', 'peer', 'name', 'eth0',
                   'mtu', str(MTU), 'netns', ns)
            net.ip(self.host, 'link', 'set', port, 'master', 'kbr')
            net.ip(self.host, 'link', 'set', port, 'up')
            # One segment per packet, as qcloud's TAP ports (no offloads) get them.
            net.ip(ns, 'link', 'set', 'eth0', 'gso_max_segs', '1')
            net.ip(ns, 'addr', 'add', KVM[v] + '/24', 'dev', 'eth0')
            net.ip(ns, 'link', 'set', 'eth0', 'up')
        tc = lambda *a: net.sh(self.host, 'tc', *a)  # noqa: E731
        tc('qdisc', 'add', 'dev', 'pc', 'root', 'handle', '1:', 'htb', 'r2q', '10')
        tc('class', 'add', 'dev', 'pc', 'parent', '1:', 'classid', '1:1', 'htb',
           'rate', '%dmbit' % ROOT, 'ceil', '%dmbit' % ROOT)
        for v, leaf in LEAF.items():
            cid = '1:%d' % leaf['classid']
            tc('class', 'add', 'dev', 'pc', 'parent', '1:1', 'classid', cid, 'htb',
               'rate', '%dmbit' % leaf['rate'], 'ceil', '%dmbit' % leaf['ceil'])
            tc('qdisc', 'add', 'dev', 'pc', 'parent', cid, 'handle', '%d:' % (leaf['classid'] + 10),
               'pfifo', 'limit', '1000')
            tc('filter', 'add', 'dev', 'pc', 'parent', '1:', 'protocol', 'ip', 'prio', '1', 'u32',
               'match', 'ip', 'src', KVM[v] + '/32', 'flowid', cid)
        self.client = {v: net.vm_ns('k' + v.lower()) for v in LEAF}
        self.server_ns = net.vm_ns('kc')
        self.server_ip = KVM['C']

    def counters(self):
        """As Qcloud.counters(), from `tc -s class show` (tc 6.1 has no JSON for htb)."""
        out = {}
        text = self.net.sh(self.host, 'tc', '-s', 'class', 'show', 'dev', 'pc').stdout
        for block in text.split('class htb ')[1:]:
            words = block.replace(',', ' ').replace('(', ' ').split()
            for v, leaf in LEAF.items():
                if words[0] == '1:%d' % leaf['classid']:
                    at = lambda w: int(words[words.index(w) + 1])  # noqa: E731
                    out[v] = (int(words[words.index('Sent') + 1]), at('borrowed:'), at('dropped'))
        return out


# ---- measuring ----------------------------------------------------------------------------

def start_servers(net, side):
    procs = []
    for v in LEAF:
        procs.append(net.popen(side.server_ns, 'iperf3', '-s', '-B', side.server_ip, '-p', str(PORT[v]),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    deadline = time.time() + 5
    while time.time() < deadline:
        out = net.sh(side.server_ns, 'ss', '-Hltn').stdout
        if all(':%d' % PORT[v] in out for v in LEAF):
            break
        time.sleep(0.05)
    return procs


def run_phase(net, side, active):
    """Per active VM: {'iperf': goodput mbit, 'frames': shaper mbit mid-run,
    'borrowed': borrowed share of the packets mid-run, 'error': ...}."""
    clients = {}
    t0 = time.time()
    for v in active:
        clients[v] = net.popen(side.client[v], 'iperf3', '-c', side.server_ip, '-p', str(PORT[v]),
                               '-t', str(SECONDS), '-O', str(OMIT), '-C', CC, '-J',
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # The shaper's own counters over the steady part of the run.
    time.sleep(max(0, t0 + OMIT + 0.3 - time.time()))
    c0, s0 = side.counters(), time.time()
    time.sleep(max(0, t0 + OMIT + SECONDS - 0.3 - time.time()))
    c1, s1 = side.counters(), time.time()
    out = {}
    for v in active:
        stdout, stderr = clients[v].communicate(timeout=30)
        res = {'error': None}
        try:
            j = json.loads(stdout)
            res['error'] = j.get('error')
            res['iperf'] = j['end']['sum_received']['bits_per_second'] / 1e6
            res['retrans'] = j['end']['sum_sent'].get('retransmits', 0)
        except (ValueError, KeyError) as e:
            res['error'] = res['error'] or 'iperf3: %s %s' % (e, (stderr or stdout)[-300:])
            res['iperf'] = 0.0
        sent = c1.get(v, (0, 0, 0))[0] - c0.get(v, (0, 0, 0))[0]
        borrowed = c1.get(v, (0, 0, 0))[1] - c0.get(v, (0, 0, 0))[1]
        res['frames'] = sent * 8 / (s1 - s0) / 1e6
        res['borrowed'] = borrowed * FRAME / sent if sent else 0.0
        res['dropped'] = c1.get(v, (0, 0, 0))[2] - c0.get(v, (0, 0, 0))[2]
        out[v] = res
    return out


def within(x, ref, tol):
    return ref > 0 and abs(x - ref) <= tol * ref


def test(args):
    t_start = time.time()
    net = net_lib.Overlay(args.vswitchd)
    servers = []
    try:
        q = Qcloud(net)
        k = Kernel(net)
        for side in (q, k):
            servers += start_servers(net, side)
            for v in LEAF:
                check('%s: %s reaches C' % (side.name, v),
                      net.sh(side.client[v], 'ping', '-n', '-q', '-c', '2', '-i', '0.2', '-W', '1',
                             side.server_ip, check_rc=False).returncode == 0)
        print('setup %.1f s' % (time.time() - t_start))
        results = {}
        for label, active in PHASES:
            for side in (q, k):
                results[(label, side.name)] = run_phase(net, side, active)
        print()
        print('%-12s %-3s %8s %8s %8s %7s %7s | %9s %9s %8s %8s %6s %6s' % (
            'phase', 'vm', 'qcloud', 'kernel', 'theory', 'q/k', 'q/th', 'q frames', 'k frames', 'q borr',
            'k borr', 'q drop', 'k drop'))
        for label, active in PHASES:
            th = theory(active)
            for v in active:
                rq, rk = results[(label, 'qcloud')][v], results[(label, 'kernel')][v]
                t = th[v] * GOODPUT
                print('%-12s %-3s %8.2f %8.2f %8.2f %+6.1f%% %+6.1f%% | %9.2f %9.2f %8.2f %8.2f %6d %6d' % (
                    label, v, rq['iperf'], rk['iperf'], t, (rq['iperf'] / rk['iperf'] - 1) * 100 if rk['iperf'] else 0,
                    (rq['iperf'] / t - 1) * 100, rq['frames'], rk['frames'], rq['borrowed'], rk['borrowed'],
                    rq['dropped'], rk['dropped']))
        print('(mbit/s: iperf3 goodput; theory = HTB share x %d/%d; frames = the shaper\'s sent bytes mid-run;'
              ' borr = borrowed share of its packets)' % (PAYLOAD, FRAME))
        print()
        for label, active in PHASES:
            th = theory(active)
            for v in active:
                rq, rk = results[(label, 'qcloud')][v], results[(label, 'kernel')][v]
                t = th[v] * GOODPUT
                check('%s, %s: iperf3 ran on both sides' % (label, v), not rq['error'] and not rk['error'],
                      (rq['error'], rk['error']))
                check('%s, %s: qcloud %.2f within %d%% of the kernel\'s %.2f mbit/s' % (
                    label, v, rq['iperf'], TOL_KERNEL * 100, rk['iperf']), within(rq['iperf'], rk['iperf'], TOL_KERNEL))
                check('%s, %s: qcloud %.2f within %d%% of theory %.2f mbit/s' % (
                    label, v, rq['iperf'], TOL_THEORY * 100, t), within(rq['iperf'], t, TOL_THEORY))
                check('%s, %s: qcloud\'s qos_sent_bytes rate %.2f agrees with iperf3 (%.2f / %.3f)' % (
                    label, v, rq['frames'], rq['iperf'], GOODPUT), within(rq['frames'], rq['iperf'] / GOODPUT, 0.05))
                share = 1 - LEAF[v]['rate'] / th[v]
                check('%s, %s: qcloud\'s qos_borrowed %.2f of the packets (%.2f over the rate)' % (
                    label, v, rq['borrowed'], share), abs(rq['borrowed'] - share) <= 0.05)
        print('test time %.1f s' % (time.time() - t_start))
    finally:
        for p in servers:
            stop(p)
        for h in (1, 2):
            if net.daemons.get(h) and net.daemons[h].poll() is not None:
                print('host %d log: %s' % (h, net.log(h)))
        net.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--vswitchd', required=True)
    args = ap.parse_args()
    net_lib.main_guard(lambda: test(args))
    print('%d/%d checks passed' % (sum(RESULTS), len(RESULTS)))
    sys.exit(0 if RESULTS and all(RESULTS) else 1)


if __name__ == '__main__':
    main()
