#!/usr/bin/env bash
# The whole test suite, from a fresh Debian 12 machine (as root):
#   1. installs what is missing (scripts/install-deps.sh --with-tests),
#   2. fuzz preset (clang): every libFuzzer target runs a bounded few seconds,
#   3. asan preset: the unit tests under ASan+UBSan,
#   4. dev preset (-Werror): every public header on its own, then all tests
#      (unit, interop with real peers, crash, package); its CTest summary is
#      the last thing printed.
# Build trees go to build/<preset>; ccache makes reruns cheap.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh --with-tests

banner() { printf '\n===== %s =====\n' "$*"; }

banner "fuzz: libFuzzer targets (clang)"
cmake --preset fuzz >/dev/null
cmake --build --preset fuzz
ctest --preset fuzz

banner "asan: unit tests under ASan+UBSan"
cmake --preset asan >/dev/null
cmake --build --preset asan
ctest --preset asan

banner "dev: headers, unit, interop, crash and package tests"
cmake --preset dev >/dev/null
cmake --build --preset dev
cmake --build --preset dev --target qcloud_check_headers
ctest --preset dev
