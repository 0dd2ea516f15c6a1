//! `milvus-like`: one binary, one subcommand per role.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use milvus_like_node::cli::{ClientCommand, StorageArgs, UpstreamArgs};
use milvus_like_node::datacoord::balancer::BalancerRegistry;
use milvus_like_node::datacoord::segments::SegmentConfig;
use milvus_like_node::datacoord::{self, DataCoordConfig};
use milvus_like_node::datanode::{self, DataNodeConfig, ThresholdPolicy};
use milvus_like_node::logging;
use milvus_like_node::meta::{EtcdConfig, EtcdStore};
use milvus_like_node::msgstream::{KafkaConfig, KafkaLog, Log};
use milvus_like_node::proxy::{self, ProxyConfig};
use milvus_like_node::role::RoleConfig;
use milvus_like_node::rootcoord::{self, RootCoordConfig};
use milvus_like_node::session::SessionConfig;
use milvus_like_node::storage::{KeyBlocks, SegmentStore, read_collection_blocks};
use milvus_like_node::tso::TsoConfig;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Parser)]
#[command(
    name = "milvus-like",
    version,
    about = "A Milvus-style vector database"
)]
struct Cli {
    /// Config file (TOML): each key sets the environment variable of the same name
    /// (`[kafka] brokers` is MILVUS_LIKE_KAFKA_BROKERS) unless the environment sets
    /// it. Flags win over both. See docs/configuration.md.
    #[arg(long, global = true, env = "MILVUS_LIKE_CONFIG")]
    config: Option<std::path::PathBuf>,
    /// Initial log filter (`info`, `info,milvus_like_node::datanode=debug`); `PUT
    /// /log-level` on the HTTP port changes it at run time.
    #[arg(
        long,
        global = true,
        env = "RUST_LOG",
        default_value = "info",
        value_parser = parse_log_filter
    )]
    log_level: String,
    /// Log format: `text` for people, `json` for log pipelines.
    #[arg(
        long,
        global = true,
        env = "MILVUS_LIKE_LOG_FORMAT",
        default_value = "text"
    )]
    log_format: logging::Format,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
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
    /// Read a collection's flushed segments back, deletes applied: row count,
    /// content checksum and sample rows.
    ReadBack(ReadBackArgs),
    #[command(flatten)]
    Client(ClientCommand),
    /// Print docs/configuration.md (every setting: key, variable, flag, default).
    #[command(hide = true)]
    ConfigDocs,
}

/// Where the metadata lives.
#[derive(Debug, Args)]
struct EtcdArgs {
    /// etcd endpoints, comma separated.
    #[arg(
        long,
        env = "MILVUS_LIKE_ETCD_ENDPOINTS",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:2379"
    )]
    etcd_endpoints: Vec<String>,
    /// Key prefix of this cluster in etcd, so clusters can share one etcd.
    #[arg(long, env = "MILVUS_LIKE_META_ROOT", default_value = "milvus-like")]
    meta_root: String,
    /// Deadline of one etcd request.
    #[arg(long, env = "MILVUS_LIKE_ETCD_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    etcd_timeout: Duration,
}

impl EtcdArgs {
    /// The cluster's metadata store, once etcd answers (retried until `cancel`).
    async fn store(
        &self,
        cancel: &CancellationToken,
    ) -> anyhow::Result<Arc<dyn milvus_like_node::meta::MetaStore>> {
        let store = EtcdStore::connect_with_retry(self.config(), cancel)
            .await
            .context("connect to etcd")?;
        Ok(Arc::new(store))
    }

    fn config(&self) -> EtcdConfig {
        EtcdConfig {
            endpoints: self.etcd_endpoints.clone(),
            root: self.meta_root.clone(),
            request_timeout: self.etcd_timeout,
            connect_timeout: Duration::from_secs(3),
        }
    }
}

