#!/usr/bin/env bash
# `qcloud-blockd volume ...` on a stopped and on a running server:
#
#   block_admin_cli.sh PATH-TO-qcloud-blockd
#
#   stopped   every volume command (create list resize delete snapshot
#             snapshots delete-snapshot rollback clone copies) on a fresh
#             data directory, their output and exit status, errors (exit 1,
#             the reason on stderr)
#   running   the server started on that directory (127.0.0.1, a free port);
#             the same commands through its admin socket print the same
#             text; a volume created or cloned there is served at once
#             (nbdinfo --list) and a deleted one is gone; data written with
#             qemu-io, snapshotted, overwritten: the clone of the snapshot
#             and the volume rolled back read the snapshot's pattern (each
#             check on a new connection: one made before a rollback may
#             keep its old view)
#   stopped   again after SIGTERM: the socket file is gone, what was done
#             through the server is in the store
#
# The server is stopped by PID on exit; every call is bounded by timeout(1).
# Prints PASS/FAIL per check and 'N passed, N failed'; exits non-zero on any
# failure. About 5 s.
set -euo pipefail

bin=${1:?usage: $0 PATH-TO-qcloud-blockd}
for t in nbdinfo qemu-io timeout stat; do
  command -v "$t" >/dev/null || { echo "missing tool: $t" >&2; exit 2; }
done

work=$(mktemp -d /tmp/qcloud-block-admin-XXXXXX)
data=$work/data
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

passed=0 failed=0
pass() { echo "PASS $1"; passed=$((passed + 1)); }
fail() { echo "FAIL $1${2:+: $2}"; failed=$((failed + 1)); }

# vol ARGS...: runs `qcloud-blockd volume ARGS --data-dir DIR`; sets out,
# err and rc.
vol() {
  rc=0
  out=$(timeout 30 "$bin" volume "$@" --data-dir "$data" 2>"$work/stderr") || rc=$?
  err=$(cat "$work/stderr")
}
# ok NAME EXPECTED-STDOUT ARGS...: exit 0, exactly that output, nothing on stderr.
ok() {
  local name=$1 want=$2; shift 2
  vol "$@"
  if [[ $rc -eq 0 && $out == "$want" && -z $err ]]; then
    pass "$name"
  else
    fail "$name" "rc=$rc out=[$out] err=[$err] want=[$want]"
  fi
}
# refused NAME STDERR-PATTERN ARGS...: exit 1, the reason on stderr, no stdout.
refused() {
  local name=$1 pattern=$2; shift 2
  vol "$@"
  if [[ $rc -eq 1 && -z $out ]] && grep -qE "$pattern" <<<"$err"; then
    pass "$name"
  else
    fail "$name" "rc=$rc out=[$out] err=[$err]"
  fi
}
T=$'\t' NL=$'\n'

# --- stopped: the CLI opens the store itself ---
echo "--- stopped server"
ok "create on a stopped server" "" create vol 64M
ok "list" "vol${T}64M${T}allocated 0B" list
ok "resize" "" resize vol 128M
ok "list after resize" "vol${T}128M${T}allocated 0B" list
ok "snapshot" "" snapshot vol s0
ok "snapshots of a volume" "vol@s0${T}128M" snapshots vol
ok "snapshots of all" "vol@s0${T}128M" snapshots
ok "clone" "" clone vol s0 c0
ok "list shows the clone's origin" "c0${T}128M${T}allocated 0B${T}origin vol@s0${NL}vol${T}128M${T}allocated 0B" list
ok "rollback" "" rollback vol s0
ok "copies" "$data${T}whole${T}missed 0${T}rebuilt 0" copies
ok "delete the clone" "" delete c0
ok "delete-snapshot" "" delete-snapshot vol s0
ok "no snapshots left" "" snapshots
refused "delete of a missing volume" "not found" delete nosuch
stopped_missing_err=$err
refused "a bad size" "invalid argument.*SIZE" create v2 10X
refused "an unknown command" "invalid argument: unknown command" frobnicate
refused "wrong arity" "invalid argument: usage: clone NAME SNAPSHOT NEW-NAME" clone vol s0
refused "a bad name" "invalid argument" create .hidden 1M
refused "a word with a space" "no spaces" create "a b" 1M
ok "create again" "" create vol2 8M
vol list
stopped_list=$out
vol copies
stopped_copies=$out

# --- running: the CLI goes through <data-dir>/admin.sock ---
echo "--- running server"
"$bin" --listen 127.0.0.1:0 --data-dir "$data" --threads 2 >"$work/server.log" 2>&1 &
pid=$!
for _ in $(seq 100); do
  grep -q "listening on" "$work/server.log" && break
  kill -0 "$pid" 2>/dev/null || { cat "$work/server.log"; exit 1; }
  sleep 0.05
