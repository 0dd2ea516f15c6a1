//! `milvus-like-operator`: the controller of `MilvusCluster` objects, behind a
//! leader lease, with `/metrics`, `/healthz` and `/readyz` on its HTTP port.

#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use axum::routing::get;
use clap::Parser;
use kube::Client;
use kube::runtime::events::{Recorder, Reporter};
use milvus_like_operator::controller::{self, Context};
use milvus_like_operator::election::{Elector, LeaseConfig};
use milvus_like_operator::metrics::Metrics;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Parser)]
#[command(
    name = "milvus-like-operator",
    version,
    about = "Reconciles MilvusCluster objects"
)]
struct Args {
    /// HTTP address of /metrics, /healthz and /readyz.
    #[arg(long, env = "OPERATOR_HTTP_LISTEN", default_value = "0.0.0.0:8080")]
    http_listen: SocketAddr,
    /// Watch MilvusCluster objects of this namespace only (default: all).
    #[arg(long, env = "WATCH_NAMESPACE")]
    namespace: Option<String>,
    /// Name of the leader Lease.
    #[arg(
        long,
        env = "OPERATOR_LEASE_NAME",
        default_value = "milvus-like-operator"
    )]
    lease_name: String,
    /// Namespace of the leader Lease (the operator's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// This replica's name in the Lease and in events (its pod name).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// A leader that has not renewed its lease for this long is replaced.
    #[arg(long, env = "OPERATOR_LEASE_SECONDS", default_value_t = 15)]
    lease_seconds: u64,
    /// `text` or `json` logs; levels from RUST_LOG.
    #[arg(long, env = "OPERATOR_LOG_FORMAT", default_value = "text")]
    log_format: String,
}

fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn serve_http(
    listen: SocketAddr,
    registry: prometheus_client::registry::Registry,
    leader: Arc<AtomicBool>,
    cancel: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let registry = Arc::new(registry);
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let registry = registry.clone();
                async move {
                    let mut body = String::new();
                    match prometheus_client::encoding::text::encode(&mut body, &registry) {
                        Ok(()) => (axum::http::StatusCode::OK, body),
                        Err(e) => (axum::http::StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
                    }
                }
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let leader = leader.load(Ordering::Acquire);
                async move { format!("{{\"ready\":true,\"leader\":{leader}}}\n") }
            }),
        );
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("bind HTTP port {listen}"))?;
    Ok(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(cancel.cancelled_owned())
            .await
        {
            tracing::error!(error = %e, "HTTP server failed");
        }
    }))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    init_logging(&args.log_format);
    // kube's TLS needs a process-wide rustls provider; install ring's explicitly.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let identity = args
        .identity
        .clone()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| format!("milvus-like-operator-{}", std::process::id()));
    let cancel = milvus_like_api::process::shutdown_on_signal();

    let client = Client::try_default()
        .await
        .context("connect to the Kubernetes API (in-cluster or KUBECONFIG)")?;
    let metrics = Arc::new(Metrics::default());
    let mut registry = prometheus_client::registry::Registry::default();
    metrics.register(&mut registry);
    let leader = Arc::new(AtomicBool::new(false));
    let http = serve_http(args.http_listen, registry, leader.clone(), cancel.clone()).await?;
    tracing::info!(http = %args.http_listen, identity = %identity, namespace = ?args.namespace, "operator started");

    let elector = Elector::new(
        client.clone(),
        LeaseConfig {
            namespace: args.lease_namespace.clone(),
            name: args.lease_name.clone(),
            identity: identity.clone(),
            duration: Duration::from_secs(args.lease_seconds.max(3)),
            renew_every: Duration::from_secs((args.lease_seconds / 3).max(1)),
        },
    );
    if !elector.acquire(&cancel).await {
        let _ = http.await;
        return Ok(());
    }
    leader.store(true, Ordering::Release);
    metrics.leader.set(1);

    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "milvus-like-operator".into(),
            instance: Some(identity),
        },
    );
    let ctx = Arc::new(Context::new(client, recorder, metrics.clone()));
    // The controller stops on SIGTERM or when the lease is lost.
    let stop = CancellationToken::new();
    let stop_controller = stop.clone();
    let controller = tokio::spawn(controller::run(ctx, args.namespace.clone(), async move {
        stop_controller.cancelled().await;
    }));
    let lost = !elector.hold(&cancel).await;
    // In-flight reconciles finish before the lease goes to a standby.
    stop.cancel();
    let _ = controller.await;
    if !lost {
        elector.release().await;
    }
    metrics.leader.set(0);
    leader.store(false, Ordering::Release);
    cancel.cancel();
    let _ = http.await;
    if lost {
        anyhow::bail!("lost the leader lease; exiting so that the pod restarts as a standby");
    }
    Ok(())
}
