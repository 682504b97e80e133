#!/usr/bin/env bash
# Real NBD clients against qcloud-blockd, or against nbdkit's file plugin
# to prove this script right on a reference server:
#
#   block_clients.sh --blockd PATH [OPTIONS...]
#                                    start PATH with volumes vm1 (5 GiB) and img (1 GiB)
#                                    and OPTIONS (e.g. --io-threads 4)
#   block_clients.sh --nbdkit        start nbdkit file dir=... with the same two exports
#
#   nbdinfo   --list (both exports, sizes, can_flush/fua/trim/zero/multi_conn),
#             --size, --can flush|fua|trim|zero
#   qemu-img  info (virtual size), convert of a qcow2 image to nbd:// and back
#             (-n, onto the existing export), compare with the source
#   qemu-io   write/read -P pattern checks: aligned at 0; unaligned (1000
#             +3333); across the 1 GiB boundary; past 4 GiB (4G+123 +10000);
#             FUA writes (-f); write-zeroes (-z) and discard then reads of
#             zeros; every read checked by qemu-io's own pattern verification
#   nbdcopy   a 1 GiB random image to the img export and back, equal sha256
#   map       nbdinfo --map and qemu-img map: block status (base:allocation)
#             shows the written ranges as data and the rest as holes
#   fio       the nbd ioengine, 4 KiB random writes at queue depth 16 then
#             verify=crc32c reads of everything written
#
# Servers listen on 127.0.0.1 on free ports and are stopped by PID on exit;
# every client call is bounded by timeout(1). Prints PASS/FAIL per check and
# 'N passed, N failed'; exits non-zero on any failure. About 20 s.
set -euo pipefail

mode="" bin="" extra=()
case "${1:-}" in
  --blockd) mode=blockd bin=${2:?--blockd PATH}; extra=("${@:3}") ;;
  --nbdkit) mode=nbdkit ;;
  *) echo "usage: $0 --blockd PATH [qcloud-blockd options...] | --nbdkit" >&2; exit 2 ;;
esac
for t in nbdinfo nbdcopy qemu-img qemu-io fio sha256sum timeout /usr/bin/python3; do
  command -v "$t" >/dev/null || { echo "missing tool: $t" >&2; exit 2; }
done
[[ $mode == nbdkit ]] && { command -v nbdkit >/dev/null || { echo "missing tool: nbdkit" >&2; exit 2; }; }

