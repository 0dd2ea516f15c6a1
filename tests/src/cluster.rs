//! A distributed cluster of separate processes on loopback, built by
//! [`ClusterBuilder`]: etcd and a root coordinator always; Kafka, MinIO, a data
//! coordinator, data nodes and a proxy when asked for.

use std::time::Duration;

use anyhow::anyhow;
use milvus_like_api::proto;
use milvus_like_api::proto::data_coord_client::DataCoordClient;
use milvus_like_api::proto::proxy_client::ProxyClient;
use milvus_like_api::proto::root_coord_client::RootCoordClient;
use milvus_like_node::storage::StorageConfig;
use tonic::transport::Channel;

use crate::clients::{
    data_coord_client, proxy_client, root_coord_client, serving, wait_channels_owned,
    wait_distribution, wait_for_proxy,
};
use crate::dir::TestDir;
use crate::process::Process;
use crate::role::{MetaArgs, Ports, Role, RoleProcess};
use crate::services::etcd::Etcd;
use crate::services::kafka::Kafka;
use crate::services::minio::MinIO;
use crate::slot::{HeavySlot, heavy_slot};

/// The channels of a cluster's data coordinator unless [`ClusterBuilder::channels`]
/// says otherwise (the node's default).
pub const CHANNELS: u32 = 3;

/// What a [`Cluster`] runs and with which settings.
///
/// ```ignore
/// let cluster = ClusterBuilder::new("ingest")
///     .kafka()
///     .datanodes(2)
///     .datanode_args(&["--flush-rows=3000"])
///     .proxy()
///     .build()
///     .await?;
/// ```
#[derive(Debug, Clone)]
pub struct ClusterBuilder {
    name: String,
    meta: MetaArgs,
    kafka: bool,
    topic_prefix: String,
    datacoord: bool,
    channels: u32,
    datanodes: usize,
    datanode_args: Vec<String>,
    datacoord_args: Vec<String>,
    s3: bool,
    proxy: bool,
}

impl ClusterBuilder {
    /// etcd and a root coordinator, with the [`MetaArgs::new`] defaults; its
    /// directory is named after `name`.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            meta: MetaArgs::new(""),
            kafka: false,
            topic_prefix: "test".into(),
            datacoord: false,
            channels: CHANNELS,
            datanodes: 0,
            datanode_args: Vec::new(),
            datacoord_args: Vec::new(),
            s3: false,
            proxy: false,
        }
    }

    pub fn meta_root(mut self, root: &str) -> Self {
        self.meta.meta_root = root.to_owned();
        self
    }

    /// The session and leader lease TTL of every role.
    pub fn ttl(mut self, ttl: &'static str) -> Self {
        self.meta.ttl = ttl;
        self
    }

    /// `--etcd-timeout` of every role (else the node's default).
    pub fn etcd_timeout(mut self, timeout: &'static str) -> Self {
        self.meta.etcd_timeout = Some(timeout);
        self
    }

    /// A Kafka broker for the logs (else the roles get no log flags). A cluster with
    /// Kafka is a whole cluster's worth of processes: it holds a [`heavy_slot`].
    pub fn kafka(mut self) -> Self {
        self.kafka = true;
        self
    }

    /// The prefix of the Kafka topics (default `test`).
    pub fn topic_prefix(mut self, prefix: &str) -> Self {
        self.topic_prefix = prefix.to_owned();
        self
    }

    /// A data coordinator (data nodes and a proxy bring one too).
    pub fn datacoord(mut self) -> Self {
        self.datacoord = true;
        self
    }

    /// The data coordinator's `--channels` (default [`CHANNELS`]).
    pub fn channels(mut self, n: u32) -> Self {
        self.channels = n;
        self
    }

    /// `n` data nodes, and a data coordinator.
    pub fn datanodes(mut self, n: usize) -> Self {
        self.datanodes = n;
        self.datacoord |= n > 0;
        self
    }

    /// More flags of every data node (also of those added later).
    pub fn datanode_args(mut self, args: &[&str]) -> Self {
        self.datanode_args
            .extend(args.iter().map(|a| (*a).to_owned()));
        self
    }

    /// More flags of the data coordinator (and of any started later).
    pub fn datacoord_args(mut self, args: &[&str]) -> Self {
        self.datacoord_args
            .extend(args.iter().map(|a| (*a).to_owned()));
        self
    }

    /// Segments in a bucket `segments` on a MinIO server (else in `<dir>/segments`).
    pub fn s3(mut self) -> Self {
        self.s3 = true;
        self
    }

    /// A proxy, and a data coordinator.
    pub fn proxy(mut self) -> Self {
        self.proxy = true;
        self.datacoord = true;
        self
    }

    /// Starts the services, then every role, then waits until the cluster is
    /// ready ([`Cluster::wait_ready`]). On an error, what started is stopped.
    pub async fn build(self) -> anyhow::Result<Cluster> {
        let slot = self.kafka.then(heavy_slot);
        let dir = TestDir::new(&self.name);
        let etcd = Etcd::start(dir.path()).await?;
        let kafka = if self.kafka {
            Some(Kafka::start(dir.path())?)
        } else {
            None
        };
        let minio = if self.s3 {
            let minio = MinIO::start(dir.path())?;
            minio.bucket("segments")?;
            Some(minio)
        } else {
            None
        };
        let (storage, storage_args) = match &minio {
            None => {
                let root = dir.path().join("segments");
                let args = vec![format!("--storage-root={}", root.display())];
                (StorageConfig::Local { root }, args)
            }
            Some(m) => (m.storage_config("segments"), m.node_args("segments")),
        };
        let log_args = match &kafka {
            None => vec![],
            Some(k) => vec![
                format!("--kafka-brokers={}", k.bootstrap),
                format!("--topic-prefix={}", self.topic_prefix),
            ],
        };
        let meta = MetaArgs {
            etcd_endpoint: etcd.endpoint(),
            ..self.meta
        };
        let rootcoord = RoleProcess::start(
            dir.path(),
            "rootcoord",
            Role::RootCoord,
            Ports::free(),
            meta.args(),
        )?;
        let mut cluster = Cluster {
            proxy: None,
            datanodes: Vec::new(),
            datacoord: None,
            rootcoord,
            kafka,
            _minio: minio,
            etcd,
            meta,
            log_args,
            storage_args,
            datanode_args: self.datanode_args,
            datacoord_args: self.datacoord_args,
            channels: self.channels,
            storage,
            dir,
            _slot: slot,
        };
        if self.datacoord {
            cluster.datacoord = Some(cluster.start_role("datacoord", Role::DataCoord)?);
        }
        for _ in 0..self.datanodes {
            cluster.add_datanode()?;
        }
        if self.proxy {
            cluster.proxy = Some(cluster.start_role("proxy", Role::Proxy)?);
        }
        cluster.wait_ready().await?;
        Ok(cluster)
    }
}

