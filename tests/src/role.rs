//! One way to start a role of a distributed cluster: [`RoleProcess::start`], given
//! the role, its ports and its arguments.

use std::path::{Path, PathBuf};
use std::process::Command;

use milvus_like_api::proto::data_coord_client::DataCoordClient;
use tonic::transport::Channel;

use crate::clients::data_coord_client;
use crate::process::{Launch, Process, node_binary};
use crate::wait::free_port;

/// A role of a distributed cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    RootCoord,
    DataCoord,
    DataNode,
    Proxy,
}

impl Role {
    /// The `milvus-like` subcommand, and the prefix of standalone's flags for the role.
    pub fn command(self) -> &'static str {
        match self {
            Self::RootCoord => "rootcoord",
            Self::DataCoord => "datacoord",
            Self::DataNode => "datanode",
            Self::Proxy => "proxy",
        }
    }
}

/// The gRPC and HTTP (metrics, health) ports of a role, on 127.0.0.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    pub grpc: u16,
    pub http: u16,
}

impl Ports {
    pub fn free() -> Self {
        Self {
            grpc: free_port(),
            http: free_port(),
        }
    }

    /// `127.0.0.1:<grpc>`, as sessions and leader hints name the role.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.grpc)
    }

    /// `http://127.0.0.1:<grpc>`, for a gRPC client.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.address())
    }
}

/// The flags every role takes: where the metadata store is, and how fast a dead
/// process is noticed.
#[derive(Debug, Clone)]
pub struct MetaArgs {
    pub etcd_endpoint: String,
    pub meta_root: String,
    /// The session TTL and the leader lease TTL.
    pub ttl: &'static str,
    /// The deadline of one etcd request; `None` leaves the node's default.
    pub etcd_timeout: Option<&'static str>,
}

impl MetaArgs {
    /// The tests' defaults: meta root `test`, 3 s TTLs, the node's etcd timeout.
    pub fn new(etcd_endpoint: impl Into<String>) -> Self {
        Self {
            etcd_endpoint: etcd_endpoint.into(),
            meta_root: "test".into(),
            ttl: "3s",
            etcd_timeout: None,
        }
    }

    pub fn args(&self) -> Vec<String> {
        let mut args = vec![
            format!("--etcd-endpoints={}", self.etcd_endpoint),
            format!("--meta-root={}", self.meta_root),
            format!("--session-ttl={}", self.ttl),
            format!("--leader-ttl={}", self.ttl),
        ];
        args.extend(self.etcd_timeout.map(|t| format!("--etcd-timeout={t}")));
        args
    }
}

/// A `milvus-like <role>` process. Killed on drop; the tail of its log is printed
/// if the test is failing.
#[derive(Debug)]
pub struct RoleProcess {
    pub role: Role,
    pub ports: Ports,
    launch: Launch,
    pub process: Process,
}

impl RoleProcess {
    /// `milvus-like <role> --listen=127.0.0.1:<grpc> --http-listen=127.0.0.1:<http> ARGS`
    /// with `RUST_LOG=info,milvus_like_node=debug`, logging to `dir/<name>.log`.
    pub fn start<I>(
        dir: &Path,
        name: &str,
        role: Role,
        ports: Ports,
        args: I,
    ) -> anyhow::Result<Self>
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        let mut all = vec![
            role.command().to_owned(),
            format!("--listen=127.0.0.1:{}", ports.grpc),
            format!("--http-listen=127.0.0.1:{}", ports.http),
        ];
        all.extend(args.into_iter().map(Into::into));
        let mut launch = Launch::new(dir, name, all, "info,milvus_like_node=debug");
        let process = launch.spawn()?;
        Ok(Self {
            role,
            ports,
            launch,
            process,
        })
    }

    /// kill -9 (unless it has stopped already), then start again with the same
    /// arguments and ports; the new run logs to `<name>-<n>.log`.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.process.kill9();
        self.process = self.launch.spawn()?;
        Ok(())
    }

    pub fn name(&self) -> &str {
        &self.launch.name
    }

    /// `http://127.0.0.1:<grpc port>`.
    pub fn endpoint(&self) -> String {
        self.ports.endpoint()
    }
}

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
