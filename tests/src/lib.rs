//! Test harness: starts real services (etcd, Kafka, MinIO) and milvus-like processes
//! on loopback, with free ports and a directory per test. When a test fails, the
//! directory is kept and the tail of every process log is printed, so the failure
//! can be read after the fact.
//!
//! - [`dir`]: the test's directory; [`wait`]: free ports and polling; [`slot`]: how
//!   many whole clusters run at once.
//! - [`process`]: a child process with a log file, and the `milvus-like` binary.
//! - [`role`]: one way to start a role ([`RoleProcess::start`]).
//! - [`services`]: etcd, Kafka and MinIO.
//! - [`cluster`]: a distributed cluster ([`ClusterBuilder`]); [`standalone`]: every
//!   role in one process.
//! - [`clients`]: gRPC clients of the roles, and waits until they serve.
//! - [`data`]: test rows and what reading them back must give; [`fake_datanode`]: an
//!   in-process data node; [`http`] and [`metrics`]: `/metrics`, `/readyz` and such.
//! - [`measure`]: medians, fairly timed durable writes, CPU time and RSS of a process;
//!   [`load`]: inserts through a proxy; both for the benchmark binaries.

#![forbid(unsafe_code)]

pub mod clients;
pub mod cluster;
pub mod data;
pub mod dir;
pub mod fake_datanode;
pub mod http;
pub mod load;
pub mod measure;
pub mod metrics;
pub mod process;
pub mod role;
pub mod services;
pub mod slot;
pub mod standalone;
pub mod wait;

pub use clients::{
    committed_rows, create_collection, data_coord_client, flush, proxy_client, root_coord_client,
    serving, strong_count, wait_channels_owned, wait_distribution, wait_for_proxy, wait_serving,
};
pub use cluster::{CHANNELS, Cluster, ClusterBuilder};
pub use data::test_schema;
pub use dir::{TestDir, workspace_root};
pub use http::{http, http_get};
pub use metrics::{Sample, mean_ms, metric_sum, metric_sum_where, parse_metrics, scrape};
pub use process::{Process, node_binary};
pub use role::{MetaArgs, Ports, Role, RoleProcess};
pub use services::etcd::Etcd;
pub use services::kafka::Kafka;
pub use services::minio;
pub use slot::{HeavySlot, heavy_slot};
pub use standalone::{StandalonePorts, StandaloneProcess};
pub use wait::{free_port, wait_for};
