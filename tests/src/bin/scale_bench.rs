//! Scale benchmark: how ingest throughput, latency, memory and CPU grow with the
//! channels, the data nodes and the collections, distributed and standalone.
//!
//! Sweeps, one point after the other, each point on a fresh cluster (or a fresh
//! `milvus-like standalone` on a fresh data directory):
//! - `channels`: `--channels` data coordinator channels (default 1, 3, 6, 12), one
//!   data node, one collection; distributed and standalone;
//! - `datanodes`: `--datanodes` data nodes (default 1, 2, 3) sharing
//!   `--datanode-channels` (6) channels, one collection; distributed only;
//! - `collections`: `--collections` collections (default 1, 10, 100) over 3
//!   channels, one data node; distributed and standalone.
//!
//! Each point: create the collections, warm up (`--warmup-rows` rows into a
//! collection of their own, then `Flush(wait)`: the broker's JIT and every
//! process's allocations settle before the clock runs), `sync(1)`, then `--clients`
//! tasks insert `--rows` rows, batch `b` of `--batch` rows into collection
//! `b % collections`, and every collection is flushed (`Flush(wait)`, all at once)
//! right after the last acknowledgement. Measured:
//! - `insert_rows_per_s`: first send to last acknowledgement; `durable_rows_per_s`:
//!   first send until every collection's flush returned (every row in a committed
//!   segment); the committed rows must equal the acknowledged ones;
//! - request latency p50/p99 (client side), the flush's wait;
//! - peak RSS (sampled every 100 ms, and VmHWM) of the largest data node and of the
//!   proxy (standalone: the one process);
//! - CPU seconds of each process (broker, proxy, data nodes, coordinators, the
//!   benchmark's own clients) over the insert and the flush, to show what runs out.
//!
//! Prints one `point:` line per point and a markdown table on stdout (progress on
//! stderr), and writes every point to `--csv`; `tests/bench/plot_scale.py` draws
//! the curves from that file.
//!
//! ```text
//! cargo build --release --bins
//! target/release/scale_bench --csv target/bench/scale.csv
//! ```
//!
//! `tests/bench/scale.sh` builds, runs, keeps the output and draws the plots.

#![forbid(unsafe_code)]

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use milvus_like_api::proto;
use milvus_like_api::proto::data_coord_client::DataCoordClient;
use milvus_like_api::proto::proxy_client::ProxyClient;
use milvus_like_api::schema::CollectionSchema;
use milvus_like_tests::load::{self, InsertLoad, Inserted, ROW_BYTES};
use milvus_like_tests::measure::{
    CpuUse, RssSampler, cpu_seconds, number_flag, run_until_signal, settle, warm_memory,
};
use milvus_like_tests::{
    ClusterBuilder, StandaloneProcess, TestDir, committed_rows, create_collection, flush, mean_ms,
    scrape,
};
use tonic::transport::Channel;

const MIB: f64 = 1024.0 * 1024.0;

const USAGE: &str = "\
usage: scale_bench [--rows 1000000] [--clients 4] [--batch 10000]
                   [--warmup-rows 200000] [--memory-mib 256]
                   [--channels 1,3,6,12] [--datanodes 1,2,3]
                   [--datanode-channels 6] [--collections 1,10,100]
                   [--modes distributed,standalone] [--repeat 1] [--csv PATH]

  --rows               rows inserted at each point
  --clients, --batch   concurrent insert tasks (one gRPC connection), rows per
                       request
  --warmup-rows        rows inserted and flushed into a collection of their own
                       before each point is measured
  --memory-mib         each data node's --memory-mib (flush thresholds are high:
                       memory governs flushes, as in ingest_bench)
  --channels           the channel sweep (one data node, one collection)
  --datanodes          the data node sweep (distributed only) over
                       --datanode-channels channels
  --collections        the collection sweep, over 3 channels
  --modes              which of distributed and standalone run
  --repeat             rounds over every point (each round measures every point
                       once, in order); the table shows each point's median round
  --csv                also write every point to this file

An empty list skips its sweep. Prints `point:` lines and a markdown table on
stdout, progress on stderr. Set MILVUS_LIKE_BIN to choose the node binary
(default: milvus-like next to this executable).";

#[derive(Debug, Clone)]
struct Options {
    rows: u64,
    clients: usize,
    batch: usize,
    warmup_rows: u64,
    memory_mib: u64,
    channels: Vec<u32>,
    datanodes: Vec<usize>,
    datanode_channels: u32,
    collections: Vec<usize>,
    distributed: bool,
    standalone: bool,
    repeat: usize,
    csv: Option<std::path::PathBuf>,
}

