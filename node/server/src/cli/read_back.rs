//! `milvus-like read-back`: a collection's flushed segments read straight from
//! object storage, deletes applied: row count, content checksum, sample rows, and
//! per block of keys (for comparing with what `insert` was acknowledged).

use std::time::Duration;

use anyhow::Context;
use clap::Args;

use super::{StorageArgs, UpstreamArgs};
use crate::storage::{KeyBlocks, SegmentStore, read_collection_blocks};

#[derive(Debug, Args)]
pub struct ReadBackArgs {
    /// The collection to read.
    #[arg(long, short = 'c')]
    pub collection: String,
    /// Rows to print.
    #[arg(long, default_value_t = 5)]
    pub sample: usize,
    /// Also print, per block of this many consecutive primary keys, its live
    /// rows and their checksum (`block START rows N checksum X`), and the keys
    /// found more than once: compares block by block with `insert` runs that
    /// each sent one block (`--id-start`, `--random`). Holds every key in memory.
    #[arg(long, value_name = "KEYS")]
    pub key_blocks: Option<u64>,
    #[command(flatten)]
    pub upstream: UpstreamArgs,
    #[command(flatten)]
    pub storage: StorageArgs,
}

/// Prints the collection's row count, checksum and sample rows, and the blocks.
pub async fn run(args: ReadBackArgs) -> anyhow::Result<()> {
    use milvus_like_api::proto::data_coord_client::DataCoordClient;
    let root = milvus_like_api::root_coord_link::RootCoordLink::connect(
        &args.upstream.root.rootcoord_endpoints,
        Duration::from_secs(10),
    )?;
    let info = root
        .collection_by_name(&args.collection)
        .await
        .map_err(|s| anyhow::anyhow!("collection {:?}: {}", args.collection, s.message()))?;
    let schema = milvus_like_api::schema::CollectionSchema::try_from(
        info.schema
            .clone()
            .context("the collection has no schema")?,
    )?;
    let dc = milvus_like_api::leader_pool::LeaderPool::new(
        &args.upstream.datacoord_endpoints,
        Duration::from_secs(10),
    )?;
    let request = milvus_like_api::proto::ListSegmentsRequest {
        collection_id: info.id,
    };
    let listed = dc
        .call(Duration::from_secs(10), |c| async move {
            DataCoordClient::new(c).list_segments(request).await
        })
        .await
        .map_err(|s| anyhow::anyhow!("list segments: {}", s.message()))?
        .into_inner();
    let store = SegmentStore::open(&args.storage.config())?;
    let mut blocks = args.key_blocks.map(KeyBlocks::new);
    let content = read_collection_blocks(
        &store,
        &schema,
        &listed.segments,
        &listed.delete_logs,
        args.sample,
        blocks.as_mut(),
    )
    .await?;
    let flushed = listed
        .segments
        .iter()
        .filter(|s| s.state == milvus_like_api::proto::SegmentState::Flushed as i32)
        .count();
    println!(
        "collection {:?} (id {}): {} rows, {} deleted, checksum {:016x}, {} segments ({} flushed), {} delete logs",
        args.collection,
        info.id,
        content.rows,
        content.deleted,
        content.checksum,
        listed.segments.len(),
        flushed,
        listed.delete_logs.len()
    );
    for row in &content.sample {
        println!("  {row}");
    }
    if let Some(b) = blocks {
        println!("duplicated keys {}", b.duplicates);
        for (block, (rows, checksum)) in &b.blocks {
            println!(
                "block {} rows {rows} checksum {checksum:016x}",
                block.saturating_mul(i64::try_from(b.size).unwrap_or(i64::MAX))
            );
        }
    }
    Ok(())
}
