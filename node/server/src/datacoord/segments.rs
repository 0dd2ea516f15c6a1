//! Segments: growing segments per (collection, partition, channel) take row grants;
//! seal policies close them; sealed segments are flushed by the channel's owner
//! once every grant has expired; commits record binlog paths.
//!
//! `datacoord/segment/{collection}/{segment}` holds each `SegmentInfo`. Grants are
//! kept in memory only: a new term seals every growing segment it finds, with a
//! flush point past any grant the previous term could have issued, so grants made
//! before a restart are honoured (their rows land in the sealed segment) and no
//! segment is over-granted.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use milvus_like_api::Timestamp;
use milvus_like_api::proto::{
    ChannelAssignment, ChannelCheckpoint, ChannelRecovery, CommitFlushRequest, CommittedFile,
    DeleteLog, FlushSegmentsRequest, SegmentIdAssignment, SegmentIdRequest, SegmentInfo,
    SegmentState,
};
use milvus_like_api::root_coord_link::RootCoordLink;
use milvus_like_api::schema::CollectionSchema;
use milvus_like_api::settings::defaults;
use prost::Message;
use tokio::sync::Notify;

use super::channels::{ChannelError, ChannelManager, channel_key};
use crate::election::Leadership;
use crate::meta::{Compare, MetaError, MetaStore, Op, Txn};

const SEGMENT_PREFIX: &str = "datacoord/segment/";
/// Most rows one grant may ask for.
pub const MAX_GRANT_ROWS: u32 = 10_000_000;

fn segment_key(collection: i64, segment: i64) -> String {
    format!("{SEGMENT_PREFIX}{collection}/{segment}")
}

const DELETE_LOG_PREFIX: &str = "datacoord/deletelog/";

/// Files no record names any more, each with the unix ms from which it may
/// be deleted.
const GARBAGE_PREFIX: &str = "datacoord/garbage/";

fn garbage_key(path: &str) -> String {
    format!("{GARBAGE_PREFIX}{path}")
}

/// A flushed segment whose insert logs a compaction may rewrite as one file.
#[derive(Debug, Clone)]
pub struct Compactable {
    pub collection: i64,
    pub partition: i64,
    pub segment: i64,
    pub files: Vec<CommittedFile>,
}

/// A committed insert log that may need an index ([`SegmentManager::indexable`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexableFile {
    pub collection: i64,
    pub segment: i64,
    pub path: String,
    /// The index generation its index was built for; `None`: no index yet.
    pub built_for: Option<u64>,
}

/// An index a data node built for an insert log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltIndex {
    pub path: String,
    pub bytes: u64,
    /// The collection's index generation it was built for.
    pub generation: u64,
}

fn delete_log_key(collection: i64, path: &str) -> String {
    format!("{DELETE_LOG_PREFIX}{collection}/{path}")
}

/// When growing segments are sealed, and how long grants live.
#[derive(Debug, Clone)]
pub struct SegmentConfig {
    /// Largest segment; with the schema's row size it gives the row limit.
    pub max_segment_bytes: u64,
    /// Seal once this share of the row limit is granted.
    pub seal_proportion: f64,
    /// Seal a segment this old.
    pub max_lifetime: Duration,
    /// Seal a segment with no grant for this long, if it holds at least `min_idle_seal_bytes`.
    pub max_idle: Duration,
    pub min_idle_seal_bytes: u64,
    /// Seal a segment with this many insert log files.
    pub max_binlog_files: usize,
    /// A grant is void this long after it was made.
    pub grant_lifetime: Duration,
    /// How often an unanswered flush request is repeated.
    pub flush_retry: Duration,
    /// How long files replaced by a compaction stay before they are deleted.
    pub garbage_grace: Duration,
}

