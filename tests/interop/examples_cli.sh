#!/usr/bin/env bash
# The example servers' shared command line and lifecycle, end to end:
# --help/--version, values refused with exit code 2 (negative sizes and
# durations, host names, overflowing numbers), both connection loops serving,
# SIGTERM stopping cleanly, and kvd's drained hook saving memory to the cold
# tier so a restart serves what it had.
#   examples_cli.sh <qcloud-kvd> <qcloud-host-agent>
set -euo pipefail
kvd=$1 agent=$2
work=$(mktemp -d /tmp/qcloud-cli-XXXXXX)
pid=""
cleanup() { [[ -n $pid ]] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
fail() { echo "FAIL: $*"; exit 1; }
checks=0

expect_exit() {  # code pattern-on-output command...
  local want=$1 pattern=$2; shift 2
  local rc=0
  "$@" >"$work/out" 2>&1 || rc=$?
  [[ $rc == "$want" ]] || { cat "$work/out"; fail "'$*' exited $rc, want $want"; }
  grep -q -- "$pattern" "$work/out" || { cat "$work/out"; fail "'$*' did not say '$pattern'"; }
  checks=$((checks + 1))
}

expect_exit 0 '^qcloud-kvd 0\.' "$kvd" --version
expect_exit 0 '^qcloud-host-agent 0\.' "$agent" --version
expect_exit 0 '--log-level' "$kvd" --help
expect_exit 0 '--cold-after' "$kvd" --help
expect_exit 2 'qcloud-kvd: --memory: bad size' "$kvd" --memory -1
expect_exit 2 'qcloud-kvd: --memory: .*too large' "$kvd" --memory 99999999999999999999G
expect_exit 2 'qcloud-kvd: --cold-after: bad duration' "$kvd" --cold-after -5s
expect_exit 2 'qcloud-kvd: --cold-after: bad duration' "$kvd" --cold-after 1.5h
expect_exit 2 'qcloud-kvd: --listen: bad address' "$kvd" --listen localhost:11211
expect_exit 2 'qcloud-kvd: --threads' "$kvd" --threads 4294967297
expect_exit 2 'qcloud-kvd: --threads' "$kvd" --threads -1
expect_exit 2 'qcloud-kvd: --log-level' "$kvd" --log-level loud
expect_exit 2 'qcloud-host-agent: --log-interval' "$agent" --log-interval 10x
expect_exit 2 'unrecognised option' "$kvd" --no-such-flag

# Starts kvd with "$@", waits for its address; sets pid and port.
start_kvd() {
  "$kvd" --listen 127.0.0.1:0 "$@" >"$work/kvd.out" 2>"$work/kvd.err" &
  pid=$!
  port=""
  for _ in $(seq 1 100); do
    port=$(sed -n 's/^qcloud-kvd listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$work/kvd.out")
    [[ -n $port ]] && return 0
    kill -0 "$pid" 2>/dev/null || { wait "$pid" || true; pid=""; return 1; }
    sleep 0.1
  done
  cat "$work/kvd.out" "$work/kvd.err"; fail "kvd $* did not start"
}
memc() {  # request, reply bytes
  exec 3<>"/dev/tcp/127.0.0.1/$port"
  printf '%b' "$1" >&3
  timeout 5 head -c "$2" <&3
  exec 3<&-
}
stop_kvd() {  # SIGTERM; must exit 0 within 10 s
  kill -TERM "$pid"
  local rc=0
  timeout 10 tail --pid="$pid" -f /dev/null || fail "kvd ignored SIGTERM"
  wait "$pid" || rc=$?
  pid=""
  [[ $rc == 0 ]] || { cat "$work/kvd.err"; fail "kvd exited $rc after SIGTERM"; }
  checks=$((checks + 1))
}

for loop in epoll io_uring; do
  if ! start_kvd --loop "$loop" --memory 16; then
    grep -q 'not supported' "$work/kvd.err" || { cat "$work/kvd.err"; fail "kvd --loop $loop"; }
    echo "io_uring refused on this host: epoll only"
    continue
  fi
  grep -q "($loop)" "$work/kvd.out" || fail "kvd --loop $loop: $(cat "$work/kvd.out")"
  [[ $(memc 'version\r\n' 23) == $'VERSION 1.6.18-qcloud\r' ]] || fail "$loop: version"
  checks=$((checks + 1))
  stop_kvd
done

# A clean stop sinks memory to the cold tier; a restart serves it.
mkdir -p "$work/ssd"
start_kvd --memory 16 --ssd-dir "$work/ssd" || fail "kvd --ssd-dir"
[[ $(memc 'set kept 5 0 5\r\nhello\r\n' 8) == $'STORED\r' ]] || fail "set before restart"
stop_kvd
start_kvd --memory 16 --ssd-dir "$work/ssd" || fail "kvd restart"
[[ $(memc 'get kept\r\n' 28) == $'VALUE kept 5 5\r\nhello\r\nEND\r' ]] || fail "value lost across a restart"
checks=$((checks + 1))
stop_kvd
# The read of a recovered item goes through the loop (SessionIo) with
# either backend; replies after it keep their order.
start_kvd --memory 16 --ssd-dir "$work/ssd" --loop epoll || fail "kvd restart (epoll)"
[[ $(memc 'get kept\r\nget nothere\r\n' 33) == $'VALUE kept 5 5\r\nhello\r\nEND\r\nEND\r' ]] || fail "value lost across a restart (epoll)"
checks=$((checks + 1))
stop_kvd
echo "ok: $checks checks"