impl Options {
    fn parse(mut args: impl Iterator<Item = String>) -> anyhow::Result<Self> {
        let mut o = Self {
            rows: 1_000_000,
            clients: 4,
            batch: 10_000,
            warmup_rows: 200_000,
            memory_mib: 256,
            channels: vec![1, 3, 6, 12],
            datanodes: vec![1, 2, 3],
            datanode_channels: 6,
            collections: vec![1, 10, 100],
            distributed: true,
            standalone: true,
            repeat: 1,
            csv: None,
        };
        fn list<T: std::str::FromStr>(flag: &str, value: &str) -> anyhow::Result<Vec<T>> {
            value
                .split(',')
                .filter(|v| !v.is_empty())
                .map(|v| {
                    v.parse()
                        .map_err(|_| anyhow::anyhow!("bad number {v:?} in {flag}"))
                })
                .collect()
        }
        while let Some(flag) = args.next() {
            if matches!(flag.as_str(), "-h" | "--help") {
                println!("{USAGE}");
                std::process::exit(0);
            }
            let value = args
                .next()
                .with_context(|| format!("{flag} needs a value\n{USAGE}"))?;
            let num = || number_flag(&flag, &value);
            match flag.as_str() {
                "--rows" => o.rows = num()?,
                "--clients" => o.clients = usize::try_from(num()?)?,
                "--batch" => o.batch = usize::try_from(num()?)?,
                "--warmup-rows" => o.warmup_rows = num()?,
                "--memory-mib" => o.memory_mib = num()?,
                "--channels" => o.channels = list(&flag, &value)?,
                "--datanodes" => o.datanodes = list(&flag, &value)?,
                "--datanode-channels" => o.datanode_channels = u32::try_from(num()?)?,
                "--collections" => o.collections = list(&flag, &value)?,
                "--modes" => {
                    let modes: Vec<&str> = value.split(',').collect();
                    for m in &modes {
                        ensure!(
                            matches!(*m, "distributed" | "standalone"),
                            "unknown mode {m:?} in --modes"
                        );
                    }
                    o.distributed = modes.contains(&"distributed");
                    o.standalone = modes.contains(&"standalone");
                }
                "--repeat" => o.repeat = usize::try_from(num()?)?,
                "--csv" => o.csv = Some(value.into()),
                _ => bail!("unknown flag {flag}\n{USAGE}"),
            }
        }
        ensure!(
            o.rows > 0 && o.clients > 0 && o.batch > 0 && o.repeat > 0,
            "--rows, --clients, --batch and --repeat must be positive"
        );
        ensure!(
            o.channels.iter().all(|&c| c > 0)
                && o.datanodes.iter().all(|&d| d > 0)
                && o.collections.iter().all(|&c| c > 0)
                && o.datanode_channels > 0,
            "every channel, data node and collection count must be positive"
        );
        Ok(o)
    }

    /// Every point to measure, in order.
    fn points(&self) -> Vec<Point> {
        let mut points = Vec::new();
        let modes = [
            (Mode::Distributed, self.distributed),
            (Mode::Standalone, self.standalone),
        ];
        for (mode, on) in modes {
            if !on {
                continue;
            }
            let point = |sweep, channels, datanodes, collections| Point {
                mode,
                sweep,
                channels,
                datanodes,
                collections,
            };
            for &c in &self.channels {
                points.push(point("channels", c, 1, 1));
            }
            if mode == Mode::Distributed {
                for &d in &self.datanodes {
                    points.push(point("datanodes", self.datanode_channels, d, 1));
                }
            }
            for &n in &self.collections {
                points.push(point("collections", 3, 1, n));
            }
        }
        points
    }

    /// The data node's flags: memory governs flushes.
    fn datanode_args(&self) -> Vec<String> {
        vec![
            format!("--memory-mib={}", self.memory_mib),
            "--flush-rows=10000000".into(),
            "--flush-mib=1024".into(),
            "--flush-age=600s".into(),
        ]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Distributed,
    Standalone,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Distributed => "distributed",
            Mode::Standalone => "standalone",
        }
    }
}

/// One configuration to measure; `sweep` names the figure it belongs to.
#[derive(Debug, Clone, Copy)]
struct Point {
    mode: Mode,
    sweep: &'static str,
    channels: u32,
    datanodes: usize,
    collections: usize,
}

