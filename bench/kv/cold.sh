#!/usr/bin/env bash
# Cold-tier macro benchmark: qcloud-kvd holding data 4x its memory budget
# (the rest on its SSD tier, in a directory on local disk) against the same
# workload all in memory, and memcached at both budgets.
#
#   bench/kv/cold.sh [--kvd PATH] [--loadgen PATH] [--keys N] [--value-size B]
#                    [--memory MB] [--ref-memory MB] [--zipf-theta T]
#                    [--duration S] [--quick] [--repeat N] [--dir DIR]
#                    [--restart] [--drop-cache] [--server-cpu N] [--client-cpu N]
#
# Runs, each on a fresh server pinned to --server-cpu (loadgen on --client-cpu):
#   kvd-cold  qcloud-kvd --memory MB --threads 1 --ssd-dir DIR/kv-cold.*/runN
#             (--cold-after keeps its 7d default: only memory pressure sinks)
#   kvd-mem   qcloud-kvd --memory REF --threads 1: the all-in-memory reference
#   mc        memcached -m MB -t 1: what a plain cache keeps at that budget
#   mc-mem    memcached -m REF -t 1
# Each run loads every key (kv_loadgen --load-only: all must be STORED), reads
# every key back (--verify --duration 0: all must hit with the right value),
# then measures Zipf(T) 90% get / 10% set, 64 connections, pipeline 1, 16 B
# keys (kv_loadgen checks every hit byte for byte), reads the server's
# "stats" (and "stats cold"), and stops the server by PID (SIGTERM; a kvd with
# --ssd-dir saves memory to the tier then, so it gets 30 s before SIGKILL).
#
# Checks, on both kvd runs: load all STORED, verify all hit, measured run with
# no miss and no error, server alive after it, stats get_misses 0 and
# evictions 0, clean exit (status 0) on SIGTERM; on kvd-cold also
# curr_items + cold_items = keys, cold_full 0 and cold_errors 0. A failed
# check marks the row FAIL and the script exits 1. memcached rows are
# references: their misses at the small budget are the point, not a failure.
#
#   --kvd PATH       qcloud-kvd (default: build/release/examples/qcloud-kvd/
#                    qcloud-kvd in this repo)
#   --loadgen PATH   kv_loadgen (default: build/release/bench/kv/kv_loadgen in
#                    this repo if built, else compile kv_loadgen.cc with g++)
#   --keys N         key count (default 262144)
#   --value-size B   value bytes (default 1000; data = keys x (16 + B))
#   --memory MB      budget of kvd-cold and mc (default 64: data ~4x)
#   --ref-memory MB  budget of kvd-mem and mc-mem (default 1024)
#   --zipf-theta T   key popularity (default 0.99)
#   --duration S     measured seconds per run (default 15, after 3 s warmup)
#   --quick          smoke run: 3 s measured after 1 s warmup
#   --repeat N       N rounds of the four runs (taking turns); the table shows
#                    each config's median-ops/s run, "runs" gives the spread
#   --dir DIR        where the tier's directory goes (default ${TMPDIR:-/tmp});
#                    must be local disk, not tmpfs (warned). Removed at exit.
#   --restart        after kvd-cold's clean stop, start kvd again on the same
#                    directory and read every key back (all must hit)
#   --drop-cache     before kvd-cold's measured run, evict the tier's files
#                    from the page cache (fdatasync + fadvise DONTNEED via
#                    dd iflag=nocache; only those files), so that reads of
#                    items sunk before the run go to the device. Without it,
#                    the tier is usually still in the page cache (it was just
#                    written); the notes give the bytes read from the device.
#   --server-cpu N   CPU for the server (default 0)
#   --client-cpu N   CPU for the loadgen (default 1)
#   MEMCACHED=path   memcached binary (default: memcached on PATH)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
KVD="" LOADGEN="" KEYS=262144 VALUE_SIZE=1000 KEY_SIZE=16 MEMORY=64 REF_MEMORY=1024 THETA=0.99
DURATION="" WARMUP="" QUICK=0 REPEAT=1 DIR=${TMPDIR:-/tmp} RESTART=0 DROP_CACHE=0 SERVER_CPU=0 CLIENT_CPU=1
MEMCACHED=${MEMCACHED:-memcached}

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'; }
while [[ $# -gt 0 ]]; do
  case $1 in
    --kvd) KVD=$2; shift 2 ;;
    --loadgen) LOADGEN=$2; shift 2 ;;
    --keys) KEYS=$2; shift 2 ;;
    --value-size) VALUE_SIZE=$2; shift 2 ;;
    --memory) MEMORY=$2; shift 2 ;;
    --ref-memory) REF_MEMORY=$2; shift 2 ;;
    --zipf-theta) THETA=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --quick) QUICK=1; shift ;;
    --repeat) REPEAT=$2; shift 2 ;;
    --dir) DIR=$2; shift 2 ;;
    --restart) RESTART=1; shift ;;
    --drop-cache) DROP_CACHE=1; shift ;;
    --server-cpu) SERVER_CPU=$2; shift 2 ;;
    --client-cpu) CLIENT_CPU=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "cold.sh: unknown argument $1" >&2; usage >&2; exit 1 ;;
  esac
