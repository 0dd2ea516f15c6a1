//! etcd-client's build script, with protox (a protobuf compiler in Rust) in place of a
//! system `protoc`: the same files, the same include root, the same generated code.

#[cfg(feature = "build-server")]
fn should_build_server() -> bool {
    true
}

#[cfg(not(feature = "build-server"))]
fn should_build_server() -> bool {
    false
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_root = "proto";
    println!("cargo:rerun-if-changed={proto_root}");

    let fds = protox::compile(
        [
            "proto/etcd/api/authpb/auth.proto",
            "proto/etcd/api/etcdserverpb/rpc.proto",
            "proto/etcd/api/mvccpb/kv.proto",
            "proto/etcd/server/etcdserver/api/v3election/v3electionpb/v3election.proto",
            "proto/etcd/server/etcdserver/api/v3lock/v3lockpb/v3lock.proto",
        ],
        [proto_root],
    )?;
    // What compile_protos adds and compile_fds does not: the generated code is the same
    // as protoc's, byte for byte.
    tonic_prost_build::configure()
        .type_attribute(".", "#[allow(clippy::all)]")
        .build_server(should_build_server())
        .compile_fds(fds)?;
    Ok(())
}
