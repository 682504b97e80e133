#!/usr/bin/python3
"""Real-client interop test: pymemcache (Debian python3-pymemcache 3.5.2)
against qcloud-kvd or, to prove the test itself right, the real memcached.

Run with /usr/bin/python3 (the Debian interpreter that has pymemcache):

    kv_pymemcache.py --kvd PATH         start PATH (qcloud-kvd) and test it
    kv_pymemcache.py --memcached PATH   start PATH (memcached) and test it
    kv_pymemcache.py --port PORT        test a server already on 127.0.0.1:PORT
                                        (it gets flushed; server-specific checks
                                        such as pid/threads/maxbytes and the
                                        two-server HashClient test are skipped)

Every command pymemcache's Client offers is exercised through Client, then the
same suite through PooledClient; then 8 threads hammer a PooledClient, a
HashClient spreads keys over two servers of the same kind, and finally the
time-based checks run (expiry, touch, delayed flush_all) with under ~2.5 s of
polling. pymemcache 3.5 speaks only the text protocol (no meta, no binary).
Prints PASS/FAIL per check; exit status 0 iff all pass.
"""

import argparse
import os
import re
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

from pymemcache import serde as pm_serde
from pymemcache.client.base import Client, PooledClient
from pymemcache.client.hash import HashClient
from pymemcache.exceptions import (MemcacheClientError, MemcacheError,
                                   MemcacheIllegalInputError,
                                   MemcacheServerError)

HOST = '127.0.0.1'
MEMORY_MB = 64
KVD_THREADS = 2
MEMCACHED_THREADS = 1
TIMEOUT = 5.0            # socket timeout for every client: a hang is a failure
TOO_LARGE = 1024 * 1024 + 1  # over memcached's default 1 MiB item limit
BIG_OK = 1000 * 1000         # fits under 1 MiB incl. memcached's item overhead
REQUIRED_STATS = ('pid', 'uptime', 'curr_connections', 'curr_items', 'cmd_get',
                  'cmd_set', 'get_hits', 'get_misses', 'bytes',
                  'limit_maxbytes', 'threads')


# --------------------------------------------------------------------------
# Check bookkeeping

class Results:
    def __init__(self):
        self.passed = 0
        self.failed = []

    def run(self, name, fn):
        try:
            detail = fn()
        except Exception as e:  # noqa: BLE001 - any exception is a failure
            self.failed.append(name)
            msg = str(e)
            if len(msg) > 300:
                msg = msg[:300] + '...'
            print('FAIL %s: %s: %s' % (name, type(e).__name__, msg), flush=True)
        else:
            self.passed += 1
            print('PASS %s%s' % (name, ' (%s)' % detail if detail else ''),
                  flush=True)


R = Results()


def check(name):
    """Decorator: run the function now as one named check."""
    def deco(fn):
        R.run(name, fn)
        return fn
    return deco


def short(v):
    r = repr(v)
    return r if len(r) <= 120 else r[:120] + '...(%d chars)' % len(r)


def eq(actual, expected, what='value'):
    if actual != expected:
        raise AssertionError('%s: got %s, expected %s'
                             % (what, short(actual), short(expected)))


def ok(cond, what):
    if not cond:
        raise AssertionError(what)


def raises(exc_type, fn, exact=True):
    """fn() must raise exc_type (exactly that class unless exact=False)."""
    try:
        r = fn()
    except Exception as e:  # noqa: BLE001
        if exact and type(e) is not exc_type:
            raise AssertionError('raised %s(%s), expected exactly %s'
                                 % (type(e).__name__, e, exc_type.__name__))
        if not exact and not isinstance(e, exc_type):
            raise AssertionError('raised %s(%s), expected %s'
                                 % (type(e).__name__, e, exc_type.__name__))
        return e
    raise AssertionError('returned %s, expected %s to be raised'
                         % (short(r), exc_type.__name__))


# --------------------------------------------------------------------------
# Servers

def free_port():
    """Below the ephemeral range, as interop_util.free_port (which see)."""
    here = os.path.dirname(os.path.abspath(__file__))
    if here not in sys.path:
        sys.path.insert(0, here)
    from interop_util import free_port as pick
    return pick()


class Server:
    """One server process started by us, stopped by PID."""

    def __init__(self, kind, path):
        self.kind = kind
        self.path = path
        self.proc = None
        self.port = None
        self.log = tempfile.TemporaryFile()

    def start(self):
        if self.kind == 'memcached':
            for _ in range(3):  # the free port may be taken in between: retry
                port = free_port()
                argv = [self.path, '-l', HOST, '-p', str(port), '-U', '0',
                        '-t', str(MEMCACHED_THREADS), '-m', str(MEMORY_MB)]
                if os.geteuid() == 0:
                    argv += ['-u', 'root']
                self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                             stdout=self.log, stderr=self.log)
                if self._wait_connectable(port):
                    self.port = port
                    return
                self.stop()
            raise RuntimeError('memcached did not start: %s' % self.log_tail())
        argv = [self.path, '--listen', '%s:0' % HOST, '--memory', str(MEMORY_MB),
                '--threads', str(KVD_THREADS)]
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=self.log)
        pat = re.compile(rb'qcloud-kvd listening on 127\.0\.0\.1:(\d+)')
        buf = b''
        deadline = time.monotonic() + 10
        fd = self.proc.stdout.fileno()
        while time.monotonic() < deadline:
            r, _, _ = select.select([fd], [], [], 0.1)
            if r:
                chunk = os.read(fd, 4096)
                if not chunk:
                    break
                buf += chunk
                m = pat.search(buf)
                if m:
                    self.port = int(m.group(1))
                    self.log.write(buf)
                    threading.Thread(target=self._drain, daemon=True).start()
                    return
            if self.proc.poll() is not None:
                break
        self.log.write(buf)
        self.stop()
        raise RuntimeError('qcloud-kvd did not report its port within 10 s: %s'
                           % self.log_tail())

    def _drain(self):
        try:
            for chunk in iter(lambda: self.proc.stdout.read1(4096), b''):
                self.log.write(chunk)
        except Exception:  # noqa: BLE001 - best effort after shutdown
            pass

    def _wait_connectable(self, port):
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                socket.create_connection((HOST, port), timeout=1).close()
                return True
            except OSError:
                time.sleep(0.05)
        return False

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        if self.proc.stdout:
            self.proc.stdout.close()

    def log_tail(self):
        try:
            self.log.seek(0)
            return self.log.read()[-2000:].decode('utf-8', 'replace')
        except Exception:  # noqa: BLE001
            return ''


