#!/usr/bin/env bash
# The base images of docker/node.Dockerfile and docker/operator.Dockerfile,
# made locally where no registry answers, under exactly the tags the
# Dockerfiles name, so they build unchanged:
#
#   docker.io/library/debian:bookworm-slim   the runtime stage (and the base of
#                                            every other image made in tests/kind)
#   docker.io/library/rust:1.95-bookworm     the build stage
#
#   base-images.sh [build]   make both (once; cached in the Docker engine);
#                            tests/scripts/images.sh build runs it first
#
# Where registry-1.docker.io answers, the official images are pulled instead.
#
# How they are made:
# - debian:bookworm-slim: `debootstrap --variant=minbase bookworm` (cached as a
#   tarball under $MILVUS_LIKE_CACHE/kind/rootfs), `docker import`ed, with the
#   official slim image's dpkg excludes and apt settings, plus this host's CA
#   certificates (below).
# - rust:1.95-bookworm: laid out as the official image is (RUSTUP_HOME=
#   /usr/local/rustup, CARGO_HOME=/usr/local/cargo on PATH, toolchain
#   1.95.0-x86_64-unknown-linux-gnu as default, rustup proxies in
#   /usr/local/cargo/bin), on the debian image above plus the Debian packages
#   of buildpack-deps:bookworm that a Rust build uses (gcc, g++, make,
#   libc6-dev, pkg-config, libssl-dev, git, curl, ...; not imagemagick and the
#   database client libraries). The toolchain is this host's ~/.rustup stable
#   (it must be $RUST_VERSION): rustc, cargo, rust-std, clippy, rustfmt, not
#   the HTML docs. Nothing comes from static.rust-lang.org.
#
# Traps:
# - TLS from containers to the registries (crates.io, PyPI, ...) verifies only
#   with this host's CA certificates (an egress proxy re-signs). The images get
#   the host's bundle as /etc/ssl/certs/ca-certificates.crt, and the host CAs
#   that Debian does not ship in /usr/local/share/ca-certificates/, which
#   update-ca-certificates (run by `apt-get install ca-certificates`) adds
#   back to the bundle it regenerates. Without that, `cargo fetch` in the build
#   stage fails with "self-signed certificate in certificate chain".
# - `docker build` (BuildKit of docker 20.10) uses a local image of the FROM's
#   tag and does not try the registry.
#
# Environment: MILVUS_LIKE_CACHE, RUST_VERSION (default 1.95.0), RUST_TAG
# (default 1.95-bookworm), DEBIAN_MIRROR.
#
# Measured here (2 cores shared with a Kubernetes and a cargo build):
# debootstrap 97 s (80 MB tarball, once); debian:bookworm-slim 4 s (80 MB);
# rust:1.95-bookworm 83 s cold (52 s of apt), 27 s when only the toolchain
# layer changes (1133 MB; the official one is ~1.5 GB); a second run ~1 s.
#
# The Dockerfiles' build stage needs nothing beyond the toolchain: the protos
# are compiled by protox (Rust), etcd-client's included (vendor/etcd-client).

set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

RUST_VERSION="${RUST_VERSION:-1.95.0}"
RUST_TAG="${RUST_TAG:-1.95-bookworm}"
# Bump when the recipe below changes, so the images are made again.
RECIPE=2
DEBIAN_IMAGE=docker.io/library/debian:bookworm-slim
RUST_IMAGE=docker.io/library/rust:$RUST_TAG
ROOTFS_IMAGE=milvus-like/debootstrap:bookworm-r$DEBOOTSTRAP_RECIPE
DEBIAN_WANT="base-images=$RECIPE rootfs=$DEBOOTSTRAP_RECIPE"
RUST_WANT="$DEBIAN_WANT rust=$RUST_VERSION"

# The buildpack-deps:bookworm packages a Rust build may need (curl, scm and the
# build tools; not its image, database and X libraries).
RUST_PACKAGES="ca-certificates curl gnupg netbase wget git openssh-client procps
  autoconf automake bzip2 dpkg-dev file g++ gcc libc6-dev libcurl4-openssl-dev libffi-dev
  liblzma-dev libssl-dev libtool make patch pkg-config unzip xz-utils zlib1g-dev"

