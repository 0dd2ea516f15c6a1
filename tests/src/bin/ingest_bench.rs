//! Ingest benchmark: the write path proxy -> Kafka -> data node -> Parquet, each
//! stage next to a raw reference measured in the same run.
//!
//! Phases, one after the other (never two at once; the machine's cores are shared):
//! 0. `warm-memory`: every free page of the machine is written once
//!    ([`milvus_like_tests::measure::warm_memory`]).
//! 1. `flush-write` (in process, no cluster): `SegmentStore::write_insert` of one
//!    `InsertLog` of 128-d rows to a local directory (Parquet, made durable: the
//!    file and its directories fsynced, as every flush does) against a plain
//!    sequential `std::fs::write` of the same raw bytes (pk + ts + vector) followed
//!    by an fsync of the file and its directory. The two alternate, `sync(1)`
//!    before each run so that none pays for the previous one's writeback. Also
//!    timed: encoding the same log into `std::io::sink()`, without I/O.
//! 2. `broker-warmup`: etcd, Kafka, root and data coordinators (3 channels) and a
//!    proxy, no data node yet; the raw producer (below) sends the backlog's bytes to
//!    a topic of its own `--warmup-rounds` times, so that the broker's JIT and heap
//!    have settled before either side is measured. Then `backlog`: clients insert
//!    `--backlog-rows` rows through the proxy, so the insert topic holds a backlog;
//!    the CPU time of the broker, the proxy and the clients, and the proxy's
//!    request times, are read.
//! 3. `raw-consume`: one `KafkaConsumer` (the data node's librdkafka configuration)
//!    assigned to the 3 partitions from offset 0 reads every message up to the high
//!    watermarks and reads each payload once (a checksum), decoding nothing. Then
//!    `raw-consume-write`: the same, appending every payload to one file, fsynced at
//!    the end: the least any consumer that keeps what it reads must do.
//!    Then `raw-produce`: the node's Kafka producer alone (the proxy's settings)
//!    sends as many messages as the backlog holds, of its average message size
//!    (random bytes), `--raw-in-flight` (12) at a time, to topics with the same
//!    partitions: the proxy's reference, with the CPU time of it and the broker.
//! 4. `datanode-consume`: a data node is started; it gets the 3 channels and consumes,
//!    buffers and flushes the same backlog. Timed from its first row consumed (it
//!    owns its channels then, as the raw consumer from `assign`) until every
//!    backlog row is flushed and committed (a `Flush(wait)` is sent as soon as all
//!    rows are consumed, for the tail under the thresholds); also from process start.
//! 5. `e2e`: with the data node running, `--clients` tasks insert `--rows` rows
//!    in batches of `--batch` through the proxy; rows/s from first send to last ack,
//!    then `Flush(wait)`; the committed row count (ListSegments) must equal every
//!    acknowledged row, backlog included.
//!
//!    Then `flush-latency`: `--flush-rounds` rounds of one insert of
//!    `--flush-round-rows` rows followed by `Flush(wait)`, timed from the insert's
//!    acknowledgement until the flush returns; every acknowledged row must be
//!    committed when it returns. p50, p99 (the largest below 100 rounds) and max.
//!
//! 6. `standalone-e2e`: the cluster is stopped; `milvus-like standalone` (every role
//!    in one process, the embedded log, local segments) on a fresh data directory,
//!    with the data node's flags, gets the same e2e load (`--rows`, `--clients`,
//!    `--batch`), then `Flush(wait)`; the committed rows must equal the acknowledged
//!    ones. Its peak RSS (the whole process) is sampled as the data node's. Then
//!    the same `flush-latency` rounds against it. Then `raw-local-append`: the
//!    embedded log alone (`LocalLog` in a fresh file) takes as many bytes as the
//!    standalone proxy produced, in messages of the backlog's average size,
//!    `--raw-in-flight` at a time: the standalone's reference.
//!
//! `sync(1)` runs before every phase too: the backlog's Kafka log writes must not
//! slow the data node's flushes down.
//!
//! The data node's RSS is sampled every 100 ms from its start to the end (and its
//! VmHWM read at the end) for the peak-RSS figure.
//!
//! ```text
//! cargo build --release --bins
//! target/release/ingest_bench            # defaults: see --help
//! ```
//!
//! `tests/bench/ingest.sh` builds and runs it and keeps the output.

#![forbid(unsafe_code)]

use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use milvus_like_api::proto;
use milvus_like_api::proto::data_coord_client::DataCoordClient;
use milvus_like_api::proto::proxy_client::ProxyClient;
use milvus_like_api::schema::CollectionSchema;
use milvus_like_node::columns::{Column, RowBatch};
use milvus_like_node::msgstream::{KafkaConfig, KafkaConsumer, LogConsumer as _, Stream};
use milvus_like_node::storage::{InsertLog, SegmentStore, StorageConfig};
use milvus_like_tests::load::{self, DIM, InsertLoad, Inserted, ROW_BYTES, vectors};
use milvus_like_tests::measure::{
    CpuUse, RssSampler, cpu_seconds, fsync, io_written, median, number_flag, run_until_signal,
    settle, warm_memory,
};
use milvus_like_tests::{
    CHANNELS, Cluster, ClusterBuilder, StandaloneProcess, TestDir, committed_rows,
    create_collection, mean_ms, scrape, test_schema, wait_for,
};
use rdkafka::Message as _;
use tonic::transport::Channel;

const TOPIC_PREFIX: &str = "bench";
const MIB: f64 = 1024.0 * 1024.0;

const USAGE: &str = "\
usage: ingest_bench [--rows 2000000] [--backlog-rows 1000000] [--clients 4]
                    [--batch 10000] [--memory-mib 256] [--flush-rows 10000000]
                    [--flush-mib 1024] [--flush-age 600s] [--write-rows 200000]
                    [--write-repeat 5] [--flush-rounds 20]
                    [--flush-round-rows 10000] [--raw-in-flight 12]
                    [--warmup-rounds 4] [--skip-cluster]

  --rows          rows inserted in the end-to-end phase (data node running)
  --backlog-rows  rows inserted before the data node starts (consume phases)
  --clients       concurrent insert tasks, sharing one gRPC connection
  --batch         rows per Insert request
  --memory-mib    data node --memory-mib (buffer limit; peak RSS target is
                  1.1 x this + 64 MiB)
  --flush-rows, --flush-mib, --flush-age
                  data node flush thresholds (high by default: memory governs)
  --write-rows    rows of the in-process flush-write phase
  --write-repeat  runs of each flush-write side, alternating (medians reported)
  --flush-rounds, --flush-round-rows
                  rounds of one insert then Flush(wait), timed (distributed and
                  standalone)
  --raw-in-flight messages the raw producer and the raw embedded-log append
                  keep in flight (default 12: 4 clients x 3 channels)
  --warmup-rounds times the raw producer sends the backlog's bytes to a topic of
                  their own before the backlog, to warm the broker up (its CPU
                  per round falls for 3-4 rounds)
  --skip-cluster  only the in-process flush-write phase

