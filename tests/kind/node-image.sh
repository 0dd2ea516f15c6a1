#!/usr/bin/env bash
# A kind node image made from local parts only (no registry, no release
# download): what `kind build node-image` would make, which cannot run offline
# (it fetches etcd, coredns, pause, kindnetd and local-path images with
# `ctr content fetch` inside its build container).
#
#   node-image.sh [build]   build (once) and print the image tag,
#                           milvus-like/kind-node:<k8s version>-r<recipe>
#   node-image.sh tag       print the tag only
#
# What goes in (versions below; everything cached, see "Cache"):
# - A Debian bookworm root (the local debian:bookworm-slim of base-images.sh)
#   with systemd, containerd 1.6 and runc from Debian, iptables, nftables,
#   conntrack, ... (kind's base Dockerfile package list; nfs-common and
#   open-iscsi left out), plus kind's base files from the kind module in the Go
#   module cache (entrypoint, containerd config, kubelet units), and kind's
#   clean-up/enable steps. containerd, ctr and the shim are linked into
#   /usr/local/bin where kind's units look.
# - containerd's CRI config: kind's, with `restrict_oom_score_adj = true`
#   (this machine's bounding set lacks CAP_SYS_RESOURCE: without it every pod
#   sandbox fails with "can't get final child's PID") and the sandbox image of
#   kubeadm's list.
# - CNI: Debian's containernetworking-plugins (/usr/lib/cni, linked to
#   /opt/cni/bin) and a static bridge + host-local config for 10.244.0.0/24:
#   kindnetd is not to be had offline, so clusters use
#   `networking.disableDefaultCNI: true` and one node (more would need routes).
# - Unreachable routes for the Service range 10.96.0.0/16 and the pod range
#   10.244.0.0/16 (a oneshot unit before containerd and kubelet): seen here,
#   the local-path provisioner started before kube-proxy's rules and its
#   connection to 10.96.0.1:443 went out through the default route, off the
#   machine, to a TLS-inspecting egress proxy ("x509: cannot validate
#   certificate for 10.96.0.1 because it doesn't contain any IP SANs").
# - kubelet, kubeadm, kubectl, kube-proxy from tests/scripts/k8s.sh install,
#   crictl (`go install sigs.k8s.io/cri-tools/cmd/crictl`), /kind/version.
# - The images kubeadm wants (`kubeadm config images list`), made here and
#   imported into the node's containerd with the pinned label, as kind does:
#   kube-apiserver, kube-controller-manager, kube-scheduler (the static
#   binaries on debian:bookworm-slim), kube-proxy (+ iptables, nftables,
#   conntrack, with the iptables-wrappers mode detection), etcd (k8s.sh's
#   3.7.0 build), coredns (`go install github.com/coredns/coredns`,
#   ENTRYPOINT ["/coredns"]), pause (kubernetes' build/pause/linux/pause.c,
#   `gcc -static`). Plus kind's default storage: its manifest
#   (/kind/manifests/default-storage.yaml, taken from the kind module) with
#   local-path-provisioner built from its Go module and a helper image with a
#   shell, under kind's tags. Without it kind falls back to a host-path
#   StorageClass whose directories are 0750 root and ignore fsGroup (a
#   non-root pod cannot write its PVC).
#
# Cache: Go binaries in $MILVUS_LIKE_CACHE/kind/bin, logs in
# $MILVUS_LIKE_CACHE/kind/logs, the images in the Docker engine of docker.sh
# (label milvus-like.recipe = versions + RECIPE: a current image is not
# rebuilt; the docker build cache makes a rebuild after a recipe change quick).
#
# Environment: K8S_VERSION (v1.37.2), CRICTL_VERSION (v1.37.0), COREDNS_VERSION
# (v1.14.6, kubeadm 1.37's), LOCAL_PATH_VERSION (v0.0.30), KIND_VERSION
# (v0.33.0: the module the base files and the storage manifest come from).
#
# Traps:
# - The control-plane images must carry exactly kubeadm's tags: any other makes
#   containerd go to the registry.
# - Debian's containerd is 1.6: kubelet 1.37 logs that the CRI lacks
#   RuntimeConfig and falls back to its configured cgroup driver (systemd, as
#   kind configures it and the CRI config says).
# - The import runs in a privileged container of the half-made image (its
#   containerd started by hand), which is then committed: docker commit keeps
#   the run's Entrypoint/Cmd unless --change resets both.
#
# Measured here (2 cores, shared with a Kubernetes and a cargo build): go
# install crictl 114 s, coredns 382 s, local-path-provisioner 228 s (once,
# cached); pause < 1 s; then the images 28 s, the node base 44 s (apt), the
# import into containerd + commit 26 s: 82 s. A rebuild through docker's build
# cache (KIND_REBUILD=1, base images included) 71 s; after a RECIPE bump that
# changed one late step 31 s; a current image is found in 0.4 s. Image: 1062 MB.
# The Kubernetes binaries come from k8s.sh (its cold build: ~25 min).

