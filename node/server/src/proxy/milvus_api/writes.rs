//! Inserts, upserts, deletes and flushes in Milvus's terms.

use super::*;

impl MilvusApi {
    pub(super) async fn insert(&self, req: InsertRequest) -> Result<MutationResult, Refusal> {
        let named = self.named(&req.db_name, &req.collection_name).await?;
        let columns = data::columns_from_milvus(req.fields_data)?;
        let key = named.schema.primary_key();
        let given = key_column(&columns, &key.name);
        let varchar = matches!(key.ty, FieldType::VarChar { .. });
        let inserted = Proxy::insert(
            self.proxy.as_ref(),
            Request::new(proto::InsertRequest {
                collection: req.collection_name,
                partition: req.partition_name,
                columns,
                num_rows: req.num_rows,
            }),
        )
        .await?
        .into_inner();
        let ids = match inserted.assigned_ids {
            assigned if assigned.is_empty() => given,
            // A VARCHAR key is the id in decimal.
            assigned if varchar => Keys::Str(assigned.iter().map(i64::to_string).collect()),
            assigned => Keys::Int(assigned),
        };
        Ok(MutationResult {
            status: ok(),
            i_ds: Some(milvus_ids(ids)),
            insert_cnt: i64::from(req.num_rows),
            succ_index: (0..req.num_rows).collect(),
            timestamp: inserted.timestamp,
            ..MutationResult::default()
        })
    }

    /// As Milvus: the rows' old versions (by primary key) are deleted, then
    /// the rows inserted, later in time; a key not there yet is inserted.
    pub(super) async fn upsert(&self, req: UpsertRequest) -> Result<MutationResult, Refusal> {
        if req.partial_update || !req.field_ops.is_empty() {
            return Err(Refusal::unsupported("partial updates"));
        }
        let named = self.named(&req.db_name, &req.collection_name).await?;
        let key = named.schema.primary_key();
        if key.auto_id {
            return Err(Refusal::unsupported(format!(
                "upserts into a collection whose primary key {:?} is auto_id",
                key.name
            )));
        }
        // Checked before anything is deleted: rows the insert would refuse
        // must not cost the old ones.
        let columns = data::columns_from_milvus(req.fields_data.clone())?;
        let rows =
            crate::columns::RowBatch::from_wire(&named.schema, columns, req.num_rows as usize)
                .map_err(|e| {
                    Refusal::invalid(format!("upsert into {:?}: {e}", req.collection_name))
                })?;
        let (primary_keys, string_keys) = rows.primary_keys(&named.schema).to_owned().into_wire();
        Proxy::delete(
            self.proxy.as_ref(),
            Request::new(proto::DeleteRequest {
                collection: req.collection_name.clone(),
                partition: req.partition_name.clone(),
                primary_keys,
                string_keys,
            }),
        )
        .await?;
        let inserted = self
            .insert(InsertRequest {
                db_name: req.db_name,
                collection_name: req.collection_name,
                partition_name: req.partition_name,
                fields_data: req.fields_data,
                num_rows: req.num_rows,
                ..InsertRequest::default()
            })
            .await?;
        Ok(MutationResult {
            upsert_cnt: inserted.insert_cnt,
            insert_cnt: 0,
            ..inserted
        })
    }

