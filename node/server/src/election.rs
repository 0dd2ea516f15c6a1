//! Leader election on the metadata store, and the fence a leader's writes carry.
//!
//! A candidate creates the leader key bound to a fresh lease if the key is absent;
//! otherwise it waits for the key to disappear (the leader resigned or its lease
//! expired) and tries again. The leader renews its lease every TTL/3 and considers
//! itself leader only until `sent + TTL` of its last successful renewal, measured on
//! its own monotonic clock from *before* the request was sent, so it stops first:
//! etcd counts the TTL from when it received the renewal, which is later.
//!
//! Every write a leader makes goes in a transaction that compares the leader key's
//! value with this term's record (see [`Leadership::fence`]); a deposed leader's
//! writes fail even if its process has not noticed yet.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use milvus_like_api::proto::LeaderRecord;
use milvus_like_api::retry::Retry;
use prost::Message;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::meta::{Compare, LeaseId, MetaError, MetaResult, MetaStore, Op, Txn, WatchEvent};

/// One term of leadership. Cheap to clone; all clones see the loss at once.
#[derive(Clone, Debug)]
pub struct Leadership {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    key: String,
    /// Encoded `LeaderRecord` of this term: the leader key holds exactly this.
    value: Vec<u8>,
    record: LeaderRecord,
    lease: LeaseId,
    /// Monotonic origin for `valid_until_ns`.
    origin: Instant,
    /// Nanoseconds after `origin` until which we may act as leader.
    valid_until_ns: AtomicU64,
    lost: CancellationToken,
}

impl Leadership {
    /// True while the lease is surely held and the term was not given up.
    pub fn is_valid(&self) -> bool {
        if self.inner.lost.is_cancelled() {
            return false;
        }
        let now = self.inner.origin.elapsed().as_nanos();
        now < u128::from(self.inner.valid_until_ns.load(Ordering::Acquire))
    }

    /// The transaction condition that holds only during this term.
    pub fn fence(&self) -> Compare {
        Compare::ValueEquals(self.inner.key.clone(), self.inner.value.clone())
    }

    pub fn record(&self) -> &LeaderRecord {
        &self.inner.record
    }

    /// Resolves when the term ends for any reason.
    pub async fn lost(&self) {
        self.inner.lost.cancelled().await;
    }

    /// Ends the term locally at once (a fenced write failed, or shutting down).
    pub fn give_up(&self, why: &str) {
        if !self.inner.lost.is_cancelled() {
            tracing::warn!(key = %self.inner.key, node_id = self.inner.record.node_id, "leadership lost: {why}");
            self.inner.valid_until_ns.store(0, Ordering::Release);
            self.inner.lost.cancel();
        }
    }

    /// Awaits one of this term's writes whose outcome the caller mirrors in memory.
    /// When the outcome is unknown (the store answered with an error, or the
    /// future was dropped mid-write), the write may have landed without the
    /// caller's memory knowing, and a later write built on that memory would undo
    /// it. So the term ends, and the next term loads its state from the store.
    pub async fn write<T>(
        &self,
        write: impl std::future::Future<Output = MetaResult<T>>,
    ) -> MetaResult<T> {
        struct Pending<'a>(Option<&'a Leadership>);
        impl Drop for Pending<'_> {
            fn drop(&mut self) {
                if let Some(l) = self.0 {
                    l.give_up("a write was interrupted; its outcome is unknown");
                }
            }
        }
        let mut pending = Pending(Some(self));
        let result = write.await;
        pending.0 = None;
        if let Err(e) = &result {
            self.give_up(&format!("a write failed and may have landed: {e}"));
        }
        result
    }

    /// Gives up and deletes the leader key so that a standby takes over now.
    pub async fn resign(&self, store: &dyn MetaStore) {
        self.give_up("resigned");
        if let Err(e) = store.revoke_lease(self.inner.lease).await {
            tracing::warn!(error = %e, "could not revoke the leader lease; standbys wait for its expiry");
        }
    }

    fn extend(&self, sent_at: Instant, ttl: Duration) {
        let until = (sent_at - self.inner.origin + ttl).as_nanos();
        self.inner
            .valid_until_ns
            .store(u64::try_from(until).unwrap_or(u64::MAX), Ordering::Release);
    }
}

/// Campaigns for one leader key.
#[derive(Debug, Clone)]
pub struct Candidate {
    store: Arc<dyn MetaStore>,
    key: String,
    node_id: i64,
    address: String,
    ttl: Duration,
}

