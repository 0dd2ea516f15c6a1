#!/usr/bin/env bash
# Checks that the kind cluster runs what the operator needs, for real
# (tests/kind/smoke.yaml, namespace milvus-like-smoke). Run it through
# `tests/kind/cluster.sh smoke` (which builds and loads the images), or with
# KUBECONFIG and PATH from `cluster.sh env` after the images are loaded.
#
#   1. a pod of a locally built image runs as uid 10001 with
#      readOnlyRootFilesystem, writes only to its emptyDir; httpGet readiness
#   2. a PVC of the default StorageClass binds and a non-root pod (uid 1000,
#      fsGroup 1000) writes to it
#   3. Service DNS: a pod resolves and fetches web.<ns>.svc:80 (ClusterIP) and
#      web-headless.<ns>.svc:8080 (headless)
#   4. the eviction API refuses to evict the PodDisruptionBudget's only pod
#   5. etcd answers /health, Kafka (one KRaft broker) creates and lists a
#      topic through its Service, MinIO is ready and `mc mb` made a bucket
#   6. `kubectl delete pod` delivers SIGTERM to PID 1; `--grace-period=0
#      --force` removes a pod at once
#
# Environment: SMOKE_KEEP=1 leaves the namespace in place; SMOKE_TIMEOUT
# (seconds per wait, default 180).

set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

NS=milvus-like-smoke
TIMEOUT="${SMOKE_TIMEOUT:-180}"
SMOKE_IMAGE=milvus-like/kind-smoke:r1
K=(kubectl -n "$NS")
PASSED=0
FAILED=0

ok() { PASSED=$((PASSED + 1)); log "ok: $*"; }
bad() { FAILED=$((FAILED + 1)); log "FAILED: $*"; }

# smoke_image: debian:bookworm-slim + busybox (httpd, wget, nslookup, nc).
smoke_image() {
  image_current "$SMOKE_IMAGE" smoke=1 && return 0
  local ctx
  ctx=$(mktemp -d)
  printf 'FROM docker.io/library/debian:bookworm-slim\nRUN apt-get update && apt-get install -y --no-install-recommends busybox && rm -rf /var/lib/apt/lists/*\nLABEL milvus-like.recipe=smoke=1\n' >"$ctx/Dockerfile"
  run_logged "$KIND_LOGS/smoke-image.log" "$DOCKER" build -t "$SMOKE_IMAGE" "$ctx" || die "building $SMOKE_IMAGE failed"
  rm -rf "$ctx"
}

wait_ready() { "${K[@]}" wait --for=condition=Ready "pod/$1" --timeout="${TIMEOUT}s" >/dev/null; }

# run_pod NAME COMMAND: a throwaway busybox pod (non-root, read-only root);
# prints its log once it completed; fails if it failed.
run_pod() {
  local name=$1 cmd=$2 phase
  "${K[@]}" delete pod "$name" --ignore-not-found --wait=true >/dev/null
  "${K[@]}" apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata: {name: $name}
spec:
  restartPolicy: Never
  securityContext: {runAsNonRoot: true, runAsUser: 10001}
  containers:
    - name: c
      image: $SMOKE_IMAGE
      command: [sh, -c, $(printf '%s' "$cmd" | jq -Rs .)]
      securityContext: {readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}
EOF
  local deadline=$((SECONDS + TIMEOUT))
  while :; do
    phase=$("${K[@]}" get pod "$name" -o 'jsonpath={.status.phase}')
    [ "$phase" = Succeeded ] || [ "$phase" = Failed ] && break
    ((SECONDS < deadline)) || break
    sleep 1
  done
  "${K[@]}" logs "$name" 2>&1
  [ "$phase" = Succeeded ]
}

