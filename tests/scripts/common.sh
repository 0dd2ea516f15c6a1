#!/usr/bin/env bash
# Shared helpers for the install and service scripts. Source it; do not run it.
#
# Everything downloaded or built lives under $MILVUS_LIKE_CACHE (default
# ~/.cache/milvus-like), keyed by version, so a second run reuses it and never
# touches the network.

set -euo pipefail

MILVUS_LIKE_CACHE="${MILVUS_LIKE_CACHE:-$HOME/.cache/milvus-like}"
mkdir -p "$MILVUS_LIKE_CACHE"

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# cpu_busy_pct: how busy the CPUs are (percent, over 1 s).
cpu_busy_pct() {
  python3 - <<'PY'
import time
def snap():
    f = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    return sum(f), f[3] + f[4]
t1, i1 = snap(); time.sleep(1); t2, i2 = snap()
print(round(100 * (1 - (i2 - i1) / max(t2 - t1, 1))))
PY
}

# no_page_reporting: turns the virtio balloon's free page reporting off until the
# script exits (root only) and says what it did in PAGE_REPORTING, for the run's
# record. Call it in the script's own shell, not in a pipeline or $(...): its
# EXIT trap puts the setting back. With reporting on, the guest hands every free
# 2 MiB block back to the host within seconds, and the next write to it costs a
# host fault: writing 3 GB into the page cache took 5.9-7.2 s of system time
# into such memory against 0.9 s into memory used before (dd, 2026-12-05), so
# whichever benchmark phase meets it first looks 2-4 times slower.
no_page_reporting() {
  local param=/sys/module/page_reporting/parameters/page_reporting_order
  if [ ! -e "$param" ]; then
    PAGE_REPORTING="free page reporting: not on this kernel"
    return
  fi
  local was
  was=$(cat "$param")
  # An order above the largest (10) matches no free block: nothing is reported.
  if { echo 11 >"$param"; } 2>/dev/null; then
    # shellcheck disable=SC2064 # expand now: restore this value at exit
    trap "echo $was >$param 2>/dev/null || true" EXIT
    PAGE_REPORTING="free page reporting: off for the run (page_reporting_order $was -> 11)"
  else
    PAGE_REPORTING="free page reporting: on (page_reporting_order $was; could not turn it off, not root?): figures will vary from run to run"
  fi
}