impl Default for SegmentConfig {
    fn default() -> Self {
        Self {
            max_segment_bytes: defaults::MAX_SEGMENT_MIB << 20,
            seal_proportion: 0.9,
            max_lifetime: defaults::SEGMENT_MAX_LIFETIME,
            max_idle: defaults::SEGMENT_MAX_IDLE,
            min_idle_seal_bytes: 16 << 20,
            max_binlog_files: 32,
            grant_lifetime: defaults::GRANT_LIFETIME,
            flush_retry: Duration::from_secs(5),
            garbage_grace: defaults::GARBAGE_GRACE,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    #[error("{0}")]
    Channel(#[from] ChannelError),
    /// The request is malformed (no requests, counts or checkpoints out of range).
    #[error("{0}")]
    Invalid(String),
    /// The collection or segment does not exist.
    #[error("{0}")]
    Missing(String),
    /// The stored state does not allow the request (a dropped segment, a missing schema).
    #[error("{0}")]
    WrongState(String),
    /// The records changed while the request was being applied; it may be made again.
    #[error("{0}")]
    Raced(String),
    /// The root coordinator's answer to a call made on the request's behalf.
    #[error("root coordinator: {}", .0.message())]
    RootCoord(tonic::Status),
    #[error(transparent)]
    Meta(#[from] MetaError),
}

#[derive(Debug)]
struct Segment {
    info: SegmentInfo,
    /// Rows granted so far (this term).
    granted_rows: u64,
    /// Latest expiry of any grant.
    last_expire_ts: u64,
    /// Who may still write rows under a grant of this segment, and until when:
    /// proxy node id -> the latest expiry of its grants. [`UNKNOWN_HOLDER`] stands
    /// for grants nobody can be asked about (a caller without a node id, the
    /// previous term's). A proxy that gave its grants back is removed.
    holders: BTreeMap<i64, u64>,
    /// Wall-clock ms of the last grant, for the idle policy.
    last_grant_ms: u64,
    /// Wall-clock ms of the last flush request to the owner.
    flush_requested_ms: u64,
}

impl Segment {
    fn state(&self) -> SegmentState {
        SegmentState::try_from(self.info.state).unwrap_or(SegmentState::Unspecified)
    }
}

/// The records of `collection`'s segments.
fn infos_of(segments: &BTreeMap<i64, Segment>, collection: i64) -> Vec<SegmentInfo> {
    segments
        .values()
        .filter(|s| s.info.collection_id == collection)
        .map(|s| s.info.clone())
        .collect()
}

/// Whether `s` is a flushed segment of at least `min_rows` rows in more than
/// one insert log, each recorded with its rows.
fn is_compactable(s: &Segment, min_rows: u64) -> bool {
    let files = &s.info.insert_logs;
    s.state() == SegmentState::Flushed
        && files.len() > 1
        && files.len() == s.info.insert_log_paths.len()
        && files.iter().map(|f| f.num_rows).sum::<u64>() >= min_rows
}

#[derive(Debug)]
pub struct SegmentManager {
    store: Arc<dyn MetaStore>,
    leadership: Leadership,
    root: Arc<RootCoordLink>,
    channels: Arc<ChannelManager>,
    config: SegmentConfig,
    segments: tokio::sync::Mutex<BTreeMap<i64, Segment>>,
    /// Fires after every commit, for `Flush(wait)`.
    committed: Notify,
    /// Wakes the policy loop early (a flush sealed segments: ask for them now).
    wake: Notify,
    /// What `Flush` asked of each channel, and what its commits reached.
    channel_flushes: std::sync::Mutex<ChannelFlushes>,
}

/// Flushes of whole channels: `Flush` asks every channel to commit everything
/// (deletes included) up to its timestamp, since the collection's deletes may lie
/// on any channel and need no growing segment to be written.
#[derive(Debug, Default)]
struct ChannelFlushes {
    /// channel -> (the flush timestamp wanted, when it was last sent to the
    /// channel's owner in unix ms; 0: not yet).
    wanted: BTreeMap<u32, (u64, u64)>,
    /// channel -> the largest `flushed_ts` committed for it in this term.
    reached: BTreeMap<u32, u64>,
}

impl ChannelFlushes {
    fn want(&mut self, channel: u32, ts: u64) {
        let entry = self.wanted.entry(channel).or_insert((ts, 0));
        if ts > entry.0 {
            *entry = (ts, 0);
        }
    }

    fn reached(&self, channel: u32) -> u64 {
        self.reached.get(&channel).copied().unwrap_or(0)
    }

    fn committed(&mut self, channel: u32, flushed_ts: u64) {
        let reached = self.reached.entry(channel).or_default();
        *reached = (*reached).max(flushed_ts);
        if self.wanted.get(&channel).is_some_and(|w| w.0 <= *reached) {
            self.wanted.remove(&channel);
        }
    }

    /// The channel flushes to send now (never sent, or unanswered for `retry_ms`),
    /// as (channel, timestamp).
    fn due(&self, now_ms: u64, retry_ms: u64) -> Vec<(u32, u64)> {
        self.wanted
            .iter()
            .filter(|(_, (_, sent))| *sent == 0 || now_ms.saturating_sub(*sent) >= retry_ms)
            .map(|(c, (ts, _))| (*c, *ts))
            .collect()
    }

    fn sent(&mut self, channel: u32, now_ms: u64) {
        if let Some(w) = self.wanted.get_mut(&channel) {
            w.1 = now_ms;
        }
    }
}

/// What a `Flush(wait)` still waits for.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pending {
    /// Segments not flushed yet.
    pub segments: Vec<i64>,
    /// Channels whose commits have not reached the flush's timestamp.
    pub channels: Vec<u32>,
}

impl Pending {
    pub fn is_empty(&self) -> bool {
        self.segments.is_empty() && self.channels.is_empty()
    }
}

/// The holder of grants that cannot be given back; they must expire.
pub const UNKNOWN_HOLDER: i64 = 0;

/// When a sealed segment may be flushed, and the timestamp the flush must reach:
/// once every grant has expired (the seal's timestamp, the latest expiry), or
/// earlier, once every holder gave its grants back or let them expire (`now`:
/// every row of the segment was acknowledged before it was issued).
fn flush_ts(seg: &Segment, now: Timestamp) -> Option<u64> {
    if seg.state() != SegmentState::Sealed {
        return None;
    }
    let now = now.as_u64();
    if now > seg.info.sealed_ts {
        Some(seg.info.sealed_ts)
    } else if seg.holders.values().all(|expire| now > *expire) {
        Some(now)
    } else {
        None
    }
}

fn ts_after(ts: Timestamp, d: Duration) -> u64 {
    let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX / 4);
    Timestamp::compose(ts.physical() + ms, 0).map_or(u64::MAX, Timestamp::as_u64)
}

/// Which time-based seal policy, if any, closes a growing segment now: its
/// lifetime, idleness (only once it holds enough to be worth a file), or its
/// number of insert log files. The size policy runs at grant time.
fn time_seal_reason(
    seg: &Segment,
    now: Timestamp,
    now_ms: u64,
    config: &SegmentConfig,
) -> Option<&'static str> {
    let age = Duration::from_millis(
        now.physical()
            .saturating_sub(Timestamp::from_u64(seg.info.created_ts).physical()),
    );
    let idle = Duration::from_millis(now_ms.saturating_sub(seg.last_grant_ms));
    let bytes = seg.granted_rows * (config.max_segment_bytes / seg.info.max_rows.max(1));
    if age >= config.max_lifetime {
        Some("lifetime")
    } else if idle >= config.max_idle && bytes >= config.min_idle_seal_bytes {
        Some("idle")
    } else if seg.info.insert_log_paths.len() >= config.max_binlog_files {
        Some("binlog count")
    } else {
        None
    }
}

/// True when a file tagged `tag` holds only records below checkpoint `c`. A file
/// committed before tags existed (`None`) is below every checkpoint.
fn at_or_below(tag: Option<&ChannelCheckpoint>, c: &ChannelCheckpoint) -> bool {
    tag.is_none_or(|t| {
        t.insert_next_offset <= c.insert_next_offset && t.delete_next_offset <= c.delete_next_offset
    })
}

/// Per channel of `checkpoints`: the segments and delete logs of that channel cut
/// down to the files at or below its checkpoint.
fn recovery(
    checkpoints: &BTreeMap<u32, ChannelCheckpoint>,
    segments: Vec<SegmentInfo>,
    delete_logs: Vec<DeleteLog>,
) -> Vec<ChannelRecovery> {
    let mut out: BTreeMap<u32, ChannelRecovery> = checkpoints
        .iter()
        .map(|(channel, c)| {
            let recovery = ChannelRecovery {
                channel: *channel,
                checkpoint: Some(*c),
                ..ChannelRecovery::default()
            };
            (*channel, recovery)
        })
        .collect();
    for mut seg in segments {
        let Some(r) = out.get_mut(&seg.channel) else {
            continue;
        };
        let c = r.checkpoint.unwrap_or_default();
        let above: BTreeMap<String, u64> = seg
            .insert_logs
            .iter()
            .filter(|f| !at_or_below(f.checkpoint.as_ref(), &c))
            .map(|f| (f.path.clone(), f.num_rows))
            .collect();
        if !above.is_empty() {
            seg.num_rows = seg.num_rows.saturating_sub(above.values().sum());
            seg.insert_logs.retain(|f| !above.contains_key(&f.path));
            seg.insert_log_paths.retain(|p| !above.contains_key(p));
        }
        if !seg.insert_log_paths.is_empty() {
            r.segments.push(seg);
        }
    }
    for log in delete_logs {
        if let Some(r) = out.get_mut(&log.channel)
            && at_or_below(log.checkpoint.as_ref(), &r.checkpoint.unwrap_or_default())
        {
            r.delete_logs.push(log);
        }
    }
    out.into_values().collect()
}

impl SegmentManager {
    /// Loads every segment for a new term and seals the growing ones.
    pub async fn load(
        store: Arc<dyn MetaStore>,
        leadership: Leadership,
        root: Arc<RootCoordLink>,
        channels: Arc<ChannelManager>,
        config: SegmentConfig,
    ) -> Result<Self, SegmentError> {
        let now = root.timestamp().await.map_err(SegmentError::RootCoord)?;
        let mut segments = BTreeMap::new();
        for kv in store.scan_prefix(SEGMENT_PREFIX).await?.0 {
            let info = SegmentInfo::decode(kv.value.as_slice())
                .map_err(|e| MetaError::corrupt(&kv.key, e))?;
            // Grants of the previous term expired by now + their lifetime.
            let expire = ts_after(now, config.grant_lifetime);
            segments.insert(
                info.segment_id,
                Segment {
                    info,
                    granted_rows: 0,
                    last_expire_ts: expire,
                    holders: BTreeMap::from([(UNKNOWN_HOLDER, expire)]),
                    last_grant_ms: crate::sys::unix_ms(),
                    flush_requested_ms: 0,
                },
            );
        }
        let this = Self {
            store,
            leadership,
            root,
            channels,
            config,
            segments: tokio::sync::Mutex::new(segments),
            committed: Notify::new(),
            wake: Notify::new(),
            channel_flushes: std::sync::Mutex::default(),
        };
        {
            let mut segments = this.segments.lock().await;
            let growing: Vec<i64> = segments
                .values()
                .filter(|s| s.state() == SegmentState::Growing)
                .map(|s| s.info.segment_id)
                .collect();
            for id in growing {
                if let Some(seg) = segments.get_mut(&id) {
                    this.seal(seg, "coordinator restart").await?;
                }
            }
        }
        Ok(this)
    }

