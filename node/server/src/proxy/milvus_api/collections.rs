//! Collections, their index and their loading, in Milvus's terms.

use milvus_like_api::proto::root_coord_client::RootCoordClient;

use super::*;

impl MilvusApi {
    pub(super) async fn describe(
        &self,
        req: DescribeCollectionRequest,
    ) -> Result<DescribeCollectionResponse, Refusal> {
        database(&req.db_name)?;
        let found = if req.collection_name.is_empty() && req.collection_id != 0 {
            self.proxy.root.collection(req.collection_id).await
        } else {
            self.proxy
                .root
                .collection_by_name(&req.collection_name)
                .await
        };
        let info = match found {
            Ok(info) => info,
            Err(status) if status.code() == Code::NotFound => {
                let name = if req.collection_name.is_empty() {
                    req.collection_id.to_string()
                } else {
                    req.collection_name
                };
                return Err(Refusal::collection_not_found(&name));
            }
            Err(status) => return Err(status.into()),
        };
        let schema = schema::to_milvus(&info);
        Ok(DescribeCollectionResponse {
            status: ok(),
            collection_name: schema.name.clone(),
            schema: Some(schema),
            collection_id: info.id,
            created_timestamp: info.created_ts,
            created_utc_timestamp: created_ms(&info),
            shards_num: i32::try_from(self.proxy.channels).unwrap_or(i32::MAX),
            num_partitions: i64::try_from(info.partitions.len()).unwrap_or(i64::MAX),
            consistency_level: MilvusConsistency::Strong.into(),
            db_name: DATABASE.into(),
            ..DescribeCollectionResponse::default()
        })
    }

    /// As Milvus: creating a collection that exists with the same schema is
    /// a success; with another schema, a refusal.
    pub(super) async fn create(
        &self,
        req: CreateCollectionRequest,
    ) -> Result<MilvusStatus, Refusal> {
        database(&req.db_name)?;
        if let Some(p) = req.properties.first() {
            return Err(Refusal::unsupported(format!(
                "collection property {:?}",
                p.key
            )));
        }
        if req.num_partitions > 0 {
            return Err(Refusal::unsupported("partition keys (num_partitions)"));
        }
        let wanted = schema::from_milvus(&req.collection_name, &req.schema)?;
        let created = Proxy::create_collection(
            self.proxy.as_ref(),
            Request::new(proto::CreateCollectionRequest {
                schema: Some(wanted.clone()),
            }),
        )
        .await;
        match created {
            Ok(_) => {
                tracing::info!(collection = %req.collection_name, "collection created through Milvus's API");
                Ok(MilvusStatus::default())
            }
            Err(status) if status.code() == Code::AlreadyExists => {
                let have = self.named(&req.db_name, &req.collection_name).await?;
                let have_fields = have.info.schema.map(|s| s.fields).unwrap_or_default();
                if have_fields == wanted.fields {
                    Ok(MilvusStatus::default())
                } else {
                    Err(Refusal::invalid(format!(
                        "collection {:?} already exists with another schema (fields {})",
                        req.collection_name,
                        have.schema.field_list()
                    )))
                }
            }
            Err(status) => Err(status.into()),
        }
    }

    pub(super) async fn statistics(
        &self,
        req: GetCollectionStatisticsRequest,
    ) -> Result<GetCollectionStatisticsResponse, Refusal> {
        let named = self.named(&req.db_name, &req.collection_name).await?;
        let rows: u64 = self
            .segments(named.info.id)
            .await?
            .iter()
            .filter(|s| s.state != proto::SegmentState::Dropped as i32)
            .map(|s| s.num_rows)
            .sum();
        Ok(GetCollectionStatisticsResponse {
            status: ok(),
            stats: vec![KeyValuePair {
                key: "row_count".into(),
                value: rows.to_string(),
            }],
        })
    }

    pub(super) async fn segments(
        &self,
        collection: i64,
    ) -> Result<Vec<proto::SegmentInfo>, Refusal> {
        use milvus_like_api::proto::data_coord_client::DataCoordClient;
        let listed = self
            .proxy
            .datacoord
            .call(std::time::Duration::from_secs(10), |ch| async move {
                DataCoordClient::new(ch)
                    .list_segments(proto::ListSegmentsRequest {
                        collection_id: collection,
                    })
                    .await
            })
            .await?;
        Ok(listed.into_inner().segments)
    }

