//! The read path's placement: which query node serves each channel, and which
//! collections are loaded.
//!
//! `datacoord/query/channel/{k}` holds a `QueryChannelAssignment` (node, epoch);
//! `datacoord/query/loaded/{id}` marks a loaded collection. The balancer of the
//! data nodes' channels (same strategy, its own instance) picks the query node of
//! each channel. Reads tolerate two nodes serving a channel for a moment, so a
//! move is make-before-break: the new node follows the channel at `epoch + 1` and
//! loads every loaded collection, then the record moves to it in a fenced
//! transaction, then the old node releases the channel. A channel whose node
//! died is unavailable until the new node has loaded it.
//!
//! Each pass compares what every query node reports (`GetDistribution`) with the
//! records and repairs the difference, so a restarted node, a lost call or a new
//! coordinator all converge to the same state.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use milvus_like_api::proto::query_node_client::QueryNodeClient;
use milvus_like_api::proto::{
    NodeInfo, QueryChannelAssignment, QueryChannelOwner, QueryDistributionRequest,
    QueryDistributionResponse, QueryLoadCollectionRequest, QueryReleaseChannelRequest,
    QueryReleaseCollectionRequest, QueryWatchChannelRequest, Role, ShardLeader,
};
use prost::Message;
use tonic::transport::Channel;

use super::balancer::{self, Balancer, NodeLoad};
use super::channels::{ChannelError, Clients};
use crate::election::Leadership;
use crate::meta::{Compare, KeyValue, MetaError, MetaStore, Op, Txn};
use crate::session::NodeRegistry;

const CHANNEL_PREFIX: &str = "datacoord/query/channel/";
const LOADED_PREFIX: &str = "datacoord/query/loaded/";

/// How long a query node may take to answer `GetDistribution` or a release.
const QUICK_CALL: Duration = Duration::from_secs(5);
/// How long a query node may take to follow a channel or load a collection
/// (it reads the collection's files before it answers).
const LOAD_CALL: Duration = Duration::from_secs(120);

pub type QueryNodeClients = Clients<QueryNodeClient<Channel>>;

fn channel_key(channel: u32) -> String {
    format!("{CHANNEL_PREFIX}{channel:05}")
}

fn loaded_key(collection: i64) -> String {
    format!("{LOADED_PREFIX}{collection}")
}

fn decode(kv: &KeyValue) -> Result<QueryChannelAssignment, MetaError> {
    QueryChannelAssignment::decode(kv.value.as_slice()).map_err(|e| MetaError::corrupt(&kv.key, e))
}

/// Result of one pass.
#[derive(Debug, Clone, Default)]
pub struct QueryReconciled {
    pub moved: Vec<u32>,
    /// Channels with no live query node to serve them.
    pub orphaned: Vec<u32>,
    /// What went wrong with which node, for the caller's error message.
    pub problems: Vec<String>,
    /// Collections a node refused to load for lack of memory, with its reason.
    pub refused: Vec<(i64, String)>,
}

#[derive(Debug, Default, Clone)]
struct View {
    /// Query node and epoch of each assigned channel.
    owners: BTreeMap<u32, (i64, u64)>,
    loaded: BTreeSet<i64>,
    /// The collections the owner of each channel reported serving on it, at the
    /// recorded epoch, in the last pass.
    serving: BTreeMap<u32, BTreeSet<i64>>,
}

#[derive(Debug)]
pub struct QueryPlacement {
    store: Arc<dyn MetaStore>,
    leadership: Leadership,
    channels: u32,
    balancer: Mutex<Box<dyn Balancer>>,
    nodes: NodeRegistry,
    clients: Arc<QueryNodeClients>,
    view: RwLock<View>,
    /// Serializes passes.
    work: tokio::sync::Mutex<()>,
}

