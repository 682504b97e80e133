# Sourced by compare.sh (not run): start qcloud-monitord, Prometheus and
# VictoriaMetrics pinned to one CPU on free 127.0.0.1 ports, stop them by
# PID (also on errors and Ctrl-C), wait until each has compacted what it
# was sent, and measure it: bytes per sample on disk, RSS, query latency.
# The caller sets SCRIPT, SERVER_CPU, CLIENT_CPU, MONITORD, PROMETHEUS and
# VICTORIA before sourcing this file.
# shellcheck shell=bash disable=SC2034  # SERVER_PID, SERVER_PORT: results for the caller

PY=/usr/bin/python3
tmp=$(mktemp -d "${TMPDIR:-/tmp}/monitor-bench.XXXXXX")
PIDS=()        # servers started and not yet stopped
CLIENT_PID=""  # the loadgen or query client, while it runs

die() { echo "$SCRIPT: $*" >&2; exit 1; }

mon_cleanup() {
  local pid
  if [[ -n $CLIENT_PID ]]; then
    kill -TERM "$CLIENT_PID" 2>/dev/null || true
    wait "$CLIENT_PID" 2>/dev/null || true
  fi
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  PIDS=()
  rm -rf "$tmp"
}
trap mon_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

for t in taskset curl "$PY"; do command -v "$t" >/dev/null || die "missing $t"; done

forget_pid() {
  local keep=() p
  for p in "${PIDS[@]}"; do
    if [[ $p != "$1" ]]; then keep+=("$p"); fi
  done
  PIDS=("${keep[@]}")
}

stop_server() {  # PID: SIGTERM, then SIGKILL after 10 s
  local pid=$1
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  forget_pid "$pid"
}

# run_client OUT ERR CMD...: CMD in the background (so that a signal's trap
# runs at once and cleanup can stop it), stdout/stderr to files; its status.
run_client() {
  local out=$1 err=$2 rc=0
  shift 2
  "$@" >"$out" 2>"$err" &
  CLIENT_PID=$!
  wait "$CLIENT_PID" || rc=$?
  CLIENT_PID=""
  return "$rc"
}

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# wait_http PID URL EXPECT: until URL answers 200 with a body containing
# EXPECT; fails if PID exits or 60 s pass.
wait_http() {
  for _ in $(seq 600); do
    kill -0 "$1" 2>/dev/null || return 1
    if curl -sf --max-time 2 "$2" 2>/dev/null | grep -q "$3"; then return 0; fi
    sleep 0.1
  done
  return 1
}

# Sum of the samples of /metrics whose "name{labels}" matches the ERE.
metric() {  # PORT ERE
  curl -sf --max-time 30 "http://127.0.0.1:$1/metrics" |
    awk -v re="$2" '!/^#/ { k = $0; sub(/[ \t]+[^ \t]+$/, "", k); if (k ~ ("^(" re ")$")) { s += $NF; n++ } }
                    END { if (n) printf "%.0f\n", s; else print "" }'
}

cpu_seconds() { awk -v hz="$(getconf CLK_TCK)" '{ sub(/.*\) /, ""); printf "%.2f\n", ($12 + $13) / hz }' "/proc/$1/stat"; }
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
anon_kb() { awk '/^RssAnon:/ { print $2 }' "/proc/$1/status"; }
hwm_kb() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"; }

# Busy share (%) of CPUs (a list like 0,1) over SECONDS, from /proc/stat:
# other work on this machine while we measure.
cpu_busy() {  # CPULIST SECONDS
  local a b
  a=$(grep -E '^cpu[0-9]+ ' /proc/stat)
  sleep "$2"
  b=$(grep -E '^cpu[0-9]+ ' /proc/stat)
  awk -v cpus=",$1," 'NR == FNR { for (i = 2; i <= 9; i++) a[$1, i] = $i; next }
    index(cpus, "," substr($1, 4) ",") {
      for (i = 2; i <= 9; i++) { d = $i - a[$1, i]; tot += d; if (i == 5 || i == 6) idle += d }
    }
    END { printf "%.0f", (tot > 0 ? 100 * (tot - idle) / tot : 0) }' <(echo "$a") <(echo "$b")
}

# --- the three systems: start_X DIR sets SERVER_PID and SERVER_PORT -------

start_qcloud() {
  local dir=$1 pid port=""
  taskset -c "$SERVER_CPU" "$MONITORD" --listen 127.0.0.1:0 --data-dir "$dir/data" --compact-every 1s \
    >"$dir/server.out" 2>"$dir/server.err" &
  pid=$!
  PIDS+=("$pid")
  for _ in $(seq 600); do
    port=$(sed -n 's/^qcloud-monitord listening on 127\.0\.0\.1:\([0-9][0-9]*\).*/\1/p' "$dir/server.out" | head -n1)
    if [[ -n $port ]]; then break; fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if [[ -z $port ]]; then
    cat "$dir/server.out" "$dir/server.err" >&2
    die "qcloud-monitord did not print 'qcloud-monitord listening on 127.0.0.1:PORT'"
  fi
  SERVER_PID=$pid SERVER_PORT=$port
}

