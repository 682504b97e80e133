#!/usr/bin/python3
"""kill -9 of a real qcloud-cosd at every step, then restart on the same
data directory and check that nothing acknowledged was lost, nothing
unacknowledged became visible in part, and no chunk leaked.

    object_crash.py --cosd PATH [--rounds N] [--sync]

Steps killed deterministically: after an acknowledged PUT; in the middle of
a PUT's body; between the parts of a multipart upload; between the PUTs
and DELETEs of de-duplicated copies. Then N rounds (default 12) of a
workload of PUT / copy / DELETE / multipart over 6 keys and 3 contents
(so that de-duplication shares chunks), with the server killed at a
random instant of each round: after every restart each key holds what its
last acknowledged operation left, or what the operation in flight at the
kill would have left, and every byte matches its ETag. At the end every
object is deleted and the chunk count (qcloud_object_chunks on /metrics)
must be back to zero: a crash between "index commit" and "free chunks"
leaks nothing, because the next start collects the orphans.

Run with /usr/bin/python3 (Debian's botocore signs the requests). Prints
PASS/FAIL per check; exit 0 iff all pass. Bounded in rounds and time.
"""

import argparse
import hashlib
import os
import random
import re
import sys
import threading
import time

from object_server import Checks, Cosd, connect, read_response, request, signed

check = Checks()


def md5(b):
    return hashlib.md5(b).hexdigest()


def get(port, key):
    r = request(port, 'GET', '/crash/' + key)
    if r is None:
        raise RuntimeError('no answer')
    return r


def body_ok(r):
    """The body matches the ETag (single PUT: its MD5)."""
    etag = r[1].get('etag', '').strip('"')
    return '-' in etag or etag == md5(r[2])


def multipart(port, key, parts):
    r = request(port, 'POST', '/crash/%s?uploads' % key)
    upload = re.search(rb'<UploadId>([^<]+)</UploadId>', r[2]).group(1).decode()
    etags = []
    for i, p in enumerate(parts, 1):
        r = request(port, 'PUT', '/crash/%s?partNumber=%d&uploadId=%s' % (key, i, upload), p)
        if r is None or r[0] != 200:
            raise RuntimeError('part %d: %s' % (i, r and r[:2]))
        etags.append(r[1]['etag'])
    xml = '<CompleteMultipartUpload>%s</CompleteMultipartUpload>' % ''.join(
        '<Part><PartNumber>%d</PartNumber><ETag>%s</ETag></Part>' % (i, e) for i, e in enumerate(etags, 1))
    return upload, request(port, 'POST', '/crash/%s?uploadId=%s' % (key, upload), xml.encode())


