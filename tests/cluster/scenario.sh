#!/usr/bin/env bash
# The operator's end-to-end scenario on the local control plane of
# tests/scripts/k8s.sh (kube-apiserver, controller-manager, scheduler, kwok
# nodes, all built from their Go modules): fast, and no Docker needed. kwok runs
# no container: etcd, Kafka, MinIO and the coordinators run as host processes,
# the operator runs on the host with the chart's ServiceAccount token (so the
# chart's RBAC is what it gets), and tests/cluster/pod_mirror.py runs a
# data-node process for every Running data-node pod, with that pod's
# environment. The same operator with real pods from our images:
# tests/kind/scenario.sh.
#
#   tests/cluster/scenario.sh
#
# The scenario: helm install; the CRD's schema and docs; what a user sees of a
# spec only the apiserver refuses; children applied with no data coordinator
# answering; kubectl apply a MilvusCluster -> every child as specified, pods
# Running, status Ready; data nodes own the channels; scale data nodes 2 -> 4
# (Rebalance reaches the data coordinator) -> 1 (DrainNode for each departing
# node, before its pod goes); change the config -> every pod rolls; the leading
# operator stops and the standby takes over; delete -> children
# garbage-collected. Timings and the operator's RSS are printed as `scenario:`
# lines.
#
# Environment: WORK (directory for logs and state; default
# target/test-runs/cluster-scenario-<time>, kept), MILVUS_LIKE_BIN_DIR (the
# milvus-like and milvus-like-operator binaries, default target/debug),
# KEEP=1 (leave everything running at the end, for a look around).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck source-path=SCRIPTDIR/../scripts source=../scripts/common.sh
source "$ROOT/tests/scripts/common.sh"

WORK="${WORK:-$ROOT/target/test-runs/cluster-scenario-$(date +%Y%m%d-%H%M%S)}"
BIN_DIR="${MILVUS_LIKE_BIN_DIR:-$ROOT/target/debug}"
NS=default
NAME=demo
OP_NS=milvus-like-system
RELEASE=milvus-like-operator
VERSION=$(awk -F'"' '/^\[workspace.package\]/ {p = 1} p && /^version/ {print $2; exit}' "$ROOT/Cargo.toml")
mkdir -p "$WORK"
WORK="$(cd "$WORK" && pwd)"
HOST_PIDS=()

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$ROOT/tests/cluster/lib.sh"
DIAG_LOGS=("$WORK/operator.log" "$WORK/datacoord.log" "$WORK/mirror.log")

