//! The data coordinator as a process against real etcd and a real root coordinator,
//! with in-process data nodes that register real sessions and speak the protocol.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use milvus_like_api::proto::{self, SegmentIdRequest, SegmentState};
use milvus_like_tests::fake_datanode::{Call, FakeDataNode};
use milvus_like_tests::{
    DataCoordProcess, Etcd, RootCoordOptions, RootCoordProcess, TestDir, free_port,
    root_coord_client, test_schema, wait_for, wait_serving,
};
use tonic::Code;

const TTL: Duration = Duration::from_secs(3);

struct Cluster {
    etcd: Etcd,
    opts: RootCoordOptions,
    rootcoord: RootCoordProcess,
    datacoord: DataCoordProcess,
    ports: (u16, u16),
    /// Last: dropped after the processes that write into it.
    dir: TestDir,
}

impl Cluster {
    async fn start(name: &str) -> Self {
        let dir = TestDir::new(name);
        let etcd = Etcd::start(dir.path()).await.expect("etcd");
        let opts = RootCoordOptions {
            etcd_endpoint: etcd.endpoint(),
            meta_root: "test".into(),
            session_ttl: "3s",
            leader_ttl: "3s",
        };
        let rootcoord = RootCoordProcess::start(dir.path(), "rootcoord", &opts).expect("rootcoord");
        wait_serving(
            &rootcoord.endpoint(),
            &rootcoord.process,
            Duration::from_secs(20),
        )
        .await;
        let ports = (free_port(), free_port());
        let datacoord = DataCoordProcess::start_on(
            dir.path(),
            "datacoord",
            &opts,
            &rootcoord.endpoint(),
            ports,
            &[],
        )
        .expect("datacoord");
        let cluster = Self {
            dir,
            etcd,
            opts,
            rootcoord,
            datacoord,
            ports,
        };
        cluster.wait_datacoord().await;
        cluster
    }

