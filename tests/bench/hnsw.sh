#!/usr/bin/env bash
# Vector index benchmark: our HNSW (tests/src/bin/hnsw_bench.rs, the index query
# nodes search) against hnswlib and FAISS's IndexHNSWFlat on the same vectors,
# queries and parameters, one after the other in the same run; prints one table.
#
#   tests/bench/hnsw.sh [ROWS]       vectors (default 100000)
#
# Environment: HNSW_BENCH_DIM (128), HNSW_BENCH_QUERIES (500), HNSW_BENCH_M (16),
# HNSW_BENCH_EFC (200), HNSW_BENCH_EFS (16,32,64,128,256), HNSW_BENCH_THREADS (nproc),
# HNSW_BENCH_ENGINES (ours measured: hnswlib,usearch,hnsw_rs; default every one built in).
# hnswlib, faiss-cpu and numpy are installed from PyPI into a virtualenv under
# ~/.cache/milvus-like (pinned versions). Results are kept in target/bench/hnsw-<time>/.
# Nothing else may run on the machine meanwhile.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
source tests/scripts/common.sh

ROWS=${1:-100000}
DIM=${HNSW_BENCH_DIM:-128}
QUERIES=${HNSW_BENCH_QUERIES:-500}
M=${HNSW_BENCH_M:-16}
EFC=${HNSW_BENCH_EFC:-200}
EFS=${HNSW_BENCH_EFS:-16,32,64,128,256}
THREADS=${HNSW_BENCH_THREADS:-$(nproc)}
ENGINES=${HNSW_BENCH_ENGINES:+--engines $HNSW_BENCH_ENGINES}
HNSWLIB_VERSION=0.8.0
FAISS_VERSION=1.12.0
NUMPY_VERSION=2.2.6

OUT="$PWD/target/bench/hnsw-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$OUT"
VENV="$MILVUS_LIKE_CACHE/venv-hnswlib-$HNSWLIB_VERSION-faiss-$FAISS_VERSION"
if [ ! -x "$VENV/bin/python" ]; then
  log "installing hnswlib $HNSWLIB_VERSION, faiss-cpu $FAISS_VERSION, numpy $NUMPY_VERSION into $VENV"
  python3 -m venv "$VENV.tmp"
  "$VENV.tmp/bin/pip" install -q "numpy==$NUMPY_VERSION" "hnswlib==$HNSWLIB_VERSION" "faiss-cpu==$FAISS_VERSION"
  mv "$VENV.tmp" "$VENV"
fi

log "building (release)"
cargo build --release -p milvus-like-tests --bin hnsw_bench
{
  echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
  echo "ours: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- 2>/dev/null || echo ' (with local changes)')"
  echo "data: $ROWS x $DIM (256-centre Gaussian mixture), $QUERIES queries, M $M, efConstruction $EFC, $THREADS threads"
} | tee "$OUT/summary.txt"
log "ours"
target/release/hnsw_bench --rows "$ROWS" --dim "$DIM" --queries "$QUERIES" --m "$M" \
  --ef-construction "$EFC" --efs "$EFS" --threads "$THREADS" $ENGINES --dir "$OUT" | tee "$OUT/results.jsonl"
log "hnswlib and faiss"
# One timed pass per setting, as hnsw_bench times ours.
HNSW_REFERENCE_PASSES=${HNSW_REFERENCE_PASSES:-1} "$VENV/bin/python" tests/bench/hnsw_reference.py "$OUT" "$ROWS" "$DIM" "$QUERIES" "$M" "$EFC" "$EFS" "$THREADS" \
  | tee -a "$OUT/results.jsonl"
rm -f "$OUT"/*.f32 "$OUT"/*.i64
python3 - "$OUT/results.jsonl" <<'PY' | tee -a "$OUT/summary.txt"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
sides = list(dict.fromkeys(r["side"] for r in rows))
print("\nbuild seconds: " + ", ".join(f"{s} {r['build_s']}" for s in sides for r in rows if r["side"] == s and "build_s" in r))
print(f"\n{'side':32} {'ef':>4} {'recall@10':>9} {'QPS 1 thread':>13} {'QPS all':>9}")
for s in sides:
    for r in rows:
        if r["side"] == s and "ef" in r:
            print(f"{s:32} {r['ef']:>4} {r['recall']:>9.4f} {r['qps_1']:>13.1f} {r['qps_n']:>9.1f}")
PY
