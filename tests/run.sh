#!/usr/bin/env bash
# Runs every test: installs what the tests need (cached), builds the binaries (node,
# operator, benches), then the unit tests and the cross-process tests against real
# etcd, Kafka, MinIO and a local Kubernetes control plane.
# Each test starts its own services on free loopback ports and stops them; a failing
# test keeps its services' data and logs under target/test-runs/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

tests/scripts/install.sh
# No build step may need a system protoc (README's first command installs nothing):
# a build script that runs one fails here with a message saying so.
export PROTOC="$PWD/tests/scripts/no-protoc"
cargo build --workspace --bins
# The cross-process tests start several processes each; 4 at a time fit 2 cores.
cargo test --workspace -- --test-threads="${TEST_THREADS:-4}"
