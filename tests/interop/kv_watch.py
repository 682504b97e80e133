#!/usr/bin/python3
"""memcached's `watch` log streams and `stats conns` on qcloud-kvd and on memcached 1.6.18,
for what the differential test (kv_differential.py, watch_* cases) cannot
compare byte for byte because each server evicts its own items:

    kv_watch.py --kvd PATH [--memcached /usr/bin/memcached]

Both servers are started here on 127.0.0.1 (free ports) and stopped by PID,
each with 8 MiB of memory. Checked on each:
  evictions   `watch evictions` while 100 KB values overflow the memory:
              eviction lines in memcached's format (key, fetch=yes|no,
              ttl=-1 for no expiry or the seconds left, la, clsid, size =
              the value's bytes), only for keys that were stored;
  connevents  `watch connevents`: conn_new and conn_close lines for a client
              that connects and leaves (rip 127.0.0.1, its port);
  limit       20 watchers, the 21st gets WATCHER_TOO_MANY ...;
  slow        a watcher that does not read while 200 000 events happen: the
              server stays responsive and its RSS grows < 16 MiB; the
              watcher then gets fewer lines than events, and a skipped=N
              line says how many it lost.
  conns       `stats conns`: the listener, and per connection its peer,
              listen_addr, state (conn_new_cmd before any command, conn_read,
              conn_nread waiting for a value, conn_watch, conn_parse_cmd for
              the asking one) and secs_since_last_cmd.
Prints PASS/FAIL per check; exit 0 iff all pass. Bounded: ~20 s.
"""

import argparse
import os
import re
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from interop_util import RESULTS, check, start_kvd, start_memcached, stop  # noqa: E402

EVICTION = re.compile(rb'^ts=\d+\.\d+ gid=\d+ type=eviction key=(\S+) fetch=(yes|no) ttl=(-1|\d+) '
                      rb'la=\d+ clsid=\d+ size=(\d+)$')
CONN = re.compile(rb'^ts=\d+\.\d+ gid=\d+ type=conn_(new|close) rip=127\.0\.0\.1 rport=(\d+) '
                  rb'transport=tcp (?:reason=\w+ )?cfd=\d+$')










def connect(port, rcvbuf=0):
    s = socket.socket()
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(5)
    s.connect(('127.0.0.1', port))
    return s


def read_for(s, seconds, limit=1 << 22):
    out = bytearray()  # not bytes: += would copy all of it per recv (megabytes from a watcher)
    end = time.time() + seconds
    s.settimeout(0.05)
    while time.time() < end and len(out) < limit:
        try:
            d = s.recv(1 << 20)
        except socket.timeout:
            continue
        if not d:
            break
        out += d
    s.settimeout(5)
    return bytes(out)


def request(s, data, until):
    s.sendall(data)
    out = b''
    while not out.endswith(until):
        d = s.recv(1 << 20)
        if not d:
            break
        out += d
    return out


def watcher(port, flags):
    w = connect(port)
    w.sendall(b'watch ' + flags + b'\r\n')
    assert read_for(w, 0.3, 4) == b'OK\r\n'
    return w


