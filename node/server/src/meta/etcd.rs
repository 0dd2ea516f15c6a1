//! `MetaStore` on etcd v3.

use std::time::Duration;

use etcd_client::{
    Client, Compare as EtcdCompare, CompareOp, ConnectOptions, DeleteOptions, EventType,
    GetOptions, PutOptions, Txn as EtcdTxn, TxnOp, TxnOpResponse, WatchOptions,
};
use futures::StreamExt;
use milvus_like_api::retry::Retry;
use milvus_like_api::settings::defaults;

use super::{
    Compare, KeyValue, LeaseId, MetaError, MetaResult, MetaStore, Op, Revision, Txn, TxnResult,
    WatchEvent, WatchStream,
};

#[derive(Debug, Clone)]
pub struct EtcdConfig {
    /// `http://host:port` of each member.
    pub endpoints: Vec<String>,
    /// Every key lives under `{root}/`.
    pub root: String,
    /// Deadline of one request.
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
}

/// etcd's answer about a lease it does not have (revoked or expired).
fn lease_not_found(e: &etcd_client::Error) -> bool {
    e.to_string().contains("lease not found")
}

impl Default for EtcdConfig {
    fn default() -> Self {
        Self {
            endpoints: vec![defaults::ETCD_ENDPOINTS.into()],
            root: defaults::META_ROOT.into(),
            request_timeout: defaults::ETCD_TIMEOUT,
            connect_timeout: Duration::from_secs(3),
        }
    }
}

/// etcd client scoped to one root prefix. Cheap to clone.
#[derive(Clone)]
pub struct EtcdStore {
    client: Client,
    prefix: String,
    config: EtcdConfig,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("endpoints", &self.config.endpoints)
            .field("root", &self.config.root)
            .finish()
    }
}

fn unavailable(e: etcd_client::Error) -> MetaError {
    use etcd_client::Error as E;
    match e {
        E::GRpcStatus(s) => match s.code() {
            tonic::Code::InvalidArgument
            | tonic::Code::PermissionDenied
            | tonic::Code::Unauthenticated
            | tonic::Code::FailedPrecondition
            | tonic::Code::OutOfRange => MetaError::Refused(s.message().to_owned()),
            _ => MetaError::Unavailable(format!("{}: {}", s.code(), s.message())),
        },
        E::InvalidArgs(m) => MetaError::Refused(m),
        other => MetaError::Unavailable(other.to_string()),
    }
}

impl EtcdStore {
    /// Connects and checks that etcd answers. Fails with `Unavailable` if it does not;
    /// see [`EtcdStore::connect_with_retry`] for start-up.
    pub async fn connect(config: EtcdConfig) -> MetaResult<Self> {
        if config.endpoints.is_empty() {
            return Err(MetaError::Refused("no etcd endpoints configured".into()));
        }
        let options = ConnectOptions::new()
            .with_timeout(config.request_timeout)
            .with_connect_timeout(config.connect_timeout)
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5));
        let connect = Client::connect(&config.endpoints, Some(options));
        let mut client = tokio::time::timeout(config.connect_timeout, connect)
            .await
            .map_err(|_| MetaError::Unavailable("connect timed out".into()))?
            .map_err(unavailable)?;
        client.status().await.map_err(unavailable)?;
        let root = config.root.trim_end_matches('/');
        Ok(Self {
            client,
            prefix: format!("{root}/"),
            config,
        })
    }

    /// Connects, retrying with backoff (and saying so in the log) until etcd answers
    /// or `cancel` fires.
    pub async fn connect_with_retry(
        config: EtcdConfig,
        cancel: &tokio_util::sync::CancellationToken,
    ) -> MetaResult<Self> {
        let what = format!("etcd is unreachable at {:?}", config.endpoints);
        let store = Retry::new(what)
            .backoff(Duration::from_millis(200), Duration::from_secs(5))
            .until_cancelled(cancel)
            .run(|| Self::connect(config.clone()))
            .await?;
        tracing::info!(endpoints = ?config.endpoints, root = %config.root, "connected to etcd");
        Ok(store)
    }

    fn full(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    fn convert(&self, kv: &etcd_client::KeyValue) -> MetaResult<KeyValue> {
        let full = kv
            .key_str()
            .map_err(|e| MetaError::corrupt(&String::from_utf8_lossy(kv.key()), e))?;
        let key = full.strip_prefix(&self.prefix).unwrap_or(full).to_owned();
        Ok(KeyValue {
            key,
            value: kv.value().to_vec(),
            create_revision: kv.create_revision(),
            mod_revision: kv.mod_revision(),
            lease: kv.lease(),
        })
    }

    fn op(&self, op: &Op) -> TxnOp {
        match op {
            Op::Put { key, value, lease } => TxnOp::put(
                self.full(key),
                value.clone(),
                lease.map(|l| PutOptions::new().with_lease(l)),
            ),
            Op::Delete(key) => TxnOp::delete(self.full(key), None),
            Op::Get(key) => TxnOp::get(self.full(key), None),
        }
    }

    fn compare(&self, c: &Compare) -> EtcdCompare {
        match c {
            Compare::ValueEquals(key, value) => {
                EtcdCompare::value(self.full(key), CompareOp::Equal, value.clone())
            }
            Compare::Absent(key) => {
                EtcdCompare::create_revision(self.full(key), CompareOp::Equal, 0)
            }
            Compare::ModRevision(key, rev) => {
                EtcdCompare::mod_revision(self.full(key), CompareOp::Equal, *rev)
            }
        }
    }
}

