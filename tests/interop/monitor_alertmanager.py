#!/usr/bin/env python3
"""The same alert stream to a real Alertmanager and to qcloud-monitord's
convergence, with the same grouping configuration (one YAML, which both
read; only the webhook URL differs): the notifications each sends to its
webhook (groups, their members with status and times, their count, in
order per group) must match.

Both are started here on 127.0.0.1 and stopped by PID. The alerts are
pushed to both at once (a thread each) through Alertmanager's API (POST
/api/v2/alerts), in three phases placed half-way between the group_interval
ticks so that a few milliseconds between the two receivers cannot move an
alert across a tick:

  t=0    an outage: HostDown on 12 hosts in clusters a, b, c; ServiceSlow
         on those hosts (inhibited by their HostDown) and on 5 healthy
         hosts in cluster a; one DiskFull. group_wait 1 s.
  t=2.5  two hosts of cluster a recover (their HostDown resolved, so their
         ServiceSlow is no longer inhibited); a new ServiceSlow in a.
  t=5.5  every host of cluster b recovers.

  monitor_alertmanager.py --monitord PATH [--alertmanager /usr/bin/prometheus-alertmanager]
"""

import argparse
import datetime
import http.server
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from interop_util import check, finish, free_port, wait_port, wait_ready, stop  # noqa: E402

GOT = {'am': [], 'qcloud': []}
GROUP_INTERVAL = 3.0

CONFIG = '''
route:
  receiver: hook
  group_by: [alertname, cluster]
  group_wait: 1s
  group_interval: %ds
  repeat_interval: 1h
receivers:
  - name: hook
    webhook_configs:
      - url: http://127.0.0.1:%d/%s
        send_resolved: true
inhibit_rules:
  - source_matchers: ['alertname="HostDown"']
    target_matchers: ['alertname="ServiceSlow"']
    equal: [instance]
'''