    async fn persist(&self, infos: &[&SegmentInfo]) -> Result<(), SegmentError> {
        let ops: Vec<Op> = infos
            .iter()
            .map(|i| {
                Op::put(
                    segment_key(i.collection_id, i.segment_id),
                    i.encode_to_vec(),
                )
            })
            .collect();
        self.write_fenced(ops).await
    }

    /// Applies `ops` at once if this coordinator still leads; one that no
    /// longer does gives its term up.
    async fn write_fenced(&self, ops: Vec<Op>) -> Result<(), SegmentError> {
        // A term given up locally may still pass the fence in the store until
        // its lease ends: nothing more is written in it.
        if !self.leadership.is_valid() {
            return Err(ChannelError::NotLeader.into());
        }
        let txn = Txn::when([self.leadership.fence()]).then(ops);
        if !self.leadership.write(self.store.txn(txn)).await?.succeeded {
            self.leadership.give_up("fenced segment write failed");
            return Err(ChannelError::NotLeader.into());
        }
        Ok(())
    }

    async fn seal(&self, seg: &mut Segment, reason: &str) -> Result<(), SegmentError> {
        let mut info = seg.info.clone();
        info.state = SegmentState::Sealed.into();
        info.sealed_ts = seg.last_expire_ts;
        info.seal_reason = reason.to_owned();
        self.persist(&[&info]).await?;
        tracing::info!(
            segment_id = info.segment_id,
            collection_id = info.collection_id,
            channel = info.channel,
            reason,
            "segment sealed"
        );
        seg.info = info;
        Ok(())
    }

    /// Grants rows to `holder` (a proxy's node id, or [`UNKNOWN_HOLDER`]); creates
    /// segments as needed.
    pub async fn assign(
        &self,
        requests: &[SegmentIdRequest],
        holder: i64,
    ) -> Result<Vec<SegmentIdAssignment>, SegmentError> {
        if requests.is_empty() {
            return Err(SegmentError::Invalid("no segment requests".into()));
        }
        let channel_count = self.channels.channel_count();
        let mut plans = Vec::with_capacity(requests.len());
        for r in requests {
            if r.count == 0 || r.count > MAX_GRANT_ROWS {
                return Err(SegmentError::Invalid(format!(
                    "row count {} is out of range 1..={MAX_GRANT_ROWS}",
                    r.count
                )));
            }
            if r.channel >= channel_count {
                return Err(SegmentError::Invalid(format!(
                    "channel {} does not exist; channels are 0..{channel_count}",
                    r.channel
                )));
            }
            let collection = self.root.collection(r.collection_id).await.map_err(|s| {
                if s.code() == tonic::Code::NotFound {
                    SegmentError::Missing(format!("collection {} does not exist", r.collection_id))
                } else {
                    SegmentError::RootCoord(s)
                }
            })?;
            if !collection.partitions.iter().any(|p| p.id == r.partition_id) {
                return Err(SegmentError::Missing(format!(
                    "partition {} does not exist in collection {}",
                    r.partition_id, r.collection_id
                )));
            }
            let schema = collection
                .schema
                .ok_or_else(|| SegmentError::WrongState("the collection has no schema".into()))
                .and_then(|s| {
                    CollectionSchema::try_from(s).map_err(|e| {
                        SegmentError::WrongState(format!("stored schema is invalid: {e}"))
                    })
                })?;
            let max_rows = (self.config.max_segment_bytes / schema.row_bytes()).max(1);
            if u64::from(r.count) > max_rows {
                return Err(SegmentError::Invalid(format!(
                    "row count {} exceeds what one segment holds ({max_rows} rows of {} bytes)",
                    r.count,
                    schema.row_bytes()
                )));
            }
            plans.push((r, max_rows));
        }
        let now = self
            .root
            .timestamp()
            .await
            .map_err(SegmentError::RootCoord)?;
        let expire_ts = ts_after(now, self.config.grant_lifetime);
        let mut segments = self.segments.lock().await;
        let mut out = Vec::with_capacity(plans.len());
        for (r, max_rows) in plans {
            let count = u64::from(r.count);
            let found = segments
                .values()
                .find(|s| {
                    s.state() == SegmentState::Growing
                        && s.info.collection_id == r.collection_id
                        && s.info.partition_id == r.partition_id
                        && s.info.channel == r.channel
                        && s.info.max_rows.saturating_sub(s.granted_rows) >= count
                })
                .map(|s| s.info.segment_id);
            let id = match found {
                Some(id) => id,
                None => {
                    let id = self
                        .root
                        .alloc_id()
                        .await
                        .map_err(SegmentError::RootCoord)?;
                    let info = SegmentInfo {
                        segment_id: id,
                        collection_id: r.collection_id,
                        partition_id: r.partition_id,
                        channel: r.channel,
                        state: SegmentState::Growing.into(),
                        max_rows,
                        created_ts: now.as_u64(),
                        ..SegmentInfo::default()
                    };
                    self.persist(&[&info]).await?;
                    tracing::info!(
                        segment_id = id,
                        collection_id = r.collection_id,
                        channel = r.channel,
                        max_rows,
                        "segment created"
                    );
                    segments.insert(
                        id,
                        Segment {
                            info,
                            granted_rows: 0,
                            last_expire_ts: 0,
                            holders: BTreeMap::new(),
                            last_grant_ms: 0,
                            flush_requested_ms: 0,
                        },
                    );
                    id
                }
            };
            let Some(seg) = segments.get_mut(&id) else {
                continue;
            };
            seg.granted_rows += count;
            seg.last_expire_ts = seg.last_expire_ts.max(expire_ts);
            let held = seg.holders.entry(holder).or_default();
            *held = (*held).max(expire_ts);
            seg.last_grant_ms = crate::sys::unix_ms();
            out.push(SegmentIdAssignment {
                segment_id: id,
                collection_id: r.collection_id,
                partition_id: r.partition_id,
                channel: r.channel,
                count: r.count,
                expire_ts,
            });
            if seg.granted_rows as f64 >= self.config.seal_proportion * seg.info.max_rows as f64 {
                self.seal(seg, "size").await?;
            }
        }
        Ok(out)
    }

