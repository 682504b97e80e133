# Shared by compare.sh and memory.sh (sourced, not run): start memcached and
# qcloud-kvd pinned to one CPU, stop them by PID, clean up on exit, build the
# loadgen. The caller sets SERVER_CPU, MEMCACHED, KVD and LOADGEN (may be
# empty) and SCRIPT (its name, for messages) before sourcing this file.
# shellcheck shell=bash

kv_here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/kv-bench.XXXXXX")
PIDS=()  # servers started and not yet stopped
CLIENT_PID=""  # the loadgen, while it runs

die() { echo "$SCRIPT: $*" >&2; exit 1; }

kv_cleanup() {
  local pid
  if [[ -n $CLIENT_PID ]]; then
    kill -TERM "$CLIENT_PID" 2>/dev/null || true
    wait "$CLIENT_PID" 2>/dev/null || true
  fi
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  PIDS=()
  rm -rf "$tmp"
}
trap kv_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

command -v "$MEMCACHED" >/dev/null || die "memcached not found (MEMCACHED=$MEMCACHED)"
command -v taskset >/dev/null || die "taskset (util-linux) not found"
if [[ -n $KVD && ! -x $KVD ]]; then die "--kvd $KVD is not executable"; fi
if [[ -n ${LIMIT:-} && ! -x $LIMIT ]]; then die "--limit $LIMIT is not executable"; fi
if [[ -z $LOADGEN ]]; then
  LOADGEN=$tmp/kv_loadgen
  "${CXX:-g++}" -std=c++20 -O2 -pthread "$kv_here/kv_loadgen.cc" -o "$LOADGEN" || die "cannot build kv_loadgen"
fi
[[ -x $LOADGEN ]] || die "loadgen $LOADGEN is not executable"

kv_forget_pid() {
  local keep=() p
  for p in "${PIDS[@]}"; do
    if [[ $p != "$1" ]]; then keep+=("$p"); fi
  done
  PIDS=("${keep[@]}")
}

stop_server() {  # PID: SIGTERM, then SIGKILL after 5 s
  local pid=$1
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  kv_forget_pid "$pid"
}

