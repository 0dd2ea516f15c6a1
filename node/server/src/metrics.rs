//! Prometheus metrics, one sub-registry per component, served at `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RpcLabels {
    pub method: String,
    pub code: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabels {
    pub method: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RoleLabels {
    pub role: &'static str,
}

/// One data node, in the data coordinator's view of the load.
#[derive(Debug, Clone, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct NodeLabels {
    pub node_id: i64,
}

pub use milvus_like_api::process::code_name;

/// A histogram of request latencies, 0.25 ms to 8 s in powers of 2.
pub fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.00025, 2.0, 16))
}

/// `{role}_rpcs_total{method,code}`: every call of a role's own gRPC service, by
/// method and the status it ended with; `{role}_rpc_seconds{method}`: how long
/// each took, from its headers to its response's (a unary call's request body is
/// received and decoded within). A tower layer on the role's gRPC server
/// ([`crate::server::serve_grpc`]), so no method goes uncounted; the health and
/// reflection services are left out.
#[derive(Debug, Clone)]
pub struct RpcCounter {
    rpcs: Family<RpcLabels, Counter>,
    seconds: Family<MethodLabels, Histogram, fn() -> Histogram>,
}

impl Default for RpcCounter {
    fn default() -> Self {
        Self {
            rpcs: Family::default(),
            seconds: Family::new_with_constructor(latency_histogram),
        }
    }
}

impl RpcCounter {
    /// Registers `{prefix}_rpcs_total` and `{prefix}_rpc_seconds` in `registry`.
    pub fn register(&self, registry: &mut Registry, prefix: &str) {
        let r = registry.sub_registry_with_prefix(prefix);
        r.register(
            "rpcs",
            "gRPC calls of this role's service, by method and status code",
            self.rpcs.clone(),
        );
        r.register(
            "rpc_seconds",
            "Time from a call's headers to its response's, by method",
            self.seconds.clone(),
        );
    }

    /// The method of `path` (`/milvuslike.v1.DataCoord/Rebalance`), if the call
    /// is to one of our services.
    fn method(path: &str) -> Option<String> {
        let (_, method) = path.strip_prefix("/milvuslike.")?.rsplit_once('/')?;
        Some(method.to_owned())
    }

    fn count(&self, method: String, code: tonic::Code, took: std::time::Duration) {
        self.seconds
            .get_or_create(&MethodLabels {
                method: method.clone(),
            })
            .observe(took.as_secs_f64());
        self.rpcs
            .get_or_create(&RpcLabels {
                method,
                code: code_name(code),
            })
            .inc();
    }

    /// The count of `method` ended with `code` so far.
    #[cfg(test)]
    fn get(&self, method: &str, code: tonic::Code) -> u64 {
        self.rpcs
            .get_or_create(&RpcLabels {
                method: method.to_owned(),
                code: code_name(code),
            })
            .get()
    }
}

impl<S> tower::Layer<S> for RpcCounter {
    type Service = CountedRpcs<S>;

    fn layer(&self, inner: S) -> CountedRpcs<S> {
        CountedRpcs {
            inner,
            counter: self.clone(),
        }
    }
}

/// A gRPC service whose calls an [`RpcCounter`] counts.
#[derive(Debug, Clone)]
pub struct CountedRpcs<S> {
    inner: S,
    counter: RpcCounter,
}

impl<S, B, RB> tower::Service<axum::http::Request<B>> for CountedRpcs<S>
where
    S: tower::Service<axum::http::Request<B>, Response = axum::http::Response<RB>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<S::Response, S::Error>> + Send + 'static>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: axum::http::Request<B>) -> Self::Future {
        let method = RpcCounter::method(request.uri().path());
        let counter = self.counter.clone();
        let started = std::time::Instant::now();
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await;
            if let (Some(method), Ok(r)) = (method, &response) {
                counter.count(method, response_code(r), started.elapsed());
            }
            response
        })
    }
}

/// The status a unary gRPC response ends with: an error is sent trailers-only (its
/// `grpc-status` in the headers); a success carries status 0 in the trailers.
/// (No service of ours streams, so the headers tell.)
fn response_code<B>(response: &axum::http::Response<B>) -> tonic::Code {
    response
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .map_or(tonic::Code::Ok, tonic::Code::from_i32)
}

