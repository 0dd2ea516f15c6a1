//! The reconcile loop: dereference -> validate -> build -> apply -> status, run on
//! every change of a `MilvusCluster`, of one of its children or of one of its
//! pods (watches, no polling), and every 10 s (3 s while something moves) to
//! refresh what the data coordinator reports.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::Status;

use crate::build::{self, CONFIG_CHECKSUM, FIELD_MANAGER, LABEL_INSTANCE, LABEL_MANAGED_BY, Role};
use crate::crd::{ChannelOwner, DeletionPolicy, MilvusCluster, RebalanceRecord};
use crate::datacoord::{DataCoords, Distribution, Drained};
use crate::metrics::Metrics;
use crate::status::{self, Observation};
use crate::validate::{self, Cluster};

/// Set while `deletionPolicy: Delete` asks for the metadata to go with the object.
pub const FINALIZER: &str = "milvuslike.io/metadata-cleanup";
/// How often a settled cluster is looked at again (the data coordinator's view
/// is not a Kubernetes object, so no watch brings its changes).
const RESYNC: Duration = Duration::from_secs(10);
/// How often while pods roll, scale or drain (watches bring most changes sooner).
const BUSY_RESYNC: Duration = Duration::from_secs(3);
/// A failed `Rebalance` is tried again no sooner than this.
const REBALANCE_RETRY: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("{0} has no namespace")]
    NoNamespace(String),
    /// No uid yet (an object that did not come from the apiserver).
    #[error("{0} has no uid to own its children with")]
    NoUid(String),
    #[error("etcd at {endpoints}: {reason}")]
    Etcd { endpoints: String, reason: String },
}

impl Error {
    fn kind(&self) -> &'static str {
        match self {
            Self::Kube(_) => "kube",
            Self::NoNamespace(_) => "no_namespace",
            Self::NoUid(_) => "no_uid",
            Self::Etcd { .. } => "etcd",
        }
    }
}

/// What the controller remembers of a cluster between reconciles.
#[derive(Debug, Default)]
struct Memory {
    /// When the drain of the departing data nodes began.
    drain_started: Option<Instant>,
    /// Reconciles failed in a row (for the backoff).
    failures: u32,
}

/// Shared by every reconcile.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub datacoords: DataCoords,
    memory: Mutex<HashMap<String, Memory>>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context").finish_non_exhaustive()
    }
}

impl Context {
    pub fn new(client: Client, recorder: Recorder, metrics: Arc<Metrics>) -> Self {
        Self {
            client,
            recorder,
            datacoords: DataCoords::new(metrics.clone()),
            metrics,
            memory: Mutex::default(),
        }
    }

    fn remember<T>(&self, key: &str, f: impl FnOnce(&mut Memory) -> T) -> T {
        let mut m = self.memory.lock().unwrap_or_else(|p| p.into_inner());
        f(m.entry(key.to_owned()).or_default())
    }

    async fn event(&self, mc: &MilvusCluster, type_: EventType, reason: &str, note: String) {
        let ev = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(note),
            action: reason.to_owned(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, &mc.object_ref(&())).await {
            tracing::warn!(error = %e, reason, "could not publish an event");
        }
    }
}

fn key(mc: &MilvusCluster) -> String {
    format!("{}/{}", mc.namespace().unwrap_or_default(), mc.name_any())
}

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

/// Runs the controller until `shutdown` resolves (in-flight reconciles finish).
/// `namespace`: watch only that namespace (else all).
pub async fn run(
    ctx: Arc<Context>,
    namespace: Option<String>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    fn api<K>(client: &Client, ns: Option<&str>) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug,
    {
        match ns {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        }
    }
    let ns = namespace.as_deref();
    let ours = watcher::Config::default().labels(&format!("{LABEL_MANAGED_BY}={FIELD_MANAGER}"));
    Controller::new(
        api::<MilvusCluster>(&client, ns),
        watcher::Config::default(),
    )
    .owns(api::<ConfigMap>(&client, ns), ours.clone())
    .owns(api::<Service>(&client, ns), ours.clone())
    .owns(api::<Deployment>(&client, ns), ours.clone())
    .owns(api::<StatefulSet>(&client, ns), ours.clone())
    .owns(api::<PodDisruptionBudget>(&client, ns), ours.clone())
    .watches(api::<Pod>(&client, ns), ours, |pod: Pod| {
        let cluster = pod.labels().get(LABEL_INSTANCE)?.clone();
        Some(ObjectRef::<MilvusCluster>::new(&cluster).within(&pod.namespace()?))
    })
    .graceful_shutdown_on(shutdown)
    .run(reconcile, error_policy, ctx)
    .for_each(|result| async move {
        match result {
            Ok((object, _)) => tracing::debug!(%object, "reconciled"),
            Err(e) => tracing::debug!(error = %e, "reconcile failed"),
        }
    })
    .await;
}

