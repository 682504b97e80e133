#!/usr/bin/env bash
# The SSD tier under fio's zipf(0.99) 4 KiB random reads over a volume 10x
# its size: its hit ratio against an exact LRU of the same size replaying
# the very same requests (fio's I/O log), and IOPS against the same volume
# with no tier (all on one device).
#
#   bench/block/tier.sh --blockd build/release/examples/qcloud-blockd/qcloud-blockd
#       [--size 1G] [--ssd-size 100M] [--runtime 10] [--rounds 3]
#
# On a machine whose one disk holds both directories (and whose page cache
# holds both), the IOPS ratio shows what the tier costs, not what it gains:
# the gain needs a capacity device slower than the SSD one.
set -euo pipefail
SCRIPT=$(basename "$0")
BLOCKD="" SIZE=1G SSD=100M RUNTIME=10 ROUNDS=3
while [[ $# -gt 0 ]]; do
  case $1 in
    --blockd) BLOCKD=$2; shift 2 ;;
    --size) SIZE=$2; shift 2 ;;
    --ssd-size) SSD=$2; shift 2 ;;
    --runtime) RUNTIME=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "$SCRIPT: unknown argument $1" >&2; exit 2 ;;
  esac
done
[[ -x $BLOCKD ]] || { echo "$SCRIPT: --blockd PATH is required" >&2; exit 2; }
work=$(mktemp -d "${TMPDIR:-/tmp}/block-tier.XXXXXX")
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
bytes() { /usr/bin/python3 -c "import sys; s=sys.argv[1]; m={'K':1<<10,'M':1<<20,'G':1<<30}; print(int(s[:-1])*m[s[-1]] if s[-1] in m else int(s))" "$1"; }

start() {  # NAME EXTRA... -> sets URI_<NAME>, MPORT_<NAME>
  local name=$1 mport
  shift
  mport=$(free_port)
  taskset -c 0 "$BLOCKD" --listen 127.0.0.1:0 --data-dir "$work/$name" --volume "v:$SIZE" --threads 1 \
    --metrics-listen "127.0.0.1:$mport" "$@" >"$work/$name.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 100); do grep -q "listening on" "$work/$name.log" && break; sleep 0.05; done
  printf -v "URI_$name" '%s' "nbd://$(grep -o "listening on [0-9.:]*" "$work/$name.log" | cut -d' ' -f3)/v"
  printf -v "MPORT_$name" '%s' "$mport"
}
metric() { curl -s "http://127.0.0.1:$1/metrics" | awk -v m="$2" '$1 == m {print $2}'; }

start tier --ssd-dir "$work/ssd" --ssd-size "$SSD"
start flat
head -c "$(bytes "$SIZE")" /dev/urandom >"$work/fill.img"
nbdcopy "$work/fill.img" "$URI_tier"
nbdcopy "$work/fill.img" "$URI_flat"
rm -f "$work/fill.img"

run() {  # URI [iolog] -> IOPS
  local log=()
  [[ -n ${2:-} ]] && log=(--write_iolog="$2")
  taskset -c 1 fio --name=z --ioengine=nbd --uri="$1" --rw=randread --bs=4k --iodepth=32 \
    --random_distribution=zipf:0.99 --size="$(bytes "$SIZE")" --runtime="$RUNTIME" --time_based \
    --randrepeat=0 --norandommap "${log[@]}" --output-format=terse 2>/dev/null | awk -F';' 'NF > 10 {print $8}'
}

echo "| round | with tier IOPS | tier hit ratio | LRU hit ratio (same requests) | no tier IOPS | with / without |"
echo "|---|--:|--:|--:|--:|--:|"
slots=$(( $(bytes "$SSD") / 4096 ))
for ((r = 1; r <= ROUNDS; r++)); do
  h0=$(metric "$MPORT_tier" qcloud_block_tier_hits_total)
  m0=$(metric "$MPORT_tier" qcloud_block_tier_misses_total)
  a=$(run "$URI_tier" "$work/iolog")
  h1=$(metric "$MPORT_tier" qcloud_block_tier_hits_total)
  m1=$(metric "$MPORT_tier" qcloud_block_tier_misses_total)
  b=$(run "$URI_flat")
  # The LRU replays this round's requests, starting from the state the
  # earlier rounds left (as the tier does): every round's log, in order.
  cat "$work/iolog" >>"$work/all.iolog"
  lru=$(/usr/bin/python3 - "$work/all.iolog" "$slots" "$(grep -c " read " "$work/iolog")" <<'EOF'
import collections, sys
path, slots, last = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
lines = [l.split() for l in open(path)]
# fio's I/O log, version 3: "<usec> <file> read <offset> <length>".
reqs = [int(w[w.index("read") + 1]) // 4096 for w in lines if "read" in w and len(w) >= w.index("read") + 3]
lru = collections.OrderedDict()
hits = counted = 0
start = len(reqs) - last if last < len(reqs) else 0
for i, b in enumerate(reqs):
    hit = b in lru
    if hit:
        lru.move_to_end(b)
    else:
        lru[b] = True
        if len(lru) > slots:
            lru.popitem(last=False)
    if i >= start:
        counted += 1
        hits += hit
print(f"{hits / max(counted, 1):.3f}")
EOF
)
  hr=$(/usr/bin/python3 -c "print(f'{($h1 - $h0) / max(($h1 - $h0) + ($m1 - $m0), 1):.3f}')")
  echo "| $r | $a | $hr | $lru | $b | $(/usr/bin/python3 -c "print(f'{$a / max($b, 1):.2f}')") |"
done
