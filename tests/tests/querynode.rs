//! A query node process against a real cluster (etcd, Kafka, both coordinators,
//! data nodes flushing often, a proxy): it follows every channel and serves
//! strong reads that see every acknowledged write exactly once while committed
//! files take over from the log (docs/read-path-design.md, step 4). The data
//! coordinator places the channels and loads the collection; the reads go to the
//! query node directly, channel by channel.

use std::collections::HashSet;
use std::time::Duration;

use milvus_like_api::proto::query_node_client::QueryNodeClient;
use milvus_like_api::proto::{self, ConsistencyLevel};
use milvus_like_api::schema::CollectionSchema;
use milvus_like_api::vectors::FloatVectorArray;
use milvus_like_node::columns::Column;
use milvus_like_node::storage::{SegmentStore, read_collection};
use milvus_like_tests::{Cluster, ClusterBuilder, Role, RoleProcess, create_collection};
use tonic::Code;
use tonic::transport::Channel;

const DIM: u32 = 16;

type Client = QueryNodeClient<Channel>;

async fn start_query_node(cluster: &Cluster) -> (RoleProcess, Client) {
    let qn = cluster
        .start_role("querynode", Role::QueryNode)
        .expect("start the query node");
    let client = QueryNodeClient::new(milvus_like_tests::clients::lazy(&qn.endpoint()));
    let answered =
        milvus_like_tests::wait_for("the query node to serve", Duration::from_secs(60), || {
            let mut c = client.clone();
            async move {
                c.get_distribution(proto::QueryDistributionRequest {})
                    .await
                    .ok()
            }
        })
        .await;
    if let Err(e) = answered {
        panic!("{e}; log:\n{}", qn.process.log());
    }
    (qn, client)
}

async fn timestamp(cluster: &Cluster) -> u64 {
    cluster
        .rootcoord_client()
        .alloc_timestamp(proto::AllocTimestampRequest { count: 1 })
        .await
        .expect("a timestamp")
        .into_inner()
        .timestamp
}

fn at(collection: i64, channel: u32, consistency: ConsistencyLevel, ts: u64) -> Vec<proto::ReadAt> {
    at_each(collection, &[channel], consistency, ts)
}

/// One read of several channels (a proxy asks a node once for all it serves).
fn at_each(
    collection: i64,
    channels: &[u32],
    consistency: ConsistencyLevel,
    ts: u64,
) -> Vec<proto::ReadAt> {
    channels
        .iter()
        .map(|&channel| proto::ReadAt {
            collection_id: collection,
            channel,
            consistency: consistency.into(),
            guarantee_ts: ts,
            timeout_ms: 30_000,
            epoch: 1,
            ..proto::ReadAt::default()
        })
        .collect()
}

/// Rows and checksum summed over every channel.
async fn count(
    client: &mut Client,
    cluster: &Cluster,
    collection: i64,
    consistency: ConsistencyLevel,
    ts: u64,
) -> (u64, u64) {
    let mut total = (0u64, 0u64);
    for channel in 0..cluster.channels {
        let r = client
            .count_channel(proto::CountChannelRequest {
                at: at(collection, channel, consistency, ts),
                ..proto::CountChannelRequest::default()
            })
            .await
            .unwrap_or_else(|s| panic!("count channel {channel}: {s}"))
            .into_inner();
        total = (total.0 + r.rows, total.1.wrapping_add(r.checksum));
    }
    total
}

/// The ids at distance 0 from the vector of `key`, over every channel (keys
/// 1,000 apart share a vector).
async fn exact_matches(
    client: &mut Client,
    cluster: &Cluster,
    collection: i64,
    key: i64,
    ts: u64,
) -> Vec<i64> {
    let Column::Vector { values, .. } = &milvus_like_tests::data::rows(&[key], DIM).columns[1]
    else {
        panic!("the test rows have a vector column");
    };
    let request = |channels: &[u32]| proto::SearchChannelRequest {
        at: at_each(
            collection,
            channels,
            ConsistencyLevel::ConsistencyStrong,
            ts,
        ),
        queries: Some(FloatVectorArray {
            dim: DIM,
            values: values.clone(),
        }),
        top_k: 50,
        ef: 0,
        ..proto::SearchChannelRequest::default()
    };
    let mut ids = Vec::new();
    for channel in 0..cluster.channels {
        let r = client
            .search_channel(request(&[channel]))
            .await
            .unwrap_or_else(|s| panic!("search channel {channel}: {s}"))
            .into_inner();
        assert_eq!(r.metric, "L2");
        assert_eq!(r.results.len(), 1);
        let hits = &r.results[0];
        assert!(
            hits.scores.windows(2).all(|w| w[0] <= w[1]),
            "nearest first"
        );
        ids.extend(
            hits.ids
                .iter()
                .zip(&hits.scores)
                .filter(|(_, s)| **s == 0.0)
                .map(|(id, _)| *id),
        );
    }
    // One request for every channel: the same rows, merged nearest first.
    let channels: Vec<u32> = (0..cluster.channels).collect();
    let r = client
        .search_channel(request(&channels))
        .await
        .unwrap_or_else(|s| panic!("search every channel: {s}"))
        .into_inner();
    assert_eq!(r.channels, channels);
    let hits = &r.results[0];
    assert!(
        hits.scores.windows(2).all(|w| w[0] <= w[1]),
        "nearest first"
    );
    let mut merged: Vec<i64> = hits
        .ids
        .iter()
        .zip(&hits.scores)
        .filter(|(_, s)| **s == 0.0)
        .map(|(id, _)| *id)
        .collect();
    let mut each = ids.clone();
    merged.sort_unstable();
    each.sort_unstable();
    assert_eq!(merged, each, "one request for every channel");
    ids
}

