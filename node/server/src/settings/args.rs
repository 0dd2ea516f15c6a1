//! The command line of `milvus-like`: the server roles' flags and the client
//! commands. Every flag with a variable takes its name and its default from
//! `milvus_like_api::settings` (the contract the operator builds its pods from),
//! and each group turns into the role's `*Config` here.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use milvus_like_api::settings::{Interval, Role, defaults, env, limits, querynode};
use tokio_util::sync::CancellationToken;

use crate::cli::{ClientCommand, RootCoordEndpoints, StorageArgs, UpstreamArgs};
use crate::datacoord::DataCoordConfig;
use crate::datacoord::segments::SegmentConfig;
use crate::datanode::{DataNodeConfig, ThresholdPolicy};
use crate::logging;
use crate::meta::{EtcdConfig, EtcdStore, MetaStore};
use crate::msgstream::{KafkaConfig, KafkaLog, KafkaSasl, Log};
use crate::proxy::ProxyConfig;
use crate::querynode::QueryNodeConfig;
use crate::role::RoleConfig;
use crate::rootcoord::RootCoordConfig;
use crate::session::SessionConfig;
use crate::standalone::StandaloneConfig;
use crate::tso::TsoConfig;

#[derive(Debug, Parser)]
#[command(
    name = "milvus-like",
    version,
    about = "A Milvus-style vector database"
)]
pub struct Cli {
    /// Config file (TOML): each key sets the environment variable of the same name
    /// (`[kafka] brokers` is MILVUS_LIKE_KAFKA_BROKERS) unless the environment sets
    /// it. Flags win over both. See docs/configuration.md.
    #[arg(long, global = true, env = env::CONFIG)]
    pub config: Option<std::path::PathBuf>,
    /// Initial log filter (`info`, `info,milvus_like_node::datanode=debug`); `PUT
    /// /log-level` on the HTTP port changes it at run time.
    #[arg(
        long,
        global = true,
        env = env::LOG_LEVEL,
        default_value = defaults::LOG_LEVEL,
        value_parser = parse_log_filter
    )]
    pub log_level: String,
    /// Log format: `text` for people, `json` for log pipelines.
    #[arg(
        long,
        global = true,
        env = env::LOG_FORMAT,
        default_value = defaults::LOG_FORMAT
    )]
    pub log_format: logging::Format,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the whole system in one process on embedded defaults (metadata in a local
    /// file under --data-dir): nothing else to install or start.
    Standalone(StandaloneArgs),
    /// Run a root coordinator: TSO, global ids, collection metadata, node registry.
    Rootcoord(RootCoordArgs),
    /// Run a data coordinator: channel ownership, segment allocation, flush scheduling.
    Datacoord(DataCoordArgs),
    /// Run a proxy: the client API (insert, delete, flush, collections).
    Proxy(ProxyArgs),
    /// Run a data node: consumes channels, buffers, flushes Parquet to object storage.
    Datanode(DataNodeArgs),
    /// Run a query node: follows channels and serves reads of loaded collections.
    Querynode(QueryNodeArgs),
    /// Read a collection's flushed segments back, deletes applied: row count,
    /// content checksum and sample rows.
    ReadBack(crate::cli::read_back::ReadBackArgs),
    #[command(flatten)]
    Client(ClientCommand),
    /// Print docs/configuration.md (every setting: key, variable, flag, default).
    #[command(hide = true)]
    ConfigDocs,
}

/// Checks a log filter at parse time, so that a bad one stops the start.
fn parse_log_filter(directives: &str) -> Result<String, String> {
    logging::parse_filter(directives).map(|_| directives.trim().to_owned())
}

/// `0.0.0.0:port`: every interface (a server role in its own process or pod).
fn any_interface(port: u16) -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], port))
}

/// `127.0.0.1:port`: this machine only (standalone, and where clients look first).
fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A server role's addresses: one struct per role, so that each has its own
/// variables (`MILVUS_LIKE_ROOTCOORD_LISTEN`, ...), and its ports as defaults.
macro_rules! role_addresses {
    ($name:ident, $role:ident, $listen:ident, $advertise:ident, $http:ident) => {
        #[doc = concat!("Where the ", stringify!($role), " listens and how others reach it.")]
        #[derive(Debug, Args)]
        pub struct $name {
            /// gRPC listen address.
            #[arg(long, env = env::$listen, default_value_t = any_interface(Role::$role.grpc_port()))]
            pub listen: SocketAddr,
            /// Address other processes reach this one at (default: 127.0.0.1 and the listen port).
            #[arg(long, env = env::$advertise)]
            pub advertise: Option<String>,
            /// HTTP address of /metrics, /healthz, /readyz and /log-level.
            #[arg(long, env = env::$http, default_value_t = any_interface(Role::$role.http_port()))]
            pub http_listen: SocketAddr,
        }

        impl $name {
            /// The role's addresses and liveness settings.
            pub fn role(self, liveness: &LivenessArgs) -> RoleConfig {
                liveness.role(self.listen, self.advertise, self.http_listen)
            }
        }
    };
}

