#!/usr/bin/env bash
# Builds and runs a real single-node, single-drive MinIO server on 127.0.0.1 for
# tests: the S3-compatible object storage that data nodes flush segments to.
#
#   minio.sh install                   build (once) and print the path of the minio binary
#   minio.sh start DIR                 start (or restart) the instance in DIR on a free
#                                      port; prints http://127.0.0.1:PORT once ready
#   minio.sh create-bucket DIR NAME    create bucket NAME (signed S3 PutBucket), idempotent
#   minio.sh stop DIR                  graceful stop (kill -9 after ~10 s), keeps data
#   minio.sh kill DIR                  kill -9 (chaos tests), keeps data
#
# DIR holds everything of one instance: data/, minio.log, pid, port, endpoint. A DIR
# that held an instance before is restarted on the same port with the same data.
#
# Source: the module zip of github.com/minio/minio from the Go module proxy (no git,
# no GitHub, no dl.min.io), built with `go install` (its go.mod has no replace
# directives). MinIO's tags (RELEASE.2025-...) are not Go versions, so the version is
# a pseudo-version; the default is what the proxy answered for @latest in 2026-11
# (commit 7aac2a2c5b7c of 2026-02-12). The build takes a few minutes on 2 cores; the
# binary is cached under $MILVUS_LIKE_CACHE/minio-<version>/bin, so a second run is
# instant.
#
# Credentials are fixed test values (ROOT_USER / ROOT_PASSWORD below), region
# us-east-1. The web console is off.
#
# Environment: MINIO_VERSION (Go module version), MINIO_START_TIMEOUT (seconds,
# default 30), MINIO_STOP_TIMEOUT (default 10).

set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$SCRIPT_DIR/common.sh"

MINIO_VERSION="${MINIO_VERSION:-v0.0.0-20260212201848-7aac2a2c5b7c}"
MINIO_MODULE=github.com/minio/minio
# Bump when the build recipe below changes, so cached binaries are rebuilt.
RECIPE=2
MINIO_HOME="$MILVUS_LIKE_CACHE/minio-$MINIO_VERSION"
BIN="$MINIO_HOME/bin/minio"
STAMP="$MINIO_HOME/bin/.built"
START_TIMEOUT="${MINIO_START_TIMEOUT:-30}"
STOP_TIMEOUT="${MINIO_STOP_TIMEOUT:-10}"
ROOT_USER="milvuslike"
ROOT_PASSWORD="milvuslike-secret"
REGION="us-east-1"

usage() {
  cat >&2 <<'EOF'
usage: minio.sh install
       minio.sh start DIR
       minio.sh create-bucket DIR NAME
       minio.sh stop DIR
       minio.sh kill DIR
EOF
  exit 2
}

# ---------------------------------------------------------------- install

# ldflags: MinIO's release metadata (as its buildscripts/gen-ldflags.go sets it),
# taken from the pseudo-version, so `minio --version` names the commit instead of
# DEVELOPMENT.GOGET.
ldflags() {
  local flags="-s -w"
  if [[ $MINIO_VERSION =~ ([0-9]{4})([0-9]{2})([0-9]{2})([0-9]{2})([0-9]{2})([0-9]{2})-([0-9a-f]{12})$ ]]; then
    local m=("${BASH_REMATCH[@]}")
    local stamp="${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${m[6]}Z"
    flags+=" -X $MINIO_MODULE/cmd.Version=$stamp -X $MINIO_MODULE/cmd.CopyrightYear=${m[1]}"
    flags+=" -X $MINIO_MODULE/cmd.ReleaseTag=DEVELOPMENT.${stamp//:/-}"
    flags+=" -X $MINIO_MODULE/cmd.CommitID=${m[7]} -X $MINIO_MODULE/cmd.ShortCommitID=${m[7]}"
  fi
  echo "$flags"
}

