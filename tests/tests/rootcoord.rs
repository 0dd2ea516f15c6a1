//! The root coordinator against a real etcd, as separate processes.

use std::time::{Duration, Instant};

use milvus_like_api::proto::root_coord_client::RootCoordClient;
use milvus_like_api::proto::{self, Role as ProtoRole};
use milvus_like_api::tso_client::{TsoClient, TsoClientConfig};
use milvus_like_tests::{
    Cluster, ClusterBuilder, Etcd, MetaArgs, Ports, Role, RoleProcess, TestDir, root_coord_client,
    test_schema, wait_for,
};
use tonic::Code;
use tonic::transport::Channel;

/// etcd and a root coordinator that issues timestamps.
async fn start(name: &str) -> Cluster {
    ClusterBuilder::new(name)
        .etcd_timeout("1s")
        .build()
        .await
        .expect("cluster")
}

fn client(rc: &RoleProcess) -> RootCoordClient<Channel> {
    root_coord_client(&rc.endpoint())
}

/// Waits until `rc` issues timestamps; returns one.
async fn wait_serving(rc: &RoleProcess, timeout: Duration) -> u64 {
    milvus_like_tests::wait_serving(&rc.endpoint(), &rc.process, timeout).await
}

fn schema(name: &str, dim: u32) -> proto::CollectionSchema {
    test_schema(name, dim)
}

#[tokio::test]
async fn timestamps_strictly_increase_across_ten_restarts() {
    let mut cluster = start("ts-restarts").await;
    // Both ports stay the same across restarts, so one client follows them all.
    let rc = &mut cluster.rootcoord;
    let tso = TsoClient::connect(
        &[rc.endpoint()],
        TsoClientConfig {
            retry_deadline: Duration::from_secs(20),
            ..TsoClientConfig::default()
        },
    )
    .expect("client");

    // One caller checks strict order call by call; eight more hammer concurrently.
    let sequential = tokio::spawn({
        let tso = tso.clone();
        async move {
            let mut seen = Vec::new();
            let stop = Instant::now() + Duration::from_secs(3600);
            while Instant::now() < stop {
                match tso.timestamp().await {
                    Ok(ts) => seen.push(ts.as_u64()),
                    Err(e) => return (seen, Some(e.to_string())),
                }
                if seen.len() % 64 == 0 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            (seen, None)
        }
    });
    let mut concurrent = Vec::new();
    for _ in 0..8 {
        let tso = tso.clone();
        concurrent.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            while let Ok(r) = tso.timestamps(10).await {
                seen.push(r.first.as_u64());
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            seen
        }));
    }

    for i in 1..=10 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        // Alternate a graceful stop (resigns at once) and kill -9 (standby waits the TTL).
        if i % 2 == 0 {
            rc.process.kill9();
        } else {
            rc.process.terminate(Duration::from_secs(10));
        }
        rc.restart().expect("restart");
        wait_serving(rc, Duration::from_secs(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    rc.process.terminate(Duration::from_secs(10));

    let (seen, error) = sequential.await.expect("join");
    assert!(
        seen.len() > 100,
        "too few timestamps ({}); error: {error:?}",
        seen.len()
    );
    for pair in seen.windows(2) {
        assert!(
            pair[1] > pair[0],
            "timestamp {} came after {}",
            pair[1],
            pair[0]
        );
    }
    let mut all: Vec<u64> = seen;
    for h in concurrent {
        let got = h.await.expect("join");
        for pair in got.windows(2) {
            assert!(
                pair[1] >= pair[0] + 10,
                "a caller's ranges overlap or go back"
            );
        }
        // Each concurrent range holds 10 timestamps.
        all.extend(got.iter().flat_map(|first| *first..first + 10));
    }
    let n = all.len();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), n, "some timestamp was issued twice");
}