role_addresses!(
    RootCoordAddresses,
    RootCoord,
    ROOTCOORD_LISTEN,
    ROOTCOORD_ADVERTISE,
    ROOTCOORD_HTTP_LISTEN
);
role_addresses!(
    DataCoordAddresses,
    DataCoord,
    DATACOORD_LISTEN,
    DATACOORD_ADVERTISE,
    DATACOORD_HTTP_LISTEN
);
role_addresses!(
    ProxyAddresses,
    Proxy,
    PROXY_LISTEN,
    PROXY_ADVERTISE,
    PROXY_HTTP_LISTEN
);
role_addresses!(
    DataNodeAddresses,
    DataNode,
    DATANODE_LISTEN,
    DATANODE_ADVERTISE,
    DATANODE_HTTP_LISTEN
);

/// A role's addresses inside standalone: loopback, flags named after the role
/// (`--rootcoord-listen`), the same variables as the role's own process.
macro_rules! standalone_addresses {
    ($name:ident, $grpc_port:expr, $http_port:expr, $flag:literal, $what:literal, $listen:ident, $http:ident) => {
        #[doc = concat!("Where standalone's ", $what, " listens.")]
        #[derive(Debug, Args)]
        pub struct $name {
            #[arg(
                id = concat!($flag, "_listen"),
                long = concat!($flag, "-listen"),
                env = env::$listen,
                default_value_t = loopback($grpc_port),
                value_name = "ADDR",
                help = concat!("gRPC listen address of the ", $what)
            )]
            pub listen: SocketAddr,
            #[arg(
                id = concat!($flag, "_http_listen"),
                long = concat!($flag, "-http-listen"),
                env = env::$http,
                default_value_t = loopback($http_port),
                value_name = "ADDR",
                help = concat!("HTTP address of the ", $what, "'s /metrics, /healthz, /readyz and /log-level")
            )]
            pub http_listen: SocketAddr,
        }

        impl $name {
            fn role(&self) -> RoleConfig {
                RoleConfig::new(self.listen, self.http_listen)
            }
        }
    };
}

standalone_addresses!(
    StandaloneRootCoord,
    Role::RootCoord.grpc_port(),
    Role::RootCoord.http_port(),
    "rootcoord",
    "root coordinator",
    ROOTCOORD_LISTEN,
    ROOTCOORD_HTTP_LISTEN
);
standalone_addresses!(
    StandaloneDataCoord,
    Role::DataCoord.grpc_port(),
    Role::DataCoord.http_port(),
    "datacoord",
    "data coordinator",
    DATACOORD_LISTEN,
    DATACOORD_HTTP_LISTEN
);
standalone_addresses!(
    StandaloneProxy,
    Role::Proxy.grpc_port(),
    Role::Proxy.http_port(),
    "proxy",
    "proxy",
    PROXY_LISTEN,
    PROXY_HTTP_LISTEN
);
standalone_addresses!(
    StandaloneDataNode,
    Role::DataNode.grpc_port(),
    Role::DataNode.http_port(),
    "datanode",
    "data node",
    DATANODE_LISTEN,
    DATANODE_HTTP_LISTEN
);

standalone_addresses!(
    StandaloneQueryNode,
    querynode::GRPC_PORT,
    querynode::HTTP_PORT,
    "querynode",
    "query node",
    QUERYNODE_LISTEN,
    QUERYNODE_HTTP_LISTEN
);

/// What the data coordinator, proxies and data nodes share: the metadata store,
/// the logs, and how fast a dead process is noticed.
#[derive(Debug, Args)]
pub struct ClusterArgs {
    #[command(flatten)]
    pub etcd: EtcdArgs,
    #[command(flatten)]
    pub liveness: LivenessArgs,
    #[command(flatten)]
    pub kafka: KafkaArgs,
}

