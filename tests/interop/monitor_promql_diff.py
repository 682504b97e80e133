#!/usr/bin/env python3
"""A randomized differential test of qcloud-monitord's PromQL subset and
query API against a real Prometheus (Debian's 2.42), both started here on
127.0.0.1 and stopped by PID.

The same deterministic data set (fixed seed; about 55 series over the last
50 minutes: counters with resets and irregular, millisecond-stamped scrapes,
gauges going negative, a series that stops early and one that starts late,
a gap longer than the lookback, stale markers, NaN and the infinities,
awkward floats, a histogram's buckets, label values that need escaping) is
remote-written (protobuf + snappy, hand-encoded) to both. Then the same
queries go to both: a hand-written list of edge cases and ~300 generated
from the subset's grammar (fixed seed), each as query_range with 2-3
(start, end, step) choices and as an instant query at 3 times; plus the
API's parameter edge cases and the series, labels and label values APIs.

Compared: the HTTP status; on success `data` (instant vectors and instant
matrices as multisets, range matrices exactly, values as strings); on error
`status` and `errorType` (message text differences are listed, not failed).
Queries the subset documents as unsupported (promql.h) pass when
qcloud-monitord refuses them with 400 bad_data (or answers as Prometheus).

  monitor_promql_diff.py --monitord PATH [--prometheus /usr/bin/prometheus]
                         [--seed N] [--generated 300] [--budget 55]
"""

import argparse
import json
import math
import os
import random
import re
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timezone

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from interop_util import check, finish, free_port, get_json, wait_port, wait_ready, stop  # noqa: E402


# --------------------------------------------------------------------------
# Remote write 1.0: protobuf prometheus.WriteRequest, snappy block format.

def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7f
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def pb_len(field, payload):
    return varint(field << 3 | 2) + varint(len(payload)) + payload


def f2b(x):
    return struct.unpack('<Q', struct.pack('<d', x))[0]


STALE_NAN = 0x7ff0000000000002   # Prometheus's value.StaleNaN
NORMAL_NAN = 0x7ff8000000000001  # Prometheus's value.NormalNaN


def encode_series(labels, samples):
    out = bytearray()
    for name in sorted(labels):
        out += pb_len(1, pb_len(1, name.encode()) + pb_len(2, labels[name].encode()))
    for ts, bits in samples:
        out += pb_len(2, b'\x09' + struct.pack('<Q', bits) + b'\x10' + varint(ts))
    return bytes(out)


def snappy_literals(data):
    """The snappy block format, literals only: varint length, then literal elements."""
    out = bytearray(varint(len(data)))
    for i in range(0, len(data), 65536):
        chunk = data[i:i + 65536]
        n = len(chunk) - 1
        if n < 60:
            out.append(n << 2)
        elif n < 1 << 8:
            out += bytes([60 << 2, n])
        elif n < 1 << 16:
            out += bytes([61 << 2]) + struct.pack('<H', n)
        elif n < 1 << 24:
            out += bytes([62 << 2]) + struct.pack('<I', n)[:3]
        else:
            out += bytes([63 << 2]) + struct.pack('<I', n)
        out += chunk
    return bytes(out)


def remote_write(port, body):
    req = urllib.request.Request('http://127.0.0.1:%d/api/v1/write' % port, data=body, method='POST', headers={
        'Content-Encoding': 'snappy', 'Content-Type': 'application/x-protobuf',
        'X-Prometheus-Remote-Write-Version': '0.1.0'})
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


# --------------------------------------------------------------------------
# The data set.

