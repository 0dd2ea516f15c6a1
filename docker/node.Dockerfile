# The milvus-like node image: one binary, every role (`milvus-like <role>`).
#
#   docker build -f docker/node.Dockerfile -t milvus-like/node:0.1.0 .
#
# The build stage needs only the Rust toolchain image (the protos are compiled
# by protox, in Rust: no protoc); the runtime stage is Debian slim with a
# non-root user. Both base images can be swapped with --build-arg; where no
# registry answers, tests/kind/base-images.sh makes them locally under these tags.
ARG BUILDER_IMAGE=docker.io/library/rust:1.95-bookworm
ARG RUNTIME_IMAGE=docker.io/library/debian:bookworm-slim
# Release binaries keep their symbols (function names in backtraces) but not
# their line tables (a third of the size).

FROM ${BUILDER_IMAGE} AS build
WORKDIR /src
COPY . .
# The target cache outlives the sources, and cargo compares mtimes: a file whose
# content differs from this image's last build (recorded in the cache) is
# touched, else an older checkout's file would pass for built; unchanged files
# keep their times, so an unchanged checkout builds nothing. No record yet:
# everything is touched.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    sums=target/.source-sums-node \
 && files="Cargo.toml Cargo.lock node operator tests vendor" \
 && if [ -f "$sums" ]; then \
      sha256sum --quiet -c "$sums" 2>/dev/null | sed -n 's/: FAILED.*$//p' | xargs -r touch -c; \
    else find $files -type f -exec touch {} +; fi \
 && cargo build --release --locked -p milvus-like-node --features usearch,hnswlib --bin milvus-like \
 && find $files -type f -exec sha256sum {} + > "$sums" \
 && strip --strip-debug -o /milvus-like target/release/milvus-like

FROM ${RUNTIME_IMAGE} AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && apt-get clean && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 milvus \
 && useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin milvus
COPY --from=build /milvus-like /usr/local/bin/milvus-like
# Segment files of the local storage backend, when a volume is mounted here.
WORKDIR /data
USER 10001:10001
# gRPC and HTTP (metrics, health) ports of the roles.
EXPOSE 19530 19531 13333 21121 9091 9092 9093 9094
ENTRYPOINT ["/usr/local/bin/milvus-like"]
CMD ["--help"]
