//! The reconcile loop: validate -> dereference (Kubernetes objects only) ->
//! build -> apply -> ask the data coordinator (drain, rebalance) -> status, run
//! on every change of a `MilvusCluster`, of one of its children or of one of its
//! pods (watches, no polling), and every 10 s (3 s while something moves) to
//! refresh what the data coordinator reports. Children are applied before the
//! data coordinator is called, so a missing or dead coordinator never delays
//! them.

mod apply;
mod delete;
mod scale;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, ListParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use crate::build::{
    self, CONFIG_CHECKSUM, FIELD_MANAGER, LABEL_INSTANCE, LABEL_MANAGED_BY, Role, Rollout, SpecName,
};
use crate::crd::{ChannelOwner, MilvusCluster, QueryChannelOwner};
use crate::datacoord::DataCoords;
use crate::metrics::Metrics;
use crate::status::{self, Observation};
use crate::upgrade;
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
    /// The apiserver refused a child (its message is in the status).
    #[error("applying {child}: {message}")]
    Apply {
        child: String,
        message: String,
        source: kube::Error,
    },
}

impl Error {
    fn kind(&self) -> &'static str {
        match self {
            Self::Kube(_) | Self::Apply { .. } => "kube",
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
    /// Departing data-node pods already drained (asked once, not again), and the
    /// channels their drains moved.
    drained: std::collections::BTreeSet<String>,
    drained_channels: u32,
    /// Reconciles failed in a row (for the backoff).
    failures: u32,
    /// The in-cluster MinIO's Secret was created, or found (it is never read).
    minio_secret: bool,
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
    .owns(api::<Job>(&client, ns), ours.clone())
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
        return delete::delete(mc, &api, ctx).await;
    }

    // Validate (and default).
    let cluster = match validate::validate(mc) {
        Ok(c) => c,
        Err(invalid) => {
            let message = invalid.to_string();
            if !has_condition(mc, status::READY, &message) {
                ctx.metrics.error("invalid_spec");
                ctx.event(mc, EventType::Warning, "InvalidSpec", message.clone())
                    .await;
            }
            let s = status::invalid(mc.status.as_ref(), mc.metadata.generation, &message, &now());
            apply::write_status(&api, mc, &s).await?;
            // Nothing to do until the spec changes.
            return Ok(Action::await_change());
        }
    };
    apply::finalizer(mc, &api, cluster.deletes_external_metadata()).await?;
    let owner = mc
        .controller_owner_ref(&())
        .ok_or_else(|| Error::NoUid(mc.name_any()))?;

    // Dereference what runs now, from Kubernetes only, and apply every child:
    // the data coordinator is asked after, so a missing or dead one never holds
    // up the workloads.
    let running = Running::read(&ctx.client, &ns, &cluster.name).await?;
    let roles = running.roles();
    let current_data_nodes = running.data_nodes().and_then(|s| s.spec.as_ref()?.replicas);
    let rollout = Rollout {
        data_node_replicas: scale::held_replicas(&cluster, current_data_nodes),
        images: upgrade::images(&cluster.image, &roles),
    };
    let children = build::build(&cluster, &owner, &rollout);
    announce_changes(
        mc,
        ctx,
        &cluster,
        running.data_nodes(),
        &children,
        rollout.data_node_replicas,
    )
    .await;
    let applied = apply_children(mc, ctx, &api, &cluster, &owner, &children).await?;

    // Now the data coordinator: drain departing data nodes, then shrink.
    let distribution = ctx
        .datacoords
        .distribution(&cluster.data_coord_endpoint)
        .await;
    let plan = scale::plan_data_nodes(mc, ctx, &cluster, current_data_nodes, &distribution).await;
    let data_nodes = if plan.replicas == rollout.data_node_replicas {
        applied.data_nodes
    } else {
        let shrunk = build::build(
            &cluster,
            &owner,
            &Rollout {
                data_node_replicas: plan.replicas,
                ..rollout.clone()
            },
        );
        apply::apply_one(&ctx.client, &ns, &shrunk.data_nodes).await?
    };

