#!/usr/bin/env bash
# Builds and runs a local Kubernetes control plane on 127.0.0.1 for tests (the
# operator's): etcd, kube-apiserver, kube-controller-manager, kube-scheduler and
# kwok, which plays the kubelets of N fake nodes, so pods are scheduled and reach
# Running with a pod IP, but no container ever runs. No Docker, no kind, no
# download other than the Go module proxy.
#
#   k8s.sh install        build (once) into $MILVUS_LIKE_CACHE/k8s-<version>/bin
#                         and print that bin directory
#   k8s.sh start DIR      start (or restart) the control plane of DIR on free
#                         ports; prints `export KUBECONFIG=DIR/kubeconfig` once
#                         the apiserver is ready and the nodes are Ready
#   k8s.sh stop DIR       stop every process of DIR (kill -9 after ~10 s each);
#                         keeps the data, certificates and logs
#   k8s.sh env DIR        print the KUBECONFIG export and the PATH addition for
#                         the bin directory: eval "$(tests/scripts/k8s.sh env DIR)"
#
# DIR holds one instance: pki/ (CA, serving and client certificates, the
# service-account signing key, admin-token), etcd-data/, kubeconfig (admin,
# client certificate, embedded data: works with kubectl, helm and kube-rs
# Config::from_custom_kubeconfig / KUBECONFIG), ports, kwok.yaml, nodes.yaml,
# <component>.pid and <component>.log per process, and server (the https URL of
# the apiserver, present while it runs). A DIR that held an instance is
# restarted with the same ports, certificates and etcd data.
#
# The bin directory holds kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl, etcd, kwok, helm, and the node's kubelet, kubeadm and
# kube-proxy (for the kind node image, tests/kind/). Use that kubectl, by path or through
# `env`: an older kubectl may already be on PATH.
#
# Environment: K8S_VERSION (default v1.37.2), KWOK_VERSION (v0.8.0),
# HELM_VERSION (v3.22.0), KWOK_NODES (number of fake nodes, default 3),
# K8S_START_TIMEOUT (seconds, default 120), K8S_STOP_TIMEOUT (default 10),
# K8S_BUILD_PARALLEL (go build -p, default 2).
#
# Versions and traps (checked on this machine, Go 1.26.8):
# - k8s.io/kubernetes v1.37.2 is the newest served version; its go.mod says
#   go 1.26.0, so it builds with the local toolchain (GOTOOLCHAIN=local).
# - go install refuses k8s.io/kubernetes (its go.mod replaces every k8s.io/*
#   staging module with ./staging/...): it is built from a wrapper module that
#   replaces each of them with its v0.<minor>.<patch> release, read from k/k's
#   go.mod. Without the version ldflags the binaries report v0.0.0 (and
#   version-dependent clients such as kwokctl pick wrong flags).
# - etcd: Debian's 3.4.23 is too old (the Kubernetes docs give 3.4.29/3.5.11 as
#   the minimum since 1.31, for health endpoints backported then; not tried
#   here), so etcd is built from the same
#   wrapper module at the go.etcd.io/etcd/server/v3 version k/k requires
#   (v3.7.0 for 1.37, also kubeadm's default there); it shares the compiled
#   grpc/protobuf/etcd client packages with the apiserver build.
# - kwok alone (not kwokctl) does nothing without Stage objects: its config file
#   must carry the node and pod stages that kwokctl embeds; install copies them
#   from the kwok module (kustomize/stage/...) into share/kwok-stages.
# - kwok is built with `go install` on its own module graph (its go.mod asks
#   for k8s.io v0.36 libraries; the wrapper's v0.37 replaces would override them).
# - helm: helm.sh/helm/v3 v3.22.0 uses client-go v0.37 (matches 1.37); without
#   the chartutil k8sVersion ldflags its default Capabilities.KubeVersion is
#   wrong, so they are set from helm's own go.mod.
# - The apiserver advertises 127.0.0.1, which Endpoints validation rejects
#   (loopback), so the "kubernetes" Service gets no endpoint reconciler
#   (--endpoint-reconciler-type=none); nothing in the cluster dials it anyway.
# - ServiceAccount admission: a Pod created before the controller-manager made
#   the namespace's "default" ServiceAccount is rejected, so start waits for
#   default/default too.
# - The apiserver gets a requestheader CA and a front-proxy client certificate
#   although nothing is aggregated: without them the controller-manager and the
#   scheduler log "missing content for CA bundle" errors forever.
# - After a CRD is Established, `kubectl explain` on it fails for ~1-2 s more
#   (the OpenAPI is published asynchronously): poll it.
# - Cold install measured here: ~20 min on 2 cores shared with Rust builds
#   (k8s + etcd 15 min, kwok 2.5, helm 2.7; nice -n 19, -p 2; linking the
#   apiserver needs a few GB of RAM). Everything is cached: a warm install runs no go
#   command at all (~0.03 s). start: ~6 s; stop: ~6 s.

