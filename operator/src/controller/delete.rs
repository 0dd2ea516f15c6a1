//! Deletion of a `MilvusCluster`: children go by owner references; with the
//! finalizer (`deletionPolicy: Delete` on an external etcd) the workloads are
//! deleted and their pods waited for, then the cluster's keys in etcd are
//! deleted, then the object may go.

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;

use super::{Context, Error, FINALIZER, apply::finalizer};
use crate::build::{self, DEPLOYMENT_ROLES, FIELD_MANAGER, LABEL_INSTANCE, LABEL_MANAGED_BY, Role};
use crate::crd::MilvusCluster;

fn ignore_missing<T>(result: Result<T, kube::Error>) -> Result<(), Error> {
    match result {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Runs while the object is being deleted.
pub(super) async fn delete(
    mc: &MilvusCluster,
    api: &Api<MilvusCluster>,
    ctx: &Context,
) -> Result<Action, Error> {
    if !mc.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(Action::await_change());
    }
    if mc.spec.dependencies.etcd.in_cluster.is_some() {
        // The metadata lives on the in-cluster etcd's volume, which goes with it.
        finalizer(mc, api, false).await?;
        return Ok(Action::await_change());
    }
    // First the workloads and their pods, so that no process of the cluster
    // writes its keys again after they are deleted.
    let ns = mc
        .namespace()
        .ok_or_else(|| Error::NoNamespace(mc.name_any()))?;
    let name = mc.name_any();
    let params = DeleteParams::background();
    for role in DEPLOYMENT_ROLES {
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
