# shellcheck shell=bash
# shellcheck disable=SC2034
# (SC2034: the variables set here are read by the scripts that source this)
# Shared helpers of the object-store interop scripts written in bash
# (object_clients.sh): the command line, starting and stopping the server,
# and the PASS/FAIL/SKIP harness. Source it; it defines functions and sets no
# traps itself (obj_cleanup is for the caller's EXIT trap).
#
# Command line understood by obj_parse_args (same as object_boto3.py):
#   --cosd PATH        start qcloud-cosd with users alice and bob
#   --s3rver DIR       start s3rver from the npm install in DIR
#                      (DIR/node_modules/s3rver, `npm install s3rver@3`)
#   --endpoint URL --access KEY --secret SECRET [--access2 KEY --secret2 SECRET]
#                      test a server already running
#   --big-mib N        size of the big object in MiB (default 100)
#
# After obj_start_server: $endpoint (http://127.0.0.1:PORT), $host_port
# (127.0.0.1:PORT), $access/$secret (first user), $access2/$secret2 (second
# user, empty if none), $mode (cosd | s3rver | endpoint).

OBJ_HOST=127.0.0.1
OBJ_REGION=us-east-1
OBJ_ALICE=(alice AKIAALICE0000000000A alice-secret-key-0000000000000000000000)
OBJ_BOB=(bob AKIABOB00000000000000 bob-secret-key-00000000000000000000000000)

obj_usage() {
  cat >&2 <<EOF
usage: $0 --cosd PATH | --s3rver DIR |
          --endpoint URL --access KEY --secret SECRET [--access2 KEY --secret2 SECRET]
          [--big-mib N]
EOF
  exit 2
}

