"""Parses qcloud's exposition text with Prometheus' own parsers.

1. promtool (the Go parser Prometheus itself scrapes with) must accept it
   with no lint problems;
2. the prometheus_client Python parser must give back exactly the samples
   metrics_exposition_dump.cc put in, escaped label values included.
"""
import math
import subprocess
import sys

from prometheus_client.parser import text_string_to_metric_families

text = subprocess.run([sys.argv[1]], check=True, capture_output=True, text=True).stdout

lint = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
if lint.returncode != 0:
    sys.exit(f"promtool rejected the text:\n{lint.stdout}{lint.stderr}\n---\n{text}")

families = {f.name: f for f in text_string_to_metric_families(text)}
samples = {}
for fam in families.values():
    for s in fam.samples:
        samples[(s.name, tuple(sorted(s.labels.items())))] = s.value

def expect(name, labels, value):
    key = (name, tuple(sorted(labels.items())))
    if key not in samples:
        sys.exit(f"missing sample {key}; have {sorted(samples)}")
    got = samples[key]
    same = (math.isnan(value) and math.isnan(got)) or got == value
    if not same:
        sys.exit(f"{key}: got {got}, want {value}")

# The parser strips "_total" from counter family names.
assert families["qcloud_test_requests"].type == "counter", families["qcloud_test_requests"].type
assert families["qcloud_test_requests"].documentation == "Requests by command.\nSecond line \\ end."
expect("qcloud_test_requests_total", {"cmd": "get", "note": "plain"}, 12345)
expect("qcloud_test_requests_total",
       {"cmd": "set", "note": 'quote " backslash \\ newline \n done'}, 7)
expect("qcloud_test_requests_total", {"cmd": "delete", "note": "utf-8: 缓存 ✓"}, 1)
expect("qcloud_test_requests_total", {"cmd": "empty", "note": ""}, 0)

assert families["qcloud_test_temperature_celsius"].type == "gauge"
expect("qcloud_test_temperature_celsius", {"where": "neg"}, -12.5)
expect("qcloud_test_temperature_celsius", {"where": "big"}, 1e300)
expect("qcloud_test_temperature_celsius", {"where": "tiny"}, 1.5e-9)
expect("qcloud_test_temperature_celsius", {"where": "inf"}, math.inf)
expect("qcloud_test_temperature_celsius", {"where": "neginf"}, -math.inf)
expect("qcloud_test_temperature_celsius", {"where": "nan"}, math.nan)

assert families["qcloud_test_latency_seconds"].type == "histogram"
for le, n in (("0.001", 2), ("0.01", 3), ("0.1", 4), ("+Inf", 5)):
    expect("qcloud_test_latency_seconds_bucket", {"op": "get", "le": le}, n)
expect("qcloud_test_latency_seconds_count", {"op": "get"}, 5)
expect("qcloud_test_latency_seconds_sum", {"op": "get"}, 0.0005 + 0.002 + 0.05 + 0.5 + 0.0001)

expect("qcloud_test_items", {}, 42)
print(f"ok: promtool accepted the text; {len(samples)} samples parsed back exactly")