# warm_memory: writes every free page of the machine once (MemFree less 1 GiB, in
# 256 MiB blocks), as the benchmarks' warm-memory phase does
# (milvus_like_tests::measure::warm_memory): after no_page_reporting, the phases
# measured then meet memory the host has backed already.
warm_memory() {
  python3 - <<'PY'
block = 256 << 20
free_kib = next(int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemFree:"))
held = [bytearray(b"\x01") * block for _ in range(max(0, free_kib - (1 << 20)) * 1024 // block)]
print(f"touched {len(held) * block >> 20} MiB")
PY
}

# busy_check WHAT: logs how busy the CPUs are before WHAT, with a warning over 10%:
# a benchmark's figures are low when something else keeps the cores busy.
busy_check() {
  local pct
  pct=$(cpu_busy_pct)
  if ((pct > 10)); then
    log "warning: the CPUs are ${pct}% busy before $1; figures will be low (see top)"
  else
    log "CPUs ${pct}% busy before $1"
  fi
}

# Prints a TCP port on 127.0.0.1 that nothing listens on right now, picked at random
# below Linux's ephemeral range (32768-60999), which outgoing connections use for
# their own local ports.
free_port() {
  python3 - <<'PY'
import random, socket
for _ in range(1000):
    port = random.randint(20000, 31999)
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        continue
    finally:
        s.close()
    print(port)
    break
PY
}

# abs_dir DIR: creates DIR if needed and prints its absolute path.
abs_dir() { mkdir -p "$1" && (cd "$1" && pwd); }

# wait_for_port PORT SECONDS: succeed as soon as 127.0.0.1:PORT accepts.
wait_for_port() {
  local port=$1 deadline=$((SECONDS + $2))
  while ((SECONDS < deadline)); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    sleep 0.2
  done
  return 1
}

# apt_install PKG...: installs missing Debian packages (runs apt-get update once).
apt_install() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  ((${#missing[@]} == 0)) && return 0
  log "apt-get install ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

# stop_instance NAME PID DIR TIMEOUT ADDRESS_FILE: SIGTERM to PID, kill -9 after
# TIMEOUT seconds; then removes DIR/pid and DIR/ADDRESS_FILE. Kills nothing else.
stop_instance() {
  local name=$1 pid=$2 dir=$3 timeout=$4 address=$5
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + timeout))
  while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    log "$name (pid $pid) still running after ${timeout}s: kill -9"
    kill -KILL "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
  fi
  rm -f "$dir/pid" "$dir/$address"
  log "stopped $name in $dir (pid $pid)"
}

# kill_instance NAME PID DIR ADDRESS_FILE: kill -9 PID (for chaos tests), wait for it,
# remove DIR/pid and DIR/ADDRESS_FILE; the data stays for a restart.
kill_instance() {
  local name=$1 pid=$2 dir=$3 address=$4
  kill -KILL "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + 10))
  while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.05; done
  rm -f "$dir/pid" "$dir/$address"
  log "killed $name in $dir (pid $pid, SIGKILL)"
}

# proc_cmdline PID: the command line of PID, arguments separated by spaces (empty
# if it is gone). It reads empty for a moment while a launcher execs its command
# (between execve's switch to the new memory map and the loader setting up its
# arguments) and for a zombie: look again for a second before taking that.
proc_cmdline() {
  local cmd
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    cmd=$(tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null || true)
    [ -n "$cmd" ] && break
    sleep 0.1
  done
  printf '%s' "$cmd"
}

# launched_pid DIR LAUNCHER: the pid a launch wrote to DIR/pid (waiting 5 s at
# most), else the launcher's own.
launched_pid() {
  local dir=$1 launcher=$2 t0=$SECONDS
  while [ ! -s "$dir/pid" ] && ((SECONDS - t0 < 5)); do sleep 0.05; done
  cat "$dir/pid" 2>/dev/null || echo "$launcher"
}

# await_ready NAME PID DIR TIMEOUT INTERVAL PROBE [ARG...]: runs PROBE ARG... every
# INTERVAL seconds until it succeeds. When PID exits first, or TIMEOUT seconds
# pass (then PID is killed: no half-started server is left behind), prints the
# logs (the calling script's print_logs DIR), removes DIR/pid and dies; the data stays.
await_ready() {
  local name=$1 pid=$2 dir=$3 timeout=$4 interval=$5
  shift 5
  local deadline=$((SECONDS + timeout))
  until "$@"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      print_logs "$dir"
      rm -f "$dir/pid"
      die "$name in $dir exited during startup"
    fi
    if ((SECONDS >= deadline)); then
      print_logs "$dir"
      kill -KILL "$pid" 2>/dev/null || true
      rm -f "$dir/pid"
      die "$name in $dir not ready after ${timeout}s (pid $pid killed; data kept)"
    fi
    sleep "$interval"
  done
}

# stop_service NAME PID_FN DIR TIMEOUT ADDRESS_FILE / kill_service NAME PID_FN DIR
# ADDRESS_FILE: a service script's `stop` and `kill` commands. PID_FN DIR prints the
# instance's pid or fails when it is not running (then there is nothing to do).
stop_service() {
  local name=$1 pid_fn=$2 dir=$3 timeout=$4 address=$5 pid
  if ! pid=$("$pid_fn" "$dir"); then
    log "$name in $dir is not running"
    rm -f "$dir/$address"
    return 0
  fi
  stop_instance "$name" "$pid" "$dir" "$timeout" "$address"
}

kill_service() {
  local name=$1 pid_fn=$2 dir=$3 address=$4 pid
  if ! pid=$("$pid_fn" "$dir"); then
    log "$name in $dir is not running"
    return 0
  fi
  kill_instance "$name" "$pid" "$dir" "$address"
}

# stop_pidfile FILE: kills the process recorded in FILE (only that one), then waits.
stop_pidfile() {
  local f=$1 pid
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}