    pub(super) async fn create_index(
        &self,
        req: CreateIndexRequest,
    ) -> Result<MilvusStatus, Refusal> {
        let named = self.named(&req.db_name, &req.collection_name).await?;
        let (vector, _) = named.schema.vector_field();
        if req.field_name != vector.name {
            return Err(Refusal::unsupported(format!(
                "indexes on field {:?}; it indexes the vector field {:?} only",
                req.field_name, vector.name
            )));
        }
        let (metric, index) = schema::index_from_milvus(&req.extra_params)?;
        let index_name = if req.index_name == vector.name {
            String::new()
        } else {
            req.index_name
        };
        let choose = proto::ChooseIndexRequest {
            name: req.collection_name.clone(),
            metric_type: proto::MetricType::from(metric).into(),
            index: Some(index.into()),
            index_name,
        };
        self.proxy
            .root
            .pool()
            .call(self.proxy.root.deadline(), |ch| {
                let choose = choose.clone();
                async move { RootCoordClient::new(ch).choose_index(choose).await }
            })
            .await?;
        tracing::info!(collection = %req.collection_name, %metric, index = index.name(), "index chosen through Milvus's API");
        Ok(MilvusStatus::default())
    }

    /// The collection and its index's name, when it has an index and the
    /// request names it (by field or index name, or neither); index not found
    /// otherwise.
    async fn asked_index(
        &self,
        db_name: &str,
        collection: &str,
        field_name: &str,
        index_name: &str,
    ) -> Result<(Named, String), Refusal> {
        let named = self.named(db_name, collection).await?;
        let vector = &named.schema.vector_field().0.name;
        let name = if named.info.index_name.is_empty() {
            vector.clone()
        } else {
            named.info.index_name.clone()
        };
        let asked_other = (!field_name.is_empty() && field_name != vector)
            || (!index_name.is_empty() && index_name != name);
        if named.schema.index == IndexSpec::NotChosen || asked_other {
            return Err(Refusal::index_not_found(collection));
        }
        Ok((named, name))
    }

    /// The index as `DescribeIndex` describes it, with how many of the
    /// collection's rows its graphs cover.
    async fn index_description(
        &self,
        named: &Named,
        name: String,
    ) -> Result<IndexDescription, Refusal> {
        let (mut total, mut indexed) = (0u64, 0u64);
        for segment in self.segments(named.info.id).await? {
            for file in &segment.insert_logs {
                total += file.num_rows;
                // Small files are searched exactly by design (Milvus's rule
                // too); an index of an earlier generation does not count.
                let built = !file.index_path.is_empty()
                    && file.index_generation == named.info.index_generation;
                if built
                    || named.schema.index == IndexSpec::Flat
                    || file.num_rows < crate::datacoord::indexes::MIN_INDEX_ROWS
                {
                    indexed += file.num_rows;
                }
            }
        }
        Ok(IndexDescription {
            index_name: name,
            index_id: named.info.id,
            params: schema::index_to_milvus(named.schema.metric, named.schema.index),
            field_name: named.schema.vector_field().0.name.clone(),
            indexed_rows: as_i64(indexed),
            total_rows: as_i64(total),
            // Usable at once: a file without its graph yet is searched exactly.
            state: IndexState::Finished.into(),
            pending_index_rows: as_i64(total - indexed),
            ..IndexDescription::default()
        })
    }

    /// As Milvus: refused while the collection is loaded; then the index
    /// (and its metric) is taken back, and `CreateIndex` may choose another.
    /// Without an index, or naming another, nothing changes (a success, as
    /// in Milvus).
    pub(super) async fn drop_index(&self, req: DropIndexRequest) -> Result<MilvusStatus, Refusal> {
        let named = self.named(&req.db_name, &req.collection_name).await?;
        if !req.field_name.is_empty() && req.field_name != named.schema.vector_field().0.name {
            return Ok(MilvusStatus::default());
        }
        if self
            .load_state(&req.db_name, &req.collection_name, &[])
            .await?
            != LoadState::NotLoad
        {
            return Err(Refusal::invalid(format!(
                "index cannot be dropped, collection {:?} is loaded, please release it first",
                req.collection_name
            )));
        }
        let drop = proto::DropIndexRequest {
            name: req.collection_name.clone(),
            index_name: req.index_name,
        };
        let dropped = self
            .proxy
            .root
            .pool()
            .call(self.proxy.root.deadline(), |ch| {
                let drop = drop.clone();
                async move { RootCoordClient::new(ch).drop_index(drop).await }
            })
            .await?
            .into_inner();
        self.proxy.forget_name(&req.collection_name);
        let generation = dropped.collection.map_or(0, |c| c.index_generation);
        tracing::info!(collection = %req.collection_name, generation, "index dropped through Milvus's API");
        Ok(MilvusStatus::default())
    }

    pub(super) async fn describe_index(
        &self,
        req: DescribeIndexRequest,
    ) -> Result<DescribeIndexResponse, Refusal> {
        let (named, name) = self
            .asked_index(
                &req.db_name,
                &req.collection_name,
                &req.field_name,
                &req.index_name,
            )
            .await?;
        Ok(DescribeIndexResponse {
            status: ok(),
            index_descriptions: vec![self.index_description(&named, name).await?],
        })
    }

