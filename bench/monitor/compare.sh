#!/usr/bin/env bash
# Side-by-side macro benchmark of the monitoring store: qcloud-monitord,
# Prometheus 2.42 and VictoriaMetrics (Debian's packages), fed the same
# remote-write requests in the same run, each server pinned to one CPU and
# the load generator and query client to another.
#
#   bench/monitor/compare.sh [--monitord PATH] [--loadgen PATH] [--rounds 3]
#       [--series 10000] [--span 24h] [--interval 60s] [--batch 5000]
#       [--connections 2] [--range-runs 20] [--sum-runs 10]
#       [--server-cpu 1] [--client-cpu 0] [--raw FILE]
#
#   --monitord PATH   qcloud-monitord (default build/release/examples/qcloud-monitord/qcloud-monitord)
#   --loadgen PATH    monitor_loadgen (default build/release/bench/monitor/monitor_loadgen)
#   --rounds N        rounds; each runs the three systems, the order rotating
#                     (qcloud prom vm, then vm qcloud prom, ...); the table
#                     gives medians over the rounds (default 3)
#   --series N --span D --interval D --batch B --connections C: the load
#                     (monitor_loadgen's flags; see loadgen.cc for the mix)
#   --range-runs N --sum-runs N: timed repetitions of the two queries
#   --raw FILE        append every run's figures, as one JSON line, to FILE
#   PROMETHEUS=path VICTORIA=path: the peers (default /usr/bin/prometheus,
#                     /usr/bin/victoria-metrics)
# Quick run: --series 1000 --span 6h --rounds 1 (under a minute).
#
# One run of a system: a fresh data directory and server; RSS after 1 s;
# the load generator sends every request body (built once per invocation,
# the same bytes for every system: --series series, one sample each per
# --interval over --span, ending at the last whole hour at least 5 min
# ago); then the script waits until the system has compacted what it got;
# after 2 s more it reads RSS, the bytes on disk, and runs the queries;
# then the server is stopped. The figures:
#   ingest samples/s        samples acknowledged / wall seconds from the
#                           first request to the last answer
#   per server CPU-s        the same samples / the server's CPU seconds
#                           (utime + stime, all threads, /proc/PID/stat)
#                           over that window: samples/s per core
#   ... incl. compaction    / CPU seconds from the start of the load until
#                           compaction is done (below)
#   bytes/sample on disk    after compaction, of the compacted data only:
#     qcloud-monitord       --compact-every 1s; wait until its compactions
#                           and head samples stop changing; its /metrics
#                           qcloud_monitor_block_bytes / _block_samples
#                           (2 h blocks; the last 1-3 h stay in the head)
#     Prometheus            cuts 2 h blocks itself once its head spans 3 h
#                           and merges them (2 h -> 6 h -> 18 h); wait until
#                           the block directories stop changing; every file
#                           in the block directories (chunks, index, meta)
#                           / the numSamples of their meta.json (its head
#                           keeps the last 1-3 h, not counted, like ours)
#     VictoriaMetrics       /internal/force_flush, /internal/force_merge,
#                           wait until no merge runs and the parts stop
#                           changing; sum of vm_data_size_bytes (data and
#                           indexdb) / sum of vm_rows of storage/*: every
#                           sample, as VictoriaMetrics has no head
#   RSS per active series   (VmRSS 2 s after compaction, before the
#                           queries - VmRSS 1 s after start) / series; no
#                           GC is forced in the Go servers: it is the
#                           memory the OS sees (the rows below it: RssAnon
#                           alone, without mapped files such as blocks and
#                           binaries; and VmRSS once the queries ran).
#                           Until session 16 the script read it after the
#                           queries, unlike this description.
#   peak RSS                VmHWM
#   slowest remote-write    the longest request (retries included) the
#                           load generator saw
#   query_range 1 day       rate(node_cpu_seconds_total{one series}[5m])
#                           from the first sample + 5 min to the last,
#                           step = --interval: median of --range-runs
#   sum by                  instant sum by (instance)
#                           (last_over_time({job="node"}[5m])) at the last
#                           sample's time, over every series (10,000 at
#                           the default --series), 100 groups: median of
#                           --sum-runs. Not rate(): over series of several
#                           metric names Prometheus refuses it (the names
#                           dropped, two byte counters of one device have
#                           the same labels); last_over_time keeps names.
#   sum by of rate()        sum by (instance) (rate(node_cpu_seconds_total[5m]))
#                           (32% of the series): median of --sum-runs
# Query times are the client's (Python http.client, keep-alive), from
# sending the request to the last byte of the answer, after one untimed
# run. VictoriaMetrics runs with -search.disableCache (no answers from its
# rollup cache for repeated queries). Before timing, the answers are
# checked across the systems (series and samples counted, the raw day of
# one series, sum by of raw values, the points and values of the two timed
# queries); a difference is printed as a WARNING.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
MONITORD=$root/build/release/examples/qcloud-monitord/qcloud-monitord
LOADGEN=$root/build/release/bench/monitor/monitor_loadgen
PROMETHEUS=${PROMETHEUS:-/usr/bin/prometheus}
VICTORIA=${VICTORIA:-/usr/bin/victoria-metrics}
ROUNDS=3 SERIES=10000 SPAN=24h INTERVAL=60s BATCH=5000 CONNECTIONS=2 RANGE_RUNS=20 SUM_RUNS=10
SERVER_CPU=1 CLIENT_CPU=0 RAW=""
SCRIPT=compare.sh

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'; }
while [[ $# -gt 0 ]]; do
  case $1 in
    --monitord) MONITORD=$2; shift 2 ;;
    --loadgen) LOADGEN=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --series) SERIES=$2; shift 2 ;;
    --span) SPAN=$2; shift 2 ;;
    --interval) INTERVAL=$2; shift 2 ;;
    --batch) BATCH=$2; shift 2 ;;
    --connections) CONNECTIONS=$2; shift 2 ;;
    --range-runs) RANGE_RUNS=$2; shift 2 ;;
    --sum-runs) SUM_RUNS=$2; shift 2 ;;
    --server-cpu) SERVER_CPU=$2; shift 2 ;;
    --client-cpu) CLIENT_CPU=$2; shift 2 ;;
    --raw) RAW=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "$SCRIPT: unknown argument $1" >&2; usage >&2; exit 1 ;;
  esac
