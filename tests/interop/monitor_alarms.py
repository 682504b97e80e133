#!/usr/bin/env python3
"""qcloud-monitord's alarms end to end, started here on 127.0.0.1 and
stopped by PID: a Prometheus-format rule file and an Alertmanager-format
route in its --config, samples pushed in the text format, and a webhook
receiver (this script) that gets Alertmanager's version-4 payload: one
notification for a storm of alerts in one group, the inhibited service
alarms left out, then the resolved notification.

  monitor_alarms.py --monitord PATH
"""

import argparse
import http.server
import json
import os
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from interop_util import check, finish, free_port, wait_port, stop  # noqa: E402

NOTES = []


class Hook(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get('Content-Length', 0)))
        NOTES.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def push(port, text):
    req = urllib.request.Request('http://127.0.0.1:%d/api/v1/import/prometheus' % port, data=text.encode(), method='POST')
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status


def wait_for(pred, seconds):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(0.1)
    return pred()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--monitord', required=True)
    a = ap.parse_args()
    hook_port, port = free_port(), free_port()
    hook = http.server.ThreadingHTTPServer(('127.0.0.1', hook_port), Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    work = tempfile.mkdtemp(prefix='qcloud-monitor-alarms-')
    cfg = os.path.join(work, 'monitor.yml')
    with open(cfg, 'w') as f:
        f.write('''
evaluation_interval: 1s
groups:
  - name: hosts
    rules:
      - alert: HostDown
        expr: up == 0
        labels: {severity: page}
        annotations: {summary: "{{ $labels.instance }} is down"}
      - alert: ServiceSlow
        expr: latency_seconds > 1
route:
  receiver: sms
  group_by: [alertname]
  group_wait: 2s
  group_interval: 3s
  repeat_interval: 1h
receivers:
  - name: sms
    webhook_configs:
      - url: http://127.0.0.1:%d/hook
inhibit_rules:
  - source_matchers: ['alertname="HostDown"']
    target_matchers: ['alertname="ServiceSlow"']
    equal: [instance]
''' % hook_port)
    proc = __import__('subprocess').Popen([a.monitord, '--listen', '127.0.0.1:%d' % port, '--data-dir', os.path.join(work, 'data'),
                                           '--config', cfg, '--lookback', '10s'],
                                          stdout=__import__('subprocess').DEVNULL, stderr=open(os.path.join(work, 'log'), 'w'))
    try:
        wait_port(port, proc)
        # An outage: 50 hosts down, their services slow; h-ok's service slow alone.
        down = ''.join('up{instance="h%d"} 0\nlatency_seconds{instance="h%d"} 5\n' % (i, i) for i in range(50))
        for _ in range(4):
            push(port, down + 'latency_seconds{instance="h-ok"} 3\n')
            time.sleep(1)
        ok = wait_for(lambda: len(NOTES) >= 2, 10)
        groups = {n['groupKey']: n for n in NOTES}
        check('one notification per group for the storm (%d)' % len(NOTES), ok and len(NOTES) == 2, NOTES[:3])
        hd = groups.get('{}:{alertname="HostDown"}', {})
        check('HostDown: 50 alerts, firing, Alertmanager payload',
              hd.get('status') == 'firing' and len(hd.get('alerts', [])) == 50 and hd.get('version') == '4'
              and hd.get('receiver') == 'sms' and hd.get('commonLabels', {}).get('severity') == 'page', hd)
        ss = groups.get('{}:{alertname="ServiceSlow"}', {})
        check('ServiceSlow: the inhibited hosts left out, h-ok alone',
              [x['labels'].get('instance') for x in ss.get('alerts', [])] == ['h-ok'], ss)
        check('annotations are expanded',
              any(x['annotations'].get('summary') == 'h7 is down' for x in hd.get('alerts', [])), hd)
        # Recovery: the hosts come back; HostDown resolves in one notification.
        n0 = len(NOTES)
        up = ''.join('up{instance="h%d"} 1\nlatency_seconds{instance="h%d"} 0.1\n' % (i, i) for i in range(50))
        for _ in range(3):
            push(port, up + 'latency_seconds{instance="h-ok"} 0.1\n')
            time.sleep(1)
        wait_for(lambda: any(n['status'] == 'resolved' and n['groupKey'] == '{}:{alertname="HostDown"}' for n in NOTES[n0:]), 10)
        res = [n for n in NOTES[n0:] if n['groupKey'] == '{}:{alertname="HostDown"}']
        check('HostDown resolved in one notification of 50 resolved alerts',
              len(res) == 1 and res[0]['status'] == 'resolved' and len(res[0]['alerts']) == 50
              and all(x['status'] == 'resolved' and x['endsAt'] != '0001-01-01T00:00:00Z' for x in res[0]['alerts']), res)
    finally:
        stop(proc)
        hook.shutdown()
    return finish(work)


if __name__ == '__main__':
    sys.exit(main())
