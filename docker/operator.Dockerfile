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
RUN apt-get update \
 && apt-get install -y --no-install-recommends protobuf-compiler libprotobuf-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The target cache outlives the sources, and cargo compares mtimes: the touch
# makes this checkout's files newer than anything built there from another one
# (else a build of an older checkout's files reuses newer binaries).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    find Cargo.toml Cargo.lock node operator tests -type f -exec touch {} + \
 && cargo build --release --locked -p milvus-like-operator --bin milvus-like-operator \
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