impl QueryPlacement {
    pub async fn load(
        store: Arc<dyn MetaStore>,
        leadership: Leadership,
        channels: u32,
        balancer: Box<dyn Balancer>,
        nodes: NodeRegistry,
        clients: Arc<QueryNodeClients>,
    ) -> Result<Self, ChannelError> {
        let mut view = View::default();
        for kv in store.scan_prefix(CHANNEL_PREFIX).await?.0 {
            let a = decode(&kv)?;
            view.owners.insert(a.channel, (a.node_id, a.epoch));
        }
        for kv in store.scan_prefix(LOADED_PREFIX).await?.0 {
            let id = kv
                .key
                .strip_prefix(LOADED_PREFIX)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| MetaError::corrupt(&kv.key, "not a collection id"))?;
            view.loaded.insert(id);
        }
        Ok(Self {
            store,
            leadership,
            channels,
            balancer: Mutex::new(balancer),
            nodes,
            clients,
            view: RwLock::new(view),
            work: tokio::sync::Mutex::new(()),
        })
    }

    fn view(&self) -> View {
        self.view.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn update_view(&self, f: impl FnOnce(&mut View)) {
        f(&mut self.view.write().unwrap_or_else(|p| p.into_inner()));
    }

    fn live_query_nodes(&self) -> BTreeMap<i64, NodeInfo> {
        self.nodes
            .nodes_of(Role::QueryNode)
            .into_iter()
            .map(|n| (n.node_id, n))
            .collect()
    }

    /// The loaded collections.
    pub fn loaded(&self) -> Vec<i64> {
        self.view().loaded.into_iter().collect()
    }

    /// Whether any query node is alive to serve reads.
    pub fn has_query_nodes(&self) -> bool {
        self.live_query_nodes().values().any(|n| !n.stopping)
    }

    /// Each assigned channel's query node (with its registered name, empty
    /// when the node is gone), epoch and the collections it serves there.
    pub fn owners(&self) -> Vec<QueryChannelOwner> {
        let view = self.view();
        let live = self.live_query_nodes();
        view.owners
            .iter()
            .map(|(&channel, &(node_id, epoch))| QueryChannelOwner {
                channel,
                node_id,
                name: live
                    .get(&node_id)
                    .map(|n| n.name.clone())
                    .unwrap_or_default(),
                epoch,
                collections: view
                    .serving
                    .get(&channel)
                    .map(|c| c.iter().copied().collect())
                    .unwrap_or_default(),
            })
            .collect()
    }

    /// The query node serving each channel for `collection`; a channel nobody
    /// serves says why in `unavailable`.
    pub fn leaders(&self, collection: i64) -> Result<Vec<ShardLeader>, tonic::Status> {
        let view = self.view();
        if !view.loaded.contains(&collection) {
            return Err(tonic::Status::failed_precondition(format!(
                "collection {collection} is not loaded; load it before searching"
            )));
        }
        let live = self.live_query_nodes();
        let leaders = (0..self.channels)
            .map(|channel| {
                let mut leader = ShardLeader {
                    channel,
                    ..ShardLeader::default()
                };
                let why = match view.owners.get(&channel) {
                    None => Some("has no query node (none is alive)".to_owned()),
                    Some(&(node_id, epoch)) => {
                        leader.node_id = node_id;
                        leader.epoch = epoch;
                        match live.get(&node_id) {
                            None => {
                                Some(format!("lost its query node {node_id}; it is being moved"))
                            }
                            Some(node) => {
                                leader.address.clone_from(&node.address);
                                let serving = view
                                    .serving
                                    .get(&channel)
                                    .is_some_and(|s| s.contains(&collection));
                                (!serving)
                                    .then(|| format!("is still loading on query node {node_id}"))
                            }
                        }
                    }
                };
                if let Some(why) = why {
                    leader.unavailable =
                        format!("channel {channel} of collection {collection} {why}");
                }
                leader
            })
            .collect();
        Ok(leaders)
    }

    /// Marks `collection` loaded (persisted); the next pass loads it everywhere.
    pub async fn mark_loaded(&self, collection: i64) -> Result<(), ChannelError> {
        let _work = self.work.lock().await;
        let txn = Txn::when([self.leadership.fence()])
            .then([Op::put(loaded_key(collection), Vec::new())]);
        if !self.leadership.write(self.store.txn(txn)).await?.succeeded {
            self.leadership.give_up("fenced write failed");
            return Err(ChannelError::NotLeader);
        }
        self.update_view(|v| {
            v.loaded.insert(collection);
        });
        Ok(())
    }

    /// Forgets that `collection` is loaded (persisted); the next pass releases it.
    pub async fn mark_released(&self, collection: i64) -> Result<(), ChannelError> {
        let _work = self.work.lock().await;
        let txn = Txn::when([self.leadership.fence()]).then([Op::Delete(loaded_key(collection))]);
        if !self.leadership.write(self.store.txn(txn)).await?.succeeded {
            self.leadership.give_up("fenced write failed");
            return Err(ChannelError::NotLeader);
        }
        self.update_view(|v| {
            v.loaded.remove(&collection);
            for s in v.serving.values_mut() {
                s.remove(&collection);
            }
        });
        Ok(())
    }

    /// One pass: picks the query node of every channel, makes each node follow
    /// its channels and hold every loaded collection, moves records to nodes that
    /// are ready, and releases what nodes hold but no longer own.
    pub async fn reconcile(&self, reason: &str) -> Result<QueryReconciled, ChannelError> {
        let _work = self.work.lock().await;
        let live = self.live_query_nodes();
        let view = self.view();
        let eligible: Vec<NodeLoad> = live
            .values()
            .filter(|n| !n.stopping)
            .map(|n| NodeLoad {
                node_id: n.node_id,
                ..NodeLoad::default()
            })
            .collect();
        let target = balancer::target(&self.balancer, self.channels, &view.owners, &eligible);
        let mut out = QueryReconciled::default();
        // The epoch each channel is to be followed at by its target node.
        let mut wanted: BTreeMap<i64, BTreeMap<u32, u64>> = BTreeMap::new();
        for channel in 0..self.channels {
            let Some(&to) = target.get(&channel) else {
                out.orphaned.push(channel);
                continue;
            };
            let epoch = match view.owners.get(&channel) {
                Some(&(owner, epoch)) if owner == to => epoch,
                Some(&(_, epoch)) => epoch + 1,
                None => 1,
            };
            wanted.entry(to).or_default().insert(channel, epoch);
        }
        // Make: every node follows its channels and holds the loaded collections.
        let loaded = &view.loaded;
        let syncs = live.values().map(|node| {
            let node_wanted = wanted.remove(&node.node_id).unwrap_or_default();
            async move {
                let result = self.sync_node(node, &node_wanted, loaded).await;
                (node.node_id, node_wanted, result)
            }
        });
        let synced = futures::future::join_all(syncs).await;
        let mut reports: BTreeMap<i64, QueryDistributionResponse> = BTreeMap::new();
        for (node_id, node_wanted, result) in synced {
            match result {
                Ok((report, problems, refused)) => {
                    out.problems.extend(problems);
                    out.refused.extend(refused);
                    // Move the records of the channels this node is ready to serve.
                    for (&channel, &epoch) in &node_wanted {
                        let moving = view.owners.get(&channel) != Some(&(node_id, epoch));
                        if moving && serves_all(&report, channel, epoch, &view.loaded) {
                            self.assign(channel, node_id, epoch).await?;
                            out.moved.push(channel);
                        }
                    }
                    reports.insert(node_id, report);
                }
                Err(problem) => out.problems.push(problem),
            }
        }
        // Break: nodes release what they hold but do not own.
        let owners = self.view().owners;
        for (node_id, report) in &reports {
            for held in &report.channels {
                if owners.get(&held.channel).is_some_and(|(n, _)| n == node_id) {
                    continue;
                }
                if let Some(node) = live.get(node_id) {
                    self.release_channel(node, held.channel, held.epoch).await;
                }
            }
        }
        let serving = owners
            .iter()
            .map(|(&channel, &(node_id, epoch))| {
                let collections = reports
                    .get(&node_id)
                    .and_then(|r| r.channels.iter().find(|c| c.channel == channel))
                    .filter(|c| c.epoch == epoch)
                    .map(|c| c.collections.iter().map(|l| l.collection_id).collect())
                    .unwrap_or_default();
                (channel, collections)
            })
            .collect();
        self.update_view(|v| v.serving = serving);
        if !out.moved.is_empty() {
            tracing::info!(reason, moved = ?out.moved, "query channels moved");
        }
        if !out.orphaned.is_empty() && !view.loaded.is_empty() {
            tracing::warn!(orphaned = ?out.orphaned, "no query node can serve these channels");
        }
        for problem in &out.problems {
            tracing::warn!(reason, "{problem}");
        }
        Ok(out)
    }

    /// Makes `node` follow `wanted` and hold `loaded`; returns what it holds then.
    async fn sync_node(
        &self,
        node: &NodeInfo,
        wanted: &BTreeMap<u32, u64>,
        loaded: &BTreeSet<i64>,
    ) -> Result<(QueryDistributionResponse, Vec<String>, Vec<(i64, String)>), String> {
        let id = node.node_id;
        let mut client = self
            .clients
            .get(&node.address)
            .ok_or_else(|| format!("query node {id} has a bad address {:?}", node.address))?;
        let report = distribution(&mut client, id).await?;
        let mut problems = Vec::new();
        let mut refused = Vec::new();
        let mut changed = false;
        for (&channel, &epoch) in wanted {
            let held = report
                .channels
                .iter()
                .any(|c| c.channel == channel && c.epoch == epoch);
            if held {
                continue;
            }
            changed = true;
            let call = client.watch_channel(QueryWatchChannelRequest { channel, epoch });
            if let Err(e) = bounded(call, LOAD_CALL).await {
                problems.push(format!(
                    "query node {id} did not follow channel {channel}: {}",
                    e.message()
                ));
            }
        }
        for &collection in loaded {
            if report.loaded_collections.contains(&collection) {
                continue;
            }
            changed = true;
            let call = client.load_collection(QueryLoadCollectionRequest {
                collection_id: collection,
            });
            if let Err(e) = bounded(call, LOAD_CALL).await {
                if e.code() == tonic::Code::ResourceExhausted {
                    refused.push((collection, e.message().to_owned()));
                }
                problems.push(format!(
                    "query node {id} did not load collection {collection}: {}",
                    e.message()
                ));
            }
        }
        for &collection in &report.loaded_collections {
            if loaded.contains(&collection) {
                continue;
            }
            changed = true;
            let call = client.release_collection(QueryReleaseCollectionRequest {
                collection_id: collection,
            });
            if let Err(e) = bounded(call, QUICK_CALL).await {
                problems.push(format!(
                    "query node {id} did not release collection {collection}: {}",
                    e.message()
                ));
            }
        }
        let report = if changed {
            distribution(&mut client, id).await?
        } else {
            report
        };
        Ok((report, problems, refused))
    }

    /// Records `node` as the channel's query node at `epoch`, if the record did
    /// not change since this pass read it.
    async fn assign(&self, channel: u32, node_id: i64, epoch: u64) -> Result<(), ChannelError> {
        let key = channel_key(channel);
        let record = QueryChannelAssignment {
            channel,
            node_id,
            epoch,
        };
        let expected = match self.store.get(&key).await? {
            Some(kv) if decode(&kv)?.epoch >= epoch => {
                // Somebody moved it meanwhile (cannot happen within one term).
                return Err(ChannelError::NotLeader);
            }
            Some(kv) => Compare::ModRevision(key.clone(), kv.mod_revision),
            None => Compare::Absent(key.clone()),
        };
        let txn = Txn::when([self.leadership.fence(), expected])
            .then([Op::put(key, record.encode_to_vec())]);
        if !self.leadership.write(self.store.txn(txn)).await?.succeeded {
            self.leadership.give_up("fenced write failed");
            return Err(ChannelError::NotLeader);
        }
        tracing::info!(channel, node_id, epoch, "query channel assigned");
        self.update_view(|v| {
            v.owners.insert(channel, (node_id, epoch));
        });
        Ok(())
    }

    async fn release_channel(&self, node: &NodeInfo, channel: u32, epoch: u64) {
        let Some(mut client) = self.clients.get(&node.address) else {
            return;
        };
        let call = client.release_channel(QueryReleaseChannelRequest { channel, epoch });
        match bounded(call, QUICK_CALL).await {
            Ok(()) => tracing::info!(
                channel,
                node_id = node.node_id,
                "query node released the channel"
            ),
            Err(e) => tracing::warn!(
                channel,
                node_id = node.node_id,
                "query node did not release the channel: {e}"
            ),
        }
    }
}

