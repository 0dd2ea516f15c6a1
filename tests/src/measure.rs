//! What the benchmark binaries share: durable writes timed fairly, and medians.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, ensure};

/// The median of `v` (the upper one for an even count); `v` must not be empty.
pub fn median(mut v: Vec<Duration>) -> Duration {
    v.sort_unstable();
    v[v.len() / 2]
}

/// fsyncs a file or a directory.
pub fn fsync(path: &Path) -> anyhow::Result<()> {
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("fsync {}", path.display()))
}

/// Writes back every dirty page of the machine (`sync(1)`), so that the next
/// measurement does not pay for the writeback of the one before.
pub fn settle() -> anyhow::Result<()> {
    let status = std::process::Command::new("sync")
        .status()
        .context("run sync")?;
    ensure!(status.success(), "sync failed: {status}");
    Ok(())
}