    /// Seals the collection's growing segments; returns every segment of it that is
    /// not flushed yet.
    pub async fn seal_collection(&self, collection: i64) -> Result<Vec<i64>, SegmentError> {
        let mut segments = self.segments.lock().await;
        let mut pending = Vec::new();
        for seg in segments
            .values_mut()
            .filter(|s| s.info.collection_id == collection)
        {
            match seg.state() {
                SegmentState::Growing => {
                    self.seal(seg, "flush").await?;
                    pending.push(seg.info.segment_id);
                }
                SegmentState::Sealed | SegmentState::Flushing => pending.push(seg.info.segment_id),
                _ => {}
            }
        }
        self.wake.notify_one();
        Ok(pending)
    }

    fn channel_flushes(&self) -> std::sync::MutexGuard<'_, ChannelFlushes> {
        self.channel_flushes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Asks every channel to commit everything up to now (its deletes too);
    /// returns the timestamp [`SegmentManager::wait_flushed`] waits for.
    pub async fn flush_channels(&self) -> Result<u64, SegmentError> {
        let now = self
            .root
            .timestamp()
            .await
            .map_err(SegmentError::RootCoord)?
            .as_u64();
        {
            let mut flushes = self.channel_flushes();
            for channel in 0..self.channels.channel_count() {
                flushes.want(channel, now);
            }
        }
        self.wake.notify_one();
        Ok(now)
    }

    /// The sealed segments each proxy still holds grants of (unexpired or not),
    /// to ask it to give them back.
    pub async fn grants_to_release(&self) -> BTreeMap<i64, Vec<i64>> {
        let segments = self.segments.lock().await;
        let mut out: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
        for seg in segments
            .values()
            .filter(|s| s.state() == SegmentState::Sealed)
        {
            for holder in seg.holders.keys().filter(|h| **h != UNKNOWN_HOLDER) {
                out.entry(*holder).or_default().push(seg.info.segment_id);
            }
        }
        out
    }

    /// `holder` will write no more rows to `segment_ids` (every insert that used
    /// them is acknowledged or failed). The next [`SegmentManager::tick`] may
    /// flush them.
    pub async fn grants_released(&self, holder: i64, segment_ids: &[i64]) {
        let mut segments = self.segments.lock().await;
        for id in segment_ids {
            if let Some(seg) = segments.get_mut(id)
                && seg.state() == SegmentState::Sealed
            {
                seg.holders.remove(&holder);
            }
        }
    }

    /// Resolves when a pass of [`SegmentManager::tick`] is wanted before its period.
    pub async fn woken(&self) {
        self.wake.notified().await;
    }

    /// Waits until all `ids` are flushed and every channel's commits reached
    /// `through` ([`SegmentManager::flush_channels`]), or `deadline` passes;
    /// returns what is still pending.
    pub async fn wait_flushed(&self, ids: &[i64], through: u64, deadline: Duration) -> Pending {
        let give_up = tokio::time::Instant::now() + deadline;
        loop {
            let notified = self.committed.notified();
            let segments: Vec<i64> = {
                let segments = self.segments.lock().await;
                ids.iter()
                    .copied()
                    .filter(|id| {
                        segments.get(id).is_some_and(|s| {
                            s.state() != SegmentState::Flushed && s.state() != SegmentState::Dropped
                        })
                    })
                    .collect()
            };
            let channels = {
                let flushes = self.channel_flushes();
                (0..self.channels.channel_count())
                    .filter(|c| flushes.reached(*c) < through)
                    .collect()
            };
            let pending = Pending { segments, channels };
            if pending.is_empty() || tokio::time::Instant::now() >= give_up {
                return pending;
            }
            let _ = tokio::time::timeout_at(give_up, notified).await;
        }
    }

    /// Every committed delete log of the collection.
    pub async fn delete_logs(&self, collection: i64) -> Result<Vec<DeleteLog>, SegmentError> {
        let (kvs, _) = self
            .store
            .scan_prefix(&format!("{DELETE_LOG_PREFIX}{collection}/"))
            .await?;
        kvs.iter()
            .map(|kv| {
                DeleteLog::decode(kv.value.as_slice())
                    .map_err(|e| MetaError::corrupt(&kv.key, e).into())
            })
            .collect()
    }

    pub async fn list(&self, collection: i64) -> Vec<SegmentInfo> {
        infos_of(&*self.segments.lock().await, collection)
    }

    /// Committed insert logs of at least `min_rows` rows, of segments that
    /// are not dropped, each with the index generation its index was built
    /// for (none: no index yet): what may need an index (built again).
    pub async fn indexable(&self, min_rows: u64) -> Vec<IndexableFile> {
        self.segments
            .lock()
            .await
            .values()
            .filter(|s| s.state() != SegmentState::Dropped)
            .flat_map(|s| {
                s.info
                    .insert_logs
                    .iter()
                    .filter(|f| f.num_rows >= min_rows)
                    .map(|f| IndexableFile {
                        collection: s.info.collection_id,
                        segment: s.info.segment_id,
                        path: f.path.clone(),
                        built_for: (!f.index_path.is_empty()).then_some(f.index_generation),
                    })
            })
            .collect()
    }

    /// Flushed segments of at least `min_rows` rows in more than one insert log
    /// (each recorded with its rows), whose files a compaction may rewrite as
    /// one with one index.
    pub async fn compactable(&self, min_rows: u64) -> Vec<Compactable> {
        self.segments
            .lock()
            .await
            .values()
            .filter(|s| is_compactable(s, min_rows))
            .map(|s| Compactable {
                collection: s.info.collection_id,
                partition: s.info.partition_id,
                segment: s.info.segment_id,
                files: s.info.insert_logs.clone(),
            })
            .collect()
    }