# --------------------------------------------------------------------------
# Helpers

class FlagSerde:
    """Returns (value, flags) so flags can be compared after a round trip."""

    @staticmethod
    def serialize(key, value):
        return value, 0

    @staticmethod
    def deserialize(key, value, flags):
        return (value, flags)


def num(v):
    """incr/decr may leave the stored number space-padded (allowed by the
    protocol): compare the numeric value."""
    return int(v.strip())


def raw_command(client, line, name):
    """A command pymemcache 3.5 has no method for (verbosity), sent through
    the client's own connection handling."""
    if isinstance(client, PooledClient):
        with client.client_pool.get_and_release(destroy_on_fail=True) as c:
            return c._misc_cmd([line], name, False)
    return client._misc_cmd([line], name, False)


# --------------------------------------------------------------------------
# The suite, run once with Client and once with PooledClient

def suite(tag, make, expect):
    """make(**kw) builds a client of the kind under test; expect holds what we
    know about the server (pid/threads/maxbytes when we started it)."""
    p = '[%s]' % tag
    c = make()                           # pymemcache defaults: noreply=True
    w = make(default_noreply=False)      # waits for every reply

    @check(p + ' version')
    def _():
        v = c.version()
        ok(isinstance(v, bytes) and v and re.match(rb'^\d+\.\d+', v),
           'version %r does not start with <digits>.<digits>' % v)
        return v.decode()

    @check(p + ' flush_all (noreply=False) returns True and empties the cache')
    def _():
        eq(w.set('fa', 'x'), True, 'set')
        eq(w.flush_all(noreply=False), True, 'flush_all')
        eq(w.get('fa'), None, 'get after flush_all')

    @check(p + ' flush_all default (noreply) returns True and flushes')
    def _():
        eq(w.set('fa', 'x'), True, 'set')
        eq(c.flush_all(), True, 'flush_all')
        eq(c.get('fa'), None, 'get after flush_all')

    @check(p + ' set noreply=False returns True, get returns the bytes')
    def _():
        eq(c.set('k1', b'v1', noreply=False), True, 'set')
        eq(c.get('k1'), b'v1', 'get')

    @check(p + ' set with default noreply (True) returns True and is stored')
    def _():
        eq(c.default_noreply if hasattr(c, 'default_noreply') else True, True,
           'pymemcache default_noreply')
        eq(c.set('k2', b'v2'), True, 'set')
        eq(c.get('k2'), b'v2', 'get right after the unacknowledged set')
        for i in range(50):  # a burst of noreply sets then one read
            c.set('burst', str(i))
        eq(c.get('burst'), b'49', 'last of 50 pipelined noreply sets')

    @check(p + ' set overwrites; str and int values are sent as ascii')
    def _():
        eq(w.set('k1', 'text'), True, 'set str')
        eq(c.get('k1'), b'text', 'get str')
        eq(w.set('k1', 42), True, 'set int')
        eq(c.get('k1'), b'42', 'get int')

    @check(p + ' get of a missing key returns None / the default')
    def _():
        eq(c.get('missing'), None, 'get')
        eq(c.get('missing', default=b'dflt'), b'dflt', 'get(default=)')

    @check(p + ' dict interface: c[k] = v, c[k], del c[k], KeyError')
    def _():
        c['dk'] = b'dv'
        eq(c['dk'], b'dv', 'c[k]')
        del c['dk']
        raises(KeyError, lambda: c['dk'])

    @check(p + ' flags round-trip (0, 1, 0xDEADBEEF, 2**32-1)')
    def _():
        f = make(serde=FlagSerde(), default_noreply=False)
        try:
            for fl in (0, 1, 0xDEADBEEF, 2**32 - 1):
                eq(f.set('fl', b'v', flags=fl), True, 'set flags=%d' % fl)
                eq(f.get('fl'), (b'v', fl), 'get flags=%d' % fl)
            f.set('fl2', b'w', flags=7)
            eq(f.get_many(['fl', 'fl2']), {'fl': (b'v', 2**32 - 1),
                                           'fl2': (b'w', 7)}, 'get_many')
            eq(f.append('fl2', b'x'), True, 'append')
            eq(f.get('fl2'), (b'wx', 7), 'append keeps the flags')
        finally:
            f.close()

    @check(p + ' pickle_serde round-trips str/int/dict via flags')
    def _():
        s = make(serde=pm_serde.pickle_serde, default_noreply=False)
        try:
            vals = {'ps': 'unicode ✓', 'pi': 12345678901234,
                    'pd': {'a': [1, 2, (3, 4)], 'b': None}, 'pb': b'\x00\xff'}
            for k, v in vals.items():
                eq(s.set(k, v), True, 'set ' + k)
            eq(s.get_many(list(vals)), vals, 'get_many')
        finally:
            s.close()

    @check(p + ' set_many / set_multi return no failed keys; get_many / get_multi')
    def _():
        eq(w.set_many({'m1': b'a', 'm2': b'b', 'm3': b'c'}), [], 'set_many')
        eq(c.set_many({'m4': b'd'}), [], 'set_many default noreply')
        eq(w.set_multi({'m5': b'e'}), [], 'set_multi')
        eq(c.get_many(['m1', 'm2', 'nope', 'm4', 'm5']),
           {'m1': b'a', 'm2': b'b', 'm4': b'd', 'm5': b'e'}, 'get_many')
        eq(c.get_multi(['m3']), {'m3': b'c'}, 'get_multi')
        eq(c.get_many([]), {}, 'get_many([])')
        eq(c.get_many(['nope1', 'nope2']), {}, 'get_many of missing keys')

    @check(p + ' get_many of a repeated key')
    def _():
        eq(c.get_many(['m1', 'm1', 'm2']), {'m1': b'a', 'm2': b'b'}, 'get_many')

    @check(p + ' gets returns (value, cas); missing -> (None, None)')
    def _():
        w.set('g1', b'gv')
        v, cas = c.gets('g1')
        eq(v, b'gv', 'value')
        ok(isinstance(cas, bytes) and cas.isdigit(), 'cas %r not digits' % cas)
        eq(c.gets('g-missing'), (None, None), 'gets missing')
        w.set('g1', b'gv2')
        v2, cas2 = c.gets('g1')
        ok(cas2 != cas, 'cas unchanged (%r) after a set' % cas)
        eq(v2, b'gv2', 'value after set')

    @check(p + ' gets_many returns {key: (value, cas)} with distinct cas')
    def _():
        w.set_many({'gm1': b'1', 'gm2': b'2'})
        r = c.gets_many(['gm1', 'gm2', 'gm-missing'])
        eq(sorted(r), ['gm1', 'gm2'], 'keys')
        eq((r['gm1'][0], r['gm2'][0]), (b'1', b'2'), 'values')
        ok(r['gm1'][1] != r['gm2'][1], 'two items share cas %r' % r['gm1'][1])
        eq(c.gets_many([]), {}, 'gets_many([])')

    @check(p + ' add: new -> True, existing -> False, default noreply -> True')
    def _():
        eq(w.add('a1', b'first'), True, 'add new')
        eq(w.add('a1', b'second'), False, 'add existing')
        eq(c.get('a1'), b'first', 'value kept')
        eq(c.add('a1', b'third'), True, 'add existing with noreply')
        eq(c.get('a1'), b'first', 'value still kept')

    @check(p + ' replace: missing -> False, existing -> True')
    def _():
        eq(w.replace('r-missing', b'x'), False, 'replace missing')
        eq(c.get('r-missing'), None, 'not created')
        w.set('r1', b'old')
        eq(w.replace('r1', b'new'), True, 'replace existing')
        eq(c.get('r1'), b'new', 'value')
        eq(c.replace('r-missing', b'x'), True, 'replace noreply')
        eq(c.get('r-missing'), None, 'still not created')

    @check(p + ' append / prepend: existing -> True and concatenated, missing -> False')
    def _():
        w.set('ap', b'mid')
        eq(w.append('ap', b'-end'), True, 'append')
        eq(w.prepend('ap', b'start-'), True, 'prepend')
        eq(c.get('ap'), b'start-mid-end', 'value')
        eq(w.append('ap-missing', b'x'), False, 'append missing')
        eq(w.prepend('ap-missing', b'x'), False, 'prepend missing')
        eq(c.get('ap-missing'), None, 'not created')
        eq(c.append('ap', b'!'), True, 'append noreply')
        eq(c.get('ap'), b'start-mid-end!', 'value after noreply append')

    @check(p + ' cas: match -> True, EXISTS -> False, NOT_FOUND -> None')
    def _():
        w.set('cas1', b'v0')
        _, cas = c.gets('cas1')
        eq(c.cas('cas1', b'v1', cas), True, 'cas with current token')
        eq(c.get('cas1'), b'v1', 'value after cas')
        eq(c.cas('cas1', b'v2', cas), False, 'cas with stale token (EXISTS)')
        eq(c.get('cas1'), b'v1', 'value unchanged')
        eq(c.cas('cas-missing', b'x', cas), None, 'cas on missing key (NOT_FOUND)')
        eq(c.get('cas-missing'), None, 'not created')
        _, cas = c.gets('cas1')
        eq(c.cas('cas1', b'v3', int(cas), noreply=True), True, 'cas noreply')
        eq(c.get('cas1'), b'v3', 'value after noreply cas')

    @check(p + ' delete: existing -> True, missing -> False, noreply -> True')
    def _():
        w.set('d1', b'x')
        eq(w.delete('d1'), True, 'delete existing')
        eq(c.get('d1'), None, 'gone')
        eq(w.delete('d1'), False, 'delete missing')
        w.set('d2', b'x')
        eq(c.delete('d2'), True, 'delete default noreply')
        eq(c.get('d2'), None, 'gone after noreply delete')
        eq(c.delete('d2'), True, 'noreply delete of a missing key')

    @check(p + ' delete_many / delete_multi')
    def _():
        w.set_many({'dm1': b'1', 'dm2': b'2', 'dm3': b'3', 'dm4': b'4'})
        eq(w.delete_many(['dm1', 'dm2', 'dm-missing']), True, 'delete_many')
        eq(c.delete_many(['dm3']), True, 'delete_many noreply')
        eq(w.delete_multi(['dm4']), True, 'delete_multi')
        eq(c.get_many(['dm1', 'dm2', 'dm3', 'dm4']), {}, 'all gone')
        eq(c.delete_many([]), True, 'delete_many([])')

    @check(p + ' incr / decr arithmetic, decr floors at 0')
    def _():
        w.set('n', b'10')
        eq(c.incr('n', 5), 15, 'incr 5')
        eq(c.decr('n', 3), 12, 'decr 3')
        eq(c.incr('n', 0), 12, 'incr 0')
        eq(c.decr('n', 100), 0, 'decr below zero')
        eq(c.decr('n', 1), 0, 'decr at zero')
        eq(num(c.get('n')), 0, 'stored value')
        eq(c.incr('n', 99), 99, 'incr after floor')
        eq(c.incr('n', 1), 100, 'incr to a longer number')
        eq(c.get('n'), b'100', 'stored value grows')

    @check(p + ' incr wraps modulo 2**64; 64-bit deltas')
    def _():
        # Stored values stay below 2**63 before each incr/decr: memcached
        # 1.6.18's safe_strtoull() calls strchr(value, '-') on the
        # unterminated item data when the number is >= 2**63, so it sometimes
        # answers "non-numeric" depending on the bytes after the item.
        w.set('n64', b'5')
        eq(c.incr('n64', 2**64 - 1), 4, 'incr 5 by 2**64-1 (wraps)')
        eq(c.incr('n64', 2**64 - 5), 2**64 - 1, 'incr to 2**64-1')
        eq(c.get('n64'), b'18446744073709551615', 'stored 20-digit value')
        w.set('n64', b'10')
        eq(c.decr('n64', 2**63), 0, 'decr by 2**63 floors at 0')

    @check(p + ' incr / decr on a missing key -> None (no auto-create)')
    def _():
        eq(c.incr('n-missing', 1), None, 'incr')
        eq(c.decr('n-missing', 1), None, 'decr')
        eq(c.get('n-missing'), None, 'not created')

    @check(p + ' incr / decr on a non-numeric value -> MemcacheClientError')
    def _():
        w.set('nn', b'abc')
        raises(MemcacheClientError, lambda: c.incr('nn', 1))
        raises(MemcacheClientError, lambda: c.decr('nn', 1))
        eq(c.get('nn'), b'abc', 'value unchanged')
        raises(MemcacheIllegalInputError, lambda: c.incr('nn', 'x'))

    @check(p + ' incr / decr noreply=True return None and apply')
    def _():
        w.set('nr', b'5')
        eq(c.incr('nr', 2, noreply=True), None, 'incr noreply')
        eq(c.decr('nr', 1, noreply=True), None, 'decr noreply')
        eq(num(c.get('nr')), 6, 'value')

    @check(p + ' noreply suppresses errors (incr non-numeric noreply keeps the stream in sync)')
    def _():
        w.set('nn', b'abc')
        eq(c.incr('nn', 1, noreply=True), None, 'incr noreply')
        eq(c.incr('n-missing', 1, noreply=True), None, 'incr missing noreply')
        v = c.version()
        ok(re.match(rb'^\d', v), 'next reply was %r, not the version' % v)
        eq(c.get('nn'), b'abc', 'next get')

    @check(p + ' flags and value survive incr')
    def _():
        f = make(serde=FlagSerde(), default_noreply=False)
        try:
            f.set('nf', b'7', flags=123)
            eq(f.incr('nf', 1), 8, 'incr')
            v, fl = f.get('nf')
            eq((num(v), fl), (8, 123), '(value, flags)')
        finally:
            f.close()

    @check(p + ' touch: existing -> True, missing -> False, noreply -> True')
    def _():
        w.set('t1', b'x')
        eq(c.touch('t1', 100, noreply=False), True, 'touch existing')
        eq(c.touch('t-missing', 100, noreply=False), False, 'touch missing')
        eq(c.touch('t1', 0), True, 'touch default noreply')
        eq(c.get('t1'), b'x', 'value unchanged')

    @check(p + ' binary-safe values: CR LF, NUL, all 256 byte values, protocol-lookalikes')
    def _():
        vals = {
            'b-crlf': b'line1\r\nline2\r\n',
            'b-only-crlf': b'\r\n',
            'b-nul': b'\x00',
            'b-all': bytes(range(256)) * 4,
            'b-end': b'END\r\n',
            'b-fake': b'\r\nEND\r\nVALUE b-fake 0 1\r\nx\r\nEND\r\n',
            'b-lf': b'\n\n\n',
            'b-cr': b'\r',
        }
        for k, v in vals.items():
            eq(w.set(k, v), True, 'set ' + k)
            eq(c.get(k), v, 'get ' + k)
        eq(c.get_many(list(vals)), vals, 'get_many')
        eq({k: v[0] for k, v in c.gets_many(list(vals)).items()}, vals, 'gets_many')
        eq(w.append('b-nul', b'\r\n\x00'), True, 'append')
        eq(c.get('b-nul'), b'\x00\r\n\x00', 'after append')

    @check(p + ' zero-length values (set, get, gets, append to empty, empty append)')
    def _():
        eq(w.set('z', b''), True, 'set empty')
        eq(c.get('z'), b'', 'get returns b"" (not None)')
        eq(c.gets('z')[0], b'', 'gets')
        eq(c.get_many(['z']), {'z': b''}, 'get_many')
        eq(w.append('z', b'a'), True, 'append to empty')
        eq(w.append('z', b''), True, 'append empty')
        eq(c.get('z'), b'a', 'value')

    @check(p + ' %d-byte value round-trips' % BIG_OK)
    def _():
        v = os.urandom(BIG_OK)
        eq(w.set('big', v), True, 'set')
        eq(c.get('big'), v, 'get')
        eq(c.gets('big')[0], v, 'gets')

    @check(p + ' %d-byte value -> MemcacheServerError, connection usable' % TOO_LARGE)
    def _():
        v = b'x' * TOO_LARGE
        raises(MemcacheServerError, lambda: c.set('too-large', v, noreply=False))
        eq(c.get('too-large'), None, 'not stored')
        w.set('after-large', b'ok')
        eq(c.get('after-large'), b'ok', 'next command')

    @check(p + ' too-large value with noreply is swallowed silently')
    def _():
        eq(c.set('too-large2', b'y' * TOO_LARGE), True, 'noreply set')
        eq(c.get('after-large'), b'ok', 'the next reply belongs to the next command')
        eq(c.get('too-large2'), None, 'not stored')

    @check(p + ' 250-byte key ok; 251-byte key rejected client-side')
    def _():
        k250 = 'k' * 250
        eq(w.set(k250, b'long'), True, 'set 250')
        eq(c.get(k250), b'long', 'get 250')
        eq(c.get_many([k250, 'm1']), {k250: b'long', 'm1': b'a'}, 'get_many')
        eq(w.delete(k250), True, 'delete 250')
        raises(MemcacheIllegalInputError, lambda: c.set('k' * 251, b'x'))
        raises(MemcacheIllegalInputError, lambda: c.get('k' * 251))

    @check(p + ' keys with space / newline / NUL / non-ASCII rejected client-side')
    def _():
        for bad in ('a b', 'a\nb', 'a\r\nb', 'a\x00b', ' lead', 'ключ'):
            raises(MemcacheIllegalInputError, lambda: c.set(bad, b'x'))

    @check(p + ' unicode keys with allow_unicode_keys=True')
    def _():
        u = make(allow_unicode_keys=True, default_noreply=False)
        try:
            keys = {'ключ': b'ru', '日本語キー': b'ja', 'ü-€-😀': b'emoji'}
            for k, v in keys.items():
                eq(u.set(k, v), True, 'set ' + k)
                eq(u.get(k), v, 'get ' + k)
            eq(u.get_many(list(keys)), keys, 'get_many')
            r = u.gets_many(list(keys))
            eq({k: v[0] for k, v in r.items()}, keys, 'gets_many')
            eq(u.delete('ключ'), True, 'delete')
            eq(u.get('ключ'), None, 'gone')
            eq(u.get('日本語キー'), b'ja', 'other key intact')
            k250 = 'é' * 125  # 250 bytes of UTF-8
            eq(u.set(k250, b'x'), True, '250-byte UTF-8 key')
            eq(u.get(k250), b'x', 'get 250-byte UTF-8 key')
            raises(MemcacheIllegalInputError, lambda: u.set('é' * 125 + 'a', b'x'))
        finally:
            u.close()

    @check(p + ' raw 8-bit / control-byte keys (as memcaslap sends: 0x10-0x1f, 0x7f, 0x80-0xff)')
    def _():
        u = make(allow_unicode_keys=True, default_noreply=False)
        try:
            keys = {bytes(range(0x10, 0x20)) + b'k': b'ctl',
                    b'\x7f\x80\x81\xfe\xff-k': b'high',
                    bytes([0x10, 0xd6, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10]) + b'frzi..005o': b'asl'}
            for k, v in keys.items():
                eq(u.set(k, v), True, 'set %r' % k)
            eq(u.get_many(list(keys)), keys, 'get_many')
            for k in keys:
                eq(u.delete(k), True, 'delete %r' % k)
        finally:
            u.close()

    @check(p + ' 1000-key multi-get (get_many and gets_many)')
    def _():
        vals = {'mk%04d' % i: ('value-%d-' % i).encode() * (i % 7 + 1)
                for i in range(1000)}
        eq(w.set_many(vals), [], 'set_many 1000')
        got = c.get_many(list(vals) + ['mk-missing'])
        eq(len(got), 1000, 'number of hits')
        eq(got, vals, 'values')
        g = c.gets_many(list(vals))
        eq(len(g), 1000, 'gets_many hits')
        eq(len({cas for _, cas in g.values()}), 1000, 'distinct cas tokens')

    @check(p + ' stats: dict with the standard names, counters move exactly')
    def _():
        s = c.stats()
        ok(isinstance(s, dict), 'stats is %r' % type(s))
        missing = [n for n in REQUIRED_STATS if n.encode() not in s]
        ok(not missing, 'missing stats: %s' % missing)
        for n in REQUIRED_STATS:
            ok(isinstance(s[n.encode()], int),
               'stat %s=%r is not an integer' % (n, s[n.encode()]))
        ok(s[b'curr_connections'] >= 1, 'curr_connections %r' % s[b'curr_connections'])
        ok(s[b'uptime'] >= 0, 'uptime')
        ok(s[b'curr_items'] >= 1000, 'curr_items %d < 1000 just stored'
           % s[b'curr_items'])
        ok(s[b'bytes'] > 0, 'bytes %d' % s[b'bytes'])
        if expect.get('pid'):
            eq(s[b'pid'], expect['pid'], 'pid')
        if expect.get('threads'):
            eq(s[b'threads'], expect['threads'], 'threads')
        if expect.get('maxbytes'):
            eq(s[b'limit_maxbytes'], expect['maxbytes'], 'limit_maxbytes')
        w.set('st', b'x')
        before = c.stats()
        c.get('st')
        c.get('st-missing')
        w.set('st', b'y')
        after = c.stats()
        d = {n: after[n.encode()] - before[n.encode()]
             for n in ('cmd_get', 'get_hits', 'get_misses', 'cmd_set')}
        eq(d, {'cmd_get': 2, 'get_hits': 1, 'get_misses': 1, 'cmd_set': 1},
           'counter deltas for get hit + get miss + set')
        ok(after[b'uptime'] >= before[b'uptime'], 'uptime went backwards')
        return 'curr_items=%d bytes=%d' % (s[b'curr_items'], s[b'bytes'])

    @check(p + " stats('slabs') and stats('items') return dicts")
    def _():
        sl = c.stats('slabs')
        it = c.stats('items')
        ok(isinstance(sl, dict), 'stats slabs: %r' % type(sl))
        ok(isinstance(it, dict), 'stats items: %r' % type(it))
        return 'slabs: %d entries, items: %d entries' % (len(sl), len(it))

    @check(p + ' verbosity 1 / 0 -> OK (sent raw: pymemcache 3.5 has no method)')
    def _():
        eq(raw_command(c, b'verbosity 1\r\n', b'verbosity'), [b'OK'], 'verbosity 1')
        eq(raw_command(c, b'verbosity 0\r\n', b'verbosity'), [b'OK'], 'verbosity 0')

    if hasattr(c, 'cache_memlimit'):
        @check(p + ' cache_memlimit(%d) -> True' % MEMORY_MB)
        def _():
            eq(c.cache_memlimit(MEMORY_MB), True, 'cache_memlimit')

    @check(p + ' quit closes; the client reconnects on the next call')
    def _():
        q = make(default_noreply=False)
        try:
            q.set('q', b'before-quit')
            eq(q.quit(), None, 'quit')
            eq(q.get('q'), b'before-quit', 'get after reconnect')
            q.quit()
            q.quit()  # quit on a fresh connection right after connect
            eq(q.get('q'), b'before-quit', 'get after second reconnect')
        finally:
            q.close()

    @check(p + ' quit really closes the connection (server side EOF)')
    def _():
        q = Client((HOST, expect['port']), timeout=TIMEOUT, connect_timeout=TIMEOUT)
        q.version()
        sock = q.sock
        sock.sendall(b'quit\r\n')
        sock.settimeout(TIMEOUT)
        eq(sock.recv(100), b'', 'bytes after quit')
        q.close()

    c.close()
    w.close()


