//! Our HNSW index (`milvus_like_node::index`, the graph query nodes search) in
//! process, with each engine this build has (USearch, then `hnsw_rs`), on one
//! synthetic data set, written so that `tests/bench/hnsw.sh` runs
//! hnswlib (and FAISS) on the very same vectors, queries and parameters in the
//! same run (docs/benchmarks.md "Vector index").
//!
//! Data: `--rows` vectors of `--dim` floats around 256 random centres (Gaussian,
//! sigma 0.15; uniform data has no neighbourhoods and no index does well on it),
//! `--queries` more from the same mixture. The exact top-10 of each query (L2) is
//! computed by brute force. Then the index is built on `--threads` threads
//! (timed), and for each ef of `--efs` the queries are searched on one thread and
//! on `--threads` threads: queries per second and recall@10.
//!
//! Writes `data.f32`, `queries.f32` (little-endian rows) and `truth.i64` (10 ids
//! per query) into `--dir`, and prints one JSON object per line:
//! `{"side":..,"build_s":..}` then `{"side":..,"ef":..,"recall":..,"qps_1":..,"qps_n":..}`.
//!
//! ```text
//! hnsw_bench [--rows 100000] [--dim 128] [--queries 500] [--m 16]
//!            [--ef-construction 200] [--efs 16,32,64,128,256] [--threads 2]
//!            [--engines usearch,hnsw_rs] [--data-only] --dir DIR
//! ```

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail};
use milvus_like_api::schema::Metric;
use milvus_like_api::vectors::Floats;
use milvus_like_node::index::{Engine, HnswIndex, HnswParams};
use rayon::prelude::*;

const K: usize = 10;

struct Options {
    rows: usize,
    dim: usize,
    queries: usize,
    m: u32,
    ef_construction: u32,
    efs: Vec<usize>,
    threads: usize,
    dir: PathBuf,
    /// Write the data, queries and truth, build nothing (tests/bench/search.sh).
    data_only: bool,
    /// The engines measured (default: every one this build has).
    engines: Vec<Engine>,
}

fn options() -> anyhow::Result<Options> {
    let mut o = Options {
        rows: 100_000,
        dim: 128,
        queries: 500,
        m: 16,
        ef_construction: 200,
        efs: vec![16, 32, 64, 128, 256],
        threads: 2,
        dir: PathBuf::new(),
        data_only: false,
        engines: Engine::built_in(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--data-only" {
            o.data_only = true;
            continue;
        }
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        let number = || {
            value
                .parse::<usize>()
                .with_context(|| format!("{flag} {value}"))
        };
        match flag.as_str() {
            "--rows" => o.rows = number()?,
            "--dim" => o.dim = number()?,
            "--queries" => o.queries = number()?,
            "--m" => o.m = u32::try_from(number()?)?,
            "--ef-construction" => o.ef_construction = u32::try_from(number()?)?,
            "--threads" => o.threads = number()?.max(1),
            "--efs" => {
                o.efs = value
                    .split(',')
                    .map(|s| s.trim().parse())
                    .collect::<Result<_, _>>()
                    .with_context(|| format!("--efs {value}"))?;
            }
            "--dir" => o.dir = PathBuf::from(&value),
            "--engines" => {
                o.engines = value
                    .split(',')
                    .map(|name| {
                        Engine::built_in()
                            .into_iter()
                            .find(|e| e.name() == name.trim())
                            .with_context(|| format!("--engines: this build has no engine {name}"))
                    })
                    .collect::<Result<_, _>>()?;
            }
            other => bail!("unknown flag {other}"),
        }
    }
    if o.dir.as_os_str().is_empty() {
        bail!("--dir is required");
    }
    Ok(o)
}

