#!/usr/bin/env bash
# Side-by-side macro benchmark of qcloud-cosd: 1 KiB GETs against nginx
# serving the same 1 KiB files, 1 KiB PUTs, 64 MiB PUTs and GETs, the
# instant-upload decision time, and in the same run the limits a large PUT
# meets on this machine (MD5, SHA-256, disk).
#
#   bench/object/compare.sh --cosd PATH --loadgen PATH [--repeat N] [--seconds S]
#                           [--server-cpu N] [--client-cpu N] [--conns C] [--quick]
#
#   --cosd PATH      qcloud-cosd (a release build: build/release/examples/...)
#   --loadgen PATH   s3_load (build/release/bench/object/s3_load)
#   --repeat N       GET pairs, nginx and cosd taking turns (default 5);
#                    the table gives the medians and the median of the ratios
#   --seconds S      measured seconds per run (default 4)
#   --server-cpu N   CPU for the server under test (default 0)
#   --client-cpu N   CPU for the load generator (default 1)
#   --conns C        connections for the 1 KiB runs (default 64)
#   --quick          1 pair, 2 s runs (a smoke run)
#   NGINX=path       nginx binary (default: nginx on PATH; Debian nginx-light)
#
# Every server is started here, pinned with taskset, on 127.0.0.1, and
# stopped by PID on exit (also on errors and Ctrl-C).
set -euo pipefail

COSD="" LOADGEN="" REPEAT=5 SECONDS_PER=4 SERVER_CPU=0 CLIENT_CPU=1 CONNS=64 KEYS=10000
NGINX=${NGINX:-nginx}
usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'; }
while [[ $# -gt 0 ]]; do
  case $1 in
    --cosd) COSD=$2; shift 2 ;;
    --loadgen) LOADGEN=$2; shift 2 ;;
    --repeat) REPEAT=$2; shift 2 ;;
    --seconds) SECONDS_PER=$2; shift 2 ;;
    --server-cpu) SERVER_CPU=$2; shift 2 ;;
    --client-cpu) CLIENT_CPU=$2; shift 2 ;;
    --conns) CONNS=$2; shift 2 ;;
    --quick) REPEAT=1 SECONDS_PER=2; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "compare.sh: unknown argument $1" >&2; usage >&2; exit 1 ;;
  esac
done
die() { echo "compare.sh: $*" >&2; exit 1; }
[[ -x $COSD ]] || die "--cosd PATH is required (a qcloud-cosd binary)"
[[ -x $LOADGEN ]] || die "--loadgen PATH is required (s3_load)"
command -v "$NGINX" >/dev/null || die "nginx not found (apt-get install nginx-light)"
command -v taskset >/dev/null || die "taskset not found"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/object-bench.XXXXXX")
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
  done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ACCESS=AKIABENCH0000000000A SECRET=bench-secret-key-000000000000000000000000
json() { sed -n "s/.*\"$2\":\([0-9.]*\).*/\1/p" <<<"$1"; }
median() { sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
load() { taskset -c "$CLIENT_CPU" "$LOADGEN" --access $ACCESS --secret $SECRET --bucket bench "$@"; }

# --- qcloud-cosd
taskset -c "$SERVER_CPU" "$COSD" --listen 127.0.0.1:0 --data-dir "$tmp/cos" --threads 1 \
  --metrics-listen 127.0.0.1:0 --user bench:$ACCESS:$SECRET >"$tmp/cosd.out" 2>"$tmp/cosd.err" &
PIDS+=($!)
for _ in $(seq 100); do grep -q "listening on" "$tmp/cosd.out" 2>/dev/null && break; sleep 0.1; done
COS_PORT=$(sed -n 's/.*listening on 127.0.0.1:\([0-9]*\).*/\1/p' "$tmp/cosd.out")
MET_PORT=$(sed -n 's/.*metrics on http:\/\/127.0.0.1:\([0-9]*\).*/\1/p' "$tmp/cosd.out")
[[ -n $COS_PORT ]] || die "qcloud-cosd did not start: $(cat "$tmp/cosd.err")"
COS=127.0.0.1:$COS_PORT
load --endpoint "$COS" --op mkbucket >/dev/null || die "cannot create the bucket"

# --- nginx with the same 1 KiB files (one worker, no access log, sendfile).
mkdir -p "$tmp/www/bench" "$tmp/nginx"
head -c $((KEYS * 1024)) /dev/urandom | split -b 1024 -a 5 -d - "$tmp/www/bench/x"
i=0
for f in "$tmp"/www/bench/x*; do mv "$f" "$tmp/www/bench/k$i"; i=$((i + 1)); done
NGINX_PORT=$((20000 + RANDOM % 20000))
cat >"$tmp/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
error_log $tmp/nginx/error.log;
pid $tmp/nginx/nginx.pid;
$([[ $(id -u) == 0 ]] && echo "user root;")
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  tcp_nodelay on;
  keepalive_requests 1000000;
  open_file_cache max=20000 inactive=60s;
  server { listen 127.0.0.1:$NGINX_PORT; root $tmp/www; }
}
EOF
taskset -c "$SERVER_CPU" "$NGINX" -c "$tmp/nginx/nginx.conf" -p "$tmp/nginx" >/dev/null 2>&1 &
PIDS+=($!)
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$NGINX_PORT") 2>/dev/null && break; sleep 0.1; done

