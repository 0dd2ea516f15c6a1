//! `milvus-like standalone`: every role in one process on embedded defaults (metadata
//! store, log, segment files under one data directory), nothing to install.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use milvus_like_api::proto::data_coord_client::DataCoordClient;
use milvus_like_api::proto::proxy_client::ProxyClient;
use milvus_like_api::proto::root_coord_client::RootCoordClient;
use milvus_like_api::proto::{self, CollectionInfo};
use milvus_like_api::schema::CollectionSchema;
use milvus_like_node::storage::{CollectionContent, SegmentStore, StorageConfig, read_collection};
use milvus_like_tests::{
    StandalonePorts, StandaloneProcess, TestDir, create_collection, root_coord_client, test_schema,
    wait_for, wait_serving,
};
use milvus_like_tests::{data, http, metric_sum, metric_sum_where, parse_metrics};
use tonic::Code;
use tonic::transport::Channel;

async fn serving(sa: &StandaloneProcess) -> (RootCoordClient<Channel>, u64) {
    let ts = wait_serving(&sa.endpoint(), &sa.process, Duration::from_secs(20)).await;
    (root_coord_client(&sa.endpoint()), ts)
}

#[tokio::test]
async fn standalone_keeps_metadata_and_timestamp_order_across_kill9() {
    let dir = TestDir::new("standalone");
    let mut sa = StandaloneProcess::start_in(dir.path(), &[]).expect("start");
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

    for _ in 0..3 {
        sa.restart().expect("restart after kill -9");
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
    // One session per role, none left over from the killed processes (a second
    // session of a role fails at once). The roles register their sessions as they
    // start, after the root coordinator serves: wait for a missing one.
    let expected = [
        proto::Role::RootCoord,
        proto::Role::DataCoord,
        proto::Role::DataNode,
        proto::Role::Proxy,
        proto::Role::QueryNode,
    ]
    .map(|r| r as i32);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let nodes = c
            .list_nodes(proto::ListNodesRequest { role: 0 })
            .await
            .expect("nodes")
            .into_inner()
            .nodes;
        let mut roles: Vec<i32> = nodes.iter().map(|n| n.role).collect();
        roles.sort_unstable();
        if roles == expected {
            break;
        }
        let mut distinct = roles.clone();
        distinct.dedup();
        assert_eq!(
            distinct, roles,
            "sessions of killed processes are gone: {nodes:?}"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "one session per role after 20 s, none left from the killed processes: {nodes:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_second_standalone_on_the_same_data_dir_is_refused() {
    let dir = TestDir::new("standalone-twice");
    let sa = StandaloneProcess::start_in(dir.path(), &[]).expect("start");
    serving(&sa).await;
    // A second server on the same data dir is refused with a clear message.
    let log = refusal(
        &sa,
        dir.path(),
        "standalone-dup",
        StandalonePorts::free(),
        &[],
    )
    .await;
    assert!(log.contains("in use by another process"), "{log}");
}

/// Starts another standalone on `sa`'s data directory (logging to
/// `dir/<name>.log`), waits (20 s at most) until it has exited by itself, and
/// returns its log.
async fn refusal(
    sa: &StandaloneProcess,
    dir: &std::path::Path,
    name: &str,
    ports: StandalonePorts,
    extra: &[&str],
) -> String {
    let mut other = StandaloneProcess::start(dir, name, &sa.data_dir, ports, extra).expect("spawn");
    other
        .process
        .exited(Duration::from_secs(20))
        .await
        .expect("it exits");
    other.process.log()
}

const DIM: u32 = 8;

/// A client of the standalone's proxy and data coordinator.
struct Client {
    proxy: ProxyClient<Channel>,
    datacoord: DataCoordClient<Channel>,
    segments: SegmentStore,
}

impl Client {
    fn new(sa: &StandaloneProcess) -> Self {
        Self {
            proxy: sa.proxy_client(),
            datacoord: sa.datacoord_client(),
            segments: SegmentStore::open(&StorageConfig::Local {
                root: sa.segments(),
            })
            .expect("segment store"),
        }
    }

    /// Waits until the proxy answers; creates the collection unless it exists.
    async fn collection(
        &self,
        sa: &StandaloneProcess,
        name: &str,
    ) -> (CollectionInfo, CollectionSchema) {
        let proxy = self.proxy.clone();
        milvus_like_tests::wait_for_proxy(&proxy)
            .await
            .unwrap_or_else(|e| panic!("{e}; log:\n{}", sa.process.log()));
        let mut p = self.proxy.clone();
        let described = p
            .describe_collection(proto::DescribeCollectionRequest {
                collection: Some(proto::describe_collection_request::Collection::Name(
                    name.into(),
                )),
            })
            .await;
        match described {
            Ok(r) => {
                let info = r.into_inner().collection.expect("info");
                let schema = CollectionSchema::try_from(info.schema.clone().expect("schema"))
                    .expect("valid");
                (info, schema)
            }
            Err(_) => create_collection(&p, name, DIM).await.expect("create"),
        }
    }

    fn request(name: &str, schema: &CollectionSchema, pks: &[i64]) -> proto::InsertRequest {
        proto::InsertRequest {
            collection: name.to_owned(),
            partition: String::new(),
            columns: data::rows(pks, DIM).to_wire(schema),
            num_rows: u32::try_from(pks.len()).expect("fits"),
        }
    }

    /// Flush and wait (asked again while the coordinator's own wait runs out).
    async fn flush(&self, name: &str) {
        milvus_like_tests::flush(&self.proxy, name)
            .await
            .unwrap_or_else(|s| panic!("flush {name}: {s}"));
    }

    /// The collection's segments, asked again while the data coordinator is between
    /// terms (after a restart it holds the leader key a moment before it serves).
    async fn listed(&self, info: &CollectionInfo) -> proto::ListSegmentsResponse {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            match self
                .datacoord
                .clone()
                .list_segments(proto::ListSegmentsRequest {
                    collection_id: info.id,
                })
                .await
            {
                Ok(r) => return r.into_inner(),
                Err(s) if s.code() == Code::Unavailable && std::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(s) => panic!("list segments: {s}"),
            }
        }
    }

    /// Every insert log of the collection, in listing order.
    async fn files(&self, info: &CollectionInfo) -> Vec<String> {
        self.listed(info)
            .await
            .segments
            .iter()
            .flat_map(|s| s.insert_log_paths.clone())
            .collect()
    }

    async fn read_back(
        &self,
        info: &CollectionInfo,
        schema: &CollectionSchema,
    ) -> CollectionContent {
        let listed = self.listed(info).await;
        read_collection(
            &self.segments,
            schema,
            &listed.segments,
            &listed.delete_logs,
            2,
        )
        .await
        .expect("read back")
    }
}

#[tokio::test]
async fn standalone_ingests_a_million_rows_and_keeps_them_across_a_restart() {
    let _slot = milvus_like_tests::heavy_slot();
    let dir = TestDir::new("standalone-million");
    let mut sa = StandaloneProcess::start_in(dir.path(), &["--flush-rows=200000"]).expect("start");
    let client = Client::new(&sa);
    let (info, schema) = client.collection(&sa, "million").await;
    const ROWS: i64 = 1_000_000;
    const BATCH: i64 = 20_000;
    let sends = (0..ROWS / BATCH).map(|b| {
        let mut proxy = client.proxy.clone();
        let pks: Vec<i64> = (b * BATCH..(b + 1) * BATCH).collect();
        let request = Client::request("million", &schema, &pks);
        async move { proxy.insert(request).await.map(|r| r.into_inner().inserted) }
    });
    let acked: Vec<u64> = futures::stream::iter(sends)
        .buffer_unordered(4)
        .try_collect()
        .await
        .unwrap_or_else(|s| panic!("insert: {s}; log:\n{}", sa.process.log()));
    assert_eq!(acked.iter().sum::<u64>(), ROWS as u64);
    client.flush("million").await;
    let all: Vec<i64> = (0..ROWS).collect();
    let (want_rows, want_sum) = data::expected(&schema, DIM, &all, &HashSet::new());
    let content = client.read_back(&info, &schema).await;
    assert_eq!(
        (content.rows, content.checksum),
        (want_rows, want_sum),
        "read back after flush"
    );
    let files = client.files(&info).await;
    assert!(!files.is_empty());
    check_metrics_and_readiness(&sa, ROWS as f64).await;
    // Standalone's query node serves searches over the same rows.
    let mut proxy = client.proxy.clone();
    proxy
        .load_collection(proto::ProxyLoadCollectionRequest {
            collection: "million".into(),
        })
        .await
        .unwrap_or_else(|s| panic!("load: {s}; log:\n{}", sa.process.log()));
    check_search(&mut proxy, ROWS as u64).await;

    // A graceful restart: the same files, the same rows.
    let status = sa.process.terminate(Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| s.success()),
        "standalone did not stop cleanly: {status:?}; log:\n{}",
        sa.process.log()
    );
    sa.restart().expect("restart");
    let client = Client::new(&sa);
    let (again, _) = client.collection(&sa, "million").await;
    assert_eq!(again.id, info.id);
    let content = client.read_back(&info, &schema).await;
    assert_eq!(
        (content.rows, content.checksum),
        (want_rows, want_sum),
        "read back after restart"
    );
    let files_again = client.files(&info).await;
    assert_eq!(
        files_again, files,
        "the segment files changed across a restart"
    );
    // Still loaded after the restart: the query node loads it again by itself.
    let mut proxy = client.proxy.clone();
    let loaded_again = milvus_like_tests::wait_for(
        "the collection served again",
        Duration::from_secs(120),
        || {
            let mut p = proxy.clone();
            async move {
                p.count(proto::CountRequest {
                    collection: "million".into(),
                    consistency: proto::ConsistencyLevel::ConsistencyStrong.into(),
                    timeout_ms: 10_000,
                    ..proto::CountRequest::default()
                })
                .await
                .ok()
            }
        },
    )
    .await;
    if let Err(e) = loaded_again {
        panic!("{e}; log:\n{}", sa.process.log());
    }
    check_search(&mut proxy, ROWS as u64).await;
}

