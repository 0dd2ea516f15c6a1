//! Test harness: starts real services (etcd, Kafka) and milvus-like processes on
//! loopback, with free ports and a directory per test. When a test fails, the
//! directory is kept and the tail of every process log is printed, so the failure
//! can be read after the fact.

#![forbid(unsafe_code)]

pub mod data;
pub mod fake_datanode;
pub mod minio;

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// A directory for one test's services and logs. Kept (and announced) when the
/// test panics, deleted otherwise.
#[derive(Debug)]
pub struct TestDir {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
}

impl TestDir {
    pub fn new(name: &str) -> Self {
        let base = workspace_root().join("target").join("test-runs");
        let _ = std::fs::create_dir_all(&base);
        let dir = tempfile::Builder::new()
            .prefix(&format!("{name}-"))
            .tempdir_in(&base)
            .or_else(|_| tempfile::Builder::new().prefix(name).tempdir())
            .expect("create a test directory");
        let path = dir.path().to_owned();
        Self {
            dir: Some(dir),
            path,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TestDir {
    /// Removes the directory, unless the thread panics (a failed test) or
    /// `MILVUS_LIKE_KEEP_TEST_DIRS` is set (to read the logs of a passing run).
    fn drop(&mut self) {
        let panicking = std::thread::panicking();
        if (panicking || std::env::var_os("MILVUS_LIKE_KEEP_TEST_DIRS").is_some())
            && let Some(dir) = self.dir.take()
        {
            let kept = dir.keep();
            let why = if panicking {
                "test failed"
            } else {
                "MILVUS_LIKE_KEEP_TEST_DIRS is set"
            };
            eprintln!(
                "{why}; its services' data and logs are kept in {}",
                kept.display()
            );
        }
    }
}

/// The workspace root (two levels above this crate's manifest).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_owned)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// A TCP port on 127.0.0.1 that nothing listens on right now, below Linux's
/// ephemeral range (32768-60999): outgoing connections take their local ports from
/// that range, and one of them grabbing a port between this check and the server's
/// bind made tests fail with "address already in use". Ports are handed out in turn
/// from a random start, so concurrent tests of one binary never get the same one.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(2_654_435_761) % SPAN,
        Ordering::AcqRel,
        Ordering::Acquire,
    );
    for _ in 0..SPAN {
        let offset = NEXT.fetch_add(1, Ordering::AcqRel) % SPAN;
        let port = u16::try_from(LOW + offset).unwrap_or(20_000);
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free TCP port between {LOW} and {}", LOW + SPAN)
}

/// Polls `check` every 50 ms until it returns `Some` or `timeout` passes.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A child process whose output goes to a log file; killed on drop, and its log
/// tail printed if the test is failing.
#[derive(Debug)]
pub struct Process {
    name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Process {
    pub fn spawn(name: &str, mut command: Command, log: PathBuf) -> anyhow::Result<Self> {
        let out = File::options()
            .create(true)
            .append(true)
            .open(&log)
            .with_context(|| format!("open log {}", log.display()))?;
        let err = out.try_clone()?;
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("start {name}: {command:?}"))?;
        Ok(Self {
            name: name.to_owned(),
            child: Some(child),
            log,
        })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether the process has exited (and reaps it).
    pub fn has_exited(&mut self) -> bool {
        match self.child.as_mut() {
            None => true,
            Some(c) => c.try_wait().ok().flatten().is_some(),
        }
    }

    /// kill -9.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then kill -9 after `grace`. Returns the exit status if it exited by itself.
    pub fn terminate(&mut self, grace: Duration) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = c.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        let _ = c.wait();
        None
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- last lines of {} ({}) ----\n{}\n----",
                self.name,
                self.log.display(),
                tail(&self.log, 40)
            );
        }
        self.kill9();
    }
}

