#!/usr/bin/env bash
# Shared helpers of the tests/kind scripts. Source it; do not run it.
#
# Everything built here lives under $MILVUS_LIKE_CACHE/kind (Go binaries, the
# debootstrap root filesystem, logs) or in the Docker engine of docker.sh,
# whose data root is $MILVUS_LIKE_CACHE/docker/data. Images made here carry the
# label milvus-like.recipe (versions + recipe number): an image whose label
# matches is not rebuilt.

set -euo pipefail

KIND_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck disable=SC2034 # used by the scripts that source this file
ROOT="$(cd "$KIND_DIR/../.." && pwd)"
# shellcheck source-path=SCRIPTDIR/../scripts source=../scripts/common.sh
source "$KIND_DIR/../scripts/common.sh"

KIND_CACHE="$MILVUS_LIKE_CACHE/kind"
KIND_GOBIN="$KIND_CACHE/bin"
KIND_LOGS="$KIND_CACHE/logs"
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
mkdir -p "$KIND_CACHE" "$KIND_GOBIN" "$KIND_LOGS"

# docker_up: starts (or finds) the engine and takes the environment of
# docker.sh env: $DOCKER is the client that builds with BuildKit.
docker_up() {
  local envlines
  envlines=$("$KIND_DIR/docker.sh" up) || die "no Docker engine"
  eval "$envlines"
}

# registry_answers HOST: succeeds when https://HOST/v2/ answers at all (any HTTP
# status) within 5 s. On this machine the name does not even resolve.
registry_answers() {
  local code
  code=$(curl -sS -m 5 -o /dev/null -w '%{http_code}' "https://$1/v2/" 2>/dev/null) || true
  [ -n "$code" ] && [ "$code" != 000 ]
}

# image_recipe IMAGE: prints the image's milvus-like.recipe label (empty if none
# or no such image).
image_recipe() {
  "$DOCKER" image inspect --format '{{ index .Config.Labels "milvus-like.recipe" }}' "$1" 2>/dev/null || true
}

# image_current IMAGE WANT: succeeds when IMAGE exists with recipe label WANT
# (never with KIND_REBUILD=1: every image is built again, through docker's
# build cache).
image_current() { [ -z "${KIND_REBUILD:-}" ] && [ "$(image_recipe "$1")" = "$2" ]; }

image_size() { "$DOCKER" image inspect --format '{{.Size}}' "$1" | awk '{ printf "%.0f MB\n", $1 / 1e6 }'; }

# timed NAME CMD...: runs CMD and logs how long it took.
timed() {
  local name=$1 t0=$SECONDS
  shift
  "$@"
  log "$name took $((SECONDS - t0))s"
}

# run_logged LOG CMD...: runs CMD (niced) with its output appended to LOG; on
# failure shows the end of LOG and fails.
run_logged() {
  local logf=$1
  shift
  echo "+ $*" >>"$logf"
  if ! nice -n 10 "$@" >>"$logf" 2>&1; then
    tail -n 40 "$logf" >&2
    log "failed: $* (log: $logf)"
    return 1
  fi
}

# go_env: the environment of every go command here (module cache shared with
# tests/scripts/*.sh, local toolchain, static binaries).
go_env() {
  export PATH="$PATH:/usr/local/go/bin" GOMODCACHE="$MILVUS_LIKE_CACHE/go-mod" GOTOOLCHAIN=local \
    CGO_ENABLED=0 GOFLAGS="-modcacherw -buildvcs=false -p=${KIND_BUILD_PARALLEL:-2}"
}

# go_tool NAME MODULE/PKG VERSION [LDFLAGS]: `go install PKG@VERSION` into
# $KIND_GOBIN (once per version), prints the binary's path.
go_tool() {
  local name=$1 pkg=$2 version=$3 ldflags=${4:--s -w}
  local bin="$KIND_GOBIN/$name" stamp="$KIND_GOBIN/.$name.built" want="$pkg@$version $ldflags"
  if [ -x "$bin" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    echo "$bin"
    return 0
  fi
  exec 9>"$KIND_GOBIN/.$name.lock"
  flock 9
  if ! [ -x "$bin" ] || ! [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    local t0=$SECONDS logf="$KIND_LOGS/go-install-$name.log"
    log "go install $pkg@$version (log $logf)"
    : >"$logf"
    (
      go_env
      cd /
      GOBIN="$KIND_GOBIN" run_logged "$logf" go install -trimpath -ldflags "$ldflags" "$pkg@$version"
    ) || { exec 9>&-; die "go install $pkg@$version failed"; }
    echo "$want" >"$stamp"
    log "built $name $version in $((SECONDS - t0))s"
  fi
  exec 9>&-
  echo "$bin"
}

# go_moddir MODULE VERSION: downloads the module (once) and prints its directory.
go_moddir() {
  (
    go_env
    cd /
    go mod download -json "$1@$2" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])'
  )
}

