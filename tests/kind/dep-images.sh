#!/usr/bin/env bash
# The images of the operator's dependencies, made locally where no registry
# answers, under exactly the upstream tags the operator uses by default, and
# honouring the same contract (paths, arguments, environment, users):
#
#   quay.io/coreos/etcd:v3.7.0
#       /usr/local/bin/etcd (tests/scripts/k8s.sh's etcd 3.7.0 build), on an
#       empty root like upstream's distroless one (no shell): /tmp, /etc/passwd,
#       the host's CA bundle, WORKDIR /var/lib/etcd; runs as any uid.
#   apache/kafka:3.9.1
#       /opt/kafka/{bin,config,libs} as upstream: bin/kafka-storage.sh,
#       kafka-server-start.sh, kafka-topics.sh, kafka-run-class.sh, ...
#       (same arguments; KAFKA_HEAP_OPTS, LOG_DIR, KAFKA_LOG4J_OPTS, KAFKA_OPTS,
#       KAFKA_JVM_PERFORMANCE_OPTS, JAVA_HOME honoured like upstream's
#       scripts), libs = the jars of tests/scripts/kafka.sh install (Kafka
#       3.9.1 + slf4j-reload4j), config/log4j.properties (console, as
#       upstream's image). Java 17 (Debian openjdk-17-jre-headless) on
#       debian:bookworm-slim, /bin/sh, USER appuser (uid 1000, as upstream).
#       Not upstream's /etc/kafka/docker/run (the KAFKA_* environment to
#       server.properties entrypoint): the operator writes server.properties.
#   quay.io/minio/minio:RELEASE.2025-09-07T16-13-09Z
#       /usr/bin/minio (tests/scripts/minio.sh install), /usr/bin/mc (the MinIO
#       client, `go install github.com/minio/mc@$MC_VERSION`, the newest
#       pseudo-version the Go module proxy serves), /bin/sh, upstream's
#       entrypoint logic (arguments not starting with "minio" get it
#       prepended: args [server, /data] work), MC_CONFIG_DIR=/tmp/.mc as
#       upstream; runs as any uid.
#
#   dep-images.sh [build]   build the missing ones (cached by label); prints the tags
#   dep-images.sh list      print the tags
#
# Where quay.io / registry-1.docker.io answer, they are pulled instead.
#
# Environment: MC_VERSION (default v0.0.0-20250313080218-cf909e1063a9: what the
# proxy answered for @latest in 2026-12; the proxy serves no @master), plus
# those of kafka.sh, minio.sh and k8s.sh.
#
# Measured here: etcd 2 s (25 MB), Kafka 34 s (354 MB, mostly the JRE from
# apt), MinIO 20 s (223 MB) once the binaries exist (mc: go install 149 s).
#
# Trap: the Kafka jars zstd-jni, snappy-java and lz4-java unpack native
# libraries into java.io.tmpdir (/tmp) when a compressed batch comes: with
# readOnlyRootFilesystem, mount an emptyDir at /tmp.

set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

MC_VERSION="${MC_VERSION:-v0.0.0-20250313080218-cf909e1063a9}"
# Bump when a recipe below changes.
RECIPE=1
ETCD_IMAGE=quay.io/coreos/etcd:v3.7.0
KAFKA_IMAGE=apache/kafka:3.9.1
MINIO_IMAGE=quay.io/minio/minio:RELEASE.2025-09-07T16-13-09Z
BASE=docker.io/library/debian:bookworm-slim

# mc's release metadata from its pseudo-version (as its Makefile's ldflags).
mc_ldflags() {
  local flags="-s -w"
  if [[ $MC_VERSION =~ ([0-9]{4})([0-9]{2})([0-9]{2})([0-9]{2})([0-9]{2})([0-9]{2})-([0-9a-f]{12})$ ]]; then
    local m=("${BASH_REMATCH[@]}")
    local stamp="${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${m[6]}Z"
    flags+=" -X github.com/minio/mc/cmd.Version=$stamp -X github.com/minio/mc/cmd.CopyrightYear=${m[1]}"
    flags+=" -X github.com/minio/mc/cmd.ReleaseTag=DEVELOPMENT.${stamp//:/-} -X github.com/minio/mc/cmd.CommitID=${m[7]}"
    flags+=" -X github.com/minio/mc/cmd.ShortCommitID=${m[7]}"
  fi
  echo "$flags"
}

