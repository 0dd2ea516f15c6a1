//! Search through the proxy on a real cluster (etcd, Kafka, both coordinators, a
//! data node flushing often, a proxy, two query nodes): the data coordinator
//! places the channels on the query nodes, the proxy fans a search out to them
//! and merges; strong reads see every acknowledged write, deletes are never
//! returned, bad requests get errors naming the problem, and after a query node
//! is killed every answer is either complete or an error until the survivor
//! serves every channel.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use milvus_like_api::proto::proxy_client::ProxyClient;
use milvus_like_api::proto::{self, ConsistencyLevel};
use milvus_like_api::schema::CollectionSchema;
use milvus_like_api::vectors::FloatVectorArray;
use milvus_like_node::columns::Column;
use milvus_like_tests::{Cluster, ClusterBuilder, Role, RoleProcess, create_collection};
use tonic::transport::Channel;
use tonic::{Code, Status};

const DIM: u32 = 16;
const NAME: &str = "docs";

/// The vector of `key` (unique among 1,000 consecutive keys).
fn vector_of(key: i64) -> FloatVectorArray {
    let Column::Vector { values, .. } = &milvus_like_tests::data::rows(&[key], DIM).columns[1]
    else {
        panic!("the test rows have a vector column");
    };
    FloatVectorArray {
        dim: DIM,
        values: values.clone(),
    }
}

fn search_request(key: i64, consistency: ConsistencyLevel) -> proto::SearchRequest {
    proto::SearchRequest {
        collection: NAME.into(),
        vectors: Some(vector_of(key)),
        top_k: 5,
        consistency: consistency.into(),
        timeout_ms: 20_000,
        ef: 0,
        ..proto::SearchRequest::default()
    }
}

async fn search(
    proxy: &mut ProxyClient<Channel>,
    key: i64,
) -> Result<proto::SearchResponse, Status> {
    proxy
        .search(search_request(key, ConsistencyLevel::ConsistencyStrong))
        .await
        .map(tonic::Response::into_inner)
}

/// Whether `key`'s own vector finds it first, at distance 0.
fn finds_itself(answer: &proto::SearchResponse, key: i64) -> bool {
    answer.results.len() == 1
        && answer.results[0].ids.first() == Some(&key)
        && answer.results[0].scores.first() == Some(&0.0)
}

async fn insert(cluster: &Cluster, schema: &CollectionSchema, pks: &[i64]) {
    let rows = milvus_like_tests::data::rows(pks, DIM);
    cluster
        .proxy_client()
        .insert(proto::InsertRequest {
            collection: NAME.into(),
            partition: String::new(),
            columns: rows.to_wire(schema),
            num_rows: u32::try_from(pks.len()).expect("fits"),
        })
        .await
        .expect("insert");
}

fn start_query_node(cluster: &Cluster, name: &str) -> RoleProcess {
    cluster
        .start_role(name, Role::QueryNode)
        .expect("start a query node")
}

/// Waits until `n` query nodes are registered.
async fn wait_query_nodes(cluster: &Cluster, n: usize) {
    milvus_like_tests::wait_for("query nodes", Duration::from_secs(60), || {
        let mut root = cluster.rootcoord_client();
        async move {
            let nodes = root
                .list_nodes(proto::ListNodesRequest::default())
                .await
                .ok()?
                .into_inner()
                .nodes;
            let query_nodes = nodes
                .iter()
                .filter(|node| node.role == proto::Role::QueryNode as i32)
                .count();
            (query_nodes == n).then_some(())
        }
    })
    .await
    .expect("query nodes registered");
}

async fn leaders(cluster: &Cluster, collection: i64) -> Result<Vec<proto::ShardLeader>, Status> {
    cluster
        .datacoord_client()
        .get_shard_leaders(proto::GetShardLeadersRequest {
            collection_id: collection,
        })
        .await
        .map(|r| r.into_inner().leaders)
}