done
port=$(grep -o "listening on 127.0.0.1:[0-9]*" "$work/server.log" | grep -o "[0-9]*$" || true)
[[ -n $port ]] || { echo "server did not start"; cat "$work/server.log"; exit 1; }
base="nbd://127.0.0.1:$port"
echo "server on $base"

if [[ -S $data/admin.sock && $(stat -c %a "$data/admin.sock") == 600 ]]; then
  pass "admin.sock is a socket, mode 0600"
else
  fail "admin.sock is a socket, mode 0600" "$(ls -l "$data" 2>&1)"
fi
ok "list through the server prints the same" "$stopped_list" list
ok "copies through the server prints the same" "$stopped_copies" copies
refused "an error through the server" "not found" delete nosuch
if [[ $err == "$stopped_missing_err" ]]; then
  pass "the same error text either way"
else
  fail "the same error text either way" "[$err] vs [$stopped_missing_err]"
fi
refused "a bad size through the server" "invalid argument.*SIZE" create v2 10X
refused "an unknown command through the server" "unknown command" frobnicate

exports() { timeout 20 nbdinfo --list "$base" 2>&1 || true; }
served() { grep -q "export=\"$1\"" <<<"$(exports)"; }
# qio NAME EXPORT COMMAND...: qemu-io on a new connection; it keeps exit 0
# on a pattern mismatch, so its output is checked too.
qio() {
  local name=$1 export=$2; shift 2
  local args=() o
  for c in "$@"; do args+=(-c "$c"); done
  if o=$(timeout 60 qemu-io -f raw "$base/$export" "${args[@]}" 2>&1) &&
    ! grep -qiE "verification failed|error|failed" <<<"$o"; then
    pass "$name"
  else
    fail "$name" "$(echo "$o" | head -3)"
  fi
}

ok "create on the running server" "" create live 16M
if served live; then pass "the new volume is served at once"; else fail "the new volume is served at once" "$(exports)"; fi
qio "qemu-io writes 0x5a to live" live 'write -P 0x5a 0 1M' 'read -P 0x5a 0 1M'
ok "snapshot on the running server" "" snapshot live snap1
ok "snapshots through the server" "live@snap1${T}16M" snapshots live
qio "qemu-io overwrites live with 0xa5" live 'write -P 0xa5 0 1M' 'read -P 0xa5 0 1M'
ok "clone on the running server" "" clone live snap1 liveclone
if served liveclone; then pass "the clone is served at once"; else fail "the clone is served at once" "$(exports)"; fi
qio "the clone reads the snapshot's 0x5a" liveclone 'read -P 0x5a 0 1M' "read -P 0 1M 15M"
qio "live still reads 0xa5" live 'read -P 0xa5 0 1M'
ok "rollback on the running server" "" rollback live snap1
qio "live reads 0x5a after the rollback" live 'read -P 0x5a 0 1M'
ok "resize on the running server" "" resize live 32M
size=$(timeout 20 nbdinfo --size "$base/live" 2>&1 || true)
if [[ $size == $((32 << 20)) ]]; then pass "a new connection sees the new size"; else fail "a new connection sees the new size" "$size"; fi
vol list
if grep -q "^liveclone${T}16M${T}allocated [0-9]*[BKM]${T}origin live@snap1$" <<<"$out" &&
  grep -q "^live${T}32M${T}" <<<"$out"; then
  pass "list through the server shows the clone and the resize"
else
  fail "list through the server shows the clone and the resize" "$out"
fi
ok "delete-snapshot on the running server" "" delete-snapshot live snap1
qio "the clone keeps its data after its snapshot is deleted" liveclone 'read -P 0x5a 0 1M'
ok "delete on the running server" "" delete liveclone
if served liveclone; then fail "a deleted volume is gone at once" "$(exports)"; else pass "a deleted volume is gone at once"; fi
if timeout 20 nbdinfo --size "$base/liveclone" >/dev/null 2>&1; then
  fail "a deleted volume cannot be opened"
else
  pass "a deleted volume cannot be opened"
fi
if served live && served vol && served vol2; then pass "the others are still served"; else fail "the others are still served" "$(exports)"; fi

# --- stopped again ---
echo "--- stopped again"
kill -TERM "$pid"
rc=0
timeout 30 tail --pid="$pid" -f /dev/null || rc=$?
wait "$pid" || rc=$?
pid=""
if [[ $rc -eq 0 ]]; then pass "the server stops cleanly"; else fail "the server stops cleanly" "rc=$rc $(tail -5 "$work/server.log")"; fi
if [[ -e $data/admin.sock ]]; then fail "admin.sock is removed at the stop"; else pass "admin.sock is removed at the stop"; fi
vol list
if [[ $rc -eq 0 ]] && grep -q "^live${T}32M${T}" <<<"$out" && ! grep -q liveclone <<<"$out"; then
  pass "what the server did is in the store"
else
  fail "what the server did is in the store" "rc=$rc out=[$out] err=[$err]"
fi
ok "the store is free again" "" delete live

echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