build_etcd() {
  local want="dep-images=$RECIPE etcd=v3.7.0" bin ctx
  image_current "$ETCD_IMAGE" "$want" && return 0
  bin=$("$ROOT/tests/scripts/k8s.sh" install)
  local v
  v=$("$bin/etcd" --version | awk '/etcd Version/ { print $3 }')
  [ "$v" = 3.7.0 ] || die "k8s.sh's etcd is $v, not 3.7.0"
  ctx=$(mktemp -d -p "$KIND_CACHE")
  mkdir -p "$ctx/root/usr/local/bin" "$ctx/root/tmp" "$ctx/root/etc/ssl/certs" "$ctx/root/var/lib/etcd" "$ctx/root/var/etcd"
  chmod 1777 "$ctx/root/tmp"
  chmod 0777 "$ctx/root/var/lib/etcd" "$ctx/root/var/etcd"
  ln -f "$bin/etcd" "$ctx/root/usr/local/bin/etcd"
  cp /etc/ssl/certs/ca-certificates.crt "$ctx/root/etc/ssl/certs/"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$ctx/root/etc/passwd"
  printf 'root:x:0:\nnonroot:x:65532:\n' >"$ctx/root/etc/group"
  cat >"$ctx/Dockerfile" <<EOF
# Like upstream's (distroless static, no shell).
FROM scratch
COPY root/ /
WORKDIR /var/lib/etcd
EXPOSE 2379 2380
CMD ["/usr/local/bin/etcd"]
LABEL milvus-like.recipe="$want"
EOF
  run_logged "$KIND_LOGS/dep-images.log" "$DOCKER" build -t "$ETCD_IMAGE" "$ctx" || die "building $ETCD_IMAGE failed"
  rm -rf "$ctx"
}

# kafka_scripts DIR: bin/*.sh with upstream's interface.
kafka_scripts() {
  local d=$1
  cat >"$d/kafka-run-class.sh" <<'EOF'
#!/bin/sh
# kafka-run-class.sh [-daemon] [-name NAME] [-loggc] CLASS [ARGS...]
# Upstream's interface and environment, in short: CLASSPATH from ../libs,
# LOG_DIR (default ../logs) as kafka.logs.dir, KAFKA_HEAP_OPTS (default -Xmx256M),
# KAFKA_JVM_PERFORMANCE_OPTS, KAFKA_GC_LOG_OPTS, KAFKA_LOG4J_OPTS, KAFKA_OPTS,
# KAFKA_JMX_OPTS with JMX_PORT, JAVA_HOME.
if [ $# -lt 1 ]; then
  echo "USAGE: $0 [-daemon] [-name servicename] [-loggc] classname [opts]"
  exit 1
fi
base_dir=$(cd "$(dirname "$0")/.." && pwd)
CLASSPATH="$base_dir/libs/*${CLASSPATH:+:$CLASSPATH}"
[ -z "$LOG_DIR" ] && LOG_DIR="$base_dir/logs"
mkdir -p "$LOG_DIR" 2>/dev/null
[ -z "$KAFKA_LOG4J_OPTS" ] && KAFKA_LOG4J_OPTS="-Dlog4j.configuration=file:$base_dir/config/tools-log4j.properties"
KAFKA_LOG4J_OPTS="-Dkafka.logs.dir=$LOG_DIR $KAFKA_LOG4J_OPTS"
[ -z "$KAFKA_HEAP_OPTS" ] && KAFKA_HEAP_OPTS="-Xmx256M"
[ -z "$KAFKA_JVM_PERFORMANCE_OPTS" ] && KAFKA_JVM_PERFORMANCE_OPTS="-server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -XX:MaxInlineLevel=15 -Djava.awt.headless=true"
if [ -n "$JMX_PORT" ]; then
  [ -z "$KAFKA_JMX_OPTS" ] && KAFKA_JMX_OPTS="-Dcom.sun.management.jmxremote -Dcom.sun.management.jmxremote.authenticate=false -Dcom.sun.management.jmxremote.ssl=false"
  KAFKA_JMX_OPTS="$KAFKA_JMX_OPTS -Dcom.sun.management.jmxremote.port=$JMX_PORT"
fi
if [ -n "$JAVA_HOME" ]; then JAVA="$JAVA_HOME/bin/java"; else JAVA=java; fi
DAEMON_MODE=false GC_LOG_ENABLED=false DAEMON_NAME=""
while [ $# -gt 0 ]; do
  case "$1" in
    -name) DAEMON_NAME=$2; CONSOLE_OUTPUT_FILE="$LOG_DIR/$2.out"; shift 2 ;;
    -loggc) GC_LOG_ENABLED=true; shift ;;
    -daemon) DAEMON_MODE=true; shift ;;
    *) break ;;
  esac