/// Where the metadata lives.
#[derive(Debug, Args)]
pub struct EtcdArgs {
    /// etcd endpoints, comma separated.
    #[arg(
        long,
        env = env::ETCD_ENDPOINTS,
        value_delimiter = ',',
        default_value = defaults::ETCD_ENDPOINTS
    )]
    pub etcd_endpoints: Vec<String>,
    /// Key prefix of this cluster in etcd, so clusters can share one etcd.
    #[arg(long, env = env::META_ROOT, default_value = defaults::META_ROOT)]
    pub meta_root: String,
    /// Deadline of one etcd request.
    #[arg(long, env = env::ETCD_TIMEOUT, default_value_t = Interval(defaults::ETCD_TIMEOUT))]
    pub etcd_timeout: Interval,
}

impl EtcdArgs {
    /// The cluster's metadata store, once etcd answers (retried until `cancel`).
    pub async fn store(&self, cancel: &CancellationToken) -> anyhow::Result<Arc<dyn MetaStore>> {
        let store = EtcdStore::connect_with_retry(self.config(), cancel)
            .await
            .context("connect to etcd")?;
        Ok(Arc::new(store))
    }

    pub fn config(&self) -> EtcdConfig {
        EtcdConfig {
            endpoints: self.etcd_endpoints.clone(),
            root: self.meta_root.clone(),
            request_timeout: self.etcd_timeout.0,
            connect_timeout: Duration::from_secs(3),
        }
    }
}

#[derive(Debug, Args)]
pub struct RootCoordArgs {
    #[command(flatten)]
    pub addresses: RootCoordAddresses,
    #[command(flatten)]
    pub etcd: EtcdArgs,
    #[command(flatten)]
    pub liveness: LivenessArgs,
    #[command(flatten)]
    pub tso: TsoArgs,
}

impl RootCoordArgs {
    pub fn config(self) -> RootCoordConfig {
        RootCoordConfig {
            role: self.addresses.role(&self.liveness),
            tso: self.tso.config(),
            ..RootCoordConfig::default()
        }
    }
}

#[derive(Debug, Args)]
pub struct TsoArgs {
    /// How far ahead the TSO window is persisted.
    #[arg(long, env = env::TSO_WINDOW, default_value_t = Interval(defaults::TSO_WINDOW))]
    pub tso_window: Interval,
    /// TSO update loop period.
    #[arg(long, env = env::TSO_UPDATE_INTERVAL, default_value_t = Interval(defaults::TSO_UPDATE_INTERVAL))]
    pub tso_update_interval: Interval,
}

impl TsoArgs {
    fn config(&self) -> TsoConfig {
        TsoConfig {
            window: self.tso_window.0,
            update_interval: self.tso_update_interval.0,
        }
    }
}

#[derive(Debug, Args)]
pub struct StandaloneArgs {
    /// Where everything is stored: the metadata (meta.redb), the insert and delete
    /// logs (log.redb) and the segment files (segments/).
    #[arg(long, env = env::DATA_DIR, default_value = defaults::DATA_DIR)]
    pub data_dir: std::path::PathBuf,
    #[command(flatten)]
    pub rootcoord: StandaloneRootCoord,
    #[command(flatten)]
    pub proxy: StandaloneProxy,
    #[command(flatten)]
    pub datacoord: StandaloneDataCoord,
    #[command(flatten)]
    pub datanode: StandaloneDataNode,
    #[command(flatten)]
    pub querynode: StandaloneQueryNode,
    #[command(flatten)]
    pub tso: TsoArgs,
    #[command(flatten)]
    pub coordination: DataCoordTuning,
    #[command(flatten)]
    pub flushing: DataNodeTuning,
}

impl StandaloneArgs {
    pub fn config(self) -> StandaloneConfig {
        StandaloneConfig {
            rootcoord: RootCoordConfig {
                role: self.rootcoord.role(),
                tso: self.tso.config(),
                ..RootCoordConfig::default()
            },
            datacoord: self.coordination.apply(DataCoordConfig {
                role: self.datacoord.role(),
                ..DataCoordConfig::default()
            }),
            proxy: ProxyConfig {
                role: self.proxy.role(),
                ..ProxyConfig::default()
            },
            datanode: self.flushing.apply(DataNodeConfig {
                role: self.datanode.role(),
                ..DataNodeConfig::default()
            }),
            querynode: QueryNodeConfig {
                role: self.querynode.role(),
                ..QueryNodeConfig::default()
            },
            data_dir: self.data_dir,
        }
    }
}

