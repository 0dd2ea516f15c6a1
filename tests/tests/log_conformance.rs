//! One conformance suite for both `Log` backends: a real Kafka broker (KRaft, on
//! a loopback port) and the embedded redb log of standalone. Each case is a
//! function of a log, run against both, so the embedded default provably behaves
//! like Kafka where the data path relies on it: channel counts fixed at creation,
//! offsets per channel, reading from a checkpoint, moving a channel, and the
//! message size limit.

use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;

use milvus_like_node::msgstream::{
    KafkaConfig, KafkaLog, LocalLog, Log, LogConsumer, MAX_MESSAGE_BYTES, Stream, StreamError,
};
use milvus_like_tests::{Kafka, TestDir};

/// Runs every case against one Kafka broker (each case on its own topics) and
/// against a fresh embedded log per case.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_backends_pass_every_case() {
    let dir = TestDir::new("log-conformance");
    let root = dir.path().to_path_buf();
    let kafka = tokio::task::spawn_blocking(move || Kafka::start(&root))
        .await
        .expect("start task")
        .expect("kafka starts");
    for (name, case) in CASES {
        let remote: Arc<dyn Log> = Arc::new(KafkaLog::new(KafkaConfig {
            brokers: kafka.bootstrap.clone(),
            topic_prefix: format!("conformance-{name}"),
            ..KafkaConfig::default()
        }));
        case(remote).await;
        let local: Arc<dyn Log> = Arc::new(
            LocalLog::open(&dir.path().join(format!("{name}.redb")))
                .expect("open the embedded log"),
        );
        case(local).await;
    }
}

type Case = fn(Arc<dyn Log>) -> futures::future::BoxFuture<'static, ()>;

const CASES: [(&str, Case); 4] = [
    ("channels", |log| Box::pin(channel_counts_are_fixed(log))),
    ("offsets", |log| Box::pin(offsets_read_back_in_order(log))),
    ("moves", |log| {
        Box::pin(a_channel_moves_from_its_checkpoint(log))
    }),
    ("limits", |log| {
        Box::pin(oversized_messages_are_refused(log))
    }),
];

/// The next record of `consumer`, within 30 s.
async fn next(consumer: &Arc<dyn LogConsumer>, what: &str) -> (Stream, u32, i64, Vec<u8>) {
    let record = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
        .await
        .unwrap_or_else(|_| panic!("{what}: nothing to read"))
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    (
        record.stream,
        record.channel,
        record.offset,
        record.payload().to_vec(),
    )
}

async fn channel_counts_are_fixed(log: Arc<dyn Log>) {
    let s = log.describe();
    assert!(
        matches!(log.channel_count().await, Err(StreamError::MissingTopic(_))),
        "{s}: no channels before ensure"
    );
    log.ensure(3).await.expect("create");
    assert_eq!(log.channel_count().await.expect("count"), 3, "{s}");
    log.ensure(3).await.expect("ensure is idempotent");
    let other = log.ensure(4).await;
    assert!(
        matches!(other, Err(StreamError::PartitionMismatch { .. })),
        "{s}: another count is refused, not remapped: {other:?}"
    );
    log.probe().await.expect("probe");
}

