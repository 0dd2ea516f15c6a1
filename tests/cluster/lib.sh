#!/usr/bin/env bash
# Helpers shared by the operator scenarios (tests/cluster/scenario.sh on the
# local control plane, tests/kind/scenario.sh on kind). Source it after
# tests/scripts/common.sh, with WORK, NS and NAME set; it defines STEP.
#
# DIAG_LOGS (array): files whose tails the diagnostics print on a failure.

STEP=0
DIAG_LOGS=()

step() { STEP=$((STEP + 1)); log "[$STEP] $*"; }
note() { printf 'scenario: %s\n' "$*" | tee -a "$WORK/summary.txt"; }
now_ms() { date +%s%3N; }

diagnostics() {
  set +e
  log "---- diagnostics (everything is in $WORK)"
  kubectl get mvc,deploy,sts,pods,svc,cm,pdb -A -o wide 2>&1 | tail -40
  kubectl get events -A --sort-by=.lastTimestamp 2>&1 | tail -25
  kubectl get mvc "$NAME" -n "$NS" -o yaml 2>&1 | sed -n '/^status:/,$p' | head -60
  local f
  for f in "${DIAG_LOGS[@]}"; do
    [ -f "$f" ] && { log "---- tail $f"; tail -25 "$f"; }
  done
}

fail() {
  log "FAILED at step $STEP: $*"
  diagnostics
  exit 1
}

# wait_until WHAT SECONDS COMMAND...: polls COMMAND every 0.2 s.
wait_until() {
  local what=$1 timeout=$2
  shift 2
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || fail "timed out after ${timeout}s waiting for: $what"
    sleep 0.2
  done
}

jp() { kubectl get "$1" -n "${3:-$NS}" -o "jsonpath=$2" 2>/dev/null; }
mvc() { jp "milvuscluster/$NAME" "$1"; }

# Predicates for wait_until.
phase_is() { [ "$(mvc '{.status.phase}')" = "$1" ]; }
generation_observed() { [ "$(mvc '{.status.observedGeneration}')" = "$(mvc '{.metadata.generation}')" ]; }
sts_replicas_are() { [ "$(jp "statefulset/$NAME-datanode" '{.spec.replicas}')" = "$1" ]; }
running_pods_are() {
  [ "$(kubectl get pods -n "$NS" -l "app.kubernetes.io/instance=$NAME" --field-selector=status.phase=Running -o name | wc -l)" -eq "$1" ]
}
data_pods_are() {
  [ "$(kubectl get pods -n "$NS" -l "app.kubernetes.io/instance=$NAME,app.kubernetes.io/component=datanode" -o name | wc -l)" -eq "$1" ]
}
# Ready data-node pods that are not being deleted (a terminating pod stays Ready
# until its probes fail, and an evicted one is about to be replaced).
ready_data_pods_are() {
  [ "$(kubectl get pods -n "$NS" -l "app.kubernetes.io/instance=$NAME,app.kubernetes.io/component=datanode" \
    -o jsonpath='{range .items[*]}{.metadata.deletionTimestamp}|{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' \
    | grep -c '^|True$')" -eq "$1" ]
}
children_exist() {
  kubectl get -n "$NS" "configmap/$NAME-config" "deploy/$NAME-rootcoord" "deploy/$NAME-datacoord" \
    "deploy/$NAME-proxy" "statefulset/$NAME-datanode" "svc/$NAME-rootcoord" "svc/$NAME-datacoord" \
    "svc/$NAME-proxy" "svc/$NAME-datanode" "pdb/$NAME-rootcoord" "pdb/$NAME-datacoord" "pdb/$NAME-datanode"
}
no_children() { [ -z "$(kubectl get deploy,sts,svc,cm,pdb -n "$NS" -l "app.kubernetes.io/instance=$NAME" -o name)" ]; }
# owners: the distinct pods that own channels, sorted, space separated.
owners() { mvc '{range .status.channels[*]}{.pod}{"\n"}{end}' | sort -u | grep . | tr '\n' ' ' | sed 's/ $//'; }
channels() { mvc '{range .status.channels[*]}{.channel}{"\n"}{end}' | grep -c . || true; }
channels_owned_by() { [ "$(channels)" = 3 ] && [ "$(owners)" = "$*" ]; }
owners_at_least() { [ "$(channels)" = 3 ] && [ "$(owners | wc -w)" -ge "$1" ]; }
rebalanced_pods_are() { [ "$(mvc '{.status.lastRebalance.pods[*]}' | wc -w)" -eq "$1" ] && [ -z "$(mvc '{.status.lastRebalance.error}')" ]; }
count_rpc() { metric "$DATACOORD_METRICS" "datacoord_rpcs_total{method=\"$1\",code=\"OK\"}" | cut -d. -f1; }
rpc_count_above() { [ "$(count_rpc "$1")" -gt "$2" ]; }
checksum_differs() {
  [ "$(jp "statefulset/$NAME-datanode" '{.spec.template.metadata.annotations.milvuslike\.io/config-checksum}')" != "$1" ]
}
config_has() { [ "$(jp "configmap/$NAME-config" "{.data.$1}")" = "$2" ]; }
pods_replaced() {
  local pods
  pods=$(kubectl get pods -n "$NS" -l "app.kubernetes.io/instance=$NAME" --field-selector=status.phase=Running -o jsonpath='{.items[*].metadata.uid}')
  [ "$(wc -w <<<"$pods")" -eq "$1" ] || return 1
  local uid
  for uid in $OLD_PODS; do grep -q "$uid" <<<"$pods" && return 1; done
  return 0
}
operator_leads() { curl -fsS "http://127.0.0.1:${1:-$OP_HTTP}/readyz" | grep -q '"leader":true'; }
operator_stands_by() { curl -fsS "http://127.0.0.1:$1/readyz" | grep -q '"leader":false'; }
invalid_is_reported() {
  [ "$(jp milvuscluster/invalid '{.status.phase}')" = Invalid ] \
    && [ "$(jp milvuscluster/invalid '{.status.conditions[?(@.type=="Ready")].reason}')" = InvalidSpec ]
}
has_finalizer() { mvc '{.metadata.finalizers}' | grep -q milvuslike.io/metadata-cleanup; }
gone() { ! kubectl get mvc "$NAME" -n "$NS" >/dev/null 2>&1; }
explain_documents() { kubectl explain mvc.spec.dataNode.memoryMiB | grep -q 'consumption pauses'; }