    /// Records `file` (one insert log with its index, written by a compaction)
    /// in place of the segment's insert logs `replaced`, in one fenced write
    /// that also marks the replaced files (and their indexes) as garbage to
    /// delete after `garbage_grace`. False when the segment changed meanwhile
    /// (dropped, or a late file added): nothing is recorded then.
    pub async fn record_compaction(
        &self,
        segment_id: i64,
        replaced: &[CommittedFile],
        mut file: CommittedFile,
    ) -> Result<bool, SegmentError> {
        let mut segments = self.segments.lock().await;
        let Some(seg) = segments.get_mut(&segment_id) else {
            return Ok(false);
        };
        let same = |a: &[CommittedFile]| {
            a.len() == replaced.len() && a.iter().zip(replaced).all(|(x, y)| x.path == y.path)
        };
        if seg.state() == SegmentState::Dropped
            || !same(&seg.info.insert_logs)
            || seg.info.insert_log_paths.len() != replaced.len()
        {
            return Ok(false);
        }
        let rows: u64 = replaced.iter().map(|f| f.num_rows).sum();
        if file.num_rows != rows {
            return Err(SegmentError::Invalid(format!(
                "segment {segment_id}: the compacted file holds {} rows, the files it replaces {rows}",
                file.num_rows
            )));
        }
        // The new file holds the records of the files it replaces: it carries
        // the newest of their tags.
        file.checkpoint = replaced
            .iter()
            .filter_map(|f| f.checkpoint)
            .max_by_key(|c| (c.insert_next_offset, c.delete_next_offset));
        let mut info = seg.info.clone();
        info.replaced_insert_log_paths
            .extend(replaced.iter().map(|f| f.path.clone()));
        info.insert_log_paths = vec![file.path.clone()];
        info.insert_logs = vec![file];
        let mut ops = vec![Op::put(
            segment_key(info.collection_id, info.segment_id),
            info.encode_to_vec(),
        )];
        ops.extend(
            self.garbage_ops(
                replaced
                    .iter()
                    .flat_map(|f| [&f.path, &f.index_path])
                    .filter(|p| !p.is_empty()),
            ),
        );
        self.write_fenced(ops).await?;
        seg.info = info;
        Ok(true)
    }

    /// Marks `paths` (files no record names) for deletion after `garbage_grace`.
    pub async fn add_garbage(&self, paths: &[String]) -> Result<(), SegmentError> {
        let ops = self.garbage_ops(paths).collect();
        self.write_fenced(ops).await
    }

    /// The writes that mark `paths` as garbage, deletable `garbage_grace` from now.
    fn garbage_ops<'a>(
        &self,
        paths: impl IntoIterator<Item = &'a String>,
    ) -> impl Iterator<Item = Op> {
        let due = crate::sys::unix_ms() + self.config.garbage_grace.as_millis() as u64;
        paths
            .into_iter()
            .map(move |p| Op::put(garbage_key(p), due.to_string()))
    }

    /// Up to `limit` garbage files whose grace has passed at `now_ms`. A file
    /// that a segment names (marked by a write whose outcome was unknown) is
    /// never garbage: its entry is dropped instead.
    pub async fn due_garbage(
        &self,
        now_ms: u64,
        limit: usize,
    ) -> Result<Vec<String>, SegmentError> {
        let (kvs, _) = self.store.scan_prefix(GARBAGE_PREFIX).await?;
        let due: Vec<String> = kvs
            .iter()
            .filter(|kv| {
                // An unreadable deadline is treated as due: the file is garbage either way.
                std::str::from_utf8(&kv.value)
                    .ok()
                    .and_then(|v| v.parse::<u64>().ok())
                    .is_none_or(|due| due <= now_ms)
            })
            .filter_map(|kv| kv.key.strip_prefix(GARBAGE_PREFIX).map(str::to_owned))
            .take(limit)
            .collect();
        let (named, due): (Vec<String>, Vec<String>) = {
            let segments = self.segments.lock().await;
            due.into_iter().partition(|path| {
                segments.values().any(|s| {
                    s.info.insert_log_paths.contains(path)
                        || s.info.insert_logs.iter().any(|f| f.index_path == *path)
                })
            })
        };
        if !named.is_empty() {
            tracing::warn!(
                ?named,
                "files marked as garbage are still named by a segment; keeping them"
            );
            self.garbage_deleted(&named).await?;
        }
        Ok(due)
    }

    /// Forgets garbage files (deleted, or not garbage after all).
    pub async fn garbage_deleted(&self, paths: &[String]) -> Result<(), SegmentError> {
        let ops: Vec<Op> = paths.iter().map(|p| Op::Delete(garbage_key(p))).collect();
        self.write_fenced(ops).await
    }

    /// Records the index of a committed insert log; false when the segment or
    /// the file is gone (dropped meanwhile). An index of another generation
    /// it replaces becomes garbage.
    pub async fn record_index(
        &self,
        segment_id: i64,
        insert_log: &str,
        index: &BuiltIndex,
    ) -> Result<bool, SegmentError> {
        let mut segments = self.segments.lock().await;
        let Some(seg) = segments.get_mut(&segment_id) else {
            return Ok(false);
        };
        let mut info = seg.info.clone();
        let Some(file) = info.insert_logs.iter_mut().find(|f| f.path == insert_log) else {
            return Ok(false);
        };
        if !file.index_path.is_empty() && index.generation < file.index_generation {
            // A slow build of an earlier generation: the newer index stays.
            drop(segments);
            self.add_garbage(std::slice::from_ref(&index.path)).await?;
            return Ok(false);
        }
        // An index of an earlier generation it replaces is garbage now.
        let replaced: Vec<String> =
            Some(std::mem::replace(&mut file.index_path, index.path.clone()))
                .filter(|old| !old.is_empty() && *old != index.path)
                .into_iter()
                .collect();
        file.index_bytes = index.bytes;
        file.index_generation = index.generation;
        let mut ops = vec![Op::put(
            segment_key(info.collection_id, info.segment_id),
            info.encode_to_vec(),
        )];
        ops.extend(self.garbage_ops(&replaced));
        self.write_fenced(ops).await?;
        seg.info = info;
        Ok(true)
    }

