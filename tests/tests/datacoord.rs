//! The data coordinator as a process against real etcd and a real root coordinator,
//! with in-process data nodes that register real sessions and speak the protocol.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use milvus_like_api::proto::data_coord_client::DataCoordClient;
use milvus_like_api::proto::{
    self, CollectionInfo, SegmentIdAssignment, SegmentIdRequest, SegmentState,
};
use milvus_like_tests::fake_datanode::{Call, FakeDataNode};
use milvus_like_tests::{
    CHANNELS, Cluster, ClusterBuilder, Etcd, MetaArgs, Ports, Role, RoleProcess, TestDir,
    test_schema, wait_distribution, wait_for,
};
use tonic::transport::Channel;
use tonic::{Code, Status};

const TTL: Duration = Duration::from_secs(3);

/// Channel -> (owner, epoch).
type Owners = BTreeMap<u32, (i64, u64)>;

/// etcd, a root coordinator and a data coordinator, no data node.
async fn start(name: &str) -> Cluster {
    ClusterBuilder::new(name)
        .etcd_timeout("1s")
        .datacoord()
        .build()
        .await
        .expect("cluster")
}

/// A fake data node registered in this cluster.
async fn node(cluster: &Cluster) -> FakeDataNode {
    FakeDataNode::start(
        &cluster.etcd.endpoint(),
        &cluster.meta.meta_root,
        &cluster.datacoord().endpoint(),
        TTL,
    )
    .await
    .expect("fake data node")
}

