"""Helpers for the qcloud-cosd tests that talk raw HTTP: start and stop the
server (free port, bounded waits, stopped by PID), sign requests with
botocore's own SigV4 signer, send them over a plain socket and read the
answer. Run the tests with /usr/bin/python3 (Debian's, which has botocore).
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

HOST = '127.0.0.1'
ALICE = ('alice', 'AKIAALICE0000000000A', 'alice-secret-key-0000000000000000000000')
BOB = ('bob', 'AKIABOB00000000000000', 'bob-secret-key-00000000000000000000000000')
TIMEOUT = 10.0


class Cosd:
    """One qcloud-cosd process on a data directory (kept across restarts)."""

    def __init__(self, binary, data_dir=None, extra=()):
        self.binary = binary
        self.own_dir = data_dir is None
        self.data_dir = data_dir or tempfile.mkdtemp(prefix='qcloud-cosd-')
        self.extra = list(extra)
        self.proc = None
        self.port = None
        self.metrics_port = None

    def start(self):
        args = [self.binary, '--listen', '%s:0' % HOST, '--data-dir', self.data_dir,
                '--metrics-listen', '%s:0' % HOST, '--threads', '2', '--drain', '1s']
        for name, access, secret in (ALICE, BOB):
            args += ['--user', '%s:%s:%s' % (name, access, secret)]
        args += self.extra
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            m = re.search(r'metrics on http://[\d.]+:(\d+)/metrics', line)
            if m:
                self.metrics_port = int(m.group(1))
            m = re.search(r'listening on [\d.]+:(\d+)', line)
            if m:
                self.port = int(m.group(1))
                return self
        self.kill()
        raise RuntimeError('qcloud-cosd did not start')

    def kill(self):
        """kill -9: the crash the tests are about."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=TIMEOUT)
        self.proc = None

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=TIMEOUT)
        self.proc = None

    def cleanup(self):
        self.stop()
        if self.own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def metric(self, name):
        """A sample without labels from /metrics, as a float."""
        with urllib.request.urlopen('http://%s:%d/metrics' % (HOST, self.metrics_port), timeout=TIMEOUT) as r:
            for line in r.read().decode().splitlines():
                if line.startswith(name + ' '):
                    return float(line.split()[1])
        raise KeyError(name)


def signed(method, port, path, body=b'', headers=None, user=ALICE, payload='hash'):
    """The request's bytes, signed by botocore as a client would sign it.
    `path` is the percent-encoded path with any query. payload: 'hash'
    (x-amz-content-sha256 of the body) or 'unsigned'."""
    url = 'http://%s:%d%s' % (HOST, port, path)
    hdrs = dict(headers or {})
    if payload == 'unsigned':
        hdrs['x-amz-content-sha256'] = 'UNSIGNED-PAYLOAD'
    req = AWSRequest(method=method, url=url, data=body, headers=hdrs)
    S3SigV4Auth(Credentials(user[1], user[2]), 's3', 'us-east-1').add_auth(req)
    prepared = req.prepare()
    lines = ['%s %s HTTP/1.1' % (method, path)]
    seen = set()
    if 'host' not in {k.lower() for k in prepared.headers.keys()}:
        lines.append('Host: %s:%d' % (HOST, port))
        seen.add('host')
    for k, v in prepared.headers.items():
        lines.append('%s: %s' % (k, v))
        seen.add(k.lower())
    if 'content-length' not in seen and (body or method in ('PUT', 'POST')):
        lines.append('Content-Length: %d' % len(body))
    return ('\r\n'.join(lines) + '\r\n\r\n').encode(), body


def connect(port):
    s = socket.create_connection((HOST, port), timeout=TIMEOUT)
    s.settimeout(TIMEOUT)
    return s


def read_response(sock, head_request=False):
    """(status, headers dict lower-case, body) of one response, or None when
    the server closed the connection first."""
    data = b''
    while b'\r\n\r\n' not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        data += chunk
        if len(data) > 1 << 20:
            raise RuntimeError('response head too large')
    head, rest = data.split(b'\r\n\r\n', 1)
    lines = head.decode('latin-1').split('\r\n')
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, v = line.split(':', 1)
        headers[k.strip().lower()] = v.strip()
    length = 0 if head_request or status in (204, 304) else int(headers.get('content-length', '0'))
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError('body cut short')
        rest += chunk
    return status, headers, rest[:length]


def request(port, method, path, body=b'', headers=None, user=ALICE, sock=None, payload_mode='hash'):
    """One signed request on a new (or the given) connection."""
    head, payload = signed(method, port, path, body, headers, user, payload_mode)
    own = sock is None
    s = sock or connect(port)
    try:
        s.sendall(head + payload)
        return read_response(s, head_request=(method == 'HEAD'))
    finally:
        if own:
            s.close()


def error_code(body):
    m = re.search(rb'<Code>([^<]*)</Code>', body or b'')
    return m.group(1).decode() if m else None


def closed_by_peer(sock, wait=5.0):
    """True when the server closes the connection within `wait` seconds."""
    sock.settimeout(wait)
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


class Checks:
    """PASS/FAIL lines, counted; summary() prints the totals and gives the
    exit status."""

    def __init__(self):
        self.passed = 0
        self.failed = []

    def __call__(self, name, cond, detail=''):
        if cond:
            self.passed += 1
            print('PASS %s' % name, flush=True)
        else:
            self.failed.append(name)
            print('FAIL %s %s' % (name, detail), flush=True)

    def summary(self):
        print('%d passed, %d failed' % (self.passed, len(self.failed)))
        return 0 if not self.failed else 1
