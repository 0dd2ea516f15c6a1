#!/usr/bin/env bash
# The operator's end-to-end scenario on kind: real pods from our images, as a
# user meets the project.
#
#   tests/kind/scenario.sh
#
# 1. A kind cluster (tests/kind/cluster.sh: Docker, kind, a node image), our
#    node and operator images built from docker/*.Dockerfile (both stages) and
#    a second node image tag for the upgrade, the dependency images, all loaded
#    into kind; prometheus-operator's ServiceMonitor CRD.
# 2. `helm install` the chart (with its ServiceMonitor), `kubectl apply` the
#    quick start (charts/milvus-like-operator/examples/quickstart.yaml: etcd,
#    Kafka and MinIO run by the operator): every pod Ready through its real
#    probes, as non-root with a read-only root filesystem.
# 3. A Job inside the cluster inserts rows through the proxy Service, one
#    block of keys per request, without pause, while the scenario scales the
#    data nodes 2 -> 4 -> 1 (drained before their pods go), force-deletes a
#    data-node pod, rolls a config change, upgrades the image (coordinators,
#    then data nodes, then proxies; the status says so only when every pod runs
#    it), restarts the operator pod, scales back to 2 and evicts pods against
#    the disruption budgets.
# 4. Ingest stops; flush; read back block by block: every acknowledged block
#    exactly once with its checksum, no key twice, unacknowledged blocks
#    reported (absent, or whole).
# 5. Search: the collection loaded on the query node, a strong search through
#    the proxy finds a row by its own vector and counts every committed row;
#    query nodes scaled 1 -> 2 -> 1 (the departing one drained): the channels
#    spread and come back (status.queryChannels) and the answers stay the same.
# 6. Every target the ServiceMonitors select answers /metrics; a spec only the
#    apiserver refuses shows in the status; deleting the MilvusCluster
#    garbage-collects every child and, with deletionPolicy Delete, the volumes.
#
# Figures are printed as `scenario:` lines (and kept in WORK/summary.txt).
# Environment: WORK (default target/test-runs/kind-scenario-<time>), KEEP=1
# (leave the MilvusCluster and the operator in place at the end).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck source-path=SCRIPTDIR/../scripts source=../scripts/common.sh
source "$ROOT/tests/scripts/common.sh"

WORK="${WORK:-$ROOT/target/test-runs/kind-scenario-$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$WORK"
WORK="$(cd "$WORK" && pwd)"
NS=scenario
NAME=quickstart
OP_NS=milvus-like-system
RELEASE=milvus-like-operator
VERSION=$(awk -F'"' '/^\[workspace.package\]/ {p = 1} p && /^version/ {print $2; exit}' "$ROOT/Cargo.toml")
NEXT="$VERSION-next"
# Rows per insert request: one block of keys.
BLOCK=1000
# shellcheck source-path=SCRIPTDIR/../cluster source=../cluster/lib.sh
source "$ROOT/tests/cluster/lib.sh"
DIAG_LOGS=("$WORK/operator.log" "$WORK/ingest.log")
: >"$WORK/summary.txt"

# ---------------------------------------------------------------------------
# Reading the cluster.

# raw_get PATH: a GET through the apiserver (pod and service proxies included).
raw_get() { kubectl get --raw "$1" 2>/dev/null; }
# pod_metrics NS POD PORT: the pod's /metrics, through the apiserver's pod proxy.
pod_metrics() { raw_get "/api/v1/namespaces/$1/pods/$2:$3/proxy/metrics"; }
pods_of() { kubectl get pods -n "$NS" -l "app.kubernetes.io/instance=$NAME,app.kubernetes.io/component=$1" -o jsonpath='{.items[*].metadata.name}'; }
operator_pod() { kubectl get pods -n "$OP_NS" -l app.kubernetes.io/name=milvus-like-operator --field-selector=status.phase=Running -o jsonpath='{.items[0].metadata.name}'; }
operator_metrics() { pod_metrics "$OP_NS" "$(operator_pod)" 8080; }
operator_leads() { raw_get "/api/v1/namespaces/$OP_NS/pods/$(operator_pod):8080/proxy/readyz" | grep -q '"leader":true'; }
operator_logs() { kubectl logs -n "$OP_NS" -l app.kubernetes.io/name=milvus-like-operator --tail=-1 --prefix >>"$WORK/operator.log" 2>&1 || true; }

