//! Flushing a channel: write every buffered segment and the deletes to object
//! storage, then commit the files with the checkpoint in one epoch-checked
//! transaction through the data coordinator. Failures of storage are retried with
//! backoff whatever their cause, a coordinator's while they are transient, both
//! only while the node holds the channel; the data stays in memory until committed.
//! One flush runs per channel at a time, so commits are in checkpoint order.

use std::sync::Arc;
use std::time::{Duration, Instant};

use milvus_like_api::proto::data_coord_client::DataCoordClient;
use milvus_like_api::proto::{ChannelCheckpoint, CommitFlushRequest, DeleteLog, SegmentBinlogs};
use milvus_like_api::retry::{Retry, Transient};

use super::buffer::ChannelBuffer;
use super::{Channel, DataNodeError, Node};
use crate::storage::{SegmentStore, StorageError, WRITE_MEMORY_BYTES};

/// Why a flush did not commit.
#[derive(Debug, thiserror::Error)]
enum FlushError {
    /// The node no longer holds the channel at the flush's epoch.
    #[error("the channel moved away while flushing")]
    Moved,
    /// The files could not be written. Retried whatever the cause, until the
    /// channel moves: the rows are only in memory (an operator sees the log lines).
    #[error("{0}")]
    Storage(StorageError),
    /// A coordinator (the root for log ids, the data coordinator for the commit)
    /// did not answer, or refused the commit (a stale epoch).
    #[error("{what}: {reason}")]
    Coordinator {
        what: &'static str,
        transient: bool,
        reason: String,
    },
    #[error("the data node is stopping")]
    Stopping,
}

impl FlushError {
    /// The coordinator's answer to `what`, kept as whether it may change and why.
    fn coordinator(what: &'static str) -> impl FnOnce(tonic::Status) -> Self {
        move |status| Self::Coordinator {
            what,
            transient: status.is_transient(),
            reason: format!("{} ({:?})", status.message(), status.code()),
        }
    }
}

impl Transient for FlushError {
    fn is_transient(&self) -> bool {
        match self {
            Self::Storage(_) => true,
            Self::Coordinator { transient, .. } => *transient,
            Self::Moved | Self::Stopping => false,
        }
    }
}

/// What one flush writes and commits.
struct Job {
    channel: u32,
    epoch: u64,
    buffer: ChannelBuffer,
    checkpoint: ChannelCheckpoint,
    complete: Vec<i64>,
    bytes: usize,
    started: Instant,
}

/// Takes the channel's buffer and flushes it in the background (or marks that
/// another flush is wanted if one is running). Call with the channels lock held.
pub(super) fn start(node: &Arc<Node>, channel: u32, ch: &mut Channel, reason: &str) {
    if ch.flushing {
        ch.flush_again = true;
        return;
    }
    let (complete, through) = ch.sealed.take_ready();
    ch.flushed_ts = ch.flushed_ts.max(through);
    let buffer = std::mem::take(&mut ch.buffer);
    let bytes = buffer.bytes();
    ch.flushing = true;
    ch.flush_again = false;
    tracing::debug!(channel, reason, bytes, rows = buffer.rows(), complete = ?complete, "flushing channel");
    // The flush's logs name the channel, the segments written and their collections.
    let segments: Vec<i64> = buffer.segments.keys().copied().collect();
    let mut collections: Vec<i64> = buffer.segments.values().map(|b| b.collection).collect();
    collections.sort_unstable();
    collections.dedup();
    let span = tracing::info_span!("flush", channel, epoch = ch.epoch, segments = ?segments, collections = ?collections);
    let job = Job {
        channel,
        epoch: ch.epoch,
        checkpoint: ch.checkpoint(channel),
        buffer,
        complete,
        bytes,
        started: Instant::now(),
    };
    tokio::spawn(tracing::Instrument::instrument(
        run(node.clone(), job),
        span,
    ));
}

/// Flushes the channel with the most buffered data (memory high-water mark).
pub(super) async fn largest(node: &Arc<Node>) {
    let mut channels = node.channels.lock().await;
    let biggest = channels
        .iter()
        .filter(|(_, ch)| !ch.flushing && !ch.buffer.is_empty())
        .max_by_key(|(_, ch)| ch.buffer.bytes())
        .map(|(c, _)| *c);
    if let Some(channel) = biggest
        && let Some(ch) = channels.get_mut(&channel)
    {
        start(node, channel, ch, "memory high-water mark");
    }
}

