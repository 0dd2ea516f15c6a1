//! Appends to an embedded log (`milvus_like_node::msgstream::LocalLog`) until it is
//! killed, printing every acknowledged append as `acked CHANNEL OFFSET SEQ` on
//! stdout (flushed per line). The embedded-log crash test kill -9s it in a loop and
//! checks that every acknowledged record is there, once, at its offset.
//!
//! ```text
//! log_writer PATH CHANNELS RUN
//! ```

#![forbid(unsafe_code)]

use std::io::Write as _;
use std::sync::Arc;

use anyhow::Context;
use milvus_like_node::msgstream::{LocalLog, Log, Stream};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    const USAGE: &str = "usage: log_writer PATH CHANNELS RUN";
    let path = args.next().context(USAGE)?;
    let channels: u32 = args
        .next()
        .context(USAGE)?
        .parse()
        .context("CHANNELS is a number")?;
    let run: u64 = args
        .next()
        .context(USAGE)?
        .parse()
        .context("RUN is a number")?;
    let runtime = tokio::runtime::Runtime::new().context("runtime")?;
    runtime.block_on(async move {
        let log = LocalLog::open(std::path::Path::new(&path))?;
        log.ensure(channels).await?;
        let producer = log.producer()?;
        let out = Arc::new(std::sync::Mutex::new(std::io::stdout()));
        // A run's sequence numbers start at RUN times 2^32, so that two runs never
        // write the same payload.
        let base = run << 32;
        let writers = (0..8u64).map(|w| {
            let producer = producer.clone();
            let out = out.clone();
            tokio::spawn(async move {
                for i in 0u64.. {
                    let seq = base + i * 8 + w;
                    let channel = u32::try_from(seq % u64::from(channels)).unwrap_or(0);
                    // Payloads of a few KiB, so that groups span several pages.
                    let mut payload = seq.to_le_bytes().repeat(600);
                    payload.truncate(4096 + (seq % 7) as usize * 100);
                    let offset = producer
                        .send(Stream::Insert, channel, payload.into())
                        .await?;
                    let mut o = out.lock().unwrap_or_else(|p| p.into_inner());
                    writeln!(o, "acked {channel} {offset} {seq}")?;
                    o.flush()?;
                }
                anyhow::Ok(())
            })
        });
        for w in futures::future::join_all(writers).await {
            w.context("writer panicked")??;
        }
        anyhow::Ok(())
    })
}
