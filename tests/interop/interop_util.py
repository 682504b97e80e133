"""Helpers shared by the interop scripts that start real servers themselves
(kv_memcached_tool.py, kv_watch.py, monitor_*.py): PASS/FAIL checks, free
ports, waiting for a server to listen, stopping it by PID, JSON GETs, the
closing tally. Standard library only."""

import json
import os
import random
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request

RESULTS = []


def check(name, ok, detail=''):
    """Records and prints one check; `detail` is shown (cut) when it fails."""
    RESULTS.append(bool(ok))
    print('%s %s%s' % ('PASS' if ok else 'FAIL', name, '' if ok else '  -- %s' % str(detail)[:600]))


_GIVEN = set()
_RNG = random.Random()  # its own: scripts that seed `random` do not fix the ports


def _ephemeral_low():
    try:
        with open('/proc/sys/net/ipv4/ip_local_port_range') as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port():
    """A port free on 127.0.0.1 now, taken below the ephemeral range: a port
    the kernel hands out for :0 is one that other tests' outgoing connects
    also take, so a server that binds it a few seconds later could find it
    in use. Random in 20000..32000 (capped below the range's low end), never
    the same twice in one process; ones that fail to bind are skipped."""
    hi = min(32000, _ephemeral_low() - 1)
    lo = 20000 if hi > 21000 else 1024
    for _ in range(1000 if hi - lo >= 100 else 0):
        port = _RNG.randint(lo, hi)
        if port in _GIVEN:
            continue
        s = socket.socket()
        try:
            s.bind(('127.0.0.1', port))
        except OSError:
            continue
        finally:
            s.close()
        _GIVEN.add(port)
        return port
    s = socket.socket()  # no room below the ephemeral range: the kernel's choice
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, proc, timeout=10):
    """Until 127.0.0.1:port accepts; RuntimeError if `proc` exits or time runs out."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError('server exited')
        try:
            socket.create_connection(('127.0.0.1', port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError('server did not listen')


def start_memcached(path, memory_mb, *extra):
    """memcached on a free 127.0.0.1 port, one thread, no UDP; (proc, port) once it listens."""
    port = free_port()
    cmd = [path, '-l', '127.0.0.1', '-p', str(port), '-U', '0', '-t', '1', '-m', str(memory_mb), *extra]
    if os.geteuid() == 0:
        cmd += ['-u', 'root']
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, proc)
    except RuntimeError:
        stop(proc)
        raise
    return proc, port


def start_kvd(path, memory_mb):
    """qcloud-kvd on a free 127.0.0.1 port, one worker; (proc, port) once it listens."""
    port = free_port()
    proc = subprocess.Popen([path, '--listen', '127.0.0.1:%d' % port, '--memory', str(memory_mb),
                             '--threads', '1'], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, proc)
    except RuntimeError:
        stop(proc)
        raise
    return proc, port


def stop(proc, sig=signal.SIGTERM, grace=5):
    """`sig` (SIGTERM), then SIGKILL after `grace` seconds."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_ready(port, proc, timeout=40):
    """Until GET /-/ready on 127.0.0.1:port answers 200 (Prometheus and
    Alertmanager take their port before they are ready); RuntimeError if
    `proc` exits or time runs out."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError('server exited')
        try:
            with urllib.request.urlopen('http://127.0.0.1:%d/-/ready' % port, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError('not ready after %d s' % timeout)


def get_json(port, path, **params):
    """GET http://127.0.0.1:port/path?params: (status, decoded JSON), errors included."""
    url = 'http://127.0.0.1:%d%s' % (port, path)
    if params:
        url += '?' + urllib.parse.urlencode(params, doseq=True)
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        body = e.read()
        try:
            return e.code, json.loads(body or b'{}')
        except ValueError:  # not JSON: e.g. Prometheus's 503 while its storage starts
            return e.code, {'error': body.decode('utf-8', 'replace')}


def finish(work, keep_on_success=True):
    """Prints the tally; the work directory is named (kept) when a check
    failed, removed otherwise unless `keep_on_success`. Returns the exit code."""
    failed = RESULTS.count(False)
    print('%d passed, %d failed' % (RESULTS.count(True), failed))
    if failed:
        print('work dir kept: %s' % work)
    elif not keep_on_success:
        subprocess.run(['rm', '-rf', work])
    return 1 if failed else 0


if __name__ == '__main__':
    import sys
    if sys.argv[1:2] == ['free_port']:  # for the shell scripts: free_port [N] prints N ports
        print(' '.join(str(free_port()) for _ in range(int(sys.argv[2]) if len(sys.argv) > 2 else 1)))
