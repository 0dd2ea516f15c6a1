//! Milvus's public API on the proxy's port (issue 16), against a real
//! standalone: the handshake Milvus's clients make first answers with
//! milvus-like's own version and health, and every method not served yet is
//! refused by name; a collection made through milvus-like's own API is listed
//! and described in Milvus's terms. Then the same through pymilvus itself (from PyPI, in the
//! virtualenv `tests/scripts/pymilvus.sh` installs), the client Milvus users
//! already have: the handshake, then Milvus's quick start with `MilvusClient`
//! and with the ORM, against the standalone and against a distributed
//! cluster; and the same quick start with Milvus's Go SDK.

use std::process::Command;
use std::time::Duration;

use milvus_like_api::milvus_proto::common::{IndexState, StateCode};
use milvus_like_api::milvus_proto::milvus::milvus_service_client::MilvusServiceClient;
use milvus_like_api::milvus_proto::milvus::{
    CheckHealthRequest, ConnectRequest, CreateAliasRequest, CreateCollectionRequest,
    DescribeCollectionRequest, DropCollectionRequest, GetComponentStatesRequest,
    GetIndexBuildProgressRequest, GetIndexStateRequest, GetPersistentSegmentInfoRequest,
    GetVersionRequest, HasCollectionRequest, ShowCollectionsRequest,
};
use milvus_like_api::proto;
use milvus_like_node::proxy::milvus_api::VERSION;
use milvus_like_tests::{
    ClusterBuilder, Role, StandaloneProcess, TestDir, test_schema, workspace_root,
};

const COLLECTION: &str = "from_milvus_like";
const DIM: u32 = 8;
use tonic::Code;

#[tokio::test]
// GetIndexState and GetIndexBuildProgress are deprecated in Milvus's proto;
// older clients (and the Go SDK's v1) still call them.
#[allow(deprecated)]
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
    let states = milvus
        .get_component_states(GetComponentStatesRequest::default())
        .await
        .expect("GetComponentStates")
        .into_inner();
    let state = states.state.expect("the proxy's state");
    assert_eq!(state.role, "Proxy");
    assert_eq!(state.state_code, StateCode::Healthy as i32);

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

    // Its index (chosen at creation by milvus-like's API) and segments.
    let state = milvus
        .get_index_state(GetIndexStateRequest {
            collection_name: COLLECTION.into(),
            ..GetIndexStateRequest::default()
        })
        .await
        .expect("GetIndexState")
        .into_inner();
    assert_eq!(state.status.map(|s| s.code), Some(0));
    assert_eq!(state.state, IndexState::Finished as i32);
    let progress = milvus
        .get_index_build_progress(GetIndexBuildProgressRequest {
            collection_name: COLLECTION.into(),
            ..GetIndexBuildProgressRequest::default()
        })
        .await
        .expect("GetIndexBuildProgress")
        .into_inner();
    assert_eq!((progress.indexed_rows, progress.total_rows), (0, 0));
    let other = milvus
        .get_index_state(GetIndexStateRequest {
            collection_name: COLLECTION.into(),
            index_name: "other".into(),
            ..GetIndexStateRequest::default()
        })
        .await
        .expect("answered in the status")
        .into_inner();
    assert_eq!(other.status.map(|s| s.code), Some(700));
    let segments = milvus
        .get_persistent_segment_info(GetPersistentSegmentInfoRequest {
            collection_name: COLLECTION.into(),
            ..GetPersistentSegmentInfoRequest::default()
        })
        .await
        .expect("GetPersistentSegmentInfo")
        .into_inner();
    assert_eq!(segments.status.map(|s| s.code), Some(0));
    assert!(segments.infos.is_empty(), "{:?}", segments.infos);

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

    // A bad create is answered in the status, as Milvus does, naming the problem.
    let bad = milvus
        .create_collection(CreateCollectionRequest {
            collection_name: "bad".into(),
            ..CreateCollectionRequest::default()
        })
        .await
        .expect("answered in the status")
        .into_inner();
    assert_eq!(bad.code, 1100, "{bad:?}");
    assert!(bad.reason.contains("no fields"), "{bad:?}");
    let refused = milvus
        .create_alias(CreateAliasRequest::default())
        .await
        .expect_err("not served");
    assert_eq!(refused.code(), Code::Unimplemented);
    assert!(
        refused.message().contains("CreateAlias"),
        "{}",
        refused.message()
    );

    // pymilvus itself.
    let endpoint = sa.proxy_endpoint();
    let out = pymilvus(
        "handshake.py",
        &[&endpoint, VERSION, COLLECTION, &DIM.to_string()],
        || sa.process.log(),
    );
    assert!(out.contains("pymilvus handshake: ok"), "{out}");
    // pymilvus dropped it through Milvus's API.
    let left = sa
        .proxy_client()
        .list_collections(proto::ListCollectionsRequest {})
        .await
        .expect("list")
        .into_inner()
        .collections;
    assert!(left.is_empty(), "{left:?}");

    let out = pymilvus("quickstart.py", &[&endpoint], || sa.process.log());
    assert!(out.contains("pymilvus quick start: ok"), "{out}");
    let out = go_client(&endpoint, || sa.process.log());
    assert!(out.contains("go quick start: ok"), "{out}");
}

