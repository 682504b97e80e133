#!/usr/bin/env bash
# The main job, from a fresh Debian 12 machine (as root): installs what is
# missing, builds the release preset and runs the richest example there is,
# in the foreground until Ctrl-C. Extra arguments go to the program.
#
# Today that is qcloud-kvd, the CMEM cache node: a memcached-protocol server
# (text, meta and binary) on 127.0.0.1:11311 with 1 GiB of memory and a cold
# tier on disk under /var/tmp/qcloud-kvd that survives restarts. Any memcached
# client works, e.g. memcstat --servers=127.0.0.1:11311 (libmemcached-tools).
# More options go on the command line: bash scripts/main.sh --threads 2
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cmake --workflow --preset release
mkdir -p /var/tmp/qcloud-kvd
exec build/release/examples/qcloud-kvd/qcloud-kvd --listen 127.0.0.1:11311 --memory 1024 \
  --ssd-dir /var/tmp/qcloud-kvd "$@"