/// Channel -> (owner, epoch) once every channel is owned by one of `nodes`, each
/// owner acknowledged it, and round robin's bound holds (no node above
/// ceil(channels / nodes)): the state the coordinator converges to.
async fn settled(cluster: &Cluster, nodes: &[&FakeDataNode], timeout: Duration) -> Owners {
    wait_for("channels to settle", timeout, || async {
        let d = cluster.distribution().await;
        let owners: Owners = d
            .channels
            .iter()
            .map(|a| (a.channel, (a.node_id, a.epoch)))
            .collect();
        let all_owned = owners.len() == 3
            && owners.iter().all(|(ch, (node, epoch))| {
                nodes
                    .iter()
                    .any(|n| n.node_id == *node && n.owned().get(ch) == Some(epoch))
            });
        let bound = 3_usize.div_ceil(nodes.len().max(1));
        let balanced = per_node(&owners).values().all(|n| *n <= bound);
        (all_owned && balanced).then_some(owners)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}; log:\n{}", cluster.datacoord().process.log()))
}

fn per_node(owners: &Owners) -> BTreeMap<i64, usize> {
    let mut counts = BTreeMap::new();
    for (node, _) in owners.values() {
        *counts.entry(*node).or_default() += 1;
    }
    counts
}

/// A cluster whose three fake data nodes own one channel each.
async fn three_nodes(name: &str) -> (Cluster, [FakeDataNode; 3], Owners) {
    let cluster = start(name).await;
    let nodes = [
        node(&cluster).await,
        node(&cluster).await,
        node(&cluster).await,
    ];
    let [a, b, c] = &nodes;
    let owners = settled(&cluster, &[a, b, c], Duration::from_secs(15)).await;
    // Round robin over 3 nodes: one channel each, never two on one node.
    assert!(per_node(&owners).values().all(|n| *n == 1), "{owners:?}");
    (cluster, nodes, owners)
}

#[tokio::test]
async fn a_crashed_nodes_channel_moves_within_the_ttl_and_its_old_owner_is_fenced() {
    let (cluster, [a, b, mut c], owners) = three_nodes("dc-crash").await;

    // Crash the owner of some channel: it moves to a survivor within TTL + 1 s.
    let (&lost, &(_, old_epoch)) = owners
        .iter()
        .find(|(_, (n, _))| *n == c.node_id)
        .expect("c owns one");
    c.crash();
    let crashed = Instant::now();
    let owners = settled(&cluster, &[&a, &b], Duration::from_secs(10)).await;
    let took = crashed.elapsed();
    eprintln!("channel {lost} reassigned {took:?} after the crash");
    assert!(
        took <= TTL + Duration::from_secs(1),
        "reassignment took {took:?}"
    );
    let (new_owner, new_epoch) = owners[&lost];
    assert_eq!(new_epoch, old_epoch + 1);
    assert!(per_node(&owners).values().all(|n| *n <= 2), "{owners:?}");
    let survivor = if new_owner == a.node_id { &a } else { &b };
    assert!(
        survivor
            .calls()
            .iter()
            .any(|call| matches!(call, Call::Watch { channel, epoch, .. } if *channel == lost && *epoch == new_epoch)),
        "{:?}",
        survivor.calls()
    );

    // The crashed node comes back from the dead with its old epoch: fenced.
    let stale = c.commit_at(lost, old_epoch).await.expect_err("stale owner");
    assert_eq!(stale.code(), Code::FailedPrecondition, "{stale}");
    assert!(
        stale.message().contains("stale owner"),
        "{}",
        stale.message()
    );

    // The survivor commits at its epoch: the checkpoint moves on by one.
    let offset = |d: &proto::GetChannelDistributionResponse| {
        d.channels
            .iter()
            .find(|r| r.channel == lost)
            .and_then(|r| r.checkpoint)
            .map_or(0, |c| c.insert_next_offset)
    };
    let before = offset(&cluster.distribution().await);
    survivor
        .commit_at(lost, new_epoch)
        .await
        .expect("owner commits");
    assert_eq!(offset(&cluster.distribution().await), before + 1);

    // A new node joins and gets a channel (3 channels, 3 nodes: one each again).
    let d = node(&cluster).await;
    let owners = settled(&cluster, &[&a, &b, &d], Duration::from_secs(10)).await;
    assert!(per_node(&owners).values().all(|n| *n == 1), "{owners:?}");
}

#[tokio::test]
async fn a_drained_node_releases_its_channels_before_they_move() {
    let (cluster, [a, b, c], owners) = three_nodes("dc-drain").await;
    // Drain b: it flushes and releases first, then its channel goes elsewhere.
    let b_channels: Vec<u32> = owners
        .iter()
        .filter(|(_, (n, _))| *n == b.node_id)
        .map(|(ch, _)| *ch)
        .collect();
    let drained = cluster
        .datacoord_client()
        .drain_node(proto::DrainNodeRequest { node_id: b.node_id })
        .await
        .expect("drain")
        .into_inner();
    assert_eq!(drained.moved_channels, b_channels);
    for ch in &b_channels {
        assert!(
            b.calls()
                .iter()
                .any(|call| matches!(call, Call::Release { channel, .. } if channel == ch))
        );
    }
    let owners = settled(&cluster, &[&a, &c], Duration::from_secs(10)).await;
    assert!(owners.values().all(|(n, _)| *n != b.node_id));
    // The released channel resumes from the checkpoint b committed on release.
    for ch in &b_channels {
        let (owner, epoch) = owners[ch];
        let taker = if owner == a.node_id { &a } else { &c };
        assert!(taker.calls().iter().any(|call| matches!(call, Call::Watch { channel, epoch: e, offset } if channel == ch && *e == epoch && *offset >= 1)), "{:?}", taker.calls());
    }
    let dist = cluster.distribution().await;
    assert!(
        dist.nodes
            .iter()
            .any(|n| n.node_id == b.node_id && n.draining && n.channels.is_empty())
    );
}

#[tokio::test]
async fn unknown_nodes_are_refused_and_change_nothing() {
    let cluster = start("dc-unknown-nodes").await;
    let a = node(&cluster).await;
    let b = node(&cluster).await;
    let owners = settled(&cluster, &[&a, &b], Duration::from_secs(15)).await;
    // Rebalancing to a node that does not exist, and draining one.
    let err = cluster
        .datacoord_client()
        .rebalance(proto::RebalanceRequest {
            expected_node_ids: vec![a.node_id, 424_242],
        })
        .await
        .expect_err("unknown node");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("424242"), "{}", err.message());
    let err = cluster
        .datacoord_client()
        .drain_node(proto::DrainNodeRequest { node_id: 424_242 })
        .await
        .expect_err("unknown node");
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(
        settled(&cluster, &[&a, &b], Duration::from_secs(5)).await,
        owners,
        "bad requests changed nothing"
    );
}