# metric_of NAME: the value of the first sample whose line starts with NAME in
# the metrics text on stdin (0 when there is none).
metric_of() {
  # Reads to the end: stopping at the first match closed the pipe under a writer
  # still sending (curl then exits 23, which set -e -o pipefail turns into a silent
  # failure of the whole scenario).
  awk -v n="$1" '!found && index($0, n) == 1 {v = $NF; found = 1} END {print found ? v : 0}'
}

refused_apply_is_reported() {
  [ "$(jp milvuscluster/refused-apply '{.status.phase}')" = Degraded ] &&
    [ "$(jp milvuscluster/refused-apply '{.status.conditions[?(@.type=="Degraded")].reason}')" = ApplyFailed ]
}

# check_user_errors DEPENDENCIES_YAML: what a user sees when a spec is wrong in a
# way only the apiserver knows. A data-node memory budget beyond the schema's
# bound is refused at once; a toleration the apiserver refuses (operator Exists
# with a value) passes the schema and the operator's checks, and the refused
# apply shows as phase Degraded, an ApplyFailed condition and event carrying the
# apiserver's message, and a kube error in the operator's metrics (read with the
# scenario's own `operator_metrics`). DEPENDENCIES_YAML: the `dependencies:`
# block (indented by 2) of these throwaway objects.
check_user_errors() {
  local deps=$1 out before after message
  out=$(kubectl apply -f - 2>&1 <<EOF || true
apiVersion: milvuslike.io/v1alpha1
kind: MilvusCluster
metadata: {name: too-much-memory, namespace: $NS}
spec:
  dataNode: {memoryMiB: 99999999999}
$deps
EOF
)
  grep -q "spec.dataNode.memoryMiB" <<<"$out" || fail "the schema took memoryMiB 99999999999: $out"
  note "schema refused dataNode.memoryMiB 99999999999: $(grep -o 'spec.dataNode.memoryMiB[^,]*' <<<"$out" | head -1)"
  before=$(operator_metrics | metric_of 'milvus_like_operator_reconcile_errors_total{kind="kube"}')
  kubectl apply -f - >/dev/null <<EOF
apiVersion: milvuslike.io/v1alpha1
kind: MilvusCluster
metadata: {name: refused-apply, namespace: $NS}
spec:
  proxy:
    tolerations: [{key: dedicated, operator: Exists, value: search}]
$deps
EOF
  wait_until "the refused apply in the status" 60 refused_apply_is_reported
  message=$(jp milvuscluster/refused-apply '{.status.conditions[?(@.type=="Degraded")].message}')
  grep -q "Deployment refused-apply-proxy" <<<"$message" || fail "the refused child is not named: $message"
  grep -qi "toleration" <<<"$message" || fail "not the apiserver's words: $message"
  [ "$(jp milvuscluster/refused-apply '{.status.conditions[?(@.type=="Ready")].status}')" = False ] || fail "Ready is not False"
  wait_until "an ApplyFailed event" 30 bash -c "kubectl get events -n '$NS' --field-selector involvedObject.name=refused-apply,reason=ApplyFailed -o name | grep -q ."
  after=$(operator_metrics | metric_of 'milvus_like_operator_reconcile_errors_total{kind="kube"}')
  [ "${after%.*}" -gt "${before%.*}" ] || fail "reconcile_errors_total{kind=\"kube\"} stayed at $after"
  kubectl delete mvc refused-apply -n "$NS" --wait=false >/dev/null
  note "a refused apply: phase Degraded, ApplyFailed: $message; kube errors $before -> $after"
}