#[derive(Debug, Args)]
struct RootCoordArgs {
    /// gRPC listen address.
    #[arg(
        long,
        env = "MILVUS_LIKE_ROOTCOORD_LISTEN",
        default_value = "0.0.0.0:19530"
    )]
    listen: SocketAddr,
    /// Address other processes reach this one at (default: 127.0.0.1 and the listen port).
    #[arg(long, env = "MILVUS_LIKE_ROOTCOORD_ADVERTISE")]
    advertise: Option<String>,
    /// HTTP address of /metrics, /healthz, /readyz and /log-level.
    #[arg(
        long,
        env = "MILVUS_LIKE_ROOTCOORD_HTTP_LISTEN",
        default_value = "0.0.0.0:9091"
    )]
    http_listen: SocketAddr,
    #[command(flatten)]
    etcd: EtcdArgs,
    #[command(flatten)]
    liveness: LivenessArgs,
    #[command(flatten)]
    tso: TsoArgs,
}

#[derive(Debug, Args)]
struct TsoArgs {
    /// How far ahead the TSO window is persisted.
    #[arg(long, env = "MILVUS_LIKE_TSO_WINDOW", default_value = "3s", value_parser = parse_duration)]
    tso_window: Duration,
    /// TSO update loop period.
    #[arg(long, env = "MILVUS_LIKE_TSO_UPDATE_INTERVAL", default_value = "50ms", value_parser = parse_duration)]
    tso_update_interval: Duration,
}

impl TsoArgs {
    fn config(&self) -> TsoConfig {
        TsoConfig {
            window: self.tso_window,
            update_interval: self.tso_update_interval,
        }
    }
}

#[derive(Debug, Args)]
struct StandaloneArgs {
    /// Where everything is stored: the metadata (meta.redb), the insert and delete
    /// logs (log.redb) and the segment files (segments/).
    #[arg(long, env = "MILVUS_LIKE_DATA_DIR", default_value = "milvus-like-data")]
    data_dir: std::path::PathBuf,
    /// gRPC listen address of the root coordinator.
    #[arg(
        long = "rootcoord-listen",
        env = "MILVUS_LIKE_ROOTCOORD_LISTEN",
        default_value = "127.0.0.1:19530"
    )]
    rootcoord_listen: SocketAddr,
    /// HTTP address of the root coordinator's /metrics, /healthz, /readyz and /log-level.
    #[arg(
        long = "rootcoord-http-listen",
        env = "MILVUS_LIKE_ROOTCOORD_HTTP_LISTEN",
        default_value = "127.0.0.1:9091"
    )]
    rootcoord_http_listen: SocketAddr,
    /// gRPC listen address of the proxy: the address clients use.
    #[arg(
        long,
        env = "MILVUS_LIKE_PROXY_LISTEN",
        default_value = "127.0.0.1:19531"
    )]
    proxy_listen: SocketAddr,
    /// HTTP address of the proxy's /metrics, /healthz, /readyz and /log-level.
    #[arg(
        long,
        env = "MILVUS_LIKE_PROXY_HTTP_LISTEN",
        default_value = "127.0.0.1:9092"
    )]
    proxy_http_listen: SocketAddr,
    /// gRPC listen address of the data coordinator.
    #[arg(
        long,
        env = "MILVUS_LIKE_DATACOORD_LISTEN",
        default_value = "127.0.0.1:13333"
    )]
    datacoord_listen: SocketAddr,
    /// HTTP address of the data coordinator's /metrics, /healthz, /readyz and /log-level.
    #[arg(
        long,
        env = "MILVUS_LIKE_DATACOORD_HTTP_LISTEN",
        default_value = "127.0.0.1:9093"
    )]
    datacoord_http_listen: SocketAddr,
    /// gRPC listen address of the data node.
    #[arg(
        long,
        env = "MILVUS_LIKE_DATANODE_LISTEN",
        default_value = "127.0.0.1:21121"
    )]
    datanode_listen: SocketAddr,
    /// HTTP address of the data node's /metrics, /healthz, /readyz and /log-level.
    #[arg(
        long,
        env = "MILVUS_LIKE_DATANODE_HTTP_LISTEN",
        default_value = "127.0.0.1:9094"
    )]
    datanode_http_listen: SocketAddr,
    #[command(flatten)]
    tso: TsoArgs,
    #[command(flatten)]
    coordination: DataCoordTuning,
    #[command(flatten)]
    flushing: DataNodeTuning,
}

