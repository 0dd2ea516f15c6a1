//! The root coordinator: TSO, global ids, collection metadata, node registry.
//!
//! Several may run; one leads (leader key `election/rootcoord`). Only the leader
//! issues timestamps and ids and changes collections; the others answer
//! `Unavailable` with the leader's address in the `x-milvuslike-leader` metadata.
//! Reads (collections, nodes, leader) are served by every instance.

mod catalog;

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use milvus_like_api::LEADER_HINT_METADATA;
use milvus_like_api::proto::root_coord_server::{RootCoord, RootCoordServer};
use milvus_like_api::proto::{self, Role};
use milvus_like_api::schema::CollectionSchema;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

pub use catalog::{Catalog, CatalogError, DEFAULT_PARTITION};

use crate::election::{Candidate, Leadership};
use crate::idalloc::{IdAllocator, IdError};
use crate::meta::{MetaError, MetaStore};
use crate::metrics::{RoleLabels, RootCoordMetrics, RpcLabels};
use crate::server::{self, Readiness};
use crate::session::{self, NodeRegistry, Session, SessionConfig};
use crate::tso::{Clock, SystemClock, TsoAllocator, TsoConfig, TsoError};

/// Leader key of the root coordinators.
pub const LEADER_KEY: &str = "election/rootcoord";

#[derive(Debug, Clone)]
pub struct RootCoordConfig {
    /// Where the gRPC server listens.
    pub listen: SocketAddr,
    /// `host:port` other processes use to reach this one.
    pub advertise: String,
    /// Where `/metrics`, `/healthz` and `/readyz` are served.
    pub http_listen: SocketAddr,
    pub session: SessionConfig,
    /// Leader lease: a standby takes over at most this long after the leader dies.
    pub leader_ttl: Duration,
    pub tso: TsoConfig,
    /// Ids reserved per metadata write.
    pub id_batch: u32,
}

impl Default for RootCoordConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], milvus_like_api::ports::ROOT_COORD)),
            advertise: format!("127.0.0.1:{}", milvus_like_api::ports::ROOT_COORD),
            http_listen: SocketAddr::from(([0, 0, 0, 0], 9091)),
            session: SessionConfig::default(),
            leader_ttl: Duration::from_secs(10),
            tso: TsoConfig::default(),
            id_batch: 10_000,
        }
    }
}

/// What only the leader has.
#[derive(Debug)]
struct Active {
    leadership: Leadership,
    tso: Arc<TsoAllocator>,
    ids: IdAllocator,
}

#[derive(Debug)]
struct Shared {
    store: Arc<dyn MetaStore>,
    active: RwLock<Option<Arc<Active>>>,
    registry: NodeRegistry,
    catalog: Catalog,
    metrics: Arc<RootCoordMetrics>,
    node_id: i64,
    clock: Arc<dyn Clock>,
}

/// The gRPC service. Cheap to clone.
#[derive(Debug, Clone)]
pub struct RootCoordService {
    shared: Arc<Shared>,
}

impl RootCoordService {
    fn active(&self) -> Option<Arc<Active>> {
        let active = self
            .shared
            .active
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        active.filter(|a| a.leadership.is_valid())
    }

    fn set_active(&self, active: Option<Arc<Active>>) {
        self.shared
            .metrics
            .is_leader
            .set(i64::from(active.is_some()));
        *self
            .shared
            .active
            .write()
            .unwrap_or_else(|p| p.into_inner()) = active;
    }

    /// Takes office: starts the TSO and id allocator under this term's fence.
    async fn activate(
        &self,
        leadership: Leadership,
        config: &RootCoordConfig,
    ) -> Result<Arc<TsoAllocator>, anyhow::Error> {
        let tso = TsoAllocator::start(
            self.shared.store.clone(),
            leadership.clone(),
            self.shared.clock.clone(),
            config.tso.clone(),
            self.shared.metrics.clone(),
        )
        .await?;
        let ids = IdAllocator::start(
            self.shared.store.clone(),
            leadership.clone(),
            config.id_batch,
        )
        .await?;
        self.set_active(Some(Arc::new(Active {
            leadership,
            tso: tso.clone(),
            ids,
        })));
        self.shared.metrics.leader_elections.inc();
        Ok(tso)
    }