start_prom() {
  local dir=$1 pid port
  printf 'global:\n  scrape_interval: 1m\nscrape_configs: []\n' >"$dir/prometheus.yml"
  for _ in 1 2 3; do
    port=$(free_port)
    taskset -c "$SERVER_CPU" "$PROMETHEUS" --config.file="$dir/prometheus.yml" --storage.tsdb.path="$dir/data" \
      --web.listen-address="127.0.0.1:$port" --web.enable-remote-write-receiver >"$dir/server.out" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    if wait_http "$pid" "http://127.0.0.1:$port/-/ready" Ready; then
      SERVER_PID=$pid SERVER_PORT=$port
      return 0
    fi
    stop_server "$pid"
  done
  tail -n 20 "$dir/server.out" >&2
  die "Prometheus did not start"
}

start_vm() {
  local dir=$1 pid port
  for _ in 1 2 3; do
    port=$(free_port)
    # The rollup result cache off: the same query repeated must not be
    # answered from a cache (Prometheus and qcloud-monitord have none).
    taskset -c "$SERVER_CPU" "$VICTORIA" -httpListenAddr="127.0.0.1:$port" -storageDataPath="$dir/data" \
      -search.disableCache >"$dir/server.out" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    if wait_http "$pid" "http://127.0.0.1:$port/health" OK; then
      SERVER_PID=$pid SERVER_PORT=$port
      return 0
    fi
    stop_server "$pid"
  done
  tail -n 20 "$dir/server.out" >&2
  die "VictoriaMetrics did not start"
}

# --- settle_X PORT DIR: until everything sent is compacted; prints seconds --

# Polls STATE_CMD every second until it prints the same thing 3 times in a
# row (and, with a 3rd argument, DONE_CMD succeeds); gives up after 300 s.
poll_stable() {  # STATE_CMD [DONE_CMD]
  local last="" same=0 s t0=$SECONDS
  while ((SECONDS - t0 < 300)); do
    s=$(eval "$1")
    if [[ $s == "$last" ]] && { [[ -z ${2:-} ]] || eval "$2"; }; then
      same=$((same + 1))
      if ((same >= 2)); then return 0; fi
    else
      same=0
    fi
    last=$s
    sleep 1
  done
  echo "  (did not settle in 300 s: $last)" >&2
}

settle_qcloud() {  # its --compact-every 1s cuts the head and merges blocks; wait until both stop
  local port=$1
  poll_stable "echo \$(metric $port qcloud_monitor_compactions_total) \$(metric $port qcloud_monitor_merges_total) \$(metric $port qcloud_monitor_head_samples)" \
    "qcloud_idle $port"
}

# qcloud_idle PORT: /metrics answered and no compaction runs (a build from
# before the qcloud_monitor_compacting gauge counts as idle when it answers).
qcloud_idle() {
  local out c
  out=$(curl -sf --max-time 30 "http://127.0.0.1:$1/metrics") || return 1
  c=$(awk '$1 == "qcloud_monitor_compacting" { print $2 }' <<<"$out")
  [[ ${c:-0} == 0 ]]
}

settle_prom() {  # head compaction (head > 3 h) and block merges run on their own
  local port=$1 dir=$2
  poll_stable "ls '$dir/data'; echo \$(metric $port prometheus_tsdb_head_min_time)" \
    "! ls '$dir/data' | grep -q tmp"
}

settle_vm() {  # flush raw rows into parts, then merge every partition's parts
  local port=$1
  curl -sf --max-time 120 "http://127.0.0.1:$port/internal/force_flush" >/dev/null
  curl -sf --max-time 120 "http://127.0.0.1:$port/internal/force_merge" >/dev/null
  poll_stable "echo \$(metric $port 'vm_parts[{].*') \$(metric $port 'vm_active_merges[{].*|vm_active_force_merges')" \
    "[[ \$(metric $port 'vm_active_merges[{].*|vm_active_force_merges') == 0 ]]"
}

# --- disk_X PORT DIR: "BYTES SAMPLES WHAT" of the compacted data on disk ---

disk_qcloud() {  # its blocks (index included); the head's last hours are not in them
  local port=$1 bytes samples
  bytes=$(metric "$port" qcloud_monitor_block_bytes)
  samples=$(metric "$port" qcloud_monitor_block_samples)
  if [[ -z $samples ]]; then  # before the gauge existed: all taken minus the head's
    samples=$(($(metric "$port" qcloud_monitor_samples_appended_total) - $(metric "$port" qcloud_monitor_head_samples)))
  fi
  echo "$bytes $samples $(metric "$port" qcloud_monitor_blocks)_blocks"
}

disk_prom() {  # its blocks: every file in them (chunks, index, meta, tombstones)
  "$PY" - "$2/data" <<'EOF'
import json, os, sys
root, size, samples, hours = sys.argv[1], 0, 0, []
for b in os.listdir(root):
    meta = os.path.join(root, b, 'meta.json')
    if 'tmp' in b or not os.path.exists(meta):
        continue
    m = json.load(open(meta))
    samples += m['stats']['numSamples']
    hours.append((m['maxTime'] - m['minTime']) / 3.6e6)
    for d, _, files in os.walk(os.path.join(root, b)):
        size += sum(os.path.getsize(os.path.join(d, f)) for f in files)
print(size, samples, '%d_blocks_(%s_h)' % (len(hours), '+'.join('%.0f' % h for h in sorted(hours, reverse=True))))
EOF
}