impl StandaloneArgs {
    fn config(self) -> milvus_like_node::standalone::StandaloneConfig {
        let role = |listen: SocketAddr, http: SocketAddr| RoleConfig::new(listen, http);
        milvus_like_node::standalone::StandaloneConfig {
            data_dir: self.data_dir,
            rootcoord: RootCoordConfig {
                role: role(self.rootcoord_listen, self.rootcoord_http_listen),
                tso: self.tso.config(),
                ..RootCoordConfig::default()
            },
            datacoord: self.coordination.apply(DataCoordConfig {
                role: role(self.datacoord_listen, self.datacoord_http_listen),
                ..DataCoordConfig::default()
            }),
            proxy: ProxyConfig {
                role: role(self.proxy_listen, self.proxy_http_listen),
                ..ProxyConfig::default()
            },
            datanode: self.flushing.apply(DataNodeConfig {
                role: role(self.datanode_listen, self.datanode_http_listen),
                ..DataNodeConfig::default()
            }),
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
struct LivenessArgs {
    /// Session TTL: a dead process is dropped from the node list this long after its last heartbeat.
    #[arg(long, env = "MILVUS_LIKE_SESSION_TTL", default_value = "30s", value_parser = parse_duration)]
    session_ttl: Duration,
    /// Heartbeat period (capped at a third of the session TTL).
    #[arg(long, env = "MILVUS_LIKE_HEARTBEAT", default_value = "10s", value_parser = parse_duration)]
    heartbeat: Duration,
    /// Leader lease TTL: a standby takes over at most this long after the leader dies.
    #[arg(long, env = "MILVUS_LIKE_LEADER_TTL", default_value = "10s", value_parser = parse_duration)]
    leader_ttl: Duration,
    /// Name this process registers under (the operator sets the pod name; default:
    /// the host name).
    #[arg(long, env = "MILVUS_LIKE_NODE_NAME")]
    node_name: Option<String>,
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
                ttl: self.session_ttl,
                heartbeat: self.heartbeat,
                name: self.node_name.clone().unwrap_or_else(host_name),
            },
            leader_ttl: self.leader_ttl,
        }
    }
}

#[derive(Debug, Args)]
struct DataCoordArgs {
    /// gRPC listen address.
    #[arg(
        long,
        env = "MILVUS_LIKE_DATACOORD_LISTEN",
        default_value = "0.0.0.0:13333"
    )]
    listen: SocketAddr,
    /// Address other processes reach this one at (default: 127.0.0.1 and the listen port).
    #[arg(long, env = "MILVUS_LIKE_DATACOORD_ADVERTISE")]
    advertise: Option<String>,
    /// HTTP address of /metrics, /healthz, /readyz and /log-level.
    #[arg(
        long,
        env = "MILVUS_LIKE_DATACOORD_HTTP_LISTEN",
        default_value = "0.0.0.0:9093"
    )]
    http_listen: SocketAddr,
    /// Root coordinator endpoints, comma separated (all of them; the leader is found).
    #[arg(
        long,
        env = "MILVUS_LIKE_ROOTCOORD_ENDPOINTS",
        value_delimiter = ',',
        default_value = "127.0.0.1:19530"
    )]
    rootcoord_endpoints: Vec<String>,
    #[command(flatten)]
    tuning: DataCoordTuning,
    #[command(flatten)]
    etcd: EtcdArgs,
    #[command(flatten)]
    liveness: LivenessArgs,
    #[command(flatten)]
    kafka: KafkaArgs,
}