async fn offsets_read_back_in_order(log: Arc<dyn Log>) {
    let s = log.describe();
    log.ensure(2).await.expect("create");
    let producer = log.producer().expect("producer");
    let consumer = log.consumer("conformance", 1 << 20).expect("consumer");
    let start_insert = consumer
        .high_watermark(Stream::Insert, 1)
        .await
        .expect("high watermark");
    let start_delete = consumer
        .high_watermark(Stream::Delete, 1)
        .await
        .expect("high watermark");
    let mut sent = Vec::new();
    for i in 0..5u8 {
        let offset = producer
            .send(Stream::Insert, 1, Bytes::copy_from_slice(&[i; 16]))
            .await
            .expect("send");
        sent.push(offset);
    }
    let delete_offset = producer
        .send(Stream::Delete, 1, Bytes::from_static(b"delete"))
        .await
        .expect("send a delete");
    assert_eq!(delete_offset, start_delete, "{s}");
    let expected: Vec<i64> = (0..5).map(|i| start_insert + i).collect();
    assert_eq!(
        sent, expected,
        "{s}: offsets count up from the high watermark"
    );
    assert_eq!(
        consumer
            .high_watermark(Stream::Insert, 1)
            .await
            .expect("high watermark"),
        start_insert + 5,
        "{s}"
    );
    consumer
        .assign(1, start_insert, start_delete)
        .expect("assign");
    let mut inserts = Vec::new();
    let mut deletes = Vec::new();
    while inserts.len() < 5 || deletes.is_empty() {
        let (stream, channel, offset, payload) = next(&consumer, &s).await;
        assert_eq!(channel, 1, "{s}");
        match stream {
            Stream::Insert => inserts.push((offset, payload)),
            Stream::Delete => deletes.push((offset, payload)),
        }
    }
    for (i, (offset, payload)) in inserts.iter().enumerate() {
        assert_eq!(*offset, expected[i], "{s}: in order");
        assert_eq!(payload, &vec![u8::try_from(i).unwrap_or(0); 16], "{s}");
    }
    assert_eq!(deletes, [(start_delete, b"delete".to_vec())], "{s}");
    producer
        .dead_letter("conformance: a bad message", b"junk")
        .await
        .expect("dead letter");
}

async fn a_channel_moves_from_its_checkpoint(log: Arc<dyn Log>) {
    let s = log.describe();
    log.ensure(1).await.expect("create");
    let producer = log.producer().expect("producer");
    let first = log.consumer("owner-a", 1 << 20).expect("consumer");
    let base = first
        .high_watermark(Stream::Insert, 0)
        .await
        .expect("high watermark");
    let delete_base = first
        .high_watermark(Stream::Delete, 0)
        .await
        .expect("high watermark");
    for i in 0..4u8 {
        producer
            .send(Stream::Insert, 0, Bytes::copy_from_slice(&[i]))
            .await
            .expect("send");
    }
    first.assign(0, base, delete_base).expect("assign");
    for i in 0..2 {
        let (_, _, offset, _) = next(&first, &s).await;
        assert_eq!(offset, base + i, "{s}");
    }
    // A checkpoint at base + 2; the channel moves; the new owner resumes there.
    first.checkpointed(0, base + 2, delete_base);
    first.unassign(0).expect("unassign");
    let second = log.consumer("owner-b", 1 << 20).expect("consumer");
    second.assign(0, base + 2, delete_base).expect("assign");
    let mut got = Vec::new();
    for _ in 0..2 {
        let (_, _, offset, payload) = next(&second, &s).await;
        got.push((offset, payload));
    }
    assert_eq!(got, [(base + 2, vec![2]), (base + 3, vec![3])], "{s}");
    // The first owner can take it back after its unassign.
    first
        .assign(0, base + 3, delete_base)
        .expect("assign again");
    let (_, _, offset, _) = next(&first, &s).await;
    assert_eq!(offset, base + 3, "{s}");
}

async fn oversized_messages_are_refused(log: Arc<dyn Log>) {
    let s = log.describe();
    log.ensure(1).await.expect("create");
    let producer = log.producer().expect("producer");
    let big = vec![0u8; MAX_MESSAGE_BYTES + 1];
    let sent = producer
        .send(Stream::Insert, 0, Bytes::copy_from_slice(&big))
        .await;
    assert!(
        matches!(sent, Err(StreamError::TooLarge { .. })),
        "{s}: {:?}",
        sent.map_err(|e| e.to_string())
    );
    producer
        .send(Stream::Insert, 0, Bytes::from_static(b"small"))
        .await
        .expect("the log still takes messages");
}