work=$(mktemp -d /tmp/qcloud-block-clients-XXXXXX)
pid=""
cleanup() {
  if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# Below the ephemeral range (interop_util.free_port): a port the kernel hands
# out for :0 may be taken by another test's outgoing connect before it is bound.
interop_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
free_port() { /usr/bin/python3 "$interop_dir/interop_util.py" free_port "$@"; }

GiB=$((1 << 30))
if [[ $mode == blockd ]]; then
  mport=$(free_port)
  "$bin" --listen 127.0.0.1:0 --data-dir "$work/data" --volume vm1:5G --volume img:1G \
    --metrics-listen "127.0.0.1:$mport" "${extra[@]}" >"$work/server.log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do
    grep -q "listening on" "$work/server.log" && break
    kill -0 "$pid" 2>/dev/null || { cat "$work/server.log"; exit 1; }
    sleep 0.05
  done
  port=$(grep -o "listening on 127.0.0.1:[0-9]*" "$work/server.log" | grep -o "[0-9]*$")
else
  mkdir -p "$work/exports"
  truncate -s $((5 * GiB)) "$work/exports/vm1"
  truncate -s $GiB "$work/exports/img"
  # A probed free port can be taken by another test's server before nbdkit
  # binds it; nbdkit then exits, and whoever holds the port would answer.
  # So the answer counts only while our nbdkit is alive; else a new port.
  ready=""
  for _ in 1 2 3 4 5; do
    port=$(free_port)
    nbdkit -f -i 127.0.0.1 -p "$port" --exit-with-parent file dir="$work/exports" \
      >"$work/server.log" 2>&1 &
    pid=$!
    for _ in $(seq 100); do
      kill -0 "$pid" 2>/dev/null || break
      if timeout 2 nbdinfo --size "nbd://127.0.0.1:$port/img" >/dev/null 2>&1 && kill -0 "$pid" 2>/dev/null; then
        ready=1
        break
      fi
      sleep 0.05
    done
    [[ -n $ready ]] && break
    kill "$pid" 2>/dev/null || true
  done
  [[ -n $ready ]] || port=""
fi
[[ -n ${port:-} ]] || { echo "server did not start"; cat "$work/server.log"; exit 1; }
base="nbd://127.0.0.1:$port"
echo "server: $mode on $base"

passed=0 failed=0
pass() { echo "PASS $1"; passed=$((passed + 1)); }
fail() { echo "FAIL $1${2:+: $2}"; failed=$((failed + 1)); }
# check NAME CMD...: passes when CMD exits 0.
check() {
  local name=$1; shift
  if out=$("$@" 2>&1); then pass "$name"; else fail "$name" "$(echo "$out" | tail -5)"; fi
}

# --- nbdinfo ---
list=$(timeout 20 nbdinfo --list "$base" 2>&1) || true
for e in vm1 img; do
  if grep -q "export=\"$e\"" <<<"$list"; then pass "nbdinfo --list shows $e"; else fail "nbdinfo --list shows $e" "$list"; fi
done
check "nbdinfo --size vm1 is 5 GiB" bash -c "[[ \$(timeout 20 nbdinfo --size $base/vm1) == $((5 * GiB)) ]]"
check "nbdinfo --size img is 1 GiB" bash -c "[[ \$(timeout 20 nbdinfo --size $base/img) == $GiB ]]"
for cap in flush fua trim zero; do
  check "nbdinfo --can $cap" timeout 20 nbdinfo --can "$cap" "$base/vm1"
done
if [[ $mode == blockd ]]; then
  # nbdkit's file plugin does not promise multi-conn for every export.
  check "nbdinfo --can multi-conn" timeout 20 nbdinfo --can multi-conn "$base/vm1"
fi
check "nbdinfo on a missing export fails" bash -c "! timeout 20 nbdinfo --size $base/no-such-volume"

# --- qemu-img info ---
check "qemu-img info: virtual size 5 GiB" bash -c \
  "timeout 20 qemu-img info -f raw $base/vm1 | grep -q 'virtual size: 5 GiB ($((5 * GiB)) bytes)'"

# --- qemu-io patterns ---
# qemu-io prints "Pattern verification failed" and keeps its exit status 0,
# so the output is checked too.
qio() {
  local name=$1; shift
  local args=()
  for c in "$@"; do args+=(-c "$c"); done
  if out=$(timeout 60 qemu-io -f raw "$base/vm1" "${args[@]}" 2>&1) &&
    ! grep -qiE "verification failed|error|failed" <<<"$out"; then
    pass "$name"
  else
    fail "$name" "$(echo "$out" | grep -iE "verification|error|failed" | head -3)"
  fi
}
qio "qemu-io aligned write and read at 0" 'write -P 0xab 0 1M' 'read -P 0xab 0 1M'
qio "qemu-io unaligned write inside data" 'write -P 0x11 1000 3333' 'read -P 0x11 1000 3333' \
  'read -P 0xab 0 1000' 'read -P 0xab 4333 4000'
qio "qemu-io across the 1 GiB boundary" "write -P 0x22 $((GiB - 512)) 4096" \
  "read -P 0x22 $((GiB - 512)) 4096" "read -P 0 $((GiB - 4096)) 3584"
qio "qemu-io past 4 GiB unaligned" "write -P 0x33 $((4 * GiB + 123)) 10000" \
  "read -P 0x33 $((4 * GiB + 123)) 10000" "read -P 0 $((4 * GiB)) 123" \
  "read -P 0 $((4 * GiB + 10123)) 1000"
qio "qemu-io FUA writes" "write -f -P 0x44 $((2 * GiB)) 64k" "write -f -P 0x45 $((2 * GiB + 777)) 100" \
  "read -P 0x44 $((2 * GiB)) 777" "read -P 0x45 $((2 * GiB + 777)) 100"
qio "qemu-io write-zeroes" 'write -P 0x55 8M 1M' 'write -z 8M 256k' 'read -P 0 8M 256k' \
  'read -P 0x55 8448k 768k' 'write -z 8650752 1000' 'read -P 0 8650752 1000' 'read -P 0x55 8651752 1000'
qio "qemu-io discard reads zeros" 'write -P 0x66 16M 2M' 'discard 16M 2M' 'read -P 0 16M 2M'
qio "qemu-io last byte of the disk" "write -P 0x77 $((5 * GiB - 1)) 1" "read -P 0x77 $((5 * GiB - 1)) 1"
check "qemu-io write past the end fails" bash -c \
  "timeout 20 qemu-io -f raw $base/vm1 -c 'write -P 1 $((5 * GiB - 512)) 1024' 2>&1 | grep -qiE 'error|failed|invalid|out of'"

# --- block status (base:allocation): the holes of the thin device ---
map=$(timeout 20 nbdinfo --map "$base/vm1" 2>&1) || true
if grep -qE '^ +0 +[0-9]+ +0 +data' <<<"$map" && grep -q 'hole,zero' <<<"$map"; then
  pass "nbdinfo --map: data where written, holes elsewhere"
else
  fail "nbdinfo --map: data where written, holes elsewhere" "$(head -5 <<<"$map")"
fi
check "qemu-img map sees zero ranges" bash -c \
  "timeout 20 qemu-img map --output=json -f raw $base/vm1 | grep -q '\"zero\": true, \"data\": false'"

# --- qemu-img convert and compare (img still holds zeros past 64M) ---
qemu-img create -q -f qcow2 "$work/src.qcow2" 64M
timeout 60 qemu-io -f qcow2 "$work/src.qcow2" -c 'write -P 0x5a 0 3M' -c 'write -P 0xa5 40M 5M' >/dev/null
check "qemu-img convert qcow2 to nbd" timeout 60 qemu-img convert -n -f qcow2 -O raw "$work/src.qcow2" "$base/img"
check "qemu-img compare qcow2 with nbd" timeout 60 qemu-img compare -f qcow2 -F raw "$work/src.qcow2" "$base/img"
check "qemu-img convert nbd to qcow2" timeout 120 qemu-img convert -f raw -O qcow2 "$base/img" "$work/back.qcow2"
check "qemu-img compare back" timeout 60 qemu-img compare -f qcow2 -F qcow2 "$work/src.qcow2" "$work/back.qcow2"
rm -f "$work/back.qcow2"


# --- nbdcopy 1 GiB round trip ---
head -c $GiB /dev/urandom >"$work/rand.img"
if timeout 120 nbdcopy "$work/rand.img" "$base/img" && timeout 120 nbdcopy "$base/img" "$work/back.img"; then
  a=$(sha256sum <"$work/rand.img") b=$(sha256sum <"$work/back.img")
  if [[ $a == "$b" ]]; then pass "nbdcopy 1 GiB random round trip"; else fail "nbdcopy 1 GiB random round trip" "checksums differ"; fi
else
  fail "nbdcopy 1 GiB random round trip" "nbdcopy failed"
fi
rm -f "$work/rand.img" "$work/back.img"

# --- fio with its nbd engine, verify ---
check "fio nbd randwrite qd16 then crc32c verify" timeout 120 fio --name=v --ioengine=nbd \
  --uri="$base/vm1" --rw=randwrite --bs=4k --size=64m --offset=100m --iodepth=16 \
  --verify=crc32c --verify_fatal=1 --do_verify=1 --verify_state_save=0 --randrepeat=0 --output-format=terse

# --- /metrics, read by Prometheus' own parser and linter ---
if [[ $mode == blockd ]] && command -v promtool >/dev/null; then
  curl -s "http://127.0.0.1:$mport/metrics" >"$work/metrics.txt" || true
  check "promtool check metrics on qcloud-blockd's /metrics" promtool check metrics <"$work/metrics.txt"
  check "/metrics counts the work done" bash -c \
    "awk '\$1 == \"qcloud_block_writes_total\" && \$2 > 1000 {ok=1} END {exit !ok}' $work/metrics.txt && grep -q '^qcloud_nbd_' $work/metrics.txt"
fi

echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
