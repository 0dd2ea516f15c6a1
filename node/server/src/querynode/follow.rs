//! The follower: reads the watched channels and hands every record to its
//! channel's view, with the data nodes' checks (`crate::ingest`).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::view::{Applied, Block, Record};
use super::{Node, write};
use crate::ingest::{Checked, Later};
use crate::msgstream::Stream;

pub(super) async fn run(node: Arc<Node>, stop: CancellationToken) {
    loop {
        let received = tokio::select! {
            () = stop.cancelled() => return,
            m = node.consumer.recv() => m,
        };
        let m = match received {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "log consumer error; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        node.metrics.records_read.inc();
        let (stream, channel, offset) = (m.stream, m.channel, m.offset);
        let checked = node.records.check(&m).await;
        drop(m);
        let record = match checked {
            Ok(Checked::Insert { batch, rows, .. }) => {
                let first = batch.first_ts;
                let timestamps = (first..first + rows.num_rows as u64).collect();
                Record::Insert {
                    collection: batch.collection_id,
                    block: Block::new(rows, timestamps),
                }
            }
            Ok(Checked::Delete { batch, keys }) => {
                let first = batch.first_ts;
                Record::Delete {
                    collection: batch.collection_id,
                    timestamps: (first..first + keys.len() as u64).collect(),
                    keys,
                }
            }
            // The data node dead-letters it; every reader skips it.
            Ok(Checked::Junk(_)) => Record::Nothing,
            Err(Later(reason)) => {
                tracing::warn!(channel, offset, %reason, "cannot check this record yet; reading the channel again shortly");
                tokio::time::sleep(Duration::from_millis(200)).await;
                reposition(&node, channel, true);
                continue;
            }
        };
        apply(&node, channel, stream, offset, record);
    }
}

fn apply(node: &Node, channel: u32, stream: Stream, offset: i64, record: Record) {
    let applied = {
        let mut channels = node.channels();
        let Some(w) = channels.get_mut(&channel) else {
            return; // not followed (any more)
        };
        let applied = write(&w.view).apply(stream, offset, record);
        if let Some(reading) = w.reading.as_mut() {
            match stream {
                Stream::Insert => reading.insert = offset + 1,
                Stream::Delete => reading.delete = offset + 1,
            }
        }
        w.progress.notify_waiters();
        applied
    };
    if applied == Applied::Gap {
        node.metrics.log_gaps.inc();
        tracing::warn!(
            channel,
            stream = stream.name(),
            offset,
            "a loaded collection is missing records below this one; reading the channel again"
        );
        reposition(node, channel, true);
    }
}

/// Points the consumer of `channel` at where its view wants to read (the lowest
/// offsets some loaded collection lacks), if it reads elsewhere or `force`; stops
/// reading a channel with nothing loaded.
pub(super) fn reposition(node: &Node, channel: u32, force: bool) {
    let mut channels = node.channels();
    let Some(w) = channels.get_mut(&channel) else {
        return;
    };
    let want = super::read(&w.view).want();
    if want == w.reading && !force {
        return;
    }
    if w.reading.is_some()
        && let Err(e) = node.consumer.unassign(channel)
    {
        tracing::error!(channel, error = %e, "cannot stop reading the channel");
        return;
    }
    w.reading = None;
    if let Some(at) = want {
        match node.consumer.assign(channel, at.insert, at.delete) {
            Ok(()) => {
                tracing::debug!(
                    channel,
                    insert = at.insert,
                    delete = at.delete,
                    "reading the channel"
                );
                w.reading = Some(at);
            }
            Err(e) => tracing::error!(channel, error = %e, "cannot read the channel"),
        }
    }
}
