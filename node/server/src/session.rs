//! Sessions: every process registers itself under `session/{role}/{node_id}` with a
//! lease, renews it at every heartbeat and refreshes its health there. When a process
//! dies its lease expires and the key vanishes; [`NodeRegistry`] watches the keys
//! and so knows who is alive.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::StreamExt;
use milvus_like_api::proto::{NodeHealth, NodeInfo, Role};
use milvus_like_api::retry::Retry;
use milvus_like_api::settings::defaults;
use prost::Message;
use tokio_util::sync::CancellationToken;

use crate::meta::{Compare, LeaseId, MetaError, MetaResult, MetaStore, Op, Txn, WatchEvent};

/// Prefix of every session key.
pub const SESSION_PREFIX: &str = "session/";
/// Counter of node ids.
const NEXT_ID_KEY: &str = "session-id/next";
/// Memory use above this share of the total flags a node unhealthy (as
/// [`crate::server::MEMORY_READY_THRESHOLD`] makes it not ready).
pub const MEMORY_THRESHOLD: f64 = crate::server::MEMORY_READY_THRESHOLD;

#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// The session vanishes this long after the last heartbeat.
    pub ttl: Duration,
    /// Heartbeat period; never more than a third of the TTL.
    pub heartbeat: Duration,
    /// The name the process registers under (`NodeInfo.name`): its pod name in
    /// Kubernetes, which is how the operator tells which data node a pod runs.
    pub name: String,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            ttl: defaults::SESSION_TTL,
            heartbeat: defaults::HEARTBEAT,
            name: String::new(),
        }
    }
}

impl SessionConfig {
    pub fn heartbeat_interval(&self) -> Duration {
        self.heartbeat
            .min(self.ttl / 3)
            .max(Duration::from_millis(100))
    }
}

/// Reports a node's health at each heartbeat.
pub type HealthProbe = Arc<dyn Fn() -> NodeHealth + Send + Sync>;

/// The health every process reports: memory use, plus what the role adds.
pub fn basic_health() -> NodeHealth {
    let mem = crate::sys::MemoryUsage::read();
    NodeHealth {
        memory_used_bytes: mem.map_or(0, |m| m.used_bytes),
        memory_total_bytes: mem.map_or(0, |m| m.total_bytes),
        reported_at_ms: crate::sys::unix_ms(),
        ..NodeHealth::default()
    }
}

pub fn role_name(role: Role) -> &'static str {
    match role {
        Role::RootCoord => "rootcoord",
        Role::DataCoord => "datacoord",
        Role::DataNode => "datanode",
        Role::Proxy => "proxy",
        Role::QueryNode => "querynode",
        Role::Unspecified => "unspecified",
    }
}

