//! Status: what the children report, turned into the `MilvusCluster`'s status
//! (phase, Ready / Progressing / Degraded conditions, pods per component). Pure:
//! the controller gathers the inputs and writes the result.

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::ResourceExt;

use crate::build::{LABEL_COMPONENT, Role, SpecName};
use crate::crd::{
    ChannelOwner, ComponentStatus, MilvusClusterStatus, Phase, QueryChannelOwner, RebalanceRecord,
};

pub const READY: &str = "Ready";
pub const PROGRESSING: &str = "Progressing";
pub const DEGRADED: &str = "Degraded";

/// One component as its workload reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct ComponentState {
    pub status: ComponentStatus,
    /// A rollout or a scale is under way: the controller has not caught up with
    /// the spec, pods of the old template remain, or pods are still missing.
    pub rolling: bool,
}

impl ComponentState {
    pub fn settled(&self) -> bool {
        !self.rolling && self.status.ready_replicas == self.status.replicas
    }
}

/// Counts of a workload's status, whatever its kind.
struct Counts {
    generation: Option<i64>,
    observed: Option<i64>,
    current: i32,
    ready: i32,
    updated: i32,
}

fn state(name: &str, desired: i32, counts: Option<Counts>) -> ComponentState {
    let Some(c) = counts else {
        return ComponentState {
            status: ComponentStatus {
                name: name.to_owned(),
                replicas: desired,
                ..ComponentStatus::default()
            },
            rolling: desired > 0,
        };
    };
    let caught_up = c.observed.is_some() && c.observed >= c.generation;
    ComponentState {
        status: ComponentStatus {
            name: name.to_owned(),
            replicas: desired,
            ready_replicas: c.ready,
            updated_replicas: c.updated,
        },
        rolling: !caught_up || c.updated < desired || c.current != desired,
    }
}

pub fn deployment_state(role: Role, desired: i32, d: Option<&Deployment>) -> ComponentState {
    let counts = d.map(|d| {
        let s = d.status.clone().unwrap_or_default();
        Counts {
            generation: d.metadata.generation,
            observed: s.observed_generation,
            current: s.replicas.unwrap_or(0),
            ready: s.ready_replicas.unwrap_or(0),
            updated: s.updated_replicas.unwrap_or(0),
        }
    });
    state(role.spec_name(), desired, counts)
}

/// A StatefulSet's component: the data nodes, or an in-cluster dependency.
pub fn stateful_set_state(name: &str, desired: i32, s: Option<&StatefulSet>) -> ComponentState {
    let counts = s.map(|s| {
        let st = s.status.clone().unwrap_or_default();
        Counts {
            generation: s.metadata.generation,
            observed: st.observed_generation,
            current: st.replicas,
            ready: st.ready_replicas.unwrap_or(0),
            updated: st.updated_replicas.unwrap_or(0),
        }
    });
    state(name, desired, counts)
}

