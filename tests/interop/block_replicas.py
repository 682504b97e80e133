#!/usr/bin/python3
"""Replicas of qcloud-blockd on other NBD servers, failing and coming back.

  block_replicas.py --blockd PATH [--holder nbdkit]

Two "machines" hold replicas: each is its own qcloud-blockd (or, with
--holder nbdkit, nbdkit's file plugin) serving a 1 GiB export on
127.0.0.1; the main qcloud-blockd keeps its data directory plus those two
copies (--replica nbd://..., a write needs 2 of 3). A client (libnbd's
Python binding) writes random data with flushes the whole time while:

  1. holder A is killed with -9 in the middle of the writes, with writes
     it acknowledged but never flushed: I/O goes on; A is restarted and
     the main server rebuilds what it missed and what A may have lost;
  2. once A is whole again, holder B is stopped, its directory wiped, and
     it is started empty: the main server finds the empty copy and
     rebuilds all of it, I/O going on;
  3. at the end every copy is whole (the main server's /metrics), the
     volume reads back what was written, and the three copies hold the
     same bytes (each holder's export against the main data file);
  4. the main server itself is killed with -9 in the middle of writes and
     restarted: it resyncs both replicas from its own copy (the writes in
     flight at the kill may have reached some copies only), and the three
     copies hold the same bytes again; stopped cleanly (SIGTERM) and
     restarted, it resyncs nothing.

Servers listen on 127.0.0.1 on free ports and are stopped by PID; every
wait is bounded. Prints PASS/FAIL per check; exits non-zero on failure.
About 20 s.
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
import urllib.request

import nbd

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from interop_util import check, free_port, RESULTS  # noqa: E402

MiB = 1 << 20
VOLUME = 128 * MiB
HOLDER_SIZE = "1G"


def start_blockd(binary, data_dir, port, volumes, extra=(), log=None):
    args = [binary, "--listen", f"127.0.0.1:{port}", "--data-dir", data_dir]
    for v in volumes:
        args += ["--volume", v]
    args += list(extra)
    p = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 10
    while time.time() < deadline:
        if p.poll() is not None:
            raise RuntimeError(f"{binary} exited with {p.returncode}")
        try:
            h = nbd.NBD()
            h.connect_uri(f"nbd://127.0.0.1:{port}/{volumes[0].split(':')[0]}")
            h.shutdown()
            return p
        except nbd.Error:
            time.sleep(0.05)
    p.kill()
    raise RuntimeError("server did not come up")


def start_nbdkit(path, port, log=None):
    if not os.path.exists(path):
        with open(path, "wb") as f:
            f.truncate(1 << 30)
    p = subprocess.Popen(["nbdkit", "-f", "-i", "127.0.0.1", "-p", str(port), "file", f"file={path}"],
                         stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            h = nbd.NBD()
            h.connect_uri(f"nbd://127.0.0.1:{port}/")
            h.shutdown()
            return p
        except nbd.Error:
            time.sleep(0.05)
    p.kill()
    raise RuntimeError("nbdkit did not come up")


def stop(p, sig=signal.SIGTERM):
    if p is None or p.poll() is not None:
        return
    p.send_signal(sig)
    try:
        p.wait(timeout=10)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait(timeout=10)


def metrics(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return r.read().decode()


def copy_gauge(metrics_port, name):
    text = metrics(metrics_port)
    vals = re.findall(r'^' + name + r'\{location="([^"]*)"\} (\S+)$', text, re.M)
    return {loc: float(v) for loc, v in vals}


def copies_whole(metrics_port):
    return {loc: v == 1 for loc, v in copy_gauge(metrics_port, "qcloud_block_copy_whole").items()}


def same_as_main(main_dir, uri):
    """The first 4 MiB piece at which the export differs from the main data file, or None."""
    with open(os.path.join(main_dir, "extents.dat"), "rb") as f:
        mine = f.read()
    h = nbd.NBD()
    h.connect_uri(uri)
    try:
        for off in range(0, len(mine), 4 * MiB):
            n = min(4 * MiB, len(mine) - off)
            if h.pread(n, off) != mine[off:off + n]:
                return off
    finally:
        h.shutdown()
    return None


class Writer:
    """Random writes with a flush every few; `model` is what was written."""

    def __init__(self, uri, seed):
        self.h = nbd.NBD()
        self.h.connect_uri(uri)
        self.rng = random.Random(seed)
        self.model = bytearray(VOLUME)
        self.writes = 0
        self.errors = []

    def run(self, seconds, max_writes=None, region=VOLUME):
        end = time.time() + seconds
        budget = max_writes
        while time.time() < end and (budget is None or budget > 0):
            if budget is not None:
                budget -= 1
            n = self.rng.choice([4096, 65536, 512 * 1024, 1000, 3 * 4096 + 5])
            off = self.rng.randrange(0, region - n)
            data = self.rng.randbytes(n)
            try:
                self.h.pwrite(data, off)
            except nbd.Error as e:
                self.errors.append(f"write at {off}: {e}")
                return
            self.model[off:off + n] = data
            self.writes += 1
            if self.writes % 16 == 0:
                try:
                    self.h.flush()
                except nbd.Error as e:
                    self.errors.append(f"flush: {e}")
                    return


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--blockd", required=True)
    ap.add_argument("--holder", choices=["blockd", "nbdkit"], default="blockd")
    ap.add_argument("--seed", type=int, default=random.randrange(1 << 30))
    args = ap.parse_args()
    print(f"seed {args.seed}, holders: {args.holder}")
    work = tempfile.mkdtemp(prefix="qcloud-block-replicas-")
    log = open(os.path.join(work, "servers.log"), "w")
    procs = {}
    t0 = time.time()
    try:
        ports = {k: free_port() for k in ("a", "b", "main", "metrics")}

        def start_holder(k):
            if args.holder == "nbdkit":
                procs[k] = start_nbdkit(os.path.join(work, f"holder-{k}.img"), ports[k], log)
                return f"nbd://127.0.0.1:{ports[k]}/"
            procs[k] = start_blockd(args.blockd, os.path.join(work, f"holder-{k}"), ports[k],
                                    [f"r:{HOLDER_SIZE}"], log=log)
            return f"nbd://127.0.0.1:{ports[k]}/r"

        uri_a, uri_b = start_holder("a"), start_holder("b")
        main_dir = os.path.join(work, "main")
        procs["main"] = start_blockd(
            args.blockd, main_dir, ports["main"], [f"v:{VOLUME}"],
            ["--replica", uri_a, "--replica", uri_b, "--metrics-listen", f"127.0.0.1:{ports['metrics']}"],
            log=log)
        w = Writer(f"nbd://127.0.0.1:{ports['main']}/v", args.seed)

        # A few writes past the last flush: the ones that made A allocate
        # new extents exist on A only in its memory, and die with it.
        w.run(5, max_writes=40)
        check("writes to three copies", not w.errors and w.writes > 0, f"{w.writes} writes {w.errors[:1]}")

        # 1. A dies mid-stream (kill -9); the writes go on with two copies.
        stop(procs["a"], signal.SIGKILL)
        # While A is away the writes keep to the first 8 MiB, so what A
        # lost elsewhere is not rewritten for it: only a rebuild of what it
        # had not flushed brings it back (the byte comparison at the end).
        low = 8 * MiB
        w.run(2, region=low)
        check("holder A killed: I/O goes on", not w.errors, str(w.errors[:1]))
        health = copies_whole(ports["metrics"])
        check("the main server sees A failed", health.get(uri_a) is False, str(health))
        start_holder("a")

        def wait_whole(what, seconds=30, region=VOLUME):
            deadline = time.time() + seconds
            while time.time() < deadline:
                w.run(0.5, region=region)  # I/O the whole time
                h = copies_whole(ports["metrics"])
                if h and all(h.values()):
                    return True
            return False

        check("A restarted: rebuilt while I/O goes on", wait_whole("A", region=low) and not w.errors,
              f"{copies_whole(ports['metrics'])} {w.errors[:1]}")

        # What A holds now, before any write reaches past 8 MiB again.
        w.h.flush()
        with open(os.path.join(main_dir, "extents.dat"), "rb") as f:
            mine = f.read()
        h = nbd.NBD()
        h.connect_uri(uri_a)
        bad = [off for off in range(0, len(mine), MiB)
               if h.pread(min(MiB, len(mine) - off), off) != mine[off:off + MiB]]
        h.shutdown()
        check("A, rebuilt, holds the main copy's bytes, unflushed losses included", not bad,
              f"{len(bad)} extents differ, first at {bad[:1]}")

        # 2. B is wiped: stopped, its directory removed, started empty.
        stop(procs["b"])
        if args.holder == "nbdkit":
            os.remove(os.path.join(work, "holder-b.img"))
        else:
            shutil.rmtree(os.path.join(work, "holder-b"))
        start_holder("b")
        w.run(2)
        check("holder B wiped: I/O goes on", not w.errors, str(w.errors[:1]))
        check("B rebuilt from scratch", wait_whole("B") and not w.errors,
              f"{copies_whole(ports['metrics'])} {w.errors[:1]}")

        # 3. Everything agrees.
        w.h.flush()
        back = b"".join(w.h.pread(16 * MiB, off) for off in range(0, VOLUME, 16 * MiB))
        check("the volume reads back what was written", back == bytes(w.model),
              f"{sum(1 for i in range(0, VOLUME, 4096) if back[i:i+4096] != w.model[i:i+4096])} blocks differ")
        w.h.shutdown()
        size_mib = os.path.getsize(os.path.join(main_dir, "extents.dat")) // MiB
        for k, uri in (("a", uri_a), ("b", uri_b)):
            diff = same_as_main(main_dir, uri)
            check(f"holder {k.upper()} holds the main copy's bytes ({size_mib} MiB)", diff is None,
                  f"first difference in the 4 MiB at {diff}")

        # 4. The main server dies mid-stream (kill -9) and comes back.
        main_args = ["--replica", uri_a, "--replica", uri_b,
                     "--metrics-listen", f"127.0.0.1:{ports['metrics']}"]
        model = w.model
        w = Writer(f"nbd://127.0.0.1:{ports['main']}/v", args.seed + 1)
        w.model = model
        stream = threading.Thread(target=w.run, args=(10,))
        stream.start()
        time.sleep(1.5)
        stop(procs["main"], signal.SIGKILL)  # writes in flight: some copies may have them
        stream.join()
        procs["main"] = start_blockd(args.blockd, main_dir, ports["main"], [f"v:{VOLUME}"], main_args,
                                     log=log)
        rebuilt0 = copy_gauge(ports["metrics"], "qcloud_block_copy_rebuilt_extents_total")
        deadline = time.time() + 30
        resyncing = copy_gauge(ports["metrics"], "qcloud_block_copy_resyncing")
        while time.time() < deadline and any(resyncing.values()):
            time.sleep(0.2)
            resyncing = copy_gauge(ports["metrics"], "qcloud_block_copy_resyncing")
        rebuilt = copy_gauge(ports["metrics"], "qcloud_block_copy_rebuilt_extents_total")
        check("after kill -9 of the main server, both replicas are resynced from its copy",
              resyncing and not any(resyncing.values()) and rebuilt.get(uri_a, 0) > 0 and
              rebuilt.get(uri_b, 0) > 0 and all(copies_whole(ports["metrics"]).values()),
              f"resyncing {resyncing}, extents copied {rebuilt} (at start {rebuilt0})")
        for k, uri in (("a", uri_a), ("b", uri_b)):
            diff = same_as_main(main_dir, uri)
            check(f"after the resync holder {k.upper()} holds the main copy's bytes", diff is None,
                  f"first difference in the 4 MiB at {diff}")
        # A clean stop marks the copies closed: the next start resyncs nothing.
        stop(procs["main"])
        procs["main"] = start_blockd(args.blockd, main_dir, ports["main"], [f"v:{VOLUME}"], main_args,
                                     log=log)
        time.sleep(1.5)  # a Maintain() pass or more
        resyncing = copy_gauge(ports["metrics"], "qcloud_block_copy_resyncing")
        rebuilt = copy_gauge(ports["metrics"], "qcloud_block_copy_rebuilt_extents_total")
        check("after a clean stop and restart nothing is resynced",
              resyncing and not any(resyncing.values()) and not any(rebuilt.values()),
              f"resyncing {resyncing}, extents copied {rebuilt}")
        print(f"{w.writes} writes in the last stream, {time.time() - t0:.1f} s in all")
    finally:
        # The main server first: a holder may wait for its client to go.
        for p in reversed(list(procs.values())):
            stop(p)
        log.close()
        if False in RESULTS:
            print(open(os.path.join(work, "servers.log")).read()[-3000:])
        shutil.rmtree(work, ignore_errors=True)
    failed = RESULTS.count(False)
    print(f"{len(RESULTS) - failed} passed, {failed} failed")
    sys.exit(1 if failed or not RESULTS else 0)


main()
