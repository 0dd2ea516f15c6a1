//! Channel ownership: every channel has exactly one owner data node at a time.
//!
//! `datacoord/channel/{k}` holds a `ChannelAssignment`: owner, ownership epoch and
//! checkpoint. It is the source of truth; this module only caches owners. A move
//! is a handshake: the old owner (if alive) is asked to flush and release the
//! channel, then the record is rewritten with the new owner and `epoch + 1` in a
//! transaction that checks nothing changed meanwhile, then the new owner is told
//! to watch from the checkpoint. Because every commit of a data node checks the
//! epoch in the same transaction, an old owner that missed the news can never
//! commit for the channel again.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use milvus_like_api::proto::data_node_client::DataNodeClient;
use milvus_like_api::proto::{
    ChannelAssignment, ChannelCheckpoint, NodeInfo, ReleaseChannelRequest, Role,
    WatchChannelRequest,
};
use prost::Message;
use tonic::transport::Channel;

use super::balancer::{self, Balancer, NodeLoad};
use crate::election::Leadership;
use crate::meta::{Compare, KeyValue, MetaError, MetaStore, Op, Txn};
use crate::session::NodeRegistry;

const CHANNEL_PREFIX: &str = "datacoord/channel/";
const DRAINING_PREFIX: &str = "datacoord/draining/";
const CHANNEL_COUNT_KEY: &str = "datacoord/config/channels";

pub fn channel_key(channel: u32) -> String {
    format!("{CHANNEL_PREFIX}{channel:05}")
}

#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("this data coordinator is not the leader")]
    NotLeader,
    /// The request names something impossible (no channels, a channel beyond the count).
    #[error("{0}")]
    Invalid(String),
    /// The cluster was created with another channel count.
    #[error(
        "this cluster was created with {stored} channels; it cannot change to {wanted} (set the channel count back to {stored})"
    )]
    CountChanged { stored: u32, wanted: u32 },
    /// The caller does not hold the channel at this epoch (it moved, or has no owner).
    #[error("{0}")]
    NotOwner(String),
    #[error(transparent)]
    Meta(#[from] MetaError),
}

/// Time limits of the move handshake.
#[derive(Debug, Clone)]
pub struct HandshakeConfig {
    /// How long the old owner may take to flush and release.
    pub release_timeout: Duration,
    /// How long the new owner may take to acknowledge.
    pub watch_timeout: Duration,
}

impl Default for HandshakeConfig {
    fn default() -> Self {
        Self {
            release_timeout: Duration::from_secs(30),
            watch_timeout: Duration::from_secs(5),
        }
    }
}

/// Result of one reconciliation.
#[derive(Debug, Clone, Default)]
pub struct Reconciled {
    pub moved: Vec<u32>,
    /// Channels with no eligible node to own them.
    pub orphaned: Vec<u32>,
}

/// What readers see; changed only by the one running reconciliation.
#[derive(Debug, Default, Clone)]
struct View {
    /// Owner and epoch of each assigned channel.
    owners: BTreeMap<u32, (i64, u64)>,
    draining: BTreeSet<i64>,
    last_rebalance_ms: u64,
}

/// What only the running reconciliation touches.
#[derive(Debug, Default)]
struct Work {
    /// `(channel, epoch)` whose owner acknowledged `WatchChannel` in this term.
    acknowledged: HashSet<(u32, u64)>,
}

/// gRPC clients of one kind (data nodes, proxies) by address, connected lazily.
#[derive(Debug)]
pub struct Clients<C> {
    clients: Mutex<HashMap<String, C>>,
    connect: fn(Channel) -> C,
    /// How long one call may take.
    timeout: Duration,
}

/// The data nodes' clients.
pub type DataNodeClients = Clients<DataNodeClient<Channel>>;

impl<C: Clone> Clients<C> {
    /// Clients made by `connect` (the generated client's `new`), whose calls
    /// may take a minute.
    pub fn new(connect: fn(Channel) -> C) -> Self {
        Self::with_timeout(connect, Duration::from_secs(60))
    }