# --------------------------------------------------------------------------
# Concurrency through PooledClient

def hammer(addr, nthreads=8, nops=2000):
    pc = PooledClient(addr, timeout=TIMEOUT, connect_timeout=TIMEOUT,
                      default_noreply=False, max_pool_size=nthreads)
    pc.set('hammer:shared', b'0')
    pc.set('hammer:down', b'1000000')
    pc.set('hammer:cas', b'0')
    for i in range(nthreads):
        pc.set('hammer:own%d' % i, b'0')
    errors = []
    counts = [dict(shared=0, down=0, own=0, cas=0, cas_retries=0, add=0)
              for _ in range(nthreads)]
    start = threading.Barrier(nthreads)

    def worker(i):
        n = counts[i]
        last = {}
        try:
            start.wait(10)
            for j in range(nops):
                r = j % 8
                if r in (0, 1):
                    v = pc.incr('hammer:shared', 1)
                    if not isinstance(v, int):
                        raise AssertionError('incr returned %r' % v)
                    n['shared'] += 1
                elif r == 2:
                    pc.incr('hammer:own%d' % i, 3)
                    n['own'] += 3
                elif r == 3:
                    pc.decr('hammer:down', 2)
                    n['down'] += 2
                elif r == 4:
                    k = 'hammer:k%d:%d' % (i, j % 16)
                    val = ('%d:%d:' % (i, j)).encode() * (1 + j % 5)
                    if not pc.set(k, val):
                        raise AssertionError('set %s failed' % k)
                    last[k] = val
                elif r == 5:
                    keys = list(last)[-4:]
                    got = pc.get_many(keys)
                    want = {k: last[k] for k in keys}
                    if got != want:
                        raise AssertionError('get_many %s: %s != %s'
                                             % (keys, short(got), short(want)))
                elif r == 6:
                    for _ in range(1000):  # cas increment with retry
                        v, cas = pc.gets('hammer:cas')
                        if pc.cas('hammer:cas', str(int(v) + 1), cas):
                            break
                        n['cas_retries'] += 1
                    else:
                        raise AssertionError('cas never succeeded')
                    n['cas'] += 1
                else:
                    if pc.add('hammer:add%d:%d' % (i, j), b'a') is not True:
                        raise AssertionError('add of a new key did not store')
                    n['add'] += 1
        except Exception as e:  # noqa: BLE001
            errors.append('thread %d: %s: %s' % (i, type(e).__name__, e))

    @check('[PooledClient x%d threads] %d ops each; counters exact' % (nthreads, nops))
    def _():
        t0 = time.monotonic()
        ts = [threading.Thread(target=worker, args=(i,)) for i in range(nthreads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(40)
        ok(not any(t.is_alive() for t in ts), 'threads still running after 40 s')
        ok(not errors, '; '.join(errors[:3]))
        eq(num(pc.get('hammer:shared')), sum(x['shared'] for x in counts),
           'shared incr counter')
        eq(num(pc.get('hammer:down')), 1000000 - sum(x['down'] for x in counts),
           'shared decr counter')
        eq(num(pc.get('hammer:cas')), sum(x['cas'] for x in counts),
           'cas-loop counter')
        for i in range(nthreads):
            eq(num(pc.get('hammer:own%d' % i)), counts[i]['own'],
               'per-thread counter %d' % i)
        added = pc.get_many(['hammer:add%d:%d' % (i, j) for i in range(nthreads)
                             for j in range(7, nops, 8)])
        eq(len(added), sum(x['add'] for x in counts), 'added keys present')
        return '%.1f s, %d cas retries' % (time.monotonic() - t0,
                                            sum(x['cas_retries'] for x in counts))

    pc.close()


# --------------------------------------------------------------------------
# HashClient over two servers

def hash_client(addr_a, addr_b):
    @check('[HashClient] keys spread over two servers; every command routes consistently')
    def _():
        hc = HashClient([addr_a, addr_b], timeout=TIMEOUT, connect_timeout=TIMEOUT,
                        default_noreply=False)
        a = Client(addr_a, timeout=TIMEOUT, default_noreply=False)
        b = Client(addr_b, timeout=TIMEOUT, default_noreply=False)
        try:
            hc.flush_all()
            vals = {'hk%03d' % i: b'v%d' % i for i in range(200)}
            eq(hc.set_many(vals), [], 'set_many')
            eq(hc.get_many(list(vals)), vals, 'get_many')
            on_a = set(a.get_many(list(vals)))
            on_b = set(b.get_many(list(vals)))
            ok(on_a and on_b, 'keys not spread: %d on A, %d on B'
               % (len(on_a), len(on_b)))
            eq(on_a & on_b, set(), 'keys on both servers')
            eq(on_a | on_b, set(vals), 'union of both servers')
            eq(hc.set('hn', b'1'), True, 'set')
            eq(hc.incr('hn', 4), 5, 'incr')
            eq(hc.decr('hn', 1), 4, 'decr')
            eq(hc.add('hn', b'x'), False, 'add existing')
            eq(hc.append('hn', b'0'), True, 'append')
            eq(hc.prepend('hn', b'1'), True, 'prepend')
            eq(hc.get('hn'), b'140', 'get')
            v, cas = hc.gets('hn')
            eq(hc.cas('hn', b'7', cas), True, 'cas')
            eq(hc.replace('hn', b'8'), True, 'replace')
            eq(hc.touch('hn', 100), True, 'touch')
            eq(hc.gets_many(['hn'])['hn'][0], b'8', 'gets_many')
            eq(hc.delete('hn'), True, 'delete')
            eq(hc.delete_many(list(vals)[:50]), True, 'delete_many')
            eq(len(hc.get_many(list(vals))), 150, 'after delete_many')
            hc.flush_all()
            eq(hc.get_many(list(vals)), {}, 'after flush_all on both')
            return '%d keys on A, %d on B' % (len(on_a), len(on_b))
        finally:
            hc.close()
            a.close()
            b.close()


# Time-based checks (expiry, touch, delayed flush_all), polled: ~1.2 s against
# memcached, at most 2.5 s per window (two windows with --port: one server).

def poll_until_gone(client_keys, min_wait, limit=2.5):
    """Poll every 50 ms until each (client, key) reads None and min_wait has
    passed, at most limit seconds. Returns ({key: seconds until gone}, elapsed)."""
    t0 = time.monotonic()
    gone = {}
    while True:
        now = time.monotonic() - t0
        for cl, k in client_keys:
            if k not in gone and cl.get(k) is None:
                gone[k] = now
        if (len(gone) == len(client_keys) and now >= min_wait) or now >= limit:
            return gone, now
        time.sleep(0.05)


def timing(addr_a, addr_b):
    c = Client(addr_a, timeout=TIMEOUT, connect_timeout=TIMEOUT, default_noreply=False)
    fb = Client(addr_b, timeout=TIMEOUT, connect_timeout=TIMEOUT,
                default_noreply=False) if addr_b else None

    @check('[expiry] negative and past-absolute exptime -> not stored visibly')
    def _():
        eq(c.set('neg', b'v', expire=-1), True, 'set expire=-1')
        eq(c.get('neg'), None, 'get after expire=-1')
        # > 30 days = absolute unix time; 2678400 (31 days after the epoch)
        # is what memcexist sends with its probing "add".
        eq(c.add('abs-past', b'', expire=2678400), True, 'add expire=2678400')
        eq(c.get('abs-past'), None, 'get after absolute time in the past')
        eq(c.add('abs-past', b'', expire=2678400), True,
           'second add: the expired item does not block add')
        eq(c.set('abs-future', b'v', expire=int(time.time()) + 3600), True, 'set')
        eq(c.get('abs-future'), b'v', 'get of absolute time in the future')

    def start_delayed_flush(target):
        eq(target.set('fl-delay', b'v'), True, 'set')
        eq(target.flush_all(delay=1), True, 'flush_all(delay=1)')

    @check('[expiry] items with expire=1 / touch(1) set up%s'
           % (' (+ flush_all(delay=1) on the 2nd server)' if fb else ''))
    def _():
        c.set('exp1', b'v', expire=1)
        c.add('exp1-add', b'v', expire=1)
        c.set_many({'exp1-many': b'v'}, expire=1)
        c.set('touch-short', b'v')                  # no expiry ...
        eq(c.touch('touch-short', 1), True, 'touch 1')  # ... until touched
        c.set('touch-long', b'v', expire=1)          # expires ...
        eq(c.touch('touch-long', 100), True, 'touch 100')  # ... unless touched
        c.set('keep', b'v')
        c.set('exp3', b'v', expire=3)
        eq(c.get('exp3'), b'v', 'expire=3 item readable right away')
        if fb:  # flush the other server meanwhile: one shared wait
            start_delayed_flush(fb)

    watch = [(c, k) for k in ('exp1', 'exp1-add', 'exp1-many', 'touch-short')]
    if fb:
        watch.append((fb, 'fl-delay'))
    gone, elapsed = poll_until_gone(watch, min_wait=1.2)

    @check('[expiry] expire=1 items (set, add, set_many) vanish within 2.5 s')
    def _():
        for k in ('exp1', 'exp1-add', 'exp1-many'):
            ok(k in gone, '%s still readable after %.1f s' % (k, elapsed))
        return ', '.join('%s %.2f s' % (k, gone[k])
                         for k in ('exp1', 'exp1-add', 'exp1-many'))

    @check('[expiry] touch(expire=1) makes a permanent item expire')
    def _():
        ok('touch-short' in gone, 'touch-short still readable after %.1f s' % elapsed)

    @check('[expiry] touch(expire=100) keeps an expire=1 item; others untouched')
    def _():
        eq(c.get('touch-long'), b'v', 'touch-long after %.1f s' % elapsed)
        eq(c.get('keep'), b'v', 'item without expiry')
        eq(c.get('abs-future'), b'v', 'absolute future exptime')

    if not fb:  # one server: the delayed flush needs its own window
        @check('[flush_all] delay=1 set up (same server, after the expiry checks)')
        def _():
            start_delayed_flush(c)
        gone, elapsed = poll_until_gone([(c, 'fl-delay')], min_wait=0)

    @check('[flush_all] delay=1 flushes within 2.5 s')
    def _():
        ok('fl-delay' in gone, 'fl-delay still readable after %.1f s' % elapsed)
        return '%.2f s' % gone['fl-delay']

    @check('[flush_all] delay=3: not flushed at once; later flush_all(0) flushes now')
    def _():
        target = fb or c
        target.set('fl-later', b'v')
        eq(target.flush_all(delay=3), True, 'flush_all(delay=3)')
        eq(target.get('fl-later'), b'v', 'item right after a 3 s delayed flush')
        eq(target.flush_all(delay=0), True, 'flush_all(0)')
        eq(target.get('fl-later'), None, 'item after flush_all(0)')

    c.close()
    if fb:
        fb.close()


# --------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument('--kvd', metavar='PATH', help='qcloud-kvd binary to start')
    g.add_argument('--memcached', metavar='PATH', help='memcached binary to start')
    g.add_argument('--port', type=int, help='use a server already on 127.0.0.1:PORT')
    args = ap.parse_args()

    def on_alarm(signum, frame):
        raise TimeoutError('overall 270 s time limit hit')
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(270)  # CTest's TIMEOUT (300 s) less 30 s

    t_start = time.monotonic()
    servers = []
    try:
        if args.port:
            addr_a, addr_b = (HOST, args.port), None
            expect = {'port': args.port}
            print('using the running server on %s:%d (it will be flushed)' % addr_a)
        else:
            kind, path = (('kvd', args.kvd) if args.kvd
                          else ('memcached', args.memcached))
            for _ in range(2):
                s = Server(kind, path)
                servers.append(s)
                s.start()
            addr_a, addr_b = (HOST, servers[0].port), (HOST, servers[1].port)
            expect = {'port': servers[0].port, 'pid': servers[0].proc.pid,
                      'threads': KVD_THREADS if kind == 'kvd' else MEMCACHED_THREADS,
                      'maxbytes': MEMORY_MB * 1024 * 1024}
            print('started %s: %s:%d (pid %d) and %s:%d (pid %d)'
                  % (path, HOST, servers[0].port, servers[0].proc.pid,
                     HOST, servers[1].port, servers[1].proc.pid), flush=True)

        suite('Client', lambda **kw: Client(addr_a, timeout=TIMEOUT,
                                            connect_timeout=TIMEOUT, **kw), expect)
        suite('PooledClient', lambda **kw: PooledClient(addr_a, timeout=TIMEOUT,
                                                        connect_timeout=TIMEOUT, **kw),
              expect)
        hammer(addr_a)
        if addr_b:
            hash_client(addr_a, addr_b)
        else:
            print('SKIP [HashClient] needs two servers we start ourselves')
        timing(addr_a, addr_b)

        @check('[shutdown] refused when not enabled; the server keeps running')
        def _():
            sc = Client(addr_a, timeout=TIMEOUT, connect_timeout=TIMEOUT)
            try:
                raises(MemcacheError, sc.shutdown, exact=False)
            finally:
                sc.close()
            time.sleep(0.1)
            v = Client(addr_a, timeout=TIMEOUT, connect_timeout=TIMEOUT)
            try:
                ok(v.version(), 'no version after shutdown attempt')
            finally:
                v.close()
            if servers:
                ok(servers[0].alive(), 'server process exited')

        if servers:
            @check('server processes still running at the end')
            def _():
                for s in servers:
                    ok(s.alive(), 'pid %d exited: %s' % (s.proc.pid, s.log_tail()))
    except Exception as e:  # noqa: BLE001 - startup failure or time limit
        R.failed.append('harness')
        print('FAIL harness: %s: %s' % (type(e).__name__, e), flush=True)
    finally:
        signal.alarm(0)
        for s in servers:
            s.stop()

    total = R.passed + len(R.failed)
    print('%s: %d/%d checks passed in %.1f s%s'
          % ('PASS' if not R.failed else 'FAIL', R.passed, total,
             time.monotonic() - t_start,
             '' if not R.failed else '; failed: ' + ', '.join(R.failed)))
    return 0 if not R.failed else 1


if __name__ == '__main__':
    sys.exit(main())