    // Rebalance when the data-node pods that stay (not departing, not
    // terminating) change: the channels go to those the coordinator knows,
    // ready or not yet (one left out would be drained for good).
    let staying = scale::staying_data_nodes(&running.pods, &cluster.name, plan.replicas);
    let members = sorted_names(staying.iter().copied());
    let ready = sorted_names(staying.iter().copied().filter(|p| status::pod_ready(p)));
    let previous = mc.status.as_ref().and_then(|s| s.last_rebalance.clone());
    let last_rebalance = match plan.record {
        Some(r) => Some(r),
        None if plan.draining.is_empty() => {
            scale::rebalance(mc, ctx, &cluster, &members, previous.clone(), &distribution).await
        }
        None => previous.clone(),
    };

    // Status.
    let mut components: Vec<status::ComponentState> = build::DEPLOYMENT_ROLES
        .into_iter()
        .zip(&applied.deployments)
        .map(|(role, d)| {
            let desired = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
            status::deployment_state(role, desired, Some(d))
        })
        .collect();
    components.push(status::stateful_set_state(
        Role::DataNode.spec_name(),
        cluster.data_node.replicas,
        Some(&data_nodes),
    ));
    for (d, set) in &applied.dependencies {
        let desired = set.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
        components.push(status::stateful_set_state(d.suffix(), desired, Some(set)));
    }
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
    let query_channels = match &distribution {
        Ok(d) => d
            .query_channels
            .iter()
            .map(|q| QueryChannelOwner {
                channel: i32::try_from(q.channel).unwrap_or(i32::MAX),
                node_id: q.node_id,
                pod: (!q.name.is_empty()).then(|| q.name.clone()),
                collections: q.collections.clone(),
            })
            .collect(),
        Err(_) => mc
            .status
            .as_ref()
            .map(|s| s.query_channels.clone())
            .unwrap_or_default(),
    };
    let observation = Observation {
        generation: mc.metadata.generation,
        previous: mc.status.as_ref(),
        components,
        draining: plan.draining.clone(),
        pod_problem: status::pod_problem(&running.pods),
        datacoord_error: distribution.as_ref().err().map(|s| {
            format!(
                "data coordinator at {}: {}",
                cluster.data_coord_endpoint,
                s.message()
            )
        }),
        channels,
        query_channels,
        last_rebalance,
        data_nodes_ready: i32::try_from(ready.len()).unwrap_or(i32::MAX),
        data_node_selector: build::selector_string(&cluster.name, Role::DataNode),
        upgrade: upgrade::progress(&cluster.image, &roles),
        image: cluster.image.clone(),
        version: cluster.version.clone(),
        now: now(),
    };
    let new_status = status::status(&observation);
    announce_status(mc, ctx, &new_status).await;
    // Settled, and every channel has an owner among the pods (else the data
    // coordinator is still moving them: look again soon).
    let settled = new_status.phase == Some(crate::crd::Phase::Ready)
        && new_status.channels.len() == usize::try_from(cluster.channels).unwrap_or(0)
        && new_status.channels.iter().all(|c| c.pod.is_some());
    if mc.status.as_ref().and_then(|s| s.phase) != new_status.phase {
        tracing::info!(phase = ?new_status.phase, "phase changed");
    }
    apply::write_status(&api, mc, &new_status).await?;
    Ok(Action::requeue(if settled { RESYNC } else { BUSY_RESYNC }))
}

fn sorted_names<'a>(pods: impl Iterator<Item = &'a Pod>) -> Vec<String> {
    pods.map(|p| p.name_any())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// Whether the status already has condition `type_` with this message.
fn has_condition(mc: &MilvusCluster, type_: &str, message: &str) -> bool {
    mc.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == type_ && c.message == message)
    })
}

/// Applies the children (and the in-cluster MinIO's Secret first). A child the
/// apiserver refuses shows in the status (Degraded, not Ready, with the
/// apiserver's words) and as an event, and the reconcile fails (and backs off).
async fn apply_children(
    mc: &MilvusCluster,
    ctx: &Context,
    api: &Api<MilvusCluster>,
    cluster: &Cluster,
    owner: &k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
    children: &build::Children,
) -> Result<apply::Applied, Error> {
    let result = async {
        if cluster.in_cluster.minio.is_some() && !ctx.remember(&key(mc), |m| m.minio_secret) {
            apply::minio_secret(&ctx.client, cluster, owner).await?;
            ctx.remember(&key(mc), |m| m.minio_secret = true);
        }
        apply::apply(&ctx.client, &cluster.namespace, &cluster.name, children).await
    }
    .await;
    if let Err(Error::Apply { child, message, .. }) = &result {
        let message = format!("the apiserver refused {child}: {message}");
        if !has_condition(mc, status::DEGRADED, &message) {
            ctx.event(mc, EventType::Warning, "ApplyFailed", message.clone())
                .await;
        }
        let s = status::apply_failed(mc.status.as_ref(), mc.metadata.generation, &message, &now());
        if let Err(e) = apply::write_status(api, mc, &s).await {
            tracing::warn!(error = %e, "could not write the status of a refused apply");
        }
    }
    result
}