make_debian() {
  if image_current "$DEBIAN_IMAGE" "$DEBIAN_WANT"; then return 0; fi
  local rootfs t0=$SECONDS ctx
  rootfs=$(debian_rootfs)
  log "docker import $rootfs as $ROOTFS_IMAGE"
  "$DOCKER" import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["bash"]' "$rootfs" "$ROOTFS_IMAGE" >/dev/null
  ctx=$(mktemp -d)
  host_extra_cas "$ctx/certs"
  cat >"$ctx/Dockerfile" <<EOF
FROM $ROOTFS_IMAGE
COPY certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY certs/milvus-like-host-*.crt /usr/local/share/ca-certificates/
LABEL milvus-like.recipe="$DEBIAN_WANT"
CMD ["bash"]
EOF
  run_logged "$KIND_LOGS/base-debian.log" "$DOCKER" build -t "$DEBIAN_IMAGE" "$ctx" ||
    { rm -rf "$ctx"; die "building $DEBIAN_IMAGE failed"; }
  rm -rf "$ctx"
  log "made $DEBIAN_IMAGE ($(image_size "$DEBIAN_IMAGE")) in $((SECONDS - t0))s"
}

make_rust() {
  if image_current "$RUST_IMAGE" "$RUST_WANT"; then return 0; fi
  local toolchain="$HOME/.rustup/toolchains/stable-x86_64-unknown-linux-gnu" t0=$SECONDS ctx v
  [ -x "$toolchain/bin/rustc" ] || die "no stable Rust toolchain in $toolchain"
  v=$("$toolchain/bin/rustc" --version | awk '{ print $2 }')
  [ "$v" = "$RUST_VERSION" ] || die "the host's stable rustc is $v, not $RUST_VERSION"
  local rustup_bin
  rustup_bin=$(command -v rustup || echo "$HOME/.cargo/bin/rustup")
  [ -x "$rustup_bin" ] || die "no rustup binary on this host"
  ctx=$(mktemp -d -p "$KIND_CACHE")
  local tc="$ctx/rustup/toolchains/$RUST_VERSION-x86_64-unknown-linux-gnu"
  mkdir -p "$tc" "$ctx/cargo/bin"
  # Hard links: no copy of 700 MB (same file system); docker build reads them.
  cp -al "$toolchain/." "$tc/"
  rm -rf "$tc/share/doc/rust/html" "$tc/lib/rustlib/manifest-rust-docs-"*
  sed -i '/^rust-docs-/d' "$tc/lib/rustlib/components"
  cat >"$ctx/rustup/settings.toml" <<EOF
version = "12"
default_toolchain = "$RUST_VERSION-x86_64-unknown-linux-gnu"
profile = "minimal"

[overrides]
EOF
  cp "$rustup_bin" "$ctx/cargo/bin/rustup"
  local p
  for p in cargo cargo-clippy cargo-fmt clippy-driver rust-gdb rust-gdbgui rust-lldb rustc rustdoc rustfmt; do
    ln "$ctx/cargo/bin/rustup" "$ctx/cargo/bin/$p"
  done
  cat >"$ctx/Dockerfile" <<EOF
FROM $DEBIAN_IMAGE
RUN apt-get update \\
 && apt-get install -y --no-install-recommends $(xargs <<<"$RUST_PACKAGES") \\
 && rm -rf /var/lib/apt/lists/*
ENV RUSTUP_HOME=/usr/local/rustup CARGO_HOME=/usr/local/cargo \\
    PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
    RUST_VERSION=$RUST_VERSION
COPY rustup /usr/local/rustup
COPY cargo /usr/local/cargo
# (The official image also makes both trees world-writable; a chmod here would
# copy the whole toolchain into one more layer, +700 MB, and builds run as root.)
RUN rustup --version && cargo --version && rustc --version
LABEL milvus-like.recipe="$RUST_WANT"
CMD ["bash"]
EOF
  log "building $RUST_IMAGE (host toolchain $v, Debian build packages; log $KIND_LOGS/base-rust.log)"
  run_logged "$KIND_LOGS/base-rust.log" "$DOCKER" build -t "$RUST_IMAGE" "$ctx" ||
    { rm -rf "$ctx"; die "building $RUST_IMAGE failed"; }
  rm -rf "$ctx"
  log "made $RUST_IMAGE ($(image_size "$RUST_IMAGE")) in $((SECONDS - t0))s"
}

cmd_build() {
  docker_up
  if registry_answers registry-1.docker.io; then
    log "registry-1.docker.io answers: pulling the official base images"
    "$DOCKER" pull "$DEBIAN_IMAGE"
    "$DOCKER" pull "$RUST_IMAGE"
    return 0
  fi
  make_debian
  make_rust
  log "$DEBIAN_IMAGE $(image_size "$DEBIAN_IMAGE"), $RUST_IMAGE $(image_size "$RUST_IMAGE")"
}

case "${1:-build}" in
  build) cmd_build ;;
  *) die "usage: base-images.sh [build]" ;;
esac
