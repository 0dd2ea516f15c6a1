//! The consumer loop: reads the owned channels, skips what the checkpoint already
//! covers, dead-letters junk, buffers the rest, and applies backpressure.

use std::sync::Arc;
use std::time::Duration;

use milvus_like_api::proto::data_coord_client::DataCoordClient;
use milvus_like_api::proto::{ChannelLoad, ReportLoadRequest};
use tokio_util::sync::CancellationToken;

use super::buffer::SegmentBuffer;
use super::{ChannelLabel, Node, flush, sealed};
use crate::ingest::{Checked, Later};
use crate::msgstream::{LogRecord, Stream};

pub(super) async fn run(node: Arc<Node>, stop: CancellationToken) {
    loop {
        // Backpressure: above the limit, stop reading (librdkafka's prefetch queue is
        // bounded too) until flushes free memory.
        let mut paused = false;
        while node.buffered() >= node.config.memory_limit {
            if !paused {
                node.metrics.backpressure_pauses.inc();
                tracing::info!(
                    buffered = node.buffered(),
                    limit = node.config.memory_limit,
                    "memory limit reached; pausing consumption"
                );
                paused = true;
            }
            flush::largest(&node).await;
            tokio::select! {
                () = stop.cancelled() => return,
                () = node.flushed.notified() => {}
                () = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
        if node.buffered() >= node.config.memory_limit / 4 * 3 {
            flush::largest(&node).await;
        }
        let received = tokio::select! {
            () = stop.cancelled() => return,
            m = node.consumer.recv() => m,
        };
        match received {
            Ok(m) => handle(&node, m).await,
            Err(e) => {
                tracing::warn!(error = %e, "log consumer error; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// Reads `channel` again from its next offsets, with `stream`'s moved back to
/// `from` if that is lower: for a record that must not be skipped but cannot be
/// taken now. Pauses a little, so that a lasting cause stalls the channel instead
/// of spinning.
async fn read_again(node: &Node, channel: u32, stream: Stream, from: i64) {
    {
        let mut channels = node.channels.lock().await;
        let Some(ch) = channels.get_mut(&channel) else {
            return;
        };
        let next = ch.next_mut(stream);
        *next = (*next).min(from);
        if let Err(e) = node.consumer.unassign(channel).and_then(|()| {
            node.consumer
                .assign(channel, ch.insert_next, ch.delete_next)
        }) {
            tracing::error!(channel, error = %e, "cannot re-read the channel");
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
}

async fn handle(node: &Arc<Node>, m: LogRecord<'_>) {
    node.metrics.messages_consumed.inc();
    // Decode and check outside the lock; the lock only guards the append.
    let checked = match node.records.check(&m).await {
        Ok(checked) => checked,
        Err(Later(reason)) => {
            tracing::warn!(channel = m.channel, offset = m.offset, %reason, "cannot check this record yet; reading it again shortly");
            read_again(node, m.channel, m.stream, m.offset).await;
            return;
        }
    };
    let mut channels = node.channels.lock().await;
    let Some(ch) = channels.get_mut(&m.channel) else {
        return; // not ours (any more)
    };
    let next = ch.next_mut(m.stream);
    if m.offset < *next {
        node.metrics.duplicates_skipped.inc();
        return;
    }
    if m.offset > *next {
        // Offsets of a channel have no gaps: this is a record read for an earlier
        // assignment of the channel (it raced a re-assignment), or records are
        // missing from the log. Skipping to it would lose rows, so read the channel
        // again from where this node is.
        let expected = *next;
        drop(channels);
        node.metrics.log_gaps.inc();
        tracing::warn!(channel = m.channel, stream = ?m.stream, expected, got = m.offset, "the log skipped offsets; reading the channel again from the expected one");
        // A gap that stays (records gone from the log) stalls the channel, loudly.
        read_again(node, m.channel, m.stream, expected).await;
        return;
    }
    *next = m.offset + 1;
    let before = ch.buffer.bytes();
    let junk = match checked {
        Checked::Insert {
            batch: b,
            schema,
            rows,
        } => {
            let n = rows.num_rows as u64;
            let buf =
                ch.buffer.segments.entry(b.segment_id).or_insert_with(|| {
                    SegmentBuffer::new(b.collection_id, b.partition_id, &schema)
                });
            if let Err(e) = buf.append(rows, b.first_ts) {
                tracing::error!(segment_id = b.segment_id, error = %e, "batch does not fit its segment buffer");
            } else {
                let last = b.first_ts + n.saturating_sub(1);
                ch.max_ts = ch.max_ts.max(last);
                ch.sealed.consumed(Stream::Insert, last);
                ch.rows_consumed += n;
                node.metrics.rows_consumed.inc_by(n);
            }
            None
        }
        Checked::Delete { batch: b, keys } => {
            let d = ch
                .buffer
                .deletes
                .entry((b.collection_id, b.partition_id))
                .or_default();
            let n = keys.len() as u64;
            // Keys of another kind than the partition's earlier deletes: no
            // row can have them.
            match d.primary_keys.extend(keys) {
                Err(e) => Some(e.to_string()),
                Ok(()) => {
                    d.timestamps.extend(b.first_ts..b.first_ts + n);
                    let last = b.first_ts + n.saturating_sub(1);
                    ch.max_ts = ch.max_ts.max(last);
                    ch.sealed.consumed(Stream::Delete, last);
                    None
                }
            }
        }
        Checked::Junk(reason) => Some(reason),
    };
    if let Some(reason) = junk {
        node.metrics.dead_lettered.inc();
        tracing::warn!(channel = m.channel, offset = m.offset, stream = ?m.stream, %reason, "malformed message; copying it to the dead-letter topic and skipping it");
        let producer = node.producer.clone();
        let key = format!("{:?}/{}/{}: {reason}", m.stream, m.channel, m.offset);
        // Sent inline (rare), before the checkpoint can pass it; if it cannot be
        // kept, the message is read again rather than skipped.
        drop(channels);
        if let Err(e) = producer.dead_letter(&key, m.payload()).await {
            tracing::error!(error = %e, %key, "could not dead-letter a malformed message; reading it again shortly");
            read_again(node, m.channel, m.stream, m.offset).await;
        }
        return;
    }
    let after = ch.buffer.bytes();
    node.add_buffered(after as i64 - before as i64);
    let due = ch
        .buffer
        .segments
        .values()
        .find_map(|s| node.policy.should_flush(&s.stats()));
    let complete = ch.sealed.any_ready();
    if let Some(reason) = due {
        flush::start(node, m.channel, ch, reason);
    } else if complete {
        flush::start(node, m.channel, ch, "segments sealed");
    }
}

const LOAD_REPORT_PERIOD: Duration = Duration::from_secs(5);

/// Every 200 ms (or when woken): age-based flushes and sealed segments of idle channels; every 5 s:
/// lag and a load report to the coordinator.
pub(super) async fn tick(node: Arc<Node>, stop: CancellationToken) {
    let mut last_report = std::time::Instant::now();
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
            () = node.tick_wake.notified() => {}
        }
        let waiting: Vec<(u32, sealed::Mark)> = {
            let mut channels = node.channels.lock().await;
            let mut waiting = Vec::new();
            for (channel, ch) in channels.iter_mut() {
                if let Some(reason) = node.policy.should_flush(&super::BufferStats {
                    bytes: ch.buffer.bytes() as u64,
                    rows: ch.buffer.rows(),
                    age: ch.buffer.age(),
                }) {
                    flush::start(&node, *channel, ch, reason);
                } else if ch.sealed.any_ready() {
                    flush::start(&node, *channel, ch, "segments sealed");
                } else if !ch.sealed.is_empty() {
                    // Taken before the log's end is read: seals arriving meanwhile
                    // wait for the next check.
                    waiting.push((*channel, ch.sealed.mark()));
                }
            }
            waiting
        };
        // Sealed segments on a quiet channel: complete them once everything in
        // both logs has been read.
        for (channel, mark) in waiting {
            for stream in [Stream::Insert, Stream::Delete] {
                if let Some(hw) = high_watermark(&node, stream, channel).await
                    && let Some(ch) = node.channels.lock().await.get_mut(&channel)
                {
                    if *ch.next_mut(stream) >= hw {
                        ch.sealed.caught_up(stream, mark);
                    }
                    if ch.sealed.any_ready() {
                        flush::start(&node, channel, ch, "segments sealed (caught up)");
                    }
                }
            }
        }
        if last_report.elapsed() >= LOAD_REPORT_PERIOD {
            last_report = std::time::Instant::now();
            let report = load_report(&node).await;
            let request = report.clone();
            let result = node
                .datacoord
                .call(Duration::from_secs(2), |c| {
                    let request = request.clone();
                    async move { DataCoordClient::new(c).report_load(request).await }
                })
                .await;
            if let Err(status) = result {
                tracing::debug!(%status, "load report failed");
            }
        }
    }
}

/// The insert partition's high watermark (`None` when the broker does not answer).
async fn high_watermark(node: &Node, stream: Stream, channel: u32) -> Option<i64> {
    node.consumer.high_watermark(stream, channel).await.ok()
}

/// Buffered bytes, consumption and lag per channel.
pub(super) async fn load_report(node: &Arc<Node>) -> ReportLoadRequest {
    let snapshot: Vec<(u32, u64, u64, i64)> = {
        let mut channels = node.channels.lock().await;
        channels
            .iter_mut()
            .map(|(c, ch)| {
                let rows = std::mem::take(&mut ch.rows_consumed);
                (*c, ch.buffer.bytes() as u64, rows, ch.insert_next)
            })
            .collect()
    };
    let mut loads = Vec::new();
    for (channel, buffered, rows, next) in snapshot {
        let hw = high_watermark(node, Stream::Insert, channel).await;
        let lag = hw.map_or(0, |hw| (hw - next).max(0));
        node.metrics
            .consumer_lag
            .get_or_create(&ChannelLabel { channel })
            .set(lag);
        loads.push(ChannelLoad {
            channel,
            buffered_bytes: buffered,
            rows_per_second: rows as f64 / LOAD_REPORT_PERIOD.as_secs_f64(),
            lag,
        });
    }
    ReportLoadRequest {
        node_id: node.node_id,
        memory_used_bytes: crate::sys::rss_bytes().unwrap_or(0),
        channels: loads,
    }
}
