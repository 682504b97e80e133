#!/usr/bin/env bash
# Freezes a build for an A/B run: copies the release tree's qcloud shared
# libraries and the named executables to DIR, each executable behind a
# wrapper that loads DIR's libraries. A plain copy of an executable is not
# enough: it loads libqcloud-*.so from the build tree by its RUNPATH, so a
# "before" copy runs whatever was built last.
#
#   bench/snapshot.sh DIR [BUILD_DIR] [EXECUTABLE...]
#   e.g. bench/snapshot.sh /tmp/ab/before build/release examples/qcloud-blockd/qcloud-blockd
#   then: bench/block/compare.sh --blockd /tmp/ab/before/qcloud-blockd ...
set -euo pipefail
[[ $# -ge 1 ]] || { sed -n '2,10p' "$0"; exit 2; }
dir=$1
build=${2:-build/release}
shift $(($# >= 2 ? 2 : 1))
[[ $# -gt 0 ]] || set -- examples/qcloud-blockd/qcloud-blockd examples/qcloud-monitord/qcloud-monitord
[[ -d $build ]] || { echo "snapshot.sh: no build tree $build" >&2; exit 1; }
rm -rf "$dir"
mkdir -p "$dir/lib"
dir=$(cd "$dir" && pwd)
find "$build" -name 'libqcloud-*.so*' -exec cp -P {} "$dir/lib/" \;
for exe in "$@"; do
  name=$(basename "$exe")
  cp "$build/$exe" "$dir/$name.bin"
  printf '#!/bin/sh\nLD_LIBRARY_PATH=%s/lib exec %s/%s.bin "$@"\n' "$dir" "$dir" "$name" >"$dir/$name"
  chmod +x "$dir/$name"
done
echo "$dir: $(find "$dir/lib" -name "*.so*" | wc -l) library files; run $dir/<name>"
