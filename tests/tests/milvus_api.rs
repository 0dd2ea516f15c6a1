//! Milvus's public API on the proxy's port (issue 16), against a real
//! standalone: the handshake Milvus's clients make first answers with
//! milvus-like's own version and health, and every method not served yet is
//! refused by name. Then the same through pymilvus itself (from PyPI, in the
//! virtualenv `tests/scripts/pymilvus.sh` installs), the client Milvus users
//! already have: `MilvusClient` and the ORM's `connections`/`utility`.

use std::process::Command;

use milvus_like_api::milvus_proto::milvus::milvus_service_client::MilvusServiceClient;
use milvus_like_api::milvus_proto::milvus::{
    CheckHealthRequest, ConnectRequest, GetVersionRequest, ShowCollectionsRequest,
};
use milvus_like_node::proxy::milvus_api::VERSION;
use milvus_like_tests::{StandaloneProcess, TestDir, workspace_root};
use tonic::Code;

#[tokio::test]
async fn milvus_clients_connect_and_unserved_methods_are_refused_by_name() {
    let dir = TestDir::new("milvus-api");
    let sa = StandaloneProcess::start_in(dir.path(), &[]).expect("start");
    sa.wait_ready().await.expect("ready");
    let mut milvus =
        MilvusServiceClient::new(milvus_like_tests::clients::lazy(&sa.proxy_endpoint()));

    let connected = milvus
        .connect(ConnectRequest::default())
        .await
        .expect("Connect")
        .into_inner();
    assert_eq!(connected.status.map(|s| s.code), Some(0));
    let info = connected.server_info.expect("server info");
    assert_eq!(info.build_tags, VERSION);
    assert!(VERSION.starts_with("milvus-like "), "{VERSION}");
    let again = milvus
        .connect(ConnectRequest::default())
        .await
        .expect("Connect")
        .into_inner();
    assert_ne!(again.identifier, connected.identifier, "one id per client");

    let version = milvus
        .get_version(GetVersionRequest::default())
        .await
        .expect("GetVersion")
        .into_inner();
    assert_eq!(version.version, VERSION);

    let health = milvus
        .check_health(CheckHealthRequest::default())
        .await
        .expect("CheckHealth")
        .into_inner();
    assert!(health.is_healthy, "{:?}", health.reasons);

    let refused = milvus
        .show_collections(ShowCollectionsRequest::default())
        .await
        .expect_err("not served yet");
    assert_eq!(refused.code(), Code::Unimplemented);
    assert!(
        refused.message().contains("ShowCollections"),
        "{}",
        refused.message()
    );

    // pymilvus itself.
    let root = workspace_root();
    let installed = Command::new(root.join("tests/scripts/pymilvus.sh"))
        .arg("install")
        .output()
        .expect("run pymilvus.sh");
    assert!(
        installed.status.success(),
        "pymilvus.sh install: {}",
        String::from_utf8_lossy(&installed.stderr)
    );
    let python = String::from_utf8_lossy(&installed.stdout).trim().to_owned();
    let run = Command::new(&python)
        .arg(root.join("tests/milvus_api/handshake.py"))
        .arg(format!(
            "http://{}",
            sa.proxy_endpoint().trim_start_matches("http://")
        ))
        .arg(VERSION)
        .output()
        .expect("run python");
    assert!(
        run.status.success(),
        "pymilvus handshake failed:\n{}\n{}\nstandalone log:\n{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr),
        sa.process.log()
    );
    assert!(String::from_utf8_lossy(&run.stdout).contains("pymilvus handshake: ok"));
}