class Data:
    def __init__(self, seed, t_end):
        rng = random.Random(seed)
        self.t_end = t_end                    # seconds, whole minute, >= 1 min before now
        self.t_start = t_end - 50 * 60
        E, S = t_end * 1000, self.t_start * 1000
        self.series = []                      # (labels, [(ms, bits)])
        self.catalog = {}                     # name -> {label: set(values)}

        def add(labels, samples):
            self.series.append((labels, samples))
            lab = self.catalog.setdefault(labels['__name__'], {})
            for k, v in labels.items():
                if k != '__name__':
                    lab.setdefault(k, set()).add(v)

        def regular(step_s, phase_s, start=S, end=E):
            t = start + phase_s * 1000
            out = []
            while t <= end:
                out.append(t)
                t += step_s * 1000
            return out

        # Counters with resets, 15 s scrapes (two phases), and a second
        # metric name with the same label sets (job="api").
        self.instances = ['10.0.0.1:8080', '10.0.0.2:8080']
        for job in ('api', 'web'):
            for ii, inst in enumerate(self.instances):
                for code in ('200', '500'):
                    ts = regular(15, 7 * ii)
                    v = float(rng.randint(1000, 5000) if code == '200' else rng.randint(0, 40))
                    resets = set(rng.sample(range(len(ts)), rng.choice([0, 1, 2])))
                    samples = []
                    for k, t in enumerate(ts):
                        if k in resets:
                            v = float(rng.randint(0, 5))
                        else:
                            v += rng.randint(0, 30) if code == '200' else rng.randint(0, 3)
                        samples.append((t, f2b(v)))
                    add({'__name__': 'http_requests_total', 'job': job, 'instance': inst, 'code': code}, samples)
                    if job == 'api':
                        fv, fs = 0.0, []
                        for k, t in enumerate(ts):
                            fv = 0.0 if k == 100 and code == '500' else fv + rng.randint(0, 2)
                            fs.append((t, f2b(fv)))
                        add({'__name__': 'http_requests_failed_total', 'job': job, 'instance': inst,
                             'code': code}, fs)
        # Irregular scrapes (10-20 s, millisecond stamps), decimal increments, one reset.
        for inst in ('n1:9100', 'n2:9100'):
            for mode in ('idle', 'user', 'system'):
                t, v, samples = S + rng.randint(0, 9999), rng.uniform(100, 1000), []
                reset_at = E - 23 * 60 * 1000 if (inst, mode) == ('n2:9100', 'user') else None
                while t <= E:
                    if reset_at is not None and t >= reset_at:
                        v, reset_at = round(rng.uniform(0, 2), 2), None
                    else:
                        v += round(rng.uniform(0, 15), 2)
                    samples.append((t, f2b(v)))
                    t += rng.randint(10000, 20000)
                add({'__name__': 'node_cpu_seconds_total', 'job': 'node', 'instance': inst, 'mode': mode}, samples)
        # Gauges going negative (tenths), and a second name with the same label sets.
        for ri, room in enumerate(('lab', 'server room', 'roof')):
            ts = regular(30, 3 + ri)
            add({'__name__': 'temperature_celsius', 'job': 'sensors', 'instance': 's1', 'room': room},
                [(t, f2b(round(12 * math.sin(k / 20 + ri) - 4 + rng.uniform(-1, 1), 1))) for k, t in enumerate(ts)])
            add({'__name__': 'humidity_percent', 'job': 'sensors', 'instance': 's1', 'room': room},
                [(t, f2b(round(rng.uniform(20, 80), 2))) for t in ts])
        # A histogram: cumulative buckets, _sum, _count.
        bounds = ['0.1', '0.5', '1', '+Inf']
        for ii, inst in enumerate(self.instances):
            ts = regular(15, 7 * ii)
            counts, total, ssum = [0] * 4, 0, 0.0
            rows = {b: [] for b in bounds}
            srows, crows = [], []
            for t in ts:
                for _ in range(rng.randint(0, 20)):
                    d = rng.expovariate(3)
                    ssum += round(d, 3)
                    total += 1
                    for bi, b in enumerate(bounds):
                        if b == '+Inf' or d <= float(b):
                            counts[bi] += 1
                for bi, b in enumerate(bounds):
                    rows[b].append((t, f2b(float(counts[bi]))))
                srows.append((t, f2b(ssum)))
                crows.append((t, f2b(float(total))))
            for b in bounds:
                add({'__name__': 'request_duration_seconds_bucket', 'job': 'api', 'instance': inst, 'le': b}, rows[b])
            add({'__name__': 'request_duration_seconds_sum', 'job': 'api', 'instance': inst}, srows)
            add({'__name__': 'request_duration_seconds_count', 'job': 'api', 'instance': inst}, crows)
        # Stops 20 minutes before the end; starts 10 minutes before it.
        self.short_end = E - 20 * 60 * 1000
        add({'__name__': 'batch_last_success', 'job': 'batch', 'instance': 'b1'},
            [(t, f2b(float(t // 1000))) for t in regular(60, 0, S, self.short_end)])
        v, late = 0.0, []
        for t in regular(15, 2, E - 10 * 60 * 1000):
            v += rng.randint(1, 9)
            late.append((t, f2b(v)))
        add({'__name__': 'late_starter_total', 'job': 'batch', 'instance': 'b2'}, late)
        # A gap of 8 minutes (longer than the lookback).
        v, gap = 50.0, []
        for t in regular(20, 5):
            if E - 30 * 60 * 1000 < t < E - 22 * 60 * 1000:
                continue
            v = round(v + rng.uniform(-3, 3), 2)
            gap.append((t, f2b(v)))
        add({'__name__': 'gappy_gauge', 'job': 'gap', 'instance': 'g1'}, gap)
        # Stale markers: s1 ends with one; s2 has one, then resumes.
        self.stale1 = E - 15 * 60 * 1000
        st = [(t, f2b(float(rng.randint(0, 100)))) for t in regular(15, 0, S, self.stale1 - 1)]
        st.append((self.stale1, STALE_NAN))
        add({'__name__': 'stale_gauge', 'job': 'stale', 'instance': 's1'}, st)
        st = [(t, f2b(float(rng.randint(0, 100)))) for t in regular(15, 0, S, E - 25 * 60 * 1000 - 1)]
        st.append((E - 25 * 60 * 1000, STALE_NAN))
        st += [(t, f2b(float(rng.randint(0, 100)))) for t in regular(15, 0, E - 20 * 60 * 1000)]
        add({'__name__': 'stale_gauge', 'job': 'stale', 'instance': 's2'}, st)
        # NaN, +Inf, -Inf in one gauge.
        sp = []
        for k, t in enumerate(regular(15, 11)):
            if k % 17 == 5:
                bits = NORMAL_NAN
            elif k % 23 == 7:
                bits = f2b(math.inf)
            elif k % 29 == 11:
                bits = f2b(-math.inf)
            else:
                bits = f2b(round(rng.uniform(-50, 50), 3))
            sp.append((t, bits))
        add({'__name__': 'special_values', 'job': 'special', 'instance': 'x1'}, sp)
        # Awkward floats.
        kinds = {
            'tenths': [0.1, 0.2, 0.1 + 0.2, 0.7, 1 / 3, 1e-7, 2.675, 1.1 * 3],
            'big': [2.0 ** 53, 2.0 ** 53 + 2, 1e21, 123456789012345678.0, 1e15 + 0.3, 1.7976931348623157e308,
                    4.5e15, 99999999999999999999.0],
            'tiny': [5e-324, 1e-300, 2.5e-5, -0.0, 0.0, -1e-9, 1e-5, 123e-20],
        }
        for kind, vals in kinds.items():
            add({'__name__': 'float_values', 'job': 'float', 'kind': kind},
                [(t, f2b(vals[k % len(vals)])) for k, t in enumerate(regular(15, 4))])
        # Label values that need escaping in selectors.
        self.paths = ['/a"b', 'C:\\dir', 'line\nbreak', 'ünïcode', 'dot.star']
        for pi, p in enumerate(self.paths):
            add({'__name__': 'escaped_labels', 'job': 'esc', 'path': p},
                [(t, f2b(float(pi * 10 + k % 7))) for k, t in enumerate(regular(30, 1))])
        # A recording-rule style name.
        add({'__name__': 'job:up:sum', 'job': 'api'}, [(t, f2b(float(1 + k % 2))) for k, t in enumerate(regular(60, 0))])

    def requests(self, windows=5):
        """WriteRequest bodies (snappy), one per time window, in time order."""
        S, E = self.t_start * 1000, self.t_end * 1000
        span = (E - S) // windows + 1
        bodies = []
        for w in range(windows):
            lo, hi = S + w * span, S + (w + 1) * span
            pb = bytearray()
            for labels, samples in self.series:
                part = [s for s in samples if lo <= s[0] < hi]
                if part:
                    pb += pb_len(1, encode_series(labels, part))
            bodies.append(snappy_literals(bytes(pb)))
        return bodies


# --------------------------------------------------------------------------
# Queries: a grammar of the documented subset.

def pq_str(v):
    return '"' + v.replace('\\', '\\\\').replace('"', '\\"').replace('\n', '\\n') + '"'


def re_escape(v):
    out = []
    for c in v:
        out.append('\\' + c if c in '\\.+*?()|[]{}^$' else c)
    return ''.join(out)


class Gen:
    RANGES = ['1m', '5m', '90s', '17s']
    RANGE_FNS = ['rate', 'irate', 'increase', 'delta', 'avg_over_time', 'min_over_time', 'max_over_time',
                 'sum_over_time', 'count_over_time', 'last_over_time']
    AGGS = ['sum', 'avg', 'min', 'max', 'count']
    ARITH = ['+', '-', '*', '/', '%', '^']
    CMP = ['>', '<', '>=', '<=', '==', '!=']
    SCALARS = ['0', '1', '2', '0.5', '3', '10', '100', '-1', '1e3', '0.1', '7', '-2.5', '1000']
    # Pairs of names whose label sets (mostly) line up, for vector-vector operations.
    PAIRS = [('http_requests_total', 'http_requests_failed_total'),
             ('temperature_celsius', 'humidity_percent'),
             ('request_duration_seconds_sum', 'request_duration_seconds_count'),
             ('http_requests_total', 'http_requests_total')]

    def __init__(self, rng, catalog):
        self.r = rng
        self.cat = {n: {k: sorted(v) for k, v in labs.items()} for n, labs in catalog.items()}
        self.names = sorted(self.cat)
        self.all_labels = sorted({k for labs in self.cat.values() for k in labs})

    def matcher(self, name):
        r = self.r
        labs = self.cat[name]
        if r.random() < 0.1 or not labs:
            return '%s%s%s' % (r.choice(['foo', 'job']), r.choice(['=', '!=', '=~']),
                               pq_str(r.choice(['', 'bar', 'nope'])))
        k = r.choice(sorted(labs))
        vals = labs[k]
        v = r.choice(vals)
        op = r.choice(['=', '!=', '=~', '!~'])
        if op in ('=', '!='):
            return '%s%s%s' % (k, op, pq_str(v if r.random() < 0.9 else ''))
        choice = r.random()
        if choice < 0.25:
            rex = re_escape(v)
        elif choice < 0.4 and len(vals) > 1:
            rex = '|'.join(re_escape(x) for x in r.sample(vals, 2))
        elif choice < 0.6 and len(v) > 2:
            rex = re_escape(v[1:-1]) if r.random() < 0.5 else re_escape(v[:2])   # matches only unanchored
        elif choice < 0.75 and len(v) > 1:
            rex = re_escape(v[:1]) + '.*'
        else:
            rex = r.choice(['.*', '.+', '', '[0-9]+', '.*0.*', '(?i)' + re_escape(v.upper())])
        return '%s%s%s' % (k, op, pq_str(rex))

    def selector(self, name=None):
        r = self.r
        name = name or r.choice(self.names)
        ms = [self.matcher(name) for _ in range(r.choice([0, 0, 1, 1, 2]))]
        if r.random() < 0.08:
            rex = r.choice(['http_.*', '.*_total', 'temperature_celsius|humidity_percent',
                            'request_duration_seconds_.*', 'http_requests', 'stale_gauge', 'node_cpu.*'])
            return '{%s}' % ', '.join(['__name__=~' + pq_str(rex)] + (ms or ['job!="nope"']))
        if r.random() < 0.03:
            return '{%s}' % ', '.join(['__name__=' + pq_str(name)] + ms)
        return name + ('{%s}' % ', '.join(ms) if ms or r.random() < 0.1 else '')

    def offset(self):
        return ' offset ' + self.r.choice(['5m', '30s', '1m', '10m']) if self.r.random() < 0.15 else ''

    def range_sel(self, name=None):
        return self.selector(name) + '[' + self.r.choice(self.RANGES) + ']' + self.offset()

    def scalar(self, depth=0):
        r = self.r
        x = r.random()
        if depth > 0 and x < 0.06:
            return 'scalar(%s)' % self.vector(depth - 1)
        if x < 0.1:
            return 'time()'
        return r.choice(self.SCALARS)

    def grouping(self):
        r = self.r
        labs = r.sample(self.all_labels, r.choice([0, 1, 1, 2]))
        if r.random() < 0.05:
            labs.append('__name__')
        return '%s (%s)' % (r.choice(['by', 'by', 'without']), ', '.join(labs))

    def vector(self, depth=2):
        r = self.r
        x = r.random()
        if depth <= 0 or x < 0.15:
            return self.selector() + self.offset()
        if x < 0.38:
            return '%s(%s)' % (r.choice(self.RANGE_FNS), self.range_sel())
        if x < 0.55:
            agg, inner, g = r.choice(self.AGGS), self.vector(depth - 1), self.grouping()
            if r.random() < 0.2:
                return '%s(%s)' % (agg, inner)
            return '%s %s (%s)' % (agg, g, inner) if r.random() < 0.6 else '%s(%s) %s' % (agg, inner, g)
        if x < 0.7:
            op, s, v = r.choice(self.ARITH), self.scalar(depth), self.vector(depth - 1)
            return '%s %s %s' % (v, op, s) if r.random() < 0.6 else '%s %s %s' % (s, op, v)
        if x < 0.82:
            op, s, v = r.choice(self.CMP), self.scalar(depth), self.vector(depth - 1)
            b = ' bool' if r.random() < 0.4 else ''
            return '%s %s%s %s' % (v, op, b, s) if r.random() < 0.7 else '%s %s%s %s' % (s, op, b, v)
        if x < 0.92:
            return self.vector_vector(depth)
        if x < 0.96:
            return 'abs(%s)' % self.vector(depth - 1)
        return '-(%s)' % self.vector(depth - 1) if r.random() < 0.5 else '(%s)' % self.vector(depth - 1)

    def vector_vector(self, depth):
        r = self.r
        a, b = r.choice(self.PAIRS)
        op = r.choice(self.ARITH + self.CMP)
        if op in self.CMP and r.random() < 0.4:
            op += ' bool'
        x = r.random()
        if x < 0.35:
            fn = r.choice(['rate', 'increase', 'delta', 'avg_over_time', 'max_over_time'])
            rng_ = r.choice(self.RANGES)
            lhs, rhs = '%s(%s[%s])' % (fn, a, rng_), '%s(%s[%s])' % (fn, b, rng_)
        elif x < 0.7:
            agg, g = r.choice(self.AGGS), r.choice(['job', 'instance', 'job, instance', 'room', 'code'])
            lhs, rhs = '%s by (%s) (%s)' % (agg, g, a), '%s by (%s) (%s)' % (r.choice(self.AGGS), g, b)
        else:
            lhs, rhs = self.selector(a), self.selector(b)
        mod = r.choice(['', '', '', ' on (job, instance)', ' ignoring (code)', ' on ()', ' ignoring (room)',
                        ' on (job)', ' ignoring (le)'])
        return '%s %s%s %s' % (lhs, op, mod, rhs)


def hand_written(d):
    """Edge cases, each (query, unsupported?)."""
    ok = [
        # selectors and matchers
        'http_requests_total', 'http_requests_total{code="200"}', 'http_requests_total{code=~"2.."}',
        'http_requests_total{code=~"0"}', 'http_requests_total{code=~"20"}', 'http_requests_total{code!~"0"}',
        'http_requests_total{instance=~"10.0.0.1"}', 'http_requests_total{instance=~"8080"}',
        'http_requests_total{instance!~"10\\\\.0\\\\.0\\\\.1:.*"}', 'http_requests_total{code!=""}',
        'http_requests_total{code=""}', 'http_requests_total{nope=""}', 'http_requests_total{nope!=""}',
        'http_requests_total{job=~"api|web", code!="200"}', 'http_requests_total{job=~"API"}',
        'http_requests_total{job=~"(?i)API"}', 'http_requests_total{job=~"a.*|"}',
        '{__name__=~"http_.*"}', '{__name__=~"http_requests_.*", job="api"}', '{__name__="http_requests_total"}',
        '{job="api"}', '{__name__=~".*_total", code="500"}', '{__name__=~"http"}', '{__name__!~".*"}',
        'http_requests_total{job="nope"}', 'http_requests_total{job="api",}', 'job:up:sum', 'job:up:sum{job="api"}',
        'escaped_labels', 'escaped_labels{path="/a\\"b"}', 'escaped_labels{path="C:\\\\dir"}',
        'escaped_labels{path="line\\nbreak"}', "escaped_labels{path='/a\"b'}", 'escaped_labels{path=`C:\\dir`}',
        'escaped_labels{path=~"dot.star"}', 'escaped_labels{path=~"dot\\\\.star"}', 'escaped_labels{path=~"dot"}',
        'escaped_labels{path="ünïcode"}', 'escaped_labels{path=~"\\\\p{L}+"}', 'escaped_labels{path=~"C:\\\\\\\\dir"}',
        'escaped_labels{path=~"line.break"}', 'escaped_labels{path=~"(?s)line.break"}', 'escaped_labels{path=~"\\\\x2fa.b"}',
        'escaped_labels{path=~"/a\\"b"}', 'escaped_labels{path="\\u00fcn\\u00efcode"}',
        # range functions
        'rate(http_requests_total[5m])', 'irate(http_requests_total[1m])', 'increase(http_requests_total[90s])',
        'rate(http_requests_total[17s])', 'increase(http_requests_total[1h])', 'rate(http_requests_failed_total[5m])',
        'rate(node_cpu_seconds_total[17s])', 'rate(node_cpu_seconds_total[1m])', 'irate(node_cpu_seconds_total[1m])',
        'increase(node_cpu_seconds_total{mode="user"}[5m])', 'delta(node_cpu_seconds_total[90s])',
        'delta(temperature_celsius[5m])', 'delta(temperature_celsius[17s])', 'delta(temperature_celsius[31s])',
        'rate(temperature_celsius[5m])', 'rate(late_starter_total[5m])', 'increase(late_starter_total[10m])',
        'increase(late_starter_total[1h])', 'rate(batch_last_success[5m])', 'rate(request_duration_seconds_bucket[5m])',
        'avg_over_time(special_values[5m])', 'max_over_time(special_values[5m])', 'min_over_time(special_values[5m])',
        'sum_over_time(special_values[5m])', 'count_over_time(special_values[1m])', 'last_over_time(special_values[1m])',
        'rate(special_values[5m])', 'delta(special_values[5m])', 'irate(special_values[1m])',
        'special_values', 'special_values * 0', 'special_values > 0', 'special_values != 0', 'special_values == bool 0',
        'special_values + special_values', 'special_values == special_values', 'abs(special_values)',
        'float_values', 'float_values + 0', 'sum(float_values)', 'avg(float_values)', 'max(float_values)',
        'sum_over_time(float_values[5m])', 'avg_over_time(float_values[5m])', 'avg_over_time(float_values[1m])',
        '-float_values', 'float_values * -1', 'float_values / 3', 'float_values % 0.3', 'float_values ^ 2',
        'delta(float_values[5m])', 'min_over_time(float_values[5m])', 'float_values * 10', 'float_values / 1e300',
        'stale_gauge', 'count_over_time(stale_gauge[5m])', 'last_over_time(stale_gauge[5m])',
        'max_over_time(stale_gauge[10m])', 'stale_gauge offset 5m', 'avg_over_time(stale_gauge[30s])',
        'gappy_gauge', 'rate(gappy_gauge[5m])', 'delta(gappy_gauge[5m])', 'count_over_time(gappy_gauge[5m])',
        'last_over_time(gappy_gauge[10m])', 'batch_last_success', 'time() - batch_last_success',
        'last_over_time(batch_last_success[30m])', 'count_over_time(batch_last_success[30m])',
        'late_starter_total', 'late_starter_total offset 10m',
        # offsets
        'http_requests_total offset 5m', 'rate(http_requests_total[5m] offset 5m)', 'http_requests_total offset 30s',
        'http_requests_total offset -5m', 'rate(http_requests_total[1m] offset -1m)', 'http_requests_total offset 1h',
        'http_requests_total offset 0s', 'sum(http_requests_total offset 5m) by (job)',
        # aggregations
        'sum(rate(http_requests_total[5m]))', 'sum by (job) (rate(http_requests_total[5m]))',
        'sum(rate(http_requests_total[5m])) by (job, code)', 'sum without (instance) (rate(http_requests_total[5m]))',
        'avg by (mode) (rate(node_cpu_seconds_total[5m]))', 'max by (le) (request_duration_seconds_bucket)',
        'min without (le) (request_duration_seconds_bucket)', 'count by (__name__) ({job="api"})',
        'count({__name__=~".+"})', 'sum by (nonexistent) (http_requests_total)', 'sum by () (http_requests_total)',
        'sum without () (http_requests_total)', 'count without (job, instance, code) (http_requests_total)',
        'avg(temperature_celsius)', 'avg(special_values)', 'sum(special_values)', 'min(special_values)',
        'max without (room) (temperature_celsius)', 'sum without (__name__) ({job="api"})',
        'sum by (__name__) ({__name__=~"http_.*"})', 'count(count by (job) (http_requests_total))',
        'avg by (job) (http_requests_total) - min by (job) (http_requests_total)', 'sum(http_requests_total{job="nope"})',
        'SUM(http_requests_total)', 'sum BY (job) (http_requests_total)', 'max(float_values) by (kind)',
        # comparisons
        'sum by (job) (rate(http_requests_total[5m])) > 1', 'sum by (job) (rate(http_requests_total[5m])) > bool 1',
        '1 < sum by (job) (rate(http_requests_total[5m]))', 'temperature_celsius < 0', 'temperature_celsius <= bool 0',
        'temperature_celsius == -4', 'temperature_celsius != 0', '5 >= bool temperature_celsius',
        'http_requests_total > 1000 < 3000', '(http_requests_total > 1000) * 2',
        # arithmetic and scalars
        '2 * http_requests_total', 'http_requests_total / 0', '0 / http_requests_total', 'http_requests_total % 7',
        'http_requests_total ^ 0.5', '-http_requests_total', '- - http_requests_total', '+http_requests_total',
        '2 ^ 3 ^ 2', '-2 ^ 2', '1 + 2 * 3', '(1 + 2) * 3', '5 % 3', '-5 % 3', '5.5 % -2', '1 / 0', '-1/0', '0/0',
        '1 > bool 2', '2 == bool 2', '1e3', '0x1F', 'Inf', '-Inf', 'NaN', '.5', '1.5e-3', '1_000', '0.1 + 0.2',
        '2 ^ 0.5', '10 % 0', '(((1)))', '3 - -2', '1 - 2 - 3', '2 * 3 % 4', '1e309', '-0', '0 * -1',
        'time()', 'time() - 60', 'vector(1)', 'vector(time())', 'vector(1) + 1', 'scalar(sum(http_requests_total))',
        'scalar(http_requests_total)', 'scalar(vector(3)) * 2', 'abs(temperature_celsius)', 'abs(-temperature_celsius)',
        'http_requests_total * scalar(job:up:sum)', 'time() - time()',
        # vector-vector
        'http_requests_total / http_requests_failed_total', 'http_requests_failed_total / ignoring(code) http_requests_total',
        'sum by (job) (http_requests_total) / on(job) sum by (job) (http_requests_failed_total)',
        'rate(http_requests_total[5m]) > on(job, instance, code) rate(http_requests_failed_total[5m])',
        'http_requests_total > bool http_requests_failed_total', 'http_requests_total > http_requests_failed_total',
        'request_duration_seconds_sum / request_duration_seconds_count',
        'rate(request_duration_seconds_sum[5m]) / rate(request_duration_seconds_count[5m])',
        'temperature_celsius - humidity_percent', 'sum(temperature_celsius) / on() sum(humidity_percent)',
        'temperature_celsius - on(room) humidity_percent', 'humidity_percent - ignoring(job) temperature_celsius',
        'temperature_celsius - on(job) humidity_percent', 'http_requests_total - http_requests_total',
        'http_requests_total == http_requests_total', 'vector(1) + vector(2)', 'vector(1) + on() sum(http_requests_total)',
        'sum by (job) (http_requests_total) / ignoring(job) sum by (job) (http_requests_total)',
        'stale_gauge - stale_gauge offset 5m', 'late_starter_total - late_starter_total offset 1m',
        'request_duration_seconds_bucket / ignoring(le) request_duration_seconds_count',
        # one side empty (Prometheus matches nothing, whatever the other side holds)
        'nope * on(job) humidity_percent', 'humidity_percent * on(job) nope', 'nope > bool ignoring(room) humidity_percent',
        # names dropped: two series of one label set
        '0 * {__name__=~"http_requests_total|http_requests_failed_total"}',
        '-{__name__=~"http_requests_total|http_requests_failed_total"}',
        '{__name__=~"http_requests_total|http_requests_failed_total"} > bool 0',
        '{__name__=~"http_requests_total|http_requests_failed_total"} > 0',
        'abs({__name__=~"http_requests_total|http_requests_failed_total"})',
        'last_over_time({__name__=~"http_requests_total|http_requests_failed_total"}[1m])',
        'sum by (code) (2 * {__name__=~"http_requests_total|http_requests_failed_total"})',
        # more syntax
        '{__name__!="http_requests_total", job="api"}', '{job=~".*"}', 'request_duration_seconds_bucket{le="+Inf"}',
        'scalar(nope)', 'vector(scalar(nope))', '-vector(1)', 'special_values != NaN', 'special_values > bool NaN',
        'rate(http_requests_total[1m30s])', 'rate(http_requests_total[90000ms])', 'rate(http_requests_total[1.5m])',
        'http_requests_total offset 1d', 'http_requests_total # a comment', 'sum by (job)\n(\n  http_requests_total\n)',
        'inf', 'nan', '+1', '1e-3', '1e21', 'vector(1e21)', 'vector(1e-7)', 'vector(2 ^ 60)', 'vector(1e20 / 3)',
        '6 ^ -2.5', 'vector(6) ^ -2.5', 'vector(-0)', 'http_requests_total offset 5m offset 1m', 'rate(http_requests_total[5m] offset -90s)',
        # instants of ranges; errors
        'http_requests_total[5m]', 'special_values[1m]', 'stale_gauge[1m] offset 10m', 'rate(http_requests_total)',
        'sum(', 'rate(http_requests_total[5m]', 'foo_bar(http_requests_total)', 'http_requests_total{', '{}',
        '{code=""}', '{__name__=~".*"}', 'http_requests_total[0s]', 'http_requests_total[5]', '1 +', ')', '"a string"',
        'rate(http_requests_total[5m]) offset 5m', 'sum by (job) rate(http_requests_total[5m])', '1 > 2', 'abs(-3)',
        'rate({__name__=~"http_requests_total|http_requests_failed_total"}[5m])',
        'sum by (job) (rate({__name__=~"http_.*"}[5m]))', 'http_requests_total{code=~"("}', 'sum(1)', 'avg(vector(1)[5m])',
        'rate(http_requests_total[5m][5m])', 'count_over_time(1[5m])', 'sum by (1) (x)',
        'http_requests_total offset', 'http_requests_total[5m] + 1', 'rate(1)', 'vector("a")', 'scalar(1)',
        'time(1)', 'abs()', 'abs(x, y)', 'x{a="b" c="d"}', 'x{a~"b"}', '123abc', '@', 'sum without(job) ()',
    ]
    unsupported = [
        'histogram_quantile(0.9, rate(request_duration_seconds_bucket[5m]))',
        'http_requests_total and http_requests_failed_total', 'http_requests_total or http_requests_failed_total',
        'http_requests_total unless http_requests_failed_total', 'rate(http_requests_total[5m:1m])',
        'http_requests_total[1m:]',
        'http_requests_total @ %d' % (d.t_end - 600), 'topk(2, http_requests_total)', 'sort(http_requests_total)',
        'http_requests_total / on(job, instance) group_left sum by (job, instance) (http_requests_total)',
        'label_replace(http_requests_total, "x", "$1", "job", "(.*)")', 'stddev(http_requests_total)',
        'quantile(0.5, http_requests_total)', 'count_values("v", job:up:sum)', 'round(temperature_celsius)',
        'changes(http_requests_total[5m])', 'resets(http_requests_total[5m])', 'deriv(temperature_celsius[5m])',
        'absent(nope)', 'group(http_requests_total)', 'clamp_min(temperature_celsius, 0)', 'ceil(float_values)',
        'quantile_over_time(0.5, temperature_celsius[5m])', 'stddev_over_time(temperature_celsius[5m])',
        'predict_linear(temperature_celsius[5m], 60)', 'timestamp(http_requests_total)', 'sgn(temperature_celsius)',
    ]
    return [(q, False) for q in ok] + [(q, True) for q in unsupported]


# --------------------------------------------------------------------------
# Asking both, comparing.

def ask(port, path, params, post=False):
    url = 'http://127.0.0.1:%d%s' % (port, path)
    body = urllib.parse.urlencode(params, doseq=True)
    if post:
        req = urllib.request.Request(url, data=body.encode(), method='POST',
                                     headers={'Content-Type': 'application/x-www-form-urlencoded'})
    else:
        req = urllib.request.Request(url + ('?' + body if body else ''))
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            raw = r.read()
            status = r.status
    except urllib.error.HTTPError as e:
        raw, status = e.read(), e.code
    except OSError as e:
        return 0, {'error': 'transport: %s' % e}
    try:
        return status, json.loads(raw or b'{}')
    except ValueError:
        return status, {'error': raw.decode('utf-8', 'replace')[:300]}


def mkey(x):
    return json.dumps(x.get('metric', x), sort_keys=True, ensure_ascii=False)


def normalize(data, multiset):
    if isinstance(data, dict) and data.get('resultType') in ('vector', 'matrix') and multiset:
        return dict(data, result=sorted(data['result'], key=mkey))
    if isinstance(data, list) and multiset and data and isinstance(data[0], dict):
        return sorted(data, key=lambda m: json.dumps(m, sort_keys=True, ensure_ascii=False))
    return data


def numeric_close(a, b, tol=1e-9):
    """Both data alike but for value strings that read as numbers within `tol`
    (relative; tol 0: the same double written differently)?"""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(numeric_close(a[k], b[k], tol) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(numeric_close(x, y, tol) for x, y in zip(a, b))
    if isinstance(a, str) and a != b:
        try:
            x, y = float(a), float(b)
        except ValueError:
            return False
        if x == y or (math.isnan(x) and math.isnan(y)):
            return True
        if math.isnan(x) or math.isnan(y) or math.isinf(x) or math.isinf(y):
            return False
        return abs(x - y) <= tol * max(abs(x), abs(y), 1e-300)
    return a == b


def compare(p, m):
    """(verdict, note): verdict 'same', 'msg' (errors alike but for text) or a mismatch class."""
    (ps, pj), (ms, mj) = p, m
    if ps != ms:
        return 'status', ''
    if ps // 100 == 2:
        if pj.get('status') != mj.get('status'):
            return 'status', ''
        pd, md = pj.get('data'), mj.get('data')
        if pd == md:
            return 'same', ''
        if isinstance(pd, dict) and isinstance(md, dict) and pd.get('resultType') != md.get('resultType'):
            return 'resultType', ''
        if normalize(pd, True) == normalize(md, True):
            return 'order', ''
        if numeric_close(normalize(pd, True), normalize(md, True), 0):
            return 'format', 'the same doubles written differently'
        if numeric_close(normalize(pd, True), normalize(md, True)):
            return 'near', 'values differ only past the 9th significant digit'
        return 'data', ''
    if (pj.get('status'), pj.get('errorType')) != (mj.get('status'), mj.get('errorType')):
        return 'errorType', ''
    if pj.get('error') != mj.get('error'):
        return 'msg', ''
    return 'same', ''


AGG_SUM_AVG = re.compile(r'\b(sum|avg)\s*(\(|by|without)', re.I)


def trim(j, n=700):
    s = json.dumps(j, ensure_ascii=False)
    return s if len(s) <= n else s[:n] + '...'


def diff_hint(pj, mj):
    """The first differing series/point of two successful answers (for the report)."""
    pd, md = (pj or {}).get('data'), (mj or {}).get('data')
    if not (isinstance(pd, dict) and isinstance(md, dict)):
        return ''
    if pd.get('resultType') not in ('vector', 'matrix') or md.get('resultType') not in ('vector', 'matrix'):
        return 'prom %s | monitord %s' % (trim(pd.get('result'), 200), trim(md.get('result'), 200))
    pr = normalize(pd, True).get('result')
    mr = normalize(md, True).get('result')
    if not (isinstance(pr, list) and isinstance(mr, list)):
        return 'prom %s | monitord %s' % (trim(pr, 200), trim(mr, 200))
    pk = {mkey(x): x for x in pr}
    mk = {mkey(x): x for x in mr}
    only_p = [k for k in pk if k not in mk]
    only_m = [k for k in mk if k not in pk]
    if only_p or only_m:
        return 'series only in prometheus %s; only in monitord %s' % (only_p[:3], only_m[:3])
    for k in pk:
        a, b = pk[k], mk[k]
        if a == b:
            continue
        if 'values' in a and 'values' in b:
            av, bv = dict((x[0], x[1]) for x in a['values']), dict((x[0], x[1]) for x in b['values'])
            ts = sorted(set(av) | set(bv))
            diffs = [(t, av.get(t), bv.get(t)) for t in ts if av.get(t) != bv.get(t)]
            return '%s: %d points differ, first %s' % (k, len(diffs), diffs[:3])
        return '%s: prom %s | monitord %s' % (k, a.get('value'), b.get('value'))
    return ''


class Runner:
    def __init__(self, pport, mport, deadline):
        self.pport, self.mport, self.deadline = pport, mport, deadline
        self.mismatches = []       # dicts, for the report and mismatches.json
        self.msg_diffs = []        # error text only
        self.near_aggs = []        # sum/avg values equal to ~1e-9: order of addition
        self.near_pow = []         # ^ with a fractional exponent: Go's exp/log
        self.requests = 0
        self.nonempty = 0          # Prometheus answered with a non-empty result
        self.prom_errors = 0       # Prometheus answered with an error
        self.queries = 0

    def pair(self, path, params, post=False):
        self.requests += 1
        p = ask(self.pport, path, params, post)
        if p[0] // 100 != 2:
            self.prom_errors += 1
        elif (p[1].get('data') or {}).get('result') if isinstance(p[1].get('data'), dict) else p[1].get('data'):
            self.nonempty += 1
        return p, ask(self.mport, path, params, post)

    def run_query(self, name, calls, unsupported=False):
        """calls: [(path, params, post, multiset)]. One check for all of them."""
        name = name.replace('\n', '\\n')
        self.queries += 1
        bad, unsup_ok = [], True
        for path, params, post, multiset in calls:
            p, m = self.pair(path, params, post)
            if multiset:
                for x in (p, m):
                    if x[0] // 100 == 2 and isinstance(x[1].get('data'), dict):
                        x[1]['data'] = normalize(x[1]['data'], True)
            verdict, note = compare(p, m)
            if verdict == 'same':
                continue
            if verdict == 'msg':
                self.msg_diffs.append((name, path, p[1].get('error'), m[1].get('error')))
                continue
            if verdict == 'near' and AGG_SUM_AVG.search(name) and '^' not in name:
                # sum/avg add in the order of their input, which Prometheus itself
                # takes from a Go map (random): the last bits differ run to run.
                self.near_aggs.append((name, path, diff_hint(p[1], m[1])))
                continue
            if (verdict == 'near' and '^' in name) or (verdict == 'data' and '^' in name and '%' in name):
                # Go's math.Pow takes a fractional exponent through Go's own
                # Exp and Log (assembly on amd64), qcloud-monitord through the C
                # library's: an ulp or two apart. Whole exponents are squared
                # the same way on both and do not land here. A % of such a power
                # (1 % x ^ -2.5) turns the last bit into any remainder.
                self.near_pow.append((name, path, diff_hint(p[1], m[1])))
                continue
            if unsupported:
                # Documented as unsupported: a clean 400 bad_data is the expected answer.
                if not (m[0] == 400 and m[1].get('errorType') == 'bad_data'):
                    unsup_ok = False
                    bad.append((verdict, path, params, post, p, m, note))
                continue
            bad.append((verdict, path, params, post, p, m, note))
        if unsupported:
            check('unsupported %s: refused with 400 bad_data or answered as Prometheus' % name, unsup_ok,
                  bad[:1] and self.describe(bad[0]))
            return
        for b in bad:
            self.mismatches.append({'query': name, 'class': b[0], 'path': b[1], 'params': b[2], 'post': b[3],
                                    'prometheus': [b[4][0], b[4][1]], 'monitord': [b[5][0], b[5][1]],
                                    'note': b[6], 'hint': diff_hint(b[4][1], b[5][1])})
        check('%s (%d calls)' % (name, len(calls)), not bad,
              bad and '%d of %d calls differ; first: %s' % (len(bad), len(calls), self.describe(bad[0])))

    def describe(self, b):
        verdict, path, params, post, p, m, note = b
        return '[%s] %s %s %s\n    prometheus %s %s\n    monitord   %s %s\n    %s %s' % (
            verdict, 'POST' if post else 'GET', path, params, p[0], trim(p[1], 400), m[0], trim(m[1], 400), note,
            diff_hint(p[1], m[1]))


def fmt_s(ms):
    return '%d.%03d' % divmod(ms, 1000)


def rfc3339(ms, tz_offset_min=0):
    dt = datetime.fromtimestamp(ms / 1000, tz=timezone.utc)
    if tz_offset_min:
        from datetime import timedelta
        dt = dt.astimezone(timezone(timedelta(minutes=tz_offset_min)))
        base = dt.strftime('%Y-%m-%dT%H:%M:%S')
        frac = '.%03d' % (ms % 1000) if ms % 1000 else ''
        sign = '+' if tz_offset_min > 0 else '-'
        return base + frac + '%s%02d:%02d' % (sign, abs(tz_offset_min) // 60, abs(tz_offset_min) % 60)
    return dt.strftime('%Y-%m-%dT%H:%M:%S') + ('.%03d' % (ms % 1000) if ms % 1000 else '') + 'Z'


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--monitord', help='the qcloud-monitord binary')
    ap.add_argument('--self-check', action='store_true',
                    help='a second Prometheus in qcloud-monitord\'s place: proves the harness (all must pass)')
    ap.add_argument('--prometheus', default='/usr/bin/prometheus')
    ap.add_argument('--seed', type=int, default=20420)
    ap.add_argument('--generated', type=int, default=300)
    ap.add_argument('--budget', type=float, default=55.0, help='seconds; generated queries stop past it')
    ap.add_argument('--verbose', action='store_true', help='print every mismatching call')
    a = ap.parse_args()
    if not a.monitord and not a.self_check:
        ap.error('--monitord or --self-check')
    if not os.path.exists(a.prometheus):
        print('SKIP: %s is not installed (scripts/install-deps.sh --with-tests)' % a.prometheus)
        return 0
    t_begin = time.time()
    work = tempfile.mkdtemp(prefix='qcloud-monitor-promql-')
    mport, pport = free_port(), free_port()
    with open(os.path.join(work, 'prometheus.yml'), 'w') as f:
        f.write('global:\n  scrape_interval: 15s\n  evaluation_interval: 15s\n')
    procs = []
    try:
        def start_prometheus(port, name):
            return subprocess.Popen([a.prometheus, '--config.file=' + os.path.join(work, 'prometheus.yml'),
                                     '--storage.tsdb.path=' + os.path.join(work, name),
                                     '--web.listen-address=127.0.0.1:%d' % port,
                                     '--web.enable-remote-write-receiver', '--log.level=warn'],
                                    stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, name + '.log'), 'w'))
        prom = start_prometheus(pport, 'prom')
        procs.append(prom)
        if a.self_check:
            monitord = start_prometheus(mport, 'prom2')
        else:
            monitord = subprocess.Popen([a.monitord, '--listen', '127.0.0.1:%d' % mport,
                                         '--data-dir', os.path.join(work, 'monitord')],
                                        stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, 'monitord.log'), 'w'))
        procs.append(monitord)
        wait_port(mport, monitord)
        wait_ready(pport, prom)
        if a.self_check:
            wait_ready(mport, monitord)

        now = int(time.time())
        d = Data(a.seed, now // 60 * 60 - 60)
        S, E = d.t_start * 1000, d.t_end * 1000
        bodies = d.requests()
        for i, body in enumerate(bodies):
            ps, pb = remote_write(pport, body)
            ms, mb = remote_write(mport, body)
            check('remote write %d/%d (%d bytes) taken by both (%d, %d)' % (i + 1, len(bodies), len(body), ps, ms),
                  ps // 100 == 2 and ms // 100 == 2, (pb[:200], mb[:200]))

        # Sanity: every series and every non-stale sample is in both.
        r = Runner(pport, mport, t_begin + a.budget)
        for port, who in ((pport, 'Prometheus'), (mport, 'qcloud-monitord')):
            s, j = get_json(port, '/api/v1/series', **{'match[]': '{__name__=~".+"}', 'start': fmt_s(S - 1000),
                                                       'end': fmt_s(E + 1000)})
            n = len(j.get('data') or [])
            check('%s holds all %d series (%d)' % (who, len(d.series), n), s == 200 and n == len(d.series), j)
            want = {}
            for labels, samples in d.series:
                want[labels['__name__']] = want.get(labels['__name__'], 0) + sum(b != STALE_NAN for _, b in samples)
            got = {}
            for name in want:
                s, j = get_json(port, '/api/v1/query', query='sum(count_over_time(%s[55m]))' % name,
                                time=fmt_s(E + 1000))
                res = (j.get('data') or {}).get('result') or []
                got[name] = int(float(res[0]['value'][1])) if res else 0
            check('%s holds every sample sent' % who, got == want, {k: (want[k], got.get(k)) for k in want
                                                                     if want[k] != got.get(k)})

        # Times and windows.
        t_in = E - 17 * 60 * 1000 + 4321
        t_after_end = d.short_end + 61500      # a minute after batch_last_success ended
        t_post = E + 150 * 1000                # after all data, inside the lookback
        instants = [t_in, t_after_end, t_post]
        extra_instants = [E + 6 * 60 * 1000, S + 30 * 1000 + 250, d.stale1 + 1000]
        ranges = [(S - 90 * 1000 + 700, E + 360 * 1000, 15), (S + 271300, E + 120 * 1000, 60),
                  (E - 1800 * 1000 + 11100, E + 30 * 1000, 37)]
        # Separate generators: the generated queries stay the same when the hand-written list changes.
        hand_rng, gen_rng = random.Random(a.seed + 1), random.Random(a.seed + 2)

        def calls_for(q, times, rgs, rng):
            calls = []
            for (st, en, step) in rgs:
                calls.append(('/api/v1/query_range', {'query': q, 'start': fmt_s(st), 'end': fmt_s(en),
                                                      'step': str(step)}, rng.random() < 0.2, False))
            for t in times:
                calls.append(('/api/v1/query', {'query': q, 'time': fmt_s(t)}, rng.random() < 0.2, True))
            return calls

        for q, unsup in hand_written(d):
            r.run_query('hand: %s' % q, calls_for(q, instants + extra_instants, ranges, hand_rng), unsupported=unsup)

        # API parameter edge cases.
        q = 'sum by (job) (rate(http_requests_total[5m]))'
        api_cases = [
            ('time RFC 3339', '/api/v1/query', {'query': q, 'time': rfc3339(t_in)}),
            ('time RFC 3339 whole seconds', '/api/v1/query', {'query': q, 'time': rfc3339(t_in // 1000 * 1000)}),
            ('time RFC 3339 with offset', '/api/v1/query', {'query': q, 'time': rfc3339(t_in, 120)}),
            ('time RFC 3339 nanoseconds', '/api/v1/query',
             {'query': q, 'time': rfc3339(t_in // 1000 * 1000)[:-1] + '.123456789Z'}),
            ('time float seconds', '/api/v1/query', {'query': q, 'time': '%.4f' % (t_in / 1000)}),
            ('time integer seconds', '/api/v1/query', {'query': q, 'time': str(t_in // 1000)}),
            ('time garbage', '/api/v1/query', {'query': q, 'time': 'yesterday'}),
            ('query missing', '/api/v1/query', {'time': fmt_s(t_in)}),
            ('query empty', '/api/v1/query', {'query': '', 'time': fmt_s(t_in)}),
            ('range RFC 3339 start/end', '/api/v1/query_range',
             {'query': q, 'start': rfc3339(S + 1234), 'end': rfc3339(E), 'step': '60'}),
            ('range float start/end', '/api/v1/query_range',
             {'query': q, 'start': '%.3f' % (S / 1000 + 0.5), 'end': '%.1f' % (E / 1000), 'step': '30'}),
            ('range step 15s', '/api/v1/query_range', {'query': q, 'start': fmt_s(S), 'end': fmt_s(E), 'step': '15s'}),
            ('range step 1m', '/api/v1/query_range', {'query': q, 'start': fmt_s(S), 'end': fmt_s(E), 'step': '1m'}),
            ('range step 1m30s', '/api/v1/query_range', {'query': q, 'start': fmt_s(S), 'end': fmt_s(E), 'step': '1m30s'}),
            ('range step 0.5 s', '/api/v1/query_range',
             {'query': q, 'start': fmt_s(E - 60000), 'end': fmt_s(E), 'step': '0.5'}),
            ('range step 2500ms', '/api/v1/query_range',
             {'query': q, 'start': fmt_s(E - 60000), 'end': fmt_s(E), 'step': '2500ms'}),
            ('range end < start', '/api/v1/query_range', {'query': q, 'start': fmt_s(E), 'end': fmt_s(S), 'step': '60'}),
            ('range end == start', '/api/v1/query_range', {'query': q, 'start': fmt_s(E), 'end': fmt_s(E), 'step': '60'}),
            ('range step 0', '/api/v1/query_range', {'query': q, 'start': fmt_s(S), 'end': fmt_s(E), 'step': '0'}),
            ('range step negative', '/api/v1/query_range', {'query': q, 'start': fmt_s(S), 'end': fmt_s(E), 'step': '-15'}),
            ('range step garbage', '/api/v1/query_range', {'query': q, 'start': fmt_s(S), 'end': fmt_s(E), 'step': 'x'}),
            ('range step missing', '/api/v1/query_range', {'query': q, 'start': fmt_s(S), 'end': fmt_s(E)}),
            ('range start missing', '/api/v1/query_range', {'query': q, 'end': fmt_s(E), 'step': '60'}),
            ('range > 11000 points', '/api/v1/query_range', {'query': q, 'start': fmt_s(S), 'end': fmt_s(E), 'step': '0.2'}),
            ('range exactly 11000 points', '/api/v1/query_range',
             {'query': 'vector(1)', 'start': fmt_s(E - 10999 * 1000), 'end': fmt_s(E), 'step': '1'}),
            ('range 11001 points', '/api/v1/query_range',
             {'query': 'vector(1)', 'start': fmt_s(E - 11000 * 1000), 'end': fmt_s(E), 'step': '1'}),
            ('range of a range vector', '/api/v1/query_range',
             {'query': 'http_requests_total[5m]', 'start': fmt_s(S), 'end': fmt_s(E), 'step': '60'}),
            ('range of a string', '/api/v1/query_range', {'query': '"s"', 'start': fmt_s(S), 'end': fmt_s(E), 'step': '60'}),
            ('unparsable query', '/api/v1/query', {'query': 'sum(rate(x[5m])', 'time': fmt_s(t_in)}),
            ('unknown function', '/api/v1/query', {'query': 'no_such_fn(http_requests_total)', 'time': fmt_s(t_in)}),
            ('unknown function in range', '/api/v1/query_range',
             {'query': 'no_such_fn(x)', 'start': fmt_s(S), 'end': fmt_s(E), 'step': '60'}),
        ]
        for name, path, params in api_cases:
            multiset = path == '/api/v1/query'
            r.run_query('api: %s' % name, [(path, params, False, multiset), (path, params, True, multiset)])

        meta_cases = [
            ('series match[] + start/end', '/api/v1/series',
             {'match[]': ['http_requests_total{job="api"}', 'stale_gauge'], 'start': fmt_s(S), 'end': fmt_s(E)}),
            ('series regex name', '/api/v1/series',
             {'match[]': '{__name__=~"request_duration.*"}', 'start': fmt_s(S), 'end': fmt_s(E)}),
            ('series last 5 minutes (short-lived series gone)', '/api/v1/series',
             {'match[]': ['{job="batch"}', '{job="stale"}'], 'start': fmt_s(E - 300000), 'end': fmt_s(E)}),
            ('series before the late starter', '/api/v1/series',
             {'match[]': '{job="batch"}', 'start': fmt_s(S), 'end': fmt_s(S + 600000)}),
            ('series escaped labels', '/api/v1/series', {'match[]': 'escaped_labels', 'start': fmt_s(S), 'end': fmt_s(E)}),
            ('series RFC 3339 window', '/api/v1/series',
             {'match[]': 'http_requests_total', 'start': rfc3339(S), 'end': rfc3339(E)}),
            ('series no match', '/api/v1/series', {'match[]': 'nope', 'start': fmt_s(S), 'end': fmt_s(E)}),
            ('series without match[]', '/api/v1/series', {'start': fmt_s(S), 'end': fmt_s(E)}),
            ('series bad match[]', '/api/v1/series', {'match[]': 'rate(x[5m])', 'start': fmt_s(S), 'end': fmt_s(E)}),
            ('series only empty matchers', '/api/v1/series', {'match[]': '{job=""}', 'start': fmt_s(S), 'end': fmt_s(E)}),
            ('series end < start', '/api/v1/series', {'match[]': 'up', 'start': fmt_s(E), 'end': fmt_s(S)}),
            ('series after all data', '/api/v1/series',
             {'match[]': 'http_requests_total', 'start': fmt_s(E + 600000), 'end': fmt_s(E + 900000)}),
            ('labels', '/api/v1/labels', {}),
            ('labels start/end', '/api/v1/labels', {'start': fmt_s(S), 'end': fmt_s(E)}),
            ('labels match[]', '/api/v1/labels', {'match[]': 'node_cpu_seconds_total', 'start': fmt_s(S), 'end': fmt_s(E)}),
            ('label __name__ values', '/api/v1/label/__name__/values', {}),
            ('label job values', '/api/v1/label/job/values', {}),
            ('label path values (escaping)', '/api/v1/label/path/values', {}),
            ('label le values', '/api/v1/label/le/values', {'match[]': 'request_duration_seconds_bucket'}),
            ('label code values match[] + start/end', '/api/v1/label/code/values',
             {'match[]': 'http_requests_total{job="api"}', 'start': fmt_s(S), 'end': fmt_s(E)}),
            # Over the whole data: with a window, Prometheus lists the values of
            # every matching series in a block that overlaps it (its head holds
            # all of these), qcloud-monitord of series with samples in it, as
            # /api/v1/series does on both.
            ('label instance values two match[]', '/api/v1/label/instance/values',
             {'match[]': ['{job="batch"}', '{job="stale"}'], 'start': fmt_s(S), 'end': fmt_s(E)}),
            ('label values unknown label', '/api/v1/label/nope/values', {}),
            ('label values bad name', '/api/v1/label/0bad/values', {}),
        ]
        for name, path, params in meta_cases:
            ms = path == '/api/v1/series'
            # Prometheus 2.42 takes label values by GET only (405 for POST): asked once below.
            r.run_query('api: %s' % name, [(path, params, False, ms)] +
                        ([(path, params, True, ms)] if '/api/v1/label/' not in path else []))
        r.run_query('api: label values by POST (Prometheus: GET only)',
                    [('/api/v1/label/job/values', {}, True, False)])

        # Prometheus's management endpoints, which probes ask.
        for path in ('/-/healthy', '/-/ready'):
            pa, ma = ask(r.pport, path, {}), ask(r.mport, path, {})
            check('%s answers 200 on both' % path, pa[0] == ma[0] == 200, (pa, ma))

        # Generated queries.
        gen = Gen(random.Random(a.seed), d.catalog)
        done = 0
        for i in range(a.generated):
            q = gen.vector(gen_rng.choice([1, 2, 2, 3]))
            if time.time() > r.deadline:
                print('time budget (%.0f s) reached after %d generated queries' % (a.budget, done))
                break
            r.run_query('gen %d: %s' % (i, q), calls_for(q, instants, gen_rng.sample(ranges, gen_rng.choice([2, 3])), gen_rng))
            done += 1

        # Summary.
        with open(os.path.join(work, 'mismatches.json'), 'w') as f:
            json.dump({'mismatches': r.mismatches, 'error_text_differences': r.msg_diffs,
                       'sum_avg_rounding': r.near_aggs, 'pow_rounding': r.near_pow}, f, indent=1,
                      ensure_ascii=False)
        classes = {}
        for mm in r.mismatches:
            classes[mm['class']] = classes.get(mm['class'], 0) + 1
        if r.msg_diffs:
            print('error message texts differing (status and errorType equal; not failures): %d' % len(r.msg_diffs))
            seen = set()
            for name, path, pe, me in r.msg_diffs:
                key = (pe or '')[:25]
                if key in seen:
                    continue
                seen.add(key)
                print('  %s\n    prometheus: %s\n    monitord:   %s' % (name, (pe or '')[:200], (me or '')[:200]))
        if r.near_aggs:
            print('sum/avg results differing in the last digits (order of addition; not failures): %d, first: %s'
                  % (len(r.near_aggs), r.near_aggs[0]))
        if r.near_pow:
            print('^ results differing in the last digits (Go\'s exp/log; not failures): %d, first: %s'
                  % (len(r.near_pow), r.near_pow[0]))
        print('Prometheus answered %d calls with a non-empty result, %d with an error'
              % (r.nonempty, r.prom_errors))
        print('summary: %d queries (%d generated), %d request pairs, %d mismatching calls %s, '
              '%d error-text differences, %d sum/avg rounding differences, %.1f s'
              % (r.queries, done, r.requests, len(r.mismatches), json.dumps(classes), len(r.msg_diffs),
                 len(r.near_aggs), time.time() - t_begin))
    finally:
        for p in procs:
            stop(p)
    return finish(work, keep_on_success=False)


if __name__ == '__main__':
    sys.exit(main())