def run(label, port, pid):
    # evictions
    w = watcher(port, b'evictions')
    c = connect(port)
    value = b'v' * 100000
    stored = set()
    for i in range(200):
        key = b'evict%d' % i
        exp = b'0' if i % 2 else b'300'
        if request(c, b'set %s 7 %s %d\r\n%s\r\n' % (key, exp, len(value), value), b'\r\n') == b'STORED\r\n':
            stored.add(key)
        if i == 5:
            request(c, b'get evict3\r\n', b'END\r\n')
    lines = read_for(w, 0.5).splitlines()
    bad = [x for x in lines if not EVICTION.match(x)]
    evicted = [EVICTION.match(x) for x in lines if EVICTION.match(x)]
    check('%s evictions: lines in memcached\'s format' % label, evicted and not bad, bad[:3] or 'no eviction line')
    check('%s evictions: of stored keys, value size 100000' % label,
          all(m.group(1) in stored and m.group(4) == b'100000' for m in evicted), [m.group(0) for m in evicted[:3]])
    check('%s evictions: ttl -1 without expiry, seconds left with one' % label,
          all((m.group(3) == b'-1') == (int(m.group(1)[5:]) % 2 == 1) for m in evicted),
          [m.group(0) for m in evicted[:4]])
    w.close()

    # connevents
    w = watcher(port, b'connevents')
    t = connect(port)
    tport = t.getsockname()[1]
    request(t, b'version\r\n', b'\r\n')
    t.close()
    lines = read_for(w, 0.5).splitlines()
    mine = [CONN.match(x) for x in lines if CONN.match(x) and int(CONN.match(x).group(2)) == tport]
    check('%s connevents: conn_new then conn_close of a client' % label,
          [m.group(1) for m in mine] == [b'new', b'close'], lines)
    w.close()
    c.close()

    # limit
    ws = [watcher(port, b'fetchers') for _ in range(20)]
    extra = connect(port)
    extra.sendall(b'watch\r\n')
    reply = read_for(extra, 0.3)
    check('%s limit: the 21st watcher is refused' % label,
          reply == b'WATCHER_TOO_MANY log watcher limit reached\r\n', reply)
    for x in ws + [extra]:
        x.close()
    time.sleep(0.2)

    # slow: a watcher with a small receive buffer that does not read
    slow = connect(port, rcvbuf=4096)
    slow.sendall(b'watch fetchers\r\n')
    c = connect(port)
    rss0 = rss_kib(pid)
    started = time.time()
    batch = b''.join(b'get slowkey%d\r\n' % i for i in range(1000))
    events = 200 * 1000
    for _ in range(events // 1000):
        request(c, batch, b'END\r\n' * 1000)
    took = time.time() - started
    grown = rss_kib(pid) - rss0
    check('%s slow: %d gets with a stalled watcher in %.1f s' % (label, events, took), took < 30, took)
    check('%s slow: the server grew %d KiB meanwhile' % (label, grown), grown < 16 * 1024, grown)
    got = read_for(slow, 2.0, 1 << 28)
    request(c, b'get after\r\n', b'END\r\n')  # the next line carries the count of lost ones
    # What the server still holds comes first: read until the count arrives,
    # the watcher falls silent, or 20 s (a slow host drains slowly).
    deadline = time.time() + 20
    while time.time() < deadline and not re.search(rb'(?m)^skipped=\d+$', got):
        more = read_for(slow, 1.0, 1 << 28)
        if not more:
            break
        got += more
    lines = got.count(b'\n')
    check('%s slow: the watcher lost lines (%d of %d arrived)' % (label, lines, events + 1), lines < events, lines)
    check('%s slow: and is told how many' % label, re.search(rb'(?m)^skipped=\d+$', got) is not None,
          got[-300:])
    slow.close()
    c.close()


def stats_conns(port):
    s = connect(port)
    raw = request(s, b'stats conns\r\n', b'END\r\n')
    s.close()
    table = {}
    for line in raw.split(b'\r\n'):
        m = re.match(rb'^STAT (\d+):(\w+) (.*)$', line)
        if m:
            table.setdefault(int(m.group(1)), {})[m.group(2)] = m.group(3)
    return raw, table


def run_conns(label, port):
    fresh = connect(port)
    used = connect(port)
    request(used, b'version\r\n', b'\r\n')
    watching = watcher(port, b'fetchers')
    reading = connect(port)
    reading.sendall(b'set conns 0 0 5\r\nab')
    time.sleep(0.2)
    raw, table = stats_conns(port)
    by_port = {}
    for fd, row in table.items():
        m = re.match(rb'^tcp:127\.0\.0\.1:(\d+)$', row.get(b'addr', b''))
        if m and b'listen_addr' in row:
            by_port[int(m.group(1))] = row
    states = {name: by_port.get(sock.getsockname()[1], {}).get(b'state')
              for name, sock in (('fresh', fresh), ('used', used), ('watching', watching), ('reading', reading))}
    want = {'fresh': b'conn_new_cmd', 'used': b'conn_read', 'watching': b'conn_watch', 'reading': b'conn_nread'}
    check('%s stats conns: each connection\'s state' % label, states == want, (states, raw[:800]))
    listeners = [row for row in table.values() if row.get(b'state') == b'conn_listening']
    check('%s stats conns: the listener, then rows of addr listen_addr state secs_since_last_cmd' % label,
          len(listeners) >= 1 and all(set(r) == {b'addr', b'listen_addr', b'state', b'secs_since_last_cmd'}
                                      for r in by_port.values())
          and sum(1 for r in by_port.values() if r[b'state'] == b'conn_parse_cmd') == 1, raw[:800])
    reading.sendall(b'cde\r\n')
    for x in (fresh, used, watching, reading):
        x.close()


def rss_kib(pid):
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1])
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--kvd', required=True)
    ap.add_argument('--memcached', default='/usr/bin/memcached')
    a = ap.parse_args()
    procs = []
    try:
        proc, mport = start_memcached(a.memcached, 8)
        procs.append(proc)
        proc, kport = start_kvd(a.kvd, 8)
        procs.append(proc)
        run('memcached', mport, procs[0].pid)
        run('kvd', kport, procs[1].pid)
        run_conns('memcached', mport)
        run_conns('kvd', kport)
        check('kvd still running', procs[-1].poll() is None)
    finally:
        for p in procs:
            stop(p)
    print('%d/%d passed' % (sum(RESULTS), len(RESULTS)))
    return 0 if all(RESULTS) else 1


if __name__ == '__main__':
    sys.exit(main())