    /// Per channel, its checkpoint and exactly the collection's files that hold
    /// the records below it.
    pub async fn recovery_info(
        &self,
        collection: i64,
    ) -> Result<Vec<ChannelRecovery>, SegmentError> {
        // Checkpoints first. A commit holds the segments across its write, so the
        // listing below sees every file committed up to these checkpoints; files of
        // later commits are tagged above them and left out.
        // The segments are held across reading the checkpoints too: a
        // compaction recorded in between would otherwise show its file, tagged
        // above a checkpoint read before the last commit it covers, and hide
        // the files it replaced.
        let held = self.segments.lock().await;
        let checkpoints = self.channels.checkpoints().await?;
        let segments = infos_of(&held, collection);
        drop(held);
        let delete_logs = self.delete_logs(collection).await?;
        Ok(recovery(&checkpoints, segments, delete_logs))
    }

    /// Applies the time-based seal policies and asks owners to flush sealed
    /// segments whose grants have all expired.
    pub async fn tick(&self) -> Result<(), SegmentError> {
        let now = self
            .root
            .timestamp()
            .await
            .map_err(SegmentError::RootCoord)?;
        let now_ms = crate::sys::unix_ms();
        let mut segments = self.segments.lock().await;
        for seg in segments.values_mut() {
            if seg.state() != SegmentState::Growing {
                continue;
            }
            let reason = time_seal_reason(seg, now, now_ms, &self.config);
            if let Some(reason) = reason {
                self.seal(seg, reason).await?;
            }
        }
        // Flush requests, grouped per channel.
        let retry_ms = u64::try_from(self.config.flush_retry.as_millis()).unwrap_or(u64::MAX);
        let mut due: BTreeMap<u32, Vec<i64>> = BTreeMap::new();
        let mut channel_ts: BTreeMap<u32, u64> = BTreeMap::new();
        for seg in segments.values_mut() {
            let state = seg.state();
            let ready = match flush_ts(seg, now) {
                Some(ts) => {
                    // Given back early: the flush need only reach `now`.
                    seg.info.sealed_ts = ts;
                    true
                }
                None => false,
            };
            if state == SegmentState::Sealed && !ready {
                tracing::debug!(segment_id = seg.info.segment_id, now = %now, sealed_ts = %Timestamp::from_u64(seg.info.sealed_ts), holders = ?seg.holders, "sealed segment waits for its grants to be given back or expire");
            }
            let retry = state == SegmentState::Flushing
                && now_ms.saturating_sub(seg.flush_requested_ms) >= retry_ms;
            if ready || retry {
                due.entry(seg.info.channel)
                    .or_default()
                    .push(seg.info.segment_id);
                let ts = channel_ts.entry(seg.info.channel).or_default();
                *ts = (*ts).max(seg.info.sealed_ts);
            }
        }
        for (channel, wanted) in self.channel_flushes().due(now_ms, retry_ms) {
            due.entry(channel).or_default();
            let ts = channel_ts.entry(channel).or_default();
            *ts = (*ts).max(wanted);
        }
        let mut requests = Vec::new();
        for (channel, ids) in due {
            let Some((_, epoch, Some(address))) = self.channels.owner(channel).await else {
                // No live owner: the segments wait for the next one.
                tracing::debug!(channel, segments = ?ids, "sealed segments due, but the channel has no live owner");
                continue;
            };
            // Mark flushing first, so a restart re-asks rather than forgets.
            let mut infos = Vec::new();
            for id in &ids {
                if let Some(seg) = segments.get_mut(id)
                    && seg.state() == SegmentState::Sealed
                {
                    seg.info.state = SegmentState::Flushing.into();
                    infos.push(seg.info.clone());
                }
            }
            if !infos.is_empty() {
                self.persist(&infos.iter().collect::<Vec<_>>()).await?;
            }
            for id in &ids {
                if let Some(seg) = segments.get_mut(id) {
                    seg.flush_requested_ms = now_ms;
                }
            }
            self.channel_flushes().sent(channel, now_ms);
            let flush_ts = channel_ts.get(&channel).copied().unwrap_or_default();
            requests.push((
                address,
                FlushSegmentsRequest {
                    channel,
                    epoch,
                    segment_ids: ids,
                    flush_ts,
                },
            ));
        }
        // The data node may commit while answering: do not hold the segments then.
        drop(segments);
        for (address, request) in requests {
            let Some(mut client) = self.channels.clients().get(&address) else {
                continue;
            };
            let (channel, ids) = (request.channel, request.segment_ids.clone());
            match tokio::time::timeout(Duration::from_secs(5), client.flush_segments(request)).await
            {
                Ok(Ok(_)) => tracing::info!(channel, segments = ?ids, "flush requested"),
                Ok(Err(status)) => {
                    tracing::warn!(channel, %status, "flush request refused; will retry")
                }
                Err(_) => tracing::warn!(channel, "flush request timed out; will retry"),
            }
        }
        Ok(())
    }

