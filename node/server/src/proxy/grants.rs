//! Segment grants cached per (collection, partition, channel): the proxy asks the
//! data coordinator for rows in blocks and hands them out to inserts until the
//! block is used up or about to expire, or until the coordinator asks for the
//! grants of a sealed segment back ([`GrantCache::release`]).
//!
//! A release must not return while rows of the released segments may still reach
//! the log: every insert holds a [`Lease`] on the segments it took rows of until its
//! rows are acknowledged or failed, and a release waits for the leases on its
//! segments only (inserts into other segments go on meanwhile).

use std::collections::HashMap;
use std::sync::Arc;
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
    /// Leases per segment: inserts whose rows of it are not yet acknowledged.
    writing: Arc<tokio::sync::watch::Sender<HashMap<i64, usize>>>,
}

/// The segments an insert in progress writes rows of; dropping it (when the rows
/// are acknowledged or failed) lets the releases of those segments return.
#[derive(Debug)]
pub struct Lease {
    writing: Arc<tokio::sync::watch::Sender<HashMap<i64, usize>>>,
    segments: Vec<i64>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.segments.is_empty() {
            return;
        }
        self.writing.send_modify(|writing| {
            for segment in &self.segments {
                if let Some(n) = writing.get_mut(segment) {
                    *n -= 1;
                    if *n == 0 {
                        writing.remove(segment);
                    }
                }
            }
        });
    }
}

/// A release asked of another proxy than this one (one that used this address
/// before, say): its grants are not here, and answering "released" would let the
/// coordinator flush while that proxy may still write.
#[derive(Debug, thiserror::Error)]
#[error("grants of proxy {asked} were asked back from proxy {ours}")]
pub struct NotThisProxy {
    pub asked: i64,
    pub ours: i64,
}

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
            writing: Arc::new(tokio::sync::watch::Sender::new(HashMap::new())),
        }
    }

    /// A lease for one insert: pass it to every [`GrantCache::take`] of the insert
    /// and hold it until its rows are acknowledged or failed.
    pub fn lease(&self) -> Lease {
        Lease {
            writing: self.writing.clone(),
            segments: Vec::new(),
        }
    }

    /// Drops the grants of `segment_ids` (sealed: the coordinator grants no more of
    /// them) and waits until no insert holds a lease on them, so that no row will be
    /// written to them after this returns. Returns how many grants were dropped.
    /// This proxy's node id.
    pub fn proxy_id(&self) -> i64 {
        self.proxy_id
    }

    /// `proxy_id` names the proxy the coordinator granted them to (0: any).
    pub async fn release(&self, proxy_id: i64, segment_ids: &[i64]) -> Result<u32, NotThisProxy> {
        if proxy_id != 0 && proxy_id != self.proxy_id {
            return Err(NotThisProxy {
                asked: proxy_id,
                ours: self.proxy_id,
            });
        }
        // Under the grants lock no insert is between taking rows and leasing them:
        // after this, none takes rows of these segments.
        let released = {
            let mut grants = self.grants.lock().await;
            let before = grants.len();
            grants.retain(|_, g| !segment_ids.contains(&g.segment_id));
            u32::try_from(before - grants.len()).unwrap_or(u32::MAX)
        };
        let mut writing = self.writing.subscribe();
        // The sender lives as long as `self`: this cannot fail.
        let _ = writing
            .wait_for(|w| segment_ids.iter().all(|s| !w.contains_key(s)))
            .await;
        Ok(released)
    }

    /// Takes `rows` rows for the key, possibly spread over several segments, and
    /// adds them to the insert's lease.
    pub async fn take(
        &self,
        collection: i64,
        partition: i64,
        channel: u32,
        mut rows: u32,
        now: Timestamp,
        lease: &mut Lease,
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
            if !lease.segments.contains(&grant.segment_id) {
                lease.segments.push(grant.segment_id);
                self.writing
                    .send_modify(|w| *w.entry(grant.segment_id).or_default() += 1);
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A cache whose coordinator is never called: the grants are put in by hand.
    fn cache(grants: &[(u32, i64)]) -> GrantCache {
        let pool = LeaderPool::new(&["http://127.0.0.1:1".to_string()], Duration::from_secs(1))
            .expect("a valid address");
        let cache = GrantCache::new(pool, 7);
        let far = Timestamp::compose(1 << 41, 0).expect("in range").as_u64();
        let mut map = cache.grants.try_lock().expect("not shared yet");
        for &(channel, segment_id) in grants {
            map.insert(
                (1, 2, channel),
                Grant {
                    segment_id,
                    remaining: 1_000,
                    expire_ts: far,
                },
            );
        }
        drop(map);
        cache
    }

    fn now() -> Timestamp {
        Timestamp::compose(1_000, 0).expect("in range")
    }

    #[tokio::test]
    async fn a_release_waits_for_the_leases_on_its_segments_only() {
        let cache = Arc::new(cache(&[(0, 10), (1, 11)]));
        let mut on_10 = cache.lease();
        cache
            .take(1, 2, 0, 5, now(), &mut on_10)
            .await
            .expect("granted");
        let mut on_11 = cache.lease();
        cache
            .take(1, 2, 1, 5, now(), &mut on_11)
            .await
            .expect("granted");

        let release = tokio::spawn({
            let cache = cache.clone();
            async move { cache.release(7, &[10]).await }
        });
        tokio::task::yield_now().await;
        // The lease on another segment does not hold the release.
        drop(on_11);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !release.is_finished(),
            "returned while rows of segment 10 were in flight"
        );
        drop(on_10);
        let released = release.await.expect("joined").expect("our grants");
        assert_eq!(released, 1);
        // Inserts into the other segment went on and still go on.
        let mut lease = cache.lease();
        let slices = cache
            .take(1, 2, 1, 5, now(), &mut lease)
            .await
            .expect("granted");
        assert_eq!(
            slices,
            vec![Slice {
                segment_id: 11,
                rows: 5
            }]
        );
    }

    #[tokio::test]
    async fn a_release_without_leases_returns_at_once_and_drops_the_grant() {
        let cache = cache(&[(0, 10)]);
        let mut lease = cache.lease();
        cache
            .take(1, 2, 0, 5, now(), &mut lease)
            .await
            .expect("granted");
        drop(lease);
        assert_eq!(cache.release(0, &[10]).await.expect("any proxy"), 1);
        assert!(cache.grants.lock().await.is_empty());
        assert!(cache.writing.borrow().is_empty());
        // A second release of the same segments finds nothing.
        assert_eq!(cache.release(7, &[10]).await.expect("ours"), 0);
    }

    #[tokio::test]
    async fn a_release_meant_for_another_proxy_is_refused() {
        let cache = cache(&[(0, 10)]);
        let err = cache.release(8, &[10]).await.expect_err("not ours");
        assert_eq!((err.asked, err.ours), (8, 7));
        // The grant is kept.
        assert_eq!(cache.grants.lock().await.len(), 1);
    }
}
