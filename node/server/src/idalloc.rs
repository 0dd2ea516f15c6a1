//! Globally unique ids (collections, partitions, segments, log files).
//!
//! The leader reserves ids in batches: it persists the end of the reserved range
//! (fenced by the leader key) before handing out any id below it, so ids never
//! repeat across restarts or leader changes; a restart skips the unused rest.

use std::sync::Arc;

use tokio::sync::Mutex;

use crate::election::Leadership;
use crate::meta::{MetaError, MetaStore, Op, Txn};

/// Key of the persisted end of the reserved range (decimal, exclusive).
pub const RESERVED_KEY: &str = "id/reserved-end";
/// The first id ever handed out; smaller values stay free for sentinels.
pub const FIRST_ID: i64 = 1 << 16;
/// Largest `count` of one request.
pub const MAX_ID_COUNT: u32 = 1_000_000;

#[derive(Debug, thiserror::Error)]
pub enum IdError {
    #[error("id count {0} is out of range 1..={MAX_ID_COUNT}")]
    BadCount(u32),
    #[error("this root coordinator is not the leader")]
    NotLeader,
    #[error(transparent)]
    Meta(#[from] MetaError),
}

#[derive(Debug)]
struct Range {
    next: i64,
    end: i64,
}

#[derive(Debug)]
pub struct IdAllocator {
    store: Arc<dyn MetaStore>,
    leadership: Leadership,
    /// Ids reserved per store write.
    batch: i64,
    range: Mutex<Range>,
}

impl IdAllocator {
    pub async fn start(
        store: Arc<dyn MetaStore>,
        leadership: Leadership,
        batch: u32,
    ) -> Result<Self, IdError> {
        let saved = match store.get(RESERVED_KEY).await? {
            None => FIRST_ID,
            Some(kv) => std::str::from_utf8(&kv.value)
                .ok()
                .and_then(|s| s.trim().parse::<i64>().ok())
                .filter(|v| *v >= FIRST_ID)
                .ok_or_else(|| MetaError::corrupt(RESERVED_KEY, "not an id"))?,
        };
        Ok(Self {
            store,
            leadership,
            batch: i64::from(batch.max(1)),
            range: Mutex::new(Range {
                next: saved,
                end: saved,
            }),
        })
    }

    /// Returns the first of `count` fresh ids `[start, start + count)`.
    pub async fn alloc(&self, count: u32) -> Result<i64, IdError> {
        if count == 0 || count > MAX_ID_COUNT {
            return Err(IdError::BadCount(count));
        }
        if !self.leadership.is_valid() {
            return Err(IdError::NotLeader);
        }
        let count = i64::from(count);
        let mut range = self.range.lock().await;
        if range.next + count > range.end {
            let end = range.next + count.max(self.batch);
            let txn = Txn::when([self.leadership.fence()])
                .then([Op::put(RESERVED_KEY, end.to_string().into_bytes())]);
            if !self.store.txn(txn).await?.succeeded {
                self.leadership
                    .give_up("fenced id reservation failed: another leader exists");
                return Err(IdError::NotLeader);
            }
            range.end = end;
        }
        let start = range.next;
        range.next += count;
        Ok(start)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::election::Candidate;
    use crate::meta::LocalStore;

    async fn allocator(store: &Arc<LocalStore>, id: i64) -> IdAllocator {
        let leadership = Candidate::new(
            store.clone(),
            "leader/x",
            id,
            "a:1",
            Duration::from_secs(30),
        )
        .campaign(&CancellationToken::new())
        .await
        .expect("elected");
        IdAllocator::start(store.clone(), leadership, 100)
            .await
            .expect("start")
    }

    #[tokio::test]
    async fn ids_never_repeat_across_restarts() {
        let store = Arc::new(LocalStore::in_memory());
        let mut seen = std::collections::HashSet::new();
        for term in 1..=3 {
            let ids = allocator(&store, term).await;
            for count in [1, 7, 150, 1] {
                let start = ids.alloc(count).await.expect("alloc");
                for id in start..start + i64::from(count) {
                    assert!(id >= FIRST_ID);
                    assert!(seen.insert(id), "id {id} issued twice");
                }
            }
            ids.leadership.resign(store.as_ref()).await;
        }
    }

    #[tokio::test]
    async fn bad_counts_are_refused() {
        let store = Arc::new(LocalStore::in_memory());
        let ids = allocator(&store, 1).await;
        assert!(matches!(ids.alloc(0).await, Err(IdError::BadCount(0))));
        assert!(matches!(
            ids.alloc(MAX_ID_COUNT + 1).await,
            Err(IdError::BadCount(_))
        ));
    }
}
