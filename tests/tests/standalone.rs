//! `milvus-like standalone`: one process, embedded metadata store, nothing to install.

use std::time::Duration;

use milvus_like_api::proto;
use milvus_like_api::proto::root_coord_client::RootCoordClient;
use milvus_like_tests::{
    StandaloneProcess, TestDir, free_port, root_coord_client, test_schema, wait_for, wait_serving,
};
use tonic::transport::Channel;

async fn serving(sa: &StandaloneProcess) -> (RootCoordClient<Channel>, u64) {
    let ts = wait_serving(&sa.endpoint(), &sa.process, Duration::from_secs(20)).await;
    (root_coord_client(&sa.endpoint()), ts)
}

#[tokio::test]
async fn standalone_keeps_metadata_and_timestamp_order_across_kill9() {
    let dir = TestDir::new("standalone");
    let data = dir.path().join("data");
    let (port, http_port) = (free_port(), free_port());
    let mut sa = StandaloneProcess::start(&data, dir.path().join("sa-1.log"), port, http_port)
        .expect("start");
    let (mut c, _) = serving(&sa).await;
    let schema = test_schema("docs", 4);
    let created = c
        .create_collection(proto::CreateCollectionRequest {
            schema: Some(schema),
        })
        .await
        .expect("create")
        .into_inner()
        .collection
        .expect("info");
    let mut last = c
        .alloc_timestamp(proto::AllocTimestampRequest { count: 100 })
        .await
        .expect("ts")
        .into_inner()
        .timestamp
        + 99;

    // A second server on the same data dir is refused with a clear message.
    let mut second = StandaloneProcess::start(
        &data,
        dir.path().join("sa-dup.log"),
        free_port(),
        free_port(),
    )
    .expect("spawn");
    wait_for("the duplicate to exit", Duration::from_secs(10), || {
        let exited = second.process.has_exited();
        async move { exited.then_some(()) }
    })
    .await
    .expect("duplicate exits");
    assert!(
        second.process.log().contains("in use by another process"),
        "{}",
        second.process.log()
    );

    for round in 0..3 {
        sa.process.kill9();
        sa = StandaloneProcess::start(
            &data,
            dir.path().join(format!("sa-{round}.log")),
            port,
            http_port,
        )
        .expect("restart");
        let (mut c2, first) = serving(&sa).await;
        assert!(
            first > last,
            "timestamp went back after kill -9: {first} <= {last}"
        );
        last = first;
        let described = c2
            .describe_collection(proto::DescribeCollectionRequest {
                collection: Some(proto::describe_collection_request::Collection::Name(
                    "docs".into(),
                )),
            })
            .await
            .expect("describe")
            .into_inner()
            .collection
            .expect("info");
        assert_eq!(described, created);
        c = c2;
    }
    let nodes = c
        .list_nodes(proto::ListNodesRequest { role: 0 })
        .await
        .expect("nodes")
        .into_inner()
        .nodes;
    assert_eq!(
        nodes.len(),
        1,
        "sessions of killed processes are gone: {nodes:?}"
    );
}
