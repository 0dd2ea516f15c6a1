//! Searches and queries in Milvus's terms.

use super::*;

impl MilvusApi {
    pub(super) async fn search(&self, req: SearchRequest) -> Result<SearchResults, Refusal> {
        let named = self.named(&req.db_name, &req.collection_name).await?;
        default_partition_only(&req.partition_names)?;
        if !req.sub_reqs.is_empty() {
            return Err(Refusal::unsupported("hybrid search (sub-requests)"));
        }
        if req.function_score.is_some() || !req.function_chains.is_empty() {
            return Err(Refusal::unsupported(
                "rerankers and function chains in search",
            ));
        }
        if req.highlighter.is_some() || req.search_aggregation.is_some() {
            return Err(Refusal::unsupported(
                "highlighting and aggregation in search",
            ));
        }
        if !req.expr_template_values.is_empty() {
            return Err(Refusal::unsupported("expression templates"));
        }
        let (vector, dim) = named.schema.vector_field();
        let vectors = match &req.search_input {
            Some(search_request::SearchInput::PlaceholderGroup(group)) => {
                data::query_vectors(group, dim)?
            }
            Some(search_request::SearchInput::Ids(_)) => {
                return Err(Refusal::unsupported("searching by primary keys"));
            }
            None => return Err(Refusal::invalid("the search has no query vectors")),
        };
        let queries = vectors.values.len() / dim.max(1) as usize;
        if req.nq != 0 && usize::try_from(req.nq).ok() != Some(queries) {
            return Err(Refusal::invalid(format!(
                "nq is {} but the search holds {queries} query vectors",
                req.nq
            )));
        }
        let params = SearchParams::parse(&req.search_params, &vector.name, named.schema.metric)?;
        let top_k = params
            .top_k
            .checked_add(params.offset)
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| {
                Refusal::invalid(format!(
                    "topk {} + offset {} is more than a search returns",
                    params.top_k, params.offset
                ))
            })?;
        let outputs = expand_outputs(&named.schema, req.output_fields)?;
        let answer = Proxy::search(
            self.proxy.as_ref(),
            Request::new(proto::SearchRequest {
                collection: req.collection_name.clone(),
                vectors: Some(vectors),
                top_k,
                consistency: consistency(req.consistency_level, req.use_default_consistency)?,
                timeout_ms: 0,
                ef: params.ef,
                filter: req.dsl,
                output_fields: outputs.fetch.clone(),
            }),
        )
        .await?
        .into_inner();
        let offset = usize::try_from(params.offset).unwrap_or(usize::MAX);
        let mut result = SearchResultData {
            num_queries: i64::try_from(queries).unwrap_or(i64::MAX),
            top_k: params.top_k,
            output_fields: outputs.report,
            primary_field_name: named.schema.primary_key().name.clone(),
            ..SearchResultData::default()
        };
        let mut ids = Keys::default();
        let mut columns: Vec<Option<Data>> = vec![None; outputs.fetch.len()];
        for hits in answer.results {
            let hit_ids = Keys::from_wire(hits.ids, hits.string_ids)
                .map_err(|e| Status::internal(format!("the search answered {e}")))?;
            let kept = hit_ids.len().saturating_sub(offset);
            result.topks.push(i64::try_from(kept).unwrap_or(i64::MAX));
            let kept: Vec<usize> = (offset..hit_ids.len()).collect();
            ids.extend(hit_ids.as_ref().take(&kept))
                .map_err(|e| Status::internal(format!("the search answered {e}")))?;
            result
                .scores
                .extend(hits.scores.iter().skip(offset).map(|&s| params.round(s)));
            for (column, field) in columns.iter_mut().zip(hits.fields) {
                if let Some(values) = field.data {
                    data::append_rows(column, values, offset);
                }
            }
        }
        result.ids = Some(milvus_ids(ids));
        result.fields_data = data::columns_to_milvus(
            &named.schema,
            outputs
                .fetch
                .into_iter()
                .zip(columns)
                .map(|(field_name, data)| proto::FieldData { field_name, data })
                .collect(),
        );
        Ok(SearchResults {
            status: ok(),
            results: Some(result),
            collection_name: req.collection_name,
            session_ts: answer.read_ts,
        })
    }

    pub(super) async fn query(&self, req: QueryRequest) -> Result<QueryResults, Refusal> {
        let named = self.named(&req.db_name, &req.collection_name).await?;
        default_partition_only(&req.partition_names)?;
        if !req.expr_template_values.is_empty() {
            return Err(Refusal::unsupported("expression templates"));
        }
        let (mut limit, mut offset) = (0u32, 0u32);
        for KeyValuePair { key, value } in &req.query_params {
            let small =
                |n: i64| u32::try_from(n).map_err(|_| Refusal::invalid(format!("{key} is {n}")));
            match key.as_str() {
                "limit" => limit = small(whole(key, value)?)?,
                "offset" => offset = small(whole(key, value)?)?,
                "ignore_growing" if flag(key, value)? => {
                    return Err(Refusal::unsupported("ignore_growing"));
                }
                "iterator" if flag(key, value)? => {
                    return Err(Refusal::unsupported("query iterators"));
                }
                // Hints that do not change the answer.
                "ignore_growing"
                | "iterator"
                | "reduce_stop_for_best"
                | "collection_id"
                | "timezone" => {}
                other => {
                    return Err(Refusal::unsupported(format!(
                        "the query parameter {other:?}"
                    )));
                }
            }
        }
        let level = consistency(req.consistency_level, req.use_default_consistency)?;
        let primary = named.schema.primary_key().name.clone();
        if req
            .output_fields
            .iter()
            .any(|f| f.eq_ignore_ascii_case(COUNT_STAR))
        {
            if req.output_fields.len() > 1 {
                return Err(Refusal::invalid(
                    "count(*) is asked alone, without other output fields",
                ));
            }
            let counted = Proxy::count(
                self.proxy.as_ref(),
                Request::new(proto::CountRequest {
                    collection: req.collection_name.clone(),
                    consistency: level,
                    timeout_ms: 0,
                    filter: req.expr,
                }),
            )
            .await?
            .into_inner();
            let column = milvus_schema::FieldData {
                r#type: milvus_schema::DataType::Int64.into(),
                field_name: COUNT_STAR.into(),
                field: Some(milvus_schema::field_data::Field::Scalars(
                    milvus_schema::ScalarField {
                        data: Some(milvus_schema::scalar_field::Data::LongData(LongArray {
                            data: vec![i64::try_from(counted.rows).unwrap_or(i64::MAX)],
                        })),
                    },
                )),
                ..milvus_schema::FieldData::default()
            };
            return Ok(QueryResults {
                status: ok(),
                fields_data: vec![column],
                collection_name: req.collection_name,
                output_fields: vec![COUNT_STAR.into()],
                session_ts: counted.read_ts,
                primary_field_name: primary,
                ..QueryResults::default()
            });
        }
        let outputs = expand_outputs(&named.schema, req.output_fields)?;
        let found = Proxy::query(
            self.proxy.as_ref(),
            Request::new(proto::QueryRequest {
                collection: req.collection_name.clone(),
                filter: req.expr,
                output_fields: outputs.fetch,
                limit,
                offset,
                consistency: level,
                timeout_ms: 0,
            }),
        )
        .await?
        .into_inner();
        Ok(QueryResults {
            status: ok(),
            fields_data: data::columns_to_milvus(&named.schema, found.columns),
            collection_name: req.collection_name,
            output_fields: outputs.report,
            session_ts: found.read_ts,
            primary_field_name: primary,
            ..QueryResults::default()
        })
    }
}

