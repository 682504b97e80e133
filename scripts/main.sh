#!/usr/bin/env bash
# The main job, from a fresh Debian 12 machine (as root): installs what is
# missing, builds the release preset and runs the richest example there is,
# in the foreground until Ctrl-C. Extra arguments go to the program.
#
# Today that is qcloud-host-agent: open http://127.0.0.1:9464/metrics (or
# `curl -s 127.0.0.1:9464/metrics`) while it runs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cmake --workflow --preset release
exec build/release/examples/qcloud-host-agent/qcloud-host-agent "$@"
