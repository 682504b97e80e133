"""Network namespaces for the overlay tests (net_*.py): hosts, VMs, an
underlay fabric with two planes, qcloud-vswitchd in each host namespace,
and its control API. Each test builds its own topology under a unique
prefix and deletes all of it at the end, whatever happened. Needs root.

Topology:
  fabric namespace <p>fab: bridges `svc` (service plane, 10.1.0.0/24) and
  `sto` (storage plane, 10.2.0.0/24).
  host i: namespace <p>h<i>, veths svc0 (10.1.0.i) and sto0 (10.2.0.i) whose
  other ends (h<i>s, h<i>t) are ports of the fabric's bridges.
  VM: namespace <p><name>, with the TAP device its host's switch made.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from interop_util import RESULTS, stop

SKIP = 77  # CTest's SKIP_RETURN_CODE for these tests


def run(*cmd, check_rc=True, timeout=30, capture=True):
    r = subprocess.run(list(cmd), stdout=subprocess.PIPE if capture else None,
                       stderr=subprocess.PIPE if capture else None, text=True, timeout=timeout)
    if check_rc and r.returncode != 0:
        raise RuntimeError('%s: exit %d: %s' % (' '.join(cmd), r.returncode, (r.stderr or '').strip()))
    return r


def kernel_refuses():
    """A reason the kernel cannot host these tests, or None."""
    if os.geteuid() != 0:
        return 'not root'
    if not os.path.exists('/dev/net/tun'):
        return 'no /dev/net/tun'
    name = 'qnprobe%d' % os.getpid()
    r = run('ip', 'netns', 'add', name, check_rc=False)
    if r.returncode != 0:
        return 'ip netns add refused: ' + r.stderr.strip()
    run('ip', 'netns', 'del', name, check_rc=False)
    return None


class Overlay:
    def __init__(self, vswitchd, prefix=None):
        self.vswitchd = vswitchd
        self.p = prefix or 'qn%d' % (os.getpid() % 100000)
        self.namespaces = []
        self.daemons = {}
        self.tmp = tempfile.mkdtemp(prefix='qcloud-net-')
        self.fab = self.netns('fab')
        for br in ('svc', 'sto'):
            self.ip(self.fab, 'link', 'add', br, 'type', 'bridge')
            self.ip(self.fab, 'link', 'set', br, 'up')

    # ---- namespaces and commands --------------------------------------------

    def netns(self, name):
        ns = self.p + name
        run('ip', 'netns', 'add', ns)
        self.namespaces.append(ns)
        run('ip', '-n', ns, 'link', 'set', 'lo', 'up')
        return ns

    def ip(self, ns, *args, check_rc=True):
        return run('ip', '-n', ns, *args, check_rc=check_rc)

    def sh(self, ns, *cmd, check_rc=True, timeout=30):
        return run('ip', 'netns', 'exec', ns, *cmd, check_rc=check_rc, timeout=timeout)

    def popen(self, ns, *cmd, **kw):
        return subprocess.Popen(['ip', 'netns', 'exec', ns, *cmd], **kw)

    def wait_listening(self, ns, port, timeout=10):
        """Until a TCP socket listens on `port` in namespace `ns` (`ss -Hltn`);
        False when `timeout` seconds pass first."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if ':%d ' % port in self.sh(ns, 'ss', '-Hltn', check_rc=False).stdout:
                return True
            time.sleep(0.05)
        return False

    # ---- hosts ------------------------------------------------------------------

    def host_ns(self, i):
        return self.p + 'h%d' % i

    def add_host(self, i, planes=('svc', 'sto')):
        """Host i with a leg on each plane; returns its namespace."""
        ns = self.netns('h%d' % i)
        for plane, dev, net in (('svc', 'svc0', '10.1.0'), ('sto', 'sto0', '10.2.0')):
            if plane not in planes:
                continue
            outer = 'h%d%s' % (i, 's' if plane == 'svc' else 't')
            # Made inside the namespaces: nothing touches the root namespace.
            self.ip(self.fab, 'link', 'add', outer, 'type', 'veth', 'peer', 'name', dev, 'netns', ns)
            self.ip(self.fab, 'link', 'set', outer, 'master', plane)
            self.ip(self.fab, 'link', 'set', outer, 'up')
            self.ip(ns, 'addr', 'add', '%s.%d/24' % (net, i), 'dev', dev)
            self.ip(ns, 'link', 'set', dev, 'up')
        return ns

    def cut(self, i, plane, up=False):
        """Takes host i's leg on a plane down (or up again) at the fabric."""
        self.ip(self.fab, 'link', 'set', 'h%d%s' % (i, 's' if plane == 'svc' else 't'), 'up' if up else 'down')

    # ---- qcloud-vswitchd -----------------------------------------------------------

    def start_switch(self, i, config):
        """qcloud-vswitchd in host i's namespace with `config` (a dict)."""
        path = os.path.join(self.tmp, 'h%d.json' % i)
        with open(path, 'w') as f:
            json.dump(config, f)
        log = open(os.path.join(self.tmp, 'h%d.log' % i), 'w')
        proc = self.popen(self.host_ns(i), self.vswitchd, '--config', path, '--control', '127.0.0.1:9870',
                          stdout=log, stderr=subprocess.STDOUT)
        self.daemons[i] = proc
        deadline = time.time() + 10
        while time.time() < deadline:
            if proc.poll() is not None:
                raise RuntimeError('qcloud-vswitchd on host %d exited: %s' % (i, self.log(i)))
            r = self.sh(self.host_ns(i), 'curl', '-s', '-o', '/dev/null', '-w', '%{http_code}',
                        'http://127.0.0.1:9870/-/healthy', check_rc=False)
            if r.stdout.strip() == '200':
                return proc
            time.sleep(0.05)
        raise RuntimeError('qcloud-vswitchd on host %d did not answer' % i)

    def log(self, i):
        try:
            with open(os.path.join(self.tmp, 'h%d.log' % i)) as f:
                return f.read()[-2000:]
        except OSError:
            return ''

    def api(self, i, method, path, body=None):
        """(HTTP status, parsed JSON or text) from host i's control API."""
        cmd = ['curl', '-s', '-X', method, '-w', '\n%{http_code}', 'http://127.0.0.1:9870' + path]
        if body is not None:
            cmd += ['-H', 'Content-Type: application/json', '--data-binary', json.dumps(body)]
        r = self.sh(self.host_ns(i), *cmd, check_rc=False)
        text, _, code = r.stdout.rpartition('\n')
        try:
            return int(code), json.loads(text)
        except ValueError:
            return int(code or 0), text

    def state(self, i):
        code, body = self.api(i, 'GET', '/v1/state')
        if code != 200:
            raise RuntimeError('state of host %d: %s %s' % (i, code, body))
        return body

    def metrics(self, i):
        return self.sh(self.host_ns(i), 'curl', '-s', 'http://127.0.0.1:9870/metrics').stdout

    # ---- VMs ---------------------------------------------------------------------------

    def vm_ns(self, name):
        return self.p + name

    def add_vm(self, name, host, tap, cidr, mtu=1450):
        """Moves host's TAP `tap` into a new namespace `name`, with address `cidr`."""
        ns = self.netns(name)
        self.plug(name, host, tap, cidr, mtu)
        return ns

    def plug(self, name, host, tap, cidr=None, mtu=1450):
        ns = self.vm_ns(name)
        self.ip(self.host_ns(host), 'link', 'set', tap, 'netns', ns)
        self.ip(ns, 'link', 'set', tap, 'mtu', str(mtu))
        if cidr:
            self.ip(ns, 'addr', 'add', cidr, 'dev', tap)
        self.ip(ns, 'link', 'set', tap, 'up')

    def ping(self, vm, addr, count=3, interval=0.2, wait=1, extra=()):
        """Replies received."""
        r = self.sh(self.vm_ns(vm), 'ping', '-n', '-q', '-c', str(count), '-i', str(interval), '-W', str(wait),
                    *extra, addr, check_rc=False, timeout=count * interval + wait + 10)
        for line in r.stdout.splitlines():
            if 'received' in line:
                return int(line.split(',')[1].split()[0])
        return 0

    # ---- the end ------------------------------------------------------------------------

    def close(self):
        for i, proc in self.daemons.items():
            if proc.poll() is not None:  # it died: say why
                print('qcloud-vswitchd on host %d exited %s: %s' % (i, proc.returncode, self.log(i)))
            stop(proc)
        for ns in reversed(self.namespaces):
            run('ip', 'netns', 'del', ns, check_rc=False)


def switch_config(host, **extra):
    c = {'host_id': host, 'service': '10.1.0.%d' % host, 'storage': '10.2.0.%d' % host,
         'probe_interval': '100ms', 'dead_after': '500ms'}
    c.update(extra)
    return c


def mac(n):
    return '02:00:00:00:%02x:%02x' % (n >> 8, n & 255)


def main(test, options=None):
    """The whole script: --vswitchd (and what `options(parser)` adds), the
    kernel check, test(args), the tally and the exit code."""
    ap = argparse.ArgumentParser()
    ap.add_argument('--vswitchd', required=True)
    if options:
        options(ap)
    args = ap.parse_args()
    main_guard(lambda: test(args))
    print('%d/%d checks passed' % (sum(RESULTS), len(RESULTS)))
    sys.exit(0 if RESULTS and all(RESULTS) else 1)


def main_guard(fn):
    """Runs fn() -> Overlay-using test; exits 77 with a reason where the kernel refuses."""
    reason = kernel_refuses()
    if reason:
        print('SKIP: %s' % reason)
        sys.exit(SKIP)
    fn()
