//! Generates the gRPC code of every service and the descriptor set that server
//! reflection serves, both into `OUT_DIR`.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let protos = [
        "proto/common.proto",
        "proto/rootcoord.proto",
        "proto/datacoord.proto",
        "proto/datanode.proto",
        "proto/proxy.proto",
        "proto/log.proto",
    ];
    for proto in &protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("milvuslike_descriptor.bin"))
        .compile_protos(&protos, &["proto"])?;
    Ok(())
}
