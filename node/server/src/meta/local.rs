//! `MetaStore` inside this process, with etcd's semantics (revisions, leases,
//! compare-and-swap transactions, watches from a revision): in memory only, or
//! written through to a redb file on local disk for standalone mode.
//!
//! The whole key space is held in memory (metadata is small); with a disk file
//! every change is committed there (fsync, quick repair on) *before* it becomes
//! visible, so a kill -9 never loses an acknowledged write. Leases live only as long
//! as the process: on open, keys bound to a lease of an earlier process are deleted,
//! as their sessions died with it. Watches are served from a bounded in-memory
//! history; a watch that starts before it gets an error and re-reads, as with a
//! compacted etcd.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::StreamExt;
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::broadcast;
use tokio::time::Instant;

use super::{
    Compare, KeyValue, LeaseId, MetaError, MetaResult, MetaStore, Op, Revision, Txn, TxnResult,
    WatchEvent, WatchStream,
};

/// Key -> `[create_revision | mod_revision | lease | value]` (i64s little-endian).
const KV_TABLE: TableDefinition<&str, &[u8]> = TableDefinition::new("kv");
/// "revision" -> last revision.
const META_TABLE: TableDefinition<&str, i64> = TableDefinition::new("meta");
/// Events kept for watches that start in the past.
const HISTORY_LIMIT: usize = 16_384;

#[derive(Debug, Default)]
struct State {
    revision: Revision,
    data: BTreeMap<String, KeyValue>,
    leases: HashMap<LeaseId, Lease>,
    next_lease: LeaseId,
    history: VecDeque<(Revision, WatchEvent)>,
    /// Every event from this revision on is in `history`.
    history_start: Revision,
    /// Set by tests to simulate an unreachable store.
    down: bool,
}

#[derive(Debug)]
struct Lease {
    ttl: Duration,
    deadline: Instant,
}

/// One write of a transaction.
#[derive(Debug)]
enum Change {
    Put(KeyValue),
    Delete(String),
}

#[derive(Clone)]
pub struct LocalStore {
    state: Arc<Mutex<State>>,
    events: broadcast::Sender<(Revision, WatchEvent)>,
    disk: Option<Arc<redb::Database>>,
    describe: Arc<str>,
}

impl std::fmt::Debug for LocalStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe)
    }
}

impl Default for LocalStore {
    fn default() -> Self {
        Self::in_memory()
    }
}

fn disk_error(what: &str, e: impl std::fmt::Display) -> MetaError {
    MetaError::Unavailable(format!("{what}: {e}"))
}

fn encode(kv: &KeyValue) -> Vec<u8> {
    let mut out = Vec::with_capacity(24 + kv.value.len());
    out.extend_from_slice(&kv.create_revision.to_le_bytes());
    out.extend_from_slice(&kv.mod_revision.to_le_bytes());
    out.extend_from_slice(&kv.lease.to_le_bytes());
    out.extend_from_slice(&kv.value);
    out
}

fn decode(key: &str, raw: &[u8]) -> MetaResult<KeyValue> {
    let int = |i: usize| -> MetaResult<i64> {
        raw.get(i * 8..i * 8 + 8)
            .and_then(|b| b.try_into().ok())
            .map(i64::from_le_bytes)
            .ok_or_else(|| MetaError::corrupt(key, "record shorter than its header"))
    };
    Ok(KeyValue {
        key: key.to_owned(),
        create_revision: int(0)?,
        mod_revision: int(1)?,
        lease: int(2)?,
        value: raw[24..].to_vec(),
    })
}

impl LocalStore {
    pub fn in_memory() -> Self {
        Self {
            state: Arc::new(Mutex::new(State {
                history_start: 1,
                ..State::default()
            })),
            events: broadcast::channel(4096).0,
            disk: None,
            describe: "in-memory metadata store".into(),
        }
    }