/// A cluster whose one fake data node owns every channel, and a collection
/// `vectors` in it.
async fn with_collection(name: &str) -> (Cluster, FakeDataNode, CollectionInfo) {
    let cluster = start(name).await;
    let node = node(&cluster).await;
    settled(&cluster, &[&node], Duration::from_secs(15)).await;
    let collection = cluster
        .rootcoord_client()
        .create_collection(proto::CreateCollectionRequest {
            schema: Some(test_schema("vectors", 128)),
        })
        .await
        .expect("create")
        .into_inner()
        .collection
        .expect("info");
    (cluster, node, collection)
}

/// A request for `count` rows of `collection`'s default partition on `channel`.
fn request(collection: &CollectionInfo, channel: u32, count: u32) -> SegmentIdRequest {
    SegmentIdRequest {
        collection_id: collection.id,
        partition_id: collection.partitions[0].id,
        channel,
        count,
    }
}

async fn assign(
    dc: &DataCoordClient<Channel>,
    requests: Vec<SegmentIdRequest>,
) -> Result<Vec<SegmentIdAssignment>, Status> {
    dc.clone()
        // A client without a node id: its grants can only expire.
        .assign_segment_id(proto::AssignSegmentIdRequest {
            requests,
            proxy_id: 0,
        })
        .await
        .map(|r| r.into_inner().assignments)
}

/// Seals the collection and waits until its segments are flushed.
async fn flush_and_wait(
    dc: &DataCoordClient<Channel>,
    collection: &CollectionInfo,
) -> proto::FlushResponse {
    dc.clone()
        .flush(proto::FlushRequest {
            collection_id: collection.id,
            wait: true,
        })
        .await
        .expect("flush")
        .into_inner()
}

async fn list(
    dc: &DataCoordClient<Channel>,
    collection: &CollectionInfo,
) -> proto::ListSegmentsResponse {
    dc.clone()
        .list_segments(proto::ListSegmentsRequest {
            collection_id: collection.id,
        })
        .await
        .expect("list")
        .into_inner()
}

#[tokio::test]
async fn bad_segment_requests_are_refused() {
    let (cluster, _node, collection) = with_collection("dc-bad-segments").await;
    let dc = cluster.datacoord_client();
    let request = |channel, count| request(&collection, channel, count);
    let mut bad = request(0, 10);
    bad.collection_id = 999_999;
    assert_eq!(
        assign(&dc, vec![bad]).await.expect_err("unknown").code(),
        Code::NotFound
    );
    let mut bad = request(0, 10);
    bad.partition_id = 7;
    assert_eq!(
        assign(&dc, vec![bad]).await.expect_err("partition").code(),
        Code::NotFound
    );
    assert_eq!(
        assign(&dc, vec![request(0, 0)])
            .await
            .expect_err("zero")
            .code(),
        Code::InvalidArgument
    );
    assert_eq!(
        assign(&dc, vec![request(0, u32::MAX)])
            .await
            .expect_err("absurd")
            .code(),
        Code::InvalidArgument
    );
    assert_eq!(
        assign(&dc, vec![request(99, 10)])
            .await
            .expect_err("channel")
            .code(),
        Code::InvalidArgument
    );
    // A grant larger than a segment: 512 MiB / (8 + 8 + 512) bytes = 1016800 rows.
    let too_big = assign(&dc, vec![request(0, 2_000_000)])
        .await
        .expect_err("too big");
    assert_eq!(too_big.code(), Code::InvalidArgument);
    assert!(
        too_big.message().contains("exceeds"),
        "{}",
        too_big.message()
    );
    assert!(assign(&dc, vec![]).await.is_err());
}