/// Channels, balancing and segment sealing.
#[derive(Debug, Args)]
struct DataCoordTuning {
    /// Number of channels (= partitions of the insert and delete logs); fixed when the cluster is created.
    #[arg(long, env = "MILVUS_LIKE_CHANNELS", default_value_t = 3)]
    channels: u32,
    /// Channel balancer: round_robin, least_load or consistent_hash.
    #[arg(long, env = "MILVUS_LIKE_BALANCER", default_value = "round_robin")]
    balancer: String,
    /// Largest segment in MiB; with the schema's row size it gives the row limit.
    #[arg(long, env = "MILVUS_LIKE_MAX_SEGMENT_MIB", default_value_t = 512)]
    max_segment_mib: u64,
    /// Row grants are void after this.
    #[arg(long, env = "MILVUS_LIKE_GRANT_LIFETIME", default_value = "2s", value_parser = parse_duration)]
    grant_lifetime: Duration,
    /// Seal a growing segment with no new grant for this long (if it holds 16 MiB or more).
    #[arg(long, env = "MILVUS_LIKE_SEGMENT_MAX_IDLE", default_value = "10m", value_parser = parse_duration)]
    segment_max_idle: Duration,
    /// Seal a growing segment this old.
    #[arg(long, env = "MILVUS_LIKE_SEGMENT_MAX_LIFETIME", default_value = "24h", value_parser = parse_duration)]
    segment_max_lifetime: Duration,
}

impl DataCoordTuning {
    fn apply(self, config: DataCoordConfig) -> DataCoordConfig {
        DataCoordConfig {
            channels: self.channels,
            balancer: self.balancer,
            segments: SegmentConfig {
                max_segment_bytes: self.max_segment_mib.max(1) << 20,
                grant_lifetime: self.grant_lifetime,
                max_idle: self.segment_max_idle,
                max_lifetime: self.segment_max_lifetime,
                ..config.segments
            },
            ..config
        }
    }
}

/// Where the insert and delete logs are.
#[derive(Debug, Args)]
struct KafkaArgs {
    /// Kafka bootstrap servers, `host:port,...`.
    #[arg(
        long,
        env = "MILVUS_LIKE_KAFKA_BROKERS",
        default_value = "127.0.0.1:9092"
    )]
    kafka_brokers: String,
    /// Topic name prefix: `{prefix}-insert-log`, `{prefix}-delete-log`, `{prefix}-dead-letter`.
    #[arg(long, env = "MILVUS_LIKE_TOPIC_PREFIX", default_value = "milvus")]
    topic_prefix: String,
    /// Replication factor of the topics the data coordinator creates.
    #[arg(long, env = "MILVUS_LIKE_KAFKA_REPLICATION", default_value_t = 1)]
    kafka_replication: i32,
    /// `SASL_PLAINTEXT` or `SASL_SSL` to authenticate to the brokers (with the
    /// --kafka-sasl-* flags); unset: plaintext without authentication.
    #[arg(long, env = "MILVUS_LIKE_KAFKA_SECURITY_PROTOCOL")]
    kafka_security_protocol: Option<String>,
    /// SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
    #[arg(
        long,
        env = "MILVUS_LIKE_KAFKA_SASL_MECHANISM",
        default_value = "PLAIN"
    )]
    kafka_sasl_mechanism: String,
    /// SASL user name.
    #[arg(long, env = "MILVUS_LIKE_KAFKA_SASL_USERNAME", default_value = "")]
    kafka_sasl_username: String,
    /// SASL password.
    #[arg(
        long,
        env = "MILVUS_LIKE_KAFKA_SASL_PASSWORD",
        hide_env_values = true,
        default_value = ""
    )]
    kafka_sasl_password: String,
}

impl KafkaArgs {
    fn log(&self) -> Arc<dyn Log> {
        Arc::new(KafkaLog::new(self.config()))
    }

    fn config(&self) -> KafkaConfig {
        KafkaConfig {
            brokers: self.kafka_brokers.clone(),
            topic_prefix: self.topic_prefix.clone(),
            replication: self.kafka_replication,
            sasl: self.kafka_security_protocol.as_ref().map(|protocol| {
                milvus_like_node::msgstream::KafkaSasl {
                    security_protocol: protocol.clone(),
                    mechanism: self.kafka_sasl_mechanism.clone(),
                    username: self.kafka_sasl_username.clone(),
                    password: self.kafka_sasl_password.clone(),
                }
            }),
        }
    }
}

