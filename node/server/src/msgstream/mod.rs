//! The log seam: the insert and delete logs on Kafka in production, on an embedded
//! durable log on one machine (standalone).
//!
//! Two logs with the same number of channels; channel k of both is consumed by the
//! same data node, so a primary key's inserts and deletes meet there. Proxies append
//! and acknowledge a client only after the log made the message durable. Data nodes
//! read the channels the data coordinator gave them, from offsets kept in the
//! metadata store (the checkpoint); the log's own notion of "consumed" is a copy at
//! most (Kafka's committed offsets, for lag tools) or a retention hint (the embedded
//! log drops what every checkpoint has passed).

mod kafka;
mod local;

use std::sync::Arc;

use bytes::Bytes;

use milvus_like_api::retry::Transient;

pub use kafka::{KafkaConfig, KafkaConsumer, KafkaLog, KafkaProducer, KafkaSasl};
pub use local::LocalLog;

/// Largest message the logs accept (Kafka's broker default is 1 MiB).
pub const MAX_MESSAGE_BYTES: usize = 8 << 20;
/// Refuses a payload above [`MAX_MESSAGE_BYTES`], the same way in every backend.
pub(crate) fn check_size(payload: &[u8]) -> Result<(), StreamError> {
    if payload.len() > MAX_MESSAGE_BYTES {
        return Err(StreamError::TooLarge {
            size: payload.len(),
            limit: MAX_MESSAGE_BYTES,
        });
    }
    Ok(())
}

/// Messages are cut below this, leaving room for headers.
pub const TARGET_MESSAGE_BYTES: usize = 4 << 20;

/// Which log a message is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stream {
    Insert,
    Delete,
}

impl Stream {
    pub fn name(self) -> &'static str {
        match self {
            Self::Insert => "insert",
            Self::Delete => "delete",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("Kafka at {brokers} is unreachable or failing: {source}")]
    Kafka {
        brokers: String,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    #[error("topic {topic} has {actual} partitions but the cluster uses {expected} channels")]
    PartitionMismatch {
        topic: String,
        actual: usize,
        expected: u32,
    },
    #[error("topic {0} does not exist yet")]
    MissingTopic(String),
    /// The embedded log failed to read or write its file.
    #[error("the embedded log {path} failed: {reason}")]
    Local { path: String, reason: String },
    #[error("message of {size} bytes is larger than the log's limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
}

impl Transient for StreamError {
    /// The broker or the embedded log's file failed, or the topics are not there
    /// yet; a topic with the wrong partition count and an oversized message stay so.
    fn is_transient(&self) -> bool {
        match self {
            Self::Kafka { .. } | Self::MissingTopic(_) | Self::Local { .. } => true,
            Self::PartitionMismatch { .. } | Self::TooLarge { .. } => false,
        }
    }
}

/// One message read from a log. The payload may still live in the backend's buffer.
pub struct LogRecord<'a> {
    pub stream: Stream,
    pub channel: u32,
    pub offset: i64,
    payload: Payload<'a>,
}

/// Where a record's bytes are.
enum Payload<'a> {
    /// In the client library's buffer (Kafka): decoding copies what it keeps.
    Borrowed(Box<dyn AsRef<[u8]> + Send + 'a>),
    /// In a shared buffer (the embedded log): decoding shares the vectors.
    Shared(bytes::Bytes),
}

impl std::fmt::Debug for LogRecord<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogRecord")
            .field("stream", &self.stream)
            .field("channel", &self.channel)
            .field("offset", &self.offset)
            .field("bytes", &self.payload().len())
            .finish()
    }
}

impl<'a> LogRecord<'a> {
    pub fn new(
        stream: Stream,
        channel: u32,
        offset: i64,
        payload: Box<dyn AsRef<[u8]> + Send + 'a>,
    ) -> Self {
        Self {
            stream,
            channel,
            offset,
            payload: Payload::Borrowed(payload),
        }
    }

    /// A record whose bytes are shared: [`Self::decode`] keeps its vectors
    /// without copying them.
    pub fn shared(stream: Stream, channel: u32, offset: i64, payload: bytes::Bytes) -> Self {
        Self {
            stream,
            channel,
            offset,
            payload: Payload::Shared(payload),
        }
    }

    pub fn payload(&self) -> &[u8] {
        match &self.payload {
            Payload::Borrowed(b) => (**b).as_ref(),
            Payload::Shared(b) => b,
        }
    }

    /// The payload decoded as `M`.
    pub fn decode<M: prost::Message + Default>(&self) -> Result<M, prost::DecodeError> {
        match &self.payload {
            Payload::Borrowed(b) => M::decode((**b).as_ref()),
            Payload::Shared(b) => M::decode(b.clone()),
        }
    }
}

/// A log backend: where the insert, delete and dead-letter logs live.
#[async_trait::async_trait]
pub trait Log: Send + Sync + std::fmt::Debug + 'static {
    /// Where the log lives, for logs and errors.
    fn describe(&self) -> String;
    /// Creates the logs with `channels` channels if they are missing; fails when they
    /// exist with another count (that would silently remap channels).
    async fn ensure(&self, channels: u32) -> Result<(), StreamError>;
    /// The number of channels of the existing logs (`MissingTopic` before `ensure`).
    async fn channel_count(&self) -> Result<u32, StreamError>;
    /// Whether the log answers, for readiness (cheap; called every few seconds).
    async fn probe(&self) -> Result<(), StreamError> {
        self.channel_count().await.map(drop)
    }
    fn producer(&self) -> Result<Arc<dyn LogProducer>, StreamError>;
    /// A reader of channels assigned by hand. `prefetch_bytes` bounds what the
    /// backend reads ahead of the caller.
    fn consumer(
        &self,
        group: &str,
        prefetch_bytes: u64,
    ) -> Result<Arc<dyn LogConsumer>, StreamError>;
}

#[async_trait::async_trait]
pub trait LogProducer: Send + Sync + std::fmt::Debug {
    /// Appends `payload` to `channel` of `stream`; returns its offset once the log
    /// made it durable. Owned, so that a backend that keeps it (the embedded log)
    /// need not copy it.
    async fn send(&self, stream: Stream, channel: u32, payload: Bytes) -> Result<i64, StreamError>;
    /// Keeps a message that could not be processed, with a key saying why.
    async fn dead_letter(&self, key: &str, payload: &[u8]) -> Result<(), StreamError>;
}

#[async_trait::async_trait]
pub trait LogConsumer: Send + Sync + std::fmt::Debug {
    /// Starts reading `channel` of both logs at the given next offsets. To move an
    /// assigned channel, `unassign` it first (Kafka refuses a second assignment).
    fn assign(&self, channel: u32, insert_next: i64, delete_next: i64) -> Result<(), StreamError>;
    /// Stops reading `channel`.
    fn unassign(&self, channel: u32) -> Result<(), StreamError>;
    /// The next message of any assigned channel; waits for one.
    async fn recv(&self) -> Result<LogRecord<'_>, StreamError>;
    /// The end of `channel` of `stream`: the offset the next appended message gets.
    async fn high_watermark(&self, stream: Stream, channel: u32) -> Result<i64, StreamError>;
    /// A checkpoint was committed: everything below these offsets is in segment
    /// files. Kafka copies it into the group's committed offsets (for lag tools);
    /// the embedded log may drop what is below.
    fn checkpointed(&self, channel: u32, insert_next: i64, delete_next: i64);
}