/// A read's output fields: the fields fetched, and the names reported back
/// (which the client picks its columns by).
#[derive(Debug, PartialEq)]
struct Outputs {
    fetch: Vec<String>,
    report: Vec<String>,
}

/// Output field names in our terms: `*` is every field but the vector
/// (Milvus's `*` leaves vectors out unless they are named); a name that is no
/// field is a key of the dynamic field, which is fetched whole (the client
/// keeps the keys asked for), or without one an error.
fn expand_outputs(schema: &CollectionSchema, asked: Vec<String>) -> Result<Outputs, Refusal> {
    let mut out = Outputs {
        fetch: Vec::new(),
        report: Vec::new(),
    };
    let add = |list: &mut Vec<String>, name: &str| {
        if !list.iter().any(|n| n == name) {
            list.push(name.to_owned());
        }
    };
    for name in asked {
        if name == "*" {
            for f in schema.fields() {
                if !matches!(f.ty, milvus_like_api::schema::FieldType::FloatVector { .. }) {
                    add(&mut out.fetch, &f.name);
                    add(&mut out.report, &f.name);
                }
            }
        } else if schema.fields().iter().any(|f| f.name == name) {
            add(&mut out.fetch, &name);
            add(&mut out.report, &name);
        } else if let Some((_, dynamic)) = schema.dynamic_field() {
            add(&mut out.fetch, &dynamic.name);
            add(&mut out.report, &name);
        } else {
            return Err(Refusal::invalid(format!(
                "field {name:?} does not exist in collection {:?} (its fields: {})",
                schema.name,
                schema.field_list()
            )));
        }
    }
    Ok(out)
}