/// The `etcd` binary: `$ETCD_BIN`, else `etcd` on PATH.
fn etcd_binary() -> PathBuf {
    std::env::var_os("ETCD_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("etcd"))
}

/// A real etcd server on loopback with its own data directory.
#[derive(Debug)]
pub struct Etcd {
    pub client_port: u16,
    peer_port: u16,
    data_dir: PathBuf,
    log: PathBuf,
    process: Option<Process>,
}

impl Etcd {
    /// Starts etcd under `dir` and waits until it answers.
    pub async fn start(dir: &Path) -> anyhow::Result<Self> {
        Self::start_on(dir, free_port()).await
    }

    /// Starts etcd on a given client port (e.g. one a process already tries to reach).
    pub async fn start_on(dir: &Path, client_port: u16) -> anyhow::Result<Self> {
        let mut etcd = Self {
            client_port,
            peer_port: free_port(),
            data_dir: dir.join("etcd-data"),
            log: dir.join("etcd.log"),
            process: None,
        };
        etcd.launch().await?;
        Ok(etcd)
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    async fn launch(&mut self) -> anyhow::Result<()> {
        let client = self.endpoint();
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let mut cmd = Command::new(etcd_binary());
        cmd.arg("--name=test")
            .arg(format!("--data-dir={}", self.data_dir.display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=test={peer}"))
            .arg("--initial-cluster-state=new")
            .arg("--log-level=warn")
            .arg("--quota-backend-bytes=1073741824");
        let process = Process::spawn("etcd", cmd, self.log.clone())
            .context("start etcd (install it with tests/scripts/install.sh, or set ETCD_BIN)")?;
        self.process = Some(process);
        let endpoint = self.endpoint();
        wait_for("etcd to answer", Duration::from_secs(20), || {
            let endpoint = endpoint.clone();
            async move {
                let mut client = etcd_client::Client::connect([endpoint], None).await.ok()?;
                client.status().await.ok().map(|_| ())
            }
        })
        .await
    }

    /// kill -9; the data stays for [`Etcd::restart`].
    pub fn kill9(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.kill9();
        }
    }

    /// Starts again on the same ports and data.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.kill9();
        self.launch().await
    }
}

/// The `milvus-like` binary: `$MILVUS_LIKE_BIN`, else the one cargo built next to
/// this executable: in its own directory (bench binaries live in `target/<profile>/`)
/// or one above (test executables live in `target/<profile>/deps/`). Build it first
/// with `cargo build --bins` (tests/run.sh does).
pub fn node_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("MILVUS_LIKE_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("current exe");
    let candidates: Vec<PathBuf> = exe
        .ancestors()
        .skip(1)
        .take(2)
        .map(|dir| dir.join("milvus-like"))
        .collect();
    candidates
        .iter()
        .find(|bin| bin.is_file())
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "{} is missing: run `cargo build --bins` first (tests/run.sh does)",
                candidates[candidates.len() - 1].display()
            )
        })
}

/// A `milvus-like rootcoord` process.
#[derive(Debug)]
pub struct RootCoordProcess {
    pub port: u16,
    pub http_port: u16,
    pub process: Process,
}

/// Knobs of a test root coordinator.
#[derive(Debug, Clone)]
pub struct RootCoordOptions {
    pub etcd_endpoint: String,
    pub meta_root: String,
    pub session_ttl: &'static str,
    pub leader_ttl: &'static str,
}

impl RootCoordProcess {
    pub fn start(dir: &Path, name: &str, opts: &RootCoordOptions) -> anyhow::Result<Self> {
        Self::start_on(dir, name, opts, free_port(), free_port())
    }

