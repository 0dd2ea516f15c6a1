#!/usr/bin/env bash
# A real single-node kind cluster named milvus-like on this machine, with or
# without a reachable container registry.
#
#   cluster.sh up              start Docker (docker.sh), build kind, pick the node
#                              image, create the cluster (or find it healthy;
#                              a stopped node is started again, an unhealthy
#                              one replaced),
#                              wait for the node, CoreDNS and the default
#                              StorageClass; prints `export KUBECONFIG=...`
#   cluster.sh down            delete the cluster
#   cluster.sh load IMAGE...   kind load docker-image IMAGE... into the node
#   cluster.sh env             print the exports: KUBECONFIG, PATH (kubectl,
#                              kind, the docker client): eval "$(cluster.sh env)"
#   cluster.sh smoke           build the dependency images (dep-images.sh), load
#                              them with a test image, and run tests/kind/smoke.sh
#                              (non-root + read-only root fs, PVC + fsGroup,
#                              Service DNS, probes, SIGTERM, force delete, PDB,
#                              etcd/Kafka/MinIO)
#
# Node image: kind's stock image when registry-1.docker.io answers (a 5 s
# check), else tests/kind/node-image.sh's local one, with
# `networking.disableDefaultCNI: true` (kindnetd cannot be had: the node image
# carries a static bridge CNI config). On a cgroup v1 host the kubelet gets
# `failCgroupV1: false` through kubeadmConfigPatches (1.35+ refuses cgroup v1
# by default).
#
# Files: $MILVUS_LIKE_CACHE/kind/kubeconfig (KIND_KUBECONFIG overrides),
# $MILVUS_LIKE_CACHE/kind/cluster.yaml (the kind config used), kind itself in
# $MILVUS_LIKE_CACHE/kind/bin (go install sigs.k8s.io/kind@$KIND_VERSION),
# kubectl from tests/scripts/k8s.sh install.
#
# Environment: KIND_VERSION (v0.33.0), KIND_CLUSTER (milvus-like),
# KIND_KUBECONFIG, KIND_NODE_IMAGE (use this image, skip the choice),
# KIND_UP_TIMEOUT (seconds to wait for readiness, default 300).
#
# Traps (this machine: cgroup v1, no CAP_SYS_RESOURCE, no registry):
# - `kind create cluster --image TAG` does not pull an image `docker inspect`
#   finds locally.
# - kind's nodes are privileged containers: docker.sh's runtime wrapper
#   removes CAP_SYS_RESOURCE, else runc fails with "unable to apply caps".
# - kind checks node readiness with the kind entrypoint's "detected cgroup v1"
#   log line on such hosts.
#
# Measured here (2 cores, local node image): kind create cluster 17-25 s, node,
# CoreDNS and storage ready 14-22 s later (~40 s in all); `up` on the running
# cluster 3 s; after `docker.sh down` (which stops the node with the engine)
# `up` restarts dockerd and the node: 31 s; `down` 9 s; `load` of four images (etcd, Kafka, MinIO, smoke) 28 s; smoke
# 41 s (69 s with the load). Expected noise: kubelet logs that containerd 1.6
# lacks RuntimeConfig, and that oom_score_adj -999 cannot be written (no
# CAP_SYS_RESOURCE); the local-path provisioner restarts once at boot (it
# starts before kube-proxy's rules for 10.96.0.1).

set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

KIND_VERSION="${KIND_VERSION:-v0.33.0}"
CLUSTER="${KIND_CLUSTER:-milvus-like}"
KUBECONFIG_FILE="${KIND_KUBECONFIG:-$KIND_CACHE/kubeconfig}"
UP_TIMEOUT="${KIND_UP_TIMEOUT:-300}"
NODE="$CLUSTER-control-plane"

usage() {
  cat >&2 <<'EOF'
usage: cluster.sh up
       cluster.sh down
       cluster.sh load IMAGE...
       cluster.sh env
       cluster.sh smoke
EOF
  exit 2
}

tools() {
  docker_up
  KIND=$(go_tool kind sigs.k8s.io/kind "$KIND_VERSION")
  K8S_BIN=$("$ROOT/tests/scripts/k8s.sh" install)
  KUBECTL=("$K8S_BIN/kubectl" --kubeconfig "$KUBECONFIG_FILE")
}