done
if [ "$GC_LOG_ENABLED" = true ] && [ -n "$DAEMON_NAME" ]; then
  [ -z "$KAFKA_GC_LOG_OPTS" ] && KAFKA_GC_LOG_OPTS="-Xlog:gc*:file=$LOG_DIR/$DAEMON_NAME-gc.log:time,tags:filecount=10,filesize=100M"
fi
# shellcheck disable=SC2086
if [ "$DAEMON_MODE" = true ]; then
  nohup "$JAVA" $KAFKA_HEAP_OPTS $KAFKA_JVM_PERFORMANCE_OPTS $KAFKA_GC_LOG_OPTS $KAFKA_JMX_OPTS $KAFKA_LOG4J_OPTS -cp "$CLASSPATH" $KAFKA_OPTS "$@" >"$CONSOLE_OUTPUT_FILE" 2>&1 </dev/null &
else
  exec "$JAVA" $KAFKA_HEAP_OPTS $KAFKA_JVM_PERFORMANCE_OPTS $KAFKA_GC_LOG_OPTS $KAFKA_JMX_OPTS $KAFKA_LOG4J_OPTS -cp "$CLASSPATH" $KAFKA_OPTS "$@"
fi
EOF
  cat >"$d/kafka-server-start.sh" <<'EOF'
