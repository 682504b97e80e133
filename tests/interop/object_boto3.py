#!/usr/bin/python3
"""Real-client interop test: boto3 (Debian python3-boto3 1.26 / botocore 1.29)
against qcloud-cosd or, to prove the test itself right, npm's s3rver.

Run with /usr/bin/python3 (the Debian interpreter that has boto3):

    object_boto3.py --cosd PATH      start PATH (qcloud-cosd) with users alice
                                     and bob and test it
    object_boto3.py --s3rver DIR     start s3rver from the npm install in DIR
                                     (DIR/node_modules/s3rver; made with
                                     `npm install s3rver@3`) and test it
    object_boto3.py --endpoint URL --access KEY --secret SECRET
                    [--access2 KEY --secret2 SECRET]
                                     test a server already running (buckets
                                     named it<random>-... are made and removed)
    --big-mib N                      size of the big object (default 100)

Every server runs on 127.0.0.1 on a port it picks itself, with its data in a
temporary directory; it is stopped by PID (SIGTERM, SIGKILL after 5 s) on any
exit. All requests are path-style, SigV4, region us-east-1, no retries, with
socket timeouts; the whole run is bounded by a 270 s alarm.

What is checked (S3 semantics as AWS documents them):
  buckets       create (and InvalidBucketName), HeadBucket (200/404),
                ListBuckets, GetBucketLocation (empty = us-east-1),
                DeleteBucket (BucketNotEmpty 409 while non-empty, then 204)
  objects       put/get/head/delete of 1 KiB and big (--big-mib) objects,
                sha256 compared, ETag = MD5; user metadata x-amz-meta-* and
                Content-Type round trip; Content-MD5 right / wrong (BadDigest)
  ranges        bytes=0-9, bytes=-5, bytes=10-, bytes=1000-5000 (clamped),
                bytes=2000-3000 on 1 KiB -> 416 InvalidRange
  conditionals  If-None-Match (304), If-Match (412/200), If-Modified-Since
                equal to Last-Modified / in the future (304) / before (200)
  copy          CopyObject with MetadataDirective COPY and REPLACE; copy onto
                itself without REPLACE -> 400 InvalidRequest; missing source
  batch delete  DeleteObjects incl. a missing key (reported as Deleted)
  listing       25 keys in a small tree, MaxKeys=4 paged by ContinuationToken
                (V2) and by Marker/NextMarker (V1), with and without
                delimiter, prefix, StartAfter; union of Contents and
                CommonPrefixes equals the expected list exactly and in order;
                EncodingType=url with space, '+', '%' and unicode in keys;
                UTF-8 byte order of awkward keys
  multipart     create/upload_part/complete (content, metadata, ETag
                "<md5 of the parts' MD5 digests>-N"), upload_part_copy with
                CopySourceRange, list_parts, list_multipart_uploads, abort
                (then NoSuchUpload), EntityTooSmall and InvalidPart
  presigned     GET URL with ExpiresIn=30 works; one with ExpiresIn=2, once
                past it, 403 AccessDenied "Request has expired"; a tampered
                URL -> 403 SignatureDoesNotMatch
  errors        NoSuchKey, NoSuchBucket, wrong secret -> SignatureDoesNotMatch,
                unknown access key -> InvalidAccessKeyId
  users         (qcloud-cosd, or --access2) bob gets AccessDenied on alice's
                bucket for get/head/put/delete/list, does not see it in
                ListBuckets, gets BucketAlreadyExists for its name

In --s3rver mode the checks that s3rver 3.7 cannot pass are printed as SKIP
with the reason (it has one user, verifies no SigV4 signature and no
Content-MD5, lacks If-Match, suffix ranges, EncodingType, ListParts,
ListMultipartUploads, AbortMultipartUpload, UploadPartCopy, multipart ETags
and part-size rules, counts only keys against MaxKeys and lists in
file-system walk order).
Prints PASS/FAIL/SKIP per check and a closing 'N passed, N failed, N skipped'
line; exit status 0 iff no check failed.
"""

import argparse
import base64
import datetime
import hashlib
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

for _v in ('AWS_PROFILE', 'AWS_DEFAULT_PROFILE', 'AWS_ENDPOINT_URL',
           'AWS_SESSION_TOKEN', 'AWS_SECURITY_TOKEN', 'AWS_DEFAULT_REGION',
           'AWS_REGION', 'AWS_CA_BUNDLE'):
    os.environ.pop(_v, None)
os.environ['AWS_CONFIG_FILE'] = '/dev/null'          # never ~/.aws
os.environ['AWS_SHARED_CREDENTIALS_FILE'] = '/dev/null'
os.environ['AWS_EC2_METADATA_DISABLED'] = 'true'

import boto3  # noqa: E402
from botocore.config import Config  # noqa: E402
from botocore.exceptions import ClientError  # noqa: E402

HOST = '127.0.0.1'
REGION = 'us-east-1'
MiB = 1024 * 1024
TIME_LIMIT = 270  # CTest's TIMEOUT (300 s) less 30 s
ALICE = ('alice', 'AKIAALICE0000000000A', 'alice-secret-key-0000000000000000000000')
BOB = ('bob', 'AKIABOB00000000000000', 'bob-secret-key-00000000000000000000000000')
S3RVER_KEYS = ('S3RVER', 'S3RVER')


# --------------------------------------------------------------------------
# Check bookkeeping

class Results:
    def __init__(self):
        self.passed = 0
        self.failed = []
        self.skipped = []

    def run(self, name, fn):
        try:
            detail = fn()
        except Exception as e:  # noqa: BLE001 - any exception is a failure
            self.failed.append(name)
            msg = str(e)
            if len(msg) > 400:
                msg = msg[:400] + '...'
            print('FAIL %s: %s: %s' % (name, type(e).__name__, msg), flush=True)
        else:
            self.passed += 1
            print('PASS %s%s' % (name, ' (%s)' % detail if detail else ''),
                  flush=True)

    def skip(self, name, reason):
        self.skipped.append(name)
        print('SKIP %s (%s)' % (name, reason), flush=True)


R = Results()


def check(name, skip=None):
    """Decorator: run the function now as one named check (or SKIP it)."""
    def deco(fn):
        if skip:
            R.skip(name, skip)
        else:
            R.run(name, fn)
        return fn
    return deco


def short(v):
    r = repr(v)
    return r if len(r) <= 160 else r[:160] + '...(%d chars)' % len(r)


def eq(actual, expected, what='value'):
    if actual != expected:
        raise AssertionError('%s: got %s, expected %s'
                             % (what, short(actual), short(expected)))


def ok(cond, what):
    if not cond:
        raise AssertionError(what)


def s3_error(fn, code, status):
    """fn() must fail with S3 error CODE and HTTP status STATUS."""
    try:
        r = fn()
    except ClientError as e:
        got_code = e.response.get('Error', {}).get('Code')
        got_status = e.response.get('ResponseMetadata', {}).get('HTTPStatusCode')
        if (got_code, got_status) != (code, status):
            raise AssertionError('got %s %s (%s), expected %s %s'
                                 % (got_status, got_code,
                                    e.response.get('Error', {}).get('Message'),
                                    status, code))
        return e
    if isinstance(r, dict):
        r = {k: v for k, v in r.items() if k != 'Body'}
    raise AssertionError('succeeded (%s), expected %s %s' % (short(r), status, code))


def md5q(data):
    return '"%s"' % hashlib.md5(data).hexdigest()


def mp_etag(parts):
    return '"%s-%d"' % (hashlib.md5(b''.join(hashlib.md5(p).digest()
                                             for p in parts)).hexdigest(),
                        len(parts))


# --------------------------------------------------------------------------
# Servers

