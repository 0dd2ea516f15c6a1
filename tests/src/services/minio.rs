//! A real single-node MinIO server, run by `tests/scripts/minio.sh`: the
//! S3-compatible object storage that data nodes flush segment files to.

use std::path::Path;

use milvus_like_node::storage::StorageConfig;

use super::Scripted;

/// The fixed test credentials `minio.sh` starts every server with.
pub const ACCESS_KEY: &str = "milvuslike";
pub const SECRET_KEY: &str = "milvuslike-secret";
pub const REGION: &str = "us-east-1";

/// A MinIO server on 127.0.0.1 with its data and log in its own directory. Killed
/// on drop; the tail of its log is printed if the test is failing.
#[derive(Debug)]
pub struct MinIO {
    service: Scripted,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    pub access_key: String,
    pub secret_key: String,
    pub region: String,
}

impl MinIO {
    /// Starts a server whose data and log live in `dir/minio`; waits until it is ready.
    pub fn start(dir: &Path) -> anyhow::Result<Self> {
        let (service, endpoint) = Scripted::start("minio.sh", dir.join("minio"), "minio.log")?;
        Ok(Self {
            service,
            endpoint,
            access_key: ACCESS_KEY.into(),
            secret_key: SECRET_KEY.into(),
            region: REGION.into(),
        })
    }

    /// Creates bucket `name` (3-63 lowercase letters, digits, '.', '-'); creating
    /// an existing bucket again is fine.
    pub fn bucket(&self, name: &str) -> anyhow::Result<()> {
        self.service.run("create-bucket", &[name]).map(drop)
    }

    /// Segment storage settings for `bucket` on this server.
    pub fn storage_config(&self, bucket: &str) -> StorageConfig {
        StorageConfig::S3 {
            endpoint: self.endpoint.clone(),
            bucket: bucket.to_owned(),
            region: self.region.clone(),
            access_key: self.access_key.clone(),
            secret_key: self.secret_key.clone(),
            allow_http: true,
        }
    }

    /// The flags that make a data node (or a client command) store segments in
    /// `bucket` on this server: what [`MinIO::storage_config`] is on the command line.
    pub fn node_args(&self, bucket: &str) -> Vec<String> {
        vec![
            format!("--s3-bucket={bucket}"),
            format!("--s3-endpoint={}", self.endpoint),
            format!("--s3-region={}", self.region),
            format!("--s3-access-key={}", self.access_key),
            format!("--s3-secret-key={}", self.secret_key),
        ]
    }

    /// kill -9; data stays for [`MinIO::restart`].
    pub fn kill9(&self) -> anyhow::Result<()> {
        self.service.kill9()
    }

    /// Starts again on the same port with the same data.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.endpoint = self.service.restart()?;
        Ok(())
    }
}
