//! TSO benchmark: timestamps/s and latency of the root coordinator's timestamp oracle
//! over gRPC on loopback.
//!
//! Starts etcd and one root coordinator with the test harness, then measures, one
//! point after the other:
//! - `client`: N tasks sharing one [`TsoClient`], each asking for one timestamp at a
//!   time (the client merges concurrent requests into one `AllocTimestamp` RPC);
//! - `raw`: N tasks sharing one gRPC channel, each calling `AllocTimestamp{count}`
//!   directly, no batching by the client.
//!
//! Every point runs a warm-up, then a measured window; a call counts when it completes
//! inside the window. Every timestamp is checked: strictly increasing per caller, never
//! issued twice, and larger than every timestamp any caller held when the call began.
//! A violation aborts the run with an error.
//!
//! Build the node binary in the same profile first:
//!
//! ```text
//! cargo build --release --bins
//! cargo run --release -p milvus-like-tests --bin tso_bench -- --duration 10s
//! ```
//!
//! `tests/bench/tso.sh` runs this and TiKV PD's pd-tso-bench side by side.

#![forbid(unsafe_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use milvus_like_api::proto::AllocTimestampRequest;
use milvus_like_api::proto::root_coord_client::RootCoordClient;
use milvus_like_api::tso_client::{TsoClient, TsoClientConfig};
use milvus_like_tests::measure::run_until_signal;
use milvus_like_tests::{Cluster, ClusterBuilder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};

const USAGE: &str = "\
usage: tso_bench [--duration 10s] [--warmup 2s] [--callers 1,16,256,1000]
                 [--raw-callers 1,16] [--raw-counts 1,1000]

  --duration     measured window of each point (10s, 500ms, 1m or plain seconds)
  --warmup       untimed calls before each window
  --callers      concurrent callers sharing one TsoClient, one point per number
                 (empty: none)
  --raw-callers  concurrent callers of the raw AllocTimestamp RPC (empty: none)
  --raw-counts   timestamps per raw RPC; one raw point per (callers, count)

Prints one `summary:` line per point, then a markdown table, on stdout; progress on
stderr. Set MILVUS_LIKE_BIN to choose the node binary (default: milvus-like next to
this executable).";

#[derive(Debug, Clone)]
struct Options {
    duration: Duration,
    warmup: Duration,
    callers: Vec<usize>,
    raw_callers: Vec<usize>,
    raw_counts: Vec<u32>,
}

impl Options {
    fn parse(mut args: impl Iterator<Item = String>) -> anyhow::Result<Self> {
        let mut o = Self {
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(2),
            callers: vec![1, 16, 256, 1000],
            raw_callers: vec![1, 16],
            raw_counts: vec![1, 1000],
        };
        while let Some(flag) = args.next() {
            if flag == "-h" || flag == "--help" {
                println!("{USAGE}");
                std::process::exit(0);
            }
            const FLAGS: [&str; 5] = [
                "--duration",
                "--warmup",
                "--callers",
                "--raw-callers",
                "--raw-counts",
            ];
            ensure!(
                FLAGS.contains(&flag.as_str()),
                "unknown flag {flag}\n{USAGE}"
            );
            let value = args
                .next()
                .with_context(|| format!("{flag} needs a value\n{USAGE}"))?;
            match flag.as_str() {
                "--duration" => o.duration = parse_duration(&value)?,
                "--warmup" => o.warmup = parse_duration(&value)?,
                "--callers" => o.callers = parse_list(&value)?,
                "--raw-callers" => o.raw_callers = parse_list(&value)?,
                _ => o.raw_counts = parse_list(&value)?,
            }
        }
        ensure!(!o.duration.is_zero(), "--duration must be positive");
        ensure!(
            o.callers.iter().chain(&o.raw_callers).all(|&n| n > 0),
            "caller counts must be positive"
        );
        ensure!(
            o.raw_counts
                .iter()
                .all(|&c| (1..=milvus_like_api::tso_client::MAX_TIMESTAMP_COUNT).contains(&c)),
            "raw counts must be in 1..={}",
            milvus_like_api::tso_client::MAX_TIMESTAMP_COUNT
        );
        Ok(o)
    }
}

