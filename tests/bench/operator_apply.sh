#!/usr/bin/env bash
# How long a user waits from `kubectl apply` of a MilvusCluster to every child
# object, when no data coordinator answers (a new cluster: it does not exist
# yet), for two operator binaries side by side in one run, alternating:
#
#   tests/bench/operator_apply.sh NEW_OPERATOR REFERENCE_OPERATOR [ROUNDS]
#
# e.g. this checkout's target/release/milvus-like-operator against an earlier
# commit's (build it in a worktree). On the local control plane of
# tests/scripts/k8s.sh (one kwok node; no pod runs). Each round starts each
# operator afresh (it leads at once: its own Lease), applies a MilvusCluster
# whose dataCoordEndpoint is a port nothing listens on, times `kubectl apply`
# until one `kubectl get` finds all 12 children (polled every 0.1 s; each
# kubectl call itself takes 0.1 to 0.3 s, which both sides pay), deletes it,
# and stops the operator. Prints every figure and min / median / max per side.
#
# Environment: WORK (default target/test-runs/operator-apply-<time>).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck source-path=SCRIPTDIR/../scripts source=../scripts/common.sh
source "$ROOT/tests/scripts/common.sh"

[ $# -ge 2 ] || die "usage: operator_apply.sh NEW_OPERATOR REFERENCE_OPERATOR [ROUNDS]"
NEW=$(realpath "$1")
REF=$(realpath "$2")
ROUNDS=${3:-5}
WORK="${WORK:-$ROOT/target/test-runs/operator-apply-$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$WORK"
NS=bench

cleanup() {
  set +e
  [ -n "${OP_PID:-}" ] && kill "$OP_PID" 2>/dev/null && wait "$OP_PID" 2>/dev/null
  KWOK_NODES=1 "$ROOT/tests/scripts/k8s.sh" stop "$WORK/k8s" >/dev/null 2>&1
}
trap cleanup EXIT

KWOK_NODES=1 "$ROOT/tests/scripts/k8s.sh" start "$WORK/k8s" >/dev/null
eval "$("$ROOT/tests/scripts/k8s.sh" env "$WORK/k8s")"
kubectl apply --server-side -f "$ROOT/crds/milvusclusters.yaml" >/dev/null
kubectl wait --for=condition=Established crd/milvusclusters.milvuslike.io --timeout=60s >/dev/null
kubectl create namespace "$NS" >/dev/null
until kubectl get serviceaccount default -n "$NS" >/dev/null 2>&1; do sleep 0.2; done

children_exist() {
  kubectl get -n "$NS" "configmap/$1-config" "deploy/$1-rootcoord" "deploy/$1-datacoord" \
    "deploy/$1-proxy" "statefulset/$1-datanode" "svc/$1-rootcoord" "svc/$1-datacoord" \
    "svc/$1-proxy" "svc/$1-datanode" "pdb/$1-rootcoord" "pdb/$1-datacoord" "pdb/$1-datanode" >/dev/null 2>&1
}

# one_round SIDE BINARY ROUND: prints the milliseconds.
one_round() {
  local side=$1 bin=$2 round=$3 name="r$3-$1" port t0 t1
  port=$(free_port)
  POD_NAMESPACE=default POD_NAME="bench-$side" RUST_LOG=warn "$bin" --http-listen="127.0.0.1:$port" \
    --lease-name="bench-$side-$round" --log-format=text >>"$WORK/operator-$side.log" 2>&1 &
  OP_PID=$!
  until curl -fsS "http://127.0.0.1:$port/readyz" 2>/dev/null | grep -q '"leader":true'; do sleep 0.1; done
  t0=$(date +%s%3N)
  kubectl apply -f - >/dev/null <<EOF
apiVersion: milvuslike.io/v1alpha1
kind: MilvusCluster
metadata: {name: $name, namespace: $NS}
spec:
  dataCoordEndpoint: 127.0.0.1:$(free_port)
  dependencies:
    etcd: {endpoints: ["http://etcd:2379"]}
    kafka: {brokers: ["kafka:9092"]}
    storage:
      s3: {bucket: segments, secretName: s3}
EOF
  until children_exist "$name"; do
    (($(date +%s%3N) - t0 < 60000)) || die "$side: no children after 60 s (log: $WORK/operator-$side.log)"
    sleep 0.1
  done
  t1=$(date +%s%3N)
  kill "$OP_PID"
  wait "$OP_PID" 2>/dev/null || true
  OP_PID=
  kubectl delete mvc "$name" -n "$NS" --wait=false >/dev/null
  echo $((t1 - t0))
}

declare -A times
for ((round = 1; round <= ROUNDS; round++)); do
  for side in new reference; do
    bin=$NEW
    [ "$side" = reference ] && bin=$REF
    ms=$(one_round "$side" "$bin" "$round")
    times[$side]+="$ms "
    log "round $round $side: $ms ms"
  done
done
for side in new reference; do
  # shellcheck disable=SC2086
  printf '%s\n' ${times[$side]} | sort -n | awk -v side="$side" '
    { v[NR] = $1 } END { printf "%-9s kubectl apply -> every child: min %d ms, median %d ms, max %d ms (%d rounds)\n", side, v[1], v[int((NR + 1) / 2)], v[NR], NR }'
done
