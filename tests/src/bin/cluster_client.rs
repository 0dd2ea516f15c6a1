//! Rows in through a proxy, for the kind scenario (`tests/cluster/scenario.sh`):
//! creates a collection (INT64 key, 128-d vector), inserts `--rows` rows in
//! batches of 5,000, sends `Flush(wait)` and fails unless every row was
//! acknowledged and the flush completed.
//!
//! ```text
//! cluster_client --proxy 127.0.0.1:19531 --rows 100000 [--collection scenario]
//! ```

#![forbid(unsafe_code)]

use anyhow::{Context, bail, ensure};
use milvus_like_api::proto::{self, proxy_client::ProxyClient};
use milvus_like_node::columns::{Column, RowBatch};
use milvus_like_tests::test_schema;

const DIM: usize = 128;
const BATCH: usize = 5_000;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut proxy = "127.0.0.1:19531".to_owned();
    let mut rows = 100_000usize;
    let mut collection = "scenario".to_owned();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--proxy" => proxy = value,
            "--rows" => rows = value.parse().context("--rows")?,
            "--collection" => collection = value,
            _ => bail!("unknown flag {flag}; flags: --proxy HOST:PORT --rows N --collection NAME"),
        }
    }
    let channel = tonic::transport::Channel::from_shared(format!("http://{proxy}"))?
        .connect()
        .await
        .with_context(|| format!("connect to the proxy at {proxy}"))?;
    let mut client = ProxyClient::new(channel).max_encoding_message_size(64 << 20);
    let schema_proto = test_schema(&collection, DIM as u32);
    let schema = milvus_like_api::schema::CollectionSchema::try_from(schema_proto.clone())?;
    match client
        .create_collection(proto::CreateCollectionRequest {
            schema: Some(schema_proto),
        })
        .await
    {
        Ok(_) => {}
        Err(s) if s.code() == tonic::Code::AlreadyExists => {}
        Err(s) => bail!("create collection {collection:?}: {}", s.message()),
    }
    let started = std::time::Instant::now();
    let mut acked = 0u64;
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for lo in (0..rows).step_by(BATCH) {
        let n = BATCH.min(rows - lo);
        let values: Vec<f32> = (0..n * DIM)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 40) as f32 / (1u64 << 24) as f32
            })
            .collect();
        let batch = RowBatch {
            columns: vec![
                Column::Long((lo as i64..(lo + n) as i64).collect()),
                Column::Vector {
                    dim: DIM as u32,
                    values,
                },
            ],
            num_rows: n,
        };
        let resp = client
            .insert(proto::InsertRequest {
                collection: collection.clone(),
                partition: String::new(),
                columns: batch.to_wire(&schema),
                num_rows: u32::try_from(n)?,
            })
            .await
            .with_context(|| format!("insert rows {lo}..{}", lo + n))?
            .into_inner();
        acked += resp.inserted;
    }
    ensure!(acked == rows as u64, "acknowledged {acked} of {rows} rows");
    let inserted = started.elapsed();
    client
        .flush(proto::ProxyFlushRequest {
            collection: collection.clone(),
            wait: true,
        })
        .await
        .context("flush")?;
    println!(
        "inserted {rows} rows in {:.1} s ({:.0} rows/s), flushed after {:.1} s",
        inserted.as_secs_f64(),
        rows as f64 / inserted.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
