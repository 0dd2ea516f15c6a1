//! The settings contract between the node and whatever configures it (the
//! operator, the chart, a config file, a person at a shell).
//!
//! Ports, the environment variable of every setting, the built-in balancer names,
//! bounds and defaults are defined here, once. The node's flags (`milvus-like
//! <role> --help`) take their variable names and defaults from this module, and
//! the operator builds its pods' environment and ports from it; a test in
//! `tests/tests/settings_contract.rs` checks that every variable the operator sets
//! is one the node reads.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// The server roles, each with its gRPC and HTTP port and its variables' prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    RootCoord,
    DataCoord,
    Proxy,
    DataNode,
    QueryNode,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::RootCoord,
        Role::DataCoord,
        Role::Proxy,
        Role::DataNode,
        Role::QueryNode,
    ];

    /// The gRPC port (Milvus's for the root coordinator, then its neighbours).
    pub const fn grpc_port(self) -> u16 {
        match self {
            Self::RootCoord => 19530,
            Self::Proxy => 19531,
            Self::DataCoord => 13333,
            Self::DataNode => 21121,
            Self::QueryNode => querynode::GRPC_PORT,
        }
    }

    /// The HTTP port of `/metrics`, `/healthz`, `/readyz` and `/log-level`. Not
    /// 9091 to 9094: those are Kafka's (9092), Prometheus Pushgateway's (9091) and
    /// Alertmanager's (9093, 9094), which often run beside a database.
    pub const fn http_port(self) -> u16 {
        match self {
            Self::RootCoord => 19091,
            Self::Proxy => 19092,
            Self::DataCoord => 19093,
            Self::DataNode => 19094,
            Self::QueryNode => querynode::HTTP_PORT,
        }
    }

    /// The subcommand that runs it: `milvus-like rootcoord`.
    pub const fn subcommand(self) -> &'static str {
        match self {
            Self::RootCoord => "rootcoord",
            Self::DataCoord => "datacoord",
            Self::Proxy => "proxy",
            Self::DataNode => "datanode",
            Self::QueryNode => "querynode",
        }
    }

    /// The role's own listen variables, in its prefix (`MILVUS_LIKE_ROOTCOORD_*`).
    pub const fn listen_env(self) -> RoleEnv {
        match self {
            Self::RootCoord => RoleEnv {
                listen: env::ROOTCOORD_LISTEN,
                advertise: env::ROOTCOORD_ADVERTISE,
                http_listen: env::ROOTCOORD_HTTP_LISTEN,
            },
            Self::DataCoord => RoleEnv {
                listen: env::DATACOORD_LISTEN,
                advertise: env::DATACOORD_ADVERTISE,
                http_listen: env::DATACOORD_HTTP_LISTEN,
            },
            Self::Proxy => RoleEnv {
                listen: env::PROXY_LISTEN,
                advertise: env::PROXY_ADVERTISE,
                http_listen: env::PROXY_HTTP_LISTEN,
            },
            Self::DataNode => RoleEnv {
                listen: env::DATANODE_LISTEN,
                advertise: env::DATANODE_ADVERTISE,
                http_listen: env::DATANODE_HTTP_LISTEN,
            },
            Self::QueryNode => RoleEnv {
                listen: env::QUERYNODE_LISTEN,
                advertise: env::QUERYNODE_ADVERTISE,
                http_listen: env::QUERYNODE_HTTP_LISTEN,
            },
        }
    }
}

/// The query node's ports ([`Role::QueryNode`]'s), as constants.
pub mod querynode {
    pub const GRPC_PORT: u16 = 21123;
    pub const HTTP_PORT: u16 = 19096;
}

/// A role's listen, advertise and HTTP listen variables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoleEnv {
    pub listen: &'static str,
    pub advertise: &'static str,
    pub http_listen: &'static str,
}

/// The environment variable of every setting. A config file key is the variable
/// without `MILVUS_LIKE_`, in lower case, split at its section (`[kafka] brokers`
/// is `MILVUS_LIKE_KAFKA_BROKERS`; docs/configuration.md lists them all).
pub mod env {
    /// Every variable starts with this.
    pub const PREFIX: &str = "MILVUS_LIKE_";
    /// The config file.
    pub const CONFIG: &str = "MILVUS_LIKE_CONFIG";
    /// Not ours, but read as the log filter: `RUST_LOG`.
    pub const LOG_LEVEL: &str = "RUST_LOG";
    pub const LOG_FORMAT: &str = "MILVUS_LIKE_LOG_FORMAT";

