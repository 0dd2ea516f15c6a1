//! Flags shared by the client commands and the server roles: where the
//! coordinators, the proxy and the segment files are, and how to print results.

use clap::Args;
use milvus_like_api::settings::{Role, defaults, env};

use crate::role::RoleConfig;
use crate::storage::StorageConfig;

/// The root coordinators a process talks to.
#[derive(Debug, Clone, Args)]
pub struct RootCoordEndpoints {
    /// Root coordinator endpoints, comma separated (all of them; the leader is found).
    #[arg(
        long,
        env = env::ROOTCOORD_ENDPOINTS,
        value_delimiter = ',',
        default_values_t = [RoleConfig::local_endpoint(Role::RootCoord)]
    )]
    pub rootcoord_endpoints: Vec<String>,
}

/// The coordinators a process talks to (all instances; the leaders are found).
#[derive(Debug, Clone, Args)]
pub struct UpstreamArgs {
    #[command(flatten)]
    pub root: RootCoordEndpoints,
    /// Data coordinator endpoints, comma separated.
    #[arg(
        long,
        env = env::DATACOORD_ENDPOINTS,
        value_delimiter = ',',
        default_values_t = [RoleConfig::local_endpoint(Role::DataCoord)]
    )]
    pub datacoord_endpoints: Vec<String>,
}

/// Where segment files are written.
#[derive(Debug, Clone, Args)]
pub struct StorageArgs {
    /// Local directory for segment files (used unless --s3-bucket is set).
    #[arg(
        long,
        env = env::STORAGE_ROOT,
        default_value = defaults::STORAGE_ROOT
    )]
    pub storage_root: std::path::PathBuf,
    /// S3 bucket (with --s3-endpoint for MinIO and other S3-compatible stores).
    #[arg(long, env = env::S3_BUCKET)]
    pub s3_bucket: Option<String>,
    /// S3 endpoint URL (`http://...` allows plain HTTP); empty: AWS.
    #[arg(long, env = env::S3_ENDPOINT, default_value = "")]
    pub s3_endpoint: String,
    /// S3 region.
    #[arg(long, env = env::S3_REGION, default_value = defaults::S3_REGION)]
    pub s3_region: String,
    /// S3 access key id.
    #[arg(long, env = env::S3_ACCESS_KEY, default_value = "")]
    pub s3_access_key: String,
    /// S3 secret access key.
    #[arg(
        long,
        env = env::S3_SECRET_KEY,
        default_value = "",
        hide_env_values = true
    )]
    pub s3_secret_key: String,
}

impl StorageArgs {
    pub fn config(&self) -> StorageConfig {
        match &self.s3_bucket {
            Some(bucket) => StorageConfig::S3 {
                endpoint: self.s3_endpoint.clone(),
                bucket: bucket.clone(),
                region: self.s3_region.clone(),
                access_key: self.s3_access_key.clone(),
                secret_key: self.s3_secret_key.clone(),
                allow_http: self.s3_endpoint.starts_with("http://"),
            },
            None => StorageConfig::Local {
                root: self.storage_root.clone(),
            },
        }
    }
}

/// The proxy the data commands (collections, insert, delete, flush) talk to.
#[derive(Debug, Clone, Args)]
pub struct ProxyArgs {
    /// Proxy endpoint, `host:port` or `http://host:port`.
    #[arg(
        long = "proxy",
        env = env::PROXY_ENDPOINT,
        default_value_t = RoleConfig::local_endpoint(Role::Proxy)
    )]
    pub endpoint: String,
}

/// How the show and list commands print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum OutputFormat {
    /// Aligned columns for people.
    #[default]
    Table,
    /// One JSON document, for scripts.
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct OutputArgs {
    /// `table` for people, `json` for scripts.
    #[arg(long, short = 'o', default_value = "table")]
    pub output: OutputFormat,
}