    async fn wait_datacoord(&self) {
        let c = self.datacoord.client();
        wait_for(
            "the data coordinator to lead",
            Duration::from_secs(20),
            || {
                let mut c = c.clone();
                async move {
                    c.get_channel_distribution(proto::GetChannelDistributionRequest {})
                        .await
                        .ok()
                }
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e}; log:\n{}", self.datacoord.process.log()));
    }

    async fn node(&self) -> FakeDataNode {
        FakeDataNode::start(
            &self.etcd.endpoint(),
            &self.opts.meta_root,
            &self.datacoord.endpoint(),
            TTL,
        )
        .await
        .expect("fake data node")
    }

    async fn distribution(&self) -> proto::GetChannelDistributionResponse {
        self.datacoord
            .client()
            .get_channel_distribution(proto::GetChannelDistributionRequest {})
            .await
            .expect("distribution")
            .into_inner()
    }

    /// Channel -> (owner, epoch) once every channel is owned by one of `nodes`, each
    /// owner acknowledged it, and round robin's bound holds (no node above
    /// ceil(channels / nodes)): the state the coordinator converges to.
    async fn settled(
        &self,
        nodes: &[&FakeDataNode],
        timeout: Duration,
    ) -> BTreeMap<u32, (i64, u64)> {
        wait_for("channels to settle", timeout, || async {
            let d = self.distribution().await;
            let owners: BTreeMap<u32, (i64, u64)> = d
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
        .unwrap_or_else(|e| panic!("{e}; log:\n{}", self.datacoord.process.log()))
    }
}

fn per_node(owners: &BTreeMap<u32, (i64, u64)>) -> BTreeMap<i64, usize> {
    let mut counts = BTreeMap::new();
    for (node, _) in owners.values() {
        *counts.entry(*node).or_default() += 1;
    }
    counts
}

#[tokio::test]
async fn channels_follow_data_nodes_through_joins_crashes_and_drains() {
    let cluster = Cluster::start("dc-channels").await;
    let a = cluster.node().await;
    let b = cluster.node().await;
    let mut c = cluster.node().await;
    let owners = cluster
        .settled(&[&a, &b, &c], Duration::from_secs(15))
        .await;
    // Round robin over 3 nodes: one channel each, never two on one node.
    assert!(per_node(&owners).values().all(|n| *n == 1), "{owners:?}");

    // Crash the owner of some channel: it moves to a survivor within TTL + 1 s.
    let (&lost, &(_, old_epoch)) = owners
        .iter()
        .find(|(_, (n, _))| *n == c.node_id)
        .expect("c owns one");
    c.crash();
    let crashed = Instant::now();
    let owners = cluster.settled(&[&a, &b], Duration::from_secs(10)).await;
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
    let d = cluster.node().await;
    let owners = cluster
        .settled(&[&a, &b, &d], Duration::from_secs(10))
        .await;
    assert!(per_node(&owners).values().all(|n| *n == 1), "{owners:?}");

    // Drain b: it flushes and releases first, then its channel goes elsewhere.
    let b_channels: Vec<u32> = owners
        .iter()
        .filter(|(_, (n, _))| *n == b.node_id)
        .map(|(ch, _)| *ch)
        .collect();
    let drained = cluster
        .datacoord
        .client()
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
    let owners = cluster.settled(&[&a, &d], Duration::from_secs(10)).await;
    assert!(owners.values().all(|(n, _)| *n != b.node_id));
    // The released channel resumes from the checkpoint b committed on release.
    for ch in &b_channels {
        let (owner, epoch) = owners[ch];
        let taker = if owner == a.node_id { &a } else { &d };
        assert!(taker.calls().iter().any(|call| matches!(call, Call::Watch { channel, epoch: e, offset } if channel == ch && *e == epoch && *offset >= 1)), "{:?}", taker.calls());
    }
    let dist = cluster.distribution().await;
    assert!(
        dist.nodes
            .iter()
            .any(|n| n.node_id == b.node_id && n.draining && n.channels.is_empty())
    );

    // Bad input: unknown nodes, and draining a node that does not exist.
    let err = cluster
        .datacoord
        .client()
        .rebalance(proto::RebalanceRequest {
            expected_node_ids: vec![a.node_id, 424_242],
        })
        .await
        .expect_err("unknown node");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("424242"), "{}", err.message());
    let err = cluster
        .datacoord
        .client()
        .drain_node(proto::DrainNodeRequest { node_id: 424_242 })
        .await
        .expect_err("unknown node");
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(
        cluster.settled(&[&a, &d], Duration::from_secs(5)).await,
        owners,
        "bad requests changed nothing"
    );
}

#[tokio::test]
async fn segments_grants_flush_and_coordinator_restart() {
    let mut cluster = Cluster::start("dc-segments").await;
    let node = cluster.node().await;
    cluster.settled(&[&node], Duration::from_secs(15)).await;
    let collection = root_coord_client(&cluster.rootcoord.endpoint())
        .create_collection(proto::CreateCollectionRequest {
            schema: Some(test_schema("vectors", 128)),
        })
        .await
        .expect("create")
        .into_inner()
        .collection
        .expect("info");
    let partition = collection.partitions[0].id;
    let request = |channel: u32, count: u32| SegmentIdRequest {
        collection_id: collection.id,
        partition_id: partition,
        channel,
        count,
    };
    // The coordinator restarts on the same port, so these clients outlive it.
    let mut dc = cluster.datacoord.client();
    let assigner = dc.clone();
    let assign = |reqs: Vec<SegmentIdRequest>| {
        let mut dc = assigner.clone();
        async move {
            dc.assign_segment_id(proto::AssignSegmentIdRequest { requests: reqs })
                .await
                .map(|r| r.into_inner().assignments)
        }
    };

    // Bad input.
    let mut bad = request(0, 10);
    bad.collection_id = 999_999;
    assert_eq!(
        assign(vec![bad]).await.expect_err("unknown").code(),
        Code::NotFound
    );
    let mut bad = request(0, 10);
    bad.partition_id = 7;
    assert_eq!(
        assign(vec![bad]).await.expect_err("partition").code(),
        Code::NotFound
    );
    assert_eq!(
        assign(vec![request(0, 0)]).await.expect_err("zero").code(),
        Code::InvalidArgument
    );
    assert_eq!(
        assign(vec![request(0, u32::MAX)])
            .await
            .expect_err("absurd")
            .code(),
        Code::InvalidArgument
    );
    assert_eq!(
        assign(vec![request(99, 10)])
            .await
            .expect_err("channel")
            .code(),
        Code::InvalidArgument
    );
    // A grant larger than a segment: 512 MiB / (8 + 8 + 512) bytes = 1016800 rows.
    let too_big = assign(vec![request(0, 2_000_000)])
        .await
        .expect_err("too big");
    assert_eq!(too_big.code(), Code::InvalidArgument);
    assert!(
        too_big.message().contains("exceeds"),
        "{}",
        too_big.message()
    );
    assert!(assign(vec![]).await.is_err());

    // Grants on one channel share a growing segment; another channel gets its own.
    let g = assign(vec![request(0, 100), request(0, 50), request(1, 10)])
        .await
        .expect("grants");
    assert_eq!(g[0].segment_id, g[1].segment_id);
    assert_ne!(g[0].segment_id, g[2].segment_id);
    assert!(g.iter().all(|a| a.expire_ts > 0));
    let first_segments = [g[0].segment_id, g[2].segment_id];

    // Flush and wait: sealed, then flushed by the owner once the grants expired.
    let flushed = dc
        .flush(proto::FlushRequest {
            collection_id: collection.id,
            wait: true,
        })
        .await
        .expect("flush")
        .into_inner();
    let mut ids = flushed.flushed_segment_ids.clone();
    ids.sort_unstable();
    let mut expected = first_segments.to_vec();
    expected.sort_unstable();
    assert_eq!(ids, expected);
    let segments = dc
        .list_segments(proto::ListSegmentsRequest {
            collection_id: collection.id,
        })
        .await
        .expect("list")
        .into_inner()
        .segments;
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
        partition_id: partition,
        channel: first.channel,
        path: "fake://delete/1.parquet".into(),
        num_rows: 2,
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
    let listed = dc
        .list_segments(proto::ListSegmentsRequest {
            collection_id: collection.id,
        })
        .await
        .expect("list")
        .into_inner();
    let again = listed
        .segments
        .iter()
        .find(|s| s.segment_id == first.segment_id)
        .expect("segment");
    assert_eq!(again.num_rows, 13);
    assert_eq!(again.insert_log_paths.len(), 2);
    assert_eq!(listed.delete_logs, vec![deletes]);

    // The size policy: granting 90 % of a segment's rows seals it.
    let big = assign(vec![request(0, 950_000)]).await.expect("big grant");
    let sealed = dc
        .list_segments(proto::ListSegmentsRequest {
            collection_id: collection.id,
        })
        .await
        .expect("list")
        .into_inner()
        .segments
        .into_iter()
        .find(|s| s.segment_id == big[0].segment_id)
        .expect("segment");
    assert_eq!(sealed.seal_reason, "size");
    assert_ne!(sealed.state(), SegmentState::Growing);

    // A growing segment is left behind, then the coordinator dies.
    let g = assign(vec![request(2, 10)]).await.expect("grant");
    let growing = g[0].segment_id;
    let before = cluster.distribution().await.channels;
    cluster.datacoord.process.kill9();
    cluster.datacoord = DataCoordProcess::start_on(
        cluster.dir.path(),
        "datacoord-2",
        &cluster.opts,
        &cluster.rootcoord.endpoint(),
        cluster.ports,
        &[],
    )
    .expect("restart");
    cluster.wait_datacoord().await;
    // Ownership survived the restart unchanged.
    let after = cluster.distribution().await.channels;
    let owners = |r: &[proto::ChannelAssignment]| {
        r.iter()
            .map(|a| (a.channel, a.node_id, a.epoch))
            .collect::<Vec<_>>()
    };
    assert_eq!(owners(&after), owners(&before));
    // The growing segment was sealed by the new term; no id is reused.
    let segments = dc
        .list_segments(proto::ListSegmentsRequest {
            collection_id: collection.id,
        })
        .await
        .expect("list")
        .into_inner()
        .segments;
    let left = segments
        .iter()
        .find(|s| s.segment_id == growing)
        .expect("still listed");
    assert_ne!(left.state(), SegmentState::Growing);
    assert_eq!(left.seal_reason, "coordinator restart");
    let g = assign(vec![request(2, 10)])
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
async fn stopping_nodes_rebalance_to_a_set_and_standby_failover() {
    let cluster = Cluster::start("dc-failover").await;
    let a = cluster.node().await;
    let b = cluster.node().await;
    let c = cluster.node().await;
    cluster
        .settled(&[&a, &b, &c], Duration::from_secs(15))
        .await;

    // A node announcing a graceful stop is drained: release first, then moved.
    c.mark_stopping();
    let owners = cluster.settled(&[&a, &b], Duration::from_secs(10)).await;
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

    // Rebalance to an explicit set: everything goes to a, b is drained.
    let resp = cluster
        .datacoord
        .client()
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
    let owners = cluster.settled(&[&a], Duration::from_secs(10)).await;

    // A standby data coordinator takes over within TTL + 1 s of a kill -9 and sees
    // the same ownership.
    let standby = DataCoordProcess::start_on(
        cluster.dir.path(),
        "datacoord-standby",
        &cluster.opts,
        &cluster.rootcoord.endpoint(),
        (free_port(), free_port()),
        &[],
    )
    .expect("standby");
    let mut sc = standby.client();
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
    let mut cluster = cluster;
    cluster.datacoord.process.kill9();
    let killed = Instant::now();
    let dist = wait_for("the standby to lead", Duration::from_secs(10), || {
        let mut sc = sc.clone();
        async move {
            sc.get_channel_distribution(proto::GetChannelDistributionRequest {})
                .await
                .ok()
                .map(|r| r.into_inner())
        }
    })
    .await
    .expect("standby leads");
    let took = killed.elapsed();
    eprintln!("data coordinator failover took {took:?}");
    assert!(
        took <= TTL + Duration::from_secs(1),
        "failover took {took:?}"
    );
    let after: BTreeMap<u32, (i64, u64)> = dist
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
    let opts = RootCoordOptions {
        etcd_endpoint: etcd.endpoint(),
        meta_root: "test".into(),
        session_ttl: "3s",
        leader_ttl: "3s",
    };
    let mut dc = DataCoordProcess::start_on(
        dir.path(),
        "datacoord",
        &opts,
        "127.0.0.1:1",
        (free_port(), free_port()),
        &["--balancer=fastest"],
    )
    .expect("spawn");
    wait_for("the process to exit", Duration::from_secs(10), || {
        let exited = dc.process.has_exited();
        async move { exited.then_some(()) }
    })
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