#[derive(Debug, Args)]
struct ProxyArgs {
    /// gRPC listen address.
    #[arg(
        long,
        env = "MILVUS_LIKE_PROXY_LISTEN",
        default_value = "0.0.0.0:19531"
    )]
    listen: SocketAddr,
    /// Address other processes reach this one at (default: 127.0.0.1 and the listen port).
    #[arg(long, env = "MILVUS_LIKE_PROXY_ADVERTISE")]
    advertise: Option<String>,
    /// HTTP address of /metrics, /healthz, /readyz and /log-level.
    #[arg(
        long,
        env = "MILVUS_LIKE_PROXY_HTTP_LISTEN",
        default_value = "0.0.0.0:9092"
    )]
    http_listen: SocketAddr,
    #[command(flatten)]
    upstream: UpstreamArgs,
    #[command(flatten)]
    etcd: EtcdArgs,
    #[command(flatten)]
    liveness: LivenessArgs,
    #[command(flatten)]
    kafka: KafkaArgs,
}

#[derive(Debug, Args)]
struct DataNodeArgs {
    /// gRPC listen address.
    #[arg(
        long,
        env = "MILVUS_LIKE_DATANODE_LISTEN",
        default_value = "0.0.0.0:21121"
    )]
    listen: SocketAddr,
    /// Address other processes reach this one at (default: 127.0.0.1 and the listen port).
    #[arg(long, env = "MILVUS_LIKE_DATANODE_ADVERTISE")]
    advertise: Option<String>,
    /// HTTP address of /metrics, /healthz, /readyz and /log-level.
    #[arg(
        long,
        env = "MILVUS_LIKE_DATANODE_HTTP_LISTEN",
        default_value = "0.0.0.0:9094"
    )]
    http_listen: SocketAddr,
    #[command(flatten)]
    upstream: UpstreamArgs,
    #[command(flatten)]
    tuning: DataNodeTuning,
    /// How long a stopping data node waits for the coordinator to move its
    /// channels (flushing each) before it flushes them itself and exits.
    #[arg(long, env = "MILVUS_LIKE_DRAIN_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    drain_timeout: Duration,
    #[command(flatten)]
    storage: StorageArgs,
    #[command(flatten)]
    etcd: EtcdArgs,
    #[command(flatten)]
    liveness: LivenessArgs,
    #[command(flatten)]
    kafka: KafkaArgs,
}

/// Flush thresholds and memory of a data node.
#[derive(Debug, Args)]
struct DataNodeTuning {
    /// Flush a segment buffer at this many MiB.
    #[arg(long, env = "MILVUS_LIKE_FLUSH_MIB", default_value_t = 256)]
    flush_mib: u64,
    /// Flush a segment buffer at this many rows.
    #[arg(long, env = "MILVUS_LIKE_FLUSH_ROWS", default_value_t = 100_000)]
    flush_rows: u64,
    /// Flush a segment buffer this old.
    #[arg(long, env = "MILVUS_LIKE_FLUSH_AGE", default_value = "30s", value_parser = parse_duration)]
    flush_age: Duration,
    /// Memory for buffers and flushes in MiB: consumption pauses above it. Plan
    /// for about 1.5x this, plus 64 MiB, for the whole process.
    #[arg(long, env = "MILVUS_LIKE_DATANODE_MEMORY_MIB", default_value_t = 1024)]
    memory_mib: u64,
    /// Flushes encoding and writing files at the same time (each holds a Parquet
    /// row group and upload parts besides the buffer).
    #[arg(
        long,
        env = "MILVUS_LIKE_DATANODE_CONCURRENT_FLUSHES",
        default_value_t = 2
    )]
    concurrent_flushes: usize,
}

impl DataNodeTuning {
    fn apply(&self, config: DataNodeConfig) -> DataNodeConfig {
        DataNodeConfig {
            policy: ThresholdPolicy {
                max_bytes: self.flush_mib.max(1) << 20,
                max_rows: self.flush_rows.max(1),
                max_age: self.flush_age,
            },
            memory_limit: self.memory_mib.max(16) << 20,
            max_concurrent_flushes: self.concurrent_flushes,
            ..config
        }
    }
}