/// What one point measured.
#[derive(Debug)]
struct Measured {
    point: Point,
    /// Which round of `--repeat` (from 1).
    round: usize,
    insert: Inserted,
    /// From the last acknowledgement until every collection's flush returned.
    flush: Duration,
    segments: usize,
    /// Peak RSS (max of sampled VmRSS and VmHWM) of the largest data node, and of
    /// the proxy; standalone: both are the one process.
    datanode_rss_mib: f64,
    proxy_rss_mib: f64,
    /// The proxy's mean time per Insert and per produce (its own histograms).
    proxy_insert_ms: f64,
    proxy_produce_ms: f64,
    /// CPU seconds over the insert and the flush, per process kind.
    cpu: Vec<(String, f64)>,
}

impl Measured {
    fn durable_rows_per_s(&self) -> f64 {
        self.insert.rows as f64 / (self.insert.elapsed + self.flush).as_secs_f64()
    }

    /// CPU seconds of the processes of kind `name`; `None` when the point has none.
    fn cpu_of(&self, name: &str) -> Option<f64> {
        self.cpu
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, s)| *s)
            .reduce(|a, b| a + b)
    }

    fn cpu_total(&self) -> f64 {
        self.cpu.iter().fold(0.0, |a, (_, s)| a + s)
    }

    /// CPU seconds of kind `name` per GiB of client payload, for the table (`-`
    /// when the point has no such process).
    fn cpu_per_gib(&self, name: &str) -> String {
        let gib = (self.insert.rows * ROW_BYTES) as f64 / MIB / 1024.0;
        match self.cpu_of(name) {
            Some(s) => format!("{:.1}", s / gib),
            None => "-".into(),
        }
    }

    const CSV_HEADER: &'static str = "round,mode,sweep,channels,datanodes,collections,rows,insert_secs,insert_rows_per_s,insert_mib_per_s,durable_rows_per_s,flush_secs,latency_p50_ms,latency_p99_ms,proxy_insert_ms,proxy_produce_ms,segments,datanode_rss_mib,proxy_rss_mib,cpu_broker_s,cpu_proxy_s,cpu_datanode_s,cpu_coordinators_s,cpu_standalone_s,cpu_clients_s,cpu_total_s";

    fn csv(&self) -> String {
        let p = &self.point;
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let cpu = |name| {
            self.cpu_of(name)
                .map(|s| format!("{s:.2}"))
                .unwrap_or_default()
        };
        format!(
            "{},{},{},{},{},{},{},{:.3},{:.0},{:.1},{:.0},{:.3},{:.1},{:.1},{:.1},{:.1},{},{:.1},{:.1},{},{},{},{},{},{},{:.2}",
            self.round,
            p.mode.name(),
            p.sweep,
            p.channels,
            p.datanodes,
            p.collections,
            self.insert.rows,
            self.insert.elapsed.as_secs_f64(),
            self.insert.rows_per_s(),
            self.insert.mib_per_s(),
            self.durable_rows_per_s(),
            self.flush.as_secs_f64(),
            ms(self.insert.latency(0.5)),
            ms(self.insert.latency(0.99)),
            self.proxy_insert_ms,
            self.proxy_produce_ms,
            self.segments,
            self.datanode_rss_mib,
            self.proxy_rss_mib,
            cpu("broker"),
            cpu("proxy"),
            cpu("datanode"),
            cpu("coordinators"),
            cpu("standalone"),
            cpu("clients"),
            self.cpu_total(),
        )
    }

    /// `point: key=value ...`, the same figures as the CSV row (without the CPU
    /// of kinds the point has none of).
    fn summary(&self) -> String {
        let keys = Self::CSV_HEADER.split(',');
        let line = self.csv();
        let mut out = String::from("point:");
        for (k, v) in keys.zip(line.split(',')).filter(|(_, v)| !v.is_empty()) {
            let _ = write!(out, " {k}={v}");
        }
        out
    }
}

/// The collections of a point: `c0`, `c1`, ...
fn collection_names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("c{i}")).collect()
}

/// The peak of an [`RssSampler`] in MiB.
fn peak_mib(sampler: RssSampler) -> f64 {
    let (max, hwm) = sampler.finish();
    max.max(hwm) as f64 / 1024.0
}

/// What a point's processes are, to its measuring code.
struct Target<'a> {
    proxy: ProxyClient<Channel>,
    /// The proxy again, for [`load::insert`].
    proxy_channel: Channel,
    datacoord: DataCoordClient<Channel>,
    proxy_http: u16,
    /// `(kind, pid)` of every process whose CPU time counts.
    cpu: Vec<(String, Option<u32>)>,
    datanode_pids: Vec<u32>,
    proxy_pid: Option<u32>,
    /// The tail of the logs, for an error.
    logs: &'a dyn Fn() -> String,
}