    pub const ROOTCOORD_LISTEN: &str = "MILVUS_LIKE_ROOTCOORD_LISTEN";
    pub const ROOTCOORD_ADVERTISE: &str = "MILVUS_LIKE_ROOTCOORD_ADVERTISE";
    pub const ROOTCOORD_HTTP_LISTEN: &str = "MILVUS_LIKE_ROOTCOORD_HTTP_LISTEN";
    pub const DATACOORD_LISTEN: &str = "MILVUS_LIKE_DATACOORD_LISTEN";
    pub const DATACOORD_ADVERTISE: &str = "MILVUS_LIKE_DATACOORD_ADVERTISE";
    pub const DATACOORD_HTTP_LISTEN: &str = "MILVUS_LIKE_DATACOORD_HTTP_LISTEN";
    pub const PROXY_LISTEN: &str = "MILVUS_LIKE_PROXY_LISTEN";
    pub const PROXY_ADVERTISE: &str = "MILVUS_LIKE_PROXY_ADVERTISE";
    pub const PROXY_HTTP_LISTEN: &str = "MILVUS_LIKE_PROXY_HTTP_LISTEN";
    pub const DATANODE_LISTEN: &str = "MILVUS_LIKE_DATANODE_LISTEN";
    pub const DATANODE_ADVERTISE: &str = "MILVUS_LIKE_DATANODE_ADVERTISE";
    pub const DATANODE_HTTP_LISTEN: &str = "MILVUS_LIKE_DATANODE_HTTP_LISTEN";
    pub const QUERYNODE_LISTEN: &str = "MILVUS_LIKE_QUERYNODE_LISTEN";
    pub const QUERYNODE_ADVERTISE: &str = "MILVUS_LIKE_QUERYNODE_ADVERTISE";
    pub const QUERYNODE_HTTP_LISTEN: &str = "MILVUS_LIKE_QUERYNODE_HTTP_LISTEN";
    pub const QUERYNODE_TARGET_INTERVAL: &str = "MILVUS_LIKE_QUERYNODE_TARGET_INTERVAL";
    pub const QUERYNODE_MEMORY_MIB: &str = "MILVUS_LIKE_QUERYNODE_MEMORY_MIB";

    pub const ROOTCOORD_ENDPOINTS: &str = "MILVUS_LIKE_ROOTCOORD_ENDPOINTS";
    pub const DATACOORD_ENDPOINTS: &str = "MILVUS_LIKE_DATACOORD_ENDPOINTS";
    pub const PROXY_ENDPOINT: &str = "MILVUS_LIKE_PROXY_ENDPOINT";

    pub const ETCD_ENDPOINTS: &str = "MILVUS_LIKE_ETCD_ENDPOINTS";
    pub const META_ROOT: &str = "MILVUS_LIKE_META_ROOT";
    pub const ETCD_TIMEOUT: &str = "MILVUS_LIKE_ETCD_TIMEOUT";

    pub const SESSION_TTL: &str = "MILVUS_LIKE_SESSION_TTL";
    pub const HEARTBEAT: &str = "MILVUS_LIKE_HEARTBEAT";
    pub const LEADER_TTL: &str = "MILVUS_LIKE_LEADER_TTL";
    pub const NODE_NAME: &str = "MILVUS_LIKE_NODE_NAME";

    pub const TSO_WINDOW: &str = "MILVUS_LIKE_TSO_WINDOW";
    pub const TSO_UPDATE_INTERVAL: &str = "MILVUS_LIKE_TSO_UPDATE_INTERVAL";

    pub const KAFKA_BROKERS: &str = "MILVUS_LIKE_KAFKA_BROKERS";
    pub const TOPIC_PREFIX: &str = "MILVUS_LIKE_TOPIC_PREFIX";
    pub const KAFKA_REPLICATION: &str = "MILVUS_LIKE_KAFKA_REPLICATION";
    pub const KAFKA_SECURITY_PROTOCOL: &str = "MILVUS_LIKE_KAFKA_SECURITY_PROTOCOL";
    pub const KAFKA_SASL_MECHANISM: &str = "MILVUS_LIKE_KAFKA_SASL_MECHANISM";
    pub const KAFKA_SASL_USERNAME: &str = "MILVUS_LIKE_KAFKA_SASL_USERNAME";
    pub const KAFKA_SASL_PASSWORD: &str = "MILVUS_LIKE_KAFKA_SASL_PASSWORD";

