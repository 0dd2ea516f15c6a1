//! A real etcd server.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Context;

use crate::process::Process;
use crate::wait::{free_port, wait_for};

/// The `etcd` binary: `$ETCD_BIN`, else `etcd` on PATH.
fn etcd_binary() -> PathBuf {
    std::env::var_os("ETCD_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("etcd"))
}

/// A real etcd server on loopback with its own data directory.
#[derive(Debug)]
pub struct Etcd {
    pub client_port: u16,
    peer_port: u16,
    data_dir: PathBuf,
    log: PathBuf,
    process: Option<Process>,
}

impl Etcd {
    /// Starts etcd under `dir` and waits until it answers.
    pub async fn start(dir: &Path) -> anyhow::Result<Self> {
        Self::start_on(dir, free_port()).await
    }

    /// Starts etcd on a given client port (e.g. one a process already tries to reach).
    pub async fn start_on(dir: &Path, client_port: u16) -> anyhow::Result<Self> {
        let mut etcd = Self {
            client_port,
            peer_port: free_port(),
            data_dir: dir.join("etcd-data"),
            log: dir.join("etcd.log"),
            process: None,
        };
        etcd.launch().await?;
        Ok(etcd)
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    async fn launch(&mut self) -> anyhow::Result<()> {
        let client = self.endpoint();
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let mut cmd = Command::new(etcd_binary());
        cmd.arg("--name=test")
            .arg(format!("--data-dir={}", self.data_dir.display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=test={peer}"))
            .arg("--initial-cluster-state=new")
            .arg("--log-level=warn")
            .arg("--quota-backend-bytes=1073741824");
        let process = Process::spawn("etcd", cmd, self.log.clone())
            .context("start etcd (install it with tests/scripts/install.sh, or set ETCD_BIN)")?;
        self.process = Some(process);
        let endpoint = self.endpoint();
        wait_for("etcd to answer", Duration::from_secs(20), || {
            let endpoint = endpoint.clone();
            async move {
                let mut client = etcd_client::Client::connect([endpoint], None).await.ok()?;
                client.status().await.ok().map(|_| ())
            }
        })
        .await
    }

    /// kill -9; the data stays for [`Etcd::restart`].
    pub fn kill9(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.kill9();
        }
    }

    /// Starts again on the same ports and data.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.kill9();
        self.launch().await
    }
}
