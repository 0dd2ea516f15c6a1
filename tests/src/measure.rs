//! What the benchmark binaries share: durable writes timed fairly, medians, and
//! what a process costs (CPU time, peak RSS).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
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

/// Touches every free page of the machine once (allocates `MemFree` less a
/// margin in 256 MiB blocks, writes them, frees them); returns the bytes touched.
///
/// On a virtual machine whose host backs guest memory lazily (Firecracker here),
/// the first write to a guest page costs a host fault: writing 3 GB into the page
/// cache took 5.9-7.2 s of system time into never-used pages and 0.9 s into
/// recycled ones (`dd`, 2026-12-05). Whichever benchmark phase first grows the page
/// cache or a heap into such memory pays that, and its reference does not; after
/// this, both sides of a comparison meet memory the machine has used before.
pub fn warm_memory() -> anyhow::Result<u64> {
    const BLOCK: usize = 256 << 20;
    const MARGIN_KIB: u64 = 1 << 20;
    let meminfo = std::fs::read_to_string("/proc/meminfo").context("read /proc/meminfo")?;
    let free_kib = proc_field(&meminfo, "MemFree:").context("no MemFree in /proc/meminfo")?;
    let blocks = usize::try_from(free_kib.saturating_sub(MARGIN_KIB) * 1024)? / BLOCK;
    let held: Vec<Vec<u8>> = (0..blocks).map(|_| vec![1u8; BLOCK]).collect();
    let touched = held.iter().map(|b| b.len() as u64).sum();
    drop(held);
    Ok(touched)
}

/// CPU seconds (user + system) a process has used so far, from `/proc/PID/stat`
/// (`None` when it cannot be read: another OS, or the process is gone).
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) in parentheses:
    // state is field 3, utime 14 and stime 15, in USER_HZ (100 on Linux).
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// The CPU time a set of named processes used between [`CpuUse::start`] and
/// [`CpuUse::seconds`]. Several processes may share a name (data nodes): their
/// times add up.
#[derive(Debug)]
pub struct CpuUse {
    before: Vec<(String, u32, f64)>,
}

impl CpuUse {
    /// Starts counting for each `(name, pid)`; a process without a pid, or whose
    /// time cannot be read, is left out.
    pub fn start<S: AsRef<str>>(processes: &[(S, Option<u32>)]) -> Self {
        let before = processes
            .iter()
            .filter_map(|(name, pid)| {
                let pid = (*pid)?;
                Some((name.as_ref().to_owned(), pid, cpu_seconds(pid)?))
            })
            .collect();
        Self { before }
    }

    /// CPU seconds per name since the start, in the order first given.
    pub fn by_name(&self) -> Vec<(String, f64)> {
        let mut out: Vec<(String, f64)> = Vec::new();
        for (name, pid, before) in &self.before {
            let Some(now) = cpu_seconds(*pid) else {
                continue;
            };
            match out.iter_mut().find(|(n, _)| n == name) {
                Some((_, s)) => *s += now - before,
                None => out.push((name.clone(), now - before)),
            }
        }
        out
    }

    /// `name_cpu_s=seconds` for each name, then the total.
    pub fn seconds(&self) -> (String, f64) {
        let by_name = self.by_name();
        let parts: Vec<String> = by_name
            .iter()
            .map(|(name, s)| format!("{name}_cpu_s={s:.2}"))
            .collect();
        (parts.join(" "), by_name.iter().map(|(_, s)| s).sum())
    }
}

/// What a process has written so far, from `/proc/PID/io`: bytes passed to
/// `write`-like calls (`wchar`, files and sockets alike) and bytes it caused to be
/// sent to the storage layer (`write_bytes`). `None` when it cannot be read.
pub fn io_written(pid: u32) -> Option<IoWritten> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    Some(IoWritten {
        wchar: proc_field(&text, "wchar:")?,
        write_bytes: proc_field(&text, "write_bytes:")?,
        syscw: proc_field(&text, "syscw:")?,
    })
}

/// See [`io_written`].
#[derive(Debug, Clone, Copy, Default)]
pub struct IoWritten {
    pub wchar: u64,
    pub write_bytes: u64,
    /// `write`-like system calls.
    pub syscw: u64,
}

impl IoWritten {
    /// What was written between `before` and `self`.
    pub fn since(self, before: Self) -> Self {
        Self {
            wchar: self.wchar.saturating_sub(before.wchar),
            write_bytes: self.write_bytes.saturating_sub(before.write_bytes),
            syscw: self.syscw.saturating_sub(before.syscw),
        }
    }
}

/// A field of `/proc/PID/status` in KiB (`VmRSS:`, `VmHWM:`).
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    proc_field(&text, field)
}

/// The number after `name` in a `/proc` file of `name value [kB]` lines
/// (`/proc/meminfo`, `/proc/PID/status`, `/proc/PID/io`).
fn proc_field(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Samples a process's RSS every 100 ms on a thread of its own, until
/// [`RssSampler::finish`].
#[derive(Debug)]
pub struct RssSampler {
    stop: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<(u64, u64)>,
}

impl RssSampler {
    pub fn start(pid: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let (mut max, mut hwm) = (0, 0);
            while !flag.load(Ordering::Relaxed) {
                if let Some(kib) = status_kib(pid, "VmRSS:") {
                    max = max.max(kib);
                }
                if let Some(kib) = status_kib(pid, "VmHWM:") {
                    hwm = kib;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            (max, hwm)
        });
        Self { stop, handle }
    }

    /// (max sampled VmRSS, VmHWM) in KiB.
    pub fn finish(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap_or((0, 0))
    }
}

/// Runs a benchmark's body on a multi-threaded Tokio runtime until it ends, or
/// until Ctrl-C or SIGTERM: then the body is dropped, which stops the processes it
/// started (their handles kill them on drop), and the result is an error.
pub fn run_until_signal(
    bench: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the Tokio runtime")?;
    runtime.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = bench => r,
            _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted"),
            _ = term.recv() => anyhow::bail!("terminated"),
        }
    })
}

/// The value of a benchmark's numeric flag (`1_000_000` is allowed).
pub fn number_flag(flag: &str, value: &str) -> anyhow::Result<u64> {
    value
        .replace('_', "")
        .parse()
        .with_context(|| format!("bad number {value:?} for {flag}"))
}