/// Calls `op` again while it fails transiently and the node still holds the
/// channel at the job's epoch.
async fn persist<T, F, Fut>(node: &Node, job: &Job, what: &str, mut op: F) -> Result<T, FlushError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, FlushError>>,
{
    Retry::new(format!("{what} failed (channel {})", job.channel))
        .backoff(Duration::from_millis(100), Duration::from_secs(5))
        .run(|| {
            let attempt = op();
            async move {
                let still_ours = node
                    .channels
                    .lock()
                    .await
                    .get(&job.channel)
                    .is_some_and(|c| c.epoch == job.epoch);
                if !still_ours {
                    return Err(FlushError::Moved);
                }
                attempt.await
            }
        })
        .await
}

/// A log id from the root coordinator, for one file.
async fn log_id(node: &Node, job: &Job) -> Result<i64, FlushError> {
    persist(node, job, "allocating a log id", || async {
        node.root
            .alloc_id()
            .await
            .map_err(FlushError::coordinator("allocating a log id"))
    })
    .await
}

async fn write(
    node: &Node,
    job: &Job,
) -> Result<(Vec<SegmentBinlogs>, Vec<DeleteLog>), FlushError> {
    let mut binlogs = Vec::new();
    for (segment_id, buf) in &job.buffer.segments {
        let log_id = log_id(node, job).await?;
        let path =
            SegmentStore::insert_log_path(buf.collection, buf.partition, *segment_id, log_id);
        let bytes = persist(node, job, "writing an insert log", || async {
            node.storage
                .write_insert(&path, &buf.log)
                .await
                .map_err(FlushError::Storage)
        })
        .await?;
        node.metrics.bytes_flushed.inc_by(bytes);
        binlogs.push(SegmentBinlogs {
            segment_id: *segment_id,
            num_rows: buf.rows(),
            insert_log_paths: vec![path],
            delete_log_paths: vec![],
        });
    }
    let mut delete_logs = Vec::new();
    for ((collection, partition), d) in &job.buffer.deletes {
        let log_id = log_id(node, job).await?;
        let path = SegmentStore::delete_log_path(*collection, *partition, job.channel, log_id);
        persist(node, job, "writing a delete log", || async {
            node.storage
                .write_delete_log(&path, &d.primary_keys, &d.timestamps)
                .await
                .map_err(FlushError::Storage)
        })
        .await?;
        delete_logs.push(DeleteLog {
            collection_id: *collection,
            partition_id: *partition,
            channel: job.channel,
            path,
            num_rows: d.primary_keys.len() as u64,
            // Stamped by the coordinator when it records the file.
            checkpoint: None,
        });
    }
    Ok((binlogs, delete_logs))
}

async fn commit(
    node: &Node,
    job: &Job,
    binlogs: Vec<SegmentBinlogs>,
    delete_logs: Vec<DeleteLog>,
) -> Result<(), FlushError> {
    let request = CommitFlushRequest {
        node_id: node.node_id,
        channel: job.channel,
        epoch: job.epoch,
        segments: binlogs,
        checkpoint: Some(job.checkpoint),
        flushed_segment_ids: job.complete.clone(),
        delete_logs,
    };
    let request = &request;
    persist(node, job, "committing the flush", || async move {
        node.datacoord
            .call(Duration::from_secs(10), |c| {
                let request = request.clone();
                async move { DataCoordClient::new(c).commit_flush(request).await }
            })
            .await
            .map_err(FlushError::coordinator("committing the flush"))
    })
    .await
    .map(drop)
}

