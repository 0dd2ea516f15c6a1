#!/usr/bin/env bash
# TSO benchmark: our root coordinator (tests/src/bin/tso_bench.rs) and TiKV PD
# (pd-server + pd-tso-bench, tests/scripts/pd.sh) one after the other in the same run,
# on loopback, same caller counts, same warm-up and measured duration; prints one
# comparison table with the ratio ours/PD.
#
#   tests/bench/tso.sh [SECONDS]          measured seconds per point (default 10)
#
# Environment:
#   TSO_BENCH_CALLERS   caller counts (default 1,16,256,1000)
#   TSO_BENCH_WARMUP    warm-up seconds before each point, both sides (default 2)
#   TSO_BENCH_RAW       "yes" (default) also measures our raw AllocTimestamp RPC
#                       (1 and 16 callers, count 1 and 1000); PD has no equivalent here
#
# Everything (our summary, each pd-tso-bench output, the table) is kept in
# target/bench/tso-<time>/. Nothing else may run on the machine meanwhile: client and
# server share its cores.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
source tests/scripts/common.sh

DURATION=${1:-10}
if ! [[ $DURATION =~ ^[1-9][0-9]*$ ]]; then die "usage: $0 [SECONDS]"; fi
CALLERS=${TSO_BENCH_CALLERS:-1,16,256,1000}
WARMUP=${TSO_BENCH_WARMUP:-2}
RAW_CALLERS=1,16
RAW_COUNTS=1,1000
if [ "${TSO_BENCH_RAW:-yes}" != yes ]; then RAW_CALLERS=""; fi

OUT="$PWD/target/bench/tso-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$OUT"
PD_DIR="$OUT/pd"

log "building (release)"
cargo build --release --bins
PD_BIN=$(tests/scripts/pd.sh install)

{
  echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(uname -sr)"
  echo "ours: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- 2>/dev/null || echo ' (with local changes)'), etcd $(etcd --version 2>/dev/null | awk '/etcd Version/ {print $3}')"
  echo "PD:   $(grep -o 'server=[^ ]*' "$PD_BIN/.built") $(grep -o 'bench=[^ ]*' "$PD_BIN/.built")"
} | tee "$OUT/versions.txt" >&2

busy_check ours
log "ours: tso_bench, ${WARMUP}s warm-up + ${DURATION}s per point"
MILVUS_LIKE_BIN="$PWD/target/release/milvus-like" target/release/tso_bench \
  --duration "${DURATION}s" --warmup "${WARMUP}s" --callers "$CALLERS" \
  --raw-callers "$RAW_CALLERS" --raw-counts "$RAW_COUNTS" | tee "$OUT/ours.txt"

busy_check PD
log "PD: pd-server + pd-tso-bench, ${WARMUP}s warm-up + ${DURATION}s per point"
trap 'tests/scripts/pd.sh stop "$PD_DIR"' EXIT
tests/scripts/pd.sh start "$PD_DIR" >/dev/null
for c in ${CALLERS//,/ }; do
  log "PD: $c callers"
  # pd-tso-bench has no warm-up of its own (one GetTS before the loops): give it a
  # short untimed run with the same callers, like ours.
  tests/scripts/pd.sh bench "$PD_DIR" "$c" "$WARMUP" >/dev/null
  tests/scripts/pd.sh bench "$PD_DIR" "$c" "$DURATION" | tee "$OUT/pd-c$c.txt" | grep '^summary:'
done
tests/scripts/pd.sh stop "$PD_DIR"
trap - EXIT

python3 - "$OUT" "$CALLERS" <<'PY' | tee "$OUT/comparison.md"
import re, sys
out, callers = sys.argv[1], [int(c) for c in sys.argv[2].split(",") if c]
def fields(line):
    return dict(kv.split("=", 1) for kv in line.split()[1:])
ours = {}
for line in open(f"{out}/ours.txt"):
    if line.startswith("summary:"):
        f = fields(line)
        if f["mode"] == "client":
            ours[int(f["callers"])] = f
pd = {}
for c in callers:
    for line in open(f"{out}/pd-c{c}.txt"):
        if line.startswith("summary:"):
            pd[c] = fields(line)
def num(v):
    try: return float(v)
    except (TypeError, ValueError): return float("nan")
def us(ms): return num(ms) * 1000
print("| callers | ours timestamps/s | PD timestamps/s | ours/PD | ours p50 µs | PD p50 µs | ours p99 µs | PD p99 µs | ours RPCs/s | PD TSO RPCs/s |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for c in callers:
    o, p = ours.get(c, {}), pd.get(c, {})
    ot, pt = num(o.get("timestamps_per_s")), num(p.get("timestamps_per_s"))
    ratio = ot / pt if pt else float("nan")
    print(f"| {c} | {ot:.0f} | {pt:.0f} | {ratio:.2f}x | {num(o.get('p50_us')):.0f} | {us(p.get('p50_ms')):.0f} "
          f"| {num(o.get('p99_us')):.0f} | {us(p.get('p99_ms')):.0f} | {num(o.get('rpcs_per_s')):.0f} | {num(p.get('tso_rpcs_per_s')):.0f} |")
PY
cat >&2 <<EOF

Caveat: PD is not one version. pd-server is the 2024-04-07 commit 7179657d129b (after
v8.0.0); pd-tso-bench and the PD client it embeds are the 2022-02-07 commit 9268bed87199,
the newest the Go module proxy here serves with the tools inside the root module (see
tests/scripts/pd.sh). The client talks the stable pdpb.PD/Tso stream, but its batching
is 2022's, not what a 2024 PD client would do.
pd-tso-bench: one GetTS = one timestamp; -c goroutines share one pd.Client, which merges
concurrent requests into one message on its TSO stream, like our TsoClient does with
unary AllocTimestamp RPCs. Its latency percentiles come from a t-digest.
Outputs: $OUT
EOF
