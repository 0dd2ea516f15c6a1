//! Data-node scaling: a scale-down drains the departing data nodes (their
//! channels are flushed and moved) before the StatefulSet removes their pods;
//! a change of the ready data-node pods asks the data coordinator to rebalance.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::runtime::events::EventType;
use tonic::Status;

use super::{Context, REBALANCE_RETRY, key, now};
use crate::build::{self, Role};
use crate::crd::{MilvusCluster, RebalanceRecord};
use crate::datacoord::{Distribution, Drained};
use crate::validate::Cluster;

/// The StatefulSet size to apply now, and the drain behind it.
#[derive(Debug, Default)]
pub(super) struct DataNodePlan {
    pub replicas: i32,
    /// Pods being drained (the StatefulSet keeps them until they are).
    pub draining: Vec<String>,
    /// What the drain did, once it is over.
    pub record: Option<RebalanceRecord>,
}

/// The ordinal of a data-node pod `<cluster>-datanode-<n>`.
pub(super) fn ordinal(cluster: &str, pod: &str) -> Option<i32> {
    pod.strip_prefix(&build::child_name(cluster, Role::DataNode))?
        .strip_prefix('-')?
        .parse()
        .ok()
}

/// The StatefulSet's size before the data coordinator is asked: the spec's,
/// except that a scale-down keeps the departing pods until they are drained.
pub(super) fn held_replicas(c: &Cluster, current: Option<i32>) -> i32 {
    let desired = c.data_node.replicas;
    match current {
        Some(current) if desired < current && desired > 0 => current,
        _ => desired,
    }
}

/// A drain is over (done, given up or called off): the next one starts afresh.
fn forget_drain(m: &mut super::Memory) {
    m.drain_started = None;
    m.drained.clear();
    m.drained_channels = 0;
}

/// What to do for one departing pod that is not drained yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum DrainCall {
    /// Ask the data coordinator to drain this node (the pod's newest session).
    Drain(String, i64),
    /// The coordinator does not know the pod (never registered, or gone): it
    /// owns nothing, so it counts as drained.
    Nothing(String),
}

impl DrainCall {
    fn pod(&self) -> &str {
        match self {
            Self::Drain(pod, _) | Self::Nothing(pod) => pod,
        }
    }
}

/// The calls a reconcile makes for a scale-down, given where the coordinator
/// says the nodes are: one per departing pod not yet drained, so each is
/// drained once however many reconciles the drain spans.
pub(super) fn drain_calls(
    departing: &[String],
    d: &Distribution,
    drained: &std::collections::BTreeSet<String>,
) -> Vec<DrainCall> {
    departing
        .iter()
        .filter(|pod| !drained.contains(*pod))
        .map(|pod| match d.nodes_by_name.get(pod) {
            Some(node) => DrainCall::Drain(pod.clone(), *node),
            None => DrainCall::Nothing(pod.clone()),
        })
        .collect()
}