    /// `Unavailable`, carrying the current leader's address when known.
    async fn not_leader(&self) -> Status {
        let leader = crate::election::read_leader(self.shared.store.as_ref(), LEADER_KEY)
            .await
            .ok()
            .flatten();
        let mut status = Status::unavailable(match &leader {
            Some(l) => format!(
                "not the leader; root coordinator {} at {} is",
                l.node_id, l.address
            ),
            None => "not the leader, and no leader is elected right now; retry shortly".into(),
        });
        if let Some(Ok(v)) = leader.map(|l| l.address.parse()) {
            status.metadata_mut().insert(LEADER_HINT_METADATA, v);
        }
        status
    }

    async fn leader_only(&self) -> Result<Arc<Active>, Status> {
        match self.active() {
            Some(a) => Ok(a),
            None => Err(self.not_leader().await),
        }
    }

    fn count(&self, method: &'static str, result: &Result<impl Sized, Status>) {
        let code = match result {
            Ok(_) => "OK",
            Err(s) => code_name(s.code()),
        };
        self.shared
            .metrics
            .rpcs
            .get_or_create(&RpcLabels { method, code })
            .inc();
    }

    async fn map_error<E: Into<RootCoordError>>(&self, e: E) -> Status {
        match e.into() {
            RootCoordError::NotLeader => self.not_leader().await,
            RootCoordError::Status(s) => s,
        }
    }
}

/// Errors of the root coordinator's parts, before they become a `Status`.
enum RootCoordError {
    NotLeader,
    Status(Status),
}

fn meta_status(e: &MetaError) -> Status {
    match e {
        MetaError::Unavailable(m) => {
            Status::unavailable(format!("metadata store unreachable: {m}"))
        }
        other => Status::internal(other.to_string()),
    }
}

impl From<TsoError> for RootCoordError {
    fn from(e: TsoError) -> Self {
        match e {
            TsoError::NotLeader => Self::NotLeader,
            TsoError::BadCount(_) => Self::Status(Status::invalid_argument(e.to_string())),
            TsoError::WindowExhausted => Self::Status(Status::unavailable(e.to_string())),
            TsoError::Meta(m) => Self::Status(meta_status(&m)),
        }
    }
}

impl From<IdError> for RootCoordError {
    fn from(e: IdError) -> Self {
        match e {
            IdError::NotLeader => Self::NotLeader,
            IdError::BadCount(_) => Self::Status(Status::invalid_argument(e.to_string())),
            IdError::Meta(m) => Self::Status(meta_status(&m)),
        }
    }
}

impl From<CatalogError> for RootCoordError {
    fn from(e: CatalogError) -> Self {
        match e {
            CatalogError::NotLeader => Self::NotLeader,
            CatalogError::InvalidSchema(_) => Self::Status(Status::invalid_argument(e.to_string())),
            CatalogError::AlreadyExists(_) => Self::Status(Status::already_exists(e.to_string())),
            CatalogError::NotFound(_) => Self::Status(Status::not_found(e.to_string())),
            CatalogError::Meta(m) => Self::Status(meta_status(&m)),
        }
    }
}

fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code as C;
    match code {
        C::Ok => "OK",
        C::InvalidArgument => "INVALID_ARGUMENT",
        C::NotFound => "NOT_FOUND",
        C::AlreadyExists => "ALREADY_EXISTS",
        C::Unavailable => "UNAVAILABLE",
        C::Internal => "INTERNAL",
        C::DeadlineExceeded => "DEADLINE_EXCEEDED",
        _ => "OTHER",
    }
}

#[tonic::async_trait]
impl RootCoord for RootCoordService {
    async fn alloc_timestamp(
        &self,
        request: Request<proto::AllocTimestampRequest>,
    ) -> Result<Response<proto::AllocTimestampResponse>, Status> {
        let count = request.into_inner().count;
        let result = async {
            let active = self.leader_only().await?;
            match active.tso.alloc(count).await {
                Ok(first) => Ok(Response::new(proto::AllocTimestampResponse {
                    timestamp: first.as_u64(),
                    count,
                })),
                Err(e) => Err(self.map_error(e).await),
            }
        }
        .await;
        self.count("AllocTimestamp", &result);
        result
    }

    #[tracing::instrument(skip_all, fields(node_id = self.shared.node_id))]
    async fn alloc_id(
        &self,
        request: Request<proto::AllocIdRequest>,
    ) -> Result<Response<proto::AllocIdResponse>, Status> {
        let count = request.into_inner().count;
        let result = async {
            let active = self.leader_only().await?;
            match active.ids.alloc(count).await {
                Ok(start) => {
                    self.shared.metrics.ids_allocated.inc_by(u64::from(count));
                    Ok(Response::new(proto::AllocIdResponse { start, count }))
                }
                Err(e) => Err(self.map_error(e).await),
            }
        }
        .await;
        self.count("AllocId", &result);
        result
    }