    pub const CHANNELS: &str = "MILVUS_LIKE_CHANNELS";
    pub const BALANCER: &str = "MILVUS_LIKE_BALANCER";
    pub const MAX_SEGMENT_MIB: &str = "MILVUS_LIKE_MAX_SEGMENT_MIB";
    pub const GRANT_LIFETIME: &str = "MILVUS_LIKE_GRANT_LIFETIME";
    pub const SEGMENT_MAX_IDLE: &str = "MILVUS_LIKE_SEGMENT_MAX_IDLE";
    pub const SEGMENT_MAX_LIFETIME: &str = "MILVUS_LIKE_SEGMENT_MAX_LIFETIME";
    pub const GARBAGE_GRACE: &str = "MILVUS_LIKE_GARBAGE_GRACE";

    pub const FLUSH_MIB: &str = "MILVUS_LIKE_FLUSH_MIB";
    pub const FLUSH_ROWS: &str = "MILVUS_LIKE_FLUSH_ROWS";
    pub const FLUSH_AGE: &str = "MILVUS_LIKE_FLUSH_AGE";
    pub const DATANODE_MEMORY_MIB: &str = "MILVUS_LIKE_DATANODE_MEMORY_MIB";
    pub const DATANODE_CONCURRENT_FLUSHES: &str = "MILVUS_LIKE_DATANODE_CONCURRENT_FLUSHES";
    pub const INDEX_BUILD_THREADS: &str = "MILVUS_LIKE_DATANODE_INDEX_BUILD_THREADS";
    pub const DRAIN_TIMEOUT: &str = "MILVUS_LIKE_DRAIN_TIMEOUT";

    pub const STORAGE_ROOT: &str = "MILVUS_LIKE_STORAGE_ROOT";
    pub const S3_BUCKET: &str = "MILVUS_LIKE_S3_BUCKET";
    pub const S3_ENDPOINT: &str = "MILVUS_LIKE_S3_ENDPOINT";
    pub const S3_REGION: &str = "MILVUS_LIKE_S3_REGION";
    pub const S3_ACCESS_KEY: &str = "MILVUS_LIKE_S3_ACCESS_KEY";
    pub const S3_SECRET_KEY: &str = "MILVUS_LIKE_S3_SECRET_KEY";

    pub const DATA_DIR: &str = "MILVUS_LIKE_DATA_DIR";
}

/// The built-in channel balancers, by the name `--balancer` takes.
pub mod balancer {
    pub const ROUND_ROBIN: &str = "round_robin";
    pub const LEAST_LOAD: &str = "least_load";
    pub const CONSISTENT_HASH: &str = "consistent_hash";
    pub const BUILT_IN: [&str; 3] = [ROUND_ROBIN, LEAST_LOAD, CONSISTENT_HASH];
}

/// The default of every setting that has one.
pub mod defaults {
    use std::time::Duration;

    /// `info`, but the HNSW library's per-build lines only from `warn` up.
    pub const LOG_LEVEL: &str = "info,hnsw_rs=warn";
    pub const LOG_FORMAT: &str = "text";

    pub const ETCD_ENDPOINTS: &str = "http://127.0.0.1:2379";
    pub const META_ROOT: &str = "milvus-like";
    pub const ETCD_TIMEOUT: Duration = Duration::from_secs(5);

    pub const SESSION_TTL: Duration = Duration::from_secs(30);
    pub const HEARTBEAT: Duration = Duration::from_secs(10);
    pub const LEADER_TTL: Duration = Duration::from_secs(10);

    pub const TSO_WINDOW: Duration = Duration::from_secs(3);
    pub const TSO_UPDATE_INTERVAL: Duration = Duration::from_millis(50);

    pub const KAFKA_BROKERS: &str = "127.0.0.1:9092";
    pub const TOPIC_PREFIX: &str = "milvus";
    pub const KAFKA_REPLICATION: i32 = 1;
    pub const KAFKA_SASL_MECHANISM: &str = "PLAIN";

