//! What every role process does around its own service: register a session, watch
//! the other sessions, serve gRPC (with health and reflection) and HTTP, and, for
//! the active/standby coordinators, take office when elected and leave it when the
//! term ends.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use milvus_like_api::proto::Role;
use milvus_like_api::retry::Retry;
use milvus_like_api::settings::{self, defaults};
use prometheus_client::registry::Registry;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::election::{Candidate, Leadership};
use crate::meta::MetaStore;
use crate::metrics::RpcCounter;
use crate::server::{self, Readiness};
use crate::session::{self, NodeRegistry, Session, SessionConfig};

/// Addresses and session settings every role has.
#[derive(Debug, Clone)]
pub struct RoleConfig {
    /// Where the gRPC server listens.
    pub listen: SocketAddr,
    /// `host:port` other processes use to reach this one.
    pub advertise: String,
    /// Where `/metrics`, `/healthz` and `/readyz` are served.
    pub http_listen: SocketAddr,
    pub session: SessionConfig,
    /// Leader lease of active/standby roles: a standby takes over at most this long
    /// after the leader dies.
    pub leader_ttl: Duration,
}

impl RoleConfig {
    pub fn new(listen: SocketAddr, http_listen: SocketAddr) -> Self {
        Self {
            listen,
            advertise: format!("127.0.0.1:{}", listen.port()),
            http_listen,
            session: SessionConfig::default(),
            leader_ttl: defaults::LEADER_TTL,
        }
    }

    /// `role` on its own ports, every interface.
    pub fn of(role: settings::Role) -> Self {
        Self::new(
            SocketAddr::from(([0, 0, 0, 0], role.grpc_port())),
            SocketAddr::from(([0, 0, 0, 0], role.http_port())),
        )
    }

    /// Where a process on this machine reaches `role` by default.
    pub fn local_endpoint(role: settings::Role) -> String {
        format!("127.0.0.1:{}", role.grpc_port())
    }
}

/// A registered process: its session, the view of the other sessions, readiness.
#[derive(Debug)]
pub struct RoleProcess {
    pub store: Arc<dyn MetaStore>,
    pub session: Session,
    pub nodes: NodeRegistry,
    pub config: RoleConfig,
    role: Role,
    readiness: Readiness,
}

/// The running servers of a role process.
#[derive(Debug)]
pub struct Servers {
    pub health: HealthReporter,
    grpc: JoinHandle<()>,
    http: JoinHandle<()>,
}

impl RoleProcess {
    /// Registers the session (retrying while the store is unreachable) and starts
    /// watching the other sessions.
    pub async fn start(
        store: Arc<dyn MetaStore>,
        role: Role,
        config: RoleConfig,
        cancel: &CancellationToken,
    ) -> anyhow::Result<Self> {
        let session = Retry::new("cannot register the session yet")
            .backoff(Duration::from_millis(50), Duration::from_secs(2))
            .deadline(Duration::from_secs(600))
            .until_cancelled(cancel)
            .run(|| {
                Session::register(
                    store.clone(),
                    role,
                    config.advertise.clone(),
                    config.session.clone(),
                    Arc::new(session::basic_health),
                )
            })
            .await?;
        let nodes = NodeRegistry::spawn(store.clone(), cancel.clone()).await;
        let readiness = Readiness::spawn(store.clone(), cancel.clone());
        Ok(Self {
            store,
            session,
            nodes,
            config,
            role,
            readiness,
        })
    }

    pub fn node_id(&self) -> i64 {
        self.session.node_id()
    }

    /// What `/readyz` checks; roles add the dependencies they use.
    pub fn readiness(&self) -> &Readiness {
        &self.readiness
    }

    /// Adds the log to the readiness checks.
    pub fn watch_log(&self, log: &Arc<dyn crate::msgstream::Log>) {
        let log = log.clone();
        self.readiness.watch("log", log.describe(), move || {
            let log = log.clone();
            async move { log.probe().await.map_err(|e| e.to_string()) }
        });
    }

    /// Serves `service` (plus health and reflection) and the HTTP endpoints; the
    /// service reports NOT_SERVING until [`serve_terms`] or the caller says otherwise.
    pub async fn serve<S>(
        &self,
        service: S,
        metrics: Registry,
        cancel: &CancellationToken,
    ) -> anyhow::Result<Servers>
    where
        S: tower::Service<
                axum::http::Request<tonic::body::Body>,
                Response = axum::http::Response<tonic::body::Body>,
                Error = std::convert::Infallible,
            > + tonic::server::NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        self.serve_routes(
            S::NAME,
            tonic::service::Routes::new(service),
            metrics,
            cancel,
        )
        .await
    }

    /// [`RoleProcess::serve`] for a role that serves more than one service on
    /// its port (the proxy: its own and Milvus's); `name` is the one its
    /// health status reports.
    pub async fn serve_routes(
        &self,
        name: &'static str,
        services: tonic::service::Routes,
        mut metrics: Registry,
        cancel: &CancellationToken,
    ) -> anyhow::Result<Servers> {
        let (health, health_service) = tonic_health::server::health_reporter();
        health
            .set_service_status(name, ServingStatus::NotServing)
            .await;
        let rpcs = RpcCounter::default();
        rpcs.register(&mut metrics, session::role_name(self.role));
        let grpc = server::serve_grpc(
            self.config.listen,
            health_service,
            services,
            rpcs,
            cancel.clone(),
        )
        .await?;
        let http = server::serve_http(
            self.config.http_listen,
            metrics,
            self.readiness.clone(),
            cancel.clone(),
        )
        .await?;
        tracing::info!(
            node_id = self.node_id(),
            service = name,
            listen = %self.config.listen,
            advertise = %self.config.advertise,
            http = %self.config.http_listen,
            "serving"
        );
        Ok(Servers { health, grpc, http })
    }

    /// Campaigns for `leader_key` and serves terms with `office` until `cancel` (see
    /// [`serve_terms`]); the standby/active switch of both coordinators.
    pub async fn lead(
        &self,
        leader_key: &str,
        office: &dyn Office,
        servers: &Servers,
        service_name: &str,
        cancel: &CancellationToken,
    ) {
        let candidate = Candidate::new(
            self.store.clone(),
            leader_key,
            self.node_id(),
            self.config.advertise.clone(),
            self.config.leader_ttl,
        );
        serve_terms(
            &candidate,
            self.store.as_ref(),
            office,
            &servers.health,
            service_name,
            cancel,
        )
        .await;
    }

    /// Deletes the session and lets the servers finish (bounded).
    pub async fn shut_down(self, servers: Servers) {
        let node_id = self.node_id();
        self.session.close().await;
        server::drain(servers.grpc, servers.http).await;
        tracing::info!(node_id, "stopped");
    }
}

