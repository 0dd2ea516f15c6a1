#!/usr/bin/env bash
# Ingest benchmark (tests/src/bin/ingest_bench.rs): flush write vs a raw sequential
# write, proxy -> Kafka backlog, raw librdkafka consumer vs the data node over that
# backlog, end-to-end insert with a data node running, and the data node's peak RSS;
# all in one run, one phase at a time. Prints the comparison table.
#
#   tests/bench/ingest.sh [ingest_bench flags...]     e.g. --rows 2000000 --clients 4
#
# Defaults and flags: target/release/ingest_bench --help. Everything it prints is
# kept in target/bench/ingest-<time>/ (output.txt: summary lines and the table;
# progress.txt: stderr). Nothing else may run on the machine meanwhile: clients,
# proxy, Kafka and the data node share its cores.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
source tests/scripts/common.sh

OUT="$PWD/target/bench/ingest-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$OUT"

log "building (release)"
cargo build --release --bins

busy=$(cpu_busy_pct)
no_page_reporting
{
  echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(uname -sr)"
  echo "ours: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- 2>/dev/null || echo ' (with local changes)'), etcd $(etcd --version 2>/dev/null | awk '/etcd Version/ {print $3}')"
  echo "CPUs ${busy}% busy before the run"
  echo "$PAGE_REPORTING"
  echo "flags: $*"
} | tee "$OUT/versions.txt" >&2
if ((busy > 10)); then log "warning: the CPUs are ${busy}% busy; figures will be low (see top)"; fi

MILVUS_LIKE_BIN="$PWD/target/release/milvus-like" target/release/ingest_bench "$@" \
  2> >(tee "$OUT/progress.txt" >&2) | tee "$OUT/output.txt"
log "outputs: $OUT"
