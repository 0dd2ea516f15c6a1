//! The real services the roles depend on, each on free loopback ports with its
//! data in the test's directory: etcd (the metadata store), Kafka (the logs) and
//! MinIO (S3-compatible segment storage).

pub mod etcd;
pub mod kafka;
pub mod minio;

use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

use crate::dir::workspace_root;
use crate::process::tail;

/// One instance of a service that a script in `tests/scripts` runs, with its data
/// and logs in its own directory: `<script> start DIR` starts it (or starts it
/// again, on the same port with the same data) and prints its address once it
/// serves; `<script> kill DIR` kill -9s it through a pid file in DIR. Killed on
/// drop; the tail of its log is printed if the test is failing.
#[derive(Debug)]
struct Scripted {
    script: &'static str,
    dir: PathBuf,
    /// The log to show, relative to `dir`.
    log: &'static str,
}

impl Scripted {
    /// Starts an instance in `dir`; its address.
    fn start(
        script: &'static str,
        dir: PathBuf,
        log: &'static str,
    ) -> anyhow::Result<(Self, String)> {
        let service = Self { script, dir, log };
        let address = service.restart()?;
        Ok((service, address))
    }

    /// `<script> <command> DIR ARGS`: its stdout, trimmed, or an error with its stderr.
    fn run(&self, command: &str, args: &[&str]) -> anyhow::Result<String> {
        let path = workspace_root().join("tests/scripts").join(self.script);
        let out = Command::new(&path)
            .arg(command)
            .arg(&self.dir)
            .args(args)
            .stderr(Stdio::piped())
            .output()
            .with_context(|| format!("run {}", path.display()))?;
        if !out.status.success() {
            bail!(
                "{} {command} {}{} failed ({}):\n{}",
                self.script,
                self.dir.display(),
                args.iter().map(|a| format!(" {a}")).collect::<String>(),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// Starts it again with the same port and data; its address.
    fn restart(&self) -> anyhow::Result<String> {
        self.run("start", &[])
    }

    /// kill -9; the data stays for [`Scripted::restart`].
    fn kill9(&self) -> anyhow::Result<()> {
        self.run("kill", &[]).map(drop)
    }
}

impl Drop for Scripted {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- last lines of {} ({}) ----\n{}\n----",
                self.script.trim_end_matches(".sh"),
                self.dir.display(),
                tail(&self.dir.join(self.log), 40)
            );
        }
        let _ = self.kill9();
    }
}
