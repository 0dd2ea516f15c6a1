#!/usr/bin/env bash
# prometheus-operator's ServiceMonitor CRD, from its Go module (the module proxy
# serves the repository's files, the generated CRDs among them), cached in the
# Go module cache under $MILVUS_LIKE_CACHE. Prints the CRD file's path:
#
#   kubectl apply --server-side -f "$(tests/kind/prometheus-crds.sh)"
#
# Environment: PROMETHEUS_OPERATOR_VERSION (default v0.85.0, the newest the
# proxy served in 2026-12).
set -euo pipefail
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR/../scripts source=../scripts/common.sh
source "$SCRIPT_DIR/../scripts/common.sh"

version="${PROMETHEUS_OPERATOR_VERSION:-v0.85.0}"
dir=$(cd / && GOMODCACHE="$MILVUS_LIKE_CACHE/go-mod" GOFLAGS=-modcacherw GOTOOLCHAIN=local \
  go mod download -json "github.com/prometheus-operator/prometheus-operator@$version" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])') ||
  die "cannot fetch prometheus-operator $version from the Go module proxy"
crd="$dir/example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml"
[ -s "$crd" ] || die "no ServiceMonitor CRD in $dir"
echo "$crd"