    /// A data node's flush: binlog paths, row counts, completed segments and the new
    /// checkpoint, in one transaction that checks the node still owns the channel at
    /// its epoch.
    pub async fn commit_flush(&self, req: &CommitFlushRequest) -> Result<(), SegmentError> {
        let checkpoint = req
            .checkpoint
            .ok_or_else(|| SegmentError::Invalid("the commit carries no checkpoint".into()))?;
        if checkpoint.channel != req.channel {
            return Err(SegmentError::Invalid(format!(
                "checkpoint of channel {} sent for channel {}",
                checkpoint.channel, req.channel
            )));
        }
        let (record, revision) = self
            .channels
            .check_owner(req.channel, req.node_id, req.epoch)
            .await?;
        // Never move the checkpoint back (a retried, older commit).
        let current = record.checkpoint.unwrap_or_default();
        let next = ChannelAssignment {
            checkpoint: Some(ChannelCheckpoint {
                channel: req.channel,
                insert_next_offset: checkpoint
                    .insert_next_offset
                    .max(current.insert_next_offset),
                delete_next_offset: checkpoint
                    .delete_next_offset
                    .max(current.delete_next_offset),
                timestamp: checkpoint.timestamp.max(current.timestamp),
                flushed_ts: checkpoint.flushed_ts.max(current.flushed_ts),
            }),
            ..record
        };
        // Files are tagged with the checkpoint this commit stores.
        let tag = next.checkpoint;
        let mut segments = self.segments.lock().await;
        let mut updated: BTreeMap<i64, SegmentInfo> = BTreeMap::new();
        for b in &req.segments {
            let seg = segments.get(&b.segment_id).ok_or_else(|| {
                SegmentError::Missing(format!("segment {} does not exist", b.segment_id))
            })?;
            if seg.info.channel != req.channel {
                return Err(SegmentError::Invalid(format!(
                    "segment {} belongs to channel {}, not {}",
                    b.segment_id, seg.info.channel, req.channel
                )));
            }
            if b.insert_log_paths.len() > 1 {
                return Err(SegmentError::Invalid(format!(
                    "segment {}: a commit records one insert log per segment, with its rows",
                    b.segment_id
                )));
            }
            let info = updated
                .entry(b.segment_id)
                .or_insert_with(|| seg.info.clone());
            if info.state() == SegmentState::Dropped {
                return Err(SegmentError::WrongState(format!(
                    "segment {} is dropped",
                    b.segment_id
                )));
            }
            // A retried commit (its answer was lost) must not count files twice.
            let known = b
                .insert_log_paths
                .iter()
                .chain(&b.delete_log_paths)
                .filter(|p| {
                    info.insert_log_paths.contains(p)
                        || info.delete_log_paths.contains(p)
                        || info.replaced_insert_log_paths.contains(p)
                })
                .count();
            if known > 0 {
                if known == b.insert_log_paths.len() + b.delete_log_paths.len() {
                    continue;
                }
                return Err(SegmentError::Invalid(format!(
                    "segment {}: some of these files are already committed and some are not",
                    b.segment_id
                )));
            }
            if info.state() == SegmentState::Flushed {
                tracing::warn!(
                    segment_id = b.segment_id,
                    rows = b.num_rows,
                    "late rows for a flushed segment; adding them as another file"
                );
            }
            info.num_rows += b.num_rows;
            info.insert_log_paths
                .extend(b.insert_log_paths.iter().cloned());
            info.insert_logs
                .extend(b.insert_log_paths.iter().map(|path| CommittedFile {
                    path: path.clone(),
                    num_rows: b.num_rows,
                    checkpoint: tag,
                    ..CommittedFile::default()
                }));
            info.delete_log_paths
                .extend(b.delete_log_paths.iter().cloned());
        }
        for id in &req.flushed_segment_ids {
            let seg = segments
                .get(id)
                .ok_or_else(|| SegmentError::Missing(format!("segment {id} does not exist")))?;
            if seg.info.channel != req.channel {
                return Err(SegmentError::Invalid(format!(
                    "segment {id} belongs to channel {}, not {}",
                    seg.info.channel, req.channel
                )));
            }
            let info = updated.entry(*id).or_insert_with(|| seg.info.clone());
            if info.state() == SegmentState::Flushed {
                continue; // completed already: a retried commit
            }
            if !matches!(info.state(), SegmentState::Sealed | SegmentState::Flushing) {
                return Err(SegmentError::WrongState(format!(
                    "segment {id} is {}; only sealed segments can be completed",
                    info.state().as_str_name()
                )));
            }
            info.state = SegmentState::Flushed.into();
        }
        let key = channel_key(req.channel);
        let mut ops = vec![Op::put(key.clone(), next.encode_to_vec())];
        for log in &req.delete_logs {
            if log.path.is_empty() || log.channel != req.channel {
                return Err(SegmentError::Invalid(format!(
                    "delete log {:?} of channel {} sent for channel {}",
                    log.path, log.channel, req.channel
                )));
            }
            // Keyed by path; a retried commit keeps the file's first tag.
            let log_key = delete_log_key(log.collection_id, &log.path);
            if self.store.get(&log_key).await?.is_some() {
                continue;
            }
            let log = DeleteLog {
                checkpoint: tag,
                ..log.clone()
            };
            ops.push(Op::put(log_key, log.encode_to_vec()));
        }
        ops.extend(updated.values().map(|i| {
            Op::put(
                segment_key(i.collection_id, i.segment_id),
                i.encode_to_vec(),
            )
        }));
        let txn =
            Txn::when([self.leadership.fence(), Compare::ModRevision(key, revision)]).then(ops);
        // The in-memory segments must never fall behind what this term wrote: the
        // next commit of these segments starts from them.
        if !self.leadership.write(self.store.txn(txn)).await?.succeeded {
            if !self.leadership.is_valid() {
                return Err(ChannelError::NotLeader.into());
            }
            // The record changed between the check and the commit: ownership moved.
            self.channels
                .check_owner(req.channel, req.node_id, req.epoch)
                .await?;
            return Err(SegmentError::Raced(
                "the channel record changed during the commit; retry".into(),
            ));
        }
        for (id, info) in updated {
            if let Some(seg) = segments.get_mut(&id) {
                seg.info = info;
            }
        }
        drop(segments);
        self.channel_flushes()
            .committed(req.channel, checkpoint.flushed_ts);
        self.committed.notify_waiters();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_764_000_000_000;

    fn segment(created_ms: u64, last_grant_ms: u64, granted_rows: u64, files: usize) -> Segment {
        Segment {
            info: SegmentInfo {
                state: SegmentState::Growing.into(),
                max_rows: 1000,
                created_ts: Timestamp::compose(created_ms, 0).expect("ts").as_u64(),
                insert_log_paths: vec![String::new(); files],
                ..SegmentInfo::default()
            },
            granted_rows,
            last_expire_ts: 0,
            holders: BTreeMap::new(),
            last_grant_ms,
            flush_requested_ms: 0,
        }
    }

    fn ts(ms: u64) -> Timestamp {
        Timestamp::compose(ms, 0).expect("ts")
    }

    #[test]
    fn a_sealed_segment_flushes_once_every_grant_is_given_back_or_expired() {
        let mut seg = segment(T0, T0, 10, 0);
        seg.info.sealed_ts = ts(T0 + 2000).as_u64();
        seg.holders = BTreeMap::from([(7, ts(T0 + 1500).as_u64()), (8, ts(T0 + 2000).as_u64())]);
        // Growing segments are never flushed by this rule.
        assert_eq!(flush_ts(&seg, ts(T0 + 5000)), None);
        seg.info.state = SegmentState::Sealed.into();
        assert_eq!(flush_ts(&seg, ts(T0 + 100)), None);
        // Proxy 8 gave its grants back; proxy 7's still run.
        seg.holders.remove(&8);
        assert_eq!(flush_ts(&seg, ts(T0 + 100)), None);
        // Proxy 7's expired: flush up to now, before the seal's timestamp.
        assert_eq!(flush_ts(&seg, ts(T0 + 1501)), Some(ts(T0 + 1501).as_u64()));
        // Grants nobody can give back keep the segment until they expire.
        seg.holders = BTreeMap::from([(UNKNOWN_HOLDER, ts(T0 + 2000).as_u64())]);
        assert_eq!(flush_ts(&seg, ts(T0 + 1999)), None);
        assert_eq!(flush_ts(&seg, ts(T0 + 2001)), Some(ts(T0 + 2000).as_u64()));
        // Everyone gave back: at once.
        seg.holders.clear();
        assert_eq!(flush_ts(&seg, ts(T0 + 1)), Some(ts(T0 + 1).as_u64()));
    }

    #[test]
    fn only_flushed_segments_of_several_recorded_files_are_compacted() {
        let file = |rows| CommittedFile {
            path: format!("f{rows}"),
            num_rows: rows,
            ..CommittedFile::default()
        };
        let mut seg = segment(T0, T0, 0, 0);
        seg.info.insert_logs = vec![file(600), file(500)];
        seg.info.insert_log_paths = vec!["f600".into(), "f500".into()];
        // Growing or sealed: more files may come.
        assert!(!is_compactable(&seg, 1024));
        seg.info.state = SegmentState::Sealed.into();
        assert!(!is_compactable(&seg, 1024));
        seg.info.state = SegmentState::Flushed.into();
        assert!(is_compactable(&seg, 1024));
        // Too few rows to index.
        assert!(!is_compactable(&seg, 2000));
        // A file recorded before files carried their rows.
        seg.info.insert_log_paths.push("old".into());
        assert!(!is_compactable(&seg, 1024));
        // One file: nothing to merge.
        seg.info.insert_logs = vec![file(5000)];
        seg.info.insert_log_paths = vec!["f5000".into()];
        assert!(!is_compactable(&seg, 1024));
        seg.info.insert_logs = vec![file(600), file(500)];
        seg.info.insert_log_paths = vec!["f600".into(), "f500".into()];
        seg.info.state = SegmentState::Dropped.into();
        assert!(!is_compactable(&seg, 1024));
    }

    #[test]
    fn time_based_seal_policies() {
        let config = SegmentConfig {
            max_segment_bytes: 1000 * 1000, // 1000 bytes a row
            max_lifetime: Duration::from_secs(3600),
            max_idle: Duration::from_secs(60),
            min_idle_seal_bytes: 100 * 1000,
            max_binlog_files: 4,
            ..SegmentConfig::default()
        };
        let now = Timestamp::compose(T0, 0).expect("ts");
        let reason = |s: &Segment| time_seal_reason(s, now, T0, &config);
        // Young, busy, few files: stays growing.
        assert_eq!(reason(&segment(T0 - 1000, T0 - 10, 500, 1)), None);
        assert_eq!(
            reason(&segment(T0 - 3_600_000, T0, 500, 1)),
            Some("lifetime")
        );
        // Idle, and big enough to be worth sealing.
        assert_eq!(
            reason(&segment(T0 - 1000, T0 - 61_000, 100, 0)),
            Some("idle")
        );
        // Idle but nearly empty: keep it open for more rows.
        assert_eq!(reason(&segment(T0 - 1000, T0 - 61_000, 99, 0)), None);
        assert_eq!(reason(&segment(T0 - 1000, T0, 10, 4)), Some("binlog count"));
    }

    #[test]
    fn a_channel_flush_is_sent_until_a_commit_reaches_it_and_resent_when_unanswered() {
        let mut f = ChannelFlushes::default();
        f.want(0, 100);
        f.want(1, 100);
        assert_eq!(f.due(T0, 5000), vec![(0, 100), (1, 100)]);
        f.sent(0, T0);
        f.sent(1, T0);
        assert_eq!(f.due(T0 + 4999, 5000), vec![]);
        // A commit below the wanted timestamp does not satisfy it.
        f.committed(0, 99);
        f.committed(1, 150);
        assert_eq!(f.reached(0), 99);
        assert_eq!(f.due(T0 + 5000, 5000), vec![(0, 100)]);
        // A later Flush wants more and is sent at once; an older one changes nothing.
        f.want(1, 200);
        f.want(0, 50);
        assert_eq!(f.due(T0 + 1, 5000), vec![(1, 200)]);
        f.committed(0, 100);
        f.committed(1, 120);
        assert_eq!(f.reached(1), 150, "never moves back");
        assert!(!f.wanted.contains_key(&0));
    }

    fn at(channel: u32, offset: i64) -> ChannelCheckpoint {
        ChannelCheckpoint {
            channel,
            insert_next_offset: offset,
            delete_next_offset: offset / 2,
            ..ChannelCheckpoint::default()
        }
    }

    #[test]
    fn recovery_keeps_exactly_the_files_at_or_below_each_channel_checkpoint() {
        let file = |path: &str, rows, tag: Option<ChannelCheckpoint>| CommittedFile {
            path: path.into(),
            num_rows: rows,
            checkpoint: tag,
            ..CommittedFile::default()
        };
        // Channel 0 at offset 20: a file from before tags (5 rows), one tagged 10,
        // one tagged exactly 20, one committed after the checkpoint was read (30).
        let seg = SegmentInfo {
            segment_id: 1,
            channel: 0,
            num_rows: 5 + 10 + 20 + 30,
            insert_log_paths: vec!["old".into(), "a".into(), "b".into(), "c".into()],
            insert_logs: vec![
                file("a", 10, Some(at(0, 10))),
                file("b", 20, Some(at(0, 20))),
                file("c", 30, Some(at(0, 30))),
            ],
            ..SegmentInfo::default()
        };
        // A segment whose only file is above: not listed at all.
        let later = SegmentInfo {
            segment_id: 2,
            channel: 0,
            num_rows: 7,
            insert_log_paths: vec!["d".into()],
            insert_logs: vec![file("d", 7, Some(at(0, 25)))],
            ..SegmentInfo::default()
        };
        // The insert offset alone is not enough: the delete offset is above.
        let deletes_ahead = ChannelCheckpoint {
            delete_next_offset: 11,
            ..at(0, 20)
        };
        let also_later = SegmentInfo {
            segment_id: 3,
            channel: 0,
            num_rows: 1,
            insert_log_paths: vec!["e".into()],
            insert_logs: vec![file("e", 1, Some(deletes_ahead))],
            ..SegmentInfo::default()
        };
        let delete_log = |path: &str, channel, tag| DeleteLog {
            channel,
            path: path.into(),
            checkpoint: tag,
            ..DeleteLog::default()
        };
        let checkpoints = BTreeMap::from([(0, at(0, 20)), (1, at(1, 0))]);
        let out = recovery(
            &checkpoints,
            vec![seg, later, also_later],
            vec![
                delete_log("x", 0, None),
                delete_log("y", 0, Some(at(0, 20))),
                delete_log("z", 0, Some(at(0, 22))),
                delete_log("w", 1, Some(at(1, 2))),
            ],
        );
        assert_eq!(out.len(), 2, "every channel, even one with nothing yet");
        assert_eq!(out[0].checkpoint, Some(at(0, 20)));
        assert_eq!(out[0].segments.len(), 1);
        let kept = &out[0].segments[0];
        assert_eq!(kept.insert_log_paths, vec!["old", "a", "b"]);
        assert_eq!(kept.insert_logs.len(), 2);
        assert_eq!(kept.num_rows, 5 + 10 + 20);
        let paths = |r: &ChannelRecovery| -> Vec<String> {
            r.delete_logs.iter().map(|d| d.path.clone()).collect()
        };
        assert_eq!(paths(&out[0]), vec!["x", "y"]);
        assert!(out[1].segments.is_empty());
        assert!(paths(&out[1]).is_empty());
    }
}