    #[tracing::instrument(skip_all, fields(node_id = self.shared.node_id, collection))]
    async fn create_collection(
        &self,
        request: Request<proto::CreateCollectionRequest>,
    ) -> Result<Response<proto::CreateCollectionResponse>, Status> {
        let result = async {
            let schema = request
                .into_inner()
                .schema
                .ok_or_else(|| Status::invalid_argument("the request has no schema"))?;
            let schema = CollectionSchema::try_from(schema)
                .map_err(|e| Status::invalid_argument(format!("invalid schema: {e}")))?;
            tracing::Span::current().record("collection", schema.name.as_str());
            let active = self.leader_only().await?;
            let first_id = match active.ids.alloc(2).await {
                Ok(id) => id,
                Err(e) => return Err(self.map_error(e).await),
            };
            let created = match active.tso.alloc(1).await {
                Ok(ts) => ts,
                Err(e) => return Err(self.map_error(e).await),
            };
            let info = self
                .shared
                .catalog
                .create(
                    &active.leadership,
                    schema,
                    first_id,
                    first_id + 1,
                    created.as_u64(),
                )
                .await;
            match info {
                Ok(info) => Ok(Response::new(proto::CreateCollectionResponse {
                    collection: Some(info),
                })),
                Err(e) => Err(self.map_error(e).await),
            }
        }
        .await;
        self.count("CreateCollection", &result);
        result
    }

    #[tracing::instrument(skip_all, fields(node_id = self.shared.node_id))]
    async fn describe_collection(
        &self,
        request: Request<proto::DescribeCollectionRequest>,
    ) -> Result<Response<proto::DescribeCollectionResponse>, Status> {
        use proto::describe_collection_request::Collection;
        let result = async {
            let info = match request.into_inner().collection {
                Some(Collection::Name(name)) => self.shared.catalog.describe_by_name(&name).await,
                Some(Collection::Id(id)) => self.shared.catalog.describe_by_id(id).await,
                None => {
                    return Err(Status::invalid_argument(
                        "name the collection by name or id",
                    ));
                }
            };
            match info {
                Ok(info) => Ok(Response::new(proto::DescribeCollectionResponse {
                    collection: Some(info),
                })),
                Err(e) => Err(self.map_error(e).await),
            }
        }
        .await;
        self.count("DescribeCollection", &result);
        result
    }

    #[tracing::instrument(skip_all, fields(node_id = self.shared.node_id))]
    async fn list_collections(
        &self,
        _request: Request<proto::ListCollectionsRequest>,
    ) -> Result<Response<proto::ListCollectionsResponse>, Status> {
        let result = match self.shared.catalog.list().await {
            Ok(collections) => Ok(Response::new(proto::ListCollectionsResponse {
                collections,
            })),
            Err(e) => Err(self.map_error(e).await),
        };
        self.count("ListCollections", &result);
        result
    }

    #[tracing::instrument(skip_all, fields(node_id = self.shared.node_id, collection))]
    async fn drop_collection(
        &self,
        request: Request<proto::DropCollectionRequest>,
    ) -> Result<Response<proto::DropCollectionResponse>, Status> {
        let name = request.into_inner().name;
        tracing::Span::current().record("collection", name.as_str());
        let result = async {
            let active = self.leader_only().await?;
            match self
                .shared
                .catalog
                .drop_collection(&active.leadership, &name)
                .await
            {
                Ok(id) => Ok(Response::new(proto::DropCollectionResponse { id })),
                Err(e) => Err(self.map_error(e).await),
            }
        }
        .await;
        self.count("DropCollection", &result);
        result
    }

    async fn list_nodes(
        &self,
        request: Request<proto::ListNodesRequest>,
    ) -> Result<Response<proto::ListNodesResponse>, Status> {
        let role = request.into_inner().role;
        let result = if Role::try_from(role).is_err() {
            Err(Status::invalid_argument(format!("unknown role {role}")))
        } else {
            let nodes = self
                .shared
                .registry
                .nodes()
                .into_iter()
                .filter(|n| role == 0 || n.role == role)
                .collect();
            Ok(Response::new(proto::ListNodesResponse { nodes }))
        };
        self.count("ListNodes", &result);
        result
    }

