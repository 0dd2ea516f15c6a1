#!/usr/bin/env bash
# Builds the node and operator images from docker/*.Dockerfile.
#
#   images.sh build [TAG]   docker (or buildah) builds milvus-like/node:TAG and
#                           milvus-like/operator:TAG (default TAG: the workspace
#                           version); pulls the Rust and Debian base images
#                           (where no registry answers, tests/kind/base-images.sh
#                           makes them locally first). With Docker it uses the
#                           client of tests/kind/docker.sh env, with BuildKit
#                           (the Dockerfiles use RUN --mount=type=cache)
#   images.sh check         without any registry: debootstraps a Debian bookworm
#                           base image into $MILVUS_LIKE_CACHE (once), builds the
#                           runtime stage of both Dockerfiles on it with buildah,
#                           the release binaries of this checkout standing in for
#                           the build stage (--build-context build=DIR), then runs
#                           each image's binary (--version) inside the image
#
# check needs root (buildah, debootstrap) and the Debian mirror; it installs
# buildah and debootstrap from Debian if missing. Images it builds are tagged
# localhost/milvus-like/{node,operator}:check.
set -euo pipefail
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$SCRIPT_DIR/common.sh"
ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"

version() {
  awk -F'"' '/^\[workspace.package\]/ {p = 1} p && /^version/ {print $2; exit}' "$ROOT/Cargo.toml"
}

build() {
  local tag="${1:-$(version)}" tool envlines
  # The docker client that builds with BuildKit (Debian's 20.10 one when the
  # default client has no buildx plugin), and DOCKER_BUILDKIT=1.
  if envlines=$("$ROOT/tests/kind/docker.sh" env 2>/dev/null); then eval "$envlines"; fi
  if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
    tool="${DOCKER:-docker} build"
  elif command -v buildah >/dev/null; then
    tool="buildah build"
  else
    die "neither docker nor buildah is available"
  fi
  log "building milvus-like/node:$tag and milvus-like/operator:$tag with $tool"
  (cd "$ROOT" && $tool -f docker/node.Dockerfile -t "milvus-like/node:$tag" .)
  (cd "$ROOT" && $tool -f docker/operator.Dockerfile -t "milvus-like/operator:$tag" .)
}

base_image() {
  local image=localhost/debian:bookworm-slim
  if buildah inspect --type image "$image" >/dev/null 2>&1; then
    echo "$image"
    return
  fi
  local rootfs="$MILVUS_LIKE_CACHE/debian-bookworm-rootfs"
  if [ ! -x "$rootfs/bin/sh" ]; then
    log "debootstrap Debian bookworm (minbase) into $rootfs"
    rm -rf "$rootfs.tmp"
    debootstrap --variant=minbase bookworm "$rootfs.tmp" http://deb.debian.org/debian >"$MILVUS_LIKE_CACHE/debootstrap.log" 2>&1 \
      || die "debootstrap failed, see $MILVUS_LIKE_CACHE/debootstrap.log"
    mv "$rootfs.tmp" "$rootfs"
  fi
  local ctr mnt
  ctr=$(buildah from scratch)
  mnt=$(buildah mount "$ctr")
  cp -a "$rootfs/." "$mnt/"
  buildah umount "$ctr" >/dev/null
  buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$ctr"
  buildah commit --quiet "$ctr" "$image" >/dev/null
  buildah rm "$ctr" >/dev/null
  echo "$image"
}

check() {
  command -v buildah >/dev/null && command -v debootstrap >/dev/null || apt_install buildah debootstrap
  local base prebuilt
  base=$(base_image)
  log "base image: $base"
  (cd "$ROOT" && cargo build --release --bin milvus-like -p milvus-like-node \
    && cargo build --release -p milvus-like-operator --bin milvus-like-operator)
  prebuilt=$(mktemp -d)
  trap 'rm -rf "$prebuilt"' RETURN
  # What the build stage does: strip the line tables.
  strip --strip-debug -o "$prebuilt/milvus-like" "$ROOT/target/release/milvus-like"
  strip --strip-debug -o "$prebuilt/milvus-like-operator" "$ROOT/target/release/milvus-like-operator"
  local name file binary
  for name in node operator; do
    file="$ROOT/docker/$name.Dockerfile"
    binary=$([ "$name" = node ] && echo milvus-like || echo milvus-like-operator)
    log "buildah: runtime stage of docker/$name.Dockerfile"
    buildah build --quiet --isolation chroot --network host --layers \
      --build-arg "RUNTIME_IMAGE=$base" \
      --build-context "build=$prebuilt" \
      --target runtime \
      -f "$file" -t "localhost/milvus-like/$name:check" "$ROOT" >/dev/null
    local ctr user out
    ctr=$(buildah from "localhost/milvus-like/$name:check")
    user=$(buildah inspect --format '{{.OCIv1.Config.User}}' "$ctr")
    [ "$user" = "10001:10001" ] || die "$name image runs as '$user', expected 10001:10001"
    out=$(buildah run --isolation chroot --network host "$ctr" -- "/usr/local/bin/$binary" --version)
    buildah rm "$ctr" >/dev/null
    log "$name image: user $user, '$binary --version' says: $out"
  done
  buildah images --format '{{.Name}}:{{.Tag}} {{.Size}}' | grep 'milvus-like/' >&2
}

case "${1:-}" in
  build) shift; build "$@" ;;
  check) check ;;
  *) die "usage: images.sh build [TAG] | images.sh check" ;;
esac
