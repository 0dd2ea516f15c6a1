//! Collections, their index and their loading, in Milvus's terms.

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
        use milvus_like_api::proto::root_coord_client::RootCoordClient;
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

    pub(super) async fn describe_index(
        &self,
        req: DescribeIndexRequest,
    ) -> Result<DescribeIndexResponse, Refusal> {
        let named = self.named(&req.db_name, &req.collection_name).await?;
        let (vector, _) = named.schema.vector_field();
        let index_name = if named.info.index_name.is_empty() {
            vector.name.clone()
        } else {
            named.info.index_name.clone()
        };
        let asked_other = (!req.field_name.is_empty() && req.field_name != vector.name)
            || (!req.index_name.is_empty() && req.index_name != index_name);
        if named.schema.index == IndexSpec::NotChosen || asked_other {
            return Err(Refusal::index_not_found(&req.collection_name));
        }
        let (mut total, mut indexed) = (0u64, 0u64);
        for segment in self.segments(named.info.id).await? {
            for file in &segment.insert_logs {
                total += file.num_rows;
                // Small files are searched exactly by design (Milvus's rule too).
                if !file.index_path.is_empty()
                    || named.schema.index == IndexSpec::Flat
                    || file.num_rows < crate::datacoord::indexes::MIN_INDEX_ROWS
                {
                    indexed += file.num_rows;
                }
            }
        }
        let as_i64 = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        Ok(DescribeIndexResponse {
            status: ok(),
            index_descriptions: vec![IndexDescription {
                index_name,
                index_id: named.info.id,
                params: schema::index_to_milvus(named.schema.metric, named.schema.index),
                field_name: vector.name.clone(),
                indexed_rows: as_i64(indexed),
                total_rows: as_i64(total),
                // Usable at once: a file without its graph yet is searched exactly.
                state: IndexState::Finished.into(),
                pending_index_rows: as_i64(total - indexed),
                ..IndexDescription::default()
            }],
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