/// Creates the collections, warms up, then measures `opts.rows` inserted and
/// flushed.
async fn measure(
    point: Point,
    round: usize,
    target: Target<'_>,
    opts: &Options,
) -> anyhow::Result<Measured> {
    let with_logs = |e: anyhow::Error| anyhow::anyhow!("{e:#}; logs:\n{}", (target.logs)());
    let names = collection_names(point.collections);
    let mut ids = Vec::new();
    let mut schema: Option<CollectionSchema> = None;
    for name in names.iter().chain(std::iter::once(&"warmup".to_owned())) {
        let (info, s) = create_collection(&target.proxy, name, load::DIM as u32)
            .await
            .map_err(with_logs)?;
        if name != "warmup" {
            ids.push(info.id);
        }
        schema = Some(s);
    }
    let schema = schema.context("no collection")?;
    if opts.warmup_rows > 0 {
        eprintln!("  warm-up: {} rows", opts.warmup_rows);
        let warmup = InsertLoad {
            collections: vec!["warmup".into()],
            clients: opts.clients,
            batch: opts.batch,
            first_pk: 1 << 40,
            rows: opts.warmup_rows,
        };
        load::insert(&target.proxy_channel, &schema, &warmup)
            .await
            .map_err(with_logs)?;
        flush(&target.proxy, "warmup")
            .await
            .map_err(|s| with_logs(anyhow::anyhow!("flush warmup: {s}")))?;
    }
    settle()?;

    let cpu = CpuUse::start(&target.cpu);
    let datanode_rss: Vec<RssSampler> = target
        .datanode_pids
        .iter()
        .map(|&p| RssSampler::start(p))
        .collect();
    let proxy_rss = target.proxy_pid.map(RssSampler::start);
    let before = scrape(target.proxy_http).await;
    eprintln!(
        "  insert: {} rows into {} collection(s), {} clients",
        opts.rows, point.collections, opts.clients
    );
    let load = InsertLoad {
        collections: names.clone(),
        clients: opts.clients,
        batch: opts.batch,
        first_pk: 0,
        rows: opts.rows,
    };
    let inserted = load::insert(&target.proxy_channel, &schema, &load)
        .await
        .map_err(with_logs)?;
    let acked = Instant::now();
    let flushes = names.iter().map(|name| flush(&target.proxy, name));
    for (name, result) in names.iter().zip(futures::future::join_all(flushes).await) {
        result.map_err(|s| with_logs(anyhow::anyhow!("flush {name}: {s}")))?;
    }
    let flushed = acked.elapsed();
    let cpu = cpu.by_name();
    let after = scrape(target.proxy_http).await;
    let datanode_rss_mib = datanode_rss.into_iter().map(peak_mib).fold(0.0, f64::max);
    let proxy_rss_mib = proxy_rss.map(peak_mib).unwrap_or(f64::NAN);

    let mut committed = 0;
    let mut segments = 0;
    for &id in &ids {
        committed += committed_rows(&target.datacoord, id).await?;
        segments += target
            .datacoord
            .clone()
            .list_segments(proto::ListSegmentsRequest { collection_id: id })
            .await
            .context("list segments")?
            .into_inner()
            .segments
            .len();
    }
    ensure!(
        committed == opts.rows,
        "Flush(wait) returned with {committed} rows committed, {} acknowledged",
        opts.rows
    );
    // The histograms' change over the measured insert.
    let delta = |name: &str| {
        let labels: &[(&str, &str)] = if name == "proxy_rpc_seconds" {
            &[("method", "Insert")]
        } else {
            &[]
        };
        let part = |samples: &[milvus_like_tests::Sample], suffix: &str| {
            milvus_like_tests::metric_sum_where(samples, &format!("{name}_{suffix}"), labels)
                .unwrap_or(0.0)
        };
        let sum = part(&after, "sum") - part(&before, "sum");
        let count = part(&after, "count") - part(&before, "count");
        if count > 0.0 {
            sum * 1e3 / count
        } else {
            mean_ms(&after, name, labels)
        }
    };
    Ok(Measured {
        point,
        round,
        insert: inserted,
        flush: flushed,
        segments,
        datanode_rss_mib,
        proxy_rss_mib,
        proxy_insert_ms: delta("proxy_rpc_seconds"),
        proxy_produce_ms: delta("proxy_produce_seconds"),
        cpu,
    })
}

