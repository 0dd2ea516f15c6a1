#!/usr/bin/env bash
# A Docker engine for the kind cluster and the image builds, on a machine that
# may have none: uses the engine that answers, else installs Debian's docker.io
# and starts dockerd by hand (no systemd here), in the background.
#
#   docker.sh up      make sure an engine answers (install + start if needed);
#                     prints the env lines (same as `env`)
#   docker.sh down    stop the dockerd this script started (its pid file only;
#                     containers, kind nodes included, stop with it)
#   docker.sh env     print the environment every docker user here needs:
#                     eval "$(tests/kind/docker.sh env)"
#                     - PATH starts with a directory holding the right `docker`
#                       client (see "BuildKit" below); kind finds it there too
#                     - DOCKER (that client, by path) and DOCKER_BUILDKIT=1
#
# What a started engine uses (all under $MILVUS_LIKE_CACHE/docker, so images
# survive to the next run on a machine that keeps the cache):
#   data/          --data-root (images, containers, build cache)
#   daemon.json    its --config-file (storage driver, runtimes)
#   dockerd.log    dockerd's (and its containerd's) output
#   dockerd.pid    the pid of the dockerd started here
#   runc-capstrip  the OCI runtime wrapper, when needed (below)
#   client-bin/    `docker` -> the client with BuildKit built in
# The socket is the default /var/run/docker.sock, so kind, docker and every
# other client find it without DOCKER_HOST.
#
# Traps (checked on this machine: Debian bookworm, root, cgroup v1, docker.io
# 20.10.24 with containerd 1.6.20 and runc 1.1.5):
# - The capability bounding set lacks CAP_SYS_RESOURCE (bit 24 of CapBnd in
#   /proc/self/status), and docker asks for every capability for a
#   `--privileged` container (so for every kind node): runc fails with "unable
#   to apply caps". The runtime wrapper runc-capstrip, registered as the
#   default runtime, removes CAP_SYS_RESOURCE from the bundle's config.json
#   (create/run) and from the --process json (exec), then execs runc. It is
#   installed only where the bounding set lacks that capability.
# - BuildKit: our Dockerfiles use `RUN --mount=type=cache`, which needs
#   BuildKit. The docker 28 client in /usr/local/bin does BuildKit only through
#   the buildx plugin, which Debian bookworm does not package (without it:
#   "BuildKit is enabled but the buildx component is missing or broken").
#   Debian's docker 20.10 client (/usr/bin/docker) has BuildKit built in
#   (DOCKER_BUILDKIT=1) and understands RUN --mount without a syntax line, so
#   `env` puts that client first, unless the default client has buildx.
# - Debian's package tries to start docker through systemd, which does not run
#   here: dockerd is started by this script, with its own containerd.
#
# Environment: MILVUS_LIKE_CACHE, DOCKER_START_TIMEOUT (seconds, default 60).
#
# Measured here: installing docker.io (+ debootstrap, jq) with apt 25 s; dockerd
# up in ~1.5 s; a second `up` on a running engine 0.2 s.

set -euo pipefail

KIND_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR/../scripts source=../scripts/common.sh
source "$KIND_DIR/../scripts/common.sh"

DOCKER_HOME="$MILVUS_LIKE_CACHE/docker"
START_TIMEOUT="${DOCKER_START_TIMEOUT:-60}"
WRAPPER="$DOCKER_HOME/runc-capstrip"
CLIENT_BIN="$DOCKER_HOME/client-bin"

usage() {
  cat >&2 <<'EOF'
usage: docker.sh up
       docker.sh down
       docker.sh env
EOF
  exit 2
}

# lacks_sys_resource: succeeds when the capability bounding set has no
# CAP_SYS_RESOURCE (bit 24).
lacks_sys_resource() {
  local bnd
  bnd=$(awk '/^CapBnd:/ { print $2 }' /proc/self/status)
  (((0x$bnd >> 24 & 1) == 0))
}

# client: prints the docker client to use, one that can build with BuildKit
# when one is installed.
client() {
  if docker buildx version >/dev/null 2>&1; then
    command -v docker
  elif [ -x /usr/bin/docker ] && /usr/bin/docker version --format '{{.Client.Version}}' 2>/dev/null | grep -q '^20\.'; then
    echo /usr/bin/docker
  elif command -v docker >/dev/null; then
    command -v docker
  else
    return 1
  fi
}

engine_answers() {
  local c
  c=$(client) || return 1
  timeout 10 "$c" info >/dev/null 2>&1
}