# install_bin: makes sure $BIN is built from $MINIO_VERSION with this recipe.
install_bin() {
  local want="recipe=$RECIPE version=$MINIO_VERSION"
  if [ -x "$BIN" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$want" ]; then
    return 0
  fi
  command -v go >/dev/null || die "go is not installed (MinIO is built from the Go module proxy)"
  mkdir -p "$MINIO_HOME/bin"
  # Serialize concurrent installs (tests starting several servers at once). fd 8 is
  # closed again before anything long-lived is started.
  exec 8>"$MINIO_HOME/.install.lock"
  flock 8
  if [ -x "$BIN" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$want" ]; then
    exec 8>&-
    return 0
  fi
  rm -f "$STAMP"
  log "building MinIO $MINIO_MODULE@$MINIO_VERSION (takes a few minutes on 2 cores)"
  local t0=$SECONDS buildlog="$MINIO_HOME/build.log"
  # Module downloads stay in our cache; the local toolchain (go.mod asks for go1.24+).
  if ! (
    export GOMODCACHE="$MILVUS_LIKE_CACHE/go-mod" GOFLAGS="-modcacherw" \
      GOTOOLCHAIN=local CGO_ENABLED=0 GOBIN="$MINIO_HOME/bin"
    go install -trimpath -ldflags "$(ldflags)" "$MINIO_MODULE@$MINIO_VERSION"
  ) >"$buildlog" 2>&1; then
    tail -n 40 "$buildlog" >&2
    exec 8>&-
    die "building MinIO $MINIO_VERSION failed after $((SECONDS - t0))s (log: $buildlog)"
  fi
  if [ ! -x "$BIN" ]; then
    exec 8>&-
    die "go install did not produce $BIN"
  fi
  echo "$want" >"$STAMP"
  exec 8>&-
  log "built $BIN in $((SECONDS - t0))s ($(du -h "$BIN" | cut -f1))"
}

# ---------------------------------------------------------------- instance helpers


# minio_pid DIR: prints the pid of the live server of DIR (and succeeds), or fails.
# A pid file whose process is gone or is not this server is removed.
minio_pid() {
  local dir=$1 pid cmd
  [ -f "$dir/pid" ] || return 1
  pid=$(cat "$dir/pid")
  if [[ "$pid" =~ ^[0-9]+$ ]] && [ -r "/proc/$pid/cmdline" ]; then
    cmd=$(proc_cmdline "$pid")
    if [[ "$cmd" == *minio*server*"$dir/data"* ]]; then
      echo "$pid"
      return 0
    fi
  fi
  rm -f "$dir/pid"
  return 1
}

ready() { curl -fsS -m 2 -o /dev/null "http://127.0.0.1:$1/minio/health/ready" 2>/dev/null; }

print_logs() {
  log "last 40 lines of $1/minio.log:"
  tail -n 40 "$1/minio.log" >&2 2>/dev/null || true
}

# ---------------------------------------------------------------- commands

cmd_start() {
  local dir port pid
  dir=$(abs_dir "$1")
  install_bin
  if pid=$(minio_pid "$dir"); then
    log "minio already running in $dir (pid $pid)"
    port=$(cat "$dir/port")
  else
    mkdir -p "$dir/data"
    if [ -s "$dir/port" ]; then
      port=$(cat "$dir/port")
      if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        die "port $port (from $dir) is already in use by another process"
      fi
    else
      port=$(free_port)
      echo "$port" >"$dir/port"
    fi
    rm -f "$dir/endpoint"
    echo "=== $(date '+%F %T') start ===" >>"$dir/minio.log"
    # setsid: own session, survives this script; the inner bash writes its own pid
    # and then execs minio, so DIR/pid is minio's.
    # shellcheck disable=SC2016
    MINIO_ROOT_USER="$ROOT_USER" MINIO_ROOT_PASSWORD="$ROOT_PASSWORD" \
      MINIO_REGION="$REGION" MINIO_BROWSER=off MINIO_UPDATE=off \
      setsid nohup bash -c 'echo $$ >"$1/pid"; shift; exec "$@"' _ "$dir" \
      "$BIN" server --address "127.0.0.1:$port" --quiet --anonymous "$dir/data" \
      </dev/null >>"$dir/minio.log" 2>&1 &
    local launcher=$!
    pid=$(launched_pid "$dir" "$launcher")
    log "started minio in $dir (pid $pid, port $port), waiting for it to be ready"
  fi

  await_ready minio "$pid" "$dir" "$START_TIMEOUT" 0.1 ready "$port"
  echo "http://127.0.0.1:$port" >"$dir/endpoint"
  echo "http://127.0.0.1:$port"
}

# create_bucket ENDPOINT NAME: a SigV4-signed S3 PutBucket request (python3 stdlib
# only; no mc, no SDK). "Already owned by you" counts as success.
create_bucket() {
  python3 - "$1" "$2" "$ROOT_USER" "$ROOT_PASSWORD" "$REGION" <<'PY'
import datetime, hashlib, hmac, sys, urllib.error, urllib.request
endpoint, bucket, key, secret, region = sys.argv[1:]
host = endpoint.split("://", 1)[1].rstrip("/")
now = datetime.datetime.now(datetime.timezone.utc)
amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
payload = hashlib.sha256(b"").hexdigest()
headers = {"host": host, "x-amz-content-sha256": payload, "x-amz-date": amz_date}
signed = ";".join(sorted(headers))
canonical = "\n".join(["PUT", "/" + bucket, "",
                       "".join(f"{k}:{headers[k]}\n" for k in sorted(headers)),
                       signed, payload])
scope = f"{day}/{region}/s3/aws4_request"
to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope,
                     hashlib.sha256(canonical.encode()).hexdigest()])
k = ("AWS4" + secret).encode()
for part in (day, region, "s3", "aws4_request"):
    k = hmac.new(k, part.encode(), hashlib.sha256).digest()
signature = hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()
req = urllib.request.Request(f"{endpoint.rstrip('/')}/{bucket}", method="PUT", data=b"")
for name, value in headers.items():
    if name != "host":
        req.add_header(name, value)
req.add_header("Authorization", f"AWS4-HMAC-SHA256 Credential={key}/{scope}, "
               f"SignedHeaders={signed}, Signature={signature}")
try:
    urllib.request.urlopen(req, timeout=10)
except urllib.error.HTTPError as e:
    body = e.read().decode(errors="replace")
    if e.code == 409 and "BucketAlreadyOwnedByYou" in body:
        sys.exit(0)
    sys.exit(f"PutBucket {bucket}: HTTP {e.code}: {body}")
except OSError as e:
    sys.exit(f"PutBucket {bucket}: {e}")
PY
}

