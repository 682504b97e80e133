#!/usr/bin/env bash
# Write merging: sequential 4 KiB client writes (fio's nbd engine, queue
# depth 32) against qcloud-blockd, and how many writes reached the data
# copies (qcloud_block_data_writes_total against qcloud_block_writes_total
# from its /metrics), with merging on (default) and off (--merge-bytes 0).
#
#   bench/block/merge.sh --blockd build/release/examples/qcloud-blockd/qcloud-blockd [--size 256M]
set -euo pipefail
SCRIPT=$(basename "$0")
BLOCKD="" SIZE=256M
while [[ $# -gt 0 ]]; do
  case $1 in
    --blockd) BLOCKD=$2; shift 2 ;;
    --size) SIZE=$2; shift 2 ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) echo "$SCRIPT: unknown argument $1" >&2; exit 2 ;;
  esac
done
[[ -x $BLOCKD ]] || { echo "$SCRIPT: --blockd PATH is required" >&2; exit 2; }
work=$(mktemp -d "${TMPDIR:-/tmp}/block-merge.XXXXXX")
pid=""
cleanup() {
  [[ -n $pid ]] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
metric() { curl -s "http://127.0.0.1:$mport/metrics" | awk -v m="$1" '$1 == m {print $2}'; }

echo "| merging | client writes | writes to the data copies | client writes per data write | MB/s |"
echo "|---|--:|--:|--:|--:|"
for merge in on off; do
  mport=$(free_port)
  extra=()
  [[ $merge == off ]] && extra=(--merge-bytes 0)
  rm -rf "$work/data"
  "$BLOCKD" --listen 127.0.0.1:0 --data-dir "$work/data" --volume "m:$SIZE" --threads 1 \
    --metrics-listen "127.0.0.1:$mport" "${extra[@]}" >"$work/log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do grep -q "listening on" "$work/log" && break; sleep 0.05; done
  uri="nbd://$(grep -o "listening on [0-9.:]*" "$work/log" | cut -d' ' -f3)/m"
  bw=$(fio --name=m --ioengine=nbd --uri="$uri" --rw=write --bs=4k --iodepth=32 --size="$SIZE" \
    --output-format=terse 2>/dev/null | awk -F';' 'NF > 10 {print $48 / 1000}')
  w=$(metric qcloud_block_writes_total)
  d=$(metric qcloud_block_data_writes_total)
  echo "| $merge | $w | $d | $(/usr/bin/python3 -c "print(f'{$w / max($d, 1):.1f}')") | $bw |"
  kill -TERM "$pid"
  wait "$pid" 2>/dev/null || true
  pid=""
done
