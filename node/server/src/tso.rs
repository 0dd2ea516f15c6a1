//! The timestamp oracle: 42-bit physical milliseconds + 22-bit logical counter.
//!
//! Invariant: every timestamp issued is greater than every timestamp issued before,
//! by this or any earlier leader, whatever the wall clock does.
//!
//! How: timestamps are only issued with a physical part below `window_end`, and
//! `window_end` is persisted (fenced by the leader key) *before* it is used. A new
//! leader starts at `max(now, persisted window_end)`, above anything a predecessor
//! could have issued. An update loop (every 50 ms) moves the physical part forward
//! to the wall clock, never back, and extends the window ahead of use (3 s by
//! default). A clock that steps back just freezes the physical part; the logical
//! counter carries on, and when it runs out the physical part advances by one ms
//! inside the window. If the window itself is used up (the store is unreachable
//! long enough), allocation waits for an extension instead of repeating a value.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use milvus_like_api::Timestamp;
use milvus_like_api::settings::defaults;
use milvus_like_api::timestamp::MAX_LOGICAL;
use milvus_like_api::tso_client::MAX_TIMESTAMP_COUNT;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::election::Leadership;
use crate::meta::{MetaError, MetaStore, Op, Txn};
use crate::metrics::RootCoordMetrics;

/// Key of the persisted window end (decimal milliseconds, exclusive bound).
pub const WINDOW_KEY: &str = "tso/window-end";

#[derive(Debug, thiserror::Error)]
pub enum TsoError {
    #[error("timestamp count {0} is out of range 1..={MAX_TIMESTAMP_COUNT}")]
    BadCount(u32),
    #[error("this root coordinator is not the leader")]
    NotLeader,
    #[error(
        "the timestamp window is used up and could not be extended (is the metadata store reachable?)"
    )]
    WindowExhausted,
    #[error(transparent)]
    Meta(#[from] MetaError),
}

/// Source of wall-clock milliseconds; tests substitute one they control.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now_ms(&self) -> u64;
}

#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        crate::sys::unix_ms()
    }
}

#[derive(Debug, Clone)]
pub struct TsoConfig {
    /// How far ahead of use the window is persisted.
    pub window: Duration,
    /// Period of the update loop.
    pub update_interval: Duration,
}

impl Default for TsoConfig {
    fn default() -> Self {
        Self {
            window: defaults::TSO_WINDOW,
            update_interval: defaults::TSO_UPDATE_INTERVAL,
        }
    }
}

#[derive(Debug)]
struct State {
    physical: u64,
    /// Next logical value to hand out.
    logical: u64,
    /// Exclusive bound on `physical`, already persisted.
    window_end: u64,
}

#[derive(Debug)]
pub struct TsoAllocator {
    store: Arc<dyn MetaStore>,
    leadership: Leadership,
    clock: Arc<dyn Clock>,
    config: TsoConfig,
    state: Mutex<State>,
    extended: Notify,
    metrics: Arc<RootCoordMetrics>,
}