#[derive(Debug, Args)]
struct ReadBackArgs {
    /// Collection name.
    #[arg(long)]
    collection: String,
    /// Rows to print.
    #[arg(long, default_value_t = 5)]
    sample: usize,
    /// Also print, per block of this many consecutive primary keys, its live
    /// rows and their checksum (`block START rows N checksum X`), and the keys
    /// found more than once: compares block by block with `insert` runs that
    /// each sent one block (`--id-start`, `--random`). Holds every key in memory.
    #[arg(long, value_name = "KEYS")]
    key_blocks: Option<u64>,
    #[command(flatten)]
    upstream: UpstreamArgs,
    #[command(flatten)]
    storage: StorageArgs,
}

async fn read_back(args: ReadBackArgs) -> anyhow::Result<()> {
    use milvus_like_api::proto::data_coord_client::DataCoordClient;
    let root = milvus_like_api::root_coord_link::RootCoordLink::connect(
        &args.upstream.rootcoord_endpoints,
        Duration::from_secs(10),
    )?;
    let info = root
        .collection_by_name(&args.collection)
        .await
        .map_err(|s| anyhow::anyhow!("collection {:?}: {}", args.collection, s.message()))?;
    let schema = milvus_like_api::schema::CollectionSchema::try_from(
        info.schema
            .clone()
            .context("the collection has no schema")?,
    )?;
    let dc = milvus_like_api::leader_pool::LeaderPool::new(
        &args.upstream.datacoord_endpoints,
        Duration::from_secs(10),
    )?;
    let request = milvus_like_api::proto::ListSegmentsRequest {
        collection_id: info.id,
    };
    let listed = dc
        .call(Duration::from_secs(10), |c| async move {
            DataCoordClient::new(c).list_segments(request).await
        })
        .await
        .map_err(|s| anyhow::anyhow!("list segments: {}", s.message()))?
        .into_inner();
    let store = SegmentStore::open(&args.storage.config())?;
    let mut blocks = args.key_blocks.map(KeyBlocks::new);
    let content = read_collection_blocks(
        &store,
        &schema,
        &listed.segments,
        &listed.delete_logs,
        args.sample,
        blocks.as_mut(),
    )
    .await?;
    let flushed = listed
        .segments
        .iter()
        .filter(|s| s.state == milvus_like_api::proto::SegmentState::Flushed as i32)
        .count();
    println!(
        "collection {:?} (id {}): {} rows, {} deleted, checksum {:016x}, {} segments ({} flushed), {} delete logs",
        args.collection,
        info.id,
        content.rows,
        content.deleted,
        content.checksum,
        listed.segments.len(),
        flushed,
        listed.delete_logs.len()
    );
    for row in &content.sample {
        println!("  {row}");
    }
    if let Some(b) = blocks {
        println!("duplicated keys {}", b.duplicates);
        for (block, (rows, checksum)) in &b.blocks {
            println!(
                "block {} rows {rows} checksum {checksum:016x}",
                block.saturating_mul(i64::try_from(b.size).unwrap_or(i64::MAX))
            );
        }
    }
    Ok(())
}

/// Parses `250ms`, `3s`, `2m` or `1h`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{text:?} has no unit; write e.g. 500ms, 3s, 2m"))?;
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} does not start with a whole number"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        "h" => Ok(Duration::from_secs(n * 3600)),
        _ => Err(format!(
            "unknown unit {unit:?} in {text:?}; use ms, s, m or h"
        )),
    }
}

/// Checks a log filter at parse time, so that a bad one stops the start.
fn parse_log_filter(directives: &str) -> Result<String, String> {
    logging::parse_filter(directives).map(|_| directives.trim().to_owned())
}

