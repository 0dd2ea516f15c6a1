//! The protocol of every milvus-like service and the types built on it.
//!
//! - [`proto`]: code generated from `proto/*.proto` (messages, clients, servers) and the
//!   descriptor set that servers expose through gRPC reflection.
//! - Domain types checked on receive: [`Timestamp`], [`schema::CollectionSchema`].
//!   Receivers expect junk from senders, so every conversion from a wire message is a
//!   `TryFrom` that names what is wrong.
//! - [`tso_client::TsoClient`]: merges many callers' timestamp requests into few RPCs.
//! - [`retry`]: one definition of a transient failure, and the one retry loop.
//! - [`vectors`]: FLOAT_VECTOR values held as the little-endian bytes they travel
//!   in, shared with the buffer they were decoded from; [`wire`]: a proxy's
//!   insert-log messages encoded with each vector copied once.
//! - [`settings`]: ports, environment variable names and defaults, shared by the node
//!   and the operator.
//!
//! The operator depends on this crate only, so it stays free of storage and log clients.

#![forbid(unsafe_code)]

pub mod leader_pool;
pub mod process;
pub mod retry;
pub mod root_coord_link;
pub mod schema;
pub mod settings;
pub mod timestamp;
pub mod tso_client;
pub mod vectors;
pub mod wire;

pub use timestamp::Timestamp;

/// The property tests' settings: a fixed seed, so that a run is repeatable.
#[cfg(test)]
fn proptest_config() -> proptest::test_runner::Config {
    proptest::test_runner::Config {
        cases: 256,
        rng_seed: proptest::test_runner::RngSeed::Fixed(4),
        ..proptest::test_runner::Config::default()
    }
}

/// Generated protobuf messages and gRPC stubs (package `milvuslike.v1`).
#[allow(clippy::all, clippy::pedantic, missing_debug_implementations)]
pub mod proto {
    tonic::include_proto!("milvuslike.v1");

    /// Written by hand (its vectors are shared bytes); the generated code uses it.
    pub use crate::vectors::FloatVectorArray;

    /// Encoded `FileDescriptorSet` of every service, for gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("milvuslike_descriptor");
}

/// Milvus's public API (milvus-proto v3.0.0, vendored in `proto/milvus/`):
/// `milvus.MilvusService`, which the proxy serves beside its own so that
/// Milvus's clients (pymilvus, the Go and Java SDKs) work unchanged.
#[allow(clippy::all, clippy::pedantic, missing_debug_implementations)]
pub mod milvus_proto {
    pub mod common {
        tonic::include_proto!("milvus.proto.common");
    }
    pub mod schema {
        tonic::include_proto!("milvus.proto.schema");
    }
    pub mod rg {
        tonic::include_proto!("milvus.proto.rg");
    }
    pub mod feder {
        tonic::include_proto!("milvus.proto.feder");
    }
    pub mod msg {
        tonic::include_proto!("milvus.proto.msg");
    }
    pub mod milvus {
        tonic::include_proto!("milvus.proto.milvus");
    }

    /// Encoded `FileDescriptorSet` of Milvus's API, for gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("milvus_descriptor");
}

/// gRPC metadata key a standby root coordinator sets on `Unavailable` answers so that
/// clients can go straight to the leader.
pub const LEADER_HINT_METADATA: &str = "x-milvuslike-leader";