# obj_parse_args "$@": sets mode, server_arg, endpoint, access, secret,
# access2, secret2, big_mib
obj_parse_args() {
  mode='' server_arg='' endpoint='' access='' secret='' access2='' secret2='' big_mib=100
  while [[ $# -gt 0 ]]; do
    [[ $# -ge 2 ]] || obj_usage
    case $1 in
      --cosd) [[ -z $mode ]] || obj_usage; mode=cosd; server_arg=$2 ;;
      --s3rver) [[ -z $mode ]] || obj_usage; mode=s3rver; server_arg=$2 ;;
      --endpoint) [[ -z $mode ]] || obj_usage; mode=endpoint; endpoint=${2%/} ;;
      --access) access=$2 ;;
      --secret) secret=$2 ;;
      --access2) access2=$2 ;;
      --secret2) secret2=$2 ;;
      --big-mib) big_mib=$2 ;;
      *) obj_usage ;;
    esac
    shift 2
  done
  [[ -n $mode ]] || obj_usage
  [[ $big_mib =~ ^[1-9][0-9]*$ ]] || { echo "--big-mib: not a positive number" >&2; exit 2; }
  [[ -n $access2 && -n $secret2 || -z $access2 && -z $secret2 ]] || obj_usage
  case $mode in
    cosd)
      [[ -x $server_arg ]] || { echo "not executable: $server_arg" >&2; exit 2; }
      access=${OBJ_ALICE[1]} secret=${OBJ_ALICE[2]}
      access2=${OBJ_BOB[1]} secret2=${OBJ_BOB[2]} ;;
    s3rver)
      [[ -f $server_arg/node_modules/s3rver/bin/s3rver.js ]] || {
        echo "no $server_arg/node_modules/s3rver/bin/s3rver.js (npm install s3rver@3)" >&2; exit 2; }
      command -v node >/dev/null || { echo "no node" >&2; exit 2; }
      access=S3RVER secret=S3RVER access2='' secret2='' ;;
    endpoint)
      [[ $endpoint =~ ^http://[^/]+$ ]] || { echo "--endpoint must be http://HOST:PORT" >&2; exit 2; }
      [[ -n $access && -n $secret ]] || obj_usage ;;
  esac
}

# obj_start_server WORKDIR: start the server of $mode (data in WORKDIR/data,
# output in WORKDIR/server.{out,log}) and wait (10 s at most) for the line
# that names its port. Sets server_pid, endpoint, host_port.
server_pid=
obj_start_server() {
  local work=$1 pattern
  if [[ $mode == endpoint ]]; then
    host_port=${endpoint#http://}
    return 0
  fi
  mkdir -p "$work/data"
  if [[ $mode == cosd ]]; then
    "$server_arg" --listen "$OBJ_HOST:0" --data-dir "$work/data" \
      --user "$(IFS=:; echo "${OBJ_ALICE[*]}")" --user "$(IFS=:; echo "${OBJ_BOB[*]}")" \
      --region "$OBJ_REGION" </dev/null >"$work/server.out" 2>"$work/server.log" &
    pattern='qcloud-cosd listening on 127\.0\.0\.1:'
  else
    # s3rver prints its port even with --silent; its ListObjectsV2
    # continuation tokens use DES, which OpenSSL 3 keeps in the legacy provider
    node --openssl-legacy-provider "$server_arg/node_modules/s3rver/bin/s3rver.js" \
      --directory "$work/data" --address "$OBJ_HOST" --port 0 --silent \
      </dev/null >"$work/server.out" 2>"$work/server.log" &
    pattern='S3rver listening on 127\.0\.0\.1:'
  fi
  server_pid=$!
  local port='' _
  for _ in $(seq 1 100); do
    port=$(sed -n "s/.*${pattern}\([0-9][0-9]*\).*/\1/p" "$work/server.out" | head -1)
    [[ -n $port ]] && break
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
  done
  if [[ -z $port ]]; then
    echo "FAIL $mode did not print its listening line within 10 s"
    tail -20 "$work/server.out" "$work/server.log" 2>/dev/null
    return 1
  fi
  host_port=$OBJ_HOST:$port
  endpoint=http://$host_port
  echo "started $mode on $endpoint (pid $server_pid)"
}

# obj_stop_server: SIGTERM, SIGKILL after 5 s; by PID only
obj_stop_server() {
  [[ -n $server_pid ]] || return 0
  if kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    local _
    for _ in $(seq 1 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$server_pid" 2>/dev/null || true
  fi
  wait "$server_pid" 2>/dev/null || true
  server_pid=
}

# ---------------------------------------------------------------- harness
# run_check NAME FUNCTION [ARGS...]: the function runs in a background
# subshell with errexit in force (errexit would be ignored in an if/||
# context), so any failing command fails the check.
# skip_check NAME REASON: prints SKIP NAME (REASON).
passes=0
failures=()
skips=()
obj_work=
run_check() {
  local name=$1; shift
  local log="$obj_work/check.log"
  ( set -euo pipefail; "$@" ) >"$log" 2>&1 &
  if wait $!; then
    passes=$((passes + 1))
    echo "PASS $name$( [[ -s $obj_work/detail ]] && echo " ($(cat "$obj_work/detail"))" )"
  else
    failures+=("$name")
    echo "FAIL $name"
    tail -20 "$log" | sed 's/^/    /'
  fi
  rm -f "$obj_work/detail"
}
skip_check() {
  skips+=("$1")
  echo "SKIP $1 ($2)"
}
# s3rver_skip REASON NAME FUNCTION [ARGS...]: SKIP in s3rver mode, else run
s3rver_skip() {
  local reason=$1; shift
  if [[ $mode == s3rver ]]; then skip_check "$1" "s3rver: $reason"; else run_check "$@"; fi
}
detail() { echo "$*" >"$obj_work/detail"; }
die() { echo "$*" >&2; return 1; }
# tl CMD...: every client call is time-bounded (-k: a stuck tool cannot
# outlive the test)
tl() { timeout -k 2 40 "$@"; }
# expect_rc WANT CMD...: run CMD (bounded) with output in $obj_work/out and
# $obj_work/err, require exit status WANT (or "nz" for any non-zero one)
expect_rc() {
  local want=$1; shift
  local rc=0
  tl "$@" >"$obj_work/out" 2>"$obj_work/err" </dev/null || rc=$?
  if [[ $want == nz && $rc -ne 0 && $rc -ne 124 && $rc -ne 137 ]] || [[ $rc == "$want" ]]; then
    return 0
  fi
  echo "\$ $*"; echo "exit $rc, expected $want"
  head -c 3000 "$obj_work/out"; head -c 3000 "$obj_work/err"
  return 1
}
# grep_out PATTERN [FILE]: extended-regex PATTERN must occur in FILE
# (default: the last command's stdout + stderr)
grep_out() {
  local f=${2:-}
  if [[ -z $f ]]; then cat "$obj_work/out" "$obj_work/err" >"$obj_work/both"; f=$obj_work/both; fi
  grep -Eq -- "$1" "$f" || die "no /$1/ in: $(head -c 2000 "$f")"
}
sha256_of() { sha256sum "$1" | cut -d' ' -f1; }
md5_of() { md5sum "$1" | cut -d' ' -f1; }
# mp_etag FILE CHUNK_MIB: the S3 ETag of FILE uploaded in CHUNK_MIB parts
mp_etag() {
  /usr/bin/python3 - "$1" "$2" <<'PY'
import hashlib, sys
size = int(sys.argv[2]) * 1024 * 1024
digests, n = b'', 0
with open(sys.argv[1], 'rb') as f:
    while True:
        chunk = f.read(size)
        if not chunk:
            break
        digests += hashlib.md5(chunk).digest()
        n += 1
print('"%s-%d"' % (hashlib.md5(digests).hexdigest(), n))
PY
}
# obj_summary T_START: the closing lines; returns 0 iff nothing failed
obj_summary() {
  local total=$((passes + ${#failures[@]}))
  echo "$passes passed, ${#failures[@]} failed, ${#skips[@]} skipped"
  if [[ ${#failures[@]} -eq 0 ]]; then
    echo "PASS: $passes/$total checks passed, ${#skips[@]} skipped, in $((SECONDS - $1)) s"
    return 0
  fi
  echo "FAIL: $passes/$total checks passed, ${#skips[@]} skipped, in $((SECONDS - $1)) s; failed:"
  printf '  %s\n' "${failures[@]}"
  return 1
}