/// splitmix64 stream: uniform u64s.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box-Muller).
    fn normal(&mut self) -> f64 {
        let u = self.unit().max(f64::MIN_POSITIVE);
        let v = self.unit();
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

fn mixture(rows: usize, dim: usize, centres: &[f32], rng: &mut Rng) -> Vec<f32> {
    let n = centres.len() / dim;
    let mut out = Vec::with_capacity(rows * dim);
    for _ in 0..rows {
        let c = (rng.next() % n as u64) as usize;
        for j in 0..dim {
            out.push(centres[c * dim + j] + (0.15 * rng.normal()) as f32);
        }
    }
    out
}

fn l2(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

fn exact(data: &[f32], q: &[f32], dim: usize) -> Vec<i64> {
    let mut all: Vec<(f32, usize)> = data
        .chunks_exact(dim)
        .enumerate()
        .map(|(i, v)| (l2(q, v), i))
        .collect();
    all.select_nth_unstable_by(K - 1, |a, b| a.0.total_cmp(&b.0));
    all.truncate(K);
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    all.into_iter().map(|(_, i)| i as i64).collect()
}

fn write_f32(path: &std::path::Path, values: &[f32]) -> anyhow::Result<()> {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(path, bytes).with_context(|| format!("write {}", path.display()))
}

fn main() -> anyhow::Result<()> {
    let o = options()?;
    std::fs::create_dir_all(&o.dir)?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(o.threads)
        .build()?;
    let mut rng = Rng(0x5eed);
    let centres: Vec<f32> = (0..256 * o.dim)
        .map(|_| (rng.unit() * 2.0 - 1.0) as f32)
        .collect();
    let data = mixture(o.rows, o.dim, &centres, &mut rng);
    let queries = mixture(o.queries, o.dim, &centres, &mut rng);
    eprintln!(
        "{} x {}-d vectors, {} queries: exact top-{K}...",
        o.rows, o.dim, o.queries
    );
    let truth: Vec<Vec<i64>> = pool.install(|| {
        queries
            .par_chunks_exact(o.dim)
            .map(|q| exact(&data, q, o.dim))
            .collect()
    });
    write_f32(&o.dir.join("data.f32"), &data)?;
    write_f32(&o.dir.join("queries.f32"), &queries)?;
    let truth_bytes: Vec<u8> = truth
        .iter()
        .flatten()
        .flat_map(|i| i.to_le_bytes())
        .collect();
    std::fs::write(o.dir.join("truth.i64"), truth_bytes)?;
    if o.data_only {
        return Ok(());
    }

    let floats = Floats::from(data);
    let params = HnswParams {
        m: o.m,
        ef_construction: o.ef_construction,
    };
    for &engine in &o.engines {
        measure(engine, &o, &pool, &floats, params, &queries, &truth)?;
    }
    Ok(())
}

/// Builds `engine`'s graph of `floats` and searches `queries` at every ef.
fn measure(
    engine: Engine,
    o: &Options,
    pool: &rayon::ThreadPool,
    floats: &Floats,
    params: HnswParams,
    queries: &[f32],
    truth: &[Vec<i64>],
) -> anyhow::Result<()> {
    let side = format!("milvus-like ({engine})");
    eprintln!(
        "{engine}: building (M {}, efConstruction {}, {} threads)...",
        o.m, o.ef_construction, o.threads
    );
    let started = Instant::now();
    let index = pool
        .install(|| HnswIndex::build_with(engine, Metric::L2, o.dim, floats, params, &|| false))?;
    let build_s = started.elapsed().as_secs_f64();
    println!("{{\"side\":\"{side}\",\"build_s\":{build_s:.3}}}");
    let query_rows: Vec<&[f32]> = queries.chunks_exact(o.dim).collect();
    for &ef in &o.efs {
        let started = Instant::now();
        let found: Vec<Vec<(usize, f32)>> = query_rows
            .iter()
            .map(|q| index.search(q, K, ef, None))
            .collect::<Result<_, _>>()?;
        let qps_1 = query_rows.len() as f64 / started.elapsed().as_secs_f64();
        let started = Instant::now();
        let again: Vec<Vec<(usize, f32)>> = pool.install(|| {
            query_rows
                .par_iter()
                .map(|q| index.search(q, K, ef, None))
                .collect::<Result<_, _>>()
        })?;
        let qps_n = query_rows.len() as f64 / started.elapsed().as_secs_f64();
        if again != found {
            bail!(
                "searching on {} threads gave other answers than on one",
                o.threads
            );
        }
        let hits: usize = found
            .iter()
            .zip(truth)
            .map(|(got, want)| {
                got.iter()
                    .filter(|(row, _)| want.contains(&(*row as i64)))
                    .count()
            })
            .sum();
        let recall = hits as f64 / (truth.len() * K) as f64;
        println!(
            "{{\"side\":\"{side}\",\"ef\":{ef},\"recall\":{recall:.4},\"qps_1\":{qps_1:.1},\"qps_n\":{qps_n:.1}}}"
        );
    }
    Ok(())
}