done
for v in KEYS VALUE_SIZE MEMORY REF_MEMORY REPEAT SERVER_CPU CLIENT_CPU; do
  if [[ ! ${!v} =~ ^[0-9]+$ ]] || [[ $v != *CPU && ${!v} == 0 ]]; then
    echo "cold.sh: bad ${v,,} '${!v}' (a whole number; > 0 except for CPUs)" >&2
    exit 1
  fi
done
if ((QUICK)); then WARMUP=1; else WARMUP=3; fi
if [[ -z $DURATION ]]; then DURATION=$( ((QUICK)) && echo 3 || echo 15); fi
if [[ -z $KVD ]]; then KVD=$repo/build/release/examples/qcloud-kvd/qcloud-kvd; fi
if [[ -z $LOADGEN && -x $repo/build/release/bench/kv/kv_loadgen ]]; then
  LOADGEN=$repo/build/release/bench/kv/kv_loadgen
fi
[[ -x $KVD ]] || { echo "cold.sh: qcloud-kvd not found at $KVD (build it or pass --kvd)" >&2; exit 1; }
[[ -d $DIR ]] || { echo "cold.sh: --dir $DIR is not a directory" >&2; exit 1; }

SCRIPT=cold.sh
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$here/lib.sh"

# The tier's directory, removed at exit after the servers are stopped (lib.sh's
# kv_cleanup stops them and removes $tmp; the tier may live elsewhere).
ssd_root=$(mktemp -d "$DIR/kv-cold.XXXXXX") || die "cannot create a directory in $DIR"
trap 'kv_cleanup; rm -rf "$ssd_root"' EXIT
fs_type=$(stat -f -c %T "$ssd_root")
case $fs_type in
  tmpfs|ramfs) echo "cold.sh: WARNING: $DIR is $fs_type: the cold tier would be in memory; use --dir on a disk" >&2 ;;
esac

start_kvd_with() {  # ARGS...: lib.sh's start_kvd, and say what started
  start_kvd "$@"
  echo "  qcloud-kvd $*: pid $SERVER_PID, port $SERVER_PORT, CPU $SERVER_CPU" >&2
}
start_mc() {  # MB
  start_memcached "$1"
  echo "  memcached -m $1: pid $SERVER_PID, port $SERVER_PORT, CPU $SERVER_CPU" >&2
}

# stop_pid PID LIMIT_S: SIGTERM, SIGKILL after LIMIT_S; sets STOP_RC (the
# server's exit status; "killed" if it needed SIGKILL) and STOP_S (seconds).
stop_pid() {
  local pid=$1 t0 rc=0 killed=0
  t0=$(date +%s%N)
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq $(($2 * 10))); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; killed=1; fi
  wait "$pid" 2>/dev/null || rc=$?
  kv_forget_pid "$pid"
  STOP_S=$(awk -v a="$t0" -v b="$(date +%s%N)" 'BEGIN { printf "%.1f", (b - a) / 1e9 }')
  if ((killed)); then STOP_RC=killed; else STOP_RC=$rc; fi
}