    pub const CHANNELS: u32 = 3;
    pub const BALANCER: &str = super::balancer::ROUND_ROBIN;
    pub const MAX_SEGMENT_MIB: u64 = 512;
    pub const GRANT_LIFETIME: Duration = Duration::from_secs(2);
    pub const SEGMENT_MAX_IDLE: Duration = Duration::from_secs(10 * 60);
    pub const SEGMENT_MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);
    /// Ten minutes: a query node reads a file in seconds, and retries with
    /// the newer files when one it was about to read is gone.
    pub const GARBAGE_GRACE: Duration = Duration::from_secs(10 * 60);

    pub const FLUSH_MIB: u64 = 256;
    pub const FLUSH_ROWS: u64 = 100_000;
    pub const FLUSH_AGE: Duration = Duration::from_secs(30);
    pub const DATANODE_MEMORY_MIB: u64 = 1024;
    pub const DATANODE_CONCURRENT_FLUSHES: usize = 2;
    /// One, so that ingest keeps the other cores.
    pub const INDEX_BUILD_THREADS: usize = 1;
    pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);
    pub const QUERYNODE_TARGET_INTERVAL: Duration = Duration::from_secs(1);
    /// 0: three quarters of the memory the process may use.
    pub const QUERYNODE_MEMORY_MIB: u64 = 0;

    pub const STORAGE_ROOT: &str = "milvus-like-data/segments";
    pub const S3_REGION: &str = "us-east-1";

    pub const DATA_DIR: &str = "milvus-like-data";
}

/// Bounds the node enforces and the operator's schema repeats.
pub mod limits {
    /// Channels of a cluster (partitions of the insert and delete logs).
    pub const MAX_CHANNELS: u32 = 1024;
    /// A data node's buffer memory, in MiB: at least 16, at most 1 TiB.
    pub const MIN_DATANODE_MEMORY_MIB: u64 = 16;
    pub const MAX_DATANODE_MEMORY_MIB: u64 = 1 << 20;
}

/// A duration as settings write it: a whole number and one unit, `250ms`, `3s`,
/// `2m` or `1h`. Displays in the largest unit that divides it exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Interval(pub Duration);

impl FromStr for Interval {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(|| format!("{text:?} has no unit; write e.g. 500ms, 3s, 2m"))?;
        let (number, unit) = text.split_at(split);
        let n: u64 = number
            .parse()
            .map_err(|_| format!("{text:?} does not start with a whole number"))?;
        let scale = match unit {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            _ => {
                return Err(format!(
                    "unknown unit {unit:?} in {text:?}; use ms, s, m or h"
                ));
            }
        };
        n.checked_mul(scale)
            .map(|ms| Interval(Duration::from_millis(ms)))
            .ok_or_else(|| format!("{text:?} is too long"))
    }
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        match ms {
            0 => write!(f, "0s"),
            ms if ms % 3_600_000 == 0 => write!(f, "{}h", ms / 3_600_000),
            ms if ms % 60_000 == 0 => write!(f, "{}m", ms / 60_000),
            ms if ms % 1000 == 0 => write!(f, "{}s", ms / 1000),
            ms => write!(f, "{ms}ms"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_parse_and_print_back() {
        for (text, duration) in [
            ("250ms", Duration::from_millis(250)),
            ("3s", Duration::from_secs(3)),
            ("2m", Duration::from_secs(120)),
            ("24h", Duration::from_secs(24 * 3600)),
            ("0s", Duration::ZERO),
        ] {
            let parsed: Interval = text.parse().expect(text);
            assert_eq!(parsed.0, duration);
            assert_eq!(parsed.to_string(), text);
        }
        assert_eq!(Interval(Duration::from_millis(1500)).to_string(), "1500ms");
        assert_eq!(Interval(Duration::from_secs(90)).to_string(), "90s");
        for bad in ["3", "s", "3 parsecs", "-1s", "99999999999999999999h"] {
            assert!(bad.parse::<Interval>().is_err(), "{bad}");
        }
    }

    #[test]
    fn role_variables_follow_the_prefix() {
        for role in Role::ALL {
            let prefix = format!("{}{}", env::PREFIX, role.subcommand().to_uppercase());
            let vars = role.listen_env();
            assert_eq!(vars.listen, format!("{prefix}_LISTEN"));
            assert_eq!(vars.advertise, format!("{prefix}_ADVERTISE"));
            assert_eq!(vars.http_listen, format!("{prefix}_HTTP_LISTEN"));
        }
    }

    #[test]
    fn no_two_roles_share_a_port() {
        let mut ports: Vec<u16> = Role::ALL
            .iter()
            .flat_map(|r| [r.grpc_port(), r.http_port()])
            .collect();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), 2 * Role::ALL.len());
        // Kafka's, Prometheus Pushgateway's and Alertmanager's ports stay free.
        for taken in [9091, 9092, 9093, 9094, 2379, 9000] {
            assert!(!ports.contains(&taken), "{taken}");
        }
    }
}