cluster_exists() { "$KIND" get clusters 2>/dev/null | grep -qx "$CLUSTER"; }

api_ready() { "${KUBECTL[@]}" get --raw /readyz >/dev/null 2>&1; }

# wait_for WHAT CMD...: polls CMD until it succeeds; fails (with diagnostics)
# once DEADLINE passes.
wait_for() {
  local what=$1
  shift
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= DEADLINE)); then
      log "timed out waiting for $what"
      diagnostics
      return 1
    fi
    sleep 1
  done
}

diagnostics() {
  set +e
  "${KUBECTL[@]}" get nodes,pods -A -o wide >&2
  "${KUBECTL[@]}" get events -A --sort-by=.lastTimestamp 2>&1 | tail -20 >&2
  "$DOCKER" exec "$NODE" journalctl -u kubelet --no-pager 2>&1 | tail -20 >&2
  set -e
}

coredns_ready() {
  [ "$("${KUBECTL[@]}" -n kube-system get deploy coredns -o 'jsonpath={.status.readyReplicas}')" -ge 1 ]
}

default_storageclass() {
  "${KUBECTL[@]}" get storageclass -o \
    'jsonpath={range .items[*]}{.metadata.annotations.storageclass\.kubernetes\.io/is-default-class}{"\n"}{end}' |
    grep -qx true
}

provisioner_ready() {
  # kind's local-path storage (present in both the stock and the local image).
  if "${KUBECTL[@]}" -n local-path-storage get deploy local-path-provisioner >/dev/null 2>&1; then
    [ "$("${KUBECTL[@]}" -n local-path-storage get deploy local-path-provisioner -o 'jsonpath={.status.readyReplicas}')" -ge 1 ]
  fi
}

# pods_ready: every pod of kube-system and local-path-storage is Ready, three
# times in a row 2 s apart (right after a node restart the statuses are still
# the old ones for a few seconds).
pods_ready() {
  local i ns
  for i in 1 2 3; do
    for ns in kube-system local-path-storage; do
      "${KUBECTL[@]}" -n "$ns" wait --for=condition=Ready pod --all --timeout=1s >/dev/null 2>&1 || return 1
    done
    ((i == 3)) || sleep 2
  done
}

# wait_ready SECONDS: waits for the API, the node, CoreDNS and the storage.
wait_ready() {
  DEADLINE=$((SECONDS + $1))
  wait_for "the API server" api_ready &&
    wait_for "node $NODE Ready" "${KUBECTL[@]}" wait --for=condition=Ready "node/$NODE" --timeout=2s &&
    wait_for "the default ServiceAccount" "${KUBECTL[@]}" get serviceaccount default -n default &&
    wait_for "CoreDNS" coredns_ready &&
    wait_for "a default StorageClass" default_storageclass &&
    wait_for "the local-path provisioner" provisioner_ready &&
    wait_for "every system pod Ready" pods_ready
}

# node_image: prints the image to create the node from ("" = kind's default).
node_image() {
  if [ -n "${KIND_NODE_IMAGE:-}" ]; then
    echo "$KIND_NODE_IMAGE"
  elif registry_answers registry-1.docker.io; then
    log "registry-1.docker.io answers: kind's stock node image"
    echo ""
  else
    "$KIND_DIR/node-image.sh" build
  fi
}

cgroup_v1() { [ ! -f /sys/fs/cgroup/cgroup.controllers ]; }