/// A registered process. Dropping it stops the heartbeat; [`Session::close`] also
/// deletes the key at once.
#[derive(Debug)]
pub struct Session {
    node_id: i64,
    store: Arc<dyn MetaStore>,
    lease: Arc<std::sync::atomic::AtomicI64>,
    stop: CancellationToken,
    /// Set when the process begins a graceful stop; published at once.
    stopping: Arc<std::sync::atomic::AtomicBool>,
    /// Wakes the heartbeat to publish now.
    beat_now: Arc<tokio::sync::Notify>,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Session {
    /// Takes a fresh node id, writes the session and starts the heartbeat.
    pub async fn register(
        store: Arc<dyn MetaStore>,
        role: Role,
        address: String,
        config: SessionConfig,
        probe: HealthProbe,
    ) -> MetaResult<Self> {
        let node_id = next_node_id(store.as_ref()).await?;
        let key = format!("{SESSION_PREFIX}{}/{node_id}", role_name(role));
        let info = NodeInfo {
            node_id,
            role: role.into(),
            address,
            started_at_ms: crate::sys::unix_ms(),
            health: Some(probe()),
            healthy: true,
            problems: vec![],
            stopping: false,
            name: config.name.clone(),
        };
        let lease = store.grant_lease(config.ttl).await?;
        store.put(&key, info.encode_to_vec(), Some(lease)).await?;
        tracing::info!(node_id, role = role_name(role), %key, ttl = ?config.ttl, "session registered");
        let lease = Arc::new(std::sync::atomic::AtomicI64::new(lease));
        let stop = CancellationToken::new();
        let stopping = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let beat_now = Arc::new(tokio::sync::Notify::new());
        crate::spawn(heartbeat(
            Heartbeat {
                store: store.clone(),
                key,
                lease: lease.clone(),
                config,
                probe,
                stopping: stopping.clone(),
                beat_now: beat_now.clone(),
            },
            info,
            stop.clone(),
        ));
        Ok(Self {
            node_id,
            store,
            lease,
            stop,
            stopping,
            beat_now,
        })
    }

    /// Announces a graceful stop: coordinators move work away from this node.
    pub fn mark_stopping(&self) {
        self.stopping
            .store(true, std::sync::atomic::Ordering::Release);
        self.beat_now.notify_one();
    }

    pub fn node_id(&self) -> i64 {
        self.node_id
    }

    /// Stops the heartbeat and deletes the session now.
    pub async fn close(self) {
        self.stop.cancel();
        let lease = self.lease.load(std::sync::atomic::Ordering::Acquire);
        if let Err(e) = self.store.revoke_lease(lease).await {
            tracing::warn!(error = %e, "could not delete the session; it expires with its TTL");
        }
    }
}

async fn next_node_id(store: &dyn MetaStore) -> MetaResult<i64> {
    loop {
        let current = store.get(NEXT_ID_KEY).await?;
        let (rev, next) = match &current {
            None => (0, 1),
            Some(kv) => {
                let n = std::str::from_utf8(&kv.value)
                    .ok()
                    .and_then(|s| s.parse::<i64>().ok())
                    .ok_or_else(|| MetaError::corrupt(NEXT_ID_KEY, "not a number"))?;
                (kv.mod_revision, n)
            }
        };
        let txn = Txn::when([Compare::ModRevision(NEXT_ID_KEY.into(), rev)])
            .then([Op::put(NEXT_ID_KEY, (next + 1).to_string().into_bytes())]);
        if store.txn(txn).await?.succeeded {
            return Ok(next);
        }
    }
}

/// What the heartbeat task needs.
struct Heartbeat {
    store: Arc<dyn MetaStore>,
    key: String,
    lease: Arc<std::sync::atomic::AtomicI64>,
    config: SessionConfig,
    probe: HealthProbe,
    stopping: Arc<std::sync::atomic::AtomicBool>,
    beat_now: Arc<tokio::sync::Notify>,
}

async fn heartbeat(hb: Heartbeat, mut info: NodeInfo, stop: CancellationToken) {
    use std::sync::atomic::Ordering;
    let mut interval = tokio::time::interval(hb.config.heartbeat_interval());
    interval.tick().await;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = interval.tick() => {}
            () = hb.beat_now.notified() => {}
        }
        let current: LeaseId = hb.lease.load(Ordering::Acquire);
        let renewed = match hb.store.keep_alive(current).await {
            Ok(_) => Ok(current),
            Err(MetaError::LeaseExpired(_)) => {
                tracing::warn!(key = %hb.key, "session expired (heartbeats were lost); registering again");
                hb.store.grant_lease(hb.config.ttl).await
            }
            Err(e) => Err(e),
        };
        let result = match renewed {
            Ok(l) => {
                hb.lease.store(l, Ordering::Release);
                info.health = Some((hb.probe)());
                info.stopping = hb.stopping.load(Ordering::Acquire);
                hb.store.put(&hb.key, info.encode_to_vec(), Some(l)).await
            }
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            tracing::warn!(key = %hb.key, error = %e, "session heartbeat failed");
        }
    }
}

/// Fills in `healthy` and `problems` from what the node reported.
pub fn evaluate(mut node: NodeInfo) -> NodeInfo {
    let mut problems = Vec::new();
    if let Some(h) = &node.health {
        if h.memory_total_bytes > 0 {
            let ratio = h.memory_used_bytes as f64 / h.memory_total_bytes as f64;
            if ratio > MEMORY_THRESHOLD {
                problems.push(format!(
                    "memory use {:.0} % is over the {:.0} % threshold",
                    ratio * 100.0,
                    MEMORY_THRESHOLD * 100.0
                ));
            }
        }
        problems.extend(h.problems.iter().cloned());
    }
    node.healthy = problems.is_empty();
    node.problems = problems;
    node
}

/// Live view of every session, kept current by a watch.
#[derive(Debug, Clone)]
pub struct NodeRegistry {
    nodes: Arc<RwLock<BTreeMap<String, NodeInfo>>>,
    /// Bumped after every change, for those who react to joins and leaves.
    changes: Arc<tokio::sync::watch::Sender<u64>>,
}

impl Default for NodeRegistry {
    fn default() -> Self {
        Self {
            nodes: Arc::default(),
            changes: Arc::new(tokio::sync::watch::channel(0).0),
        }
    }
}

impl NodeRegistry {
    /// Starts watching; the view is filled before this returns if the store answers.
    pub async fn spawn(store: Arc<dyn MetaStore>, cancel: CancellationToken) -> Self {
        let registry = Self::default();
        let initial = registry.reload(store.as_ref()).await;
        crate::spawn(registry.clone().run(store, initial.ok(), cancel));
        registry
    }

    /// Wakes up after every change of the node set or of a node's record.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Live nodes of one role, health evaluated, ordered by id.
    pub fn nodes_of(&self, role: Role) -> Vec<NodeInfo> {
        self.nodes()
            .into_iter()
            .filter(|n| n.role == role as i32)
            .collect()
    }