    /// Starts on given ports, e.g. those of a process it replaces.
    pub fn start_on(
        dir: &Path,
        name: &str,
        opts: &RootCoordOptions,
        port: u16,
        http_port: u16,
    ) -> anyhow::Result<Self> {
        let mut cmd = Command::new(node_binary());
        cmd.arg("rootcoord")
            .arg(format!("--listen=127.0.0.1:{port}"))
            .arg(format!("--http-listen=127.0.0.1:{http_port}"))
            .arg(format!("--etcd-endpoints={}", opts.etcd_endpoint))
            .arg(format!("--meta-root={}", opts.meta_root))
            .arg(format!("--session-ttl={}", opts.session_ttl))
            .arg(format!("--leader-ttl={}", opts.leader_ttl))
            .arg("--etcd-timeout=1s")
            .env("RUST_LOG", "info,milvus_like_node=debug");
        let process = Process::spawn(name, cmd, dir.join(format!("{name}.log")))?;
        Ok(Self {
            port,
            http_port,
            process,
        })
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// A real single-node Kafka broker (KRaft), run by `tests/scripts/kafka.sh`.
#[derive(Debug)]
pub struct Kafka {
    dir: PathBuf,
    pub bootstrap: String,
}

fn kafka_script(args: &[&str]) -> anyhow::Result<String> {
    let script = workspace_root().join("tests/scripts/kafka.sh");
    let out = Command::new(&script)
        .args(args)
        .stderr(Stdio::piped())
        .output()
        .with_context(|| format!("run {}", script.display()))?;
    if !out.status.success() {
        bail!(
            "kafka.sh {} failed ({}):\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

impl Kafka {
    /// Starts a broker whose data and logs live in `dir/kafka`; waits until it serves.
    pub fn start(dir: &Path) -> anyhow::Result<Self> {
        let dir = dir.join("kafka");
        let bootstrap = kafka_script(&["start", &dir.to_string_lossy()])?;
        Ok(Self { dir, bootstrap })
    }

    pub fn create_topic(&self, name: &str, partitions: u32) -> anyhow::Result<()> {
        kafka_script(&[
            "create-topic",
            &self.dir.to_string_lossy(),
            name,
            &partitions.to_string(),
        ])
        .map(drop)
    }

    /// kill -9; data stays for [`Kafka::restart`].
    pub fn kill9(&self) -> anyhow::Result<()> {
        kafka_script(&["kill", &self.dir.to_string_lossy()]).map(drop)
    }

    /// Starts again with the same ports and data.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.bootstrap = kafka_script(&["start", &self.dir.to_string_lossy()])?;
        Ok(())
    }
}

impl Drop for Kafka {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- last lines of kafka ({}) ----\n{}\n----",
                self.dir.display(),
                tail(&self.dir.join("logs/server.log"), 40)
            );
        }
        let _ = kafka_script(&["kill", &self.dir.to_string_lossy()]);
    }
}

/// The eight ports of a standalone process (gRPC and HTTP of each role).
#[derive(Debug, Clone, Copy)]
pub struct StandalonePorts {
    pub rootcoord: u16,
    pub rootcoord_http: u16,
    pub proxy: u16,
    pub proxy_http: u16,
    pub datacoord: u16,
    pub datacoord_http: u16,
    pub datanode: u16,
    pub datanode_http: u16,
}

impl StandalonePorts {
    pub fn free() -> Self {
        Self {
            rootcoord: free_port(),
            rootcoord_http: free_port(),
            proxy: free_port(),
            proxy_http: free_port(),
            datacoord: free_port(),
            datacoord_http: free_port(),
            datanode: free_port(),
            datanode_http: free_port(),
        }
    }

    pub fn args(&self) -> Vec<String> {
        [
            ("rootcoord-listen", self.rootcoord),
            ("rootcoord-http-listen", self.rootcoord_http),
            ("proxy-listen", self.proxy),
            ("proxy-http-listen", self.proxy_http),
            ("datacoord-listen", self.datacoord),
            ("datacoord-http-listen", self.datacoord_http),
            ("datanode-listen", self.datanode),
            ("datanode-http-listen", self.datanode_http),
        ]
        .iter()
        .map(|(flag, port)| format!("--{flag}=127.0.0.1:{port}"))
        .collect()
    }
}

/// A `milvus-like standalone` process on its own data directory.
#[derive(Debug)]
pub struct StandaloneProcess {
    pub ports: StandalonePorts,
    pub process: Process,
}

impl StandaloneProcess {
    /// Starts `milvus-like standalone` with `extra` arguments after the ports.
    pub fn start(
        data_dir: &Path,
        log: PathBuf,
        ports: StandalonePorts,
        extra: &[&str],
    ) -> anyhow::Result<Self> {
        let mut cmd = Command::new(node_binary());
        cmd.arg("standalone")
            .arg(format!("--data-dir={}", data_dir.display()))
            .args(ports.args())
            .args(extra)
            .env("RUST_LOG", "info");
        Ok(Self {
            ports,
            process: Process::spawn("standalone", cmd, log)?,
        })
    }

    /// The root coordinator.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.rootcoord)
    }

    pub fn proxy_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.proxy)
    }

    pub fn datacoord_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.datacoord)
    }

    /// A lazily connecting client of its proxy, for requests of up to 64 MiB.
    pub fn proxy_client(
        &self,
    ) -> milvus_like_api::proto::proxy_client::ProxyClient<tonic::transport::Channel> {
        milvus_like_api::proto::proxy_client::ProxyClient::new(lazy(&self.proxy_endpoint()))
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20)
    }

    /// A lazily connecting client of its data coordinator.
    pub fn datacoord_client(
        &self,
    ) -> milvus_like_api::proto::data_coord_client::DataCoordClient<tonic::transport::Channel> {
        milvus_like_api::proto::data_coord_client::DataCoordClient::new(lazy(
            &self.datacoord_endpoint(),
        ))
    }
}

/// A channel to `endpoint` that connects on first use.
fn lazy(endpoint: &str) -> tonic::transport::Channel {
    tonic::transport::Channel::from_shared(endpoint.to_owned())
        .expect("a valid endpoint uri")
        .connect_lazy()
}

