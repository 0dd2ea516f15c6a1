//! Milvus's public API on the proxy's port (issue 16), against a real
//! standalone: the handshake Milvus's clients make first answers with
//! milvus-like's own version and health, and every method not served yet is
//! refused by name; a collection made through milvus-like's own API is listed
//! and described in Milvus's terms. Then the same through pymilvus itself (from PyPI, in the
//! virtualenv `tests/scripts/pymilvus.sh` installs), the client Milvus users
//! already have: `MilvusClient` and the ORM's `connections`/`utility`.

use std::process::Command;

use milvus_like_api::milvus_proto::milvus::milvus_service_client::MilvusServiceClient;
use milvus_like_api::milvus_proto::milvus::{
    CheckHealthRequest, ConnectRequest, CreateCollectionRequest, DescribeCollectionRequest,
    DropCollectionRequest, GetVersionRequest, HasCollectionRequest, ShowCollectionsRequest,
};
use milvus_like_api::proto;
use milvus_like_node::proxy::milvus_api::VERSION;
use milvus_like_tests::{StandaloneProcess, TestDir, test_schema, workspace_root};

const COLLECTION: &str = "from_milvus_like";
const DIM: u32 = 8;
use tonic::Code;

#[tokio::test]
async fn milvus_clients_connect_read_collections_and_are_refused_what_is_not_served() {
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

    // A collection made through milvus-like's own API, read through Milvus's.
    let made = sa
        .proxy_client()
        .create_collection(proto::CreateCollectionRequest {
            schema: Some(test_schema(COLLECTION, DIM)),
        })
        .await
        .expect("create")
        .into_inner()
        .collection
        .expect("info");
    let shown = milvus
        .show_collections(ShowCollectionsRequest::default())
        .await
        .expect("ShowCollections")
        .into_inner();
    assert_eq!(shown.collection_names, vec![COLLECTION.to_owned()]);
    assert_eq!(shown.collection_ids, vec![made.id]);
    assert_eq!(
        shown.shards_num,
        vec![i32::try_from(sa.channels).expect("small")]
    );
    let has = |name: &str| HasCollectionRequest {
        collection_name: name.into(),
        ..HasCollectionRequest::default()
    };
    assert!(
        milvus
            .has_collection(has(COLLECTION))
            .await
            .expect("has")
            .into_inner()
            .value
    );
    assert!(
        !milvus
            .has_collection(has("missing"))
            .await
            .expect("has")
            .into_inner()
            .value
    );
    let described = milvus
        .describe_collection(DescribeCollectionRequest {
            collection_name: COLLECTION.into(),
            ..DescribeCollectionRequest::default()
        })
        .await
        .expect("DescribeCollection")
        .into_inner();
    assert_eq!(described.collection_id, made.id);
    let schema = described.schema.expect("schema");
    let vector = &schema.fields[1];
    assert_eq!((schema.fields[0].field_id, vector.field_id), (100, 101));
    assert_eq!(vector.data_type, proto::DataType::FloatVector as i32);
    assert_eq!(vector.type_params[0].key, "dim");
    assert_eq!(vector.type_params[0].value, DIM.to_string());
    let missing = milvus
        .describe_collection(DescribeCollectionRequest {
            collection_name: "missing".into(),
            ..DescribeCollectionRequest::default()
        })
        .await
        .expect("answered in the status")
        .into_inner()
        .status
        .expect("status");
    assert_eq!(missing.code, 100, "{missing:?}");
    assert!(missing.reason.contains("missing"), "{missing:?}");

    // As Milvus: dropping a collection that is not there succeeds.
    let dropped = milvus
        .drop_collection(DropCollectionRequest {
            collection_name: "missing".into(),
            ..DropCollectionRequest::default()
        })
        .await
        .expect("DropCollection")
        .into_inner();
    assert_eq!(dropped.code, 0, "{dropped:?}");

    let refused = milvus
        .create_collection(CreateCollectionRequest::default())
        .await
        .expect_err("not served yet");
    assert_eq!(refused.code(), Code::Unimplemented);
    assert!(
        refused.message().contains("CreateCollection"),
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
        .arg(COLLECTION)
        .arg(DIM.to_string())
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
    // pymilvus dropped it through Milvus's API.
    let left = sa
        .proxy_client()
        .list_collections(proto::ListCollectionsRequest {})
        .await
        .expect("list")
        .into_inner()
        .collections;
    assert!(left.is_empty(), "{left:?}");
}
