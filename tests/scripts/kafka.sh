#!/usr/bin/env bash
# Installs and runs a real single-node Apache Kafka broker (KRaft mode, combined
# broker+controller) on 127.0.0.1 for tests. No Docker, no download other than
# Maven Central: the broker jars come from Maven and are cached under
# $MILVUS_LIKE_CACHE/kafka-<version>/libs.
#
#   kafka.sh install                        install jars if missing; prints libs dir
#   kafka.sh start DIR                      start (or restart) the instance in DIR;
#                                           prints 127.0.0.1:PORT once ready
#   kafka.sh create-topic DIR NAME PARTS    create a topic (replication 1), idempotent
#   kafka.sh stop DIR                       graceful stop (kill -9 after ~10 s), keeps data
#   kafka.sh kill DIR                       kill -9 (chaos tests), keeps data
#
# DIR holds everything of one instance: server.properties, data/, logs/, pid,
# port, controller_port, cluster_id, bootstrap. A DIR that already holds a
# formatted instance is restarted with the same ports and data.
#
# Environment: KAFKA_VERSION (default 3.9.1; 3.x only, it uses the reload4j
# logging binding), KAFKA_HEAP_OPTS (default -Xms512m -Xmx1g with Kafka's
# recommended G1 region size and initiating occupancy: with 1 MiB regions every
# produce request of a 1.7 MiB insert message is a humongous object, and G1 ran
# concurrent marking without pause, a third of the broker's CPU),
# KAFKA_START_TIMEOUT (seconds, default 60), KAFKA_STOP_TIMEOUT (default 10).

set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$SCRIPT_DIR/common.sh"

KAFKA_VERSION="${KAFKA_VERSION:-3.9.1}"
SCALA_VERSION="2.13"
SLF4J_BINDING_VERSION="1.7.36"
KAFKA_HOME="$MILVUS_LIKE_CACHE/kafka-$KAFKA_VERSION"
LIBS="$KAFKA_HOME/libs"
MARKER="$KAFKA_HOME/.installed"
HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms512m -Xmx1g -XX:G1HeapRegionSize=16M -XX:InitiatingHeapOccupancyPercent=35}"
START_TIMEOUT="${KAFKA_START_TIMEOUT:-60}"
STOP_TIMEOUT="${KAFKA_STOP_TIMEOUT:-10}"

usage() {
  cat >&2 <<'EOF'
usage: kafka.sh install
       kafka.sh start DIR
       kafka.sh create-topic DIR NAME PARTITIONS
       kafka.sh stop DIR
       kafka.sh kill DIR
EOF
  exit 2
}

java_bin() {
  if [ -n "${JAVA_HOME:-}" ] && [ -x "$JAVA_HOME/bin/java" ]; then
    echo "$JAVA_HOME/bin/java"
  else
    echo java
  fi
}

# ---------------------------------------------------------------- install