write_wrapper() {
  # The script below is the runtime: dockerd -> containerd-shim -> this -> runc.
  local runc
  runc=$(command -v runc) || die "runc is not installed"
  cat >"$WRAPPER.tmp" <<EOF
#!/bin/sh
# Written by tests/kind/docker.sh: an OCI runtime that strips CAP_SYS_RESOURCE,
# which this machine's capability bounding set lacks, from the container's
# capabilities (create/run: the bundle's config.json; exec: the --process
# file), then runs runc with the same arguments.
RUNC=$runc
EOF
  cat >>"$WRAPPER.tmp" <<'EOF'
strip() { # strip FILE JQ_PATH
  [ -f "$1" ] || return 0
  jq -c "if $2 then $2 |= with_entries(.value |= (if type == \"array\" then map(select(. != \"CAP_SYS_RESOURCE\")) else . end)) else . end" \
    "$1" >"$1.capstrip" && mv "$1.capstrip" "$1"
}
cmd="" bundle="" process="" prev=""
for a in "$@"; do
  case "$prev" in
    --bundle | -b) bundle=$a ;;
    --process | -p) process=$a ;;
  esac
  case "$a" in
    --bundle=*) bundle=${a#--bundle=} ;;
    --process=*) process=${a#--process=} ;;
    create | run | exec) [ -z "$cmd" ] && cmd=$a ;;
  esac
  prev=$a
done
case "$cmd" in
  create | run) strip "${bundle:-.}/config.json" .process.capabilities ;;
  exec) [ -n "$process" ] && strip "$process" .capabilities ;;
esac
exec "$RUNC" "$@"
EOF
  chmod +x "$WRAPPER.tmp"
  mv "$WRAPPER.tmp" "$WRAPPER"
}

write_config() {
  local cfg="$DOCKER_HOME/daemon.json"
  if lacks_sys_resource; then
    write_wrapper
    jq -n --arg w "$WRAPPER" '{
      "storage-driver": "overlay2",
      "runtimes": {"capstrip": {"path": $w}},
      "default-runtime": "capstrip"
    }' >"$cfg"
  else
    jq -n '{"storage-driver": "overlay2"}' >"$cfg"
  fi
}

dockerd_pid() {
  local pid
  [ -f "$DOCKER_HOME/dockerd.pid" ] || return 1
  pid=$(cat "$DOCKER_HOME/dockerd.pid")
  [[ "$pid" =~ ^[0-9]+$ ]] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = dockerd ] || return 1
  echo "$pid"
}

cmd_env() {
  local c
  c=$(client) || die "no docker client: run docker.sh up"
  mkdir -p "$CLIENT_BIN"
  ln -sfn "$c" "$CLIENT_BIN/docker"
  echo "export DOCKER=$c DOCKER_BUILDKIT=1"
  # shellcheck disable=SC2016
  echo "export PATH=\"$CLIENT_BIN:\$PATH\""
}

cmd_up() {
  if engine_answers; then
    cmd_env
    return 0
  fi
  mkdir -p "$DOCKER_HOME"
  exec 8>"$DOCKER_HOME/.up.lock"
  flock 8
  if engine_answers; then
    exec 8>&-
    cmd_env
    return 0
  fi
  local t0=$SECONDS
  if ! command -v dockerd >/dev/null || ! command -v runc >/dev/null || ! command -v jq >/dev/null; then
    apt_install docker.io jq
    log "installed docker.io in $((SECONDS - t0))s"
  fi
  write_config
  if dockerd_pid >/dev/null; then
    log "dockerd (pid $(dockerd_pid)) runs but does not answer yet: waiting"
  else
    # A dockerd killed hard leaves its pid file, which blocks the next start.
    [ -f /var/run/docker.pid ] && ! kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null && rm -f /var/run/docker.pid
    mkdir -p "$DOCKER_HOME/data"
    echo "=== $(date '+%F %T') start ===" >>"$DOCKER_HOME/dockerd.log"
    # setsid: its own session, so it outlives this script and its caller.
    # shellcheck disable=SC2016
    setsid nohup bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$DOCKER_HOME/dockerd.pid" \
      dockerd --config-file "$DOCKER_HOME/daemon.json" --data-root "$DOCKER_HOME/data" \
      </dev/null >>"$DOCKER_HOME/dockerd.log" 2>&1 &
  fi
  local deadline=$((SECONDS + START_TIMEOUT))
  until engine_answers; do
    if ((SECONDS >= deadline)) || ! { sleep 0.3; dockerd_pid >/dev/null; }; then
      tail -n 30 "$DOCKER_HOME/dockerd.log" >&2
      exec 8>&-
      die "dockerd did not answer within ${START_TIMEOUT}s (log: $DOCKER_HOME/dockerd.log)"
    fi
  done
  exec 8>&-
  log "dockerd up (pid $(dockerd_pid), data root $DOCKER_HOME/data) in $((SECONDS - t0))s"
  cmd_env
}

cmd_down() {
  local pid
  if ! pid=$(dockerd_pid); then
    log "no dockerd started by docker.sh runs"
    return 0
  fi
  # dockerd stops its containers (10 s grace each, in parallel) and its containerd.
  stop_pidfile_wait "$pid" 60
  rm -f "$DOCKER_HOME/dockerd.pid"
  log "stopped dockerd (pid $pid)"
}

# stop_pidfile_wait PID SECONDS: SIGTERM, then kill -9 after SECONDS.
stop_pidfile_wait() {
  local pid=$1 deadline=$((SECONDS + $2))
  kill -TERM "$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
  if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  env) cmd_env ;;
  *) usage ;;
esac
