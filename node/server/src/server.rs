//! Serving plumbing every role shares: the gRPC server (with the standard health
//! service and reflection) and the HTTP server for `/metrics`, `/healthz`, `/readyz`
//! and `/log-level`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use axum::http::StatusCode;
use axum::routing::get;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::meta::MetaStore;

/// Starts a gRPC server for `service` plus health and reflection, every call of
/// `service` counted by `rpcs`; returns once the port is bound. The server stops
/// when `cancel` fires.
pub async fn serve_grpc(
    listen: SocketAddr,
    health: tonic_health::pb::health_server::HealthServer<
        impl tonic_health::pb::health_server::Health,
    >,
    services: tonic::service::Routes,
    rpcs: crate::metrics::RpcCounter,
    cancel: CancellationToken,
) -> anyhow::Result<JoinHandle<()>> {
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(milvus_like_api::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(milvus_like_api::milvus_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("build gRPC reflection")?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("bind gRPC port {listen}"))?;
    // Accepted sockets get TCP_NODELAY here: the builder's setting only applies to
    // listeners it binds itself, and Nagle's algorithm adds ~40 ms to small answers.
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    // Each request gets a span under the role's (its node id), naming the method.
    let role = tracing::Span::current();
    let router = tonic::transport::Server::builder()
        .trace_fn(move |request| {
            tracing::info_span!(parent: &role, "grpc", method = %request.uri().path())
        })
        .tcp_nodelay(true)
        // An insert request is megabytes: with hyper's defaults (1 MiB windows, 16 KiB
        // frames) a client sends it in hundreds of frames and waits for window
        // updates every megabyte, shared by every stream of its connection.
        .initial_stream_window_size(HTTP2_STREAM_WINDOW)
        .initial_connection_window_size(HTTP2_CONNECTION_WINDOW)
        .max_frame_size(HTTP2_MAX_FRAME)
        .layer(rpcs)
        .add_routes(services.add_service(health).add_service(reflection));
    Ok(crate::spawn(async move {
        if let Err(e) = router
            .serve_with_incoming_shutdown(incoming, cancel.cancelled_owned())
            .await
        {
            tracing::error!(error = %e, "gRPC server failed");
        }
    }))
}

/// HTTP/2 flow control of the gRPC servers: a stream may send this much before
/// the server's window update (its request is buffered whole anyway)...
const HTTP2_STREAM_WINDOW: u32 = 16 << 20;
/// ...and all streams of a connection together this much.
const HTTP2_CONNECTION_WINDOW: u32 = 64 << 20;
/// The largest DATA frame a client may send.
const HTTP2_MAX_FRAME: u32 = 1 << 20;

/// Above this share of the memory available to it, a process reports not ready: a
/// load balancer or the operator should send it no more work until flushes bring it
/// down. 90 %, Milvus's own limit, leaves room for the flush that frees memory.
pub const MEMORY_READY_THRESHOLD: f64 = 0.9;

/// How often every dependency is probed.
const PROBE_PERIOD: Duration = Duration::from_secs(2);

#[derive(Debug)]
struct Check {
    name: &'static str,
    at: String,
    ok: AtomicBool,
    error: std::sync::Mutex<String>,
}

/// Whether this process can do its job: every dependency it relies on (the
/// metadata store always; the log and segment storage for the roles that use them)
/// answered its last probe, and memory is below [`MEMORY_READY_THRESHOLD`].
#[derive(Debug, Clone)]
pub struct Readiness {
    checks: Arc<std::sync::Mutex<Vec<Arc<Check>>>>,
    cancel: CancellationToken,
}

impl Readiness {
    /// Starts with the metadata store's check.
    pub fn spawn(store: Arc<dyn MetaStore>, cancel: CancellationToken) -> Self {
        let this = Self {
            checks: Arc::default(),
            cancel,
        };
        let describe = store.describe();
        this.watch("metadata_store", describe, move || {
            let store = store.clone();
            async move {
                store
                    .get("health/ping")
                    .await
                    .map(drop)
                    .map_err(|e| e.to_string())
            }
        });
        this
    }

    /// Probes a dependency every 2 s from now on; the process is not ready while
    /// the last probe failed (or before the first one answered).
    pub fn watch<F, Fut>(&self, name: &'static str, at: String, probe: F)
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<(), String>> + Send,
    {
        let check = Arc::new(Check {
            name,
            at,
            ok: AtomicBool::new(false),
            error: std::sync::Mutex::new("not probed yet".into()),
        });
        self.checks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(check.clone());
        let cancel = self.cancel.clone();
        crate::spawn(async move {
            loop {
                let result = tokio::time::timeout(PROBE_PERIOD * 2, probe())
                    .await
                    .unwrap_or_else(|_| Err(format!("no answer in {:?}", PROBE_PERIOD * 2)));
                let ok = result.is_ok();
                if let Err(e) = &result {
                    e.clone_into(&mut check.error.lock().unwrap_or_else(|p| p.into_inner()));
                }
                if check.ok.swap(ok, Ordering::AcqRel) != ok {
                    match &result {
                        Ok(()) => tracing::info!(dependency = name, at = %check.at, "reachable"),
                        Err(e) => {
                            tracing::error!(dependency = name, at = %check.at, error = %e, "unreachable; not ready")
                        }
                    }
                }
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(PROBE_PERIOD) => {}
                }
            }
        });
    }

    /// The status code and a JSON body naming every dependency and the memory use.
    fn report(&self) -> (StatusCode, String) {
        let checks = self
            .checks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut ready = true;
        let mut body = serde_json::Map::new();
        for c in &checks {
            let ok = c.ok.load(Ordering::Acquire);
            ready &= ok;
            let mut check = serde_json::json!({ "reachable": ok, "at": c.at });
            if !ok {
                check["error"] = c
                    .error
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone()
                    .into();
            }
            body.insert(c.name.to_owned(), check);
        }
        let ratio = crate::sys::MemoryUsage::read().map_or(0.0, |m| m.ratio());
        let memory_ok = ratio < MEMORY_READY_THRESHOLD;
        ready &= memory_ok;
        body.insert(
            "memory".into(),
            serde_json::json!({
                "used_ratio": (ratio * 1000.0).round() / 1000.0,
                "threshold": MEMORY_READY_THRESHOLD,
                "ok": memory_ok,
            }),
        );
        body.insert("ready".into(), ready.into());
        let code = if ready {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        (code, format!("{}\n", serde_json::Value::Object(body)))
    }
}

/// Serves `/metrics` (Prometheus text), `/healthz` (alive), `/readyz`, and
/// `/log-level` (`GET`: the log filter; `PUT` with filter directives as the body:
/// a new one, from this host only: see [`may_change`]).
pub async fn serve_http(
    listen: SocketAddr,
    registry: Registry,
    readiness: Readiness,
    cancel: CancellationToken,
) -> anyhow::Result<JoinHandle<()>> {
    let mut registry = registry;
    let refused = Counter::default();
    registry.register(
        "http_changes_refused",
        "Requests to change the process (PUT /log-level) refused because they came from another host",
        refused.clone(),
    );
    let registry = Arc::new(registry);
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let registry = registry.clone();
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        crate::metrics::encode(&registry),
                    )
                }
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/log-level",
            get(get_log_level).put(
                move |peer: axum::extract::ConnectInfo<SocketAddr>, body: String| {
                    let refused = refused.clone();
                    async move { put_log_level(peer, body, &refused) }
                },
            ),
        )
        .route(
            "/readyz",
            get(move || {
                let readiness = readiness.clone();
                async move { readiness.report() }
            }),
        )
        .layer(axum::middleware::from_fn(log_request));
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("bind HTTP port {listen}"))?;
    Ok(crate::spawn(async move {
        let app = app.into_make_service_with_connect_info::<SocketAddr>();
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(cancel.cancelled_owned())
            .await
        {
            tracing::error!(error = %e, "HTTP server failed");
        }
    }))
}