    /// Opens (or creates) the store file. Fails if another process has it open.
    pub fn open(path: &Path) -> MetaResult<Self> {
        let db = redb::Database::create(path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => MetaError::Refused(format!(
                "{} is in use by another process (is a standalone server already running on this data dir?)",
                path.display()
            )),
            other => disk_error(&format!("open {}", path.display()), other),
        })?;
        let mut state = State::default();
        {
            let mut txn = db.begin_write().map_err(|e| disk_error("begin", e))?;
            txn.set_quick_repair(true);
            // Creates the tables on first open.
            txn.open_table(KV_TABLE)
                .map_err(|e| disk_error("open table", e))?;
            txn.open_table(META_TABLE)
                .map_err(|e| disk_error("open table", e))?;
            txn.commit().map_err(|e| disk_error("commit", e))?;
        }
        {
            let read = db.begin_read().map_err(|e| disk_error("begin read", e))?;
            let kv = read
                .open_table(KV_TABLE)
                .map_err(|e| disk_error("open table", e))?;
            for item in kv.iter().map_err(|e| disk_error("scan", e))? {
                let (k, v) = item.map_err(|e| disk_error("scan", e))?;
                let kv = decode(k.value(), v.value())?;
                state.data.insert(kv.key.clone(), kv);
            }
            let meta = read
                .open_table(META_TABLE)
                .map_err(|e| disk_error("open table", e))?;
            state.revision = meta
                .get("revision")
                .map_err(|e| disk_error("read revision", e))?
                .map_or(0, |v| v.value());
        }
        state.history_start = state.revision + 1;
        let store = Self {
            state: Arc::new(Mutex::new(state)),
            events: broadcast::channel(4096).0,
            disk: Some(Arc::new(db)),
            describe: format!("metadata store file {}", path.display()).into(),
        };
        // Sessions and leader keys of the previous process died with it.
        {
            let mut s = store.lock();
            let stale: Vec<Change> = s
                .data
                .values()
                .filter(|kv| kv.lease != 0)
                .map(|kv| Change::Delete(kv.key.clone()))
                .collect();
            let rev = s.revision + 1;
            store.commit(&mut s, rev, stale)?;
            s.history_start = s.revision + 1;
            s.history.clear();
        }
        tracing::info!(path = %path.display(), "opened the embedded metadata store");
        Ok(store)
    }

    /// Makes every call fail with `Unavailable` (true) or work again (false).
    pub fn set_down(&self, down: bool) {
        self.lock().down = down;
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // State is only changed after the disk commit, so a panic leaves it consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Locks, fails if down, and expires overdue leases first.
    fn open_state(&self) -> MetaResult<MutexGuard<'_, State>> {
        let mut s = self.lock();
        if s.down {
            return Err(MetaError::Unavailable(
                "metadata store is down (test)".into(),
            ));
        }
        let now = Instant::now();
        let expired: Vec<LeaseId> = s
            .leases
            .iter()
            .filter(|(_, l)| l.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            self.drop_lease(&mut s, id)?;
        }
        Ok(s)
    }

    fn drop_lease(&self, s: &mut State, id: LeaseId) -> MetaResult<()> {
        let changes: Vec<Change> = s
            .data
            .values()
            .filter(|kv| kv.lease == id)
            .map(|kv| Change::Delete(kv.key.clone()))
            .collect();
        let rev = s.revision + 1;
        self.commit(s, rev, changes)?;
        s.leases.remove(&id);
        Ok(())
    }

    /// Makes `changes` durable (when on disk), then visible, at revision `rev`.
    fn commit(&self, s: &mut State, rev: Revision, changes: Vec<Change>) -> MetaResult<()> {
        if changes.is_empty() {
            return Ok(());
        }
        if let Some(db) = &self.disk {
            let mut txn = db.begin_write().map_err(|e| disk_error("begin", e))?;
            txn.set_quick_repair(true);
            {
                let mut kv = txn
                    .open_table(KV_TABLE)
                    .map_err(|e| disk_error("open table", e))?;
                for change in &changes {
                    match change {
                        Change::Put(record) => kv
                            .insert(record.key.as_str(), encode(record).as_slice())
                            .map(drop),
                        Change::Delete(key) => kv.remove(key.as_str()).map(drop),
                    }
                    .map_err(|e| disk_error("write", e))?;
                }
                let mut meta = txn
                    .open_table(META_TABLE)
                    .map_err(|e| disk_error("open table", e))?;
                meta.insert("revision", rev)
                    .map_err(|e| disk_error("write", e))?;
            }
            txn.commit().map_err(|e| disk_error("commit", e))?;
        }
        s.revision = rev;
        for change in changes {
            let event = match change {
                Change::Put(kv) => {
                    s.data.insert(kv.key.clone(), kv.clone());
                    WatchEvent::Put(kv)
                }
                Change::Delete(key) => {
                    s.data.remove(&key);
                    WatchEvent::Delete { key, revision: rev }
                }
            };
            if s.history.len() == HISTORY_LIMIT
                && let Some((old, _)) = s.history.pop_front()
            {
                s.history_start = old + 1;
            }
            s.history.push_back((rev, event.clone()));
            let _ = self.events.send((rev, event));
        }
        Ok(())
    }

    fn holds(s: &State, c: &Compare) -> bool {
        match c {
            Compare::ValueEquals(k, v) => s.data.get(k).is_some_and(|kv| &kv.value == v),
            Compare::Absent(k) => !s.data.contains_key(k),
            Compare::ModRevision(k, rev) => s.data.get(k).map_or(0, |kv| kv.mod_revision) == *rev,
        }
    }

    fn record(
        s: &State,
        key: &str,
        value: Vec<u8>,
        lease: Option<LeaseId>,
        rev: Revision,
    ) -> MetaResult<KeyValue> {
        let lease = lease.unwrap_or(0);
        if lease != 0 && !s.leases.contains_key(&lease) {
            return Err(MetaError::LeaseExpired(lease));
        }
        Ok(KeyValue {
            key: key.to_owned(),
            value,
            create_revision: s.data.get(key).map_or(rev, |kv| kv.create_revision),
            mod_revision: rev,
            lease,
        })
    }
}