def deterministic(srv):
    port = srv.port
    check('create bucket', request(port, 'PUT', '/crash')[0] == 200)
    base = srv.metric('qcloud_object_chunks')

    # An acknowledged PUT survives kill -9.
    body = os.urandom(1 << 20)
    check('PUT acknowledged', request(port, 'PUT', '/crash/acked', body)[0] == 200)
    srv.kill()
    port = srv.start().port
    r = get(port, 'acked')
    check('after kill -9: the acknowledged PUT is whole', r[0] == 200 and r[2] == body)

    # A PUT killed mid-body: not visible, its chunks collected at restart.
    chunks = srv.metric('qcloud_object_chunks')
    big = os.urandom(24 << 20)
    head, _ = signed('PUT', port, '/crash/cut', big)
    s = connect(port)
    s.sendall(head + big[:16 << 20])
    deadline = time.monotonic() + 10
    while srv.metric('qcloud_object_chunks') <= chunks and time.monotonic() < deadline:
        time.sleep(0.02)  # until chunks of the first 16 MiB are on disk (10 s at most)
    srv.kill()
    s.close()
    port = srv.start().port
    check('PUT killed mid-body: not visible', get(port, 'cut')[0] == 404)
    check('PUT killed mid-body: its chunks were collected', srv.metric('qcloud_object_chunks') == chunks,
          (srv.metric('qcloud_object_chunks'), chunks))
    check('PUT killed mid-body: the collection was counted', srv.metric('qcloud_object_collected_chunks_total') > 0)

    # Multipart: parts survive a kill between them; the completion is whole.
    p1, p2 = os.urandom(5 << 20), os.urandom(1000)
    r = request(port, 'POST', '/crash/mp?uploads')
    upload = re.search(rb'<UploadId>([^<]+)</UploadId>', r[2]).group(1).decode()
    e1 = request(port, 'PUT', '/crash/mp?partNumber=1&uploadId=' + upload, p1)[1]['etag']
    srv.kill()
    port = srv.start().port
    r = request(port, 'GET', '/crash/mp?uploadId=' + upload)
    check('multipart: part 1 survives kill -9', r[0] == 200 and r[2].count(b'<Part>') == 1)
    e2 = request(port, 'PUT', '/crash/mp?partNumber=2&uploadId=' + upload, p2)[1]['etag']
    xml = ('<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>%s</ETag></Part>'
           '<Part><PartNumber>2</PartNumber><ETag>%s</ETag></Part></CompleteMultipartUpload>' % (e1, e2))
    check('multipart: completes after the restart',
          request(port, 'POST', '/crash/mp?uploadId=' + upload, xml.encode())[0] == 200)
    srv.kill()
    port = srv.start().port
    r = get(port, 'mp')
    check('multipart: whole after kill -9', r[0] == 200 and r[2] == p1 + p2)

    # De-duplicated copies: stored once, freed with the last one, across kills.
    content = os.urandom(3 << 20)
    before = srv.metric('qcloud_object_chunks')
    for k in ('d1', 'd2', 'd3'):
        request(port, 'PUT', '/crash/' + k, content)
    check('dedup: three PUTs of one content store it once',
          srv.metric('qcloud_object_chunks') - before == 1, srv.metric('qcloud_object_chunks') - before)
    srv.kill()
    port = srv.start().port
    request(port, 'DELETE', '/crash/d1')
    request(port, 'DELETE', '/crash/d2')
    srv.kill()
    port = srv.start().port
    r = get(port, 'd3')
    check('dedup: the last copy is whole after deletes and kills', r[2] == content)
    request(port, 'DELETE', '/crash/d3')
    check('dedup: its chunks freed with it', srv.metric('qcloud_object_chunks') == before)
    # Concurrent PUTs to one key: exactly one intact, with or without a kill.
    bodies = [os.urandom(2 << 20) for _ in range(4)]
    for attempt, kill in enumerate((False, False, True)):
        def put(b):
            try:
                request(port, 'PUT', '/crash/race', b)
            except OSError:
                pass  # the kill
        threads = [threading.Thread(target=put, args=(b,)) for b in bodies]
        for t in threads:
            t.start()
        if kill:
            time.sleep(0.02)
            srv.kill()
        for t in threads:
            t.join(timeout=15)
        if kill:
            port = srv.start().port
        r = get(port, 'race')
        check('concurrent PUTs to one key%s: exactly one intact' % (' killed' if kill else ''),
              (r[0] == 200 and r[2] in bodies) or (kill and r[0] == 404), r[:2])
    for k in ('acked', 'mp', 'race'):
        request(port, 'DELETE', '/crash/' + k)
    check('deterministic steps leave no chunk', srv.metric('qcloud_object_chunks') == base,
          srv.metric('qcloud_object_chunks'))


