//! `milvus-like insert`: rows from a file or made up, sent to the proxy in
//! batches, several at a time. A row counts as inserted only once the proxy
//! acknowledged its batch (the proxy acknowledges once the log, Kafka or the
//! embedded one, made it durable).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{ArgGroup, Args};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use milvus_like_api::proto;
use milvus_like_api::schema::CollectionSchema;
use tokio_util::sync::CancellationToken;

use super::args::ProxyArgs;
use super::collection::{describe, not_found_hint, schema_of};
use super::connect::Proxy;
use super::error::{CliError, ExitCode};
use super::progress::{Progress, rate};
use super::source::{self, FileFormat, KeyOptions, RowSource};
use crate::columns::RowBatch;
use crate::proxy::MAX_REQUEST_BYTES;
use crate::storage::batch_checksum;

/// Default request size the batch size aims at.
const TARGET_REQUEST_BYTES: u64 = 4 << 20;
/// Requests stay below this (the proxy refuses more than 64 MiB).
const MAX_BATCH_BYTES: u64 = (MAX_REQUEST_BYTES as u64) * 7 / 8;
/// Deadline of one insert call.
const INSERT_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("input").required(true).args(["file", "random"])))]
pub struct InsertArgs {
    /// The collection to insert into.
    #[arg(long, short = 'c')]
    pub collection: String,
    /// A CSV, NumPy .npy or Parquet file (format from the extension, or --format).
    #[arg(long, short = 'f')]
    pub file: Option<PathBuf>,
    /// Insert this many random rows made for the schema instead of a file.
    #[arg(long, value_name = "ROWS")]
    pub random: Option<u64>,
    /// The file's format, when its name does not tell.
    #[arg(long, value_enum)]
    pub format: Option<FileFormat>,
    /// Rows per insert request (default: about 4 MiB of rows, at most 20000).
    #[arg(long)]
    pub batch_rows: Option<usize>,
    /// Insert requests in flight at once.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Number the primary keys from this value: for .npy files and --random
    /// (default 0), and for CSV or Parquet files without a key column.
    #[arg(long)]
    pub id_start: Option<i64>,
    /// Primary keys of an .npy file's vectors: a 1-D int64 .npy file, one per vector.
    #[arg(long = "ids", value_name = "KEYS.npy")]
    pub ids_file: Option<PathBuf>,
    /// Seed of --random, for the same rows again.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    #[command(flatten)]
    pub proxy: ProxyArgs,
}

pub async fn run(args: InsertArgs, cancel: CancellationToken) -> Result<(), CliError> {
    if args.concurrency == 0 {
        return Err(CliError::usage("--concurrency must be at least 1"));
    }
    let proxy = Proxy::connect(&args.proxy, INSERT_TIMEOUT).await?;
    let info = describe(&proxy, &args.collection).await?;
    let schema = Arc::new(schema_of(&info)?);
    let batch_rows = batch_rows(&schema, args.batch_rows)?;
    let source: Box<dyn RowSource> = match (&args.file, args.random) {
        (Some(path), _) => {
            let format = match args.format {
                Some(f) => f,
                None => FileFormat::of(path)?,
            };
            let keys = KeyOptions {
                id_start: args.id_start,
                ids_file: args.ids_file.clone(),
            };
            source::open(path, format, &schema, &keys, batch_rows)?
        }
        (None, Some(rows)) => Box::new(source::random::RandomSource::new(
            &schema,
            rows,
            args.id_start.unwrap_or(0),
            args.seed,
        )),
        (None, None) => return Err(CliError::usage("give --file PATH or --random ROWS")),
    };
    let what = format!("insert into {:?}", args.collection);
    let mut progress = Progress::new(what.clone(), source.total_rows());
    let outcome = pump(
        &proxy,
        &args,
        schema,
        source,
        batch_rows,
        &mut progress,
        &cancel,
    )
    .await;
    progress.finish();
    let inserted = match outcome {
        Ok(a) => a,
        Err((a, e)) => {
            let e = not_found_hint(e, &args.collection);
            if a.rows == 0 || e.code == ExitCode::Interrupted {
                return Err(e);
            }
            return Err(e.with_note(format!(
                "the {} rows acknowledged before it (checksum {:016x}) stay inserted",
                a.rows, a.checksum
            )));
        }
    };
    let elapsed = progress.elapsed();
    println!(
        "inserted {} rows into {:?} in {:.1} s ({} rows/s), checksum {:016x}",
        inserted.rows,
        args.collection,
        elapsed.as_secs_f64(),
        rate(inserted.rows, elapsed),
        inserted.checksum
    );
    Ok(())
}

