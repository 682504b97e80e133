#!/usr/bin/env bash
# A real Prometheus server scrapes qcloud-host-agent over HTTP; the test asks
# Prometheus' query API whether the target is up and the agent's series
# arrived. Both run on 127.0.0.1 and are stopped by PID.
set -euo pipefail
agent_bin=$1
work=$(mktemp -d /tmp/qcloud-prom-XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# Below the ephemeral range (interop_util.free_port): a port the kernel hands
# out for :0 may be taken by another test's outgoing connect before it is bound.
interop_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
free_port() { /usr/bin/python3 "$interop_dir/interop_util.py" free_port "$@"; }
read -r agent_port prom_port <<<"$(free_port 2)"  # two different ports

"$agent_bin" --listen "127.0.0.1:$agent_port" --log-interval 0 >"$work/agent.out" 2>&1 &
pids+=($!)
cat >"$work/prometheus.yml" <<YML
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: qcloud-host-agent
    static_configs:
      - targets: ["127.0.0.1:$agent_port"]
YML
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/data" \
  --web.listen-address="127.0.0.1:$prom_port" >"$work/prom.log" 2>&1 &
pids+=($!)

query() { curl -sf --max-time 2 "http://127.0.0.1:$prom_port/api/v1/query" --data-urlencode "query=$1" || true; }
for _ in $(seq 1 60); do
  up=$(query 'up{job="qcloud-host-agent"}')
  cpu=$(query 'count(qcloud_host_cpu_seconds_total{mode="idle"})')
  if [[ "$up" == *'"value":['*',"1"]'* && "$cpu" == *'"value":['* ]]; then
    echo "ok: Prometheus scraped the agent: $up"
    echo "cpus seen: $cpu"
    exit 0
  fi
  sleep 0.5
done
echo "Prometheus never saw the agent up. Last answers:"
echo "up: ${up:-}"; echo "cpu: ${cpu:-}"
echo "--- prometheus log"; tail -20 "$work/prom.log"
echo "--- agent log"; cat "$work/agent.out"
exit 1