#[tracing::instrument(skip_all, fields(cluster = %key(&mc), generation = mc.metadata.generation))]
pub async fn reconcile(mc: Arc<MilvusCluster>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let result = reconcile_cluster(&mc, &ctx).await;
    ctx.metrics
        .reconciled(result.is_ok(), started.elapsed().as_secs_f64());
    if result.is_ok() {
        ctx.remember(&key(&mc), |m| m.failures = 0);
    }
    result
}

/// Transient errors back off exponentially, 1 s to 5 min, per cluster.
pub fn error_policy(mc: Arc<MilvusCluster>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.error(error.kind());
    let failures = ctx.remember(&key(&mc), |m| {
        m.failures = m.failures.saturating_add(1);
        m.failures
    });
    let wait = Duration::from_secs(1u64 << failures.min(8).saturating_sub(1))
        .min(Duration::from_secs(300));
    tracing::warn!(cluster = %key(&mc), %error, failures, retry_in = ?wait, "reconcile failed");
    Action::requeue(wait)
}

async fn reconcile_cluster(mc: &MilvusCluster, ctx: &Context) -> Result<Action, Error> {
    let ns = mc
        .namespace()
        .ok_or_else(|| Error::NoNamespace(mc.name_any()))?;
    let api: Api<MilvusCluster> = Api::namespaced(ctx.client.clone(), &ns);
    if mc.metadata.deletion_timestamp.is_some() {
        return delete(mc, &api, ctx).await;
    }

    // Validate (and default).
    let cluster = match validate::validate(mc) {
        Ok(c) => c,
        Err(invalid) => {
            let message = invalid.to_string();
            let previous = mc.status.as_ref();
            let already = previous.is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == status::READY && c.message == message)
            });
            if !already {
                ctx.metrics.error("invalid_spec");
                ctx.event(mc, EventType::Warning, "InvalidSpec", message.clone())
                    .await;
            }
            let s = status::invalid(previous, mc.metadata.generation, &message, &now());
            write_status(&api, mc, &s).await?;
            // Nothing to do until the spec changes.
            return Ok(Action::await_change());
        }
    };
    finalizer(mc, &api, cluster.deletion_policy == DeletionPolicy::Delete).await?;

    // Dereference: what runs now, and what the data coordinator says.
    let sts_api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &ns);
    let data_node_name = build::child_name(&cluster.name, Role::DataNode);
    let existing = sts_api.get_opt(&data_node_name).await?;
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let pods = pods
        .list(&ListParams::default().labels(&format!(
            "{LABEL_INSTANCE}={},{LABEL_MANAGED_BY}={FIELD_MANAGER}",
            cluster.name
        )))
        .await?
        .items;
    let distribution = ctx
        .datacoords
        .distribution(&cluster.data_coord_endpoint)
        .await;

    // Build and apply, data nodes sized by the drain in progress.
    let plan = plan_data_nodes(mc, ctx, &cluster, existing.as_ref(), &distribution).await;
    let owner = mc
        .controller_owner_ref(&())
        .ok_or_else(|| Error::NoUid(mc.name_any()))?;
    let children = build::build(&cluster, &owner, plan.replicas);
    announce_changes(
        mc,
        ctx,
        &cluster,
        existing.as_ref(),
        &children,
        plan.replicas,
    )
    .await;
    let applied = apply(ctx, &ns, &children).await?;

    // Rebalance when the ready data-node pods changed.
    let data_pods: Vec<&Pod> = pods
        .iter()
        .filter(|p| {
            p.labels().get(build::LABEL_COMPONENT).map(String::as_str)
                == Some(Role::DataNode.command())
        })
        .collect();
    let ready: Vec<String> = data_pods
        .iter()
        .filter(|p| status::pod_ready(p))
        .map(|p| p.name_any())
        .filter(|name| ordinal(&cluster.name, name).is_some_and(|o| o < plan.replicas))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let previous = mc.status.as_ref().and_then(|s| s.last_rebalance.clone());
    let last_rebalance = match plan.record {
        Some(r) => Some(r),
        None if plan.draining.is_empty() => {
            rebalance(mc, ctx, &cluster, &ready, previous.clone(), &distribution).await
        }
        None => previous.clone(),
    };

    // Status.
    let mut components: Vec<status::ComponentState> =
        [Role::RootCoord, Role::DataCoord, Role::Proxy]
            .into_iter()
            .zip(&applied.deployments)
            .map(|(role, d)| {
                let desired = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
                status::deployment_state(role, desired, Some(d))
            })
            .collect();
    components.push(status::stateful_set_state(
        cluster.data_node.replicas,
        Some(&applied.data_nodes),
    ));
    // Channels moved: ask again for the status.
    let distribution = if last_rebalance != previous {
        ctx.datacoords
            .distribution(&cluster.data_coord_endpoint)
            .await
            .or(distribution)
    } else {
        distribution
    };
    let channels = match &distribution {
        Ok(d) => d
            .owners
            .iter()
            .map(|(channel, node_id)| ChannelOwner {
                channel: i32::try_from(*channel).unwrap_or(i32::MAX),
                node_id: *node_id,
                pod: d
                    .nodes_by_name
                    .iter()
                    .find(|(_, id)| *id == node_id)
                    .map(|(name, _)| name.clone()),
            })
            .collect(),
        Err(_) => mc
            .status
            .as_ref()
            .map(|s| s.channels.clone())
            .unwrap_or_default(),
    };
    let observation = Observation {
        generation: mc.metadata.generation,
        previous: mc.status.as_ref(),
        components,
        draining: plan.draining.clone(),
        pod_problem: status::pod_problem(&pods),
        datacoord_error: distribution.as_ref().err().map(|s| {
            format!(
                "data coordinator at {}: {}",
                cluster.data_coord_endpoint,
                s.message()
            )
        }),
        channels,
        last_rebalance,
        data_nodes_ready: i32::try_from(ready.len()).unwrap_or(i32::MAX),
        data_node_selector: build::selector_string(&cluster.name, Role::DataNode),
        now: now(),
    };
    let new_status = status::status(&observation);
    // Settled, and every channel has an owner among the pods (else the data
    // coordinator is still moving them: look again soon).
    let settled = new_status.phase == Some(crate::crd::Phase::Ready)
        && new_status.channels.len() == usize::try_from(cluster.channels).unwrap_or(0)
        && new_status.channels.iter().all(|c| c.pod.is_some());
    if mc.status.as_ref().and_then(|s| s.phase) != new_status.phase {
        tracing::info!(phase = ?new_status.phase, "phase changed");
    }
    write_status(&api, mc, &new_status).await?;
    Ok(Action::requeue(if settled { RESYNC } else { BUSY_RESYNC }))
}

