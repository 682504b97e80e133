#!/usr/bin/env bash
# Memory benchmark: resident memory per item of memcached vs qcloud-kvd.
#
#   bench/kv/memory.sh [--kvd PATH] [--loadgen PATH] [--items N]
#                      [--server-cpu N] [--client-cpu N]
#
# For each server (memcached -m 1024, qcloud-kvd --memory 1024; without --kvd
# only memcached): start it, read VmRSS from /proc/PID/status, load N items
# (default 1 000 000; 16-byte keys, 64-byte values) with
#   kv_loadgen --load-only --keys N --key-size 16 --value-size 64
# (which checks every set was STORED), read VmRSS again, then read every key
# back (kv_loadgen --verify --duration 0: all N must hit with the right value)
# and ask the server's "stats" for curr_items and bytes. Prints RSS after,
# the RSS delta, both divided by N, and the kvd/memcached ratios.
#
#   --kvd PATH       qcloud-kvd binary (see compare.sh for how it is started)
#   --loadgen PATH   kv_loadgen binary (default: build kv_loadgen.cc into a
#                    temporary directory with ${CXX:-g++})
#   --items N        items to load (default 1000000)
#   --server-cpu N   CPU for the server (default 0)
#   --client-cpu N   CPU for the loadgen (default 1)
#   MEMCACHED=path   memcached binary (default: memcached on PATH)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
KVD="" LOADGEN="" ITEMS=1000000 SERVER_CPU=0 CLIENT_CPU=1
MEMCACHED=${MEMCACHED:-memcached}
KEY_SIZE=16 VALUE_SIZE=64

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'; }
while [[ $# -gt 0 ]]; do
  case $1 in
    --kvd) KVD=$2; shift 2 ;;
    --loadgen) LOADGEN=$2; shift 2 ;;
    --items) ITEMS=$2; shift 2 ;;
    --server-cpu) SERVER_CPU=$2; shift 2 ;;
    --client-cpu) CLIENT_CPU=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "memory.sh: unknown argument $1" >&2; usage >&2; exit 1 ;;
  esac
done

SCRIPT=memory.sh
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$here/lib.sh"

rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

# "stats" over bash's /dev/tcp; prints "curr_items bytes" ("? ?" if unsupported).
server_stats() {  # PORT
  local fd line ci="?" by="?"
  if ! { exec {fd}<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null; then echo "? ?"; return 0; fi
  printf 'stats\r\n' >&"$fd"
  while IFS= read -r -t 5 line <&"$fd"; do
    line=${line%$'\r'}
    case $line in
      "STAT curr_items "*) ci=${line##* } ;;
      "STAT bytes "*) by=${line##* } ;;
      END|*ERROR*) break ;;
    esac
  done
  exec {fd}>&-
  echo "$ci $by"
}

# loadgen ARGS...: runs the loadgen (not in a $(...) subshell, so that the
# trap can stop it); sets OUT to its JSON line; returns its exit status.
loadgen() {
  local rc=0
  run_client "$tmp/loadgen.out" "$tmp/loadgen.err" taskset -c "$CLIENT_CPU" "$LOADGEN" \
    --server "127.0.0.1:$SERVER_PORT" --keys "$ITEMS" --key-size "$KEY_SIZE" --value-size "$VALUE_SIZE" "$@" || rc=$?
  if [[ -s $tmp/loadgen.err ]]; then sed 's/^/  /' "$tmp/loadgen.err" >&2; fi
  OUT=$(cat "$tmp/loadgen.out")
  return "$rc"
}

echo "# kv memory: $(date -u +%Y-%m-%dT%H:%MZ), $(uname -sr); $ITEMS items, $KEY_SIZE B keys, $VALUE_SIZE B values"
echo "# memcached: $("$MEMCACHED" -V 2>&1 | head -n1) -m 1024; qcloud-kvd: ${KVD:-not run}${KVD:+ --memory 1024}"

servers=(memcached)
if [[ -n $KVD ]]; then servers+=(qcloud-kvd); fi
declare -A before after items bytes verified
for server in "${servers[@]}"; do
  echo "running $server" >&2
  start_server "$server"
  sleep 0.5  # let start-up allocations settle
  before[$server]=$(rss_kb "$SERVER_PID")
  loadgen --load-only --json || die "$server: load failed: $OUT"
  echo "  load: $(jget prefill_s "$OUT") s, $(jget sweep_ok "$OUT") STORED" >&2
  after[$server]=$(rss_kb "$SERVER_PID")
  if loadgen --verify --duration 0 --json; then
    verified[$server]="all $(jget sweep_ok "$OUT") hit"
  else
    verified[$server]="FAILED: $(jget sweep_ok "$OUT") hits, $(jget sweep_misses "$OUT") misses, $(jget sweep_errors "$OUT") errors"
  fi
  echo "  verify: ${verified[$server]} ($(jget verify_s "$OUT") s)" >&2
  read -r ci by <<<"$(server_stats "$SERVER_PORT")"
  items[$server]=$ci bytes[$server]=$by
  stop_server "$SERVER_PID"
done

echo
printf '| server | RSS before | RSS after | RSS delta | after / item | delta / item | curr_items | stats bytes / item | read back |\n'
printf '|---|--:|--:|--:|--:|--:|--:|--:|---|\n'
for server in "${servers[@]}"; do
  awk -v s="$server" -v b="${before[$server]}" -v a="${after[$server]}" -v n="$ITEMS" -v ci="${items[$server]}" \
      -v sb="${bytes[$server]}" -v ok="${verified[$server]}" 'BEGIN {
    printf "| %s | %.1f MiB | %.1f MiB | %.1f MiB | %.1f B | %.1f B | %s | %s | %s |\n", s, b / 1024, a / 1024,
           (a - b) / 1024, a * 1024 / n, (a - b) * 1024 / n, ci,
           (sb == "?" ? "?" : sprintf("%.1f B", sb / n)), ok }'
done
if [[ -n $KVD ]]; then
  awk -v ma="${after[memcached]}" -v mb="${before[memcached]}" -v ka="${after[qcloud-kvd]}" \
      -v kb="${before[qcloud-kvd]}" 'BEGIN {
    printf "| kvd / memcached | | %.2f | %.2f | %.2f | %.2f | | | |\n", ka / ma, (ka - kb) / (ma - mb), ka / ma,
           (ka - kb) / (ma - mb) }'
fi
