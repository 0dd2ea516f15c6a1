//! Connections to the services, checked up front so that a wrong address fails at
//! once with a sentence naming the flag to fix (instead of after the retries of a
//! leader pool), and every call's failure mapped to a [`CliError`].

use std::future::Future;
use std::time::Duration;

use milvus_like_api::leader_pool::{self, LeaderPool};
use milvus_like_api::proto::proxy_client::ProxyClient;
use tonic::Status;
use tonic::transport::Channel;

use super::args::{ProxyArgs, UpstreamArgs};
use super::error::{CliError, Service, io_reason};
use crate::proxy::MAX_REQUEST_BYTES;

/// How long a TCP connect may take before the service counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Deadline of one call to a coordinator, fail-overs included.
const COORDINATOR_DEADLINE: Duration = Duration::from_secs(20);

/// The proxy: collections, insert, delete, flush.
#[derive(Debug, Clone)]
pub struct Proxy {
    client: ProxyClient<Channel>,
    pub service: Service,
}

impl Proxy {
    /// Checks that something listens at the address, then opens the channel.
    pub async fn connect(args: &ProxyArgs, rpc_timeout: Duration) -> Result<Self, CliError> {
        let service = Service {
            name: "the proxy",
            address: args.endpoint.clone(),
            flag: "--proxy / MILVUS_LIKE_PROXY_ENDPOINT",
        };
        probe(&service, std::slice::from_ref(&args.endpoint)).await?;
        let endpoint = leader_pool::endpoint(&args.endpoint, rpc_timeout)
            .map_err(|e| CliError::usage(format!("{e}; write host:port (--proxy)")))?;
        let client = ProxyClient::new(endpoint.connect_lazy())
            .max_encoding_message_size(MAX_REQUEST_BYTES)
            .max_decoding_message_size(MAX_REQUEST_BYTES);
        Ok(Self { client, service })
    }

    /// Runs one call; a failure becomes a sentence starting with `doing`.
    pub async fn call<T, F, Fut>(&self, doing: &str, call: F) -> Result<T, CliError>
    where
        F: FnOnce(ProxyClient<Channel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        self.raw(call)
            .await
            .map_err(|s| self.service.failed(doing, &s))
    }

    /// Runs one call and hands back the gRPC status of a failure, for callers
    /// that act on its code.
    pub async fn raw<T, F, Fut>(&self, call: F) -> Result<T, Status>
    where
        F: FnOnce(ProxyClient<Channel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        call(self.client.clone())
            .await
            .map(tonic::Response::into_inner)
    }
}

/// A root or data coordinator: calls follow the leader among the endpoints.
#[derive(Debug, Clone)]
pub struct Coordinator {
    pool: LeaderPool,
    pub service: Service,
}

impl Coordinator {
    pub async fn root(args: &UpstreamArgs) -> Result<Self, CliError> {
        let service = Service {
            name: "the root coordinator",
            address: args.root.rootcoord_endpoints.join(","),
            flag: "--rootcoord-endpoints / MILVUS_LIKE_ROOTCOORD_ENDPOINTS",
        };
        Self::connect(service, &args.root.rootcoord_endpoints).await
    }

    pub async fn data(args: &UpstreamArgs) -> Result<Self, CliError> {
        let service = Service {
            name: "the data coordinator",
            address: args.datacoord_endpoints.join(","),
            flag: "--datacoord-endpoints / MILVUS_LIKE_DATACOORD_ENDPOINTS",
        };
        Self::connect(service, &args.datacoord_endpoints).await
    }

    async fn connect(service: Service, endpoints: &[String]) -> Result<Self, CliError> {
        probe(&service, endpoints).await?;
        let pool = LeaderPool::new(endpoints, Duration::from_secs(10))
            .map_err(|e| CliError::usage(format!("{e}; write host:port ({})", service.flag)))?;
        Ok(Self { pool, service })
    }

    /// Runs one call against the leader; a failure becomes a sentence starting
    /// with `doing`.
    pub async fn call<T, F, Fut>(&self, doing: &str, call: F) -> Result<T, CliError>
    where
        F: FnMut(Channel) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        self.pool
            .call(COORDINATOR_DEADLINE, call)
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| self.service.failed(doing, &s))
    }
}

/// Succeeds when a TCP connection to one of `endpoints` opens.
async fn probe(service: &Service, endpoints: &[String]) -> Result<(), CliError> {
    let mut reason = String::from("no endpoint is given");
    for endpoint in endpoints {
        let address = host_port(endpoint);
        match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(address)).await {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(e)) => reason = io_reason(&e),
            Err(_) => reason = format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()),
        }
    }
    Err(service.unreachable(reason))
}

/// `http://host:port/` → `host:port`.
fn host_port(endpoint: &str) -> &str {
    let rest = endpoint
        .split_once("://")
        .map_or(endpoint, |(_, rest)| rest);
    rest.split('/').next().unwrap_or(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_lose_their_scheme_for_the_probe() {
        assert_eq!(host_port("http://127.0.0.1:5/"), "127.0.0.1:5");
        assert_eq!(host_port("localhost:19531"), "localhost:19531");
    }

    #[tokio::test]
    async fn nothing_listening_is_unavailable_with_the_flag_named() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").port()
        };
        let args = ProxyArgs {
            endpoint: format!("127.0.0.1:{port}"),
        };
        let e = Proxy::connect(&args, Duration::from_secs(1))
            .await
            .expect_err("nothing listens");
        assert_eq!(e.code, super::super::error::ExitCode::Unavailable);
        assert_eq!(
            e.message,
            format!(
                "cannot reach the proxy at 127.0.0.1:{port}: connection refused; is milvus-like \
                 running? (--proxy / MILVUS_LIKE_PROXY_ENDPOINT)"
            )
        );
    }
}
