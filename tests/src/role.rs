//! The `milvus-like` role processes a test starts.

use std::path::{Path, PathBuf};
use std::process::Command;

use milvus_like_api::proto::data_coord_client::DataCoordClient;
use tonic::transport::Channel;

use crate::clients::data_coord_client;
use crate::process::{Process, node_binary};
use crate::wait::free_port;

/// A `milvus-like rootcoord` process.
#[derive(Debug)]
pub struct RootCoordProcess {
    pub port: u16,
    pub http_port: u16,
    pub process: Process,
}

/// Knobs of a test root coordinator.
#[derive(Debug, Clone)]
pub struct RootCoordOptions {
    pub etcd_endpoint: String,
    pub meta_root: String,
    pub session_ttl: &'static str,
    pub leader_ttl: &'static str,
}

impl RootCoordProcess {
    pub fn start(dir: &Path, name: &str, opts: &RootCoordOptions) -> anyhow::Result<Self> {
        Self::start_on(dir, name, opts, free_port(), free_port())
    }

    /// Starts on given ports, e.g. those of a process it replaces.
    pub fn start_on(
        dir: &Path,
        name: &str,
        opts: &RootCoordOptions,
        port: u16,
        http_port: u16,
    ) -> anyhow::Result<Self> {
        let mut cmd = Command::new(node_binary());
        cmd.arg("rootcoord")
            .arg(format!("--listen=127.0.0.1:{port}"))
            .arg(format!("--http-listen=127.0.0.1:{http_port}"))
            .arg(format!("--etcd-endpoints={}", opts.etcd_endpoint))
            .arg(format!("--meta-root={}", opts.meta_root))
            .arg(format!("--session-ttl={}", opts.session_ttl))
            .arg(format!("--leader-ttl={}", opts.leader_ttl))
            .arg("--etcd-timeout=1s")
            .env("RUST_LOG", "info,milvus_like_node=debug");
        let process = Process::spawn(name, cmd, dir.join(format!("{name}.log")))?;
        Ok(Self {
            port,
            http_port,
            process,
        })
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// A `milvus-like datacoord` process.
#[derive(Debug)]
pub struct DataCoordProcess {
    pub port: u16,
    pub http_port: u16,
    pub process: Process,
}

impl DataCoordProcess {
    /// Starts with the test defaults (3 channels, round robin, 3 s TTLs) plus `extra` flags.
    pub fn start_on(
        dir: &Path,
        name: &str,
        opts: &RootCoordOptions,
        rootcoord: &str,
        (port, http_port): (u16, u16),
        extra: &[&str],
    ) -> anyhow::Result<Self> {
        let mut cmd = Command::new(node_binary());
        cmd.arg("datacoord")
            .arg(format!("--listen=127.0.0.1:{port}"))
            .arg(format!("--http-listen=127.0.0.1:{http_port}"))
            .arg(format!("--etcd-endpoints={}", opts.etcd_endpoint))
            .arg(format!("--meta-root={}", opts.meta_root))
            .arg(format!("--session-ttl={}", opts.session_ttl))
            .arg(format!("--leader-ttl={}", opts.leader_ttl))
            .arg(format!("--rootcoord-endpoints={rootcoord}"))
            .arg("--etcd-timeout=1s")
            .args(extra)
            .env("RUST_LOG", "info,milvus_like_node=debug");
        let process = Process::spawn(name, cmd, dir.join(format!("{name}.log")))?;
        Ok(Self {
            port,
            http_port,
            process,
        })
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn client(&self) -> DataCoordClient<Channel> {
        data_coord_client(&self.endpoint())
    }
}

/// Any `milvus-like` role process, started with explicit arguments; ports picked
/// by the caller so that a restart can reuse them.
#[derive(Debug)]
pub struct NodeProcess {
    pub name: String,
    pub port: u16,
    pub http_port: u16,
    args: Vec<String>,
    log_dir: PathBuf,
    restarts: u32,
    pub process: Process,
}

impl NodeProcess {
    /// `milvus-like <role> --listen=127.0.0.1:<port> --http-listen=... <args>`.
    pub fn start(dir: &Path, name: &str, role: &str, args: &[String]) -> anyhow::Result<Self> {
        let (port, http_port) = (free_port(), free_port());
        let mut all = vec![
            role.to_owned(),
            format!("--listen=127.0.0.1:{port}"),
            format!("--http-listen=127.0.0.1:{http_port}"),
        ];
        all.extend(args.iter().cloned());
        let process = Self::spawn(dir, name, &all, 0)?;
        Ok(Self {
            name: name.to_owned(),
            port,
            http_port,
            args: all,
            log_dir: dir.to_owned(),
            restarts: 0,
            process,
        })
    }

    fn spawn(dir: &Path, name: &str, args: &[String], restarts: u32) -> anyhow::Result<Process> {
        let mut cmd = Command::new(node_binary());
        cmd.args(args)
            .env("RUST_LOG", "info,milvus_like_node=debug");
        let log = if restarts == 0 {
            dir.join(format!("{name}.log"))
        } else {
            dir.join(format!("{name}-{restarts}.log"))
        };
        Process::spawn(name, cmd, log)
    }

    /// kill -9 then start again with the same arguments and ports.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.process.kill9();
        self.restarts += 1;
        self.process = Self::spawn(&self.log_dir, &self.name, &self.args, self.restarts)?;
        Ok(())
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}
