//! `milvus-like search`, `milvus-like count`, `milvus-like collection load | release`.

use std::path::Path;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use milvus_like_api::proto::{self, ConsistencyLevel};
use milvus_like_api::schema::CollectionSchema;
use milvus_like_api::vectors::FloatVectorArray;
use serde_json::json;

use super::RPC_TIMEOUT;
use super::args::{OutputArgs, OutputFormat, ProxyArgs};
use super::collection::{describe, not_found_hint, schema_of};
use super::connect::Proxy;
use super::error::CliError;
use super::progress::Progress;
use super::source::npy::{NpySource, read_ints};
use super::source::{KeyOptions, RowSource};
use super::table::Table;
use crate::keys::Key;

/// Milvus's consistency levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Consistency {
    /// Sees every write acknowledged before the read (waits for the channels).
    #[default]
    Strong,
    Session,
    Bounded,
    /// Whatever the query nodes have read; no wait.
    Eventually,
}

impl Consistency {
    fn wire(self) -> i32 {
        let level = match self {
            Self::Strong => ConsistencyLevel::ConsistencyStrong,
            Self::Session => ConsistencyLevel::ConsistencySession,
            Self::Bounded => ConsistencyLevel::ConsistencyBounded,
            Self::Eventually => ConsistencyLevel::ConsistencyEventually,
        };
        level as i32
    }
}

