#!/usr/bin/env bash
# Does each store give back the float64 values it was sent, bit for bit?
# The same 1,000 samples of a random-walk float (17 significant digits, as
# the node_hwmon_temp_celsius series of compare.sh's mix) go to
# qcloud-monitord and to VictoriaMetrics through /api/v1/import/prometheus,
# and come back through /api/v1/query with a range selector (raw samples).
# Prints, per system, how many came back different and the largest relative
# error. Bytes per sample (compare.sh) are only comparable between stores
# that keep the same values.
#
#   bench/monitor/precision.sh [--monitord PATH] [--samples 1000]
#   VICTORIA=path: the peer (default /usr/bin/victoria-metrics)
set -euo pipefail
SCRIPT=$(basename "$0")
MONITORD=build/release/examples/qcloud-monitord/qcloud-monitord
VICTORIA=${VICTORIA:-/usr/bin/victoria-metrics}
PROMETHEUS=/usr/bin/prometheus  # lib.sh's; not started here
SAMPLES=1000 SERVER_CPU=1 CLIENT_CPU=0
while [[ $# -gt 0 ]]; do
  case $1 in
    --monitord) MONITORD=$2; shift 2 ;;
    --samples) SAMPLES=$2; shift 2 ;;
    *) sed -n '2,12p' "$0"; exit 2 ;;
  esac
done
# shellcheck source=bench/monitor/lib.sh
source "$(dirname "$0")/lib.sh"
[[ -x $MONITORD ]] || die "no $MONITORD (build the release preset)"
[[ -x $VICTORIA ]] || die "no $VICTORIA (scripts/install-deps.sh --with-tests)"

# The samples: one a minute, ending an hour ago (VictoriaMetrics hides the
# last 30 s from queries), and the import body in the text format with
# each value written with 17 significant digits (exact for a float64).
end_ms=$(( ($(date +%s) - 3600) * 1000 ))
"$PY" - "$SAMPLES" "$end_ms" "$tmp/body" "$tmp/want" <<'EOF'
import random, sys
n, end, body, want = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
rng = random.Random(7)
v = 47.25
with open(body, "w") as b, open(want, "w") as w:
    for i in range(n):
        v += (rng.randrange(2001) - 1000) / 7919.0
        t = end - (n - 1 - i) * 60000
        b.write('precision_check{job="bench"} %s %d\n' % (repr(v), t))
        w.write("%d %s\n" % (t, repr(v)))
EOF

# check NAME PORT: imports the body, reads it back, prints the comparison.
check() {
  local name=$1 port=$2
  curl -sf --max-time 30 --data-binary @"$tmp/body" "http://127.0.0.1:$port/api/v1/import/prometheus" >/dev/null ||
    die "$name refused the import"
  curl -sf --max-time 30 "http://127.0.0.1:$port/internal/force_flush" >/dev/null 2>&1 || true
  sleep 1
  curl -sf --max-time 30 -G "http://127.0.0.1:$port/api/v1/query" \
    --data-urlencode "query=precision_check[$(( SAMPLES + 10 ))m]" --data-urlencode "time=$(( end_ms / 1000 + 1 ))" \
    >"$tmp/got.$name" || die "$name did not answer the query"
  "$PY" - "$name" "$tmp/want" "$tmp/got.$name" <<'EOF'
import json, sys
name, want_path, got_path = sys.argv[1:4]
want = {}
for line in open(want_path):
    t, v = line.split()
    want[int(t)] = float(v)
res = json.load(open(got_path))["data"]["result"]
got = {}
for series in res:
    for t, v in series["values"]:
        got[int(round(float(t) * 1000))] = float(v)
missing = sum(1 for t in want if t not in got)
differ = [(t, want[t], got[t]) for t in want if t in got and got[t] != want[t]]
worst = max((abs(g - w) / abs(w) for _, w, g in differ if w != 0), default=0.0)
print("%-16s %d of %d samples back; %d differ from what was sent (largest relative error %.1e)%s" % (
    name, len(want) - missing, len(want), len(differ), worst,
    "; e.g. sent %r, got %r" % (differ[0][1], differ[0][2]) if differ else ""))
EOF
}

mkdir -p "$tmp/q"
start_qcloud "$tmp/q"
check qcloud-monitord "$SERVER_PORT"
stop_server "$SERVER_PID"
mkdir -p "$tmp/v"
start_vm "$tmp/v"
check VictoriaMetrics "$SERVER_PORT"
stop_server "$SERVER_PID"