set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

K8S_VERSION="${K8S_VERSION:-v1.37.2}"
CRICTL_VERSION="${CRICTL_VERSION:-v1.37.0}"
COREDNS_VERSION="${COREDNS_VERSION:-v1.14.6}"
LOCAL_PATH_VERSION="${LOCAL_PATH_VERSION:-v0.0.30}"
KIND_VERSION="${KIND_VERSION:-v0.33.0}"
# Bump when the recipe below changes, so the image is built again.
RECIPE=2
TAG="milvus-like/kind-node:$K8S_VERSION-r$RECIPE"
WANT="node-image=$RECIPE k8s=$K8S_VERSION crictl=$CRICTL_VERSION coredns=$COREDNS_VERSION local-path=$LOCAL_PATH_VERSION kind=$KIND_VERSION"
POD_SUBNET="10.244.0.0/24"
# kind's default ranges (cluster.sh keeps them): no packet to them may take the
# node's default route, which leads off this machine.
POD_CIDR="10.244.0.0/16"
SERVICE_CIDR="10.96.0.0/16"

# Packages of kind's base image (less nfs-common, open-iscsi), plus what kind
# builds itself (containerd, runc, CNI plugins) and what a systemd container
# wants (systemd-sysv, dbus).
NODE_PACKAGES="systemd systemd-sysv dbus conntrack iptables nftables iproute2 ethtool util-linux
  mount kmod libseccomp2 pigz fuse-overlayfs e2fsprogs bash ca-certificates curl jq procps
  containerd runc containernetworking-plugins"

# ---------------------------------------------------------------- parts

# pause_bin OUT: kubernetes' pause.c of $K8S_VERSION, static.
pause_bin() {
  local out=$1 zip
  zip="$MILVUS_LIKE_CACHE/go-mod/cache/download/k8s.io/kubernetes/@v/$K8S_VERSION.zip"
  [ -f "$zip" ] || die "no $zip (tests/scripts/k8s.sh install downloads it)"
  command -v gcc >/dev/null || apt_install gcc libc6-dev
  unzip -p "$zip" "k8s.io/kubernetes@$K8S_VERSION/build/pause/linux/pause.c" >"$out.c"
  gcc -Os -Wall -Werror -static -DVERSION="$PAUSE_VERSION-milvus-like" -o "$out" "$out.c"
  strip "$out"
  rm -f "$out.c"
}

# storage_manifest KIND_MODDIR: kind's default-storage manifest, with the
# image tags of kind's Go source; sets STORAGE_IMAGES (provisioner, helper).
storage_manifest() {
  python3 - "$1/pkg/build/nodeimage/const_storage.go" <<'PY'
import re, sys
src = open(sys.argv[1]).read()
consts = dict(re.findall(r'const (\w+Image) = "([^"]+)"', src))
body = re.search(r'const defaultStorageManifest = `(.*?)`\s*$', src, re.S).group(1)
body = re.sub(r'` \+ (\w+) \+ `', lambda m: consts[m.group(1)], body)
print("# images: %s %s" % (consts["storageProvisionerImage"], consts["storageHelperImage"]))
print(body.strip())
PY
}