/// Whether `report` shows `channel` followed at `epoch` with every collection of
/// `loaded` on it.
fn serves_all(
    report: &QueryDistributionResponse,
    channel: u32,
    epoch: u64,
    loaded: &BTreeSet<i64>,
) -> bool {
    report
        .channels
        .iter()
        .find(|c| c.channel == channel && c.epoch == epoch)
        .is_some_and(|c| {
            loaded
                .iter()
                .all(|id| c.collections.iter().any(|l| l.collection_id == *id))
        })
}

async fn distribution(
    client: &mut QueryNodeClient<Channel>,
    id: i64,
) -> Result<QueryDistributionResponse, String> {
    match tokio::time::timeout(
        QUICK_CALL,
        client.get_distribution(QueryDistributionRequest {}),
    )
    .await
    {
        Ok(Ok(r)) => Ok(r.into_inner()),
        Ok(Err(status)) => Err(format!(
            "query node {id} did not report what it holds: {}",
            status.message()
        )),
        Err(_) => Err(format!(
            "query node {id} did not report what it holds within {QUICK_CALL:?}"
        )),
    }
}

/// A call with a deadline, its answer dropped; the error says why it failed.
async fn bounded<T>(
    call: impl std::future::Future<Output = Result<T, tonic::Status>>,
    limit: Duration,
) -> Result<(), tonic::Status> {
    match tokio::time::timeout(limit, call).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(status)) => Err(status),
        Err(_) => Err(tonic::Status::deadline_exceeded(format!(
            "no answer within {limit:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use milvus_like_api::proto::{LoadedCollection, WatchedChannel};

    fn report(channels: &[(u32, u64, &[i64])]) -> QueryDistributionResponse {
        QueryDistributionResponse {
            node_id: 1,
            channels: channels
                .iter()
                .map(|&(channel, epoch, ids)| WatchedChannel {
                    channel,
                    epoch,
                    collections: ids
                        .iter()
                        .map(|&collection_id| LoadedCollection {
                            collection_id,
                            ..LoadedCollection::default()
                        })
                        .collect(),
                })
                .collect(),
            loaded_collections: Vec::new(),
        }
    }

    #[test]
    fn a_channel_moves_only_to_a_node_serving_every_loaded_collection() {
        let loaded: BTreeSet<i64> = [7, 9].into();
        let r = report(&[(0, 2, &[7, 9]), (1, 2, &[7]), (2, 1, &[7, 9])]);
        assert!(serves_all(&r, 0, 2, &loaded));
        assert!(!serves_all(&r, 1, 2, &loaded), "collection 9 still loading");
        assert!(!serves_all(&r, 2, 2, &loaded), "followed at an older epoch");
        assert!(!serves_all(&r, 3, 1, &loaded), "not followed at all");
        assert!(serves_all(&r, 1, 2, &BTreeSet::new()), "nothing to load");
    }
}