class Server:
    """One server process started by us, stopped by PID."""

    def __init__(self, kind, path, tmp):
        self.kind = kind
        self.path = path
        self.tmp = tmp
        self.proc = None
        self.port = None
        self.log_path = os.path.join(tmp, '%s.log' % kind)
        self.log = open(self.log_path, 'wb')

    def start(self):
        data = os.path.join(self.tmp, 'data')
        os.mkdir(data)
        if self.kind == 'cosd':
            argv = [self.path, '--listen', '%s:0' % HOST, '--data-dir', data,
                    '--user', ':'.join(ALICE), '--user', ':'.join(BOB),
                    '--region', REGION]
            pattern = re.compile(rb'qcloud-cosd listening on 127\.0\.0\.1:(\d+)')
        else:
            node = shutil.which('node') or '/usr/bin/node'
            script = os.path.join(self.path, 'node_modules', 's3rver', 'bin',
                                  's3rver.js')
            if not os.path.exists(script):
                raise RuntimeError('no %s (npm install s3rver@3 in %s)'
                                   % (script, self.path))
            # s3rver prints "S3rver listening on HOST:PORT" even with --silent;
            # its ListObjectsV2 continuation tokens use DES, which OpenSSL 3
            # (Node >= 17) only has in the legacy provider
            argv = [node, '--openssl-legacy-provider', script, '--directory', data,
                    '--address', HOST,
                    '--port', '0', '--silent']
            pattern = re.compile(rb'S3rver listening on 127\.0\.0\.1:(\d+)')
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=self.log)
        fd = self.proc.stdout.fileno()
        buf = b''
        deadline = time.monotonic() + 10
        while self.port is None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError('%s printed no listening line within 10 s: %s'
                                   % (self.kind, self.log_tail(buf)))
            r, _, _ = select.select([fd], [], [], min(left, 0.5))
            if r:
                chunk = os.read(fd, 4096)
                if not chunk:
                    raise RuntimeError('%s exited (%s): %s' % (
                        self.kind, self.proc.poll(), self.log_tail(buf)))
                buf += chunk
                m = pattern.search(buf)
                if m:
                    self.port = int(m.group(1))
        self.log.write(buf)
        self.log.flush()
        # keep draining stdout so a chatty server never blocks on the pipe
        threading.Thread(target=self._drain, daemon=True).start()
        return self

    def _drain(self):
        try:
            while True:
                chunk = os.read(self.proc.stdout.fileno(), 65536)
                if not chunk:
                    return
                self.log.write(chunk)
                self.log.flush()
        except (OSError, ValueError):
            return

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, extra=b''):
        try:
            with open(self.log_path, 'rb') as f:
                data = f.read() + extra
        except OSError:
            data = extra
        return data[-1500:].decode('utf-8', 'replace')

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc.stdout.close()
        self.log.close()


def client(endpoint, access, secret):
    cfg = Config(signature_version='s3v4', region_name=REGION,
                 s3={'addressing_style': 'path'},
                 connect_timeout=5, read_timeout=30,
                 retries={'total_max_attempts': 1})
    return boto3.session.Session().client(
        's3', endpoint_url=endpoint, aws_access_key_id=access,
        aws_secret_access_key=secret, region_name=REGION, config=cfg)


def http_get(url, headers=None):
    """(status, headers, body) of a plain GET; errors are returned, not raised."""
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        body = e.read()
        e.close()
        return e.code, e.headers, body


# --------------------------------------------------------------------------
# Listing helpers

def entries(page):
    """A list page's Contents keys and CommonPrefixes merged in order."""
    keys = [c['Key'] for c in page.get('Contents', [])]
    prefixes = [p['Prefix'] for p in page.get('CommonPrefixes', [])]
    eq(keys, sorted(keys), 'Contents order within a page')
    eq(prefixes, sorted(prefixes), 'CommonPrefixes order within a page')
    return sorted(keys + prefixes)


def walk_v2(cl, bucket, max_keys, **kw):
    pages, token = [], None
    for _ in range(40):
        args = dict(Bucket=bucket, MaxKeys=max_keys, **kw)
        if token:
            args['ContinuationToken'] = token
        r = cl.list_objects_v2(**args)
        if token:
            eq(r.get('ContinuationToken'), token, 'ContinuationToken echoed')
        pages.append(r)
        if not r.get('IsTruncated'):
            ok(not r.get('NextContinuationToken'),
               'NextContinuationToken on the last page')
            return pages
        token = r.get('NextContinuationToken')
        ok(token, 'IsTruncated but no NextContinuationToken (page %d)' % len(pages))
    raise AssertionError('more than 40 pages')


def walk_v1(cl, bucket, max_keys, **kw):
    pages, marker = [], kw.pop('Marker', None)
    for _ in range(40):
        args = dict(Bucket=bucket, MaxKeys=max_keys, **kw)
        if marker is not None:
            args['Marker'] = marker
        r = cl.list_objects(**args)
        eq(r.get('Marker', ''), marker or '', 'Marker echoed')
        pages.append(r)
        if not r.get('IsTruncated'):
            return pages
        page = entries(r)
        ok(page, 'truncated page %d is empty' % len(pages))
        if kw.get('Delimiter'):
            # S3: with a delimiter NextMarker is returned, the last entry
            eq(r.get('NextMarker'), page[-1],
               'NextMarker (page %d, delimiter set)' % len(pages))
        marker = r.get('NextMarker') or r['Contents'][-1]['Key']
    raise AssertionError('more than 40 pages')


def union(pages):
    out = []
    for p in pages:
        out += entries(p)
    return out


def page_sizes_ok(pages, max_keys, v2):
    sizes = []
    for i, p in enumerate(pages):
        n = len(p.get('Contents', [])) + len(p.get('CommonPrefixes', []))
        sizes.append(n)
        ok(n <= max_keys, 'page %d has %d entries (Contents + CommonPrefixes) '
           '> MaxKeys %d' % (i + 1, n, max_keys))
        if p.get('IsTruncated'):
            ok(n > 0, 'truncated page %d is empty' % (i + 1))
        eq(p.get('MaxKeys'), max_keys, 'MaxKeys echoed (page %d)' % (i + 1))
        if v2:
            eq(p.get('KeyCount'), n, 'KeyCount (Contents + CommonPrefixes) '
               'on page %d' % (i + 1))
    return sizes


# --------------------------------------------------------------------------
# The checks