fn parse_duration(s: &str) -> anyhow::Result<Duration> {
    let (number, unit) = match s.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: f64 = number
        .parse()
        .with_context(|| format!("bad duration {s:?}"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => bail!("bad duration unit in {s:?} (use ms, s or m)"),
    };
    Duration::try_from_secs_f64(secs).with_context(|| format!("bad duration {s:?}"))
}

fn parse_list<T: std::str::FromStr>(s: &str) -> anyhow::Result<Vec<T>> {
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            p.trim()
                .parse()
                .map_err(|_| anyhow::anyhow!("bad number {p:?} in {s:?}"))
        })
        .collect()
}

/// What one point measures.
#[derive(Debug, Clone, Copy)]
enum Mode {
    /// Callers share one `TsoClient` and ask for one timestamp per call.
    Client,
    /// Callers call `AllocTimestamp{count}` themselves.
    Raw { count: u32 },
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Client => "client",
            Mode::Raw { .. } => "raw",
        }
    }

    /// Timestamps per call.
    fn count(self) -> u32 {
        match self {
            Mode::Client => 1,
            Mode::Raw { count } => count,
        }
    }
}

/// How one caller gets timestamps.
enum Caller {
    Client(TsoClient),
    Raw(RootCoordClient<Channel>, u32),
}

impl Caller {
    /// One call: the first timestamp of the range it got.
    async fn call(&mut self) -> anyhow::Result<u64> {
        match self {
            Caller::Client(c) => Ok(c.timestamp().await.context("TsoClient")?.as_u64()),
            Caller::Raw(c, count) => {
                let resp = c
                    .alloc_timestamp(AllocTimestampRequest { count: *count })
                    .await
                    .context("AllocTimestamp")?
                    .into_inner();
                ensure!(
                    resp.count == *count && resp.timestamp != 0,
                    "asked for {count} timestamps, got {} from {}",
                    resp.count,
                    resp.timestamp
                );
                Ok(resp.timestamp)
            }
        }
    }
}

/// The measured window of a point; calls that complete inside it count.
#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    end: Instant,
}

/// What one caller saw.
#[derive(Debug, Default)]
struct CallerLog {
    /// First timestamp of every call, warm-up included, in call order.
    firsts: Vec<u64>,
    /// Latency in nanoseconds of every call that completed inside the window.
    latencies_ns: Vec<u64>,
}

/// Calls until the window closes, checking order as it goes. `high_water` is the
/// largest timestamp any caller has received so far (over the whole run).
async fn run_caller(
    mut caller: Caller,
    count: u32,
    window: Window,
    high_water: Arc<AtomicU64>,
) -> anyhow::Result<CallerLog> {
    let mut log = CallerLog::default();
    let mut last = 0u64;
    loop {
        // Read before the call starts: everything already handed out must be smaller.
        let floor = high_water.load(Ordering::Acquire);
        let started = Instant::now();
        if started >= window.end {
            return Ok(log);
        }
        let first = caller.call().await?;
        let done = Instant::now();
        let range_last = first + u64::from(count) - 1;
        ensure!(
            first > last,
            "a caller got timestamp {first} after {last}: not strictly increasing"
        );
        ensure!(
            first > floor,
            "a call got timestamp {first}, but {floor} had been handed out before it began"
        );
        high_water.fetch_max(range_last, Ordering::AcqRel);
        last = range_last;
        log.firsts.push(first);
        if done >= window.start && done < window.end {
            log.latencies_ns
                .push(u64::try_from((done - started).as_nanos()).unwrap_or(u64::MAX));
        }
    }
}

/// The root coordinator's own counters, from its `/metrics`.
#[derive(Debug, Clone, Copy, Default)]
struct ServerCounters {
    alloc_rpcs: u64,
    timestamps: u64,
}

