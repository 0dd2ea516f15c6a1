//! The logs on Kafka.
//!
//! Two topics with the same number of partitions; channel k is partition k of both.
//! Proxies produce idempotently with acks=all. Data nodes consume with partitions
//! assigned by hand (the data coordinator decides who owns a channel, not a consumer
//! group), from offsets kept in etcd; Kafka's own committed offsets are only a copy
//! for lag tools.

use std::sync::Arc;
use std::time::Duration;

use milvus_like_api::settings::defaults;
use rdkafka::ClientConfig;
use rdkafka::Message as _;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

use super::{LogRecord, MAX_MESSAGE_BYTES, Stream, StreamError};

#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// `host:port,...`
    pub brokers: String,
    /// Topic names start with this: `{prefix}-insert-log`, `{prefix}-delete-log`,
    /// `{prefix}-dead-letter`.
    pub topic_prefix: String,
    /// Replication factor of the topics this cluster creates.
    pub replication: i32,
    /// SASL authentication, when the brokers want it.
    pub sasl: Option<KafkaSasl>,
}

/// SASL credentials for the brokers. `Debug` hides the password.
#[derive(Clone, PartialEq, Eq)]
pub struct KafkaSasl {
    /// `SASL_PLAINTEXT` or `SASL_SSL`.
    pub security_protocol: String,
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    pub mechanism: String,
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for KafkaSasl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSasl")
            .field("security_protocol", &self.security_protocol)
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            brokers: defaults::KAFKA_BROKERS.into(),
            topic_prefix: defaults::TOPIC_PREFIX.into(),
            replication: defaults::KAFKA_REPLICATION,
            sasl: None,
        }
    }
}

impl KafkaConfig {
    pub fn topic(&self, stream: Stream) -> String {
        match stream {
            Stream::Insert => format!("{}-insert-log", self.topic_prefix),
            Stream::Delete => format!("{}-delete-log", self.topic_prefix),
        }
    }

    pub fn dead_letter_topic(&self) -> String {
        format!("{}-dead-letter", self.topic_prefix)
    }

    /// Which stream a topic name belongs to.
    pub fn stream_of(&self, topic: &str) -> Option<Stream> {
        if topic == self.topic(Stream::Insert) {
            Some(Stream::Insert)
        } else if topic == self.topic(Stream::Delete) {
            Some(Stream::Delete)
        } else {
            None
        }
    }

    fn client(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers)
            .set("socket.keepalive.enable", "true");
        if let Some(sasl) = &self.sasl {
            c.set("security.protocol", &sasl.security_protocol)
                .set("sasl.mechanisms", &sasl.mechanism)
                .set("sasl.username", &sasl.username)
                .set("sasl.password", &sasl.password);
        }
        c
    }
}

fn kafka(config: &KafkaConfig) -> impl Fn(KafkaError) -> StreamError + '_ {
    move |source| StreamError::Kafka {
        brokers: config.brokers.clone(),
        source,
    }
}

/// Creates the insert, delete and dead-letter topics if missing, then checks the
/// partition counts (a mismatch would silently remap channels, so it is an error).
pub async fn ensure_topics(config: &KafkaConfig, channels: u32) -> Result<(), StreamError> {
    let admin: AdminClient<DefaultClientContext> =
        config.client().create().map_err(kafka(config))?;
    let max_bytes = MAX_MESSAGE_BYTES.to_string();
    let names = [
        (config.topic(Stream::Insert), channels),
        (config.topic(Stream::Delete), channels),
        (config.dead_letter_topic(), 1),
    ];
    let topics: Vec<NewTopic<'_>> = names
        .iter()
        .map(|(name, parts)| {
            NewTopic::new(
                name,
                i32::try_from(*parts).unwrap_or(i32::MAX),
                TopicReplication::Fixed(config.replication),
            )
            .set("max.message.bytes", &max_bytes)
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = admin
        .create_topics(&topics, &options)
        .await
        .map_err(kafka(config))?;
    for r in results {
        match r {
            Ok(topic) => tracing::info!(%topic, "created topic"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(StreamError::Kafka {
                    brokers: config.brokers.clone(),
                    source: KafkaError::AdminOp(code),
                })
                .inspect_err(|e| tracing::error!(%topic, error = %e, "cannot create topic"));
            }
        }
    }
    check_partitions(config, channels).await
}

/// Fails unless both logs exist with `channels` partitions.
pub async fn check_partitions(config: &KafkaConfig, channels: u32) -> Result<(), StreamError> {
    let config = config.clone();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = config.client().create().map_err(kafka(&config))?;
        for stream in [Stream::Insert, Stream::Delete] {
            let topic = config.topic(stream);
            let metadata = consumer
                .fetch_metadata(Some(&topic), Duration::from_secs(10))
                .map_err(kafka(&config))?;
            let Some(t) = metadata.topics().iter().find(|t| t.name() == topic) else {
                return Err(StreamError::MissingTopic(topic));
            };
            if t.error().is_some() || t.partitions().is_empty() {
                return Err(StreamError::MissingTopic(topic));
            }
            if t.partitions().len() != channels as usize {
                return Err(StreamError::PartitionMismatch {
                    topic,
                    actual: t.partitions().len(),
                    expected: channels,
                });
            }
        }
        Ok(())
    })
    .await
    .unwrap_or_else(|e| {
        Err(StreamError::MissingTopic(format!(
            "metadata task failed: {e}"
        )))
    })
}