#[async_trait::async_trait]
impl MetaStore for EtcdStore {
    fn describe(&self) -> String {
        format!(
            "etcd {} (root {:?})",
            self.config.endpoints.join(","),
            self.config.root
        )
    }

    async fn get(&self, key: &str) -> MetaResult<Option<KeyValue>> {
        let resp = self
            .client
            .clone()
            .get(self.full(key), None)
            .await
            .map_err(unavailable)?;
        resp.kvs().first().map(|kv| self.convert(kv)).transpose()
    }

    async fn scan_prefix(&self, prefix: &str) -> MetaResult<(Vec<KeyValue>, Revision)> {
        let resp = self
            .client
            .clone()
            .get(self.full(prefix), Some(GetOptions::new().with_prefix()))
            .await
            .map_err(unavailable)?;
        let revision = resp.header().map_or(0, |h| h.revision());
        let kvs = resp
            .kvs()
            .iter()
            .map(|kv| self.convert(kv))
            .collect::<MetaResult<Vec<_>>>()?;
        Ok((kvs, revision))
    }

    async fn put(&self, key: &str, value: Vec<u8>, lease: Option<LeaseId>) -> MetaResult<()> {
        let options = lease.map(|l| PutOptions::new().with_lease(l));
        self.client
            .clone()
            .put(self.full(key), value, options)
            .await
            .map_err(|e| match lease {
                Some(l) if e.to_string().contains("lease not found") => MetaError::LeaseExpired(l),
                _ => unavailable(e),
            })?;
        Ok(())
    }

    async fn delete(&self, key: &str) -> MetaResult<bool> {
        let resp = self
            .client
            .clone()
            .delete(self.full(key), None::<DeleteOptions>)
            .await
            .map_err(unavailable)?;
        Ok(resp.deleted() > 0)
    }

    async fn txn(&self, txn: Txn) -> MetaResult<TxnResult> {
        let compares: Vec<_> = txn.compares.iter().map(|c| self.compare(c)).collect();
        let then: Vec<_> = txn.then.iter().map(|o| self.op(o)).collect();
        let otherwise: Vec<_> = txn.otherwise.iter().map(|o| self.op(o)).collect();
        let resp = self
            .client
            .clone()
            .txn(
                EtcdTxn::new()
                    .when(compares)
                    .and_then(then)
                    .or_else(otherwise),
            )
            .await
            .map_err(|e| {
                if e.to_string().contains("lease not found") {
                    MetaError::LeaseExpired(0)
                } else {
                    unavailable(e)
                }
            })?;
        let mut gets = Vec::new();
        for r in resp.op_responses() {
            if let TxnOpResponse::Get(g) = r {
                gets.push(g.kvs().first().map(|kv| self.convert(kv)).transpose()?);
            }
        }
        Ok(TxnResult {
            succeeded: resp.succeeded(),
            gets,
            revision: resp.header().map_or(0, |h| h.revision()),
        })
    }

