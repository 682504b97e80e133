#!/usr/bin/python3
"""kill -9 of a real qcloud-blockd in the middle of a stream of writes, then
restart on the same data directory and check, byte by byte, what a flush
promised.

    block_crash.py --blockd PATH [--rounds N] [--seed S]

One 256 MiB volume, read and written through libnbd (the Debian package
python3-libnbd). Each round a client keeps a few writes in flight
(aio_pwrite, never two overlapping ones at once): random sizes from 512 B
to 256 KiB, at 512-aligned, 4 KiB-aligned and unaligned offsets, half of
them in a hot 8 MiB region so that writes overwrite each other and share
blocks; every few writes a FLUSH (in flight together with the writes),
and now and then a write with FUA. At a random instant, with requests in
flight, the server gets SIGKILL by PID; replies that still arrive are
taken into account. Then it restarts on the same data directory and the
whole volume is read back:

  - every byte is what the model says was durable at the last acknowledged
    FLUSH or FUA write: qcloud-blockd's contract (qcloud/block/store.h) is
    that either one makes every write completed before it durable;
  - a byte that a write acknowledged after that point (or still in flight)
    touched may instead hold the value of one of those writes, and nothing
    else.

What the restart shows is flushed and becomes the model of the next round
(the data directory carries over). At the end, a batch of writes never
flushed, a clean SIGTERM stop and a restart: every byte written must be
there exactly.

Run with /usr/bin/python3. Prints PASS/FAIL per check; exit 0 iff all
pass. Bounded: a watchdog kills the server and exits non-zero after
--timeout seconds (default 120; a run takes ~15 s).
"""

import argparse
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import nbd

from interop_util import RESULTS, check

MiB = 1 << 20
VOLUME = 'vol'
VOLUME_SIZE = 256 * MiB
HOT = 8 * MiB           # half of the writes land in [0, HOT): overlaps, shared blocks
MIN_WRITE, MAX_WRITE = 512, 256 << 10
QUEUE_DEPTH = 4         # writes (and a flush) in flight at once
READ_CHUNK = 32 * MiB   # NBD reads of the whole volume, this much at a time


