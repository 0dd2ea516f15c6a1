//! `MetaStore` in memory, with etcd's semantics (revisions, leases, watches from a
//! revision). For unit tests of the logic built on the store, and a reference for
//! what the other implementations must do.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::broadcast;
use tokio::time::Instant;

use super::{
    Compare, KeyValue, LeaseId, MetaError, MetaResult, MetaStore, Op, Revision, Txn, TxnResult,
    WatchEvent, WatchStream,
};

#[derive(Debug, Default)]
struct State {
    revision: Revision,
    data: BTreeMap<String, KeyValue>,
    leases: HashMap<LeaseId, Lease>,
    next_lease: LeaseId,
    /// Every event so far, for watches that start in the past.
    history: Vec<(Revision, WatchEvent)>,
    /// Set by tests to simulate an unreachable store.
    down: bool,
}

#[derive(Debug)]
struct Lease {
    ttl: Duration,
    deadline: Instant,
}

#[derive(Debug, Clone)]
pub struct MemStore {
    state: Arc<Mutex<State>>,
    events: broadcast::Sender<(Revision, WatchEvent)>,
}

impl Default for MemStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemStore {
    pub fn new() -> Self {
        Self {
            state: Arc::new(Mutex::new(State::default())),
            events: broadcast::channel(4096).0,
        }
    }

    /// Makes every call fail with `Unavailable` (true) or work again (false).
    pub fn set_down(&self, down: bool) {
        self.lock().down = down;
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent data (no partial writes).
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Locks, fails if down, and expires overdue leases first.
    fn open(&self) -> MetaResult<MutexGuard<'_, State>> {
        let mut s = self.lock();
        if s.down {
            return Err(MetaError::Unavailable("memory store is down (test)".into()));
        }
        let now = Instant::now();
        let expired: Vec<LeaseId> = s
            .leases
            .iter()
            .filter(|(_, l)| l.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            self.drop_lease(&mut s, id);
        }
        Ok(s)
    }

    fn drop_lease(&self, s: &mut State, id: LeaseId) {
        s.leases.remove(&id);
        let keys: Vec<String> = s
            .data
            .values()
            .filter(|kv| kv.lease == id)
            .map(|kv| kv.key.clone())
            .collect();
        for key in keys {
            s.revision += 1;
            let rev = s.revision;
            self.delete_at(s, &key, rev);
        }
    }

    fn delete_at(&self, s: &mut State, key: &str, rev: Revision) -> bool {
        if s.data.remove(key).is_some() {
            let ev = WatchEvent::Delete {
                key: key.to_owned(),
                revision: rev,
            };
            s.history.push((rev, ev.clone()));
            let _ = self.events.send((rev, ev));
            true
        } else {
            false
        }
    }

    fn put_at(
        &self,
        s: &mut State,
        key: &str,
        value: Vec<u8>,
        lease: Option<LeaseId>,
        rev: Revision,
    ) -> MetaResult<()> {
        let lease = lease.unwrap_or(0);
        if lease != 0 && !s.leases.contains_key(&lease) {
            return Err(MetaError::LeaseExpired(lease));
        }
        let create_revision = s.data.get(key).map_or(rev, |kv| kv.create_revision);
        let kv = KeyValue {
            key: key.to_owned(),
            value,
            create_revision,
            mod_revision: rev,
            lease,
        };
        s.data.insert(key.to_owned(), kv.clone());
        let ev = WatchEvent::Put(kv);
        s.history.push((rev, ev.clone()));
        let _ = self.events.send((rev, ev));
        Ok(())
    }

    fn holds(s: &State, c: &Compare) -> bool {
        match c {
            Compare::ValueEquals(k, v) => s.data.get(k).is_some_and(|kv| &kv.value == v),
            Compare::Absent(k) => !s.data.contains_key(k),
            Compare::ModRevision(k, rev) => s.data.get(k).map_or(0, |kv| kv.mod_revision) == *rev,
        }
    }
}

fn event_key(ev: &WatchEvent) -> &str {
    match ev {
        WatchEvent::Put(kv) => &kv.key,
        WatchEvent::Delete { key, .. } => key,
    }
}

#[async_trait::async_trait]
impl MetaStore for MemStore {
    fn describe(&self) -> String {
        "memory store".into()
    }

    async fn get(&self, key: &str) -> MetaResult<Option<KeyValue>> {
        Ok(self.open()?.data.get(key).cloned())
    }

