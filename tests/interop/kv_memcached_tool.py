#!/usr/bin/python3
"""Operator tooling from Debian's memcached package against qcloud-kvd and
against memcached 1.6.18 itself, with the same data, answers compared.

    kv_memcached_tool.py --kvd PATH [--memcached /usr/bin/memcached]

Both servers are started here on 127.0.0.1 (free ports) and stopped by PID.
Checked, for each server: `memcached-tool HOST:PORT settings|dump|keys|
stats|sizes|display` and `memcstat` exit 0 within 20 s, and
  settings  every key memcached prints, with memcached's value except where
            the servers differ by design (port, hash algorithm; kvd adds
            block_size);
  dump      the same keys, flags and values, expiry times within 2 s;
  keys      the same keys;
  stats     the same curr_items; memcstat the same;
  sizes     the same answer;
  display   class rows whose counts add up to every item (kvd's one block
            pool is its one class).
Prints PASS/FAIL per check; exit 0 iff all pass. Bounded: ~5 s.
"""

import argparse
import os
import re
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from interop_util import RESULTS, check, start_kvd, start_memcached, stop  # noqa: E402

TOOL = '/usr/share/memcached/scripts/memcached-tool'










def load(port):
    """The same items on both servers: flags, no expiry, some with a TTL."""
    s = socket.create_connection(('127.0.0.1', port), timeout=5)
    req = b''
    for i in range(200):
        req += b'set tool:%d %d 0 %d\r\n%s\r\n' % (i, i % 7, 10 + i, b'v' * (10 + i))
    for i in range(5):
        req += b'set ttl%d 3 1000 4\r\nabcd\r\n' % i
    req += b'mn\r\n'
    s.sendall(req)
    buf = b''
    while not buf.endswith(b'MN\r\n'):
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
    s.close()
    return buf.count(b'STORED\r\n')


def tool(port, *args):
    p = subprocess.run(['perl', TOOL, '127.0.0.1:%d' % port] + list(args), capture_output=True, timeout=20)
    return p.returncode, p.stdout


def rows(text):
    out = {}
    for line in text.decode(errors='replace').splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 2:
            out[parts[0]] = ' '.join(parts[1:])
    return out


def dump_records(raw):
    recs = {}
    pos = 0
    head = re.compile(rb'add (\S+) (\d+) (-?\d+) (\d+)\r\n')
    while True:
        m = head.search(raw, pos)
        if not m:
            break
        n = int(m.group(4))
        recs[m.group(1)] = (int(m.group(2)), int(m.group(3)), raw[m.end():m.end() + n])
        pos = m.end() + n + 2
    return recs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--kvd', required=True)
    ap.add_argument('--memcached', default='/usr/bin/memcached')
    a = ap.parse_args()
    procs = []
    try:
        proc, mport = start_memcached(a.memcached, 64, '-c', '4096')
        procs.append(proc)
        proc, kport = start_kvd(a.kvd, 64)
        procs.append(proc)
        check('the same 205 items stored on both', load(mport) == 205 and load(kport) == 205)

        ms, ks = tool(mport, 'settings'), tool(kport, 'settings')
        mrow, krow = rows(ms[1]), rows(ks[1])
        missing = sorted(set(mrow) - set(krow))
        differ = sorted(k for k in mrow if k in krow and mrow[k] != krow[k]
                        and k not in ('tcpport', 'hash_algorithm'))
        check('settings: exit 0, every key memcached prints, same values', ms[0] == 0 and ks[0] == 0 and
              len(mrow) > 60 and not missing and not differ,
              'missing %s, differ %s' % (missing, [(k, mrow[k], krow.get(k)) for k in differ]))

        md, kd = tool(mport, 'dump'), tool(kport, 'dump')
        mrec, krec = dump_records(md[1]), dump_records(kd[1])
        same = set(mrec) == set(krec) and len(mrec) == 205 and all(
            mrec[k][0] == krec[k][0] and mrec[k][2] == krec[k][2] and abs(mrec[k][1] - krec[k][1]) <= 2
            for k in mrec)
        check('dump: exit 0, same keys, flags, values and expiry', md[0] == 0 and kd[0] == 0 and same,
              '%d vs %d records' % (len(mrec), len(krec)))

        mk, kk = tool(mport, 'keys'), tool(kport, 'keys')
        keyset = lambda raw: set(re.findall(rb'^key=(\S+)', raw, re.M))
        check('keys: exit 0, same keys', mk[0] == 0 and kk[0] == 0 and keyset(mk[1]) == keyset(kk[1])
              and len(keyset(kk[1])) == 205, (len(keyset(mk[1])), len(keyset(kk[1]))))

        mst, kst = tool(mport, 'stats'), tool(kport, 'stats')
        check('stats: exit 0, same curr_items', mst[0] == 0 and kst[0] == 0 and
              rows(mst[1]).get('curr_items') == rows(kst[1]).get('curr_items') == '205',
              (rows(mst[1]).get('curr_items'), rows(kst[1]).get('curr_items')))

        msz, ksz = tool(mport, 'sizes'), tool(kport, 'sizes')
        check('sizes: exit 0, same answer', msz[0] == 0 and ksz[0] == 0 and
              msz[1].splitlines()[1:] == ksz[1].splitlines()[1:], (msz, ksz))

        mdi, kdi = tool(mport, 'display'), tool(kport, 'display')

        def counted(raw):  # the Count column, summed over the class rows
            return sum(int(line.split()[4]) for line in raw.decode().splitlines()[1:] if line.split())
        check('display: exit 0, class rows counting every item', mdi[0] == 0 and kdi[0] == 0 and
              kdi[1].startswith(b'  #  Item_Size') and counted(mdi[1]) == counted(kdi[1]) == 205,
              (mdi[1][:300], kdi[1][:300]))

        def memcstat(port):
            p = subprocess.run(['memcstat', '--servers=127.0.0.1:%d' % port], capture_output=True, timeout=20)
            m = re.search(rb'curr_items: (\d+)', p.stdout)
            return p.returncode, m.group(1) if m else None
        check('memcstat: exit 0, same curr_items', memcstat(mport) == memcstat(kport) == (0, b'205'),
              (memcstat(mport), memcstat(kport)))
    finally:
        for p in procs:
            stop(p)
    print('%d/%d passed' % (sum(RESULTS), len(RESULTS)))
    return 0 if RESULTS and all(RESULTS) else 1


if __name__ == '__main__':
    sys.exit(main())
