//! Standalone: every role in one process, on embedded defaults under one data
//! directory: the metadata store in `meta.redb`, the insert and delete logs in
//! `log.redb`, segment files under `segments/`. The roles talk gRPC to each other
//! on loopback, exactly as in a cluster, so the invariants and the files are the
//! same; only the backends differ.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::datacoord::balancer::BalancerRegistry;
use crate::datacoord::{self, DataCoordConfig};
use crate::datanode::{self, DataNodeConfig};
use crate::meta::{LocalStore, MetaStore};
use crate::msgstream::{LocalLog, Log};
use crate::proxy::{self, ProxyConfig};
use crate::querynode::{self, QueryNodeConfig};
use crate::rootcoord::{self, RootCoordConfig};
use crate::storage::StorageConfig;

#[derive(Debug, Clone)]
pub struct StandaloneConfig {
    pub data_dir: PathBuf,
    pub rootcoord: RootCoordConfig,
    pub datacoord: DataCoordConfig,
    pub proxy: ProxyConfig,
    /// Its storage is replaced by `data_dir/segments`.
    pub datanode: DataNodeConfig,
    /// Its storage is replaced by `data_dir/segments`.
    pub querynode: QueryNodeConfig,
}

impl StandaloneConfig {
    /// Points every role at the others' advertised addresses and the data node at
    /// the data directory.
    fn wired(mut self) -> Self {
        let root = vec![self.rootcoord.role.advertise.clone()];
        let data = vec![self.datacoord.role.advertise.clone()];
        self.datacoord.rootcoord.clone_from(&root);
        self.proxy.rootcoord.clone_from(&root);
        self.proxy.datacoord.clone_from(&data);
        self.datanode.rootcoord.clone_from(&root);
        self.datanode.datacoord.clone_from(&data);
        self.datanode.storage = StorageConfig::Local {
            root: self.data_dir.join("segments"),
        };
        self.querynode.rootcoord = root;
        self.querynode.datacoord = data;
        self.querynode.storage = self.datanode.storage.clone();
        // The only data node: nobody else can take its channels when it stops, so
        // it flushes them itself at once.
        self.datanode.drain_timeout = std::time::Duration::ZERO;
        self
    }
}

type RoleTask = JoinHandle<anyhow::Result<()>>;

/// How a role's task ended, as an error if it failed or panicked.
fn failed(
    name: &str,
    ended: Result<anyhow::Result<()>, tokio::task::JoinError>,
) -> Option<anyhow::Error> {
    match ended {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e.context(format!("the {name} failed"))),
        Err(e) => Some(anyhow::anyhow!("the {name} panicked: {e}")),
    }
}

/// Runs all five roles until `cancel` fires or one of them fails; then stops them
/// in dependency order: the proxy (no new writes), the query node, the data node (flushes and
/// commits what it holds), the data coordinator, the root coordinator.
pub async fn run(config: StandaloneConfig, cancel: CancellationToken) -> anyhow::Result<()> {
    let config = config.wired();
    let dir = &config.data_dir;
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
    let store: Arc<dyn MetaStore> = Arc::new(
        LocalStore::open(&dir.join("meta.redb")).context("open the embedded metadata store")?,
    );
    let log: Arc<dyn Log> =
        Arc::new(LocalLog::open(&dir.join("log.redb")).context("open the embedded log")?);
    // The channel count is fixed when the data directory is created.
    log.ensure(config.datacoord.channels)
        .await
        .with_context(|| {
            format!(
                "the data directory {} was created with another channel count than --channels={}",
                dir.display(),
                config.datacoord.channels
            )
        })?;
    tracing::info!(
        data_dir = %dir.display(),
        proxy = %config.proxy.role.advertise,
        "standalone: every role in this process"
    );
    let token = || CancellationToken::new();
    let (root_stop, coord_stop, node_stop, proxy_stop) = (token(), token(), token(), token());
    let query_stop = token();
    let rootcoord: RoleTask = tokio::spawn(rootcoord::run(
        store.clone(),
        config.rootcoord.clone(),
        root_stop.clone(),
    ));
    let datacoord: RoleTask = tokio::spawn(datacoord::run(
        store.clone(),
        Some(log.clone()),
        config.datacoord.clone(),
        BalancerRegistry::with_builtins(),
        coord_stop.clone(),
    ));
    let datanode: RoleTask = tokio::spawn(datanode::run(
        store.clone(),
        log.clone(),
        config.datanode.clone(),
        node_stop.clone(),
    ));
    let querynode: RoleTask = tokio::spawn(querynode::run(
        store.clone(),
        log.clone(),
        config.querynode.clone(),
        query_stop.clone(),
    ));
    let proxy: RoleTask = tokio::spawn(proxy::run(
        store,
        log,
        config.proxy.clone(),
        proxy_stop.clone(),
    ));
    // In stop order.
    let mut roles: Vec<(&str, CancellationToken, Option<RoleTask>)> = vec![
        ("proxy", proxy_stop, Some(proxy)),
        ("query node", query_stop, Some(querynode)),
        ("data node", node_stop, Some(datanode)),
        ("data coordinator", coord_stop, Some(datacoord)),
        ("root coordinator", root_stop, Some(rootcoord)),
    ];
    let mut failure: Option<anyhow::Error> = None;
    let ended_early = {
        let running =
            futures::future::select_all(roles.iter_mut().filter_map(|(_, _, task)| task.as_mut()));
        tokio::select! {
            () = cancel.cancelled() => None,
            (result, index, _) = running => Some((index, result)),
        }
    };
    if let Some((index, result)) = ended_early {
        let (name, _, task) = &mut roles[index];
        *task = None;
        let error = failed(name, result)
            .unwrap_or_else(|| anyhow::anyhow!("the {name} stopped on its own"));
        tracing::error!(error = %format!("{error:#}"), "stopping standalone");
        failure = Some(error);
    }
    // Each role bounds its own stop (the data node its final flushes).
    for (name, stop, task) in roles {
        stop.cancel();
        let Some(task) = task else { continue };
        match failed(name, task.await) {
            None => tracing::info!("{name} stopped"),
            Some(e) => {
                tracing::error!(error = %format!("{e:#}"), "while stopping");
                failure.get_or_insert(e);
            }
        }
    }
    failure.map_or(Ok(()), Err)
}