write_config() {
  local image=$1 cfg="$KIND_CACHE/cluster.yaml"
  {
    echo "# Generated by tests/kind/cluster.sh"
    echo "kind: Cluster"
    echo "apiVersion: kind.x-k8s.io/v1alpha4"
    echo "name: $CLUSTER"
    if [ -n "$image" ] && [[ $image == milvus-like/* ]]; then
      echo "networking:"
      echo "  # No kindnetd offline: the local node image has a static bridge CNI config."
      echo "  disableDefaultCNI: true"
    fi
    echo "nodes:"
    echo "  - role: control-plane"
    [ -n "$image" ] && echo "    image: $image"
    if cgroup_v1; then
      echo "kubeadmConfigPatches:"
      echo "  - |"
      echo "    kind: KubeletConfiguration"
      echo "    failCgroupV1: false"
    fi
  } >"$cfg"
  echo "$cfg"
}

cmd_up() {
  local t0=$SECONDS
  tools
  mkdir -p "$(dirname "$KUBECONFIG_FILE")"
  if cluster_exists; then
    # A node stopped with its engine (docker.sh down, a reboot) is started
    # again; one that does not come back healthy is replaced.
    if [ "$("$DOCKER" inspect -f '{{.State.Running}}' "$NODE" 2>/dev/null)" != true ]; then
      log "node container $NODE is stopped: starting it"
      "$DOCKER" start "$NODE" >/dev/null || true
    fi
    "$KIND" export kubeconfig --name "$CLUSTER" --kubeconfig "$KUBECONFIG_FILE" >/dev/null 2>&1 || true
    if wait_ready 180; then
      log "cluster $CLUSTER is up ($((SECONDS - t0))s)"
      echo "export KUBECONFIG=$KUBECONFIG_FILE"
      return 0
    fi
    log "cluster $CLUSTER exists but is not healthy: deleting and creating it again"
    "$KIND" delete cluster --name "$CLUSTER" --kubeconfig "$KUBECONFIG_FILE" >&2
  fi
  local image cfg
  image=$(node_image)
  cfg=$(write_config "$image")
  log "kind create cluster --name $CLUSTER ${image:+--image $image} (config $cfg)"
  local t1=$SECONDS
  if ! run_logged "$KIND_LOGS/kind-create.log" "$KIND" create cluster --name "$CLUSTER" --config "$cfg" \
    --kubeconfig "$KUBECONFIG_FILE" --wait 0s --retain; then
    log "node container logs:"
    "$DOCKER" logs "$NODE" 2>&1 | tail -30 >&2 || true
    "$DOCKER" exec "$NODE" journalctl -u kubelet --no-pager 2>&1 | tail -30 >&2 || true
    die "kind create cluster failed (log $KIND_LOGS/kind-create.log; node kept: cluster.sh down removes it)"
  fi
  log "kind create cluster took $((SECONDS - t1))s"
  wait_ready "$UP_TIMEOUT" || die "cluster $CLUSTER is not ready after ${UP_TIMEOUT}s (cluster.sh down removes it)"
  log "cluster $CLUSTER ready in $((SECONDS - t0))s (kind create + readiness $((SECONDS - t1))s)"
  echo "export KUBECONFIG=$KUBECONFIG_FILE"
}

cmd_down() {
  tools
  if cluster_exists; then
    "$KIND" delete cluster --name "$CLUSTER" --kubeconfig "$KUBECONFIG_FILE" >&2
  else
    log "no cluster $CLUSTER"
  fi
}

cmd_load() {
  tools
  cluster_exists || die "no cluster $CLUSTER: run cluster.sh up"
  local t0=$SECONDS
  "$KIND" load docker-image --name "$CLUSTER" "$@" >&2
  log "loaded $* in $((SECONDS - t0))s"
}

cmd_env() {
  local bin
  bin=$("$ROOT/tests/scripts/k8s.sh" install)
  "$KIND_DIR/docker.sh" env | grep -v '^export PATH='
  echo "export KUBECONFIG=$KUBECONFIG_FILE"
  # shellcheck disable=SC2016
  echo "export PATH=\"$MILVUS_LIKE_CACHE/docker/client-bin:$bin:$KIND_GOBIN:\$PATH\""
}

cmd_smoke() {
  tools
  api_ready || die "cluster $CLUSTER is not up: run cluster.sh up"
  "$KIND_DIR/dep-images.sh" build
  eval "$(cmd_env)"
  "$KIND_DIR/smoke.sh"
}

case "${1:-}" in
  up) [ $# -eq 1 ] || usage; cmd_up ;;
  down) [ $# -eq 1 ] || usage; cmd_down ;;
  load) [ $# -ge 2 ] || usage; shift; cmd_load "$@" ;;
  env) [ $# -eq 1 ] || usage; cmd_env ;;
  smoke) [ $# -eq 1 ] || usage; cmd_smoke ;;
  *) usage ;;
esac
