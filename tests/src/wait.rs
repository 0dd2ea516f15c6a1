//! Free loopback ports, and polling until something holds.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use anyhow::bail;

/// A TCP port on 127.0.0.1 that nothing listens on right now, below Linux's
/// ephemeral range (32768-60999): outgoing connections take their local ports from
/// that range, and one of them grabbing a port between this check and the server's
/// bind made tests fail with "address already in use". Ports are handed out in turn
/// from a random start, so concurrent tests of one binary never get the same one.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(2_654_435_761) % SPAN,
        Ordering::AcqRel,
        Ordering::Acquire,
    );
    for _ in 0..SPAN {
        let offset = NEXT.fetch_add(1, Ordering::AcqRel) % SPAN;
        let port = u16::try_from(LOW + offset).unwrap_or(20_000);
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free TCP port between {LOW} and {}", LOW + SPAN)
}

/// Polls `check` every 50 ms until it returns `Some` or `timeout` passes.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