Prints `summary:` lines and markdown tables on stdout, progress on stderr. Set
MILVUS_LIKE_BIN to choose the node binary (default: milvus-like next to this
executable).";

#[derive(Debug, Clone)]
struct Options {
    rows: u64,
    backlog_rows: u64,
    clients: usize,
    /// Messages the raw producers keep in flight.
    raw_in_flight: usize,
    batch: usize,
    memory_mib: u64,
    flush_rows: u64,
    flush_mib: u64,
    flush_age: String,
    write_rows: usize,
    write_repeat: usize,
    flush_rounds: usize,
    flush_round_rows: u64,
    /// Times the raw producer sends the backlog's bytes to warm the broker up.
    warmup_rounds: usize,
    skip_cluster: bool,
}

impl Options {
    fn parse(mut args: impl Iterator<Item = String>) -> anyhow::Result<Self> {
        let mut o = Self {
            rows: 2_000_000,
            backlog_rows: 1_000_000,
            clients: 4,
            raw_in_flight: RAW_PRODUCE_IN_FLIGHT,
            batch: 10_000,
            memory_mib: 256,
            flush_rows: 10_000_000,
            flush_mib: 1024,
            flush_age: "600s".into(),
            write_rows: 200_000,
            write_repeat: 5,
            flush_rounds: 20,
            flush_round_rows: 10_000,
            warmup_rounds: 4,
            skip_cluster: false,
        };
        while let Some(flag) = args.next() {
            match flag.as_str() {
                "-h" | "--help" => {
                    println!("{USAGE}");
                    std::process::exit(0);
                }
                "--skip-cluster" => {
                    o.skip_cluster = true;
                    continue;
                }
                _ => {}
            }
            let value = args
                .next()
                .with_context(|| format!("{flag} needs a value\n{USAGE}"))?;
            let num = || number_flag(&flag, &value);
            match flag.as_str() {
                "--rows" => o.rows = num()?,
                "--backlog-rows" => o.backlog_rows = num()?,
                "--clients" => o.clients = usize::try_from(num()?)?,
                "--batch" => o.batch = usize::try_from(num()?)?,
                "--raw-in-flight" => o.raw_in_flight = usize::try_from(num()?)?.max(1),
                "--memory-mib" => o.memory_mib = num()?,
                "--flush-rows" => o.flush_rows = num()?,
                "--flush-mib" => o.flush_mib = num()?,
                "--flush-age" => o.flush_age = value,
                "--write-rows" => o.write_rows = usize::try_from(num()?)?,
                "--write-repeat" => o.write_repeat = usize::try_from(num()?)?,
                "--flush-rounds" => o.flush_rounds = usize::try_from(num()?)?,
                "--flush-round-rows" => o.flush_round_rows = num()?,
                "--warmup-rounds" => o.warmup_rounds = usize::try_from(num()?)?,
                _ => bail!("unknown flag {flag}\n{USAGE}"),
            }
        }
        ensure!(
            o.clients > 0 && o.batch > 0,
            "--clients and --batch must be positive"
        );
        ensure!(
            o.write_rows > 0 && o.write_repeat > 0,
            "--write-* must be positive"
        );
        ensure!(
            o.flush_rounds > 0 && o.flush_round_rows > 0,
            "--flush-rounds and --flush-round-rows must be positive"
        );
        Ok(o)
    }
}

fn schema() -> anyhow::Result<CollectionSchema> {
    CollectionSchema::try_from(test_schema("bench", DIM as u32)).context("bench schema")
}

fn mib_per_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / MIB / d.as_secs_f64()
}

// ---------------------------------------------------------------------------
// Phase 1: flush write vs raw sequential write.

#[derive(Debug)]
struct WriteResult {
    rows: usize,
    input_bytes: u64,
    parquet_bytes: u64,
    /// Medians.
    parquet: Duration,
    raw: Duration,
    /// Encoding alone, into `std::io::sink()` (no I/O).
    encode_only: Duration,
}

async fn flush_write(dir: &Path, opts: &Options) -> anyhow::Result<WriteResult> {
    let schema = schema()?;
    let n = opts.write_rows;
    let pks: Vec<i64> = (0..n as i64).collect();
    let values = vectors(n, 7);
    let timestamps: Vec<u64> = (0..n as u64).map(|i| (1 << 40) + i).collect();
    // The raw side writes the same bytes the Parquet file holds before encoding.
    let mut raw_bytes = Vec::with_capacity(n * (16 + 4 * DIM));
    for pk in &pks {
        raw_bytes.extend_from_slice(&pk.to_le_bytes());
    }
    for ts in &timestamps {
        raw_bytes.extend_from_slice(&ts.to_le_bytes());
    }
    for v in &values {
        raw_bytes.extend_from_slice(&v.to_le_bytes());
    }
    let batch = RowBatch {
        columns: vec![
            Column::Long(pks),
            Column::Vector {
                dim: DIM as u32,
                values: values.into(),
            },
        ],
        num_rows: n,
    };
    let root = dir.join("flush-write");
    std::fs::create_dir_all(&root)?;
    let store = SegmentStore::open(&StorageConfig::Local { root: root.clone() })?;
    let (mut parquet, mut raw, mut encode_only) = (Vec::new(), Vec::new(), Vec::new());
    let mut parquet_bytes = 0;
    for i in 0..opts.write_repeat {
        let rel = SegmentStore::insert_log_path(1, 2, 3, i as i64);
        // A data node's buffer is already an `InsertLog` when it flushes: build it
        // (a copy of the rows, moved into Arrow arrays) outside the timed part.
        let mut log = InsertLog::new(&schema);
        log.push(batch.clone(), timestamps.clone())
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        settle()?;
        let t = Instant::now();
        // Encodes, writes, and fsyncs the file and its directories.
        parquet_bytes = store
            .write_insert(&rel, &log)
            .await
            .context("write_insert")?;
        parquet.push(t.elapsed());
        let t = Instant::now();
        log.encode(std::io::sink())
            .map_err(|e| anyhow::anyhow!("encode: {e}"))?;
        encode_only.push(t.elapsed());
        drop(log);
        let raw_path = root.join(format!("raw-{i}.bin"));
        settle()?;
        let t = Instant::now();
        std::fs::write(&raw_path, &raw_bytes).context("raw write")?;
        fsync(&raw_path)?;
        fsync(&root)?;
        raw.push(t.elapsed());
    }
    Ok(WriteResult {
        rows: n,
        input_bytes: raw_bytes.len() as u64,
        parquet_bytes,
        parquet: median(parquet),
        raw: median(raw),
        encode_only: median(encode_only),
    })
}

