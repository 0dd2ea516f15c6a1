//! Writes to the apiserver: server-side apply of the children (one field
//! manager, dependency order), the status, the finalizer, and the one Secret the
//! operator creates (the credentials of an in-cluster MinIO).

use futures::future::try_join_all;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Error;
use crate::build::{self, Dependency, FIELD_MANAGER};
use crate::crd::{MilvusCluster, MilvusClusterStatus};
use crate::validate::{Cluster, Storage};

/// The applied children as the apiserver returned them (with their status).
pub(super) struct Applied {
    pub deployments: Vec<Deployment>,
    pub data_nodes: StatefulSet,
    pub dependencies: Vec<(Dependency, StatefulSet)>,
}

/// A child the apiserver refused, and its words.
fn refused(kind: &str, name: &str, source: kube::Error) -> Error {
    let hint = match &source {
        kube::Error::Api(e) if e.code == 404 && kind == "ServiceMonitor" => {
            " (is prometheus-operator's ServiceMonitor CRD installed?)"
        }
        _ => "",
    };
    let message = match &source {
        kube::Error::Api(e) => e.message.clone(),
        other => other.to_string(),
    };
    Error::Apply {
        child: format!("{kind} {name}"),
        message: format!("{message}{hint}"),
        source,
    }
}

pub(super) async fn apply_one<K>(client: &Client, ns: &str, object: &K) -> Result<K, Error>
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
    api.patch(&name, &params, &Patch::Apply(object))
        .await
        .map_err(|e| refused(&K::kind(&()), &name, e))
}

async fn delete_budgets(client: &Client, ns: &str, names: &[String]) -> Result<(), Error> {
    let budgets: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), ns);
    for name in names {
        match budgets.delete(name, &DeleteParams::default()).await {
            Ok(_) => tracing::info!(budget = %name, "deleted a disruption budget no longer wanted"),
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// The ServiceMonitor when monitoring is on; else none (deleted if it was there).
async fn apply_service_monitor(
    client: &Client,
    ns: &str,
    cluster: &str,
    monitor: Option<&DynamicObject>,
) -> Result<(), Error> {
    let resource = build::service_monitor_resource();
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &resource);
    match monitor {
        Some(m) => {
            let params = PatchParams::apply(FIELD_MANAGER).force();
            api.patch(cluster, &params, &Patch::Apply(m))
                .await
                .map_err(|e| refused("ServiceMonitor", cluster, e))?;
        }
        None => match api.delete(cluster, &DeleteParams::default()).await {
            // Gone, never made, or prometheus-operator is not installed at all.
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(refused("ServiceMonitor", cluster, e)),
            Ok(_) => tracing::info!("deleted the ServiceMonitor: monitoring is off"),
        },
    }
    Ok(())
}

/// Server-side apply of every child, one field manager, in three waves, the
/// objects of a wave at the same time: what the pods read (configuration,
/// Services), then the workloads (in-cluster dependencies, coordinators, proxy,
/// data nodes, the bucket Job), then the disruption budgets and the
/// ServiceMonitor. A pod that starts before its dependency answers waits and
/// retries, so the waves order only what a pod reads at its start.
pub(super) async fn apply(
    client: &Client,
    ns: &str,
    cluster: &str,
    children: &build::Children,
) -> Result<Applied, Error> {
    let deps = &children.dependencies;
    let config_maps = deps.config_maps.iter().chain([&children.config]);
    let services = deps.services.iter().chain(&children.services);
    futures::try_join!(
        try_join_all(config_maps.map(|m| apply_one(client, ns, m))),
        try_join_all(services.map(|s| apply_one(client, ns, s))),
    )?;
    let (dependencies, deployments, data_nodes, _) = futures::try_join!(
        try_join_all(deps.stateful_sets.iter().map(|s| apply_one(client, ns, s))),
        try_join_all(
            children
                .deployments
                .iter()
                .map(|d| apply_one(client, ns, d))
        ),
        apply_one(client, ns, &children.data_nodes),
        try_join_all(deps.jobs.iter().map(|j| apply_one(client, ns, j))),
    )?;
    let budgets = children
        .disruption_budgets
        .iter()
        .chain(&deps.disruption_budgets);
    futures::try_join!(
        try_join_all(budgets.map(|b| apply_one(client, ns, b))),
        delete_budgets(client, ns, &children.unwanted_budgets),
        delete_budgets(client, ns, &deps.unwanted_budgets),
        apply_service_monitor(client, ns, cluster, children.service_monitor.as_ref()),
    )?;
    let dependencies = dependencies
        .into_iter()
        .filter_map(|s| {
            Dependency::ALL
                .into_iter()
                .find(|d| s.name_any() == build::dependency_name(cluster, *d))
                .map(|d| (d, s))
        })
        .collect();
    Ok(Applied {
        deployments,
        data_nodes,
        dependencies,
    })
}

/// Creates the in-cluster MinIO's credentials once: random, owned by the
/// cluster, never read back nor logged by the operator (so it needs only the
/// `create` verb on Secrets). Returns whether the Secret exists now.
pub(super) async fn minio_secret(
    client: &Client,
    c: &Cluster,
    owner: &k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
) -> Result<(), Error> {
    let Storage::S3 {
        secret_name,
        access_key_key,
        secret_key_key,
        ..
    } = &c.storage
    else {
        return Ok(());
    };
    use rand::distr::{Alphanumeric, SampleString};
    let random = |len: usize| Alphanumeric.sample_string(&mut rand::rng(), len);
    let secret = Secret {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some(secret_name.clone()),
            namespace: Some(c.namespace.clone()),
            labels: Some(
                build::dependency_labels(&c.name, Dependency::Minio)
                    .into_iter()
                    .chain([(build::LABEL_MANAGED_BY.to_owned(), FIELD_MANAGER.to_owned())])
                    .collect(),
            ),
            owner_references: Some(vec![owner.clone()]),
            ..Default::default()
        },
        string_data: Some(
            [
                (access_key_key.clone(), format!("milvus-like-{}", random(8))),
                (secret_key_key.clone(), random(40)),
            ]
            .into(),
        ),
        type_: Some("Opaque".to_owned()),
        ..Secret::default()
    };
    let api: Api<Secret> = Api::namespaced(client.clone(), &c.namespace);
    match api.create(&PostParams::default(), &secret).await {
        Ok(_) => {
            tracing::info!(secret = %secret_name, "generated the in-cluster MinIO's credentials");
            Ok(())
        }
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(refused("Secret", secret_name, e)),
    }
}

pub(super) async fn write_status(
    api: &Api<MilvusCluster>,
    mc: &MilvusCluster,
    status: &MilvusClusterStatus,
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
pub(super) async fn finalizer(
    mc: &MilvusCluster,
    api: &Api<MilvusCluster>,
    wanted: bool,
) -> Result<(), Error> {
    let has = mc.finalizers().iter().any(|f| f == super::FINALIZER);
    if has == wanted {
        return Ok(());
    }
    let mut finalizers: Vec<String> = mc
        .finalizers()
        .iter()
        .filter(|f| *f != super::FINALIZER)
        .cloned()
        .collect();
    if wanted {
        finalizers.push(super::FINALIZER.to_owned());
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
