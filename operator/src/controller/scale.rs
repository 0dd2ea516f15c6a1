//! Data-node scaling: a scale-down drains the departing data nodes (their
//! channels are flushed and moved) before the StatefulSet removes their pods;
//! a change of the ready data-node pods asks the data coordinator to rebalance.

use std::time::{Duration, Instant};

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
        ctx.remember(&key, |m| m.drain_started = None);
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
    let mut pending = Vec::new();
    let mut moved = 0u32;
    let mut error = None;
    match distribution {
        Err(s) => {
            pending.clone_from(&departing);
            error = Some(format!("data coordinator: {}", s.message()));
        }
        Ok(d) => {
            for pod in &departing {
                let Some(node) = d.nodes_by_name.get(pod) else {
                    continue; // never registered (or gone): nothing to move
                };
                match ctx.datacoords.drain(&c.data_coord_endpoint, *node).await {
                    Ok(Drained::Moved(n)) => moved += n,
                    Ok(Drained::Unknown) => {}
                    Err(s) => {
                        pending.push(pod.clone());
                        error = Some(format!("DrainNode {node} ({pod}): {}", s.message()));
                    }
                }
            }
        }
    }
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
        ctx.remember(&key, |m| m.drain_started = None);
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
        ctx.remember(&key, |m| m.drain_started = None);
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
pub(super) async fn rebalance(
    mc: &MilvusCluster,
    ctx: &Context,
    c: &Cluster,
    members: &[String],
    previous: Option<RebalanceRecord>,
    distribution: &Result<Distribution, Status>,
) -> Option<RebalanceRecord> {
    // The data-node pods that stay and that the coordinator knows (each by its
    // newest session): the nodes to own the channels; it drains every other
    // (stale sessions of replaced pods). A pod not registered yet is left for
    // the next call: recording it now would make that call look done.
    let Ok(d) = distribution else {
        // The coordinator cannot be reached (its channel list did not come either).
        return previous;
    };
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
                    now().0.duration_since(t).as_secs_f64() < REBALANCE_RETRY.as_secs_f64()
                })
    };
    // Nothing changed, or the same call failed moments ago.
    if known.is_empty()
        || previous
            .as_ref()
            .is_some_and(|p| same(p) && (p.error.is_none() || recent_failure(p)))
    {
        return previous;
    }
    let before = previous
        .as_ref()
        .map(|p| p.pods.join(", "))
        .unwrap_or_default();
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
