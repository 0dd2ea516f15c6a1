//! The real services the roles depend on, each on free loopback ports with its
//! data in the test's directory: etcd (the metadata store), Kafka (the logs) and
//! MinIO (S3-compatible segment storage).

pub mod etcd;
pub mod kafka;
pub mod minio;

use std::process::{Command, Stdio};

use anyhow::{Context, bail};

use crate::dir::workspace_root;

/// Runs `tests/scripts/<script> ARGS`; its stdout, trimmed, or an error with its stderr.
fn script(script: &str, args: &[&str]) -> anyhow::Result<String> {
    let path = workspace_root().join("tests/scripts").join(script);
    let out = Command::new(&path)
        .args(args)
        .stderr(Stdio::piped())
        .output()
        .with_context(|| format!("run {}", path.display()))?;
    if !out.status.success() {
        bail!(
            "{script} {} failed ({}):\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}