class Hook(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get('Content-Length', 0)))
        who = self.path.strip('/')
        if who in GOT:
            GOT[who].append((time.time(), json.loads(body)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def rfc3339(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%S.%f')[:-3] + 'Z'


def post(port, alerts):
    req = urllib.request.Request('http://127.0.0.1:%d/api/v2/alerts' % port, data=json.dumps(alerts).encode(),
                                 method='POST', headers={'Content-Type': 'application/json'})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status


def alert(name, cluster, instance, start, end=None):
    a = {'labels': {'alertname': name, 'cluster': cluster, 'instance': instance, 'severity': 'page'},
         'annotations': {'summary': '%s on %s' % (name, instance)}, 'startsAt': rfc3339(start),
         'generatorURL': 'http://prometheus/graph'}
    if end is not None:
        a['endsAt'] = rfc3339(end)
    return a


def ms(t):
    """Alertmanager writes Go's RFC 3339 with up to nanoseconds, trailing
    zeros cut ("...:00.12Z"); qcloud writes milliseconds: compare in ms."""
    head, _, frac = t.rstrip('Z').partition('.')
    return head + '.' + (frac + '000')[:3]


def normal(note):
    """What must match: the group, its status and labels, and each member."""
    members = sorted((a['fingerprint'], a['status'], json.dumps(a['labels'], sort_keys=True),
                      json.dumps(a['annotations'], sort_keys=True), ms(a['startsAt']), ms(a['endsAt']))
                     for a in note['alerts'])
    return {'groupKey': note['groupKey'], 'status': note['status'], 'receiver': note['receiver'],
            'groupLabels': note['groupLabels'], 'commonLabels': note['commonLabels'],
            'commonAnnotations': note['commonAnnotations'], 'version': note['version'],
            'truncatedAlerts': note['truncatedAlerts'], 'members': members}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--monitord', required=True)
    ap.add_argument('--alertmanager', default='/usr/bin/prometheus-alertmanager')
    a = ap.parse_args()
    if not os.access(a.alertmanager, os.X_OK):
        print('FAIL: %s not found (scripts/install-deps.sh --with-tests installs it)' % a.alertmanager)
        return 1
    hook_port, am_port, q_port = free_port(), free_port(), free_port()
    hook = http.server.ThreadingHTTPServer(('127.0.0.1', hook_port), Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    work = tempfile.mkdtemp(prefix='qcloud-monitor-am-')
    for who in GOT:
        with open(os.path.join(work, who + '.yml'), 'w') as f:
            f.write(CONFIG % (GROUP_INTERVAL, hook_port, who))
    am = subprocess.Popen([a.alertmanager, '--config.file', os.path.join(work, 'am.yml'),
                           '--storage.path', os.path.join(work, 'am-data'),
                           '--web.listen-address', '127.0.0.1:%d' % am_port, '--cluster.listen-address='],
                          stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, 'am.log'), 'w'))
    q = subprocess.Popen([a.monitord, '--listen', '127.0.0.1:%d' % q_port, '--data-dir', os.path.join(work, 'q-data'),
                          '--config', os.path.join(work, 'qcloud.yml')],
                         stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, 'qcloud.log'), 'w'))
    try:
        wait_port(am_port, am)
        wait_port(q_port, q)
        wait_ready(am_port, am, timeout=20)  # Alertmanager answers its port before it is ready

        # Every alert begins just before it is sent: within group_wait, so
        # both wait it out (an alert older than group_wait is flushed at
        # once, and Alertmanager's inhibitor may not yet have seen its
        # HostDown then). Each server's group_wait runs from its own receipt,
        # so the two POSTs go out together, one thread each.
        t0 = time.time()
        start = t0
        hosts = {c: ['h-%s-%d' % (c, i) for i in range(4)] for c in 'abc'}
        healthy = ['h-a-%d' % i for i in range(10, 15)]
        firing = {}
        for c, hs in hosts.items():
            for h in hs:
                firing[('HostDown', h)] = alert('HostDown', c, h, start)
                firing[('ServiceSlow', h)] = alert('ServiceSlow', c, h, start)
        for h in healthy[:4]:
            firing[('ServiceSlow', h)] = alert('ServiceSlow', 'a', h, start)
        firing[('DiskFull', 'h-c-9')] = alert('DiskFull', 'c', 'h-c-9', start)
        sent = {}  # who -> (time the first POST went out, time it was answered)

        def push(extra=()):
            body = list(firing.values()) + list(extra)
            status = {}

            def one(who, port):
                t = time.time()
                try:
                    status[who] = post(port, body)
                except OSError as e:
                    status[who] = str(e)
                sent.setdefault(who, (t, time.time()))
            threads = [threading.Thread(target=one, args=(who, port))
                       for who, port in (('am', am_port), ('qcloud', q_port))]
            for th in threads:
                th.start()
            for th in threads:
                th.join()
            return status.get('am'), status.get('qcloud')

        def at(offset):
            delay = t0 + offset - time.time()
            if delay > 0:
                time.sleep(delay)

        s = push()
        check('both take the alerts (Alertmanager %s, qcloud-monitord %s)' % s, s == (200, 200), s)
        at(2.5)
        now = time.time()
        resolved = [alert('HostDown', 'a', h, start, now) for h in hosts['a'][:2]]
        for h in hosts['a'][:2]:
            del firing[('HostDown', h)]
        firing[('ServiceSlow', healthy[4])] = alert('ServiceSlow', 'a', healthy[4], now)
        push(resolved)
        at(5.5)
        now = time.time()
        resolved = [alert('HostDown', 'b', h, start, now) for h in hosts['b']]
        for h in hosts['b']:
            del firing[('HostDown', h)]
        push(resolved)
        # The last notifications come on the tick after t=5.5 (t=7): wait
        # until both sent all 9 (20 s at most), at least until t=8.5, and
        # until a second has passed without one, so a late extra one counts.
        while time.time() < t0 + 20:
            last = max((t for who in GOT for t, _ in GOT[who]), default=t0)
            if (time.time() >= t0 + 8.5 and min(len(GOT[who]) for who in GOT) >= 9
                    and time.time() - last >= 1.0):
                break
            time.sleep(0.1)

        am_notes = [normal(n) for _, n in GOT['am']]
        q_notes = [normal(n) for _, n in GOT['qcloud']]
        print('Alertmanager sent %d notifications, qcloud-monitord %d' % (len(am_notes), len(q_notes)))
        for name, notes in (('Alertmanager', am_notes), ('qcloud-monitord', q_notes)):
            for n in notes:
                print('  %-16s %-45s %-8s %d alerts' % (name, n['groupKey'], n['status'], len(n['members'])))
        check('Alertmanager sent the notifications this stream makes (9)', len(am_notes) == 9, len(am_notes))
        check('the same number of notifications (%d and %d)' % (len(am_notes), len(q_notes)),
              len(am_notes) == len(q_notes), (len(am_notes), len(q_notes)))
        keys = sorted({n['groupKey'] for n in am_notes} | {n['groupKey'] for n in q_notes})
        for k in keys:
            seq_am = [n for n in am_notes if n['groupKey'] == k]
            seq_q = [n for n in q_notes if n['groupKey'] == k]
            same = seq_am == seq_q
            detail = ''
            if not same:
                detail = json.dumps({'alertmanager': seq_am, 'qcloud': seq_q}, indent=1)[:3000]
            check('group %s: the same notifications in the same order (%d)' % (k, len(seq_am)), same, detail)
        # When: each group's first notification comes group_wait after its
        # first alert reached the server, later ones on group_interval ticks;
        # qcloud's tick is 100 ms, so the two differ by well under a second.
        # Measured from each server's own receipt of the first alerts, which
        # lies between its POST going out and being answered: the skew is
        # the least the two delays can differ by, whatever a POST took.
        first = {'am': {}, 'qcloud': {}}
        for who in first:
            for t, n in GOT[who]:
                first[who].setdefault(n['groupKey'], t)

        def skew_of(k):
            (am_out, am_in), (q_out, q_in) = sent['am'], sent['qcloud']
            am_lo, am_hi = first['am'][k] - am_in, first['am'][k] - am_out  # its delay lies in [lo, hi]
            q_lo, q_hi = first['qcloud'][k] - q_in, first['qcloud'][k] - q_out
            return max(0.0, am_lo - q_hi, q_lo - am_hi)
        skew = max((skew_of(k) for k in first['am'] if k in first['qcloud']), default=99)
        posts = ', '.join('%s POST %.3f s' % (who, sent[who][1] - sent[who][0]) for who in sent)
        check('first notifications within 0.5 s of Alertmanager\'s, from each one\'s receipt (%.3f s; %s)'
              % (skew, posts), skew < 0.5, skew)
    finally:
        stop(q)
        stop(am)
        hook.shutdown()
    return finish(work)


if __name__ == '__main__':
    sys.exit(main())
