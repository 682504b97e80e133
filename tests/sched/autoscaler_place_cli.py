#!/usr/bin/env python3
"""qcloud-autoscaler place as scripts use it: the example of the README,
every strategy, constraints kept (checked here independently of the
library), and exit 2 with a message for each kind of invalid input.

  autoscaler_place_cli.py --autoscaler PATH
"""

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile

FAILED = []


def check(what, ok, detail=''):
    print('%s %s%s' % ('PASS' if ok else 'FAIL', what, ('  -- %s' % detail) if not ok and detail != '' else ''))
    if not ok:
        FAILED.append(what)


def run(bin_, work, hosts, instances, *extra):
    hp, ip = os.path.join(work, 'hosts.json'), os.path.join(work, 'instances.json')
    for path, data in ((hp, hosts), (ip, instances)):
        with open(path, 'w') as f:
            f.write(data if isinstance(data, str) else json.dumps(data))
    p = subprocess.run([bin_, 'place', '--hosts', hp, '--instances', ip, *extra], capture_output=True, text=True,
                       timeout=60)
    return p.returncode, p.stdout, p.stderr


def verify(hosts, instances, out):
    """Every constraint, recomputed: capacity, anti-affinity (host or label), affinity, host labels."""
    by_host = {h['name']: h for h in hosts}
    place = out['placements']
    unplaced = {u['name'] for u in out['unplaced']}
    errors = []
    used = {}
    domains = set()
    together = {}
    for i in instances:
        n = i['name']
        if (n in place) == (n in unplaced):
            errors.append('%s placed and unplaced, or neither' % n)
            continue
        if i.get('affinity'):
            together.setdefault(i['affinity'], set()).add(place.get(n))
        if n not in place:
            continue
        h = by_host[place[n]]
        for r, v in i.get('demand', {}).items():
            used[(h['name'], r)] = used.get((h['name'], r), 0) + v
        for k, v in i.get('host_labels', {}).items():
            if h.get('labels', {}).get(k) != v:
                errors.append('%s on %s without %s=%s' % (n, h['name'], k, v))
        if i.get('anti_affinity'):
            by = i.get('spread_by')
            dom = h['name'] if not by else h.get('labels', {}).get(by)
            if dom is None or (i['anti_affinity'], dom) in domains:
                errors.append('%s breaks anti-affinity %s on %s' % (n, i['anti_affinity'], dom))
            domains.add((i['anti_affinity'], dom))
    for (hn, r), v in used.items():
        if v > by_host[hn].get('capacity', {}).get(r, 0) + 1e-6:
            errors.append('%s over capacity in %s (%s)' % (hn, r, v))
    for g, where in together.items():
        if len(where) > 1:
            errors.append('affinity %s split over %s' % (g, where))
    if out['hosts_used'] != len(set(place.values())):
        errors.append('hosts_used %d, %d hosts in placements' % (out['hosts_used'], len(set(place.values()))))
    return errors


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--autoscaler', required=True)
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix='qcloud-place-')

    # The README's example.
    hosts = [{"name": "h1", "capacity": {"cpu": 32, "mem": 128}, "labels": {"rack": "r1"}},
             {"name": "h2", "capacity": {"cpu": 32, "mem": 128}, "labels": {"rack": "r2"}}]
    instances = [{"name": "i1", "demand": {"cpu": 2, "mem": 8}, "anti_affinity": "svc-a", "spread_by": "rack"},
                 {"name": "i2", "demand": {"cpu": 2, "mem": 8}, "anti_affinity": "svc-a", "spread_by": "rack"},
                 {"name": "i3", "demand": {"cpu": 2, "mem": 8}, "anti_affinity": "svc-a", "spread_by": "rack"},
                 {"name": "i4", "demand": {"cpu": 40}}]
    rc, out, err = run(a.autoscaler, work, hosts, instances)
    check('the README example exits 0', rc == 0, err)
    got = json.loads(out) if rc == 0 else {'placements': {}, 'unplaced': [], 'hosts_used': 0}
    check('one JSON object with placements, unplaced, hosts_used',
          sorted(got) == ['hosts_used', 'placements', 'unplaced'], got)
    check('i1 and i2 on the two racks', {got['placements'].get('i1'), got['placements'].get('i2')} == {'h1', 'h2'},
          got)
    reasons = {u['name']: u['reason'] for u in got['unplaced']}
    check('i3 unplaced by anti-affinity', 'anti-affinity' in reasons.get('i3', ''), reasons)
    check('i4 unplaced by size', reasons.get('i4', '').startswith('needs cpu 40'), reasons)

    # Every strategy on a seeded random problem: constraints recomputed here.
    rnd = random.Random(7)
    hosts = [{"name": "h%d" % k, "capacity": {"cpu": rnd.choice([16, 32, 64]), "mem": rnd.choice([64, 128, 256]),
                                              "gpu": rnd.choice([0, 0, 2])},
              "labels": {"rack": "r%d" % (k % 4), "zone": "z%d" % (k % 2)}} for k in range(60)]
    instances = []
    for k in range(400):
        i = {"name": "vm%d" % k, "demand": {"cpu": rnd.randint(1, 12), "mem": rnd.randint(1, 48)}}
        if k % 10 == 0:
            i['demand']['gpu'] = 1
        if k % 7 == 0:
            i['anti_affinity'] = 'db%d' % (k % 3)
            i['spread_by'] = 'rack'
        if k % 11 == 0:
            i['affinity'] = 'pair%d' % (k % 5)
        if k % 13 == 0:
            i['host_labels'] = {'zone': 'z1'}
        instances.append(i)
    for strategy in ('local-search', 'ffd', 'best-fit', 'spread', 'dot-product'):
        rc, out, err = run(a.autoscaler, work, hosts, instances, '--strategy', strategy)
        ok = rc == 0
        errors = verify(hosts, instances, json.loads(out)) if ok else [err]
        check('%s: every constraint holds (%s hosts)' % (strategy, json.loads(out)['hosts_used'] if ok else '-'),
              not errors, errors[:5])

    # Invalid input: exit 2 and a message naming the fault.
    good_h = [{"name": "h1", "capacity": {"cpu": 4}}]
    good_i = [{"name": "i1", "demand": {"cpu": 1}}]
    bad = [
        ('not JSON', '{', good_i, [], 'not JSON'),
        ('not an array', '{"name": "h1"}', good_i, [], 'not a JSON array'),
        ('a misspelt key', good_h, [{"name": "i1", "demnad": {"cpu": 1}}], [], 'unknown key'),
        ('a negative demand', good_h, [{"name": "i1", "demand": {"cpu": -1}}], [], 'demand cpu'),
        ('a string amount', [{"name": "h1", "capacity": {"cpu": "4"}}], good_i, [], 'not a number'),
        ('two hosts of one name', good_h + good_h, good_i, [], 'appears twice'),
        ('spread_by without anti_affinity', good_h, [{"name": "i1", "spread_by": "rack"}], [], 'spread_by'),
        ('an unknown strategy', good_h, good_i, ['--strategy', 'random'], 'unknown strategy'),
        ('headroom 1', good_h, good_i, ['--headroom', '1'], 'headroom'),
    ]
    for what, h, i, extra, needle in bad:
        rc, out, err = run(a.autoscaler, work, h, i, *extra)
        check('%s: exit 2 and says so' % what, rc == 2 and needle in err and out == '', (rc, err.strip(), out))
    p = subprocess.run([a.autoscaler, 'place', '--hosts', os.path.join(work, 'none.json'), '--instances',
                        os.path.join(work, 'none.json')], capture_output=True, text=True, timeout=60)
    check('a missing file: exit 2', p.returncode == 2 and 'none.json' in p.stderr, (p.returncode, p.stderr))

    print('%d failed' % len(FAILED))
    return 1 if FAILED else 0


if __name__ == '__main__':
    sys.exit(main())