/// Rows per request: the flag, or about [`TARGET_REQUEST_BYTES`] of rows.
fn batch_rows(schema: &CollectionSchema, flag: Option<usize>) -> Result<usize, CliError> {
    let row_bytes = schema.row_bytes().max(1);
    let most = usize::try_from(MAX_BATCH_BYTES / row_bytes)
        .unwrap_or(usize::MAX)
        .max(1);
    match flag {
        Some(0) => Err(CliError::usage("--batch-rows must be at least 1")),
        Some(n) if n > most => Err(CliError::usage(format!(
            "--batch-rows {n} makes requests of up to {} MiB; the proxy takes at most {} MiB \
             per request, so use at most {most}",
            (n as u64 * row_bytes) >> 20,
            MAX_REQUEST_BYTES >> 20
        ))),
        Some(n) => Ok(n),
        None => Ok(usize::try_from(TARGET_REQUEST_BYTES / row_bytes)
            .unwrap_or(1)
            .clamp(1, 20_000)),
    }
}

/// Reads on a blocking thread, sends up to `--concurrency` batches at once, and
/// returns the acknowledged rows; on failure, those acknowledged before it.
async fn pump(
    proxy: &Proxy,
    args: &InsertArgs,
    schema: Arc<CollectionSchema>,
    mut source: Box<dyn RowSource>,
    batch_rows: usize,
    progress: &mut Progress,
    cancel: &CancellationToken,
) -> Result<Acknowledged, (Acknowledged, CliError)> {
    let (tx, mut rx) =
        tokio::sync::mpsc::channel::<Result<(RowBatch, u64), CliError>>(args.concurrency);
    let reader_schema = schema.clone();
    let reader = tokio::task::spawn_blocking(move || {
        loop {
            let next = source.next_batch(batch_rows);
            let end = !matches!(next, Ok(Some(_)));
            let item = match next {
                // The checksum is made here, beside the reading, off the sending path.
                Ok(Some(b)) => {
                    let checksum = batch_checksum(&reader_schema, &b);
                    Ok((b, checksum))
                }
                Ok(None) => break,
                Err(e) => Err(e),
            };
            if tx.blocking_send(item).is_err() || end {
                break;
            }
        }
    });
    let mut in_flight = FuturesUnordered::new();
    let mut acknowledged = Acknowledged::default();
    let mut read_all = false;
    let mut failure = None;
    loop {
        if read_all && in_flight.is_empty() {
            break;
        }
        tokio::select! {
            biased;
            () = cancel.cancelled() => {
                let pending = in_flight.len();
                failure = Some(CliError::new(
                    ExitCode::Interrupted,
                    format!(
                        "interrupted: {} rows were acknowledged; the {pending} \
                         batches in flight may or may not have been inserted",
                        acknowledged.rows
                    ),
                ));
                in_flight.clear();
                break;
            }
            Some(done) = in_flight.next(), if !in_flight.is_empty() => match done {
                Ok((n, checksum)) => {
                    acknowledged.add(n, checksum);
                    progress.add(n);
                }
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            },
            next = rx.recv(), if !read_all && in_flight.len() < args.concurrency => match next {
                Some(Ok((batch, checksum))) => {
                    in_flight.push(send(proxy, &args.collection, &schema, batch, checksum));
                }
                Some(Err(e)) => {
                    failure = Some(e);
                    break;
                }
                None => read_all = true,
            },
        }
    }
    // After a failure, let the batches already sent finish, so the count of
    // acknowledged rows is exact (unless interrupted: then stop at once).
    while let Some(done) = in_flight.next().await {
        if let Ok((n, checksum)) = done {
            acknowledged.add(n, checksum);
            progress.add(n);
        }
    }
    drop(rx);
    if let Err(e) = reader.await {
        failure.get_or_insert_with(|| CliError::failure(format!("the file reader failed: {e}")));
    }
    match failure {
        None => Ok(acknowledged),
        Some(e) => Err((acknowledged, e)),
    }
}

/// The rows the proxy acknowledged, and their content checksum (what
/// `read-back` reports for the same rows).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Acknowledged {
    pub rows: u64,
    pub checksum: u64,
}

impl Acknowledged {
    fn add(&mut self, rows: u64, checksum: u64) {
        self.rows += rows;
        self.checksum = self.checksum.wrapping_add(checksum);
    }
}

/// Sends one batch; on success, its rows and checksum.
async fn send(
    proxy: &Proxy,
    collection: &str,
    schema: &CollectionSchema,
    batch: RowBatch,
    checksum: u64,
) -> Result<(u64, u64), CliError> {
    let request = proto::InsertRequest {
        collection: collection.to_owned(),
        partition: String::new(),
        num_rows: u32::try_from(batch.num_rows).unwrap_or(u32::MAX),
        columns: batch.into_wire(schema),
    };
    let resp = proxy
        .call(&format!("insert into {collection:?}"), |mut c| async move {
            c.insert(request).await
        })
        .await?;
    Ok((resp.inserted, checksum))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::source::tests::minimal;

    #[test]
    fn batches_aim_at_a_few_mebibytes_and_stay_under_the_request_limit() {
        let s = minimal(128);
        assert_eq!(batch_rows(&s, None).expect("default"), 7943);
        assert_eq!(batch_rows(&s, Some(10)).expect("flag"), 10);
        let e = batch_rows(&s, Some(1_000_000)).expect_err("too big");
        assert_eq!(e.code, ExitCode::Usage);
        assert!(e.message.contains("use at most 111212"), "{}", e.message);
        assert!(batch_rows(&s, Some(0)).is_err());
    }
}