# iptables_wrapper: kubernetes-sigs/iptables-wrappers' idea in a few lines:
# on the first call, pick the backend (legacy or nft) that already holds more
# rules in this network namespace (the node's: kube-proxy runs there), switch
# the alternatives to it, then run the command.
iptables_wrapper() {
  cat <<'EOF'
#!/bin/sh
# Picks iptables-legacy or iptables-nft like kubernetes-sigs/iptables-wrappers,
# once, then replaces itself by the real command.
set -e
legacy=$( (iptables-legacy-save || true; ip6tables-legacy-save || true) 2>/dev/null | grep -c '^-' || true)
nft=$( (timeout 5 sh -c "iptables-nft-save; ip6tables-nft-save" || true) 2>/dev/null | grep -c '^-' || true)
mode=nft
[ "${legacy:-0}" -gt "${nft:-0}" ] && mode=legacy
for t in iptables ip6tables; do
  update-alternatives --set "$t" "/usr/sbin/$t-$mode" >/dev/null
done
for c in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do
  rm -f "/usr/local/sbin/$c"
done
exec "$(basename "$0")" "$@"
EOF
}

# build_images DIR BIN: the images kubeadm and kind's storage want, each from a
# tiny context under DIR; writes their tags to DIR/images.txt.
build_images() {
  local dir=$1 bin=$2 img
  local images=()
  mapfile -t images < <("$bin/kubeadm" config images list --kubernetes-version "$K8S_VERSION" 2>/dev/null)
  ((${#images[@]} >= 6)) || die "kubeadm config images list printed: ${images[*]}"
  local base=docker.io/library/debian:bookworm-slim label="milvus-like.recipe=$WANT"
  for img in "${images[@]}"; do
    local name=${img##*/} ctx
    name=${name%%:*}
    ctx="$dir/img-$name"
    mkdir -p "$ctx"
    case $name in
      kube-apiserver | kube-controller-manager | kube-scheduler)
        ln -f "$bin/$name" "$ctx/$name"
        printf 'FROM %s\nCOPY %s /usr/local/bin/%s\nLABEL %s\n' "$base" "$name" "$name" "$label" >"$ctx/Dockerfile"
        ;;
      kube-proxy)
        ln -f "$bin/kube-proxy" "$ctx/kube-proxy"
        iptables_wrapper >"$ctx/iptables-wrapper"
        chmod 0755 "$ctx/iptables-wrapper"
        cat >"$ctx/Dockerfile" <<EOF
FROM $base
RUN apt-get update \\
 && apt-get install -y --no-install-recommends iptables nftables conntrack ipset kmod \\
 && rm -rf /var/lib/apt/lists/*
COPY iptables-wrapper /usr/sbin/iptables-wrapper
RUN for c in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do \\
      ln -s /usr/sbin/iptables-wrapper /usr/local/sbin/\$c; done
COPY kube-proxy /usr/local/bin/kube-proxy
LABEL $label
EOF
        ;;
      etcd)
        ln -f "$bin/etcd" "$ctx/etcd"
        printf 'FROM %s\nCOPY etcd /usr/local/bin/etcd\nLABEL %s\n' "$base" "$label" >"$ctx/Dockerfile"
        ;;
      coredns)
        ln -f "$COREDNS_BIN" "$ctx/coredns"
        printf 'FROM %s\nCOPY coredns /coredns\nEXPOSE 53 53/udp\nENTRYPOINT ["/coredns"]\nLABEL %s\n' \
          "$base" "$label" >"$ctx/Dockerfile"
        ;;
      pause)
        PAUSE_VERSION=${img##*:}
        pause_bin "$ctx/pause"
        printf 'FROM scratch\nCOPY pause /pause\nUSER 65535:65535\nENTRYPOINT ["/pause"]\nLABEL %s\n' \
          "$label" >"$ctx/Dockerfile"
        ;;
      *) die "no recipe for kubeadm's image $img" ;;
    esac
    run_logged "$KIND_LOGS/node-image.log" "$DOCKER" build -t "$img" "$ctx" || die "building $img failed"
    echo "$img" >>"$dir/images.txt"
  done
  # kind's default storage.
  ctx="$dir/img-local-path-provisioner"
  mkdir -p "$ctx"
  ln -f "$LOCAL_PATH_BIN" "$ctx/local-path-provisioner"
  printf 'FROM %s\nCOPY local-path-provisioner /usr/bin/local-path-provisioner\nLABEL %s\n' "$base" "$label" >"$ctx/Dockerfile"
  run_logged "$KIND_LOGS/node-image.log" "$DOCKER" build -t "$STORAGE_PROVISIONER_IMAGE" "$ctx" ||
    die "building $STORAGE_PROVISIONER_IMAGE failed"
  echo "$STORAGE_PROVISIONER_IMAGE" >>"$dir/images.txt"
  ctx="$dir/img-local-path-helper"
  mkdir -p "$ctx"
  printf 'FROM %s\nLABEL %s\n' "$base" "$label" >"$ctx/Dockerfile"
  run_logged "$KIND_LOGS/node-image.log" "$DOCKER" build -t "$STORAGE_HELPER_IMAGE" "$ctx" ||
    die "building $STORAGE_HELPER_IMAGE failed"
  echo "$STORAGE_HELPER_IMAGE" >>"$dir/images.txt"
}

# node_base DIR BIN KIND_MODDIR SANDBOX_IMAGE: the node image before the
# image import; prints its tag.
node_base() {
  local dir=$1 bin=$2 kmod=$3 sandbox=$4 ctx="$1/node"
  local base_tag="milvus-like/kind-node-base:$K8S_VERSION-r$RECIPE"
  mkdir -p "$ctx/bin"
  cp -r "$kmod/images/base/files" "$ctx/files"
  # kind's Dockerfile: scripts 0755, everything else 0644 (COPY keeps modes;
  # docker 20.10's Dockerfile frontend has no COPY --chmod).
  chmod -R u+w "$ctx/files"
  find "$ctx/files" -type f -exec chmod 0644 {} +
  chmod 0755 "$ctx/files/usr/local/bin/"* "$ctx/files/kind/bin/"*
  local c
  for c in kubelet kubeadm kubectl kube-proxy; do ln -f "$bin/$c" "$ctx/bin/$c"; done
  ln -f "$CRICTL_BIN" "$ctx/bin/crictl"
  # containerd: kind's CRI config, sandbox image from kubeadm, oom_score_adj
  # restricted (no CAP_SYS_RESOURCE here).
  sed -e "s|sandbox_image = .*|sandbox_image = \"$sandbox\"|" \
    -e 's/restrict_oom_score_adj = false/restrict_oom_score_adj = true/' \
    "$ctx/files/etc/containerd/config.toml" >"$ctx/containerd-config.toml"
  grep -q 'restrict_oom_score_adj = true' "$ctx/containerd-config.toml" || die "kind's containerd config changed"
  cat >"$ctx/10-bridge.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "milvus-like-bridge",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cni0",
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$POD_SUBNET"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
  storage_manifest "$kmod" >"$ctx/default-storage.yaml"
  cat >"$ctx/milvus-like-cluster-routes.service" <<EOF
# Generated by tests/kind/node-image.sh. Until kube-proxy has written its
# rules (a few seconds after every boot), a connection to a Service IP such as
# 10.96.0.1:443 would leave through the node's default route, i.e. off this
# machine. Unreachable routes for the Service and pod ranges keep such packets
# here (they fail at once and are retried); DNATed packets and the node's own
# pod subnet (cni0) are routed as before.
[Unit]
Description=Unreachable routes for the Service and pod ranges
DefaultDependencies=no
Before=containerd.service kubelet.service
[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/ip route replace unreachable $SERVICE_CIDR
ExecStart=/bin/ip route replace unreachable $POD_CIDR
[Install]
WantedBy=multi-user.target
EOF
  # shellcheck disable=SC2086
  cat >"$ctx/Dockerfile" <<EOF
# Generated by tests/kind/node-image.sh: kind's base image
# (images/base/Dockerfile of kind $KIND_VERSION) from Debian packages.
FROM docker.io/library/debian:bookworm-slim
COPY files/usr/local/bin/ /usr/local/bin/
COPY files/kind/ /kind/
COPY files/etc/crictl.yaml /etc/
COPY files/etc/containerd/ /etc/containerd/
COPY files/etc/default/ /etc/default/
COPY files/etc/sysctl.d/ /etc/sysctl.d/
COPY files/etc/systemd/system/ /etc/systemd/system/
RUN chmod 755 /kind /kind/bin \\
 && apt-get update \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends -o Dpkg::Options::=--force-confold $(xargs <<<"$NODE_PACKAGES") \\
 && apt-get clean && rm -rf /var/lib/apt/lists/* \\
 && find /lib/systemd/system/sysinit.target.wants/ -name "systemd-tmpfiles-setup.service" -delete \\
 && rm -f /lib/systemd/system/multi-user.target.wants/* \\
 && rm -f /etc/systemd/system/*.wants/* \\
 && rm -f /lib/systemd/system/local-fs.target.wants/* \\
 && rm -f /lib/systemd/system/sockets.target.wants/*udev* \\
 && rm -f /lib/systemd/system/sockets.target.wants/*initctl* \\
 && rm -f /lib/systemd/system/basic.target.wants/* \\
 && echo "ReadKMsg=no" >> /etc/systemd/journald.conf \\
 && ln -sf /usr/lib/systemd/systemd /sbin/init
RUN ln -sf /usr/bin/containerd /usr/bin/ctr /usr/bin/containerd-shim-runc-v2 /usr/local/bin/ \\
 && mkdir -p /opt/cni && ln -s /usr/lib/cni /opt/cni/bin \\
 && ctr oci spec \\
    | jq '.hooks.createContainer[.hooks.createContainer | length] |= . + {"path": "/kind/bin/mount-product-files.sh"}' \\
    | jq 'del(.process.rlimits)' > /etc/containerd/cri-base.json \\
 && systemctl enable kubelet.service containerd.service undo-mount-hacks.service \\
 && systemctl mask systemd-binfmt.service \\
 && mkdir -p /etc/kubernetes/manifests /kind/manifests /etc/cni/net.d
COPY containerd-config.toml /etc/containerd/config.toml
COPY 10-bridge.conflist /etc/cni/net.d/10-bridge.conflist
COPY default-storage.yaml /kind/manifests/default-storage.yaml
COPY milvus-like-cluster-routes.service /etc/systemd/system/
RUN systemctl enable milvus-like-cluster-routes.service
COPY bin/ /usr/bin/
RUN echo "$K8S_VERSION" > /kind/version \\
 && containerd --version && runc --version | head -1 && crictl --version && kubelet --version
ENV container=docker
STOPSIGNAL SIGRTMIN+3
ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]
EOF
  run_logged "$KIND_LOGS/node-image.log" "$DOCKER" build -t "$base_tag" "$ctx" || die "building $base_tag failed"
  echo "$base_tag"
}

# import_images BASE TAG IMAGE...: runs BASE, imports the images into its
# containerd (k8s.io namespace, pinned, as kind does), commits it as TAG.
import_images() {
  local base=$1 tag=$2
  shift 2
  local ctr="milvus-like-node-build-$$"
  "$DOCKER" rm -f "$ctr" >/dev/null 2>&1 || true
  "$DOCKER" run -d --name "$ctr" --privileged --security-opt seccomp=unconfined \
    --entrypoint sleep "$base" infinity >/dev/null
  # shellcheck disable=SC2064
  trap "'$DOCKER' rm -f '$ctr' >/dev/null 2>&1 || true" EXIT
  "$DOCKER" exec -d "$ctr" sh -c 'containerd >/var/log/containerd-import.log 2>&1'
  local i
  for i in $(seq 100); do
    "$DOCKER" exec "$ctr" ctr version >/dev/null 2>&1 && break
    ((i < 100)) || die "containerd did not start in the build container"
    sleep 0.2
  done
  "$DOCKER" save "$@" |
    "$DOCKER" exec -i "$ctr" ctr --namespace=k8s.io images import \
      --label=io.cri-containerd.pinned=pinned --all-platforms --no-unpack --digests - \
      >>"$KIND_LOGS/node-image.log" 2>&1 || die "ctr import failed (log $KIND_LOGS/node-image.log)"
  "$DOCKER" exec "$ctr" ctr --namespace=k8s.io images ls -q >>"$KIND_LOGS/node-image.log"
  "$DOCKER" exec "$ctr" sh -c 'pkill containerd; while pgrep -x containerd >/dev/null; do sleep 0.1; done; rm -f /var/log/containerd-import.log'
  "$DOCKER" commit \
    --change 'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]' \
    --change 'CMD []' \
    --change "LABEL milvus-like.recipe=\"$WANT\"" \
    "$ctr" "$tag" >/dev/null
  "$DOCKER" rm -f "$ctr" >/dev/null
  trap - EXIT
}

cmd_build() {
  docker_up
  if image_current "$TAG" "$WANT"; then
    echo "$TAG"
    return 0
  fi
  local t0=$SECONDS bin kmod dir
  "$KIND_DIR/base-images.sh" build
  CRICTL_BIN=$(go_tool crictl sigs.k8s.io/cri-tools/cmd/crictl "$CRICTL_VERSION" \
    "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$CRICTL_VERSION")
  COREDNS_BIN=$(go_tool coredns github.com/coredns/coredns "$COREDNS_VERSION")
  LOCAL_PATH_BIN=$(go_tool local-path-provisioner github.com/rancher/local-path-provisioner "$LOCAL_PATH_VERSION" \
    "-s -w -X main.VERSION=$LOCAL_PATH_VERSION")
  kmod=$(go_moddir sigs.k8s.io/kind "$KIND_VERSION")
  log "waiting for / checking the Kubernetes binaries (tests/scripts/k8s.sh install)"
  bin=$("$ROOT/tests/scripts/k8s.sh" install)
  read -r _ STORAGE_PROVISIONER_IMAGE STORAGE_HELPER_IMAGE < <(storage_manifest "$kmod" | sed -n 1p | cut -d" " -f2-)
  log "parts ready after $((SECONDS - t0))s; building the node image $TAG (log $KIND_LOGS/node-image.log)"
  : >"$KIND_LOGS/node-image.log"
  dir=$(mktemp -d -p "$KIND_CACHE")
  local images=() sandbox base t1=$SECONDS
  build_images "$dir" "$bin"
  mapfile -t images <"$dir/images.txt"
  sandbox=$(printf '%s\n' "${images[@]}" | grep '/pause:')
  log "component images built in $((SECONDS - t1))s: ${images[*]}"
  t1=$SECONDS
  base=$(node_base "$dir" "$bin" "$kmod" "$sandbox")
  log "node base $base built in $((SECONDS - t1))s"
  t1=$SECONDS
  import_images "$base" "$TAG" "${images[@]}"
  rm -rf "$dir"
  log "images imported in $((SECONDS - t1))s; $TAG ($(image_size "$TAG")) built in $((SECONDS - t0))s"
  echo "$TAG"
}

case "${1:-build}" in
  build) cmd_build ;;
  tag) echo "$TAG" ;;
  *) die "usage: node-image.sh [build|tag]" ;;
esac
