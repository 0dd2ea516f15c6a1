//! Segment grants cached per (collection, partition, channel): the proxy asks the
//! data coordinator for rows in blocks and hands them out to inserts until the
//! block is used up or about to expire, or until the coordinator asks for the
//! grants of a sealed segment back ([`GrantCache::release`]).

use std::collections::HashMap;
use std::time::Duration;

use milvus_like_api::Timestamp;
use milvus_like_api::leader_pool::LeaderPool;
use milvus_like_api::proto::data_coord_client::DataCoordClient;
use milvus_like_api::proto::{AssignSegmentIdRequest, SegmentIdRequest};
use tonic::Status;

/// Rows asked for at once, so that most inserts need no round trip.
pub const GRANT_BLOCK_ROWS: u32 = 100_000;
/// A grant is not used within this margin of its expiry (rows must reach Kafka
/// before it expires).
const EXPIRY_MARGIN: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, Copy)]
struct Grant {
    segment_id: i64,
    remaining: u32,
    expire_ts: u64,
}

/// Rows of one segment that an insert may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slice {
    pub segment_id: i64,
    pub rows: u32,
}

#[derive(Debug)]
pub struct GrantCache {
    datacoord: LeaderPool,
    /// This proxy's node id, sent with every request, so that the coordinator
    /// can ask for grants back.
    proxy_id: i64,
    grants: tokio::sync::Mutex<HashMap<(i64, i64, u32), Grant>>,
    /// Held shared by every insert from before it takes grants until its rows
    /// are acknowledged (or failed); a release takes it exclusively.
    writing: tokio::sync::RwLock<()>,
}

/// An insert in progress, as far as releases are concerned.
pub type Writing<'a> = tokio::sync::RwLockReadGuard<'a, ()>;

fn usable(g: &Grant, now: Timestamp) -> bool {
    let margin = u64::try_from(EXPIRY_MARGIN.as_millis()).unwrap_or(u64::MAX);
    g.remaining > 0 && now.physical() + margin < Timestamp::from_u64(g.expire_ts).physical()
}

impl GrantCache {
    pub fn new(datacoord: LeaderPool, proxy_id: i64) -> Self {
        Self {
            datacoord,
            proxy_id,
            grants: tokio::sync::Mutex::new(HashMap::new()),
            writing: tokio::sync::RwLock::new(()),
        }
    }

    /// Marks an insert in progress: hold the guard from before [`GrantCache::take`]
    /// until the rows are acknowledged or the insert failed.
    pub async fn writing(&self) -> Writing<'_> {
        self.writing.read().await
    }

    /// Drops the grants of `segment_ids` (sealed: the coordinator grants no more of
    /// them) once every insert in progress is done, so that no row will be written
    /// to them after this returns. Returns how many grants were dropped.
    pub async fn release(&self, segment_ids: &[i64]) -> u32 {
        // New inserts wait behind the release (the lock is fair), so this waits
        // only for those already running. A grant being fetched while the release
        // was asked for is in the cache once they are done.
        let _quiet = self.writing.write().await;
        let mut grants = self.grants.lock().await;
        let before = grants.len();
        grants.retain(|_, g| !segment_ids.contains(&g.segment_id));
        u32::try_from(before - grants.len()).unwrap_or(u32::MAX)
    }

    /// Takes `rows` rows for the key, possibly spread over several segments.
    pub async fn take(
        &self,
        collection: i64,
        partition: i64,
        channel: u32,
        mut rows: u32,
        now: Timestamp,
    ) -> Result<Vec<Slice>, Status> {
        let key = (collection, partition, channel);
        let mut grants = self.grants.lock().await;
        let mut out = Vec::new();
        while rows > 0 {
            let grant = match grants.get(&key) {
                Some(g) if usable(g, now) => *g,
                _ => {
                    let g = self.fetch(collection, partition, channel, rows).await?;
                    grants.insert(key, g);
                    g
                }
            };
            let n = rows.min(grant.remaining);
            out.push(Slice {
                segment_id: grant.segment_id,
                rows: n,
            });
            rows -= n;
            if let Some(g) = grants.get_mut(&key) {
                g.remaining -= n;
            }
        }
        Ok(out)
    }

    async fn fetch(
        &self,
        collection: i64,
        partition: i64,
        channel: u32,
        rows: u32,
    ) -> Result<Grant, Status> {
        let count = rows.max(GRANT_BLOCK_ROWS);
        let request = AssignSegmentIdRequest {
            requests: vec![SegmentIdRequest {
                collection_id: collection,
                partition_id: partition,
                channel,
                count,
            }],
            proxy_id: self.proxy_id,
        };
        let resp = self
            .datacoord
            .call(Duration::from_secs(10), |ch| {
                let request = request.clone();
                async move { DataCoordClient::new(ch).assign_segment_id(request).await }
            })
            .await;
        let resp = match resp {
            // A block too large for one segment: ask for exactly what is needed.
            Err(s) if s.code() == tonic::Code::InvalidArgument && count > rows => {
                let mut request = request;
                request.requests[0].count = rows;
                self.datacoord
                    .call(Duration::from_secs(10), |ch| {
                        let request = request.clone();
                        async move { DataCoordClient::new(ch).assign_segment_id(request).await }
                    })
                    .await?
            }
            other => other?,
        };
        let a = resp
            .into_inner()
            .assignments
            .into_iter()
            .next()
            .ok_or_else(|| Status::internal("the data coordinator granted nothing"))?;
        Ok(Grant {
            segment_id: a.segment_id,
            remaining: a.count,
            expire_ts: a.expire_ts,
        })
    }
}
