#!/usr/bin/python3
"""Bad input against a real qcloud-cosd over real sockets: oversized heads,
bodies shorter or longer than Content-Length, uploads cut mid-body, wrong
Content-MD5, keys with '..', %00 and 1,025 bytes, garbage, a stalled
client; after each, nothing partial is visible, no chunk leaks (the
qcloud_object_chunks gauge of /metrics), and a second client on its own
keep-alive connection is served throughout.

    object_bad_input.py --cosd PATH

Requests are signed by botocore's SigV4 signer (Debian python3-botocore,
so run with /usr/bin/python3). Prints PASS/FAIL per check; exit 0 iff all
pass. Bounded: every socket has a timeout, the whole run takes seconds.
"""

import argparse
import hashlib
import base64
import os
import socket
import subprocess
import sys
import time
import urllib.request

from object_server import (Checks, ALICE, Cosd, closed_by_peer, connect, error_code, read_response, request,
                           signed)

check = Checks()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--cosd', required=True)
    args = ap.parse_args()
    srv = Cosd(args.cosd).start()
    port = srv.port
    try:
        r = request(port, 'PUT', '/bad')
        check('create bucket', r and r[0] == 200, r)
        # The bystander: one keep-alive connection used between every step.
        by = connect(port)
        by_n = [0]

        def bystander(step):
            by_n[0] += 1
            key = '/bad/bystander-%d' % by_n[0]
            body = os.urandom(1000)
            r1 = request(port, 'PUT', key, body, sock=by)
            r2 = request(port, 'GET', key, sock=by)
            check('bystander served after %s' % step,
                  r1 and r1[0] == 200 and r2 and r2[0] == 200 and r2[2] == body)
            request(port, 'DELETE', key, sock=by)

        base_chunks = srv.metric('qcloud_object_chunks')

        # 1. A 64 KiB header: refused with S3's code, connection closed.
        s = connect(port)
        head, _ = signed('GET', port, '/bad/x', headers={'x-amz-meta-big': 'a' * 65536})
        s.sendall(head)
        r = read_response(s)
        check('64 KiB header: 400 RequestHeaderSectionTooLarge',
              r and r[0] == 400 and error_code(r[2]) == 'RequestHeaderSectionTooLarge', r and r[:2])
        check('64 KiB header: connection closed', closed_by_peer(s))
        s.close()
        bystander('64 KiB header')

        # 2. A body shorter than Content-Length, then the client goes away.
        body = os.urandom(300 * 1024)
        head, _ = signed('PUT', port, '/bad/short', body)
        conns = srv.metric('qcloud_object_connections')
        s = connect(port)
        s.sendall(head + body[:100 * 1024])
        time.sleep(0.2)
        s.close()
        # Until the server has let the connection go and the chunk count is
        # back (10 s at most): the gauge says it saw the client leave.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if (srv.metric('qcloud_object_connections') <= conns
                    and srv.metric('qcloud_object_chunks') == base_chunks):
                break
            time.sleep(0.05)
        r = request(port, 'HEAD', '/bad/short')
        check('cut upload: nothing visible', r and r[0] == 404, r and r[:2])
        check('cut upload: no chunk left behind', srv.metric('qcloud_object_chunks') == base_chunks,
              srv.metric('qcloud_object_chunks'))
        bystander('cut upload')

        # 3. A body longer than Content-Length: the object is what was
        # declared; the extra bytes are a malformed next request.
        body = b'0123456789'
        head, _ = signed('PUT', port, '/bad/long', body)
        s = connect(port)
        s.sendall(head + body + b'GARBAGE GARBAGE\r\n\r\n')
        r1 = read_response(s)
        r2 = read_response(s)
        check('long body: the declared bytes are stored', r1 and r1[0] == 200, r1 and r1[:2])
        check('long body: the rest is a bad request', r2 is None or r2[0] == 400, r2 and r2[:2])
        s.close()
        r = request(port, 'GET', '/bad/long')
        check('long body: GET returns exactly Content-Length bytes', r and r[2] == body, r and r[2][:20])
        bystander('long body')

        # 4. Wrong Content-MD5: 400 BadDigest, nothing stored.
        body = os.urandom(5000)
        wrong = base64.b64encode(hashlib.md5(b'other').digest()).decode()
        r = request(port, 'PUT', '/bad/md5', body, {'Content-MD5': wrong})
        check('wrong Content-MD5: 400 BadDigest', r and r[0] == 400 and error_code(r[2]) == 'BadDigest',
              r and r[:2])
        r = request(port, 'HEAD', '/bad/md5')
        check('wrong Content-MD5: nothing visible', r and r[0] == 404)
        right = base64.b64encode(hashlib.md5(body).digest()).decode()
        r = request(port, 'PUT', '/bad/md5', body, {'Content-MD5': right})
        check('right Content-MD5: stored', r and r[0] == 200)

        # 5. Keys: '..' is a key like any other; %00 and 1,025 bytes refused.
        r = request(port, 'PUT', '/bad/a/../b', b'dots')
        r2 = request(port, 'GET', '/bad/a/../b')
        r3 = request(port, 'GET', '/bad/b')
        check("'..' stays in the key", r and r[0] == 200 and r2[2] == b'dots' and r3[0] == 404)
        r = request(port, 'PUT', '/bad/a%00b', b'x')
        check('%00 in a key: 400', r and r[0] == 400, r and r[:2])
        r = request(port, 'PUT', '/bad/' + 'k' * 1025, b'x')
        check('1,025-byte key: KeyTooLongError', r and error_code(r[2]) == 'KeyTooLongError', r and r[:2])
        r = request(port, 'PUT', '/bad/' + 'k' * 1024, b'x')
        check('1,024-byte key: stored', r and r[0] == 200, r and r[:2])

        # 5b. A refused PUT without Expect: its small body is read and dropped,
        # the answer arrives, and the connection stays usable.
        s = connect(port)
        head, body = signed('PUT', port, '/nosuchbucket/k', os.urandom(50000))
        s.sendall(head + body)
        r = read_response(s)
        check('refused PUT with a body: the answer, not a reset', r and r[0] == 404 and
              error_code(r[2]) == 'NoSuchBucket', r and r[:2])
        r = request(port, 'GET', '/bad/a/../b', sock=s)
        check('refused PUT with a body: the connection goes on', r and r[0] == 200 and r[2] == b'dots',
              r and r[:2])
        s.close()

        # 6. Garbage instead of HTTP: 400, closed.
        s = connect(port)
        s.sendall(b'\x00\x01\x02 not http at all\r\n\r\n')
        r = read_response(s)
        check('garbage: 400', r and r[0] == 400, r and r[:2])
        check('garbage: connection closed', closed_by_peer(s))
        s.close()
        bystander('garbage')

        # 7. A client that stalls mid-head holds its own connection only.
        stall = connect(port)
        stall.sendall(b'PUT /bad/stall HTTP/1.1\r\nHost: x\r\n')
        bystander('a stalled client')
        stall.close()

        # 8. An unsigned PUT, and a wrong secret: refused, nothing stored.
        s = connect(port)
        s.sendall(b'PUT /bad/anon HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc')
        r = read_response(s)
        check('anonymous PUT: 403 AccessDenied', r and r[0] == 403 and error_code(r[2]) == 'AccessDenied')
        s.close()
        r = request(port, 'PUT', '/bad/wrong', b'abc', user=('alice', ALICE[1], 'wrong-secret'))
        check('wrong secret: 403 SignatureDoesNotMatch',
              r and r[0] == 403 and error_code(r[2]) == 'SignatureDoesNotMatch')

        # 9. Expect: 100-continue answered before the body is sent.
        body = os.urandom(2000)
        head, _ = signed('PUT', port, '/bad/continue', body, {'Expect': '100-continue'})
        s = connect(port)
        s.sendall(head)
        first = s.recv(4096)
        check('Expect: 100-continue gets 100 Continue', first.startswith(b'HTTP/1.1 100'), first[:40])
        s.sendall(body)
        r = read_response(s)
        check('Expect: 100-continue then the PUT completes', r and r[0] == 200, r and r[:2])
        s.close()

        for key in ('long', 'md5', 'a/../b', 'k' * 1024, 'continue'):
            request(port, 'DELETE', '/bad/' + key)
        check('every chunk freed at the end', srv.metric('qcloud_object_chunks') == base_chunks,
              srv.metric('qcloud_object_chunks'))
        # /metrics parses with Prometheus' own checker and counted the errors.
        with urllib.request.urlopen('http://127.0.0.1:%d/metrics' % srv.metrics_port, timeout=10) as m:
            text = m.read()
        res = subprocess.run(['promtool', 'check', 'metrics'], input=text, capture_output=True, timeout=30)
        check('promtool check metrics: no problems', res.returncode == 0, res.stdout + res.stderr)
        with urllib.request.urlopen('http://127.0.0.1:%d/metrics' % port, timeout=10) as m:
            on_s3_port = m.read()
        check('/metrics also on the S3 port (unsigned GET)',
              b'qcloud_object_requests_total{op=' in on_s3_port, on_s3_port[:200])
        check('/metrics counts the 400s by operation',
              b'qcloud_object_requests_total{op="PutObject",code="400"}' in text, text[:300])
        by.close()
    finally:
        srv.cleanup()
    # Sockets opened and left silent are closed after --idle-timeout.
    short = Cosd(srv.binary, extra=['--idle-timeout', '1s']).start()
    try:
        quiet = connect(short.port)
        half = connect(short.port)
        half.sendall(b'GET /bad HTTP/1.1\r\nHost: x\r\n')  # a head never finished
        check('a silent connection is closed after --idle-timeout', closed_by_peer(quiet, wait=4.0))
        check('a stalled head is closed after --idle-timeout', closed_by_peer(half, wait=4.0))
        r = request(short.port, 'PUT', '/bad')
        check('and the server goes on', r and r[0] == 200, r and r[:2])
        quiet.close()
        half.close()
    finally:
        short.cleanup()
    return check.summary()


if __name__ == '__main__':
    sys.exit(main())