#[derive(Debug, Args)]
pub struct SearchArgs {
    /// The collection to search (loaded first with `collection load`).
    #[arg(long, short = 'c')]
    pub collection: String,
    /// A query vector, its floats comma separated; repeat for more queries.
    #[arg(
        long = "vector",
        required_unless_present = "file",
        conflicts_with = "file",
        value_name = "FLOATS",
        allow_negative_numbers = true
    )]
    pub vectors: Vec<String>,
    /// Every query of a NumPy .npy file (float32 or float64, shape (n, dim)):
    /// prints throughput and latency instead of the hits.
    #[arg(long, value_name = "QUERIES.npy")]
    pub file: Option<std::path::PathBuf>,
    /// With --file: the true nearest ids of each query (int64 .npy, shape (n,
    /// at least --top-k)): prints the recall.
    #[arg(long, value_name = "TRUTH.npy", requires = "file")]
    pub truth: Option<std::path::PathBuf>,
    /// With --file: searches in flight at once.
    #[arg(long, default_value_t = 1, requires = "file")]
    pub concurrency: usize,
    /// With --file: queries per request.
    #[arg(long, default_value_t = 1, requires = "file")]
    pub batch: usize,
    /// How many nearest rows per query.
    #[arg(long, default_value_t = 10)]
    pub top_k: u32,
    #[arg(long, value_enum, default_value_t = Consistency::Strong)]
    pub consistency: Consistency,
    /// Search breadth in indexed segments (at least --top-k): more is more
    /// accurate and slower. 0: the larger of --top-k and 64.
    #[arg(long, default_value_t = 0)]
    pub ef: u32,
    /// Only rows this filter keeps, e.g. 'age >= 18 and city in ["Oslo", "Bergen"]'
    /// (docs/cli.md, "Filters").
    #[arg(long, default_value = "")]
    pub filter: String,
    /// Fields shown with each hit, comma separated ('*': every field).
    #[arg(long, value_delimiter = ',')]
    pub output_fields: Vec<String>,
    #[command(flatten)]
    pub proxy: ProxyArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct QueryArgs {
    /// The collection to read (loaded first with `collection load`).
    #[arg(long, short = 'c')]
    pub collection: String,
    /// Which rows, e.g. 'age > 30 and name like "a%"' (docs/cli.md, "Filters").
    #[arg(long, default_value = "")]
    pub filter: String,
    /// Rows with these primary keys, comma separated (with --filter: those it
    /// keeps).
    #[arg(long, value_delimiter = ',', allow_negative_numbers = true)]
    pub ids: Vec<i64>,
    /// Fields shown besides the primary key, comma separated ('*': every field).
    #[arg(long, value_delimiter = ',')]
    pub output_fields: Vec<String>,
    /// At most this many rows (with --offset, up to 16384); 0: every row the
    /// filter keeps, or an error if they are more than 16384.
    #[arg(long, default_value_t = 0)]
    pub limit: u32,
    /// Skip this many rows first (rows come in primary key order).
    #[arg(long, default_value_t = 0)]
    pub offset: u32,
    #[arg(long, value_enum, default_value_t = Consistency::Strong)]
    pub consistency: Consistency,
    #[command(flatten)]
    pub proxy: ProxyArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct CountArgs {
    /// The collection to count (loaded first with `collection load`).
    #[arg(long, short = 'c')]
    pub collection: String,
    #[arg(long, value_enum, default_value_t = Consistency::Strong)]
    pub consistency: Consistency,
    /// Count only the rows this filter keeps.
    #[arg(long, default_value = "")]
    pub filter: String,
    #[command(flatten)]
    pub proxy: ProxyArgs,
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    pub name: String,
    #[command(flatten)]
    pub proxy: ProxyArgs,
}

/// Parses `--vector` values: each a comma-separated list of floats, all of one
/// dimension.
fn parse_vectors(texts: &[String]) -> Result<FloatVectorArray, CliError> {
    let mut values = Vec::new();
    let mut dim = None;
    for (i, text) in texts.iter().enumerate() {
        let row: Vec<f32> = text
            .split(',')
            .map(|s| {
                let s = s.trim();
                s.parse::<f32>()
                    .ok()
                    .filter(|x| x.is_finite())
                    .ok_or_else(|| {
                        CliError::bad_input(format!(
                            "--vector {}: {s:?} is not a finite number",
                            i + 1
                        ))
                    })
            })
            .collect::<Result<_, _>>()?;
        match dim {
            None => dim = Some(row.len()),
            Some(d) if d != row.len() => {
                return Err(CliError::bad_input(format!(
                    "--vector {} has {} floats, the first has {d}; every query has the collection's dimension",
                    i + 1,
                    row.len()
                )));
            }
            Some(_) => {}
        }
        values.extend(row);
    }
    let dim = dim.unwrap_or(0);
    Ok(FloatVectorArray {
        dim: u32::try_from(dim).map_err(|_| CliError::bad_input("--vector is too long"))?,
        values: values.into(),
    })
}

pub async fn search(args: SearchArgs) -> Result<(), CliError> {
    if let Some(file) = &args.file {
        return search_file(&args, file).await;
    }
    let vectors = parse_vectors(&args.vectors)?;
    let proxy = Proxy::connect(&args.proxy, RPC_TIMEOUT).await?;
    let request = proto::SearchRequest {
        collection: args.collection.clone(),
        vectors: Some(vectors),
        top_k: args.top_k,
        consistency: args.consistency.wire(),
        timeout_ms: 0,
        ef: args.ef,
        filter: args.filter.clone(),
        output_fields: args.output_fields.clone(),
    };
    let answer = proxy
        .call(
            &format!("search {:?}", args.collection),
            |mut c| async move { c.search(request).await },
        )
        .await
        .map_err(|e| not_found_hint(e, &args.collection))?;
    match args.output.output {
        OutputFormat::Json => {
            let results: Vec<_> = answer
                .results
                .iter()
                .map(|hits| {
                    hit_ids(hits)
                        .into_iter()
                        .zip(&hits.scores)
                        .enumerate()
                        .map(|(row, (id, score))| {
                            let mut hit = serde_json::Map::new();
                            let id = match id {
                                Key::Int(id) => json!(id),
                                Key::Str(id) => json!(id),
                            };
                            hit.insert("id".into(), id);
                            hit.insert("score".into(), json!(score));
                            for f in &hits.fields {
                                hit.insert(f.field_name.clone(), cell_json(f, row));
                            }
                            serde_json::Value::Object(hit)
                        })
                        .collect::<Vec<_>>()
                })
                .collect();
            let doc =
                json!({"metric": answer.metric, "read_ts": answer.read_ts, "results": results});
            println!("{doc:#}");
        }
        OutputFormat::Table => {
            let mut header = vec!["QUERY", "RANK", "ID", answer.metric.as_str()];
            let names: Vec<String> = answer
                .results
                .first()
                .map(|h| {
                    h.fields
                        .iter()
                        .map(|f| f.field_name.to_uppercase())
                        .collect()
                })
                .unwrap_or_default();
            header.extend(names.iter().map(String::as_str));
            let mut table = Table::new(&header);
            for (q, hits) in answer.results.iter().enumerate() {
                for (rank, (id, score)) in hit_ids(hits).into_iter().zip(&hits.scores).enumerate() {
                    let id = match id {
                        Key::Int(id) => id.to_string(),
                        Key::Str(id) => id,
                    };
                    let mut row = vec![
                        (q + 1).to_string(),
                        (rank + 1).to_string(),
                        id,
                        score.to_string(),
                    ];
                    row.extend(hits.fields.iter().map(|f| cell_text(f, rank)));
                    table.row(row);
                }
            }
            print!("{}", table.render());
        }
    }
    Ok(())
}

/// The queries of a `.npy` file of vectors of `dim`, `batch` per request.
fn read_queries(path: &Path, dim: u32, batch: usize) -> Result<Vec<FloatVectorArray>, CliError> {
    let schema = CollectionSchema::vectors_only("queries", dim).map_err(|e| {
        CliError::failure(format!("the collection's dimension {dim} is invalid: {e}"))
    })?;
    let mut source = NpySource::open(path, &schema, &KeyOptions::default())?;
    let mut requests = Vec::new();
    while let Some(rows) = source.next_batch(batch.max(1))? {
        if let Some((_, values)) = rows.vectors(&schema) {
            requests.push(FloatVectorArray {
                dim,
                values: values.clone(),
            });
        }
    }
    if requests.is_empty() {
        return Err(CliError::bad_input(format!(
            "{} holds no queries",
            path.display()
        )));
    }
    Ok(requests)
}

/// The true nearest ids of each query, `k` each, from a `(queries, >= k)` file.
fn read_truth(path: &Path, queries: usize, k: usize) -> Result<Vec<Vec<i64>>, CliError> {
    let (shape, ids) = read_ints(path, "ids")?;
    let name = path.display();
    let [rows, cols] = shape[..] else {
        return Err(CliError::bad_input(format!(
            "{name} has shape {shape:?}; the truth must be 2-D: ({queries}, at least {k})"
        )));
    };
    if rows != queries as u64 || cols < k as u64 {
        return Err(CliError::bad_input(format!(
            "{name} has shape ({rows}, {cols}); the truth of {queries} queries at --top-k {k} needs ({queries}, at least {k})"
        )));
    }
    Ok(ids
        .chunks_exact(cols as usize)
        .map(|row| row[..k].to_vec())
        .collect())
}

/// One request's latency and the ids found for each of its queries.
type Answered = (Duration, Vec<Vec<i64>>);

/// What a run over a file of queries measured.
#[derive(Debug, Clone, PartialEq)]
struct FileRun {
    queries: usize,
    seconds: f64,
    /// Per request.
    latencies: Vec<Duration>,
    /// Each query's ids, in the file's order.
    found: Vec<Vec<i64>>,
}

/// The share of the true nearest ids found (recall@k), over every query.
fn recall(found: &[Vec<i64>], truth: &[Vec<i64>]) -> f64 {
    let (mut hit, mut all) = (0usize, 0usize);
    for (f, t) in found.iter().zip(truth) {
        let t: std::collections::HashSet<i64> = t.iter().copied().collect();
        hit += f.iter().filter(|id| t.contains(id)).count();
        all += t.len();
    }
    if all == 0 {
        0.0
    } else {
        hit as f64 / all as f64
    }
}

/// `search --file`: every query of the file, `--concurrency` requests in
/// flight; prints throughput, latency and (with `--truth`) recall.
async fn search_file(args: &SearchArgs, path: &Path) -> Result<(), CliError> {
    if args.concurrency == 0 || args.batch == 0 {
        return Err(CliError::usage("--concurrency and --batch are at least 1"));
    }
    let proxy = Proxy::connect(&args.proxy, RPC_TIMEOUT).await?;
    let info = describe(&proxy, &args.collection)
        .await
        .map_err(|e| not_found_hint(e, &args.collection))?;
    let (_, dim) = schema_of(&info)?.vector_field();
    let requests = read_queries(path, dim, args.batch)?;
    let queries: usize = requests.iter().map(|r| r.values.len() / dim as usize).sum();
    let truth = match &args.truth {
        Some(t) => Some(read_truth(t, queries, args.top_k as usize)?),
        None => None,
    };
    let progress = std::sync::Mutex::new(Progress::counting(
        format!("search {:?}", args.collection),
        Some(queries as u64),
        "queries",
    ));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let answers: std::sync::Mutex<Vec<Option<Answered>>> =
        std::sync::Mutex::new(vec![None; requests.len()]);
    let started = Instant::now();
    let worker = || async {
        loop {
            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let Some(vectors) = requests.get(i) else {
                return Ok::<(), CliError>(());
            };
            let request = proto::SearchRequest {
                collection: args.collection.clone(),
                vectors: Some(vectors.clone()),
                top_k: args.top_k,
                consistency: args.consistency.wire(),
                timeout_ms: 0,
                ef: args.ef,
                filter: args.filter.clone(),
                output_fields: Vec::new(),
            };
            let sent = Instant::now();
            let answer = proxy
                .call(
                    &format!("search {:?}", args.collection),
                    |mut c| async move { c.search(request).await },
                )
                .await?;
            let took = sent.elapsed();
            let ids: Vec<Vec<i64>> = answer.results.into_iter().map(|h| h.ids).collect();
            let n = ids.len() as u64;
            lock(&answers)[i] = Some((took, ids));
            lock(&progress).add(n);
        }
    };
    futures::future::try_join_all((0..args.concurrency).map(|_| worker())).await?;
    let seconds = started.elapsed().as_secs_f64();
    lock(&progress).finish();
    let mut run = FileRun {
        queries,
        seconds,
        latencies: Vec::with_capacity(requests.len()),
        found: Vec::with_capacity(queries),
    };
    for (took, ids) in lock(&answers).drain(..).flatten() {
        run.latencies.push(took);
        run.found.extend(ids);
    }
    print_file_run(args, &run, truth.as_deref());
    Ok(())
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn print_file_run(args: &SearchArgs, run: &FileRun, truth: Option<&[Vec<i64>]>) {
    let mut sorted = run.latencies.clone();
    sorted.sort_unstable();
    let ms = |q: f64| {
        let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
        sorted.get(i).map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    let qps = run.queries as f64 / run.seconds.max(1e-9);
    let recall = truth.map(|t| recall(&run.found, t));
    match args.output.output {
        OutputFormat::Json => {
            let doc = json!({
                "queries": run.queries,
                "requests": run.latencies.len(),
                "concurrency": args.concurrency,
                "seconds": run.seconds,
                "qps": qps,
                "latency_ms": {"p50": ms(0.5), "p95": ms(0.95), "p99": ms(0.99), "max": ms(1.0)},
                "top_k": args.top_k,
                "recall": recall,
            });
            println!("{doc:#}");
        }
        OutputFormat::Table => {
            let mut table = Table::new(&[
                "QUERIES", "SECONDS", "QPS", "P50 MS", "P95 MS", "P99 MS", "MAX MS", "RECALL",
            ]);
            table.row(vec![
                run.queries.to_string(),
                format!("{:.2}", run.seconds),
                format!("{qps:.0}"),
                format!("{:.2}", ms(0.5)),
                format!("{:.2}", ms(0.95)),
                format!("{:.2}", ms(0.99)),
                format!("{:.2}", ms(1.0)),
                recall.map_or_else(|| "-".into(), |r| format!("{r:.4}")),
            ]);
            print!("{}", table.render());
        }
    }
}

/// The hits' primary keys, INT64 or VARCHAR.
fn hit_ids(hits: &proto::SearchHits) -> Vec<Key> {
    let ints = hits.ids.iter().copied().map(Key::Int);
    ints.chain(hits.string_ids.iter().cloned().map(Key::Str))
        .collect()
}

/// The filter `--ids` and `--filter` make together.
fn query_filter(primary_key: &str, ids: &[i64], filter: &str) -> String {
    if ids.is_empty() {
        return filter.to_owned();
    }
    let keys: Vec<String> = ids.iter().map(i64::to_string).collect();
    let by_id = format!("{primary_key} in [{}]", keys.join(", "));
    if filter.trim().is_empty() {
        by_id
    } else {
        format!("{by_id} and ({filter})")
    }
}

pub async fn query(args: QueryArgs) -> Result<(), CliError> {
    let proxy = Proxy::connect(&args.proxy, RPC_TIMEOUT).await?;
    let filter = if args.ids.is_empty() {
        args.filter.clone()
    } else {
        let info = describe(&proxy, &args.collection).await?;
        let schema = schema_of(&info)?;
        query_filter(&schema.primary_key().name, &args.ids, &args.filter)
    };
    let request = proto::QueryRequest {
        collection: args.collection.clone(),
        filter,
        output_fields: args.output_fields.clone(),
        limit: args.limit,
        offset: args.offset,
        consistency: args.consistency.wire(),
        timeout_ms: 0,
    };
    let answer = proxy
        .call(
            &format!("query {:?}", args.collection),
            |mut c| async move { c.query(request).await },
        )
        .await
        .map_err(|e| not_found_hint(e, &args.collection))?;
    let rows = answer.num_rows as usize;
    match args.output.output {
        OutputFormat::Json => {
            let rows: Vec<serde_json::Value> = (0..rows)
                .map(|row| {
                    let fields = answer
                        .columns
                        .iter()
                        .map(|c| (c.field_name.clone(), cell_json(c, row)))
                        .collect::<serde_json::Map<_, _>>();
                    serde_json::Value::Object(fields)
                })
                .collect();
            println!("{:#}", json!({"read_ts": answer.read_ts, "rows": rows}));
        }
        OutputFormat::Table => {
            let header: Vec<String> = answer
                .columns
                .iter()
                .map(|c| c.field_name.to_uppercase())
                .collect();
            let header: Vec<&str> = header.iter().map(String::as_str).collect();
            let mut table = Table::new(&header);
            for row in 0..rows {
                table.row(answer.columns.iter().map(|c| cell_text(c, row)).collect());
            }
            print!("{}", table.render());
            eprintln!("{rows} rows");
        }
    }
    Ok(())
}

/// One value of a wire column as JSON (`null` past its end).
fn cell_json(column: &proto::FieldData, row: usize) -> serde_json::Value {
    use proto::field_data::Data;
    match &column.data {
        Some(Data::Bools(a)) => json!(a.values.get(row)),
        Some(Data::Ints(a)) => json!(a.values.get(row)),
        Some(Data::Longs(a)) => json!(a.values.get(row)),
        Some(Data::Floats(a)) => json!(a.values.get(row)),
        Some(Data::Doubles(a)) => json!(a.values.get(row)),
        Some(Data::Strings(a)) => json!(a.values.get(row)),
        Some(Data::FloatVectors(a)) => match a.values.row(a.dim as usize, row) {
            Some(v) => json!(v.collect::<Vec<f32>>()),
            None => serde_json::Value::Null,
        },
        None => serde_json::Value::Null,
    }
}

/// One value of a wire column for a table: long vectors shortened.
fn cell_text(column: &proto::FieldData, row: usize) -> String {
    use proto::field_data::Data;
    const SHOWN: usize = 4;
    match (&column.data, cell_json(column, row)) {
        (Some(Data::FloatVectors(a)), serde_json::Value::Array(values)) => {
            let shown: Vec<String> = values.iter().take(SHOWN).map(ToString::to_string).collect();
            if values.len() > SHOWN {
                format!("[{}, … ({} floats)]", shown.join(", "), a.dim)
            } else {
                format!("[{}]", shown.join(", "))
            }
        }
        (_, serde_json::Value::String(s)) => s,
        (_, serde_json::Value::Null) => String::new(),
        (_, other) => other.to_string(),
    }
}

pub async fn count(args: CountArgs) -> Result<(), CliError> {
    let proxy = Proxy::connect(&args.proxy, RPC_TIMEOUT).await?;
    let request = proto::CountRequest {
        collection: args.collection.clone(),
        consistency: args.consistency.wire(),
        timeout_ms: 0,
        filter: args.filter.clone(),
    };
    let answer = proxy
        .call(
            &format!("count {:?}", args.collection),
            |mut c| async move { c.count(request).await },
        )
        .await
        .map_err(|e| not_found_hint(e, &args.collection))?;
    println!("{}", answer.rows);
    Ok(())
}

pub async fn load(args: LoadArgs, load: bool) -> Result<(), CliError> {
    let proxy = Proxy::connect(&args.proxy, RPC_TIMEOUT).await?;
    let collection = args.name.clone();
    if load {
        proxy
            .call(
                &format!("load collection {collection:?}"),
                |mut c| async move {
                    c.load_collection(proto::ProxyLoadCollectionRequest { collection })
                        .await
                },
            )
            .await
            .map_err(|e| not_found_hint(e, &args.name))?;
        println!(
            "loaded collection {:?}: searches see its rows now",
            args.name
        );
    } else {
        proxy
            .call(
                &format!("release collection {collection:?}"),
                |mut c| async move {
                    c.release_collection(proto::ProxyReleaseCollectionRequest { collection })
                        .await
                },
            )
            .await
            .map_err(|e| not_found_hint(e, &args.name))?;
        println!("released collection {:?}", args.name);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recall_is_the_share_of_true_neighbours_found() {
        let truth = vec![vec![1, 2], vec![3, 4]];
        assert_eq!(recall(&[vec![2, 1], vec![3, 9]], &truth), 0.75);
        assert_eq!(recall(&[vec![], vec![]], &truth), 0.0);
    }

    #[test]
    fn query_files_split_into_requests_and_truth_must_fit_them() {
        let dir = std::env::temp_dir().join(format!("ml-search-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let queries = dir.join("q.npy");
        let values: Vec<u8> = (0..10).flat_map(|x| (x as f32).to_le_bytes()).collect();
        std::fs::write(
            &queries,
            crate::cli::source::npy::encode("<f4", "(5, 2)", &values),
        )
        .expect("write");
        let requests = read_queries(&queries, 2, 2).expect("read");
        let sizes: Vec<usize> = requests.iter().map(|r| r.values.len()).collect();
        assert_eq!(sizes, [4, 4, 2], "5 queries in requests of 2");
        let e = read_queries(&queries, 3, 2).expect_err("wrong dimension");
        assert!(
            e.message.contains("the collection wants 3"),
            "{}",
            e.message
        );
        let truth = dir.join("t.npy");
        let ids: Vec<u8> = (0..15i64).flat_map(i64::to_le_bytes).collect();
        std::fs::write(
            &truth,
            crate::cli::source::npy::encode("<i8", "(5, 3)", &ids),
        )
        .expect("write");
        assert_eq!(read_truth(&truth, 5, 2).expect("truth")[1], [3, 4]);
        let e = read_truth(&truth, 5, 4).expect_err("too few ids");
        assert!(e.message.contains("at least 4"), "{}", e.message);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn ids_become_a_filter_joined_to_the_given_one() {
        assert_eq!(query_filter("pk", &[], "a > 1"), "a > 1");
        assert_eq!(query_filter("pk", &[3, -1], ""), "pk in [3, -1]");
        assert_eq!(
            query_filter("pk", &[3], "a > 1 or b"),
            "pk in [3] and (a > 1 or b)"
        );
    }

    #[test]
    fn cells_show_every_type() {
        let long = proto::FieldData {
            field_name: "n".into(),
            data: Some(proto::field_data::Data::Longs(proto::LongArray {
                values: vec![7, 8],
            })),
        };
        assert_eq!(cell_text(&long, 1), "8");
        assert_eq!(cell_json(&long, 2), serde_json::Value::Null);
        let text = proto::FieldData {
            field_name: "s".into(),
            data: Some(proto::field_data::Data::Strings(proto::StringArray {
                values: vec!["a b".into()],
            })),
        };
        assert_eq!(cell_text(&text, 0), "a b");
        let vectors = proto::FieldData {
            field_name: "v".into(),
            data: Some(proto::field_data::Data::FloatVectors(FloatVectorArray {
                dim: 5,
                values: vec![1.0, 2.0, 3.0, 4.0, 5.0].into(),
            })),
        };
        assert_eq!(cell_text(&vectors, 0), "[1.0, 2.0, 3.0, 4.0, … (5 floats)]");
        assert_eq!(cell_json(&vectors, 0), json!([1.0, 2.0, 3.0, 4.0, 5.0]));
    }

    #[test]
    fn vectors_parse_and_must_share_a_dimension() {
        let v = parse_vectors(&["1, 2,-3".into(), "0,0,0.5".into()]).expect("accepted");
        assert_eq!(v.dim, 3);
        assert_eq!(v.values.to_vec(), [1.0, 2.0, -3.0, 0.0, 0.0, 0.5]);
        let e = parse_vectors(&["1,2".into(), "1,2,3".into()]).expect_err("refused");
        assert!(
            e.message.contains("--vector 2 has 3 floats"),
            "{}",
            e.message
        );
        let e = parse_vectors(&["1,x".into()]).expect_err("refused");
        assert!(
            e.message.contains("\"x\" is not a finite number"),
            "{}",
            e.message
        );
        assert!(parse_vectors(&["nan".into()]).is_err());
    }
}
