#!/usr/bin/env bash
# A real file system on a qcloud-blockd volume. The kernel's own NBD client
# may be missing, so the export goes through nbdfuse (libnbd: the export as
# a file in a FUSE mount, over 4 connections since the server advertises
# multi-conn) and a loop device: mkfs.ext4, ~200 files of random sizes in
# nested directories (a few MB-sized, a few sparse, some deleted again and
# trimmed), their SHA-256s recorded; unmounted, `fsck.ext4 -f -n` must find
# the file system clean; mounted again, every file must match. Then the
# server is stopped with SIGTERM and started again on the same data
# directory, and through a fresh nbdfuse and loop device the file system is
# checked and compared once more.
#
#   block_ext4.sh <qcloud-blockd>
#
# Needs root (losetup, mount) and /dev/fuse. Without them, or when the
# kernel refuses the FUSE mount, the loop device or the ext4 mount, it
# prints "SKIP: <reason>" and exits 0; any other problem is a failure. Every
# wait is bounded with timeout(1); a trap on EXIT unmounts, detaches and
# stops (by PID) whatever is still up, in reverse order.
set -euo pipefail
blockd=$1
t0=$SECONDS

skip() { echo "SKIP: $*"; exit 0; }
[[ $(id -u) -eq 0 ]] || skip "not root (losetup and mount need it)"
[[ -c /dev/fuse ]] || skip "/dev/fuse is missing"
for tool in nbdfuse losetup mkfs.ext4 fsck.ext4 fstrim mount umount findmnt sha256sum timeout; do
  command -v "$tool" >/dev/null || { echo "FAIL: $tool not found (scripts/install-deps.sh --with-tests)"; exit 1; }
done

work=$(mktemp -d /tmp/qcloud-blockext4-XXXXXX)
data=$work/data fuse=$work/fuse mnt=$work/mnt
mkdir -p "$fuse" "$mnt"
srv_pid="" fuse_pid="" loop="" port="" starts=0

# Whether something is mounted at $1, from the mount table: mountpoint(1)
# stats the path, which fails on a FUSE mount whose daemon has died.
mounted() { awk -v m="$1" '$2 == m { f = 1 } END { exit !f }' /proc/self/mounts; }
# Waits (at most $1 seconds) for process $2 to exit.
wait_gone() { timeout "$1" tail --pid="$2" -f /dev/null 2>/dev/null; }
unmount_fuse() {
  if command -v fusermount3 >/dev/null; then
    timeout 10 fusermount3 -u "$fuse" 2>/dev/null && return 0
  fi
  timeout 10 umount "$fuse"
}

cleanup() {
  local rc=$?
  set +e
  if mounted "$mnt"; then timeout 60 umount "$mnt" || umount -l "$mnt"; fi
  if [[ -n $loop ]]; then timeout 30 losetup -d "$loop" || echo "cleanup: losetup -d $loop failed"; fi
  if mounted "$fuse"; then unmount_fuse || umount -l "$fuse"; fi
  if [[ -n $fuse_pid ]]; then wait_gone 10 "$fuse_pid" || kill -9 "$fuse_pid" 2>/dev/null; fi
  if [[ -n $srv_pid ]]; then
    kill -TERM "$srv_pid" 2>/dev/null
    wait_gone 15 "$srv_pid" || kill -9 "$srv_pid" 2>/dev/null
  fi
  # Never rm -rf through a mount that is still there.
  if findmnt -rn -o TARGET | grep -q "^$work"; then
    echo "cleanup: $work still has a mount; left in place"
  else
    rm -rf "$work"
  fi
  exit "$rc"
}
trap cleanup EXIT

fail() {
  echo "FAIL: $*"
  for f in "$work"/blockd.*.err "$work"/nbdfuse.*.log; do
    [[ -s $f ]] && { echo "--- $f"; tail -n 20 "$f"; }
  done
  exit 1
}
ok() { echo "ok: $* ($((SECONDS - t0)) s)"; }