    /// Deletes the rows an expression keeps: a list of primary keys is
    /// deleted as it is; any other expression is queried first (the
    /// collection must be loaded, as in Milvus) at the request's consistency.
    pub(super) async fn delete(&self, req: DeleteRequest) -> Result<MutationResult, Refusal> {
        if !req.expr_template_values.is_empty() {
            return Err(Refusal::unsupported("expression templates"));
        }
        let named = self.named(&req.db_name, &req.collection_name).await?;
        let filter = Filter::parse(&req.expr, &named.schema)
            .map_err(|e| Refusal::invalid(format!("delete from {:?}: {e}", req.collection_name)))?;
        let keys = match filter.key_list(&named.schema) {
            Some(keys) => keys,
            None => {
                let level = consistency(req.consistency_level, false)?;
                let found = Proxy::query(
                    self.proxy.as_ref(),
                    Request::new(proto::QueryRequest {
                        collection: req.collection_name.clone(),
                        filter: req.expr.clone(),
                        output_fields: Vec::new(),
                        limit: 0,
                        offset: 0,
                        consistency: level,
                        timeout_ms: 0,
                    }),
                )
                .await?
                .into_inner();
                let key = &named.schema.primary_key().name;
                key_column(&found.columns, key)
            }
        };
        if keys.is_empty() {
            return Ok(MutationResult {
                status: ok(),
                ..MutationResult::default()
            });
        }
        let (primary_keys, string_keys) = keys.into_wire();
        let deleted = Proxy::delete(
            self.proxy.as_ref(),
            Request::new(proto::DeleteRequest {
                collection: req.collection_name,
                partition: req.partition_name,
                primary_keys,
                string_keys,
            }),
        )
        .await?
        .into_inner();
        Ok(MutationResult {
            status: ok(),
            delete_cnt: i64::try_from(deleted.deleted).unwrap_or(i64::MAX),
            // As Milvus since 2.3.2: the keys are not echoed (pymilvus
            // would return them instead of the count).
            timestamp: deleted.timestamp,
            ..MutationResult::default()
        })
    }

    /// Seals and flushes every collection named, waiting until they are
    /// flushed (so `GetFlushState` answers flushed at once).
    pub(super) async fn flush(&self, req: FlushRequest) -> Result<FlushResponse, Refusal> {
        database(&req.db_name)?;
        let mut response = FlushResponse {
            status: ok(),
            db_name: DATABASE.into(),
            ..FlushResponse::default()
        };
        for name in req.collection_names {
            self.named(DATABASE, &name).await?;
            let flushed = Proxy::flush(
                self.proxy.as_ref(),
                Request::new(proto::ProxyFlushRequest {
                    collection: name.clone(),
                    wait: true,
                }),
            )
            .await?
            .into_inner();
            let now = self.proxy.root.timestamp().await?;
            let ids = LongArray {
                data: flushed.flushed_segment_ids,
            };
            response.coll_seg_i_ds.insert(name.clone(), ids.clone());
            response.flush_coll_seg_i_ds.insert(name.clone(), ids);
            response.coll_seal_times.insert(
                name.clone(),
                i64::try_from(now.physical() / 1000).unwrap_or(i64::MAX),
            );
            response.coll_flush_ts.insert(name, now.as_u64());
        }
        Ok(response)
    }

    /// Flushed when every segment named is flushed (or compacted away).
    pub(super) async fn flush_state(
        &self,
        req: GetFlushStateRequest,
    ) -> Result<GetFlushStateResponse, Refusal> {
        let named = self.named(&req.db_name, &req.collection_name).await?;
        let segments: HashMap<i64, i32> = self
            .segments(named.info.id)
            .await?
            .into_iter()
            .map(|s| (s.segment_id, s.state))
            .collect();
        let flushed = req.segment_i_ds.iter().all(|id| {
            segments.get(id).is_none_or(|&state| {
                state == proto::SegmentState::Flushed as i32
                    || state == proto::SegmentState::Dropped as i32
            })
        });
        Ok(GetFlushStateResponse {
            status: ok(),
            flushed,
        })
    }
}

/// The keys in the primary key column `key` of `columns` (none if it is not
/// there).
fn key_column(columns: &[proto::FieldData], key: &str) -> Keys {
    match columns
        .iter()
        .find(|c| c.field_name == key)
        .and_then(|c| c.data.as_ref())
    {
        Some(Data::Longs(a)) => Keys::Int(a.values.clone()),
        Some(Data::Strings(a)) => Keys::Str(a.values.clone()),
        _ => Keys::default(),
    }
}