    /// Every live node, health evaluated, ordered by role then id.
    pub fn nodes(&self) -> Vec<NodeInfo> {
        let nodes = self.nodes.read().unwrap_or_else(|p| p.into_inner());
        let mut list: Vec<NodeInfo> = nodes.values().cloned().map(evaluate).collect();
        list.sort_by_key(|n| (n.role, n.node_id));
        list
    }

    async fn reload(&self, store: &dyn MetaStore) -> MetaResult<i64> {
        let (kvs, revision) = store.scan_prefix(SESSION_PREFIX).await?;
        let mut fresh = BTreeMap::new();
        for kv in kvs {
            match NodeInfo::decode(kv.value.as_slice()) {
                Ok(info) => {
                    fresh.insert(kv.key, info);
                }
                Err(e) => tracing::warn!(key = %kv.key, error = %e, "skipping a malformed session"),
            }
        }
        *self.nodes.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        self.changes.send_modify(|v| *v += 1);
        Ok(revision)
    }

    fn apply(&self, events: Vec<WatchEvent>) {
        let mut nodes = self.nodes.write().unwrap_or_else(|p| p.into_inner());
        for ev in events {
            match ev {
                WatchEvent::Put(kv) => match NodeInfo::decode(kv.value.as_slice()) {
                    Ok(info) => {
                        if !nodes.contains_key(&kv.key) {
                            tracing::info!(key = %kv.key, address = %info.address, "node joined");
                        }
                        nodes.insert(kv.key, info);
                    }
                    Err(e) => {
                        tracing::warn!(key = %kv.key, error = %e, "skipping a malformed session")
                    }
                },
                WatchEvent::Delete { key, .. } => {
                    if nodes.remove(&key).is_some() {
                        tracing::info!(%key, "node left (session closed or expired)");
                    }
                }
            }
        }
        drop(nodes);
        self.changes.send_modify(|v| *v += 1);
    }

    async fn run(
        self,
        store: Arc<dyn MetaStore>,
        revision: Option<i64>,
        cancel: CancellationToken,
    ) {
        let retry = Retry::new("cannot read or watch the sessions")
            .until_cancelled(&cancel)
            .on_every_error();
        // The first watch starts from the revision read at spawn; a broken watch
        // reads every session again first.
        let known = std::sync::Mutex::new(revision);
        let (this, store, known) = (&self, store.as_ref(), &known);
        loop {
            let watch = retry
                .run(|| async move {
                    let known = known.lock().unwrap_or_else(|p| p.into_inner()).take();
                    let rev = match known {
                        Some(r) => r,
                        None => this.reload(store).await?,
                    };
                    store.watch_prefix(SESSION_PREFIX, rev + 1).await
                })
                .await;
            let Ok(mut watch) = watch else {
                return; // cancelled
            };
            loop {
                tokio::select! {
                    () = cancel.cancelled() => return,
                    batch = watch.next() => match batch {
                        Some(Ok(events)) => self.apply(events),
                        Some(Err(e)) => {
                            tracing::warn!(error = %e, "session watch broke; re-reading");
                            break;
                        }
                        None => break,
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::LocalStore;

    fn probe() -> HealthProbe {
        Arc::new(basic_health)
    }

    #[tokio::test]
    async fn sessions_appear_and_vanish() {
        let store: Arc<LocalStore> = Arc::new(LocalStore::in_memory());
        let cancel = CancellationToken::new();
        let registry = NodeRegistry::spawn(store.clone(), cancel.clone()).await;
        let config = SessionConfig {
            ttl: Duration::from_secs(3),
            heartbeat: Duration::from_secs(10),
            name: "a".into(),
        };
        let a = Session::register(
            store.clone(),
            Role::DataNode,
            "a:1".into(),
            config.clone(),
            probe(),
        )
        .await
        .expect("register");
        let b = Session::register(store.clone(), Role::Proxy, "b:1".into(), config, probe())
            .await
            .expect("register");
        assert_ne!(a.node_id(), b.node_id());
        tokio::time::sleep(Duration::from_millis(50)).await;
        let nodes = registry.nodes();
        assert_eq!(nodes.len(), 2);
        assert_eq!(nodes[0].address, "a:1");
        a.close().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let nodes = registry.nodes();
        assert_eq!(nodes.len(), 1);
        assert_eq!(nodes[0].address, "b:1");
    }

    #[test]
    fn memory_over_ninety_percent_is_flagged() {
        let node = NodeInfo {
            health: Some(NodeHealth {
                memory_used_bytes: 95,
                memory_total_bytes: 100,
                ..NodeHealth::default()
            }),
            ..NodeInfo::default()
        };
        let node = evaluate(node);
        assert!(!node.healthy);
        assert_eq!(
            node.problems,
            vec!["memory use 95 % is over the 90 % threshold"]
        );
        let fine = evaluate(NodeInfo {
            health: Some(NodeHealth {
                memory_used_bytes: 50,
                memory_total_bytes: 100,
                ..NodeHealth::default()
            }),
            ..NodeInfo::default()
        });
        assert!(fine.healthy);
    }
}