/// Whether the pod is Ready and not on its way out.
pub fn pod_ready(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_none()
        && p.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The first reason a pod of the cluster is not ready, from its containers:
/// `proxy pod demo-proxy-...: CreateContainerConfigError: secret "s3" not found`.
pub fn pod_problem(pods: &[Pod]) -> Option<String> {
    pods.iter().filter(|p| !pod_ready(p)).find_map(|p| {
        let status = p.status.as_ref()?;
        let waiting = status
            .container_statuses
            .iter()
            .flatten()
            .find_map(|c| c.state.as_ref()?.waiting.as_ref())?;
        let component = p.labels().get(LABEL_COMPONENT).cloned().unwrap_or_default();
        Some(format!(
            "{component} pod {}: {}{}",
            p.name_any(),
            waiting.reason.clone().unwrap_or_default(),
            waiting
                .message
                .as_ref()
                .map(|m| format!(": {m}"))
                .unwrap_or_default()
        ))
    })
}

/// A condition, keeping its last transition time when its status did not change.
fn condition(
    previous: Option<&MilvusClusterStatus>,
    type_: &str,
    on: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: &Time,
) -> Condition {
    let status = if on { "True" } else { "False" }.to_owned();
    let since = previous
        .and_then(|p| p.conditions.iter().find(|c| c.type_ == type_))
        .filter(|c| c.status == status)
        .map_or_else(|| now.clone(), |c| c.last_transition_time.clone());
    Condition {
        type_: type_.to_owned(),
        status,
        reason: reason.to_owned(),
        message,
        observed_generation: generation,
        last_transition_time: since,
    }
}

/// What the controller saw and did in one reconcile.
#[derive(Debug, Clone)]
pub struct Observation<'a> {
    pub generation: Option<i64>,
    pub previous: Option<&'a MilvusClusterStatus>,
    pub components: Vec<ComponentState>,
    /// Data-node pods being drained before a scale-down.
    pub draining: Vec<String>,
    pub pod_problem: Option<String>,
    /// Why the data coordinator could not be asked, when it could not.
    pub datacoord_error: Option<String>,
    pub channels: Vec<ChannelOwner>,
    pub query_channels: Vec<QueryChannelOwner>,
    pub last_rebalance: Option<RebalanceRecord>,
    pub data_nodes_ready: i32,
    pub data_node_selector: String,
    /// How far an upgrade is, while one rolls ([`crate::upgrade::progress`]).
    pub upgrade: Option<String>,
    /// The image and version the spec asks for.
    pub image: String,
    pub version: String,
    pub now: Time,
}

pub fn status(o: &Observation<'_>) -> MilvusClusterStatus {
    let ready_count = o.components.iter().filter(|c| c.settled()).count();
    let total = o.components.len();
    let all_ready = ready_count == total;
    let short: Vec<String> = o
        .components
        .iter()
        .filter(|c| !c.settled())
        .map(|c| {
            format!(
                "{} {}/{} ready, {} updated",
                c.status.name,
                c.status.ready_replicas,
                c.status.replicas,
                c.status.updated_replicas
            )
        })
        .collect();
    let rolling: Vec<&ComponentState> = o.components.iter().filter(|c| c.rolling).collect();
    let progressing = !rolling.is_empty() || !o.draining.is_empty() || o.upgrade.is_some();
    let (progress_reason, progress_message) = if !o.draining.is_empty() {
        (
            "Draining",
            format!(
                "draining data nodes {} before they are removed",
                o.draining.join(", ")
            ),
        )
    } else if let Some(u) = &o.upgrade {
        ("Upgrading", u.clone())
    } else if let Some(c) = rolling.first() {
        (
            "RollingOut",
            format!(
                "{} {}/{} updated, {}/{} ready",
                c.status.name,
                c.status.updated_replicas,
                c.status.replicas,
                c.status.ready_replicas,
                c.status.replicas
            ),
        )
    } else {
        (
            "Stable",
            "every component runs its current template".to_owned(),
        )
    };
    // Pods short of ready with no rollout to explain it, or a coordinator that
    // cannot be asked for the channels.
    let stuck: Vec<&ComponentState> = o
        .components
        .iter()
        .filter(|c| !c.rolling && c.status.ready_replicas < c.status.replicas)
        .collect();
    let rebalance_error = o.last_rebalance.as_ref().and_then(|r| r.error.clone());
    let (degraded, degraded_reason, degraded_message) = if let Some(c) = stuck.first() {
        let mut m = format!(
            "{} has {}/{} pods ready",
            c.status.name, c.status.ready_replicas, c.status.replicas
        );
        if let Some(p) = &o.pod_problem {
            m.push_str("; ");
            m.push_str(p);
        }
        (true, "PodsNotReady", m)
    } else if let Some(e) = rebalance_error {
        (true, "RebalanceFailed", e)
    } else if let (true, Some(e)) = (all_ready, &o.datacoord_error) {
        (true, "DataCoordUnreachable", e.clone())
    } else {
        (false, "Healthy", "nothing is wrong".to_owned())
    };
    let phase = if all_ready && !degraded && !progressing {
        Phase::Ready
    } else if o.components.iter().all(|c| c.status.ready_replicas == 0)
        && o.previous.and_then(|p| p.phase) != Some(Phase::Ready)
    {
        Phase::Pending
    } else if degraded {
        Phase::Degraded
    } else {
        Phase::Progressing
    };
    // The image is recorded once every pod runs it, not when it is applied.
    let (image, version) = if all_ready && o.upgrade.is_none() {
        (Some(o.image.clone()), Some(o.version.clone()))
    } else {
        (
            o.previous.and_then(|p| p.image.clone()),
            o.previous.and_then(|p| p.version.clone()),
        )
    };
    let ready_message = if all_ready {
        "every component has all its pods ready".to_owned()
    } else {
        short.join("; ")
    };
    MilvusClusterStatus {
        phase: Some(phase),
        observed_generation: o.generation,
        conditions: vec![
            condition(
                o.previous,
                READY,
                all_ready,
                if all_ready {
                    "AllComponentsReady"
                } else {
                    "ComponentsNotReady"
                },
                ready_message,
                o.generation,
                &o.now,
            ),
            condition(
                o.previous,
                PROGRESSING,
                progressing,
                progress_reason,
                progress_message,
                o.generation,
                &o.now,
            ),
            condition(
                o.previous,
                DEGRADED,
                degraded,
                degraded_reason,
                degraded_message,
                o.generation,
                &o.now,
            ),
        ],
        components: o.components.iter().map(|c| c.status.clone()).collect(),
        ready_components: Some(format!("{ready_count}/{total}")),
        data_nodes: o.data_nodes_ready,
        data_node_selector: Some(o.data_node_selector.clone()),
        channels: o.channels.clone(),
        query_channels: o.query_channels.clone(),
        last_rebalance: o.last_rebalance.clone(),
        image,
        version,
    }
}