fn event_key(ev: &WatchEvent) -> &str {
    match ev {
        WatchEvent::Put(kv) => &kv.key,
        WatchEvent::Delete { key, .. } => key,
    }
}

#[async_trait::async_trait]
impl MetaStore for LocalStore {
    fn describe(&self) -> String {
        self.describe.to_string()
    }

    async fn get(&self, key: &str) -> MetaResult<Option<KeyValue>> {
        Ok(self.open_state()?.data.get(key).cloned())
    }

    async fn scan_prefix(&self, prefix: &str) -> MetaResult<(Vec<KeyValue>, Revision)> {
        let s = self.open_state()?;
        let kvs = s
            .data
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, kv)| kv.clone())
            .collect();
        Ok((kvs, s.revision))
    }

    async fn put(&self, key: &str, value: Vec<u8>, lease: Option<LeaseId>) -> MetaResult<()> {
        let mut s = self.open_state()?;
        let rev = s.revision + 1;
        let kv = Self::record(&s, key, value, lease, rev)?;
        self.commit(&mut s, rev, vec![Change::Put(kv)])
    }

    async fn delete(&self, key: &str) -> MetaResult<bool> {
        let mut s = self.open_state()?;
        if !s.data.contains_key(key) {
            return Ok(false);
        }
        let rev = s.revision + 1;
        self.commit(&mut s, rev, vec![Change::Delete(key.to_owned())])?;
        Ok(true)
    }

    async fn txn(&self, txn: Txn) -> MetaResult<TxnResult> {
        let mut s = self.open_state()?;
        let succeeded = txn.compares.iter().all(|c| Self::holds(&s, c));
        let ops = if succeeded { txn.then } else { txn.otherwise };
        let rev = s.revision + 1;
        // Gets see the transaction's earlier writes, as in etcd.
        let mut pending: BTreeMap<String, Option<KeyValue>> = BTreeMap::new();
        let mut gets = Vec::new();
        for op in ops {
            match op {
                Op::Put { key, value, lease } => {
                    let kv = Self::record(&s, &key, value, lease, rev)?;
                    pending.insert(key, Some(kv));
                }
                Op::Delete(key) => {
                    let exists = pending
                        .get(&key)
                        .map_or_else(|| s.data.contains_key(&key), Option::is_some);
                    if exists {
                        pending.insert(key, None);
                    }
                }
                Op::Get(key) => gets.push(match pending.get(&key) {
                    Some(p) => p.clone(),
                    None => s.data.get(&key).cloned(),
                }),
            }
        }
        let changes = pending
            .into_iter()
            .map(|(key, kv)| kv.map_or(Change::Delete(key), Change::Put))
            .collect();
        self.commit(&mut s, rev, changes)?;
        Ok(TxnResult {
            succeeded,
            gets,
            revision: s.revision,
        })
    }

    async fn watch_prefix(&self, prefix: &str, from_revision: Revision) -> MetaResult<WatchStream> {
        let s = self.open_state()?;
        if from_revision < s.history_start && from_revision <= s.revision {
            return Err(MetaError::Unavailable(format!(
                "revision {from_revision} is no longer in the watch history (starts at {}); re-read",
                s.history_start
            )));
        }
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
                    Err(_) => Some(Err(MetaError::Unavailable(
                        "watch fell behind; re-read".into(),
                    ))),
                }
            }
        });
        let head = futures::stream::iter((!past.is_empty()).then_some(Ok(past)));
        Ok(head.chain(live).boxed())
    }

    async fn grant_lease(&self, ttl: Duration) -> MetaResult<LeaseId> {
        let mut s = self.open_state()?;
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
        let mut s = self.open_state()?;
        let l = s
            .leases
            .get_mut(&lease)
            .ok_or(MetaError::LeaseExpired(lease))?;
        l.deadline = Instant::now() + l.ttl;
        Ok(l.ttl)
    }

    async fn revoke_lease(&self, lease: LeaseId) -> MetaResult<()> {
        let mut s = self.open_state()?;
        self.drop_lease(&mut s, lease)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn txn_compare_and_swap() {
        let store = LocalStore::in_memory();
        let create = Txn::when([Compare::Absent("k".into())]).then([Op::put("k", "v1")]);
        assert!(store.txn(create.clone()).await.expect("txn").succeeded);
        assert!(!store.txn(create).await.expect("txn").succeeded);
        let swap = Txn::when([Compare::ValueEquals("k".into(), b"v1".to_vec())])
            .then([Op::put("k", "v2"), Op::Get("k".into())]);
        let result = store.txn(swap.clone()).await.expect("txn");
        assert!(result.succeeded);
        assert_eq!(
            result.gets[0].as_ref().map(|kv| kv.value.clone()),
            Some(b"v2".to_vec())
        );
        assert!(!store.txn(swap).await.expect("txn").succeeded);
        let kv = store.get("k").await.expect("get").expect("present");
        assert_eq!(kv.value, b"v2");
    }

    #[tokio::test(start_paused = true)]
    async fn expired_lease_deletes_its_keys_and_notifies_watchers() {
        let store = LocalStore::in_memory();
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

    #[tokio::test]
    async fn on_disk_writes_survive_reopen_and_leased_keys_do_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("meta.redb");
        let rev = {
            let store = LocalStore::open(&path).expect("open");
            assert!(matches!(
                LocalStore::open(&path),
                Err(MetaError::Refused(_))
            ));
            store.put("a", b"1".to_vec(), None).await.expect("put");
            let lease = store
                .grant_lease(Duration::from_secs(30))
                .await
                .expect("lease");
            store
                .put("session/x", b"s".to_vec(), Some(lease))
                .await
                .expect("put");
            store
                .txn(
                    Txn::when([Compare::Absent("b".into())])
                        .then([Op::put("b", "2"), Op::Delete("a".into())]),
                )
                .await
                .expect("txn");
            store.scan_prefix("").await.expect("scan").1
        };
        let store = LocalStore::open(&path).expect("reopen");
        let (kvs, rev2) = store.scan_prefix("").await.expect("scan");
        let keys: Vec<&str> = kvs.iter().map(|kv| kv.key.as_str()).collect();
        assert_eq!(keys, vec!["b"]);
        assert!(rev2 > rev, "revisions keep increasing across reopen");
        assert!(
            store.watch_prefix("", 1).await.is_err(),
            "old history is gone"
        );
        assert!(store.watch_prefix("", rev2 + 1).await.is_ok());
    }
}