/// Reads the config file named by `--config` or MILVUS_LIKE_CONFIG, if any, and
/// exports each of its settings that the environment does not set, for clap to
/// read as environment variables: flag > environment > file > default. Returns how
/// many it exported.
#[allow(unsafe_code)]
fn apply_config_file() -> Result<usize, milvus_like_node::config::ConfigError> {
    use clap::CommandFactory;
    use milvus_like_node::config;
    let Some(path) = config::config_path(std::env::args_os(), std::env::var_os(config::CONFIG_ENV))
    else {
        return Ok(0);
    };
    let settings = config::load(&path, &config::Settings::of(&Cli::command()))?;
    let exported = config::not_overridden(settings, |env| std::env::var_os(env).is_some());
    for setting in &exported {
        // SAFETY: this runs first thing in `main`, before the runtime or any other
        // thread exists, so nothing reads the environment concurrently.
        unsafe { std::env::set_var(&setting.env, &setting.value) };
    }
    Ok(exported.len())
}

/// Cancels on SIGINT or SIGTERM.
fn main() -> std::process::ExitCode {
    limit_malloc_arenas();
    let exported = match apply_config_file() {
        Ok(n) => n,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let cli = Cli::parse();
    // `--log-level` went through the same parser as clap's value check.
    match logging::parse_filter(&cli.log_level) {
        Ok(filter) => logging::init(cli.log_format, filter),
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::FAILURE;
        }
    }
    if let Some(path) = &cli.config {
        tracing::info!(config = %path.display(), from_file = exported, "read the config file");
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // The whole chain, as one sentence per cause: "open ...: ... is in use ...".
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(milvus_like_node::cli::exit_code(&e))
        }
    }
}

/// glibc gives each thread that allocates its own arena, up to 8 per core, and
/// memory freed into one arena is reused by that arena only. A data node allocates
/// its buffers on the runtime's workers and its Parquet encoders on ever-changing
/// blocking threads, so free memory piles up in many arenas: at `--memory-mib=256`
/// its peak RSS was 689 to 832 MiB with the default and 483 MiB with one arena, at
/// the same throughput (`ingest_bench`, docs/benchmarks.md). `MALLOC_ARENA_MAX` in
/// the environment still wins.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn limit_malloc_arenas() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: `mallopt` only sets an allocator parameter; it runs first thing in
        // `main`, before any other thread exists or allocates.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 1);
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn limit_malloc_arenas() {}