#[tokio::test]
async fn grants_share_a_segment_per_channel_and_flush_commits_them() {
    let (cluster, node, collection) = with_collection("dc-grants").await;
    let mut dc = cluster.datacoord_client();
    // Grants on one channel share a growing segment; another channel gets its own.
    let g = assign(
        &dc,
        vec![
            request(&collection, 0, 100),
            request(&collection, 0, 50),
            request(&collection, 1, 10),
        ],
    )
    .await
    .expect("grants");
    assert_eq!(g[0].segment_id, g[1].segment_id);
    assert_ne!(g[0].segment_id, g[2].segment_id);
    assert!(g.iter().all(|a| a.expire_ts > 0));
    let first_segments = [g[0].segment_id, g[2].segment_id];

    // Flush and wait: sealed, then flushed by the owner once the grants expired.
    let flushed = flush_and_wait(&dc, &collection).await;
    let mut ids = flushed.flushed_segment_ids.clone();
    ids.sort_unstable();
    let mut expected = first_segments.to_vec();
    expected.sort_unstable();
    assert_eq!(ids, expected);
    let segments = list(&dc, &collection).await.segments;
    assert_eq!(segments.len(), 2);
    for s in &segments {
        assert_eq!(s.state(), SegmentState::Flushed, "{s:?}");
        assert_eq!(s.seal_reason, "flush");
        assert_eq!(s.num_rows, 10);
        assert_eq!(
            s.insert_log_paths,
            vec![format!("fake://insert/{}/0.parquet", s.segment_id)]
        );
    }
    assert!(node.calls().iter().any(|c| matches!(c, Call::Flush { .. })));

    // A retried commit (same files) changes nothing; a late file is added; delete
    // logs are listed per collection.
    let first = segments[0].clone();
    let same = proto::SegmentBinlogs {
        segment_id: first.segment_id,
        num_rows: 10,
        insert_log_paths: first.insert_log_paths.clone(),
        delete_log_paths: vec![],
    };
    let late = proto::SegmentBinlogs {
        segment_id: first.segment_id,
        num_rows: 3,
        insert_log_paths: vec!["fake://insert/late.parquet".into()],
        delete_log_paths: vec![],
    };
    let deletes = proto::DeleteLog {
        collection_id: collection.id,
        partition_id: collection.partitions[0].id,
        channel: first.channel,
        path: "fake://delete/1.parquet".into(),
        num_rows: 2,
        checkpoint: None,
    };
    for _ in 0..2 {
        node.commit_files(
            first.channel,
            vec![same.clone(), late.clone()],
            vec![deletes.clone()],
        )
        .await
        .expect("commit (and its retry)");
    }
    let listed = list(&dc, &collection).await;
    let again = listed
        .segments
        .iter()
        .find(|s| s.segment_id == first.segment_id)
        .expect("segment");
    assert_eq!(again.num_rows, 13);
    assert_eq!(again.insert_log_paths.len(), 2);
    // Each file is tagged with the checkpoint of the commit that recorded it; the
    // retry (a commit at a later offset here) tags nothing again.
    let tags: Vec<i64> = again
        .insert_logs
        .iter()
        .map(|f| f.checkpoint.expect("tagged").insert_next_offset)
        .collect();
    assert_eq!(again.insert_logs.len(), 2);
    assert!(tags[0] < tags[1], "{tags:?}");
    assert_eq!(again.insert_logs[1].num_rows, 3);
    assert_eq!(listed.delete_logs.len(), 1);
    let tagged_delete = &listed.delete_logs[0];
    assert_eq!(
        tagged_delete.checkpoint.map(|c| c.insert_next_offset),
        Some(tags[1])
    );
    assert_eq!(
        proto::DeleteLog {
            checkpoint: None,
            ..tagged_delete.clone()
        },
        deletes
    );

    // Recovery info: every channel with its checkpoint, and the files at or below it.
    let recovery = dc
        .get_recovery_info(proto::GetRecoveryInfoRequest {
            collection_id: collection.id,
        })
        .await
        .expect("recovery info")
        .into_inner();
    let channels: Vec<u32> = recovery.channels.iter().map(|c| c.channel).collect();
    assert_eq!(channels, (0..CHANNELS).collect::<Vec<_>>());
    let ch = &recovery.channels[first.channel as usize];
    let checkpoint = ch.checkpoint.expect("checkpoint");
    assert_eq!(checkpoint.insert_next_offset, tags[1] + 1, "the retry's");
    let recovered = ch
        .segments
        .iter()
        .find(|s| s.segment_id == first.segment_id)
        .expect("segment");
    assert_eq!(recovered, again);
    assert_eq!(ch.delete_logs, listed.delete_logs);
    let segments_elsewhere = recovery
        .channels
        .iter()
        .filter(|c| c.channel != first.channel)
        .flat_map(|c| &c.segments)
        .count();
    assert_eq!(segments_elsewhere, 1, "the other channel's segment");
}