/// `$HOSTNAME`, else `/etc/hostname`, else empty.
fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .unwrap_or_default()
}

/// How fast dead processes are noticed.
#[derive(Debug, Args)]
pub struct LivenessArgs {
    /// Session TTL: a dead process is dropped from the node list this long after its last heartbeat.
    #[arg(long, env = env::SESSION_TTL, default_value_t = Interval(defaults::SESSION_TTL))]
    pub session_ttl: Interval,
    /// Heartbeat period (capped at a third of the session TTL).
    #[arg(long, env = env::HEARTBEAT, default_value_t = Interval(defaults::HEARTBEAT))]
    pub heartbeat: Interval,
    /// Leader lease TTL: a standby takes over at most this long after the leader dies.
    #[arg(long, env = env::LEADER_TTL, default_value_t = Interval(defaults::LEADER_TTL))]
    pub leader_ttl: Interval,
    /// Name this process registers under (the operator sets the pod name; default:
    /// the host name).
    #[arg(long, env = env::NODE_NAME)]
    pub node_name: Option<String>,
}

impl LivenessArgs {
    fn role(
        &self,
        listen: SocketAddr,
        advertise: Option<String>,
        http_listen: SocketAddr,
    ) -> RoleConfig {
        RoleConfig {
            listen,
            advertise: advertise.unwrap_or_else(|| format!("127.0.0.1:{}", listen.port())),
            http_listen,
            session: SessionConfig {
                ttl: self.session_ttl.0,
                heartbeat: self.heartbeat.0,
                name: self.node_name.clone().unwrap_or_else(host_name),
            },
            leader_ttl: self.leader_ttl.0,
        }
    }
}

#[derive(Debug, Args)]
pub struct DataCoordArgs {
    #[command(flatten)]
    pub addresses: DataCoordAddresses,
    #[command(flatten)]
    pub root: RootCoordEndpoints,
    #[command(flatten)]
    pub tuning: DataCoordTuning,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

impl DataCoordArgs {
    pub fn config(self) -> DataCoordConfig {
        self.tuning.apply(DataCoordConfig {
            role: self.addresses.role(&self.cluster.liveness),
            rootcoord: self.root.rootcoord_endpoints,
            ..DataCoordConfig::default()
        })
    }
}

/// Channels, balancing and segment sealing.
#[derive(Debug, Args)]
pub struct DataCoordTuning {
    /// Number of channels (= partitions of the insert and delete logs); fixed when the cluster is created.
    #[arg(
        long,
        env = env::CHANNELS,
        default_value_t = defaults::CHANNELS,
        value_parser = clap::value_parser!(u32).range(1..=i64::from(limits::MAX_CHANNELS))
    )]
    pub channels: u32,
    /// Channel balancer: round_robin, least_load or consistent_hash.
    #[arg(long, env = env::BALANCER, default_value = defaults::BALANCER)]
    pub balancer: String,
    /// Largest segment in MiB; with the schema's row size it gives the row limit.
    #[arg(long, env = env::MAX_SEGMENT_MIB, default_value_t = defaults::MAX_SEGMENT_MIB)]
    pub max_segment_mib: u64,
    /// Row grants are void after this.
    #[arg(long, env = env::GRANT_LIFETIME, default_value_t = Interval(defaults::GRANT_LIFETIME))]
    pub grant_lifetime: Interval,
    /// Seal a growing segment with no new grant for this long (if it holds 16 MiB or more).
    #[arg(long, env = env::SEGMENT_MAX_IDLE, default_value_t = Interval(defaults::SEGMENT_MAX_IDLE))]
    pub segment_max_idle: Interval,
    /// Seal a growing segment this old.
    #[arg(long, env = env::SEGMENT_MAX_LIFETIME, default_value_t = Interval(defaults::SEGMENT_MAX_LIFETIME))]
    pub segment_max_lifetime: Interval,
    /// Files a compaction replaced (a segment's insert logs and their indexes) are deleted this long after.
    #[arg(long, env = env::GARBAGE_GRACE, default_value_t = Interval(defaults::GARBAGE_GRACE))]
    pub garbage_grace: Interval,
}

impl DataCoordTuning {
    fn apply(self, config: DataCoordConfig) -> DataCoordConfig {
        DataCoordConfig {
            channels: self.channels,
            balancer: self.balancer,
            segments: SegmentConfig {
                max_segment_bytes: self.max_segment_mib.max(1) << 20,
                grant_lifetime: self.grant_lifetime.0,
                max_idle: self.segment_max_idle.0,
                max_lifetime: self.segment_max_lifetime.0,
                garbage_grace: self.garbage_grace.0,
                ..config.segments
            },
            ..config
        }
    }
}