/// The StatefulSet size to apply now, and the drain behind it.
#[derive(Debug, Default)]
struct DataNodePlan {
    replicas: i32,
    /// Pods being drained (the StatefulSet keeps them until they are).
    draining: Vec<String>,
    /// What the drain did, once it is over.
    record: Option<RebalanceRecord>,
}

/// The ordinal of a data-node pod `<cluster>-datanode-<n>`.
fn ordinal(cluster: &str, pod: &str) -> Option<i32> {
    pod.strip_prefix(&build::child_name(cluster, Role::DataNode))?
        .strip_prefix('-')?
        .parse()
        .ok()
}

/// Scaling down: drain the data nodes that are going away (their channels are
/// flushed and moved) before the StatefulSet removes their pods, waiting at
/// most the drain timeout; they drain themselves on SIGTERM anyway.
async fn plan_data_nodes(
    mc: &MilvusCluster,
    ctx: &Context,
    c: &Cluster,
    existing: Option<&StatefulSet>,
    distribution: &Result<Distribution, Status>,
) -> DataNodePlan {
    let desired = c.data_node.replicas;
    let current = existing
        .and_then(|s| s.spec.as_ref())
        .and_then(|s| s.replicas)
        .unwrap_or(desired);
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

/// Calls `Rebalance` when the ready data-node pods are not those of the last
/// call (or the last call failed). Returns the record to keep in the status.
async fn rebalance(
    mc: &MilvusCluster,
    ctx: &Context,
    c: &Cluster,
    ready: &[String],
    previous: Option<RebalanceRecord>,
    distribution: &Result<Distribution, Status>,
) -> Option<RebalanceRecord> {
    let same = |p: &RebalanceRecord| p.call == "Rebalance" && p.pods == ready;
    let recent_failure = |p: &RebalanceRecord| {
        p.error.is_some()
            && p.time
                .parse::<k8s_openapi::jiff::Timestamp>()
                .is_ok_and(|t| {
                    now().0.duration_since(t).as_secs_f64() < REBALANCE_RETRY.as_secs_f64()
                })
    };
    // Nothing changed, the same call failed moments ago, or the coordinator
    // cannot be reached (its channel list did not come either).
    if ready.is_empty()
        || distribution.is_err()
        || previous
            .as_ref()
            .is_some_and(|p| same(p) && (p.error.is_none() || recent_failure(p)))
    {
        return previous;
    }
    // The expected set only when every ready pod is a registered data node;
    // else the coordinator balances over the nodes it knows.
    let expected: Vec<i64> = match distribution {
        Ok(d) => ready
            .iter()
            .map(|p| d.nodes_by_name.get(p).copied())
            .collect::<Option<Vec<_>>>()
            .unwrap_or_default(),
        Err(_) => Vec::new(),
    };
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
                    "ready data nodes [{before}] -> [{}]: {moved} channels moved",
                    ready.join(", ")
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
        reason: format!("ready data nodes changed from [{before}]"),
        pods: ready.to_vec(),
        moved_channels: i32::try_from(moved).unwrap_or(i32::MAX),
        error,
    })
}