async fn distribution(client: &mut Client) -> proto::QueryDistributionResponse {
    client
        .get_distribution(proto::QueryDistributionRequest {})
        .await
        .expect("distribution")
        .into_inner()
}

async fn insert(cluster: &Cluster, schema: &CollectionSchema, pks: &[i64]) {
    let rows = milvus_like_tests::data::rows(pks, DIM);
    cluster
        .proxy_client()
        .insert(proto::InsertRequest {
            collection: "reads".into(),
            partition: String::new(),
            columns: rows.to_wire(schema),
            num_rows: u32::try_from(pks.len()).expect("fits"),
        })
        .await
        .expect("insert");
}

async fn delete(cluster: &Cluster, keys: &[i64]) {
    cluster
        .proxy_client()
        .delete(proto::DeleteRequest {
            collection: "reads".into(),
            partition: String::new(),
            primary_keys: keys.to_vec(),
            string_keys: Vec::new(),
        })
        .await
        .expect("delete");
}

#[tokio::test]
async fn strong_reads_see_every_acknowledged_write_once_while_files_take_over() {
    let cluster = ClusterBuilder::new("querynode")
        .kafka()
        .datanodes(2)
        .datanode_args(&["--flush-rows=1500", "--flush-age=300ms"])
        .proxy()
        .build()
        .await
        .expect("cluster");
    let (info, schema) = create_collection(&cluster.proxy_client(), "reads", DIM)
        .await
        .expect("create");
    let (qn, mut client) = start_query_node(&cluster).await;

    // The data coordinator has it follow every channel (it is the only query node).
    milvus_like_tests::wait_for("every channel followed", Duration::from_secs(60), || {
        let mut c = client.clone();
        let channels = cluster.channels as usize;
        async move {
            let d = c
                .get_distribution(proto::QueryDistributionRequest {})
                .await
                .ok()?
                .into_inner();
            (d.channels.len() == channels && d.channels.iter().all(|w| w.epoch == 1)).then_some(())
        }
    })
    .await
    .expect("channels followed");
    let refused = client
        .count_channel(proto::CountChannelRequest {
            at: at(info.id, 0, ConsistencyLevel::ConsistencyEventually, 0),
            ..proto::CountChannelRequest::default()
        })
        .await
        .expect_err("not loaded yet");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused}");

    // Rows before the load come from files and the log alike.
    let mut pks: Vec<i64> = (0..3_000).collect();
    insert(&cluster, &schema, &pks).await;
    cluster
        .datacoord_client()
        .load_collection(proto::LoadCollectionRequest {
            collection_id: info.id,
        })
        .await
        .expect("load");

    let mut deleted: HashSet<i64> = HashSet::new();
    for round in 1..10i64 {
        let new: Vec<i64> = (round * 3_000..(round + 1) * 3_000).collect();
        insert(&cluster, &schema, &new).await;
        pks.extend(&new);
        if round % 3 == 0 {
            let gone: Vec<i64> = ((round - 1) * 3_000..round * 3_000).step_by(5).collect();
            delete(&cluster, &gone).await;
            deleted.extend(gone);
        }
        // Issued after the writes above were acknowledged: a strong read at it
        // sees all of them.
        let ts = timestamp(&cluster).await;
        let want = milvus_like_tests::data::expected(&schema, DIM, &pks, &deleted);
        let got = count(
            &mut client,
            &cluster,
            info.id,
            ConsistencyLevel::ConsistencyStrong,
            ts,
        )
        .await;
        assert_eq!(
            got,
            want,
            "round {round}: rows and checksum at {ts}; query node log:\n{}",
            qn.process.log()
        );
        // One request for every channel answers what the channels answer
        // one by one, and names them all.
        let channels: Vec<u32> = (0..cluster.channels).collect();
        let all = client
            .count_channel(proto::CountChannelRequest {
                at: at_each(info.id, &channels, ConsistencyLevel::ConsistencyStrong, ts),
                ..proto::CountChannelRequest::default()
            })
            .await
            .expect("count every channel at once")
            .into_inner();
        assert_eq!((all.rows, all.checksum), want, "round {round}: one request");
        assert_eq!(all.channels, channels);
        let newest = *new.last().expect("rows");
        assert!(
            exact_matches(&mut client, &cluster, info.id, newest, ts)
                .await
                .contains(&newest),
            "round {round}: key {newest} is its own nearest row"
        );
        if let Some(gone) = deleted.iter().next() {
            assert!(
                !exact_matches(&mut client, &cluster, info.id, *gone, ts)
                    .await
                    .contains(gone),
                "round {round}: deleted key {gone} was found"
            );
        }
    }
    // Files took over part of the rows while the reads above were exact.
    let before_flush = distribution(&mut client).await;
    let sealed: u64 = before_flush
        .channels
        .iter()
        .flat_map(|c| &c.collections)
        .map(|c| c.sealed_rows)
        .sum();
    assert!(sealed > 0, "no committed file was loaded: {before_flush:?}");
    eprintln!("before the flush: {before_flush:?}");
    // A read at a timestamp before every write sees none of them.
    let early = count(
        &mut client,
        &cluster,
        info.id,
        ConsistencyLevel::ConsistencyStrong,
        1,
    )
    .await;
    assert_eq!(early.0, 0, "nothing was written at timestamp 1");

    // After a flush, the files hold everything: the query node moves to them
    // and reads the same as the read-back of the committed files.
    milvus_like_tests::flush(&cluster.proxy_client(), "reads")
        .await
        .expect("flush");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let d = distribution(&mut client).await;
        let growing: u64 = d
            .channels
            .iter()
            .flat_map(|c| &c.collections)
            .map(|c| c.growing_rows)
            .sum();
        let sealed: u64 = d
            .channels
            .iter()
            .flat_map(|c| &c.collections)
            .map(|c| c.sealed_rows)
            .sum();
        if growing == 0 {
            assert!(sealed >= pks.len() as u64, "{d:?}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "growing rows left after the flush: {d:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let listed = cluster
        .datacoord_client()
        .list_segments(proto::ListSegmentsRequest {
            collection_id: info.id,
        })
        .await
        .expect("list")
        .into_inner();
    let store = SegmentStore::open(&cluster.storage).expect("store");
    let content = read_collection(&store, &schema, &listed.segments, &listed.delete_logs, 0)
        .await
        .expect("read back");
    let eventually = count(
        &mut client,
        &cluster,
        info.id,
        ConsistencyLevel::ConsistencyEventually,
        0,
    )
    .await;
    assert_eq!(eventually, (content.rows, content.checksum));
    assert_eq!(
        eventually,
        milvus_like_tests::data::expected(&schema, DIM, &pks, &deleted)
    );

    // Bad reads get clear errors.
    let no_ts = client
        .count_channel(proto::CountChannelRequest {
            at: at(info.id, 0, ConsistencyLevel::ConsistencyStrong, 0),
            ..proto::CountChannelRequest::default()
        })
        .await
        .expect_err("a strong read needs a timestamp");
    assert_eq!(no_ts.code(), Code::InvalidArgument, "{no_ts}");
    let mut wrong_epoch = at(info.id, 0, ConsistencyLevel::ConsistencyEventually, 0);
    if let Some(a) = wrong_epoch.first_mut() {
        a.epoch = 7;
    }
    let stale = client
        .count_channel(proto::CountChannelRequest {
            at: wrong_epoch,
            ..proto::CountChannelRequest::default()
        })
        .await
        .expect_err("another epoch");
    assert_eq!(stale.code(), Code::FailedPrecondition, "{stale}");
    let bad_dim = client
        .search_channel(proto::SearchChannelRequest {
            at: at(info.id, 0, ConsistencyLevel::ConsistencyEventually, 0),
            queries: Some(FloatVectorArray {
                dim: DIM + 1,
                values: vec![0.0; DIM as usize + 1].into(),
            }),
            top_k: 5,
            ef: 0,
            ..proto::SearchChannelRequest::default()
        })
        .await
        .expect_err("wrong dimension");
    assert_eq!(bad_dim.code(), Code::InvalidArgument, "{bad_dim}");
    for (ats, why) in [
        (Vec::new(), "no channel"),
        (
            at_each(info.id, &[0, 0], ConsistencyLevel::ConsistencyEventually, 0),
            "a channel twice",
        ),
    ] {
        let refused = client
            .count_channel(proto::CountChannelRequest {
                at: ats,
                ..proto::CountChannelRequest::default()
            })
            .await
            .expect_err(why);
        assert_eq!(refused.code(), Code::InvalidArgument, "{why}: {refused}");
    }
    let old_watch = client
        .watch_channel(proto::QueryWatchChannelRequest {
            channel: 0,
            epoch: 0,
        })
        .await
        .expect_err("an older epoch");
    assert_eq!(old_watch.code(), Code::FailedPrecondition, "{old_watch}");

    // Released: refused again, and the channel is no longer listed.
    cluster
        .datacoord_client()
        .release_collection(proto::ReleaseCollectionRequest {
            collection_id: info.id,
        })
        .await
        .expect("release");
    let released = client
        .count_channel(proto::CountChannelRequest {
            at: at(info.id, 0, ConsistencyLevel::ConsistencyEventually, 0),
            ..proto::CountChannelRequest::default()
        })
        .await
        .expect_err("released");
    assert_eq!(released.code(), Code::FailedPrecondition, "{released}");
    assert!(
        distribution(&mut client)
            .await
            .loaded_collections
            .is_empty()
    );
}