/// Every request, at debug: an access log to turn on with `PUT /log-level`.
async fn log_request(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    tracing::debug!(%method, path, status = response.status().as_u16(), "HTTP request");
    response
}

/// `GET /log-level`: the filter in force, as `EnvFilter` directives.
async fn get_log_level() -> (StatusCode, String) {
    match crate::logging::global().map(crate::logging::LogFilter::current) {
        Some(Ok(filter)) => (StatusCode::OK, format!("{filter}\n")),
        Some(Err(e)) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")),
        None => (StatusCode::SERVICE_UNAVAILABLE, NO_FILTER.to_owned()),
    }
}

/// Whether a request from `peer` may change the process (`PUT /log-level`):
/// only from this host (a loopback address; in Kubernetes, `kubectl exec` or
/// `kubectl port-forward`). The HTTP port is open to the cluster for
/// `/metrics` and the probes, and reading stays open; changing does not.
pub fn may_change(peer: SocketAddr) -> bool {
    peer.ip().to_canonical().is_loopback()
}

/// `PUT /log-level`: the body replaces the filter; an invalid one is a 400 with
/// the reason, and the filter stays as it was. From another host: 403.
fn put_log_level(
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<SocketAddr>,
    body: String,
    refused: &Counter,
) -> (StatusCode, String) {
    if !may_change(peer) {
        refused.inc();
        tracing::warn!(%peer, "refused a change of the log filter from another host");
        return (
            StatusCode::FORBIDDEN,
            format!(
                "PUT /log-level is accepted from this host only (a loopback address), not from {}; \
                 use kubectl exec or kubectl port-forward\n",
                peer.ip()
            ),
        );
    }
    let Some(filter) = crate::logging::global() else {
        return (StatusCode::SERVICE_UNAVAILABLE, NO_FILTER.to_owned());
    };
    match filter.set(&body) {
        Ok((old, new)) => (
            StatusCode::OK,
            format!("log filter changed from `{old}` to `{new}`\n"),
        ),
        Err(crate::logging::FilterError::Invalid(reason)) => (
            StatusCode::BAD_REQUEST,
            format!("{reason}; the log filter stays as it was\n"),
        ),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")),
    }
}