/// Events for what this reconcile is about to change.
async fn announce_changes(
    mc: &MilvusCluster,
    ctx: &Context,
    c: &Cluster,
    existing: Option<&StatefulSet>,
    children: &build::Children,
    replicas: i32,
) {
    let Some(existing) = existing else {
        ctx.event(
            mc,
            EventType::Normal,
            "Creating",
            format!(
                "creating the cluster's children: {} data nodes, {} channels",
                replicas, c.channels
            ),
        )
        .await;
        return;
    };
    let checksum = |s: &StatefulSet| {
        s.spec
            .as_ref()
            .and_then(|s| s.template.metadata.as_ref())
            .and_then(|m| m.annotations.as_ref())
            .and_then(|a| a.get(CONFIG_CHECKSUM))
            .cloned()
    };
    if checksum(existing) != checksum(&children.data_nodes) {
        ctx.event(
            mc,
            EventType::Normal,
            "ConfigChanged",
            "the node configuration changed: rolling every component's pods".into(),
        )
        .await;
    }
    let current = existing.spec.as_ref().and_then(|s| s.replicas);
    if current.is_some_and(|n| n < replicas) {
        ctx.event(
            mc,
            EventType::Normal,
            "Scaling",
            format!(
                "scaling data nodes {} -> {replicas}",
                current.unwrap_or_default()
            ),
        )
        .await;
    }
}

/// The applied children as the apiserver returned them (with their status).
struct Applied {
    deployments: Vec<Deployment>,
    data_nodes: StatefulSet,
}

async fn apply_one<K>(client: &Client, ns: &str, object: &K) -> Result<K, Error>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + Serialize
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let name = object.meta().name.clone().unwrap_or_default();
    let params = PatchParams::apply(FIELD_MANAGER).force();
    Ok(api.patch(&name, &params, &Patch::Apply(object)).await?)
}

/// Server-side apply of every child, one field manager, in dependency order:
/// configuration, Services, coordinators and proxy, data nodes, budgets.
async fn apply(ctx: &Context, ns: &str, children: &build::Children) -> Result<Applied, Error> {
    let client = &ctx.client;
    apply_one(client, ns, &children.config).await?;
    for s in &children.services {
        apply_one(client, ns, s).await?;
    }
    let mut deployments = Vec::new();
    for d in &children.deployments {
        deployments.push(apply_one(client, ns, d).await?);
    }
    let data_nodes = apply_one(client, ns, &children.data_nodes).await?;
    for b in &children.disruption_budgets {
        apply_one(client, ns, b).await?;
    }
    let budgets: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), ns);
    for name in &children.unwanted_budgets {
        match budgets.delete(name, &DeleteParams::default()).await {
            Ok(_) => tracing::info!(budget = %name, "deleted a disruption budget no longer wanted"),
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Applied {
        deployments,
        data_nodes,
    })
}

