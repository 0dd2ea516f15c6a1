//! HNSW indexes on a real cluster (etcd, Kafka, both coordinators, a data node, a
//! proxy, a query node): every committed insert log of an indexed collection gets
//! an index built by the data node and recorded by the data coordinator; the
//! query node searches through it, with a recall against exact search that an
//! HNSW graph of these parameters reaches easily, and never returns a deleted
//! row. A FLAT collection gets no index.

use std::collections::HashSet;
use std::time::Duration;

use milvus_like_api::proto::{self, ConsistencyLevel};
use milvus_like_api::schema::{CollectionSchema, IndexSpec, Metric};
use milvus_like_api::vectors::FloatVectorArray;
use milvus_like_node::columns::{Column, RowBatch};
use milvus_like_node::search::{Hit, flat_top_k};
use milvus_like_tests::{Cluster, ClusterBuilder, Role, RoleProcess, test_schema};

const DIM: usize = 24;
const ROWS: usize = 6_000;

/// Uniform floats in [-0.5, 0.5) from splitmix64.
fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            ((z ^ (z >> 31)) >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect()
}

async fn create(cluster: &Cluster, name: &str, index: IndexSpec) -> (i64, CollectionSchema) {
    let mut schema = test_schema(name, DIM as u32);
    schema.index = Some(index.into());
    let info = cluster
        .proxy_client()
        .create_collection(proto::CreateCollectionRequest {
            schema: Some(schema),
        })
        .await
        .expect("create")
        .into_inner()
        .collection
        .expect("info");
    let schema = CollectionSchema::try_from(info.schema.expect("schema")).expect("valid");
    assert_eq!(schema.index, index);
    (info.id, schema)
}

async fn insert(cluster: &Cluster, name: &str, schema: &CollectionSchema, vectors: &[f32]) {
    let mut proxy = cluster.proxy_client();
    for (b, chunk) in vectors.chunks(1_000 * DIM).enumerate() {
        let n = chunk.len() / DIM;
        let first = (b * 1_000) as i64;
        let rows = RowBatch {
            columns: vec![
                Column::Long((first..first + n as i64).collect()),
                Column::Vector {
                    dim: DIM as u32,
                    values: chunk.to_vec().into(),
                },
            ],
            num_rows: n,
        };
        proxy
            .insert(proto::InsertRequest {
                collection: name.into(),
                partition: String::new(),
                columns: rows.to_wire(schema),
                num_rows: n as u32,
            })
            .await
            .expect("insert");
    }
}

async fn insert_logs(cluster: &Cluster, collection: i64) -> Vec<proto::CommittedFile> {
    cluster
        .datacoord_client()
        .list_segments(proto::ListSegmentsRequest {
            collection_id: collection,
        })
        .await
        .expect("list")
        .into_inner()
        .segments
        .into_iter()
        .flat_map(|s| s.insert_logs)
        .collect()
}

