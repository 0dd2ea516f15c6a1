//! `milvus-like standalone`: every role in one process, on embedded defaults.

use std::path::{Path, PathBuf};

use milvus_like_api::proto::data_coord_client::DataCoordClient;
use milvus_like_api::proto::proxy_client::ProxyClient;
use tonic::transport::Channel;

use crate::clients::{data_coord_client, proxy_client, wait_channels_owned, wait_for_proxy};
use crate::cluster::CHANNELS;
use crate::process::{Launch, Process};
use crate::role::{Ports, Role};

/// The ports of a standalone process: gRPC and HTTP of each role.
#[derive(Debug, Clone, Copy)]
pub struct StandalonePorts {
    pub rootcoord: Ports,
    pub proxy: Ports,
    pub datacoord: Ports,
    pub datanode: Ports,
    pub querynode: Ports,
}

impl StandalonePorts {
    pub fn free() -> Self {
        Self {
            rootcoord: Ports::free(),
            proxy: Ports::free(),
            datacoord: Ports::free(),
            datanode: Ports::free(),
            querynode: Ports::free(),
        }
    }

    /// `--<role>-listen=127.0.0.1:<grpc> --<role>-http-listen=127.0.0.1:<http>` of every role.
    pub fn args(&self) -> Vec<String> {
        [
            (Role::RootCoord, self.rootcoord),
            (Role::Proxy, self.proxy),
            (Role::DataCoord, self.datacoord),
            (Role::DataNode, self.datanode),
            (Role::QueryNode, self.querynode),
        ]
        .iter()
        .flat_map(|(role, ports)| {
            let role = role.command();
            [
                format!("--{role}-listen=127.0.0.1:{}", ports.grpc),
                format!("--{role}-http-listen=127.0.0.1:{}", ports.http),
            ]
        })
        .collect()
    }
}

/// A `milvus-like standalone` process on its own data directory. Killed on drop;
/// the tail of its log is printed if the test is failing.
#[derive(Debug)]
pub struct StandaloneProcess {
    pub ports: StandalonePorts,
    pub data_dir: PathBuf,
    /// Its `--channels` (from the extra flags, else [`CHANNELS`]).
    pub channels: u32,
    launch: Launch,
    pub process: Process,
}

impl StandaloneProcess {
    /// `milvus-like standalone --data-dir=<data_dir> <ports> EXTRA` with
    /// `RUST_LOG=info`, logging to `dir/<name>.log`.
    pub fn start(
        dir: &Path,
        name: &str,
        data_dir: &Path,
        ports: StandalonePorts,
        extra: &[&str],
    ) -> anyhow::Result<Self> {
        let mut args = vec![
            "standalone".to_owned(),
            format!("--data-dir={}", data_dir.display()),
        ];
        args.extend(ports.args());
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        let channels = match extra.iter().find_map(|a| a.strip_prefix("--channels=")) {
            Some(n) => n
                .parse()
                .map_err(|e| anyhow::anyhow!("--channels={n}: {e}"))?,
            None => CHANNELS,
        };
        let mut launch = Launch::new(dir, name, args, "info");
        let process = launch.spawn()?;
        Ok(Self {
            ports,
            data_dir: data_dir.to_owned(),
            channels,
            launch,
            process,
        })
    }

    /// [`StandaloneProcess::start`] named `standalone`, on free ports, with its data
    /// in `dir/data`.
    pub fn start_in(dir: &Path, extra: &[&str]) -> anyhow::Result<Self> {
        Self::start(
            dir,
            "standalone",
            &dir.join("data"),
            StandalonePorts::free(),
            extra,
        )
    }

    /// kill -9 (unless it has stopped already), then start again with the same
    /// arguments, ports and data; the new run logs to `<name>-<n>.log`.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.process.kill9();
        self.process = self.launch.spawn()?;
        Ok(())
    }

    /// Waits until the proxy answers and its one data node owns every channel.
    pub async fn wait_ready(&self) -> anyhow::Result<()> {
        let log = |e: anyhow::Error| anyhow::anyhow!("{e}; log:\n{}", self.process.log());
        wait_for_proxy(&self.proxy_client()).await.map_err(log)?;
        wait_channels_owned(&self.datacoord_client(), self.channels, 1)
            .await
            .map_err(log)
    }

    /// Where it keeps segment files.
    pub fn segments(&self) -> PathBuf {
        self.data_dir.join("segments")
    }

    /// The root coordinator.
    pub fn endpoint(&self) -> String {
        self.ports.rootcoord.endpoint()
    }

    pub fn proxy_endpoint(&self) -> String {
        self.ports.proxy.endpoint()
    }

    pub fn datacoord_endpoint(&self) -> String {
        self.ports.datacoord.endpoint()
    }

    /// A lazily connecting client of its proxy, for requests of up to 64 MiB.
    pub fn proxy_client(&self) -> ProxyClient<Channel> {
        proxy_client(&self.proxy_endpoint())
    }

    /// A lazily connecting channel to its proxy, for [`crate::load::insert`].
    pub fn proxy_channel(&self) -> Channel {
        crate::clients::lazy(&self.proxy_endpoint())
    }

    /// A lazily connecting client of its data coordinator.
    pub fn datacoord_client(&self) -> DataCoordClient<Channel> {
        data_coord_client(&self.datacoord_endpoint())
    }
}
