# The milvus-like operator image.
#
#   docker build -f docker/operator.Dockerfile -t milvus-like/operator:0.1.0 .
#
# Same layout as node.Dockerfile; the operator binary links neither Kafka nor
# Arrow, so its build is the smaller one.
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
    sums=target/.source-sums-operator \
 && files="Cargo.toml Cargo.lock node operator tests vendor" \
 && if [ -f "$sums" ]; then \
      sha256sum --quiet -c "$sums" 2>/dev/null | sed -n 's/: FAILED.*$//p' | xargs -r touch -c; \
    else find $files -type f -exec touch {} +; fi \
 && cargo build --release --locked -p milvus-like-operator --bin milvus-like-operator \
 && find $files -type f -exec sha256sum {} + > "$sums" \
 && strip --strip-debug -o /milvus-like-operator target/release/milvus-like-operator

FROM ${RUNTIME_IMAGE} AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && apt-get clean && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 milvus \
 && useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin milvus
COPY --from=build /milvus-like-operator /usr/local/bin/milvus-like-operator
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/milvus-like-operator"]
