#!/usr/bin/env bash
# Profiles one process of the ingest benchmark (tests/src/bin/ingest_bench.rs) over
# one of its phases: perf for our processes, Java Flight Recorder for the broker.
#
#   tests/bench/profile_ingest.sh WHAT [ingest_bench flags...]
#
#   WHAT     proxy | clients    the backlog phase (proxy -> Kafka, no data node)
#            datanode           the data node's consume + flush of the backlog
#            broker             the backlog and the raw-produce phases (JFR; the
#                               report has each phase's window)
#
# Default flags: --rows 200000 --backlog-rows 1500000 --write-rows 1000
# --write-repeat 1 --flush-rounds 2 (later flags win). Keeps everything in
# target/bench/profile-<what>-<time>/: output.txt, progress.txt (stderr with
# times), and perf.data + report.txt, or broker.jfr + the phase times. Read
# perf.data further with `perf report -i ... -G`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
source tests/scripts/common.sh

WHAT=${1:-}
case "$WHAT" in
  proxy | clients | datanode | broker) shift ;;
  *) die "usage: $0 proxy|clients|datanode|broker [ingest_bench flags...]" ;;
esac
if [ "$WHAT" = broker ]; then
  command -v jcmd >/dev/null || die "jcmd (JDK) is needed for the broker's profile"
else
  command -v perf >/dev/null || die "perf is needed (Debian: apt-get install linux-perf)"
fi
OUT="$PWD/target/bench/profile-$WHAT-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$OUT"
log "building (release)"
cargo build --release --bins
busy_check "the run"
no_page_reporting
log "$PAGE_REPORTING"

MILVUS_LIKE_BIN="${MILVUS_LIKE_BIN:-$PWD/target/release/milvus-like}" target/release/ingest_bench \
  --rows 200000 --backlog-rows 1500000 --write-rows 1000 --write-repeat 1 --flush-rounds 2 "$@" \
  2> >(while IFS= read -r l; do echo "$(date +%H:%M:%S.%3N) $l"; done >"$OUT/progress.txt") \
  >"$OUT/output.txt" &
bench=$!

# wait_line PATTERN: waits (10 min at most) until the progress shows PATTERN.
wait_line() {
  local i
  for i in $(seq 1 12000); do
    if grep -q -- "$1" "$OUT/progress.txt" 2>/dev/null; then return 0; fi
    if ! kill -0 "$bench" 2>/dev/null; then die "ingest_bench ended before \"$1\""; fi
    sleep 0.05
  done
  die "no \"$1\" in 10 minutes"
}

# record PID SECONDS: perf samples PID with call graphs.
record() {
  perf record -F 499 -g --call-graph dwarf,16384 -p "$1" -o "$OUT/perf.data" -- sleep "$2" \
    >"$OUT/perf.log" 2>&1
}

case "$WHAT" in
  proxy | clients)
    wait_line "\[2/6\] backlog"
    if [ "$WHAT" = proxy ]; then pid=$(pgrep -f "milvus-like proxy" | head -1); else pid=$bench; fi
    record "$pid" 2.5
    ;;
  datanode)
    wait_line "\[4/6\]"
    for _ in $(seq 1 200); do
      pid=$(pgrep -f "milvus-like datanode" | head -1 || true)
      [ -n "$pid" ] && break
      sleep 0.02
    done
    record "$pid" 3
    ;;
  broker)
    wait_line "cluster directory:"
    dir=$(grep -o "cluster directory: .*" "$OUT/progress.txt" | head -1 | cut -d' ' -f3-)
    for _ in $(seq 1 600); do [ -s "$dir/kafka/pid" ] && break; sleep 0.1; done
    pid=$(cat "$dir/kafka/pid")
    jcmd "$pid" JFR.start name=ingest settings=profile filename="$OUT/broker.jfr" >"$OUT/jcmd.log"
    wait_line "\[4/6\]"
    jcmd "$pid" JFR.stop name=ingest >>"$OUT/jcmd.log"
    ;;
esac
wait "$bench" || die "ingest_bench failed: $OUT/progress.txt"

if [ "$WHAT" = broker ]; then
  grep -E "\[2/6\]|\[3/6\]|\[4/6\]" "$OUT/progress.txt" >"$OUT/phases.txt"
  log "phases (the backlog from its line to the next, raw produce likewise):"
  cat "$OUT/phases.txt" >&2
  log "samples: jfr print --events jdk.ExecutionSample $OUT/broker.jfr; GC: --events jdk.GarbageCollection"
else
  perf report -i "$OUT/perf.data" --no-children --sort symbol --stdio 2>/dev/null \
    | grep -E "^ +[0-9]" | head -40 >"$OUT/report.txt" || true
  cat "$OUT/report.txt"
fi
grep "^summary" "$OUT/output.txt" | grep -E "backlog-insert|raw-produce|raw-consume-write|datanode-consume" >&2 || true
log "outputs: $OUT"