# install_libs: makes sure $LIBS holds the broker, tools and logging jars.
install_libs() {
  if [ -f "$MARKER" ] && [ -f "$LIBS/kafka_$SCALA_VERSION-$KAFKA_VERSION.jar" ]; then
    return 0
  fi
  mkdir -p "$KAFKA_HOME"
  # Serialize concurrent installs (tests starting several brokers at once).
  # fd 8 is closed again before anything long-lived is started.
  exec 8>"$KAFKA_HOME/.install.lock"
  flock 8
  if [ -f "$MARKER" ] && [ -f "$LIBS/kafka_$SCALA_VERSION-$KAFKA_VERSION.jar" ]; then
    exec 8>&-
    return 0
  fi
  command -v "$(java_bin)" >/dev/null 2>&1 || apt_install openjdk-17-jre-headless
  command -v mvn >/dev/null 2>&1 || apt_install maven

  local build="$KAFKA_HOME/build"
  rm -rf "$build" "$LIBS"
  mkdir -p "$build"
  # kafka_2.13 is the broker (kafka.Kafka, kafka.tools.StorageTool,
  # kafka.tools.ConsoleProducer); kafka-tools holds TopicCommand and
  # ConsoleConsumer. kafka-tools drags in connect-runtime (jetty, jersey, ...)
  # for the connect-plugin-path tool only: excluded. The broker jar ships no
  # slf4j binding, so slf4j-reload4j is added (what the 3.x tarball ships).
  cat >"$build/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>milvus-like.tests</groupId>
  <artifactId>kafka-libs</artifactId>
  <version>$KAFKA_VERSION</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_$SCALA_VERSION</artifactId>
      <version>$KAFKA_VERSION</version>
    </dependency>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka-tools</artifactId>
      <version>$KAFKA_VERSION</version>
      <exclusions>
        <exclusion>
          <groupId>org.apache.kafka</groupId>
          <artifactId>connect-runtime</artifactId>
        </exclusion>
      </exclusions>
    </dependency>
    <dependency>
      <groupId>org.slf4j</groupId>
      <artifactId>slf4j-reload4j</artifactId>
      <version>$SLF4J_BINDING_VERSION</version>
    </dependency>
  </dependencies>
</project>
EOF
  log "installing Kafka $KAFKA_VERSION jars from Maven Central into $LIBS"
  if ! (cd "$build" && mvn -B -q dependency:copy-dependencies \
          -DoutputDirectory="$build/libs" -DincludeScope=runtime) >"$build/mvn.log" 2>&1; then
    tail -n 50 "$build/mvn.log" >&2
    exec 8>&-
    die "maven failed to fetch Kafka $KAFKA_VERSION (log: $build/mvn.log)"
  fi
  [ -f "$build/libs/kafka_$SCALA_VERSION-$KAFKA_VERSION.jar" ] || {
    exec 8>&-
    die "maven did not produce kafka_$SCALA_VERSION-$KAFKA_VERSION.jar"
  }
  mv "$build/libs" "$LIBS"
  ls "$LIBS" >"$MARKER"
  exec 8>&-
  log "installed $(wc -l <"$MARKER") jars ($(du -sh "$LIBS" | cut -f1))"
}

# ---------------------------------------------------------------- instance helpers


# kafka_pid DIR: prints the pid of the live broker of DIR (and succeeds), or
# fails. A pid file whose process is gone or is not this broker is removed.
kafka_pid() {
  local dir=$1 pid cmd
  [ -f "$dir/pid" ] || return 1
  pid=$(cat "$dir/pid")
  if [[ "$pid" =~ ^[0-9]+$ ]] && [ -r "/proc/$pid/cmdline" ]; then
    cmd=$(proc_cmdline "$pid")
    if [[ "$cmd" == *kafka.Kafka*"$dir/server.properties"* ]]; then
      echo "$pid"
      return 0
    fi
  fi
  rm -f "$dir/pid"
  return 1
}

# metadata_probe PORT: sends a Kafka Metadata (v4) request; succeeds when the
# broker answers with at least one live broker and a controller id, i.e. it is
# registered, unfenced and serving requests.
metadata_probe() {
  python3 - "$1" <<'PY'
import socket, struct, sys
port = int(sys.argv[1])
try:
    s = socket.create_connection(("127.0.0.1", port), timeout=2)
    s.settimeout(2)
    client = b"kafka.sh"
    # header v1: api_key=3 (Metadata), api_version=4, correlation_id, client_id
    # body v4: topics=[] (none), allow_auto_topic_creation=false
    req = struct.pack(">hhih", 3, 4, 7, len(client)) + client + struct.pack(">ib", 0, 0)
    s.sendall(struct.pack(">i", len(req)) + req)
    def read(n):
        buf = b""
        while len(buf) < n:
            chunk = s.recv(n - len(buf))
            if not chunk:
                raise EOFError
            buf += chunk
        return buf
    (size,) = struct.unpack(">i", read(4))
    data = read(size)
    s.close()
    off = 0
    def take(fmt):
        global off
        v = struct.unpack_from(fmt, data, off)
        off += struct.calcsize(fmt)
        return v[0]
    def string():
        global off
        n = take(">h")
        if n < 0:
            return None
        v = data[off:off + n].decode()
        off += n
        return v
    if take(">i") != 7:
        sys.exit(1)
    take(">i")                     # throttle_time_ms
    brokers = take(">i")
    for _ in range(brokers):
        take(">i"); string(); take(">i"); string()
    string()                       # cluster_id
    controller = take(">i")
    sys.exit(0 if brokers >= 1 and controller >= 0 else 1)
except Exception:
    sys.exit(1)
PY
}