    /// Clients whose calls may take `timeout`.
    pub fn with_timeout(connect: fn(Channel) -> C, timeout: Duration) -> Self {
        Self {
            clients: Mutex::new(HashMap::new()),
            connect,
            timeout,
        }
    }

    pub fn get(&self, address: &str) -> Option<C> {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = clients.get(address) {
            return Some(c.clone());
        }
        let endpoint = milvus_like_api::leader_pool::endpoint(address, self.timeout).ok()?;
        let client = (self.connect)(endpoint.connect_lazy());
        clients.insert(address.to_owned(), client.clone());
        Some(client)
    }
}

#[derive(Debug)]
pub struct ChannelManager {
    store: Arc<dyn MetaStore>,
    leadership: Leadership,
    channels: u32,
    balancer: Mutex<Box<dyn Balancer>>,
    balancer_name: String,
    nodes: NodeRegistry,
    clients: Arc<DataNodeClients>,
    loads: Mutex<HashMap<i64, NodeLoad>>,
    handshake: HandshakeConfig,
    /// Readable at any time, even while a move waits for a data node.
    view: std::sync::RwLock<View>,
    /// Serializes reconciliations and drains; commits and readers never take it.
    work: tokio::sync::Mutex<Work>,
    /// `(channel, epoch)` whose owner's load report left the channel out (a
    /// node that gave a channel up when a commit was refused): the next
    /// reconciliation tells it to watch again.
    lost: Mutex<HashSet<(u32, u64)>>,
}

fn decode(kv: &KeyValue) -> Result<ChannelAssignment, MetaError> {
    ChannelAssignment::decode(kv.value.as_slice()).map_err(|e| MetaError::corrupt(&kv.key, e))
}

