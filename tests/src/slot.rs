//! How many whole clusters one test binary runs at once.

/// Limits how many whole clusters (Kafka, etcd and every role) run at once in one
/// test binary: on 2 cores, more than two at a time mostly measures the scheduler.
/// Hold the returned slot for the cluster's lifetime. `$HEAVY_TESTS` overrides the 2.
pub fn heavy_slot() -> HeavySlot {
    static STATE: std::sync::Mutex<usize> = std::sync::Mutex::new(0);
    static FREED: std::sync::Condvar = std::sync::Condvar::new();
    let limit = std::env::var("HEAVY_TESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2usize)
        .max(1);
    let mut running = STATE.lock().unwrap_or_else(|p| p.into_inner());
    while *running >= limit {
        running = FREED.wait(running).unwrap_or_else(|p| p.into_inner());
    }
    *running += 1;
    HeavySlot {
        release: || {
            let mut running = STATE.lock().unwrap_or_else(|p| p.into_inner());
            *running -= 1;
            FREED.notify_one();
        },
    }
}

/// A held place among the clusters allowed to run at once.
pub struct HeavySlot {
    release: fn(),
}

impl std::fmt::Debug for HeavySlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HeavySlot")
    }
}

impl Drop for HeavySlot {
    fn drop(&mut self) {
        (self.release)();
    }
}