DEBOOTSTRAP_RECIPE=1
# debian_rootfs: a `debootstrap --variant=minbase bookworm` root filesystem as a
# tarball, made once (with the Debian slim image's dpkg excludes and apt
# settings); prints its path.
debian_rootfs() {
  local tar="$KIND_CACHE/rootfs/bookworm-minbase-r$DEBOOTSTRAP_RECIPE.tar"
  if [ -s "$tar" ]; then
    echo "$tar"
    return 0
  fi
  mkdir -p "$KIND_CACHE/rootfs"
  exec 9>"$KIND_CACHE/rootfs/.lock"
  flock 9
  if [ ! -s "$tar" ]; then
    command -v debootstrap >/dev/null || apt_install debootstrap
    local dir="$KIND_CACHE/rootfs/bookworm.tmp" logf="$KIND_LOGS/debootstrap.log" t0=$SECONDS
    rm -rf "$dir"
    : >"$logf"
    log "debootstrap --variant=minbase bookworm (log $logf)"
    run_logged "$logf" debootstrap --variant=minbase bookworm "$dir" "$DEBIAN_MIRROR" ||
      { exec 9>&-; die "debootstrap failed"; }
    # What the official debian:bookworm-slim has on top (debuerreotype --slimify
    # and its apt settings): no docs, man pages or translations; no apt caches.
    cat >"$dir/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
    cat >"$dir/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
    rm -f "$dir/etc/apt/sources.list"
    cat >"$dir/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $DEBIAN_MIRROR
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${DEBIAN_MIRROR%/debian}/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    rm -rf "$dir"/usr/share/doc/*/[!c]* "$dir"/usr/share/man/* "$dir"/usr/share/info/* \
      "$dir"/usr/share/locale/[!l]* "$dir"/var/lib/apt/lists/* "$dir"/var/cache/apt/*.bin \
      "$dir"/var/cache/apt/archives/*.deb "$dir"/var/log/*.log "$dir"/var/log/apt/*
    : >"$dir/etc/machine-id"
    tar -C "$dir" --numeric-owner -cf "$tar.tmp" .
    mv "$tar.tmp" "$tar"
    rm -rf "$dir"
    log "debootstrap rootfs $tar ($(du -h "$tar" | cut -f1)) in $((SECONDS - t0))s"
  fi
  exec 9>&-
  echo "$tar"
}

# host_extra_cas DIR: writes the host's CA certificates that Debian's
# ca-certificates package does not ship (the ones a TLS-inspecting egress proxy
# signs with) to DIR/*.crt, one per file, and the host's whole bundle to
# DIR/ca-certificates.crt. Without them, TLS from a container to the package
# registries fails with "self-signed certificate in certificate chain".
host_extra_cas() {
  local out=$1 bundle=/etc/ssl/certs/ca-certificates.crt
  mkdir -p "$out"
  [ -s "$bundle" ] || die "the host has no $bundle"
  cp "$bundle" "$out/ca-certificates.crt"
  python3 - "$bundle" "$out" <<'PY'
import glob, hashlib, re, ssl, sys
bundle, out = sys.argv[1:]
def ders(text):
    return [ssl.PEM_cert_to_DER_cert(m) for m in
            re.findall(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", text, re.S)]
debian = set()
for f in glob.glob("/usr/share/ca-certificates/**/*.crt", recursive=True):
    debian.update(hashlib.sha256(d).hexdigest() for d in ders(open(f).read()))
n = 0
for d in ders(open(bundle).read()):
    if hashlib.sha256(d).hexdigest() in debian:
        continue
    n += 1
    with open(f"{out}/milvus-like-host-{n}.crt", "w") as f:
        f.write(ssl.DER_cert_to_PEM_cert(d))
PY
}