    /// Finished as soon as the index is chosen: a file without its graph yet
    /// is searched exactly, so the collection can be loaded and searched.
    pub(super) async fn index_state(
        &self,
        req: GetIndexStateRequest,
    ) -> Result<GetIndexStateResponse, Refusal> {
        self.asked_index(
            &req.db_name,
            &req.collection_name,
            &req.field_name,
            &req.index_name,
        )
        .await?;
        Ok(GetIndexStateResponse {
            status: ok(),
            state: IndexState::Finished.into(),
            fail_reason: String::new(),
        })
    }

    /// Rows in files with their graph (or searched exactly by design) of all.
    pub(super) async fn index_build_progress(
        &self,
        req: GetIndexBuildProgressRequest,
    ) -> Result<GetIndexBuildProgressResponse, Refusal> {
        let (named, name) = self
            .asked_index(
                &req.db_name,
                &req.collection_name,
                &req.field_name,
                &req.index_name,
            )
            .await?;
        let progress = self.index_description(&named, name).await?;
        Ok(GetIndexBuildProgressResponse {
            status: ok(),
            indexed_rows: progress.indexed_rows,
            total_rows: progress.total_rows,
        })
    }

    /// The collection's persistent segments (sealed, flushing, flushed: the
    /// states Milvus lists when no others are asked for).
    pub(super) async fn persistent_segments(
        &self,
        req: GetPersistentSegmentInfoRequest,
    ) -> Result<GetPersistentSegmentInfoResponse, Refusal> {
        use milvus_like_api::milvus_proto::common::SegmentState as MilvusState;
        let named = self.named(&req.db_name, &req.collection_name).await?;
        let infos = self
            .segments(named.info.id)
            .await?
            .into_iter()
            .filter_map(|s| {
                let state = match proto::SegmentState::try_from(s.state).ok()? {
                    proto::SegmentState::Sealed => MilvusState::Sealed,
                    proto::SegmentState::Flushing => MilvusState::Flushing,
                    proto::SegmentState::Flushed => MilvusState::Flushed,
                    _ => return None,
                };
                Some(PersistentSegmentInfo {
                    segment_id: s.segment_id,
                    collection_id: s.collection_id,
                    partition_id: s.partition_id,
                    num_rows: as_i64(s.num_rows),
                    state: state.into(),
                    ..PersistentSegmentInfo::default()
                })
            })
            .collect();
        Ok(GetPersistentSegmentInfoResponse {
            status: ok(),
            infos,
        })
    }

    pub(super) async fn load(&self, req: LoadCollectionRequest) -> Result<MilvusStatus, Refusal> {
        database(&req.db_name)?;
        if req.replica_number > 1 {
            return Err(Refusal::unsupported(format!(
                "{} replicas; each channel is served by one query node",
                req.replica_number
            )));
        }
        if let Some(group) = req.resource_groups.first() {
            return Err(Refusal::unsupported(format!(
                "resource groups (asked for {group:?})"
            )));
        }
        if !req.load_fields.is_empty() {
            return Err(Refusal::unsupported(
                "loading some fields only (load_fields)",
            ));
        }
        let named = self.named(&req.db_name, &req.collection_name).await?;
        if named.schema.index == IndexSpec::NotChosen {
            return Err(Refusal::index_not_found(&req.collection_name));
        }
        Proxy::load_collection(
            self.proxy.as_ref(),
            Request::new(proto::ProxyLoadCollectionRequest {
                collection: req.collection_name,
            }),
        )
        .await?;
        Ok(MilvusStatus::default())
    }

    pub(super) async fn release(
        &self,
        req: ReleaseCollectionRequest,
    ) -> Result<MilvusStatus, Refusal> {
        self.named(&req.db_name, &req.collection_name).await?;
        Proxy::release_collection(
            self.proxy.as_ref(),
            Request::new(proto::ProxyReleaseCollectionRequest {
                collection: req.collection_name,
            }),
        )
        .await?;
        Ok(MilvusStatus::default())
    }

    /// Loaded when every channel has a query node serving it; loading when
    /// the collection is loaded but some channel's is not ready.
    pub(super) async fn load_state(
        &self,
        db: &str,
        name: &str,
        partitions: &[String],
    ) -> Result<LoadState, Refusal> {
        default_partition_only(partitions)?;
        let named = match self.named(db, name).await {
            Ok(named) => named,
            Err(r) if r.code() == refusal::COLLECTION_NOT_FOUND => return Ok(LoadState::NotExist),
            Err(r) => return Err(r),
        };
        self.proxy.leaders.forget(named.info.id);
        match self.proxy.leaders.get(named.info.id, true).await {
            Ok(leaders) if leaders.iter().all(|l| l.unavailable.is_empty()) => {
                Ok(LoadState::Loaded)
            }
            Ok(_) => Ok(LoadState::Loading),
            Err(status) if status.code() == Code::FailedPrecondition => Ok(LoadState::NotLoad),
            Err(status) => Err(status.into()),
        }
    }
}

fn as_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
