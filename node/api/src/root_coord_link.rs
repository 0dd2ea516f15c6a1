//! What other roles need from the root coordinator, with caching and batching:
//! timestamps (through the batching [`TsoClient`]), ids (reserved in blocks),
//! and collection descriptions (cached; collections are immutable once created).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tonic::Status;

use crate::Timestamp;
use crate::leader_pool::LeaderPool;
use crate::proto::describe_collection_request::Collection;
use crate::proto::root_coord_client::RootCoordClient;
use crate::proto::{AllocIdRequest, CollectionInfo, DescribeCollectionRequest};
use crate::tso_client::{TsoClient, TsoClientConfig, TsoError};

/// Ids fetched per `AllocId` call.
const ID_BLOCK: u32 = 1000;
/// Most ids one `AllocId` call may reserve (the root coordinator's limit).
const MAX_ID_CALL: u32 = 1_000_000;
/// How long a cached collection description is trusted (a dropped collection
/// disappears from the cache after this).
const COLLECTION_CACHE_TTL: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub struct RootCoordLink {
    pool: LeaderPool,
    tso: TsoClient,
    /// Deadline for one logical call, failovers included.
    deadline: Duration,
    ids: tokio::sync::Mutex<(i64, i64)>,
    collections: Mutex<HashMap<i64, (Instant, CollectionInfo)>>,
}

impl RootCoordLink {
    /// Starts the TSO batching task; must run inside a Tokio runtime.
    pub fn connect(endpoints: &[String], deadline: Duration) -> Result<Self, TsoError> {
        let pool = LeaderPool::new(endpoints, Duration::from_secs(5))
            .map_err(|e| TsoError::BadEndpoint(e.0))?;
        let tso = TsoClient::connect(
            endpoints,
            TsoClientConfig {
                retry_deadline: deadline,
                ..TsoClientConfig::default()
            },
        )?;
        Ok(Self {
            pool,
            tso,
            deadline,
            ids: tokio::sync::Mutex::new((0, 0)),
            collections: Mutex::new(HashMap::new()),
        })
    }

    pub fn tso(&self) -> &TsoClient {
        &self.tso
    }

    /// The pool following the active root coordinator, for calls not wrapped here.
    pub fn pool(&self) -> &LeaderPool {
        &self.pool
    }

    /// The deadline of one logical call, failovers included.
    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    /// The collection named `name`; `NotFound` when it does not exist. Not cached:
    /// a name may be dropped and created again.
    pub async fn collection_by_name(&self, name: &str) -> Result<CollectionInfo, Status> {
        self.describe(Collection::Name(name.to_owned())).await
    }

    /// Asks the root coordinator, and caches the answer by id.
    async fn describe(&self, collection: Collection) -> Result<CollectionInfo, Status> {
        let info = self
            .pool
            .call(self.deadline, |channel| {
                let collection = collection.clone();
                async move {
                    RootCoordClient::new(channel)
                        .describe_collection(DescribeCollectionRequest {
                            collection: Some(collection),
                        })
                        .await
                }
            })
            .await?
            .into_inner()
            .collection
            .ok_or_else(|| Status::internal("the root coordinator described no collection"))?;
        // A collection whose index is not chosen yet changes when it is: not cached.
        if index_unchosen(&info) {
            return Ok(info);
        }
        self.collections
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(info.id, (Instant::now(), info.clone()));
        Ok(info)
    }

    pub async fn timestamp(&self) -> Result<Timestamp, Status> {
        Ok(self.tso.timestamp().await?)
    }

    /// One fresh global id.
    pub async fn alloc_id(&self) -> Result<i64, Status> {
        self.alloc_ids(1)
            .await?
            .pop()
            .ok_or_else(|| Status::internal("the id allocator gave no id"))
    }

    /// `count` fresh global ids, in at most two calls (the rest of the block
    /// fetched earlier, then one reservation for what is still missing).
    pub async fn alloc_ids(&self, count: usize) -> Result<Vec<i64>, Status> {
        let mut out = Vec::with_capacity(count);
        let mut ids = self.ids.lock().await;
        while out.len() < count {
            if ids.0 >= ids.1 {
                let missing = u32::try_from(count - out.len()).unwrap_or(u32::MAX);
                let want = missing.clamp(ID_BLOCK, MAX_ID_CALL);
                let resp = self
                    .pool
                    .call(self.deadline, |channel| async move {
                        RootCoordClient::new(channel)
                            .alloc_id(AllocIdRequest { count: want })
                            .await
                    })
                    .await?
                    .into_inner();
                if resp.count != want {
                    return Err(Status::internal(format!(
                        "asked the root coordinator for {want} ids, got {}",
                        resp.count
                    )));
                }
                *ids = (resp.start, resp.start + i64::from(resp.count));
            }
            let take = (ids.1 - ids.0).min(i64::try_from(count - out.len()).unwrap_or(i64::MAX));
            out.extend(ids.0..ids.0 + take);
            ids.0 += take;
        }
        Ok(out)
    }

    /// The collection with this id as the root coordinator has it now (the
    /// cache refreshed): for decisions a description up to
    /// `COLLECTION_CACHE_TTL` old must not make (loads, index builds after the
    /// index changed).
    pub async fn collection_fresh(&self, id: i64) -> Result<CollectionInfo, Status> {
        self.describe(Collection::Id(id)).await
    }

    /// The collection with this id; `NotFound` when it does not exist.
    pub async fn collection(&self, id: i64) -> Result<CollectionInfo, Status> {
        if let Some((at, info)) = self
            .collections
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            && at.elapsed() < COLLECTION_CACHE_TTL
        {
            return Ok(info.clone());
        }
        self.describe(Collection::Id(id)).await
    }
}

/// Whether a collection's index is still to be chosen (`ChooseIndex`): its
/// description changes when it is, so caches leave it out.
pub fn index_unchosen(info: &CollectionInfo) -> bool {
    info.schema
        .as_ref()
        .and_then(|s| s.index.as_ref())
        .is_some_and(|i| i.index_type == i32::from(crate::proto::IndexType::None))
}
