#!/usr/bin/env bash
# qcloud-kvd's /metrics, read by Prometheus' own tools: the page passes
# `promtool check metrics` (parser and lint), its counters agree with the
# traffic the test sent and with memcached's `stats`, and a real Prometheus
# server scrapes it. kvd and Prometheus run on 127.0.0.1, stopped by PID.
#   kv_metrics.sh <qcloud-kvd>
set -euo pipefail
kvd=$1
work=$(mktemp -d /tmp/qcloud-kvmetrics-XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; echo "--- kvd"; cat "$work/kvd.out" "$work/kvd.err" 2>/dev/null; exit 1; }

"$kvd" --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 --memory 64 --threads 2 \
  >"$work/kvd.out" 2>"$work/kvd.err" &
pids+=($!)
for _ in $(seq 1 100); do
  mc_port=$(sed -n 's/^qcloud-kvd listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$work/kvd.out")
  http_port=$(sed -n 's|^qcloud-kvd metrics on http://127\.0\.0\.1:\([0-9]*\)/metrics|\1|p' "$work/kvd.out")
  [[ -n $mc_port && -n $http_port ]] && break
  sleep 0.1
done
[[ -n ${mc_port:-} && -n ${http_port:-} ]] || fail "kvd did not print both addresses"

# Traffic with known counts: 5 sets, 3 hits, 2 misses, 1 delete.
memc() {
  exec 3<>"/dev/tcp/127.0.0.1/$mc_port"
  printf '%b' "$1" >&3
  timeout 5 head -c "$2" <&3
  exec 3<&-
}
for i in 1 2 3 4 5; do
  [[ $(memc "set k$i 0 0 1\r\nv\r\n" 8) == $'STORED\r' ]] || fail "set k$i"
done
# 3 hits of 22 bytes, 2 misses of 5, DELETED: 85 bytes.
memc 'get k1\r\nget k2\r\nget k3\r\nget nope1\r\nget nope2\r\ndelete k5\r\n' 85 >/dev/null
exec 3<>"/dev/tcp/127.0.0.1/$mc_port"
printf 'stats\r\n' >&3
stats=$(timeout 5 sed -n '/^END/q;p' <&3 | tr -d '\r')
exec 3<&-

curl -sf --max-time 5 "http://127.0.0.1:$http_port/metrics" >"$work/metrics.txt" \
  || fail "GET /metrics"
# promtool exits non-zero on a parse error and on lint problems (a counter
# without _total, a missing HELP, ...).
promtool check metrics <"$work/metrics.txt" >"$work/promtool.out" 2>&1 \
  || { cat "$work/promtool.out"; fail "promtool check metrics"; }
echo "ok: promtool check metrics: $(grep -c '^# TYPE' "$work/metrics.txt") families, no problems"

metric() { awk -v m="$1" '$1 == m { print $2 }' "$work/metrics.txt"; }
stat() { sed -n "s/^STAT $1 //p" <<<"$stats"; }
check() {  # metric expected
  local got; got=$(metric "$1")
  [[ $got == "$2" ]] || fail "$1 is '$got', want $2"
}
check qcloud_kv_cmd_set_total 5
check qcloud_kv_get_hits_total 3
check qcloud_kv_get_misses_total 2
check qcloud_kv_delete_hits_total 1
check qcloud_kv_items 4
check qcloud_kv_threads 2
# The rows both interfaces show agree (connections: the stats connection
# itself has closed since, so only totals are compared).
for pair in cmd_get:qcloud_kv_cmd_get_total curr_items:qcloud_kv_items \
            limit_maxbytes:qcloud_kv_memory_limit_bytes total_items:qcloud_kv_items_stored_total; do
  s=$(stat "${pair%%:*}") m=$(metric "${pair#*:}")
  [[ -n $s && $s == "$m" ]] || fail "stats ${pair%%:*}=$s but ${pair#*:}=$m"
done
echo "ok: counters match the traffic and memcached's stats"

# A real Prometheus scrapes it.
# Below the ephemeral range (interop_util.free_port): a port the kernel hands
# out for :0 may be taken by another test's outgoing connect before it is bound.
interop_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
free_port() { /usr/bin/python3 "$interop_dir/interop_util.py" free_port "$@"; }
prom_port=$(free_port)
cat >"$work/prometheus.yml" <<YML
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: qcloud-kvd
    static_configs:
      - targets: ["127.0.0.1:$http_port"]
YML
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/data" \
  --web.listen-address="127.0.0.1:$prom_port" >"$work/prom.log" 2>&1 &
pids+=($!)
query() { curl -sf --max-time 2 "http://127.0.0.1:$prom_port/api/v1/query" --data-urlencode "query=$1" || true; }
for _ in $(seq 1 60); do
  up=$(query 'up{job="qcloud-kvd"}')
  sets=$(query 'qcloud_kv_cmd_set_total{job="qcloud-kvd"}')
  if [[ $up == *'"value":['*',"1"]'* && $sets == *'"value":['*',"5"]'* ]]; then
    echo "ok: Prometheus scraped qcloud-kvd: $sets"
    exit 0
  fi
  sleep 0.5
done
echo "up: ${up:-}"; echo "sets: ${sets:-}"; tail -20 "$work/prom.log"
fail "Prometheus never saw qcloud_kv_cmd_set_total = 5"
