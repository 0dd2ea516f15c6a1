#!/usr/bin/env bash
# Milvus's Go SDK (github.com/milvus-io/milvus/client/v2, from the Go module
# proxy) and the quick start written with it (tests/milvus_api/go), built once
# into $MILVUS_LIKE_CACHE, for the tests of the Milvus API (issue 16).
#
#   tests/scripts/go-client.sh build    builds it once; prints the binary's path
#
# The binary is keyed by the hash of the program and its go.sum: a change to
# either builds a new one. Modules go to $MILVUS_LIKE_CACHE/go-mod (shared with
# tests/scripts/k8s.sh).
set -euo pipefail
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$SCRIPT_DIR/common.sh"

SRC="$(cd "$SCRIPT_DIR/../milvus_api/go" && pwd)"

build() {
  local key out
  key="$(cat "$SRC/go.mod" "$SRC/go.sum" "$SRC/main.go" | sha256sum | cut -c1-16)"
  out="$MILVUS_LIKE_CACHE/go-milvus-client/$key/quickstart"
  if [ ! -x "$out" ]; then
    command -v go >/dev/null || die "go is needed to build the Go SDK test client"
    log "building the Milvus Go SDK quick start into $out"
    export GOMODCACHE="$MILVUS_LIKE_CACHE/go-mod" GOTOOLCHAIN=local CGO_ENABLED=0
    export GOFLAGS="-modcacherw -buildvcs=false -mod=readonly"
    mkdir -p "$(dirname "$out")"
    (cd "$SRC" && go build -trimpath -o "$out.tmp" .) >&2
    mv "$out.tmp" "$out"
  fi
  echo "$out"
}

case "${1:-}" in
  build) build ;;
  *) die "usage: $0 build" ;;
esac
