#!/usr/bin/env bash
# Builds and runs TiKV PD's pd-server and pd-tso-bench: the reference TSO
# (timestamp oracle) that we benchmark our root coordinator's TSO against.
#
#   pd.sh install                      build (once) and print the bin dir holding
#                                      pd-server and pd-tso-bench
#   pd.sh start DIR                    start one pd-server on free 127.0.0.1 ports,
#                                      data/logs/pid in DIR; prints the client URL
#                                      and writes it to DIR/endpoint
#   pd.sh bench DIR CLIENTS DURATION   run pd-tso-bench against DIR's server with
#                                      CLIENTS concurrent GetTS loops for DURATION
#                                      (10s, 1m, or plain seconds)
#   pd.sh stop DIR                     stop DIR's server
#
# Source: the module zips of github.com/tikv/pd from the Go module proxy (no git,
# no GitHub). PD's own tags (v8.x) are not valid Go versions for a module path
# without a /v8 suffix, so versions are pseudo-versions (v1.1.0-beta.0.<time>-<hash>),
# and the proxy reachable here serves only some of them (others answer
# "403 This module version is not available"). So:
#   PD_SERVER_VERSION  pd-server, default: the newest root-module version found on the
#                      proxy, commit 7179657d129b of 2024-04-07 (the one pingcap/tiflow pinned
#                      in mid-2024; after PD v8.0.0, before v8.1.0). Its root module needs
#                      neither client/ nor tools/ to build pd-server.
#   PD_BENCH_VERSION   pd-tso-bench, default: 9268bed87199 (2022-02-07), the newest
#                      version on the proxy in which tools/pd-tso-bench and the client
#                      are still inside the root module; later versions moved them to
#                      github.com/tikv/pd/tools and github.com/tikv/pd/client, and the
#                      proxy serves no version of .../tools at all. pd-tso-bench talks
#                      the stable pdpb.PD/Tso gRPC stream, so it works against newer servers.
# If you set both to one version whose go.mod replaces ./client or whose tools live in
# their own module, install fetches github.com/tikv/pd/client and .../tools at the same
# commit (v0.0.0-<time>-<hash>) and lays them out as client/ and tools/.
#
# Environment for bench:
#   PD_BENCH_PD_CLIENTS  pd-tso-bench -client: number of pd.Client objects, each with its
#                        own gRPC connection and TSO stream (default 1); CLIENTS
#                        goroutines run on EACH of them.
#   PD_BENCH_INTERVAL    reporting interval (default 1s)
#   PD_BENCH_ARGS        extra pd-tso-bench flags, e.g. "-batch-interval 1ms"
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

PD_SERVER_VERSION="${PD_SERVER_VERSION:-v1.1.0-beta.0.20240407022249-7179657d129b}"
PD_BENCH_VERSION="${PD_BENCH_VERSION:-v1.1.0-beta.0.20220207063535-9268bed87199}"
PD_MODULE=github.com/tikv/pd
# Bump when the build recipe below changes, so cached binaries are rebuilt.
RECIPE=1

PD_HOME="$MILVUS_LIKE_CACHE/pd-$PD_SERVER_VERSION"
BIN_DIR="$PD_HOME/bin"
STAMP="$BIN_DIR/.built"

go_env() {
  export GOMODCACHE="$MILVUS_LIKE_CACHE/go-mod" # downloads stay in our cache
  export GOFLAGS="-mod=mod -modcacherw"
  export GOTOOLCHAIN=local CGO_ENABLED=0
}

# sub_version V: the pseudo-version of a submodule (client, tools) at the commit of
# root pseudo-version V; submodules have no tags, so their base is v0.0.0.
sub_version() {
  [[ $1 =~ ([0-9]{14}-[0-9a-f]{12})$ ]] || die "not a pseudo-version: $1"
  echo "v0.0.0-${BASH_REMATCH[1]}"
}