done

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$here/lib.sh"

[[ -x $MONITORD ]] || die "--monitord $MONITORD is not executable (cmake --build build/release --target qcloud-monitord)"
[[ -x $LOADGEN ]] || die "--loadgen $LOADGEN is not executable (cmake --build build/release --target monitor_loadgen)"
[[ -x $PROMETHEUS ]] || die "Prometheus not found at $PROMETHEUS (apt-get install prometheus)"
[[ -x $VICTORIA ]] || die "VictoriaMetrics not found at $VICTORIA (apt-get install victoria-metrics)"

prom_version=$("$PROMETHEUS" --version 2>&1 | head -n1 | sed 's/^prometheus, //')
vm_version=$(dpkg-query -W -f '${Version}' victoria-metrics 2>/dev/null || true)
vm_version=${vm_version:-"$("$VICTORIA" -version 2>&1 | head -n1)"}
echo "# monitor compare: $(date -u +%Y-%m-%dT%H:%MZ), $(uname -sr), $(nproc) CPUs" \
     "($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1))"
echo "# qcloud-monitord: $MONITORD ($("$MONITORD" --version 2>&1 | head -n1))"
echo "# Prometheus: $prom_version; VictoriaMetrics: ${vm_version:-unknown} (Debian package)"
echo "# $SERIES series x $SPAN every $INTERVAL, $BATCH samples a request over $CONNECTIONS connection(s);" \
     "servers on CPU $SERVER_CPU, loadgen and queries on CPU $CLIENT_CPU; $ROUNDS round(s)"

# The request bodies, once: the same bytes for every system and round.
end_ms=$(( ($(date +%s) - 300) / 3600 * 3600 * 1000 ))
t0=$SECONDS
run_client "$tmp/gen.out" "$tmp/gen.err" taskset -c "$CLIENT_CPU" "$LOADGEN" --write-bodies "$tmp/bodies" \
  --series "$SERIES" --span "$SPAN" --interval "$INTERVAL" --batch "$BATCH" --connections "$CONNECTIONS" \
  --end-ms "$end_ms" || { cat "$tmp/gen.err" >&2; die "monitor_loadgen --write-bodies failed"; }
