#!/usr/bin/env bash
# Side-by-side: the same fio workloads (its nbd engine) against qcloud-blockd
# and nbdkit's file plugin, in the same run, on files in the same directory
# (same disk), each server pinned to one CPU and fio to another.
#
#   bench/block/compare.sh --blockd build/release/examples/qcloud-blockd/qcloud-blockd
#       [--dir DIR] [--size 1G] [--runtime 5] [--rounds 3] [--only randread,...]
#       [--server-cpu 0] [--client-cpu 1]
#
# Workloads: randread / randwrite (4 KiB, queue depth 32) and read / write
# (1 MiB sequential, queue depth 8). Both devices are filled with random data
# first, so reads read data, not holes. Rounds interleave the two servers
# (the order alternates) and the table gives each side's median over the
# rounds with the ratio blockd/nbdkit; every round's figures are printed too.
# Each side's server CPU time per GB moved (all its threads, the kernel's
# io_uring workers included) is measured too: where fio on its one CPU is
# the bottleneck, throughput ties and the CPU a server spends is what
# differs.
# One replica, no SSD tier: the store writes in place into a thin data file.
set -euo pipefail

SCRIPT=$(basename "$0")
BLOCKD="" DIR=${TMPDIR:-/tmp} SIZE=1G RUNTIME=5 ROUNDS=3 ONLY="" SERVER_CPU=0 CLIENT_CPU=1
while [[ $# -gt 0 ]]; do
  case $1 in
    --blockd) BLOCKD=$2; shift 2 ;;
    --dir) DIR=$2; shift 2 ;;
    --size) SIZE=$2; shift 2 ;;
    --runtime) RUNTIME=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --only) ONLY=$2; shift 2 ;;
    --server-cpu) SERVER_CPU=$2; shift 2 ;;
    --client-cpu) CLIENT_CPU=$2; shift 2 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "$SCRIPT: unknown argument $1" >&2; exit 2 ;;
  esac
done
die() { echo "$SCRIPT: $*" >&2; exit 1; }
[[ -x $BLOCKD ]] || die "--blockd PATH (qcloud-blockd) is required"
for t in fio nbdkit nbdcopy taskset /usr/bin/python3; do command -v "$t" >/dev/null || die "missing $t"; done

work=$(mktemp -d "$DIR/block-bench.XXXXXX")
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_nbd() {  # URI PID
  for _ in $(seq 200); do
    kill -0 "$2" 2>/dev/null || die "server exited; see $work"
    timeout 2 nbdinfo --size "$1" >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  die "server at $1 did not answer"
}

bytes=$(/usr/bin/python3 -c "import sys; s=sys.argv[1]; m={'K':1<<10,'M':1<<20,'G':1<<30}; print(int(s[:-1])*m[s[-1]] if s[-1] in m else int(s))" "$SIZE")

# qcloud-blockd: one worker loop on the server CPU.
taskset -c "$SERVER_CPU" "$BLOCKD" --listen 127.0.0.1:0 --data-dir "$work/blockd" --volume "bench:$SIZE" \
  --threads 1 >"$work/blockd.log" 2>&1 &
PIDS+=($!)
blockd_pid=$!
for _ in $(seq 100); do grep -q "listening on" "$work/blockd.log" && break; sleep 0.05; done
blockd_uri="nbd://$(grep -o "listening on [0-9.:]*" "$work/blockd.log" | cut -d' ' -f3)/bench"
wait_nbd "$blockd_uri" "$blockd_pid"

# nbdkit's file plugin on a file in the same directory, its default
# (parallel, 16 threads) thread model, on the same CPU.
truncate -s "$bytes" "$work/nbdkit.img"
kport=$(free_port)
taskset -c "$SERVER_CPU" nbdkit -f -i 127.0.0.1 -p "$kport" file file="$work/nbdkit.img" \
  >"$work/nbdkit.log" 2>&1 &
PIDS+=($!)
nbdkit_pid=$!
nbdkit_uri="nbd://127.0.0.1:$kport/"
wait_nbd "$nbdkit_uri" "$nbdkit_pid"

