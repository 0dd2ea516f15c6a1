//! Child processes whose output goes to a log file, and the `milvus-like` binary.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::wait::wait_for;

/// The last `lines` lines of a log file (empty if it cannot be read).
pub(crate) fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A child process whose output goes to a log file; killed on drop, and its log
/// tail printed if the test is failing.
#[derive(Debug)]
pub struct Process {
    name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Process {
    pub fn spawn(name: &str, mut command: Command, log: PathBuf) -> anyhow::Result<Self> {
        let out = File::options()
            .create(true)
            .append(true)
            .open(&log)
            .with_context(|| format!("open log {}", log.display()))?;
        let err = out.try_clone()?;
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("start {name}: {command:?}"))?;
        Ok(Self {
            name: name.to_owned(),
            child: Some(child),
            log,
        })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether the process has exited (and reaps it).
    pub fn has_exited(&mut self) -> bool {
        match self.child.as_mut() {
            None => true,
            Some(c) => c.try_wait().ok().flatten().is_some(),
        }
    }

    /// Waits (at most `timeout`) until the process has exited by itself.
    pub async fn exited(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let what = format!("{} to exit", self.name);
        wait_for(&what, timeout, || {
            let exited = self.has_exited();
            async move { exited.then_some(()) }
        })
        .await
    }

    /// kill -9.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then kill -9 after `grace`. Returns the exit status if it exited by itself.
    pub fn terminate(&mut self, grace: Duration) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = c.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        let _ = c.wait();
        None
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- last lines of {} ({}) ----\n{}\n----",
                self.name,
                self.log.display(),
                tail(&self.log, 40)
            );
        }
        self.kill9();
    }
}

/// The `milvus-like` binary: `$MILVUS_LIKE_BIN`, else the one cargo built next to
/// this executable: in its own directory (bench binaries live in `target/<profile>/`)
/// or one above (test executables live in `target/<profile>/deps/`). Build it first
/// with `cargo build --bins` (tests/run.sh does).
pub fn node_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("MILVUS_LIKE_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("current exe");
    let candidates: Vec<PathBuf> = exe
        .ancestors()
        .skip(1)
        .take(2)
        .map(|dir| dir.join("milvus-like"))
        .collect();
    candidates
        .iter()
        .find(|bin| bin.is_file())
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "{} is missing: run `cargo build --bins` first (tests/run.sh does)",
                candidates[candidates.len() - 1].display()
            )
        })
}

/// How to start a `milvus-like` process, again and again: its arguments, its
/// `RUST_LOG`, and where its logs go (the first run to `dir/<name>.log`, the n-th
/// restart to `dir/<name>-<n>.log`).
#[derive(Debug)]
pub(crate) struct Launch {
    pub(crate) name: String,
    dir: PathBuf,
    args: Vec<String>,
    rust_log: &'static str,
    runs: u32,
}

impl Launch {
    pub(crate) fn new(dir: &Path, name: &str, args: Vec<String>, rust_log: &'static str) -> Self {
        Self {
            name: name.to_owned(),
            dir: dir.to_owned(),
            args,
            rust_log,
            runs: 0,
        }
    }

    /// `milvus-like ARGS`, one more run.
    pub(crate) fn spawn(&mut self) -> anyhow::Result<Process> {
        let mut cmd = Command::new(node_binary());
        cmd.args(&self.args).env("RUST_LOG", self.rust_log);
        let log = match self.runs {
            0 => self.dir.join(format!("{}.log", self.name)),
            n => self.dir.join(format!("{}-{n}.log", self.name)),
        };
        self.runs += 1;
        Process::spawn(&self.name, cmd, log)
    }
}