/// What the root coordinator counts.
#[derive(Debug, Default)]
pub struct RootCoordMetrics {
    pub tso_timestamps: Counter,
    pub tso_requests: Counter,
    pub tso_logical_overflows: Counter,
    pub tso_window_persists: Counter,
    pub tso_window_persist_errors: Counter,
    pub ids_allocated: Counter,
    pub is_leader: Gauge,
    pub leader_elections: Counter,
    pub nodes: Family<RoleLabels, Gauge>,
    pub unhealthy_nodes: Gauge,
}

impl RootCoordMetrics {
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("rootcoord");
        r.register(
            "tso_timestamps",
            "Timestamps issued",
            self.tso_timestamps.clone(),
        );
        r.register(
            "tso_requests",
            "Timestamp ranges handed out (one per AllocTimestamp call or stream message)",
            self.tso_requests.clone(),
        );
        r.register(
            "tso_logical_overflows",
            "Times the logical counter ran out within a millisecond",
            self.tso_logical_overflows.clone(),
        );
        r.register(
            "tso_window_persists",
            "TSO window extensions written to the metadata store",
            self.tso_window_persists.clone(),
        );
        r.register(
            "tso_window_persist_errors",
            "TSO window extensions that failed",
            self.tso_window_persist_errors.clone(),
        );
        r.register(
            "ids_allocated",
            "Global ids handed out",
            self.ids_allocated.clone(),
        );
        r.register(
            "is_leader",
            "1 when this process is the active root coordinator",
            self.is_leader.clone(),
        );
        r.register(
            "leader_elections",
            "Terms this process won",
            self.leader_elections.clone(),
        );
        r.register("nodes", "Registered processes by role", self.nodes.clone());
        r.register(
            "unhealthy_nodes",
            "Registered processes flagged unhealthy",
            self.unhealthy_nodes.clone(),
        );
    }
}

/// Encodes a registry in the Prometheus text format.
pub fn encode(registry: &Registry) -> String {
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, registry) {
        tracing::error!(error = %e, "could not encode metrics");
    }
    out
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use tower::{Layer, Service, ServiceExt};

    use super::*;

    /// Answers every call with the status its path asks for (`.../NotFound`).
    fn fake_service() -> impl Service<
        axum::http::Request<()>,
        Response = axum::http::Response<()>,
        Error = Infallible,
        Future = impl std::future::Future<Output = Result<axum::http::Response<()>, Infallible>>
                 + Send
                 + 'static,
    > + Clone {
        tower::service_fn(|request: axum::http::Request<()>| async move {
            let mut response = axum::http::Response::new(());
            if request.uri().path().ends_with("/NotFound") {
                response
                    .headers_mut()
                    .insert("grpc-status", axum::http::HeaderValue::from_static("5"));
            }
            Ok::<_, Infallible>(response)
        })
    }

    async fn call(
        service: &mut (
                 impl Service<
            axum::http::Request<()>,
            Response = axum::http::Response<()>,
            Error = Infallible,
        > + Clone
             ),
        path: &str,
    ) {
        let request = axum::http::Request::builder()
            .uri(path)
            .body(())
            .expect("a request");
        let _ = service.ready().await.expect("ready").call(request).await;
    }

    #[tokio::test]
    async fn every_method_of_our_services_is_counted_by_code() {
        let counter = RpcCounter::default();
        let mut service = counter.layer(fake_service());
        call(&mut service, "/milvuslike.v1.DataCoord/Rebalance").await;
        call(&mut service, "/milvuslike.v1.DataCoord/Rebalance").await;
        call(&mut service, "/milvuslike.v1.DataCoord/NotFound").await;
        call(&mut service, "/grpc.health.v1.Health/Check").await;
        assert_eq!(counter.get("Rebalance", tonic::Code::Ok), 2);
        assert_eq!(counter.get("NotFound", tonic::Code::NotFound), 1);
        assert_eq!(counter.get("NotFound", tonic::Code::Ok), 0);
        assert_eq!(
            counter.get("Check", tonic::Code::Ok),
            0,
            "health is not ours"
        );
        let mut registry = Registry::default();
        counter.register(&mut registry, "datacoord");
        let text = encode(&registry);
        assert!(
            text.contains(r#"datacoord_rpcs_total{method="Rebalance",code="OK"} 2"#),
            "{text}"
        );
        // Every call's time, whatever its status.
        assert!(
            text.contains(r#"datacoord_rpc_seconds_count{method="Rebalance"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"datacoord_rpc_seconds_count{method="NotFound"} 1"#),
            "{text}"
        );
    }
}