set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$SCRIPT_DIR/common.sh"

K8S_VERSION="${K8S_VERSION:-v1.37.2}"
KWOK_VERSION="${KWOK_VERSION:-v0.8.0}"
HELM_VERSION="${HELM_VERSION:-v3.22.0}"
KWOK_NODES="${KWOK_NODES:-3}"
START_TIMEOUT="${K8S_START_TIMEOUT:-120}"
STOP_TIMEOUT="${K8S_STOP_TIMEOUT:-10}"
BUILD_PARALLEL="${K8S_BUILD_PARALLEL:-2}"
# Bump when the build recipe below changes, so cached binaries are rebuilt.
RECIPE=2

K8S_HOME="$MILVUS_LIKE_CACHE/k8s-$K8S_VERSION"
BIN="$K8S_HOME/bin"
STAGES="$K8S_HOME/share/kwok-stages"
# The last three are the node's (kind node image, tests/kind/): built in the same run,
# they share the compiled packages, so they add only their link time.
KUBE_CMDS=(kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kubeadm kube-proxy)
SERVICE_CIDR="10.96.0.0/16"
SERVICE_IP="10.96.0.1"
POD_CIDR="10.244.0.0/16"

usage() {
  cat >&2 <<'EOF'
usage: k8s.sh install
       k8s.sh start DIR
       k8s.sh stop DIR
       k8s.sh env DIR
EOF
  exit 2
}

# ---------------------------------------------------------------- install

# go_env: the environment of every go command below. Module downloads stay in
# our cache; the local toolchain only.
go_env() {
  export GOMODCACHE="$MILVUS_LIKE_CACHE/go-mod" GOTOOLCHAIN=local CGO_ENABLED=0 GOBIN="$BIN"
  export GOFLAGS="-modcacherw -buildvcs=false -p=$BUILD_PARALLEL"
}

# run_logged LOG CMD...: runs CMD (niced) with its output appended to LOG; on
# failure shows the end of LOG.
run_logged() {
  local logf=$1
  shift
  echo "+ $*" >>"$logf"
  if ! nice -n 19 "$@" >>"$logf" 2>&1; then
    tail -n 40 "$logf" >&2
    return 1
  fi
}

stamp_ok() { [ "$(cat "$1" 2>/dev/null)" = "$2" ]; }