/// Number of partitions of the insert log, i.e. the channel count.
pub async fn channel_count(config: &KafkaConfig) -> Result<u32, StreamError> {
    let config = config.clone();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = config.client().create().map_err(kafka(&config))?;
        let topic = config.topic(Stream::Insert);
        let metadata = consumer
            .fetch_metadata(Some(&topic), Duration::from_secs(10))
            .map_err(kafka(&config))?;
        metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty())
            .map(|t| u32::try_from(t.partitions().len()).unwrap_or(u32::MAX))
            .ok_or(StreamError::MissingTopic(topic))
    })
    .await
    .unwrap_or_else(|e| {
        Err(StreamError::MissingTopic(format!(
            "metadata task failed: {e}"
        )))
    })
}

/// Produces to the logs. Cheap to clone.
#[derive(Clone)]
pub struct KafkaProducer {
    producer: FutureProducer,
    config: KafkaConfig,
}

impl std::fmt::Debug for KafkaProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaProducer")
            .field("brokers", &self.config.brokers)
            .finish()
    }
}

impl KafkaProducer {
    pub fn new(config: &KafkaConfig) -> Result<Self, StreamError> {
        let producer: FutureProducer = config
            .client()
            .set("enable.idempotence", "true")
            .set("acks", "all")
            // No compression: vectors are random-looking floats that lz4 does not
            // shrink, but lz4 still cost the producer and every consumer CPU. Without
            // it, the data node used 14-25% less CPU per MiB and ingest end to end ran
            // 14-41% faster (docs/benchmarks.md). Consumers still read batches that an
            // earlier version compressed.
            .set("compression.type", "none")
            .set("linger.ms", "5")
            .set("message.max.bytes", MAX_MESSAGE_BYTES.to_string())
            .set("queue.buffering.max.kbytes", "262144")
            .set("delivery.timeout.ms", "30000")
            .create()
            .map_err(kafka(config))?;
        Ok(Self {
            producer,
            config: config.clone(),
        })
    }
}

/// One consumer for all the channels a data node owns, assigned by hand.
pub struct KafkaConsumer {
    consumer: StreamConsumer,
    /// A second client, never assigned, that asks for high watermarks on its own
    /// broker connections: on the consumer's, the request would wait behind a
    /// fetch that waits for data (`fetch.wait.max.ms`, 500 ms per partition).
    watermarks: Arc<BaseConsumer>,
    config: KafkaConfig,
}

impl std::fmt::Debug for KafkaConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaConsumer")
            .field("brokers", &self.config.brokers)
            .finish()
    }
}

impl KafkaConsumer {
    /// `queued_kbytes` bounds what librdkafka prefetches: when the data node stops
    /// reading (backpressure), fetching stops there.
    pub fn new(
        config: &KafkaConfig,
        group: &str,
        queued_kbytes: usize,
    ) -> Result<Self, StreamError> {
        let consumer: StreamConsumer = config
            .client()
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            .set("fetch.message.max.bytes", MAX_MESSAGE_BYTES.to_string())
            .set(
                "queued.max.messages.kbytes",
                queued_kbytes.max(1024).to_string(),
            )
            .set("fetch.queue.backoff.ms", "10")
            .set("isolation.level", "read_committed")
            .create()
            .map_err(kafka(config))?;
        let watermarks: BaseConsumer = config
            .client()
            .set("group.id", format!("{group}-watermarks"))
            .set("enable.auto.commit", "false")
            .create()
            .map_err(kafka(config))?;
        Ok(Self {
            consumer,
            watermarks: Arc::new(watermarks),
            config: config.clone(),
        })
    }

