#!/usr/bin/env bash
# Side-by-side macro benchmark: memcached vs qcloud-kvd under the same load
# generator (kv_loadgen), the same workloads and the same CPU pinning.
#
#   bench/kv/compare.sh [--kvd PATH] [--limit PATH] [--loadgen PATH] [--duration S]
#                       [--server-cpu N] [--client-cpu LIST] [--client-threads T] [--quick]
#                       [--repeat N] [--only NAME,...] [--raw FILE]
#
# For each workload: start a fresh memcached pinned to --server-cpu, run the
# loadgen pinned to --client-cpu, stop memcached; then the same with
# qcloud-kvd (and, with --limit, the no-storage reference between them).
# Without --kvd only memcached runs. Every server is started by
# this script and stopped by PID (also on Ctrl-C / errors, via a trap).
#
#   --kvd PATH       qcloud-kvd binary; run as
#                    PATH --listen 127.0.0.1:0 --memory 1024 --threads 1
#                    and expected to print (and flush) on stdout
#                    "qcloud-kvd listening on 127.0.0.1:PORT" once it accepts
#   --limit PATH     kv_null_server (build/release/bench/kv/kv_null_server):
#                    the no-storage limit of this machine, kv_loadgen's
#                    protocol on core's connection loop answering every get
#                    with the expected value and storing nothing. Rows
#                    "limit"; the kvd/limit column is qcloud-kvd's share of it
#   --loadgen PATH   kv_loadgen binary (default: compile kv_loadgen.cc beside
#                    this script with ${CXX:-g++} into a temporary directory)
#   --duration S     measured seconds per run (default 10, warmup 2)
#   --quick          smoke run: 2 s measured, 1 s warmup
#   --server-cpu N   CPU for the server (default 0)
#   --client-cpu L   CPU(s) for the loadgen, a taskset list (default 1)
#   --client-threads T  loadgen threads (default 1; use more only with more
#                    client CPUs)
#   --repeat N       run each workload N times (memcached and kvd taking
#                    turns) and report the run with the median ops/s; the
#                    "runs" column gives N and the (max - min) / median spread
#   --only A,B       run only these workloads (names as in the table)
#   --raw FILE       append every loadgen JSON result, tagged, to FILE
#   MEMCACHED=path   memcached binary (default: memcached on PATH)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
KVD="" LIMIT="" LOADGEN="" DURATION="" WARMUP="" SERVER_CPU=0 CLIENT_CPU=1 CLIENT_THREADS=1 QUICK=0 ONLY="" RAW="" REPEAT=1
MEMCACHED=${MEMCACHED:-memcached}
KEYS=100000 VALUE_SIZE=64 KEY_SIZE=16

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'; }
while [[ $# -gt 0 ]]; do
  case $1 in
    --kvd) KVD=$2; shift 2 ;;
    --limit) LIMIT=$2; shift 2 ;;
    --loadgen) LOADGEN=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --server-cpu) SERVER_CPU=$2; shift 2 ;;
    --client-cpu) CLIENT_CPU=$2; shift 2 ;;
    --client-threads) CLIENT_THREADS=$2; shift 2 ;;
    --quick) QUICK=1; shift ;;
    --only) ONLY=$2; shift 2 ;;
    --repeat) REPEAT=$2; shift 2 ;;
    --raw) RAW=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "compare.sh: unknown argument $1" >&2; usage >&2; exit 1 ;;
  esac
done
if [[ -z $DURATION ]]; then
  if ((QUICK)); then DURATION=2 WARMUP=1; else DURATION=10 WARMUP=2; fi
else
  WARMUP=$( ((QUICK)) && echo 1 || echo 2)
fi