impl Candidate {
    pub fn new(
        store: Arc<dyn MetaStore>,
        key: impl Into<String>,
        node_id: i64,
        address: impl Into<String>,
        ttl: Duration,
    ) -> Self {
        Self {
            store,
            key: key.into(),
            node_id,
            address: address.into(),
            ttl,
        }
    }

    /// The current leader, if any.
    pub async fn current_leader(&self) -> MetaResult<Option<LeaderRecord>> {
        read_leader(self.store.as_ref(), &self.key).await
    }

    /// Waits until this candidate leads. `None` when `cancel` fired first.
    pub async fn campaign(&self, cancel: &CancellationToken) -> Option<Leadership> {
        let retry = Retry::new(format!("campaign for {} failed", self.key))
            .until_cancelled(cancel)
            .on_every_error();
        while !cancel.is_cancelled() {
            // `None`: the leader we waited for is gone; try again at once.
            if let Some(leadership) = retry.run(|| self.try_once(cancel)).await.ok()? {
                return Some(leadership);
            }
        }
        None
    }

    /// One attempt: lead now, or wait until the current leader is gone (then `None`).
    async fn try_once(&self, cancel: &CancellationToken) -> MetaResult<Option<Leadership>> {
        let sent_at = Instant::now();
        let lease = self.store.grant_lease(self.ttl).await?;
        let record = LeaderRecord {
            node_id: self.node_id,
            address: self.address.clone(),
            nonce: rand::random(),
            elected_at_ms: crate::sys::unix_ms(),
        };
        let value = record.encode_to_vec();
        let txn = Txn::when([Compare::Absent(self.key.clone())])
            .then([Op::Put {
                key: self.key.clone(),
                value: value.clone(),
                lease: Some(lease),
            }])
            .otherwise([Op::Get(self.key.clone())]);
        let result = match self.store.txn(txn).await {
            Ok(r) => r,
            Err(e) => {
                let _ = self.store.revoke_lease(lease).await;
                return Err(e);
            }
        };
        if result.succeeded {
            let leadership = Leadership {
                inner: Arc::new(Inner {
                    key: self.key.clone(),
                    value,
                    record,
                    lease,
                    origin: sent_at,
                    valid_until_ns: AtomicU64::new(0),
                    lost: cancel.child_token(),
                }),
            };
            leadership.extend(sent_at, self.ttl);
            tracing::info!(key = %self.key, node_id = self.node_id, "elected leader");
            crate::spawn(keep_leading(
                self.store.clone(),
                leadership.clone(),
                self.ttl,
            ));
            return Ok(Some(leadership));
        }
        let _ = self.store.revoke_lease(lease).await;
        let Some(current) = result.gets.into_iter().next().flatten() else {
            return Ok(None); // vanished in between: try again at once
        };
        if let Ok(rec) = LeaderRecord::decode(current.value.as_slice()) {
            tracing::info!(key = %self.key, leader = rec.node_id, address = %rec.address, "standing by");
        }
        self.wait_for_vacancy(current.mod_revision, cancel).await?;
        Ok(None)
    }

    /// Returns when the leader key is deleted after `revision`, or after one TTL
    /// (then the caller simply tries again).
    async fn wait_for_vacancy(&self, revision: i64, cancel: &CancellationToken) -> MetaResult<()> {
        let mut watch = self.store.watch_prefix(&self.key, revision + 1).await?;
        let deadline = tokio::time::sleep(self.ttl);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                () = cancel.cancelled() => return Ok(()),
                () = &mut deadline => return Ok(()),
                batch = watch.next() => match batch {
                    None => return Ok(()),
                    Some(Err(e)) => return Err(e),
                    Some(Ok(events)) => {
                        if events.iter().any(|e| matches!(e, WatchEvent::Delete { key, .. } if *key == self.key)) {
                            return Ok(());
                        }
                    }
                },
            }
        }
    }
}

pub async fn read_leader(store: &dyn MetaStore, key: &str) -> MetaResult<Option<LeaderRecord>> {
    let Some(kv) = store.get(key).await? else {
        return Ok(None);
    };
    LeaderRecord::decode(kv.value.as_slice())
        .map(Some)
        .map_err(|e| MetaError::corrupt(key, e))
}

