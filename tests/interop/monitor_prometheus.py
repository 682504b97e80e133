#!/usr/bin/env python3
"""A real Prometheus (Debian's 2.42) and qcloud-monitord, started here on
127.0.0.1 and stopped by PID. Prometheus scrapes itself and qcloud-monitord
every second and remote-writes everything to qcloud-monitord. Afterwards
both answer the same HTTP API requests over a window both hold, and the
answers must be equal: raw samples (query_range of selectors), rate() and
increase() with Prometheus's extrapolation, sum by, comparisons, the
series, labels and label values APIs. Also: Prometheus's scrape of
qcloud-monitord's /metrics succeeds (up == 1) and promtool accepts that
page. Then kill -9 of qcloud-monitord during the stream: it restarts on
its data, Prometheus's queue resends, and the samples acknowledged before
the kill are still there.

  monitor_prometheus.py --monitord PATH [--seconds 20]
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from interop_util import check, finish, free_port, get_json, wait_port, stop  # noqa: E402


get = get_json


def start_monitord(path, port, data):
    proc = subprocess.Popen([path, '--listen', '127.0.0.1:%d' % port, '--data-dir', data],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port, proc)
    return proc


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--monitord', required=True)
    ap.add_argument('--seconds', type=int, default=20)
    a = ap.parse_args()
    for tool in ('/usr/bin/prometheus', '/usr/bin/promtool'):
        if not os.path.exists(tool):
            print('SKIP: %s is not installed (scripts/install-deps.sh --with-tests)' % tool)
            return 0
    work = tempfile.mkdtemp(prefix='qcloud-monitor-prom-')
    mport, pport = free_port(), free_port()
    with open(os.path.join(work, 'prometheus.yml'), 'w') as f:
        f.write('''global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: monitord
    static_configs: [{targets: ['127.0.0.1:%d']}]
  - job_name: prometheus
    static_configs: [{targets: ['127.0.0.1:%d']}]
remote_write:
  - url: http://127.0.0.1:%d/api/v1/write
    queue_config: {batch_send_deadline: 500ms, max_shards: 1, min_backoff: 100ms, max_backoff: 500ms}
''' % (mport, pport, mport))
    monitord = start_monitord(a.monitord, mport, os.path.join(work, 'monitord'))
    prom = subprocess.Popen(['/usr/bin/prometheus', '--config.file=' + os.path.join(work, 'prometheus.yml'),
                             '--storage.tsdb.path=' + os.path.join(work, 'prom'),
                             '--web.listen-address=127.0.0.1:%d' % pport, '--log.level=warn'],
                            stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, 'prometheus.log'), 'w'))
    try:
        wait_port(pport, prom, timeout=30)
        t0 = time.time()
        time.sleep(a.seconds)
        # A window both hold: from 6 s after monitord's first sample (the
        # ranges look back 5 s) to 2 s
        # ago, once qcloud-monitord has a sample from after it (one shard
        # sends in order, so everything before it is in).
        # Prometheus's remote write skips samples older than its own start,
        # (its first batches come some 8 s in), so the window starts 6 s after
        # the first sample monitord got: ranges of 5 s lie within its data.
        # --seconds is the least wait: on a busy machine the first batches
        # come later, so wait (40 s more at most) until monitord holds samples
        # enough for a window of 4 s.
        first_t = None
        deadline = time.time() + 40
        while True:
            _, first = get(mport, '/api/v1/query_range', query='up{job="prometheus"}', start=int(t0),
                           end=int(time.time()), step=1)
            res = first.get('data', {}).get('result')
            first_t = int(res[0]['values'][0][0]) if res else None
            _, got = get(mport, '/api/v1/query', query='count_over_time(up{job="prometheus"}[1h])')
            res = got.get('data', {}).get('result')
            held = float(res[0]['value'][1]) if res else 0
            if first_t is not None and held >= 12 and int(time.time()) - 2 - (first_t + 6) >= 4:
                break
            if time.time() >= deadline:
                break
            time.sleep(0.5)
        first_t = int(t0) if first_t is None else first_t
        start, end = first_t + 6, int(time.time()) - 2
        check('a window of at least 3 s to compare (%d..%d)' % (start, end), end - start >= 3, (start, end))
        for _ in range(100):
            # A sample in (end, end + 2] has arrived: all before it have too.
            _, got = get(mport, '/api/v1/query', query='count_over_time(up{job="prometheus"}[2s])', time=end + 2)
            res = got.get('data', {}).get('result', [])
            if res and float(res[0]['value'][1]) >= 2:
                break
            time.sleep(0.2)
        queries = [
            'up',
            'prometheus_tsdb_head_samples_appended_total',
            'rate(prometheus_tsdb_head_samples_appended_total[5s])',
            'increase(prometheus_http_requests_total{handler="/metrics"}[5s])',
            'sum by (job) (up)',
            'sum without (instance) (rate(prometheus_http_requests_total[5s]))',
            'qcloud_monitor_remote_writes_total > 0',
            'max_over_time(scrape_duration_seconds[5s]) * 1000',
            'count(up == bool 1)',
        ]
        for q in queries:
            s1, p = get(pport, '/api/v1/query_range', query=q, start=start, end=end, step=1)
            s2, m = get(mport, '/api/v1/query_range', query=q, start=start, end=end, step=1)
            same = s1 == s2 == 200 and p['data'] == m['data'] and p['data']['result']
            check('query_range %s equals Prometheus\'s' % q, same,
                  'prometheus %s %s\nmonitord %s %s' % (s1, json.dumps(p)[:300], s2, json.dumps(m)[:300]))
        s1, p = get(pport, '/api/v1/query', query='rate(up[5s])', time=end)
        s2, m = get(mport, '/api/v1/query', query='rate(up[5s])', time=end)
        check('instant query equals Prometheus\'s', s1 == s2 == 200 and p['data'] == m['data'], (p, m))
        for name, path, params in [('series', '/api/v1/series', {'match[]': ['up', 'scrape_samples_scraped{job="monitord"}'], 'start': start, 'end': end}),
                                   ('label values', '/api/v1/label/job/values', {}),
                                   ('label values with match', '/api/v1/label/__name__/values', {'match[]': '{job="monitord"}', 'start': start, 'end': end})]:
            s1, p = get(pport, path, **params)
            s2, m = get(mport, path, **params)
            check('%s API equals Prometheus\'s' % name, s1 == s2 == 200 and p['data'] == m['data'] and p['data'],
                  'prometheus %s\nmonitord %s' % (json.dumps(p)[:300], json.dumps(m)[:300]))
        s, names = get(mport, '/api/v1/labels')
        check('labels API lists the labels written', s == 200 and {'__name__', 'job', 'instance'} <= set(names['data']), names)
        # Names dropped, up and scrape_samples_scraped of one target are one
        # label set: Prometheus refuses the function's result; so must we.
        q = 'sum by (job) (rate({__name__=~"up|scrape_samples_scraped"}[5s]))'
        s1, p = get(pport, '/api/v1/query', query=q, time=end)
        s2, m = get(mport, '/api/v1/query', query=q, time=end)
        check('a function leaving two series one label set fails as Prometheus\'s does (%s %s)' % (s1, s2),
              s1 == s2 and s1 >= 400 and p.get('errorType') == m.get('errorType') and p.get('error') == m.get('error'),
              (p, m))
        s, bad = get(mport, '/api/v1/query', query='sum(')
        check('a bad query is a 400 with Prometheus\'s error shape', s == 400 and bad.get('errorType') == 'bad_data', bad)
        s, up = get(pport, '/api/v1/query', query='up{job="monitord"}')
        check('Prometheus scrapes qcloud-monitord: up == 1',
              s == 200 and up['data']['result'] and up['data']['result'][0]['value'][1] == '1', up)
        page = urllib.request.urlopen('http://127.0.0.1:%d/metrics' % mport, timeout=10).read()
        lint = subprocess.run(['/usr/bin/promtool', 'check', 'metrics'], input=page, capture_output=True)
        check('promtool check metrics accepts qcloud-monitord\'s /metrics', lint.returncode == 0,
              lint.stdout + lint.stderr)

        # kill -9 during the stream: what was acknowledged stays; the queue resends the rest.
        t_ack = time.time()
        _, before = get(mport, '/api/v1/query', query='count_over_time(up{job="prometheus"}[1h])', time=t_ack)
        acked = int(before['data']['result'][0]['value'][1]) if before['data']['result'] else 0
        monitord.send_signal(signal.SIGKILL)
        monitord.wait()
        time.sleep(2)  # the outage: Prometheus's sends fail meanwhile and are retried
        monitord = start_monitord(a.monitord, mport, os.path.join(work, 'monitord'))
        kept = 0
        deadline = time.time() + 30
        while True:  # until the resent and new samples are in (30 s at most)
            _, after = get(mport, '/api/v1/query', query='count_over_time(up{job="prometheus"}[1h])')
            res = after.get('data', {}).get('result')
            kept = int(res[0]['value'][1]) if res else 0
            if kept >= acked + 3 or time.time() >= deadline:
                break
            time.sleep(0.2)
        # Polled until enough came in, the total alone could hide a loss:
        # the count up to the moment `acked` was read must not have shrunk.
        _, then = get(mport, '/api/v1/query', query='count_over_time(up{job="prometheus"}[1h])', time=t_ack)
        res = then.get('data', {}).get('result')
        kept_then = int(res[0]['value'][1]) if res else 0
        check('after kill -9 the samples acknowledged before it are kept (%d then %d, %d in all)'
              % (acked, kept_then, kept), acked > 0 and kept_then >= acked and kept >= acked + 3,
              (acked, kept_then, kept))
        # No gap: Prometheus's queue resent what failed while the server was down.
        end2 = int(time.time()) - 2
        for _ in range(100):  # a sample in (end2, end2 + 2] has arrived: all before it have too
            _, got = get(mport, '/api/v1/query', query='count_over_time(up{job="prometheus"}[2s])', time=end2 + 2)
            res = got.get('data', {}).get('result', [])
            if res and float(res[0]['value'][1]) >= 2:
                break
            time.sleep(0.2)
        s1, p = get(pport, '/api/v1/query_range', query='up{job="prometheus"}', start=start, end=end2, step=1)
        s2, m = get(mport, '/api/v1/query_range', query='up{job="prometheus"}', start=start, end=end2, step=1)
        check('after the restart the series has no gap (same as Prometheus\'s)', p['data'] == m['data'],
              'prometheus %s\nmonitord %s' % (json.dumps(p)[-300:], json.dumps(m)[-300:]))
    finally:
        stop(prom)
        stop(monitord)
    return finish(work, keep_on_success=False)


if __name__ == '__main__':
    sys.exit(main())
