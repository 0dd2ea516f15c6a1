//! Standalone: every role in one process, on embedded defaults under one data
//! directory: the metadata store in `meta.redb`, the insert and delete logs in
//! `log.redb`, segment files under `segments/`. The roles talk gRPC to each other
//! on loopback, exactly as in a cluster, so the invariants and the files are the
//! same; only the backends differ.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::datacoord::balancer::BalancerRegistry;
use crate::datacoord::{self, DataCoordConfig};
use crate::datanode::{self, DataNodeConfig};
use crate::meta::{LocalStore, MetaStore};
use crate::msgstream::{LocalLog, Log};
use crate::proxy::{self, ProxyConfig};
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
        self.datanode.rootcoord = root;
        self.datanode.datacoord = data;
        self.datanode.storage = StorageConfig::Local {
            root: self.data_dir.join("segments"),
        };
        // The only data node: nobody else can take its channels when it stops, so
        // it flushes them itself at once.
        self.datanode.drain_timeout = std::time::Duration::ZERO;
        self
    }
}

type RoleTask = JoinHandle<anyhow::Result<()>>;

/// How long one role may take to stop. The data node's final flush retries while
/// the coordinators are unreachable; past this it is abandoned, which loses
/// nothing: the rows are in the embedded log and are read again from the
/// checkpoint at the next start.
const STOP_DEADLINE: Duration = Duration::from_secs(30);

/// Runs all four roles until `cancel` fires or one of them fails; then stops them
/// in dependency order: the proxy (no new writes), the data node (flushes and
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
    let proxy: RoleTask = tokio::spawn(proxy::run(
        store,
        log,
        config.proxy.clone(),
        proxy_stop.clone(),
    ));
    // In stop order.
    let mut roles: Vec<(&str, CancellationToken, Option<RoleTask>)> = vec![
        ("proxy", proxy_stop, Some(proxy)),
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
        let error = match result {
            Ok(Ok(())) => anyhow::anyhow!("the {name} stopped on its own"),
            Ok(Err(e)) => e.context(format!("the {name} failed")),
            Err(e) => anyhow::anyhow!("the {name} panicked: {e}"),
        };
        tracing::error!(error = %format!("{error:#}"), "stopping standalone");
        failure = Some(error);
    }
    // After a failure the data node's final flush may wait for a coordinator that
    // is gone: give it less time.
    let deadline = if failure.is_some() {
        Duration::from_secs(5)
    } else {
        STOP_DEADLINE
    };
    for (name, stop, task) in roles {
        stop.cancel();
        let Some(mut task) = task else { continue };
        match tokio::time::timeout(deadline, &mut task).await {
            Ok(Ok(Ok(()))) => tracing::info!("{name} stopped"),
            Ok(Ok(Err(e))) => {
                tracing::error!(error = %format!("{e:#}"), "{name} failed while stopping");
                failure.get_or_insert(e.context(format!("the {name} failed")));
            }
            Ok(Err(e)) => {
                failure.get_or_insert(anyhow::anyhow!("the {name} panicked: {e}"));
            }
            Err(_) => {
                task.abort();
                tracing::error!(
                    "the {name} did not stop within {deadline:?}; abandoning it (what it had not flushed is read again from the log at the next start)"
                );
                failure.get_or_insert(anyhow::anyhow!(
                    "the {name} did not stop within {deadline:?}"
                ));
            }
        }
    }
    failure.map_or(Ok(()), Err)
}