# lg ARGS...: the loadgen against the current server (in the background, so
# the trap can stop it); sets OUT (its JSON line) and LG_RC.
lg() {
  LG_RC=0
  run_client "$tmp/lg.out" "$tmp/lg.err" taskset -c "$CLIENT_CPU" "$LOADGEN" --server "127.0.0.1:$SERVER_PORT" \
    --keys "$KEYS" --key-size "$KEY_SIZE" --value-size "$VALUE_SIZE" --json "$@" || LG_RC=$?
  OUT=$(cat "$tmp/lg.out")
  if [[ -s $tmp/lg.err ]]; then sed "s|^|  [$RUN] loadgen: |" "$tmp/lg.err" >&2; fi
}

# read_stats CMD...: fills ST with the STAT lines of each command, over bash's
# /dev/tcp to the current server; empty if it does not answer.
declare -A ST
read_stats() {
  local fd line cmd
  ST=()
  if ! { exec {fd}<>"/dev/tcp/127.0.0.1/$SERVER_PORT"; } 2>/dev/null; then return 0; fi
  for cmd in "$@"; do
    printf '%s\r\n' "$cmd" >&"$fd"
    while IFS= read -r -t 5 line <&"$fd"; do
      line=${line%$'\r'}
      case $line in
        "STAT "*) line=${line#STAT }; ST[${line%% *}]=${line#* } ;;
        END|*ERROR*) break ;;
      esac
    done
  done
  exec {fd}>&-
}
st() { echo "${ST[$1]:-?}"; }  # a stat, "?" if missing
minus() { if [[ $1 =~ ^[0-9]+$ && $2 =~ ^-?[0-9]+$ ]]; then echo $(($1 - $2)); else echo "?"; fi; }  # A B: A - B, "?" unless numbers
io_read_bytes() { awk '/^read_bytes:/ { print $2 }' "/proc/$1/io" 2>/dev/null || echo 0; }

# Sweep result of the last lg call: "all N <what>" or what went wrong.
sweep_text() {  # WHAT
  local ok mi er
  ok=$(jget sweep_ok "$OUT") mi=$(jget sweep_misses "$OUT") er=$(jget sweep_errors "$OUT")
  if [[ -z $OUT ]]; then
    echo "FAIL (loadgen exit $LG_RC, no result)"
  elif ((LG_RC == 0)) && [[ $ok == "$KEYS" && $mi == 0 && $er == 0 ]]; then
    echo "all $1"
  else
    echo "$ok of $KEYS $1, $mi miss, $er err"
  fi
}

# R[key,field] holds every run's results; key = CONFIG#ROUND.
declare -A R
CONFIGS=(kvd-cold kvd-mem mc mc-mem)
declare -A LABEL=([kvd-cold]="qcloud-kvd + cold tier" [kvd-mem]="qcloud-kvd" [mc]="memcached" [mc-mem]="memcached")
declare -A MEM=([kvd-cold]=$MEMORY [kvd-mem]=$REF_MEMORY [mc]=$MEMORY [mc-mem]=$REF_MEMORY)
any_fail=0