# fetch MODULE VERSION DEST: go mod download the module zip and copy it to DEST.
fetch() {
  local mod=$1 ver=$2 dest=$3 json dir
  log "go mod download $mod@$ver"
  json=$(go mod download -json "$mod@$ver" 2>"$MILVUS_LIKE_CACHE/.pd-fetch.err") || true
  dir=$(printf '%s' "$json" | python3 -c 'import json,sys
try: d=json.load(sys.stdin)
except Exception: sys.exit(0)
print(d.get("Dir","") if not d.get("Error") else "")')
  [ -n "$dir" ] && [ -d "$dir" ] ||
    die "could not download $mod@$ver: $json $(cat "$MILVUS_LIKE_CACHE/.pd-fetch.err")"
  rm -rf "$dest"
  mkdir -p "$(dirname "$dest")"
  cp -r "$dir" "$dest"
  chmod -R u+w "$dest"
}

# pd_tree VERSION [tools]: lays out pd (root) at $MILVUS_LIKE_CACHE/pd-VERSION/src with client/
# (and tools/ when asked) from the same commit; prints the src dir.
pd_tree() {
  local ver=$1 want_tools=${2:-} home src
  home="$MILVUS_LIKE_CACHE/pd-$ver"
  src="$home/src"
  if [ ! -f "$src/.fetched" ]; then
    fetch "$PD_MODULE" "$ver" "$src"
    touch "$src/.fetched"
  fi
  if grep -Eq '^[[:space:]]*(replace[[:space:]]+)?github.com/tikv/pd/client[[:space:]]*=>[[:space:]]*\./client' "$src/go.mod" &&
    [ ! -f "$src/client/go.mod" ]; then
    fetch "$PD_MODULE/client" "$(sub_version "$ver")" "$src/client"
  fi
  if [ -n "$want_tools" ] && [ ! -f "$src/tools/pd-tso-bench/main.go" ]; then
    fetch "$PD_MODULE/tools" "$(sub_version "$ver")" "$src/tools"
  fi
  echo "$src"
}

timed() { # timed LOGFILE CMD...: run CMD with its output in LOGFILE, log the time
  local logf=$1 t0=$SECONDS
  shift
  if ! "$@" >"$logf" 2>&1; then
    tail -n 40 "$logf" >&2
    die "failed ($((SECONDS - t0))s): $* (log: $logf)"
  fi
  log "done in $((SECONDS - t0))s: $*"
}

build_server() {
  local src ldflags hash
  src=$(pd_tree "$PD_SERVER_VERSION")
  hash=${PD_SERVER_VERSION##*-}
  ldflags="-X '$PD_MODULE/pkg/versioninfo.PDReleaseVersion=$PD_SERVER_VERSION'"
  ldflags+=" -X '$PD_MODULE/pkg/versioninfo.PDGitHash=$hash'"
  ldflags+=" -X '$PD_MODULE/pkg/versioninfo.PDGitBranch=go-module-proxy'"
  log "building pd-server $PD_SERVER_VERSION (takes a few minutes on 2 cores)"
  (cd "$src" && timed "$PD_HOME/build-pd-server.log" go build -trimpath -tags without_dashboard \
    -ldflags "$ldflags" -o "$BIN_DIR/pd-server" ./cmd/pd-server)
}

build_bench() {
  local src dir pkg
  src=$(pd_tree "$PD_BENCH_VERSION" tools)
  if [ -f "$src/tools/go.mod" ]; then
    dir="$src/tools" pkg=./pd-tso-bench # tools as their own module (PD >= late 2023)
  elif [ -f "$src/tools/pd-tso-bench/go.mod" ]; then
    dir="$src/tools/pd-tso-bench" pkg=. # the bench as its own module (2022-2023)
  else
    dir="$src" pkg=./tools/pd-tso-bench # the bench inside the root module (<= 2022-02)
  fi
  log "building pd-tso-bench $PD_BENCH_VERSION"
  (cd "$dir" && timed "$PD_HOME/build-pd-tso-bench.log" go build -trimpath -o "$BIN_DIR/pd-tso-bench" "$pkg")
}

cmd_install() {
  local want="recipe=$RECIPE server=$PD_SERVER_VERSION bench=$PD_BENCH_VERSION"
  if [ -x "$BIN_DIR/pd-server" ] && [ -x "$BIN_DIR/pd-tso-bench" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$want" ]; then
    echo "$BIN_DIR"
    return 0
  fi
  command -v go >/dev/null || die "go is not installed"
  mkdir -p "$BIN_DIR"
  exec 9>"$PD_HOME/.install.lock"
  flock 9
  if [ "$(cat "$STAMP" 2>/dev/null)" != "$want" ]; then
    go_env
    rm -f "$STAMP"
    build_server
    build_bench
    echo "$want" >"$STAMP"
  fi
  echo "$BIN_DIR"
}

need_dir() { [ -n "${1:-}" ] || die "usage: $0 $2 DIR"; }

cmd_start() {
  local dir=$1 bin cport pport pid url attempt
  need_dir "$dir" start
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  if [ -f "$dir/pd.pid" ] && kill -0 "$(cat "$dir/pd.pid")" 2>/dev/null; then
    log "pd-server already running (pid $(cat "$dir/pd.pid"))"
    cat "$dir/endpoint"
    return 0
  fi
  bin=$(cmd_install)
  for attempt in 1 2 3; do
    cport=$(free_port)
    pport=$(free_port)
    [ "$cport" != "$pport" ] || continue
    url="http://127.0.0.1:$cport"
    rm -rf "$dir/data"
    setsid "$bin/pd-server" --name pd \
      --data-dir "$dir/data" \
      --client-urls "$url" --peer-urls "http://127.0.0.1:$pport" \
      --initial-cluster "pd=http://127.0.0.1:$pport" \
      --log-file "$dir/pd.log" </dev/null >"$dir/pd.stdout" 2>&1 &
    pid=$!
    echo "$pid" >"$dir/pd.pid"
    log "pd-server pid $pid, client $url, peer :$pport (attempt $attempt)"
    if wait_for_port "$cport" 30 && wait_ready "$url" "$pid" 60; then
      echo "$url" >"$dir/endpoint"
      echo "$url"
      return 0
    fi
    tail -n 20 "$dir/pd.log" "$dir/pd.stdout" >&2 2>/dev/null || true
    stop_pidfile "$dir/pd.pid"
  done
  die "pd-server did not become ready; see $dir/pd.log"
}

# wait_ready URL PID SECONDS: healthy member and an elected leader (TSO is served by it).
wait_ready() {
  local url=$1 pid=$2 deadline=$((SECONDS + $3))
  while ((SECONDS < deadline)); do
    kill -0 "$pid" 2>/dev/null || return 1
    if curl -fsS -m 2 "$url/pd/api/v1/health" 2>/dev/null | grep -q '"health": *true' &&
      curl -fsS -m 2 "$url/pd/api/v1/leader" 2>/dev/null | grep -q '"name"'; then
      return 0
    fi
    sleep 0.3
  done
  return 1
}

# tso_rpcs URL: TsoRequest messages the server has received so far (one per client batch).
tso_rpcs() {
  { curl -fsS -m 5 "$1/metrics" 2>/dev/null || true; } |
    awk '/^grpc_server_msg_received_total\{.*grpc_method="Tso"/ {s += $NF} END {printf "%d\n", s}'
}

cmd_bench() {
  local dir=${1:-} clients=${2:-} dur=${3:-} bin url out before after pdc interval
  [ -n "$dir" ] && [ -n "$clients" ] && [ -n "$dur" ] || die "usage: $0 bench DIR CLIENTS DURATION"
  [[ $clients =~ ^[0-9]+$ ]] && ((clients > 0)) || die "CLIENTS must be a positive integer"
  [[ $dur =~ ^[0-9]+$ ]] && dur="${dur}s"
  [ -f "$dir/endpoint" ] || die "no $dir/endpoint: run '$0 start $dir' first"
  url=$(cat "$dir/endpoint")
  bin=$(cmd_install)
  pdc=${PD_BENCH_PD_CLIENTS:-1}
  interval=${PD_BENCH_INTERVAL:-1s}
  out="$dir/bench-c$clients-client$pdc-$(date +%Y%m%d-%H%M%S).txt"
  before=$(tso_rpcs "$url")
  # -v: per-interval lines and, at the end, the client's Prometheus metrics (batch sizes).
  # shellcheck disable=SC2086
  "$bin/pd-tso-bench" -pd "$url" -client "$pdc" -c "$clients" -duration "$dur" \
    -interval "$interval" -count 1 -v ${PD_BENCH_ARGS:-} >"$out" 2>&1 ||
    { cat "$out"; die "pd-tso-bench failed"; }
  after=$(tso_rpcs "$url")
  # Everything but the Prometheus dump (kept in $out).
  grep -Ev '^(# (HELP|TYPE) |[a-z_]+(\{[^}]*\})? [-+0-9.eE]+$|[a-z_]+\{[^}]*\} [-+0-9.eEInfNa]+$)' "$out" | grep -v '^\[' | cat -s
  python3 - "$out" "$clients" "$pdc" "$dur" "$interval" "$before" "$after" <<'PY'
import re, sys
path, c, pdc, dur, interval, before, after = sys.argv[1:]
text = open(path).read()
def secs(s):
    m = re.fullmatch(r"([0-9.]+)(ms|s|m|h)", s)
    return float(m.group(1)) * {"ms": 1e-3, "s": 1, "m": 60, "h": 3600}[m.group(2)]
head, _, tail = text.partition("\nTotal:\n")
# Total = sum of the per-interval lines printed before it (the last partial interval is
# not in Total), so the rate is Total / (intervals * interval).
intervals = len(re.findall(r"^count: \d+, max:", head, re.M))
total = int(re.search(r"^count: (\d+), max:", tail, re.M).group(1))
avg = float(re.search(r"avg: ([0-9.]+)ms", tail).group(1))
q = dict(re.findall(r"P(0\.\d+): ([0-9.]+)ms", tail))
span = intervals * secs(interval)
def metric(name):
    m = re.search(r"^%s(?:\{\})? ([0-9.e+]+)$" % name, text, re.M)
    return float(m.group(1)) if m else float("nan")
bsum, bcnt = metric("pd_client_request_handle_tso_batch_size_sum"), metric("pd_client_request_handle_tso_batch_size_count")
rpcs = int(after) - int(before)
print(f"summary: goroutines_per_client={c} pd_clients={pdc} duration={dur} measured_s={span:g} "
      f"timestamps={total} timestamps_per_s={total/span:.0f} avg_ms={avg} p50_ms={q.get('0.5')} "
      f"p90_ms={q.get('0.9')} p99_ms={q.get('0.99')} tso_rpcs_on_server={rpcs} "
      f"tso_rpcs_per_s={rpcs/secs(dur):.0f} avg_batch={bsum/bcnt if bcnt else float('nan'):.1f}")
PY
  log "full output: $out"
}

cmd_stop() {
  local dir=${1:-}
  need_dir "$dir" stop
  stop_pidfile "$dir/pd.pid"
}

case "${1:-}" in
install) cmd_install ;;
start) cmd_start "${2:-}" ;;
bench) cmd_bench "${2:-}" "${3:-}" "${4:-}" ;;
stop) cmd_stop "${2:-}" ;;
*) die "usage: $0 install | start DIR | bench DIR CLIENTS DURATION | stop DIR" ;;
esac