async fn run(command: Command) -> anyhow::Result<()> {
    let cancel = milvus_like_api::process::shutdown_on_signal();
    match command {
        Command::Standalone(args) => milvus_like_node::standalone::run(args.config(), cancel).await,
        Command::Rootcoord(args) => {
            let config = RootCoordConfig {
                role: args
                    .liveness
                    .role(args.listen, args.advertise, args.http_listen),
                tso: args.tso.config(),
                ..RootCoordConfig::default()
            };
            let store = args.etcd.store(&cancel).await?;
            rootcoord::run(store, config, cancel).await
        }
        Command::Datacoord(args) => {
            let config = args.tuning.apply(DataCoordConfig {
                role: args
                    .liveness
                    .role(args.listen, args.advertise, args.http_listen),
                rootcoord: args.rootcoord_endpoints,
                ..DataCoordConfig::default()
            });
            let log = args.kafka.log();
            let store = args.etcd.store(&cancel).await?;
            datacoord::run(
                store,
                Some(log),
                config,
                BalancerRegistry::with_builtins(),
                cancel,
            )
            .await
        }
        Command::ReadBack(args) => read_back(args).await,
        Command::ConfigDocs => {
            use clap::CommandFactory;
            print!("{}", milvus_like_node::config::render_docs(&Cli::command()));
            Ok(())
        }
        Command::Client(command) => milvus_like_node::cli::run(command, cancel).await,
        Command::Proxy(args) => {
            let config = ProxyConfig {
                role: args
                    .liveness
                    .role(args.listen, args.advertise, args.http_listen),
                rootcoord: args.upstream.rootcoord_endpoints,
                datacoord: args.upstream.datacoord_endpoints,
            };
            let log = args.kafka.log();
            let store = args.etcd.store(&cancel).await?;
            proxy::run(store, log, config, cancel).await
        }
        Command::Datanode(args) => {
            let config = args.tuning.apply(DataNodeConfig {
                role: args
                    .liveness
                    .role(args.listen, args.advertise, args.http_listen),
                rootcoord: args.upstream.rootcoord_endpoints,
                datacoord: args.upstream.datacoord_endpoints,
                storage: args.storage.config(),
                drain_timeout: args.drain_timeout,
                ..DataNodeConfig::default()
            });
            let store = args.etcd.store(&cancel).await?;
            let log = args.kafka.log();
            datanode::run(store, log, config, cancel).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("3s"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("3").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("3 parsecs").is_err());
    }

    fn repo_file(path: &str) -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .join(path)
    }

    /// docs/configuration.md is what the command tree generates.
    #[test]
    fn configuration_docs_are_up_to_date() {
        use clap::CommandFactory;
        let generated = milvus_like_node::config::render_docs(&Cli::command());
        let committed =
            std::fs::read_to_string(repo_file("docs/configuration.md")).unwrap_or_default();
        assert!(
            committed == generated,
            "docs/configuration.md differs from the flags; regenerate it: {}",
            milvus_like_node::config::REGENERATE_DOCS
        );
    }

    /// The example in docs/configuration.md is a valid config file.
    #[test]
    fn the_docs_example_is_valid() {
        use clap::CommandFactory;
        let docs = milvus_like_node::config::render_docs(&Cli::command());
        let example = docs
            .split_once("```toml\n")
            .and_then(|(_, rest)| rest.split_once("```"))
            .map(|(example, _)| example)
            .expect("a TOML example");
        let settings = milvus_like_node::config::Settings::of(&Cli::command());
        milvus_like_node::config::parse("the example", example, &settings)
            .expect("the docs example parses");
    }

    /// Two variables must never flatten to one key, and every variable has one.
    #[test]
    fn every_variable_has_its_own_key() {
        use clap::CommandFactory;
        let settings = milvus_like_node::config::Settings::of(&Cli::command());
        let mut keys: Vec<String> = settings.iter().map(|s| s.key.replace('.', "_")).collect();
        let count = keys.len();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), count, "{keys:?}");
        assert!(count >= 50, "only {count} settings found");
    }

    /// The example file loads, and its values parse for every subcommand.
    #[test]
    fn the_example_config_parses_for_every_subcommand() {
        use clap::CommandFactory;
        use milvus_like_node::config;
        let command = Cli::command();
        let settings = config::Settings::of(&command);
        let example = repo_file("docs/milvus-like.example.toml");
        let assignments = config::load(&example, &settings).expect("the example loads");
        assert!(assignments.len() >= 30, "{assignments:?}");
        // The values go through clap as the flags they stand for: what the
        // variables would give, checked by the same parsers.
        // The server roles and read-back (the client commands need arguments that
        // are not settings).
        let servers = [
            "standalone",
            "rootcoord",
            "datacoord",
            "proxy",
            "datanode",
            "read-back",
        ];
        for sub in command
            .get_subcommands()
            .filter(|s| servers.contains(&s.get_name()))
        {
            let name = sub.get_name();
            let mut argv = vec!["milvus-like".to_owned(), name.to_owned()];
            if name == "read-back" {
                argv.push("--collection=c".to_owned());
            }
            for a in &assignments {
                let setting = settings.get(&a.env).expect("a known setting");
                let flag = setting
                    .uses
                    .iter()
                    .find(|u| u.subcommand == name || u.subcommand.is_empty())
                    .and_then(|u| u.flag.clone());
                if let Some(flag) = flag {
                    argv.push(format!("--{flag}={}", a.value));
                }
            }
            let parsed = Cli::try_parse_from(&argv);
            assert!(
                parsed.is_ok(),
                "{argv:?}: {}",
                parsed.err().map(|e| e.to_string()).unwrap_or_default()
            );
        }
        let datanode = assignments
            .iter()
            .find(|a| a.env == "MILVUS_LIKE_FLUSH_AGE")
            .expect("flush.age");
        assert_eq!(
            (datanode.key.as_str(), datanode.value.as_str()),
            ("flush.age", "30s")
        );
    }
}