// ---------------------------------------------------------------------------
// The cluster.

/// etcd, Kafka, root and data coordinators and a proxy; the data node comes later
/// ([`Cluster::add_datanode`]), with the flags that `opts` asks for.
async fn start_cluster(opts: &Options) -> anyhow::Result<Cluster> {
    let datanode_args = [
        format!("--memory-mib={}", opts.memory_mib),
        format!("--flush-rows={}", opts.flush_rows),
        format!("--flush-mib={}", opts.flush_mib),
        format!("--flush-age={}", opts.flush_age),
    ];
    let datanode_args: Vec<&str> = datanode_args.iter().map(String::as_str).collect();
    let cluster = ClusterBuilder::new("ingest-bench")
        .meta_root("bench")
        .ttl("10s")
        .kafka()
        .topic_prefix(TOPIC_PREFIX)
        .datanode_args(&datanode_args)
        .proxy()
        .build()
        .await?;
    eprintln!("cluster directory: {}", cluster.dir.path().display());
    Ok(cluster)
}

fn kafka_config(cluster: &Cluster) -> KafkaConfig {
    KafkaConfig {
        brokers: cluster.kafka().bootstrap.clone(),
        topic_prefix: TOPIC_PREFIX.into(),
        replication: 1,
        sasl: None,
    }
}

/// Starts the data node; returns its pid.
fn start_datanode(cluster: &mut Cluster) -> anyhow::Result<u32> {
    cluster
        .add_datanode()?
        .process
        .pid()
        .context("data node pid")
}

/// The data node's rows consumed and rows flushed, once it answers.
async fn datanode_metrics(cluster: &Cluster) -> Option<(u64, u64)> {
    let dn = cluster.datanodes.first()?;
    let text = scrape(dn.ports.http).await;
    Some((
        metric(&text, "datanode_rows_consumed_total")?,
        metric(&text, "datanode_rows_flushed_total")?,
    ))
}

async fn flush(cluster: &Cluster, collection: &str) -> anyhow::Result<()> {
    milvus_like_tests::flush(&cluster.proxy_client(), collection)
        .await
        .with_context(|| {
            format!(
                "flush; datacoord log:\n{}",
                cluster.datacoord().process.log()
            )
        })?;
    Ok(())
}

/// A counter or gauge summed over its label sets, as a whole number.
fn metric(samples: &[milvus_like_tests::Sample], name: &str) -> Option<u64> {
    milvus_like_tests::metric_sum(samples, name).map(|v| v as u64)
}

// ---------------------------------------------------------------------------
// Inserting through the proxy.

/// `opts.clients` tasks insert `rows` rows into `bench` with keys from `first_pk`
/// on, `opts.batch` rows per request ([`load::insert`]).
async fn insert(
    proxy: &Channel,
    schema: &CollectionSchema,
    first_pk: i64,
    rows: u64,
    opts: &Options,
) -> anyhow::Result<Inserted> {
    let load = InsertLoad {
        collections: vec!["bench".into()],
        clients: opts.clients,
        batch: opts.batch,
        first_pk,
        rows,
    };
    load::insert(proxy, schema, &load).await
}

// ---------------------------------------------------------------------------
// The data node's buffer.

/// Samples the data node's own accounting (`datanode_buffered_bytes`) every 100 ms;
/// returns the largest value seen, to set beside its RSS.
fn sample_buffered(http_port: u16, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let mut max = 0;
        while !stop.load(Ordering::Relaxed) {
            let text = scrape(http_port).await;
            if let Some(v) = metric(&text, "datanode_buffered_bytes") {
                max = max.max(v);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        max
    })
}

// ---------------------------------------------------------------------------
// Consume phases.

#[derive(Debug)]
struct RawConsume {
    messages: u64,
    payload_bytes: u64,
    elapsed: Duration,
}

/// Messages the proxy has in flight at most in the backlog phase: 4 clients, each
/// request cut into one message per channel.
const RAW_PRODUCE_IN_FLIGHT: usize = 12;

/// Message size of the broker's warm-up, about the proxy's (4 MiB messages split
/// 10,000-row requests over 3 channels).
const WARMUP_MESSAGE_BYTES: u64 = 1_700_000;