disk_vm() {  # every part (data and index) over the rows in data parts
  local port=$1
  echo "$(metric "$port" 'vm_data_size_bytes[{].*') $(metric "$port" 'vm_rows[{]type="storage/.*')" \
    "$(metric "$port" 'vm_parts[{]type="storage/.*')_parts"
}

# run_queries PORT FIRST_MS END_MS INTERVAL_MS RANGE_RUNS SUM_RUNS OUT: the
# answers compare.sh checks across systems, then the timed queries, as one
# JSON object in OUT. Each timed query runs once untimed first; the times
# are the client's, from sending the request to the last byte of the answer
# (HTTP/1.1 keep-alive, one connection).
run_queries() {
  run_client "$7" "$7.err" taskset -c "$CLIENT_CPU" "$PY" "$tmp/queries.py" "$@"
}
cat >"$tmp/queries.py" <<'EOF'
import http.client, json, statistics, sys, time, urllib.parse
port, first_ms, end_ms, interval_ms, range_runs, sum_runs = map(int, sys.argv[1:7])
conn = http.client.HTTPConnection('127.0.0.1', port, timeout=300)
first, end, step = first_ms / 1000, end_ms / 1000, interval_ms / 1000
span = (end_ms - first_ms) // 1000 + interval_ms // 1000
ONE = 'node_cpu_seconds_total{instance="host-0000:9100",cpu="0",mode="user"}'
RANGE = 'rate(%s[5m])' % ONE
# Over every series. (rate() of {job="node"} is refused by Prometheus: it
# drops the metric names, and then e.g. the receive and transmit byte
# counters of a device have the same labels; last_over_time keeps them.)
SUM = 'sum by (instance) (last_over_time({job="node"}[5m]))'
SUM_RATE = 'sum by (instance) (rate(node_cpu_seconds_total[5m]))'

def get(path, **params):
    t0 = time.perf_counter()
    conn.request('GET', path + '?' + urllib.parse.urlencode(params))
    r = conn.getresponse()
    body = r.read()
    dt = time.perf_counter() - t0
    try:
        j = json.loads(body)
    except ValueError:
        j = {'status': 'error', 'error': body[:200].decode(errors='replace')}
    if r.status != 200 or j.get('status') != 'success':
        j = {'error': '%s %s' % (r.status, j.get('error', ''))}
    return j, dt

def result(j):
    return j.get('data', {}).get('result', [])

def by_instance(j):
    return {s['metric'].get('instance', ''): float(s['value'][1]) for s in result(j)}

def points(j):
    return [[float(t), float(v)] for t, v in result(j)[0]['values']] if result(j) else []

def scalar(j):
    return float(result(j)[0]['value'][1]) if result(j) else 0

out, errors = {}, []
def check(name, j, f):
    if 'error' in j:
        errors.append('%s: %s' % (name, j['error']))
        out[name] = None
    else:
        out[name] = f(j)

j, _ = get('/api/v1/query', query='count({job="node"})', time=end)
check('series', j, lambda j: int(scalar(j)))
# Samples counted metric by metric (count_over_time drops the name too).
names = get('/api/v1/label/__name__/values')[0].get('data', [])
total = 0
for n in names:
    j, _ = get('/api/v1/query', query='sum(count_over_time({__name__="%s",job="node"}[%ds]))' % (n, span), time=end)
    if 'error' in j:
        errors.append('count_over_time of %s: %s' % (n, j['error']))
    total += scalar(j) if 'error' not in j else 0
out['samples'] = int(total)
j, _ = get('/api/v1/query_range', query=ONE, start=first, end=end, step=step)
check('raw', j, points)
j, _ = get('/api/v1/query', query='sum by (instance) ({job="node"})', time=end)
check('sum_by_raw', j, by_instance)
j, _ = get('/api/v1/query_range', query=RANGE, start=first + 300, end=end, step=step)
check('range', j, points)
j, _ = get('/api/v1/query', query=SUM, time=end)
check('sum_by', j, by_instance)
j, _ = get('/api/v1/query', query=SUM_RATE, time=end)
check('sum_by_rate', j, by_instance)

def timed(runs, path, **params):
    times = []
    for i in range(runs + 1):  # the first one untimed
        j, dt = get(path, **params)
        if 'error' in j:
            errors.append('%s: %s' % (params['query'], j['error']))
        if i:
            times.append(dt)
    return 1000 * statistics.median(times)

out['range_ms'] = timed(range_runs, '/api/v1/query_range', query=RANGE, start=first + 300, end=end, step=step)
out['sum_ms'] = timed(sum_runs, '/api/v1/query', query=SUM, time=end)
out['sum_rate_ms'] = timed(sum_runs, '/api/v1/query', query=SUM_RATE, time=end)
out['errors'] = errors
print(json.dumps(out))
EOF
