#!/usr/bin/env bash
# run.sh static|shared <source dir> <this build dir> <work dir>
set -euo pipefail
mode=$1 src=$2 build=$3 work=$4
rm -rf "$work"
mkdir -p "$work"
prefix="$work/prefix"

if [[ $mode == static ]]; then
  cmake --install "$build" --prefix "$prefix" >/dev/null
  lib="$(find "$prefix" -name 'libqcloud-core.a' | head -1)"
else
  # Libraries only; the compiler launcher (ccache) is picked up the same way.
  # Unoptimized: this checks packaging, linking and exports, and -O0 halves
  # the cold compile that CI pays for every library.
  cmake -S "$src" -B "$work/sdk" -G Ninja -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG=-O0 -DBUILD_SHARED_LIBS=ON \
    -DQCLOUD_BUILD_TESTS=OFF -DQCLOUD_BUILD_BENCHMARKS=OFF -DQCLOUD_BUILD_EXAMPLES=OFF >/dev/null
  cmake --build "$work/sdk" >/dev/null
  cmake --install "$work/sdk" --prefix "$prefix" >/dev/null
  lib="$(find "$prefix" -name 'libqcloud-core.so' | head -1)"
  # Only the public API is exported: private namespaces stay hidden.
  syms=$(nm -D --defined-only -C "$lib")  # no `| grep -q`: see the ldd note below
  if [[ $syms == *core_internal* ]]; then
    echo "FAIL: private symbols exported from $lib"; exit 1
  fi
  echo "exported symbols: $(nm -D --defined-only "$lib" | wc -l)"
fi
[[ -n "$lib" ]] || { echo "FAIL: no installed libqcloud-core ($mode)"; exit 1; }
echo "installed: ${lib#$prefix/}"

# 1. CMake: find_package(qcloud CONFIG REQUIRED COMPONENTS core).
cmake -S "$src/tests/package/consumer" -B "$work/consumer" -G Ninja \
  -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$work/consumer" >/dev/null
"$work/consumer/qcloud_consumer"
"$work/consumer/qcloud_runtime_consumer"
"$work/consumer/qcloud_s3_consumer"
"$work/consumer/qcloud_monitor_consumer"
"$work/consumer/qcloud_sched_consumer"
"$work/consumer/qcloud_net_consumer"
if [[ $mode == shared ]]; then
  # Not `ldd | grep -q`: grep exits at the first match, ldd may then die of
  # SIGPIPE, and pipefail turns that into a failure.
  deps=$(ldd "$work/consumer/qcloud_consumer")
  for l in libqcloud-core.so libqcloud-kv.so; do
    [[ $deps == *"$l"* ]] || { echo "FAIL: consumer not linked to $l"; exit 1; }
  done
fi

# 2. A component that does not exist is a clear configure error.
if cmake -S "$src/tests/package/consumer" -B "$work/consumer-bad" -G Ninja \
     -DCMAKE_PREFIX_PATH="$prefix" -DQCLOUD_CONSUMER_COMPONENTS="core;kv;nosuch" >"$work/bad.log" 2>&1; then
  echo "FAIL: find_package accepted a missing component"; exit 1
fi
grep -q "qcloud has no component 'nosuch'" "$work/bad.log" \
  || { echo "FAIL: unclear error for a missing component:"; cat "$work/bad.log"; exit 1; }

# 3. pkg-config.
pcdir="$(dirname "$(find "$prefix" -name qcloud-core.pc | head -1)")"
static_flag=""; [[ $mode == static ]] && static_flag="--static"
flags=$(PKG_CONFIG_PATH="$pcdir" pkg-config $static_flag --cflags --libs qcloud-kv qcloud-core)
[[ $flags != *boost* ]] || { echo "FAIL: pkg-config qcloud-kv names Boost: $flags"; exit 1; }
g++ -O1 -o "$work/pc_consumer" "$src/tests/package/consumer/main.cc" $flags -lpthread
LD_LIBRARY_PATH="$(dirname "$lib")" "$work/pc_consumer" >/dev/null
echo "ok: $mode SDK consumed through find_package and pkg-config"
