//! The root coordinator: TSO, global ids, collection metadata, node registry.
//!
//! Several may run; one leads (leader key `election/rootcoord`). Only the leader
//! issues timestamps and ids and changes collections; the others answer
//! `Unavailable` with the leader's address in the `x-milvuslike-leader` metadata.
//! Reads (collections, nodes, leader) are served by every instance.

mod catalog;

use std::sync::Arc;
use std::time::Duration;

use milvus_like_api::proto::root_coord_server::{RootCoord, RootCoordServer};
use milvus_like_api::proto::{self, Role};
use milvus_like_api::schema::{CollectionSchema, IndexSpec, Metric, SchemaError};
use milvus_like_api::settings;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

pub use catalog::{Catalog, CatalogError};

use crate::election::Leadership;
use crate::idalloc::IdAllocator;
use crate::meta::MetaStore;
use crate::metrics::{RoleLabels, RootCoordMetrics};
use crate::role::{Office, RoleConfig, RoleProcess, Seat};
use crate::session::{self, NodeRegistry};
use crate::tso::{Clock, SystemClock, TsoAllocator, TsoConfig};

/// Leader key of the root coordinators.
pub const LEADER_KEY: &str = "election/rootcoord";

#[derive(Debug, Clone)]
pub struct RootCoordConfig {
    pub role: RoleConfig,
    pub tso: TsoConfig,
    /// Ids reserved per metadata write.
    pub id_batch: u32,
}

