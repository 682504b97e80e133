#!/usr/bin/python3
"""Differential interop test: memcached 1.6.18 (reference) vs qcloud-kvd (candidate).

Every case is run against both servers. Both get the same bytes, and the
replies must be identical byte for byte after the normalisation described below.

Usage:
    kv_differential.py --kvd PATH [--memcached /usr/bin/memcached] [--only NAME[,NAME|GLOB...]] [-v]
    kv_differential.py --self-check [--memcached ...]   # memcached vs a second memcached (no kvd)
    kv_differential.py --kvd-port P [--memcached-port Q] # use servers that are already running
    kv_differential.py --list                             # print the case names

Exit status: 0 iff every selected case passes (2 on harness/setup errors).
Only the standard library is used; run it with /usr/bin/python3.

Ground truth for the corpus is docs/notes/memcached-protocol.md (behaviour of
memcached 1.6.18 captured on this machine).

Harness model
-------------
* Servers are started on 127.0.0.1 with free ports and always stopped by PID
  (terminate, wait, kill, wait) in a finally block:
    memcached  -l 127.0.0.1 -p PORT -U 0 -t 1 -m 64 [-u root]
    qcloud-kvd --listen 127.0.0.1:0 --memory 64 --threads 1
               (prints "qcloud-kvd listening on 127.0.0.1:PORT" on stdout when ready)
* A case is a list of steps. Before its steps, every case sends `flush_all` on a
  fresh setup connection (compared like any other step), then opens its own
  connections ('a', 'b') lazily. Keys are unique per case: `$k` in a step's
  bytes expands to a per-case prefix ("<case name>."), `$K<n>` to that prefix
  padded with 'x' to exactly n bytes (for 250/251-byte key tests).
* A step sends bytes on one connection and collects the reply:
    - sentinel steps (T, S) append a sentinel and read until its reply arrived:
      text connections `mn\\r\\n` -> `MN\\r\\n` (the number of `MN\\r\\n` to wait for
      = 1 + the `mn` commands in the step), binary connections a NOOP with
      opaque 0x5e5e5e5e. Reading also stops when the peer closes.
      If the sentinel reply does not show up, reading stops after 5 s of
      silence; on the reference side that is reported as a harness error.
    - idle steps (I) append nothing and read until the socket has been idle
      for 400 ms (or was closed). Used where a sentinel would be consumed as
      data (server waits for a data block / more header bytes) or after
      close-inducing input.
  A peer close (FIN or RST) is recorded as b'[CLOSED]'. After the last step,
  every connection that is still open and whose last step was a sentinel step
  gets one more sentinel ("final sentinel"), so stray trailing replies are caught.
* The first byte ever sent on a connection decides how its replies are
  rendered (0x80 => binary packets, else text), like memcached does.
* Bounded everywhere: connect timeout 3 s, each step at most 10 s, server
  start 10 s, and an overall deadline (--deadline, default 300 s); cases not
  run in time are reported as FAIL.

Normalisation (applied to both sides identically; nothing else is normalised)
----------------------------------------------------------------------------
1. Text `VERSION <anything>\\r\\n` lines -> `VERSION <v>\\r\\n`.
2. CAS values -> ordinal tokens `<cas#N>` numbered in order of first appearance
   within the case (one numbering shared by all connections of the case), so
   that equal/unequal CAS relationships are still checked. CAS 0 stays `0`.
   Applies to: the 5th field of text `VALUE` lines (gets/gats), meta return
   flags `c<N>` (on HD/VA/EN/NF/NS/EX lines), and the CAS field of binary
   response headers.
3. Binary responses are rendered field by field (magic, opcode, status,
   lengths, datatype, opaque, CAS, extras, key, value) so the whole packet is
   compared; exceptions: the value (and body length) of a successful VERSION
   response is replaced by `<v>`, and STAT packets carrying a stat (keylen > 0)
   are dropped (only the terminator is compared).
4. `stats` output is never compared: the corpus does not send `stats` (only
   the error / fixed replies `stats noreply`, `stats nonsense`, `stats reset`,
   and `stats detail`, whose per-prefix counts are exact).
6. `lru_crawler metadump` lines (`key=... \n`): sorted within a dump (each
   server lists in its own order) by key, absolute `exp`/`la` times -> `<t>`
   (but exp=-1), `cas=` as in 2 (ordinals in the sorted order).
5. `me` (meta debug) lines: `exp=<n>` (but not exp=-1) and `la=<n>` count
   seconds on each server's clock -> `exp=<t>`, `la=<t>`; `cas=<n>` as in 2.
7. Only in the cases of TTL_SLACK_CASES, the cases that read a TTL back
   (meta `t` flag), in the same write that stored it or in a later step:
   meta `t<N>` flags that differ by one second are equal. memcached's clock
   ticks once a second, so its remaining TTL can read one less when a tick
   falls between the store and the read, even within one write (seen: t99
   against t100).
CAS values needed by later requests (cas, ms C<cas>, binary cas field) are
taken from each server's own earlier replies (dynamic steps).

Deliberately NOT covered (and why)
----------------------------------
* incr/decr/ma/binary INCR|DECR of a STORED value >= 2^63 (e.g. "18446744073709551615"):
  memcached 1.6.18's safe_strtoull() runs strchr(str, '-') over the item data, which is not
  NUL-terminated, so the result depends on leftover bytes in the slab chunk (a previous value
  containing '-' makes it CLIENT_ERROR non-numeric; reproduced). Nondeterministic => untestable.
  Wrap-around is tested with small stored values and huge deltas instead; results >= 2^63 are
  fine as long as they are not incremented again.
* incr/decr of an all-whitespace value (e.g. " "): strtoull skips the blank AND the stored
  "\r\n" and parses whatever digits follow in the slab chunk (observed: incr -> 251, from an older
  item). Nondeterministic => untestable.
* Whether a shrinking incr/decr pads in place ("0 ") or stores a new unpadded item ("0") depends
  on the item's refcount: from the 2nd read of an item on, memcached's segmented LRU may queue an
  async bump that holds a reference until the LRU maintainer thread drains it -> no padding
  (observed flipping between runs). Padding IS tested, but only on items read at most once.
* A get/gets/gat/gats with a key > 250 bytes discards not only its own partial VALUE lines
  (tested) but also the queued, not yet written replies of EARLIER commands in the same batch
  (`version\r\nversion\r\nget <251 bytes>\r\n` -> only the CLIENT_ERROR line; `mn` flushes and
  protects earlier replies). memcached bug: such a get is always the first command of its step.
* Binary unknown opcode WITH a body: memcached over-swallows the next packet
  (notes section 8.4, bug we do not copy). Only empty-body unknown opcodes are tested.
* `mg <key> T-1`: memcached 1.6.18 wraps the TTL unsigned (t4294967167), a bug
  we do not copy (notes 8.4 / section 7).
* `stats` (general), `stats detail|sizes|sizes_enable|cachedump|conns|settings|
  items|slabs|extstore`, binary STAT groups / `STAT bogus`: values are
  process/time/allocator dependent and out of scope.
* `watch`, `lru_crawler`, `lru`, `slabs`, `cache_memlimit`: memcached admin /
  internals, not part of qcloud-kvd's surface.
* `shutdown`: would stop the server (and needs -A); `me`: debug dump of
  internal item layout (cls=, size=, la=).
* Anything that needs real time to pass (TTL 1 expiring, delayed flush_all
  taking effect): the run must not sleep; expiry is tested with negative and
  absolute-past exptimes instead. TTL readbacks (`t` flag) are done in the
  same write as the store where they can be; a clock tick in between still
  shows as one second less (normalisation 7).
* More than 100 leading spaces before `get ` on an over-long line (memcached
  scan-bound artifact), `version` + 20000 bytes (depends on memcached's 16 KB
  read size), 2 GB swallows, max-connections, OOM with -M, and the ~60000
  duplicate-key refcount limit of a single get: implementation limits.
"""

import argparse
import base64
import fnmatch
import os
import re
import select
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

HOST = '127.0.0.1'
IDLE = 0.4             # idle period that ends an idle step (a later reply would land in the next step)
SENTINEL_IDLE = 5.0    # silence after which a missing sentinel is given up (costs time only then)
STEP_TIMEOUT = 10.0    # hard cap per step
CONNECT_TIMEOUT = 3.0
START_TIMEOUT = 10.0
SENTINEL_OPAQUE = 0x5E5E5E5E
TEXT_SENTINEL = b'mn\r\n'
DEFAULT_OPAQUE = 0xDEADBEEF

# ----------------------------------------------------------------------------------------------
# Binary protocol helpers
# ----------------------------------------------------------------------------------------------
OP = dict(GET=0x00, SET=0x01, ADD=0x02, REPLACE=0x03, DELETE=0x04, INCR=0x05, DECR=0x06,
          QUIT=0x07, FLUSH=0x08, GETQ=0x09, NOOP=0x0A, VERSION=0x0B, GETK=0x0C, GETKQ=0x0D,
          APPEND=0x0E, PREPEND=0x0F, STAT=0x10, SETQ=0x11, ADDQ=0x12, REPLACEQ=0x13,
          DELETEQ=0x14, INCRQ=0x15, DECRQ=0x16, QUITQ=0x17, FLUSHQ=0x18, APPENDQ=0x19,
          PREPENDQ=0x1A, VERBOSITY=0x1B, TOUCH=0x1C, GAT=0x1D, GATQ=0x1E, GATK=0x23, GATKQ=0x24)
globals().update(OP)
OPNAME = {v: k for k, v in OP.items()}
HDR = struct.Struct('>BBHBBHIIQ')


def subst(data, ctx):
    """Expand $K<n> (prefix padded to n bytes) and $k (prefix) in request bytes."""
    def pad(m):
        n = int(m.group(1))
        return (ctx.k + b'x' * n)[:n] if len(ctx.k) < n else ctx.k[:n]
    data = re.sub(rb'\$K(\d+)', pad, data)
    return data.replace(b'$k', ctx.k)


class Pkt:
    """A binary request, serialised at run time (key substitution, dynamic CAS)."""

    def __init__(self, op, key=b'', extras=b'', value=b'', cas=0, opaque=DEFAULT_OPAQUE,
                 magic=0x80, datatype=0, vbucket=0, keylen=None, extlen=None, bodylen=None):
        self.__dict__.update(locals())
        del self.__dict__['self']

    def build(self, ctx):
        key = subst(self.key, ctx)
        value = self.value(ctx) if callable(self.value) else self.value
        cas = self.cas(ctx) if callable(self.cas) else self.cas
        kl = len(key) if self.keylen is None else self.keylen
        el = len(self.extras) if self.extlen is None else self.extlen
        bl = len(key) + len(self.extras) + len(value) if self.bodylen is None else self.bodylen
        return HDR.pack(self.magic, self.op, kl, el, self.datatype, self.vbucket, bl,
                        self.opaque, cas) + self.extras + key + value


def P(op, key=b'', **kw):
    return Pkt(op, key, **kw)


def bstore(op, key, value, flags=0, exp=0, **kw):
    return Pkt(op, key, extras=struct.pack('>II', flags, exp), value=value, **kw)


def barith(op, key, delta, initial=0, exp=0, **kw):
    return Pkt(op, key, extras=struct.pack('>QQI', delta, initial, exp), **kw)


def bexp(op, key, exp, **kw):
    return Pkt(op, key, extras=struct.pack('>I', exp), **kw)


def parse_packets(buf):
    """Split binary response bytes into (header tuple, body) packets + trailing bytes."""
    out, i = [], 0
    while len(buf) - i >= 24:
        h = HDR.unpack_from(buf, i)
        bl = h[6]
        if len(buf) - i - 24 < bl:
            break
        out.append((h, bytes(buf[i + 24:i + 24 + bl])))
        i += 24 + bl
    return out, bytes(buf[i:])


# ----------------------------------------------------------------------------------------------
# Steps and cases
# ----------------------------------------------------------------------------------------------
class Step:
    def __init__(self, parts, conn='a', mode='sentinel', split=None, delay=0.0, mn=None, lines=0, busy_retry=False):
        self.parts, self.conn, self.mode, self.split, self.delay, self.mn = parts, conn, mode, split, delay, mn
        self.lines = lines
        self.busy_retry = busy_retry

    def payload(self, ctx):
        out = b''
        for p in self.parts:
            if isinstance(p, Pkt):
                out += p.build(ctx)
            elif callable(p):
                out += subst(p(ctx), ctx)
            else:
                out += subst(p, ctx)
        return out


def T(*parts, conn='a', mn=None):
    """Sentinel step: send parts (+ sentinel) in one write, read until the sentinel reply."""
    return Step(parts, conn, 'sentinel', mn=mn)


def TB(*parts, conn='a'):
    """Sentinel step sent again (50 ms apart, 3 s at most) while the reply is
    BUSY: memcached's crawler runs on its own thread, and a crawl that
    arrives while the last one still runs (a slow host) is refused."""
    return Step(parts, conn, 'sentinel', busy_retry=True)


def I(*parts, conn='a'):
    """Idle step: send parts, read until 400 ms of silence or close."""
    return Step(parts, conn, 'idle')


def W(*parts, conn='w', lines=1):
    """Watch step: send parts, read until `lines` newlines arrived (or 5 s of silence)."""
    return Step(parts, conn, 'lines', lines=lines)


def S(*parts, conn='a', size=1, delay=0.001, mode='sentinel', mn=None):
    """Split step: send parts in `size`-byte writes, `delay` s apart (TCP_NODELAY), then sentinel."""
    return Step(parts, conn, mode, split=size, delay=delay, mn=mn)


CASES = []


def case(name, *steps, final=True):
    assert not any(c[0] == name for c in CASES), name
    CASES.append((name, list(steps), final))


WATCH_TS_RE = re.compile(rb'^ts=\d+\.\d+ gid=\d+')
WATCH_FD_RE = re.compile(rb'\b(cfd|rport)=\d+')
MN_RE = re.compile(rb'(?m)^ *mn(?:[ \r][^\n]*)?\n')


