//! Segment grants cached per (collection, partition, channel): the proxy asks the
//! data coordinator for rows in blocks and hands them out to inserts until the
//! block is used up or about to expire.

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
    grants: tokio::sync::Mutex<HashMap<(i64, i64, u32), Grant>>,
}

fn usable(g: &Grant, now: Timestamp) -> bool {
    let margin = u64::try_from(EXPIRY_MARGIN.as_millis()).unwrap_or(u64::MAX);
    g.remaining > 0 && now.physical() + margin < Timestamp::from_u64(g.expire_ts).physical()
}

impl GrantCache {
    pub fn new(datacoord: LeaderPool) -> Self {
        Self {
            datacoord,
            grants: tokio::sync::Mutex::new(HashMap::new()),
        }
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