/// The duties of an active/standby role while it leads.
#[async_trait::async_trait]
pub trait Office: Send + Sync {
    /// Takes office for this term. Background work must stop when `term` fires.
    async fn take_office(
        &self,
        leadership: Leadership,
        term: CancellationToken,
    ) -> anyhow::Result<()>;
    /// The term ended; stop serving leader-only requests.
    fn leave_office(&self);
}

/// Campaigns, serves a term when elected, stands by again when it ends, until
/// `cancel`; then resigns so that a standby takes over at once.
pub async fn serve_terms(
    candidate: &Candidate,
    store: &dyn MetaStore,
    office: &dyn Office,
    health: &HealthReporter,
    service_name: &str,
    cancel: &CancellationToken,
) {
    while let Some(leadership) = candidate.campaign(cancel).await {
        let term = cancel.child_token();
        match office.take_office(leadership.clone(), term.clone()).await {
            Ok(()) => {
                tracing::info!(service = service_name, "took office");
                health
                    .set_service_status(service_name, ServingStatus::Serving)
                    .await;
                tokio::select! {
                    () = leadership.lost() => {}
                    () = cancel.cancelled() => {}
                }
                term.cancel();
                office.leave_office();
                health
                    .set_service_status(service_name, ServingStatus::NotServing)
                    .await;
                if cancel.is_cancelled() {
                    leadership.resign(store).await;
                } else {
                    tracing::warn!(service = service_name, "term ended; standing by");
                }
            }
            Err(e) => {
                term.cancel();
                tracing::error!(error = %format!("{e:#}"), "could not take office; resigning and retrying");
                leadership.resign(store).await;
                tokio::select! {
                    () = cancel.cancelled() => {}
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }
}

/// What a coordinator's RPCs see of its office: the leader's state while this
/// process leads and its leadership holds, `None` on a standby.
#[derive(Debug)]
pub struct Seat<A> {
    held: std::sync::RwLock<Option<(Leadership, Arc<A>)>>,
    leader_key: &'static str,
    /// The role, for the standby's answer ("data coordinator").
    what: &'static str,
    /// 1 while this process holds the seat.
    is_leader: prometheus_client::metrics::gauge::Gauge,
}

impl<A> Seat<A> {
    pub fn new(
        leader_key: &'static str,
        what: &'static str,
        is_leader: prometheus_client::metrics::gauge::Gauge,
    ) -> Self {
        Self {
            held: std::sync::RwLock::new(None),
            leader_key,
            what,
            is_leader,
        }
    }

    /// The office, while its leadership is valid.
    pub fn get(&self) -> Option<Arc<A>> {
        let held = self.held.read().unwrap_or_else(|p| p.into_inner());
        held.as_ref()
            .filter(|(leadership, _)| leadership.is_valid())
            .map(|(_, a)| a.clone())
    }

    /// Takes the seat for a term.
    pub fn take(&self, leadership: Leadership, office: Arc<A>) {
        *self.held.write().unwrap_or_else(|p| p.into_inner()) = Some((leadership, office));
        self.is_leader.set(1);
    }

    /// The term ended.
    pub fn leave(&self) {
        *self.held.write().unwrap_or_else(|p| p.into_inner()) = None;
        self.is_leader.set(0);
    }

    /// The office, or `Unavailable` naming the leader for a standby.
    pub async fn leader_only(&self, store: &dyn MetaStore) -> Result<Arc<A>, tonic::Status> {
        match self.get() {
            Some(a) => Ok(a),
            None => Err(not_leader_status(store, self.leader_key, self.what).await),
        }
    }
}

/// `Unavailable` for a standby, naming the leader (`what` is the role, e.g. "data
/// coordinator") and carrying its address in the leader-hint metadata so that
/// clients go straight there.
async fn not_leader_status(store: &dyn MetaStore, leader_key: &str, what: &str) -> tonic::Status {
    let leader = crate::election::read_leader(store, leader_key)
        .await
        .ok()
        .flatten();
    let mut status = tonic::Status::unavailable(match &leader {
        Some(l) => format!("not the leader; {what} {} at {} is", l.node_id, l.address),
        None => format!("not the leader, and no {what} leads right now; retry shortly"),
    });
    if let Some(Ok(v)) = leader.map(|l| l.address.parse()) {
        status
            .metadata_mut()
            .insert(milvus_like_api::LEADER_HINT_METADATA, v);
    }
    status
}
