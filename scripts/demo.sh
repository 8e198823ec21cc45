#!/usr/bin/env bash
# A local 3-node cluster on the embedded default store (flatfs) with the default
# replication (3 copies), as in the README: generate, start, write and read keys, files
# and S3 objects, show status; then kill -9 a node and keep using the cluster, restart it
# and watch it catch up, add a 4th node and rebalance, kill the bootstrapper and set up a
# client through another node; stop. Everything lives in ./demo.
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

wait_ready() {  # wait_ready LOG [N]: until the log has N " ready: " lines (default 1)
  for _ in $(seq 1 300); do
    [ "$(grep -c " ready: " "$1" 2>/dev/null)" -ge "${2:-1}" ] && return 0
    sleep 0.1
  done
  echo "node did not start; its log:"; cat "$1"; exit 1
}

slots() {  # slots CONF: the slot health summary of `dsclient status --json`
  # status exits 1 while a member is down; its JSON is still complete
  dsclient --conf="$1" status --json | python3 -c 'import json, sys
s = json.load(sys.stdin)["slots"]
print(s["ok"], s["under_replicated"], s["unavailable"])' || true
}

echo "== dscfg cluster --cluster-node-number=3 $D/srv01   (replication: the default, min(3, N))"
BOOT=$(dscfg cluster --cluster-node-number=3 "$D/srv01" 2>"$D/dscfg.txt")
sed -n '/./{p;q;}' "$D/dscfg.txt"
echo "bootstrapper: $BOOT"

echo "== starting 3 nodes (logs in $D/*.log)"
S3PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
dscluster --conf="$D/srv01" --s3-listen="127.0.0.1:$S3PORT" >"$D/srv01.log" 2>&1 & pids+=($!)
wait_ready "$D/srv01.log"
node_pids=("${pids[0]}")
for i in 1 2; do
  dscluster --conf="$D/srv0$((i + 1))" --bootstrapper="$BOOT" --identity=$i \
    --token-file="$D/srv01/node.token" >"$D/srv0$((i + 1)).log" 2>&1 & pids+=($!)
  node_pids+=($!)
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

echo "== kill -9 node 2 ($D/srv03): every slot still has 2 of its 3 owners"
kill -9 "${node_pids[2]}"; wait "${node_pids[2]}" 2>/dev/null || true
$C get-key /demo/hello
echo "written while node 2 is down" | $C put /demo/while-down
$C get-key /demo/while-down
$C ls /demo
head -c 3000000 /dev/urandom >"$D/blob.bin"
CID2=$($C add -Q --no-progress "$D/blob.bin")
echo "added $D/blob.bin (3 MB, 12 chunks): $CID2"
$C get "$CID2" -o "$D/blob.copy"
cmp "$D/blob.copy" "$D/blob.bin" && echo "$D/blob.bin got back identical by CID"
echo "== status with node 2 down (exits 1 while a member is down)"
$C status || true
read -r ok under unavail <<<"$(slots "$D/cli")"
[ "$unavail" = 0 ] || { echo "expected 0 unavailable slots, got $unavail"; exit 1; }

echo "== restart node 2; the others hand it what it missed"
dscluster --conf="$D/srv03" >>"$D/srv03.log" 2>&1 & pids+=($!)
node_pids[2]=$!
wait_ready "$D/srv03.log" 2
for t in $(seq 1 60); do
  read -r ok under unavail <<<"$(slots "$D/cli")"
  [ "$under" = 0 ] && [ "$unavail" = 0 ] && break
  [ "$t" = 60 ] && { echo "still $under under-replicated slots after 60 s"; exit 1; }
  sleep 1
done
echo "caught up within ${t} s: $ok ok, $under under-replicated, $unavail unavailable"
$C repair --no-progress
$C status

# a member's multiaddr is its libp2p address (not the /tls data lane) plus its peer ID
NODE1=$($C status --json | python3 -c 'import json, sys
n = json.load(sys.stdin)["nodes"][1]
print(next(a for a in n["addrs"] if not a.endswith("/tls")) + "/p2p/" + n["peer_id"])' || true)

echo "== grow: a 4th node joins through node 1 (no --identity), the admin rebalances"
dscluster --conf="$D/srv04" --bootstrapper="$NODE1" --token-file="$D/srv01/node.token" \
  >"$D/srv04.log" 2>&1 & pids+=($!)
node_pids+=($!)
wait_ready "$D/srv04.log"
A="dsclient --conf=$D/admin"
$A init --bootstrapper="$BOOT" --token-file="$D/srv01/admin.token"
$A rebalance --dry-run
$A rebalance --wait
$A status
$C get-key /demo/hello
$C cat "$CID2" | cmp - "$D/blob.bin" && echo "$D/blob.bin read back identical after the rebalance"

echo "== kill -9 node 0, the bootstrapper; a new client initialises through node 1"
kill -9 "${node_pids[0]}"; wait "${node_pids[0]}" 2>/dev/null || true
C2="dsclient --conf=$D/cli2"
echo "dsclient --conf=$D/cli2 init --bootstrapper=$NODE1 --token-file=$D/srv01/client.token"
$C2 init --bootstrapper="$NODE1" --token-file="$D/srv01/client.token"
$C2 get-key /demo/hello
$C2 get-key /demo/while-down
$C2 cat "$CID2" | cmp - "$D/blob.bin" && echo "$D/blob.bin read back identical through $D/cli2"
echo "written while node 0 is down" | $C2 put /demo/no-bootstrapper
$C2 ls /demo
$C2 status || true

echo "== stopping"
cleanup
trap - EXIT
echo "demo finished: the cluster's files are in ./$D"
