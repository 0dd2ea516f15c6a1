//! `milvus-like standalone`: every role in one process, on embedded defaults.

use std::path::{Path, PathBuf};
use std::process::Command;

use milvus_like_api::proto::data_coord_client::DataCoordClient;
use milvus_like_api::proto::proxy_client::ProxyClient;
use tonic::transport::Channel;

use crate::clients::{data_coord_client, proxy_client};
use crate::process::{Process, node_binary};
use crate::wait::free_port;

/// The eight ports of a standalone process (gRPC and HTTP of each role).
#[derive(Debug, Clone, Copy)]
pub struct StandalonePorts {
    pub rootcoord: u16,
    pub rootcoord_http: u16,
    pub proxy: u16,
    pub proxy_http: u16,
    pub datacoord: u16,
    pub datacoord_http: u16,
    pub datanode: u16,
    pub datanode_http: u16,
}

impl StandalonePorts {
    pub fn free() -> Self {
        Self {
            rootcoord: free_port(),
            rootcoord_http: free_port(),
            proxy: free_port(),
            proxy_http: free_port(),
            datacoord: free_port(),
            datacoord_http: free_port(),
            datanode: free_port(),
            datanode_http: free_port(),
        }
    }

    pub fn args(&self) -> Vec<String> {
        [
            ("rootcoord-listen", self.rootcoord),
            ("rootcoord-http-listen", self.rootcoord_http),
            ("proxy-listen", self.proxy),
            ("proxy-http-listen", self.proxy_http),
            ("datacoord-listen", self.datacoord),
            ("datacoord-http-listen", self.datacoord_http),
            ("datanode-listen", self.datanode),
            ("datanode-http-listen", self.datanode_http),
        ]
        .iter()
        .map(|(flag, port)| format!("--{flag}=127.0.0.1:{port}"))
        .collect()
    }
}

/// A `milvus-like standalone` process on its own data directory.
#[derive(Debug)]
pub struct StandaloneProcess {
    pub ports: StandalonePorts,
    pub process: Process,
}

impl StandaloneProcess {
    /// Starts `milvus-like standalone` with `extra` arguments after the ports.
    pub fn start(
        data_dir: &Path,
        log: PathBuf,
        ports: StandalonePorts,
        extra: &[&str],
    ) -> anyhow::Result<Self> {
        let mut cmd = Command::new(node_binary());
        cmd.arg("standalone")
            .arg(format!("--data-dir={}", data_dir.display()))
            .args(ports.args())
            .args(extra)
            .env("RUST_LOG", "info");
        Ok(Self {
            ports,
            process: Process::spawn("standalone", cmd, log)?,
        })
    }

    /// The root coordinator.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.rootcoord)
    }

    pub fn proxy_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.proxy)
    }

    pub fn datacoord_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.datacoord)
    }

    /// A lazily connecting client of its proxy, for requests of up to 64 MiB.
    pub fn proxy_client(&self) -> ProxyClient<Channel> {
        proxy_client(&self.proxy_endpoint())
    }

    /// A lazily connecting client of its data coordinator.
    pub fn datacoord_client(&self) -> DataCoordClient<Channel> {
        data_coord_client(&self.datacoord_endpoint())
    }
}