cleanup() {
  local rc=$?
  set +e
  if [ "${KEEP:-}" = 1 ]; then
    log "KEEP=1: leaving everything running; state in $WORK"
    return
  fi
  # The mirror first: it stops the data nodes while the coordinators still run.
  if [ -f "$WORK/mirror.pid" ]; then
    local mirror
    mirror=$(cat "$WORK/mirror.pid")
    kill -TERM "$mirror" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$mirror" 2>/dev/null || break; sleep 0.2; done
  fi
  for pid in "${HOST_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  for pid in "${HOST_PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$pid" 2>/dev/null
  done
  "$ROOT/tests/scripts/k8s.sh" stop "$WORK/k8s" >/dev/null 2>&1
  "$ROOT/tests/scripts/kafka.sh" stop "$WORK/kafka" >/dev/null 2>&1
  "$ROOT/tests/scripts/minio.sh" stop "$WORK/minio" >/dev/null 2>&1
  exit $rc
}
trap cleanup EXIT

# start_host NAME COMMAND...: a background host process, logged to WORK/NAME.log.
start_host() {
  local name=$1
  shift
  "$@" >"$WORK/$name.log" 2>&1 &
  HOST_PIDS+=($!)
  echo $! >"$WORK/$name.pid"
}

# metric URL NAME: the value of the first sample whose line starts with NAME.
metric() {
  curl -fsS "$1/metrics" 2>/dev/null | metric_of "$2"
}

# ---------------------------------------------------------------------------
# The cluster and the dependencies.

setup_local() {
  step "local control plane, etcd, Kafka, MinIO, coordinators"
  "$ROOT/tests/scripts/k8s.sh" start "$WORK/k8s" >/dev/null
  eval "$("$ROOT/tests/scripts/k8s.sh" env "$WORK/k8s")"
  local etcd_port peer_port
  etcd_port=$(free_port)
  peer_port=$(free_port)
  ETCD="http://127.0.0.1:$etcd_port"
  start_host etcd etcd --name=scenario --data-dir="$WORK/etcd-data" \
    --listen-client-urls="$ETCD" --advertise-client-urls="$ETCD" \
    --listen-peer-urls="http://127.0.0.1:$peer_port" \
    --initial-advertise-peer-urls="http://127.0.0.1:$peer_port" \
    --initial-cluster="scenario=http://127.0.0.1:$peer_port" --log-level=warn
  wait_for_port "$etcd_port" 20 || fail "etcd did not start"
  KAFKA=$("$ROOT/tests/scripts/kafka.sh" start "$WORK/kafka")
  S3=$("$ROOT/tests/scripts/minio.sh" start "$WORK/minio")
  "$ROOT/tests/scripts/minio.sh" create-bucket "$WORK/minio" milvus-like >/dev/null
  S3_USER=milvuslike
  S3_PASSWORD=milvuslike-secret
  local common=(--etcd-endpoints="$ETCD" --meta-root="milvus-like/$NS/$NAME"
    --session-ttl=6s --heartbeat=2s --leader-ttl=6s --log-format=text)
  RC_PORT=$(free_port)
  start_host rootcoord "$BIN_DIR/milvus-like" rootcoord "${common[@]}" \
    --listen="127.0.0.1:$RC_PORT" --http-listen="127.0.0.1:$(free_port)"
  DC_PORT=$(free_port)
  DC_HTTP=$(free_port)
  start_host datacoord "$BIN_DIR/milvus-like" datacoord "${common[@]}" \
    --listen="127.0.0.1:$DC_PORT" --http-listen="127.0.0.1:$DC_HTTP" \
    --rootcoord-endpoints="127.0.0.1:$RC_PORT" --channels=3 \
    --kafka-brokers="$KAFKA" --topic-prefix="$NS-$NAME"
  wait_for_port "$DC_HTTP" 60 || fail "the data coordinator did not start"
  DATACOORD_METRICS="http://127.0.0.1:$DC_HTTP"
  HELM_ARGS=(--set "image.tag=$VERSION")
}

# ---------------------------------------------------------------------------

install_operator() {
  step "helm install the operator chart"
  helm install "$RELEASE" "$ROOT/charts/milvus-like-operator" -n "$OP_NS" --create-namespace \
    "${HELM_ARGS[@]}" --wait --timeout 180s >"$WORK/helm.log" 2>&1 || { cat "$WORK/helm.log"; fail "helm install"; }
  wait_until "the CRD to be established" 60 \
    kubectl wait --for=condition=Established crd/milvusclusters.milvuslike.io --timeout=1s
  # The operator's pod runs nothing on kwok: run the operator here, as that pod's
  # ServiceAccount (the chart's RBAC, not admin).
  local token server ca
  token=$(kubectl create token "$RELEASE" -n "$OP_NS" --duration=2h)
  server=$(kubectl config view --raw -o jsonpath='{.clusters[0].cluster.server}')
  ca=$(kubectl config view --raw -o jsonpath='{.clusters[0].cluster.certificate-authority-data}')
  cat >"$WORK/operator.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters: [{name: local, cluster: {server: "$server", certificate-authority-data: "$ca"}}]
users: [{name: operator, user: {token: "$token"}}]
contexts: [{name: operator, context: {cluster: local, user: operator}}]
current-context: operator
EOF
  OP_HTTP=$(free_port)
  start_host operator env KUBECONFIG="$WORK/operator.kubeconfig" POD_NAMESPACE="$OP_NS" \
    POD_NAME=operator-on-host RUST_LOG=info,kube=warn \
    "$BIN_DIR/milvus-like-operator" --http-listen="127.0.0.1:$OP_HTTP" --log-format=text
  OP_PID=$(cat "$WORK/operator.pid")
  wait_for_port "$OP_HTTP" 30 || fail "the operator did not start"
  wait_until "the operator to lead" 30 operator_leads
  # A second replica, as with replicaCount: 2: it stands by.
  STANDBY_HTTP=$(free_port)
  start_host operator-standby env KUBECONFIG="$WORK/operator.kubeconfig" POD_NAMESPACE="$OP_NS" \
    POD_NAME=operator-standby RUST_LOG=info,kube=warn \
    "$BIN_DIR/milvus-like-operator" --http-listen="127.0.0.1:$STANDBY_HTTP" --log-format=text
  STANDBY_PID=$(cat "$WORK/operator-standby.pid")
  wait_until "the second operator to stand by" 30 operator_stands_by "$STANDBY_HTTP"
}

failover() {
  step "the leading operator stops: the standby takes over"
  local t0 t1
  operator_stands_by "$STANDBY_HTTP" || fail "the standby leads already"
  t0=$(now_ms)
  kill -TERM "$OP_PID"
  wait_until "the standby to lead" 30 operator_leads "$STANDBY_HTTP"
  t1=$(now_ms)
  wait_until "the old leader to exit" 30 bash -c "! kill -0 $OP_PID"
  [ "$(jp "lease/$RELEASE" '{.spec.holderIdentity}' "$OP_NS")" = operator-standby ] || fail "lease holder"
  note "operator failover (SIGTERM of the leader, which releases the Lease): $((t1 - t0)) ms"
  OP_PID=$STANDBY_PID
  OP_HTTP=$STANDBY_HTTP
}

check_api() {
  step "the CRD documents itself and refuses bad objects"
  wait_until "kubectl explain to show the field docs" 30 explain_documents
  local out
  out=$(kubectl apply -f - 2>&1 <<EOF || true
apiVersion: milvuslike.io/v1alpha1
kind: MilvusCluster
metadata: {name: refused, namespace: $NS}
spec:
  channels: 0
  balancer: fastest
  dataNode: {replicas: -1}
  dependencies:
    etcd: {endpoints: []}
    kafka: {brokers: ["kafka:9092"]}
    storage: {}
EOF
)
  for expected in "spec.channels" "spec.balancer: Unsupported value" "spec.dataNode.replicas"; do
    grep -q "$expected" <<<"$out" || fail "the schema did not refuse $expected: $out"
  done
  kubectl get mvc refused -n "$NS" >/dev/null 2>&1 && fail "an invalid object was stored"
  # The apiserver checks the CEL rules only once the rest of the schema holds.
  out=$(kubectl apply -f - 2>&1 <<EOF || true
apiVersion: milvuslike.io/v1alpha1
kind: MilvusCluster
metadata: {name: refused, namespace: $NS}
spec:
  dependencies:
    etcd: {endpoints: []}
    kafka: {brokers: ["kafka:9092"], inCluster: {}}
    storage: {inCluster: {}}
EOF
)
  for expected in "set either endpoints or inCluster" "set either brokers or inCluster"; do
    grep -q "$expected" <<<"$out" || fail "the schema did not refuse '$expected': $out"
  done
  kubectl get mvc refused -n "$NS" >/dev/null 2>&1 && fail "an invalid object was stored"
  note "schema refused channels 0, an unknown balancer, replicas -1, no etcd endpoint, both brokers and an in-cluster Kafka"

  # Past the schema, refused by the operator: a condition, no children, no hot loop.
  kubectl apply -f - >/dev/null <<EOF
apiVersion: milvuslike.io/v1alpha1
kind: MilvusCluster
metadata: {name: invalid, namespace: $NS}
spec:
  dependencies:
    etcd: {endpoints: ["http://etcd:2379"]}
    kafka: {brokers: ["kafka:9092"]}
    storage:
      s3: {bucket: segments, secretName: s3}
      volume: {claimName: segments}
EOF
  wait_until "phase Invalid" 30 invalid_is_reported
  local message before after
  message=$(jp milvuscluster/invalid '{.status.conditions[?(@.type=="Ready")].message}')
  grep -q "sets both s3 and volume" <<<"$message" || fail "the InvalidSpec message: $message"
  kubectl get deploy,sts -n "$NS" -l app.kubernetes.io/instance=invalid -o name | grep -q . && fail "an invalid spec got children"
  before=$(metric "http://127.0.0.1:$OP_HTTP" 'milvus_like_operator_reconciles_total{result="ok"}')
  sleep 3
  after=$(metric "http://127.0.0.1:$OP_HTTP" 'milvus_like_operator_reconciles_total{result="ok"}')
  [ "${after%.*}" -le $((${before%.*} + 1)) ] || fail "reconciles went from $before to $after in 3 s: a hot loop"
  kubectl delete mvc invalid -n "$NS" >/dev/null
  note "an invalid spec: phase Invalid, Ready=False InvalidSpec: $message; no children, no hot loop"
}

# The children come first: with no data coordinator answering (none runs at
# this endpoint), every child still exists at once.
children_without_coordinator() {
  step "no data coordinator answers: the children are applied anyway, at once"
  local t0 t1
  t0=$(now_ms)
  kubectl apply -f - >/dev/null <<EOF
apiVersion: milvuslike.io/v1alpha1
kind: MilvusCluster
metadata: {name: nocoord, namespace: $NS}
spec:
  dataCoordEndpoint: 127.0.0.1:$(free_port)
$USER_ERROR_DEPS
EOF
  wait_until "every child of nocoord" 30 env NAME=nocoord NS="$NS" bash -c "$(declare -f children_exist); children_exist"
  t1=$(now_ms)
  note "kubectl apply -> every child created, no data coordinator answering: $((t1 - t0)) ms"
  kubectl delete mvc nocoord -n "$NS" --wait=false >/dev/null
}

apply_cluster() {
  step "kubectl apply a MilvusCluster"
  kubectl create secret generic minio-credentials -n "$NS" \
    --from-literal=accessKey="$S3_USER" --from-literal=secretKey="$S3_PASSWORD" \
    --dry-run=client -o yaml | kubectl apply -f - >/dev/null
  # Host processes: the coordinators are reached on their host ports.
  local extra="  dataCoordEndpoint: 127.0.0.1:$DC_PORT
  config:
    MILVUS_LIKE_ROOTCOORD_ENDPOINTS: 127.0.0.1:$RC_PORT
    MILVUS_LIKE_DATACOORD_ENDPOINTS: 127.0.0.1:$DC_PORT
    MILVUS_LIKE_SESSION_TTL: 6s
    MILVUS_LIKE_HEARTBEAT: 2s"
  cat >"$WORK/milvuscluster.yaml" <<EOF
apiVersion: milvuslike.io/v1alpha1
kind: MilvusCluster
metadata:
  name: $NAME
  namespace: $NS
spec:
  image: milvus-like/node:$VERSION
  imagePullPolicy: IfNotPresent
  dataNode:
    replicas: 2
    memoryMiB: 128
    drainTimeoutSeconds: 30
  dependencies:
    etcd: {endpoints: ["$ETCD"]}
    kafka: {brokers: ["$KAFKA"]}
    storage:
      s3: {endpoint: "$S3", bucket: milvus-like, secretName: minio-credentials}
  channels: 3
$extra
EOF
  local t0 t1 t2
  t0=$(now_ms)
  kubectl apply -f "$WORK/milvuscluster.yaml" >/dev/null
  wait_until "every child to exist" 60 children_exist
  t1=$(now_ms)
  wait_until "the first status" 60 generation_observed
  t2=$(now_ms)
  note "kubectl apply -> every child created: $((t1 - t0)) ms; -> status written: $((t2 - t0)) ms"

  step "children are as specified"
  local kinds="configmap/$NAME-config deployment/$NAME-rootcoord deployment/$NAME-datacoord deployment/$NAME-proxy deployment/$NAME-querynode statefulset/$NAME-datanode service/$NAME-proxy service/$NAME-querynode poddisruptionbudget/$NAME-datanode"
  for child in $kinds; do
    [ "$(jp "$child" '{.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name}')" = "MilvusCluster/$NAME" ] \
      || fail "$child is not owned by the MilvusCluster"
    jp "$child" '{.metadata.managedFields[*].manager}' | grep -q milvus-like-operator \
      || fail "$child was not server-side applied by milvus-like-operator"
  done
  [ "$(jp deployment/$NAME-rootcoord '{.spec.replicas}')" = 2 ] || fail "root coordinator replicas"
  [ "$(jp deployment/$NAME-proxy '{.spec.replicas}')" = 1 ] || fail "proxy replicas"
  [ "$(jp deployment/$NAME-querynode '{.spec.replicas}')" = 1 ] || fail "query node replicas"
  [ "$(jp deployment/$NAME-querynode '{.spec.template.spec.containers[0].args[0]}')" = querynode ] || fail "query node command"
  [ "$(jp statefulset/$NAME-datanode '{.spec.replicas}')" = 2 ] || fail "data node replicas"
  [ "$(jp statefulset/$NAME-datanode '{.spec.template.spec.containers[0].image}')" = "milvus-like/node:$VERSION" ] || fail "image"
  [ "$(jp configmap/$NAME-config '{.data.MILVUS_LIKE_CHANNELS}')" = 3 ] || fail "channels in the config"
  [ "$(jp configmap/$NAME-config '{.data.MILVUS_LIKE_KAFKA_BROKERS}')" = "$KAFKA" ] || fail "brokers in the config"
  [ "$(jp service/$NAME-datanode '{.spec.clusterIP}')" = None ] || fail "the data-node Service is not headless"
  kubectl get pdb "$NAME-proxy" -n "$NS" >/dev/null 2>&1 && fail "one proxy got a disruption budget"
  note "children: 1 ConfigMap, 4 Deployments, 1 StatefulSet, 5 Services, 3 PodDisruptionBudgets, all owned and applied by milvus-like-operator"

  step "pods Running, status Ready"
  wait_until "8 pods Running" 120 running_pods_are 8
  start_host mirror python3 "$ROOT/tests/cluster/pod_mirror.py" --namespace "$NS" \
    --selector "app.kubernetes.io/instance=$NAME,app.kubernetes.io/component in (datanode,querynode)" \
    --binary "$BIN_DIR/milvus-like" --work "$WORK/pods" --kubectl "$(command -v kubectl)"
  wait_until "phase Ready" 120 phase_is Ready
  [ "$(mvc '{.status.conditions[?(@.type=="Ready")].status}')" = True ] || fail "Ready condition"
  [ "$(mvc '{.status.readyComponents}')" = 5/5 ] || fail "ready components"
  # The status subresource is written by server-side apply too.
  kubectl get mvc "$NAME" -n "$NS" --show-managed-fields -o jsonpath='{.metadata.managedFields[?(@.subresource=="status")].manager}' \
    | grep -q milvus-like-operator || fail "status not applied by milvus-like-operator"
  note "status: phase Ready, conditions $(mvc '{range .status.conditions[*]}{.type}={.status} {end}')"
}

check_channels() {
  step "the data nodes own every channel"
  wait_until "3 channels owned by the 2 data-node pods" 90 channels_owned_by "$NAME-datanode-0 $NAME-datanode-1"
  note "channels 2 data nodes: $(mvc '{range .status.channels[*]}{.channel}->{.pod} {end}')"
  step "the query node serves every channel, and the status says so"
  wait_until "3 channels served by the query-node pod" 90 query_channels_on_one_pod
  note "query channels: $(mvc '{range .status.queryChannels[*]}{.channel}->{.pod} {end}')"
}

query_channels_on_one_pod() {
  local pod
  pod=$(kubectl get pods -n "$NS" -l "app.kubernetes.io/instance=$NAME,app.kubernetes.io/component=querynode" \
    -o jsonpath='{.items[0].metadata.name}')
  [ -n "$pod" ] && [ "$(mvc '{range .status.queryChannels[*]}{.pod}{"\n"}{end}' | grep -cx "$pod")" = 3 ]
}

scale_up() {
  step "kubectl scale 2 -> 4: Rebalance reaches the data coordinator"
  local before ready_ms t_call
  before=$(count_rpc Rebalance)
  kubectl scale mvc "$NAME" -n "$NS" --replicas=4 >/dev/null
  wait_until "the StatefulSet to follow" 30 sts_replicas_are 4
  wait_until "4 data-node pods Ready" 90 ready_data_pods_are 4
  ready_ms=$(now_ms)
  wait_until "a Rebalance call" 30 rpc_count_above Rebalance "$before"
  t_call=$(now_ms)
  note "data-node pods Ready (as this script saw them) -> Rebalance at the data coordinator: $((t_call - ready_ms)) ms"
  wait_until "the status to record the 4 pods" 60 rebalanced_pods_are 4
  [ "$(mvc '{.status.dataNodes}')" = 4 ] || fail "status.dataNodes"
  wait_until "channels spread over the new data nodes" 60 owners_at_least 3
  note "after scaling to 4: $(mvc '{range .status.channels[*]}{.channel}->{.pod} {end}'), Rebalance calls OK: $(count_rpc Rebalance)"
}

scale_down() {
  step "kubectl scale 4 -> 1: every departing data node is drained before its pod goes"
  local before drains_at_shrink
  before=$(count_rpc DrainNode)
  kubectl scale mvc "$NAME" -n "$NS" --replicas=1 >/dev/null
  wait_until "the StatefulSet to shrink" 90 sts_replicas_are 1
  drains_at_shrink=$(count_rpc DrainNode)
  [ $((drains_at_shrink - before)) -ge 3 ] \
    || fail "the StatefulSet shrank after $((drains_at_shrink - before)) DrainNode calls, not 3"
  wait_until "one data-node pod left" 90 data_pods_are 1
  wait_until "every channel on $NAME-datanode-0" 90 channels_owned_by "$NAME-datanode-0"
  wait_until "phase Ready" 60 phase_is Ready
  kubectl get events -n "$NS" --field-selector "involvedObject.name=$NAME,reason=Drained" -o name | grep -q . \
    || fail "no Drained event"
  note "scale-down: $((drains_at_shrink - before)) DrainNode calls before the StatefulSet shrank; channels: $(mvc '{range .status.channels[*]}{.channel}->{.pod} {end}')"
}

roll_config() {
  step "a config change rolls every pod"
  local old_sum
  OLD_PODS=$(kubectl get pods -n "$NS" -l "app.kubernetes.io/instance=$NAME" -o jsonpath='{.items[*].metadata.uid}')
  old_sum=$(jp statefulset/$NAME-datanode '{.spec.template.metadata.annotations.milvuslike\.io/config-checksum}')
  kubectl patch mvc "$NAME" -n "$NS" --type merge -p '{"spec":{"config":{"MILVUS_LIKE_LEADER_TTL":"8s"}}}' >/dev/null
  wait_until "the ConfigMap to change" 30 config_has MILVUS_LIKE_LEADER_TTL 8s
  # The ConfigMap is applied before the workloads, in the same reconcile.
  wait_until "the pod template checksum to change" 30 checksum_differs "$old_sum"
  wait_until "every pod replaced" 180 pods_replaced 7
  wait_until "phase Ready" 120 phase_is Ready
  note "config change: new checksum, all 7 pods replaced, phase Ready"
}

delete_cluster() {
  step "deletionPolicy Delete, then kubectl delete: metadata deleted, children garbage-collected"
  kubectl patch mvc "$NAME" -n "$NS" --type merge -p '{"spec":{"deletionPolicy":"Delete"}}' >/dev/null
  wait_until "the metadata finalizer" 30 has_finalizer
  kubectl delete mvc "$NAME" -n "$NS" --wait=false >/dev/null
  wait_until "the MilvusCluster to go" 120 gone
  wait_until "every child gone" 120 no_children
  local deleted
  deleted=$(kubectl get events -n "$NS" --field-selector "involvedObject.name=$NAME,reason=MetadataDeleted" \
    -o jsonpath='{.items[0].note}{.items[0].message}')
  grep -Eq 'deleted [1-9][0-9]* keys' <<<"$deleted" || fail "no MetadataDeleted event with keys: '$deleted'"
  note "delete: $deleted; every child garbage-collected"
}

operator_rss() {
  note "operator idle RSS: $(awk '/VmRSS/ {print $2 / 1024 " MiB"}' "/proc/$OP_PID/status") (VmHWM $(awk '/VmHWM/ {print $2 / 1024 " MiB"}' "/proc/$OP_PID/status"))"
}

setup_local
install_operator
check_api
operator_metrics() { curl -fsS "http://127.0.0.1:$OP_HTTP/metrics"; }
USER_ERROR_DEPS='  dependencies:
    etcd: {endpoints: ["http://etcd:2379"]}
    kafka: {brokers: ["kafka:9092"]}
    storage:
      s3: {bucket: segments, secretName: s3}'
check_user_errors "$USER_ERROR_DEPS"
children_without_coordinator
apply_cluster
check_channels
scale_up
scale_down
roll_config
operator_rss
failover
delete_cluster
log "scenario passed; summary in $WORK/summary.txt"