cmd_create_bucket() {
  local dir name
  dir=$(abs_dir "$1")
  name=$2
  [[ "$name" =~ ^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$ ]] ||
    die "bucket name '$name' is invalid: 3-63 lowercase letters, digits, '.' and '-'"
  [ -s "$dir/endpoint" ] || die "no running minio in $dir (no $dir/endpoint): run start first"
  minio_pid "$dir" >/dev/null || die "minio in $dir is not running"
  create_bucket "$(cat "$dir/endpoint")" "$name" || die "creating bucket $name in $dir failed"
  log "bucket $name ready in $dir"
}

cmd_stop() {
  stop_service minio minio_pid "$(abs_dir "$1")" "$STOP_TIMEOUT" endpoint
}

cmd_kill() {
  kill_service minio minio_pid "$(abs_dir "$1")" endpoint
}

case "${1:-}" in
  install)
    [ $# -eq 1 ] || usage
    install_bin
    echo "$BIN"
    ;;
  start)
    [ $# -eq 2 ] || usage
    cmd_start "$2"
    ;;
  create-bucket)
    [ $# -eq 3 ] || usage
    cmd_create_bucket "$2" "$3"
    ;;
  stop)
    [ $# -eq 2 ] || usage
    cmd_stop "$2"
    ;;
  kill)
    [ $# -eq 2 ] || usage
    cmd_kill "$2"
    ;;
  *) usage ;;
esac
