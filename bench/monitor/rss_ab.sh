#!/usr/bin/env bash
# A/B of qcloud-monitord builds on memory and CPU: the same 24 h remote-write
# load as compare.sh (built once, sent to each), one server at a time,
# alternating builds. Faster than compare.sh (no peers, no queries) for
# comparing two builds of qcloud-monitord only.
#
#   bench/monitor/rss_ab.sh [--rounds 3] [--series 10000] [--span 24h] [--interval 60s]
#       [--loadgen PATH] MONITORD...
#   e.g. bench/snapshot.sh /tmp/ab/before build/release examples/qcloud-monitord/qcloud-monitord
#        (after the change) bench/snapshot.sh /tmp/ab/after ...
#        bench/monitor/rss_ab.sh /tmp/ab/before/qcloud-monitord /tmp/ab/after/qcloud-monitord
#
# Per run: a fresh data directory and server (--compact-every 1s) on CPU 1,
# the load generator on CPU 0; RSS 1 s after start; the bodies sent; then it
# waits until cuts, merges and head samples stop changing with no
# compaction running, 2 s more, and
# prints per series (--series) the growth of VmRSS and RssAnon since start,
# the head's samples, the chunk pool's resident bytes and the server's CPU
# ticks (utime + stime) over the whole load and compaction.
set -euo pipefail
ROUNDS=3 SERIES=10000 SPAN=24h INTERVAL=60s LOADGEN=build/release/bench/monitor/monitor_loadgen PORT=19392
while [[ $# -gt 0 && $1 == --* ]]; do
  case $1 in
    --rounds) ROUNDS=$2; shift 2 ;;
    --series) SERIES=$2; shift 2 ;;
    --span) SPAN=$2; shift 2 ;;
    --interval) INTERVAL=$2; shift 2 ;;
    --loadgen) LOADGEN=$2; shift 2 ;;
    *) sed -n '2,18p' "$0"; exit 2 ;;
  esac
done
[[ $# -ge 1 ]] || { sed -n '2,18p' "$0"; exit 2; }
WORK=$(mktemp -d /tmp/qcloud-rss-ab.XXXXXX)
SERVER_PID=
cleanup() {
  [[ -n $SERVER_PID ]] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT
"$LOADGEN" --series "$SERIES" --span "$SPAN" --interval "$INTERVAL" --batch 5000 --write-bodies "$WORK/bodies" >/dev/null
metric() { curl -sf --max-time 5 "http://127.0.0.1:$PORT/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }
status() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }
for round in $(seq "$ROUNDS"); do
  for m in "$@"; do
    rm -rf "$WORK/d"
    taskset -c 1 "$m" --listen "127.0.0.1:$PORT" --data-dir "$WORK/d" --compact-every 1s >"$WORK/log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/metrics" >/dev/null && break; sleep 0.1; done
    sleep 1
    rss0=$(status $SERVER_PID VmRSS) anon0=$(status $SERVER_PID RssAnon)
    cpu0=$(awk '{ print $14 + $15 }' /proc/$SERVER_PID/stat)
    timeout 600 taskset -c 0 "$LOADGEN" --url "http://127.0.0.1:$PORT/api/v1/write" --bodies "$WORK/bodies" >/dev/null
    prev=
    # Settled: no cut, merge or head change over a second, and no
    # compaction running (a merge of a day's blocks takes seconds).
    settled=
    for _ in $(seq 120); do
      cur="$(metric qcloud_monitor_compactions_total) $(metric qcloud_monitor_merges_total) $(metric qcloud_monitor_head_samples)"
      if out=$(curl -sf --max-time 5 "http://127.0.0.1:$PORT/metrics"); then
        busy=$(awk '$1 == "qcloud_monitor_compacting" { print $2 }' <<<"$out")  # empty from builds before the gauge
        [[ $cur == "$prev" && ${busy:-0} == 0 ]] && settled=1 && break
      fi
      prev=$cur
      sleep 1
    done
    [[ -n $settled ]] || echo "round $round $m: did not settle in 120 s (measured anyway)" >&2
    sleep 2
    rss1=$(status $SERVER_PID VmRSS) anon1=$(status $SERVER_PID RssAnon)
    cpu1=$(awk '{ print $14 + $15 }' /proc/$SERVER_PID/stat)
    printf 'round %d %s: RSS %d B/series, anonymous %d B/series, head samples %s, chunk pool %s B, CPU %d ticks, peak %d kB\n' \
      "$round" "$m" $(((rss1 - rss0) * 1024 / SERIES)) $(((anon1 - anon0) * 1024 / SERIES)) \
      "$(metric qcloud_monitor_head_samples)" "$(metric qcloud_monitor_chunk_memory_bytes || echo -)" \
      $((cpu1 - cpu0)) "$(status $SERVER_PID VmHWM)"
    kill "$SERVER_PID"
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
  done
done