    pub fn inner(&self) -> &StreamConsumer {
        &self.consumer
    }

    /// The end of `channel` of `stream` (the offset the next produced message gets),
    /// asked of the broker on the watermark client (blocks; a few ms).
    pub fn high_watermark_blocking(
        &self,
        stream: Stream,
        channel: u32,
    ) -> Result<i64, StreamError> {
        fetch_high_watermark(&self.watermarks, &self.config, stream, channel)
    }
}

fn fetch_high_watermark(
    watermarks: &BaseConsumer,
    config: &KafkaConfig,
    stream: Stream,
    channel: u32,
) -> Result<i64, StreamError> {
    let partition = i32::try_from(channel).unwrap_or(i32::MAX);
    watermarks
        .fetch_watermarks(&config.topic(stream), partition, Duration::from_secs(5))
        .map(|(_, high)| high)
        .map_err(kafka(config))
}

/// The logs on a Kafka cluster.
#[derive(Clone)]
pub struct KafkaLog {
    config: KafkaConfig,
    /// The client of [`super::Log::probe`], made on first use and kept.
    prober: Arc<std::sync::Mutex<Option<Arc<BaseConsumer>>>>,
}

impl std::fmt::Debug for KafkaLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaLog")
            .field("brokers", &self.config.brokers)
            .finish()
    }
}

impl KafkaLog {
    pub fn new(config: KafkaConfig) -> Self {
        Self {
            config,
            prober: Arc::default(),
        }
    }

    pub fn config(&self) -> &KafkaConfig {
        &self.config
    }
}

#[async_trait::async_trait]
impl super::Log for KafkaLog {
    fn describe(&self) -> String {
        format!("Kafka at {}", self.config.brokers)
    }

    async fn ensure(&self, channels: u32) -> Result<(), StreamError> {
        ensure_topics(&self.config, channels).await
    }

    async fn channel_count(&self) -> Result<u32, StreamError> {
        channel_count(&self.config).await
    }

    async fn probe(&self) -> Result<(), StreamError> {
        let client = {
            let mut slot = self.prober.lock().unwrap_or_else(|p| p.into_inner());
            match slot.as_ref() {
                Some(c) => c.clone(),
                None => {
                    let c: Arc<BaseConsumer> =
                        Arc::new(self.config.client().create().map_err(kafka(&self.config))?);
                    *slot = Some(c.clone());
                    c
                }
            }
        };
        let config = self.config.clone();
        tokio::task::spawn_blocking(move || {
            client
                .fetch_metadata(Some(&config.topic(Stream::Insert)), Duration::from_secs(3))
                .map(drop)
                .map_err(kafka(&config))
        })
        .await
        .unwrap_or_else(|e| {
            Err(StreamError::MissingTopic(format!(
                "metadata task failed: {e}"
            )))
        })
    }

    fn producer(&self) -> Result<Arc<dyn super::LogProducer>, StreamError> {
        Ok(Arc::new(KafkaProducer::new(&self.config)?))
    }

    fn consumer(
        &self,
        group: &str,
        prefetch_bytes: u64,
    ) -> Result<Arc<dyn super::LogConsumer>, StreamError> {
        let kbytes = usize::try_from(prefetch_bytes / 1024).unwrap_or(usize::MAX);
        Ok(Arc::new(KafkaConsumer::new(&self.config, group, kbytes)?))
    }
}

