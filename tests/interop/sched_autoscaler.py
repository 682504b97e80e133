#!/usr/bin/env python3
"""qcloud-autoscaler against a real Prometheus: an exporter (here) serves
app_cpu{group="web",instance=...}; Prometheus 2.42 scrapes it every second;
qcloud-autoscaler queries Prometheus's /api/v1/query, runs its policies
and hands each decision to a hook command that appends it to a file.

Checks: quiet load makes no decision; high load makes the configured
scale-out, whose JSON carries the explanation (policy, samples,
arithmetic); /api/v1/decisions lists it; /metrics passes promtool check
metrics and counts it; a restart restores the group's size from
state_file; a failing hook is not taken (the size goes back); a bad
config exits 2. Every server started here on 127.0.0.1, stopped by PID.

  sched_autoscaler.py --autoscaler PATH
"""

import argparse
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
from interop_util import check, finish, free_port, get_json, stop, wait_port  # noqa: E402

LOAD = {'cpu': 0.3, 'instances': 2}


HOOKED = []


class Exporter(http.server.BaseHTTPRequestHandler):
    def do_POST(self):  # the webhook
        body = self.rfile.read(int(self.headers.get('Content-Length', 0)))
        HOOKED.append((self.path, self.headers.get('Content-Type'), body))
        self.send_response(204)
        self.end_headers()

    def do_GET(self):
        lines = ['# TYPE app_cpu gauge']
        for i in range(LOAD['instances']):
            lines.append('app_cpu{group="web",instance="web-%d"} %s' % (i, LOAD['cpu']))
        body = ('\n'.join(lines) + '\n').encode()
        self.send_response(200)
        self.send_header('Content-Type', 'text/plain; version=0.0.4')
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


CONFIG = '''
prometheus: http://127.0.0.1:%(pport)d
interval: 1s
listen: 127.0.0.1:%(aport)d
state_file: %(work)s/state.json
hook:
  %(hook)s
  timeout: 5s
metrics:
  - name: cpu
    query: app_cpu
    instance_label: exported_instance   # Prometheus renames the page's own "instance"
groups:
  - name: web
    min_size: 2
    max_size: 10
    initial_size: 2
    warmup: 0s
alarms:
  - name: cpu-high
    group: web
    metric: cpu
    aggregation: avg
    window: 3s
    comparison: ">"
    threshold: 0.8
    duration: 2s
actions:
  - name: add-two
    alarm: cpu-high
    kind: scale_out
    adjustment: 2
    cooldown: 6s
'''


def start(a, work, name):
    p = subprocess.Popen([a.autoscaler, '--config', os.path.join(work, name)], stdout=subprocess.PIPE,
                         stderr=open(os.path.join(work, 'autoscaler.log'), 'a'), text=True)
    line = p.stdout.readline()
    return p, line


def text(port, path):
    with urllib.request.urlopen('http://127.0.0.1:%d%s' % (port, path), timeout=5) as r:
        return r.read().decode()