/// A search's parameters (`search_params`) in our terms.
#[derive(Debug, Default, PartialEq)]
struct SearchParams {
    top_k: i64,
    offset: i64,
    ef: u32,
    round_decimal: i32,
}

impl SearchParams {
    fn parse(params: &[KeyValuePair], vector: &str, metric: Metric) -> Result<Self, Refusal> {
        let mut out = Self {
            round_decimal: -1,
            ..Self::default()
        };
        let mut top_k = None;
        for KeyValuePair { key, value } in params {
            match key.as_str() {
                "topk" => top_k = Some(whole(key, value)?),
                "offset" => out.offset = whole(key, value)?,
                "round_decimal" => {
                    out.round_decimal = i32::try_from(whole(key, value)?)
                        .map_err(|_| Refusal::invalid(format!("round_decimal is {value}")))?;
                }
                "anns_field" if !value.is_empty() && value != vector => {
                    return Err(Refusal::invalid(format!(
                        "anns_field is {value:?}; the collection's vector field is {vector:?}"
                    )));
                }
                "metric_type" => same_metric(value, metric)?,
                "ignore_growing" if flag(key, value)? => {
                    return Err(Refusal::unsupported("ignore_growing"));
                }
                "params" => out.ef = search_ef(value, metric)?,
                "anns_field" | "ignore_growing" | "collection_id" | "timezone" => {}
                other => {
                    return Err(Refusal::unsupported(format!(
                        "the search parameter {other:?}"
                    )));
                }
            }
        }
        out.top_k = top_k.ok_or_else(|| Refusal::invalid("the search has no topk (limit)"))?;
        if out.top_k < 1 || out.offset < 0 {
            return Err(Refusal::invalid(format!(
                "limit is {} and offset {}; the limit must be at least 1 and the offset at least 0",
                out.top_k, out.offset
            )));
        }
        Ok(out)
    }

    fn round(&self, score: f32) -> f32 {
        if self.round_decimal < 0 {
            return score;
        }
        let scale = 10f64.powi(self.round_decimal);
        ((f64::from(score) * scale).round() / scale) as f32
    }
}

/// A search's metric, if it names one, is the collection's.
fn same_metric(asked: &str, metric: Metric) -> Result<(), Refusal> {
    if asked.is_empty() || asked.eq_ignore_ascii_case(metric.name()) {
        Ok(())
    } else {
        Err(Refusal::invalid(format!(
            "the search asks for metric {asked}, the collection's index uses {metric}"
        )))
    }
}