echo "# qcloud-cosd vs nginx, server on CPU $SERVER_CPU, s3_load on CPU $CLIENT_CPU, $(nproc) CPUs"
LIMITS=$(load --op limits --size 64M --dir "$tmp")
MD5=$(json "$LIMITS" md5_mb_s) SHA=$(json "$LIMITS" sha256_mb_s)
DW=$(json "$LIMITS" disk_write_mb_s) DS=$(json "$LIMITS" disk_write_fdatasync_mb_s) DR=$(json "$LIMITS" disk_read_mb_s)
echo "limits (64 MiB): MD5 $MD5 MB/s, SHA-256 $SHA MB/s, disk write $DW MB/s (page cache) / $DS MB/s (fdatasync), read $DR MB/s"

# 1 KiB: populate (each key once), then GET pairs, then PUTs (overwrites).
load --endpoint "$COS" --op put --size 1024 --keys $KEYS --conns "$CONNS" --once >/dev/null
ng=() co=() ratio=()
for r in $(seq "$REPEAT"); do
  a=$(load --endpoint 127.0.0.1:$NGINX_PORT --op get --size 1024 --keys $KEYS --conns "$CONNS" --seconds "$SECONDS_PER")
  b=$(load --endpoint "$COS" --op get --size 1024 --keys $KEYS --conns "$CONNS" --seconds "$SECONDS_PER")
  ng+=("$(json "$a" ops_s)") co+=("$(json "$b" ops_s)")
  ratio+=("$(awk -v x="$(json "$b" ops_s)" -v y="$(json "$a" ops_s)" 'BEGIN {printf "%.3f", x / y}')")
  echo "  pair $r: nginx $(json "$a" ops_s)/s (p50 $(json "$a" p50_us) us, p99 $(json "$a" p99_us) us)  cosd $(json "$b" ops_s)/s (p50 $(json "$b" p50_us) us, p99 $(json "$b" p99_us) us)"
done
NG=$(printf '%s\n' "${ng[@]}" | median) CO=$(printf '%s\n' "${co[@]}" | median) RA=$(printf '%s\n' "${ratio[@]}" | median)
PUT=$(load --endpoint "$COS" --op put --size 1024 --keys $KEYS --conns "$CONNS" --seconds "$SECONDS_PER" --prefix p)

# 64 MiB objects, 2 connections: 3 runs of 24 new objects each (the
# median), then PUTs over the same 4 keys for 4 s (each PUT frees the
# object it replaces: compaction runs in the same run), then one
# connection alone (no second stream for MD5 to pair with).
bput=()
for r in 1 2 3; do
  out=$(load --endpoint "$COS" --op put --size 64M --keys 24 --conns 2 --once --prefix "big$r-")
  bput+=("$(json "$out" mb_s)")
  echo "  PUT 64 MiB run $r: $(json "$out" mb_s) MB/s (p50 $(json "$out" p50_us) us, p99 $(json "$out" p99_us) us)"