def count_mn(data):
    return len(MN_RE.findall(data))


# ----------------------------------------------------------------------------------------------
# Normalisation
# ----------------------------------------------------------------------------------------------
class Ctx:
    """Per case, per server: key prefix, CAS values seen (raw, in order), CAS ordinal map."""

    def __init__(self, k):
        self.k = k
        self.cas = []
        self._ord = {}

    def cas_token(self, value):
        v = int(value)
        if v == 0:
            return b'0'
        self.cas.append(v)
        if v not in self._ord:
            self._ord[v] = len(self._ord) + 1
        return b'<cas#%d>' % self._ord[v]


META_CODES = {b'HD', b'VA', b'EN', b'NF', b'NS', b'EX'}
CAS_FLAG_RE = re.compile(rb'^c(\d+)$')


METADUMP_TIME_RE = re.compile(rb' (exp|la)=(-?\d+)')


def norm_metadump_line(line, ctx):
    # key=<k> exp=<abs> la=<abs> cas=<n> fetch=.. cls=.. size=..\n
    line = METADUMP_TIME_RE.sub(lambda m: m.group(0) if m.group(2) == b'-1' else b' ' + m.group(1) + b'=<t>', line)
    return re.sub(rb' cas=(\d+)', lambda m: b' cas=' + ctx.cas_token(m.group(1)), line)


def norm_text(raw, ctx):
    out = bytearray()
    i, n = 0, len(raw)
    while i < n:
        j = raw.find(b'\n', i)
        if j < 0:
            out += raw[i:]
            break
        line = raw[i:j + 1]
        i = j + 1
        if line.startswith(b'key=') and not line.endswith(b'\r\n'):
            # A metadump: its lines in a server's own order (memcached: LRU
            # by class; kvd: hash order), so sorted; times and CAS as above.
            block = [line]
            while True:
                j = raw.find(b'\n', i)
                nxt = raw[i:j + 1] if j >= 0 else b''
                if not (nxt.startswith(b'key=') and not nxt.endswith(b'\r\n')):
                    break
                block.append(nxt)
                i = j + 1
            out += b''.join(norm_metadump_line(x, ctx) for x in sorted(block, key=lambda x: x.split(b' ', 1)[0]))
            continue
        if line.startswith(b'ts=') and not line.endswith(b'\r\n'):
            # A watch line: its time, event number and the connection's
            # descriptor and port are each server's own.
            line = WATCH_TS_RE.sub(b'ts=<t> gid=<g>', line)
            line = WATCH_FD_RE.sub(lambda m: m.group(1) + b'=<n>', line)
            out += line
            continue
        if not line.endswith(b'\r\n'):
            out += line
            continue
        toks = line[:-2].split(b' ')
        datalen = None
        if toks[0] == b'VALUE' and len(toks) in (4, 5):
            if len(toks) == 5 and toks[4].isdigit():
                toks[4] = ctx.cas_token(toks[4])
            if toks[3].isdigit():
                datalen = int(toks[3])
        elif toks[0] == b'VERSION' and len(toks) >= 2:
            toks = [b'VERSION', b'<v>']
        elif toks[0] == b'ME' and len(toks) >= 3:
            # me (meta debug): exp and la count seconds on each server's
            # clock (exp=-1, no expiry, is kept); cas as everywhere.
            for x in range(2, len(toks)):
                name, _, val = toks[x].partition(b'=')
                if name == b'exp' and val != b'-1':
                    toks[x] = b'exp=<t>'
                elif name == b'la':
                    toks[x] = b'la=<t>'
                elif name == b'cas' and val.isdigit():
                    toks[x] = b'cas=' + ctx.cas_token(val)
        elif toks[0] in META_CODES:
            start = 1
            if toks[0] == b'VA' and len(toks) >= 2 and toks[1].isdigit():
                datalen = int(toks[1])
                start = 2
            for x in range(start, len(toks)):
                m = CAS_FLAG_RE.match(toks[x])
                if m:
                    toks[x] = b'c' + ctx.cas_token(m.group(1))
        out += b' '.join(toks) + b'\r\n'
        if datalen is not None:
            out += raw[i:i + datalen + 2]
            i += datalen + 2
    return bytes(out)


def norm_bin(raw, ctx):
    pkts, rest = parse_packets(raw)
    lines = []
    for (magic, op, kl, el, dt, st, bl, opq, cas), body in pkts:
        if op == STAT and st == 0 and kl > 0:
            continue  # STAT packets are excluded (terminator kept)
        ext, key, val = body[:el], body[el:el + kl], body[el + kl:]
        blen = str(bl)
        if op == VERSION and st == 0:
            val, blen = b'<v>', '<v>'
        lines.append('BIN magic=%02x op=%02x(%s) status=%04x keylen=%d extlen=%d datatype=%d '
                     'bodylen=%s opaque=%08x cas=%s ext=%s key=%r value=%r\n'
                     % (magic, op, OPNAME.get(op, '?'), st, kl, el, dt, blen, opq,
                        ctx.cas_token(cas).decode(), ext.hex() or '-', key, val))
    if rest:
        lines.append('TRAILING %r\n' % rest)
    return ''.join(lines).encode()