/// GETs `/metrics` over plain HTTP/1.0 (no chunking) and reads the TSO counters.
async fn scrape(http_port: u16) -> anyhow::Result<ServerCounters> {
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", http_port))
        .await
        .context("connect to /metrics")?;
    conn.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .await?;
    let mut text = String::new();
    conn.read_to_string(&mut text)
        .await
        .context("read /metrics")?;
    let mut c = ServerCounters::default();
    let mut found = (false, false);
    for line in text.lines() {
        let value = || line.rsplit(' ').next().and_then(|v| v.parse::<u64>().ok());
        if line.starts_with("rootcoord_tso_requests_total ") {
            c.alloc_rpcs = value().context("parse rootcoord_tso_requests_total")?;
            found.0 = true;
        } else if line.starts_with("rootcoord_tso_timestamps_total ") {
            c.timestamps = value().context("parse rootcoord_tso_timestamps_total")?;
            found.1 = true;
        }
    }
    ensure!(
        found.0 && found.1,
        "/metrics lacks rootcoord_tso_requests_total or rootcoord_tso_timestamps_total"
    );
    Ok(c)
}

#[derive(Debug)]
struct PointResult {
    mode: Mode,
    callers: usize,
    /// Calls completed inside the window.
    calls: u64,
    window: Duration,
    p50: Duration,
    p99: Duration,
    max: Duration,
    /// Timestamp requests (unary calls and stream messages) and timestamps the
    /// server counted over the window.
    server: Option<(ServerCounters, Duration)>,
}

impl PointResult {
    fn timestamps_per_s(&self) -> f64 {
        self.calls as f64 * f64::from(self.mode.count()) / self.window.as_secs_f64()
    }

    fn calls_per_s(&self) -> f64 {
        self.calls as f64 / self.window.as_secs_f64()
    }

    fn rpcs_per_s(&self) -> Option<f64> {
        self.server
            .map(|(c, over)| c.alloc_rpcs as f64 / over.as_secs_f64())
    }

    /// Timestamps per RPC as the server saw them.
    fn server_batch(&self) -> Option<f64> {
        self.server
            .filter(|(c, _)| c.alloc_rpcs > 0)
            .map(|(c, _)| c.timestamps as f64 / c.alloc_rpcs as f64)
    }

    fn summary_line(&self) -> String {
        let opt =
            |v: Option<f64>, digits: usize| v.map_or("nan".to_owned(), |v| format!("{v:.digits$}"));
        format!(
            "summary: mode={} callers={} count={} measured_s={:.3} calls={} timestamps_per_s={:.0} \
             calls_per_s={:.0} p50_us={:.1} p99_us={:.1} max_us={:.1} rpcs_per_s={} \
             timestamps_per_rpc={}",
            self.mode.name(),
            self.callers,
            self.mode.count(),
            self.window.as_secs_f64(),
            self.calls,
            self.timestamps_per_s(),
            self.calls_per_s(),
            micros(self.p50),
            micros(self.p99),
            micros(self.max),
            opt(self.rpcs_per_s(), 0),
            opt(self.server_batch(), 1),
        )
    }
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[u64], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    Duration::from_nanos(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// The services under test: etcd and a root coordinator that serves.
async fn start_cluster() -> anyhow::Result<Cluster> {
    let cluster = ClusterBuilder::new("tso-bench")
        .meta_root("tso-bench")
        .ttl("10s")
        .build()
        .await?;
    let rc = &cluster.rootcoord;
    eprintln!(
        "root coordinator pid {} serving at {}, metrics on :{}, etcd at {}",
        rc.process.pid().unwrap_or_default(),
        rc.endpoint(),
        rc.ports.http,
        cluster.etcd.endpoint()
    );
    Ok(cluster)
}

/// A gRPC channel to `endpoint`, connected lazily, with the same TCP settings as
/// `TsoClient`'s.
async fn raw_client(endpoint: &str) -> anyhow::Result<RootCoordClient<Channel>> {
    let channel = Endpoint::from_shared(endpoint.to_owned())?
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(3))
        .connect_lazy();
    Ok(RootCoordClient::new(channel))
}

async fn run_point(
    cluster: &Cluster,
    opts: &Options,
    mode: Mode,
    callers: usize,
    high_water: &Arc<AtomicU64>,
) -> anyhow::Result<PointResult> {
    let started = Instant::now();
    let window = Window {
        start: started + opts.warmup,
        end: started + opts.warmup + opts.duration,
    };
    // One TsoClient or one channel per point, shared by every caller of the point.
    let client = match mode {
        Mode::Client => Some(TsoClient::connect(
            &[cluster.rootcoord.endpoint()],
            TsoClientConfig::default(),
        )?),
        Mode::Raw { .. } => None,
    };
    let channel = raw_client(&cluster.rootcoord.endpoint()).await?;
    let mut tasks = Vec::with_capacity(callers);
    for _ in 0..callers {
        let caller = match &client {
            Some(c) => Caller::Client(c.clone()),
            None => Caller::Raw(channel.clone(), mode.count()),
        };
        tasks.push(tokio::spawn(run_caller(
            caller,
            mode.count(),
            window,
            high_water.clone(),
        )));
    }
    drop(client);

    tokio::time::sleep_until(window.start).await;
    let before = scrape(cluster.rootcoord.ports.http).await;
    let scraped_at = Instant::now();
    tokio::time::sleep_until(window.end).await;
    let after = scrape(cluster.rootcoord.ports.http).await;
    let scrape_span = scraped_at.elapsed();
    let server = match (before, after) {
        (Ok(b), Ok(a)) => Some((
            ServerCounters {
                alloc_rpcs: a.alloc_rpcs.saturating_sub(b.alloc_rpcs),
                timestamps: a.timestamps.saturating_sub(b.timestamps),
            },
            scrape_span,
        )),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("  could not read the server's counters: {e:#}");
            None
        }
    };