/// Where the insert and delete logs are.
#[derive(Debug, Args)]
pub struct KafkaArgs {
    /// Kafka bootstrap servers, `host:port,...`.
    #[arg(long, env = env::KAFKA_BROKERS, default_value = defaults::KAFKA_BROKERS)]
    pub kafka_brokers: String,
    /// Topic name prefix: `{prefix}-insert-log`, `{prefix}-delete-log`, `{prefix}-dead-letter`.
    #[arg(long, env = env::TOPIC_PREFIX, default_value = defaults::TOPIC_PREFIX)]
    pub topic_prefix: String,
    /// Replication factor of the topics the data coordinator creates.
    #[arg(long, env = env::KAFKA_REPLICATION, default_value_t = defaults::KAFKA_REPLICATION)]
    pub kafka_replication: i32,
    /// `SASL_PLAINTEXT` or `SASL_SSL` to authenticate to the brokers (with the
    /// --kafka-sasl-* flags); unset: plaintext without authentication.
    #[arg(long, env = env::KAFKA_SECURITY_PROTOCOL)]
    pub kafka_security_protocol: Option<String>,
    /// SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
    #[arg(long, env = env::KAFKA_SASL_MECHANISM, default_value = defaults::KAFKA_SASL_MECHANISM)]
    pub kafka_sasl_mechanism: String,
    /// SASL user name.
    #[arg(long, env = env::KAFKA_SASL_USERNAME, default_value = "")]
    pub kafka_sasl_username: String,
    /// SASL password.
    #[arg(
        long,
        env = env::KAFKA_SASL_PASSWORD,
        hide_env_values = true,
        default_value = ""
    )]
    pub kafka_sasl_password: String,
}

impl KafkaArgs {
    pub fn log(&self) -> Arc<dyn Log> {
        Arc::new(KafkaLog::new(self.config()))
    }

    pub fn config(&self) -> KafkaConfig {
        KafkaConfig {
            brokers: self.kafka_brokers.clone(),
            topic_prefix: self.topic_prefix.clone(),
            replication: self.kafka_replication,
            sasl: self
                .kafka_security_protocol
                .as_ref()
                .map(|protocol| KafkaSasl {
                    security_protocol: protocol.clone(),
                    mechanism: self.kafka_sasl_mechanism.clone(),
                    username: self.kafka_sasl_username.clone(),
                    password: self.kafka_sasl_password.clone(),
                }),
        }
    }
}

#[derive(Debug, Args)]
pub struct ProxyArgs {
    #[command(flatten)]
    pub addresses: ProxyAddresses,
    #[command(flatten)]
    pub upstream: UpstreamArgs,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

impl ProxyArgs {
    pub fn config(self) -> ProxyConfig {
        ProxyConfig {
            role: self.addresses.role(&self.cluster.liveness),
            rootcoord: self.upstream.root.rootcoord_endpoints,
            datacoord: self.upstream.datacoord_endpoints,
        }
    }
}

#[derive(Debug, Args)]
pub struct DataNodeArgs {
    #[command(flatten)]
    pub addresses: DataNodeAddresses,
    #[command(flatten)]
    pub upstream: UpstreamArgs,
    #[command(flatten)]
    pub tuning: DataNodeTuning,
    /// How long a stopping data node waits for the coordinator to move its
    /// channels (flushing each) before it flushes them itself and exits.
    #[arg(long, env = env::DRAIN_TIMEOUT, default_value_t = Interval(defaults::DRAIN_TIMEOUT))]
    pub drain_timeout: Interval,
    #[command(flatten)]
    pub storage: StorageArgs,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

impl DataNodeArgs {
    pub fn config(self) -> DataNodeConfig {
        self.tuning.apply(DataNodeConfig {
            role: self.addresses.role(&self.cluster.liveness),
            rootcoord: self.upstream.root.rootcoord_endpoints,
            datacoord: self.upstream.datacoord_endpoints,
            storage: self.storage.config(),
            drain_timeout: self.drain_timeout.0,
            ..DataNodeConfig::default()
        })
    }
}

/// Flush thresholds and memory of a data node.
#[derive(Debug, Args)]
pub struct DataNodeTuning {
    /// Flush a segment buffer at this many MiB.
    #[arg(long, env = env::FLUSH_MIB, default_value_t = defaults::FLUSH_MIB)]
    pub flush_mib: u64,
    /// Flush a segment buffer at this many rows.
    #[arg(long, env = env::FLUSH_ROWS, default_value_t = defaults::FLUSH_ROWS)]
    pub flush_rows: u64,
    /// Flush a segment buffer this old.
    #[arg(long, env = env::FLUSH_AGE, default_value_t = Interval(defaults::FLUSH_AGE))]
    pub flush_age: Interval,
    /// Memory for buffers and flushes in MiB: consumption pauses above it. Plan
    /// for about 1.5x this, plus 64 MiB, for the whole process.
    #[arg(
        long,
        env = env::DATANODE_MEMORY_MIB,
        default_value_t = defaults::DATANODE_MEMORY_MIB,
        value_parser = clap::value_parser!(u64).range(limits::MIN_DATANODE_MEMORY_MIB..=limits::MAX_DATANODE_MEMORY_MIB)
    )]
    pub memory_mib: u64,
    /// Flushes encoding and writing files at the same time (each holds a Parquet
    /// row group and upload parts besides the buffer).
    #[arg(
        long,
        env = env::DATANODE_CONCURRENT_FLUSHES,
        default_value_t = defaults::DATANODE_CONCURRENT_FLUSHES
    )]
    pub concurrent_flushes: usize,
    /// Threads of an index build (a data node builds one index at a time, off
    /// the ingest path): more build sooner and leave ingest fewer cores.
    #[arg(
        long,
        env = env::INDEX_BUILD_THREADS,
        default_value_t = defaults::INDEX_BUILD_THREADS as u64,
        value_parser = clap::value_parser!(u64).range(1..=256)
    )]
    pub index_build_threads: u64,
}