    async fn scan_prefix(&self, prefix: &str) -> MetaResult<(Vec<KeyValue>, Revision)> {
        let s = self.open()?;
        let kvs = s
            .data
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, kv)| kv.clone())
            .collect();
        Ok((kvs, s.revision))
    }

    async fn put(&self, key: &str, value: Vec<u8>, lease: Option<LeaseId>) -> MetaResult<()> {
        let mut s = self.open()?;
        let rev = s.revision + 1;
        self.put_at(&mut s, key, value, lease, rev)?;
        s.revision = rev;
        Ok(())
    }

    async fn delete(&self, key: &str) -> MetaResult<bool> {
        let mut s = self.open()?;
        let rev = s.revision + 1;
        let existed = self.delete_at(&mut s, key, rev);
        if existed {
            s.revision = rev;
        }
        Ok(existed)
    }

    async fn txn(&self, txn: Txn) -> MetaResult<TxnResult> {
        let mut s = self.open()?;
        let succeeded = txn.compares.iter().all(|c| Self::holds(&s, c));
        let ops = if succeeded { &txn.then } else { &txn.otherwise };
        // Check leases up front so that a failing put leaves nothing half-done.
        for op in ops {
            if let Op::Put { lease: Some(l), .. } = op
                && *l != 0
                && !s.leases.contains_key(l)
            {
                return Err(MetaError::LeaseExpired(*l));
            }
        }
        let rev = s.revision + 1;
        let mut wrote = false;
        let mut gets = Vec::new();
        for op in ops {
            match op {
                Op::Put { key, value, lease } => {
                    self.put_at(&mut s, key, value.clone(), *lease, rev)?;
                    wrote = true;
                }
                Op::Delete(key) => wrote |= self.delete_at(&mut s, key, rev),
                Op::Get(key) => gets.push(s.data.get(key).cloned()),
            }
        }
        if wrote {
            s.revision = rev;
        }
        Ok(TxnResult {
            succeeded,
            gets,
            revision: s.revision,
        })
    }

    async fn watch_prefix(&self, prefix: &str, from_revision: Revision) -> MetaResult<WatchStream> {
        let s = self.open()?;
        let rx = self.events.subscribe();
        let past: Vec<WatchEvent> = s
            .history
            .iter()
            .filter(|(rev, ev)| *rev >= from_revision && event_key(ev).starts_with(prefix))
            .map(|(_, ev)| ev.clone())
            .collect();
        let last_seen = s.revision;
        drop(s);
        let prefix = prefix.to_owned();
        let live = tokio_stream::wrappers::BroadcastStream::new(rx).filter_map(move |item| {
            let prefix = prefix.clone();
            async move {
                match item {
                    Ok((rev, ev)) if rev > last_seen && event_key(&ev).starts_with(&prefix) => {
                        Some(Ok(vec![ev]))
                    }
                    Ok(_) => None,
                    Err(_) => Some(Err(MetaError::Unavailable("watch fell behind".into()))),
                }
            }
        });
        let head = futures::stream::iter((!past.is_empty()).then_some(Ok(past)));
        Ok(head.chain(live).boxed())
    }

    async fn grant_lease(&self, ttl: Duration) -> MetaResult<LeaseId> {
        let mut s = self.open()?;
        s.next_lease += 1;
        let id = s.next_lease;
        s.leases.insert(
            id,
            Lease {
                ttl,
                deadline: Instant::now() + ttl,
            },
        );
        Ok(id)
    }

    async fn keep_alive(&self, lease: LeaseId) -> MetaResult<Duration> {
        let mut s = self.open()?;
        let l = s
            .leases
            .get_mut(&lease)
            .ok_or(MetaError::LeaseExpired(lease))?;
        l.deadline = Instant::now() + l.ttl;
        Ok(l.ttl)
    }

    async fn revoke_lease(&self, lease: LeaseId) -> MetaResult<()> {
        let mut s = self.open()?;
        self.drop_lease(&mut s, lease);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn txn_compare_and_swap() {
        let store = MemStore::new();
        let create = Txn::when([Compare::Absent("k".into())]).then([Op::put("k", "v1")]);
        assert!(store.txn(create.clone()).await.expect("txn").succeeded);
        assert!(!store.txn(create).await.expect("txn").succeeded);
        let swap = Txn::when([Compare::ValueEquals("k".into(), b"v1".to_vec())])
            .then([Op::put("k", "v2")]);
        assert!(store.txn(swap.clone()).await.expect("txn").succeeded);
        assert!(!store.txn(swap).await.expect("txn").succeeded);
        let kv = store.get("k").await.expect("get").expect("present");
        assert_eq!(kv.value, b"v2");
    }

    #[tokio::test(start_paused = true)]
    async fn expired_lease_deletes_its_keys_and_notifies_watchers() {
        let store = MemStore::new();
        let lease = store
            .grant_lease(Duration::from_secs(2))
            .await
            .expect("lease");
        store
            .put("s/1", b"x".to_vec(), Some(lease))
            .await
            .expect("put");
        let (_, rev) = store.scan_prefix("s/").await.expect("scan");
        let mut watch = store.watch_prefix("s/", rev + 1).await.expect("watch");
        tokio::time::advance(Duration::from_secs(3)).await;
        assert!(store.get("s/1").await.expect("get").is_none());
        let batch = watch.next().await.expect("event").expect("ok");
        assert!(matches!(&batch[0], WatchEvent::Delete { key, .. } if key == "s/1"));
        assert!(matches!(
            store.keep_alive(lease).await,
            Err(MetaError::LeaseExpired(_))
        ));
    }
}