print_logs() {
  local dir=$1
  log "last 50 lines of $dir/logs/server.log:"
  tail -n 50 "$dir/logs/server.log" >&2 2>/dev/null || true
  if [ -s "$dir/logs/kafka.out" ]; then
    log "last 20 lines of $dir/logs/kafka.out:"
    tail -n 20 "$dir/logs/kafka.out" >&2 || true
  fi
}

new_cluster_id() {
  # 16 random bytes, base64url without padding (22 chars), as Kafka's Uuid;
  # never starting with '-' (it would read as a command-line flag).
  python3 - <<'PY'
import base64, uuid
while True:
    s = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    if not s.startswith("-"):
        print(s)
        break
PY
}

write_configs() {
  local dir=$1 port=$2 cport=$3
  cat >"$dir/server.properties" <<EOF
# Generated by tests/scripts/kafka.sh: single-node KRaft broker+controller.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
log.dirs=$dir/data
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
delete.topic.enable=true
# After a kill -9 the controller refuses the restarted broker's registration
# (DUPLICATE_BROKER_REGISTRATION) until the old session expires: 9 s by
# default, ~17 s to ready with the client's retry back-off. 3 s keeps chaos
# restarts quick.
broker.heartbeat.interval.ms=500
broker.session.timeout.ms=3000
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
log.retention.hours=168
log.segment.bytes=67108864
EOF
  cat >"$dir/log4j.properties" <<EOF
log4j.rootLogger=INFO, file
log4j.appender.file=org.apache.log4j.RollingFileAppender
log4j.appender.file.File=$dir/logs/server.log
log4j.appender.file.Append=true
log4j.appender.file.MaxFileSize=20MB
log4j.appender.file.MaxBackupIndex=2
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
log4j.logger.org.apache.kafka.clients=WARN
EOF
  cat >"$dir/tools-log4j.properties" <<'EOF'
log4j.rootLogger=WARN, stderr
log4j.appender.stderr=org.apache.log4j.ConsoleAppender
log4j.appender.stderr.Target=System.err
log4j.appender.stderr.layout=org.apache.log4j.PatternLayout
log4j.appender.stderr.layout.ConversionPattern=[%d] %p %m (%c)%n
EOF
}

# run_tool DIR CLASS ARGS...: runs a Kafka CLI class with the cached jars.
run_tool() {
  local dir=$1 cls=$2
  shift 2
  "$(java_bin)" -Xmx256m -Dlog4j.configuration="file:$dir/tools-log4j.properties" \
    -cp "$LIBS/*" "$cls" "$@"
}

# ---------------------------------------------------------------- commands

