#!/usr/bin/env bash
# Installs everything the tests need, from the package registries only, caching
# downloads under $MILVUS_LIKE_CACHE (default ~/.cache/milvus-like). Idempotent:
# a second run finds everything in place and takes a second or two.
#
#   etcd        Debian etcd-server (3.4), started by the tests themselves
#   Kafka       Apache Kafka jars from Maven Central (tests/scripts/kafka.sh install)
#   MinIO       built from its Go module (tests/scripts/minio.sh install), for the S3 path
#   Kubernetes  kube-apiserver, controller-manager, scheduler, kubectl, etcd 3.7, kwok
#               and helm built from their Go modules (tests/scripts/k8s.sh install),
#               for the operator's tests (a cold build takes 10 to 20 minutes)
#   pymilvus    Milvus's Python client from PyPI, in a virtualenv (tests/scripts/pymilvus.sh)
#   Go SDK      Milvus's Go client from the Go module proxy, built into the Go quick start
#               (tests/scripts/go-client.sh)
set -euo pipefail
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$SCRIPT_DIR/common.sh"

apt_install etcd-server
command -v etcd >/dev/null || die "etcd is missing after install"
command -v java >/dev/null || die "Java 17 is required for Kafka (install openjdk-17-jre-headless)"
command -v mvn >/dev/null || apt_install maven

"$SCRIPT_DIR/kafka.sh" install >/dev/null
command -v go >/dev/null || die "Go is required to build MinIO (the S3 server the tests use)"
"$SCRIPT_DIR/minio.sh" install >/dev/null
"$SCRIPT_DIR/k8s.sh" install >/dev/null
# Milvus's Python client, for the Milvus API tests.
"$SCRIPT_DIR/pymilvus.sh" install >/dev/null
# Milvus's Go SDK, for the same tests.
"$SCRIPT_DIR/go-client.sh" build >/dev/null
# The operator scenario: curl (metrics), python3 (pod_mirror.py), openssl (the
# local control plane's certificates).
command -v curl >/dev/null || apt_install curl
command -v python3 >/dev/null || apt_install python3
command -v openssl >/dev/null || apt_install openssl

log "etcd: $(etcd --version | head -n1)"
log "kafka: $("$SCRIPT_DIR/kafka.sh" install)"
log "minio: $("$SCRIPT_DIR/minio.sh" install)"
log "kubernetes: $("$SCRIPT_DIR/k8s.sh" install)"
log "pymilvus: $("$SCRIPT_DIR/pymilvus.sh" install)"
log "Go SDK quick start: $("$SCRIPT_DIR/go-client.sh" build)"