/// A point on a fresh distributed cluster.
async fn distributed(point: Point, round: usize, opts: &Options) -> anyhow::Result<Measured> {
    let args = opts.datanode_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let cluster = ClusterBuilder::new("scale-bench")
        .meta_root("bench")
        .ttl("10s")
        .kafka()
        .topic_prefix("scale")
        .channels(point.channels)
        .datanodes(point.datanodes)
        .datanode_args(&args)
        .proxy()
        .build()
        .await?;
    let mut cpu = vec![
        ("broker".to_owned(), cluster.kafka().pid()),
        ("proxy".to_owned(), cluster.proxy().process.pid()),
        ("coordinators".to_owned(), cluster.rootcoord.process.pid()),
        ("coordinators".to_owned(), cluster.datacoord().process.pid()),
        ("clients".to_owned(), Some(std::process::id())),
    ];
    let datanode_pids: Vec<u32> = cluster
        .datanodes
        .iter()
        .filter_map(|d| d.process.pid())
        .collect();
    cpu.extend(
        datanode_pids
            .iter()
            .map(|&p| ("datanode".to_owned(), Some(p))),
    );
    let logs = || {
        let mut out = format!("datacoord:\n{}", cluster.datacoord().process.log());
        let _ = write!(out, "\nproxy:\n{}", cluster.proxy().process.log());
        for dn in &cluster.datanodes {
            let _ = write!(out, "\n{}:\n{}", dn.name(), dn.process.log());
        }
        out
    };
    let target = Target {
        proxy: cluster.proxy_client(),
        proxy_channel: cluster.proxy_channel(),
        datacoord: cluster.datacoord_client(),
        proxy_http: cluster.proxy().ports.http,
        cpu,
        datanode_pids,
        proxy_pid: cluster.proxy().process.pid(),
        logs: &logs,
    };
    measure(point, round, target, opts).await
}

/// A point on a fresh `milvus-like standalone`.
async fn standalone(point: Point, round: usize, opts: &Options) -> anyhow::Result<Measured> {
    let dir = TestDir::new("scale-bench-standalone");
    let mut args = opts.datanode_args();
    args.push(format!("--channels={}", point.channels));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let sa = StandaloneProcess::start_in(dir.path(), &args)?;
    sa.wait_ready()
        .await
        .with_context(|| format!("standalone log:\n{}", sa.process.log()))?;
    let pid = sa.process.pid();
    let logs = || sa.process.log();
    let target = Target {
        proxy: sa.proxy_client(),
        proxy_channel: sa.proxy_channel(),
        datacoord: sa.datacoord_client(),
        proxy_http: sa.ports.proxy.http,
        cpu: vec![
            ("standalone".to_owned(), pid),
            ("clients".to_owned(), Some(std::process::id())),
        ],
        datanode_pids: pid.into_iter().collect(),
        proxy_pid: pid,
        logs: &logs,
    };
    measure(point, round, target, opts).await
}

/// The round whose durable rows/s is the median (the upper one for an even count).
fn median_round(mut rounds: Vec<&Measured>) -> &Measured {
    rounds.sort_by(|a, b| a.durable_rows_per_s().total_cmp(&b.durable_rows_per_s()));
    rounds[rounds.len() / 2]
}

fn table(results: &[&Measured]) -> String {
    let mut out = String::from(
        "| mode | sweep | channels | data nodes | collections | insert rows/s | durable rows/s | p50 / p99 ms | flush s | segments | data node RSS MiB | CPU s/GiB (broker, proxy, data nodes, standalone, clients) |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for m in results {
        let p = &m.point;
        let ms = |q| m.insert.latency(q).as_secs_f64() * 1e3;
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {:.0} | {:.0} | {:.0} / {:.0} | {:.2} | {} | {:.0} | {}, {}, {}, {}, {} |",
            p.mode.name(),
            p.sweep,
            p.channels,
            p.datanodes,
            p.collections,
            m.insert.rows_per_s(),
            m.durable_rows_per_s(),
            ms(0.5),
            ms(0.99),
            m.flush.as_secs_f64(),
            m.segments,
            m.datanode_rss_mib,
            m.cpu_per_gib("broker"),
            m.cpu_per_gib("proxy"),
            m.cpu_per_gib("datanode"),
            m.cpu_per_gib("standalone"),
            m.cpu_per_gib("clients"),
        );
    }
    out
}