cmd_start() {
  local dir port cport pid
  dir=$(abs_dir "$1")
  install_libs

  if pid=$(kafka_pid "$dir"); then
    log "kafka already running in $dir (pid $pid)"
    port=$(cat "$dir/port")
  else
    mkdir -p "$dir/logs" "$dir/data"
    if [ -f "$dir/data/meta.properties" ]; then
      if [ ! -f "$dir/port" ] || [ ! -f "$dir/controller_port" ]; then
        die "$dir/data is formatted but $dir/port or controller_port is missing"
      fi
      port=$(cat "$dir/port")
      cport=$(cat "$dir/controller_port")
      log "restarting formatted kafka instance in $dir (port $port, controller $cport)"
      write_configs "$dir" "$port" "$cport"
    else
      if [ -f "$dir/port" ] && [ -f "$dir/controller_port" ]; then
        port=$(cat "$dir/port")
        cport=$(cat "$dir/controller_port")
      else
        port=$(free_port)
        cport=$(free_port)
        while [ "$cport" = "$port" ]; do cport=$(free_port); done
        echo "$port" >"$dir/port"
        echo "$cport" >"$dir/controller_port"
      fi
      [ -s "$dir/cluster_id" ] || new_cluster_id >"$dir/cluster_id"
      write_configs "$dir" "$port" "$cport"
      log "formatting $dir/data (cluster $(cat "$dir/cluster_id"), port $port, controller $cport)"
      run_tool "$dir" kafka.tools.StorageTool format --ignore-formatted \
        -t "$(cat "$dir/cluster_id")" -c "$dir/server.properties" \
        >"$dir/logs/format.log" 2>&1 || {
        cat "$dir/logs/format.log" >&2
        die "kafka storage format failed"
      }
    fi
    for p in "$port" "$cport"; do
      if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
        die "port $p (from $dir) is already in use by another process"
      fi
    done

    rm -f "$dir/bootstrap"
    {
      echo "=== $(date '+%F %T') start ==="
    } >>"$dir/logs/kafka.out"
    # setsid: own session, survives this script and its process group; the
    # inner bash writes its own pid and then execs java, so DIR/pid is java's.
    # shellcheck disable=SC2016,SC2086
    setsid nohup bash -c 'echo $$ >"$1/pid"; shift; exec "$@"' _ "$dir" \
      "$(java_bin)" $HEAP_OPTS -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
      -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
      -Dkafka.logs.dir="$dir/logs" \
      -Dlog4j.configuration="file:$dir/log4j.properties" \
      -cp "$LIBS/*" kafka.Kafka "$dir/server.properties" \
      </dev/null >>"$dir/logs/kafka.out" 2>&1 &
    local launcher=$!
    pid=$(launched_pid "$dir" "$launcher")
    log "started kafka $KAFKA_VERSION in $dir (pid $pid), waiting for it to be ready"
  fi

  await_ready kafka "$pid" "$dir" "$START_TIMEOUT" 0.25 metadata_probe "$port"
  echo "127.0.0.1:$port" >"$dir/bootstrap"
  echo "127.0.0.1:$port"
}

cmd_create_topic() {
  local dir name parts
  dir=$(abs_dir "$1")
  name=$2
  parts=$3
  [[ "$parts" =~ ^[1-9][0-9]*$ ]] || die "PARTITIONS must be a positive integer, got '$parts'"
  [ -s "$dir/bootstrap" ] || die "no running kafka in $dir (no $dir/bootstrap): run start first"
  kafka_pid "$dir" >/dev/null || die "kafka in $dir is not running"
  install_libs
  run_tool "$dir" org.apache.kafka.tools.TopicCommand \
    --bootstrap-server "$(cat "$dir/bootstrap")" --create --if-not-exists \
    --topic "$name" --partitions "$parts" --replication-factor 1 >&2 ||
    die "creating topic $name in $dir failed"
  log "topic $name ($parts partitions) ready in $dir"
}

cmd_stop() {
  stop_service kafka kafka_pid "$(abs_dir "$1")" "$STOP_TIMEOUT" bootstrap
}

cmd_kill() {
  kill_service kafka kafka_pid "$(abs_dir "$1")" bootstrap
}

case "${1:-}" in
  install)
    [ $# -eq 1 ] || usage
    install_libs
    echo "$LIBS"
    ;;
  start)
    [ $# -eq 2 ] || usage
    cmd_start "$2"
    ;;
  create-topic)
    [ $# -eq 4 ] || usage
    cmd_create_topic "$2" "$3" "$4"
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