class Blockd:
    """qcloud-blockd on 127.0.0.1:0 over one data directory; start/kill/term by PID."""

    def __init__(self, path, work):
        self.path = path
        self.work = work
        self.data_dir = os.path.join(work, 'data')
        self.proc = None
        self.port = None
        self.starts = 0

    def start(self, timeout=15):
        self.starts += 1
        out = os.path.join(self.work, 'blockd.%d.out' % self.starts)
        self.err = os.path.join(self.work, 'blockd.%d.err' % self.starts)
        with open(out, 'wb') as o, open(self.err, 'wb') as e:
            self.proc = subprocess.Popen(
                [self.path, '--listen', '127.0.0.1:0', '--data-dir', self.data_dir,
                 '--volume', '%s:%d' % (VOLUME, VOLUME_SIZE), '--threads', '2'],
                stdout=o, stderr=e, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with open(out, 'rb') as f:
                m = re.search(rb'listening on 127\.0\.0\.1:(\d+)', f.read())
            if m:
                self.port = int(m.group(1))
                return self
            if self.proc.poll() is not None:
                raise RuntimeError('qcloud-blockd exited %d at start: %s' % (self.proc.returncode, self.stderr()))
            time.sleep(0.02)
        raise RuntimeError('qcloud-blockd did not listen within %d s' % timeout)

    def stderr(self):
        try:
            with open(self.err, 'rb') as f:
                return f.read()[-2000:].decode(errors='replace')
        except OSError:
            return ''

    def kill(self):
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        if self.proc:
            self.proc.wait(10)

    def term(self, timeout=15):
        """SIGTERM; the exit code (None if it had to be killed)."""
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def connect(self):
        h = nbd.NBD()
        h.connect_uri('nbd://127.0.0.1:%d/%s' % (self.port, VOLUME))
        return h


class Model:
    """What the volume must hold. `durable` is the content as of the last
    acknowledged FLUSH/FUA; `current` as of every acknowledged write.
    `unflushed` lists the writes acknowledged since, in completion order, as
    (seq, offset, data); seq counts completions, so a flush sent after k
    completions covers seq <= k. Writes in flight together never overlap,
    so completion order is the order of every two overlapping writes."""

    def __init__(self):
        self.durable = bytearray(VOLUME_SIZE)
        self.current = bytearray(VOLUME_SIZE)
        self.unflushed = []
        self.seq = 0

    def acked_write(self, off, data):
        self.seq += 1
        self.current[off:off + len(data)] = data
        self.unflushed.append((self.seq, off, data))
        return self.seq

    def durable_upto(self, n):
        """A flush sent after n completions was acknowledged."""
        keep = []
        for seq, off, data in self.unflushed:
            if seq <= n:
                self.durable[off:off + len(data)] = data
            else:
                keep.append((seq, off, data))
        self.unflushed = keep

    def durable_write(self, seq):
        """An acknowledged FUA write is durable itself (those completed while it
        was in flight do not overlap it)."""
        for i, (s, off, data) in enumerate(self.unflushed):
            if s == seq:
                self.durable[off:off + len(data)] = data
                del self.unflushed[i]
                return


def pick_write(rng, busy):
    """(offset, length) overlapping none of the `busy` (offset, end) ranges."""
    for _ in range(100):
        n = rng.choice([rng.randint(MIN_WRITE, 8192), rng.randint(MIN_WRITE, MAX_WRITE),
                        rng.randint(1, MAX_WRITE // 4096) * 4096, rng.randint(1, MAX_WRITE // 512) * 512])
        span = HOT if rng.random() < 0.5 else VOLUME_SIZE
        align = rng.choice([1, 1, 512, 4096])
        off = rng.randrange(0, span - n + 1) // align * align
        if all(off + n <= a or off >= b for a, b in busy):
            return off, n
    return None


def run_round(srv, model, rng, kill_after, stats):
    """Writes and flushes until `kill_after` seconds have passed, then SIGKILL
    with requests in flight. Returns the writes that were in flight (never
    acknowledged) at the kill, as (offset, data)."""
    h = srv.connect()
    inflight = {}  # cookie -> ('w', off, data, fua_covers) | ('f', covers)
    start = time.monotonic()
    killed = False
    until_flush = rng.randint(2, 8)
    lost = []
    deadline = start + kill_after + 20
    while True:
        if time.monotonic() > deadline:
            raise RuntimeError('round did not finish in time')
        if not killed:
            while len(inflight) < QUEUE_DEPTH:
                if until_flush <= 0 and not any(v[0] == 'f' for v in inflight.values()):
                    inflight[h.aio_flush()] = ('f', model.seq)
                    until_flush = rng.randint(2, 8)
                    stats['flushes'] += 1
                    continue
                busy = [(v[1], v[1] + len(v[2])) for v in inflight.values() if v[0] == 'w']
                w = pick_write(rng, busy)
                if w is None:
                    break
                off, n = w
                data = os.urandom(n)
                fua = rng.random() < 0.08
                cookie = h.aio_pwrite(data, off, flags=nbd.CMD_FLAG_FUA if fua else 0)
                inflight[cookie] = ('w', off, data, model.seq if fua else None)
                until_flush -= 1
                stats['writes'] += 1
                stats['fua'] += fua
            if time.monotonic() - start >= kill_after:
                srv.kill()  # SIGKILL by PID, just after the queue was filled
                killed = True
        try:
            h.poll(100)
        except nbd.Error:
            if not killed:
                raise
        for cookie in list(inflight):
            try:
                done = h.aio_command_completed(cookie)
            except nbd.Error:
                if not killed:
                    raise
                done = None  # failed: the connection went with the server
            if done is False:
                continue
            v = inflight.pop(cookie)
            if done is None:
                if v[0] == 'w':
                    lost.append((v[1], v[2]))
                continue
            if v[0] == 'f':
                model.durable_upto(v[1])
            else:
                seq = model.acked_write(v[1], v[2])
                if v[3] is not None:
                    model.durable_upto(v[3])
                    model.durable_write(seq)
        if killed and (not inflight or h.aio_is_dead() or h.aio_is_closed()):
            for v in inflight.values():
                if v[0] == 'w':
                    lost.append((v[1], v[2]))
            break
    close(h)
    stats['lost_in_flight'] += len(lost)
    return lost


def close(h):
    """Disconnects (politely if the server is still there); libnbd frees the
    handle when the last reference goes."""
    try:
        h.shutdown()
    except nbd.Error:
        pass


def union(ranges):
    out = []
    for a, b in sorted(ranges):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return out


class Verifier:
    """Reads the volume back and checks it against the model; failures are
    (offset, got, allowed values, kind) with kind 'flushed' (a byte no
    unflushed write touched: must equal the durable model) or 'unflushed'."""

    def __init__(self, model, candidates):
        self.model = model
        self.cands = sorted(candidates)  # (offset, data)
        self.bad = []
        self.nbad = 0
        self.checked_unflushed = 0
        self.came_back_old = 0

    def fail(self, off, got, allowed, kind):
        self.nbad += 1
        if len(self.bad) < 8:
            self.bad.append('%s byte at %d (0x%x): got %02x, allowed %s' % (
                kind, off, off, got, '/'.join('%02x' % a for a in allowed)))

    def blocks(self, a, b):
        """[a, b) cut at 512-byte boundaries of the volume."""
        s = a
        while s < b:
            e = min(b, (s // 512 + 1) * 512)
            yield s, e
            s = e

    def flushed(self, got, c0, a, b):
        """Bytes [a, b) of the volume (got starts at c0) equal the durable model."""
        if got[a - c0:b - c0] == self.model.durable[a:b]:
            return
        for s, e in self.blocks(a, b):
            if got[s - c0:e - c0] == self.model.durable[s:e]:
                continue
            if self.nbad > 4096:  # past that, a count of bad blocks is enough
                self.nbad += 1
                continue
            for i in range(s, e):
                if got[i - c0] != self.model.durable[i]:
                    self.fail(i, got[i - c0], [self.model.durable[i]], 'flushed')

    def unflushed(self, got, c0, a, b):
        """Bytes [a, b): the durable value or that of a write covering them,
        block by block (a write may survive in part)."""
        self.checked_unflushed += b - a
        cover = [(o, d) for o, d in self.cands if o < b and o + len(d) > a]
        cuts = sorted({a, b} | {x for o, d in cover for x in (o, o + len(d)) if a < x < b})
        for s, e in zip(cuts, cuts[1:]):
            opts = [self.model.durable[s:e]] + [d[s - o:e - o] for o, d in cover if o <= s and o + len(d) >= e]
            if any(got[s - c0:e - c0] == x for x in opts):
                if got[s - c0:e - c0] == opts[0] and all(x != opts[0] for x in opts[1:]):
                    self.came_back_old += e - s  # unflushed writes lost here (allowed)
                continue
            for bs, be in self.blocks(s, e):
                if any(got[bs - c0:be - c0] == x[bs - s:be - s] for x in opts):
                    continue
                for i in range(bs, be):
                    allowed = {x[i - s] for x in opts}
                    if got[i - c0] not in allowed:
                        self.fail(i, got[i - c0], sorted(allowed), 'unflushed')

    def run(self, h):
        spans = union((o, o + len(d)) for o, d in self.cands)
        for c0 in range(0, VOLUME_SIZE, READ_CHUNK):
            c1 = c0 + READ_CHUNK
            got = h.pread(READ_CHUNK, c0)
            pos = c0
            for a, b in spans:
                if b <= c0 or a >= c1:
                    continue
                a, b = max(a, c0), min(b, c1)
                if pos < a:
                    self.flushed(got, c0, pos, a)
                self.unflushed(got, c0, a, b)
                pos = b
            if pos < c1:
                self.flushed(got, c0, pos, c1)
            # What is there now is the state to build on (flushed below).
            self.model.durable[c0:c1] = got
            self.model.current[c0:c1] = got
        self.model.unflushed = []


def read_all(h):
    return b''.join(h.pread(READ_CHUNK, c0) for c0 in range(0, VOLUME_SIZE, READ_CHUNK))


def first_diff(a, b):
    for c0 in range(0, len(a), MiB):
        if a[c0:c0 + MiB] != b[c0:c0 + MiB]:
            for i in range(c0, min(len(a), c0 + MiB)):
                if a[i] != b[i]:
                    return i
    return None


def crash_rounds(srv, model, rng, rounds):
    stats = dict(writes=0, flushes=0, fua=0, lost_in_flight=0)
    for rnd in range(1, rounds + 1):
        kill_after = rng.uniform(0.3, 2.5)
        t0 = time.monotonic()
        lost = run_round(srv, model, rng, kill_after, stats)
        cands = [(o, d) for _, o, d in model.unflushed] + lost
        unflushed_bytes = sum(len(d) for _, d in cands)
        srv.start()
        h = srv.connect()
        v = Verifier(model, cands)
        v.run(h)
        h.flush()
        close(h)
        check('round %d: after kill -9 at %.2f s (%d writes, %d flushes, %d FUA so far; %d unflushed '
              'writes, %d in flight, %d bytes): every flushed byte intact, every other byte old or '
              'written' % (rnd, kill_after, stats['writes'], stats['flushes'], stats['fua'], len(cands),
                           len(lost), unflushed_bytes),
              v.nbad == 0, '%d bad bytes (past 4096: 512-byte blocks); %s' % (v.nbad, '; '.join(v.bad)))
        print('  round %d: of %d bytes unflushed writes touched, %d came back with their pre-flush '
              'value; %.1f s' % (rnd, v.checked_unflushed, v.came_back_old, time.monotonic() - t0), flush=True)
    return stats


def clean_stop(srv, model, rng):
    """Writes never flushed, then SIGTERM: a clean stop keeps every one."""
    h = srv.connect()
    inflight = {}
    issued = 0
    deadline = time.monotonic() + 30
    while issued < 400 or inflight:
        if time.monotonic() > deadline:
            raise RuntimeError('clean-stop writes did not finish in time')
        while issued < 400 and len(inflight) < QUEUE_DEPTH:
            w = pick_write(rng, [(o, o + len(d)) for o, d in inflight.values()])
            if w is None:
                break
            data = os.urandom(w[1])
            inflight[h.aio_pwrite(data, w[0])] = (w[0], data)
            issued += 1
        h.poll(100)
        for cookie in list(inflight):
            if h.aio_command_completed(cookie):
                model.acked_write(*inflight.pop(cookie))
    got = read_all(h)
    d = first_diff(got, model.current)
    check('before the stop: the volume reads back every acknowledged write', d is None,
          'first difference at %s' % d)
    close(h)
    rc = srv.term()
    check('SIGTERM: qcloud-blockd exits 0', rc == 0, 'exit %s; %s' % (rc, srv.stderr()))
    srv.start()
    h = srv.connect()
    got = read_all(h)
    close(h)
    d = first_diff(got, model.current)
    check('after SIGTERM and a restart: every write (flushed or not) is there exactly', d is None,
          'first difference at %s: got %s want %s' % (
              d, d is not None and got[d], d is not None and model.current[d]))
    rc = srv.term()
    check('SIGTERM again: exits 0', rc == 0, 'exit %s; %s' % (rc, srv.stderr()))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--blockd', required=True)
    ap.add_argument('--rounds', type=int, default=4)
    ap.add_argument('--seed', type=int, default=None)
    ap.add_argument('--timeout', type=float, default=120, help='watchdog, seconds')
    args = ap.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    print('seed %d' % seed, flush=True)
    rng = random.Random(seed)
    work = tempfile.mkdtemp(prefix='qcloud-blockcrash-')
    srv = Blockd(args.blockd, work)

    def watchdog():
        print('FAIL watchdog: the test did not finish within %.0f s' % args.timeout, flush=True)
        if srv.proc and srv.proc.poll() is None:
            os.kill(srv.proc.pid, signal.SIGKILL)
        shutil.rmtree(work, ignore_errors=True)
        os._exit(1)
    timer = threading.Timer(args.timeout, watchdog)
    timer.daemon = True
    timer.start()
    t0 = time.monotonic()
    try:
        srv.start()
        model = Model()
        stats = crash_rounds(srv, model, rng, args.rounds)
        clean_stop(srv, model, rng)
        print('%d writes, %d flushes, %d FUA writes, %d writes lost in flight; %.1f s' % (
            stats['writes'], stats['flushes'], stats['fua'], stats['lost_in_flight'], time.monotonic() - t0))
    except Exception as e:  # noqa: BLE001 - reported as a failure, server stopped below
        check('the test ran to the end', False, '%s: %s; server stderr: %s' % (type(e).__name__, e, srv.stderr()))
    finally:
        timer.cancel()
        if srv.proc and srv.proc.poll() is None:
            srv.kill()
        shutil.rmtree(work, ignore_errors=True)
    ok = all(RESULTS) and RESULTS
    print('%s: %d checks, %d failed (seed %d)' % ('PASS' if ok else 'FAIL', len(RESULTS),
                                                 RESULTS.count(False), seed))
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