async fn bench(opts: Options) -> anyhow::Result<()> {
    let points = opts.points();
    ensure!(!points.is_empty(), "every sweep is empty");
    eprintln!("touching the machine's free memory once (see measure::warm_memory)");
    let touched = warm_memory()?;
    eprintln!("  {} MiB touched", touched >> 20);
    let mut csv = opts
        .csv
        .as_ref()
        .map(|path| -> anyhow::Result<std::fs::File> {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            let mut f = std::fs::File::create(path)
                .with_context(|| format!("create {}", path.display()))?;
            use std::io::Write as _;
            writeln!(f, "{}", Measured::CSV_HEADER)?;
            Ok(f)
        })
        .transpose()?;
    let clients_cpu = cpu_seconds(std::process::id());
    // rounds[r][i]: point i measured in round r.
    let mut rounds: Vec<Vec<Measured>> = Vec::new();
    let total = points.len() * opts.repeat;
    for round in 1..=opts.repeat {
        let mut measured_round = Vec::new();
        for &point in &points {
            eprintln!(
                "[{}/{total}] round {round}: {} {}: channels={} datanodes={} collections={}",
                (round - 1) * points.len() + measured_round.len() + 1,
                point.mode.name(),
                point.sweep,
                point.channels,
                point.datanodes,
                point.collections
            );
            let started = Instant::now();
            let measured = match point.mode {
                Mode::Distributed => distributed(point, round, &opts).await,
                Mode::Standalone => standalone(point, round, &opts).await,
            }
            .with_context(|| format!("point {point:?}, round {round}"))?;
            println!("{}", measured.summary());
            eprintln!(
                "  {:.0} rows/s inserted, {:.0} rows/s durable ({:.0} s for the point)",
                measured.insert.rows_per_s(),
                measured.durable_rows_per_s(),
                started.elapsed().as_secs_f64()
            );
            if let Some(f) = csv.as_mut() {
                use std::io::Write as _;
                writeln!(f, "{}", measured.csv())?;
                f.flush()?;
            }
            measured_round.push(measured);
        }
        rounds.push(measured_round);
    }
    if let (Some(before), Some(after)) = (clients_cpu, cpu_seconds(std::process::id())) {
        eprintln!("benchmark process: {:.1} CPU s in all", after - before);
    }
    let results: Vec<&Measured> = (0..points.len())
        .map(|i| median_round(rounds.iter().map(|r| &r[i]).collect()))
        .collect();
    println!("\n{}", table(&results));
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let opts = Options::parse(std::env::args().skip(1))?;
    run_until_signal(bench(opts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_sweeps_are_seventeen_points() {
        let o = Options::parse(std::iter::empty()).expect("the defaults parse");
        let points = o.points();
        assert_eq!(points.len(), 17);
        let standalone_datanodes = points
            .iter()
            .filter(|p| p.mode == Mode::Standalone && p.sweep == "datanodes")
            .count();
        assert_eq!(standalone_datanodes, 0, "standalone has one data node");
    }

    #[test]
    fn an_empty_list_skips_its_sweep() {
        let args = ["--channels", "", "--datanodes", "", "--modes", "standalone"];
        let o = Options::parse(args.iter().map(|s| (*s).to_owned())).expect("the flags parse");
        let sweeps: Vec<&str> = o.points().iter().map(|p| p.sweep).collect();
        assert_eq!(sweeps, ["collections"; 3]);
    }

    #[test]
    fn summary_names_every_csv_column() {
        let m = Measured {
            round: 1,
            point: Point {
                mode: Mode::Distributed,
                sweep: "channels",
                channels: 3,
                datanodes: 1,
                collections: 1,
            },
            insert: Inserted {
                rows: 10,
                elapsed: Duration::from_secs(1),
                latencies: vec![Duration::from_millis(5)],
            },
            flush: Duration::from_secs(1),
            segments: 3,
            datanode_rss_mib: 100.0,
            proxy_rss_mib: 50.0,
            proxy_insert_ms: 1.0,
            proxy_produce_ms: 1.0,
            cpu: vec![("proxy".into(), 1.5)],
        };
        let columns = Measured::CSV_HEADER.split(',').count();
        assert_eq!(m.csv().split(',').count(), columns);
        assert!(
            m.summary().contains(" durable_rows_per_s=5 "),
            "{}",
            m.summary()
        );
        assert!(
            m.summary().contains(" cpu_proxy_s=1.50 "),
            "{}",
            m.summary()
        );
    }
}
