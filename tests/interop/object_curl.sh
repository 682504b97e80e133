#!/usr/bin/env bash
# qcloud-cosd under curl's own SigV4 signer (curl --aws-sigv4, a third
# implementation beside botocore's and ours), in path-style and
# virtual-host-style addressing: "<bucket>.localhost" reaches the server
# through curl --connect-to, so no DNS or /etc/hosts entry is needed.
#
#   object_curl.sh PATH_TO_QCLOUD_COSD
#
# curl 7.88 (Debian 12) signs but does not send x-amz-content-sha256, which
# S3 requires; the requests carry it as UNSIGNED-PAYLOAD, as curl's
# documentation for S3 advises. Prints PASS/FAIL per check; exit 0 iff all
# pass. The server is started on a free port and stopped by PID.
set -euo pipefail
cosd=${1:?usage: object_curl.sh PATH_TO_QCLOUD_COSD}
work=$(mktemp -d "${TMPDIR:-/tmp}/object-curl.XXXXXX")
pid=""
cleanup() {
  if [[ -n $pid ]]; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

"$cosd" --listen 127.0.0.1:0 --data-dir "$work/data" --threads 1 \
  --user alice:AKIAALICE0000000000A:alice-secret-key >"$work/out" 2>"$work/err" &
pid=$!
for _ in $(seq 100); do grep -q "listening on" "$work/out" 2>/dev/null && break; sleep 0.1; done
port=$(sed -n 's/.*listening on 127.0.0.1:\([0-9]*\).*/\1/p' "$work/out")
[[ -n $port ]] || { echo "FAIL: qcloud-cosd did not start: $(cat "$work/err")"; exit 1; }

passed=0 failed=0
check() {  # NAME EXPECTED ACTUAL
  if [[ $2 == "$3" ]]; then
    passed=$((passed + 1)); echo "PASS $1"
  else
    failed=$((failed + 1)); echo "FAIL $1: expected [$2], got [$3]"
  fi
}
s3() {  # [curl args...]: signed as alice
  curl -sS --max-time 10 --aws-sigv4 aws:amz:us-east-1:s3 --user AKIAALICE0000000000A:alice-secret-key \
    -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" "$@"
}
vhost=(--connect-to "curl-bucket.localhost:$port:127.0.0.1:$port")
base=http://127.0.0.1:$port
vbase=http://curl-bucket.localhost:$port

head -c 100000 /dev/urandom >"$work/blob"
printf 'hello from curl\n' >"$work/small"

check "create a bucket (path style)" 200 "$(s3 -X PUT -o /dev/null -w '%{http_code}' "$base/curl-bucket")"
check "PUT 100 kB (path style)" 200 "$(s3 -T "$work/blob" -o /dev/null -w '%{http_code}' "$base/curl-bucket/dir/blob")"
s3 -o "$work/blob.back" "$base/curl-bucket/dir/blob"
check "GET it back byte for byte (path style)" "$(sha256sum <"$work/blob")" "$(sha256sum <"$work/blob.back")"
s3 "${vhost[@]}" -o "$work/blob.vback" "$vbase/dir/blob"
check "GET it back (virtual-host style)" "$(sha256sum <"$work/blob")" "$(sha256sum <"$work/blob.vback")"
check "PUT a key with a space and UTF-8 (virtual-host style)" 200 \
  "$(s3 "${vhost[@]}" -T "$work/small" -o /dev/null -w '%{http_code}' "$vbase/dir/a%20b%E4%B8%AD.txt")"
check "GET it (path style)" "hello from curl" "$(s3 "$base/curl-bucket/dir/a%20b%E4%B8%AD.txt")"
check "ranged GET (virtual-host style)" "from" "$(s3 "${vhost[@]}" -r 6-9 "$vbase/dir/a%20b%E4%B8%AD.txt")"
# curl 7.88 signs the query as written, unsorted (as AWS would, we refuse
# that), so the parameters are given in SigV4's order.
keys=$(s3 "${vhost[@]}" "$vbase/?delimiter=%2F&list-type=2&prefix=dir%2F" | grep -o '<Key>[^<]*</Key>' | tr '\n' ' ' || true)
check "ListObjectsV2 with prefix and delimiter (virtual-host style)" \
  "<Key>dir/a b中.txt</Key> <Key>dir/blob</Key> " "$keys"
bad=$(curl -sS --max-time 10 --aws-sigv4 aws:amz:us-east-1:s3 --user AKIAALICE0000000000A:wrong \
        -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" "$base/curl-bucket/dir/blob" | grep -o '<Code>[^<]*</Code>' || true)
check "a wrong secret: SignatureDoesNotMatch" "<Code>SignatureDoesNotMatch</Code>" "$bad"
check "DELETE (virtual-host style)" 204 "$(s3 "${vhost[@]}" -X DELETE -o /dev/null -w '%{http_code}' "$vbase/dir/blob")"
check "GET after DELETE: 404" 404 "$(s3 -o /dev/null -w '%{http_code}' "$base/curl-bucket/dir/blob")"

echo "$passed passed, $failed failed"
((failed == 0))
