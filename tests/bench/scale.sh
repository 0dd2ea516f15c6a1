#!/usr/bin/env bash
# Scale benchmark (tests/src/bin/scale_bench.rs): ingest throughput, latency, memory
# and CPU per process as the channels (1, 3, 6, 12), the data nodes (1, 2, 3) and the
# collections (1, 10, 100) grow, distributed and standalone; then the plots.
#
#   tests/bench/scale.sh [scale_bench flags...]     e.g. --rows 2000000
#
# Defaults and flags: target/release/scale_bench --help. Everything is kept in
# target/bench/scale-<time>/: scale.csv (one row per point), output.txt (point lines
# and the table), progress.txt (stderr) and the plots (scale-*.svg, drawn by
# tests/bench/plot_scale.py from scale.csv). Copy the plots to docs/images/ to
# publish a run. Nothing else may run on the machine meanwhile.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
source tests/scripts/common.sh

OUT="$PWD/target/bench/scale-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$OUT"

log "building (release)"
cargo build --release --bins

no_page_reporting
{
  echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(uname -sr)"
  echo "ours: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- 2>/dev/null || echo ' (with local changes)')"
  echo "flags: $*"
  echo "$PAGE_REPORTING"
} | tee "$OUT/versions.txt" >&2
busy_check "the run"

MILVUS_LIKE_BIN="$PWD/target/release/milvus-like" target/release/scale_bench --csv "$OUT/scale.csv" "$@" \
  2> >(tee "$OUT/progress.txt" >&2) | tee "$OUT/output.txt"
python3 tests/bench/plot_scale.py "$OUT/scale.csv" "$OUT" --title "$(head -1 "$OUT/versions.txt")"
log "outputs: $OUT"