/// Starts a query node and loads `name` on it.
async fn load_on_a_query_node(
    cluster: &Cluster,
    name: &str,
) -> (
    RoleProcess,
    proto::query_node_client::QueryNodeClient<tonic::transport::Channel>,
) {
    let qn = cluster
        .start_role("querynode", Role::QueryNode)
        .expect("query node");
    let proxy = cluster.proxy_client();
    milvus_like_tests::wait_for("a query node", Duration::from_secs(60), || {
        let mut p = proxy.clone();
        async move {
            p.load_collection(proto::ProxyLoadCollectionRequest {
                collection: name.into(),
            })
            .await
            .ok()
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}; query node log:\n{}", qn.process.log()));
    let client = proto::query_node_client::QueryNodeClient::new(milvus_like_tests::clients::lazy(
        &qn.endpoint(),
    ));
    (qn, client)
}

/// Recall@10 at ef 64 of strong searches through the proxy against exact
/// search of `vectors` (row i has key i) without the `gone` keys; fails when a
/// gone key comes back or an answer is short.
async fn recall_through_proxy(
    proxy: &mut proto::proxy_client::ProxyClient<tonic::transport::Channel>,
    name: &str,
    vectors: &[f32],
    gone: &HashSet<i64>,
) -> f64 {
    let all = milvus_like_api::vectors::Floats::from(vectors.to_vec());
    let rows = vectors.len() / DIM;
    let keys: Vec<i64> = (0..rows as i64).collect();
    let queries = random(40 * DIM, 7);
    let (k, mut found) = (10usize, 0usize);
    for q in queries.chunks_exact(DIM) {
        let exact: Vec<Hit> = flat_top_k(Metric::L2, DIM, &all, &keys, q, k, |i| {
            !gone.contains(&(i as i64))
        })
        .expect("exact");
        let answer = proxy
            .search(proto::SearchRequest {
                collection: name.into(),
                vectors: Some(FloatVectorArray {
                    dim: DIM as u32,
                    values: q.to_vec().into(),
                }),
                top_k: k as u32,
                consistency: ConsistencyLevel::ConsistencyStrong.into(),
                timeout_ms: 20_000,
                ef: 64,
                ..proto::SearchRequest::default()
            })
            .await
            .expect("search")
            .into_inner();
        let hits = &answer.results[0];
        assert_eq!(hits.ids.len(), k);
        assert!(
            hits.ids.iter().all(|id| !gone.contains(id)),
            "a deleted row was returned: {hits:?}"
        );
        found += hits
            .ids
            .iter()
            .filter(|id| exact.iter().any(|h| h.id == **id))
            .count();
    }
    found as f64 / (40 * k) as f64
}

#[tokio::test]
async fn flushed_files_get_hnsw_indexes_that_searches_use_with_high_recall() {
    let cluster = ClusterBuilder::new("index")
        .kafka()
        .datanodes(1)
        // Builds on two threads: the recall below holds for a graph built in parallel.
        .datanode_args(&["--index-build-threads=2"])
        .proxy()
        .build()
        .await
        .expect("cluster");
    let (id, schema) = create(&cluster, "indexed", IndexSpec::default()).await;
    let (flat_id, flat_schema) = create(&cluster, "exact", IndexSpec::Flat).await;
    let vectors = random(ROWS * DIM, 42);
    insert(&cluster, "indexed", &schema, &vectors).await;
    insert(&cluster, "exact", &flat_schema, &vectors).await;
    for name in ["indexed", "exact"] {
        milvus_like_tests::flush(&cluster.proxy_client(), name)
            .await
            .expect("flush");
    }

    // Every file big enough gets an index, recorded on its segment.
    let indexed =
        milvus_like_tests::wait_for("every file indexed", Duration::from_secs(180), || {
            let cluster = &cluster;
            async move {
                let files = insert_logs(cluster, id).await;
                let big: Vec<_> = files.iter().filter(|f| f.num_rows >= 1024).collect();
                (!big.is_empty() && big.iter().all(|f| !f.index_path.is_empty())).then_some(files)
            }
        })
        .await
        .unwrap_or_else(|e| {
            panic!(
                "{e}; data node log:\n{}",
                cluster.datanodes[0].process.log()
            )
        });
    for f in indexed.iter().filter(|f| !f.index_path.is_empty()) {
        assert_eq!(f.index_path, format!("{}.hnsw", f.path));
        assert!(f.index_bytes > 0, "{f:?}");
    }
    // The FLAT collection's files are searched exactly: no index, ever.
    assert!(
        insert_logs(&cluster, flat_id)
            .await
            .iter()
            .all(|f| f.index_path.is_empty())
    );

    let (qn, qn_client) = load_on_a_query_node(&cluster, "indexed").await;
    let mut proxy = cluster.proxy_client();
    let held = milvus_like_tests::wait_for("indexes loaded", Duration::from_secs(60), || {
        let mut c = qn_client.clone();
        async move {
            let d = c
                .get_distribution(proto::QueryDistributionRequest {})
                .await
                .ok()?
                .into_inner();
            let loaded: Vec<_> = d.channels.iter().flat_map(|c| &c.collections).collect();
            let indexed: u32 = loaded.iter().map(|c| c.indexed_files).sum();
            (indexed > 0).then_some(d)
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}; query node log:\n{}", qn.process.log()));
    eprintln!("query node holds: {held:?}");

    // Delete every tenth row; recall is measured against exact search of the rest.
    let gone: Vec<i64> = (0..ROWS as i64).step_by(10).collect();
    proxy
        .delete(proto::DeleteRequest {
            collection: "indexed".into(),
            partition: String::new(),
            primary_keys: gone.clone(),
            string_keys: Vec::new(),
        })
        .await
        .expect("delete");
    let gone: HashSet<i64> = gone.into_iter().collect();
    let recall = recall_through_proxy(&mut proxy, "indexed", &vectors, &gone).await;
    eprintln!("recall@10 at ef=64 through the proxy: {recall:.3}");
    assert!(recall >= 0.9, "recall@10 {recall}");
    let loaded = milvus_like_tests::metric_sum(
        &milvus_like_tests::scrape(qn.ports.http).await,
        "querynode_indexes_loaded_total",
    );
    assert!(
        loaded.is_some_and(|n| n >= 1.0),
        "indexes loaded: {loaded:?}"
    );
}

/// The insert logs held on the query node, how many are searched through an
/// index, and their rows.
async fn held_files(
    client: &proto::query_node_client::QueryNodeClient<tonic::transport::Channel>,
) -> Option<(u32, u32, u64)> {
    let d = client
        .clone()
        .get_distribution(proto::QueryDistributionRequest {})
        .await
        .ok()?
        .into_inner();
    let loaded: Vec<_> = d.channels.iter().flat_map(|c| &c.collections).collect();
    Some((
        loaded.iter().map(|c| c.sealed_files).sum(),
        loaded.iter().map(|c| c.indexed_files).sum(),
        loaded.iter().map(|c| c.sealed_rows).sum(),
    ))
}

#[tokio::test]
async fn a_flushed_segment_of_several_files_becomes_one_indexed_file_and_no_read_sees_a_row_twice()
{
    // One channel, files of 1,500 rows: 6,000 rows make one segment of several
    // files; replaced files are deleted a second after the compaction.
    let cluster = ClusterBuilder::new("compaction")
        .kafka()
        .s3()
        .channels(1)
        .datacoord_args(&["--garbage-grace=1s"])
        .datanodes(1)
        .datanode_args(&["--index-build-threads=2", "--flush-rows=1500"])
        .proxy()
        .build()
        .await
        .expect("cluster");
    let (id, schema) = create(&cluster, "compacted", IndexSpec::default()).await;
    // Loaded before the rows come: the query node holds the files as they are
    // committed, then sees them replaced.
    let (qn, qn_client) = load_on_a_query_node(&cluster, "compacted").await;
    let vectors = random(ROWS * DIM, 43);
    insert(&cluster, "compacted", &schema, &vectors).await;
    milvus_like_tests::flush(&cluster.proxy_client(), "compacted")
        .await
        .expect("flush");

    // Every count from now on is all the rows: never a file's rows twice or
    // missing while the files are swapped.
    let mut proxy = cluster.proxy_client();
    let mut counts = 0;
    let compacted =
        milvus_like_tests::wait_for("one indexed file", Duration::from_secs(240), || {
            let (cluster, client, proxy) = (&cluster, &qn_client, proxy.clone());
            counts += 1;
            async move {
                let rows = milvus_like_tests::strong_count(&proxy, "compacted")
                    .await
                    .expect("count");
                assert_eq!(rows, ROWS as u64, "a read saw {rows} rows");
                let segments = cluster
                    .datacoord_client()
                    .list_segments(proto::ListSegmentsRequest { collection_id: id })
                    .await
                    .ok()?
                    .into_inner()
                    .segments;
                let [segment] = segments.as_slice() else {
                    return None;
                };
                let [file] = segment.insert_logs.as_slice() else {
                    return None;
                };
                let held = held_files(client).await?;
                (!file.index_path.is_empty() && held == (1, 1, ROWS as u64))
                    .then(|| (segment.clone(), file.clone()))
            }
        })
        .await
        .unwrap_or_else(|e| {
            panic!(
                "{e}; data coordinator log:\n{}\ndata node log:\n{}",
                cluster.datacoord().process.log(),
                cluster.datanodes[0].process.log()
            )
        });
    let (segment, file) = compacted;
    eprintln!("after {counts} counts: {segment:?}");
    assert_eq!(file.num_rows, ROWS as u64);
    assert!(segment.replaced_insert_log_paths.len() >= 2, "{segment:?}");
    assert_eq!(segment.insert_log_paths, vec![file.path.clone()]);
    assert_eq!(file.index_path, format!("{}.hnsw", file.path));

    // The one graph answers as the files' graphs did, deletes applied.
    let gone: HashSet<i64> = (0..ROWS as i64).step_by(7).collect();
    proxy
        .delete(proto::DeleteRequest {
            collection: "compacted".into(),
            partition: String::new(),
            primary_keys: gone.iter().copied().collect(),
            string_keys: Vec::new(),
        })
        .await
        .expect("delete");
    let recall = recall_through_proxy(&mut proxy, "compacted", &vectors, &gone).await;
    eprintln!("recall@10 at ef=64 through the compacted segment's graph: {recall:.3}");
    assert!(recall >= 0.9, "recall@10 {recall}");

    // The replaced files and their indexes are deleted after the grace.
    let store = milvus_like_node::storage::SegmentStore::open(&cluster.storage).expect("store");
    let old: Vec<String> = segment
        .replaced_insert_log_paths
        .iter()
        .flat_map(|p| [p.clone(), format!("{p}.hnsw")])
        .collect();
    milvus_like_tests::wait_for("replaced files deleted", Duration::from_secs(60), || {
        let (store, old) = (&store, &old);
        async move {
            for path in old {
                match store.read_blob(path).await {
                    Err(milvus_like_node::storage::StorageError::NotFound { .. }) => {}
                    _ => return None,
                }
            }
            Some(())
        }
    })
    .await
    .unwrap_or_else(|e| {
        panic!(
            "{e}; data coordinator log:\n{}",
            cluster.datacoord().process.log()
        )
    });
    store
        .read_blob(&file.path)
        .await
        .expect("the new file stays");
    store
        .read_blob(&file.index_path)
        .await
        .expect("its index stays");
    let dc = milvus_like_tests::scrape(cluster.datacoord().ports.http).await;
    assert_eq!(
        milvus_like_tests::metric_sum(&dc, "datacoord_compactions_total"),
        Some(1.0)
    );
    let deleted = milvus_like_tests::metric_sum(&dc, "datacoord_garbage_deleted_total");
    assert!(
        deleted.is_some_and(|n| n >= segment.replaced_insert_log_paths.len() as f64),
        "garbage deleted: {deleted:?}"
    );
    drop(qn);
}