run_config() {  # CONFIG ROUND
  local cfg=$1 k="$1#$2" ssd="" fails=() bg io0 io1 before_sunk before_react before_reads before_get
  local is_kvd=0 hits misses errors f held
  RUN="$cfg $2/$REPEAT"
  echo "running $RUN" >&2
  bg=$(cpu_busy "$SERVER_CPU,$CLIENT_CPU" 0.5)
  case $cfg in
    kvd-cold) is_kvd=1 ssd=$ssd_root/run$2; mkdir -p "$ssd"
              start_kvd_with --memory "$MEMORY" --threads 1 --ssd-dir "$ssd" ;;
    kvd-mem) is_kvd=1; start_kvd_with --memory "$REF_MEMORY" --threads 1 ;;
    mc) start_mc "$MEMORY" ;;
    mc-mem) start_mc "$REF_MEMORY" ;;
  esac
  R[$k,bg]=$bg

  lg --load-only
  R[$k,load]=$(sweep_text STORED)
  echo "  load: ${R[$k,load]} ($(jget prefill_s "$OUT") s)" >&2
  if ((is_kvd)) && [[ ${R[$k,load]} != all* ]]; then fails+=("load: ${R[$k,load]}"); fi

  lg --verify --duration 0
  R[$k,verify]=$(sweep_text hit)
  echo "  verify: ${R[$k,verify]} ($(jget verify_s "$OUT") s)" >&2
  if ((is_kvd)) && [[ ${R[$k,verify]} != all* ]]; then fails+=("verify: ${R[$k,verify]}"); fi

  if [[ -n $ssd ]] && ((DROP_CACHE)); then
    # Only clean pages can be dropped: write the files back first. The server
    # keeps sinking and writing while the run goes on; those pages stay cached.
    sync "$ssd"/* 2>/dev/null || true
    for f in "$ssd"/*; do
      if [[ -f $f ]]; then dd if="$f" iflag=nocache count=0 status=none 2>/dev/null || true; fi
    done
    echo "  page cache: dropped the tier's files" >&2
  fi

  read_stats stats
  before_get=$(st cmd_get) before_sunk=$(st cold_sunk) before_react=$(st cold_reactivated)
  read_stats stats "stats cold"
  before_reads=$(st cold_reads)
  io0=$(io_read_bytes "$SERVER_PID")
  lg --dist zipf --zipf-theta "$THETA" --get-ratio 0.9 --connections 64 --pipeline 1 \
    --duration "$DURATION" --warmup "$WARMUP" --server-pid "$SERVER_PID"
  io1=$(io_read_bytes "$SERVER_PID")
  R[$k,json]=$OUT
  if [[ -z $OUT ]]; then
    fails+=("measured run: loadgen exit $LG_RC, no result")
  else
    hits=$(jget hits "$OUT") misses=$(jget misses "$OUT") errors=$(jget errors "$OUT")
    echo "  measured: $(jget ops_per_sec "$OUT") ops/s, p99 $(jget p99_us "$OUT") us, $hits hits, $misses misses, $errors errors" >&2
    if ((is_kvd)); then
      ((LG_RC == 0)) || fails+=("measured run: loadgen exit $LG_RC")
      ((misses == 0 && hits > 0)) || fails+=("measured run: $misses misses, $hits hits")
      ((errors == 0)) || fails+=("measured run: $errors errors")
    fi
  fi
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    fails+=("server exited during the run")
    echo "  [$RUN] server exited during the run" >&2
  fi

  if ((is_kvd)); then read_stats stats "stats cold"; else read_stats stats; fi
  for f in curr_items evictions get_misses get_hits cold_items cold_sunk cold_reactivated cold_reads \
           cold_full cold_errors cold_disk_bytes cmd_get; do
    R[$k,$f]=$(st "$f")
  done
  if [[ -n $ssd ]]; then
    R[$k,sunk_run]=$(minus "${R[$k,cold_sunk]}" "$before_sunk")
    R[$k,react_run]=$(minus "${R[$k,cold_reactivated]}" "$before_react")
    R[$k,reads_run]=$(minus "${R[$k,cold_reads]}" "$before_reads")
    R[$k,get_run]=$(minus "${R[$k,cmd_get]}" "$before_get")
    R[$k,dev_read]=$((io1 - io0))
    R[$k,du]=$(du -sb "$ssd" | cut -f1)
  fi
  if ((is_kvd)); then
    [[ ${R[$k,get_misses]} == 0 ]] || fails+=("stats get_misses ${R[$k,get_misses]}")
    [[ ${R[$k,evictions]} == 0 ]] || fails+=("stats evictions ${R[$k,evictions]}")
  fi
  if [[ -n $ssd ]]; then
    held=$(minus "${R[$k,curr_items]}" "-${R[$k,cold_items]}")
    [[ $held == "$KEYS" ]] || fails+=("curr_items ${R[$k,curr_items]} + cold_items ${R[$k,cold_items]} = $held, not $KEYS")
    [[ ${R[$k,cold_full]} == 0 ]] || fails+=("cold_full ${R[$k,cold_full]}")
    [[ ${R[$k,cold_errors]} == 0 ]] || fails+=("cold_errors ${R[$k,cold_errors]}")
    if [[ ${R[$k,cold_items]} == 0 ]]; then echo "  [$RUN] note: nothing on the cold tier (data fits in memory)" >&2; fi
  fi

  stop_pid "$SERVER_PID" "$( ((is_kvd)) && echo 30 || echo 5)"
  R[$k,stop]="$STOP_RC in $STOP_S s"
  echo "  stop: exit $STOP_RC after $STOP_S s" >&2
  if ((is_kvd)); then
    [[ $STOP_RC == 0 ]] || fails+=("stop: exit $STOP_RC after $STOP_S s")
    if [[ -s $tmp/kvd.err ]]; then sed "s|^|  [$RUN] kvd: |" "$tmp/kvd.err" >&2; fi
  fi

  if [[ -n $ssd ]] && ((RESTART)); then
    start_kvd_with --memory "$MEMORY" --threads 1 --ssd-dir "$ssd"
    lg --verify --duration 0
    R[$k,restart]=$(sweep_text hit)
    read_stats stats "stats cold"
    R[$k,restart]+=" (cold_recovered $(st cold_recovered), $(jget verify_s "$OUT") s)"
    echo "  after restart: ${R[$k,restart]}" >&2
    [[ ${R[$k,restart]} == all* ]] || fails+=("after restart: ${R[$k,restart]}")
    stop_pid "$SERVER_PID" 30
    [[ $STOP_RC == 0 ]] || fails+=("stop after restart: exit $STOP_RC after $STOP_S s")
  fi
  if [[ -n $ssd ]]; then rm -rf "$ssd"; fi

  if ((${#fails[@]})); then
    R[$k,check]="FAIL"
    R[$k,fails]=$(printf '%s; ' "${fails[@]}")
    R[$k,fails]=${R[$k,fails]%; }
    any_fail=1
    echo "  [$RUN] FAIL: ${R[$k,fails]}" >&2
  elif ((is_kvd)); then
    R[$k,check]=ok
  else
    R[$k,check]=reference
  fi
}

data_mib=$(awk -v k="$KEYS" -v v="$VALUE_SIZE" -v ks="$KEY_SIZE" 'BEGIN { printf "%.0f", k * (ks + v) / 1048576 }')
ratio() { awk -v d="$KEYS" -v v="$VALUE_SIZE" -v ks="$KEY_SIZE" -v m="$1" 'BEGIN { printf "%.2f", d * (ks + v) / 1048576 / m }'; }

echo "# kv cold tier: $(date -u +%Y-%m-%dT%H:%MZ), $(uname -sr), $(nproc) CPUs" \
     "($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1))"
echo "# qcloud-kvd: $KVD; memcached: $("$MEMCACHED" -V 2>&1 | head -n1)"
echo "# data: $KEYS keys x ($KEY_SIZE B key + $VALUE_SIZE B value) = $data_mib MiB;" \
     "budgets $MEMORY MiB (data/memory $(ratio "$MEMORY")) and $REF_MEMORY MiB ($(ratio "$REF_MEMORY"))"
echo "# cold tier in $ssd_root ($fs_type, $(df -P "$ssd_root" | awk 'NR == 2 { print $1 }'));" \
     "RAM $(awk '/^MemTotal:/ { printf "%.0f MiB", $2 / 1024 }' /proc/meminfo)$( ((DROP_CACHE)) && echo ", tier dropped from the page cache before the run")"
echo "# workload: zipf $THETA, 90% get, 64 connections, pipeline 1; ${DURATION} s measured after ${WARMUP} s warmup;" \
     "server on CPU $SERVER_CPU, loadgen on CPU $CLIENT_CPU; $REPEAT round(s)"

for ((round = 1; round <= REPEAT; round++)); do
  for cfg in "${CONFIGS[@]}"; do run_config "$cfg" "$round"; done
done

# Per config, the round with the median ops/s (failed runs included, if they
# measured anything: a FAIL row must show).
declare -A PICK SPREAD NOK
for cfg in "${CONFIGS[@]}"; do
  runs=$(for ((r = 1; r <= REPEAT; r++)); do
           o=$(jget ops_per_sec "${R[$cfg#$r,json]}")
           if [[ -n $o ]]; then echo "$o $r"; fi
         done | sort -g)
  NOK[$cfg]=0
  for ((r = 1; r <= REPEAT; r++)); do [[ ${R[$cfg#$r,check]} == FAIL ]] || NOK[$cfg]=$((NOK[$cfg] + 1)); done
  if [[ -z $runs ]]; then PICK[$cfg]=1 SPREAD[$cfg]=""; continue; fi
  n=$(wc -l <<<"$runs")
  PICK[$cfg]=$(sed -n "$(((n + 1) / 2))p" <<<"$runs" | cut -d' ' -f2)
  SPREAD[$cfg]=$(awk -v lo="$(head -n1 <<<"$runs" | cut -d' ' -f1)" -v hi="$(tail -n1 <<<"$runs" | cut -d' ' -f1)" \
    -v m="$(jget ops_per_sec "${R[$cfg#${PICK[$cfg]},json]}")" 'BEGIN { printf "%.0f%%", (m > 0 ? 100 * (hi - lo) / m : 0) }')
done

# Table. hits: share of the measured window's gets that hit. load / verify:
# the sweeps before it. curr_items, evictions, cold_items: server stats after
# the run. sunk / reactivated: cold_sunk / cold_reactivated during the run
# (warmup included). ssd MiB: du of the tier's directory after the run.
# server / client CPU: busy share of those CPUs in the window ('*': client
# >= 95%, the row may be bound by the loadgen). check: "ok" / FAIL on kvd
# rows, over all rounds.
echo
printf '| config | memory MiB | data/mem | ops/s | p50 µs | p99 µs | p999 µs | hits | errors | load | verify | curr_items | evictions | cold_items | sunk (run) | reactivated (run) | ssd MiB | server CPU | client CPU | runs | check |\n'
printf '|---|--:|--:|--:|--:|--:|--:|--:|--:|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|\n'
for cfg in "${CONFIGS[@]}"; do
  k="$cfg#${PICK[$cfg]}" j=${R[$cfg#${PICK[$cfg]},json]:-}
  check=${R[$k,check]}
  if ((REPEAT > 1)); then
    runs="$REPEAT (${SPREAD[$cfg]})"
    if ((NOK[$cfg] < REPEAT)) && [[ $cfg == kvd-* ]]; then check="FAIL ($((REPEAT - NOK[$cfg]))/$REPEAT)"; fi
  else
    runs=1
  fi
  if [[ -z $j ]]; then
    printf '| %s | %s | %s | FAILED | | | | | | %s | %s | | | | | | | | | %s | %s |\n' "${LABEL[$cfg]}" "${MEM[$cfg]}" \
      "$(ratio "${MEM[$cfg]}")" "${R[$k,load]}" "${R[$k,verify]}" "$runs" "$check"
    continue
  fi
  cold=(- - - -)
  if [[ $cfg == kvd-cold ]]; then
    cold=("${R[$k,cold_items]}" "${R[$k,sunk_run]}" "${R[$k,react_run]}"
          "$(awk -v b="${R[$k,du]}" 'BEGIN { printf "%.0f", b / 1048576 }')")
  fi
  awk -v c="${LABEL[$cfg]}" -v m="${MEM[$cfg]}" -v dm="$(ratio "${MEM[$cfg]}")" -v ops="$(jget ops_per_sec "$j")" \
      -v p50="$(jget p50_us "$j")" -v p99="$(jget p99_us "$j")" -v p999="$(jget p999_us "$j")" \
      -v hits="$(jget hits "$j")" -v miss="$(jget misses "$j")" -v err="$(jget errors "$j")" \
      -v load="${R[$k,load]}" -v ver="${R[$k,verify]}" -v ci="${R[$k,curr_items]}" -v ev="${R[$k,evictions]}" \
      -v c1="${cold[0]}" -v c2="${cold[1]}" -v c3="${cold[2]}" -v c4="${cold[3]}" \
      -v sb="$(jget server_cores_busy_pct "$j")" -v cb="$(jget client_cores_busy_pct "$j")" \
      -v runs="$runs" -v chk="$check" 'BEGIN {
    h = (miss == 0) ? (hits > 0 ? "100%" : "-") : sprintf("%.2f%% (%d miss)", 100 * hits / (hits + miss), miss)
    printf "| %s | %s | %s | %.0f | %.0f | %.0f | %.0f | %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %.0f%% | %.0f%%%s | %s | %s |\n",
           c, m, dm, ops, p50, p99, p999, h, err, load, ver, ci, ev, c1, c2, c3, c4, sb, cb, (cb >= 95 ? "*" : ""), runs, chk }'
done

echo
opsof() { jget ops_per_sec "${R[$1#${PICK[$1]},json]:-}"; }
pct() { awk -v a="$1" -v b="$2" 'BEGIN { if (a != "" && b > 0) printf "%.0f%%", 100 * a / b; else printf "n/a" }'; }
x=$(awk -v r="$(ratio "$MEMORY")" 'BEGIN { printf "%.0f", r }')
echo "kvd ${x}x-data ops/s = $(pct "$(opsof kvd-cold)" "$(opsof kvd-mem)") of kvd all-in-memory" \
     "(p99 $(jget p99_us "${R[kvd-cold#${PICK[kvd-cold]},json]:-}") µs vs $(jget p99_us "${R[kvd-mem#${PICK[kvd-mem]},json]:-}") µs)"
mc_j=${R[mc#${PICK[mc]},json]:-}
mc_hits=$(awk -v h="$(jget hits "$mc_j")" -v m="$(jget misses "$mc_j")" 'BEGIN { if (h + m > 0) printf "%.1f%%", 100 * h / (h + m); else printf "n/a" }')
echo "kvd ${x}x-data ops/s = $(pct "$(opsof kvd-cold)" "$(opsof mc)") of memcached -m $MEMORY (which hit $mc_hits of gets)," \
     "$(pct "$(opsof kvd-cold)" "$(opsof mc-mem)") of memcached -m $REF_MEMORY"
k="kvd-cold#${PICK[kvd-cold]}"
if [[ -n ${R[$k,get_run]:-} ]]; then
  echo "cold tier during kvd-cold's measured run (warmup included): $(pct "${R[$k,react_run]}" "${R[$k,get_run]}") of" \
       "${R[$k,get_run]} gets reactivated an item from the tier (${R[$k,reads_run]} record reads)," \
       "${R[$k,sunk_run]} items sunk; the server read $(awk -v b="${R[$k,dev_read]}" 'BEGIN { printf "%.1f", b / 1048576 }') MiB" \
       "from the block device (/proc/PID/io read_bytes; other tier reads came from the page cache);" \
       "totals: cold_sunk ${R[$k,cold_sunk]}, cold_reactivated ${R[$k,cold_reactivated]}," \
       "cold_disk_bytes ${R[$k,cold_disk_bytes]}; clean stop (saves memory to the tier): exit ${R[$k,stop]}"
fi
if ((RESTART)); then echo "kvd-cold restarted on its tier: ${R[$k,restart]:-not run}"; fi
for cfg in "${CONFIGS[@]}"; do for ((r = 1; r <= REPEAT; r++)); do
  if [[ ${R[$cfg#$r,check]:-} == FAIL ]]; then echo "FAIL $cfg round $r: ${R[$cfg#$r,fails]}"; fi
done; done
if ((any_fail)); then echo "RESULT: FAIL"; exit 1; fi
echo "RESULT: ok (every kvd check passed)"
