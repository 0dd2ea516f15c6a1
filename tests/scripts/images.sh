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
#
# Needs Docker (tests/kind/docker.sh up starts one) or buildah.
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
    # The base images, made locally where no registry answers.
    "$ROOT/tests/kind/base-images.sh" build >&2
  elif command -v buildah >/dev/null; then
    tool="buildah build"
  else
    die "neither docker nor buildah is available"
  fi
  log "building milvus-like/node:$tag and milvus-like/operator:$tag with $tool"
  (cd "$ROOT" && $tool -f docker/node.Dockerfile -t "milvus-like/node:$tag" .)
  (cd "$ROOT" && $tool -f docker/operator.Dockerfile -t "milvus-like/operator:$tag" .)
}

case "${1:-}" in
  build) shift; build "$@" ;;
  *) die "usage: images.sh build [TAG]" ;;
esac