    async fn watch_prefix(&self, prefix: &str, from_revision: Revision) -> MetaResult<WatchStream> {
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(from_revision);
        let stream = self
            .client
            .clone()
            .watch(self.full(prefix), Some(options))
            .await
            .map_err(unavailable)?;
        let this = self.clone();
        let events = futures::stream::unfold(Some(stream), move |state| {
            let this = this.clone();
            async move {
                let mut stream = state?;
                loop {
                    let resp = match stream.message().await {
                        Ok(Some(resp)) => resp,
                        Ok(None) => {
                            return Some((
                                Err(MetaError::Unavailable("etcd closed the watch".into())),
                                None,
                            ));
                        }
                        Err(e) => return Some((Err(unavailable(e)), None)),
                    };
                    if resp.canceled() {
                        let why = format!(
                            "etcd cancelled the watch (compacted at {}): {}",
                            resp.compact_revision(),
                            resp.cancel_reason()
                        );
                        return Some((Err(MetaError::Unavailable(why)), None));
                    }
                    if resp.events().is_empty() {
                        continue;
                    }
                    let batch = resp
                        .events()
                        .iter()
                        .filter_map(|ev| {
                            let kv = ev.kv()?;
                            Some(match ev.event_type() {
                                EventType::Put => this.convert(kv).map(WatchEvent::Put),
                                EventType::Delete => {
                                    this.convert(kv).map(|kv| WatchEvent::Delete {
                                        key: kv.key,
                                        revision: kv.mod_revision,
                                    })
                                }
                            })
                        })
                        .collect::<MetaResult<Vec<_>>>();
                    return Some((batch, Some(stream)));
                }
            }
        });
        Ok(events.boxed())
    }

    async fn grant_lease(&self, ttl: Duration) -> MetaResult<LeaseId> {
        let secs = i64::try_from(ttl.as_secs().max(1)).unwrap_or(i64::MAX);
        let resp = self
            .client
            .clone()
            .lease_grant(secs, None)
            .await
            .map_err(unavailable)?;
        Ok(resp.id())
    }

    async fn keep_alive(&self, lease: LeaseId) -> MetaResult<Duration> {
        let mut client = self.client.clone();
        // etcd answers a renewal of a lease it no longer has with "lease not
        // found" (a revoked or expired lease): that is final, not transient.
        let lease_error = move |e: etcd_client::Error| {
            if lease_not_found(&e) {
                MetaError::LeaseExpired(lease)
            } else {
                unavailable(e)
            }
        };
        let renew = async move {
            let (mut keeper, mut stream) =
                client.lease_keep_alive(lease).await.map_err(lease_error)?;
            keeper.keep_alive().await.map_err(lease_error)?;
            match stream.message().await.map_err(lease_error)? {
                Some(resp) if resp.ttl() > 0 => {
                    Ok(Duration::from_secs(u64::try_from(resp.ttl()).unwrap_or(0)))
                }
                Some(_) => Err(MetaError::LeaseExpired(lease)),
                None => Err(MetaError::Unavailable("keep-alive stream closed".into())),
            }
        };
        tokio::time::timeout(self.config.request_timeout, renew)
            .await
            .map_err(|_| MetaError::Unavailable("lease keep-alive timed out".into()))?
    }

    async fn revoke_lease(&self, lease: LeaseId) -> MetaResult<()> {
        match self.client.clone().lease_revoke(lease).await {
            Ok(_) => Ok(()),
            Err(e) if lease_not_found(&e) => Ok(()),
            Err(e) => Err(unavailable(e)),
        }
    }
}
