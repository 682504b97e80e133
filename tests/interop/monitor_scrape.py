#!/usr/bin/env python3
"""A real Prometheus (Debian's 2.42) and qcloud-monitord scrape the same
targets with the same scrape_configs (each started here on 127.0.0.1 and
stopped by PID): a target this script serves, whose page has labels that
collide with the target's (job, instance, exported_job), escapes, a
histogram, NaN and +Inf; and a port nobody listens on. Both APIs must then
answer the same: the scraped series with the target's labels applied the
same way and the same values, up and the scrape's own series, the targets
API. Then a series leaves the page: both stop returning it at once (stale
markers), though the lookback is 5 minutes.

  monitor_scrape.py --monitord PATH
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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from interop_util import check, finish, free_port, get_json, wait_port, stop  # noqa: E402

PAGE = {'text': '''# HELP app_requests_total Requests.
# TYPE app_requests_total counter
app_requests_total{code="200",job="inner",instance="elsewhere"} 1027
app_requests_total{code="500",exported_job="taken"} 3
app_both{job="a",exported_job="b"} 1
# TYPE app_latency_seconds histogram
app_latency_seconds_bucket{le="0.1"} 5
app_latency_seconds_bucket{le="+Inf"} 9
app_latency_seconds_sum 1.5
app_latency_seconds_count 9
app_temp{path="C:\\\\dir",quote="a\\"b",nl="x\\ny"} -3.5e-1
app_nan NaN
app_inf +Inf
app_rack{rack="inner"} 7
'''}


class Target(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = PAGE['text'].encode()
        self.send_response(200)
        self.send_header('Content-Type', 'text/plain; version=0.0.4')
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


get = get_json


def series(port, query, at):
    """(labels, value) of an instant query, sorted; values of the scrape's
    duration left out (the two measure their own)."""
    s, r = get(port, '/api/v1/query', query=query, time=at)
    if s != 200:
        return s, r
    out = []
    for x in r['data']['result']:
        v = x['value'][1] if x['metric'].get('__name__') != 'scrape_duration_seconds' else '-'
        out.append((json.dumps(x['metric'], sort_keys=True), v))
    return sorted(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--monitord', required=True)
    a = ap.parse_args()
    if not os.path.exists('/usr/bin/prometheus'):
        print('FAIL: /usr/bin/prometheus is not installed (scripts/install-deps.sh --with-tests)')
        return 1
    tport, dead, mport, pport = free_port(), free_port(), free_port(), free_port()
    target = http.server.ThreadingHTTPServer(('127.0.0.1', tport), Target)
    threading.Thread(target=target.serve_forever, daemon=True).start()
    work = tempfile.mkdtemp(prefix='qcloud-monitor-scrape-')
    scrape = '''global:
  scrape_interval: 1s
scrape_configs:
  - job_name: static
    static_configs:
      - targets: ['127.0.0.1:%d', '127.0.0.1:%d']
        labels: {rack: r1}
''' % (tport, dead)
    for name in ('prometheus.yml', 'monitord.yml'):
        with open(os.path.join(work, name), 'w') as f:
            f.write(scrape)
    monitord = subprocess.Popen([a.monitord, '--listen', '127.0.0.1:%d' % mport, '--data-dir', os.path.join(work, 'm'),
                                 '--config', os.path.join(work, 'monitord.yml')],
                                stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, 'monitord.log'), 'w'))
    prom = subprocess.Popen(['/usr/bin/prometheus', '--config.file=' + os.path.join(work, 'prometheus.yml'),
                             '--storage.tsdb.path=' + os.path.join(work, 'p'),
                             '--web.listen-address=127.0.0.1:%d' % pport, '--log.level=warn'],
                            stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, 'prometheus.log'), 'w'))
    try:
        wait_port(mport, monitord)
        wait_port(pport, prom, timeout=30)
        deadline = time.time() + 20
        while time.time() < deadline:  # both have scraped twice: series_added is 0 again
            s1, p = get(pport, '/api/v1/query', query='count_over_time(up{job="static"}[30s])')
            s2, m = get(mport, '/api/v1/query', query='count_over_time(up{job="static"}[30s])')
            if all(r.get('data', {}).get('result') and min(float(x['value'][1]) for x in r['data']['result']) >= 3
                   for r in (p, m)):
                break
            time.sleep(0.3)
        at = time.time()
        want = series(pport, '{job="static"}', at)
        got = series(mport, '{job="static"}', at)
        check('Prometheus scraped the page (%d series)' % len(want), isinstance(want, list) and len(want) >= 20, want)
        check('the same series, labels and values as Prometheus\'s scrape', want == got,
              json.dumps({'prometheus_only': sorted(set(want) - set(got)), 'monitord_only': sorted(set(got) - set(want))},
                         indent=1) if isinstance(want, list) and isinstance(got, list) else (want, got))
        for q in ('up', 'scrape_samples_scraped', 'scrape_series_added', 'app_requests_total{exported_job="inner"}',
                  'app_both{exported_exported_job="a",exported_job="b"}'):
            w, g = series(pport, q, at), series(mport, q, at)
            check('%s equals Prometheus\'s' % q, w == g and w, (w, g))
        s1, p = get(pport, '/api/v1/targets')
        s2, m = get(mport, '/api/v1/targets')

        def shape(r):
            return sorted((json.dumps(t['labels'], sort_keys=True), json.dumps(t['discoveredLabels'], sort_keys=True),
                           t['scrapePool'], t['scrapeUrl'], t['health'], t['scrapeInterval'], t['scrapeTimeout'],
                           t['lastError'] != '') for t in r['data']['activeTargets'])
        check('the targets API answers as Prometheus\'s', s1 == s2 == 200 and shape(p) == shape(m),
              (shape(p), shape(m)) if s1 == s2 == 200 else (p, m))

        # A series leaves the page: gone at once from both (stale markers).
        # Polled (15 s at most) until both answer []: without stale markers
        # the lookback would keep the series for 5 minutes.
        PAGE['text'] = PAGE['text'].replace('app_nan NaN\n', '')
        deadline = time.time() + 15
        while True:
            at = time.time()
            w, g = series(pport, 'app_nan', at), series(mport, 'app_nan', at)
            if w == g == [] or at >= deadline:
                break
            time.sleep(0.2)
        check('a series gone from the page is gone from queries at once, as in Prometheus', w == g == [], (w, g))
        w, g = series(pport, 'app_inf', at), series(mport, 'app_inf', at)
        check('the others stay', w == g and len(w) == 1, (w, g))
    finally:
        stop(prom)
        stop(monitord)
        target.shutdown()
    return finish(work, keep_on_success=False)


if __name__ == '__main__':
    sys.exit(main())