    let mut firsts = Vec::new();
    let mut latencies = Vec::new();
    for task in tasks {
        let log = task.await.context("a caller task panicked")??;
        firsts.extend(log.firsts);
        latencies.extend(log.latencies_ns);
    }
    // Per-caller order and the real-time order were checked during the run; here:
    // no two calls' ranges overlap.
    firsts.sort_unstable();
    let width = u64::from(mode.count());
    if let Some(pair) = firsts.windows(2).find(|p| p[1] < p[0] + width) {
        bail!(
            "timestamp ranges overlap: [{}, +{width}) and [{}, +{width}) were both issued",
            pair[0],
            pair[1]
        );
    }
    latencies.sort_unstable();
    Ok(PointResult {
        mode,
        callers,
        calls: latencies.len() as u64,
        window: opts.duration,
        p50: percentile(&latencies, 0.50),
        p99: percentile(&latencies, 0.99),
        max: latencies
            .last()
            .map_or(Duration::ZERO, |&n| Duration::from_nanos(n)),
        server,
    })
}

fn print_table(results: &[PointResult]) {
    let opt = |v: Option<f64>, digits: usize| v.map_or("-".to_owned(), |v| format!("{v:.digits$}"));
    println!(
        "| mode | callers | timestamps/call | timestamps/s | calls/s | p50 µs | p99 µs | max µs | RPCs/s | timestamps/RPC |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in results {
        println!(
            "| {} | {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {} | {} |",
            r.mode.name(),
            r.callers,
            r.mode.count(),
            r.timestamps_per_s(),
            r.calls_per_s(),
            micros(r.p50),
            micros(r.p99),
            micros(r.max),
            opt(r.rpcs_per_s(), 0),
            opt(r.server_batch(), 1),
        );
    }
}

async fn bench(opts: Options) -> anyhow::Result<()> {
    let cluster = start_cluster().await?;
    let mut points: Vec<(Mode, usize)> = opts.callers.iter().map(|&n| (Mode::Client, n)).collect();
    for &count in &opts.raw_counts {
        for &n in &opts.raw_callers {
            points.push((Mode::Raw { count }, n));
        }
    }
    let high_water = Arc::new(AtomicU64::new(0));
    let mut results = Vec::new();
    for (i, &(mode, callers)) in points.iter().enumerate() {
        eprintln!(
            "[{}/{}] {} callers={callers} count={}: {:?} warm-up, {:?} measured",
            i + 1,
            points.len(),
            mode.name(),
            mode.count(),
            opts.warmup,
            opts.duration
        );
        let r = run_point(&cluster, &opts, mode, callers, &high_water)
            .await
            .with_context(|| format!("{} callers={callers}", mode.name()))?;
        eprintln!(
            "      {:.0} timestamps/s, p50 {:.0} µs, p99 {:.0} µs",
            r.timestamps_per_s(),
            micros(r.p50),
            micros(r.p99)
        );
        println!("{}", r.summary_line());
        results.push(r);
    }
    println!();
    print_table(&results);
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let opts = Options::parse(std::env::args().skip(1))?;
    run_until_signal(bench(opts))
}