#[tokio::test]
async fn an_owner_that_gave_a_channel_up_is_told_to_watch_it_again_and_the_flush_completes() {
    let (cluster, node, collection) = with_collection("dc-lost-channel").await;
    let dc = cluster.datacoord_client();
    let granted = assign(&dc, vec![request(&collection, 0, 10)])
        .await
        .expect("grant");
    let epoch = node.owned()[&0];
    let watches = |node: &FakeDataNode, channel: u32| {
        node.calls()
            .iter()
            .filter(|c| matches!(c, Call::Watch { channel: c, .. } if *c == channel))
            .count()
    };
    let watched_before = (watches(&node, 0), watches(&node, 1));
    // The node drops channel 0 (as after a refused commit): its flush requests
    // are refused until the coordinator, reading its next load report, has it
    // watch the channel again.
    node.forget(0);
    node.report_load().await.expect("report");
    let flushed = flush_and_wait(&dc, &collection).await;
    assert_eq!(flushed.flushed_segment_ids, vec![granted[0].segment_id]);
    assert_eq!(
        node.owned().get(&0),
        Some(&epoch),
        "watched again, same epoch"
    );
    assert!(watches(&node, 0) > watched_before.0, "{:?}", node.calls());
    // A channel the report listed is not asked again.
    assert_eq!(watches(&node, 1), watched_before.1, "{:?}", node.calls());
}

#[tokio::test]
async fn a_grant_of_90_percent_of_a_segment_seals_it() {
    let (cluster, _node, collection) = with_collection("dc-size-policy").await;
    let dc = cluster.datacoord_client();
    let big = assign(&dc, vec![request(&collection, 0, 950_000)])
        .await
        .expect("big grant");
    let sealed = list(&dc, &collection)
        .await
        .segments
        .into_iter()
        .find(|s| s.segment_id == big[0].segment_id)
        .expect("segment");
    assert_eq!(sealed.seal_reason, "size");
    assert_ne!(sealed.state(), SegmentState::Growing);
}

#[tokio::test]
async fn a_restarted_coordinator_keeps_owners_seals_growing_segments_and_reuses_no_id() {
    let (mut cluster, _node, collection) = with_collection("dc-restart").await;
    // The coordinator restarts on the same port, so this client outlives it.
    let dc = cluster.datacoord_client();
    // A growing segment is left behind, then the coordinator dies.
    let g = assign(&dc, vec![request(&collection, 2, 10)])
        .await
        .expect("grant");
    let growing = g[0].segment_id;
    let before = cluster.distribution().await.channels;
    cluster.datacoord_mut().restart().expect("restart");
    cluster.wait_ready().await.expect("the new term leads");
    // Ownership survived the restart unchanged.
    let after = cluster.distribution().await.channels;
    let owners = |r: &[proto::ChannelAssignment]| {
        r.iter()
            .map(|a| (a.channel, a.node_id, a.epoch))
            .collect::<Vec<_>>()
    };
    assert_eq!(owners(&after), owners(&before));
    // The growing segment was sealed by the new term; no id is reused.
    let segments = list(&dc, &collection).await.segments;
    let left = segments
        .iter()
        .find(|s| s.segment_id == growing)
        .expect("still listed");
    assert_ne!(left.state(), SegmentState::Growing);
    assert_eq!(left.seal_reason, "coordinator restart");
    let g = assign(&dc, vec![request(&collection, 2, 10)])
        .await
        .expect("grant after restart");
    assert!(
        segments.iter().all(|s| s.segment_id != g[0].segment_id),
        "segment id reused"
    );
    // The restarted coordinator eventually gets the sealed segment flushed too.
    wait_for(
        "the left-over segment to flush",
        Duration::from_secs(20),
        || {
            let mut dc = dc.clone();
            async move {
                let list = dc
                    .list_segments(proto::ListSegmentsRequest {
                        collection_id: collection.id,
                    })
                    .await
                    .ok()?
                    .into_inner()
                    .segments;
                list.iter()
                    .any(|s| s.segment_id == growing && s.state() == SegmentState::Flushed)
                    .then_some(())
            }
        },
    )
    .await
    .expect("flushed after restart");
}

