//! Collection metadata: `collection/{id}` holds the `CollectionInfo`,
//! `collection-name/{name}` maps a name to its id. Writes are fenced by the
//! leader key and check the name is free in the same transaction.

use std::sync::Arc;

use milvus_like_api::proto::{self, CollectionInfo, PartitionInfo};
use milvus_like_api::schema::{CollectionSchema, IndexSpec, Metric, SchemaError, validate_name};
use prost::Message;

use crate::election::Leadership;
use crate::meta::{Compare, MetaError, MetaStore, Op, Txn};

const INFO_PREFIX: &str = "collection/";
const NAME_PREFIX: &str = "collection-name/";

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("invalid schema: {0}")]
    InvalidSchema(#[from] SchemaError),
    #[error("collection {0:?} already exists")]
    AlreadyExists(String),
    #[error("collection {0} does not exist")]
    NotFound(String),
    #[error(
        "collection {name:?} already has its index ({have}); release the collection and drop its index (DropIndex) to choose another"
    )]
    IndexChosen { name: String, have: String },
    #[error("this root coordinator is not the leader")]
    NotLeader,
    #[error(transparent)]
    Meta(#[from] MetaError),
}

#[derive(Debug, Clone)]
pub struct Catalog {
    store: Arc<dyn MetaStore>,
}

impl Catalog {
    pub fn new(store: Arc<dyn MetaStore>) -> Self {
        Self { store }
    }

    /// Stores a validated schema under ids the caller allocated.
    pub async fn create(
        &self,
        leadership: &Leadership,
        schema: CollectionSchema,
        collection_id: i64,
        partition_id: i64,
        created_ts: u64,
    ) -> Result<CollectionInfo, CatalogError> {
        let name_key = format!("{NAME_PREFIX}{}", schema.name);
        let info = CollectionInfo {
            id: collection_id,
            schema: Some(proto::CollectionSchema::from(&schema)),
            partitions: vec![PartitionInfo {
                id: partition_id,
                name: milvus_like_api::schema::DEFAULT_PARTITION.into(),
            }],
            created_ts,
            index_name: String::new(),
            index_generation: 0,
        };
        let txn = Txn::when([leadership.fence(), Compare::Absent(name_key.clone())])
            .then([
                Op::put(name_key, collection_id.to_string().into_bytes()),
                Op::put(info_key(collection_id), info.encode_to_vec()),
            ])
            .otherwise([Op::Get(leadership_key_of(leadership))]);
        let result = self.store.txn(txn).await?;
        if !result.succeeded {
            return Err(
                if leadership.is_valid() && still_leader(&result.gets, leadership) {
                    CatalogError::AlreadyExists(schema.name)
                } else {
                    leadership.give_up("fenced collection write failed");
                    CatalogError::NotLeader
                },
            );
        }
        tracing::info!(collection_id, name = %schema.name, "collection created");
        Ok(info)
    }

    pub async fn describe_by_name(&self, name: &str) -> Result<CollectionInfo, CatalogError> {
        validate_name("collection", name)?;
        let id = self
            .id_of(name)
            .await?
            .ok_or_else(|| CatalogError::NotFound(format!("{name:?}")))?;
        self.describe_by_id(id).await
    }

    pub async fn describe_by_id(&self, id: i64) -> Result<CollectionInfo, CatalogError> {
        let key = info_key(id);
        let kv = self
            .store
            .get(&key)
            .await?
            .ok_or_else(|| CatalogError::NotFound(format!("with id {id}")))?;
        Ok(decode_info(&key, &kv.value)?)
    }

    pub async fn list(&self) -> Result<Vec<CollectionInfo>, CatalogError> {
        let (kvs, _) = self.store.scan_prefix(INFO_PREFIX).await?;
        let mut list = kvs
            .iter()
            .map(|kv| decode_info(&kv.key, &kv.value))
            .collect::<Result<Vec<_>, _>>()?;
        list.sort_by(|a, b| {
            let name = |c: &CollectionInfo| c.schema.as_ref().map(|s| s.name.clone());
            name(a).cmp(&name(b))
        });
        Ok(list)
    }

    /// Deletes the collection; returns its id.
    pub async fn drop_collection(
        &self,
        leadership: &Leadership,
        name: &str,
    ) -> Result<i64, CatalogError> {
        validate_name("collection", name)?;
        let name_key = format!("{NAME_PREFIX}{name}");
        let Some(kv) = self.store.get(&name_key).await? else {
            return Err(CatalogError::NotFound(format!("{name:?}")));
        };
        let id = parse_id(&name_key, &kv.value)?;
        let txn = Txn::when([
            leadership.fence(),
            Compare::ModRevision(name_key.clone(), kv.mod_revision),
        ])
        .then([Op::Delete(name_key), Op::Delete(info_key(id))])
        .otherwise([Op::Get(leadership_key_of(leadership))]);
        let result = self.store.txn(txn).await?;
        if !result.succeeded {
            return Err(if still_leader(&result.gets, leadership) {
                // Dropped or re-created concurrently.
                CatalogError::NotFound(format!("{name:?}"))
            } else {
                leadership.give_up("fenced collection write failed");
                CatalogError::NotLeader
            });
        }
        tracing::info!(collection_id = id, %name, "collection dropped");
        Ok(id)
    }

