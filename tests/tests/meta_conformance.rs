//! One conformance suite for both `MetaStore` backends: a real etcd (started on
//! a loopback port) and the embedded redb store of standalone. Each case is a
//! function of a store, run against both, so the embedded default provably
//! behaves like etcd where the system relies on it: revisions, prefix scans,
//! compare-and-swap transactions, watches from a revision, and leases.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use milvus_like_node::meta::{
    Compare, EtcdConfig, EtcdStore, LocalStore, MetaError, MetaStore, Op, Txn, WatchEvent,
};
use milvus_like_tests::{Etcd, TestDir};

/// Runs `case` against etcd and against the embedded store, each fresh.
async fn on_both<F, Fut>(name: &str, case: F)
where
    F: Fn(Arc<dyn MetaStore>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let dir = TestDir::new(&format!("meta-{name}"));
    let etcd = Etcd::start(dir.path()).await.expect("etcd starts");
    let remote = EtcdStore::connect(EtcdConfig {
        endpoints: vec![etcd.endpoint()],
        root: format!("conformance/{name}"),
        ..EtcdConfig::default()
    })
    .await
    .expect("connect to etcd");
    case(Arc::new(remote)).await;
    let local = LocalStore::open(&dir.path().join("meta.redb")).expect("open the embedded store");
    case(Arc::new(local)).await;
}

fn which(store: &Arc<dyn MetaStore>) -> String {
    store.describe()
}

#[tokio::test]
async fn reads_writes_and_revisions() {
    on_both("rw", |store| async move {
        let s = which(&store);
        assert_eq!(store.get("a").await.expect("get"), None, "{s}");
        store.put("a", b"1".to_vec(), None).await.expect("put");
        let first = store.get("a").await.expect("get").expect("a exists");
        assert_eq!(first.value, b"1", "{s}");
        assert_eq!(first.create_revision, first.mod_revision, "{s}");
        assert_eq!(first.lease, 0, "{s}");
        store
            .put("a", b"2".to_vec(), None)
            .await
            .expect("put again");
        let second = store.get("a").await.expect("get").expect("a exists");
        assert_eq!(second.value, b"2", "{s}");
        assert_eq!(second.create_revision, first.create_revision, "{s}");
        assert!(second.mod_revision > first.mod_revision, "{s}");
        assert!(store.delete("a").await.expect("delete"), "{s}");
        assert!(!store.delete("a").await.expect("delete again"), "{s}");
        assert_eq!(store.get("a").await.expect("get"), None, "{s}");
    })
    .await;
}

#[tokio::test]
async fn prefix_scans_are_ordered_and_bounded() {
    on_both("scan", |store| async move {
        let s = which(&store);
        for key in ["p/b", "p/a", "p/c/d", "q/a", "p"] {
            store
                .put(key, key.as_bytes().to_vec(), None)
                .await
                .expect("put");
        }
        let (kvs, revision) = store.scan_prefix("p/").await.expect("scan");
        let keys: Vec<&str> = kvs.iter().map(|kv| kv.key.as_str()).collect();
        assert_eq!(keys, ["p/a", "p/b", "p/c/d"], "{s}");
        assert!(
            kvs.iter().all(|kv| kv.mod_revision <= revision),
            "{s}: read at {revision}: {kvs:?}"
        );
        let (none, _) = store.scan_prefix("z/").await.expect("scan nothing");
        assert!(none.is_empty(), "{s}");
    })
    .await;
}

