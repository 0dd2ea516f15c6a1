//! Generates the gRPC code of every service and the descriptor set that server
//! reflection serves, both into `OUT_DIR`. The protos are compiled by protox, a
//! protobuf compiler written in Rust: building needs no system `protoc`.

use std::path::PathBuf;

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let protos = [
        "proto/common.proto",
        "proto/rootcoord.proto",
        "proto/datacoord.proto",
        "proto/datanode.proto",
        "proto/querynode.proto",
        "proto/proxy.proto",
        "proto/log.proto",
    ];
    for proto in &protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    let fds = protox::compile(protos, ["proto"])?;
    std::fs::write(
        out_dir.join("milvuslike_descriptor.bin"),
        fds.encode_to_vec(),
    )?;
    // What compile_protos adds and compile_fds does not: the generated code is the same
    // as protoc's, byte for byte.
    tonic_prost_build::configure()
        .type_attribute(".", "#[allow(clippy::all)]")
        // Vectors as shared little-endian bytes, not a `Vec<f32>` (src/vectors.rs).
        .extern_path(
            ".milvuslike.v1.FloatVectorArray",
            "crate::vectors::FloatVectorArray",
        )
        .compile_fds(fds)?;
    Ok(())
}