def workload(srv, rounds, rng):
    contents = [os.urandom(rng.choice([1000, 200 << 10, 9 << 20])) for _ in range(3)]
    keys = ['w%d' % i for i in range(6)]
    state = {k: None for k in keys}  # last acknowledged content index (None = absent)
    mp_content = {}                  # key -> bytes of a completed multipart upload
    port = srv.port
    for rnd in range(rounds):
        killer = threading.Timer(rng.uniform(0.05, 0.6), srv.kill)
        killer.start()
        inflight = None
        try:
            for _ in range(200):
                op = rng.random()
                key = rng.choice(keys)
                if op < 0.5:
                    i = rng.randrange(3)
                    inflight = (key, ('c', i))
                    # Unsigned bodies leave a large content's SHA-256 to
                    # be computed later (lazily, or when a duplicate comes).
                    r = request(port, 'PUT', '/crash/' + key, contents[i],
                                payload_mode=rng.choice(['hash', 'unsigned']))
                    if r is None or r[0] != 200:
                        raise RuntimeError('put')
                    state[key] = ('c', i)
                elif op < 0.65:
                    src = rng.choice(keys)
                    if state[src] is None:
                        continue
                    inflight = (key, state[src])
                    r = request(port, 'PUT', '/crash/' + key, headers={'x-amz-copy-source': '/crash/' + src})
                    if r is None or r[0] != 200:
                        raise RuntimeError('copy')
                    state[key] = state[src]
                elif op < 0.75:
                    parts = [contents[0][:1000] * 5300, contents[1][:10]]
                    blob = parts[0] + parts[1]
                    inflight = (key, ('m', blob))
                    _, r = multipart(port, key, parts)
                    if r is None or r[0] != 200:
                        raise RuntimeError('complete')
                    state[key] = ('m', blob)
                else:
                    inflight = (key, None)
                    r = request(port, 'DELETE', '/crash/' + key)
                    if r is None or r[0] != 204:
                        raise RuntimeError('delete')
                    state[key] = None
                inflight = None
        except Exception:  # noqa: BLE001 - the kill lands anywhere
            pass
        killer.join()
        srv.kill()
        port = srv.start().port
        bad = []
        for k in keys:
            r = get(port, k)
            allowed = [state[k]]
            if inflight and inflight[0] == k:
                allowed.append(inflight[1])
            def matches(a):
                if a is None:
                    return r[0] == 404
                if r[0] != 200 or not body_ok(r):
                    return False
                return r[2] == (contents[a[1]] if a[0] == 'c' else a[1])
            ok = any(matches(a) for a in allowed)
            if not ok:
                bad.append((k, r[0], allowed and [a if a is None or a[0] == 'c' else 'multipart' for a in allowed]))
            # Whatever is there now is the state to build on.
            if r[0] == 404:
                state[k] = None
            elif ok:
                state[k] = next(a for a in allowed if matches(a))
        check('round %d: every key as acknowledged (or as the op in flight left it)' % (rnd + 1), not bad, bad)
    for k in keys:
        request(port, 'DELETE', '/crash/' + k)
    # Orphans of the last kill are collected at the next start.
    srv.kill()
    srv.start()
    r = request(srv.port, 'GET', '/crash/?uploads')
    for upload in re.findall(rb'<Key>([^<]+)</Key><UploadId>([^<]+)</UploadId>', r[2]):
        request(srv.port, 'DELETE', '/crash/%s?uploadId=%s' % (upload[0].decode(), upload[1].decode()))
    check('after the workload and its kills: no chunk leaked', srv.metric('qcloud_object_chunks') == 0,
          srv.metric('qcloud_object_chunks'))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--cosd', required=True)
    ap.add_argument('--rounds', type=int, default=12)
    ap.add_argument('--sync', action='store_true')
    ap.add_argument('--seed', type=int, default=None)
    args = ap.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    print('seed %d' % seed, flush=True)
    rng = random.Random(seed)
    srv = Cosd(args.cosd, extra=['--sync'] if args.sync else []).start()
    try:
        deterministic(srv)
        workload(srv, args.rounds, rng)
    finally:
        srv.cleanup()
    return check.summary()


if __name__ == '__main__':
    sys.exit(main())