echo "# filling both devices with $SIZE of random data"
head -c "$bytes" /dev/urandom >"$work/fill.img"
nbdcopy "$work/fill.img" "$blockd_uri"
nbdcopy "$work/fill.img" "$nbdkit_uri"
rm -f "$work/fill.img"

declare -A WL=(
  [randread]="--rw=randread --bs=4k --iodepth=32"
  [randwrite]="--rw=randwrite --bs=4k --iodepth=32"
  [read]="--rw=read --bs=1m --iodepth=8"
  [write]="--rw=write --bs=1m --iodepth=8"
)
order=(randread randwrite read write)
if [[ -n $ONLY ]]; then IFS=, read -r -a order <<<"$ONLY"; fi

# run_fio URI WORKLOAD -> "iops MB/s"
run_fio() {
  # shellcheck disable=SC2086
  taskset -c "$CLIENT_CPU" fio --name=b --ioengine=nbd --uri="$1" ${WL[$2]} --size="$bytes" \
    --runtime="$RUNTIME" --time_based --ramp_time=1 --randrepeat=0 --norandommap \
    --output-format=json 2>/dev/null |
    /usr/bin/python3 -c '
import json, sys
text = sys.stdin.read()  # fio'"'"'s nbd engine prints a line before the JSON
j = json.loads(text[text.index("{"):])["jobs"][0]
side = j["read"] if j["read"]["io_bytes"] > 0 else j["write"]
print("%.0f %.1f" % (side["iops"], side["bw_bytes"] / 1e6))'
}

# CPU time (utime + stime, all threads, in clock ticks) of a process.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

declare -A RES
for wl in "${order[@]}"; do
  [[ -n ${WL[$wl]:-} ]] || die "unknown workload $wl"
  for ((r = 1; r <= ROUNDS; r++)); do
    if ((r % 2)); then sides=(blockd nbdkit); else sides=(nbdkit blockd); fi
    for s in "${sides[@]}"; do
      uri=$blockd_uri
      [[ $s == nbdkit ]] && uri=$nbdkit_uri
      pid=$blockd_pid
      [[ $s == nbdkit ]] && pid=$nbdkit_pid
      t0=$(cpu_ticks "$pid")
      out=$(run_fio "$uri" "$wl")
      t1=$(cpu_ticks "$pid")
      # Server CPU per GB moved: ticks are 1/100 s; fio ran ramp + runtime.
      mb=${out#* }
      cpu=$(/usr/bin/python3 -c "import sys; t, mb, s = map(float, sys.argv[1:]); print('%.0f' % (t * 10 / (mb * s / 1000)) if mb > 0 else 0)" \
        "$((t1 - t0))" "$mb" "$((RUNTIME + 1))")
      RES[$wl,$s]+="$out $cpu;"
      echo "round $r $wl $s: iops ${out% *} MB/s $mb server-cpu-ms/GB $cpu"
    done
  done
done

echo
echo "| workload | qcloud-blockd | nbdkit file | blockd / nbdkit | server CPU ms/GB blockd | nbdkit | rounds |"
echo "|---|--:|--:|--:|--:|--:|--:|"
for wl in "${order[@]}"; do
  /usr/bin/python3 - "$wl" "${RES[$wl,blockd]}" "${RES[$wl,nbdkit]}" "$ROUNDS" <<'EOF'
import statistics, sys
wl, a, b, rounds = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
def med(s, i):
    return statistics.median(float(x.split()[i]) for x in s.split(";") if x)
i = 0 if wl.startswith("rand") else 1
unit = "IOPS" if i == 0 else "MB/s"
ma, mb = med(a, i), med(b, i)
ca, cb = med(a, 2), med(b, 2)
print(f"| {wl} ({unit}) | {ma:,.0f} | {mb:,.0f} | {ma / mb:.2f} | {ca:,.0f} | {cb:,.0f} | {rounds} |")
EOF
done
