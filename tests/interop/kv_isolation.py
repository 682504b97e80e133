#!/usr/bin/python3
"""qcloud-kvd over real sockets: bad and slow clients do not disturb others.

Starts qcloud-kvd (one worker thread, so every connection shares one event
loop) on 127.0.0.1 and, at the same time:
  * a slow reader pipelines "get big" (a 512 KiB value) 4000 times, about
    2 GiB of replies, and never reads one;
  * a client sends malformed input: an over-long key, a non-numeric length,
    a 64 KiB line without a newline (memcached closes such a connection),
    then, on another connection, binary garbage;
  * a well-behaved client runs set/get round trips and checks every reply.
The server's RSS must stay bounded (the slow reader's replies are not
buffered without limit), the good client must get every reply right and in
time, and the server must still serve new clients after the bad ones left.

Usage: kv_isolation.py --kvd PATH. Exit 0 iff every check holds.
"""
import argparse
import os
import re
import socket
import subprocess
import sys
import threading
import time

HOST = '127.0.0.1'


def rss_kib(pid):
    with open(f'/proc/{pid}/status') as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1])
    return 0


def recv_until(sock, marker, limit=1 << 20, timeout=5.0):
    sock.settimeout(timeout)
    data = b''
    while marker not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
        if len(data) > limit:
            break
    return data


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--kvd', required=True)
    args = ap.parse_args()

    proc = subprocess.Popen([args.kvd, '--listen', f'{HOST}:0', '--memory', '64', '--threads', '1'],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    failures = []
    try:
        line = proc.stdout.readline()
        m = re.search(r'listening on 127\.0\.0\.1:(\d+)', line)
        if not m:
            print('FAIL qcloud-kvd did not start:', line, proc.stderr.read())
            return 1
        port = int(m.group(1))

        good = socket.create_connection((HOST, port))
        big = b'B' * (512 * 1024)
        good.sendall(b'set big 0 0 %d\r\n' % len(big) + big + b'\r\n')
        if recv_until(good, b'\r\n') != b'STORED\r\n':
            failures.append('could not store the big value')
        base = rss_kib(proc.pid)

        # The slow reader: a small receive buffer, never read.
        slow = socket.socket()
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.connect((HOST, port))
        slow.settimeout(0.2)
        stop = threading.Event()
        sent = [0]

        def flood():
            req = b'get big\r\n' * 4000
            while not stop.is_set() and sent[0] < len(req):
                try:
                    sent[0] += slow.send(req[sent[0]:sent[0] + 65536])
                except socket.timeout:
                    pass  # the server stopped reading us: that is the point
                except OSError:
                    break
        flooder = threading.Thread(target=flood)
        flooder.start()

        # The malformed client.
        bad = socket.create_connection((HOST, port))
        bad.sendall(b'get ' + b'k' * 300 + b'\r\n')
        r = recv_until(bad, b'\r\n')
        if not r.startswith(b'CLIENT_ERROR'):
            failures.append(f'over-long key: {r[:80]!r}')
        bad.sendall(b'set k 0 0 notanumber\r\n')
        r = recv_until(bad, b'\r\n')
        if not r.startswith(b'CLIENT_ERROR'):
            failures.append(f'non-numeric length: {r[:80]!r}')
        # 64 KiB without a newline: memcached closes the connection, silently.
        try:
            bad.sendall(b'x' * 65536)
            r = recv_until(bad, b'\r\n')
        except OSError:
            r = b''
        if r != b'':
            failures.append(f'64 KiB line: expected the connection closed, got {r[:80]!r}')
        bad.close()
        bad = socket.create_connection((HOST, port))
        try:
            bad.sendall(b'\x80\x00\xff\xff' + os.urandom(60))  # binary garbage
        except OSError:
            pass
        bad.close()

        # The good client, meanwhile: every round trip right and in time.
        peak = base
        worst = 0.0
        for i in range(300):
            v = b'value-%d' % i
            t0 = time.monotonic()
            good.sendall(b'set k%d 5 0 %d\r\n%s\r\nget k%d\r\n' % (i, len(v), v, i))
            want = b'STORED\r\nVALUE k%d 5 %d\r\n%s\r\nEND\r\n' % (i, len(v), v)
            got = recv_until(good, b'END\r\n')
            worst = max(worst, time.monotonic() - t0)
            if got != want:
                failures.append(f'good client round trip {i}: {got[:80]!r}')
                break
            if i % 30 == 0:
                peak = max(peak, rss_kib(proc.pid))
                time.sleep(0.02)
        for _ in range(10):  # and a second later, still bounded
            time.sleep(0.1)
            peak = max(peak, rss_kib(proc.pid))
        # The good client must not wait behind the slow one (generous bound:
        # this is about starvation, not speed; a loaded machine can stall one
        # round trip for a second or two).
        if worst > 5.0:
            failures.append(f'good client waited {worst:.2f} s for one round trip')
        # 2 GiB of replies were asked for; the server keeps ~4 MiB per client.
        if peak - base > 64 * 1024:
            failures.append(f'RSS grew by {(peak - base) // 1024} MiB with a slow reader')
        print(f'slow reader sent {sent[0]} request bytes (of {9 * 4000}); server RSS '
              f'{base // 1024} MiB -> peak {peak // 1024} MiB; good client worst round trip '
              f'{worst * 1000:.1f} ms')

        stop.set()
        flooder.join()
        slow.close()

        # New clients are served after the bad ones left.
        fresh = socket.create_connection((HOST, port))
        fresh.sendall(b'get k299\r\nversion\r\n')
        r = recv_until(fresh, b'VERSION')
        r += recv_until(fresh, b'\r\n') if not r.endswith(b'\r\n') else b''
        if not r.startswith(b'VALUE k299 5 9\r\nvalue-299\r\nEND\r\nVERSION '):
            failures.append(f'a new client after the bad ones: {r[:80]!r}')
        fresh.close()
        good.close()
        if proc.poll() is not None:
            failures.append(f'qcloud-kvd exited with {proc.returncode}')
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for f in failures:
        print('FAIL', f)
    print('PASS' if not failures else f'{len(failures)} failure(s)')
    return 0 if not failures else 1


if __name__ == '__main__':
    sys.exit(main())