#[async_trait::async_trait]
impl super::LogProducer for KafkaProducer {
    /// Appends `payload` to `channel` of `stream`; returns its offset once Kafka
    /// acknowledged it (all in-sync replicas have it).
    async fn send(
        &self,
        stream: Stream,
        channel: u32,
        payload: bytes::Bytes,
    ) -> Result<i64, StreamError> {
        // Checked before the broker does: its refusal would read as a failing broker.
        super::check_size(&payload)?;
        let topic = self.config.topic(stream);
        let record: FutureRecord<'_, (), [u8]> = FutureRecord::to(&topic)
            .partition(i32::try_from(channel).unwrap_or(i32::MAX))
            .payload(&payload[..]);
        match self.producer.send(record, Duration::from_secs(30)).await {
            Ok(delivery) => Ok(delivery.offset),
            Err((source, _)) => Err(StreamError::Kafka {
                brokers: self.config.brokers.clone(),
                source,
            }),
        }
    }

    /// Copies a message that could not be processed to the dead-letter topic.
    async fn dead_letter(&self, key: &str, payload: &[u8]) -> Result<(), StreamError> {
        let topic = self.config.dead_letter_topic();
        let record: FutureRecord<'_, str, [u8]> =
            FutureRecord::to(&topic).key(key).payload(payload);
        self.producer
            .send(record, Duration::from_secs(30))
            .await
            .map(drop)
            .map_err(|(source, _)| StreamError::Kafka {
                brokers: self.config.brokers.clone(),
                source,
            })
    }
}

/// A consumed message; its payload stays in librdkafka's buffer.
struct Payload<'a>(rdkafka::message::BorrowedMessage<'a>);

impl AsRef<[u8]> for Payload<'_> {
    fn as_ref(&self) -> &[u8] {
        self.0.payload().unwrap_or_default()
    }
}

#[async_trait::async_trait]
impl super::LogConsumer for KafkaConsumer {
    /// Starts reading `channel` of both logs at the given next offsets.
    fn assign(&self, channel: u32, insert_next: i64, delete_next: i64) -> Result<(), StreamError> {
        let mut tpl = TopicPartitionList::new();
        let partition = i32::try_from(channel).unwrap_or(i32::MAX);
        for (stream, next) in [(Stream::Insert, insert_next), (Stream::Delete, delete_next)] {
            tpl.add_partition_offset(
                &self.config.topic(stream),
                partition,
                Offset::Offset(next.max(0)),
            )
            .map_err(kafka(&self.config))?;
        }
        self.consumer
            .incremental_assign(&tpl)
            .map_err(kafka(&self.config))
    }

    /// Stops reading `channel`.
    fn unassign(&self, channel: u32) -> Result<(), StreamError> {
        let mut tpl = TopicPartitionList::new();
        let partition = i32::try_from(channel).unwrap_or(i32::MAX);
        for stream in [Stream::Insert, Stream::Delete] {
            tpl.add_partition(&self.config.topic(stream), partition);
        }
        self.consumer
            .incremental_unassign(&tpl)
            .map_err(kafka(&self.config))
    }

    async fn recv(&self) -> Result<LogRecord<'_>, StreamError> {
        loop {
            let m = self.consumer.recv().await.map_err(kafka(&self.config))?;
            let Some(stream) = self.config.stream_of(m.topic()) else {
                continue;
            };
            let channel = u32::try_from(m.partition()).unwrap_or(u32::MAX);
            let offset = m.offset();
            return Ok(LogRecord::new(
                stream,
                channel,
                offset,
                Box::new(Payload(m)),
            ));
        }
    }

    async fn high_watermark(&self, stream: Stream, channel: u32) -> Result<i64, StreamError> {
        let watermarks = self.watermarks.clone();
        let config = self.config.clone();
        tokio::task::spawn_blocking(move || {
            fetch_high_watermark(&watermarks, &config, stream, channel)
        })
        .await
        .unwrap_or_else(|e| {
            Err(StreamError::MissingTopic(format!(
                "watermark task failed: {e}"
            )))
        })
    }

    fn checkpointed(&self, channel: u32, insert_next: i64, delete_next: i64) {
        let mut tpl = TopicPartitionList::new();
        let partition = i32::try_from(channel).unwrap_or(i32::MAX);
        for (stream, next) in [(Stream::Insert, insert_next), (Stream::Delete, delete_next)] {
            let _ = tpl.add_partition_offset(
                &self.config.topic(stream),
                partition,
                Offset::Offset(next),
            );
        }
        if let Err(e) = self.consumer.commit(&tpl, CommitMode::Async) {
            tracing::debug!(error = %e, "Kafka offset copy failed");
        }
    }
}