header=$(head -n1 "$tmp/bodies")
hget() { sed -n "s/.* $1=\([0-9]*\).*/\1/p" <<<"$header"; }
first_ms=$(hget first_ms) interval_ms=$(hget interval_ms) steps=$(hget steps)
echo "# $(sed 's/^monitor_loadgen: //' "$tmp/gen.err"); samples from $(date -u -d "@$((first_ms / 1000))" +%FT%TZ)" \
     "to $(date -u -d "@$((end_ms / 1000))" +%FT%TZ)"
echo

declare -A NAME=([qcloud]=qcloud-monitord [prom]=Prometheus [vm]=VictoriaMetrics)

# run_system ROUND SYSTEM: one run; its figures in $tmp/runs/ROUND.SYSTEM.json.
run_system() {
  local r=$1 s=$2 dir rc=0 bg rss0 anon0 rss1 anon1 cpu0 cpu1 t_load t_settle bytes samples what alive=1
  dir=$tmp/$r.$s
  mkdir -p "$dir"
  bg=$(cpu_busy "$SERVER_CPU,$CLIENT_CPU" 0.5)
  "start_$s" "$dir"
  sleep 1
  rss0=$(rss_kb "$SERVER_PID") anon0=$(anon_kb "$SERVER_PID")
  cpu0=$(cpu_seconds "$SERVER_PID")
  run_client "$dir/load.json" "$dir/load.err" taskset -c "$CLIENT_CPU" "$LOADGEN" --bodies "$tmp/bodies" \
    --url "http://127.0.0.1:$SERVER_PORT/api/v1/write" --server-pid "$SERVER_PID" || rc=$?
  if [[ -s $dir/load.err ]]; then sed "s/^/  [$r ${NAME[$s]}] /" "$dir/load.err" >&2; fi
  [[ -s $dir/load.json ]] || echo '{}' >"$dir/load.json"
  t_load=$(date +%s.%N)
  "settle_$s" "$SERVER_PORT" "$dir"
  t_settle=$(awk -v a="$t_load" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  cpu1=$(cpu_seconds "$SERVER_PID")
  sleep 2
  rss1=$(rss_kb "$SERVER_PID" || echo 0) anon1=$(anon_kb "$SERVER_PID" || echo 0)
  read -r bytes samples what < <("disk_$s" "$SERVER_PORT" "$dir")
  run_queries "$SERVER_PORT" "$first_ms" "$end_ms" "$interval_ms" "$RANGE_RUNS" "$SUM_RUNS" "$dir/queries.json" ||
    { sed "s/^/  [$r ${NAME[$s]}] queries: /" "$dir/queries.json.err" >&2; echo '{}' >"$dir/queries.json"; }
  kill -0 "$SERVER_PID" 2>/dev/null || alive=0
  "$PY" - "$dir" "$r" "$s" "$rc" "$bg" "$rss0" "$rss1" "$(hwm_kb "$SERVER_PID" || echo 0)" \
    "$cpu0" "$cpu1" "$t_settle" "${bytes:-0}" "${samples:-0}" "$alive" "$SERIES" \
    "$anon0" "$anon1" "${what:-}" "$(rss_kb "$SERVER_PID" || echo 0)" <<'EOF'
import json, sys
d, r, s = sys.argv[1:4]
rc, bg, rss0, rss1, hwm, cpu0, cpu1, settle, nbytes, nsamples, alive, series, anon0, anon1 = map(float, sys.argv[4:18])
load = json.load(open(d + '/load.json'))
q = json.load(open(d + '/queries.json'))
sent = load.get('samples', 0)
run = dict(round=int(r), system=s, loadgen_exit=int(rc), bg_cpu_pct=bg, alive=bool(alive),
           ingest_per_s=load.get('samples_per_sec', 0), ingest_per_cpu_s=load.get('samples_per_server_cpu_sec', 0),
           with_compaction_per_cpu_s=sent / (cpu1 - cpu0) if cpu1 > cpu0 else 0,
           settle_s=settle, bytes_per_sample=nbytes / nsamples if nsamples else 0, disk_bytes=nbytes,
           disk_samples=nsamples, rss_start_kib=rss0, rss_kib=rss1, peak_rss_mib=hwm / 1024,
           rss_per_series=(rss1 - rss0) * 1024 / series, anon_per_series=(anon1 - anon0) * 1024 / series,
           disk_what=sys.argv[18].replace('_', ' '), load=load, queries=q,
           rss_after_queries_per_series=(float(sys.argv[19]) - rss0) * 1024 / series)
json.dump(run, open(d + '/run.json', 'w'))
EOF
  stop_server "$SERVER_PID"
  rm -rf "$dir/data"
  if [[ -n $RAW ]]; then cat "$dir/run.json" >>"$RAW" && echo >>"$RAW"; fi
  "$PY" - "$dir/run.json" "${NAME[$s]}" <<'EOF'
import json, sys
x, name = json.load(open(sys.argv[1])), sys.argv[2]
l, q = x['load'], x['queries']
print('round %d %-15s ingest %9.0f samples/s, %9.0f per CPU-s (%9.0f incl. compaction, settled in %5.1f s); '
      '%.3f B/sample (%d samples in %s); RSS %.0f B/series (anonymous %.0f; peak %.0f MiB); '
      'slowest write %.0f ms; query_range %.2f ms, sum by %.2f ms, of rate() %.2f ms'
      % (x['round'], name, x['ingest_per_s'], x['ingest_per_cpu_s'], x['with_compaction_per_cpu_s'], x['settle_s'],
         x['bytes_per_sample'], x['disk_samples'], x['disk_what'], x['rss_per_series'], x['anon_per_series'],
         x['peak_rss_mib'], l.get('max_ms', 0),
         q.get('range_ms', 0), q.get('sum_ms', 0), q.get('sum_rate_ms', 0)))
notes = []
if l.get('errors'): notes.append('%d requests failed (%d samples)' % (l['errors'], l['failed_samples']))
if l.get('retries'): notes.append('%d retries' % l['retries'])
if not x['alive']: notes.append('the server exited')
if x['bg_cpu_pct'] > 10: notes.append('other work used %.0f%% of the CPUs before the run' % x['bg_cpu_pct'])
for e in q.get('errors', []): notes.append('query ' + e)
for n in notes: print('  WARNING %s: %s' % (name, n))
EOF
}

# check_round ROUND: the answers of the three systems, side by side.
check_round() {
  "$PY" - "$tmp" "$1" "$SERIES" "$steps" <<'EOF'
import json, sys
tmp, r, series, steps = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
names = {'qcloud': 'qcloud-monitord', 'prom': 'Prometheus', 'vm': 'VictoriaMetrics'}
q = {s: json.load(open('%s/%s.%s/run.json' % (tmp, r, s)))['queries'] for s in names}
def warn(msg): print('  WARNING round %s: %s' % (r, msg))
for s, n in names.items():
    if q[s].get('series') != series: warn('%s counts %s series, %d were sent' % (n, q[s].get('series'), series))
    if q[s].get('samples') != series * steps:
        warn('%s counts %s samples, %d were sent' % (n, q[s].get('samples'), series * steps))
    if len(q[s].get('raw') or []) != steps:
        warn('%s returns %d raw points of one series, %d were sent' % (n, len(q[s].get('raw') or []), steps))

def rel(a, b):
    return abs(a - b) / max(abs(a), abs(b), 1e-300)

def compare(a, b):
    """(why they differ in shape or None, largest relative difference of values)"""
    if a is None or b is None:
        return 'no answer', 0
    if isinstance(a, dict):
        if sorted(a) != sorted(b):
            return '%d groups against %d' % (len(b), len(a)), 0
        return None, max((rel(a[k], b[k]) for k in a), default=0)
    if [t for t, _ in a] != [t for t, _ in b]:
        return '%d points against %d (or other timestamps)' % (len(b), len(a)), 0
    return None, max((rel(x[1], y[1]) for x, y in zip(a, b)), default=0)

# qcloud-monitord means to answer exactly as Prometheus does; so does
# VictoriaMetrics on raw values, while its rate() may differ a little by
# design (it uses the sample before the window instead of extrapolating).
for key, what in (('raw', 'the raw day of one series'), ('sum_by_raw', 'sum by (instance) of raw values'),
                  ('range', 'the timed query_range'), ('sum_by', 'the timed sum by'),
                  ('sum_by_rate', 'sum by (instance) (rate(node_cpu_seconds_total))')):
    for s in ('qcloud', 'vm'):
        shape, dev = compare(q['prom'].get(key), q[s].get(key))
        limit = 1e-2 if s == 'vm' and key in ('range', 'sum_by_rate') else 1e-9
        if shape:
            warn('%s: %s has %s of Prometheus' % (what, names[s], shape))
        elif dev > limit:
            warn('%s: %s differs from Prometheus by up to %.2g (relative)' % (what, names[s], dev))
        elif s == 'vm' and limit > 1e-9 and dev > 1e-9:
            print('  round %s: %s: %s differs from Prometheus by up to %.2g (relative; by design)'
                  % (r, what, names[s], dev))
EOF
}

systems=(qcloud prom vm)
for ((r = 1; r <= ROUNDS; r++)); do
  k=$(((r - 1) % 3))
  order=("${systems[@]:3-k}" "${systems[@]:0:3-k}")
  for s in "${order[@]}"; do run_system "$r" "$s"; done
  check_round "$r"
done

echo
"$PY" - "$tmp" "$ROUNDS" "$SERIES" "$SPAN" <<'EOF'
import json, statistics, sys
tmp, rounds, series, span = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
runs = {s: [json.load(open('%s/%d.%s/run.json' % (tmp, r, s))) for r in range(1, rounds + 1)] for s in ('qcloud', 'prom', 'vm')}
cpu_series = series // 100 * 32 + min(32, series % 100)  # node_cpu_seconds_total
def med(s, f):
    return statistics.median(f(x) for x in runs[s])
rows = [
    ('ingest, samples/s (wall)', 'higher', lambda x: x['ingest_per_s'], '{:,.0f}', None),
    ('ingest, samples per server CPU-s', 'higher', lambda x: x['ingest_per_cpu_s'], '{:,.0f}', ('vm', '>=')),
    ('  the same incl. compaction', 'higher', lambda x: x['with_compaction_per_cpu_s'], '{:,.0f}', None),
    ('bytes/sample on disk, compacted', 'lower', lambda x: x['bytes_per_sample'], '{:.3f}', ('vm', '<=')),
    ('RSS per active series, bytes', 'lower', lambda x: x['rss_per_series'], '{:,.0f}', (1024, '<=')),
    ('  of which anonymous memory', 'lower', lambda x: x['anon_per_series'], '{:,.0f}', None),
    ('  the same after the queries below', 'lower', lambda x: x.get('rss_after_queries_per_series', 0), '{:,.0f}', None),
    ('peak RSS, MiB', 'lower', lambda x: x['peak_rss_mib'], '{:,.0f}', None),
    ('slowest remote-write request, ms', 'lower', lambda x: x['load'].get('max_ms', 0), '{:.0f}', None),
    ('query_range %s, 1 series, ms' % span, 'lower', lambda x: x['queries'].get('range_ms', 0), '{:.2f}', None),
    ('sum by over %s series, ms' % format(series, ','), 'lower', lambda x: x['queries'].get('sum_ms', 0), '{:.2f}', None),
    ('sum by of rate() over %s series, ms' % format(cpu_series, ','), 'lower',
     lambda x: x['queries'].get('sum_rate_ms', 0), '{:.2f}', None),
    ('compaction after the load, s', 'lower', lambda x: x['settle_s'], '{:.1f}', None),
    ('failed requests', 'lower', lambda x: x['load'].get('errors', 0), '{:.0f}', None),
]
print('| figure (median of %d) | better | qcloud-monitord | Prometheus | VictoriaMetrics | qcloud/Prom | qcloud/VM | target |' % rounds)
print('|---|---|--:|--:|--:|--:|--:|---|')
for name, better, f, fmt, target in rows:
    v = {s: med(s, f) for s in runs}
    ratio = lambda b: '%.2f' % (v['qcloud'] / v[b]) if v[b] else '-'
    t = ''
    if target:
        ref, op = target
        limit = v[ref] if isinstance(ref, str) else ref
        ok = v['qcloud'] >= limit if op == '>=' else v['qcloud'] <= limit
        t = '%s %s: %s' % (op, 'VM' if isinstance(ref, str) else '%s B' % ref, 'met' if ok else 'MISSED')
    print('| %s | %s | %s | %s | %s | %s | %s | %s |' % (name, better, fmt.format(v['qcloud']), fmt.format(v['prom']),
                                                       fmt.format(v['vm']), ratio('prom'), ratio('vm'), t))
EOF
echo
echo "# total $((SECONDS - t0)) s"