done
BPUT_MB=$(printf '%s\n' "${bput[@]}" | median)
load --endpoint "$COS" --op put --size 64M --keys 4 --conns 2 --once --prefix big >/dev/null
BOVER=$(load --endpoint "$COS" --op put --size 64M --keys 4 --conns 2 --seconds "$SECONDS_PER" --prefix big)
BONE=$(load --endpoint "$COS" --op put --size 64M --keys 8 --conns 1 --once --prefix one-)
BGET=$(load --endpoint "$COS" --op get --size 64M --keys 4 --conns 2 --seconds "$SECONDS_PER" --prefix big)

# Instant upload: a PUT without a body naming stored content; the server's
# own time for it from /metrics (sum / count of its latency histogram).
head -c 1048576 /dev/urandom >"$tmp/content"
CID="$(md5sum "$tmp/content" | cut -d' ' -f1):$(sha256sum "$tmp/content" | cut -d' ' -f1):1048576"
INSTANT=""
if /usr/bin/python3 -c "import botocore" 2>/dev/null; then
  # Store the content once (botocore signs the PUT of its bytes).
  /usr/bin/python3 - "$COS" "$ACCESS" "$SECRET" "$tmp/content" <<'PY'
import sys, urllib.request
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
ep, ak, sk, path = sys.argv[1:5]
body = open(path, 'rb').read()
req = AWSRequest(method='PUT', url='http://%s/bench/content' % ep, data=body)
S3SigV4Auth(Credentials(ak, sk), 's3', 'us-east-1').add_auth(req)
p = req.prepare()
urllib.request.urlopen(urllib.request.Request(p.url, data=body, headers=dict(p.headers), method='PUT'), timeout=30).read()
PY
  IRES=$(load --endpoint "$COS" --op put --size 0 --keys 1000 --conns 16 --seconds 2 --prefix inst \
           --header "x-qcloud-instant-upload: $CID")
  METRICS=$(curl -s "http://127.0.0.1:$MET_PORT/metrics")
  SUM=$(sed -n 's/^qcloud_object_request_seconds_sum{op="PutObjectInstant"} \(.*\)/\1/p' <<<"$METRICS")
  CNT=$(sed -n 's/^qcloud_object_request_seconds_count{op="PutObjectInstant"} \(.*\)/\1/p' <<<"$METRICS")
  INSTANT=$(awk -v s="$SUM" -v c="$CNT" 'BEGIN {if (c > 0) printf "%.1f", s / c * 1e6}')
fi

echo
echo "| workload | qcloud-cosd | peer / limit | ratio | target |"
echo "|---|---|---|---|---|"
echo "| GET 1 KiB, $CONNS conns (median of $REPEAT) | $CO/s | nginx $NG/s | $RA | >= 1.0x nginx, >= 48,000/s |"
echo "| PUT 1 KiB, $CONNS conns | $(json "$PUT" ops_s)/s (p50 $(json "$PUT" p50_us) us, p99 $(json "$PUT" p99_us) us) | | | >= 16,000/s |"
LIMIT=$(awk -v a="$MD5" -v b="$DW" 'BEGIN {print (a < b ? a : b)}')
ratio() { awk -v x="$1" -v y="$LIMIT" 'BEGIN {printf "%.2f", x / y}'; }
echo "| PUT 64 MiB, 2 conns, new objects (median of 3) | $BPUT_MB MB/s | min(MD5, disk write) $LIMIT MB/s | $(ratio "$BPUT_MB") | >= 0.80 |"
echo "| PUT 64 MiB, 2 conns, 4 keys overwritten | $(json "$BOVER" mb_s) MB/s | | $(ratio "$(json "$BOVER" mb_s)") | |"
echo "| PUT 64 MiB, 1 conn | $(json "$BONE" mb_s) MB/s | | $(ratio "$(json "$BONE" mb_s)") | |"
echo "| GET 64 MiB, 2 conns | $(json "$BGET" mb_s) MB/s | disk read $DR MB/s | | |"
echo "| instant upload, server time | ${INSTANT:-n/a} us (mean of $(json "${IRES:-}" requests) hits) | | | < 100 us |"