/// Scaling down: drain the data nodes that are going away (their channels are
/// flushed and moved) before the StatefulSet removes their pods, waiting at
/// most the drain timeout; they drain themselves on SIGTERM anyway.
/// `current`: the StatefulSet's size now.
pub(super) async fn plan_data_nodes(
    mc: &MilvusCluster,
    ctx: &Context,
    c: &Cluster,
    current: Option<i32>,
    distribution: &Result<Distribution, Status>,
) -> DataNodePlan {
    let desired = c.data_node.replicas;
    let current = current.unwrap_or(desired);
    let key = key(mc);
    if desired >= current || desired == 0 {
        ctx.remember(&key, forget_drain);
        return DataNodePlan {
            replicas: desired,
            ..DataNodePlan::default()
        };
    }
    let departing: Vec<String> = (desired..current)
        .map(|o| build::pod_name(&c.name, o))
        .collect();
    let (started, first) = ctx.remember(&key, |m| match m.drain_started {
        Some(t) => (t, false),
        None => (*m.drain_started.insert(Instant::now()), true),
    });
    if first {
        ctx.event(
            mc,
            EventType::Normal,
            "Draining",
            format!(
                "scaling data nodes {current} -> {desired}: draining {}",
                departing.join(", ")
            ),
        )
        .await;
    }
    let drained = ctx.remember(&key, |m| m.drained.clone());
    let mut error = None;
    // Without the coordinator's distribution nothing is decided, and nothing
    // more counts as drained.
    let to_drain = match distribution {
        Ok(d) => drain_calls(&departing, d, &drained),
        Err(s) => {
            error = Some(format!("data coordinator: {}", s.message()));
            Vec::new()
        }
    };
    for call in &to_drain {
        let done = match call {
            DrainCall::Nothing(_) => Some(0),
            DrainCall::Drain(pod, node) => {
                match ctx.datacoords.drain(&c.data_coord_endpoint, *node).await {
                    Ok(Drained::Moved(n)) => Some(n),
                    Ok(Drained::Unknown) => Some(0),
                    Err(s) => {
                        error = Some(format!("DrainNode {node} ({pod}): {}", s.message()));
                        None
                    }
                }
            }
        };
        if let Some(n) = done {
            ctx.remember(&key, |m| {
                m.drained.insert(call.pod().to_owned());
                m.drained_channels += n;
            });
        }
    }
    let (drained, moved) = ctx.remember(&key, |m| (m.drained.clone(), m.drained_channels));
    let pending: Vec<String> = departing
        .iter()
        .filter(|p| !drained.contains(*p))
        .cloned()
        .collect();
    let timeout = Duration::from_secs(u64::try_from(c.drain_timeout_seconds).unwrap_or(60));
    let record = |error: Option<String>| RebalanceRecord {
        time: now().0.to_string(),
        call: "DrainNode".into(),
        reason: format!("scale-down from {current} to {desired} data nodes"),
        pods: departing.clone(),
        moved_channels: i32::try_from(moved).unwrap_or(i32::MAX),
        error,
    };
    if pending.is_empty() {
        ctx.remember(&key, forget_drain);
        ctx.event(
            mc,
            EventType::Normal,
            "Drained",
            format!(
                "{} drained ({moved} channels moved); scaling data nodes to {desired}",
                departing.join(", ")
            ),
        )
        .await;
        return DataNodePlan {
            replicas: desired,
            draining: Vec::new(),
            record: Some(record(None)),
        };
    }
    if started.elapsed() >= timeout {
        ctx.remember(&key, forget_drain);
        let message = format!(
            "gave up draining {} after {timeout:?} ({}); scaling down anyway: the data nodes flush and release their channels on SIGTERM",
            pending.join(", "),
            error.clone().unwrap_or_default()
        );
        ctx.event(mc, EventType::Warning, "DrainTimeout", message.clone())
            .await;
        return DataNodePlan {
            replicas: desired,
            draining: Vec::new(),
            record: Some(record(Some(message))),
        };
    }
    tracing::info!(pending = ?pending, error = ?error, "data nodes not drained yet");
    DataNodePlan {
        replicas: current,
        draining: pending,
        record: None,
    }
}

/// Calls `Rebalance` when the data-node pods that stay (`members`), as far as
/// the coordinator knows them, are not those of the last call (or the last call
/// failed). Returns the record to keep in the status.
/// A Rebalance to make: the pods to own the channels, their node ids, and the
/// pods of the previous call (for the event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RebalanceCall {
    pub known: Vec<String>,
    pub expected: Vec<i64>,
    pub before: String,
}