def run_checks(mode, endpoint, user1, user2, big_mib, tmp, made_buckets):
    s3rver = mode == 's3rver'

    def sk(reason):
        return ('s3rver: ' + reason) if s3rver else None

    NO_SIGV4 = sk('verifies no SigV4 signature at all, any secret is accepted')
    s3 = client(endpoint, user1[0], user1[1])
    tag = os.urandom(3).hex()
    B = 'it%s-main' % tag        # most checks
    L = 'it%s-list' % tag        # the 25-key listing tree only
    E = 'it%s-empty' % tag       # created and deleted
    made_buckets += [B, L, E]
    open_uploads = []            # (bucket, key, upload id) still to abort
    small = os.urandom(1024)
    ctx = {}

    # ---- test data: the big file, written once from os.urandom
    big_path = os.path.join(tmp, 'big.bin')
    h_sha, h_md5 = hashlib.sha256(), hashlib.md5()
    with open(big_path, 'wb') as f:
        for _ in range(big_mib):
            chunk = os.urandom(MiB)
            h_sha.update(chunk)
            h_md5.update(chunk)
            f.write(chunk)
    big_sha, big_md5 = h_sha.hexdigest(), h_md5.hexdigest()

    # ------------------------------------------------------------ buckets
    @check('CreateBucket x3, HeadBucket 200, ListBuckets shows them with CreationDate')
    def _():
        for b in made_buckets:
            s3.create_bucket(Bucket=b)
        for b in made_buckets:
            eq(s3.head_bucket(Bucket=b)['ResponseMetadata']['HTTPStatusCode'],
               200, 'HeadBucket %s' % b)
        got = {x['Name']: x for x in s3.list_buckets()['Buckets']}
        for b in made_buckets:
            ok(b in got, '%s not in ListBuckets %s' % (b, sorted(got)))
            ok(isinstance(got[b].get('CreationDate'), datetime.datetime),
               'no CreationDate for %s' % b)

    @check("CreateBucket 'ab' (2 characters) -> 400 InvalidBucketName")
    def _():
        s3_error(lambda: s3.create_bucket(Bucket='ab'), 'InvalidBucketName', 400)

    @check('HeadBucket of a missing bucket -> 404')
    def _():
        s3_error(lambda: s3.head_bucket(Bucket='it%s-missing' % tag), '404', 404)

    @check('GetBucketLocation -> empty LocationConstraint (us-east-1)')
    def _():
        r = s3.get_bucket_location(Bucket=B)
        eq(r.get('LocationConstraint'), None, 'LocationConstraint')

    # ------------------------------------------------------------ 1 KiB
    @check('PutObject 1 KiB with Content-Type and x-amz-meta-*: ETag = MD5')
    def _():
        r = s3.put_object(Bucket=B, Key='small.bin', Body=small,
                          ContentType='text/plain',
                          Metadata={'color': 'blue', 'Mixed-Case': 'Value 1'})
        eq(r['ETag'], md5q(small), 'ETag')

    @check('GetObject 1 KiB: body sha256, Content-Length, ETag, Content-Type, metadata')
    def _():
        r = s3.get_object(Bucket=B, Key='small.bin')
        body = r['Body'].read()
        eq(hashlib.sha256(body).hexdigest(), hashlib.sha256(small).hexdigest(),
           'sha256')
        eq(r['ContentLength'], 1024, 'Content-Length')
        eq(r['ETag'], md5q(small), 'ETag')
        eq(r['ContentType'], 'text/plain', 'Content-Type')
        eq(r['Metadata'], {'color': 'blue', 'mixed-case': 'Value 1'}, 'Metadata')
        ok(isinstance(r.get('LastModified'), datetime.datetime), 'no Last-Modified')
        ctx['small_lm'] = r['LastModified']

    @check('HeadObject 1 KiB: Content-Length, ETag, Content-Type, metadata, Last-Modified')
    def _():
        r = s3.head_object(Bucket=B, Key='small.bin')
        eq(r['ContentLength'], 1024, 'Content-Length')
        eq(r['ETag'], md5q(small), 'ETag')
        eq(r['ContentType'], 'text/plain', 'Content-Type')
        eq(r['Metadata'], {'color': 'blue', 'mixed-case': 'Value 1'}, 'Metadata')
        eq(r['LastModified'], ctx['small_lm'], 'Last-Modified (vs GET)')

    @check('HeadObject of a missing key -> 404')
    def _():
        s3_error(lambda: s3.head_object(Bucket=B, Key='no/such/key'), '404', 404)

    @check('GetObject of a missing key -> 404 NoSuchKey')
    def _():
        s3_error(lambda: s3.get_object(Bucket=B, Key='no/such/key'), 'NoSuchKey', 404)

    @check('GetObject / PutObject / ListObjectsV2 on a missing bucket -> 404 NoSuchBucket')
    def _():
        nb = 'it%s-missing' % tag
        s3_error(lambda: s3.get_object(Bucket=nb, Key='k'), 'NoSuchBucket', 404)
        s3_error(lambda: s3.put_object(Bucket=nb, Key='k', Body=b'x'),
                 'NoSuchBucket', 404)
        s3_error(lambda: s3.list_objects_v2(Bucket=nb), 'NoSuchBucket', 404)

    @check('PutObject with the right Content-MD5 -> 200')
    def _():
        data = b'content-md5 ' * 50
        r = s3.put_object(Bucket=B, Key='md5-ok', Body=data,
                          ContentMD5=base64.b64encode(hashlib.md5(data).digest()).decode())
        eq(r['ETag'], md5q(data), 'ETag')

    @check('PutObject with a wrong Content-MD5 -> 400 BadDigest, nothing stored',
           skip=sk('does not check Content-MD5'))
    def _():
        data = b'content-md5 ' * 50
        wrong = base64.b64encode(hashlib.md5(b'other').digest()).decode()
        s3_error(lambda: s3.put_object(Bucket=B, Key='md5-bad', Body=data,
                                       ContentMD5=wrong), 'BadDigest', 400)
        s3_error(lambda: s3.head_object(Bucket=B, Key='md5-bad'), '404', 404)

    # ------------------------------------------------------------ ranges
    @check('Range bytes=0-9 -> 206, Content-Range bytes 0-9/1024')
    def _():
        r = s3.get_object(Bucket=B, Key='small.bin', Range='bytes=0-9')
        eq(r['ResponseMetadata']['HTTPStatusCode'], 206, 'status')
        eq(r['ContentRange'], 'bytes 0-9/1024', 'Content-Range')
        eq(r['ContentLength'], 10, 'Content-Length')
        eq(r['Body'].read(), small[:10], 'body')

    @check('Range bytes=-5 (suffix) -> 206, last 5 bytes',
           skip=sk('reads bytes=-5 as bytes=0-5'))
    def _():
        r = s3.get_object(Bucket=B, Key='small.bin', Range='bytes=-5')
        eq(r['ResponseMetadata']['HTTPStatusCode'], 206, 'status')
        eq(r['ContentRange'], 'bytes 1019-1023/1024', 'Content-Range')
        eq(r['Body'].read(), small[-5:], 'body')

    @check('Range bytes=10- -> 206, bytes 10-1023/1024')
    def _():
        r = s3.get_object(Bucket=B, Key='small.bin', Range='bytes=10-')
        eq(r['ResponseMetadata']['HTTPStatusCode'], 206, 'status')
        eq(r['ContentRange'], 'bytes 10-1023/1024', 'Content-Range')
        eq(r['Body'].read(), small[10:], 'body')

    @check('Range bytes=1000-5000 (end past the size) -> 206, bytes 1000-1023/1024')
    def _():
        r = s3.get_object(Bucket=B, Key='small.bin', Range='bytes=1000-5000')
        eq(r['ResponseMetadata']['HTTPStatusCode'], 206, 'status')
        eq(r['ContentRange'], 'bytes 1000-1023/1024', 'Content-Range')
        eq(r['Body'].read(), small[1000:], 'body')

    @check('Range bytes=2000-3000 on 1 KiB -> 416 InvalidRange')
    def _():
        s3_error(lambda: s3.get_object(Bucket=B, Key='small.bin',
                                       Range='bytes=2000-3000'), 'InvalidRange', 416)

    # ------------------------------------------------------------ conditionals
    @check('GetObject If-None-Match: <ETag> -> 304; other ETag -> 200')
    def _():
        s3_error(lambda: s3.get_object(Bucket=B, Key='small.bin',
                                       IfNoneMatch=md5q(small)), '304', 304)
        r = s3.get_object(Bucket=B, Key='small.bin', IfNoneMatch='"0123"')
        eq(r['Body'].read(), small, 'body')

    @check('GetObject If-Match: wrong ETag -> 412 PreconditionFailed; right -> 200',
           skip=sk('ignores If-Match'))
    def _():
        s3_error(lambda: s3.get_object(Bucket=B, Key='small.bin',
                                       IfMatch='"0123456789abcdef0123456789abcdef"'),
                 'PreconditionFailed', 412)
        r = s3.get_object(Bucket=B, Key='small.bin', IfMatch=md5q(small))
        eq(r['Body'].read(), small, 'body')

    @check('GetObject If-Modified-Since = Last-Modified -> 304; +1 day (future) '
           '-> 304; -1 day -> 200')
    def _():
        lm = ctx['small_lm']
        s3_error(lambda: s3.get_object(Bucket=B, Key='small.bin',
                                       IfModifiedSince=lm), '304', 304)
        s3_error(lambda: s3.get_object(
            Bucket=B, Key='small.bin',
            IfModifiedSince=lm + datetime.timedelta(days=1)), '304', 304)
        r = s3.get_object(Bucket=B, Key='small.bin',
                          IfModifiedSince=lm - datetime.timedelta(days=1))
        eq(r['Body'].read(), small, 'body')

    # ------------------------------------------------------------ presigned
    @check('presigned GET (ExpiresIn=30) fetched with urllib -> 200, body')
    def _():
        # 30 s: a busy machine cannot make it expire before the fetch. The
        # expiry check further down gets a URL of its own (ExpiresIn=2).
        url = s3.generate_presigned_url('get_object', ExpiresIn=30,
                                        Params={'Bucket': B, 'Key': 'small.bin'})
        q = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
        ok('/%s/small.bin' % B in url, 'not path-style: %s' % url)
        eq(q.get('X-Amz-Expires'), ['30'], 'X-Amz-Expires')
        short = s3.generate_presigned_url('get_object', ExpiresIn=2,
                                          Params={'Bucket': B, 'Key': 'small.bin'})
        q = urllib.parse.parse_qs(urllib.parse.urlsplit(short).query)
        eq(q.get('X-Amz-Expires'), ['2'], 'X-Amz-Expires of the short URL')
        signed = datetime.datetime.strptime(q['X-Amz-Date'][0], '%Y%m%dT%H%M%SZ')
        ctx['presigned'] = (short, signed.replace(tzinfo=datetime.timezone.utc).timestamp())
        status, _, body = http_get(url)
        eq(status, 200, 'status')
        eq(body, small, 'body')

    @check('presigned GET with a tampered signature or key -> 403 SignatureDoesNotMatch',
           skip=NO_SIGV4)
    def _():
        url = s3.generate_presigned_url('get_object', ExpiresIn=60,
                                        Params={'Bucket': B, 'Key': 'small.bin'})
        m = re.search(r'X-Amz-Signature=([0-9a-f]+)', url)
        sig = m.group(1)
        bad = url.replace(sig, sig[:-1] + ('0' if sig[-1] != '0' else '1'))
        for u in (bad, url.replace('/small.bin?', '/md5-ok?')):
            status, _, body = http_get(u)
            eq(status, 403, 'status for %s' % u)
            ok(b'<Code>SignatureDoesNotMatch</Code>' in body, 'body: %r' % body[:300])

    # ------------------------------------------------------------ big object
    @check('PutObject %d MiB (one PUT): ETag = MD5' % big_mib)
    def _():
        t = time.monotonic()
        with open(big_path, 'rb') as f:
            r = s3.put_object(Bucket=B, Key='big/object.bin', Body=f)
        eq(r['ETag'], '"%s"' % big_md5, 'ETag')
        return '%.1f s' % (time.monotonic() - t)

    @check('GetObject %d MiB: sha256 equal, HeadObject Content-Length' % big_mib)
    def _():
        t = time.monotonic()
        eq(s3.head_object(Bucket=B, Key='big/object.bin')['ContentLength'],
           big_mib * MiB, 'Content-Length')
        r = s3.get_object(Bucket=B, Key='big/object.bin')
        h, n = hashlib.sha256(), 0
        for chunk in r['Body'].iter_chunks(MiB):
            h.update(chunk)
            n += len(chunk)
        eq(n, big_mib * MiB, 'bytes read')
        eq(h.hexdigest(), big_sha, 'sha256')
        return '%.1f s' % (time.monotonic() - t)

    @check('DeleteObject big and 1 KiB objects -> 204; then 404; delete again -> 204')
    def _():
        for k in ('big/object.bin', 'small.bin'):
            r = s3.delete_object(Bucket=B, Key=k)
            eq(r['ResponseMetadata']['HTTPStatusCode'], 204, 'DeleteObject status')
            s3_error(lambda: s3.get_object(Bucket=B, Key=k), 'NoSuchKey', 404)
            r = s3.delete_object(Bucket=B, Key=k)
            eq(r['ResponseMetadata']['HTTPStatusCode'], 204, 'second DeleteObject')

    # ------------------------------------------------------------ copy
    @check('CopyObject MetadataDirective=COPY: same body, ETag, Content-Type, metadata')
    def _():
        data = os.urandom(3000)
        s3.put_object(Bucket=B, Key='copy/src', Body=data, ContentType='image/png',
                      Metadata={'origin': 'src', 'n': '1'})
        r = s3.copy_object(Bucket=B, Key='copy/dst1',
                           CopySource={'Bucket': B, 'Key': 'copy/src'},
                           MetadataDirective='COPY')
        eq(r['CopyObjectResult']['ETag'], md5q(data), 'CopyObjectResult ETag')
        g = s3.get_object(Bucket=B, Key='copy/dst1')
        eq(g['Body'].read(), data, 'body')
        eq(g['ETag'], md5q(data), 'ETag')
        eq(g['ContentType'], 'image/png', 'Content-Type')
        eq(g['Metadata'], {'origin': 'src', 'n': '1'}, 'Metadata')

    @check('CopyObject MetadataDirective=REPLACE: same body, new Content-Type and metadata only')
    def _():
        r = s3.copy_object(Bucket=B, Key='copy/dst2',
                           CopySource={'Bucket': B, 'Key': 'copy/src'},
                           MetadataDirective='REPLACE', ContentType='text/x-new',
                           Metadata={'fresh': 'yes'})
        src = s3.get_object(Bucket=B, Key='copy/src')
        data = src['Body'].read()
        eq(r['CopyObjectResult']['ETag'], md5q(data), 'CopyObjectResult ETag')
        g = s3.get_object(Bucket=B, Key='copy/dst2')
        eq(g['Body'].read(), data, 'body')
        eq(g['ContentType'], 'text/x-new', 'Content-Type')
        eq(g['Metadata'], {'fresh': 'yes'}, 'Metadata')
        # the source is unchanged
        eq(src['Metadata'], {'origin': 'src', 'n': '1'}, 'source Metadata')

    @check('CopyObject onto itself without REPLACE -> 400 InvalidRequest; with REPLACE -> 200')
    def _():
        s3_error(lambda: s3.copy_object(Bucket=B, Key='copy/src',
                                        CopySource={'Bucket': B, 'Key': 'copy/src'}),
                 'InvalidRequest', 400)
        s3.copy_object(Bucket=B, Key='copy/src', CopySource={'Bucket': B, 'Key': 'copy/src'},
                       MetadataDirective='REPLACE', ContentType='image/png',
                       Metadata={'origin': 'src', 'n': '2'})
        eq(s3.head_object(Bucket=B, Key='copy/src')['Metadata'],
           {'origin': 'src', 'n': '2'}, 'Metadata after self-copy')

    @check('CopyObject from a missing key -> 404 NoSuchKey')
    def _():
        s3_error(lambda: s3.copy_object(Bucket=B, Key='copy/dst3',
                                        CopySource={'Bucket': B, 'Key': 'copy/none'}),
                 'NoSuchKey', 404)

    # ------------------------------------------------------------ batch delete
    @check('DeleteObjects of 3 present keys + 1 missing: all 4 reported Deleted, no Errors')
    def _():
        keys = ['del/1', 'del/2', 'del/3', 'del/4']
        for k in keys:
            s3.put_object(Bucket=B, Key=k, Body=k.encode())
        gone = ['del/1', 'del/2', 'del/4', 'del/never-existed']
        r = s3.delete_objects(Bucket=B, Delete={'Objects': [{'Key': k} for k in gone]})
        eq(sorted(d['Key'] for d in r.get('Deleted', [])), sorted(gone), 'Deleted')
        eq(r.get('Errors', []), [], 'Errors')
        left = [c['Key'] for c in
                s3.list_objects_v2(Bucket=B, Prefix='del/').get('Contents', [])]
        eq(left, ['del/3'], 'keys left')

    # ------------------------------------------------------------ listing
    # Top level with Delimiter='/': P K P P | K K K K | K P K K (P = common
    # prefix, K = key; '|' = S3's page ends at MaxKeys=4): page 1 ends on a
    # prefix, so the continuation must skip a whole rolled-up prefix.
    # (s3rver counts only keys against MaxKeys and repeats a prefix met after
    # its last counted key on the next page; every listing below is laid out so
    # that a key follows each s3rver page end, which keeps the union exact
    # there too. The page sizes S3 gives are checked on their own.)
    tree = (['a/%d' % i for i in range(1, 11)] +
            ['b.txt', 'c/x/1', 'c/x/2', 'c/y', 'c/z/1', 'd/1', 'd/2',
             'e1', 'e2', 'e3', 'e4', 'e5', 'f/g', 'h', 'z'])
    tree_sorted = sorted(tree)
    top = ['a/', 'b.txt', 'c/', 'd/', 'e1', 'e2', 'e3', 'e4', 'e5', 'f/', 'h', 'z']
    walks = {}

    @check('put the 25-key listing tree (a/1..a/10, b.txt, c/x/1, ..., z)')
    def _():
        eq(len(tree), 25, 'tree size')
        for k in tree:
            s3.put_object(Bucket=L, Key=k, Body=k.encode())

    @check('ListObjectsV2 MaxKeys=4, no delimiter, ContinuationToken: 25 keys in order, '
           '<= 4 per page, KeyCount, ETag/Size')
    def _():
        pages = walk_v2(s3, L, 4)
        eq(union(pages), tree_sorted, 'union of pages')
        sizes = page_sizes_ok(pages, 4, v2=True)
        for p in pages:
            for c in p.get('Contents', []):
                eq(c['Size'], len(c['Key']), 'Size of %s' % c['Key'])
                eq(c['ETag'], md5q(c['Key'].encode()), 'ETag of %s' % c['Key'])
        return 'pages %s' % sizes

    @check("ListObjectsV2 Prefix='a/' MaxKeys=4: a/1, a/10, a/2..a/9")
    def _():
        pages = walk_v2(s3, L, 4, Prefix='a/')
        eq(union(pages), sorted('a/%d' % i for i in range(1, 11)), 'union')
        page_sizes_ok(pages, 4, v2=True)
        eq(pages[0].get('Prefix'), 'a/', 'Prefix echoed')

    @check("ListObjectsV2 Delimiter='/' MaxKeys=4 paged: Contents + CommonPrefixes "
           "= 12 entries exactly, in order")
    def _():
        pages = walk_v2(s3, L, 4, Delimiter='/')
        walks['v2top'] = pages
        eq(union(pages), top, 'union of Contents and CommonPrefixes')
        eq(pages[0].get('Delimiter'), '/', 'Delimiter echoed')
        return 'pages %s' % [entries(p) for p in pages]

    @check("ListObjectsV2 Prefix='c/' Delimiter='/' MaxKeys=2: c/x/, c/y, c/z/")
    def _():
        pages = walk_v2(s3, L, 2, Prefix='c/', Delimiter='/')
        walks['v2c'] = pages
        eq(union(pages), ['c/x/', 'c/y', 'c/z/'], 'union')

    @check("ListObjectsV2 StartAfter='b.txt' (echoed), with and without Delimiter='/'")
    def _():
        pages = walk_v2(s3, L, 4, StartAfter='b.txt')
        eq(pages[0].get('StartAfter'), 'b.txt', 'StartAfter echoed')
        eq(union(pages), [k for k in tree_sorted if k > 'b.txt'], 'union')
        pages = walk_v2(s3, L, 4, StartAfter='b.txt', Delimiter='/')
        walks['v2sa'] = pages
        eq(union(pages), [e for e in top if e > 'b.txt'], 'union with delimiter')

    @check('ListObjects (V1) MaxKeys=4, no delimiter, Marker = last key: 25 keys in order')
    def _():
        pages = walk_v1(s3, L, 4)
        eq(union(pages), tree_sorted, 'union of pages')
        page_sizes_ok(pages, 4, v2=False)
        return '%d pages' % len(pages)

    @check("ListObjects (V1) Delimiter='/' MaxKeys=4 paged by NextMarker: 12 entries "
           "exactly, in order; NextMarker = last entry")
    def _():
        pages = walk_v1(s3, L, 4, Delimiter='/')
        walks['v1top'] = pages
        eq(union(pages), top, 'union of Contents and CommonPrefixes')
        pages = walk_v1(s3, L, 2, Prefix='c/', Delimiter='/')
        walks['v1c'] = pages
        eq(union(pages), ['c/x/', 'c/y', 'c/z/'], "union for Prefix='c/'")
        pages = walk_v1(s3, L, 3, Marker='b.txt', Delimiter='/')
        walks['v1m'] = pages
        eq(union(pages), [e for e in top if e > 'b.txt'], "union after Marker='b.txt'")

    @check('delimiter listings: every page <= MaxKeys counting CommonPrefixes, '
           'KeyCount counts both (V2)',
           skip=sk('counts only keys against MaxKeys and in KeyCount'))
    def _():
        ok(walks, 'no delimiter walks recorded')
        for name, pages in sorted(walks.items()):
            mk = pages[0]['MaxKeys']
            page_sizes_ok(pages, mk, v2=name.startswith('v2'))
        return ', '.join('%s %s' % (n, [len(entries(p)) for p in ps])
                         for n, ps in sorted(walks.items()))

    enc_keys = ['enc/a b+c.txt', 'enc/plus+plus', 'enc/per%cent', 'enc/déjà vu/1',
                'enc/日本語.txt', 'enc/tilde~star*']

    @check('keys with space, +, %, ~, * and unicode: put, get, listed exactly '
           '(boto3 default, EncodingType=url auto-decoded)')
    def _():
        for k in enc_keys:
            s3.put_object(Bucket=B, Key=k, Body=k.encode())
        for k in enc_keys:
            eq(s3.get_object(Bucket=B, Key=k)['Body'].read(), k.encode(), 'body of %r' % k)
        got = [c['Key'] for c in s3.list_objects_v2(Bucket=B, Prefix='enc/')['Contents']]
        eq(got, sorted(enc_keys), 'ListObjectsV2 keys')
        got = [c['Key'] for c in s3.list_objects(Bucket=B, Prefix='enc/')['Contents']]
        eq(got, sorted(enc_keys), 'ListObjects keys')

    @check("ListObjectsV2/ListObjects EncodingType='url' (explicit): keys and "
           "CommonPrefixes URL-encoded, ASCII, decode to the keys",
           skip=sk('ignores encoding-type'))
    def _():
        def decoded(raw, want):
            ok(raw.isascii() and ' ' not in raw, 'not URL-encoded: %r' % raw)
            eq(urllib.parse.unquote_plus(raw), want, 'decoded %r' % raw)
        for fn in (s3.list_objects_v2, s3.list_objects):
            r = fn(Bucket=B, Prefix='enc/', EncodingType='url')
            eq(r.get('EncodingType'), 'url', 'EncodingType echoed')
            raws = [c['Key'] for c in r['Contents']]
            eq(len(raws), len(enc_keys), 'number of keys')
            for raw, want in zip(raws, sorted(enc_keys)):
                decoded(raw, want)
            r = fn(Bucket=B, Prefix='enc/d', Delimiter='/', EncodingType='url')
            cps = [p['Prefix'] for p in r.get('CommonPrefixes', [])]
            eq(len(cps), 1, 'CommonPrefixes %r' % cps)
            decoded(cps[0], 'enc/déjà vu/')

    order_keys = ['order/~', 'order/é', 'order/z', 'order/ab', 'order/a/b', 'order/a-b',
                  'order/a b', 'order/a', 'order/A', 'order/a.', 'order/deep/x/y']

    @check('listing order is UTF-8 byte order (a < "a b" < a- < a. < a/b < ab < z < ~ < é), '
           'paged; a deep-only prefix rolls up',
           skip=sk('lists in file-system walk order and finds no prefix whose keys '
                   'are all two levels down'))
    def _():
        for k in order_keys:
            s3.put_object(Bucket=B, Key=k, Body=b'o')
        want = sorted(order_keys, key=lambda s: s.encode())
        eq(union(walk_v2(s3, B, 3, Prefix='order/')), want, 'V2 order')
        eq(union(walk_v1(s3, B, 3, Prefix='order/')), want, 'V1 order')
        want_d = sorted(set(k if '/' not in k[6:] else k[:6 + k[6:].index('/') + 1]
                            for k in order_keys), key=lambda s: s.encode())
        eq(union(walk_v2(s3, B, 3, Prefix='order/', Delimiter='/')), want_d,
           'V2 order with delimiter')
        eq(union(walk_v1(s3, B, 3, Prefix='order/', Delimiter='/')), want_d,
           'V1 order with delimiter')

    # ------------------------------------------------------------ multipart
    p1, p2, p3 = os.urandom(5 * MiB), os.urandom(5 * MiB), os.urandom(1500)

    @check('multipart: create, upload_part x3 (5 MiB, 5 MiB, 1500 B; ETag = part MD5), '
           'complete; body, Content-Type, metadata')
    def _():
        up = s3.create_multipart_upload(Bucket=B, Key='mp/obj', ContentType='application/x-mp',
                                        Metadata={'mp': 'yes'})
        uid = up['UploadId']
        eq(up['Key'], 'mp/obj', 'Key')
        ctx['mp_uid'] = uid
        open_uploads.append((B, 'mp/obj', uid))
        parts = []
        for n, data in ((1, p1), (2, p2), (3, p3)):
            r = s3.upload_part(Bucket=B, Key='mp/obj', UploadId=uid, PartNumber=n, Body=data)
            eq(r['ETag'], md5q(data), 'part %d ETag' % n)
            parts.append({'PartNumber': n, 'ETag': r['ETag']})
        ctx['mp_parts'] = parts
        if not s3rver:
            # list_parts / list_multipart_uploads are checks of their own, on
            # the upload before it is completed: keep the answer or the error
            for name, fn in (('mp_list_parts', lambda: s3.list_parts(
                    Bucket=B, Key='mp/obj', UploadId=uid)),
                    ('mp_list_uploads', lambda: s3.list_multipart_uploads(Bucket=B))):
                try:
                    ctx[name] = fn()
                except Exception as e:  # noqa: BLE001 - reported by its check
                    ctx[name] = e
        r = s3.complete_multipart_upload(Bucket=B, Key='mp/obj', UploadId=uid,
                                         MultipartUpload={'Parts': parts})
        open_uploads.remove((B, 'mp/obj', uid))
        ctx['mp_etag'] = r['ETag']
        eq(r['Key'], 'mp/obj', 'Key')
        eq(r['Bucket'], B, 'Bucket')
        g = s3.get_object(Bucket=B, Key='mp/obj')
        body = g['Body'].read()
        eq(len(body), len(p1) + len(p2) + len(p3), 'size')
        eq(hashlib.sha256(body).hexdigest(), hashlib.sha256(p1 + p2 + p3).hexdigest(),
           'sha256')
        eq(g['ContentType'], 'application/x-mp', 'Content-Type')
        eq(g['Metadata'], {'mp': 'yes'}, 'Metadata')
        eq(g['ETag'], r['ETag'], 'GET ETag vs complete ETag')

    @check('multipart: complete ETag = "<md5 of the 3 parts\' MD5 digests>-3" (also on HEAD)',
           skip=sk('gives a completed upload the plain MD5 of the whole body'))
    def _():
        eq(ctx['mp_etag'], mp_etag([p1, p2, p3]), 'ETag')
        eq(s3.head_object(Bucket=B, Key='mp/obj')['ETag'], mp_etag([p1, p2, p3]),
           'HEAD ETag')

    @check('multipart: list_parts lists parts 1..3 with ETag and Size',
           skip=sk('has no ListParts'))
    def _():
        r = ctx['mp_list_parts']
        if isinstance(r, Exception):
            raise r
        got = [(p['PartNumber'], p['ETag'], p['Size']) for p in r['Parts']]
        eq(got, [(1, md5q(p1), len(p1)), (2, md5q(p2), len(p2)), (3, md5q(p3), len(p3))],
           'Parts')
        eq(r['UploadId'], ctx['mp_uid'], 'UploadId')

    @check('multipart: list_multipart_uploads shows the upload in progress, not after complete',
           skip=sk('has no ListMultipartUploads'))
    def _():
        if isinstance(ctx['mp_list_uploads'], Exception):
            raise ctx['mp_list_uploads']
        got = [(u['Key'], u['UploadId']) for u in ctx['mp_list_uploads'].get('Uploads', [])]
        ok(('mp/obj', ctx['mp_uid']) in got, 'upload not listed: %s' % got)
        got = [(u['Key'], u['UploadId'])
               for u in s3.list_multipart_uploads(Bucket=B).get('Uploads', [])]
        ok(('mp/obj', ctx['mp_uid']) not in got, 'completed upload still listed')

    @check('multipart: upload_part_copy with CopySourceRange (5 MiB) + whole small object; '
           'body and ETag',
           skip=sk('has no UploadPartCopy'))
    def _():
        s3.put_object(Bucket=B, Key='mp/small', Body=p3)
        uid = s3.create_multipart_upload(Bucket=B, Key='mp/copied')['UploadId']
        open_uploads.append((B, 'mp/copied', uid))
        r1 = s3.upload_part_copy(Bucket=B, Key='mp/copied', UploadId=uid, PartNumber=1,
                                 CopySource={'Bucket': B, 'Key': 'mp/obj'},
                                 CopySourceRange='bytes=%d-%d' % (5 * MiB, 10 * MiB - 1))
        eq(r1['CopyPartResult']['ETag'], md5q(p2), 'part 1 ETag (range of mp/obj = p2)')
        r2 = s3.upload_part_copy(Bucket=B, Key='mp/copied', UploadId=uid, PartNumber=2,
                                 CopySource={'Bucket': B, 'Key': 'mp/small'})
        eq(r2['CopyPartResult']['ETag'], md5q(p3), 'part 2 ETag')
        r = s3.complete_multipart_upload(
            Bucket=B, Key='mp/copied', UploadId=uid, MultipartUpload={'Parts': [
                {'PartNumber': 1, 'ETag': r1['CopyPartResult']['ETag']},
                {'PartNumber': 2, 'ETag': r2['CopyPartResult']['ETag']}]})
        open_uploads.remove((B, 'mp/copied', uid))
        eq(r['ETag'], mp_etag([p2, p3]), 'ETag')
        eq(s3.get_object(Bucket=B, Key='mp/copied')['Body'].read(), p2 + p3, 'body')

    @check('multipart: abort -> 204; then list_parts / upload_part -> 404 NoSuchUpload, '
           'not listed, no object',
           skip=sk('has no AbortMultipartUpload'))
    def _():
        uid = s3.create_multipart_upload(Bucket=B, Key='mp/aborted')['UploadId']
        open_uploads.append((B, 'mp/aborted', uid))
        s3.upload_part(Bucket=B, Key='mp/aborted', UploadId=uid, PartNumber=1, Body=b'x' * 100)
        r = s3.abort_multipart_upload(Bucket=B, Key='mp/aborted', UploadId=uid)
        open_uploads.remove((B, 'mp/aborted', uid))
        eq(r['ResponseMetadata']['HTTPStatusCode'], 204, 'abort status')
        s3_error(lambda: s3.list_parts(Bucket=B, Key='mp/aborted', UploadId=uid),
                 'NoSuchUpload', 404)
        s3_error(lambda: s3.upload_part(Bucket=B, Key='mp/aborted', UploadId=uid,
                                        PartNumber=2, Body=b'y'), 'NoSuchUpload', 404)
        got = [u['UploadId'] for u in s3.list_multipart_uploads(Bucket=B).get('Uploads', [])]
        ok(uid not in got, 'aborted upload still listed')
        s3_error(lambda: s3.head_object(Bucket=B, Key='mp/aborted'), '404', 404)

    @check('multipart: complete with a 1 KiB non-last part -> 400 EntityTooSmall; with a '
           'wrong part ETag -> 400 InvalidPart',
           skip=sk('enforces neither the 5 MiB minimum part size nor part ETags'))
    def _():
        uid = s3.create_multipart_upload(Bucket=B, Key='mp/bad')['UploadId']
        open_uploads.append((B, 'mp/bad', uid))
        e1 = s3.upload_part(Bucket=B, Key='mp/bad', UploadId=uid, PartNumber=1,
                            Body=p3)['ETag']
        e2 = s3.upload_part(Bucket=B, Key='mp/bad', UploadId=uid, PartNumber=2,
                            Body=p3)['ETag']
        s3_error(lambda: s3.complete_multipart_upload(
            Bucket=B, Key='mp/bad', UploadId=uid, MultipartUpload={'Parts': [
                {'PartNumber': 1, 'ETag': e1}, {'PartNumber': 2, 'ETag': e2}]}),
            'EntityTooSmall', 400)
        s3_error(lambda: s3.complete_multipart_upload(
            Bucket=B, Key='mp/bad', UploadId=uid, MultipartUpload={'Parts': [
                {'PartNumber': 1, 'ETag': '"0123456789abcdef0123456789abcdef"'}]}),
            'InvalidPart', 400)
        s3_error(lambda: s3.head_object(Bucket=B, Key='mp/bad'), '404', 404)

    # ------------------------------------------------------------ presigned expiry
    @check('presigned GET after expiry (<= 4 s of waiting) -> 403 AccessDenied '
           '"Request has expired"')
    def _():
        url, signed = ctx['presigned']  # ExpiresIn=2, made with the 30 s URL above
        # X-Amz-Date has whole seconds; the URL is valid until signed + 2 s
        wait = signed + 3.3 - time.time()
        ok(wait <= 4.0, 'would have to wait %.1f s' % wait)
        if wait > 0:
            time.sleep(wait)
        status, _, body = http_get(url)
        eq(status, 403, 'status')
        ok(b'<Code>AccessDenied</Code>' in body, 'body: %r' % body[:300])
        ok(b'Request has expired' in body, 'body: %r' % body[:300])
        return 'waited %.1f s' % max(wait, 0)

    # ------------------------------------------------------------ credentials
    @check('wrong secret key: ListBuckets, GetObject, PutObject -> 403 SignatureDoesNotMatch; '
           'nothing stored',
           skip=NO_SIGV4)
    def _():
        bad = client(endpoint, user1[0], user1[1][:-4] + 'XXXX')
        s3_error(bad.list_buckets, 'SignatureDoesNotMatch', 403)
        s3_error(lambda: bad.get_object(Bucket=B, Key='md5-ok'),
                 'SignatureDoesNotMatch', 403)
        s3_error(lambda: bad.put_object(Bucket=B, Key='wrong-secret', Body=b'x'),
                 'SignatureDoesNotMatch', 403)
        s3_error(lambda: s3.head_object(Bucket=B, Key='wrong-secret'), '404', 404)

    @check('unknown access key -> 403 InvalidAccessKeyId')
    def _():
        bad = client(endpoint, 'AKIANOSUCHKEY0000000', 'whatever-secret')
        s3_error(bad.list_buckets, 'InvalidAccessKeyId', 403)
        s3_error(lambda: bad.get_object(Bucket=B, Key='md5-ok'), 'InvalidAccessKeyId', 403)

    # ------------------------------------------------------------ second user
    if user2 is None:
        reason = ('s3rver: has one user only' if s3rver
                  else 'no second user given (--access2/--secret2)')
        R.skip('second user: AccessDenied on the first user\'s bucket, ListBuckets '
               'isolation, BucketAlreadyExists', reason)
    else:
        s3b = client(endpoint, user2[0], user2[1])
        BB = 'it%s-bob' % tag

        @check('second user: ListBuckets shows only its own new bucket; the first user '
               'does not see it; CreateBucket of a taken name -> 409 BucketAlreadyExists')
        def _():
            s3b.create_bucket(Bucket=BB)
            made_buckets.append(BB)
            names_b = [x['Name'] for x in s3b.list_buckets()['Buckets']]
            ok(BB in names_b, '%s missing from its ListBuckets' % BB)
            for b in (B, L, E):
                ok(b not in names_b, "first user's %s in second user's ListBuckets" % b)
            names_a = [x['Name'] for x in s3.list_buckets()['Buckets']]
            ok(BB not in names_a, "second user's bucket in first user's ListBuckets")
            s3_error(lambda: s3b.create_bucket(Bucket=B), 'BucketAlreadyExists', 409)

        @check("second user: GetObject / HeadObject on the first user's bucket -> 403 "
               "AccessDenied; and the other way round")
        def _():
            s3_error(lambda: s3b.get_object(Bucket=B, Key='md5-ok'), 'AccessDenied', 403)
            s3_error(lambda: s3b.head_object(Bucket=B, Key='md5-ok'), '403', 403)
            s3b.put_object(Bucket=BB, Key='bobs', Body=b'bob')
            s3_error(lambda: s3.get_object(Bucket=BB, Key='bobs'), 'AccessDenied', 403)

        @check("second user: PutObject / DeleteObject / DeleteObjects / CopyObject (either "
               "way) -> AccessDenied, nothing changed")
        def _():
            s3_error(lambda: s3b.put_object(Bucket=B, Key='by-bob', Body=b'x'),
                     'AccessDenied', 403)
            s3_error(lambda: s3.head_object(Bucket=B, Key='by-bob'), '404', 404)
            s3_error(lambda: s3b.delete_object(Bucket=B, Key='md5-ok'), 'AccessDenied', 403)
            s3.head_object(Bucket=B, Key='md5-ok')
            # S3 may refuse the whole request or answer 200 with a per-key error
            try:
                r = s3b.delete_objects(Bucket=B, Delete={'Objects': [{'Key': 'md5-ok'}]})
            except ClientError as e:
                eq((e.response['ResponseMetadata']['HTTPStatusCode'],
                    e.response['Error']['Code']), (403, 'AccessDenied'), 'DeleteObjects')
            else:
                eq(r.get('Deleted', []), [], 'DeleteObjects Deleted')
                eq([(x['Key'], x['Code']) for x in r.get('Errors', [])],
                   [('md5-ok', 'AccessDenied')], 'DeleteObjects Errors')
            s3.head_object(Bucket=B, Key='md5-ok')
            s3_error(lambda: s3b.copy_object(Bucket=BB, Key='stolen',
                                             CopySource={'Bucket': B, 'Key': 'md5-ok'}),
                     'AccessDenied', 403)
            s3_error(lambda: s3b.head_object(Bucket=BB, Key='stolen'), '404', 404)
            s3_error(lambda: s3b.copy_object(Bucket=B, Key='pushed',
                                             CopySource={'Bucket': BB, 'Key': 'bobs'}),
                     'AccessDenied', 403)
            s3_error(lambda: s3.head_object(Bucket=B, Key='pushed'), '404', 404)

        @check("second user: ListObjectsV2 / ListObjects / HeadBucket / DeleteBucket on "
               "the first user's bucket -> 403")
        def _():
            s3_error(lambda: s3b.list_objects_v2(Bucket=B), 'AccessDenied', 403)
            s3_error(lambda: s3b.list_objects(Bucket=B), 'AccessDenied', 403)
            s3_error(lambda: s3b.head_bucket(Bucket=B), '403', 403)
            s3_error(lambda: s3b.delete_bucket(Bucket=E), 'AccessDenied', 403)
            s3.head_bucket(Bucket=E)

        @check('second user empties and deletes its own bucket -> 204')
        def _():
            s3b.delete_object(Bucket=BB, Key='bobs')
            r = s3b.delete_bucket(Bucket=BB)
            made_buckets.remove(BB)
            eq(r['ResponseMetadata']['HTTPStatusCode'], 204, 'status')

    # ------------------------------------------------------------ delete buckets
    @check('DeleteBucket of a non-empty bucket -> 409 BucketNotEmpty')
    def _():
        s3_error(lambda: s3.delete_bucket(Bucket=L), 'BucketNotEmpty', 409)

    # (one DeleteObject per key: s3rver's DeleteObjects deletes the keys of a
    # batch concurrently and fails with InternalError when two of them race to
    # remove the directory they leave empty)
    @check('empty the buckets (ListObjectsV2 + DeleteObject), DeleteBucket -> 204, '
           'then HeadBucket 404 and gone from ListBuckets')
    def _():
        abort_errors = []
        for b, k, uid in list(open_uploads):
            try:
                s3.abort_multipart_upload(Bucket=b, Key=k, UploadId=uid)
            except ClientError as e:
                abort_errors.append('%s: %s' % (k, e))
            open_uploads.remove((b, k, uid))
        n = 0
        for b in [B, L, E]:
            for _ in range(20):
                keys = [c['Key'] for c in s3.list_objects_v2(Bucket=b).get('Contents', [])]
                if not keys:
                    break
                for k in keys:
                    s3.delete_object(Bucket=b, Key=k)
                n += len(keys)
            r = s3.delete_bucket(Bucket=b)
            eq(r['ResponseMetadata']['HTTPStatusCode'], 204, 'DeleteBucket %s' % b)
            made_buckets.remove(b)
            s3_error(lambda: s3.head_bucket(Bucket=b), '404', 404)
        names = [x['Name'] for x in s3.list_buckets()['Buckets']]
        for b in (B, L, E):
            ok(b not in names, '%s still in ListBuckets' % b)
        ok(not abort_errors, 'AbortMultipartUpload of left-over uploads: %s' % abort_errors)
        return '%d objects deleted' % n