start_server() {
  starts=$((starts + 1))
  local out=$work/blockd.$starts.out
  "$blockd" --listen 127.0.0.1:0 --data-dir "$data" --volume vol:512M --threads 2 \
    >"$out" 2>"$work/blockd.$starts.err" &
  srv_pid=$!
  timeout 15 bash -c "until grep -q 'listening on 127\.0\.0\.1:' '$out'; do
                        kill -0 $srv_pid 2>/dev/null || exit 1; sleep 0.05; done" \
    || fail "qcloud-blockd did not start"
  port=$(sed -n 's/^qcloud-blockd listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$out")
  [[ -n $port ]] || fail "no port in: $(cat "$out")"
}

stop_server() {  # SIGTERM; must exit 0 within 15 s
  kill -TERM "$srv_pid"
  wait_gone 15 "$srv_pid" || fail "qcloud-blockd did not stop within 15 s of SIGTERM"
  local rc=0
  wait "$srv_pid" || rc=$?
  srv_pid=""
  [[ $rc -eq 0 ]] || fail "qcloud-blockd exited $rc after SIGTERM"
}

# nbdfuse + a loop device over its file; sets fuse_pid and loop. With
# $1 = first, a refusal by the kernel (FUSE mount, loop device) is a SKIP.
attach() {
  local first=${1:-} log=$work/nbdfuse.$starts.log
  rm -f "$work/nbdfuse.pid"
  nbdfuse -P "$work/nbdfuse.pid" "$fuse" "nbd://127.0.0.1:$port/vol" >"$log" 2>&1 &
  fuse_pid=$!
  if ! timeout 20 bash -c "until [[ -s '$work/nbdfuse.pid' && -f '$fuse/nbd' ]]; do
                             kill -0 $fuse_pid 2>/dev/null || exit 1; sleep 0.05; done"; then
    if [[ -n $first ]] && grep -qiE 'operation not permitted|permission denied|fuse: device not found' "$log"; then
      skip "the kernel refused the FUSE mount: $(head -n 3 "$log" | tr '\n' ' ')"
    fi
    fail "nbdfuse did not mount $fuse/nbd: $(cat "$log")"
  fi
  [[ $(stat -c %s "$fuse/nbd") -eq $((512 << 20)) ]] || fail "$fuse/nbd is $(stat -c %s "$fuse/nbd") bytes"
  if ! loop=$(timeout 30 losetup -f --show "$fuse/nbd" 2>"$work/losetup.err"); then
    loop=""
    if [[ -n $first ]] && grep -qiE 'operation not permitted|permission denied|no such (device|file)|cannot find an unused|could not find any free' \
         "$work/losetup.err"; then
      skip "the kernel refused a loop device: $(cat "$work/losetup.err")"
    fi
    fail "losetup: $(cat "$work/losetup.err")"
  fi
}

detach() {  # loop device, then nbdfuse (which exits 0 once unmounted)
  timeout 30 losetup -d "$loop" || fail "losetup -d $loop"
  loop=""
  # The loop device may let go of the file a moment later: retry while busy.
  local _
  for _ in $(seq 1 50); do
    unmount_fuse 2>/dev/null && break
    sleep 0.2
  done
  mounted "$fuse" && fail "could not unmount $fuse"
  wait_gone 15 "$fuse_pid" || fail "nbdfuse did not exit after the unmount"
  local rc=0
  wait "$fuse_pid" || rc=$?
  fuse_pid=""
  [[ $rc -eq 0 ]] || fail "nbdfuse exited $rc"
}

mount_fs() {  # $1 = first: a refusal by the kernel is a SKIP
  if ! timeout 60 mount -t ext4 "$loop" "$mnt" 2>"$work/mount.err"; then
    if [[ -n ${1:-} ]] && grep -qiE 'operation not permitted|permission denied|unknown filesystem type' "$work/mount.err"; then
      skip "the kernel refused to mount ext4 on $loop: $(cat "$work/mount.err")"
    fi
    fail "mount $loop: $(cat "$work/mount.err")"
  fi
}

# Sorted listing (type, size, path) and SHA-256 of every file.
snapshot() {
  (cd "$mnt" && find . -path ./lost+found -prune -o -printf '%y %s %p\n' | LC_ALL=C sort)
  (cd "$mnt" && find . -path ./lost+found -prune -o -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
}

fsck_clean() {  # $1: device or file
  local rc=0
  timeout 120 fsck.ext4 -f -n "$1" >"$work/fsck.out" 2>&1 || rc=$?
  [[ $rc -eq 0 ]] || { cat "$work/fsck.out"; fail "fsck.ext4 -f -n $1 exited $rc"; }
  ok "fsck.ext4 -f -n $1: clean: $(tail -n 1 "$work/fsck.out")"
}

# ---- a file system on the volume ----
start_server
attach first
ok "qcloud-blockd on port $port, nbdfuse at $fuse/nbd, loop device $loop"
timeout 120 mkfs.ext4 -q "$loop" || fail "mkfs.ext4 $loop"
mount_fs first
ok "mkfs.ext4 and mount"

RANDOM=$$
files=0 bytes=0
for i in $(seq 1 200); do
  dir=$mnt/d$((RANDOM % 5))/e$((RANDOM % 4))
  ((RANDOM % 3 == 0)) && dir=$dir/f$((RANDOM % 3))
  mkdir -p "$dir"
  case $((RANDOM % 20)) in
    0) size=0 ;;
    1 | 2) size=$(((RANDOM % 6 + 1) << 20 | RANDOM)) ;;   # 1..6 MiB and a bit
    3) size=$((RANDOM * 8 + RANDOM % 4096)) ;;             # up to 256 KiB
    *) size=$((RANDOM % 65536)) ;;
  esac
  head -c "$size" /dev/urandom >"$dir/file$i" || fail "writing $dir/file$i"
  if ((RANDOM % 25 == 0)); then  # sparse: a block far into the file
    dd if=/dev/urandom of="$dir/file$i" bs=4096 count=1 seek=$((RANDOM % 2000 + 100)) \
      conv=notrunc status=none || fail "writing sparse $dir/file$i"
  fi
  files=$((files + 1)) bytes=$((bytes + size))
