//! The metadata store seam: etcd in production, an embedded store on one machine.
//!
//! Everything a coordinator must not forget lives here: the TSO window, the id
//! high-water mark, collections, sessions, leader keys. The trait is the subset of
//! etcd that the system relies on: point reads, prefix scans, compare-and-swap
//! transactions, watches from a revision, and leases that delete their keys on expiry.
//! Keys are relative to the store's root, so several clusters can share one etcd.

mod etcd;
mod local;

use std::time::Duration;

use futures::stream::BoxStream;
use milvus_like_api::retry::Transient;

pub use etcd::{EtcdConfig, EtcdStore};
pub use local::LocalStore;

/// etcd-style revision: increases with every write to the store.
pub type Revision = i64;
/// A lease id; keys written with a lease vanish when it expires.
pub type LeaseId = i64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
    pub create_revision: Revision,
    pub mod_revision: Revision,
    /// 0 when the key has no lease.
    pub lease: LeaseId,
}

/// A condition of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compare {
    /// The key exists and holds exactly this value.
    ValueEquals(String, Vec<u8>),
    /// The key does not exist.
    Absent(String),
    /// The key's last modification is this revision (0 means: absent).
    ModRevision(String, Revision),
}

/// An operation of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Put {
        key: String,
        value: Vec<u8>,
        lease: Option<LeaseId>,
    },
    Delete(String),
    Get(String),
}

impl Op {
    pub fn put(key: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        Self::Put {
            key: key.into(),
            value: value.into(),
            lease: None,
        }
    }
}

/// All `compares` hold -> `then` runs, else `otherwise` runs; atomically.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Txn {
    pub compares: Vec<Compare>,
    pub then: Vec<Op>,
    pub otherwise: Vec<Op>,
}

impl Txn {
    pub fn when(compares: impl Into<Vec<Compare>>) -> Self {
        Self {
            compares: compares.into(),
            ..Self::default()
        }
    }

    pub fn then(mut self, ops: impl Into<Vec<Op>>) -> Self {
        self.then = ops.into();
        self
    }

    pub fn otherwise(mut self, ops: impl Into<Vec<Op>>) -> Self {
        self.otherwise = ops.into();
        self
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnResult {
    pub succeeded: bool,
    /// One entry per `Op::Get` of the branch that ran, in order.
    pub gets: Vec<Option<KeyValue>>,
    /// Store revision after the transaction.
    pub revision: Revision,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    Put(KeyValue),
    Delete { key: String, revision: Revision },
}

/// Batches of events in revision order. An `Err` ends the stream; the watcher
/// re-reads and watches again.
pub type WatchStream = BoxStream<'static, Result<Vec<WatchEvent>, MetaError>>;

#[derive(Debug, Clone, thiserror::Error)]
pub enum MetaError {
    /// The store cannot be reached or did not answer in time; retrying may help.
    #[error("metadata store unavailable: {0}")]
    Unavailable(String),
    /// The lease is gone (expired or revoked).
    #[error("lease {0:x} has expired")]
    LeaseExpired(LeaseId),
    /// A value in the store does not decode; someone wrote junk or the schema changed.
    #[error("metadata key {key:?} holds a malformed value: {reason}")]
    Corrupt { key: String, reason: String },
    /// The store refused the request (a bug on our side or a misconfigured store).
    #[error("metadata store refused the request: {0}")]
    Refused(String),
}

impl MetaError {
    pub fn corrupt(key: &str, reason: impl ToString) -> Self {
        Self::Corrupt {
            key: key.to_owned(),
            reason: reason.to_string(),
        }
    }
}

impl Transient for MetaError {
    /// Only an unreachable store: a lost lease, a corrupt value or a refusal stays so.
    fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

pub type MetaResult<T> = Result<T, MetaError>;

#[async_trait::async_trait]
pub trait MetaStore: Send + Sync + std::fmt::Debug + 'static {
    /// Where the store lives, for logs and errors.
    fn describe(&self) -> String;
    async fn get(&self, key: &str) -> MetaResult<Option<KeyValue>>;
    /// Every key under `prefix`, in key order, and the revision they were read at.
    async fn scan_prefix(&self, prefix: &str) -> MetaResult<(Vec<KeyValue>, Revision)>;
    async fn put(&self, key: &str, value: Vec<u8>, lease: Option<LeaseId>) -> MetaResult<()>;
    /// True when the key existed.
    async fn delete(&self, key: &str) -> MetaResult<bool>;
    async fn txn(&self, txn: Txn) -> MetaResult<TxnResult>;
    /// Events under `prefix` from `from_revision` on (inclusive).
    async fn watch_prefix(&self, prefix: &str, from_revision: Revision) -> MetaResult<WatchStream>;
    async fn grant_lease(&self, ttl: Duration) -> MetaResult<LeaseId>;
    /// Renews the lease; returns its TTL. `LeaseExpired` when it is gone.
    async fn keep_alive(&self, lease: LeaseId) -> MetaResult<Duration>;
    async fn revoke_lease(&self, lease: LeaseId) -> MetaResult<()>;
}