# count_rpc METHOD: OK calls of METHOD summed over the data coordinators.
count_rpc() {
  local pod total=0 v
  for pod in $(pods_of datacoord); do
    v=$(pod_metrics "$NS" "$pod" 19093 | metric_of "datacoord_rpcs_total{method=\"$1\",code=\"OK\"}")
    total=$((total + ${v%.*}))
  done
  echo "$total"
}

all_pods_ready() {
  local not_ready
  not_ready=$(kubectl get pods -n "$NS" -l "app.kubernetes.io/instance=$NAME" \
    -o jsonpath='{range .items[*]}{.metadata.name} {.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' |
    grep -v ' True$' | grep -v 'minio-bucket' || true)
  [ -z "$not_ready" ] && [ -n "$(pods_of proxy)" ]
}
expected_pods_ready() { [ "$(kubectl get pods -n "$NS" -l "app.kubernetes.io/instance=$NAME" -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | grep -c True)" -ge "$1" ]; }
first_ack() { grep -m1 '^ACK ' "$WORK/ingest.log" 2>/dev/null; }
ingest_log() { kubectl logs -n "$NS" job/ingest >"$WORK/ingest.log" 2>/dev/null || true; }
acked_since() { ingest_log; [ "$(grep -c '^ACK ' "$WORK/ingest.log")" -gt "$1" ]; }
acks() { grep -c '^ACK ' "$WORK/ingest.log" || true; }

cleanup() {
  local rc=$?
  set +e
  operator_logs
  ingest_log
  if [ "$rc" -ne 0 ]; then
    kubectl get pods -A -o wide >"$WORK/pods.txt" 2>&1
    kubectl get events -A --sort-by=.lastTimestamp >"$WORK/events.txt" 2>&1
  fi
  [ "${KEEP:-}" = 1 ] && log "KEEP=1: the cluster stays; state in $WORK"
  exit $rc
}
trap cleanup EXIT

# ---------------------------------------------------------------------------

setup() {
  step "kind cluster, images, CRDs"
  local t0=$SECONDS envlines
  envlines=$("$ROOT/tests/kind/docker.sh" up) ||
    die "the kind scenario needs a Docker engine and none could be started (above: why)"
  eval "$envlines"
  PATH="$("$ROOT/tests/scripts/k8s.sh" install):$PATH"
  envlines=$("$ROOT/tests/kind/cluster.sh" up) || die "no kind cluster (above: why)"
  eval "$envlines"
  note "kind cluster up: $((SECONDS - t0)) s"
  # A clean namespace, before the images' long build: what an earlier run left
  # there goes, its volumes too (a kept cluster's pods, building indexes, took
  # half the machine from the build and from this run's first steps).
  kubectl delete namespace "$NS" --ignore-not-found --timeout=300s >/dev/null

  t0=$SECONDS
  "$ROOT/tests/scripts/images.sh" build "$VERSION" >"$WORK/images.log" 2>&1 || { tail -40 "$WORK/images.log"; fail "building the images"; }
  note "node and operator images from docker/*.Dockerfile: $((SECONDS - t0)) s"
  # The upgrade's second tag: the same binary, another image.
  printf 'FROM milvus-like/node:%s\nLABEL io.milvus-like.scenario=next\n' "$VERSION" |
    "$DOCKER" build -q -t "milvus-like/node:$NEXT" - >/dev/null
  local image
  for image in "milvus-like/node:$VERSION" "milvus-like/operator:$VERSION"; do
    note "image $image: $("$DOCKER" image inspect --format '{{.Size}}' "$image" | awk '{printf "%.1f MB", $1 / 1e6}')"
  done
  "$ROOT/tests/kind/dep-images.sh" build >"$WORK/dep-images.log" 2>&1 || { tail -40 "$WORK/dep-images.log"; fail "building the dependency images"; }
  t0=$SECONDS
  "$ROOT/tests/kind/cluster.sh" load "milvus-like/node:$VERSION" "milvus-like/node:$NEXT" \
    "milvus-like/operator:$VERSION" $("$ROOT/tests/kind/dep-images.sh" list) >"$WORK/load.log" 2>&1 ||
    { tail -20 "$WORK/load.log"; fail "kind load"; }
  note "images loaded into kind: $((SECONDS - t0)) s"
  kubectl apply --server-side -f "$("$ROOT/tests/kind/prometheus-crds.sh")" >/dev/null
  kubectl create namespace "$NS" >/dev/null
}