/// A lazily connecting root coordinator client.
pub fn root_coord_client(
    endpoint: &str,
) -> milvus_like_api::proto::root_coord_client::RootCoordClient<tonic::transport::Channel> {
    milvus_like_api::proto::root_coord_client::RootCoordClient::new(lazy(endpoint))
}

/// Waits until the root coordinator at `endpoint` issues timestamps; returns one.
/// On timeout, panics with the process log.
pub async fn wait_serving(endpoint: &str, process: &Process, timeout: Duration) -> u64 {
    use milvus_like_api::proto::AllocTimestampRequest;
    let client = root_coord_client(endpoint);
    wait_for("the root coordinator to serve", timeout, || {
        let mut c = client.clone();
        async move {
            c.alloc_timestamp(AllocTimestampRequest { count: 1 })
                .await
                .ok()
                .map(|r| r.into_inner().timestamp)
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}; log:\n{}", process.log()))
}

/// A minimal valid schema: INT64 primary key `id`, FLOAT_VECTOR `vec` of `dim`.
pub fn test_schema(name: &str, dim: u32) -> milvus_like_api::proto::CollectionSchema {
    use milvus_like_api::proto::{CollectionSchema, DataType, FieldSchema};
    CollectionSchema {
        name: name.into(),
        description: String::new(),
        fields: vec![
            FieldSchema {
                name: "id".into(),
                data_type: DataType::Int64.into(),
                is_primary_key: true,
                ..FieldSchema::default()
            },
            FieldSchema {
                name: "vec".into(),
                data_type: DataType::FloatVector.into(),
                dim,
                ..FieldSchema::default()
            },
        ],
    }
}

/// A `milvus-like datacoord` process.
#[derive(Debug)]
pub struct DataCoordProcess {
    pub port: u16,
    pub http_port: u16,
    pub process: Process,
}

impl DataCoordProcess {
    /// Starts with the test defaults (3 channels, round robin, 3 s TTLs) plus `extra` flags.
    pub fn start_on(
        dir: &Path,
        name: &str,
        opts: &RootCoordOptions,
        rootcoord: &str,
        (port, http_port): (u16, u16),
        extra: &[&str],
    ) -> anyhow::Result<Self> {
        let mut cmd = Command::new(node_binary());
        cmd.arg("datacoord")
            .arg(format!("--listen=127.0.0.1:{port}"))
            .arg(format!("--http-listen=127.0.0.1:{http_port}"))
            .arg(format!("--etcd-endpoints={}", opts.etcd_endpoint))
            .arg(format!("--meta-root={}", opts.meta_root))
            .arg(format!("--session-ttl={}", opts.session_ttl))
            .arg(format!("--leader-ttl={}", opts.leader_ttl))
            .arg(format!("--rootcoord-endpoints={rootcoord}"))
            .arg("--etcd-timeout=1s")
            .args(extra)
            .env("RUST_LOG", "info,milvus_like_node=debug");
        let process = Process::spawn(name, cmd, dir.join(format!("{name}.log")))?;
        Ok(Self {
            port,
            http_port,
            process,
        })
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn client(
        &self,
    ) -> milvus_like_api::proto::data_coord_client::DataCoordClient<tonic::transport::Channel> {
        let channel = tonic::transport::Channel::from_shared(self.endpoint())
            .expect("a valid endpoint uri")
            .connect_lazy();
        milvus_like_api::proto::data_coord_client::DataCoordClient::new(channel)
    }
}

/// Any `milvus-like` role process, started with explicit arguments; ports picked
/// by the caller so that a restart can reuse them.
#[derive(Debug)]
pub struct NodeProcess {
    pub name: String,
    pub port: u16,
    pub http_port: u16,
    args: Vec<String>,
    log_dir: PathBuf,
    restarts: u32,
    pub process: Process,
}

impl NodeProcess {
    /// `milvus-like <role> --listen=127.0.0.1:<port> --http-listen=... <args>`.
    pub fn start(dir: &Path, name: &str, role: &str, args: &[String]) -> anyhow::Result<Self> {
        let (port, http_port) = (free_port(), free_port());
        let mut all = vec![
            role.to_owned(),
            format!("--listen=127.0.0.1:{port}"),
            format!("--http-listen=127.0.0.1:{http_port}"),
        ];
        all.extend(args.iter().cloned());
        let process = Self::spawn(dir, name, &all, 0)?;
        Ok(Self {
            name: name.to_owned(),
            port,
            http_port,
            args: all,
            log_dir: dir.to_owned(),
            restarts: 0,
            process,
        })
    }

    fn spawn(dir: &Path, name: &str, args: &[String], restarts: u32) -> anyhow::Result<Process> {
        let mut cmd = Command::new(node_binary());
        cmd.args(args)
            .env("RUST_LOG", "info,milvus_like_node=debug");
        let log = if restarts == 0 {
            dir.join(format!("{name}.log"))
        } else {
            dir.join(format!("{name}-{restarts}.log"))
        };
        Process::spawn(name, cmd, log)
    }

    /// kill -9 then start again with the same arguments and ports.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.process.kill9();
        self.restarts += 1;
        self.process = Self::spawn(&self.log_dir, &self.name, &self.args, self.restarts)?;
        Ok(())
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// A bare HTTP/1.0 GET on loopback (metrics, health), free of an HTTP client crate.
pub async fn http_get(port: u16, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return String::new();
    };
    if s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .is_err()
    {
        return String::new();
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out).await;
    out
}

/// Limits how many whole clusters (Kafka, etcd and every role) run at once in one
/// test binary: on 2 cores, more than two at a time mostly measures the scheduler.
/// Hold the returned slot for the cluster's lifetime. `$HEAVY_TESTS` overrides the 2.
pub fn heavy_slot() -> HeavySlot {
    static STATE: std::sync::Mutex<usize> = std::sync::Mutex::new(0);
    static FREED: std::sync::Condvar = std::sync::Condvar::new();
    let limit = std::env::var("HEAVY_TESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2usize)
        .max(1);
    let mut running = STATE.lock().unwrap_or_else(|p| p.into_inner());
    while *running >= limit {
        running = FREED.wait(running).unwrap_or_else(|p| p.into_inner());
    }
    *running += 1;
    HeavySlot {
        release: || {
            let mut running = STATE.lock().unwrap_or_else(|p| p.into_inner());
            *running -= 1;
            FREED.notify_one();
        },
    }
}

/// A held place among the clusters allowed to run at once.
pub struct HeavySlot {
    release: fn(),
}

impl std::fmt::Debug for HeavySlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HeavySlot")
    }
}

impl Drop for HeavySlot {
    fn drop(&mut self) {
        (self.release)();
    }
}

/// One sample of a Prometheus / OpenMetrics text exposition.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: std::collections::BTreeMap<String, String>,
    pub value: f64,
}

/// Parses the text exposition format (`name{label="v",...} value`); comments and
/// `# EOF` are skipped. Panics on a line it cannot read: the endpoint must serve
/// well-formed text.
pub fn parse_metrics(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (head, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("metric line without a value: {line:?}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("metric value is not a number: {line:?}"));
        let (name, labels) = match head.split_once('{') {
            None => (head.to_owned(), std::collections::BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest
                    .strip_suffix('}')
                    .unwrap_or_else(|| panic!("unclosed labels: {line:?}"));
                let mut labels = std::collections::BTreeMap::new();
                for pair in body.split(',').filter(|p| !p.is_empty()) {
                    let (k, v) = pair
                        .split_once('=')
                        .unwrap_or_else(|| panic!("label without a value: {line:?}"));
                    labels.insert(k.to_owned(), v.trim_matches('"').to_owned());
                }
                (name.to_owned(), labels)
            }
        };
        out.push(Sample {
            name,
            labels,
            value,
        });
    }
    out
}

/// The sum of every sample named `name` (over all label sets); `None` when absent.
pub fn metric_sum(samples: &[Sample], name: &str) -> Option<f64> {
    let matching: Vec<f64> = samples
        .iter()
        .filter(|s| s.name == name)
        .map(|s| s.value)
        .collect();
    (!matching.is_empty()).then(|| matching.iter().sum())
}

/// Waits (60 s at most) until the proxy behind `proxy` answers `ListCollections`.
pub async fn wait_for_proxy(
    proxy: &milvus_like_api::proto::proxy_client::ProxyClient<tonic::transport::Channel>,
) -> anyhow::Result<()> {
    wait_for("the proxy to answer", Duration::from_secs(60), || {
        let mut p = proxy.clone();
        async move {
            p.list_collections(milvus_like_api::proto::ListCollectionsRequest {})
                .await
                .ok()
        }
    })
    .await
    .map(drop)
}

/// One HTTP/1.1 request on a fresh connection: (status, body).
pub async fn http(
    port: u16,
    method: &str,
    path: &str,
    body: &str,
) -> std::io::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}