    /// Gives a collection created without an index (`IndexSpec::NotChosen`)
    /// its metric and index. Choosing what it has already is a success.
    pub async fn choose_index(
        &self,
        leadership: &Leadership,
        name: &str,
        metric: Metric,
        index: IndexSpec,
        index_name: &str,
    ) -> Result<CollectionInfo, CatalogError> {
        if index == IndexSpec::NotChosen {
            return Err(SchemaError::BadIndex("choose FLAT or HNSW".into()).into());
        }
        let info = self
            .update(leadership, name, |info| {
                let mut schema = CollectionSchema::try_from(&*info)?;
                if schema.index != IndexSpec::NotChosen {
                    if schema.index == index
                        && schema.metric == metric
                        && info.index_name == index_name
                    {
                        return Ok(false);
                    }
                    return Err(CatalogError::IndexChosen {
                        name: name.to_owned(),
                        have: describe_index(&schema),
                    });
                }
                schema.metric = metric;
                schema.index = index;
                info.schema = Some(proto::CollectionSchema::from(&schema));
                info.index_name = index_name.to_owned();
                Ok(true)
            })
            .await?;
        tracing::info!(collection_id = info.id, %name, %metric, index = index.name(), "index chosen");
        Ok(info)
    }

    /// Takes a collection's index back (`IndexSpec::NotChosen`), so that
    /// [`Self::choose_index`] may choose another, and counts a new index
    /// generation. A collection without an index, or whose index has another
    /// name than `index_name` (when given), is left as it is.
    pub async fn drop_index(
        &self,
        leadership: &Leadership,
        name: &str,
        index_name: &str,
    ) -> Result<CollectionInfo, CatalogError> {
        let mut dropped = false;
        let info = self
            .update(leadership, name, |info| {
                let mut schema = CollectionSchema::try_from(&*info)?;
                let named = index_name.is_empty()
                    || index_name == info.index_name
                    || (info.index_name.is_empty() && index_name == schema.vector_field().0.name);
                dropped = schema.index != IndexSpec::NotChosen && named;
                if dropped {
                    schema.index = IndexSpec::NotChosen;
                    info.schema = Some(proto::CollectionSchema::from(&schema));
                    info.index_name.clear();
                    info.index_generation += 1;
                }
                Ok(dropped)
            })
            .await?;
        if dropped {
            tracing::info!(collection_id = info.id, %name, generation = info.index_generation, "index dropped");
        }
        Ok(info)
    }

    /// Reads collection `name`'s record, lets `change` edit it (true: it
    /// changed) and writes it back if it changed, fenced by the leadership and
    /// by the record's revision: a concurrent write makes it read and judge
    /// again.
    async fn update(
        &self,
        leadership: &Leadership,
        name: &str,
        mut change: impl FnMut(&mut CollectionInfo) -> Result<bool, CatalogError>,
    ) -> Result<CollectionInfo, CatalogError> {
        validate_name("collection", name)?;
        loop {
            let id = self
                .id_of(name)
                .await?
                .ok_or_else(|| CatalogError::NotFound(format!("{name:?}")))?;
            let key = info_key(id);
            let kv = self
                .store
                .get(&key)
                .await?
                .ok_or_else(|| CatalogError::NotFound(format!("{name:?}")))?;
            let mut info = decode_info(&key, &kv.value)?;
            if !change(&mut info)? {
                return Ok(info);
            }
            let txn = Txn::when([
                leadership.fence(),
                Compare::ModRevision(key.clone(), kv.mod_revision),
            ])
            .then([Op::put(key, info.encode_to_vec())])
            .otherwise([Op::Get(leadership_key_of(leadership))]);
            let result = self.store.txn(txn).await?;
            if result.succeeded {
                return Ok(info);
            }
            if !still_leader(&result.gets, leadership) {
                leadership.give_up("fenced collection write failed");
                return Err(CatalogError::NotLeader);
            }
            // Changed, dropped or re-created concurrently: judge again.
        }
    }

    async fn id_of(&self, name: &str) -> Result<Option<i64>, MetaError> {
        let key = format!("{NAME_PREFIX}{name}");
        match self.store.get(&key).await? {
            None => Ok(None),
            Some(kv) => parse_id(&key, &kv.value).map(Some),
        }
    }
}

/// `HNSW (M 16, efConstruction 200), COSINE`.
fn describe_index(schema: &CollectionSchema) -> String {
    match schema.index {
        IndexSpec::Hnsw { m, ef_construction } => {
            format!(
                "HNSW (M {m}, efConstruction {ef_construction}), {}",
                schema.metric
            )
        }
        other => format!("{}, {}", other.name(), schema.metric),
    }
}

fn info_key(id: i64) -> String {
    format!("{INFO_PREFIX}{id}")
}

fn leadership_key_of(leadership: &Leadership) -> String {
    match leadership.fence() {
        Compare::ValueEquals(key, _) | Compare::Absent(key) | Compare::ModRevision(key, _) => key,
    }
}

/// Whether the leader key read in a failed transaction still holds our term.
fn still_leader(gets: &[Option<crate::meta::KeyValue>], leadership: &Leadership) -> bool {
    let Compare::ValueEquals(_, ours) = leadership.fence() else {
        return false;
    };
    matches!(gets.first(), Some(Some(kv)) if kv.value == ours)
}

fn parse_id(key: &str, value: &[u8]) -> Result<i64, MetaError> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| MetaError::corrupt(key, "not an id"))
}

fn decode_info(key: &str, value: &[u8]) -> Result<CollectionInfo, MetaError> {
    CollectionInfo::decode(value).map_err(|e| MetaError::corrupt(key, e))
}