impl Default for RootCoordConfig {
    fn default() -> Self {
        Self {
            role: RoleConfig::of(settings::Role::RootCoord),
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
    config: RootCoordConfig,
    seat: Seat<Active>,
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
    async fn leader_only(&self) -> Result<Arc<Active>, Status> {
        self.shared
            .seat
            .leader_only(self.shared.store.as_ref())
            .await
    }

    /// `count` timestamps, if this coordinator leads: the answer of both the
    /// unary call and the stream.
    async fn timestamps(&self, count: u32) -> Result<proto::AllocTimestampResponse, Status> {
        let active = self.leader_only().await?;
        let first = active.tso.alloc(count).await?;
        Ok(proto::AllocTimestampResponse {
            timestamp: first.as_u64(),
            count,
        })
    }
}

/// The answers of one `AllocTimestampStream`.
type TimestampStream = std::pin::Pin<
    Box<dyn tokio_stream::Stream<Item = Result<proto::AllocTimestampResponse, Status>> + Send>,
>;

#[tonic::async_trait]
impl RootCoord for RootCoordService {
    async fn alloc_timestamp(
        &self,
        request: Request<proto::AllocTimestampRequest>,
    ) -> Result<Response<proto::AllocTimestampResponse>, Status> {
        self.timestamps(request.into_inner().count)
            .await
            .map(Response::new)
    }

    type AllocTimestampStreamStream = TimestampStream;

    async fn alloc_timestamp_stream(
        &self,
        request: Request<tonic::Streaming<proto::AllocTimestampRequest>>,
    ) -> Result<Response<Self::AllocTimestampStreamStream>, Status> {
        use futures::StreamExt as _;
        // Refused at once by a standby, so that the client's pool moves on to the
        // leader when it opens the stream (each answer checks again).
        self.leader_only().await?;
        let this = self.clone();
        // One answer per request, in order; the first error ends the stream.
        let answers = request.into_inner().then(move |request| {
            let this = this.clone();
            async move { this.timestamps(request?.count).await }
        });
        Ok(Response::new(Box::pin(answers)))
    }

    #[tracing::instrument(skip_all, fields(node_id = self.shared.node_id))]
    async fn alloc_id(
        &self,
        request: Request<proto::AllocIdRequest>,
    ) -> Result<Response<proto::AllocIdResponse>, Status> {
        let count = request.into_inner().count;
        async {
            let active = self.leader_only().await?;
            let start = active.ids.alloc(count).await?;
            self.shared.metrics.ids_allocated.inc_by(u64::from(count));
            Ok(Response::new(proto::AllocIdResponse { start, count }))
        }
        .await
    }

    #[tracing::instrument(skip_all, fields(node_id = self.shared.node_id, collection))]
    async fn create_collection(
        &self,
        request: Request<proto::CreateCollectionRequest>,
    ) -> Result<Response<proto::CreateCollectionResponse>, Status> {
        async {
            let schema = request
                .into_inner()
                .schema
                .ok_or_else(|| Status::invalid_argument("the request has no schema"))?;
            let schema = CollectionSchema::try_from(schema)
                .map_err(|e| Status::invalid_argument(format!("invalid schema: {e}")))?;
            tracing::Span::current().record("collection", schema.name.as_str());
            let active = self.leader_only().await?;
            let first_id = active.ids.alloc(2).await?;
            let created = active.tso.alloc(1).await?;
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
                .await?;
            Ok(Response::new(proto::CreateCollectionResponse {
                collection: Some(info),
            }))
        }
        .await
    }

    #[tracing::instrument(skip_all, fields(node_id = self.shared.node_id))]
    async fn describe_collection(
        &self,
        request: Request<proto::DescribeCollectionRequest>,
    ) -> Result<Response<proto::DescribeCollectionResponse>, Status> {
        use proto::describe_collection_request::Collection;
        async {
            let info = match request.into_inner().collection {
                Some(Collection::Name(name)) => self.shared.catalog.describe_by_name(&name).await,
                Some(Collection::Id(id)) => self.shared.catalog.describe_by_id(id).await,
                None => {
                    return Err(Status::invalid_argument(
                        "name the collection by name or id",
                    ));
                }
            };
            Ok(Response::new(proto::DescribeCollectionResponse {
                collection: Some(info?),
            }))
        }
        .await
    }

    #[tracing::instrument(skip_all, fields(node_id = self.shared.node_id))]
    async fn list_collections(
        &self,
        _request: Request<proto::ListCollectionsRequest>,
    ) -> Result<Response<proto::ListCollectionsResponse>, Status> {
        let collections = self.shared.catalog.list().await?;
        Ok(Response::new(proto::ListCollectionsResponse {
            collections,
        }))
    }

    #[tracing::instrument(skip_all, fields(node_id = self.shared.node_id, collection))]
    async fn drop_collection(
        &self,
        request: Request<proto::DropCollectionRequest>,
    ) -> Result<Response<proto::DropCollectionResponse>, Status> {
        let name = request.into_inner().name;
        tracing::Span::current().record("collection", name.as_str());
        async {
            let active = self.leader_only().await?;
            let id = self
                .shared
                .catalog
                .drop_collection(&active.leadership, &name)
                .await?;
            Ok(Response::new(proto::DropCollectionResponse { id }))
        }
        .await
    }

    #[tracing::instrument(skip_all, fields(node_id = self.shared.node_id, collection))]
    async fn choose_index(
        &self,
        request: Request<proto::ChooseIndexRequest>,
    ) -> Result<Response<proto::ChooseIndexResponse>, Status> {
        let req = request.into_inner();
        tracing::Span::current().record("collection", req.name.as_str());
        async {
            let invalid = |e: SchemaError| Status::invalid_argument(e.to_string());
            let metric = Metric::try_from(req.metric_type).map_err(invalid)?;
            let index = IndexSpec::try_from(req.index).map_err(invalid)?;
            let active = self.leader_only().await?;
            let info = self
                .shared
                .catalog
                .choose_index(
                    &active.leadership,
                    &req.name,
                    metric,
                    index,
                    &req.index_name,
                )
                .await?;
            Ok(Response::new(proto::ChooseIndexResponse {
                collection: Some(info),
            }))
        }
        .await
    }

    #[tracing::instrument(skip_all, fields(node_id = self.shared.node_id, collection))]
    async fn drop_index(
        &self,
        request: Request<proto::DropIndexRequest>,
    ) -> Result<Response<proto::DropIndexResponse>, Status> {
        let req = request.into_inner();
        tracing::Span::current().record("collection", req.name.as_str());
        let active = self.leader_only().await?;
        let info = self
            .shared
            .catalog
            .drop_index(&active.leadership, &req.name, &req.index_name)
            .await?;
        Ok(Response::new(proto::DropIndexResponse {
            collection: Some(info),
        }))
    }

    async fn list_nodes(
        &self,
        request: Request<proto::ListNodesRequest>,
    ) -> Result<Response<proto::ListNodesResponse>, Status> {
        let role = request.into_inner().role;
        if Role::try_from(role).is_err() {
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
        }
    }

    async fn get_leader(
        &self,
        _request: Request<proto::GetLeaderRequest>,
    ) -> Result<Response<proto::GetLeaderResponse>, Status> {
        match crate::election::read_leader(self.shared.store.as_ref(), LEADER_KEY).await {
            Ok(Some(l)) => Ok(Response::new(proto::GetLeaderResponse {
                node_id: l.node_id,
                is_self: l.node_id == self.shared.node_id && self.shared.seat.get().is_some(),
                address: l.address,
            })),
            Ok(None) => Err(Status::unavailable("no root coordinator leads right now")),
            Err(e) => Err(e.into()),
        }
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

#[async_trait::async_trait]
impl Office for RootCoordService {
    /// Starts the TSO and the id allocator under this term's fence.
    async fn take_office(
        &self,
        leadership: Leadership,
        term: CancellationToken,
    ) -> anyhow::Result<()> {
        let shared = &self.shared;
        let tso = TsoAllocator::start(
            shared.store.clone(),
            leadership.clone(),
            shared.clock.clone(),
            shared.config.tso.clone(),
            shared.metrics.clone(),
        )
        .await?;
        let ids = IdAllocator::start(
            shared.store.clone(),
            leadership.clone(),
            shared.config.id_batch,
        )
        .await?;
        crate::spawn(tso.clone().run(term));
        shared.seat.take(
            leadership.clone(),
            Arc::new(Active {
                leadership,
                tso,
                ids,
            }),
        );
        shared.metrics.leader_elections.inc();
        Ok(())
    }

    fn leave_office(&self) {
        self.shared.seat.leave();
    }
}

/// Runs a root coordinator until `cancel` fires: registers its session, serves gRPC
/// (with health and reflection) and HTTP, and serves terms as leader when elected.
pub async fn run(
    store: Arc<dyn MetaStore>,
    config: RootCoordConfig,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    // The role's span; `serve` records the node id (see `crate::spawn`).
    let span = tracing::info_span!("rootcoord", node_id = tracing::field::Empty);
    tracing::Instrument::instrument(serve(store, config, cancel), span).await
}

async fn serve(
    store: Arc<dyn MetaStore>,
    config: RootCoordConfig,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let metrics = Arc::new(RootCoordMetrics::default());
    let mut registry = prometheus_client::registry::Registry::default();
    metrics.register(&mut registry);
    let process =
        RoleProcess::start(store.clone(), Role::RootCoord, config.role.clone(), &cancel).await?;
    let node_id = process.node_id();
    tracing::Span::current().record("node_id", node_id);
    crate::spawn(export_node_gauges(
        process.nodes.clone(),
        metrics.clone(),
        cancel.clone(),
    ));
    let service = RootCoordService {
        shared: Arc::new(Shared {
            store: store.clone(),
            config: config.clone(),
            seat: Seat::new(LEADER_KEY, "root coordinator", metrics.is_leader.clone()),
            registry: process.nodes.clone(),
            catalog: Catalog::new(store.clone()),
            metrics,
            node_id,
            clock: Arc::new(SystemClock),
        }),
    };
    let servers = process
        .serve(RootCoordServer::new(service.clone()), registry, &cancel)
        .await?;
    process
        .lead(
            LEADER_KEY,
            &service,
            &servers,
            <RootCoordServer<RootCoordService> as tonic::server::NamedService>::NAME,
            &cancel,
        )
        .await;
    process.shut_down(servers).await;
    Ok(())
}