# Workloads: name|loadgen arguments (all: 64 B values, 16 B keys, 100k keys).
WORKLOADS=(
  "get90-c64-p1|--get-ratio 0.9 --connections 64 --pipeline 1 --prefill"
  "set-c64-p1|--get-ratio 0 --connections 64 --pipeline 1"
  "get90-c16-p16|--get-ratio 0.9 --connections 16 --pipeline 16 --prefill"
  "set-c16-p16|--get-ratio 0 --connections 16 --pipeline 16"
  "get100-c64-p1|--get-ratio 1 --connections 64 --pipeline 1 --prefill"
  "get100-c16-p16|--get-ratio 1 --connections 16 --pipeline 16 --prefill"
  "zipf99-get90-c64-p1|--dist zipf --zipf-theta 0.99 --get-ratio 0.9 --connections 64 --pipeline 1 --prefill"
)

SCRIPT=compare.sh
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$here/lib.sh"

# run_one WORKLOAD SERVER ARGS: sets ROW to one tab-separated result row.
# (Not run in a $(...) subshell: the servers it starts must stay in PIDS.)
run_one() {
  local name=$1 server=$2 args=$3 out rc=0 bg
  # Other work on the (shared) CPUs right before the run; reported per row.
  bg=$(cpu_busy "$SERVER_CPU,$CLIENT_CPU" 0.5)
  start_server "$server"
  # shellcheck disable=SC2086  # $args is a list of options
  run_client "$tmp/loadgen.out" "$tmp/loadgen.err" \
    taskset -c "$CLIENT_CPU" "$LOADGEN" --server "127.0.0.1:$SERVER_PORT" --server-pid "$SERVER_PID" --json \
    --duration "$DURATION" --warmup "$WARMUP" --keys "$KEYS" --value-size "$VALUE_SIZE" --key-size "$KEY_SIZE" \
    --threads "$CLIENT_THREADS" $args || rc=$?
  out=$(cat "$tmp/loadgen.out")
  local alive=1
  kill -0 "$SERVER_PID" 2>/dev/null || alive=0
  stop_server "$SERVER_PID"
  if [[ -s $tmp/loadgen.err ]]; then sed "s/^/  [$name $server] /" "$tmp/loadgen.err" >&2; fi
  if ((!alive)); then echo "  [$name $server] server exited during the run" >&2; fi
  if [[ -z $out ]]; then
    ROW=$(printf '%s\t%s\tFAILED (loadgen exit %d)' "$name" "$server" "$rc")
    echo "  [$name $server] FAILED (loadgen exit $rc)" >&2
    return 0
  fi
  if [[ -n $RAW ]]; then
    echo "{\"workload\":\"$name\",\"server_name\":\"$server\",${out#\{}" >>"$RAW"
  fi
  ROW=$(printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s' "$name" "$server" \
    "$(jget ops_per_sec "$out")" "$(jget p50_us "$out")" "$(jget p99_us "$out")" "$(jget p999_us "$out")" \
    "$(jget hit_ratio "$out")" "$(jget errors "$out")" \
    "$(jget server_cores_busy_pct "$out")" "$(jget client_cores_busy_pct "$out")" "$bg")
  echo "  [$name $server] $(jget ops_per_sec "$out") ops/s, p99 $(jget p99_us "$out") us, errors $(jget errors "$out")" >&2
}

echo "# kv compare: $(date -u +%Y-%m-%dT%H:%MZ), $(uname -sr), $(nproc) CPUs" \
     "($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1))"
echo "# memcached: $("$MEMCACHED" -V 2>&1 | head -n1); qcloud-kvd: ${KVD:-not run}; no-storage limit: ${LIMIT:-not run}"
echo "# server on CPU $SERVER_CPU, loadgen ($CLIENT_THREADS thread(s)) on CPU $CLIENT_CPU; ${DURATION} s measured after ${WARMUP} s warmup;" \
     "$KEYS keys x $KEY_SIZE B, $VALUE_SIZE B values"
echo

servers=(memcached)
if [[ -n $LIMIT ]]; then servers+=(limit); fi
if [[ -n $KVD ]]; then servers+=(qcloud-kvd); fi
rows=() names=()
for w in "${WORKLOADS[@]}"; do
  name=${w%%|*} args=${w#*|}
  if [[ -n $ONLY && ",$ONLY," != *",$name,"* ]]; then continue; fi
  names+=("$name")
  for ((rep = 1; rep <= REPEAT; rep++)); do
    echo "running $name ($rep/$REPEAT): $args" >&2
    for server in "${servers[@]}"; do
      run_one "$name" "$server" "$args"
      rows+=("$ROW")
    done
  done
done
[[ ${#names[@]} -gt 0 ]] || die "no workload matches --only $ONLY"

# Table. server/client CPU: share of that CPU not idle during the measured
# window (/proc/stat, so it includes softirq work and anything else running
# there); '*' marks a client CPU >= 95% busy: that row may be limited by the
# loadgen, not the server. bg: both CPUs' busy share in the 0.5 s before the
# server started (other work on the machine; should be ~0).
echo
printf '| workload | server | ops/s | p50 µs | p99 µs | p999 µs | hits | errors | server CPU | client CPU | bg | runs | kvd/mc ops/s | kvd/mc p99 | kvd/limit ops/s |\n'
printf '|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n'
declare -A mc_ops mc_p99 limit_ops
for name in "${names[@]}"; do for server in "${servers[@]}"; do
  # The successful runs of this pair, by ops/s; report the median one.
  runs=$(for r in "${rows[@]}"; do
           IFS=$'\t' read -r n s o _ <<<"$r"
           if [[ $n == "$name" && $s == "$server" && $o != FAILED* ]]; then echo "$r"; fi
         done | sort -t$'\t' -k3,3g)
  if [[ -z $runs ]]; then
    printf '| %s | %s | FAILED | | | | | | | | | | | | |\n' "$name" "$server"
    continue
  fi
  count=$(wc -l <<<"$runs")
  r=$(sed -n "$(((count + 1) / 2))p" <<<"$runs")
  IFS=$'\t' read -r _ _ ops p50 p99 p999 hit err sbusy cbusy bg <<<"$r"
  nruns=$count
  if ((count > 1)); then
    nruns="$count ($(awk -v lo="$(head -n1 <<<"$runs" | cut -f3)" -v hi="$(tail -n1 <<<"$runs" | cut -f3)" \
                       -v m="$ops" 'BEGIN { printf "%.0f%%", (m > 0 ? 100 * (hi - lo) / m : 0) }'))"
  fi
  if ((count < REPEAT)); then nruns="$nruns, $((REPEAT - count)) failed"; fi
  ratio_ops="" ratio_p99="" ratio_limit=""
  if [[ $server == memcached ]]; then
    mc_ops[$name]=$ops mc_p99[$name]=$p99
  elif [[ $server == limit ]]; then
    limit_ops[$name]=$ops
  else
    if [[ -n ${mc_ops[$name]:-} ]]; then
      ratio_ops=$(awk -v a="$ops" -v b="${mc_ops[$name]}" 'BEGIN { if (b > 0) printf "%.2f", a / b }')
      ratio_p99=$(awk -v a="$p99" -v b="${mc_p99[$name]}" 'BEGIN { if (b > 0) printf "%.2f", a / b }')
    fi
    if [[ -n ${limit_ops[$name]:-} ]]; then
      ratio_limit=$(awk -v a="$ops" -v b="${limit_ops[$name]}" 'BEGIN { if (b > 0) printf "%.3f", a / b }')
    fi
  fi
  awk -v n="$name" -v s="$server" -v ops="$ops" -v p50="$p50" -v p99="$p99" -v p999="$p999" -v hit="$hit" \
      -v err="$err" -v sb="$sbusy" -v cb="$cbusy" -v bg="$bg" -v ro="$ratio_ops" -v rp="$ratio_p99" \
      -v runs="$nruns" -v rl="$ratio_limit" 'BEGIN {
    hits = (n ~ /^set/) ? "-" : sprintf("%.1f%%", 100 * hit)
    printf "| %s | %s | %.0f | %.0f | %.0f | %.0f | %s | %d | %.0f%% | %.0f%%%s | %d%% | %s | %s | %s | %s |\n",
           n, s, ops, p50, p99, p999, hits, err, sb, cb, (cb >= 95 ? "*" : ""), bg, runs, ro, rp, rl }'
done; done