# Is PID the process listening on 127.0.0.1:PORT? On a shared machine another
# process may own the port, and then a plain connect would succeed too.
kv_listening() {  # PID PORT
  if command -v ss >/dev/null; then
    ss -Htlnp "sport = :$2" 2>/dev/null | grep -q "pid=$1,"
  else
    kill -0 "$1" 2>/dev/null && (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null
  fi
}
kv_port_busy() { command -v ss >/dev/null && [[ -n $(ss -Htan "sport = :$1" 2>/dev/null) ]]; }

# start_memcached [MB] / start_kvd [ARGS...] set SERVER_PID and SERVER_PORT.
# Defaults: memcached -m 1024; qcloud-kvd --memory 1024 --threads 1.
start_memcached() {
  local mb=${1:-1024} port pid
  local mc_args=(-l 127.0.0.1 -U 0 -t 1 -m "$mb" -c 4096)
  if [[ $(id -u) == 0 ]]; then mc_args+=(-u root); fi
  for _ in 1 2 3 4 5; do
    port=$((20000 + RANDOM % 30000))
    if kv_port_busy "$port"; then continue; fi
    taskset -c "$SERVER_CPU" "$MEMCACHED" "${mc_args[@]}" -p "$port" >"$tmp/memcached.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    for _ in $(seq 100); do
      if kv_listening "$pid" "$port"; then
        SERVER_PID=$pid SERVER_PORT=$port
        return 0
      fi
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.05
    done
    stop_server "$pid"
  done
  cat "$tmp/memcached.log" >&2
  die "memcached did not start"
}

start_kvd() {
  local pid port=""
  if [[ $# -eq 0 ]]; then set -- --memory 1024 --threads 1; fi
  taskset -c "$SERVER_CPU" "$KVD" --listen 127.0.0.1:0 "$@" >"$tmp/kvd.out" 2>"$tmp/kvd.err" &
  pid=$!
  PIDS+=("$pid")
  for _ in $(seq 600); do  # reopening a cold tier scans it: allow 30 s
    port=$(sed -n 's/^qcloud-kvd listening on 127\.0\.0\.1:\([0-9][0-9]*\).*/\1/p' "$tmp/kvd.out" | head -n1)
    if [[ -n $port ]]; then break; fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  if [[ -z $port ]] || ! kill -0 "$pid" 2>/dev/null; then
    cat "$tmp/kvd.out" "$tmp/kvd.err" >&2
    stop_server "$pid"
    die "qcloud-kvd $* did not print 'qcloud-kvd listening on 127.0.0.1:PORT' within 30 s"
  fi
  SERVER_PID=$pid SERVER_PORT=$port
}

# start_null: the no-storage reference (kv_null_server, $LIMIT) answering
# kv_loadgen with values of VALUE_SIZE bytes; sets SERVER_PID and SERVER_PORT.
start_null() {
  local pid port=""
  taskset -c "$SERVER_CPU" "$LIMIT" --listen 127.0.0.1:0 --value-size "$VALUE_SIZE" >"$tmp/null.out" 2>"$tmp/null.err" &
  pid=$!
  PIDS+=("$pid")
  for _ in $(seq 100); do
    port=$(sed -n 's/^kv_null_server listening on 127\.0\.0\.1:\([0-9][0-9]*\).*/\1/p' "$tmp/null.out" | head -n1)
    if [[ -n $port ]]; then break; fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  if [[ -z $port ]]; then
    cat "$tmp/null.out" "$tmp/null.err" >&2
    stop_server "$pid"
    die "kv_null_server did not start"
  fi
  SERVER_PID=$pid SERVER_PORT=$port
}

start_server() {  # memcached | qcloud-kvd | limit
  if [[ $1 == memcached ]]; then
    start_memcached 1024
  elif [[ $1 == limit ]]; then
    start_null
  else
    start_kvd --memory 1024 --threads 1
  fi
  echo "  $1: pid $SERVER_PID, port $SERVER_PORT, CPU $SERVER_CPU" >&2
}

# Busy share (%) of the given CPUs over SECONDS, from /proc/stat: what other
# work on this machine is using before we start measuring.
cpu_busy() {  # CPULIST (taskset syntax: 0,2-3) SECONDS
  local a b part i cpus=""
  IFS=, read -ra parts <<<"$1"
  for part in "${parts[@]}"; do
    if [[ $part == *-* ]]; then
      for ((i = ${part%-*}; i <= ${part#*-}; i++)); do cpus+="$i,"; done
    else
      cpus+="$part,"
    fi
  done
  a=$(grep -E '^cpu[0-9]+ ' /proc/stat)
  sleep "$2"
  b=$(grep -E '^cpu[0-9]+ ' /proc/stat)
  awk -v cpus=",$cpus" 'NR == FNR { for (i = 2; i <= 9; i++) a[$1, i] = $i; next }
    index(cpus, "," substr($1, 4) ",") {
      for (i = 2; i <= 9; i++) { d = $i - a[$1, i]; tot += d; if (i == 5 || i == 6) idle += d }
    }
    END { printf "%.0f", (tot > 0 ? 100 * (tot - idle) / tot : 0) }' <(echo "$a") <(echo "$b")
}

# run_client OUT ERR CMD...: runs CMD with stdout/stderr to files, in the
# background so that a signal's trap runs at once (bash defers traps while a
# foreground command runs) and cleanup can stop it. Returns CMD's status.
run_client() {
  local out=$1 err=$2 rc=0
  shift 2
  "$@" >"$out" 2>"$err" &
  CLIENT_PID=$!
  wait "$CLIENT_PID" || rc=$?
  CLIENT_PID=""
  return "$rc"
}

# A number from the loadgen's one-line JSON.
jget() { sed -n "s/.*\"$1\":\"\{0,1\}\([^,\"}]*\).*/\1/p" <<<"$2"; }