/// HNSW's `ef` from a search's `params` JSON (`{"ef": 64}`); 0: the default.
fn search_ef(json: &str, metric: Metric) -> Result<u32, Refusal> {
    let parsed: serde_json::Value = serde_json::from_str(json)
        .map_err(|e| Refusal::invalid(format!("search params {json:?} are not JSON: {e}")))?;
    let Some(object) = parsed.as_object() else {
        return Err(Refusal::invalid(format!(
            "search params {json:?} are not a JSON object"
        )));
    };
    let mut ef = 0;
    for (key, value) in object {
        match key.as_str() {
            "ef" => {
                ef = value
                    .as_u64()
                    .or_else(|| value.as_str().and_then(|s| s.trim().parse().ok()))
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| {
                        Refusal::invalid(format!("search param ef is {value}, not a whole number"))
                    })?;
            }
            "metric_type" => same_metric(value.as_str().unwrap_or_default(), metric)?,
            other => {
                return Err(Refusal::unsupported(format!(
                    "the search param {other:?}; HNSW searches take ef"
                )));
            }
        }
    }
    Ok(ef)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, value: &str) -> KeyValuePair {
        KeyValuePair {
            key: key.into(),
            value: value.into(),
        }
    }
    #[test]
    fn output_fields_name_fields_or_keys_of_the_dynamic_field() {
        let mut wire =
            proto::CollectionSchema::from(&CollectionSchema::vectors_only("c", 2).expect("schema"));
        let plain = CollectionSchema::try_from(wire.clone()).expect("valid");
        let e = expand_outputs(&plain, vec!["color".into()]).expect_err("refused");
        assert!(
            e.0.reason.contains("\"color\" does not exist"),
            "{}",
            e.0.reason
        );
        wire.fields.push(proto::FieldSchema {
            name: "$meta".into(),
            data_type: proto::DataType::Json.into(),
            is_dynamic: true,
            ..proto::FieldSchema::default()
        });
        let dynamic = CollectionSchema::try_from(wire).expect("valid");
        let out = expand_outputs(&dynamic, vec!["color".into(), "id".into(), "size".into()])
            .expect("valid");
        assert_eq!(out.fetch, vec!["$meta", "id"]);
        assert_eq!(out.report, vec!["color", "id", "size"]);
        let all = expand_outputs(&dynamic, vec!["*".into()]).expect("valid");
        assert_eq!(all.fetch, vec!["id", "$meta"]);
        assert_eq!(all.report, all.fetch);
    }

    #[test]
    fn search_parameters_in_our_terms() {
        let p = SearchParams::parse(
            &[
                kv("topk", "10"),
                kv("offset", "5"),
                kv("round_decimal", "2"),
                kv("metric_type", "cosine"),
                kv("anns_field", "v"),
                kv("params", r#"{"ef": 64}"#),
                kv("ignore_growing", "False"),
            ],
            "v",
            Metric::Cosine,
        )
        .expect("valid");
        assert_eq!((p.top_k, p.offset, p.ef), (10, 5, 64));
        assert!((p.round(0.123_456) - 0.12).abs() < 1e-6);
        let refused = |params: &[KeyValuePair]| {
            SearchParams::parse(params, "v", Metric::L2)
                .expect_err("refused")
                .0
                .reason
        };
        assert!(refused(&[kv("topk", "1"), kv("metric_type", "IP")]).contains("metric IP"));
        assert!(
            refused(&[kv("topk", "1"), kv("params", r#"{"nprobe": 8}"#)]).contains("\"nprobe\"")
        );
        assert!(
            refused(&[kv("topk", "1"), kv("group_by_field", "x")]).contains("\"group_by_field\"")
        );
        assert!(refused(&[kv("params", "{}")]).contains("no topk"));
        assert!(refused(&[kv("topk", "1"), kv("anns_field", "w")]).contains("\"w\""));
    }
}