done
# Churn: delete some files again and give their blocks back (NBD trim).
deleted=0
for f in $(cd "$mnt" && find . -name 'file*' -type f | LC_ALL=C sort | awk 'NR % 9 == 0'); do
  rm "$mnt/$f"
  deleted=$((deleted + 1))
done
timeout 60 fstrim -v "$mnt" >"$work/fstrim.out" 2>&1 || fail "fstrim: $(cat "$work/fstrim.out")"
snapshot >"$work/sums"
sync
ok "wrote $files files ($((bytes >> 20)) MiB) in $(cd "$mnt" && find . -type d | wc -l) dirs, deleted $deleted; $(cat "$work/fstrim.out")"

timeout 60 umount "$mnt" || fail "umount $mnt"
timeout 30 losetup -d "$loop" || fail "losetup -d $loop"
loop=""
fsck_clean "$fuse/nbd"

loop=$(timeout 30 losetup -f --show "$fuse/nbd") || fail "losetup again"
mount_fs
snapshot >"$work/sums.2"
diff -u "$work/sums" "$work/sums.2" >"$work/sums.diff" || { head -n 40 "$work/sums.diff"; fail "files changed after umount/fsck/mount"; }
ok "mounted again: all $(grep -c '^[0-9a-f]\{64\} ' "$work/sums") files match"
timeout 60 umount "$mnt" || fail "umount $mnt"
detach

# ---- the data outlives the server ----
stop_server
ok "qcloud-blockd stopped with SIGTERM (exit 0)"
start_server
attach
fsck_clean "$loop"
mount_fs
snapshot >"$work/sums.3"
diff -u "$work/sums" "$work/sums.3" >"$work/sums.diff" || { head -n 40 "$work/sums.diff"; fail "files changed across a server restart"; }
ok "after a server restart, through a fresh nbdfuse and loop device: all files match"
timeout 60 umount "$mnt" || fail "umount $mnt"
detach
stop_server
echo "PASS: ext4 on qcloud-blockd via nbdfuse and a loop device ($((SECONDS - t0)) s)"