impl TsoAllocator {
    /// Loads the persisted window, persists a new one above it (fenced by
    /// `leadership`), and returns an allocator ready to serve.
    pub async fn start(
        store: Arc<dyn MetaStore>,
        leadership: Leadership,
        clock: Arc<dyn Clock>,
        config: TsoConfig,
        metrics: Arc<RootCoordMetrics>,
    ) -> Result<Arc<Self>, TsoError> {
        let saved = match store.get(WINDOW_KEY).await? {
            None => 0,
            Some(kv) => std::str::from_utf8(&kv.value)
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| MetaError::corrupt(WINDOW_KEY, "not a decimal number"))?,
        };
        let now = clock.now_ms();
        let physical = now.max(saved);
        let this = Arc::new(Self {
            store,
            leadership,
            clock,
            config,
            state: Mutex::new(State {
                physical,
                logical: 0,
                window_end: 0,
            }),
            extended: Notify::new(),
            metrics,
        });
        this.persist_window(physical + this.window_ms()).await?;
        tracing::info!(
            saved_window_end = saved,
            now,
            physical,
            clock_behind_ms = saved.saturating_sub(now),
            "TSO ready"
        );
        Ok(this)
    }

    fn window_ms(&self) -> u64 {
        u64::try_from(self.config.window.as_millis())
            .unwrap_or(u64::MAX / 4)
            .max(1)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Issues `count` contiguous timestamps without waiting; returns the first.
    pub fn try_alloc(&self, count: u32) -> Result<Timestamp, TsoError> {
        if count == 0 || count > MAX_TIMESTAMP_COUNT {
            return Err(TsoError::BadCount(count));
        }
        if !self.leadership.is_valid() {
            return Err(TsoError::NotLeader);
        }
        let count = u64::from(count);
        let mut s = self.lock();
        if s.window_end == 0 {
            return Err(TsoError::WindowExhausted);
        }
        if s.logical + count > MAX_LOGICAL + 1 {
            if s.physical + 1 >= s.window_end {
                return Err(TsoError::WindowExhausted);
            }
            s.physical += 1;
            s.logical = 0;
            self.metrics.tso_logical_overflows.inc();
        }
        let first = Timestamp::compose(s.physical, s.logical).ok_or(TsoError::WindowExhausted)?;
        s.logical += count;
        drop(s);
        self.metrics.tso_timestamps.inc_by(count);
        self.metrics.tso_requests.inc();
        Ok(first)
    }

    /// Like [`Self::try_alloc`], but waits (up to twice the window) for the window to
    /// be extended when it is used up.
    pub async fn alloc(&self, count: u32) -> Result<Timestamp, TsoError> {
        let give_up = tokio::time::Instant::now() + 2 * self.config.window;
        loop {
            let extended = self.extended.notified();
            match self.try_alloc(count) {
                Err(TsoError::WindowExhausted) if tokio::time::Instant::now() < give_up => {
                    let _ = tokio::time::timeout(self.config.update_interval, extended).await;
                }
                other => return other,
            }
        }
    }

    /// One step of the update loop: follow the wall clock forward, relieve a nearly
    /// used-up logical counter, and extend the window when a third of it is left.
    pub async fn tick(&self) -> Result<(), TsoError> {
        if !self.leadership.is_valid() {
            return Err(TsoError::NotLeader);
        }
        let now = self.clock.now_ms();
        let extend_to = {
            let mut s = self.lock();
            let cap = s.window_end.saturating_sub(1);
            if now > s.physical && s.physical < cap {
                s.physical = now.min(cap);
                s.logical = 0;
            } else if s.logical > MAX_LOGICAL / 2 && s.physical < cap {
                s.physical += 1;
                s.logical = 0;
            }
            let base = now.max(s.physical);
            (s.window_end.saturating_sub(base) <= self.window_ms() / 3)
                .then(|| base + self.window_ms())
        };
        if let Some(end) = extend_to {
            self.persist_window(end).await?;
        }
        Ok(())
    }

    async fn persist_window(&self, end: u64) -> Result<(), TsoError> {
        let txn = Txn::when([self.leadership.fence()])
            .then([Op::put(WINDOW_KEY, end.to_string().into_bytes())]);
        let result = self.store.txn(txn).await.inspect_err(|_| {
            self.metrics.tso_window_persist_errors.inc();
        })?;
        if !result.succeeded {
            self.leadership
                .give_up("fenced TSO window write failed: another leader exists");
            return Err(TsoError::NotLeader);
        }
        self.metrics.tso_window_persists.inc();
        let mut s = self.lock();
        if end > s.window_end {
            s.window_end = end;
        }
        drop(s);
        self.extended.notify_waiters();
        Ok(())
    }

    /// Runs the update loop until the term ends or `cancel` fires.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        let mut interval = tokio::time::interval(self.config.update_interval);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                () = self.leadership.lost() => return,
                _ = interval.tick() => {}
            }
            match self.tick().await {
                Ok(()) => {}
                Err(TsoError::NotLeader) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "TSO update failed; serving from the current window")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use milvus_like_api::timestamp::LOGICAL_BITS;

    use super::*;
    use crate::election::Candidate;
    use crate::meta::LocalStore;

    #[derive(Debug)]
    struct FakeClock(AtomicU64);

    impl FakeClock {
        fn set(&self, ms: u64) {
            self.0.store(ms, Ordering::SeqCst);
        }
    }

    impl Clock for FakeClock {
        fn now_ms(&self) -> u64 {
            self.0.load(Ordering::SeqCst)
        }
    }

    const T0: u64 = 1_764_000_000_000;

    async fn leader(store: &Arc<LocalStore>, id: i64) -> Leadership {
        Candidate::new(
            store.clone(),
            "leader/rootcoord",
            id,
            "x:1",
            Duration::from_secs(30),
        )
        .campaign(&CancellationToken::new())
        .await
        .expect("elected")
    }

    async fn allocator(
        store: &Arc<LocalStore>,
        clock: &Arc<FakeClock>,
        id: i64,
    ) -> Arc<TsoAllocator> {
        TsoAllocator::start(
            store.clone(),
            leader(store, id).await,
            clock.clone(),
            TsoConfig::default(),
            Arc::new(RootCoordMetrics::default()),
        )
        .await
        .expect("start")
    }

    #[tokio::test]
    async fn ranges_are_contiguous_and_increasing() {
        let store = Arc::new(LocalStore::in_memory());
        let clock = Arc::new(FakeClock(AtomicU64::new(T0)));
        let tso = allocator(&store, &clock, 1).await;
        let a = tso.try_alloc(10).expect("alloc");
        let b = tso.try_alloc(1).expect("alloc");
        assert_eq!(a.physical(), T0);
        assert_eq!(
            b.as_u64(),
            a.as_u64() + 10,
            "ranges follow each other with no gap"
        );
        clock.set(T0 + 5);
        tso.tick().await.expect("tick");
        let c = tso.try_alloc(1).expect("alloc");
        assert_eq!((c.physical(), c.logical()), (T0 + 5, 0));
    }

    #[tokio::test]
    async fn bad_counts_are_refused() {
        let store = Arc::new(LocalStore::in_memory());
        let clock = Arc::new(FakeClock(AtomicU64::new(T0)));
        let tso = allocator(&store, &clock, 1).await;
        assert!(matches!(tso.try_alloc(0), Err(TsoError::BadCount(0))));
        assert!(matches!(
            tso.try_alloc(MAX_TIMESTAMP_COUNT + 1),
            Err(TsoError::BadCount(_))
        ));
        assert!(tso.try_alloc(MAX_TIMESTAMP_COUNT).is_ok());
    }

    #[tokio::test]
    async fn logical_overflow_advances_physical_instead_of_repeating() {
        let store = Arc::new(LocalStore::in_memory());
        let clock = Arc::new(FakeClock(AtomicU64::new(T0)));
        let tso = allocator(&store, &clock, 1).await;
        let mut last = 0;
        // 20 full-size ranges need 5M logical values: more than one millisecond holds.
        for _ in 0..20 {
            let ts = tso.try_alloc(MAX_TIMESTAMP_COUNT).expect("alloc");
            assert!(ts.as_u64() > last);
            assert!(ts.logical() + u64::from(MAX_TIMESTAMP_COUNT) - 1 <= MAX_LOGICAL);
            last = ts.as_u64() + u64::from(MAX_TIMESTAMP_COUNT) - 1;
        }
        assert!(
            Timestamp::from_u64(last).physical() > T0,
            "physical moved on"
        );
    }

    #[tokio::test]
    async fn exhausted_window_refuses_rather_than_repeating() {
        let store = Arc::new(LocalStore::in_memory());
        let clock = Arc::new(FakeClock(AtomicU64::new(T0)));
        let tso = allocator(&store, &clock, 1).await;
        store.set_down(true);
        let mut last = 0;
        let mut issued = 0u64;
        loop {
            match tso.try_alloc(MAX_TIMESTAMP_COUNT) {
                Ok(ts) => {
                    assert!(ts.as_u64() > last);
                    last = ts.as_u64();
                    issued += 1;
                }
                Err(TsoError::WindowExhausted) => break,
                Err(e) => panic!("unexpected {e}"),
            }
        }
        // The 3 s window holds 3000 ms of 16 ranges each.
        assert_eq!(issued, 3000 * 16);
        assert!(
            tso.tick().await.is_err(),
            "cannot extend while the store is down"
        );
        store.set_down(false);
        clock.set(T0 + 10_000);
        tso.tick().await.expect("extends");
        tso.tick().await.expect("moves physical");
        assert!(tso.try_alloc(1).expect("serves again").as_u64() > last);
    }

    #[tokio::test]
    async fn clock_stepping_back_never_repeats_or_decreases() {
        let store = Arc::new(LocalStore::in_memory());
        let clock = Arc::new(FakeClock(AtomicU64::new(T0)));
        let tso = allocator(&store, &clock, 1).await;
        clock.set(T0 + 1000);
        tso.tick().await.expect("tick");
        let before = tso.try_alloc(1).expect("alloc");
        clock.set(T0 - 60_000); // NTP stepped the clock a minute back
        let mut last = before.as_u64();
        for i in 0..2_000 {
            if i % 100 == 0 {
                tso.tick().await.expect("tick");
            }
            let ts = tso.try_alloc(1000).expect("alloc");
            assert!(ts.as_u64() > last);
            last = ts.as_u64() + 999;
        }
        assert!(Timestamp::from_u64(last).physical() >= T0 + 1000);
    }

    #[tokio::test]
    async fn a_new_leader_starts_above_everything_the_old_one_could_issue() {
        let store = Arc::new(LocalStore::in_memory());
        let clock = Arc::new(FakeClock(AtomicU64::new(T0)));
        let old = allocator(&store, &clock, 1).await;
        let last = old.try_alloc(5).expect("alloc").as_u64() + 4;
        // The new leader's clock is far behind: it must still start above the window.
        clock.set(T0 - 3_600_000);
        let saved = store.get(WINDOW_KEY).await.expect("get").expect("saved");
        assert_eq!(saved.value, (T0 + 3000).to_string().into_bytes());
        old.leadership.resign(store.as_ref()).await;
        assert!(matches!(old.try_alloc(1), Err(TsoError::NotLeader)));
        let new = allocator(&store, &clock, 2).await;
        let first = new.try_alloc(1).expect("alloc");
        assert!(first.as_u64() > last);
        assert_eq!(first.as_u64() >> LOGICAL_BITS, T0 + 3000);
    }

    #[tokio::test]
    async fn a_deposed_leader_cannot_extend_the_window() {
        let store = Arc::new(LocalStore::in_memory());
        let clock = Arc::new(FakeClock(AtomicU64::new(T0)));
        let tso = allocator(&store, &clock, 1).await;
        // Someone else took the key (as after our lease expired unnoticed).
        store
            .put("leader/rootcoord", b"other".to_vec(), None)
            .await
            .expect("put");
        clock.set(T0 + 2500);
        assert!(matches!(tso.tick().await, Err(TsoError::NotLeader)));
        assert!(matches!(tso.try_alloc(1), Err(TsoError::NotLeader)));
    }
}
