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
/// a new one).
pub async fn serve_http(
    listen: SocketAddr,
    registry: Registry,
    readiness: Readiness,
    cancel: CancellationToken,
) -> anyhow::Result<JoinHandle<()>> {
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
        .route("/log-level", get(get_log_level).put(put_log_level))
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

/// `PUT /log-level`: the body replaces the filter; an invalid one is a 400 with
/// the reason, and the filter stays as it was.
async fn put_log_level(body: String) -> (StatusCode, String) {
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