install_operator() {
  step "helm install the operator chart (with its ServiceMonitor)"
  # A fresh install: an earlier run's operator would keep running its old image
  # (the tag is the same), and helm never upgrades a CRD it finds.
  helm uninstall "$RELEASE" -n "$OP_NS" --wait >/dev/null 2>&1 || true
  kubectl wait --for=delete pod -n "$OP_NS" -l app.kubernetes.io/name=milvus-like-operator --timeout=120s >/dev/null 2>&1 || true
  kubectl apply --server-side --force-conflicts -f "$ROOT/crds/milvusclusters.yaml" >/dev/null
  helm install "$RELEASE" "$ROOT/charts/milvus-like-operator" -n "$OP_NS" --create-namespace \
    --set "image.tag=$VERSION" --set metrics.serviceMonitor.enabled=true \
    --wait --timeout 180s >"$WORK/helm.log" 2>&1 || { cat "$WORK/helm.log"; fail "helm install"; }
  wait_until "the CRD to be established" 60 \
    kubectl wait --for=condition=Established crd/milvusclusters.milvuslike.io --timeout=1s
  wait_until "the operator to lead" 60 operator_leads
}

start_ingest() {
  kubectl apply -n "$NS" -f - >/dev/null <<EOF
apiVersion: batch/v1
kind: Job
metadata: {name: ingest}
spec:
  backoffLimit: 0
  template:
    metadata: {labels: {app: ingest}}
    spec:
      restartPolicy: Never
      securityContext: {runAsNonRoot: true, runAsUser: 10001, seccompProfile: {type: RuntimeDefault}}
      containers:
        - name: ingest
          image: milvus-like/node:$VERSION
          imagePullPolicy: IfNotPresent
          env: [{name: MILVUS_LIKE_PROXY_ENDPOINT, value: "$NAME-proxy.$NS.svc:19531"}]
          securityContext: {readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}
          volumeMounts: [{name: tmp, mountPath: /tmp}]
          command:
            - /bin/sh
            - -c
            - |
              until milvus-like collection describe scenario >/dev/null 2>&1 ||
                    milvus-like collection create scenario --dim 16 >/dev/null 2>&1; do sleep 1; done
              echo "CREATED \$(date +%s%3N)"
              k=0
              while [ ! -e /tmp/stop ]; do
                if out=\$(milvus-like insert -c scenario --random $BLOCK --id-start \$k --seed \$k --batch-rows $BLOCK --concurrency 1 2>&1); then
                  echo "ACK \$k \$(echo "\$out" | sed -n 's/^inserted \([0-9]*\) rows.*checksum \([0-9a-f]*\)\$/\1 \2/p' | grep . || echo "? ?") \$(date +%s%3N)"
                else
                  echo "NACK \$k \$(date +%s%3N) \$(echo "\$out" | tr '\n' ' ' | cut -c1-300)"
                  sleep 1
                fi
                k=\$((k + $BLOCK))
              done
              echo "STOPPED \$k"
      volumes: [{name: tmp, emptyDir: {}}]
EOF
}