    async fn get_leader(
        &self,
        _request: Request<proto::GetLeaderRequest>,
    ) -> Result<Response<proto::GetLeaderResponse>, Status> {
        let result =
            match crate::election::read_leader(self.shared.store.as_ref(), LEADER_KEY).await {
                Ok(Some(l)) => Ok(Response::new(proto::GetLeaderResponse {
                    node_id: l.node_id,
                    is_self: l.node_id == self.shared.node_id && self.active().is_some(),
                    address: l.address,
                })),
                Ok(None) => Err(Status::unavailable("no root coordinator leads right now")),
                Err(e) => Err(meta_status(&e)),
            };
        self.count("GetLeader", &result);
        result
    }
}

/// Publishes node counts per role, for dashboards.
async fn export_node_gauges(
    registry: NodeRegistry,
    metrics: Arc<RootCoordMetrics>,
    cancel: CancellationToken,
) {
    loop {
        let nodes = registry.nodes();
        for role in [
            Role::RootCoord,
            Role::DataCoord,
            Role::DataNode,
            Role::Proxy,
        ] {
            let n = nodes.iter().filter(|n| n.role == role as i32).count();
            metrics
                .nodes
                .get_or_create(&RoleLabels {
                    role: session::role_name(role),
                })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        let unhealthy = nodes.iter().filter(|n| !n.healthy).count();
        metrics
            .unhealthy_nodes
            .set(i64::try_from(unhealthy).unwrap_or(i64::MAX));
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
}

/// Runs a root coordinator until `cancel` fires: registers its session, serves gRPC
/// (with health and reflection) and HTTP, and campaigns for leadership in a loop.
pub async fn run(
    store: Arc<dyn MetaStore>,
    config: RootCoordConfig,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let metrics = Arc::new(RootCoordMetrics::default());
    let mut registry = prometheus_client::registry::Registry::default();
    metrics.register(&mut registry);

    let session = crate::meta::with_retry("session registration", Duration::from_secs(600), || {
        Session::register(
            store.clone(),
            Role::RootCoord,
            config.advertise.clone(),
            config.session.clone(),
            Arc::new(session::basic_health),
        )
    })
    .await?;
    let node_id = session.node_id();
    let span = tracing::info_span!("rootcoord", node_id);
    let _enter = span.enter();

    let nodes = NodeRegistry::spawn(store.clone(), cancel.clone()).await;
    tokio::spawn(export_node_gauges(
        nodes.clone(),
        metrics.clone(),
        cancel.clone(),
    ));
    let service = RootCoordService {
        shared: Arc::new(Shared {
            store: store.clone(),
            active: RwLock::new(None),
            registry: nodes,
            catalog: Catalog::new(store.clone()),
            metrics: metrics.clone(),
            node_id,
            clock: Arc::new(SystemClock),
        }),
    };

    let readiness = Readiness::spawn(store.clone(), cancel.clone());
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_not_serving::<RootCoordServer<RootCoordService>>()
        .await;
    let grpc = server::serve_grpc(
        config.listen,
        health_service,
        RootCoordServer::new(service.clone()),
        cancel.clone(),
    )
    .await?;
    let http = server::serve_http(config.http_listen, registry, readiness, cancel.clone()).await?;
    tracing::info!(listen = %config.listen, advertise = %config.advertise, http = %config.http_listen, "root coordinator up");

    let candidate = Candidate::new(
        store.clone(),
        LEADER_KEY,
        node_id,
        config.advertise.clone(),
        config.leader_ttl,
    );
    while let Some(leadership) = candidate.campaign(&cancel).await {
        match service.activate(leadership.clone(), &config).await {
            Ok(tso) => {
                tracing::info!(node_id, "serving as the active root coordinator");
                health
                    .set_serving::<RootCoordServer<RootCoordService>>()
                    .await;
                tokio::spawn(tso.run(cancel.child_token()));
                tokio::select! {
                    () = leadership.lost() => {}
                    () = cancel.cancelled() => {}
                }
                service.set_active(None);
                health
                    .set_not_serving::<RootCoordServer<RootCoordService>>()
                    .await;
                if cancel.is_cancelled() {
                    leadership.resign(store.as_ref()).await;
                } else {
                    tracing::warn!(node_id, "no longer the leader; standing by");
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "could not take office; resigning and retrying");
                leadership.resign(store.as_ref()).await;
                tokio::select! {
                    () = cancel.cancelled() => {}
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }
    session.close().await;
    server::drain(grpc, http).await;
    tracing::info!(node_id, "root coordinator stopped");
    Ok(())
}