#!/bin/sh
# kafka-server-start.sh [-daemon] server.properties [--override property=value]*
if [ $# -lt 1 ]; then
  echo "USAGE: $0 [-daemon] server.properties [--override property=value]*"
  exit 1
fi
base_dir=$(dirname "$0")
[ -z "$KAFKA_LOG4J_OPTS" ] && export KAFKA_LOG4J_OPTS="-Dlog4j.configuration=file:$base_dir/../config/log4j.properties"
[ -z "$KAFKA_HEAP_OPTS" ] && export KAFKA_HEAP_OPTS="-Xmx1G -Xms1G"
EXTRA_ARGS=${EXTRA_ARGS-'-name kafkaServer -loggc'}
if [ "$1" = -daemon ]; then
  EXTRA_ARGS="-daemon $EXTRA_ARGS"
  shift
fi
# shellcheck disable=SC2086
exec "$base_dir/kafka-run-class.sh" $EXTRA_ARGS kafka.Kafka "$@"
EOF
  local tool class
  for tool in "kafka-storage.sh kafka.tools.StorageTool" \
    "kafka-topics.sh org.apache.kafka.tools.TopicCommand" \
    "kafka-console-producer.sh kafka.tools.ConsoleProducer" \
    "kafka-console-consumer.sh org.apache.kafka.tools.consumer.ConsoleConsumer" \
    "kafka-broker-api-versions.sh kafka.admin.BrokerApiVersionsCommand" \
    "kafka-metadata-quorum.sh org.apache.kafka.tools.MetadataQuorumCommand"; do
    class=${tool#* }
    # shellcheck disable=SC2016
    printf '#!/bin/sh\nexec "$(dirname "$0")/kafka-run-class.sh" %s "$@"\n' "$class" >"$d/${tool%% *}"
  done
  chmod 0755 "$d"/*.sh
}

build_kafka() {
  local want="dep-images=$RECIPE kafka=3.9.1" libs ctx
  image_current "$KAFKA_IMAGE" "$want" && return 0
  libs=$(KAFKA_VERSION=3.9.1 "$ROOT/tests/scripts/kafka.sh" install)
  ctx=$(mktemp -d -p "$KIND_CACHE")
  mkdir -p "$ctx/kafka/bin" "$ctx/kafka/config" "$ctx/kafka/libs"
  cp -l "$libs"/*.jar "$ctx/kafka/libs/"
  kafka_scripts "$ctx/kafka/bin"
  # Upstream's image logs to the console (docker logs); tools log warnings.
  cat >"$ctx/kafka/config/log4j.properties" <<'EOF'
log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka=INFO
log4j.logger.org.apache.kafka=INFO
log4j.logger.kafka.request.logger=WARN
log4j.logger.kafka.controller=TRACE
log4j.logger.state.change.logger=INFO
EOF
  cat >"$ctx/kafka/config/tools-log4j.properties" <<'EOF'
log4j.rootLogger=WARN, stderr
log4j.appender.stderr=org.apache.log4j.ConsoleAppender
log4j.appender.stderr.layout=org.apache.log4j.PatternLayout
log4j.appender.stderr.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.appender.stderr.Target=System.err
EOF
  cat >"$ctx/Dockerfile" <<EOF
FROM $BASE
# openjdk's postinst wants the man directories the slim image leaves out.
RUN mkdir -p /usr/share/man/man1 \\
 && apt-get update \\
 && apt-get install -y --no-install-recommends openjdk-17-jre-headless \\
 && rm -rf /var/lib/apt/lists/* \\
 && groupadd --gid 1000 appuser \\
 && useradd --uid 1000 --gid 1000 --home-dir /home/appuser --create-home --shell /bin/bash appuser \\
 && mkdir -p /var/lib/kafka/data /etc/kafka/secrets /opt/kafka/logs \\
 && chown -R appuser:root /var/lib/kafka /etc/kafka \\
 && chmod -R ug+w /var/lib/kafka /etc/kafka
COPY kafka /opt/kafka
RUN chown -R appuser:appuser /opt/kafka/logs /opt/kafka/config \\
 && java -version 2>&1 | head -1
ENV JAVA_HOME=/usr/lib/jvm/java-17-openjdk-amd64
WORKDIR /opt/kafka
USER appuser
EXPOSE 9092
LABEL milvus-like.recipe="$want"
EOF
  run_logged "$KIND_LOGS/dep-images.log" "$DOCKER" build -t "$KAFKA_IMAGE" "$ctx" || die "building $KAFKA_IMAGE failed"
  rm -rf "$ctx"
}

build_minio() {
  local minio mc ctx want
  minio=$("$ROOT/tests/scripts/minio.sh" install)
  # .../minio-<version>/bin/minio
  want="dep-images=$RECIPE $(basename "$(dirname "$(dirname "$minio")")") mc=$MC_VERSION"
  image_current "$MINIO_IMAGE" "$want" && return 0
  mc=$(go_tool mc github.com/minio/mc "$MC_VERSION" "$(mc_ldflags)")
  ctx=$(mktemp -d -p "$KIND_CACHE")
  ln -f "$minio" "$ctx/minio"
  ln -f "$mc" "$ctx/mc"
  cat >"$ctx/docker-entrypoint.sh" <<'EOF'
#!/bin/sh
# As upstream's: a command that does not start with "minio" gets it prepended
# (so args [server, /data] run `minio server /data`).
if [ "${1}" != "minio" ]; then
  if [ -n "${1}" ]; then
    set -- minio "$@"
  fi
fi
exec "$@"
EOF
  chmod 0755 "$ctx/docker-entrypoint.sh"
  cat >"$ctx/Dockerfile" <<EOF
FROM $BASE
COPY minio mc /usr/bin/
COPY docker-entrypoint.sh /usr/bin/docker-entrypoint.sh
ENV MINIO_ACCESS_KEY_FILE=access_key MINIO_SECRET_KEY_FILE=secret_key \\
    MINIO_ROOT_USER_FILE=access_key MINIO_ROOT_PASSWORD_FILE=secret_key \\
    MINIO_KMS_SECRET_KEY_FILE=kms_master_key MINIO_CONFIG_ENV_FILE=config.env \\
    MC_CONFIG_DIR=/tmp/.mc
EXPOSE 9000
VOLUME ["/data"]
ENTRYPOINT ["/usr/bin/docker-entrypoint.sh"]
CMD ["minio"]
LABEL milvus-like.recipe="$want"
EOF
  run_logged "$KIND_LOGS/dep-images.log" "$DOCKER" build -t "$MINIO_IMAGE" "$ctx" || die "building $MINIO_IMAGE failed"
  rm -rf "$ctx"
}

cmd_build() {
  docker_up
  "$KIND_DIR/base-images.sh" build >&2
  local img host t0
  for img in "$ETCD_IMAGE" "$KAFKA_IMAGE" "$MINIO_IMAGE"; do
    host=${img%%/*}
    [[ $host == *.* ]] || host=registry-1.docker.io
    t0=$SECONDS
    if registry_answers "$host"; then
      "$DOCKER" pull "$img" >&2
    else
      case $img in
        "$ETCD_IMAGE") build_etcd ;;
        "$KAFKA_IMAGE") build_kafka ;;
        "$MINIO_IMAGE") build_minio ;;
      esac
    fi
    log "$img: $(image_size "$img") ($((SECONDS - t0))s)"
  done
  printf '%s\n' "$ETCD_IMAGE" "$KAFKA_IMAGE" "$MINIO_IMAGE"
}

case "${1:-build}" in
  build) cmd_build ;;
  list) printf '%s\n' "$ETCD_IMAGE" "$KAFKA_IMAGE" "$MINIO_IMAGE" ;;
  *) die "usage: dep-images.sh [build|list]" ;;
esac