impl DataNodeTuning {
    fn apply(&self, config: DataNodeConfig) -> DataNodeConfig {
        DataNodeConfig {
            policy: ThresholdPolicy {
                max_bytes: self.flush_mib.max(1) << 20,
                max_rows: self.flush_rows.max(1),
                max_age: self.flush_age.0,
            },
            memory_limit: self.memory_mib << 20,
            max_concurrent_flushes: self.concurrent_flushes,
            index_build_threads: usize::try_from(self.index_build_threads).unwrap_or(1),
            ..config
        }
    }
}

/// Where the query node listens and how others reach it.
#[derive(Debug, Args)]
pub struct QueryNodeAddresses {
    /// gRPC listen address.
    #[arg(long, env = env::QUERYNODE_LISTEN, default_value_t = any_interface(querynode::GRPC_PORT))]
    pub listen: SocketAddr,
    /// Address other processes reach this one at (default: 127.0.0.1 and the listen port).
    #[arg(long, env = env::QUERYNODE_ADVERTISE)]
    pub advertise: Option<String>,
    /// HTTP address of /metrics, /healthz, /readyz and /log-level.
    #[arg(long, env = env::QUERYNODE_HTTP_LISTEN, default_value_t = any_interface(querynode::HTTP_PORT))]
    pub http_listen: SocketAddr,
}

#[derive(Debug, Args)]
pub struct QueryNodeArgs {
    #[command(flatten)]
    pub addresses: QueryNodeAddresses,
    #[command(flatten)]
    pub upstream: UpstreamArgs,
    /// How often loaded collections move to the newest committed files.
    #[arg(long, env = env::QUERYNODE_TARGET_INTERVAL, default_value_t = Interval(defaults::QUERYNODE_TARGET_INTERVAL))]
    pub target_interval: Interval,
    /// Memory for loaded collections in MiB: a load that would need more is
    /// refused with RESOURCE_EXHAUSTED. 0: three quarters of the memory the
    /// process may use (its cgroup's limit, else the machine's).
    #[arg(long, env = env::QUERYNODE_MEMORY_MIB, default_value_t = defaults::QUERYNODE_MEMORY_MIB)]
    pub memory_mib: u64,
    #[command(flatten)]
    pub storage: StorageArgs,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

impl QueryNodeArgs {
    pub fn config(self) -> QueryNodeConfig {
        let a = self.addresses;
        QueryNodeConfig {
            role: self
                .cluster
                .liveness
                .role(a.listen, a.advertise, a.http_listen),
            rootcoord: self.upstream.root.rootcoord_endpoints,
            datacoord: self.upstream.datacoord_endpoints,
            storage: self.storage.config(),
            target_interval: self.target_interval.0,
            memory_limit: self.memory_mib << 20,
        }
    }
}