# build_kube: kube-apiserver, kube-controller-manager, kube-scheduler, kubectl
# and etcd from a wrapper module in $K8S_HOME/src.
build_kube() {
  local stamp="$BIN/.kube.built" buildlog="$K8S_HOME/build-kube.log"
  local want="recipe=$RECIPE k8s=$K8S_VERSION"
  local all_there=1 c
  for c in "${KUBE_CMDS[@]}" etcd; do [ -x "$BIN/$c" ] || all_there=0; done
  if ((all_there)) && stamp_ok "$stamp" "$want"; then return 0; fi

  [[ $K8S_VERSION =~ ^v1\.([0-9]+)\.([0-9]+)$ ]] || die "K8S_VERSION must be v1.MINOR.PATCH, got $K8S_VERSION"
  local minor=${BASH_REMATCH[1]} patch=${BASH_REMATCH[2]}
  local staging="v0.$minor.$patch"
  rm -f "$stamp"
  : >"$buildlog"
  log "building Kubernetes $K8S_VERSION (kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, etcd): tens of minutes on 2 cores, log $buildlog"
  local t0=$SECONDS src="$K8S_HOME/src"
  (
    go_env
    local gomod
    gomod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" |
      python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])') ||
      die "cannot fetch k8s.io/kubernetes@$K8S_VERSION from the module proxy"
    # k/k's own requirement on etcd's server module (its integration tests use it).
    local etcd_version
    etcd_version=$(awk '$1 == "go.etcd.io/etcd/server/v3" { print $2; exit }' "$gomod")
    [ -n "$etcd_version" ] || die "no go.etcd.io/etcd/server/v3 in $gomod"
    rm -rf "$src"
    mkdir -p "$src"
    {
      echo "// Generated by tests/scripts/k8s.sh: builds Kubernetes $K8S_VERSION from the module proxy."
      echo "module milvus-like.local/k8s-tools"
      echo
      echo "go 1.26"
      echo
      echo "replace ("
      # Every `k8s.io/X => ./staging/src/k8s.io/X` of k/k's go.mod.
      awk -v v="$staging" '$2 == "=>" && $3 ~ /^\.\/staging\// { printf "\t%s => %s %s\n", $1, $1, v }' "$gomod"
      echo ")"
    } >"$src/go.mod"
    grep -q '=> k8s.io/api ' "$src/go.mod" || die "found no staging replaces in $gomod"
    local pkgs=() c
    for c in "${KUBE_CMDS[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$c@$K8S_VERSION"); done
    cd "$src"
    run_logged "$buildlog" go get -tool "${pkgs[@]}" "go.etcd.io/etcd/server/v3@$etcd_version" ||
      die "go get in $src failed (log: $buildlog)"

    local ld="-s -w" key val
    for key in gitVersion gitMajor gitMinor gitTreeState buildDate; do
      case $key in
        gitVersion) val=$K8S_VERSION ;;
        gitMajor) val=1 ;;
        gitMinor) val=$minor ;;
        gitTreeState) val=clean ;;
        buildDate) val=$(date -u +%Y-%m-%dT%H:%M:%SZ) ;;
      esac
      ld+=" -X k8s.io/client-go/pkg/version.$key=$val -X k8s.io/component-base/version.$key=$val"
    done
    # The tags of k/k's hack/lib/golang.sh for release builds.
    local tags=selinux,notest,grpcnotrace out="$K8S_HOME/build-out"
    rm -rf "$out"
    mkdir -p "$out"
    pkgs=()
    for c in "${KUBE_CMDS[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done
    run_logged "$buildlog" go build -trimpath -tags "$tags" -ldflags "$ld" -o "$out/" "${pkgs[@]}" ||
      die "building Kubernetes failed after $((SECONDS - t0))s (log: $buildlog)"
    # Same tags: reuses the compiled packages shared with the apiserver.
    run_logged "$buildlog" go build -trimpath -tags "$tags" -ldflags "-s -w" -o "$out/etcd" go.etcd.io/etcd/server/v3 ||
      die "building etcd $etcd_version failed (log: $buildlog)"
    mkdir -p "$BIN"
    for c in "${KUBE_CMDS[@]}" etcd; do mv -f "$out/$c" "$BIN/$c"; done
    rmdir "$out"
    echo "$etcd_version" >"$K8S_HOME/etcd-version"
  )
  echo "$want" >"$stamp"
  log "built Kubernetes $K8S_VERSION and etcd $(cat "$K8S_HOME/etcd-version") in $((SECONDS - t0))s"
}