#[tokio::test]
async fn searches_see_acknowledged_writes_and_stay_complete_when_a_query_node_dies() {
    let cluster = ClusterBuilder::new("search")
        .kafka()
        .datanodes(1)
        .datanode_args(&["--flush-rows=400", "--flush-age=300ms"])
        .proxy()
        .build()
        .await
        .expect("cluster");
    let mut proxy = cluster.proxy_client();
    let (info, schema) = create_collection(&proxy, NAME, DIM).await.expect("create");

    // Nothing serves reads yet.
    let unloaded = search(&mut proxy, 1).await.expect_err("not loaded");
    assert_eq!(unloaded.code(), Code::FailedPrecondition, "{unloaded}");
    assert!(unloaded.message().contains("not loaded"), "{unloaded}");
    let no_node = proxy
        .load_collection(proto::ProxyLoadCollectionRequest {
            collection: NAME.into(),
        })
        .await
        .expect_err("no query node");
    assert_eq!(no_node.code(), Code::FailedPrecondition, "{no_node}");
    assert!(no_node.message().contains("no query node"), "{no_node}");

    let mut pks: Vec<i64> = (0..600).collect();
    insert(&cluster, &schema, &pks).await;
    let a = start_query_node(&cluster, "querynode-a");
    let mut b = start_query_node(&cluster, "querynode-b");
    wait_query_nodes(&cluster, 2).await;
    proxy
        .load_collection(proto::ProxyLoadCollectionRequest {
            collection: NAME.into(),
        })
        .await
        .unwrap_or_else(|s| {
            panic!(
                "load: {s}\nquery node a:\n{}\nquery node b:\n{}",
                a.process.log(),
                b.process.log()
            )
        });
    // A node that registered first may hold every channel for a moment: the
    // coordinator moves some to the other one as it joins.
    let (placed, nodes) =
        milvus_like_tests::wait_for("channels on both", Duration::from_secs(30), || {
            let cluster = &cluster;
            async move {
                let placed = leaders(cluster, info.id).await.ok()?;
                let nodes: HashSet<i64> = placed.iter().map(|l| l.node_id).collect();
                (nodes.len() == 2 && placed.iter().all(|l| l.unavailable.is_empty()))
                    .then_some((placed, nodes))
            }
        })
        .await
        .expect("channels spread over both query nodes");
    assert_eq!(placed.len(), cluster.channels as usize);

    // Strong reads see every acknowledged write, from files and the log alike.
    assert_eq!(
        milvus_like_tests::strong_count(&proxy, NAME)
            .await
            .expect("count"),
        600
    );
    for key in [0, 299, 599] {
        let answer = search(&mut proxy, key).await.expect("search");
        assert!(finds_itself(&answer, key), "key {key}: {answer:?}");
        assert_eq!(answer.metric, "L2");
        assert!(answer.results[0].scores.windows(2).all(|w| w[0] <= w[1]));
    }
    let new: Vec<i64> = (600..700).collect();
    insert(&cluster, &schema, &new).await;
    pks.extend(&new);
    let answer = search(&mut proxy, 699).await.expect("search");
    assert!(
        finds_itself(&answer, 699),
        "a row acknowledged a moment ago: {answer:?}"
    );
    // A deleted row is never returned.
    let gone: Vec<i64> = (0..700).step_by(7).collect();
    proxy
        .delete(proto::DeleteRequest {
            collection: NAME.into(),
            partition: String::new(),
            primary_keys: gone.clone(),
            string_keys: Vec::new(),
        })
        .await
        .expect("delete");
    let live = (pks.len() - gone.len()) as u64;
    assert_eq!(
        milvus_like_tests::strong_count(&proxy, NAME)
            .await
            .expect("count"),
        live
    );
    for key in [0, 7, 693] {
        let answer = search(&mut proxy, key).await.expect("search");
        assert!(
            !answer.results[0].ids.contains(&key),
            "deleted key {key} returned: {answer:?}"
        );
    }
    // Several queries in one request, answered in order.
    let mut two = search_request(1, ConsistencyLevel::ConsistencyStrong);
    let mut values = vector_of(1).values.to_vec();
    values.extend(vector_of(2).values.to_vec());
    two.vectors = Some(FloatVectorArray {
        dim: DIM,
        values: values.into(),
    });
    let answer = proxy.search(two).await.expect("two queries").into_inner();
    assert_eq!(answer.results.len(), 2);
    assert_eq!(answer.results[0].ids[0], 1);
    assert_eq!(answer.results[1].ids[0], 2);
    // An eventually consistent read does not wait: it sees what the query nodes
    // hold, which by now (after the strong reads above) includes key 1.
    let eventually = proxy
        .search(search_request(1, ConsistencyLevel::ConsistencyEventually))
        .await
        .expect("eventually")
        .into_inner();
    assert!(finds_itself(&eventually, 1), "{eventually:?}");

    // Bad requests name the problem.
    let mut wrong_dim = search_request(1, ConsistencyLevel::ConsistencyStrong);
    wrong_dim.vectors = Some(FloatVectorArray {
        dim: DIM + 1,
        values: vec![0.5; DIM as usize + 1].into(),
    });
    let e = proxy.search(wrong_dim).await.expect_err("wrong dimension");
    assert_eq!(e.code(), Code::InvalidArgument, "{e}");
    assert!(e.message().contains("dimension 17"), "{e}");
    for top_k in [0, 16_385] {
        let mut bad = search_request(1, ConsistencyLevel::ConsistencyStrong);
        bad.top_k = top_k;
        let e = proxy.search(bad).await.expect_err("bad top_k");
        assert_eq!(e.code(), Code::InvalidArgument, "{e}");
        assert!(e.message().contains("top_k"), "{e}");
    }
    let mut unknown = search_request(1, ConsistencyLevel::ConsistencyStrong);
    unknown.collection = "nope".into();
    let e = proxy.search(unknown).await.expect_err("unknown collection");
    assert_eq!(e.code(), Code::NotFound, "{e}");
    let mut level = search_request(1, ConsistencyLevel::ConsistencyStrong);
    level.consistency = 9;
    let e = proxy.search(level).await.expect_err("unknown level");
    assert_eq!(e.code(), Code::InvalidArgument, "{e}");

    // Kill -9 one query node while searching: every answer is complete or an
    // error, and the survivor takes over every channel.
    b.process.kill9();
    let killed = Instant::now();
    let deadline = killed + Duration::from_secs(60);
    let mut complete_since: Option<Instant> = None;
    let mut errors = 0;
    let mut round = 0i64;
    loop {
        round += 1;
        let mut key = 1 + (round * 3) % 698;
        if key % 7 == 0 {
            key += 1; // deleted
        }
        let searched = search(&mut proxy, key).await;
        let counted = milvus_like_tests::strong_count(&proxy, NAME).await;
        match (searched, counted) {
            (Ok(answer), Ok(rows)) => {
                assert!(finds_itself(&answer, key), "partial answer: {answer:?}");
                assert_eq!(rows, live, "a count missed a channel");
                let since = *complete_since.get_or_insert_with(Instant::now);
                if since.elapsed() > Duration::from_secs(2) {
                    break;
                }
            }
            (s, c) => {
                for e in [s.err(), c.err()].into_iter().flatten() {
                    assert!(
                        matches!(e.code(), Code::Unavailable | Code::DeadlineExceeded),
                        "an error other than unavailable: {e}"
                    );
                }
                errors += 1;
                complete_since = None;
            }
        }
        assert!(
            Instant::now() < deadline,
            "searches did not recover within 60 s of the kill; query node a:\n{}",
            a.process.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let recovered = complete_since.map(|s| s - killed).unwrap_or_default();
    eprintln!("answers complete again {recovered:?} after the kill ({errors} refused reads)");
    let after = leaders(&cluster, info.id).await.expect("leaders");
    let serving: HashSet<i64> = after.iter().map(|l| l.node_id).collect();
    assert_eq!(
        serving.len(),
        1,
        "the survivor serves every channel: {after:?}"
    );
    assert!(nodes.is_superset(&serving), "{after:?}");

    // Released: refused again.
    proxy
        .release_collection(proto::ProxyReleaseCollectionRequest {
            collection: NAME.into(),
        })
        .await
        .expect("release");
    let e = search(&mut proxy, 1).await.expect_err("released");
    assert_eq!(e.code(), Code::FailedPrecondition, "{e}");
}

/// A collection with scalar fields: `id`, `age` (INT32, id % 90), `city`
/// (VARCHAR, one of three), `v` (4 floats, the first = id).
fn people_schema() -> proto::CollectionSchema {
    use proto::{DataType, FieldSchema};
    let field = |name: &str, data_type: DataType| FieldSchema {
        name: name.into(),
        data_type: data_type.into(),
        is_primary_key: name == "id",
        dim: if name == "v" { 4 } else { 0 },
        max_length: if name == "city" { 32 } else { 0 },
        ..FieldSchema::default()
    };
    proto::CollectionSchema {
        name: "people".into(),
        fields: vec![
            field("id", DataType::Int64),
            field("age", DataType::Int32),
            field("city", DataType::Varchar),
            field("v", DataType::FloatVector),
        ],
        metric_type: proto::MetricType::L2.into(),
        ..proto::CollectionSchema::default()
    }
}

const CITIES: [&str; 3] = ["Oslo", "Bergen", "Tromsø"];

fn people(keys: std::ops::Range<i64>) -> proto::InsertRequest {
    let n = (keys.end - keys.start) as usize;
    let mut vectors = Vec::with_capacity(n * 4);
    for k in keys.clone() {
        vectors.extend([k as f32, 0.0, 0.0, 0.0]);
    }
    let columns = vec![
        Column::Long(keys.clone().collect()),
        Column::Int(keys.clone().map(|k| (k % 90) as i32).collect()),
        Column::Str(
            keys.clone()
                .map(|k| CITIES[(k % 3) as usize].to_owned())
                .collect(),
        ),
        Column::Vector {
            dim: 4,
            values: vectors.into(),
        },
    ];
    let names = ["id", "age", "city", "v"];
    proto::InsertRequest {
        collection: "people".into(),
        partition: String::new(),
        columns: columns
            .into_iter()
            .zip(names)
            .map(|(c, name)| c.into_field_data(name))
            .collect(),
        num_rows: n as u32,
    }
}

fn longs(data: &proto::FieldData) -> Vec<i64> {
    match &data.data {
        Some(proto::field_data::Data::Longs(a)) => a.values.clone(),
        other => panic!("not INT64 values: {other:?}"),
    }
}

fn query_request(filter: &str, output: &[&str], limit: u32) -> proto::QueryRequest {
    proto::QueryRequest {
        collection: "people".into(),
        filter: filter.into(),
        output_fields: output.iter().map(|s| (*s).to_owned()).collect(),
        limit,
        consistency: ConsistencyLevel::ConsistencyStrong.into(),
        timeout_ms: 20_000,
        ..proto::QueryRequest::default()
    }
}

/// Rows of `people` a filter keeps, read at `level`.
async fn count_people(
    proxy: &mut ProxyClient<Channel>,
    level: ConsistencyLevel,
    filter: &str,
) -> Result<u64, Status> {
    proxy
        .count(proto::CountRequest {
            collection: "people".into(),
            consistency: level.into(),
            timeout_ms: 20_000,
            filter: filter.into(),
        })
        .await
        .map(|r| r.into_inner().rows)
}

/// Filters, queries and output fields over rows in flushed files and rows
/// still in the log, with deletes applied; bad filters and fields are refused
/// naming the problem.
#[tokio::test]
async fn filters_and_queries_read_files_and_the_log_alike() {
    let cluster = ClusterBuilder::new("search-filter")
        .kafka()
        .datanodes(1)
        .datanode_args(&["--flush-rows=100", "--flush-age=300ms"])
        .proxy()
        .build()
        .await
        .expect("cluster");
    let mut proxy = cluster.proxy_client();
    proxy
        .create_collection(proto::CreateCollectionRequest {
            schema: Some(people_schema()),
        })
        .await
        .expect("create");
    proxy.insert(people(0..300)).await.expect("insert");
    milvus_like_tests::flush(&proxy, "people")
        .await
        .expect("flush");

    // A load that does not fit a query node's memory is refused, naming the
    // fix, and leaves nothing loaded: 5,000 rows of 64 floats need more than
    // the node's 1 MiB.
    let (_, big) = create_collection(&proxy, "big", 64).await.expect("create");
    let keys: Vec<i64> = (0..5_000).collect();
    proxy
        .insert(proto::InsertRequest {
            collection: "big".into(),
            partition: String::new(),
            columns: milvus_like_tests::data::rows(&keys, 64).to_wire(&big),
            num_rows: 5_000,
        })
        .await
        .expect("insert");
    milvus_like_tests::flush(&proxy, "big")
        .await
        .expect("flush");
    let mut tiny = cluster
        .start_role_with("querynode-tiny", Role::QueryNode, &["--memory-mib=1"])
        .expect("start a small query node");
    wait_query_nodes(&cluster, 1).await;
    let e = proxy
        .load_collection(proto::ProxyLoadCollectionRequest {
            collection: "big".into(),
        })
        .await
        .expect_err("1 MiB is too small");
    assert_eq!(e.code(), Code::ResourceExhausted, "{e}");
    assert!(e.message().contains("--memory-mib"), "{e}");
    // At least once: the data coordinator's periodic pass may ask too before
    // the refused collection is released.
    let metrics = milvus_like_tests::scrape(tiny.ports.http).await;
    let refused = milvus_like_tests::metric_sum(&metrics, "querynode_loads_refused_total");
    assert!(refused.is_some_and(|n| n >= 1.0), "{refused:?}");
    let mut unloaded = proxy.clone();
    let e = unloaded
        .count(proto::CountRequest {
            collection: "big".into(),
            ..proto::CountRequest::default()
        })
        .await
        .expect_err("not loaded");
    assert_eq!(e.code(), Code::FailedPrecondition, "{e}");
    // The small collection fits.
    proxy
        .load_collection(proto::ProxyLoadCollectionRequest {
            collection: "people".into(),
        })
        .await
        .unwrap_or_else(|s| panic!("load: {s}\n{}", tiny.process.log()));
    proxy
        .release_collection(proto::ProxyReleaseCollectionRequest {
            collection: "people".into(),
        })
        .await
        .expect("release");
    tiny.process.terminate(Duration::from_secs(10));
    wait_query_nodes(&cluster, 0).await;

    let node = start_query_node(&cluster, "querynode");
    wait_query_nodes(&cluster, 1).await;
    proxy
        .load_collection(proto::ProxyLoadCollectionRequest {
            collection: "people".into(),
        })
        .await
        .unwrap_or_else(|s| panic!("load: {s}\n{}", node.process.log()));
    // More rows after the flush: these are read from the log.
    proxy.insert(people(300..360)).await.expect("insert");
    proxy
        .delete(proto::DeleteRequest {
            collection: "people".into(),
            partition: String::new(),
            primary_keys: vec![5, 88, 305],
            string_keys: Vec::new(),
        })
        .await
        .expect("delete");
    let live = |k: &i64| ![5, 88, 305].contains(k);

    // A query by filter: rows in key order, with their fields.
    let filter = "age >= 85 and city in [\"Oslo\", 'Bergen'] or id in [5, 7, 305, 359]";
    let answer = proxy
        .query(query_request(filter, &["city", "age"], 0))
        .await
        .expect("query")
        .into_inner();
    let expected: Vec<i64> = (0..360)
        .filter(|k| k % 90 >= 85 && k % 3 != 2 || [5, 7, 305, 359].contains(k))
        .filter(live)
        .collect();
    assert_eq!(answer.num_rows as usize, expected.len());
    assert_eq!(answer.columns[0].field_name, "id");
    assert_eq!(longs(&answer.columns[0]), expected);
    assert_eq!(answer.columns[1].field_name, "city");
    let Some(proto::field_data::Data::Strings(cities)) = &answer.columns[1].data else {
        panic!("city values: {:?}", answer.columns[1]);
    };
    let want: Vec<String> = expected
        .iter()
        .map(|k| CITIES[(k % 3) as usize].to_owned())
        .collect();
    assert_eq!(cities.values, want);
    // Pages of it.
    let mut paged = query_request(filter, &[], 3);
    paged.offset = 2;
    let page = proxy.query(paged).await.expect("page").into_inner();
    assert_eq!(longs(&page.columns[0]), expected[2..5]);

    // SESSION sees this proxy's own writes at once; BOUNDED what a read of
    // the last 5 s found (the strong read's, or a fresher one).
    proxy.insert(people(360..370)).await.expect("insert");
    for level in [
        ConsistencyLevel::ConsistencySession,
        ConsistencyLevel::ConsistencyStrong,
        ConsistencyLevel::ConsistencyBounded,
    ] {
        let counted = count_people(&mut proxy, level, "id >= 360").await;
        assert_eq!(counted.expect("count"), 10, "{level:?}");
    }

    // Counts and searches take the same filters.
    let counted = count_people(
        &mut proxy,
        ConsistencyLevel::ConsistencyStrong,
        "city == \"Tromsø\"",
    )
    .await;
    assert_eq!(
        counted.expect("count"),
        (0..370).filter(|k| k % 3 == 2).filter(live).count() as u64
    );
    let search = |filter: &str, output: &[&str]| proto::SearchRequest {
        collection: "people".into(),
        vectors: Some(FloatVectorArray {
            dim: 4,
            values: vec![10.0, 0.0, 0.0, 0.0].into(),
        }),
        top_k: 3,
        consistency: ConsistencyLevel::ConsistencyStrong.into(),
        timeout_ms: 20_000,
        filter: filter.into(),
        output_fields: output.iter().map(|s| (*s).to_owned()).collect(),
        ..proto::SearchRequest::default()
    };
    let found = proxy
        .search(search("city == 'Bergen'", &["city", "v"]))
        .await
        .expect("search")
        .into_inner();
    let hits = &found.results[0];
    assert_eq!(
        hits.ids,
        [10, 7, 13],
        "Bergen rows nearest to 10 (ties by id)"
    );
    assert_eq!(hits.scores, [0.0, 9.0, 9.0]);
    let Some(proto::field_data::Data::FloatVectors(v)) = &hits.fields[1].data else {
        panic!("vectors: {:?}", hits.fields);
    };
    assert_eq!(v.values.to_vec()[4..8], [7.0, 0.0, 0.0, 0.0]);
    let found = proxy
        .search(search("id > 300", &[]))
        .await
        .expect("search")
        .into_inner();
    assert_eq!(
        found.results[0].ids,
        [301, 302, 303],
        "growing rows, filtered"
    );

    // Mistakes name themselves.
    for (filter, says) in [
        ("agee > 3", "unknown field \"agee\""),
        ("age >", "invalid filter at byte 5"),
        ("city > 3", "cannot be compared"),
        ("v == 1", "FLOAT_VECTOR"),
    ] {
        let e = proxy
            .query(query_request(filter, &[], 10))
            .await
            .expect_err(filter);
        assert_eq!(e.code(), Code::InvalidArgument, "{e}");
        assert!(e.message().contains(says), "{filter}: {e}");
        let e = proxy.search(search(filter, &[])).await.expect_err(filter);
        assert!(e.message().contains(says), "{filter}: {e}");
    }
    let e = proxy
        .query(query_request("", &["town"], 10))
        .await
        .expect_err("unknown output field");
    assert_eq!(e.code(), Code::InvalidArgument, "{e}");
    assert!(e.message().contains("output field \"town\""), "{e}");
    let e = proxy
        .query(query_request("", &[], 16_385))
        .await
        .expect_err("limit too large");
    assert!(e.message().contains("at most 16384"), "{e}");

    // A query node that stops hands its channels to another before it goes
    // (make-before-break): no read fails meanwhile.
    let second = start_query_node(&cluster, "querynode-2");
    wait_query_nodes(&cluster, 2).await;
    let mut first = node;
    let stopping = tokio::task::spawn_blocking(move || {
        let status = first.process.terminate(Duration::from_secs(60));
        (first, status)
    });
    let live_rows = (0..370).filter(live).count() as u64;
    let mut reads = 0;
    while !stopping.is_finished() {
        let counted = count_people(&mut proxy, ConsistencyLevel::ConsistencyStrong, "")
            .await
            .unwrap_or_else(|e| panic!("a read failed while a query node drained: {e}"));
        assert_eq!(counted, live_rows);
        reads += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (first, status) = stopping.await.expect("terminate");
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    assert!(
        first.process.log().contains("drained"),
        "{}",
        first.process.log()
    );
    let counted = count_people(&mut proxy, ConsistencyLevel::ConsistencyStrong, "")
        .await
        .unwrap_or_else(|e| {
            panic!(
                "the second query node serves: {e}\n{}",
                second.process.log()
            )
        });
    assert_eq!(counted, live_rows);
    eprintln!("{reads} reads answered while the first query node drained");
}