async fn write_status(
    api: &Api<MilvusCluster>,
    mc: &MilvusCluster,
    status: &crate::crd::MilvusClusterStatus,
) -> Result<(), Error> {
    if mc.status.as_ref() == Some(status) {
        return Ok(());
    }
    let patch = serde_json::json!({
        "apiVersion": "milvuslike.io/v1alpha1",
        "kind": "MilvusCluster",
        "status": status,
    });
    api.patch_status(
        &mc.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}

/// Adds the finalizer when the metadata must be deleted with the object, removes
/// it when not (any more).
async fn finalizer(
    mc: &MilvusCluster,
    api: &Api<MilvusCluster>,
    wanted: bool,
) -> Result<(), Error> {
    let has = mc.finalizers().iter().any(|f| f == FINALIZER);
    if has == wanted {
        return Ok(());
    }
    let mut finalizers: Vec<String> = mc
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .cloned()
        .collect();
    if wanted {
        finalizers.push(FINALIZER.to_owned());
    }
    // The resource version makes this fail, and retry, if the list changed meanwhile.
    let patch = serde_json::json!({
        "metadata": {
            "finalizers": finalizers,
            "resourceVersion": mc.resource_version(),
        }
    });
    api.patch(
        &mc.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}

fn ignore_missing<T>(result: Result<T, kube::Error>) -> Result<(), Error> {
    match result {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Deletion: children go by owner references; with the finalizer
/// (`deletionPolicy: Delete`), the workloads are deleted and their pods waited
/// for, then the cluster's keys in etcd are deleted, then the object may go.
async fn delete(
    mc: &MilvusCluster,
    api: &Api<MilvusCluster>,
    ctx: &Context,
) -> Result<Action, Error> {
    if !mc.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(Action::await_change());
    }
    // First the workloads and their pods, so that no process of the cluster
    // writes its keys again after they are deleted.
    let ns = mc
        .namespace()
        .ok_or_else(|| Error::NoNamespace(mc.name_any()))?;
    let name = mc.name_any();
    let params = DeleteParams::background();
    for role in [Role::RootCoord, Role::DataCoord, Role::Proxy] {
        let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ns);
        ignore_missing(
            deployments
                .delete(&build::child_name(&name, role), &params)
                .await,
        )?;
    }
    let data_nodes: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &ns);
    ignore_missing(
        data_nodes
            .delete(&build::child_name(&name, Role::DataNode), &params)
            .await,
    )?;
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let left = pods
        .list(&ListParams::default().labels(&format!(
            "{LABEL_INSTANCE}={name},{LABEL_MANAGED_BY}={FIELD_MANAGER}"
        )))
        .await?
        .items
        .len();
    if left > 0 {
        tracing::info!(
            pods = left,
            "waiting for the cluster's pods to go before deleting its metadata"
        );
        return Ok(Action::requeue(Duration::from_secs(2)));
    }
    let endpoints = mc.spec.dependencies.etcd.endpoints.clone();
    let root = crate::validate::meta_root(
        &mc.spec.dependencies.etcd,
        &mc.namespace().unwrap_or_default(),
        &mc.name_any(),
    );
    let etcd_error = |reason: String| Error::Etcd {
        endpoints: endpoints.join(","),
        reason,
    };
    let options = etcd_client::ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(5))
        .with_timeout(Duration::from_secs(10));
    let mut etcd = etcd_client::Client::connect(&endpoints, Some(options))
        .await
        .map_err(|e| etcd_error(e.to_string()))?;
    let prefix = format!("{}/", root.trim_end_matches('/'));
    let deleted = etcd
        .delete(
            prefix.as_bytes(),
            Some(etcd_client::DeleteOptions::new().with_prefix()),
        )
        .await
        .map_err(|e| etcd_error(e.to_string()))?
        .deleted();
    ctx.event(
        mc,
        EventType::Normal,
        "MetadataDeleted",
        format!("deleted {deleted} keys under {prefix} in etcd (deletionPolicy: Delete)"),
    )
    .await;
    tracing::info!(deleted, %prefix, "deleted the cluster's metadata");
    finalizer(mc, api, false).await?;
    Ok(Action::await_change())
}