# build_kwok: the kwok controller, and the default stages kwokctl would give it.
build_kwok() {
  local stamp="$BIN/.kwok.built" buildlog="$K8S_HOME/build-kwok.log"
  local want="recipe=$RECIPE kwok=$KWOK_VERSION"
  if [ -x "$BIN/kwok" ] && [ -s "$STAGES/pod-ready.yaml" ] && stamp_ok "$stamp" "$want"; then
    return 0
  fi
  rm -f "$stamp"
  : >"$buildlog"
  log "building kwok $KWOK_VERSION (log $buildlog)"
  local t0=$SECONDS
  (
    go_env
    mkdir -p "$BIN"
    # go install with a version runs outside any module: no wrapper needed.
    cd /
    run_logged "$buildlog" go install -trimpath -ldflags "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=${KWOK_VERSION#v}" \
      "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" || die "building kwok failed (log: $buildlog)"
    local moddir
    moddir=$(go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" |
      python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
    rm -rf "$STAGES"
    mkdir -p "$STAGES"
    # What kwokctl embeds (pkg/kwokctl/runtime/cluster.go: node fast init,
    # heartbeat with lease, pod fast ready/complete/delete).
    cp "$moddir/kustomize/stage/node/fast/node-initialize.yaml" \
      "$moddir/kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml" \
      "$moddir/kustomize/stage/pod/fast/pod-ready.yaml" \
      "$moddir/kustomize/stage/pod/fast/pod-complete.yaml" \
      "$moddir/kustomize/stage/pod/fast/pod-delete.yaml" "$STAGES/"
    chmod u+w "$STAGES"/*
  )
  echo "$want" >"$stamp"
  log "built kwok $KWOK_VERSION in $((SECONDS - t0))s"
}

build_helm() {
  local stamp="$BIN/.helm.built" buildlog="$K8S_HOME/build-helm.log"
  local want="recipe=$RECIPE helm=$HELM_VERSION"
  if [ -x "$BIN/helm" ] && stamp_ok "$stamp" "$want"; then return 0; fi
  rm -f "$stamp"
  : >"$buildlog"
  log "building helm $HELM_VERSION (log $buildlog)"
  local t0=$SECONDS
  (
    go_env
    mkdir -p "$BIN"
    cd /
    local gomod kmajor kminor
    gomod=$(go mod download -json "helm.sh/helm/v3@$HELM_VERSION" |
      python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])') ||
      die "cannot fetch helm.sh/helm/v3@$HELM_VERSION from the module proxy"
    # As helm's Makefile: the default kube version is client-go's v0.X -> 1.X.
    kminor=$(awk '$1 == "k8s.io/client-go" { split($2, v, "."); print v[2]; exit }' "$gomod")
    kmajor=1
    local ld="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
    ld+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
    ld+=" -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=$kmajor -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$kminor"
    ld+=" -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=$kmajor -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$kminor"
    run_logged "$buildlog" go install -trimpath -ldflags "$ld" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" ||
      die "building helm failed (log: $buildlog)"
  )
  echo "$want" >"$stamp"
  log "built helm $HELM_VERSION in $((SECONDS - t0))s"
}

install_all() {
  if stamp_ok "$BIN/.kube.built" "recipe=$RECIPE k8s=$K8S_VERSION" &&
    stamp_ok "$BIN/.kwok.built" "recipe=$RECIPE kwok=$KWOK_VERSION" &&
    stamp_ok "$BIN/.helm.built" "recipe=$RECIPE helm=$HELM_VERSION" &&
    [ -x "$BIN/kube-apiserver" ] && [ -x "$BIN/etcd" ] && [ -x "$BIN/kwok" ] && [ -x "$BIN/helm" ]; then
    return 0
  fi
  command -v go >/dev/null || die "go is not installed (Kubernetes is built from the Go module proxy)"
  mkdir -p "$K8S_HOME"
  # Serialize concurrent installs. fd 8 is closed before anything long-lived starts.
  exec 8>"$K8S_HOME/.install.lock"
  flock 8
  # No `||` around these: it would switch off set -e inside them. A failure
  # exits the script, which releases the lock.
  build_kube
  build_kwok
  build_helm
  exec 8>&-
}

# ---------------------------------------------------------------- instance helpers

# component_pid DIR NAME: prints the pid of the live NAME process of DIR (and
# succeeds), or fails. A pid file whose process is gone or is not ours is removed.
component_pid() {
  local dir=$1 name=$2 pid cmd
  [ -f "$dir/$name.pid" ] || return 1
  pid=$(cat "$dir/$name.pid")
  if [[ "$pid" =~ ^[0-9]+$ ]] && [ -r "/proc/$pid/cmdline" ]; then
    cmd=$(proc_cmdline "$pid")
    if [[ "$cmd" == *"/$name "*"$dir/"* ]]; then
      echo "$pid"
      return 0
    fi
  fi
  rm -f "$dir/$name.pid"
  return 1
}

# launch DIR NAME CMD...: starts CMD in its own session, output appended to
# DIR/NAME.log; the inner bash writes its pid to DIR/NAME.pid and execs CMD.
launch() {
  local dir=$1 name=$2
  shift 2
  echo "=== $(date '+%F %T') start ===" >>"$dir/$name.log"
  rm -f "$dir/$name.pid"
  # shellcheck disable=SC2016
  setsid nohup bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$dir/$name.pid" "$@" \
    </dev/null >>"$dir/$name.log" 2>&1 &
  local t0=$SECONDS
  while [ ! -s "$dir/$name.pid" ] && ((SECONDS - t0 < 5)); do sleep 0.05; done
  [ -s "$dir/$name.pid" ] || die "$name did not start (log: $dir/$name.log)"
  log "started $name (pid $(cat "$dir/$name.pid"))"
}

print_log() {
  log "last 30 lines of $1:"
  tail -n 30 "$1" >&2 2>/dev/null || true
}

# fail DIR MESSAGE [NAME]: shows the end of NAME's log, stops the whole
# instance (a half-started control plane helps nobody), dies.
fail() {
  local dir=$1 msg=$2 name=${3:-}
  [ -n "$name" ] && print_log "$dir/$name.log"
  cmd_stop "$dir" || true
  die "$msg"
}

# wait_until DIR NAME SECONDS CMD...: polls CMD until it succeeds; fails the
# start if NAME's process exits or the time runs out.
wait_until() {
  local dir=$1 name=$2 secs=$3 deadline=$((SECONDS + $3))
  shift 3
  until "$@" >/dev/null 2>&1; do
    component_pid "$dir" "$name" >/dev/null || fail "$dir" "$name in $dir exited during startup" "$name"
    ((SECONDS < deadline)) || fail "$dir" "$name in $dir not ready after ${secs}s" "$name"
    sleep 0.2
  done
}

# pki DIR: CA, certificates and keys in DIR/pki (once; kept across restarts).
# EC P-256 certificates with the extensions strict verifiers (rustls/webpki,
# Go) want: CA with critical basicConstraints and keyCertSign, leaves with
# SANs, EKU and CA:FALSE.
pki() {
  local p=$1/pki
  [ -s "$p/admin.crt" ] && [ -s "$p/front-proxy-client.crt" ] && [ -s "$p/sa.pub" ] &&
    [ -s "$p/tokens.csv" ] && return 0
  mkdir -p "$p"
  (
    cd "$p"
    umask 077
    cat >openssl.cnf <<EOF
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign, digitalSignature
subjectKeyIdentifier = hash
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = DNS:localhost, DNS:kubernetes, DNS:kubernetes.default, DNS:kubernetes.default.svc, DNS:kubernetes.default.svc.cluster.local, IP:127.0.0.1, IP:$SERVICE_IP
[client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF
    ec_key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
    ec_key ca.key
    openssl req -config openssl.cnf -x509 -new -key ca.key -sha256 -days 3650 \
      -subj "/CN=milvus-like-test-ca" -extensions ca -out ca.crt
    leaf() { # NAME SUBJECT EXTENSIONS
      ec_key "$1.key"
      openssl req -config openssl.cnf -new -key "$1.key" -subj "$2" -out "$1.csr"
      openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -sha256 \
        -days 3650 -extfile openssl.cnf -extensions "$3" -out "$1.crt" 2>/dev/null
      rm -f "$1.csr"
    }
    leaf apiserver "/CN=kube-apiserver" server
    leaf admin "/O=system:masters/CN=kubernetes-admin" client
    # The apiserver's client certificate towards aggregated API servers
    # (requestheader authentication); without it the controller-manager and the
    # scheduler log "missing content for CA bundle" every few seconds.
    leaf front-proxy-client "/CN=front-proxy-client" client
    # Service-account token signing key (RSA, as the apiserver's default RS256).
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out sa.key 2>/dev/null
    openssl pkey -in sa.key -pubout -out sa.pub
    # A static bearer token with cluster-admin rights, for curl and raw HTTP
    # clients (the kubeconfig uses the client certificate).
    python3 -c 'import secrets; print(secrets.token_hex(16))' >admin-token
    echo "$(cat admin-token),kubernetes-admin-token,admin-token,\"system:masters\"" >tokens.csv
  )
  log "generated the CA, certificates and keys in $p"
}

write_kubeconfig() {
  local dir=$1 port=$2 p=$1/pki
  local tmp="$dir/kubeconfig.tmp"
  cat >"$tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: milvus-like
  cluster:
    server: https://127.0.0.1:$port
    certificate-authority-data: $(base64 -w0 <"$p/ca.crt")
users:
- name: kubernetes-admin
  user:
    client-certificate-data: $(base64 -w0 <"$p/admin.crt")
    client-key-data: $(base64 -w0 <"$p/admin.key")
contexts:
- name: milvus-like
  context:
    cluster: milvus-like
    user: kubernetes-admin
    namespace: default
current-context: milvus-like
EOF
  chmod 600 "$tmp"
  mv -f "$tmp" "$dir/kubeconfig"
}

write_kwok_config() {
  local dir=$1 f first=1
  {
    echo "# Generated by tests/scripts/k8s.sh: kwokctl's default stages (kwok $KWOK_VERSION)."
    for f in node-initialize node-heartbeat-with-lease pod-ready pod-complete pod-delete; do
      ((first)) || echo "---"
      first=0
      cat "$STAGES/$f.yaml"
    done
  } >"$dir/kwok.yaml"
}

write_nodes() {
  local dir=$1 i
  [[ "$KWOK_NODES" =~ ^[0-9]+$ ]] || die "KWOK_NODES must be a number, got '$KWOK_NODES'"
  : >"$dir/nodes.yaml"
  for ((i = 0; i < KWOK_NODES; i++)); do
    cat >>"$dir/nodes.yaml" <<EOF
---
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-$i
  annotations:
    node.alpha.kubernetes.io/ttl: "0"
    kwok.x-k8s.io/node: fake
  labels:
    beta.kubernetes.io/arch: amd64
    beta.kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    kubernetes.io/hostname: kwok-node-$i
    kubernetes.io/os: linux
    kubernetes.io/role: agent
    node-role.kubernetes.io/agent: ""
    type: kwok
spec: {}
status:
  allocatable:
    cpu: "32"
    memory: 256Gi
    pods: "110"
  capacity:
    cpu: "32"
    memory: 256Gi
    pods: "110"
  nodeInfo:
    architecture: amd64
    kubeProxyVersion: fake
    kubeletVersion: fake
    operatingSystem: linux
  phase: Running
EOF
  done
}

# ports DIR: reads DIR/ports, picking free ports for the ones missing.
ports() {
  local dir=$1 name port used=" "
  # shellcheck disable=SC1091
  [ -f "$dir/ports" ] && source "$dir/ports"
  for name in ETCD_PORT ETCD_PEER_PORT APISERVER_PORT KCM_PORT SCHEDULER_PORT KWOK_PORT; do
    port=${!name:-}
    if [ -z "$port" ]; then
      port=$(free_port)
      while [[ "$used" == *" $port "* ]]; do port=$(free_port); done
      printf -v "$name" '%s' "$port"
    fi
    used+="$port "
  done
  {
    for name in ETCD_PORT ETCD_PEER_PORT APISERVER_PORT KCM_PORT SCHEDULER_PORT KWOK_PORT; do
      echo "$name=${!name}"
    done
  } >"$dir/ports"
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# start_component DIR NAME PORT CMD...: starts NAME unless it already runs.
start_component() {
  local dir=$1 name=$2 port=$3 pid
  shift 3
  if pid=$(component_pid "$dir" "$name"); then
    log "$name already running in $dir (pid $pid)"
    return 0
  fi
  port_busy "$port" && fail "$dir" "port $port of $name (from $dir/ports) is in use by another process"
  launch "$dir" "$name" "$@"
}

# ---------------------------------------------------------------- commands

cmd_start() {
  local dir
  dir=$(abs_dir "$1")
  install_all
  local ETCD_PORT ETCD_PEER_PORT APISERVER_PORT KCM_PORT SCHEDULER_PORT KWOK_PORT
  ports "$dir"
  pki "$dir"
  write_kubeconfig "$dir" "$APISERVER_PORT"
  write_kwok_config "$dir"
  write_nodes "$dir"
  local p=$dir/pki kc=$dir/kubeconfig t0=$SECONDS
  local kubectl=("$BIN/kubectl" --kubeconfig "$kc")
  local api="https://127.0.0.1:$APISERVER_PORT"

  start_component "$dir" etcd "$ETCD_PORT" "$BIN/etcd" --name=node0 \
    --data-dir="$dir/etcd-data" \
    --listen-client-urls="http://127.0.0.1:$ETCD_PORT" \
    --advertise-client-urls="http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster="node0=http://127.0.0.1:$ETCD_PEER_PORT" \
    --auto-compaction-retention=1 --quota-backend-bytes=2147483648 \
    --unsafe-no-fsync --log-level=warn
  wait_until "$dir" etcd "$START_TIMEOUT" curl -fsS -m 2 "http://127.0.0.1:$ETCD_PORT/health"

  start_component "$dir" kube-apiserver "$APISERVER_PORT" "$BIN/kube-apiserver" \
    --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
    --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$APISERVER_PORT" \
    --cert-dir="$p" \
    --tls-cert-file="$p/apiserver.crt" --tls-private-key-file="$p/apiserver.key" \
    --client-ca-file="$p/ca.crt" --token-auth-file="$p/tokens.csv" \
    --requestheader-client-ca-file="$p/ca.crt" --requestheader-allowed-names=front-proxy-client \
    --requestheader-username-headers=X-Remote-User --requestheader-group-headers=X-Remote-Group \
    --requestheader-extra-headers-prefix=X-Remote-Extra- \
    --proxy-client-cert-file="$p/front-proxy-client.crt" --proxy-client-key-file="$p/front-proxy-client.key" \
    --service-account-key-file="$p/sa.pub" --service-account-signing-key-file="$p/sa.key" \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-cluster-ip-range="$SERVICE_CIDR" \
    --authorization-mode=Node,RBAC --allow-privileged=true \
    --endpoint-reconciler-type=none \
    --enable-priority-and-fairness=false
  wait_until "$dir" kube-apiserver "$START_TIMEOUT" \
    curl -fsS -m 3 --cacert "$p/ca.crt" --cert "$p/admin.crt" --key "$p/admin.key" "$api/readyz"
  echo "$api" >"$dir/server"

  start_component "$dir" kube-controller-manager "$KCM_PORT" "$BIN/kube-controller-manager" \
    --kubeconfig="$kc" --authentication-kubeconfig="$kc" --authorization-kubeconfig="$kc" \
    --bind-address=127.0.0.1 --secure-port="$KCM_PORT" --cert-dir="$p" \
    --leader-elect=false \
    --service-account-private-key-file="$p/sa.key" --root-ca-file="$p/ca.crt" \
    --cluster-signing-cert-file="$p/ca.crt" --cluster-signing-key-file="$p/ca.key" \
    --kube-api-qps=100 --kube-api-burst=200
  start_component "$dir" kube-scheduler "$SCHEDULER_PORT" "$BIN/kube-scheduler" \
    --kubeconfig="$kc" --authentication-kubeconfig="$kc" --authorization-kubeconfig="$kc" \
    --bind-address=127.0.0.1 --secure-port="$SCHEDULER_PORT" --cert-dir="$p" \
    --leader-elect=false
  start_component "$dir" kwok "$KWOK_PORT" "$BIN/kwok" \
    --kubeconfig="$kc" --config="$dir/kwok.yaml" \
    --manage-all-nodes=true \
    --tls-cert-file="$p/apiserver.crt" --tls-private-key-file="$p/apiserver.key" \
    --node-ip=127.0.0.1 --node-port="$KWOK_PORT" --server-address="127.0.0.1:$KWOK_PORT" \
    --node-lease-duration-seconds=40 --cidr="$POD_CIDR"

  local left=$((START_TIMEOUT - (SECONDS - t0)))
  ((left > 10)) || left=10
  wait_until "$dir" kube-controller-manager "$left" \
    curl -fsS -m 2 -k "https://127.0.0.1:$KCM_PORT/healthz"
  wait_until "$dir" kube-scheduler "$left" \
    curl -fsS -m 2 -k "https://127.0.0.1:$SCHEDULER_PORT/healthz"
  if ((KWOK_NODES > 0)); then
    "${kubectl[@]}" apply -f "$dir/nodes.yaml" >/dev/null 2>"$dir/kubectl.err" ||
      fail "$dir" "creating the nodes failed: $(cat "$dir/kubectl.err")"
    left=$((START_TIMEOUT - (SECONDS - t0)))
    ((left > 10)) || left=10
    wait_until "$dir" kwok "$left" "${kubectl[@]}" wait --for=condition=Ready node \
      -l type=kwok --timeout=2s
  fi
  # Pods are refused until the namespace's default ServiceAccount exists.
  wait_until "$dir" kube-controller-manager "$left" "${kubectl[@]}" get serviceaccount default -n default
  rm -f "$dir/kubectl.err"
  log "Kubernetes $K8S_VERSION ready at $api (KWOK_NODES=$KWOK_NODES) in $((SECONDS - t0))s"
  echo "export KUBECONFIG=$kc"
}

# stop_component DIR NAME: stops NAME of DIR if it runs.
stop_component() {
  local dir=$1 name=$2 pid
  if pid=$(component_pid "$dir" "$name"); then
    # stop_instance removes DIR/pid (we have none) and DIR/<address>: our pid file.
    stop_instance "$name" "$pid" "$dir" "$STOP_TIMEOUT" "$name.pid"
  fi
}

cmd_stop() {
  local dir name
  dir=$(abs_dir "$1")
  # The apiserver's clients first, together (each takes ~2 s to shut down),
  # then the apiserver, then etcd.
  # Wait for these subshells only: a bare `wait` would also wait for the
  # components a failed start launched from this same shell.
  local waits=()
  for name in kwok kube-scheduler kube-controller-manager; do
    stop_component "$dir" "$name" &
    waits+=($!)
  done
  wait "${waits[@]}"
  stop_component "$dir" kube-apiserver
  rm -f "$dir/server"
  stop_component "$dir" etcd
  log "stopped the Kubernetes control plane in $dir"
}

cmd_env() {
  local dir
  dir=$(abs_dir "$1")
  echo "export KUBECONFIG=$dir/kubeconfig"
  # shellcheck disable=SC2016
  echo "export PATH=\"$BIN:\$PATH\""
}

case "${1:-}" in
  install)
    [ $# -eq 1 ] || usage
    install_all
    echo "$BIN"
    ;;
  start)
    [ $# -eq 2 ] || usage
    cmd_start "$2"
    ;;
  stop)
    [ $# -eq 2 ] || usage
    cmd_stop "$2"
    ;;
  env)
    [ $# -eq 2 ] || usage
    cmd_env "$2"
    ;;
  *) usage ;;
esac