def best_effort_cleanup(endpoint, user, buckets):
    """--endpoint mode after a failure: do not leave test buckets behind."""
    try:
        s3 = client(endpoint, user[0], user[1])
        for b in buckets:
            try:
                for _ in range(20):
                    keys = [{'Key': c['Key']} for c in
                            s3.list_objects_v2(Bucket=b).get('Contents', [])]
                    if not keys:
                        break
                    for k in keys:
                        s3.delete_object(Bucket=b, Key=k['Key'])
                s3.delete_bucket(Bucket=b)
            except ClientError:
                pass
    except Exception:  # noqa: BLE001 - best effort only
        pass


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument('--cosd', metavar='PATH', help='qcloud-cosd binary to start')
    g.add_argument('--s3rver', metavar='DIR', help='npm install dir holding s3rver')
    g.add_argument('--endpoint', metavar='URL', help='test a running server')
    ap.add_argument('--access')
    ap.add_argument('--secret')
    ap.add_argument('--access2')
    ap.add_argument('--secret2')
    ap.add_argument('--big-mib', type=int, default=100, metavar='N',
                    help='size of the big object in MiB (default 100)')
    args = ap.parse_args()
    if args.endpoint and not (args.access and args.secret):
        ap.error('--endpoint needs --access and --secret')
    if bool(args.access2) != bool(args.secret2):
        ap.error('--access2 and --secret2 go together')
    if args.big_mib < 1:
        ap.error('--big-mib must be >= 1')

    def on_alarm(signum, frame):
        raise TimeoutError('overall %d s time limit hit' % TIME_LIMIT)
    signal.signal(signal.SIGALRM, on_alarm)
    signal.signal(signal.SIGTERM, lambda s, f: sys.exit(143))
    signal.alarm(TIME_LIMIT)

    t_start = time.monotonic()
    tmp = tempfile.mkdtemp(prefix='qcloud-obj-boto3-')
    server = None
    endpoint, user1, user2, buckets = None, None, None, []
    try:
        if args.cosd:
            mode = 'cosd'
            server = Server('cosd', args.cosd, tmp)
            user1, user2 = ALICE[1:], BOB[1:]
        elif args.s3rver:
            mode = 's3rver'
            server = Server('s3rver', args.s3rver, tmp)
            user1 = S3RVER_KEYS
        else:
            mode = 'endpoint'
            endpoint = args.endpoint.rstrip('/')
            user1 = (args.access, args.secret)
            if args.access2:
                user2 = (args.access2, args.secret2)
        if server:
            server.start()
            endpoint = 'http://%s:%d' % (HOST, server.port)
            print('started %s on %s (pid %d)' % (mode, endpoint, server.proc.pid),
                  flush=True)
        run_checks(mode, endpoint, user1, user2, args.big_mib, tmp, buckets)
        if server:
            @check('server process still running at the end')
            def _():
                ok(server.alive(), 'pid %d exited: %s' % (server.proc.pid,
                                                         server.log_tail()))
    except Exception as e:  # noqa: BLE001 - startup failure or time limit
        R.failed.append('harness')
        print('FAIL harness: %s: %s' % (type(e).__name__, e), flush=True)
        if server and server.proc:
            print('    server log tail: %s' % server.log_tail().replace('\n', '\n    '))
    finally:
        signal.alarm(0)
        if server:
            server.stop()
        elif endpoint and user1 and R.failed:
            best_effort_cleanup(endpoint, user1, buckets)
        shutil.rmtree(tmp, ignore_errors=True)

    print('%d passed, %d failed, %d skipped' % (R.passed, len(R.failed), len(R.skipped)))
    print('%s: %d/%d checks passed, %d skipped, in %.1f s%s'
          % ('PASS' if not R.failed else 'FAIL', R.passed,
             R.passed + len(R.failed), len(R.skipped), time.monotonic() - t_start,
             '' if not R.failed else '; failed: ' + ', '.join(R.failed)))
    return 0 if not R.failed else 1


if __name__ == '__main__':
    sys.exit(main())