/// A running cluster. Fields drop in order: the roles stop first, then the
/// services, then the directory (Kafka and MinIO are stopped through pid files in
/// it), and the heavy slot last, so the next cluster starts once this one is gone.
#[derive(Debug)]
pub struct Cluster {
    proxy: Option<RoleProcess>,
    pub datanodes: Vec<RoleProcess>,
    datacoord: Option<RoleProcess>,
    pub rootcoord: RoleProcess,
    kafka: Option<Kafka>,
    /// Serves [`Cluster::storage`] when it is S3; kept to be stopped.
    _minio: Option<MinIO>,
    pub etcd: Etcd,
    /// The flags every role gets.
    pub meta: MetaArgs,
    log_args: Vec<String>,
    storage_args: Vec<String>,
    datanode_args: Vec<String>,
    datacoord_args: Vec<String>,
    /// The data coordinator's `--channels`.
    pub channels: u32,
    /// Where data nodes put segments: a local directory, or a MinIO bucket.
    pub storage: StorageConfig,
    pub dir: TestDir,
    _slot: Option<HeavySlot>,
}

impl Cluster {
    /// The flags of a `role` process in this cluster (besides its ports).
    fn role_args(&self, role: Role) -> Vec<String> {
        let mut args = self.meta.args();
        if role == Role::RootCoord {
            return args;
        }
        args.push(format!(
            "--rootcoord-endpoints={}",
            self.rootcoord.endpoint()
        ));
        args.extend(self.log_args.iter().cloned());
        let datacoord = || format!("--datacoord-endpoints={}", self.datacoord().endpoint());
        match role {
            Role::RootCoord => {}
            Role::DataCoord => {
                args.push(format!("--channels={}", self.channels));
                args.extend(self.datacoord_args.iter().cloned());
            }
            Role::Proxy => args.push(datacoord()),
            Role::DataNode => {
                args.push(datacoord());
                args.extend(self.storage_args.iter().cloned());
                args.extend(self.datanode_args.iter().cloned());
            }
            Role::QueryNode => {
                args.push(datacoord());
                args.extend(self.storage_args.iter().cloned());
                args.push("--target-interval=200ms".into());
            }
        }
        args
    }