apply_quickstart() {
  step "kubectl apply the quick start: every pod Ready, the first insert acknowledged"
  local t0 t1 t2 t3
  t0=$(now_ms)
  kubectl apply -n "$NS" -f "$ROOT/charts/milvus-like-operator/examples/quickstart.yaml" >/dev/null
  wait_until "every child" 30 kubectl get -n "$NS" deploy/$NAME-rootcoord deploy/$NAME-datacoord deploy/$NAME-proxy \
    sts/$NAME-datanode sts/$NAME-etcd sts/$NAME-kafka sts/$NAME-minio svc/$NAME-proxy cm/$NAME-config job/$NAME-minio-bucket
  t1=$(now_ms)
  note "kubectl apply -> every child created (no data coordinator exists yet): $((t1 - t0)) ms"
  start_ingest
  wait_until "phase Ready" 600 phase_is Ready
  wait_until "every pod Ready" 120 all_pods_ready
  t2=$(now_ms)
  note "kubectl apply -> every pod Ready (etcd, Kafka, MinIO, 2+2 coordinators, proxy, 2 data nodes, a query node): $(((t2 - t0) / 1000)) s"
  wait_until "the first acknowledged insert" 180 bash -c "kubectl logs -n $NS job/ingest 2>/dev/null | grep -q '^ACK '"
  ingest_log
  t3=$(first_ack | awk '{print $5}')
  [[ "$t3" =~ ^[0-9]+$ ]] || fail "the ingest Job's first line is not 'ACK key rows checksum ms': $(first_ack)"
  note "kubectl apply -> first insert acknowledged (a Job in the cluster, through the proxy Service): $(((t3 - t0) / 1000)) s"
  [ "$(mvc '{.status.readyComponents}')" = 8/8 ] || fail "ready components: $(mvc '{.status.readyComponents}')"
  note "status: phase Ready, $(mvc '{.status.readyComponents}') components, version $(mvc '{.status.version}')"
}

check_pods_locked_down() {
  step "our processes run as non-root, on a read-only root filesystem"
  local pod out
  for component in rootcoord datacoord proxy datanode; do
    pod=$(pods_of $component | awk '{print $1}')
    out=$(kubectl exec -n "$NS" "$pod" -- sh -c 'id -u; touch /probe 2>&1 || true' 2>&1)
    grep -qx 10001 <<<"$out" || fail "$pod runs as $(head -1 <<<"$out")"
    grep -q "Read-only file system" <<<"$out" || fail "$pod can write its root filesystem: $out"
  done
  out=$(kubectl exec -n "$OP_NS" "$(operator_pod)" -- sh -c 'id -u; touch /probe 2>&1 || true' 2>&1)
  grep -qx 10001 <<<"$out" && grep -q "Read-only file system" <<<"$out" || fail "the operator: $out"
  for component in etcd kafka minio; do
    pod=$(pods_of $component | awk '{print $1}')
    [ "$(jp "pod/$pod" '{.spec.securityContext.runAsNonRoot}')" = true ] || fail "$pod may run as root"
    [ "$(jp "pod/$pod" '{.spec.containers[0].securityContext.readOnlyRootFilesystem}')" = true ] || fail "$pod writes its root filesystem"
  done
  note "uid 10001 and a read-only root filesystem in the coordinators, proxy, data node and operator; etcd, Kafka and MinIO non-root and read-only too"
}

enable_monitoring() {
  kubectl patch mvc "$NAME" -n "$NS" --type merge -p '{"spec":{"monitoring":{"serviceMonitor":true}}}' >/dev/null
  wait_until "the cluster's ServiceMonitor" 30 kubectl get servicemonitor "$NAME" -n "$NS"
}

check_channels() {
  wait_until "3 channels owned by the 2 data-node pods" 120 channels_owned_by "$NAME-datanode-0 $NAME-datanode-1"
  note "channels: $(mvc '{range .status.channels[*]}{.channel}->{.pod} {end}')"
}

scale_up() {
  step "kubectl scale 2 -> 4 while ingest runs"
  local acked
  acked=$(acks)
  kubectl scale mvc "$NAME" -n "$NS" --replicas=4 >/dev/null
  wait_until "4 data-node pods Ready" 240 ready_data_pods_are 4
  wait_until "the status to record the 4 pods" 120 rebalanced_pods_are 4
  wait_until "channels spread over the new data nodes" 120 owners_at_least 3
  wait_until "more rows acknowledged" 120 acked_since "$acked"
  note "after scaling to 4: $(mvc '{range .status.channels[*]}{.channel}->{.pod} {end}')"
}

scale_down() {
  step "kubectl scale 4 -> 1: departing data nodes drained, then SIGTERM from the kubelet"
  local before drains
  before=$(count_rpc DrainNode)
  kubectl scale mvc "$NAME" -n "$NS" --replicas=1 >/dev/null
  wait_until "the StatefulSet to shrink" 240 sts_replicas_are 1
  drains=$(($(count_rpc DrainNode) - before))
  [ "$drains" -ge 3 ] || fail "the StatefulSet shrank after $drains DrainNode calls, not 3"
  wait_until "one data-node pod left" 240 data_pods_are 1
  wait_until "every channel on $NAME-datanode-0" 180 channels_owned_by "$NAME-datanode-0"
  wait_until "phase Ready" 120 phase_is Ready
  note "scale-down: $drains DrainNode calls before the StatefulSet shrank"
}

