//! One way to start a role of a distributed cluster: [`RoleProcess::start`], given
//! the role, its ports and its arguments.

use std::path::Path;

use crate::process::{Launch, Process};
use crate::wait::free_port;

/// A role of a distributed cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    RootCoord,
    DataCoord,
    DataNode,
    Proxy,
    QueryNode,
}

impl Role {
    /// The `milvus-like` subcommand, and the prefix of standalone's flags for the role.
    pub fn command(self) -> &'static str {
        match self {
            Self::RootCoord => "rootcoord",
            Self::DataCoord => "datacoord",
            Self::DataNode => "datanode",
            Self::Proxy => "proxy",
            Self::QueryNode => "querynode",
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