const NO_FILTER: &str = "this process did not install a reloadable log filter\n";

/// How long servers may keep finishing open connections after shutdown began.
pub const DRAIN_DEADLINE: Duration = Duration::from_secs(3);

/// Waits for the servers to finish, at most [`DRAIN_DEADLINE`]; then aborts them
/// (clients that hold connections open must not keep the process alive).
pub async fn drain(grpc: JoinHandle<()>, http: JoinHandle<()>) {
    let (grpc_abort, http_abort) = (grpc.abort_handle(), http.abort_handle());
    let both = async {
        let _ = grpc.await;
        let _ = http.await;
    };
    if tokio::time::timeout(DRAIN_DEADLINE, both).await.is_err() {
        tracing::warn!("connections still open after {DRAIN_DEADLINE:?}; closing them");
        grpc_abort.abort();
        http_abort.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::LocalStore;

    /// The status of `PUT /log-level` sent to `port` at `to`.
    async fn put_status(to: std::net::IpAddr, port: u16) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect((to, port))
            .await
            .expect("connect");
        let body = "info";
        let request = format!(
            "PUT /log-level HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).await.expect("send");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.expect("read");
        answer.lines().next().unwrap_or_default().to_owned()
    }

    /// The body of `GET /metrics` at `port` on loopback.
    async fn metrics_text(port: u16) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        let request = "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        stream.write_all(request.as_bytes()).await.expect("send");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.expect("read");
        answer
    }

    #[test]
    fn only_this_host_may_change_the_process() {
        let at = |ip: &str| SocketAddr::new(ip.parse().expect("ip"), 1);
        assert!(may_change(at("127.0.0.1")));
        assert!(may_change(at("127.9.9.9")));
        assert!(may_change(at("::1")));
        assert!(
            may_change(at("::ffff:127.0.0.1")),
            "IPv4 loopback seen on a dual-stack socket"
        );
        assert!(!may_change(at("10.1.2.3")));
        assert!(!may_change(at("::ffff:10.1.2.3")));
        assert!(!may_change(at("fe80::1")));
    }

    /// Over a real socket: this host's own non-loopback address is another
    /// host's as far as the peer check goes.
    #[tokio::test]
    async fn a_log_level_change_from_another_address_is_refused() {
        let free = std::net::TcpListener::bind("0.0.0.0:0").expect("bind");
        let port = free.local_addr().expect("addr").port();
        drop(free);
        let cancel = CancellationToken::new();
        let readiness = Readiness::spawn(Arc::new(LocalStore::in_memory()), cancel.clone());
        let listen = SocketAddr::from(([0, 0, 0, 0], port));
        serve_http(listen, Registry::default(), readiness, cancel.clone())
            .await
            .expect("serve");
        // Not refused from loopback (503: no reloadable filter in a unit test).
        let local = put_status([127, 0, 0, 1].into(), port).await;
        assert!(!local.contains("403"), "{local}");
        // This host's address on its default route, when it has one.
        let probe = std::net::UdpSocket::bind("0.0.0.0:0").expect("udp");
        let outward = probe
            .connect("192.0.2.255:9")
            .and_then(|()| probe.local_addr())
            .map(|a| a.ip())
            .ok()
            .filter(|ip| !ip.is_loopback() && !ip.is_unspecified());
        if let Some(ip) = outward {
            let remote = put_status(ip, port).await;
            assert!(remote.contains("403"), "from {ip}: {remote}");
            let metrics = metrics_text(port).await;
            assert!(
                metrics.contains("http_changes_refused_total 1"),
                "{metrics}"
            );
        }
        cancel.cancel();
    }

    #[tokio::test]
    async fn readiness_names_the_failing_dependency() {
        let cancel = CancellationToken::new();
        let readiness = Readiness::spawn(Arc::new(LocalStore::in_memory()), cancel.clone());
        let up = Arc::new(AtomicBool::new(true));
        let flag = up.clone();
        readiness.watch("log", "test log".into(), move || {
            let ok = flag.load(Ordering::Acquire);
            async move {
                if ok {
                    Ok(())
                } else {
                    Err("broker gone".into())
                }
            }
        });
        let report = || async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let (code, body) = readiness.report();
            let json: serde_json::Value = serde_json::from_str(&body).expect("JSON");
            (code, json)
        };
        let (code, json) = report().await;
        assert_eq!(code, StatusCode::OK, "{json}");
        assert_eq!(json["log"]["reachable"], true);
        assert_eq!(json["metadata_store"]["reachable"], true);
        up.store(false, Ordering::Release);
        tokio::time::sleep(PROBE_PERIOD).await;
        let (code, json) = report().await;
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{json}");
        assert_eq!(json["ready"], false);
        assert_eq!(json["log"]["error"], "broker gone");
        assert_eq!(json["metadata_store"]["reachable"], true);
        cancel.cancel();
    }
}
