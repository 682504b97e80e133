#!/usr/bin/env bash
# Installs, from Debian 12 packages, exactly what qcloud's build and tests need.
# Idempotent: when every package is present it changes nothing and only says so.
# Works without a terminal (CI has no stdin). Must run as root (or via sudo).
set -euo pipefail

# Build: g++ 12 is the main compiler; clang only for libFuzzer targets.
# Boost 1.81 (not the default 1.74): Asio's io_uring backend. Never name a
# package that pulls libboost-dev: its 1.74 headers conflict with 1.81's.
build_pkgs=(
  g++ cmake ninja-build ccache pkg-config git
  libboost1.81-dev libboost-json1.81-dev libboost-url1.81-dev
  libboost-program-options1.81-dev
  libfmt-dev liburing-dev libssl-dev libxxhash-dev libzstd-dev
  liblmdb-dev                 # COS's file and user indexes (bench/object/index_choice.cc says why)
  libpugixml-dev              # the S3 front end's request XML
  libnbd-dev                  # the block store's replicas on NBD exports (libnbd)
  libre2-dev                  # the monitor's regex label matchers (PromQL's =~ and !~)
  libprotobuf-dev protobuf-compiler libsnappy-dev  # Prometheus remote-write (protobuf + snappy)
  libyaml-cpp-dev             # the monitor's config: Prometheus rule files, Alertmanager routes
  doctest-dev libbenchmark-dev
  clang libclang-rt-14-dev
)
# Tests: real peers and parsers the interop tests start or call themselves.
test_pkgs=(
  python3-prometheus-client   # the Prometheus project's Python text-format parser
  prometheus                  # promtool: the Go parser Prometheus itself uses
  curl                        # scrapes the example servers' /metrics
  memcached                   # the peer qcloud-kvd is compared with, reply for reply
  libmemcached-tools          # memccapable (conformance), memccp/memccat/..., memcslap, memcaslap
  python3-pymemcache          # a real memcache client library (run with /usr/bin/python3)
  s3cmd rclone awscli python3-boto3  # real S3 clients for qcloud-cosd (awscli v2 is /usr/bin/aws)
  nginx-light                 # the peer bench/object compares GETs with
  qemu-utils                  # qemu-img and qemu-io: qemu's own NBD client, for qcloud-blockd
  libnbd-bin                  # nbdinfo, nbdcopy, nbdsh; and nbdfuse (its own package only after Debian 12)
  nbdkit                      # a reference NBD server, a peer of the block tests
  fio                         # block workloads with verification (its nbd engine)
  e2fsprogs                   # mkfs.ext4 and fsck.ext4 on a volume through nbdfuse and a loop device
  python3-libnbd              # libnbd's Python binding: the block crash test's client (/usr/bin/python3)
  prometheus-alertmanager     # the peer qcloud-monitord's alarm convergence is compared with
  victoria-metrics            # a peer bench/monitor compares ingest and bytes per sample with
  iproute2 iputils-ping       # namespaces, veths, TAP moves, kernel vxlan and tc htb; ping between VMs
  iperf3                      # TCP between VMs across qcloud-vswitchd and the kernel's VXLAN
  tshark                      # decodes captured underlay packets as VXLAN and GRE
)

want=("${build_pkgs[@]}")
if [[ "${1:-}" == "--with-tests" ]]; then
  want+=("${test_pkgs[@]}")
fi

missing=()
for p in "${want[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#want[@]} packages present"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq </dev/null
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null >/dev/null
echo "install-deps: done"