    /// Starts one more `role` process of this cluster on free ports, named `name`
    /// (a standby coordinator, say); the caller owns it.
    pub fn start_role(&self, name: &str, role: Role) -> anyhow::Result<RoleProcess> {
        self.start_role_with(name, role, &[])
    }

    /// [`Self::start_role`] with `extra` arguments after the cluster's.
    pub fn start_role_with(
        &self,
        name: &str,
        role: Role,
        extra: &[&str],
    ) -> anyhow::Result<RoleProcess> {
        let mut args = self.role_args(role);
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        RoleProcess::start(self.dir.path(), name, role, Ports::free(), args)
    }

    /// Starts one more data node, `datanode-<i>`.
    pub fn add_datanode(&mut self) -> anyhow::Result<&RoleProcess> {
        let name = format!("datanode-{}", self.datanodes.len());
        let node = self.start_role(&name, Role::DataNode)?;
        self.datanodes.push(node);
        Ok(&self.datanodes[self.datanodes.len() - 1])
    }

    /// Waits until the root coordinator issues timestamps, the data coordinator
    /// answers, every channel is owned by `min(data nodes, channels)` data nodes, and the
    /// proxy answers: each as far as the cluster has it.
    pub async fn wait_ready(&self) -> anyhow::Result<()> {
        fn with_log(process: &Process) -> impl Fn(anyhow::Error) -> anyhow::Error + '_ {
            move |e| anyhow!("{e}; log:\n{}", process.log())
        }
        serving(&self.rootcoord.endpoint(), Duration::from_secs(30))
            .await
            .map_err(with_log(&self.rootcoord.process))?;
        if let Some(dc) = &self.datacoord {
            let client = self.datacoord_client();
            let lead = "the data coordinator to lead";
            wait_distribution(&client, lead, Duration::from_secs(60), |_| true)
                .await
                .map_err(with_log(&dc.process))?;
            if !self.datanodes.is_empty() {
                let nodes = self.datanodes.len().min(self.channels as usize);
                wait_channels_owned(&client, self.channels, nodes)
                    .await
                    .map_err(with_log(&dc.process))?;
            }
        }
        if let Some(proxy) = &self.proxy {
            wait_for_proxy(&self.proxy_client())
                .await
                .map_err(with_log(&proxy.process))?;
        }
        Ok(())
    }

    /// The data coordinator; panics if the cluster has none.
    pub fn datacoord(&self) -> &RoleProcess {
        self.datacoord
            .as_ref()
            .expect("a data coordinator (ClusterBuilder::datacoord)")
    }

    pub fn datacoord_mut(&mut self) -> &mut RoleProcess {
        self.datacoord
            .as_mut()
            .expect("a data coordinator (ClusterBuilder::datacoord)")
    }

    /// The proxy; panics if the cluster has none.
    pub fn proxy(&self) -> &RoleProcess {
        self.proxy
            .as_ref()
            .expect("a proxy (ClusterBuilder::proxy)")
    }

    /// The Kafka broker; panics if the cluster has none.
    pub fn kafka(&self) -> &Kafka {
        self.kafka.as_ref().expect("Kafka (ClusterBuilder::kafka)")
    }

    pub fn kafka_mut(&mut self) -> &mut Kafka {
        self.kafka.as_mut().expect("Kafka (ClusterBuilder::kafka)")
    }

    /// A lazily connecting client of the root coordinator.
    pub fn rootcoord_client(&self) -> RootCoordClient<Channel> {
        root_coord_client(&self.rootcoord.endpoint())
    }

    /// A lazily connecting client of the data coordinator (it follows a restart on
    /// the same ports).
    pub fn datacoord_client(&self) -> DataCoordClient<Channel> {
        data_coord_client(&self.datacoord().endpoint())
    }

    /// The data coordinator's channel distribution (owners, checkpoints, loads).
    pub async fn distribution(&self) -> proto::GetChannelDistributionResponse {
        self.datacoord_client()
            .get_channel_distribution(proto::GetChannelDistributionRequest {})
            .await
            .expect("distribution")
            .into_inner()
    }

    /// A lazily connecting client of the proxy, for requests of up to 64 MiB.
    pub fn proxy_client(&self) -> ProxyClient<Channel> {
        proxy_client(&self.proxy().endpoint())
    }

    /// A lazily connecting channel to the proxy, for [`crate::load::insert`].
    pub fn proxy_channel(&self) -> Channel {
        crate::clients::lazy(&self.proxy().endpoint())
    }
}