/// Whether the staying data-node pods (`members`, sorted) call for a Rebalance.
/// The channels go to the members the coordinator knows (each by its newest
/// session); it drains every other node (stale sessions of replaced pods). A pod
/// not registered yet is left for the next call: recording it now would make that
/// call look done. No call when nothing changed since the last one, or when the
/// same call failed less than [`REBALANCE_RETRY`] ago.
pub(super) fn rebalance_call(
    members: &[String],
    d: &Distribution,
    previous: Option<&RebalanceRecord>,
    now: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
) -> Option<RebalanceCall> {
    let (known, expected): (Vec<String>, Vec<i64>) = members
        .iter()
        .filter_map(|p| Some((p.clone(), *d.nodes_by_name.get(p)?)))
        .unzip();
    let same = |p: &RebalanceRecord| p.call == "Rebalance" && p.pods == known;
    let recent_failure = |p: &RebalanceRecord| {
        p.error.is_some()
            && p.time
                .parse::<k8s_openapi::jiff::Timestamp>()
                .is_ok_and(|t| {
                    now.0.duration_since(t).as_secs_f64() < REBALANCE_RETRY.as_secs_f64()
                })
    };
    if known.is_empty()
        || previous.is_some_and(|p| same(p) && (p.error.is_none() || recent_failure(p)))
    {
        return None;
    }
    Some(RebalanceCall {
        known,
        expected,
        before: previous.map(|p| p.pods.join(", ")).unwrap_or_default(),
    })
}

/// The data-node pods that stay: not terminating, and below the StatefulSet's
/// new size (the departing ones are being drained).
pub(super) fn staying_data_nodes<'a>(
    pods: &'a [Pod],
    cluster: &str,
    replicas: i32,
) -> Vec<&'a Pod> {
    pods.iter()
        .filter(|p| {
            p.labels().get(build::LABEL_COMPONENT).map(String::as_str)
                == Some(Role::DataNode.subcommand())
        })
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| ordinal(cluster, &p.name_any()).is_some_and(|o| o < replicas))
        .collect()
}

