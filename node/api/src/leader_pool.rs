//! Calls to a service that runs active/standby (root or data coordinator).
//!
//! The pool knows every endpoint. On a transport error or `Unavailable` (a standby,
//! or a leader that lost its lease) it moves to the leader named in the answer's
//! `x-milvuslike-leader` metadata if there is one, else to the next endpoint, and
//! retries with capped backoff until the call's deadline: whenever the answer is
//! [transient](crate::retry::Transient). Other codes return at once.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tonic::Status;
use tonic::transport::{Channel, Endpoint};

use crate::LEADER_HINT_METADATA;
use crate::retry::{Retry, Transient};

#[derive(Debug, Clone, thiserror::Error)]
#[error("invalid endpoint {0:?}")]
pub struct BadEndpoint(pub String);

#[derive(Debug)]
struct Inner {
    endpoints: Vec<Endpoint>,
    current: usize,
    channel: Option<Channel>,
    /// Bumped at every fail-over, so that concurrent failures fail over once.
    generation: u64,
}

/// Cheap to clone; clones share the current leader.
#[derive(Debug, Clone)]
pub struct LeaderPool {
    inner: Arc<Mutex<Inner>>,
    rpc_timeout: Duration,
}

/// `host:port` or a full `http://` URI.
pub fn endpoint(address: &str, rpc_timeout: Duration) -> Result<Endpoint, BadEndpoint> {
    let uri = if address.contains("://") {
        address.to_owned()
    } else {
        format!("http://{address}")
    };
    Endpoint::from_shared(uri)
        .map(|e| {
            e.timeout(rpc_timeout)
                .connect_timeout(Duration::from_secs(2))
                .tcp_nodelay(true)
        })
        .map_err(|_| BadEndpoint(address.to_owned()))
}

impl LeaderPool {
    pub fn new(addresses: &[String], rpc_timeout: Duration) -> Result<Self, BadEndpoint> {
        if addresses.is_empty() {
            return Err(BadEndpoint(String::new()));
        }
        let endpoints = addresses
            .iter()
            .map(|a| endpoint(a, rpc_timeout))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            inner: Arc::new(Mutex::new(Inner {
                endpoints,
                current: 0,
                channel: None,
                generation: 0,
            })),
            rpc_timeout,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The channel to the presumed leader, and the generation it belongs to.
    fn channel(&self) -> (Channel, u64) {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let channel = match &inner.channel {
            Some(c) => c.clone(),
            None => {
                let c = inner.endpoints[inner.current % inner.endpoints.len()].connect_lazy();
                inner.channel = Some(c.clone());
                c
            }
        };
        (channel, inner.generation)
    }

    fn fail_over(&self, generation: u64, status: &Status) {
        let mut inner = self.lock();
        if inner.generation != generation {
            return; // someone else already moved on
        }
        inner.generation += 1;
        inner.channel = None;
        let hint = status
            .metadata()
            .get(LEADER_HINT_METADATA)
            .and_then(|v| v.to_str().ok())
            .filter(|h| !h.is_empty())
            .map(str::to_owned);
        if let Some(hint) = hint {
            let uri = format!("http://{hint}");
            if let Some(i) = inner
                .endpoints
                .iter()
                .position(|e| e.uri().to_string().trim_end_matches('/') == uri)
            {
                inner.current = i;
                return;
            }
            if let Ok(e) = endpoint(&uri, self.rpc_timeout) {
                inner.endpoints.push(e);
                inner.current = inner.endpoints.len() - 1;
                return;
            }
        }
        inner.current = (inner.current + 1) % inner.endpoints.len();
    }

    /// Runs `call` against the leader, failing over and retrying until `deadline`.
    pub async fn call<T, F, Fut>(&self, deadline: Duration, mut call: F) -> Result<T, Status>
    where
        F: FnMut(Channel) -> Fut,
        Fut: std::future::Future<Output = Result<T, Status>>,
    {
        Retry::new("the leader did not answer; failing over")
            .backoff(Duration::from_millis(10), Duration::from_millis(200))
            .deadline(deadline)
            .quietly()
            .run(|| {
                let (channel, generation) = self.channel();
                let answer = call(channel);
                async move {
                    answer.await.inspect_err(|status| {
                        if status.is_transient() {
                            self.fail_over(generation, status);
                        }
                    })
                }
            })
            .await
    }
}