owner_ids() { mvc '{range .status.channels[*]}{.nodeId}{"\n"}{end}' | sort -u | tr '\n' ' '; }
channels_moved_from() {
  local ids
  ids=$(owner_ids)
  [ "$(channels)" = 3 ] && [ -n "${ids// /}" ] && [[ " $ids " != *" $1 "* ]] && ready_data_pods_are 1
}

force_delete() {
  step "kubectl delete --force a data-node pod mid-ingest"
  local old t0 t1 acked
  old=$(owner_ids | awk '{print $1}')
  acked=$(acks)
  t0=$(now_ms)
  kubectl delete pod "$NAME-datanode-0" -n "$NS" --grace-period=0 --force >/dev/null 2>&1
  wait_until "its channels consumed again by the new pod" 300 channels_moved_from "$old"
  t1=$(now_ms)
  wait_until "more rows acknowledged" 120 acked_since "$acked"
  note "force-deleted data node -> its channels consumed again: $(((t1 - t0) / 1000)) s (data node $old -> $(owner_ids))"
}

roll_config() {
  step "a config change rolls every pod"
  OLD_PODS=$(kubectl get pods -n "$NS" -l "app.kubernetes.io/instance=$NAME,app.kubernetes.io/managed-by=milvus-like-operator" -o jsonpath='{.items[*].metadata.uid}')
  kubectl patch mvc "$NAME" -n "$NS" --type merge -p '{"spec":{"config":{"MILVUS_LIKE_LEADER_TTL":"8s"}}}' >/dev/null
  wait_until "every pod of the roles replaced" 600 roles_replaced
  wait_until "phase Ready" 300 phase_is Ready
  note "config change: every coordinator, proxy, data-node and query-node pod replaced, phase Ready"
}
roles_replaced() {
  local uid pods
  pods=$(for c in rootcoord datacoord proxy datanode querynode; do
    kubectl get pods -n "$NS" -l "app.kubernetes.io/instance=$NAME,app.kubernetes.io/component=$c" \
      -o jsonpath='{range .items[*]}{.metadata.uid} {.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}'
  done)
  [ "$(grep -c ' True$' <<<"$pods")" -eq 7 ] && [ "$(grep -c . <<<"$pods")" -eq 7 ] || return 1
  for uid in $OLD_PODS; do grep -q "$uid" <<<"$pods" && return 1; done
  return 0
}

# role_images ROLE: "<pods on NEXT>/<pods>" of a role, terminating pods included.
role_images() {
  kubectl get pods -n "$NS" -l "app.kubernetes.io/instance=$NAME,app.kubernetes.io/component=$1" \
    -o jsonpath='{range .items[*]}{.spec.containers[0].image}{"\n"}{end}' |
    awk -v next_image="milvus-like/node:$NEXT" 'NF {n++; if ($1 == next_image) u++} END {printf "%d/%d", u, n}'
}