impl ChannelManager {
    /// Loads ownership for a new term. Refuses a channel count different from the
    /// one the cluster was created with (Kafka partitions cannot be remapped).
    pub async fn load(
        store: Arc<dyn MetaStore>,
        leadership: Leadership,
        channels: u32,
        balancer: Box<dyn Balancer>,
        nodes: NodeRegistry,
        clients: Arc<DataNodeClients>,
        handshake: HandshakeConfig,
    ) -> Result<Self, ChannelError> {
        if channels == 0 {
            return Err(ChannelError::Invalid(
                "the channel count must be at least 1".into(),
            ));
        }
        match store.get(CHANNEL_COUNT_KEY).await? {
            Some(kv) => {
                let stored: u32 = std::str::from_utf8(&kv.value)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| MetaError::corrupt(CHANNEL_COUNT_KEY, "not a number"))?;
                if stored != channels {
                    return Err(ChannelError::CountChanged {
                        stored,
                        wanted: channels,
                    });
                }
            }
            None => {
                let txn = Txn::when([
                    leadership.fence(),
                    Compare::Absent(CHANNEL_COUNT_KEY.into()),
                ])
                .then([Op::put(
                    CHANNEL_COUNT_KEY,
                    channels.to_string().into_bytes(),
                )]);
                if !store.txn(txn).await?.succeeded {
                    return Err(ChannelError::NotLeader);
                }
            }
        }
        let mut view = View::default();
        for kv in store.scan_prefix(CHANNEL_PREFIX).await?.0 {
            let a = decode(&kv)?;
            view.owners.insert(a.channel, (a.node_id, a.epoch));
        }
        for kv in store.scan_prefix(DRAINING_PREFIX).await?.0 {
            if let Some(id) = kv
                .key
                .strip_prefix(DRAINING_PREFIX)
                .and_then(|s| s.parse().ok())
            {
                view.draining.insert(id);
            }
        }
        let balancer_name = balancer.name().to_owned();
        Ok(Self {
            store,
            leadership,
            channels,
            balancer: Mutex::new(balancer),
            balancer_name,
            nodes,
            clients,
            loads: Mutex::new(HashMap::new()),
            handshake,
            view: std::sync::RwLock::new(view),
            work: tokio::sync::Mutex::new(Work::default()),
            lost: Mutex::new(HashSet::new()),
        })
    }

    fn view(&self) -> View {
        self.view.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn update_view(&self, f: impl FnOnce(&mut View)) {
        f(&mut self.view.write().unwrap_or_else(|p| p.into_inner()));
    }

    pub fn channel_count(&self) -> u32 {
        self.channels
    }

    pub fn balancer_name(&self) -> &str {
        &self.balancer_name
    }

    pub fn clients(&self) -> &Arc<DataNodeClients> {
        &self.clients
    }

    /// Keeps a data node's load; `held` are the channels its report lists.
    /// A channel the node owns and left out is lost: the next
    /// [`ChannelManager::reconcile`] sends `WatchChannel` again, with the
    /// committed checkpoint, from which the node reads what it dropped. (A
    /// report made just before a watch was acknowledged costs one more
    /// `WatchChannel`, which the node answers at once: same epoch.)
    pub fn report_load(&self, load: NodeLoad, held: &[u32]) {
        let lost: Vec<(u32, u64)> = self
            .view()
            .owners
            .iter()
            .filter(|(channel, (owner, _))| *owner == load.node_id && !held.contains(channel))
            .map(|(channel, (_, epoch))| (*channel, *epoch))
            .collect();
        self.lost
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(lost);
        self.loads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(load.node_id, load);
    }

    /// The last load a data node reported (zeros before its first report).
    pub fn last_load(&self, node_id: i64) -> NodeLoad {
        self.loads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&node_id)
            .cloned()
            .unwrap_or(NodeLoad {
                node_id,
                ..NodeLoad::default()
            })
    }

    /// Every live data node's last load and the number of channels it owns.
    pub fn node_loads(&self) -> Vec<(NodeLoad, usize)> {
        let owners = self.view().owners;
        self.live_data_nodes()
            .into_keys()
            .map(|id| {
                let channels = owners.values().filter(|(node, _)| *node == id).count();
                (self.last_load(id), channels)
            })
            .collect()
    }

    fn live_data_nodes(&self) -> BTreeMap<i64, NodeInfo> {
        self.nodes
            .nodes_of(Role::DataNode)
            .into_iter()
            .map(|n| (n.node_id, n))
            .collect()
    }

    /// The owner of a channel: node id, epoch and address (if it is alive).
    pub async fn owner(&self, channel: u32) -> Option<(i64, u64, Option<String>)> {
        let (node, epoch) = *self.view().owners.get(&channel)?;
        let address = self.live_data_nodes().get(&node).map(|n| n.address.clone());
        Some((node, epoch, address))
    }

    /// Every channel record as stored (with checkpoints), and per-node channel lists.
    pub async fn distribution(
        &self,
    ) -> Result<(Vec<ChannelAssignment>, Vec<(NodeInfo, Vec<u32>, bool)>, u64), ChannelError> {
        let (kvs, _) = self.store.scan_prefix(CHANNEL_PREFIX).await?;
        let records = kvs.iter().map(decode).collect::<Result<Vec<_>, _>>()?;
        let view = self.view();
        let nodes = self
            .live_data_nodes()
            .into_values()
            .map(|n| {
                let channels = records
                    .iter()
                    .filter(|r| r.node_id == n.node_id)
                    .map(|r| r.channel)
                    .collect();
                let draining = n.stopping || view.draining.contains(&n.node_id);
                (n, channels, draining)
            })
            .collect();
        Ok((records, nodes, view.last_rebalance_ms))
    }

    /// Every channel's checkpoint as stored (zeros for a channel never owned).
    pub async fn checkpoints(&self) -> Result<BTreeMap<u32, ChannelCheckpoint>, ChannelError> {
        let mut out: BTreeMap<u32, ChannelCheckpoint> = (0..self.channels)
            .map(|channel| {
                let zero = ChannelCheckpoint {
                    channel,
                    ..ChannelCheckpoint::default()
                };
                (channel, zero)
            })
            .collect();
        for kv in &self.store.scan_prefix(CHANNEL_PREFIX).await?.0 {
            let a = decode(kv)?;
            if let Some(c) = a.checkpoint {
                out.insert(a.channel, c);
            }
        }
        Ok(out)
    }

    /// Marks nodes as draining (persisted), so they get no channels.
    pub async fn drain(&self, node_ids: &[i64]) -> Result<(), ChannelError> {
        let _work = self.work.lock().await;
        for id in node_ids {
            if self.view().draining.contains(id) {
                continue;
            }
            let txn = Txn::when([self.leadership.fence()])
                .then([Op::put(format!("{DRAINING_PREFIX}{id}"), Vec::new())]);
            if !self.store.txn(txn).await?.succeeded {
                self.leadership.give_up("fenced write failed");
                return Err(ChannelError::NotLeader);
            }
            tracing::info!(node_id = id, "draining data node");
            self.update_view(|v| {
                v.draining.insert(*id);
            });
        }
        Ok(())
    }

    /// Live data node ids, for request validation.
    pub fn live_node_ids(&self) -> BTreeSet<i64> {
        self.live_data_nodes().into_keys().collect()
    }

    /// Brings ownership in line with the balancer's target and makes sure every
    /// owner watches its channels. Safe to call at any time, from anywhere.
    pub async fn reconcile(&self, reason: &str) -> Result<Reconciled, ChannelError> {
        let mut work = self.work.lock().await;
        let lost = std::mem::take(&mut *self.lost.lock().unwrap_or_else(|p| p.into_inner()));
        for watch in lost {
            if work.acknowledged.remove(&watch) {
                tracing::warn!(
                    channel = watch.0,
                    epoch = watch.1,
                    "the owner no longer holds the channel; telling it to watch again"
                );
            }
        }
        let live = self.live_data_nodes();
        // Forget drained nodes whose session is gone.
        let gone: Vec<i64> = self
            .view()
            .draining
            .iter()
            .filter(|id| !live.contains_key(id))
            .copied()
            .collect();
        for id in gone {
            self.store.delete(&format!("{DRAINING_PREFIX}{id}")).await?;
            self.update_view(|v| {
                v.draining.remove(&id);
            });
        }
        let view = self.view();
        let eligible: Vec<NodeLoad> = live
            .values()
            .filter(|n| !n.stopping && !view.draining.contains(&n.node_id))
            .map(|n| self.last_load(n.node_id))
            .collect();
        let target = balancer::target(&self.balancer, self.channels, &view.owners, &eligible);
        let mut out = Reconciled::default();
        for channel in 0..self.channels {
            let Some(&to) = target.get(&channel) else {
                out.orphaned.push(channel);
                continue;
            };
            match view.owners.get(&channel) {
                Some(&(owner, epoch)) if owner == to => {
                    if !work.acknowledged.contains(&(channel, epoch))
                        && self.tell_to_watch(channel, to, epoch, &live).await
                    {
                        work.acknowledged.insert((channel, epoch));
                    }
                }
                _ => {
                    let epoch = self.move_channel(channel, to, &live).await?;
                    self.update_view(|v| {
                        v.owners.insert(channel, (to, epoch));
                        v.last_rebalance_ms = crate::sys::unix_ms();
                    });
                    out.moved.push(channel);
                    if self.tell_to_watch(channel, to, epoch, &live).await {
                        work.acknowledged.insert((channel, epoch));
                    }
                }
            }
        }
        if !out.moved.is_empty() {
            tracing::info!(reason, moved = ?out.moved, balancer = %self.balancer_name, "channels rebalanced");
        }
        if !out.orphaned.is_empty() {
            tracing::warn!(orphaned = ?out.orphaned, "no data node can own these channels");
        }
        Ok(out)
    }

    /// The handshake; returns the new epoch.
    async fn move_channel(
        &self,
        channel: u32,
        to: i64,
        live: &BTreeMap<i64, NodeInfo>,
    ) -> Result<u64, ChannelError> {
        let key = channel_key(channel);
        let (record, _) = self.read(channel).await?;
        if let Some(old) = record.as_ref().filter(|r| r.node_id != to)
            && let Some(node) = live.get(&old.node_id)
        {
            self.release(channel, old, node).await;
        }
        loop {
            // Re-read: the release committed a new checkpoint.
            let (record, revision) = self.read(channel).await?;
            let (epoch, checkpoint) = record.map_or((0, None), |r| (r.epoch, r.checkpoint));
            let next = ChannelAssignment {
                channel,
                node_id: to,
                epoch: epoch + 1,
                checkpoint: Some(checkpoint.unwrap_or(ChannelCheckpoint {
                    channel,
                    ..ChannelCheckpoint::default()
                })),
            };
            let txn = Txn::when([
                self.leadership.fence(),
                Compare::ModRevision(key.clone(), revision),
            ])
            .then([Op::put(key.clone(), next.encode_to_vec())]);
            if self.store.txn(txn).await?.succeeded {
                tracing::info!(
                    channel,
                    node_id = to,
                    epoch = next.epoch,
                    "channel assigned"
                );
                return Ok(next.epoch);
            }
            if !self.leadership.is_valid() {
                return Err(ChannelError::NotLeader);
            }
            // A commit landed in between; try again with the fresh record.
        }
    }

    async fn read(&self, channel: u32) -> Result<(Option<ChannelAssignment>, i64), ChannelError> {
        match self.store.get(&channel_key(channel)).await? {
            None => Ok((None, 0)),
            Some(kv) => Ok((Some(decode(&kv)?), kv.mod_revision)),
        }
    }

    /// Asks the old owner to flush, commit and stop; a failure is logged only: the
    /// epoch increment fences it anyway.
    async fn release(&self, channel: u32, old: &ChannelAssignment, node: &NodeInfo) {
        let Some(mut client) = self.clients.get(&node.address) else {
            return;
        };
        let call = client.release_channel(ReleaseChannelRequest {
            channel,
            epoch: old.epoch,
        });
        match tokio::time::timeout(self.handshake.release_timeout, call).await {
            Ok(Ok(_)) => tracing::info!(
                channel,
                node_id = old.node_id,
                "old owner released the channel"
            ),
            Ok(Err(status)) => {
                tracing::warn!(channel, node_id = old.node_id, %status, "old owner did not release; fencing it by epoch");
            }
            Err(_) => tracing::warn!(
                channel,
                node_id = old.node_id,
                "old owner did not release in time; fencing it by epoch"
            ),
        }
    }

    /// Tells the owner to consume the channel; true when it acknowledged.
    async fn tell_to_watch(
        &self,
        channel: u32,
        node: i64,
        epoch: u64,
        live: &BTreeMap<i64, NodeInfo>,
    ) -> bool {
        let Some(info) = live.get(&node) else {
            return false;
        };
        let Some(mut client) = self.clients.get(&info.address) else {
            return false;
        };
        let checkpoint = match self.read(channel).await {
            Ok((Some(r), _)) if r.epoch == epoch => r.checkpoint,
            _ => return false,
        };
        let call = client.watch_channel(WatchChannelRequest {
            channel,
            epoch,
            checkpoint,
        });
        match tokio::time::timeout(self.handshake.watch_timeout, call).await {
            Ok(Ok(_)) => true,
            Ok(Err(status)) => {
                tracing::warn!(channel, node_id = node, %status, "data node refused to watch the channel; will retry");
                false
            }
            Err(_) => {
                tracing::warn!(
                    channel,
                    node_id = node,
                    "data node did not acknowledge the channel in time; will retry"
                );
                false
            }
        }
    }

    /// Checks that `node` owns `channel` at `epoch`; returns the record's revision
    /// and value for a transaction that commits on top of it.
    pub async fn check_owner(
        &self,
        channel: u32,
        node: i64,
        epoch: u64,
    ) -> Result<(ChannelAssignment, i64), ChannelError> {
        if channel >= self.channels {
            return Err(ChannelError::Invalid(format!(
                "channel {channel} does not exist; channels are 0..{}",
                self.channels
            )));
        }
        match self.read(channel).await? {
            (Some(r), rev) if r.node_id == node && r.epoch == epoch => Ok((r, rev)),
            (Some(r), _) => Err(ChannelError::NotOwner(format!(
                "stale owner: channel {channel} belongs to node {} at epoch {}, not to node {node} at epoch {epoch}",
                r.node_id, r.epoch
            ))),
            (None, _) => Err(ChannelError::NotOwner(format!(
                "channel {channel} has no owner yet"
            ))),
        }
    }
}
