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
dscluster --conf="$D/srv01" >"$D/srv01.log" 2>&1 & pids+=($!)
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

echo "== stopping"
cleanup
trap - EXIT
echo "demo finished: the cluster's files are in ./$D"