upgrade() {
  step "upgrade the version: coordinators, then data nodes, then the proxy"
  local t0 role state version
  declare -A started done_at
  t0=$(now_ms)
  kubectl patch mvc "$NAME" -n "$NS" --type merge -p "{\"spec\":{\"version\":\"$NEXT\"}}" >/dev/null
  local deadline=$((SECONDS + 900))
  while :; do
    ((SECONDS < deadline)) || fail "the upgrade did not finish in 900 s"
    local all_new=1
    for role in rootcoord datacoord datanode proxy; do
      state=$(role_images "$role")
      if [ "${state%%/*}" -gt 0 ] && [ -z "${started[$role]:-}" ]; then started[$role]=$(($(now_ms) - t0)); fi
      if [ "${state%%/*}" = "${state##*/}" ] && [ "${state##*/}" -gt 0 ]; then
        [ -n "${done_at[$role]:-}" ] || done_at[$role]=$(($(now_ms) - t0))
      else
        unset "done_at[$role]"
        all_new=0
      fi
    done
    version=$(mvc '{.status.version}')
    if ((!all_new)) && [ "$version" = "$NEXT" ]; then
      fail "the status says $NEXT while pods still run the old image"
    fi
    ((all_new)) && [ "$version" = "$NEXT" ] && phase_is Ready && break
    sleep 0.5
  done
  for role in rootcoord datacoord; do
    [ "${started[datanode]}" -ge "${done_at[$role]}" ] || fail "data nodes began at ${started[datanode]} ms, before $role was done (${done_at[$role]} ms)"
  done
  [ "${started[proxy]}" -ge "${done_at[datanode]}" ] || fail "the proxy began at ${started[proxy]} ms, before the data nodes were done (${done_at[datanode]} ms)"
  kubectl get events -n "$NS" --field-selector "involvedObject.name=$NAME,reason=Upgraded" -o name | grep -q . || fail "no Upgraded event"
  note "upgrade $VERSION -> $NEXT in $((($(now_ms) - t0) / 1000)) s: rootcoord ${started[rootcoord]}-${done_at[rootcoord]} ms, datacoord ${started[datacoord]}-${done_at[datacoord]} ms, data nodes ${started[datanode]}-${done_at[datanode]} ms, proxy ${started[proxy]}-${done_at[proxy]} ms; status.version $NEXT only then"
}

new_operator_leads() { [ "$(operator_pod)" != "$1" ] && operator_leads; }

restart_operator() {
  step "the operator pod restarts; the new one takes over"
  local old t0
  old=$(operator_pod)
  operator_logs
  t0=$(now_ms)
  kubectl delete pod -n "$OP_NS" "$old" >/dev/null
  wait_until "a new operator pod that leads" 120 new_operator_leads "$old"
  note "operator pod restarted, new leader in $((($(now_ms) - t0) / 1000)) s"
  # The new operator acts: back to two data nodes (and a data-node budget).
  kubectl scale mvc "$NAME" -n "$NS" --replicas=2 >/dev/null
  wait_until "2 data-node pods Ready" 240 ready_data_pods_are 2
  wait_until "the data-node disruption budget" 60 kubectl get pdb "$NAME-datanode" -n "$NS"
  wait_until "phase Ready" 300 phase_is Ready
}

evict() {
  kubectl create --raw "/api/v1/namespaces/$NS/pods/$1/eviction" -f - 2>&1 <<EOF
{"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "$1", "namespace": "$NS"}}
EOF
}

check_budgets() {
  step "evictions respect the disruption budgets"
  local a b out
  wait_until "the data-node budget to allow one disruption" 120 bash -c "[ \"\$(kubectl get pdb $NAME-datanode -n $NS -o jsonpath='{.status.disruptionsAllowed}')\" = 1 ]"
  read -r a b <<<"$(pods_of datanode)"
  out=$(evict "$a") || fail "the first eviction was refused: $out"
  out=$(evict "$b") && fail "a second data node was evicted while the first was away: $out"
  grep -q "disruption budget" <<<"$out" || fail "refused for another reason: $out"
  note "eviction of $a allowed; of $b refused: $(grep -o 'Cannot evict[^"]*' <<<"$out" | head -1)"
  wait_until "2 data-node pods Ready again" 240 ready_data_pods_are 2
}

check_service_monitors() {
  step "every target the ServiceMonitors select answers /metrics"
  local checked
  checked=$(python3 "$ROOT/tests/kind/scrape_targets.py" "$NS/$NAME" "$OP_NS/$RELEASE") || fail "ServiceMonitor targets: $checked"
  note "ServiceMonitor targets answering /metrics: $checked"
}

