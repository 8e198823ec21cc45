#!/usr/bin/env bash
# A local 3-node cluster on the embedded default store (flatfs), as in the README:
# generate, start, write and read keys, show status, stop. Everything lives in ./demo.
set -euo pipefail
cd "$(dirname "$0")/.."
D=demo
rm -rf "$D"; mkdir -p "$D"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

wait_ready() {  # wait_ready LOG
  for _ in $(seq 1 300); do
    grep -q " ready: " "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "node did not start; its log:"; cat "$1"; exit 1
}

echo "== dscfg cluster --cluster-node-number=3 $D/srv01"
BOOT=$(dscfg cluster --cluster-node-number=3 "$D/srv01" 2>/dev/null)
echo "bootstrapper: $BOOT"

echo "== starting 3 nodes (logs in $D/*.log)"
S3PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
dscluster --conf="$D/srv01" --s3-listen="127.0.0.1:$S3PORT" >"$D/srv01.log" 2>&1 & pids+=($!)
wait_ready "$D/srv01.log"
for i in 1 2; do
  dscluster --conf="$D/srv0$((i + 1))" --bootstrapper="$BOOT" --identity=$i \
    --token-file="$D/srv01/node.token" >"$D/srv0$((i + 1)).log" 2>&1 & pids+=($!)
done
wait_ready "$D/srv02.log"; wait_ready "$D/srv03.log"

C="dsclient --conf=$D/cli"
echo "== dsclient init"
$C init --bootstrapper="$BOOT" --token-file="$D/srv01/client.token"

echo "== put /demo/hello, /demo/k0..k9, and a file"
echo "hello, cluster" | $C put /demo/hello
for i in $(seq 0 9); do echo "value $i" | $C put "/demo/k$i"; done
$C put /demo/readme ./README.md

echo "== get-key /demo/hello"
$C get-key /demo/hello
cmp <($C get-key /demo/readme) README.md && echo "README.md read back identical"

echo "== ls -l /demo"
$C ls -l /demo

echo "== hashslot /demo/hello"
$C hashslot /demo/hello

echo "== status"
$C status

echo "== dsclient add README.md (the CID ipfs add gives), stat, get"
CID=$($C add -Q --no-progress README.md)
echo "$CID"
$C stat "$CID"
$C get "$CID" -o "$D/README.copy"
cmp "$D/README.copy" README.md && echo "README.md got back identical by CID"

echo "== the S3 gateway of node 0 (http://127.0.0.1:$S3PORT), with the aws cli"
creds=$(python3 -c 'import json, sys
c = json.load(open(sys.argv[1]))["s3"]["credentials"][0]
print(c["access_key"], c["secret_key"])' "$D/srv01/config.json")
export AWS_ACCESS_KEY_ID=${creds% *} AWS_SECRET_ACCESS_KEY=${creds#* }
export AWS_DEFAULT_REGION=us-east-1 AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
S3="aws --endpoint-url http://127.0.0.1:$S3PORT s3"
$S3 mb s3://docs
$S3 cp README.md s3://docs/README.md
$S3 ls s3://docs/
echo "the object is the datastore value /docs/README.md:"
$C get-key /docs/README.md | cmp - README.md && echo "identical"

echo "== stopping"
cleanup
trap - EXIT
echo "demo finished: the cluster's files are in ./$D"