/// Events for what the new status says changed: an upgrade began or ended.
async fn announce_status(mc: &MilvusCluster, ctx: &Context, new: &crate::crd::MilvusClusterStatus) {
    let old = mc.status.as_ref();
    let progressing = |s: &crate::crd::MilvusClusterStatus| {
        s.conditions
            .iter()
            .find(|c| c.type_ == status::PROGRESSING)
            .map(|c| (c.reason.clone(), c.message.clone()))
    };
    if let Some((reason, message)) = progressing(new)
        && reason == "Upgrading"
        && old
            .and_then(progressing)
            .is_none_or(|(r, _)| r != "Upgrading")
    {
        ctx.event(mc, EventType::Normal, "Upgrading", message).await;
    }
    if let (Some(was), Some(now)) = (old.and_then(|s| s.image.as_ref()), new.image.as_ref())
        && was != now
    {
        ctx.event(
            mc,
            EventType::Normal,
            "Upgraded",
            format!("every pod runs {now} (was {was})"),
        )
        .await;
    }
}

/// The cluster's workloads and pods as they are before this reconcile applies.
struct Running {
    deployments: Vec<Deployment>,
    stateful_sets: Vec<StatefulSet>,
    pods: Vec<Pod>,
}

impl Running {
    async fn read(client: &Client, ns: &str, cluster: &str) -> Result<Self, Error> {
        let ours = ListParams::default().labels(&format!(
            "{LABEL_INSTANCE}={cluster},{LABEL_MANAGED_BY}={FIELD_MANAGER}"
        ));
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
        let stateful_sets: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
        let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
        let (deployments, stateful_sets, pods) = futures::try_join!(
            deployments.list(&ours),
            stateful_sets.list(&ours),
            pods.list(&ours),
        )?;
        Ok(Self {
            deployments: deployments.items,
            stateful_sets: stateful_sets.items,
            pods: pods.items,
        })
    }

    fn component(labels: &std::collections::BTreeMap<String, String>) -> Option<&str> {
        labels.get(build::LABEL_COMPONENT).map(String::as_str)
    }

    fn data_nodes(&self) -> Option<&StatefulSet> {
        self.stateful_sets
            .iter()
            .find(|s| Self::component(s.labels()) == Some(Role::DataNode.subcommand()))
    }

    /// Each role's images and rollout, for [`upgrade`].
    fn roles(&self) -> BTreeMap<Role, upgrade::RoleNow> {
        let image = |t: Option<&k8s_openapi::api::core::v1::PodSpec>| {
            t.and_then(|s| s.containers.first())
                .and_then(|c| c.image.clone())
        };
        let mut out = BTreeMap::new();
        for role in Role::ALL {
            let workload = if role == Role::DataNode {
                self.data_nodes().map(|s| {
                    let spec = s.spec.as_ref();
                    let desired = spec.and_then(|s| s.replicas).unwrap_or(0);
                    (
                        image(spec.and_then(|s| s.template.spec.as_ref())),
                        status::stateful_set_state(role.spec_name(), desired, Some(s)).settled(),
                    )
                })
            } else {
                self.deployments
                    .iter()
                    .find(|d| Self::component(d.labels()) == Some(role.subcommand()))
                    .map(|d| {
                        let spec = d.spec.as_ref();
                        let desired = spec.and_then(|s| s.replicas).unwrap_or(0);
                        (
                            image(spec.and_then(|s| s.template.spec.as_ref())),
                            status::deployment_state(role, desired, Some(d)).settled(),
                        )
                    })
            };
            let Some((template_image, rolled_out)) = workload else {
                continue;
            };
            let pod_images = self
                .pods
                .iter()
                .filter(|p| Self::component(p.labels()) == Some(role.subcommand()))
                .filter_map(|p| image(p.spec.as_ref()))
                .collect();
            out.insert(
                role,
                upgrade::RoleNow {
                    template_image,
                    pod_images,
                    rolled_out,
                },
            );
        }
        out
    }
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