#[tokio::test]
async fn transactions_compare_then_swap_atomically() {
    on_both("txn", |store| async move {
        let s = which(&store);
        // Absent: create once.
        let create = || {
            Txn::when([Compare::Absent("lock".into())])
                .then([Op::put("lock", b"me".to_vec()), Op::Get("lock".into())])
                .otherwise([Op::Get("lock".into())])
        };
        let won = store.txn(create()).await.expect("txn");
        assert!(won.succeeded, "{s}");
        let held = won.gets[0].clone().expect("the lock, read in the same txn");
        assert_eq!(held.value, b"me", "{s}");
        let lost = store.txn(create()).await.expect("txn");
        assert!(!lost.succeeded, "{s}");
        assert_eq!(lost.gets.len(), 1, "{s}");
        assert_eq!(
            lost.gets[0].as_ref().map(|kv| kv.value.clone()),
            Some(b"me".to_vec()),
            "{s}"
        );
        // ValueEquals and ModRevision guard a swap; a stale one changes nothing.
        let swap = Txn::when([
            Compare::ValueEquals("lock".into(), b"me".to_vec()),
            Compare::ModRevision("lock".into(), held.mod_revision),
        ])
        .then([
            Op::put("lock", b"next".to_vec()),
            Op::Delete("other".into()),
        ]);
        assert!(
            store.txn(swap.clone()).await.expect("swap").succeeded,
            "{s}"
        );
        assert!(!store.txn(swap).await.expect("stale swap").succeeded, "{s}");
        let now = store.get("lock").await.expect("get").expect("lock");
        assert_eq!(now.value, b"next", "{s}");
        // ModRevision 0 means absent.
        let absent = Txn::when([Compare::ModRevision("never".into(), 0)])
            .then([Op::put("never", b"x".to_vec())]);
        assert!(store.txn(absent).await.expect("txn").succeeded, "{s}");
    })
    .await;
}

#[tokio::test]
async fn watches_replay_from_a_revision_then_follow() {
    on_both("watch", |store| async move {
        let s = which(&store);
        store.put("w/1", b"a".to_vec(), None).await.expect("put");
        let from = store
            .get("w/1")
            .await
            .expect("get")
            .expect("w/1")
            .mod_revision;
        store.put("w/2", b"b".to_vec(), None).await.expect("put");
        store.put("other", b"c".to_vec(), None).await.expect("put");
        let mut stream = store.watch_prefix("w/", from).await.expect("watch");
        store.delete("w/1").await.expect("delete");
        let mut seen = Vec::new();
        while seen.len() < 3 {
            let batch = tokio::time::timeout(Duration::from_secs(10), stream.next())
                .await
                .unwrap_or_else(|_| panic!("{s}: no event after {seen:?}"))
                .expect("the stream goes on")
                .expect("no error");
            for event in batch {
                seen.push(match event {
                    WatchEvent::Put(kv) => format!("put {}", kv.key),
                    WatchEvent::Delete { key, .. } => format!("delete {key}"),
                });
            }
        }
        assert_eq!(seen, ["put w/1", "put w/2", "delete w/1"], "{s}");
    })
    .await;
}

#[tokio::test]
async fn leased_keys_go_with_their_lease() {
    on_both("lease", |store| async move {
        let s = which(&store);
        let revoked = store
            .grant_lease(Duration::from_secs(30))
            .await
            .expect("lease");
        store
            .put("l/revoked", b"x".to_vec(), Some(revoked))
            .await
            .expect("put");
        let kv = store.get("l/revoked").await.expect("get").expect("key");
        assert_eq!(kv.lease, revoked, "{s}");
        let ttl = store.keep_alive(revoked).await.expect("keep alive");
        assert!(
            ttl > Duration::ZERO && ttl <= Duration::from_secs(30),
            "{s}: {ttl:?}"
        );
        store.revoke_lease(revoked).await.expect("revoke");
        assert_eq!(store.get("l/revoked").await.expect("get"), None, "{s}");
        let renewed = store.keep_alive(revoked).await;
        assert!(
            matches!(renewed, Err(MetaError::LeaseExpired(_))),
            "{s}: a revoked lease cannot be renewed: {renewed:?}"
        );
        // A lease not renewed expires by itself, and takes its keys.
        let short = store
            .grant_lease(Duration::from_secs(2))
            .await
            .expect("lease");
        store
            .put("l/expires", b"x".to_vec(), Some(short))
            .await
            .expect("put");
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while store.get("l/expires").await.expect("get").is_some() {
            assert!(
                std::time::Instant::now() < deadline,
                "{s}: the key outlived its lease"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
}