/// The proxy's reference: the node's Kafka producer alone (the proxy's librdkafka
/// settings: idempotent, `acks=all`, no compression, linger 5 ms) sends what the backlog
/// holds again ([`produce_raw`]) to topics of the same partitions under another
/// prefix (the insert topic must keep only the proxy's messages for the consume
/// phases).
async fn raw_produce(
    cluster: &Cluster,
    suffix: &str,
    messages: u64,
    payload_bytes: u64,
    in_flight: usize,
    cpu_of: &[(&'static str, Option<u32>)],
) -> anyhow::Result<(Duration, (String, f64))> {
    let log = milvus_like_node::msgstream::KafkaLog::new(KafkaConfig {
        topic_prefix: format!("{TOPIC_PREFIX}-{suffix}"),
        ..kafka_config(cluster)
    });
    produce_raw(&log, messages, payload_bytes, in_flight, cpu_of).await
}

/// Sends `messages` messages of `payload_bytes / messages` random bytes each to
/// `log`'s insert stream with its own producer, round robin over the channels,
/// `in_flight` at a time. Timed from the first send to the last
/// acknowledgement; the CPU time of the `cpu_of` processes over the same span.
async fn produce_raw(
    log: &dyn milvus_like_node::msgstream::Log,
    messages: u64,
    payload_bytes: u64,
    in_flight: usize,
    cpu_of: &[(&'static str, Option<u32>)],
) -> anyhow::Result<(Duration, (String, f64))> {
    use futures::StreamExt as _;
    log.ensure(CHANNELS).await?;
    let producer = log.producer()?;
    let size = usize::try_from(payload_bytes / messages.max(1))?;
    // Sixteen distinct payloads, reused: random floats' bytes do not compress.
    let payloads: Vec<bytes::Bytes> = (0..16u64)
        .map(|seed| {
            vectors(size / (4 * DIM) + 1, seed + 100)
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .take(size)
                .collect::<Vec<u8>>()
                .into()
        })
        .collect();
    let cpu = CpuUse::start(cpu_of);
    let t = Instant::now();
    let mut sends = futures::stream::iter(0..messages)
        .map(|i| {
            let payload = payloads[(i % 16) as usize].clone();
            let channel = u32::try_from(i % u64::from(CHANNELS)).unwrap_or(0);
            producer.send(Stream::Insert, channel, payload)
        })
        .buffer_unordered(in_flight);
    while let Some(sent) = sends.next().await {
        sent.context("raw produce")?;
    }
    let elapsed = t.elapsed();
    Ok((elapsed, cpu.seconds()))
}

/// Reads every message of the insert topic's partitions from offset 0 to the high
/// watermark with the data node's consumer configuration, and every payload byte
/// (a sum of its 8-byte words). With `sink`, also appends each payload to that
/// file and fsyncs it at the end. Timed from `assign` to the last message (and the
/// fsync).
async fn raw_consume(
    cluster: &Cluster,
    opts: &Options,
    sink: Option<&Path>,
) -> anyhow::Result<RawConsume> {
    let config = kafka_config(cluster);
    // Same prefetch bound as the data node: memory limit / 16.
    let queued_kbytes = usize::try_from(opts.memory_mib * 1024 / 16)?;
    let group = format!("ingest-bench-raw-{}", sink.is_some());
    let consumer = KafkaConsumer::new(&config, &group, queued_kbytes)?;
    let mut total = 0u64;
    for ch in 0..CHANNELS {
        total += u64::try_from(consumer.high_watermark_blocking(Stream::Insert, ch)?)?;
    }
    let mut file = sink
        .map(std::fs::File::create)
        .transpose()
        .context("create the raw consumer's file")?;
    let t = Instant::now();
    for ch in 0..CHANNELS {
        consumer.assign(ch, 0, 0)?;
    }
    let (mut messages, mut payload_bytes, mut checksum) = (0u64, 0u64, 0u64);
    while messages < total {
        let m = tokio::time::timeout(Duration::from_secs(60), consumer.inner().recv())
            .await
            .context("no message for 60 s")?
            .context("raw consumer")?;
        let payload = m.payload().unwrap_or_default();
        checksum = checksum.wrapping_add(word_sum(payload));
        if let Some(f) = file.as_mut() {
            f.write_all(payload).context("raw consumer write")?;
        }
        payload_bytes += payload.len() as u64;
        messages += 1;
    }
    if let Some(f) = file {
        f.sync_all().context("raw consumer fsync")?;
    }
    let elapsed = t.elapsed();
    eprintln!("  payload checksum {checksum:#x}");
    Ok(RawConsume {
        messages,
        payload_bytes,
        elapsed,
    })
}

/// The wrapping sum of the little-endian 8-byte words of `bytes` (and its tail).
fn word_sum(bytes: &[u8]) -> u64 {
    let (words, tail) = bytes.as_chunks::<8>();
    let sum = words
        .iter()
        .fold(0u64, |acc, w| acc.wrapping_add(u64::from_le_bytes(*w)));
    tail.iter()
        .fold(sum, |acc, b| acc.wrapping_add(u64::from(*b)))
}

#[derive(Debug)]
struct NodeConsume {
    /// Process start to first row consumed.
    startup: Duration,
    /// Process start to every backlog row consumed.
    consumed: Duration,
    /// Process start to every backlog row flushed and committed.
    flushed: Duration,
}

async fn datanode_consume(cluster: &Cluster, backlog: u64) -> anyhow::Result<NodeConsume> {
    let t = Instant::now();
    let mut startup = None;
    let deadline = t + Duration::from_secs(600);
    let consumed = loop {
        if let Some((c, _)) = datanode_metrics(cluster).await {
            if c > 0 && startup.is_none() {
                startup = Some(t.elapsed());
            }
            if c >= backlog {
                break t.elapsed();
            }
        }
        ensure!(
            Instant::now() < deadline,
            "the data node did not consume the backlog"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    flush(cluster, "bench").await?;
    loop {
        if let Some((_, f)) = datanode_metrics(cluster).await
            && f >= backlog
        {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "the data node did not flush the backlog"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(NodeConsume {
        startup: startup.unwrap_or_default(),
        consumed,
        flushed: t.elapsed(),
    })
}

// ---------------------------------------------------------------------------

fn mark(met: bool) -> &'static str {
    if met { "**met**" } else { "**not met**" }
}

async fn bench(opts: Options) -> anyhow::Result<()> {
    eprintln!("[0/6] touching the machine's free memory once (see measure::warm_memory)");
    let t = Instant::now();
    let touched = warm_memory()?;
    println!(
        "summary: phase=warm-memory bytes={touched} secs={:.1}",
        t.elapsed().as_secs_f64()
    );
    let scratch = TestDir::new("ingest-bench-write");
    eprintln!(
        "[1/6] flush-write: {} rows x {} runs per variant",
        opts.write_rows, opts.write_repeat
    );
    let w = flush_write(scratch.path(), &opts).await?;
    drop(scratch);
    let ratio = w.raw.as_secs_f64() / w.parquet.as_secs_f64();
    println!(
        "summary: phase=flush-write rows={} runs={} input_bytes={} parquet_bytes={} parquet_ms={:.1} raw_ms={:.1} encode_only_ms={:.1} parquet_mib_s={:.1} raw_mib_s={:.1} encode_only_mib_s={:.1} ratio={:.2}",
        w.rows,
        opts.write_repeat,
        w.input_bytes,
        w.parquet_bytes,
        w.parquet.as_secs_f64() * 1e3,
        w.raw.as_secs_f64() * 1e3,
        w.encode_only.as_secs_f64() * 1e3,
        mib_per_s(w.input_bytes, w.parquet),
        mib_per_s(w.input_bytes, w.raw),
        mib_per_s(w.input_bytes, w.encode_only),
        ratio,
    );
    if opts.skip_cluster {
        return Ok(());
    }

    let mut cluster = start_cluster(&opts).await?;
    let (info, schema) = create_collection(&cluster.proxy_client(), "bench", DIM as u32).await?;

    // The broker's JIT and heap settle under load: without this the backlog phase
    // met a cold broker and the raw producer, later, a warm one. Its CPU for the
    // same bytes fell round after round (2.3, 1.7, 1.2 s) for three or four rounds.
    let warmup_bytes = opts.backlog_rows * ROW_BYTES;
    let warmup_messages = warmup_bytes.div_ceil(WARMUP_MESSAGE_BYTES);
    for round in 1..=opts.warmup_rounds {
        eprintln!(
            "[2/6] warming the broker up ({round}/{}): {warmup_messages} messages, {:.0} MiB, to a topic of their own",
            opts.warmup_rounds,
            warmup_bytes as f64 / MIB
        );
        let (warmup, (_, broker_cpu)) = raw_produce(
            &cluster,
            "warmup",
            warmup_messages,
            warmup_bytes,
            opts.raw_in_flight,
            &[("broker", cluster.kafka().pid())],
        )
        .await?;
        println!(
            "summary: phase=broker-warmup round={round} messages={warmup_messages} payload_bytes={warmup_bytes} secs={:.3} mib_per_s={:.1} broker_cpu_s={broker_cpu:.2}",
            warmup.as_secs_f64(),
            mib_per_s(warmup_bytes, warmup)
        );
    }
    eprintln!(
        "[2/6] backlog: {} rows through the proxy, no data node",
        opts.backlog_rows
    );
    settle()?;
    let broker = cluster.kafka().pid();
    let cpu = CpuUse::start(&[
        ("broker", broker),
        ("proxy", cluster.proxy().process.pid()),
        ("clients", Some(std::process::id())),
    ]);
    let backlog = insert(
        &cluster.proxy_channel(),
        &schema,
        0,
        opts.backlog_rows,
        &opts,
    )
    .await?;
    let (backlog_cpu, backlog_cpu_total) = cpu.seconds();
    // Where a request's time goes: in the proxy (headers in to response out; the
    // backlog's are its first inserts), against what a client waits per request.
    let proxy_metrics = scrape(cluster.proxy().ports.http).await;
    let proxy_ms = mean_ms(&proxy_metrics, "proxy_rpc_seconds", &[("method", "Insert")]);
    let produce_ms = mean_ms(&proxy_metrics, "proxy_produce_seconds", &[]);
    let requests = backlog.rows.div_ceil(opts.batch as u64);
    let client_ms = backlog.elapsed.as_secs_f64() * 1e3 * opts.clients as f64 / requests as f64;
    println!(
        "summary: phase=backlog-insert rows={} secs={:.3} rows_per_s={:.0} mib_per_s={:.1} {backlog_cpu} cpu_s={backlog_cpu_total:.2} client_request_ms={client_ms:.1} proxy_insert_ms={proxy_ms:.1} proxy_produce_ms={produce_ms:.1}",
        backlog.rows,
        backlog.elapsed.as_secs_f64(),
        backlog.rows_per_s(),
        backlog.mib_per_s()
    );

    eprintln!("[3/6] raw consumer over the backlog, then raw consumer + write");
    let mut raws = Vec::new();
    for (phase, sink) in [
        ("raw-consume", None),
        (
            "raw-consume-write",
            Some(cluster.dir.path().join("raw-consumer.bin")),
        ),
    ] {
        settle()?;
        // The consumer runs in this process: its CPU time is ours.
        let cpu = CpuUse::start(&[("consumer", Some(std::process::id()))]);
        let io = io_written(std::process::id()).unwrap_or_default();
        let raw = raw_consume(&cluster, &opts, sink.as_deref()).await?;
        let (_, cpu_s) = cpu.seconds();
        let io = io_written(std::process::id()).unwrap_or_default().since(io);
        let rate = opts.backlog_rows as f64 / raw.elapsed.as_secs_f64();
        println!(
            "summary: phase={phase} messages={} payload_bytes={} rows={} secs={:.3} rows_per_s={:.0} mib_per_s={:.1} consumer_cpu_s={cpu_s:.2} cpu_ms_per_mib={:.2} wchar={} write_bytes={} write_calls={}",
            raw.messages,
            raw.payload_bytes,
            opts.backlog_rows,
            raw.elapsed.as_secs_f64(),
            rate,
            mib_per_s(opts.backlog_rows * ROW_BYTES, raw.elapsed),
            cpu_s * 1e3 / (raw.payload_bytes as f64 / MIB),
            io.wchar,
            io.write_bytes,
            io.syscw,
        );
        if let Some(path) = sink {
            std::fs::remove_file(path)?;
        }
        raws.push((raw, rate));
    }
    let [(raw, raw_rate), (raw_write, raw_write_rate)] =
        <[(RawConsume, f64); 2]>::try_from(raws).map_err(|_| anyhow::anyhow!("two runs"))?;

    eprintln!("[3/6] raw producer: the backlog's messages again, the node's producer alone");
    settle()?;
    let (raw_produced, (raw_cpu, raw_cpu_total)) = raw_produce(
        &cluster,
        "raw",
        raw.messages,
        raw.payload_bytes,
        opts.raw_in_flight,
        &[("broker", broker), ("producer", Some(std::process::id()))],
    )
    .await?;
    let proxy_mib_s = mib_per_s(raw.payload_bytes, backlog.elapsed);
    let raw_produce_mib_s = mib_per_s(raw.payload_bytes, raw_produced);
    // CPU per MiB of payload on each side: on a machine whose cores are all busy,
    // the ratio of the two bounds the proxy's ratio.
    let payload_mib = raw.payload_bytes as f64 / MIB;
    println!(
        "summary: phase=raw-produce messages={} payload_bytes={} secs={:.3} mib_per_s={:.1} proxy_mib_per_s={:.1} proxy_ratio={:.2} {raw_cpu} cpu_s={raw_cpu_total:.2} cpu_ms_per_mib={:.2} proxy_cpu_ms_per_mib={:.2} cpu_ratio={:.2}",
        raw.messages,
        raw.payload_bytes,
        raw_produced.as_secs_f64(),
        raw_produce_mib_s,
        proxy_mib_s,
        proxy_mib_s / raw_produce_mib_s,
        raw_cpu_total * 1e3 / payload_mib,
        backlog_cpu_total * 1e3 / payload_mib,
        raw_cpu_total / backlog_cpu_total.max(f64::MIN_POSITIVE),
    );

    eprintln!("[4/6] data node: consume + buffer + flush the backlog");
    settle()?;
    let pid = start_datanode(&mut cluster)?;
    let rss = RssSampler::start(pid);
    let stop_buffered = Arc::new(AtomicBool::new(false));
    let buffered = sample_buffered(
        cluster.datanodes.first().context("data node")?.ports.http,
        stop_buffered.clone(),
    );
    let node = datanode_consume(&cluster, opts.backlog_rows).await?;
    // Since its start: the start-up's share is small (a few hundredths of a second).
    let node_cpu = cpu_seconds(pid).unwrap_or(f64::NAN);
    // What it wrote (files and sockets) against the payload it read.
    let node_io = io_written(pid).unwrap_or_default();
    let node_time = node.flushed - node.startup;
    let node_rate = opts.backlog_rows as f64 / node_time.as_secs_f64();
    let node_rate_cold = opts.backlog_rows as f64 / node.flushed.as_secs_f64();
    println!(
        "summary: phase=datanode-consume rows={} startup_secs={:.3} consumed_secs={:.3} flushed_secs={:.3} rows_per_s={:.0} mib_per_s={:.1} rows_per_s_from_process_start={:.0} datanode_cpu_s={node_cpu:.2} cpu_ms_per_mib={:.2} wchar={} write_bytes={} write_calls={}",
        opts.backlog_rows,
        node.startup.as_secs_f64(),
        node.consumed.as_secs_f64(),
        node.flushed.as_secs_f64(),
        node_rate,
        mib_per_s(opts.backlog_rows * ROW_BYTES, node_time),
        node_rate_cold,
        node_cpu * 1e3 / (raw.payload_bytes as f64 / MIB),
        node_io.wchar,
        node_io.write_bytes,
        node_io.syscw,
    );

    eprintln!(
        "[5/6] e2e: {} rows, {} clients, {} rows per request",
        opts.rows, opts.clients, opts.batch
    );
    settle()?;
    let before = datanode_metrics(&cluster).await.unwrap_or_default();
    let e2e = insert(&cluster.proxy_channel(), &schema, 1 << 40, opts.rows, &opts).await?;
    let after = datanode_metrics(&cluster).await.unwrap_or_default();
    let t = Instant::now();
    flush(&cluster, "bench").await?;
    let want = opts.backlog_rows + opts.rows;
    let committed = wait_for("every row committed", Duration::from_secs(120), || async {
        match committed_rows(&cluster.datacoord_client(), info.id).await {
            Ok(n) if n >= want => Some(n),
            _ => None,
        }
    })
    .await
    .ok();
    let flush_secs = t.elapsed().as_secs_f64();
    let (rss_max_kib, hwm_kib) = rss.finish();
    stop_buffered.store(true, Ordering::Relaxed);
    let buffered_max = buffered.await.unwrap_or(0);
    let committed = match committed {
        Some(n) => n,
        None => committed_rows(&cluster.datacoord_client(), info.id).await?,
    };
    let consumed_in_window = after.0.saturating_sub(before.0);
    println!(
        "summary: phase=e2e rows={} clients={} batch={} secs={:.3} rows_per_s={:.0} mib_per_s={:.1} datanode_consumed_during={} flush_wait_secs={:.3} committed_rows={} expected_rows={}",
        e2e.rows,
        opts.clients,
        opts.batch,
        e2e.elapsed.as_secs_f64(),
        e2e.rows_per_s(),
        e2e.mib_per_s(),
        consumed_in_window,
        flush_secs,
        committed,
        want
    );
    // Issue 14's limit (issue 4's was 1.5 x + 64).
    let rss_limit_mib = 1.1 * opts.memory_mib as f64 + 64.0;
    println!(
        "summary: phase=rss memory_mib={} max_vmrss_mib={:.1} vmhwm_mib={:.1} limit_mib={:.1} max_buffered_bytes_mib={:.1}",
        opts.memory_mib,
        rss_max_kib as f64 / 1024.0,
        hwm_kib as f64 / 1024.0,
        rss_limit_mib,
        buffered_max as f64 / MIB
    );
    ensure!(
        committed == want,
        "committed {committed} rows, acknowledged {want}: lost or duplicated rows"
    );
    eprintln!(
        "[5/6] flush latency: {} rounds of {} rows then Flush(wait)",
        opts.flush_rounds, opts.flush_round_rows
    );
    let flushes = flush_latency(
        &cluster.proxy_channel(),
        &cluster.datacoord_client(),
        &schema,
        info.id,
        1 << 41,
        committed,
        &opts,
    )
    .await?;
    println!("{}", flushes.summary("flush-latency"));

    let cluster_logs = cluster.dir.path().display().to_string();
    drop(cluster);

    eprintln!(
        "[6/6] standalone-e2e: {} rows, {} clients, {} rows per request",
        opts.rows, opts.clients, opts.batch
    );
    let sa = standalone_e2e(&opts).await?;
    let sa_peak_mib = sa.rss_max_kib.max(sa.hwm_kib) as f64 / 1024.0;
    println!(
        "summary: phase=standalone-e2e rows={} clients={} batch={} secs={:.3} rows_per_s={:.0} mib_per_s={:.1} flush_wait_secs={:.3} committed_rows={} max_vmrss_mib={:.1} vmhwm_mib={:.1}",
        sa.insert.rows,
        opts.clients,
        opts.batch,
        sa.insert.elapsed.as_secs_f64(),
        sa.insert.rows_per_s(),
        sa.insert.mib_per_s(),
        sa.flush_secs,
        sa.committed,
        sa.rss_max_kib as f64 / 1024.0,
        sa.hwm_kib as f64 / 1024.0,
    );
    println!("{}", sa.flushes.summary("standalone-flush-latency"));
    // The standalone proxy's reference: the embedded log alone, as many messages
    // of the distributed backlog's average size as the proxy's bytes make.
    settle()?;
    let local_dir = TestDir::new("ingest-bench-local-log");
    let local = milvus_like_node::msgstream::LocalLog::open(&local_dir.path().join("log.redb"))?;
    let message_bytes = (raw.payload_bytes / raw.messages.max(1)).max(1);
    let local_messages = sa.produced_bytes.div_ceil(message_bytes);
    let (local_time, _) = produce_raw(
        &local,
        local_messages,
        local_messages * message_bytes,
        opts.raw_in_flight,
        &[],
    )
    .await?;
    drop(local);
    drop(local_dir);
    let sa_mib_s = mib_per_s(sa.produced_bytes, sa.insert.elapsed);
    let local_mib_s = mib_per_s(local_messages * message_bytes, local_time);
    println!(
        "summary: phase=raw-local-append messages={local_messages} payload_bytes={} secs={:.3} mib_per_s={local_mib_s:.1} standalone_mib_per_s={sa_mib_s:.1} standalone_ratio={:.2}",
        local_messages * message_bytes,
        local_time.as_secs_f64(),
        sa_mib_s / local_mib_s
    );

    let peak_mib = rss_max_kib.max(hwm_kib) as f64 / 1024.0;
    let consume_ratio = node_rate / raw_rate;
    println!();
    println!("| measurement | ours | reference | ratio | target | result |");
    println!("|---|---:|---:|---:|---|---|");
    println!(
        "| end-to-end insert, {} clients x {} rows/request | {:.0} rows/s ({:.1} MiB/s) | Milvus published ~35,000 rows/s (1 client, 8 cores) | {:.2}x | ≥ 100,000 rows/s | {} |",
        opts.clients,
        opts.batch,
        e2e.rows_per_s(),
        e2e.mib_per_s(),
        e2e.rows_per_s() / 35_000.0,
        mark(e2e.rows_per_s() >= 100_000.0)
    );
    println!(
        "| proxy -> Kafka, no data node ({} clients x {} rows/request), payload bytes | {:.1} MiB/s ({:.0} rows/s) | the node's producer alone, as many messages of the same size, {} in flight: {:.1} MiB/s | {:.2}x | ≥ 0.8x | {} |",
        opts.clients,
        opts.batch,
        proxy_mib_s,
        backlog.rows_per_s(),
        opts.raw_in_flight,
        raw_produce_mib_s,
        proxy_mib_s / raw_produce_mib_s,
        mark(proxy_mib_s / raw_produce_mib_s >= 0.8)
    );
    println!(
        "| data node consume + decode + buffer + durable flush of a {}-row backlog (from its first row) | {:.0} rows/s ({:.1} MiB/s) | raw LogConsumer + append to a file + fsync: {:.0} rows/s ({:.1} MiB/s) | {:.2}x | ≥ 0.8x | {} |",
        opts.backlog_rows,
        node_rate,
        mib_per_s(opts.backlog_rows * ROW_BYTES, node_time),
        raw_write_rate,
        mib_per_s(opts.backlog_rows * ROW_BYTES, raw_write.elapsed),
        node_rate / raw_write_rate,
        mark(node_rate / raw_write_rate >= 0.8)
    );
    println!(
        "| same | | raw LogConsumer alone (reads, keeps nothing): {:.0} rows/s ({:.1} MiB/s) | {:.2}x | (information) | |",
        raw_rate,
        mib_per_s(opts.backlog_rows * ROW_BYTES, raw.elapsed),
        consume_ratio
    );
    println!(
        "| same, from process start | {:.0} rows/s | raw LogConsumer: {:.0} rows/s | {:.2}x | (information) | |",
        node_rate_cold,
        raw_rate,
        node_rate_cold / raw_rate
    );
    println!(
        "| flush write, {} rows (write_insert: Parquet, fsync of file and directories), median of {} | {:.1} MiB/s of input | std::fs::write of the same {:.1} MiB + fsync of file and directory: {:.1} MiB/s | {:.2}x | ≥ 0.8x | {} |",
        w.rows,
        opts.write_repeat,
        mib_per_s(w.input_bytes, w.parquet),
        w.input_bytes as f64 / MIB,
        mib_per_s(w.input_bytes, w.raw),
        ratio,
        mark(ratio >= 0.8)
    );
    println!(
        "| same, Parquet encoding alone (into std::io::sink) | {:.1} MiB/s of input | | | (information) | |",
        mib_per_s(w.input_bytes, w.encode_only),
    );
    println!(
        "| data node peak RSS, --memory-mib={} | {:.0} MiB (VmHWM {:.0}, max sampled VmRSS {:.0}; its own buffered_bytes peaked at {:.0}) | limit 1.1 x {} + 64 = {:.0} MiB | {:.2}x of limit | ≤ {:.0} MiB | {} |",
        opts.memory_mib,
        peak_mib,
        hwm_kib as f64 / 1024.0,
        rss_max_kib as f64 / 1024.0,
        buffered_max as f64 / MIB,
        opts.memory_mib,
        rss_limit_mib,
        peak_mib / rss_limit_mib,
        rss_limit_mib,
        mark(peak_mib <= rss_limit_mib)
    );
    println!(
        "| standalone end-to-end insert (all roles, embedded log), same load | {:.0} rows/s ({:.1} MiB/s) | distributed (etcd, Kafka, 4 processes) in this run: {:.0} rows/s | {:.2}x | (information) | |",
        sa.insert.rows_per_s(),
        sa.insert.mib_per_s(),
        e2e.rows_per_s(),
        sa.insert.rows_per_s() / e2e.rows_per_s(),
    );
    println!(
        "| standalone end to end, log payload bytes | {sa_mib_s:.1} MiB/s | the embedded log alone (LocalLog), as many messages of the same size, {} in flight: {local_mib_s:.1} MiB/s | {:.2}x | ≥ 0.8x | {} |",
        opts.raw_in_flight,
        sa_mib_s / local_mib_s,
        mark(sa_mib_s / local_mib_s >= 0.8)
    );
    println!(
        "| standalone peak RSS, whole process, --memory-mib={} | {:.0} MiB (VmHWM {:.0}, max sampled VmRSS {:.0}) | distributed data node alone: {:.0} MiB | {:.2}x | ≤ {:.0} MiB (the data node's limit) | {} |",
        opts.memory_mib,
        sa_peak_mib,
        sa.hwm_kib as f64 / 1024.0,
        sa.rss_max_kib as f64 / 1024.0,
        peak_mib,
        sa_peak_mib / peak_mib,
        rss_limit_mib,
        mark(sa_peak_mib <= rss_limit_mib)
    );
    for (side, f) in [("distributed", &flushes), ("standalone", &sa.flushes)] {
        let (p50, p99) = (f.quantile(0.5), f.quantile(0.99));
        println!(
            "| Flush(wait) after one {}-row insert, {side}, {} rounds | p50 {:.0} ms, p99 {:.0} ms | | | p50 ≤ 500 ms, p99 ≤ 1000 ms | {} |",
            opts.flush_round_rows,
            f.0.len(),
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3,
            mark(p50 <= Duration::from_millis(500) && p99 <= Duration::from_secs(1))
        );
    }
    println!(
        "\nAlso: proxy -> Kafka with no data node (backlog phase): {:.0} rows/s ({:.1} MiB/s); committed rows {committed} = acknowledged {want}; standalone committed {} = acknowledged {}.",
        backlog.rows_per_s(),
        backlog.mib_per_s(),
        sa.committed,
        opts.rows
    );
    eprintln!("cluster logs: {cluster_logs}");
    Ok(())
}

/// `Flush(wait)` latencies of [`flush_latency`], sorted.
struct FlushLatency(Vec<Duration>);

impl FlushLatency {
    /// The `q` quantile (nearest rank).
    fn quantile(&self, q: f64) -> Duration {
        let n = self.0.len();
        let rank = ((q * n as f64).ceil() as usize).clamp(1, n.max(1));
        self.0.get(rank - 1).copied().unwrap_or_default()
    }

    fn summary(&self, phase: &str) -> String {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        format!(
            "summary: phase={phase} rounds={} p50_ms={:.1} p99_ms={:.1} max_ms={:.1} min_ms={:.1}",
            self.0.len(),
            ms(self.quantile(0.5)),
            ms(self.quantile(0.99)),
            ms(self.0.last().copied().unwrap_or_default()),
            ms(self.0.first().copied().unwrap_or_default()),
        )
    }
}

/// `--flush-rounds` rounds of one insert of `--flush-round-rows` fresh rows, then
/// `Flush(wait)`, timed from the insert's acknowledgement until the flush
/// returns. When it returns, the committed rows must be every acknowledged one
/// (`committed` before the first round, plus each round's).
async fn flush_latency(
    channel: &Channel,
    datacoord: &DataCoordClient<Channel>,
    schema: &CollectionSchema,
    collection_id: i64,
    first_pk: i64,
    mut committed: u64,
    opts: &Options,
) -> anyhow::Result<FlushLatency> {
    let one = Options {
        clients: 1,
        batch: usize::try_from(opts.flush_round_rows)?,
        ..opts.clone()
    };
    let mut times = Vec::with_capacity(opts.flush_rounds);
    for round in 0..opts.flush_rounds {
        let first = first_pk + (round as u64 * opts.flush_round_rows) as i64;
        insert(channel, schema, first, opts.flush_round_rows, &one).await?;
        let acked = Instant::now();
        ProxyClient::new(channel.clone())
            .flush(proto::ProxyFlushRequest {
                collection: "bench".into(),
                wait: true,
            })
            .await
            .with_context(|| format!("flush round {round}"))?;
        times.push(acked.elapsed());
        committed += opts.flush_round_rows;
        let listed = committed_rows(datacoord, collection_id).await?;
        ensure!(
            listed == committed,
            "round {round}: Flush(wait) returned with {listed} rows committed, {committed} acknowledged"
        );
    }
    times.sort();
    Ok(FlushLatency(times))
}

struct StandaloneRun {
    insert: Inserted,
    flush_secs: f64,
    committed: u64,
    rss_max_kib: u64,
    hwm_kib: u64,
    flushes: FlushLatency,
    /// Log payload bytes the proxy produced for the e2e rows.
    produced_bytes: u64,
}

/// Phase 6: the e2e load against `milvus-like standalone`.
async fn standalone_e2e(opts: &Options) -> anyhow::Result<StandaloneRun> {
    settle()?;
    let dir = TestDir::new("ingest-bench-standalone");
    let args = [
        format!("--channels={CHANNELS}"),
        format!("--memory-mib={}", opts.memory_mib),
        format!("--flush-rows={}", opts.flush_rows),
        format!("--flush-mib={}", opts.flush_mib),
        format!("--flush-age={}", opts.flush_age),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let sa = StandaloneProcess::start_in(dir.path(), &args)?;
    let pid = sa.process.pid().context("standalone pid")?;
    let rss = RssSampler::start(pid);
    let proxy = sa.proxy_client();
    let datacoord = sa.datacoord_client();
    milvus_like_tests::wait_for_proxy(&proxy)
        .await
        .with_context(|| format!("standalone log:\n{}", sa.process.log()))?;
    let (info, schema) = create_collection(&proxy, "bench", DIM as u32).await?;
    let produced_before = metric(
        &scrape(sa.ports.proxy.http).await,
        "proxy_bytes_produced_total",
    );
    let result = insert(&sa.proxy_channel(), &schema, 0, opts.rows, opts).await?;
    let produced_after = metric(
        &scrape(sa.ports.proxy.http).await,
        "proxy_bytes_produced_total",
    );
    let produced_bytes = produced_after
        .zip(produced_before)
        .map(|(a, b)| a.saturating_sub(b))
        .context("the standalone proxy's proxy_bytes_produced_total")?;
    let t = Instant::now();
    proxy
        .clone()
        .flush(proto::ProxyFlushRequest {
            collection: "bench".into(),
            wait: true,
        })
        .await
        .with_context(|| format!("flush; standalone log:\n{}", sa.process.log()))?;
    let committed = wait_for("every row committed", Duration::from_secs(120), || async {
        let n = committed_rows(&datacoord, info.id).await.ok()?;
        (n >= opts.rows).then_some(n)
    })
    .await?;
    let flush_secs = t.elapsed().as_secs_f64();
    let (rss_max_kib, hwm_kib) = rss.finish();
    ensure!(
        committed == opts.rows,
        "standalone committed {committed} rows, acknowledged {}: lost or duplicated rows",
        opts.rows
    );
    let flushes = flush_latency(
        &sa.proxy_channel(),
        &datacoord,
        &schema,
        info.id,
        1 << 41,
        committed,
        opts,
    )
    .await
    .with_context(|| format!("standalone log:\n{}", sa.process.log()))?;
    Ok(StandaloneRun {
        insert: result,
        flush_secs,
        committed,
        rss_max_kib,
        hwm_kib,
        flushes,
        produced_bytes,
    })
}

fn main() -> anyhow::Result<()> {
    let opts = Options::parse(std::env::args().skip(1))?;
    run_until_signal(bench(opts))
}