main() {
  docker_up
  local t0=$SECONDS out
  smoke_image
  if [ -z "${SMOKE_NO_LOAD:-}" ]; then
    local deps
    mapfile -t deps < <("$KIND_DIR/dep-images.sh" list)
    "$KIND_DIR/cluster.sh" load "$SMOKE_IMAGE" "${deps[@]}"
  fi
  kubectl delete namespace "$NS" --ignore-not-found --wait=true >/dev/null
  kubectl apply -f "$KIND_DIR/smoke.yaml" >/dev/null

  # 1. non-root, read-only root fs, emptyDir, readiness probe
  if wait_ready web; then
    out=$("${K[@]}" logs web)
    if grep -q 'uid=10001' <<<"$out" && grep -q 'root fs: read-only' <<<"$out"; then
      ok "web runs as uid 10001, root fs read-only, writes its emptyDir, httpGet readiness passed"
    else
      bad "web: $out"
    fi
  else
    bad "web not Ready"
  fi

  # 2. PVC + fsGroup
  local deadline=$((SECONDS + TIMEOUT)) phase=""
  while ((SECONDS < deadline)); do
    phase=$("${K[@]}" get pod pvc-writer -o 'jsonpath={.status.phase}')
    [ "$phase" = Succeeded ] || [ "$phase" = Failed ] && break
    sleep 1
  done
  out=$("${K[@]}" logs pvc-writer 2>&1 || true)
  if [ "$phase" = Succeeded ] && grep -q written-by-1000 <<<"$out"; then
    ok "PVC data $("${K[@]}" get pvc data -o 'jsonpath={.status.phase} ({.spec.storageClassName})'), written by uid 1000: $(grep -- '-rw' <<<"$out" | tr -s ' ')"
  else
    bad "pvc-writer $phase: $out"
  fi

  # 3. Service DNS: ClusterIP and headless
  if out=$(run_pod dns-client "busybox nslookup web.$NS.svc.cluster.local && busybox wget -qO- http://web.$NS.svc:80/index.html && busybox nslookup web-headless.$NS.svc.cluster.local && busybox wget -qO- http://web-headless.$NS.svc:8080/index.html"); then
    if [ "$(grep -c hello-from-web <<<"$out")" = 2 ]; then
      ok "Service DNS: web.$NS.svc:80 (ClusterIP) and web-headless.$NS.svc:8080 (headless) answer"
    else
      bad "dns-client: $out"
    fi
  else
    bad "dns-client: $out"
  fi

  # 4. PDB: the eviction API refuses
  out=$(kubectl create --raw "/api/v1/namespaces/$NS/pods/web/eviction" -f - 2>&1 <<EOF || true
{"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "web", "namespace": "$NS"}}
EOF
)
  if grep -q -i 'disruption budget' <<<"$out"; then
    ok "eviction refused: $(grep -o -i 'Cannot evict[^"]*' <<<"$out" | head -1)"
  else
    bad "eviction of web: $out"
  fi

  # 5. dependencies
  if wait_ready etcd && out=$(run_pod etcd-client "busybox wget -qO- http://etcd.$NS.svc:2379/health"); then
    if grep -q '"health":"true"' <<<"$out"; then
      ok "etcd /health through its Service: $(tail -1 <<<"$out")"
    else
      bad "etcd: $out"
    fi
  else
    bad "etcd: ${out:-not Ready}"
  fi
  if wait_ready kafka; then
    if out=$("${K[@]}" exec kafka -- sh -c "KAFKA_HEAP_OPTS=-Xmx128m /opt/kafka/bin/kafka-topics.sh --bootstrap-server kafka.$NS.svc:9092 --create --if-not-exists --topic smoke --partitions 2 --replication-factor 1 && KAFKA_HEAP_OPTS=-Xmx128m /opt/kafka/bin/kafka-topics.sh --bootstrap-server kafka.$NS.svc:9092 --list" 2>&1) &&
      grep -qx smoke <<<"$out"; then
      ok "Kafka accepts connections on kafka.$NS.svc:9092, topic created and listed (uid $("${K[@]}" exec kafka -- id -u))"
    else
      bad "kafka topics: $out"
    fi
  else
    bad "kafka not Ready: $("${K[@]}" logs kafka 2>&1 | tail -5)"
  fi
  if wait_ready minio && "${K[@]}" wait --for=condition=complete job/minio-bucket --timeout="${TIMEOUT}s" >/dev/null; then
    out=$("${K[@]}" logs job/minio-bucket 2>&1)
    if grep -q 'milvus-like/' <<<"$out"; then
      ok "MinIO ready; mc mb made the bucket: $(grep 'milvus-like/' <<<"$out" | tr -s ' ')"
    else
      bad "minio-bucket: $out"
    fi
  else
    bad "minio: $("${K[@]}" logs minio 2>&1 | tail -5) $("${K[@]}" logs job/minio-bucket 2>&1 | tail -5)"
  fi

  # 6. SIGTERM to PID 1, then force delete
  local logf
  logf=$(mktemp)
  "${K[@]}" logs -f web >"$logf" 2>&1 &
  local follower=$!
  sleep 1
  local t1=$SECONDS
  "${K[@]}" delete pod web --wait=true >/dev/null
  wait "$follower" || true
  if grep -q 'got SIGTERM' "$logf"; then
    ok "kubectl delete pod: PID 1 got SIGTERM, pod gone in $((SECONDS - t1))s"
  else
    bad "no SIGTERM seen: $(tail -3 "$logf")"
  fi
  rm -f "$logf"
  t1=$SECONDS
  "${K[@]}" delete pod etcd --grace-period=0 --force >/dev/null 2>&1
  if ! "${K[@]}" get pod etcd >/dev/null 2>&1; then
    ok "kubectl delete pod --grace-period=0 --force: etcd gone in $((SECONDS - t1))s"
  else
    bad "etcd still there after a force delete"
  fi

  if [ -z "${SMOKE_KEEP:-}" ]; then
    kubectl delete namespace "$NS" --wait=false >/dev/null
  fi
  log "smoke took $((SECONDS - t0))s"
  echo "smoke: $PASSED passed, $FAILED failed"
  ((FAILED == 0))
}

main