stop_ingest_and_verify() {
  step "ingest stops; flush; the committed rows are exactly the acknowledged ones"
  local pod
  pod=$(kubectl get pods -n "$NS" -l app=ingest -o jsonpath='{.items[0].metadata.name}')
  kubectl exec -n "$NS" "$pod" -- touch /tmp/stop
  wait_until "the ingest Job to finish" 120 bash -c "kubectl logs -n $NS job/ingest | grep -q '^STOPPED '"
  ingest_log
  kubectl apply -n "$NS" -f - >/dev/null <<EOF
apiVersion: batch/v1
kind: Job
metadata: {name: read-back}
spec:
  backoffLimit: 3
  template:
    spec:
      restartPolicy: OnFailure
      securityContext: {runAsNonRoot: true, runAsUser: 10001, seccompProfile: {type: RuntimeDefault}}
      containers:
        - name: read-back
          image: milvus-like/node:$NEXT
          imagePullPolicy: IfNotPresent
          envFrom: [{configMapRef: {name: $NAME-config}}]
          env:
            - {name: MILVUS_LIKE_PROXY_ENDPOINT, value: "$NAME-proxy.$NS.svc:19531"}
            - {name: MILVUS_LIKE_S3_ACCESS_KEY, valueFrom: {secretKeyRef: {name: $NAME-minio, key: accessKey}}}
            - {name: MILVUS_LIKE_S3_SECRET_KEY, valueFrom: {secretKeyRef: {name: $NAME-minio, key: secretKey}}}
          securityContext: {readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}
          command: [/bin/sh, -c, "milvus-like flush -c scenario && milvus-like read-back --collection scenario --sample 0 --key-blocks $BLOCK"]
EOF
  wait_until "the read-back Job" 300 kubectl wait -n "$NS" --for=condition=complete job/read-back --timeout=2s
  kubectl logs -n "$NS" job/read-back >"$WORK/read-back.log"
  local verdict
  verdict=$(python3 "$ROOT/tests/kind/verify_ingest.py" "$WORK/ingest.log" "$WORK/read-back.log" "$BLOCK") ||
    fail "committed rows differ from the acknowledged rows: $verdict"
  note "ingest: $verdict"
}

# cli ARGS...: the milvus-like client in a proxy pod, against that proxy.
cli() {
  kubectl exec -n "$NS" "$(pods_of proxy | awk '{print $1}')" -- \
    env MILVUS_LIKE_PROXY_ENDPOINT=127.0.0.1:19531 milvus-like "$@"
}
# query_pods: the pod status.queryChannels names for each channel, one a line.
query_pods() { mvc '{range .status.queryChannels[*]}{.pod}{"\n"}{end}' | grep .; }
# query_channels_on N: the 3 channels served, by N distinct pods.
query_channels_on() {
  local pods
  pods=$(query_pods)
  [ "$(grep -c . <<<"$pods")" -eq 3 ] && [ "$(sort -u <<<"$pods" | wc -l)" -eq "$1" ]
}
ready_query_pods_are() {
  [ "$(kubectl get pods -n "$NS" -l "app.kubernetes.io/instance=$NAME,app.kubernetes.io/component=querynode" \
    -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | grep -c True)" -eq "$1" ] &&
    [ "$(kubectl get pods -n "$NS" -l "app.kubernetes.io/instance=$NAME,app.kubernetes.io/component=querynode" -o name | wc -l)" -eq "$1" ]
}

# search_answer: "<rows counted> <nearest id> <its score>" for the vector of
# row PROBE_KEY, strong consistency, through the proxy.
search_answer() {
  local count found
  count=$(cli count -c scenario --consistency strong) || return 1
  found=$(cli search -c scenario --vector "$PROBE_VECTOR" --top-k 3 --consistency strong -o json |
    python3 -c 'import json, sys; h = json.load(sys.stdin)["results"][0][0]; print(h["id"], "%.4f" % h["score"])') || return 1
  echo "$count $found"
}

search_through_query_nodes() {
  step "search: loaded on the query node, then query nodes scaled 1 -> 2 -> 1, same answers"
  local committed before t0
  committed=$(sed -n 's/^collection .*): \([0-9]*\) rows,.*/\1/p' "$WORK/read-back.log" | head -1)
  [ -n "$committed" ] || fail "no row count in $WORK/read-back.log"
  t0=$(now_ms)
  # Retried: a proxy busy with the other pods of this one machine may not
  # answer the first call in time (load is idempotent).
  wait_until "collection load" 180 cli collection load scenario
  note "collection load (files from MinIO, channels followed): $((($(now_ms) - t0))) ms"
  PROBE_KEY=1000
  PROBE_VECTOR=$(cli query -c scenario --ids "$PROBE_KEY" --output-fields vector -o json |
    python3 -c 'import json, sys; print(",".join(str(x) for x in json.load(sys.stdin)["rows"][0]["vector"]))') ||
    fail "query row $PROBE_KEY"
  wait_until "a first strong search" 120 search_answer
  before=$(search_answer) || fail "search before scaling"
  [ "$(awk '{print $2, $3}' <<<"$before")" = "$PROBE_KEY 0.0000" ] || fail "row $PROBE_KEY is not its own nearest row: $before"
  [ "$(awk '{print $1}' <<<"$before")" = "$committed" ] ||
    fail "the search path counts $(awk '{print $1}' <<<"$before") rows, read-back $committed"
  note "search before scaling: $before (rows, nearest id, score) on $(query_pods | sort -u | tr '\n' ' ')"
  query_nodes_to 2 "$before"
  query_nodes_to 1 "$before" # the departing one drains first
}