/// Milvus's quick start through pymilvus and the Go SDK against a distributed cluster:
/// Kafka, two data nodes, a query node and a proxy, each its own process.
#[tokio::test]
async fn milvus_clients_run_the_quick_start_against_a_distributed_cluster() {
    let cluster = ClusterBuilder::new("milvus-api-cluster")
        .kafka()
        .datanodes(2)
        .datanode_args(&["--flush-rows=1000", "--flush-age=300ms"])
        .proxy()
        .build()
        .await
        .expect("cluster");
    let query_node = cluster
        .start_role("querynode", Role::QueryNode)
        .expect("start a query node");
    milvus_like_tests::wait_for("a query node", Duration::from_secs(60), || {
        let mut root = cluster.rootcoord_client();
        async move {
            let nodes = root
                .list_nodes(proto::ListNodesRequest {
                    role: proto::Role::QueryNode.into(),
                })
                .await
                .ok()?
                .into_inner()
                .nodes;
            (!nodes.is_empty()).then_some(())
        }
    })
    .await
    .expect("the query node registered");
    let out = pymilvus("quickstart.py", &[&cluster.proxy().endpoint()], || {
        format!(
            "proxy:\n{}\nquery node:\n{}",
            cluster.proxy().process.log(),
            query_node.process.log()
        )
    });
    assert!(out.contains("pymilvus quick start: ok"), "{out}");
    let out = go_client(&cluster.proxy().endpoint(), || {
        cluster.proxy().process.log()
    });
    assert!(out.contains("go quick start: ok"), "{out}");
}

/// Runs the quick start written with Milvus's Go SDK
/// (`tests/milvus_api/go`, built by `tests/scripts/go-client.sh`) against
/// `endpoint`: its standard output. A failure shows its output and `logs()`.
fn go_client(endpoint: &str, logs: impl Fn() -> String) -> String {
    let root = workspace_root();
    let built = Command::new(root.join("tests/scripts/go-client.sh"))
        .arg("build")
        .output()
        .expect("run go-client.sh");
    assert!(
        built.status.success(),
        "go-client.sh build: {}",
        String::from_utf8_lossy(&built.stderr)
    );
    let binary = String::from_utf8_lossy(&built.stdout).trim().to_owned();
    let run = Command::new(&binary)
        .arg(endpoint.trim_start_matches("http://"))
        .output()
        .expect("run the Go quick start");
    let stdout = String::from_utf8_lossy(&run.stdout).into_owned();
    assert!(
        run.status.success(),
        "the Go quick start failed:\n{stdout}\n{}\nlogs:\n{}",
        String::from_utf8_lossy(&run.stderr),
        logs()
    );
    stdout
}

/// Runs a script of `tests/milvus_api` with pymilvus (installed from PyPI by
/// `tests/scripts/pymilvus.sh`), the endpoint first in `args` as a URI: its
/// standard output. A failure shows the script's output and `logs()`.
fn pymilvus(script: &str, args: &[&str], logs: impl Fn() -> String) -> String {
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
    let uri = format!("http://{}", args[0].trim_start_matches("http://"));
    let run = Command::new(&python)
        .arg(root.join("tests/milvus_api").join(script))
        .arg(uri)
        .args(&args[1..])
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&run.stdout).into_owned();
    assert!(
        run.status.success(),
        "{script} failed:\n{stdout}\n{}\nlogs:\n{}",
        String::from_utf8_lossy(&run.stderr),
        logs()
    );
    stdout
}