def wait_for(fn, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(0.2)
    return fn()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--autoscaler', required=True)
    a = ap.parse_args()
    if not os.path.exists('/usr/bin/prometheus'):
        print('FAIL: /usr/bin/prometheus is not installed (scripts/install-deps.sh --with-tests)')
        return 1
    work = tempfile.mkdtemp(prefix='qcloud-autoscaler-')
    eport, pport, aport = free_port(), free_port(), free_port()
    exporter = http.server.ThreadingHTTPServer(('127.0.0.1', eport), Exporter)
    threading.Thread(target=exporter.serve_forever, daemon=True).start()
    with open(os.path.join(work, 'prometheus.yml'), 'w') as f:
        f.write('global: {scrape_interval: 1s}\nscrape_configs:\n  - job_name: app\n'
                '    static_configs: [{targets: ["127.0.0.1:%d"]}]\n' % eport)
    decisions = os.path.join(work, 'decisions.jsonl')
    for name, hook in (('good.yml', 'command: cat >> %s' % decisions), ('failing.yml', 'command: cat > /dev/null; exit 3'),
                       ('webhook.yml', 'webhook: http://127.0.0.1:%d/scale' % eport)):
        with open(os.path.join(work, name), 'w') as f:
            f.write(CONFIG % {'pport': pport, 'aport': aport, 'work': work, 'hook': hook})
    with open(os.path.join(work, 'bad.yml'), 'w') as f:
        f.write((CONFIG % {'pport': pport, 'aport': aport, 'work': work, 'hook': 'command: true'}).replace('cooldown', 'cooldwn'))
    prom = subprocess.Popen(['/usr/bin/prometheus', '--config.file=' + os.path.join(work, 'prometheus.yml'),
                             '--storage.tsdb.path=' + os.path.join(work, 'p'),
                             '--web.listen-address=127.0.0.1:%d' % pport, '--log.level=warn'],
                            stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, 'prometheus.log'), 'w'))
    auto = None
    try:
        wait_port(pport, prom, timeout=30)
        ok = wait_for(lambda: len(get_json(pport, '/api/v1/query', query='app_cpu')[1].get('data', {}).get('result', [])) == 2, 20)
        check('Prometheus scrapes the exporter', ok)

        p = subprocess.run([a.autoscaler, '--config', os.path.join(work, 'bad.yml')], capture_output=True, text=True,
                           timeout=20)
        check('a misspelt key in the config: exit 2 naming it', p.returncode == 2 and 'cooldwn' in p.stderr,
              (p.returncode, p.stderr))

        auto, line = start(a, work, 'good.yml')
        check('it says where it listens', line.startswith('qcloud-autoscaler listening on 127.0.0.1:%d' % aport), line)
        time.sleep(5)  # quiet load
        check('quiet load: no decision', not os.path.exists(decisions) or os.path.getsize(decisions) == 0)
        LOAD['cpu'] = 0.95
        got = wait_for(lambda: os.path.exists(decisions) and open(decisions).read().strip(), 20)
        first = json.loads(got.splitlines()[0]) if got else {}
        check('high load: the hook gets a scale-out 2 -> 4',
              first.get('kind') == 'scale_out' and first.get('from') == 2 and first.get('to') == 4 and
              first.get('policy') == 'add-two' and first.get('group') == 'web', first)
        exp = first.get('explanation', '')
        check('the decision explains itself (policy, samples, arithmetic)',
              exp.startswith('alarm cpu-high: avg(cpu) over 3s of 2 instances = 0.95') and '> 0.8 for 2s' in exp and
              'scale_out by 2: 2 -> 4' in exp, exp)
        status, listed = get_json(aport, '/api/v1/decisions')
        check('/api/v1/decisions lists it', status == 200 and any(d.get('to') == 4 for d in listed), listed)
        # The hook's file is written before the hook exits and is counted.
        wait_for(lambda: 'kind="scale_out"} 1' in text(aport, '/metrics'), 5)
        metrics = text(aport, '/metrics')
        check('/metrics counts it', 'qcloud_autoscaler_decisions_total{group="web",kind="scale_out"}' in metrics and
              'qcloud_autoscaler_group_size{group="web"} 4' in metrics, metrics)
        if os.path.exists('/usr/bin/promtool'):
            pt = subprocess.run(['/usr/bin/promtool', 'check', 'metrics'], input=metrics, capture_output=True, text=True)
            check('promtool check metrics passes', pt.returncode == 0, pt.stdout + pt.stderr)
        LOAD['cpu'] = 0.3
        time.sleep(1.5)
        stop(auto)
        auto = None
        size_before = json.load(open(os.path.join(work, 'state.json')))['groups']['web']['size']
        auto, line = start(a, work, 'good.yml')
        m = text(aport, '/metrics')
        check('restarted: the size comes back from state_file (%d)' % size_before,
              'qcloud_autoscaler_group_size{group="web"} %d' % size_before in m and size_before >= 4, m[-400:])
        stop(auto)
        auto = None
        # A hook that fails: the decision is not taken.
        os.remove(os.path.join(work, 'state.json'))
        LOAD['cpu'] = 0.95
        auto, line = start(a, work, 'failing.yml')
        ok = wait_for(lambda: 'qcloud_autoscaler_hook_calls_total{result="error"}' in text(aport, '/metrics'), 20)
        m = text(aport, '/metrics')
        check('a failing hook: counted, and the size stays 2', ok and 'qcloud_autoscaler_group_size{group="web"} 2' in m,
              m[-500:])
        stop(auto)
        auto = None
        # The webhook: the decision POSTed as JSON.
        os.remove(os.path.join(work, 'state.json'))
        auto, line = start(a, work, 'webhook.yml')
        ok = wait_for(lambda: len(HOOKED) > 0, 20)
        path, ctype, body = HOOKED[0] if HOOKED else ('', '', b'{}')
        d = json.loads(body or b'{}')
        check('a webhook gets the decision as JSON', ok and path == '/scale' and ctype == 'application/json' and
              d.get('kind') == 'scale_out' and d.get('to') == 4, (path, ctype, body[:300]))
    finally:
        if auto:
            stop(auto)
        stop(prom)
        exporter.shutdown()
    return finish(work, keep_on_success=False)


if __name__ == '__main__':
    sys.exit(main())