#[tokio::test]
async fn standby_serves_within_ttl_after_leader_is_killed() {
    let mut cluster = start("failover").await;
    let b = cluster
        .start_role("rootcoord-b", Role::RootCoord)
        .expect("start b");
    let a = &mut cluster.rootcoord;
    let before = wait_serving(a, Duration::from_secs(20)).await;

    // b stands by: Unavailable with a hint naming a, NOT_SERVING in gRPC health.
    let mut cb = client(&b);
    let refused = wait_for("b to answer", Duration::from_secs(20), || {
        let mut cb = cb.clone();
        async move {
            match cb
                .alloc_timestamp(proto::AllocTimestampRequest { count: 1 })
                .await
            {
                Err(s) if s.code() == Code::Unavailable && !s.metadata().is_empty() => Some(s),
                _ => None,
            }
        }
    })
    .await
    .expect("standby answers");
    let hint = refused
        .metadata()
        .get(milvus_like_api::LEADER_HINT_METADATA)
        .expect("leader hint")
        .to_str()
        .expect("ascii")
        .to_owned();
    assert_eq!(hint, a.ports.address());
    assert_eq!(health(&b).await, tonic_health::ServingStatus::NotServing);
    assert_eq!(health(a).await, tonic_health::ServingStatus::Serving);
    let leader = cb
        .get_leader(proto::GetLeaderRequest {})
        .await
        .expect("get leader")
        .into_inner();
    assert!(!leader.is_self);
    // A timestamp stream is refused when it opens, not at its first request, so
    // that a client's pool moves on to the leader.
    let (_requests, outgoing) = tokio::sync::mpsc::channel::<proto::AllocTimestampRequest>(1);
    let Err(refused) = cb
        .alloc_timestamp_stream(tokio_stream::wrappers::ReceiverStream::new(outgoing))
        .await
    else {
        panic!("a standby opened a timestamp stream");
    };
    assert_eq!(refused.code(), Code::Unavailable, "{refused}");

    let mut ca = client(a);
    let last_a = ca
        .alloc_timestamp(proto::AllocTimestampRequest { count: 5 })
        .await
        .expect("a serves")
        .into_inner()
        .timestamp
        + 4;
    assert!(last_a > before);

    // A batching client that knows both endpoints follows the leader.
    let tso = TsoClient::connect(
        &[b.endpoint(), a.endpoint()],
        TsoClientConfig {
            retry_deadline: Duration::from_secs(15),
            ..TsoClientConfig::default()
        },
    )
    .expect("client");
    let via_client = tso
        .timestamp()
        .await
        .expect("client finds the leader")
        .as_u64();
    assert!(via_client > last_a);

    a.process.kill9();
    let killed = Instant::now();
    let first_b = wait_for("b to take over", Duration::from_secs(10), || {
        let mut cb = cb.clone();
        async move {
            cb.alloc_timestamp(proto::AllocTimestampRequest { count: 1 })
                .await
                .ok()
                .map(|r| r.into_inner().timestamp)
        }
    })
    .await
    .expect("b takes over");
    let took = killed.elapsed();
    // etcd expires the lease at most TTL after the last renewal (which came before the kill).
    assert!(
        took <= Duration::from_secs(3 + 1),
        "standby took {took:?}, more than TTL + 1 s"
    );
    assert!(
        first_b > last_a,
        "new leader went back: {first_b} <= {last_a}"
    );
    assert_eq!(health(&b).await, tonic_health::ServingStatus::Serving);
    eprintln!("failover took {took:?}");
}

async fn health(rc: &RoleProcess) -> tonic_health::ServingStatus {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;
    let channel = Channel::from_shared(rc.endpoint())
        .expect("uri")
        .connect_lazy();
    let status = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: "milvuslike.v1.RootCoord".into(),
        })
        .await
        .expect("health check")
        .into_inner()
        .status;
    match status {
        1 => tonic_health::ServingStatus::Serving,
        2 => tonic_health::ServingStatus::NotServing,
        _ => tonic_health::ServingStatus::Unknown,
    }
}