/// A strong count sees every row, and a row's own vector finds rows at distance
/// 0 only among the keys that share it (keys 1,000 apart share a vector).
async fn check_search(proxy: &mut ProxyClient<Channel>, rows: u64) {
    let counted = proxy
        .count(proto::CountRequest {
            collection: "million".into(),
            consistency: proto::ConsistencyLevel::ConsistencyStrong.into(),
            timeout_ms: 30_000,
            ..proto::CountRequest::default()
        })
        .await
        .expect("count")
        .into_inner();
    assert_eq!(counted.rows, rows);
    let milvus_like_node::columns::Column::Vector { values, .. } =
        &data::rows(&[123], DIM).columns[1]
    else {
        panic!("the test rows have a vector column");
    };
    let found = proxy
        .search(proto::SearchRequest {
            collection: "million".into(),
            vectors: Some(milvus_like_api::vectors::FloatVectorArray {
                dim: DIM,
                values: values.clone(),
            }),
            top_k: 10,
            consistency: proto::ConsistencyLevel::ConsistencyStrong.into(),
            timeout_ms: 30_000,
            ef: 0,
            ..proto::SearchRequest::default()
        })
        .await
        .expect("search")
        .into_inner();
    let hits = &found.results[0];
    assert_eq!(hits.ids.len(), 10, "{hits:?}");
    assert!(hits.scores.iter().all(|s| *s == 0.0), "{hits:?}");
    assert!(hits.ids.iter().all(|id| id % 1000 == 123), "{hits:?}");
}

