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
use milvus_like_tests::{Cluster, ClusterBuilder, Role, test_schema};

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

    let qn = cluster
        .start_role("querynode", Role::QueryNode)
        .expect("query node");
    let mut proxy = cluster.proxy_client();
    milvus_like_tests::wait_for("a query node", Duration::from_secs(60), || {
        let mut p = proxy.clone();
        async move {
            p.load_collection(proto::ProxyLoadCollectionRequest {
                collection: "indexed".into(),
            })
            .await
            .ok()
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}; query node log:\n{}", qn.process.log()));
    let qn_client = proto::query_node_client::QueryNodeClient::new(
        milvus_like_tests::clients::lazy(&qn.endpoint()),
    );
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
        })
        .await
        .expect("delete");
    let gone: HashSet<i64> = gone.into_iter().collect();
    let all = milvus_like_api::vectors::Floats::from(vectors.clone());
    let keys: Vec<i64> = (0..ROWS as i64).collect();
    let queries = random(40 * DIM, 7);
    let (k, mut found) = (10usize, 0usize);
    for q in queries.chunks_exact(DIM) {
        let exact: Vec<Hit> = flat_top_k(Metric::L2, DIM, &all, &keys, q, k, |i| {
            !gone.contains(&(i as i64))
        })
        .expect("exact");
        let answer = proxy
            .search(proto::SearchRequest {
                collection: "indexed".into(),
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
    let recall = found as f64 / (40 * k) as f64;
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