#[tokio::test]
async fn a_stopping_node_is_drained_release_first() {
    let (cluster, [a, b, c], _) = three_nodes("dc-stopping").await;
    // A node announcing a graceful stop is drained: release first, then moved.
    c.mark_stopping();
    let owners = settled(&cluster, &[&a, &b], Duration::from_secs(10)).await;
    assert!(
        c.calls()
            .iter()
            .any(|call| matches!(call, Call::Release { .. }))
    );
    assert!(
        c.owned().is_empty(),
        "c released everything: {:?}",
        c.owned()
    );
    assert!(owners.values().all(|(n, _)| *n != c.node_id));
}

#[tokio::test]
async fn rebalance_to_a_set_moves_every_channel_there() {
    let (cluster, [a, _b, _c], _) = three_nodes("dc-rebalance").await;
    // Rebalance to an explicit set: everything goes to a, the others are drained.
    let resp = cluster
        .datacoord_client()
        .rebalance(proto::RebalanceRequest {
            expected_node_ids: vec![a.node_id],
        })
        .await
        .expect("rebalance")
        .into_inner();
    assert!(
        resp.channels.iter().all(|r| r.node_id == a.node_id),
        "{:?}",
        resp.channels
    );
    assert!(resp.moved >= 1);
    settled(&cluster, &[&a], Duration::from_secs(10)).await;
}

#[tokio::test]
async fn a_standby_coordinator_takes_over_within_the_ttl_with_the_same_owners() {
    let mut cluster = start("dc-failover").await;
    let a = node(&cluster).await;
    let owners = settled(&cluster, &[&a], Duration::from_secs(15)).await;

    // A standby data coordinator takes over within TTL + 1 s of a kill -9 and sees
    // the same ownership.
    let standby = cluster
        .start_role("datacoord-standby", Role::DataCoord)
        .expect("standby");
    let mut sc = milvus_like_tests::data_coord_client(&standby.endpoint());
    let refused = wait_for("the standby to answer", Duration::from_secs(20), || {
        let mut sc = sc.clone();
        async move {
            match sc
                .get_channel_distribution(proto::GetChannelDistributionRequest {})
                .await
            {
                Err(s)
                    if s.code() == Code::Unavailable && s.message().contains("not the leader") =>
                {
                    Some(s)
                }
                _ => None,
            }
        }
    })
    .await
    .expect("standby refuses");
    assert!(
        refused
            .metadata()
            .get(milvus_like_api::LEADER_HINT_METADATA)
            .is_some()
    );
    cluster.datacoord_mut().process.kill9();
    let killed = Instant::now();
    let dist = wait_distribution(&sc, "the standby to lead", Duration::from_secs(10), |_| {
        true
    })
    .await
    .expect("standby leads");
    let took = killed.elapsed();
    eprintln!("data coordinator failover took {took:?}");
    assert!(
        took <= TTL + Duration::from_secs(1),
        "failover took {took:?}"
    );
    let after: Owners = dist
        .channels
        .iter()
        .map(|r| (r.channel, (r.node_id, r.epoch)))
        .collect();
    assert_eq!(after, owners);
    assert!(
        sc.drain_node(proto::DrainNodeRequest { node_id: a.node_id })
            .await
            .is_err(),
        "a is the only eligible node"
    );
}

#[tokio::test]
async fn an_unknown_balancer_is_refused_at_start() {
    let dir = TestDir::new("dc-bad-balancer");
    let etcd = Etcd::start(dir.path()).await.expect("etcd");
    let mut meta = MetaArgs::new(etcd.endpoint());
    meta.etcd_timeout = Some("1s");
    let mut args = meta.args();
    args.extend([
        "--rootcoord-endpoints=127.0.0.1:1".to_owned(),
        "--balancer=fastest".to_owned(),
    ]);
    let mut dc = RoleProcess::start(
        dir.path(),
        "datacoord",
        Role::DataCoord,
        Ports::free(),
        args,
    )
    .expect("spawn");
    dc.process
        .exited(Duration::from_secs(10))
        .await
        .expect("exits");
    let log = dc.process.log();
    assert!(
        log.contains(
            "unknown balancer \"fastest\"; known: consistent_hash, least_load, round_robin"
        ),
        "{log}"
    );
}