#[tokio::test]
async fn a_killed_process_leaves_the_node_list_within_its_ttl() {
    let cluster = start("sessions").await;
    let mut b = cluster
        .start_role("rootcoord-b", Role::RootCoord)
        .expect("start b");
    let mut ca = client(&cluster.rootcoord);
    let list = || {
        let mut ca = ca.clone();
        async move {
            ca.list_nodes(proto::ListNodesRequest {
                role: ProtoRole::RootCoord.into(),
            })
            .await
            .map(|r| r.into_inner().nodes)
            .unwrap_or_default()
        }
    };
    let b_address = b.ports.address();
    wait_for("b to register", Duration::from_secs(20), || {
        let list = list();
        let b_address = b_address.clone();
        async move {
            list.await
                .iter()
                .any(|n| n.address == b_address)
                .then_some(())
        }
    })
    .await
    .expect("b registers");
    let nodes = list().await;
    assert_eq!(nodes.len(), 2);
    for n in &nodes {
        let h = n.health.as_ref().expect("health reported");
        assert!(h.memory_total_bytes > 0 && h.reported_at_ms > 0);
        assert_eq!(n.healthy, n.problems.is_empty());
    }

    b.process.kill9();
    let killed = Instant::now();
    wait_for("b to leave the list", Duration::from_secs(10), || {
        let list = list();
        let b_address = b_address.clone();
        async move { (!list.await.iter().any(|n| n.address == b_address)).then_some(()) }
    })
    .await
    .expect("b leaves");
    let took = killed.elapsed();
    // The lease runs out at most TTL after the last heartbeat, which came before the
    // kill; etcd checks expiry every 500 ms and then notifies watchers. Same bound as
    // the leader failover: TTL + 1 s.
    assert!(took <= Duration::from_secs(3 + 1), "took {took:?}");
    eprintln!("session of the killed process gone after {took:?}");
    let invalid = ca
        .list_nodes(proto::ListNodesRequest { role: 77 })
        .await
        .expect_err("unknown role");
    assert_eq!(invalid.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn bad_allocation_counts_are_refused() {
    let cluster = start("alloc-counts").await;
    let mut c = client(&cluster.rootcoord);
    for count in [0, (1 << 18) + 1, u32::MAX] {
        let err = c
            .alloc_timestamp(proto::AllocTimestampRequest { count })
            .await
            .expect_err("bad count");
        assert_eq!(err.code(), Code::InvalidArgument, "count {count}: {err}");
        assert!(err.message().contains("out of range"), "{}", err.message());
    }
    let err = c
        .alloc_id(proto::AllocIdRequest { count: 0 })
        .await
        .expect_err("bad count");
    assert_eq!(err.code(), Code::InvalidArgument);
}

/// One `AllocTimestampStream` answers every request in order with larger
/// timestamps, stays open longer than the client's per-call timeout, and ends
/// with the status of the first bad request.
#[tokio::test]
async fn a_timestamp_stream_answers_in_order_and_ends_on_a_bad_request() {
    let cluster = start("ts-stream").await;
    let channel = milvus_like_api::leader_pool::endpoint(
        &cluster.rootcoord.endpoint(),
        Duration::from_secs(1),
    )
    .expect("endpoint")
    .connect_lazy();
    let (requests, outgoing) = tokio::sync::mpsc::channel(4);
    let mut answers = RootCoordClient::new(channel)
        .alloc_timestamp_stream(tokio_stream::wrappers::ReceiverStream::new(outgoing))
        .await
        .expect("open the stream")
        .into_inner();
    let mut last = 0;
    for (round, count) in [1u32, 1000, 7].into_iter().enumerate() {
        if round == 2 {
            // Longer than the endpoint's 1 s timeout: the stream must stay open.
            tokio::time::sleep(Duration::from_millis(1500)).await;
        }
        requests
            .send(proto::AllocTimestampRequest { count })
            .await
            .expect("send");
        let answer = answers
            .message()
            .await
            .expect("an answer")
            .expect("the stream is open");
        assert_eq!(answer.count, count);
        assert!(
            answer.timestamp > last,
            "round {round}: {answer:?} after {last}"
        );
        last = answer.timestamp + u64::from(count) - 1;
    }
    requests
        .send(proto::AllocTimestampRequest { count: 0 })
        .await
        .expect("send");
    let refused = answers.message().await.expect_err("count 0");
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused}");
    assert!(
        refused.message().contains("out of range"),
        "{}",
        refused.message()
    );
}

#[tokio::test]
async fn bad_schemas_and_unknown_collections_are_refused() {
    let cluster = start("bad-schemas").await;
    let mut c = client(&cluster.rootcoord);
    let bad = c
        .create_collection(proto::CreateCollectionRequest {
            schema: Some(schema("bad", 0)),
        })
        .await
        .expect_err("dim 0");
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(
        bad.message().contains("\"vec\" has dim 0"),
        "{}",
        bad.message()
    );
    let mut no_pk = schema("nopk", 8);
    no_pk.fields[0].is_primary_key = false;
    let bad = c
        .create_collection(proto::CreateCollectionRequest {
            schema: Some(no_pk),
        })
        .await
        .expect_err("no pk");
    assert!(
        bad.message().contains("no primary key"),
        "{}",
        bad.message()
    );
    let bad = c
        .create_collection(proto::CreateCollectionRequest { schema: None })
        .await
        .expect_err("no schema");
    assert_eq!(bad.code(), Code::InvalidArgument);

    let missing = c
        .describe_collection(proto::DescribeCollectionRequest {
            collection: Some(proto::describe_collection_request::Collection::Name(
                "nope".into(),
            )),
        })
        .await
        .expect_err("missing");
    assert_eq!(missing.code(), Code::NotFound);
}

#[tokio::test]
async fn collections_survive_a_restart_and_drop_once() {
    let mut cluster = start("collections").await;
    let rc = &mut cluster.rootcoord;
    let mut c = client(rc);
    let ids = c
        .alloc_id(proto::AllocIdRequest { count: 1000 })
        .await
        .expect("ids")
        .into_inner();
    assert_eq!(ids.count, 1000);

    let created = c
        .create_collection(proto::CreateCollectionRequest {
            schema: Some(schema("books", 128)),
        })
        .await
        .expect("create")
        .into_inner()
        .collection
        .expect("info");
    assert!(
        created.id >= ids.start + 1000,
        "collection id reuses an allocated id"
    );
    assert_eq!(created.partitions.len(), 1);

    let dup = c
        .create_collection(proto::CreateCollectionRequest {
            schema: Some(schema("books", 64)),
        })
        .await
        .expect_err("duplicate");
    assert_eq!(dup.code(), Code::AlreadyExists);

    // Restart: the collection is still there, described by name and id.
    rc.process.terminate(Duration::from_secs(10));
    rc.restart().expect("restart");
    wait_serving(rc, Duration::from_secs(20)).await;
    let by_id = c
        .describe_collection(proto::DescribeCollectionRequest {
            collection: Some(proto::describe_collection_request::Collection::Id(
                created.id,
            )),
        })
        .await
        .expect("describe")
        .into_inner()
        .collection
        .expect("info");
    assert_eq!(by_id, created);
    let list = c
        .list_collections(proto::ListCollectionsRequest {})
        .await
        .expect("list")
        .into_inner()
        .collections;
    assert_eq!(list, vec![created.clone()]);
    let dropped = c
        .drop_collection(proto::DropCollectionRequest {
            name: "books".into(),
        })
        .await
        .expect("drop")
        .into_inner();
    assert_eq!(dropped.id, created.id);
    let again = c
        .drop_collection(proto::DropCollectionRequest {
            name: "books".into(),
        })
        .await
        .expect_err("already dropped");
    assert_eq!(again.code(), Code::NotFound);
}

#[tokio::test]
async fn reflection_metrics_and_readiness_are_served() {
    let cluster = start("rootcoord-http").await;
    let rc = &cluster.rootcoord;
    // Server reflection lists the services, as `grpcurl list` would.
    let services = reflected_services(rc).await;
    for expected in ["milvuslike.v1.RootCoord", "grpc.health.v1.Health"] {
        assert!(services.iter().any(|s| s == expected), "{services:?}");
    }

    // Metrics are served and parse as Prometheus text.
    let body = milvus_like_tests::http_get(rc.ports.http, "/metrics").await;
    assert!(body.contains("rootcoord_tso_timestamps_total"), "{body}");
    assert!(body.contains("rootcoord_is_leader 1"), "{body}");
    assert!(
        milvus_like_tests::http_get(rc.ports.http, "/readyz")
            .await
            .contains("\"ready\":true")
    );
}

#[tokio::test]
async fn etcd_unreachable_at_start_and_mid_run() {
    let dir = TestDir::new("etcd-down");
    // Start the root coordinator against a port where no etcd runs yet.
    let port = milvus_like_tests::free_port();
    let mut meta = MetaArgs::new(format!("http://127.0.0.1:{port}"));
    meta.etcd_timeout = Some("1s");
    let mut rc = RoleProcess::start(
        dir.path(),
        "rootcoord",
        Role::RootCoord,
        Ports::free(),
        meta.args(),
    )
    .expect("start");
    wait_for("a clear log line", Duration::from_secs(10), || {
        let log = rc.process.log();
        async move { log.contains("etcd is unreachable").then_some(()) }
    })
    .await
    .expect("says etcd is unreachable");
    assert!(!rc.process.has_exited(), "must keep retrying, not exit");

    let mut etcd = Etcd::start_on(dir.path(), port).await.expect("etcd");
    let before = wait_serving(&rc, Duration::from_secs(20)).await;

    // etcd dies mid-run: no crash; within the lease TTL requests fail with Unavailable.
    etcd.kill9();
    let mut c = client(&rc);
    let err = wait_for("requests to fail cleanly", Duration::from_secs(15), || {
        let mut c = c.clone();
        async move {
            c.alloc_timestamp(proto::AllocTimestampRequest { count: 1 })
                .await
                .err()
        }
    })
    .await
    .expect("fails");
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    let create = c
        .create_collection(proto::CreateCollectionRequest {
            schema: Some(schema("while_down", 8)),
        })
        .await
        .expect_err("no metadata store");
    assert_eq!(create.code(), Code::Unavailable, "{create}");
    assert!(!rc.process.has_exited(), "must survive etcd going away");

    etcd.restart().await.expect("etcd back");
    let after = wait_serving(&rc, Duration::from_secs(30)).await;
    assert!(after > before, "went back after etcd restart");
    assert!(!rc.process.has_exited());
}

async fn reflected_services(rc: &RoleProcess) -> Vec<String> {
    use futures::StreamExt;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let channel = Channel::from_shared(rc.endpoint())
        .expect("uri")
        .connect_lazy();
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = ServerReflectionClient::new(channel)
        .server_reflection_info(futures::stream::iter([request]))
        .await
        .expect("reflection")
        .into_inner();
    let first = responses.next().await.expect("a response").expect("ok");
    match first.message_response {
        Some(MessageResponse::ListServicesResponse(list)) => {
            list.service.into_iter().map(|s| s.name).collect()
        }
        other => panic!("unexpected reflection answer {other:?}"),
    }
}