# query_nodes_to N BEFORE: scales the query nodes to N; the channels must end
# on N pods and the search answer must still be BEFORE.
query_nodes_to() {
  local after
  kubectl patch mvc "$NAME" -n "$NS" --type merge -p "{\"spec\":{\"queryNode\":{\"replicas\":$1}}}" >/dev/null
  wait_until "$1 query-node pods Ready" 240 ready_query_pods_are "$1"
  wait_until "the channels on $1 query-node pods" 180 query_channels_on "$1"
  after=$(search_answer) || fail "search with $1 query nodes"
  [ "$after" = "$2" ] || fail "with $1 query nodes: $after, before: $2"
  note "query nodes -> $1: $(mvc '{range .status.queryChannels[*]}{.channel}->{.pod} {end}'); search $after"
}

delete_cluster() {
  step "deletionPolicy Delete, kubectl delete: every child and volume garbage-collected"
  [ "$(jp "statefulset/$NAME-kafka" '{.spec.persistentVolumeClaimRetentionPolicy.whenDeleted}')" = Retain ] ||
    fail "the volumes are not retained by default"
  local pvcs
  pvcs=$(kubectl get pvc -n "$NS" -l "app.kubernetes.io/instance=$NAME" -o name | wc -l)
  [ "$pvcs" -eq 3 ] || fail "$pvcs volumes, not 3 (etcd, Kafka, MinIO)"
  kubectl patch mvc "$NAME" -n "$NS" --type merge -p '{"spec":{"deletionPolicy":"Delete"}}' >/dev/null
  wait_until "the volumes to follow deletionPolicy" 60 bash -c "[ \"\$(kubectl get sts $NAME-kafka -n $NS -o jsonpath='{.spec.persistentVolumeClaimRetentionPolicy.whenDeleted}')\" = Delete ]"
  kubectl delete mvc "$NAME" -n "$NS" --wait=false >/dev/null
  wait_until "the MilvusCluster to go" 120 gone
  wait_until "every child gone" 300 bash -c "[ -z \"\$(kubectl get deploy,sts,svc,cm,pdb,job,secret,servicemonitor -n $NS -l app.kubernetes.io/instance=$NAME -o name)\" ]"
  wait_until "every volume gone" 300 bash -c "[ -z \"\$(kubectl get pvc -n $NS -l app.kubernetes.io/instance=$NAME -o name)\" ]"
  note "delete: every child (Deployments, StatefulSets, Services, ConfigMaps, budgets, Job, Secret, ServiceMonitor) and the 3 volumes garbage-collected"
}

operator_rss() {
  note "operator RSS: $(kubectl exec -n "$OP_NS" "$(operator_pod)" -- awk '/VmRSS/ {print $2 / 1024 " MiB"}' /proc/1/status)"
}

setup
install_operator
apply_quickstart
check_pods_locked_down
enable_monitoring
check_channels
scale_up
scale_down
force_delete
roll_config
upgrade
restart_operator
check_budgets
check_service_monitors
check_user_errors '  dependencies:
    etcd: {endpoints: ["http://etcd:2379"]}
    kafka: {brokers: ["kafka:9092"]}
    storage:
      s3: {bucket: segments, secretName: s3}'
operator_rss
stop_ingest_and_verify
search_through_query_nodes
if [ "${KEEP:-}" != 1 ]; then
  delete_cluster
fi
log "kind scenario passed; summary in $WORK/summary.txt"