/// Inserts batches with fresh keys until `stop`. Returns the acknowledged keys and
/// the keys of batches whose answer never came (the process died under them).
async fn insert_until_killed(
    client: ProxyClient<Channel>,
    schema: CollectionSchema,
    first_key: i64,
    acked_batches: Arc<AtomicUsize>,
    stop: tokio_util::sync::CancellationToken,
) -> (Vec<i64>, Vec<i64>) {
    const BATCH: i64 = 2_000;
    let mut acked = Vec::new();
    let mut uncertain = Vec::new();
    let mut next = first_key;
    let mut client = client;
    while !stop.is_cancelled() {
        let pks: Vec<i64> = (next..next + BATCH).collect();
        next += BATCH;
        match client.insert(Client::request("chaos", &schema, &pks)).await {
            Ok(_) => {
                acked.extend(pks);
                acked_batches.fetch_add(1, Ordering::Release);
            }
            Err(_) => {
                uncertain.extend(pks);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    (acked, uncertain)
}

#[tokio::test]
async fn kill9_mid_ingest_keeps_every_acknowledged_row_exactly_once() {
    let _slot = milvus_like_tests::heavy_slot();
    let dir = TestDir::new("standalone-kill9");
    let mut sa = StandaloneProcess::start_in(dir.path(), &["--flush-rows=5000", "--flush-age=1s"])
        .expect("start");
    let mut acked = Vec::new();
    let mut uncertain = Vec::new();
    let mut info_schema = None;
    for round in 0..3i64 {
        let client = Client::new(&sa);
        let (info, schema) = client.collection(&sa, "chaos").await;
        info_schema = Some((info, schema.clone()));
        let stop = tokio_util::sync::CancellationToken::new();
        let batches = Arc::new(AtomicUsize::new(0));
        let inserter = tokio::spawn(insert_until_killed(
            client.proxy.clone(),
            schema,
            round * 10_000_000,
            batches.clone(),
            stop.clone(),
        ));
        // Killed once some batches are in, at a different point each round (not
        // after a fixed time: a busy machine would acknowledge nothing by then).
        let want = 20 + 40 * usize::try_from(round).unwrap_or(0);
        wait_for("acknowledged batches", Duration::from_secs(120), || {
            let n = batches.load(Ordering::Acquire);
            async move { (n >= want).then_some(()) }
        })
        .await
        .unwrap_or_else(|e| panic!("round {round}: {e}; log:\n{}", sa.process.log()));
        eprintln!("round {round}: kill -9 standalone after {want} batches");
        sa.process.kill9();
        stop.cancel();
        let (a, u) = inserter.await.expect("inserter");
        acked.extend(a);
        uncertain.extend(u);
        sa.restart().expect("restart");
    }
    let (info, schema) = info_schema.expect("rounds ran");
    let client = Client::new(&sa);
    client.collection(&sa, "chaos").await;
    client.flush("chaos").await;
    let counts = data::committed_keys(&client.segments, &schema, &client.listed(&info).await).await;
    let uncertain: HashSet<i64> = uncertain.into_iter().collect();
    for pk in &acked {
        assert_eq!(
            counts.get(pk),
            Some(&1),
            "acknowledged key {pk} is not there exactly once"
        );
    }
    let acked_set: HashSet<i64> = acked.iter().copied().collect();
    for (pk, n) in &counts {
        assert!(*n == 1, "key {pk} is there {n} times");
        assert!(
            acked_set.contains(pk) || uncertain.contains(pk),
            "key {pk} was never sent"
        );
    }
    eprintln!(
        "acknowledged {} rows over 3 kills, all there once; {} of {} unanswered rows landed",
        acked.len(),
        counts.len() - acked.len(),
        uncertain.len()
    );
}

/// Every role's `/metrics` parses and tells what happened; every `/readyz` is 200
/// and names the dependencies that role uses.
async fn check_metrics_and_readiness(sa: &StandaloneProcess, rows: f64) {
    let p = sa.ports;
    let scrape = |port: u16| async move {
        let (_, body) = http(port, "GET", "/metrics", "").await.expect("scrape");
        parse_metrics(&body)
    };
    let root = scrape(p.rootcoord.http).await;
    assert!(
        metric_sum(&root, "rootcoord_tso_timestamps_total") > Some(0.0),
        "{root:?}"
    );
    let proxy = scrape(p.proxy.http).await;
    assert_eq!(metric_sum(&proxy, "proxy_rows_inserted_total"), Some(rows));
    let node = scrape(p.datanode.http).await;
    assert_eq!(metric_sum(&node, "datanode_rows_flushed_total"), Some(rows));
    assert_eq!(metric_sum(&node, "datanode_dead_lettered_total"), Some(0.0));
    assert!(metric_sum(&node, "datanode_flush_seconds_count") >= Some(1.0));
    assert!(metric_sum(&node, "datanode_buffered_bytes").is_some());
    // Lag and the load distribution come with the 5 s load reports.
    // Lag for every channel, and the load distribution covering them all.
    wait_for("a load report", Duration::from_secs(20), || async move {
        let node = scrape(p.datanode.http).await;
        let coord = scrape(p.datacoord.http).await;
        let lags = node
            .iter()
            .filter(|s| s.name == "datanode_consumer_lag")
            .count();
        let channels = metric_sum(&coord, "datacoord_node_channels");
        (lags == 3 && channels == Some(3.0)).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}; log:\n{}", sa.process.log()));
    // Every role counts the calls of its own service, by method and code.
    for (port, metric, method) in [
        // The proxy's timestamps come on a stream (unary calls only when it fails).
        (
            p.rootcoord.http,
            "rootcoord_rpcs_total",
            "AllocTimestampStream",
        ),
        (p.datacoord.http, "datacoord_rpcs_total", "AssignSegmentId"),
        (p.proxy.http, "proxy_rpcs_total", "Insert"),
        (p.datanode.http, "datanode_rpcs_total", "WatchChannel"),
    ] {
        let samples = scrape(port).await;
        let ok = metric_sum_where(&samples, metric, &[("method", method), ("code", "OK")]);
        assert!(ok >= Some(1.0), "{metric} method={method}: {samples:?}");
    }
    for (port, role, deps) in [
        (p.rootcoord.http, "rootcoord", &["metadata_store"][..]),
        (
            p.datacoord.http,
            "datacoord",
            &["metadata_store", "log"][..],
        ),
        (p.proxy.http, "proxy", &["metadata_store", "log"][..]),
        (
            p.datanode.http,
            "datanode",
            &["metadata_store", "log", "storage"][..],
        ),
    ] {
        let (status, body) = http(port, "GET", "/readyz", "").await.expect("readyz");
        assert_eq!(status, 200, "{role}: {body}");
        let ready: serde_json::Value = serde_json::from_str(&body).expect("readyz is JSON");
        assert_eq!(ready["ready"], true, "{role}: {ready}");
        assert_eq!(ready["memory"]["threshold"], 0.9, "{role}: {ready}");
        for dep in deps {
            assert_eq!(ready[dep]["reachable"], true, "{role} {dep}: {ready}");
        }
    }
}

#[tokio::test]
async fn a_replaced_log_or_another_channel_count_is_refused_not_skipped() {
    let dir = TestDir::new("standalone-refusals");
    let mut sa = StandaloneProcess::start_in(dir.path(), &[]).expect("start");
    let client = Client::new(&sa);
    let (info, schema) = client.collection(&sa, "kept").await;
    let pks: Vec<i64> = (0..5_000).collect();
    client
        .proxy
        .clone()
        .insert(Client::request("kept", &schema, &pks))
        .await
        .expect("insert");
    client.flush("kept").await;
    assert_eq!(client.read_back(&info, &schema).await.rows, 5_000);
    let status = sa.process.terminate(Duration::from_secs(30));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");

    // Another channel count than the data directory was made with: a sentence, exit 1.
    let log = refusal(
        &sa,
        dir.path(),
        "standalone-channels",
        sa.ports,
        &["--channels=5"],
    )
    .await;
    assert!(
        log.contains("was created with another channel count than --channels=5")
            && log.contains("partitions but the cluster uses 5 channels"),
        "{log}"
    );

    // The log replaced under kept checkpoints: the data node refuses the channels
    // (what is appended below the checkpoints would be taken for duplicates).
    std::fs::remove_file(sa.data_dir.join("log.redb")).expect("remove the log");
    sa.restart().expect("restart");
    wait_for("the data node to refuse", Duration::from_secs(30), || {
        let log = sa.process.log();
        async move {
            log.contains("ends before the channel's checkpoint")
                .then_some(())
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}; log:\n{}", sa.process.log()));
}