/// The status after the apiserver refused a child: Degraded (and not Ready)
/// with the apiserver's words. Everything else is kept from before.
pub fn apply_failed(
    previous: Option<&MilvusClusterStatus>,
    generation: Option<i64>,
    message: &str,
    now: &Time,
) -> MilvusClusterStatus {
    let mut s = previous.cloned().unwrap_or_default();
    s.phase = Some(Phase::Degraded);
    s.observed_generation = generation;
    let mut conditions = vec![
        condition(
            previous,
            READY,
            false,
            "ApplyFailed",
            message.to_owned(),
            generation,
            now,
        ),
        condition(
            previous,
            DEGRADED,
            true,
            "ApplyFailed",
            message.to_owned(),
            generation,
            now,
        ),
    ];
    conditions.extend(
        s.conditions
            .iter()
            .filter(|c| c.type_ != READY && c.type_ != DEGRADED)
            .cloned(),
    );
    s.conditions = conditions;
    s
}

/// The status of a spec that cannot be built: phase Invalid, Ready False with
/// the reasons. Everything else is kept from before.
pub fn invalid(
    previous: Option<&MilvusClusterStatus>,
    generation: Option<i64>,
    message: &str,
    now: &Time,
) -> MilvusClusterStatus {
    let mut s = previous.cloned().unwrap_or_default();
    s.phase = Some(crate::crd::Phase::Invalid);
    s.observed_generation = generation;
    let keep: Vec<Condition> = s
        .conditions
        .iter()
        .filter(|c| c.type_ != READY)
        .cloned()
        .collect();
    s.conditions = std::iter::once(condition(
        previous,
        READY,
        false,
        "InvalidSpec",
        message.to_owned(),
        generation,
        now,
    ))
    .chain(keep)
    .collect();
    s
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::apps::v1::{DeploymentStatus, StatefulSetStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    fn at(s: &str) -> Time {
        Time(s.parse().expect("time"))
    }

    fn deployment(
        generation: i64,
        observed: i64,
        replicas: i32,
        ready: i32,
        updated: i32,
    ) -> Deployment {
        Deployment {
            metadata: ObjectMeta {
                generation: Some(generation),
                ..ObjectMeta::default()
            },
            status: Some(DeploymentStatus {
                observed_generation: Some(observed),
                replicas: Some(replicas),
                ready_replicas: Some(ready),
                updated_replicas: Some(updated),
                ..DeploymentStatus::default()
            }),
            ..Deployment::default()
        }
    }

    fn stateful_set(replicas: i32, ready: i32) -> StatefulSet {
        StatefulSet {
            metadata: ObjectMeta {
                generation: Some(1),
                ..ObjectMeta::default()
            },
            status: Some(StatefulSetStatus {
                observed_generation: Some(1),
                replicas,
                ready_replicas: Some(ready),
                updated_replicas: Some(replicas),
                ..StatefulSetStatus::default()
            }),
            ..StatefulSet::default()
        }
    }

    fn observe<'a>(
        components: Vec<ComponentState>,
        previous: Option<&'a MilvusClusterStatus>,
        now: &str,
    ) -> Observation<'a> {
        Observation {
            generation: Some(1),
            previous,
            components,
            draining: vec![],
            pod_problem: None,
            datacoord_error: None,
            channels: vec![],
            query_channels: vec![],
            last_rebalance: None,
            data_nodes_ready: 2,
            data_node_selector: "a=b".into(),
            upgrade: None,
            image: "milvus-like/node:0.1.0".into(),
            version: "0.1.0".into(),
            now: at(now),
        }
    }

    fn cond<'a>(s: &'a MilvusClusterStatus, type_: &str) -> &'a Condition {
        s.conditions
            .iter()
            .find(|c| c.type_ == type_)
            .expect("condition")
    }

    #[test]
    fn settled_components_make_a_ready_cluster() {
        let components = vec![
            deployment_state(Role::RootCoord, 2, Some(&deployment(1, 1, 2, 2, 2))),
            stateful_set_state("dataNode", 2, Some(&stateful_set(2, 2))),
        ];
        let s = status(&observe(components, None, "2026-01-01T00:00:00Z"));
        assert_eq!(s.phase, Some(Phase::Ready));
        assert_eq!(cond(&s, READY).status, "True");
        assert_eq!(cond(&s, PROGRESSING).status, "False");
        assert_eq!(cond(&s, DEGRADED).status, "False");
        assert_eq!(s.ready_components.as_deref(), Some("2/2"));
        assert_eq!(s.image.as_deref(), Some("milvus-like/node:0.1.0"));
    }

    #[test]
    fn an_upgrade_is_progress_and_keeps_the_old_image_until_done() {
        let was = MilvusClusterStatus {
            phase: Some(Phase::Ready),
            image: Some("milvus-like/node:0.0.9".into()),
            version: Some("0.0.9".into()),
            ..MilvusClusterStatus::default()
        };
        let mut o = observe(
            vec![stateful_set_state("dataNode", 2, Some(&stateful_set(2, 2)))],
            Some(&was),
            "2026-01-01T00:00:00Z",
        );
        o.upgrade = Some("upgrading to milvus-like/node:0.1.0: rootCoord done".into());
        let s = status(&o);
        assert_eq!(s.phase, Some(Phase::Progressing));
        assert_eq!(cond(&s, PROGRESSING).reason, "Upgrading");
        assert_eq!(
            s.version.as_deref(),
            Some("0.0.9"),
            "not done: the old version stays"
        );
        o.upgrade = None;
        let s = status(&o);
        assert_eq!(s.version.as_deref(), Some("0.1.0"));
    }

    #[test]
    fn a_refused_apply_is_degraded_with_the_apiservers_words() {
        let s = apply_failed(
            None,
            Some(3),
            "StatefulSet demo-datanode: Invalid value",
            &at("2026-01-01T00:00:00Z"),
        );
        assert_eq!(s.phase, Some(Phase::Degraded));
        assert_eq!(cond(&s, READY).status, "False");
        let d = cond(&s, DEGRADED);
        assert_eq!(
            (d.status.as_str(), d.reason.as_str()),
            ("True", "ApplyFailed")
        );
        assert!(d.message.contains("Invalid value"));
        assert_eq!(s.observed_generation, Some(3));
    }

    #[test]
    fn a_rollout_is_progressing_and_keeps_transition_times() {
        let ready = status(&observe(
            vec![deployment_state(
                Role::Proxy,
                1,
                Some(&deployment(1, 1, 1, 1, 1)),
            )],
            None,
            "2026-01-01T00:00:00Z",
        ));
        // Generation 2 not observed yet: rolling out.
        let rolling = status(&observe(
            vec![deployment_state(
                Role::Proxy,
                1,
                Some(&deployment(2, 1, 1, 1, 1)),
            )],
            Some(&ready),
            "2026-01-01T00:01:00Z",
        ));
        assert_eq!(rolling.phase, Some(Phase::Progressing));
        assert_eq!(cond(&rolling, PROGRESSING).status, "True");
        assert_eq!(cond(&rolling, PROGRESSING).reason, "RollingOut");
        assert_eq!(
            cond(&rolling, PROGRESSING).last_transition_time,
            at("2026-01-01T00:01:00Z")
        );
        // Degraded stayed False: its time did not move.
        assert_eq!(
            cond(&rolling, DEGRADED).last_transition_time,
            at("2026-01-01T00:00:00Z")
        );
    }

    #[test]
    fn pods_short_of_ready_without_a_rollout_are_degraded_with_the_reason() {
        let was_ready = MilvusClusterStatus {
            phase: Some(Phase::Ready),
            ..MilvusClusterStatus::default()
        };
        let mut o = observe(
            vec![stateful_set_state("dataNode", 3, Some(&stateful_set(3, 1)))],
            Some(&was_ready),
            "2026-01-01T00:00:00Z",
        );
        o.pod_problem =
            Some("datanode pod x: CreateContainerConfigError: secret \"s3\" not found".into());
        let s = status(&o);
        assert_eq!(s.phase, Some(Phase::Degraded));
        let d = cond(&s, DEGRADED);
        assert_eq!(
            (d.status.as_str(), d.reason.as_str()),
            ("True", "PodsNotReady")
        );
        assert!(
            d.message.contains("dataNode has 1/3 pods ready"),
            "{}",
            d.message
        );
        assert!(
            d.message.contains("secret \"s3\" not found"),
            "{}",
            d.message
        );
    }

    #[test]
    fn draining_is_progress() {
        let mut o = observe(
            vec![stateful_set_state("dataNode", 4, Some(&stateful_set(4, 4)))],
            None,
            "2026-01-01T00:00:00Z",
        );
        o.draining = vec!["demo-datanode-3".into()];
        let s = status(&o);
        assert_eq!(cond(&s, PROGRESSING).reason, "Draining");
        assert!(cond(&s, PROGRESSING).message.contains("demo-datanode-3"));
    }

    #[test]
    fn an_invalid_spec_keeps_the_other_conditions() {
        let ready = status(&observe(
            vec![stateful_set_state("dataNode", 2, Some(&stateful_set(2, 2)))],
            None,
            "2026-01-01T00:00:00Z",
        ));
        let s = invalid(
            Some(&ready),
            Some(2),
            "spec.config key \"a-b\" is bad",
            &at("2026-01-01T00:05:00Z"),
        );
        assert_eq!(s.phase, Some(Phase::Invalid));
        let r = cond(&s, READY);
        assert_eq!(
            (r.status.as_str(), r.reason.as_str()),
            ("False", "InvalidSpec")
        );
        assert_eq!(s.observed_generation, Some(2));
        assert!(s.conditions.iter().any(|c| c.type_ == DEGRADED));
        assert_eq!(s.components, ready.components);
    }
}
