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
    milvus_api(&out_dir)?;
    Ok(())
}

/// Milvus's public API (`proto/milvus/`, milvus-proto v3.0.0, vendored): its
/// own include path, since its files import each other by bare names that ours
/// share (`common.proto`). Every `MilvusService` method gets a default answer,
/// Unimplemented naming the method, so that the proxy implements the ones it
/// supports and the others say exactly what is not there.
fn milvus_api(out_dir: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "milvus/common.proto",
        "milvus/schema.proto",
        "milvus/rg.proto",
        "milvus/feder.proto",
        "milvus/msg.proto",
        "milvus/milvus.proto",
    ];
    for file in &files {
        println!("cargo:rerun-if-changed=proto/{file}");
    }
    let names: Vec<&str> = files
        .iter()
        .map(|f| f.trim_start_matches("milvus/"))
        .collect();
    let fds = protox::compile(&names, ["proto/milvus"])?;
    std::fs::write(out_dir.join("milvus_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .type_attribute(".", "#[allow(clippy::all)]")
        .build_client(true)
        // No `Client::connect`: MilvusService has a `Connect` method of its own.
        .build_transport(false)
        .generate_default_stubs(true)
        .compile_fds(fds)?;
    name_the_missing_methods(&out_dir.join("milvus.proto.milvus.rs"))?;
    Ok(())
}

/// Rewrites the default answers of the generated services: "Not yet
/// implemented" becomes "milvus-like does not support <Service>/<Method>".
fn name_the_missing_methods(path: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    let code = std::fs::read_to_string(path)?;
    let mut out = String::with_capacity(code.len() + 16 * 1024);
    let mut method = String::new();
    for line in code.lines() {
        let trimmed = line.trim_start();
        if let Some(rest) = trimmed.strip_prefix("async fn ") {
            method = rest.split(['(', '<']).next().unwrap_or_default().to_owned();
        }
        if line.contains("tonic::Status::unimplemented(\"Not yet implemented\")") {
            let camel: String = method
                .split('_')
                .map(|w| {
                    let mut c = w.chars();
                    c.next()
                        .map(|f| f.to_uppercase().chain(c).collect::<String>())
                        .unwrap_or_default()
                })
                .collect();
            out.push_str(&line.replace(
                "\"Not yet implemented\"",
                &format!(
                    "\"milvus-like does not support the Milvus API method {camel} (docs/milvus-compatibility.md lists what it does)\""
                ),
            ));
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    std::fs::write(path, out)?;
    Ok(())
}