# ----------------------------------------------------------------------------------------------
# I/O
# ----------------------------------------------------------------------------------------------
class Conn:
    def __init__(self, port):
        self.sock = socket.create_connection((HOST, port), timeout=CONNECT_TIMEOUT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.setblocking(False)
        self.proto = None
        self.closed = False
        self.last_mode = None

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def sentinel_bytes(proto):
    if proto == 'bin':
        return HDR.pack(0x80, NOOP, 0, 0, 0, 0, 0, SENTINEL_OPAQUE, 0)
    return TEXT_SENTINEL


def sentinel_seen(buf, proto, want_mn):
    if proto == 'bin':
        pkts, rest = parse_packets(buf)
        return (not rest and bool(pkts) and pkts[-1][0][1] == NOOP
                and pkts[-1][0][7] == SENTINEL_OPAQUE)
    return buf.endswith(b'MN\r\n') and buf.count(b'MN\r\n') >= want_mn


def exchange(conn, chunks, mode, want_mn, delay, deadline_abs):
    """Send chunks (each one write, `delay` apart) while reading; return (reply, closed, notes)."""
    sock, buf, notes = conn.sock, bytearray(), []
    chunks = [c for c in chunks if c]
    cur = chunks.pop(0) if chunks else None
    next_send = 0.0
    start = time.monotonic()
    quiet_since = start
    deadline = min(start + STEP_TIMEOUT, deadline_abs)
    send_failed = False
    while True:
        now = time.monotonic()
        if now >= deadline:
            notes.append('step timeout')
            break
        sending = cur is not None and not send_failed
        want_write = sending and now >= next_send
        if sending:
            wait = max(0.0, min(next_send - now, 0.05)) if not want_write else 0.05
        else:
            wait = 0.02
        wait = min(wait, max(0.0, deadline - now))
        try:
            r, w, _ = select.select([sock], [sock] if want_write else [], [], wait)
        except (OSError, ValueError):
            conn.closed = True
            break
        if r:
            try:
                d = sock.recv(262144)
            except (BlockingIOError, InterruptedError):
                d = None
            except (ConnectionResetError, ConnectionAbortedError, OSError):
                conn.closed = True
                break
            if d == b'':
                conn.closed = True
                break
            if d:
                buf += d
                quiet_since = time.monotonic()
        if w:
            try:
                n = sock.send(cur[:262144])
                cur = cur[n:]
                if not cur:
                    cur = chunks.pop(0) if chunks else None
                    next_send = time.monotonic() + delay
                    quiet_since = time.monotonic()
            except (BlockingIOError, InterruptedError):
                pass
            except OSError as e:
                notes.append('send failed: %s' % e.__class__.__name__)
                send_failed = True
                quiet_since = time.monotonic()
        if cur is None or send_failed:
            now = time.monotonic()
            if mode == 'sentinel':
                if sentinel_seen(buf, conn.proto, want_mn):
                    break
                if now - quiet_since >= SENTINEL_IDLE:
                    notes.append('sentinel reply not seen')
                    break
            elif mode == 'lines':
                if buf.count(b'\n') >= want_mn:
                    break
                if now - quiet_since >= SENTINEL_IDLE:
                    break  # fewer lines than expected: the comparison shows which
            elif now - quiet_since >= IDLE:
                break
    return bytes(buf), conn.closed, notes


class Side:
    """One server under test (reference or candidate)."""

    def __init__(self, label, port, proc=None):
        self.label, self.port, self.proc = label, port, proc

    def alive(self):
        return self.proc is None or self.proc.poll() is None


def run_steps(side, name, steps, final, deadline_abs):
    ctx = Ctx(name.encode() + b'.')
    conns = {}
    records = []
    all_steps = [Step((b'flush_all\r\n',), '_setup', 'sentinel')] + list(steps)
    try:
        for idx, st in enumerate(all_steps):
            rec = dict(conn=st.conn, notes=[], mode=st.mode)
            c = conns.get(st.conn)
            if c is None:
                try:
                    c = conns[st.conn] = Conn(side.port)
                except OSError as e:
                    rec.update(sent=b'', raw=b'', norm=('[CONNECT FAILED %s]' % e).encode(), closed=False)
                    records.append(rec)
                    continue
            data = st.payload(ctx)
            rec['sent'] = data
            if c.closed:
                rec.update(raw=b'', norm=b'[NOT SENT: connection already closed]', closed=True)
                records.append(rec)
                continue
            if c.proto is None and data:
                c.proto = 'bin' if data[0] == 0x80 else 'text'
            proto = c.proto or 'text'
            c.proto = proto
            if st.split:
                chunks = [data[i:i + st.split] for i in range(0, len(data), st.split)]
            else:
                chunks = [data]
            want_mn = 0
            if st.mode == 'sentinel':
                sb = sentinel_bytes(proto)
                if st.split:
                    chunks.append(sb)
                else:
                    chunks[-1] = chunks[-1] + sb if chunks else sb
                want_mn = 1 + (st.mn if st.mn is not None else count_mn(data))
            elif st.mode == 'lines':
                want_mn = st.lines
            raw, closed, notes = exchange(c, chunks, st.mode, want_mn, st.delay, deadline_abs)
            for _ in range(60):
                if not (st.busy_retry and raw.startswith(b'BUSY') and not closed):
                    break
                time.sleep(0.05)
                raw, closed, notes = exchange(c, chunks, st.mode, want_mn, st.delay, deadline_abs)
            c.last_mode = st.mode
            rec.update(raw=raw, closed=closed, notes=notes)
            rec['norm'] = norm_bin(raw, ctx) if proto == 'bin' else norm_text(raw, ctx)
            if closed:
                rec['norm'] += b'[CLOSED]'
            records.append(rec)
            if st.conn == '_setup':
                c.close()
                del conns['_setup']
        if final:
            for cname in sorted(conns):
                c = conns[cname]
                if c.closed or c.last_mode != 'sentinel':
                    continue
                proto = c.proto or 'text'
                sb = sentinel_bytes(proto)
                raw, closed, notes = exchange(c, [sb], 'sentinel', 1, 0.0, deadline_abs)
                norm = norm_bin(raw, ctx) if proto == 'bin' else norm_text(raw, ctx)
                if closed:
                    norm += b'[CLOSED]'
                records.append(dict(conn=cname, sent=b'(final sentinel)', raw=raw, closed=closed,
                                    notes=notes, norm=norm, mode='sentinel', final=True))
    finally:
        for c in conns.values():
            c.close()
    return records


# ----------------------------------------------------------------------------------------------
# Servers
# ----------------------------------------------------------------------------------------------
def free_port():
    """Below the ephemeral range, as interop_util.free_port (which see)."""
    here = os.path.dirname(os.path.abspath(__file__))
    if here not in sys.path:
        sys.path.insert(0, here)
    from interop_util import free_port as pick
    return pick()


def stop_proc(proc):
    if proc is None or proc.poll() is not None:
        return
    try:
        os.kill(proc.pid, 15)
        proc.wait(timeout=3)
    except subprocess.TimeoutExpired:
        try:
            os.kill(proc.pid, 9)
        except ProcessLookupError:
            pass
        proc.wait(timeout=3)
    except ProcessLookupError:
        pass


def wait_connectable(port, proc, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            return False
        try:
            socket.create_connection((HOST, port), timeout=0.5).close()
            return True
        except OSError:
            time.sleep(0.02)
    return False


def start_memcached(path, procs):
    for _ in range(5):
        port = free_port()
        cmd = [path, '-l', HOST, '-p', str(port), '-U', '0', '-t', '1', '-m', '64']
        if os.geteuid() == 0:
            cmd += ['-u', 'root']
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        procs.append(proc)
        if wait_connectable(port, proc, START_TIMEOUT):
            return port, proc
        stop_proc(proc)
    raise RuntimeError('could not start memcached (%s)' % path)


def start_kvd(path, procs):
    errf = tempfile.TemporaryFile()
    proc = subprocess.Popen([path, '--listen', HOST + ':0', '--memory', '64', '--threads', '1'],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errf)
    procs.append(proc)
    end = time.monotonic() + START_TIMEOUT
    buf = b''
    fd = proc.stdout.fileno()
    while time.monotonic() < end:
        r, _, _ = select.select([fd], [], [], 0.1)
        if r:
            d = os.read(fd, 4096)
            if not d:
                break
            buf += d
            m = re.search(rb'qcloud-kvd listening on 127\.0\.0\.1:(\d+)', buf)
            if m:
                # keep draining stdout so the server never blocks on a full pipe
                def drain():
                    try:
                        while os.read(fd, 65536):
                            pass
                    except OSError:
                        pass
                threading.Thread(target=drain, daemon=True).start()
                return int(m.group(1)), proc
        elif proc.poll() is not None:
            break
    errf.seek(0)
    err = errf.read()[-2000:]
    raise RuntimeError('qcloud-kvd did not report its port within %ds (rc=%s)\nstdout: %r\nstderr: %r'
                       % (START_TIMEOUT, proc.poll(), buf[-2000:], err))


# ----------------------------------------------------------------------------------------------
# Reporting
# ----------------------------------------------------------------------------------------------
def short(b, limit=600):
    r = repr(b)
    return r if len(r) <= limit else r[:limit] + '...(%d bytes)' % len(b)


def window(b, off, ctx=120):
    lo = max(0, off - ctx)
    s = repr(b[lo:off + ctx])
    return ('...' if lo else '') + s + ('...' if off + ctx < len(b) else '')


def first_diff(a, b):
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return min(len(a), len(b))


def describe_sent(rec):
    s = rec['sent']
    return short(s, 300)


# ----------------------------------------------------------------------------------------------
# Corpus
# ----------------------------------------------------------------------------------------------
BIG = 1048577            # > item_size_max (1 MiB) for any key: SERVER_ERROR object too large
bigdata = b'y' * BIG


def b64(ctx_bytes):
    return base64.b64encode(ctx_bytes)


# ---------------------------------------------------------------- 1. framing / tokenizer
case('basic_set_get_gets',
     T(b'set $ka 5 0 3\r\nbar\r\nget $ka\r\ngets $ka\r\n'))
case('bare_lf_line_endings',
     T(b'set $ka 0 0 1\na\r\nget $ka\nversion\ndelete $ka\nget $ka\n'))
case('only_one_cr_stripped',
     T(b'set $ka 0 0 1\r\na\r\nget $ka\r\r\nget $ka\r\n'))
case('tab_is_not_a_separator',
     T(b'set\t$ka 0 0 1\r\na\r\nget\t$ka\r\nset $kb\t0 0 1\r\nb\r\n'))
case('extra_spaces_between_tokens',
     T(b'set  $ka  0  0  1\r\na\r\n get $ka\r\nget $ka \r\nget   $ka    $ka   \r\n  version  \r\n'))
case('commands_case_sensitive',
     T(b'SET $ka 0 0 1\r\na\r\nGET $ka\r\nGet $ka\r\nVERSION\r\nMN\r\nMg $ka\r\nset $ka 0 0 1 NOREPLY\r\nb\r\n'))
case('empty_and_blank_lines',
     T(b'\r\n\n \r\n   \n\t\r\n'))
case('one_char_command_words',
     T(b'a\r\ng\r\ns $ka 0 0 1\r\nm\r\n'))
case('unknown_commands',
     T(b'bogus\r\nbogus arg arg\r\ngett $ka\r\nsets $ka 0 0 1\r\nx\r\nmisbehave\r\ndebugtime\r\nauth\r\n'))
case('control_bytes_in_key',
     T(b'set $ka\x01b 0 0 1\r\nx\r\nget $ka\x01b\r\nget $ka\x7f\r\ndelete $ka\x01b\r\n'))
case('high_bytes_in_key_and_value',
     T(b'set $k\xff\xfe 3 0 2\r\n\xc3\xa9\r\nget $k\xff\xfe\r\nmg $k\xff\xfe k v\r\n'))
case('text_conn_receives_binary_noop',
     I(b'version\r\n', HDR.pack(0x80, NOOP, 0, 0, 0, 0, 0, 0, 0)),
     T(b'\r\nversion\r\n'))

# ---------------------------------------------------------------- 2. pipelining / split writes
case('pipeline_mixed_from_notes',
     T(b'set $kp1 0 0 1\r\nA\r\nget $kp1\r\nbogus\r\ndelete $kp1\r\nget $kp1\r\nincr $knope 1\r\nmn\r\n'
       b'mg $kp1 v\r\nms $kp2 1\r\nB\r\nmg $kp2 v k\r\nversion\r\n'))
case('pipeline_100_sets_then_gets',
     T(b''.join(b'set $k%d %d 0 %d\r\n%s\r\n' % (i, i, len(b'v%d' % i), b'v%d' % i) for i in range(100))
       + b'get ' + b' '.join(b'$k%d' % i for i in range(0, 100, 7)) + b'\r\n'
       + b''.join(b'gets $k%d\r\n' % i for i in range(95, 100))))
case('pipeline_noreply_batch',
     T(b''.join(b'set $k%d 0 0 1 noreply\r\n%d\r\n' % (i, i % 10) for i in range(50))
       + b''.join(b'incr $k%d 5 noreply\r\n' % i for i in range(50))
       + b'get $k0 $k9 $k49\r\n'))
case('pipeline_many_errors_interleaved',
     T(b'set $ka 0 0 1\r\n1\r\n' + b'bogus\r\nincr $ka 1\r\n' * 20 + b'get $ka\r\n'))
case('split_bytewise_text',
     S(b'set $ka 0 0 5\r\nhello\r\nget $ka\r\nincr $ka 1\r\nappend $ka 0 0 2\r\n!!\r\ngets $ka\r\ndelete $ka\r\n'))
case('split_bytewise_meta',
     S(b'ms $ka 2 T0 F3\r\nhi\r\nmg $ka v f s k\r\nma $kc N0 J7 v\r\nmd $ka q\r\nmg $ka\r\n'))
case('split_header_then_data',
     I(b'set $ka 0 0 5\r\n'), I(b'hel'), T(b'lo\r\nget $ka\r\n'))
case('split_inside_crlf',
     I(b'set $ka 0 0 1\r'), I(b'\nx\r'), I(b'\nget $ka\r'), T(b'\n'))
case('split_command_line_midword',
     I(b'ge'), I(b't $k'), T(b'a\r\n'))
case('two_conns_pending_header',
     I(b'set $ka 0 0 3\r\n', conn='a'),
     T(b'set $ka 0 0 1\r\nB\r\nget $ka\r\n', conn='b'),
     T(b'AAA\r\nget $ka\r\n', conn='a'),
     T(b'get $ka\r\n', conn='b'))
case('half_typed_command_other_conn',
     I(b'get $k', conn='a'),
     T(b'set $ka 0 0 1\r\nZ\r\n', conn='b'),
     T(b'a\r\n', conn='a'))

# ---------------------------------------------------------------- 3. storage commands
case('set_overwrites',
     T(b'set $ka 1 0 3\r\none\r\nset $ka 2 0 3\r\ntwo\r\nget $ka\r\n'))
case('add_miss_then_hit',
     T(b'add $ka 3 0 1\r\nx\r\nadd $ka 0 0 1\r\ny\r\nget $ka\r\n'))
case('replace_miss_then_hit',
     T(b'replace $ka 0 0 1\r\nx\r\nget $ka\r\nset $ka 1 0 1\r\ny\r\nreplace $ka 7 0 2\r\nyy\r\nget $ka\r\n'))
case('append_prepend_miss',
     T(b'append $ka 0 0 1\r\nx\r\nprepend $ka 0 0 1\r\nx\r\nget $ka\r\n'))
case('append_prepend_hit',
     T(b'set $ka 0 0 3\r\nval\r\nappend $ka 0 0 3\r\nAPP\r\nprepend $ka 0 0 3\r\nPRE\r\nget $ka\r\n'))
case('append_prepend_keep_flags_and_exptime',
     T(b'set $ka 7 0 2\r\nyy\r\nappend $ka 99 99 2\r\nzz\r\nprepend $ka 99 -1 2\r\naa\r\ngets $ka\r\n'))
case('add_on_expired_item',
     T(b'set $ka 0 -1 1\r\na\r\nadd $ka 4 0 1\r\nb\r\nget $ka\r\nreplace $kb 0 0 1\r\nx\r\n'))
case('cas_flow',
     T(b'set $ka 0 0 3\r\nbar\r\ngets $ka\r\n'),
     T(lambda c: b'cas $ka 1 0 4 %d\r\nbar2\r\ncas $ka 1 0 4 %d\r\nbar3\r\n' % (c.cas[-1], c.cas[-1])),
     T(b'gets $ka\r\n'))
case('cas_missing_and_zero_unique',
     T(b'cas $knone 0 0 1 1\r\nq\r\nset $ka 0 0 1\r\nx\r\ncas $ka 0 0 1 0\r\ny\r\nget $ka\r\n'))
case('cas_two_connections',
     T(b'set $ka 0 0 1\r\nx\r\ngets $ka\r\n', conn='a'),
     T(b'set $ka 0 0 1\r\ny\r\n', conn='b'),
     T(lambda c: b'cas $ka 0 0 1 %d\r\nz\r\ngets $ka\r\n' % c.cas[0], conn='a'),
     T(lambda c: b'cas $ka 9 0 1 %d\r\nw\r\ngets $ka\r\n' % c.cas[-1], conn='b'))
case('cas_noreply',
     T(b'set $ka 0 0 1\r\nx\r\ngets $ka\r\n'),
     T(lambda c: b'cas $ka 0 0 1 %d noreply\r\ny\r\ncas $ka 0 0 1 %d noreply\r\nz\r\n'
       b'cas $knx 0 0 1 1 noreply\r\nq\r\ngets $ka\r\n' % (c.cas[-1], c.cas[-1])))
case('cas_bad_unique_field',
     T(b'set $ka 0 0 1\r\nx\r\ncas $ka 0 0 1 abc\r\ny\r\ncas $ka 0 0 1 -1\r\ny\r\n'
       b'cas $ka 0 0 1 18446744073709551616\r\ny\r\ncas $ka 0 0 1 1.5\r\ny\r\nget $ka\r\n'))
case('cas_token_counts',
     T(b'cas $ka 0 0 1\r\nx\r\ncas $ka 0 0 1 1 noreply extra\r\nx\r\ncas\r\ncas $ka 0 0 1 1 garbage\r\nx\r\n'))
case('cas_unchanged_by_touch_gat_changed_by_append',
     T(b'set $ka 0 0 1\r\n1\r\ngets $ka\r\ntouch $ka 100\r\ngets $ka\r\ngat 100 $ka\r\ngats 0 $ka\r\n'
       b'incr $ka 1\r\ngets $ka\r\nappend $ka 0 0 1\r\n0\r\ngets $ka\r\nadd $ka 0 0 1\r\nx\r\ngets $ka\r\n'))
case('cas_changed_by_replace_prepend_set',
     T(b'set $ka 0 0 1\r\n1\r\ngets $ka\r\nreplace $ka 0 0 1\r\n2\r\ngets $ka\r\nprepend $ka 0 0 1\r\n3\r\n'
       b'gets $ka\r\nset $ka 0 0 1\r\n4\r\ngets $ka\r\n'))
case('gets_multi_distinct_cas',
     T(b'set $ka 0 0 1\r\na\r\nset $kb 0 0 1\r\nb\r\ngets $ka $kb $ka $knx\r\n'))

# flags
case('flags_range',
     T(b'set $ka 0 0 1\r\na\r\nset $kb 4294967295 0 1\r\nb\r\nset $kc 00012 0 1\r\nc\r\nset $kd +5 0 1\r\nd\r\n'
       b'get $ka $kb $kc $kd\r\n'))
case('flags_wrap_mod_2_32',
     T(b'set $ka 4294967296 0 1\r\na\r\nset $kb 4294967297 0 1\r\nb\r\n'
       b'set $kc 18446744073709551615 0 1\r\nc\r\nget $ka $kb $kc\r\nmg $kb f\r\n'))
case('flags_invalid',
     T(b'set $ka 18446744073709551616 0 1\r\na\r\nset $ka -1 0 1\r\na\r\nset $ka abc 0 1\r\na\r\n'
       b'set $ka 0x10 0 1\r\na\r\nset $ka 1.5 0 1\r\na\r\nset $ka 1a 0 1\r\na\r\nget $ka\r\n'))

# exptime
case('exptime_negative_is_expired',
     T(b'set $ka 0 -1 1\r\na\r\nget $ka\r\nset $kb 0 -100000 1\r\nb\r\nget $kb\r\nmg $ka v\r\n'))
case('exptime_absolute_in_past',
     T(b'set $ka 0 2592001 1\r\na\r\nset $kb 0 1000000000 1\r\nb\r\nget $ka $kb\r\n'))
case('exptime_relative_and_30_days',
     T(b'set $ka 0 100 1\r\na\r\nset $kb 0 2592000 1\r\nb\r\nget $ka $kb\r\nmg $ka t\r\nmg $kb t\r\n'))
case('exptime_absolute_future',
     T(lambda c: b'set $ka 0 %d 1\r\na\r\nget $ka\r\n' % (int(time.time()) + 1000)))
case('exptime_int32_wrap',
     T(b'set $ka 0 99999999999 1\r\na\r\nset $kb 0 -99999999999 1\r\nb\r\nget $ka $kb\r\n'))
case('exptime_invalid',
     T(b'set $ka 0 abc 1\r\na\r\nset $ka 0 1.5 1\r\na\r\nset $ka 0 - 1\r\na\r\nset $ka 0 0x1 1\r\na\r\nget $ka\r\n'))
case('exptime_formats',
     T(b'set $ka 0 +100 1\r\na\r\nset $kb 0 0100 1\r\nb\r\nset $kc 0 -0 1\r\nc\r\nget $ka $kb $kc\r\n'))

# bytes field
case('bytes_field_formats',
     T(b'set $ka 0 0 01\r\na\r\nset $kb 0 0 +1\r\nb\r\nget $ka $kb\r\n'))
case('bytes_field_invalid',
     T(b'set $ka 0 0 -1\r\na\r\nset $ka 0 0 abc\r\na\r\nset $ka 0 0 2147483647\r\na\r\n'
       b'set $ka 0 0 1.0\r\na\r\nset $ka 0 0 2147483646\r\na\r\nget $ka\r\n'))
case('bytes_field_2_32_truncates_to_zero',
     T(b'set $ka 0 0 4294967296\r\na\r\nget $ka\r\n'))

# data blocks
case('zero_length_values',
     T(b'set $ka 0 0 0\r\n\r\nget $ka\r\nappend $ka 0 0 0\r\n\r\nprepend $ka 0 0 1\r\nx\r\nget $ka\r\n'
       b'ms $kb 0\r\n\r\nmg $kb v s\r\n'))
case('value_with_crlf_inside',
     T(b'set $ka 0 0 8\r\nab\r\ncd\r\n\r\nget $ka\r\nset $kb 0 0 2\r\n\r\n\r\nget $kb\r\n'))
case('value_looks_like_protocol',
     T(b'set $ka 0 0 23\r\nEND\r\nVALUE x 0 1\r\nget x\r\nget $ka\r\nmg $ka v\r\n'))
case('value_all_256_bytes',
     T(b'set $ka 0 0 256\r\n' + bytes(range(256)) + b'\r\nget $ka\r\nmg $ka v s\r\n'))
case('value_binary_nul_bytes',
     T(b'set $ka 0 0 5\r\n\x00\x00\r\x00\n\r\nappend $ka 0 0 2\r\n\x00\xff\r\ngets $ka\r\n'))
case('value_64k',
     T(b'set $ka 0 0 65536\r\n' + b'0123456789abcdef' * 4096 + b'\r\nmg $ka s\r\nget $ka\r\n'))

# noreply on storage commands
case('noreply_storage_all_commands',
     T(b'set $ka 0 0 1 noreply\r\na\r\nadd $ka 0 0 1 noreply\r\nb\r\nadd $kb 0 0 1 noreply\r\nb\r\n'
       b'replace $kc 0 0 1 noreply\r\nc\r\nreplace $ka 0 0 1 noreply\r\nA\r\nappend $ka 0 0 1 noreply\r\n+\r\n'
       b'prepend $ka 0 0 1 noreply\r\n-\r\nappend $kc 0 0 1 noreply\r\nc\r\nprepend $kc 0 0 1 noreply\r\nc\r\n'
       b'get $ka $kb $kc\r\n'))
case('noreply_suppresses_client_errors',
     T(b'set $ka abc 0 1 noreply\r\na\r\nset $ka 0 abc 1 noreply\r\nget $ka\r\nset $ka 0 0 -1 noreply\r\n'
       b'set $K251 0 0 1 noreply\r\nb\r\nget $ka\r\n'))
case('noreply_must_be_exact_last_token',
     T(b'set $ka 0 0 1 NOREPLY\r\na\r\nset $ka 0 0 1 noreply2\r\nb\r\nset $ka 0 0 1 noreply x\r\nc\r\nget $ka\r\n'))
case('noreply_token_count_errors_not_suppressed',
     T(b'set $ka 0 0 1 noreply extra\r\na\r\nincr $ka 1 2 noreply\r\ndelete $ka 0 noreply x\r\n'
       b'touch $ka noreply\r\nset $ka noreply\r\n'))
case('set_sixth_token_garbage_ignored',
     T(b'set $ka 0 0 1 garbage\r\na\r\nadd $kb 0 0 1 x\r\nb\r\nget $ka $kb\r\n'))
case('storage_token_counts',
     T(b'set $ka 0 0\r\nset $ka\r\nset\r\nset $ka 0 0 1 2 3 4 5 6\r\nadd $ka 0\r\nappend\r\n'
       b'prepend $ka 0 0 1 noreply x y\r\nreplace $ka 0 0 1 a b c d e f g h i j k l m n o p q r s t u v w x y z\r\n'))

# bad data chunk / resync
case('client_error_data_line_is_executed',
     T(b'set $ka abc 0 14\r\nset $kb 0 0 1\r\nx\r\nget $kb\r\n'))
case('bad_data_chunk_too_long_keeps_old',
     T(b'set $ka 0 0 1\r\nZ\r\nset $ka 0 0 1\r\nAB\r\nget $ka\r\n'))
case('bad_data_chunk_resync_by_count',
     T(b'set $ka 0 0 1\r\nABCDEFG\r\nget $ka\r\n'))
case('bad_data_chunk_next_command_executes',
     T(b'set $ka 0 0 2\r\nxxxxget $ka\r\nset $ka 0 0 2\r\nyyyyset $ka 0 0 1\r\nq\r\nget $ka\r\n'))
case('data_block_embedded_crlf_exact_length',
     T(b'set $ka 0 0 3\r\nA\r\n\r\nget $ka\r\n'))
case('bad_data_chunk_waits_for_count',
     I(b'set $ka 0 0 1\r\nA\n'), T(b'get $ka\r\n'))
case('bad_data_chunk_no_crlf_then_sentinel',
     T(b'set $kb 0 0 1\r\nB\r\n'), T(b'set $kb 0 0 1\r\nBxx'), T(b'get $kb\r\n'))
case('bad_data_chunk_cr_only',
     T(b'set $ka 0 0 1\r\nA\rX\r\nget $ka\r\n'))
case('bad_data_chunk_lf_terminator',
     T(b'set $ka 0 0 2\r\nab\nc\r\nget $ka\r\n'))
case('bad_data_chunk_noreply',
     T(b'set $ka 0 0 1\r\nZ\r\nset $ka 0 0 1 noreply\r\nAB\r\nget $ka\r\n'))
case('bad_data_chunk_append_keeps_old',
     T(b'set $ka 0 0 1\r\nZ\r\nappend $ka 0 0 1\r\nXY\r\nprepend $ka 0 0 2\r\nXYZ\r\nget $ka\r\n'))

# too large / swallow
case('too_large_set_deletes_old',
     T(b'set $ka 0 0 1\r\nZ\r\n'),
     T(b'set $ka 0 0 %d\r\n' % BIG, bigdata, b'\r\nget $ka\r\n'))
case('too_large_replace_keeps_old',
     T(b'set $ka 0 0 1\r\nZ\r\n'),
     T(b'replace $ka 0 0 %d\r\n' % BIG, bigdata, b'\r\nget $ka\r\n'))
case('too_large_append_prepend_keep_old',
     T(b'set $ka 0 0 1\r\nZ\r\n'),
     T(b'append $ka 0 0 %d\r\n' % BIG, bigdata, b'\r\nprepend $ka 0 0 %d\r\n' % BIG, bigdata,
       b'\r\nget $ka\r\n'))
case('too_large_add_cas_keep_old',
     T(b'set $ka 0 0 1\r\nZ\r\n'),
     T(b'add $ka 0 0 %d\r\n' % BIG, bigdata, b'\r\ncas $ka 0 0 %d 1\r\n' % BIG, bigdata,
       b'\r\nget $ka\r\nadd $kb 0 0 %d\r\n' % BIG, bigdata, b'\r\nget $kb\r\n'))
case('too_large_noreply_still_deletes',
     T(b'set $ka 0 0 1\r\nZ\r\n'),
     T(b'set $ka 0 0 %d noreply\r\n' % BIG, bigdata, b'\r\nget $ka\r\n'))
case('too_large_swallow_exact_count',
     T(b'set $ka 0 0 %d\r\n' % BIG, bigdata, b'XXversion\r\n'))
case('too_large_swallow_eats_next_bytes',
     T(b'set $ka 0 0 %d\r\n' % BIG, bigdata[:-1], b'\r\nversion\r\n'))
case('too_large_reply_after_whole_swallow',
     T(b'set $ka 0 0 1\r\nZ\r\n'),
     I(b'set $ka 0 0 %d\r\n' % BIG),
     I(b'y' * 500000),
     I(b'get $ka\r\n'),
     T(lambda c: b'y' * (BIG + 2 - 500000 - len(b'get ' + c.k + b'a\r\n'))),
     T(b'get $ka\r\n'))
case('size_limit_boundary',
     T(lambda c: b'set $ka 0 0 %d\r\n' % (1048576 - 59 - len(c.k + b'a'))
       + b'z' * (1048576 - 59 - len(c.k + b'a')) + b'\r\nmg $ka s\r\n'),
     T(lambda c: b'set $ka 0 0 %d\r\n' % (1048576 - 58 - len(c.k + b'a'))
       + b'z' * (1048576 - 58 - len(c.k + b'a')) + b'\r\nmg $ka s\r\n'))
case('append_result_too_large_not_stored',
     T(b'set $ka 0 0 1000000\r\n' + b'y' * 1000000 + b'\r\nappend $ka 0 0 100000\r\n' + b'y' * 100000
       + b'\r\nmg $ka s\r\n'))

# ---------------------------------------------------------------- 4. key length
case('key_250_ok_everywhere',
     T(b'set $K250 0 0 1\r\na\r\nget $K250\r\ngets $K250\r\ntouch $K250 0\r\nincr $K250 1\r\n'
       b'gat 0 $K250\r\nappend $K250 0 0 1\r\nb\r\ndelete $K250\r\n'))
case('key_251_storage_rejected',
     T(b'set $K251 0 0 1\r\na\r\nadd $K251 0 0 1\r\na\r\ncas $K251 0 0 1 1\r\na\r\nappend $K251 0 0 1\r\na\r\n'))
# A get/gets/gat/gats with a key > 250 bytes is always the FIRST command of its step: memcached
# 1.6.18 also throws away the queued replies of the earlier commands of the same batch (bug, see
# the docstring); a fresh step starts after all earlier replies were delivered.
case('key_251_other_commands_rejected',
     T(b'touch $K251 1\r\ndelete $K251\r\nincr $K251 1\r\ndecr $K251 1\r\n'))
case('key_251_retrieval_rejected',
     T(b'get $K251\r\nget $ka\r\n'), T(b'gets $K251\r\nversion\r\n'), T(b'gat 0 $K251\r\n'),
     T(b'gats 0 $K251\r\n'))
case('key_251_in_multiget_discards_all',
     T(b'set $ka 0 0 1\r\na\r\n'), T(b'get $ka $ka $K251\r\nget $ka\r\n'), T(b'get $K251 $ka\r\n'),
     T(b'gets $ka $K251\r\n'), T(b'gat 0 $ka $K251\r\n'))
case('key_251_meta_rejected',
     T(b'mg $K251 v\r\nms $K251 1\r\na\r\nmd $K251\r\nma $K251\r\nms $K250 1\r\na\r\nmg $K250 v\r\n'))

# ---------------------------------------------------------------- 5. retrieval
case('get_multi_duplicates_and_misses',
     T(b'set $ka 1 0 1\r\na\r\nset $kb 2 0 2\r\nbb\r\nget $ka $knx $kb $ka\r\nget $knx\r\nget $knx $knx2\r\n'))
case('get_more_than_24_tokens',
     T(b''.join(b'set $k%d 0 0 1\r\n%d\r\n' % (i, i % 10) for i in range(10))
       + b'get ' + b' '.join(b'$k%d' % (i % 13) for i in range(40)) + b'\r\n'))
case('get_without_keys',
     T(b'get\r\ngets\r\nget \r\ngets  \r\n'))
case('get_noreply_is_a_key',
     T(b'set noreply 0 0 1\r\nn\r\nset $ka 0 0 1\r\na\r\nget $ka noreply\r\nget noreply\r\ndelete noreply\r\n'))
case('get_line_over_2048_waits',
     T(b'set $k7 0 0 1\r\n7\r\nset $k250 0 0 3\r\n250\r\n'),
     I(b'get ' + b' '.join(b'$k%d' % i for i in range(300))),
     T(b'\r\n'))
case('gets_line_over_2048_waits',
     T(b'set $k3 0 0 1\r\n3\r\n'),
     I(b'gets ' + b' '.join(b'$k%d' % i for i in range(200))),
     T(b'\r\n'))
case('gat_gats_basic',
     T(b'set $kt 3 0 2\r\nhi\r\ngat 100 $kt\r\ngats 100 $kt $knx $kt\r\ngat 100\r\ngats 100 $knx\r\nmg $kt t\r\n'))
case('gat_errors',
     T(b'gat\r\ngats\r\ngat abc $ka\r\ngats abc $ka\r\ngat 1.5 $ka\r\ngat $ka\r\n'))
case('gat_negative_expires_after_return',
     T(b'set $ka 0 0 1\r\na\r\ngat -1 $ka\r\nget $ka\r\n'))
case('gat_zero_makes_permanent',
     T(b'set $ka 0 100 1\r\na\r\ngat 0 $ka\r\nmg $ka t\r\n'))
case('gats_past_absolute_expires',
     T(b'set $ka 0 0 1\r\na\r\ngats 2592001 $ka\r\nget $ka\r\n'))
case('gat_noreply_is_a_key',
     T(b'set $ka 0 0 1\r\na\r\ngat 0 $ka noreply\r\n'))

# ---------------------------------------------------------------- 6. touch
case('touch_hit_miss',
     T(b'set $ka 0 0 1\r\na\r\ntouch $ka 100\r\ntouch $knx 100\r\nmg $ka t\r\n'))
case('touch_errors',
     T(b'set $ka 0 0 1\r\na\r\ntouch $ka abc\r\ntouch $ka\r\ntouch $ka 1 2 3\r\ntouch\r\ntouch $ka 1.5\r\nget $ka\r\n'))
case('touch_junk_fourth_token',
     T(b'set $ka 0 0 1\r\na\r\ntouch $ka 100 junk\r\nmg $ka t\r\n'))
case('touch_negative_expires',
     T(b'set $ka 0 0 1\r\na\r\ntouch $ka -1\r\nget $ka\r\ntouch $ka 0\r\n'))
case('touch_zero_makes_permanent',
     T(b'set $ka 0 100 1\r\na\r\ntouch $ka 0\r\nmg $ka t\r\n'))
case('touch_noreply',
     T(b'set $ka 0 0 1\r\na\r\ntouch $ka 100 noreply\r\ntouch $knx 100 noreply\r\ntouch $ka abc noreply\r\n'
       b'touch $ka noreply\r\nmg $ka t v\r\n'))

# ---------------------------------------------------------------- 7. delete
case('delete_hit_miss',
     T(b'set $ka 0 0 1\r\na\r\ndelete $ka\r\ndelete $ka\r\nget $ka\r\n'))
case('delete_legacy_zero',
     T(b'set $ka 0 0 1\r\na\r\ndelete $ka 0\r\ndelete $ka 0\r\n'))
case('delete_usage_errors',
     T(b'set $ka 0 0 1\r\na\r\ndelete $ka b\r\ndelete $ka 1\r\ndelete $ka 00\r\ndelete $ka 0 b\r\n'
       b'delete $ka noreply b\r\ndelete $ka -0\r\nget $ka\r\n'))
case('delete_token_counts',
     T(b'delete\r\ndelete a b c d e\r\ndelete $ka 0 noreply x\r\n'))
case('delete_noreply',
     T(b'set $ka 0 0 1\r\na\r\nset $kb 0 0 1\r\nb\r\ndelete $ka noreply\r\ndelete $kb 0 noreply\r\n'
       b'delete $knx noreply\r\ndelete $kc 5 noreply\r\nget $ka $kb\r\n'))
case('delete_then_add',
     T(b'set $ka 0 0 1\r\na\r\ndelete $ka\r\nadd $ka 0 0 1\r\nb\r\ngets $ka\r\n'))

# ---------------------------------------------------------------- 8. incr / decr
case('incr_decr_basic_and_padding',
     T(b'set $kn 0 0 1\r\n5\r\nincr $kn 10\r\ndecr $kn 3\r\ndecr $kn 100\r\nget $kn\r\n'))
# Padding (in-place update) only happens when nothing else references the item. From the 2nd read
# of an item on, memcached may queue an async LRU bump that holds a reference for a while, and then
# incr/decr writes a new, unpadded item (timing dependent). So any incr/decr whose padding is
# observable happens before the 2nd read of that key (re-set the key to start over).
case('decr_padding_keeps_flags',
     T(b'set $kn 5 0 3\r\n100\r\ndecr $kn 1\r\nget $kn\r\n'
       b'set $km 5 0 3\r\n100\r\ndecr $km 1\r\ndecr $km 90\r\nget $km\r\n'
       b'set $ko 5 0 3\r\n9  \r\nincr $ko 5\r\nget $ko\r\n'))
case('incr_grows_value_keeps_flags',
     T(b'set $kn 5 0 2\r\n99\r\nincr $kn 1\r\nget $kn\r\nincr $kn 9900\r\nget $kn\r\n'))
case('incr_decr_miss',
     T(b'incr $knx 1\r\ndecr $knx 1\r\nget $knx\r\n'))
# NB: incr/decr of a *stored* value >= 2^63 is not deterministic in memcached 1.6.18 (see the
# docstring); wrap-around is therefore tested with small stored values and huge deltas.
case('incr_wrap_2_64',
     T(b'set $kn 0 0 2\r\n10\r\nincr $kn 18446744073709551615\r\nget $kn\r\n'
       b'set $km 0 0 19\r\n9223372036854775807\r\nincr $km 18446744073709551615\r\nget $km\r\n'),
     T(b'incr $km 9223372036854775810\r\nget $km\r\n'))
case('incr_huge_delta',
     T(b'set $kn 0 0 1\r\n0\r\nincr $kn 18446744073709551615\r\nget $kn\r\n'
       b'set $km 0 0 1\r\n7\r\ndecr $km 18446744073709551615\r\nget $km\r\n'))
case('decr_below_zero_clamps',
     T(b'set $kn 0 0 2\r\n10\r\ndecr $kn 11\r\ndecr $kn 1\r\nget $kn\r\n'))
case('incr_invalid_delta',
     T(b'set $kn 0 0 1\r\n1\r\nincr $kn abc\r\nincr $kn -1\r\nincr $kn 1.5\r\nincr $kn 18446744073709551616\r\n'
       b'decr $kn abc\r\nincr $kn 0x10\r\nincr $kn 1a\r\nget $kn\r\n'))
case('incr_delta_formats',
     T(b'set $kn 0 0 1\r\n1\r\nincr $kn 01\r\nincr $kn +1\r\nincr $kn 0\r\nincr $kn 1 junk\r\ndecr $kn 00\r\n'))
case('incr_non_numeric_values',
     T(b'set $ka 0 0 3\r\nabc\r\nset $kb 0 0 2\r\n-1\r\nset $kc 0 0 3\r\n12a\r\nset $kd 0 0 0\r\n\r\n'
       b'set $ke 0 0 20\r\n18446744073709551616\r\nset $kf 0 0 2\r\n-0\r\n'
       b'incr $ka 1\r\nincr $kb 1\r\nincr $kc 1\r\nincr $kd 1\r\nincr $ke 1\r\nincr $kf 1\r\ndecr $ka 1\r\n'))
case('incr_numeric_value_formats',
     T(b'set $ka 0 0 3\r\n 12\r\nset $kb 0 0 3\r\n12 \r\nset $kc 0 0 3\r\n007\r\nset $kd 0 0 3\r\n+07\r\n'
       b'incr $ka 1\r\nincr $kb 1\r\nincr $kc 1\r\nincr $kd 1\r\nget $ka $kb $kc $kd\r\n'))
case('incr_token_counts',
     T(b'set $kn 0 0 1\r\n1\r\nincr $kn\r\nincr $kn 1 2 3\r\nincr\r\ndecr $kn\r\ndecr\r\nget $kn\r\n'))
case('incr_noreply',
     T(b'set $kn 0 0 1\r\n1\r\nset $ks 0 0 1\r\nx\r\nincr $kn 5 noreply\r\ndecr $kn 2 noreply\r\n'
       b'incr $knx 1 noreply\r\nincr $kn abc noreply\r\nincr $ks 1 noreply\r\nget $kn\r\n'))
case('incr_changes_cas',
     T(b'set $kn 0 0 1\r\n1\r\ngets $kn\r\nincr $kn 1\r\ngets $kn\r\ndecr $kn 1\r\ngets $kn\r\nincr $kn 0\r\ngets $kn\r\n'))
case('decr_padding_then_append',
     T(b'set $kn 0 0 2\r\n10\r\ndecr $kn 1\r\nget $kn\r\nappend $kn 0 0 1\r\nX\r\nget $kn\r\nincr $kn 1\r\n'))
case('incr_nineteen_digit_value',
     T(b'set $kn 0 0 19\r\n9223372036854775806\r\nincr $kn 1\r\nget $kn\r\n'),
     T(b'decr $kn 9223372036854775800\r\nget $kn\r\nset $km 0 0 19\r\n9223372036854775807\r\nincr $km 1\r\n'
       b'get $km\r\n'))
case('incr_value_with_flags_and_ttl',
     T(b'set $kn 42 100 1\r\n1\r\nincr $kn 1\r\nmg $kn f t v\r\n'))

# ---------------------------------------------------------------- 9. flush_all
case('flush_all_basic',
     T(b'set $ka 0 0 1\r\na\r\nflush_all\r\nget $ka\r\nset $kb 0 0 1\r\nb\r\nget $kb\r\nadd $ka 0 0 1\r\nc\r\n'))
case('flush_all_argument_variants',
     T(b'flush_all 0\r\nflush_all -1\r\nflush_all 0 junk\r\nflush_all 100 2\r\nflush_all 1 2 3\r\n'
       b'flush_all abc\r\nflush_all 1.5\r\nflush_all -1 noreply x\r\n'))
case('flush_all_noreply',
     T(b'set $ka 0 0 1\r\na\r\nflush_all noreply\r\nget $ka\r\nset $kb 0 0 1\r\nb\r\nflush_all 100 noreply\r\n'
       b'flush_all abc noreply\r\nget $kb\r\n'))
case('flush_all_delayed_keeps_items_for_now',
     T(b'set $ka 0 0 1\r\na\r\nflush_all 100\r\nget $ka\r\nflush_all 0\r\nget $ka\r\n'))
case('flush_all_negative_is_immediate',
     T(b'set $ka 0 0 1\r\na\r\nflush_all -1\r\nget $ka\r\nms $kb 1\r\nb\r\nflush_all -5\r\nmg $kb v\r\n'))

# ---------------------------------------------------------------- 10. version / verbosity / quit / stats errors
case('version_variants',
     T(b'version\r\nversion foo bar\r\nversion noreply\r\n'))
case('verbosity_variants',
     T(b'verbosity 1\r\nverbosity 1 2\r\nverbosity\r\nverbosity foo bar my\r\nverbosity abc\r\n'
       b'verbosity -5\r\nverbosity noreply\r\nverbosity 1 noreply\r\nverbosity 0\r\n'))
case('quit_discards_rest_of_pipeline',
     T(b'quit\r\nversion\r\n'))
case('quit_with_arguments',
     T(b'quit foo bar\r\nversion\r\n'))
case('quit_noreply',
     T(b'quit noreply\r\n'))
case('quit_after_replies_flushed',
     T(b'set $ka 0 0 1\r\na\r\nversion\r\nget $ka\r\nquit\r\nversion\r\n'))
case('quit_other_connection_unaffected',
     T(b'set $ka 0 0 1\r\na\r\n', conn='a'),
     T(b'quit\r\n', conn='b'),
     T(b'get $ka\r\n', conn='a'),
     T(b'get $ka\r\n', conn='b'))
case('stats_error_replies',
     T(b'stats noreply\r\nstats nonsense\r\nstats nonsense noreply\r\n'))
case('stats_reset',
     T(b'stats reset\r\nstats reset noreply\r\n'))
# (`shutdown` is skipped: see module docstring.)

# ---------------------------------------------------------------- 11. line length
case('line_2048_without_newline_waits',
     I(b'a' * 2048), T(b'\r\n'))
case('line_2049_without_newline_closes',
     I(b'a' * 2049))
case('line_5000_without_newline_closes',
     I(b'x' * 5000))
case('set_line_over_2048_without_newline_closes',
     I(b'set $ka 0 0 1 ' + b'a' * 2049))
case('long_line_with_newline_one_write',
     T(b'a' * 3000 + b'\r\n'))
case('long_set_line_with_newline_one_write',
     T(b'set $ka 0 0 1 ' + b'g' * 3000 + b'\r\nx\r\nget $ka\r\n'))
case('long_version_line_one_write',
     T(b'version ' + b'v' * 10000 + b'\r\n'))
case('get_long_single_key_line',
     I(b'get ' + b'k' * 3000), T(b'\r\n'))

# ---------------------------------------------------------------- 12. meta commands
case('mn_variants',
     T(b'mn\r\nmn foo bar\r\n'))
case('mg_basic_hit_miss',
     T(b'ms $kf 3 T0 F7\r\nbar\r\nmg $kf\r\nmg $kf v\r\nmg $knx\r\nmg $knx v\r\nmg $knx k O1 v\r\nmg $kf q\r\n'))
case('mg_all_return_flags',
     T(b'ms $kf 3 T100 F7\r\nbar\r\nmg $kf s v f t c k Oxyz h l\r\nmg $kf k c s f\r\n'))
case('mg_hit_and_last_access_flags',
     T(b'ms $kf 3\r\nbar\r\nmg $kf h l\r\nmg $kf h l\r\nmg $kf u h\r\nmg $kf h\r\n'))
case('mg_fetched_flag_after_get',
     T(b'set $kf 0 0 1\r\na\r\nmg $kf h\r\nget $kf\r\nmg $kf h\r\n'))
case('mg_quiet_mode',
     T(b'ms $kf 3\r\nbar\r\nmg $knx q v\r\nmg $kf q v k\r\nmg $kf q\r\nmg $knx q k O9\r\nmn\r\n'))
case('mg_invalid_numeric_tokens',
     T(b'mg $kf Tabc\r\nmg $kf Nabc\r\nmg $kf Rabc\r\nmg $kf T1.5\r\n'))
case('mg_duplicate_and_invalid_flags',
     T(b'ms $kf 1\r\nx\r\nmg $kf v v\r\nmg $kf Z\r\nmg $kf E5\r\nmg $kf noreply\r\nmg $kf P L\r\nmg $kf vv\r\n'
       b'mg $kf !\r\nmg $kf k k\r\nmg $knx Z\r\n'))
case('mg_touch_with_T',
     T(b'ms $kf 3 T0\r\nbar\r\nmg $kf T30 t\r\nmg $kf t\r\nmg $kf T0 t v\r\nmg $knx T30 t\r\n'))
case('meta_without_key',
     T(b'mg\r\nms\r\nmd\r\nma\r\nmg \r\n'))
case('meta_opaque_limits',
     T(b'mg $knx O' + b'x' * 31 + b'\r\nmg $knx O' + b'x' * 32 + b'\r\nmg $knx O k\r\n'
       b'ms $kf 1 O' + b'y' * 31 + b'\r\na\r\n'))
case('meta_many_flags',
     T(b'ms $kf 1\r\nx\r\nmg $kf v s f t c k h l Oa q u P L\r\nmg $kf v s f t c k h l Oa q u P L b\r\n'))
case('meta_too_many_tokens',
     T(b'mg $kf ' + b' '.join([b'P'] * 30) + b'\r\nmg $kf ' + b' '.join([b'v'] * 30) + b'\r\n'))
case('mg_base64_keys',
     T(lambda c: b'ms %s 3 b k\r\nb64\r\nmg %s b v k\r\nmg $kx v k\r\nmg $kx\r\nmd %s b q\r\nmg $kx v\r\n'
       % (b64(c.k + b'x'), b64(c.k + b'x'), b64(c.k + b'x'))))
case('mg_base64_binary_key_bytes',
     T(lambda c: b'ms %s 1 b k\r\nz\r\nmg %s b k v\r\n' % (b64(c.k + b'\x00\x01\x02'), b64(c.k + b'\x00\x01\x02'))))
case('meta_base64_decode_errors',
     T(b'mg !!!! b v\r\nms !!!! 3 b\r\nbar\r\nmg Zm9 b\r\nmd !!!! b\r\nma !!!! b\r\n'))
case('mg_vivify_with_N',
     T(b'mg $kv N30 t v c\r\nmg $kv N30 t v c\r\nmg $kv v\r\nms $kv 3 T100\r\nnew\r\nmg $kv N30 v\r\n'))
case('mg_recache_with_R',
     T(b'ms $kr 3 T10\r\nabc\r\nmg $kr R30 v t\r\nmg $kr R30 v t\r\nmg $kr R5 v\r\n'))
case('md_invalidate_then_mg',
     T(b'ms $kf 3 T0\r\nbar\r\nmd $kf I T30\r\nmg $kf v c t\r\nmg $kf v c t\r\nmg $kf\r\n'))
case('ms_basic_and_return_flags',
     T(b'ms $kf 3\r\nbar\r\nms $kf 3 c k Oabc s t f\r\nbar\r\nms $kf 3 q\r\nbar\r\nms $kf 3 I\r\nbar\r\n'
       b'ms $kf 3 v\r\nbar\r\nmg $kf v\r\n'))
case('ms_modes',
     T(b'ms $kf 3\r\nbar\r\nms $kf 3 ME\r\nbar\r\nms $kn 3 ME\r\nnew\r\nms $kx 3 MR\r\nbar\r\nms $kx 3 MA\r\nbar\r\n'
       b'ms $kx 3 MP\r\nbar\r\nms $kf 3 MR\r\nBAR\r\nms $kf 3 MA\r\nAPP\r\nms $kf 3 MP\r\nPRE\r\nms $kf 1 MS\r\n'
       b'1\r\nmg $kf v\r\nmg $kn v\r\nmg $kx v\r\n'))
case('ms_mode_errors',
     T(b'ms $kf 3 MX\r\nbar\r\nms $kf 3 Ms\r\nbar\r\nms $kf 3 MSx\r\nbar\r\nms $kf 3 M\r\nbar\r\nmg $kf\r\n'))
case('ms_cas_flow',
     T(b'ms $kf 3\r\nbar\r\nmg $kf c\r\n'),
     T(lambda c: b'ms $kf 3 C%d c\r\nba2\r\nms $kf 3 C%d c\r\nba3\r\n' % (c.cas[-1], c.cas[-1])),
     T(b'ms $knx 3 C123\r\nbar\r\nms $kf 3 C1 q\r\nbar\r\nmg $kf v\r\n'))
case('ms_cas_with_invalidate',
     T(b'ms $kf 3\r\nbar\r\nmg $kf c\r\n'),
     T(lambda c: b'ms $kf 3 C%d I\r\nnew\r\nmg $kf v c\r\n' % (c.cas[-1] - 1)))
case('ms_replace_with_cas',
     T(b'ms $kf 3\r\nbar\r\nmg $kf c\r\n'),
     T(lambda c: b'ms $kf 3 MR C%d c\r\nba2\r\nms $kf 3 MA C%d\r\nba3\r\nmg $kf v\r\n'
       % (c.cas[-1], c.cas[-1] + 1000000)))
case('ms_zero_length_and_flags',
     T(b'ms $kf 0\r\n\r\nmg $kf v s\r\nms $kg 3 F4294967296\r\nbar\r\nmg $kg f\r\nms $kh 3 F4294967295\r\nbar\r\n'
       b'mg $kh f\r\nms $ki 1 F00012\r\nx\r\nget $ki\r\n'))
case('ms_expiry',
     T(b'ms $kf 3 T-1\r\nbar\r\nmg $kf v\r\nms $kg 3 T2592001\r\nbar\r\nmg $kg v\r\nms $kh 3 T100\r\nbar\r\n'
       b'mg $kh t\r\n'))
case('ms_flag_errors_swallow_data',
     T(b'ms $kf 3 Fabc\r\nbar\r\nms $kf 3 Tabc\r\nbar\r\nms $kf 3 Cabc\r\nbar\r\nms $kf 3 Z\r\nbar\r\n'
       b'ms $kf 3 !\r\nbar\r\nms $kf 3 noreply\r\nbar\r\nms $kf 3 Z q\r\nbar\r\nms $kf 3 F1 F2\r\nbar\r\n'
       b'ms $kf 3 O' + b'x' * 40 + b'\r\nbar\r\nms $kf 3 E5\r\nbar\r\nms $kf 1 T0 MS S1\r\nb\r\nmg $kf v\r\n'))
case('ms_bad_datalen_no_swallow',
     T(b'ms $kf S3\r\nbar\r\nms $kf abc\r\nbar\r\nms $kf -1\r\nbar\r\nms $kf\r\nmg $kf\r\n'))
case('ms_bad_data_chunk',
     T(b'ms $kf 2\r\nbar\r\nms $kf 2 q\r\nbar\r\nmg $kf v\r\n'))
case('ms_append_no_autovivify',
     T(b'ms $kx 3 MA N0\r\nbar\r\nmg $kx v\r\n'))
case('ms_too_large',
     T(b'ms $kf 1\r\nZ\r\nms $kg 1\r\nZ\r\n'),
     T(b'ms $kf %d T0\r\n' % BIG, bigdata, b'\r\nmg $kf v\r\nms $kg %d q MR\r\n' % BIG, bigdata,
       b'\r\nmg $kg v\r\n'))
case('md_basic',
     T(b'ms $kf 3\r\nbar\r\nmd $kf\r\nmd $kf\r\nmd $kf q\r\nmd $kf k O5\r\nms $kf 3\r\nbar\r\nmd $kf q\r\n'
       b'mg $kf v\r\nmd $kf k O6 q\r\n'))
case('md_cas',
     T(b'ms $kf 3\r\nbar\r\nmg $kf c\r\n'),
     T(lambda c: b'md $kf C%d\r\nmd $kf C%d q\r\nmg $kf v\r\nmd $kf C%d q\r\nmg $kf v\r\nmd $knx C1\r\n'
       % (c.cas[-1] + 1000000, c.cas[-1] + 1000000, c.cas[-1])))
case('md_errors',
     T(b'ms $kf 1\r\nx\r\nmd $kf Z\r\nmd $kf x\r\nmd $kf Cabc\r\nmd $kf q q\r\nmd $kf v\r\nmg $kf v\r\n'))
case('md_base64_key',
     T(lambda c: b'ms %s 1 b\r\nz\r\nmd %s b\r\nmg $kx v\r\n' % (b64(c.k + b'x'), b64(c.k + b'x'))))
case('ma_basic',
     T(b'ma $kc\r\nma $kc q\r\nma $kc N0\r\nma $kc v\r\nma $kd N0 J10 v\r\nma $kd D5 v\r\nma $kd MD D100 v\r\n'
       b'ma $kd M+ D3 v\r\nma $kd v t c k O9 T50\r\nma $kd q\r\nmg $kd v\r\n'))
case('ma_modes',
     T(b'ma $kc N0 J10\r\nma $kc MI v\r\nma $kc M+ v\r\nma $kc MD v\r\nma $kc M- v\r\nma $kc Mi v\r\n'
       b'ma $kc Mx v\r\nma $kc MII v\r\nmg $kc v\r\n'))
case('ma_errors',
     T(b'ms $kd 1\r\n1\r\nma $kd Dabc\r\nma $kd D-1\r\nma $kd Jabc N0\r\nma $kd Z\r\nma $kd D1 D2\r\n'
       b'ma $kd D18446744073709551616\r\nma $kd Nabc\r\nmg $kd v\r\n'))
case('ma_non_numeric_value',
     T(b'ms $ks 3\r\nabc\r\nma $ks v\r\nma $ks q\r\nms $kt 0\r\n\r\nma $kt\r\n'))
case('ma_cas',
     T(b'ma $kc N0 J5\r\nmg $kc c\r\n'),
     T(lambda c: b'ma $kc C%d v\r\nma $kc C%d v c\r\nma $kc C%d q\r\n'
       % (c.cas[-1] + 1000000, c.cas[-1], c.cas[-1] + 1000000)))
case('ma_wrap_and_clamp',
     T(b'ms $kb 1\r\n5\r\nma $kb D18446744073709551615 v\r\nmg $kb v\r\nma $kb MD D5 v\r\n'
       b'ma $kb D18446744073709551615 v\r\n'))
case('ma_ignored_flags',
     T(b'ma $kc N0\r\nma $kc s f h l\r\nma $kc u\r\n'))
case('ma_base64_key',
     T(lambda c: b'ma %s b N0 J9 v k\r\nma %s b v k\r\nmg $kx v\r\n' % (b64(c.k + b'x'), b64(c.k + b'x'))))
case('ma_create_with_decrement',
     T(b'ma $kn N0 J5 MD v\r\nma $kn MD v\r\nma $km N100 J5 v t\r\n'))
case('ma_miss_with_k_O_flags',
     T(b'ma $knx k O7\r\nma $knx k O7 q\r\nma $knx v N0 J1 k O8\r\n'))
case('ma_padding_visible_via_get',
     T(b'set $kn 0 0 3\r\n100\r\nma $kn MD D1 v\r\nget $kn\r\nmg $kn v s\r\n'))
case('ma_ttl_on_create_and_update',
     T(b'ma $kt N0 J5 T100 v t\r\nmg $kt t v\r\nma $kt T200 t v\r\nmg $kt t\r\nma $kt T0 t\r\nmg $kt t\r\n'
       b'ma $ku N50 J1 t v\r\nmg $ku t\r\nma $ku T-1 v\r\nmg $ku v\r\n'))
case('ma_quiet_and_opaque_on_hit_and_miss',
     T(b'ma $kq N0 J1 q\r\nma $kq q O1 k\r\nma $kq O2 k v\r\nma $knx q O3\r\nma $knx O4 k\r\nmn\r\n'))
case('md_invalidate_then_recache_race',
     T(b'ms $ki 3 T100\r\nold\r\nmg $ki c\r\n'),
     T(b'md $ki I T30\r\nmg $ki v c t\r\n', conn='a'),
     T(b'mg $ki v c t\r\n', conn='b'),
     T(lambda c: b'ms $ki 3 I C%d T100\r\nnew\r\nmg $ki v c t\r\n' % (c.cas[0]), conn='b'),
     T(lambda c: b'ms $ki 3 C%d T100\r\nnew\r\nmg $ki v c t\r\n' % (c.cas[-1]), conn='a'),
     T(b'mg $ki v t\r\n', conn='b'))
case('mg_every_documented_flag',
     T(b'ms $kg 5 T100 F9\r\nhello\r\nmg $kg b\r\nmg $kg c f h k l O99 q s t v\r\nmg $kg E5\r\n'
       b'mg $kg N30 R10 T50 t v\r\nmg $kg u v\r\nmg $kg h l\r\n'))
case('meta_and_text_cas_agree',
     T(b'set $ka 0 0 1\r\na\r\ngets $ka\r\nmg $ka c\r\nms $ka 1 c\r\nb\r\ngets $ka\r\nma $kc N0 c\r\ngets $kc\r\n'))
case('meta_flags_roundtrip_text',
     T(b'ms $ka 3 F123 T0\r\nabc\r\nget $ka\r\nset $kb 77 0 2\r\nxy\r\nmg $kb f v s\r\n'))

# ---------------------------------------------------------------- 13. binary protocol
case('bin_noop_and_opaque_echo',
     T(P(NOOP), P(NOOP, opaque=0), P(NOOP, opaque=0xFFFFFFFF)))
case('bin_version',
     T(P(VERSION)))
case('bin_set_get_getk',
     T(bstore(SET, b'$kk', b'val', flags=0xCAFE), P(GET, b'$kk'), P(GETK, b'$kk', opaque=0x12345678)))
case('bin_get_miss',
     T(P(GET, b'$knx'), P(GETK, b'$knx')))
case('bin_quiet_gets',
     T(bstore(SET, b'$kk', b'v'), P(GETQ, b'$knx'), P(GETKQ, b'$knx'), P(GETQ, b'$kk'), P(GETKQ, b'$kk')))
case('bin_add',
     T(bstore(ADD, b'$kk', b'a', flags=3), bstore(ADD, b'$kk', b'b'), bstore(ADDQ, b'$kk', b'c'),
       bstore(ADDQ, b'$kl', b'd'), P(GET, b'$kk'), P(GET, b'$kl')))
case('bin_replace',
     T(bstore(REPLACE, b'$kk', b'a'), bstore(REPLACEQ, b'$kk', b'a'), bstore(SET, b'$kk', b'x'),
       bstore(REPLACE, b'$kk', b'y', flags=9), bstore(REPLACEQ, b'$kk', b'z'), P(GET, b'$kk')))
case('bin_replace_cas_max',
     T(bstore(SET, b'$kk', b'x'), bstore(REPLACEQ, b'$kk', b'y', cas=0xFFFFFFFFFFFFFFFF),
       bstore(REPLACE, b'$kk', b'y', cas=0xFFFFFFFFFFFFFFFF), P(GET, b'$kk')))
case('bin_set_cas',
     T(bstore(SET, b'$kk', b'a')),
     T(Pkt(SET, b'$kk', extras=struct.pack('>II', 0, 0), value=b'b', cas=lambda c: c.cas[-1]),
       Pkt(SET, b'$kk', extras=struct.pack('>II', 0, 0), value=b'c', cas=lambda c: c.cas[0]),
       bstore(SET, b'$knx', b'd', cas=12345), P(GET, b'$kk'), P(GET, b'$knx')))
case('bin_setq',
     T(bstore(SETQ, b'$kk', b'a'), bstore(SETQ, b'$kk', b'b'), bstore(SETQ, b'$kk', b'c'), P(GET, b'$kk')),
     T(Pkt(SETQ, b'$kk', extras=struct.pack('>II', 0, 0), value=b'd', cas=lambda c: c.cas[-1] + 1000000),
       Pkt(SETQ, b'$kk', extras=struct.pack('>II', 0, 0), value=b'e', cas=lambda c: c.cas[-1]),
       P(GET, b'$kk')))
case('bin_delete',
     T(P(DELETE, b'$knx'), P(DELETEQ, b'$knx'), bstore(SET, b'$kk', b'v'), P(DELETEQ, b'$kk'), P(GET, b'$kk'),
       bstore(SET, b'$kl', b'v'), P(DELETE, b'$kl'), P(DELETE, b'$kl')))
case('bin_delete_with_cas',
     T(bstore(SET, b'$kk', b'v')),
     T(Pkt(DELETE, b'$kk', cas=lambda c: c.cas[-1] + 1000000), P(GET, b'$kk'),
       Pkt(DELETE, b'$kk', cas=lambda c: c.cas[-1]), P(GET, b'$kk')))
case('bin_incr_create_and_hit',
     T(barith(INCR, b'$kc', 5, 100), barith(INCR, b'$kc', 5, 100), P(GET, b'$kc')),
     T(barith(DECR, b'$kc', 1000), barith(INCR, b'$kc', 7), P(GET, b'$kc')))
case('bin_decr_create',
     T(barith(DECR, b'$kc', 1, 9), barith(DECR, b'$kc', 1, 9), barith(DECR, b'$kc', 100, 9), P(GET, b'$kc')))
case('bin_incr_no_create',
     T(barith(INCR, b'$knx', 1, 0, 0xFFFFFFFF), barith(DECR, b'$knx', 1, 0, 0xFFFFFFFF),
       barith(INCRQ, b'$knx', 1, 0, 0xFFFFFFFF), P(GET, b'$knx')))
case('bin_incr_wrap',
     T(bstore(SET, b'$kn', b'5'), barith(INCR, b'$kn', 0xFFFFFFFFFFFFFFFF), P(GET, b'$kn'),
       barith(INCR, b'$kn', 0xFFFFFFFFFFFFFFFE), P(GET, b'$kn'), barith(DECR, b'$kn', 0xFFFFFFFFFFFFFFFF)))
case('bin_incr_non_numeric',
     T(bstore(SET, b'$kn', b'abc'), barith(INCR, b'$kn', 1), barith(INCRQ, b'$kn', 1), barith(DECR, b'$kn', 1)))
case('bin_incr_cas',
     T(barith(INCR, b'$kc', 1, 10)),
     T(Pkt(INCR, b'$kc', extras=struct.pack('>QQI', 1, 0, 0), cas=lambda c: c.cas[-1] + 1000000),
       Pkt(INCR, b'$kc', extras=struct.pack('>QQI', 1, 0, 0), cas=lambda c: c.cas[-1])))
case('bin_incrq_decrq_silent',
     T(barith(INCRQ, b'$kc', 1, 5), barith(INCRQ, b'$kc', 10), barith(DECRQ, b'$kc', 3), P(GET, b'$kc')))
case('bin_incr_with_expiry_created_item',
     T(barith(INCR, b'$kc', 1, 3, 100), P(GETK, b'$kc'), barith(INCR, b'$kd', 1, 3, 2592001), P(GET, b'$kd')))
case('bin_append_prepend',
     T(bstore(SET, b'$kk', b'val', flags=4), P(APPEND, b'$kk', value=b'APP'), P(PREPEND, b'$kk', value=b'PRE'),
       P(GET, b'$kk'), P(APPEND, b'$knx', value=b'x'), P(PREPEND, b'$knx', value=b'x'),
       P(APPENDQ, b'$knx', value=b'x'), P(PREPENDQ, b'$knx', value=b'x'),
       P(APPENDQ, b'$kk', value=b'1'), P(PREPENDQ, b'$kk', value=b'0'), P(GET, b'$kk')))
case('bin_append_with_cas',
     T(bstore(SET, b'$kk', b'v')),
     T(Pkt(APPEND, b'$kk', value=b'x', cas=lambda c: c.cas[-1] + 1000000),
       Pkt(APPEND, b'$kk', value=b'y', cas=lambda c: c.cas[-1]), P(GET, b'$kk')))
case('bin_touch',
     T(bstore(SET, b'$kk', b'v', flags=5), bexp(TOUCH, b'$kk', 100), bexp(TOUCH, b'$knx', 100), P(GET, b'$kk')))
case('bin_touch_past_expires',
     T(bstore(SET, b'$kk', b'v'), bexp(TOUCH, b'$kk', 2592001), P(GET, b'$kk')))
case('bin_gat_family',
     T(bstore(SET, b'$kk', b'v', flags=6), bexp(GAT, b'$kk', 100), bexp(GATK, b'$kk', 100),
       bexp(GATQ, b'$knx', 100), bexp(GATKQ, b'$knx', 100), bexp(GATQ, b'$kk', 100), bexp(GATKQ, b'$kk', 100),
       bexp(GAT, b'$knx', 100), bexp(GATK, b'$knx', 100)))
case('bin_gat_then_text_ttl',
     T(bstore(SET, b'$kk', b'v'), bexp(GAT, b'$kk', 100), conn='b'),
     T(b'mg $kk t v\r\n', conn='a'))
case('bin_flush',
     T(bstore(SET, b'$kk', b'v'), P(FLUSH), P(GET, b'$kk'),
       bstore(SET, b'$kk', b'v'), P(FLUSH, extras=struct.pack('>I', 0)), P(GET, b'$kk'),
       bstore(SET, b'$kk', b'v'), P(FLUSHQ), P(GET, b'$kk')))
case('bin_flush_delayed',
     T(bstore(SET, b'$kk', b'v'), P(FLUSH, extras=struct.pack('>I', 100)), P(GET, b'$kk')))
case('bin_set_expiry_past_absolute',
     T(bstore(SET, b'$kk', b'v', exp=2592001), P(GET, b'$kk'), bstore(SET, b'$kl', b'v', exp=100), P(GET, b'$kl')))
case('bin_quit',
     T(P(QUIT)))
case('bin_quitq',
     T(P(QUITQ)))
case('bin_quit_after_pipeline',
     T(bstore(SET, b'$kk', b'v'), P(GET, b'$kk'), P(QUIT), P(NOOP)))
case('bin_unknown_opcodes_empty_body',
     T(P(0x1B), P(0x20), P(0x30), P(0x3D), P(0x99), P(0xFF)))
case('bin_too_large',
     T(bstore(SET, b'$kk', b'old'), bstore(SET, b'$kl', b'old')),
     T(bstore(SET, b'$kk', bigdata), P(GET, b'$kk'), bstore(SETQ, b'$kl', bigdata), P(GET, b'$kl'),
       bstore(ADD, b'$km', bigdata)))
case('bin_key_250_ok',
     T(bstore(SET, b'$K250', b'v'), P(GETK, b'$K250'), P(DELETE, b'$K250')))
case('bin_key_251_einval_closes',
     T(P(GET, b'$K251')))
case('bin_key_251_set_einval_closes',
     T(bstore(SET, b'$K251', b'v')))
case('bin_bad_magic_closes',
     T(P(NOOP)), T(P(NOOP, magic=0x81)))
case('bin_bad_magic_zero_closes',
     T(P(NOOP)), T(P(NOOP, magic=0x00)))
case('bin_set_without_extras_einval',
     T(P(SET, b'$kk', value=b'x')))
case('bin_get_with_extras_einval',
     T(P(GET, b'$kk', extras=b'abcd')))
case('bin_get_without_key_einval',
     T(P(GET)))
case('bin_get_with_value_einval',
     T(P(GET, b'$kk', value=b'v')))
case('bin_noop_with_body_einval',
     T(P(NOOP, value=b'x')))
case('bin_incr_bad_extlen_einval',
     T(Pkt(INCR, b'$kk', extras=struct.pack('>Q', 1))))
case('bin_delete_with_value_einval',
     T(P(DELETE, b'$kk', value=b'v')))
case('bin_flush_bad_extlen_einval',
     T(P(FLUSH, extras=b'12345678')))
case('bin_touch_without_extras_einval',
     T(P(TOUCH, b'$kk')))
case('bin_append_with_extras_einval',
     T(P(APPEND, b'$kk', extras=b'abcdefgh', value=b'x')))
case('bin_keylen_exceeds_bodylen',
     T(Pkt(GET, b'abc', bodylen=1)), final=False)
case('bin_datatype_vbucket_ignored',
     T(bstore(SET, b'$kk', b'v', datatype=1, vbucket=5), P(GET, b'$kk', vbucket=7)))
case('bin_pipeline_quiet_batch',
     T(*([bstore(SETQ, b'$k%d' % i, b'v%d' % i, flags=i) for i in range(50)]
         + [P(GETKQ, b'$k%d' % i) for i in range(0, 60, 3)])))
case('bin_split_bytewise',
     S(bstore(SET, b'$kk', b'hello'), P(GET, b'$kk'), barith(INCR, b'$kc', 1, 1)))
case('bin_split_header_and_body',
     I(lambda c: bstore(SET, b'$kk', b'value').build(c)[:10]),
     I(lambda c: bstore(SET, b'$kk', b'value').build(c)[10:30]),
     T(lambda c: bstore(SET, b'$kk', b'value').build(c)[30:], P(GET, b'$kk')))
# me (meta debug), stats detail, and the tuning commands of memcached's
# slab/LRU model, answered as memcached answers them.
case('me_fields',
     T(b'set $ka 5 100 3\r\nbar\r\nme $ka\r\nget $ka\r\nme $ka\r\nme $ka q\r\nme $ka bar\r\nme $knx\r\n'
       b'ms $kc 2 T0 F0\r\nab\r\nme $kc\r\nmg $kc v\r\nme $kc\r\n'))
case('me_sizes_and_classes',
     T(b''.join(b'set $k%d 1 0 %d\r\n%s\r\nme $k%d\r\n' % (n, n, b'x' * n, n)
                for n in (0, 1, 40, 100, 1000, 10000, 300000, 524000, 600000))))
case('me_base64_and_errors',
     T(lambda c: b'ms %s 1 b\r\nz\r\nme %s b\r\nme\r\nme k b\r\nme a=b b\r\nme $K251\r\n'
       % (b64(c.k + b'bin'), b64(c.k + b'bin'))))
# watch: memcached 1.6's log lines for the lookups and stores of other
# connections (one item_get before every command on a key, one item_store
# per store), the flag words and the errors; a watcher takes no commands.
case('watch_fetchers_mutations',
     W(b'watch fetchers mutations\r\n', lines=1),
     T(b'set $ka 5 0 1\r\nx\r\nget $ka $knx\r\nadd $ka 0 0 1\r\ny\r\nreplace $kz 0 0 1\r\ny\r\n'
       b'append $ka 0 0 1\r\nz\r\nprepend $ka 0 0 1\r\nw\r\ngets $ka\r\ncas $ka 0 0 1 999\r\nq\r\n'
       b'touch $ka 100\r\ngat 200 $ka\r\nset $kn 0 0 1\r\n5\r\nincr $kn 3\r\ndecr $kn 1\r\n'
       b'incr $knx 1\r\ndelete $ka\r\ndelete $ka\r\nset $kt 0 1000 3\r\nabc\r\nset sp%20$k 0 0 1\r\nx\r\n'),
     W(lines=28),
     T(b'mg $kn v\r\nms $km 2 T50\r\nhi\r\nmd $km\r\nma $kn\r\nmg $knope\r\nme $kn\r\n'
       b'ms $km 1 MA\r\nx\r\nms $kc 1 C1\r\nx\r\nms $kr 1 MR\r\nx\r\nms $ke 1 ME T0\r\nx\r\n'),
     W(lines=15),
     T(bstore(SET, b'$kb', b'hello', flags=3), P(GET, b'$kb'), P(GETK, b'$knx'),
       bstore(ADD, b'$kb', b'x'), P(APPEND, b'$kb', value=b'!'), P(DELETE, b'$kb'), conn='b'),
     W(lines=9))
case('watch_flags_and_watchers',
     T(b'watch bogus\r\nwatch deletions\r\nWATCH\r\nwatch evictions bogus\r\nwatch noreply\r\n'
       b'watch fetchers noreply\r\n'),
     T(b'set $kn 0 0 2\r\n10\r\nmg $kn\r\nma $kn MD\r\nme $kn\r\nmg $kn v\r\n'
       b'set $kn 0 0 2\r\n10\r\nget $kn\r\nma $kn MD\r\nme $kn\r\nmg $kn v\r\nincr $kn 5\r\n'),
     T(b'get $kn\r\nwatch bogus\r\nmn\r\nwatch bogus\r\nversion\r\nwatch\r\n'),
     W(b'watch\r\n', conn='f', lines=1),
     W(b'watch mutations sysevents rawcmds proxyreqs proxyevents proxyuser\r\n', conn='m', lines=1),
     T(b'get $kx\r\nset $kx 0 0 1\r\nx\r\n', conn='b'),
     W(conn='f', lines=2),
     W(conn='m', lines=1),
     I(b'get $kx\r\nversion\r\n', conn='f'))
case('bin_stat_conns_not_found',
     T(P(STAT, b'conns'), P(STAT, b'settings')))
case('stats_detail_prefixes',
     T(b'stats reset\r\nstats detail dump\r\nstats detail on\r\n'
       b'set $kp:1 0 0 1\r\nx\r\nadd $kp:1 0 0 1\r\nx\r\nappend $kp:1 0 0 1\r\ny\r\n'
       b'cas $kp:1 0 0 1 999\r\nz\r\nget $kp:1 $kp:2 $kp:1\r\ngets $kp:1\r\ngat 0 $kp:3\r\n'
       b'touch $kp:1 0\r\ndelete $kp:2\r\nmg $kp:1 v\r\nms $kp:4 1\r\nx\r\nincr $kp:1 1\r\n'
       b'set $knodelim 0 0 1\r\nx\r\nstats detail dump\r\n'
       b'stats detail off\r\nget $kp:1\r\nstats detail dump\r\nstats detail\r\nstats detail foo\r\n'
       b'stats detail dump extra\r\nstats reset\r\nstats detail dump\r\n'))
case('stats_detail_prefix_order',
     T(b'stats reset\r\nstats detail on\r\n'
       + b''.join(b'set $k%s:1 0 0 1\r\nx\r\n' % p for p in (b'a', b'b', b'x', b'p', b'q', b'zz', b'long_prefix'))
       + b'set :x 0 0 1\r\nx\r\nget a:b c:d\r\nstats detail dump\r\nstats detail off noreply\r\nstats reset\r\n'))
case('slabs_tuning_replies',
     T(b'slabs\r\nslabs automove\r\nslabs automove 0\r\nslabs automove 2\r\nslabs automove 3\r\n'
       b'slabs automove x\r\nslabs automove ratio 0.5\r\nslabs automove ratio\r\nslabs automove ratio x\r\n'
       b'slabs automove 1 noreply\r\nslabs automove 1 2\r\nslabs reassign\r\nslabs reassign 1\r\n'
       b'slabs reassign 1 1\r\nslabs reassign 99 1\r\nslabs reassign -1 2\r\nslabs reassign 1 -1\r\n'
       b'slabs reassign 0 1\r\nslabs reassign 1 39\r\nslabs reassign 1 40\r\nslabs reassign x y\r\n'
       b'slabs reassign 1 2 noreply\r\nslabs foo\r\n'))
# One command per step: memcached's crawler runs on its own thread, so a
# crawl pipelined behind another answers BUSY, and a metadump pipelined with
# anything (the sentinel included) is refused; disable takes effect when
# the thread has stopped (the idle step waits for that).
case('lru_crawler_replies',
     *[(TB if b' crawl ' in c else T)(c) for c in (b'lru_crawler\r\n', b'lru_crawler enable\r\n', b'lru_crawler crawl all\r\n',
                      b'lru_crawler crawl 0\r\n', b'lru_crawler crawl 63\r\n', b'lru_crawler crawl 64\r\n',
                      b'lru_crawler crawl 1,,2\r\n', b'lru_crawler crawl 1,x\r\n', b'lru_crawler crawl all,1\r\n',
                      b'lru_crawler crawl x\r\n', b'lru_crawler crawl\r\n', b'lru_crawler tocrawl 10\r\n',
                      b'lru_crawler tocrawl x\r\n', b'lru_crawler tocrawl\r\n', b'lru_crawler tocrawl 5 6\r\n',
                      b'lru_crawler sleep 10\r\n', b'lru_crawler sleep 1000000\r\n',
                      b'lru_crawler sleep 1000001\r\n', b'lru_crawler sleep x\r\n', b'lru_crawler metadump\r\n',
                      b'lru_crawler foo\r\n', b'lru_crawler enable x\r\n')],
     I(b'lru_crawler metadump x\r\n'), I(b'lru_crawler metadump 0\r\n'),
     T(b'lru_crawler disable\r\n'), I(b''), T(b'lru_crawler disable\r\n'),
     TB(b'lru_crawler crawl all\r\n'), I(b'lru_crawler metadump all\r\n'),
     T(b'lru_crawler enable\r\n'), I(b''), T(b'lru_crawler enable\r\n'),
     # back to memcached's defaults (a 1 s crawler sleep slows later dumps)
     T(b'lru_crawler sleep 100\r\nlru_crawler tocrawl 0\r\n'))
case('lru_crawler_metadump',
     T(b'set $ka 5 100 3\r\nbar\r\nset $kb:c 0 0 2\r\nhi\r\nget $kb:c\r\nms $kd 2 T0 F0\r\nab\r\n'
       b'set $ke%%20sp 7 0 1000\r\n' + b'y' * 1000 + b'\r\n'),
     I(b'lru_crawler metadump all\r\n'), I(b'lru_crawler metadump hash\r\n'),
     I(b'lru_crawler metadump 1\r\n'), I(b'lru_crawler metadump 12,1\r\n'), I(b'lru_crawler metadump 2\r\n'),
     I(b'get $ka\r\nlru_crawler metadump all\r\n'))
case('stats_sizes_untracked',
     T(b'stats sizes\r\nstats sizes_disable\r\n'))
case('bin_stat_detail',
     T(b'stats reset\r\n', conn='b'),
     T(P(STAT, b'detail on'), P(SET, b'$kp:1', extras=b'\x00' * 8, value=b'x'), P(GET, b'$kp:1'),
       P(GETK, b'$kp:2'), P(GETQ, b'$kp:3'), P(DELETE, b'$kp:1'), P(ADD, b'$kp:4', extras=b'\x00' * 8, value=b'y'),
       P(INCR, b'$kp:5', extras=b'\x00' * 20), P(APPEND, b'$kp:4', value=b'z'), P(PREPEND, b'$kp:4', value=b'z'),
       P(REPLACE, b'$kp:4', extras=b'\x00' * 8, value=b'w'), P(TOUCH, b'$kp:4', extras=b'\x00' * 4),
       P(GAT, b'$kp:4', extras=b'\x00' * 4), P(STAT, b'detail dump'), P(STAT, b'detail off')),
     T(b'stats detail dump\r\n', conn='b'),
     T(P(STAT, b'detail'), P(STAT, b'detail foo'), P(STAT, b'settings'), P(STAT, b'sizes'), P(STAT, b'reset')))
case('lru_tuning_replies',
     T(b'lru\r\nlru foo bar\r\nlru mode\r\nlru mode x\r\nlru mode flat\r\nlru temp_ttl 10\r\n'
       b'lru temp_ttl -5\r\nlru temp_ttl x\r\nlru mode segmented\r\nlru tune 10 20 0.1 2\r\n'
       b'lru tune 50 40 0.1 2\r\nlru tune 10 20 0 2\r\nlru tune 10 20 0.1 0\r\nlru tune 10 20 0.1\r\n'
       b'lru tune x y z w\r\nlru tune 10 20 0.1 2 3\r\n'))
case('bin_text_after_binary_closes',
     T(P(NOOP)), T(b'version\r\nversion\r\nversion\r\n'))
case('bin_stat_terminator_only',
     T(P(STAT)))
case('bin_zero_length_value',
     T(bstore(SET, b'$kk', b''), P(GETK, b'$kk'), P(APPEND, b'$kk', value=b''), P(GET, b'$kk')))
case('bin_binary_safe_value',
     T(bstore(SET, b'$kk', bytes(range(256)) + b'\r\n', flags=0xFFFFFFFF), P(GET, b'$kk')))
case('bin_text_cross_protocol',
     T(b'set $ka 9 0 3\r\nabc\r\ngets $ka\r\n', conn='a'),
     T(P(GET, b'$ka'), bstore(SET, b'$kb', b'xyz', flags=7), conn='b'),
     T(b'gets $kb\r\nmg $kb c f v\r\n', conn='a'),
     T(barith(INCR, b'$kc', 5, 10), conn='b'),
     T(b'incr $kc 1\r\nget $kc\r\n', conn='a'),
     T(P(GET, b'$kc'), conn='b'))


# ----------------------------------------------------------------------------------------------
# Driver
# ----------------------------------------------------------------------------------------------
def select_cases(only):
    if not only:
        return CASES
    pats = [p for p in only.split(',') if p]
    out = [c for c in CASES if any(c[0] == p or fnmatch.fnmatchcase(c[0], p) for p in pats)]
    return out


# Normalisation rule 7: every case that reads a TTL back with the meta `t`
# flag (a clock tick between the store and the read makes t99 of t100).
TTL_SLACK_CASES = {
    'bin_gat_then_text_ttl', 'exptime_relative_and_30_days', 'gat_gats_basic', 'gat_zero_makes_permanent',
    'incr_value_with_flags_and_ttl', 'ma_basic', 'ma_create_with_decrement', 'ma_ttl_on_create_and_update',
    'md_invalidate_then_mg', 'md_invalidate_then_recache_race', 'meta_many_flags', 'mg_all_return_flags',
    'mg_every_documented_flag', 'mg_recache_with_R', 'mg_touch_with_T', 'mg_vivify_with_N',
    'ms_basic_and_return_flags', 'ms_expiry', 'touch_hit_miss', 'touch_junk_fourth_token', 'touch_noreply',
    'touch_zero_makes_permanent',
}
META_TTL_RE = re.compile(rb'(?<= )t(\d+)(?=[ \r])')


def ttl_close(a, b):
    """True when a and b are equal but for meta t<N> flags one second apart."""
    if META_TTL_RE.sub(b't<n>', a) != META_TTL_RE.sub(b't<n>', b):
        return False
    ta, tb = META_TTL_RE.findall(a), META_TTL_RE.findall(b)
    return len(ta) == len(tb) and all(abs(int(x) - int(y)) <= 1 for x, y in zip(ta, tb))


def run_case(ref, cand, name, steps, final, deadline_abs):
    result = {}

    def worker(side):
        try:
            result[side.label] = run_steps(side, name, steps, final, deadline_abs)
        except Exception as e:  # harness bug: report, do not hang
            result[side.label] = e
    th = threading.Thread(target=worker, args=(cand,), daemon=True)
    th.start()
    worker(ref)
    th.join(STEP_TIMEOUT * (len(steps) + 3))
    return result.get(ref.label), result.get(cand.label)


def print_transcript(recs_a, recs_b, la, lb):
    for i, (ra, rb) in enumerate(zip(recs_a, recs_b)):
        same = ra['norm'] == rb['norm']
        print('    step %d [%s%s] >> %s' % (i, ra['conn'], '' if ra['mode'] == 'sentinel' else ', idle',
                                            describe_sent(ra)))
        for tag, r in ((la, ra), (lb, rb)) if not same else ((la + '=' + lb, ra),):
            print('        << %-10s %s%s' % (tag, short(r['norm'], 2000),
                                          ('   (notes: %s)' % '; '.join(r['notes'])) if r['notes'] else ''))


def main():
    ap = argparse.ArgumentParser(description='memcached vs qcloud-kvd differential protocol test')
    ap.add_argument('--kvd', help='path to the qcloud-kvd binary')
    ap.add_argument('--memcached', default='/usr/bin/memcached')
    ap.add_argument('--kvd-port', type=int, help='use an already-running qcloud-kvd on this port')
    ap.add_argument('--memcached-port', type=int, help='use an already-running memcached on this port')
    ap.add_argument('--self-check', action='store_true',
                    help='run the corpus against two fresh memcached instances (harness determinism)')
    ap.add_argument('--only', help='comma-separated case names or glob patterns')
    ap.add_argument('--list', action='store_true', help='list case names and exit')
    ap.add_argument('--deadline', type=float, default=300.0, help='overall deadline in seconds')
    ap.add_argument('-v', '--verbose', action='store_true', help='print transcripts')
    args = ap.parse_args()

    if args.list:
        for name, steps, _ in CASES:
            print(name)
        print('%d cases' % len(CASES), file=sys.stderr)
        return 0
    if not args.self_check and not args.kvd and not args.kvd_port:
        ap.error('one of --kvd, --kvd-port or --self-check is required')
    cases = select_cases(args.only)
    if not cases:
        print('no case matches --only %r' % args.only, file=sys.stderr)
        return 2

    t0 = time.monotonic()
    deadline_abs = t0 + args.deadline
    procs = []
    try:
        try:
            if args.memcached_port:
                ref = Side('memcached', args.memcached_port)
            else:
                port, proc = start_memcached(args.memcached, procs)
                ref = Side('memcached', port, proc)
            if args.self_check:
                port, proc = start_memcached(args.memcached, procs)
                cand = Side('memcached2', port, proc)
            elif args.kvd_port:
                cand = Side('kvd', args.kvd_port)
            else:
                port, proc = start_kvd(args.kvd, procs)
                cand = Side('kvd', port, proc)
        except (RuntimeError, OSError) as e:
            print('SETUP ERROR: %s' % e, file=sys.stderr)
            return 2
        print('reference %s on port %d, candidate %s on port %d' % (ref.label, ref.port, cand.label, cand.port))

        passed, failed = [], []
        for name, steps, final in cases:
            if time.monotonic() >= deadline_abs:
                print('FAIL %s  (overall deadline of %.0fs exceeded, not run)' % (name, args.deadline))
                failed.append(name)
                continue
            dead = [s for s in (ref, cand) if not s.alive()]
            if dead:
                print('FAIL %s  (%s exited with status %s)' % (name, dead[0].label, dead[0].proc.poll()))
                failed.append(name)
                continue
            ct = time.monotonic()
            ra, rb = run_case(ref, cand, name, steps, final, deadline_abs)
            el = time.monotonic() - ct
            problems = []
            for side, recs in ((ref, ra), (cand, rb)):
                if recs is None or isinstance(recs, Exception):
                    problems.append('harness error on %s: %r' % (side.label, recs))
            if not problems:
                for i, r in enumerate(ra):
                    if 'sentinel reply not seen' in r['notes'] and not r['closed']:
                        problems.append('HARNESS: reference (%s) step %d: sentinel reply not seen; '
                                        'fix the case (use an idle step?)' % (ref.label, i))
                    if 'step timeout' in r['notes']:
                        problems.append('HARNESS: reference (%s) step %d timed out' % (ref.label, i))
                for i, (x, y) in enumerate(zip(ra, rb)):
                    if x['norm'] != y['norm'] and not (name in TTL_SLACK_CASES and ttl_close(x['norm'], y['norm'])):
                        off = first_diff(x['norm'], y['norm'])
                        problems.append(
                            'step %d (conn %s%s) first difference at offset %d (lengths %d vs %d)\n'
                            '      sent:         %s\n'
                            '      %-13s %s\n      %-13s %s\n'
                            '      near offset:  %s: %s\n                    %s: %s'
                            % (i, x['conn'], ', idle' if x['mode'] != 'sentinel' else '', off,
                               len(x['norm']), len(y['norm']), describe_sent(x),
                               ref.label + ':', short(x['norm'], 800), cand.label + ':', short(y['norm'], 800),
                               ref.label, window(x['norm'], off), cand.label, window(y['norm'], off)))
                        break
                if len(ra) != len(rb):
                    problems.append('different number of steps recorded: %d vs %d' % (len(ra), len(rb)))
            if problems:
                failed.append(name)
                print('FAIL %s  (%.2fs)' % (name, el))
                for p in problems:
                    print('    ' + p)
            else:
                passed.append(name)
                print('PASS %s  (%.2fs)' % (name, el) if args.verbose else 'PASS %s' % name)
            if args.verbose and isinstance(ra, list) and isinstance(rb, list):
                print_transcript(ra, rb, ref.label, cand.label)
        total = time.monotonic() - t0
        print('\nSUMMARY: %d passed, %d failed, %d total (%.1fs) [%s vs %s]'
              % (len(passed), len(failed), len(cases), total, ref.label, cand.label))
        if failed:
            print('failed: ' + ' '.join(failed))
        return 0 if not failed else 1
    finally:
        for p in procs:
            stop_proc(p)


if __name__ == '__main__':
    sys.exit(main())