pub(super) async fn rebalance(
    mc: &MilvusCluster,
    ctx: &Context,
    c: &Cluster,
    members: &[String],
    previous: Option<RebalanceRecord>,
    distribution: &Result<Distribution, Status>,
) -> Option<RebalanceRecord> {
    let Ok(d) = distribution else {
        // The coordinator cannot be reached (its channel list did not come either).
        return previous;
    };
    let Some(RebalanceCall {
        known,
        expected,
        before,
    }) = rebalance_call(members, d, previous.as_ref(), &now())
    else {
        return previous;
    };
    let result = ctx
        .datacoords
        .rebalance(&c.data_coord_endpoint, expected)
        .await;
    let (moved, error) = match result {
        Ok(n) => (n, None),
        Err(s) => (0, Some(format!("Rebalance: {}", s.message()))),
    };
    match &error {
        None => {
            ctx.event(
                mc,
                EventType::Normal,
                "Rebalanced",
                format!(
                    "data nodes [{before}] -> [{}]: {moved} channels moved",
                    known.join(", ")
                ),
            )
            .await;
        }
        Some(e) => {
            ctx.event(mc, EventType::Warning, "RebalanceFailed", e.clone())
                .await;
        }
    }
    Some(RebalanceRecord {
        time: now().0.to_string(),
        call: "Rebalance".into(),
        reason: format!("data nodes changed from [{before}]"),
        pods: known,
        moved_channels: i32::try_from(moved).unwrap_or(i32::MAX),
        error,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;

    fn distribution(nodes: &[(&str, i64)]) -> Distribution {
        Distribution {
            nodes_by_name: nodes
                .iter()
                .map(|(pod, id)| ((*pod).to_owned(), *id))
                .collect::<BTreeMap<_, _>>(),
            ..Distribution::default()
        }
    }

    fn pods(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    #[test]
    fn each_departing_pod_is_drained_once() {
        let departing = pods(&["demo-datanode-1", "demo-datanode-2", "demo-datanode-3"]);
        let d = distribution(&[("demo-datanode-1", 11), ("demo-datanode-2", 12)]);
        let first = drain_calls(&departing, &d, &BTreeSet::new());
        assert_eq!(
            first,
            [
                DrainCall::Drain("demo-datanode-1".into(), 11),
                DrainCall::Drain("demo-datanode-2".into(), 12),
                DrainCall::Nothing("demo-datanode-3".into()),
            ]
        );
        // Pod 1 and 3 are done; pod 2's call failed: only pod 2 is asked again.
        let drained: BTreeSet<String> = pods(&["demo-datanode-1", "demo-datanode-3"])
            .into_iter()
            .collect();
        let second = drain_calls(&departing, &d, &drained);
        assert_eq!(second, [DrainCall::Drain("demo-datanode-2".into(), 12)]);
        let all: BTreeSet<String> = departing.iter().cloned().collect();
        assert!(drain_calls(&departing, &d, &all).is_empty());
    }

    fn record(pods_: &[&str], error: Option<&str>, at: &str) -> RebalanceRecord {
        RebalanceRecord {
            time: at.to_owned(),
            call: "Rebalance".into(),
            reason: String::new(),
            pods: pods(pods_),
            moved_channels: 0,
            error: error.map(str::to_owned),
        }
    }

    fn at(t: &str) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Time {
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(t.parse().expect("timestamp"))
    }

    #[test]
    fn a_rebalance_is_called_when_the_known_members_change() {
        let d = distribution(&[("demo-datanode-0", 10), ("demo-datanode-1", 11)]);
        let now = at("2026-12-03T10:00:00Z");
        let members = pods(&["demo-datanode-0", "demo-datanode-1", "demo-datanode-2"]);
        // Pod 2 has not registered: left for the next call.
        let call = rebalance_call(&members, &d, None, &now).expect("a first call");
        assert_eq!(call.known, pods(&["demo-datanode-0", "demo-datanode-1"]));
        assert_eq!(call.expected, [10, 11]);
        assert_eq!(call.before, "");
        // The same members, done: nothing to do.
        let done = record(
            &["demo-datanode-0", "demo-datanode-1"],
            None,
            "2026-12-03T09:00:00Z",
        );
        assert_eq!(rebalance_call(&members, &d, Some(&done), &now), None);
        // Pod 2 registers: called again, naming the earlier members.
        let d3 = distribution(&[
            ("demo-datanode-0", 10),
            ("demo-datanode-1", 11),
            ("demo-datanode-2", 12),
        ]);
        let call = rebalance_call(&members, &d3, Some(&done), &now).expect("pod 2 joined");
        assert_eq!(call.expected, [10, 11, 12]);
        assert_eq!(call.before, "demo-datanode-0, demo-datanode-1");
        // Nobody known: no call (it would drain every node).
        assert_eq!(
            rebalance_call(&members, &Distribution::default(), None, &now),
            None
        );
    }

    #[test]
    fn a_failed_rebalance_is_retried_after_a_pause() {
        let d = distribution(&[("demo-datanode-0", 10)]);
        let members = pods(&["demo-datanode-0"]);
        let failed = record(
            &["demo-datanode-0"],
            Some("Rebalance: unavailable"),
            "2026-12-03T10:00:00Z",
        );
        assert_eq!(
            rebalance_call(&members, &d, Some(&failed), &at("2026-12-03T10:00:05Z")),
            None,
            "failed moments ago"
        );
        assert!(
            rebalance_call(&members, &d, Some(&failed), &at("2026-12-03T10:00:30Z")).is_some(),
            "failed long enough ago"
        );
    }

    #[test]
    fn staying_data_nodes_leave_out_departing_terminating_and_other_pods() {
        let pod = |name: &str, component: &str, deleting: bool| {
            let mut p = Pod::default();
            p.metadata.name = Some(name.to_owned());
            p.metadata.labels = Some(
                [(build::LABEL_COMPONENT.to_owned(), component.to_owned())]
                    .into_iter()
                    .collect(),
            );
            if deleting {
                p.metadata.deletion_timestamp = Some(at("2026-12-03T10:00:00Z"));
            }
            p
        };
        let all = [
            pod("demo-datanode-0", "datanode", false),
            pod("demo-datanode-1", "datanode", true),
            pod("demo-datanode-2", "datanode", false),
            pod("demo-datanode-3", "datanode", false),
            pod("demo-proxy-abc", "proxy", false),
        ];
        let names: Vec<String> = staying_data_nodes(&all, "demo", 3)
            .into_iter()
            .map(|p| p.name_any())
            .collect();
        assert_eq!(names, pods(&["demo-datanode-0", "demo-datanode-2"]));
    }

    fn pod_names() -> impl proptest::strategy::Strategy<Value = BTreeSet<String>> {
        proptest::collection::btree_set(0u8..8, 0..8).prop_map(|o| {
            o.into_iter()
                .map(|o| format!("demo-datanode-{o}"))
                .collect()
        })
    }

    /// Each pod registered under node id 100 + its place in the set.
    fn registered_as(pods: &BTreeSet<String>) -> Distribution {
        let nodes: Vec<(&str, i64)> = pods
            .iter()
            .enumerate()
            .map(|(i, p)| (p.as_str(), 100 + i as i64))
            .collect();
        distribution(&nodes)
    }

    use proptest::prelude::*;

    proptest! {
        /// Each departing pod not drained yet gets exactly one call, naming the
        /// node the coordinator knows it by; the drained ones get none.
        #[test]
        fn drain_calls_cover_each_undrained_pod_once(
            departing in pod_names(),
            drained in pod_names(),
            registered in pod_names(),
        ) {
            let departing: Vec<String> = departing.into_iter().collect();
            let d = registered_as(&registered);
            let calls = drain_calls(&departing, &d, &drained);
            let called: Vec<&str> = calls.iter().map(DrainCall::pod).collect();
            let expected: Vec<&str> = departing
                .iter()
                .filter(|p| !drained.contains(*p))
                .map(String::as_str)
                .collect();
            prop_assert_eq!(called, expected);
            for call in &calls {
                match call {
                    DrainCall::Drain(pod, node) => {
                        prop_assert_eq!(d.nodes_by_name.get(pod), Some(node));
                    }
                    DrainCall::Nothing(pod) => prop_assert!(!d.nodes_by_name.contains_key(pod)),
                }
            }
        }

        /// A Rebalance names only registered members, with their node ids; once it
        /// succeeded, the same members call for no other.
        #[test]
        fn a_successful_rebalance_is_not_repeated(
            members in pod_names(),
            registered in pod_names(),
        ) {
            let members: Vec<String> = members.into_iter().collect();
            let d = registered_as(&registered);
            let now = at("2026-12-03T10:00:00Z");
            match rebalance_call(&members, &d, None, &now) {
                None => prop_assert!(members.iter().all(|m| !d.nodes_by_name.contains_key(m))),
                Some(call) => {
                    // Every registered member, and only those.
                    let registered_members =
                        members.iter().filter(|m| d.nodes_by_name.contains_key(*m)).count();
                    prop_assert_eq!(call.known.len(), registered_members);
                    for (pod, id) in call.known.iter().zip(&call.expected) {
                        prop_assert!(members.contains(pod));
                        prop_assert_eq!(d.nodes_by_name.get(pod), Some(id));
                    }
                    let done = RebalanceRecord {
                        time: "2026-12-03T10:00:00Z".into(),
                        call: "Rebalance".into(),
                        reason: String::new(),
                        pods: call.known.clone(),
                        moved_channels: 0,
                        error: None,
                    };
                    prop_assert_eq!(rebalance_call(&members, &d, Some(&done), &now), None);
                }
            }
        }
    }

    #[test]
    fn a_scale_down_holds_the_departing_pods() {
        let c = |replicas: i32| -> Cluster {
            let mut c = crate::validate::validate(
                &serde_yaml::from_str(include_str!("../../fixtures/minimal.yaml"))
                    .expect("fixture"),
            )
            .expect("valid");
            c.data_node.replicas = replicas;
            c
        };
        assert_eq!(held_replicas(&c(1), Some(4)), 4, "drain first");
        assert_eq!(held_replicas(&c(4), Some(1)), 4, "scale up at once");
        assert_eq!(held_replicas(&c(0), Some(4)), 0, "stop everything at once");
        assert_eq!(held_replicas(&c(2), None), 2, "a new cluster");
        assert_eq!(ordinal("demo", "demo-datanode-3"), Some(3));
        assert_eq!(ordinal("demo", "demo-proxy-3"), None);
    }
}