/// Renews the lease every TTL/3 and watches the key; ends the term when either fails.
async fn keep_leading(store: Arc<dyn MetaStore>, leadership: Leadership, ttl: Duration) {
    let lost = leadership.inner.lost.clone();
    let key = leadership.inner.key.clone();
    let watcher = async {
        loop {
            match store.get(&key).await {
                Ok(Some(kv)) if kv.value == leadership.inner.value => {
                    if let Ok(mut watch) = store.watch_prefix(&key, kv.mod_revision + 1).await {
                        while let Some(Ok(events)) = watch.next().await {
                            let replaced = events.iter().any(|e| match e {
                                WatchEvent::Delete { key: k, .. } => *k == key,
                                WatchEvent::Put(kv) => {
                                    kv.key == key && kv.value != leadership.inner.value
                                }
                            });
                            if replaced {
                                leadership.give_up("the leader key was deleted or replaced");
                                return;
                            }
                        }
                    }
                }
                Ok(_) => {
                    leadership.give_up("the leader key is no longer ours");
                    return;
                }
                Err(e) => tracing::debug!(error = %e, "leader key check failed"),
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    };
    let renewer = async {
        loop {
            tokio::time::sleep(ttl / 3).await;
            let sent_at = Instant::now();
            match store.keep_alive(leadership.inner.lease).await {
                Ok(granted) => leadership.extend(sent_at, granted.min(ttl)),
                Err(MetaError::LeaseExpired(_)) => {
                    leadership.give_up("the leader lease expired");
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not renew the leader lease");
                    if !leadership.is_valid() {
                        leadership.give_up("the leader lease could not be renewed in time");
                        return;
                    }
                }
            }
        }
    };
    tokio::select! {
        () = lost.cancelled() => {}
        () = watcher => {}
        () = renewer => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::LocalStore;

    fn candidate(store: &Arc<LocalStore>, id: i64) -> Candidate {
        Candidate::new(
            store.clone(),
            "leader/test",
            id,
            format!("n{id}:1"),
            Duration::from_secs(3),
        )
    }

    #[tokio::test]
    async fn one_leader_and_the_standby_takes_over_on_resign() {
        let store = Arc::new(LocalStore::in_memory());
        let cancel = CancellationToken::new();
        let a = candidate(&store, 1)
            .campaign(&cancel)
            .await
            .expect("a leads");
        assert!(a.is_valid());
        let b = tokio::spawn({
            let c = candidate(&store, 2);
            let cancel = cancel.clone();
            async move { c.campaign(&cancel).await }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!b.is_finished(), "b must wait while a leads");
        a.resign(store.as_ref()).await;
        assert!(!a.is_valid());
        let b = b.await.expect("join").expect("b leads");
        assert!(b.is_valid());
        assert_eq!(b.record().node_id, 2);
        // a's fence no longer holds: its writes would fail.
        let stale = Txn::when([a.fence()]).then([Op::put("x", "y")]);
        assert!(!store.txn(stale).await.expect("txn").succeeded);
        let fresh = Txn::when([b.fence()]).then([Op::put("x", "y")]);
        assert!(store.txn(fresh).await.expect("txn").succeeded);
    }

    #[tokio::test]
    async fn a_leader_that_cannot_renew_stops_before_its_lease_ends() {
        let store = Arc::new(LocalStore::in_memory());
        let cancel = CancellationToken::new();
        let a = candidate(&store, 1)
            .campaign(&cancel)
            .await
            .expect("a leads");
        store.set_down(true);
        tokio::time::timeout(Duration::from_secs(5), a.lost())
            .await
            .expect("leadership must end within the TTL");
        assert!(!a.is_valid());
    }

    #[tokio::test]
    async fn a_write_of_unknown_outcome_ends_the_term() {
        let store = Arc::new(LocalStore::in_memory());
        let cancel = CancellationToken::new();
        let a = candidate(&store, 1)
            .campaign(&cancel)
            .await
            .expect("a leads");
        let put = |v: &'static str| Txn::when([a.fence()]).then([Op::put("k", v)]);
        assert!(a.write(store.txn(put("1"))).await.expect("write").succeeded);
        assert!(a.is_valid(), "a write with a known outcome keeps the term");
        // The caller goes away while the write is under way: it may land unseen.
        let never = a.write(async {
            store.txn(put("2")).await?;
            futures::future::pending::<MetaResult<()>>().await
        });
        assert!(
            tokio::time::timeout(Duration::from_millis(50), never)
                .await
                .is_err()
        );
        assert!(!a.is_valid(), "an interrupted write ends the term");
        a.resign(store.as_ref()).await;
        let b = candidate(&store, 2)
            .campaign(&cancel)
            .await
            .expect("b leads");
        store.set_down(true);
        assert!(b.write(store.get("k")).await.is_err());
        assert!(!b.is_valid(), "a failed write ends the term");
    }
}