async fn run(node: Arc<Node>, mut job: Job) {
    let rows = job.buffer.rows();
    // Encoders hold a row group and upload parts each, outside the buffer limit:
    // only `max_concurrent_flushes` write at once (the others keep their data,
    // counted, until their turn).
    let written = match node.flush_permits.acquire().await {
        Ok(_permit) => {
            // The encoder's memory counts against the limit while it writes.
            let working = WRITE_MEMORY_BYTES as i64;
            node.add_buffered(working);
            let written = write(&node, &job).await;
            node.add_buffered(-working);
            written
        }
        Err(_) => Err(FlushError::Stopping),
    };
    // Once written, the files hold the data: free it before the commit.
    if written.is_ok() {
        job.buffer = ChannelBuffer::default();
        node.add_buffered(-(std::mem::take(&mut job.bytes) as i64));
    }
    let result = match written {
        Ok((binlogs, deletes)) => commit(&node, &job, binlogs, deletes).await,
        Err(e) => Err(e),
    };
    match &result {
        Ok(()) => {
            node.metrics.flushes.inc();
            node.metrics.rows_flushed.inc_by(rows);
            node.metrics
                .flush_seconds
                .observe(job.started.elapsed().as_secs_f64());
            tracing::info!(channel = job.channel, rows, completed = ?job.complete, checkpoint = ?(job.checkpoint.insert_next_offset, job.checkpoint.delete_next_offset), flushed_ts = job.checkpoint.flushed_ts, took = ?job.started.elapsed(), "flush committed");
            node.consumer.checkpointed(
                job.channel,
                job.checkpoint.insert_next_offset,
                job.checkpoint.delete_next_offset,
            );
        }
        Err(error) => {
            node.metrics.stale_commits.inc();
            tracing::warn!(channel = job.channel, epoch = job.epoch, %error, "flush not committed; the channel's next owner re-reads from the checkpoint");
        }
    }
    node.add_buffered(-(job.bytes as i64));
    let mut channels = node.channels.lock().await;
    if result.is_err() {
        // We no longer own the channel at this epoch: forget it.
        if channels
            .get(&job.channel)
            .is_some_and(|c| c.epoch == job.epoch)
        {
            if let Some(ch) = channels.remove(&job.channel) {
                node.add_buffered(-(ch.buffer.bytes() as i64));
            }
            let _ = node.consumer.unassign(job.channel);
        }
    } else if let Some(ch) = channels.get_mut(&job.channel)
        && ch.epoch == job.epoch
    {
        ch.flushing = false;
        ch.committed = job.checkpoint;
        if ch.flush_again {
            start(
                &node,
                job.channel,
                ch,
                "requested during the previous flush",
            );
        }
    }
    drop(channels);
    node.flushed.notify_waiters();
}

/// Stops consuming the channel, flushes and commits everything, and forgets it.
/// Returns the final checkpoint.
pub(super) async fn release(
    node: &Arc<Node>,
    channel: u32,
    epoch: u64,
) -> Result<ChannelCheckpoint, DataNodeError> {
    {
        let mut channels = node.channels.lock().await;
        let Some(ch) = channels.get_mut(&channel) else {
            return Ok(ChannelCheckpoint {
                channel,
                ..ChannelCheckpoint::default()
            });
        };
        if ch.epoch != epoch {
            return Err(DataNodeError::Epoch {
                channel,
                held: ch.epoch,
                asked: epoch,
            });
        }
        node.consumer.unassign(channel)?;
        start(node, channel, ch, "release");
    }
    loop {
        let notified = node.flushed.notified();
        {
            let mut channels = node.channels.lock().await;
            match channels.get_mut(&channel) {
                None => return Err(DataNodeError::NotCommitted(channel)),
                Some(ch) if ch.epoch != epoch => {
                    return Err(DataNodeError::Epoch {
                        channel,
                        held: ch.epoch,
                        asked: epoch,
                    });
                }
                Some(ch) if !ch.flushing && !ch.flush_again => {
                    // Anything consumed after the final snapshot is not committed;
                    // the next owner reads it again from the checkpoint.
                    let cp = ch.committed;
                    if let Some(ch) = channels.remove(&channel) {
                        node.add_buffered(-(ch.buffer.bytes() as i64));
                    }
                    tracing::info!(channel, epoch, "channel released");
                    return Ok(cp);
                }
                Some(ch) if !ch.flushing => start(node, channel, ch, "release"),
                Some(_) => {}
            }
        }
        let _ = tokio::time::timeout(Duration::from_millis(200), notified).await;
    }
}
