#!/usr/bin/env bash
# CPU seconds a standalone process spends per inserted batch of random rows, for
# one or more node binaries, alternating (A/B against an earlier commit). Steadier
# than rows/s on a 2-core machine, where the client shares the cores.
#
#   tests/bench/standalone_cpu.sh [--rounds 3] [--runs 3] [--rows 1000000] BIN_DIR...
#
# Each BIN_DIR holds a `milvus-like` (e.g. a worktree's target/release). Per round
# and binary: a fresh `milvus-like standalone` on a fresh data directory (the
# ingest bench's standalone options), a 128-d collection, one warm-up insert, then
# --runs timed `milvus-like insert --random ROWS` (the client is the first
# BIN_DIR's). Prints one line per insert: the process's CPU seconds (utime +
# stime from /proc/PID/stat) and the insert's wall time. Free memory is written
# once first (warm_memory). Nothing else may run. The last standalone's log stays
# in target/bench/standalone-cpu-<time>/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
source tests/scripts/common.sh

ROUNDS=3 RUNS=3 ROWS=1000000
while (($#)); do
  case "$1" in
    --rounds) ROUNDS=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --rows) ROWS=$2; shift 2 ;;
    -*) die "unknown flag $1" ;;
    *) break ;;
  esac
done
(($#)) || die "usage: $0 [--rounds N] [--runs N] [--rows N] BIN_DIR..."
for b in "$@"; do [ -x "$b/milvus-like" ] || die "$b/milvus-like is not an executable"; done
CLIENT="$1/milvus-like"
busy_check "the run"
no_page_reporting
log "$PAGE_REPORTING"
log "warm memory: $(warm_memory)"

TMP="$PWD/target/bench/standalone-cpu-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$TMP"
# Every listener on a port of its own, so that nothing else's defaults collide.
listen=()
for role in rootcoord proxy datacoord datanode; do
  port=$(free_port)
  printf -v "${role}_port" %s "$port"
  listen+=("--$role-listen" "127.0.0.1:$port" "--$role-http-listen" "127.0.0.1:$(free_port)")
done
export MILVUS_LIKE_PROXY_ENDPOINT="127.0.0.1:$proxy_port"
export MILVUS_LIKE_ROOTCOORD_ENDPOINTS="127.0.0.1:$rootcoord_port"
tck=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

for round in $(seq "$ROUNDS"); do
  for b in "$@"; do
    data="$TMP/data"
    rm -rf "$data"
    "$b/milvus-like" standalone --data-dir "$data" --channels 3 --memory-mib 256 \
      --flush-rows 10000000 --flush-mib 1024 --flush-age 600s "${listen[@]}" \
      >"$TMP/standalone.log" 2>&1 &
    pid=$!
    wait_for_port "$proxy_port" 30 || { cat "$TMP/standalone.log" >&2; die "standalone did not start"; }
    for _ in $(seq 50); do
      "$CLIENT" collection create bench --dim 128 >/dev/null 2>&1 && break
      sleep 0.2
    done
    "$CLIENT" insert -c bench --random "$ROWS" >/dev/null
    for run in $(seq "$RUNS"); do
      c0=$(cpu_ticks "$pid") t0=$(date +%s.%N)
      "$CLIENT" insert -c bench --random "$ROWS" >/dev/null
      c1=$(cpu_ticks "$pid") t1=$(date +%s.%N)
      printf 'round=%s node=%s run=%s rows=%s cpu_s=%.2f wall_s=%.2f\n' "$round" "$b" "$run" \
        "$ROWS" "$(echo "($c1 - $c0) / $tck" | bc -l)" "$(echo "$t1 - $t0" | bc -l)"
    done
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    rm -rf "$data"
  done
done
