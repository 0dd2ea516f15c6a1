//! Collection schemas between Milvus's terms and ours. Our field types share
//! Milvus's `DataType` numbers; field ids are Milvus's numbering by position
//! (100, 101, ...). `enable_dynamic_field` becomes our dynamic field, a JSON
//! field `$meta` after the others (as Milvus adds it). What a Milvus schema
//! can say and ours cannot (nullable or default values, partition keys,
//! functions, types we do not store) is refused by
//! name, never dropped.

use milvus_like_api::milvus_proto::common::KeyValuePair;
use milvus_like_api::milvus_proto::schema::{self as milvus, DataType};
use milvus_like_api::proto::{self, CollectionInfo};
use milvus_like_api::schema::{DYNAMIC_FIELD_NAME, IndexSpec, Metric};
use prost::Message;

use super::refusal::Refusal;

/// The first field id Milvus hands out (`common.StartOfUserFieldID`).
pub const FIRST_FIELD_ID: i64 = 100;

/// Milvus's name of a data type number (`FloatVector`), or the number.
pub fn type_name(raw: i32) -> String {
    DataType::try_from(raw).map_or_else(|_| raw.to_string(), |t| t.as_str_name().to_owned())
}

/// A `CreateCollection` schema (its serialized `schema` bytes) as ours; the
/// metric and index wait for `CreateIndex`.
pub fn from_milvus(collection: &str, bytes: &[u8]) -> Result<proto::CollectionSchema, Refusal> {
    let s = milvus::CollectionSchema::decode(bytes).map_err(|e| {
        Refusal::invalid(format!(
            "the schema is not a valid milvus.proto.schema.CollectionSchema: {e}"
        ))
    })?;
    if !s.name.is_empty() && s.name != collection {
        return Err(Refusal::invalid(format!(
            "the schema is named {:?} but the request creates {collection:?}",
            s.name
        )));
    }
    if !s.functions.is_empty() {
        return Err(Refusal::unsupported("schema functions (BM25, embeddings)"));
    }
    if !s.struct_array_fields.is_empty() {
        return Err(Refusal::unsupported("struct array fields"));
    }
    if let Some(p) = s.properties.first() {
        return Err(Refusal::unsupported(format!(
            "collection property {:?}",
            p.key
        )));
    }
    #[allow(deprecated)]
    let schema_auto_id = s.auto_id;
    let dynamic = s.enable_dynamic_field || s.fields.iter().any(|f| f.is_dynamic);
    let mut fields = s
        .fields
        .into_iter()
        // Milvus's own dynamic field, if a client sends it: added below.
        .filter(|f| !f.is_dynamic)
        .map(|f| field_from_milvus(f, schema_auto_id))
        .collect::<Result<Vec<_>, _>>()?;
    if dynamic {
        fields.push(proto::FieldSchema {
            name: DYNAMIC_FIELD_NAME.into(),
            data_type: proto::DataType::Json.into(),
            is_dynamic: true,
            description: "the dynamic field: keys of inserted rows that are not fields".into(),
            ..proto::FieldSchema::default()
        });
    }
    Ok(proto::CollectionSchema {
        name: collection.to_owned(),
        description: s.description,
        fields,
        metric_type: proto::MetricType::Unspecified.into(),
        index: Some(IndexSpec::NotChosen.into()),
    })
}

fn field_from_milvus(
    f: milvus::FieldSchema,
    schema_auto_id: bool,
) -> Result<proto::FieldSchema, Refusal> {
    let name = f.name.clone();
    let refuse = |what: &str| Refusal::unsupported(format!("{what} (field {name:?})"));
    if f.nullable {
        return Err(refuse("nullable fields"));
    }
    if f.default_value.is_some() {
        return Err(refuse("default values"));
    }
    if f.is_partition_key {
        return Err(refuse("partition keys"));
    }
    if f.is_clustering_key {
        return Err(refuse("clustering keys"));
    }
    if f.is_function_output {
        return Err(refuse("function output fields"));
    }
    if !f.external_field.is_empty() {
        return Err(refuse("external fields"));
    }
    if let Some(p) = f.index_params.first() {
        return Err(refuse(&format!(
            "index parameters in the schema ({:?}); create the index with CreateIndex",
            p.key
        )));
    }
    use DataType as D;
    let supported = matches!(
        DataType::try_from(f.data_type),
        Ok(D::Bool
            | D::Int8
            | D::Int16
            | D::Int32
            | D::Int64
            | D::Float
            | D::Double
            | D::VarChar
            | D::Json
            | D::FloatVector)
    );
    if !supported {
        return Err(refuse(&format!(
            "the data type {}; it stores Bool, Int8, Int16, Int32, Int64, Float, Double, VarChar, JSON and FloatVector",
            type_name(f.data_type)
        )));
    }
    if f.is_primary_key && f.data_type != D::Int64 as i32 && f.data_type != D::VarChar as i32 {
        return Err(refuse(&format!(
            "{} primary keys; the primary key must be Int64 or VarChar",
            type_name(f.data_type)
        )));
    }
    let (mut dim, mut max_length) = (0, 0);
    for KeyValuePair { key, value } in &f.type_params {
        let number = || {
            value.trim().parse::<u32>().map_err(|_| {
                Refusal::invalid(format!(
                    "field {name:?}: type parameter {key} is {value:?}, not a whole number"
                ))
            })
        };
        match key.as_str() {
            "dim" => dim = number()?,
            "max_length" => max_length = number()?,
            other => return Err(refuse(&format!("the type parameter {other:?}"))),
        }
    }
    Ok(proto::FieldSchema {
        name: f.name,
        data_type: f.data_type,
        is_primary_key: f.is_primary_key,
        dim,
        max_length,
        description: f.description,
        auto_id: f.is_primary_key && (f.auto_id || schema_auto_id),
        is_dynamic: false,
    })
}

/// A collection's schema in Milvus's terms. As Milvus's, it leaves the
/// dynamic field out and says `enable_dynamic_field` (clients build the
/// dynamic column themselves, and pymilvus fails on a `$meta` it is shown).
pub fn to_milvus(info: &CollectionInfo) -> milvus::CollectionSchema {
    let ours = info.schema.clone().unwrap_or_default();
    let fields = ours
        .fields
        .iter()
        .zip(FIRST_FIELD_ID..)
        .filter(|(f, _)| !f.is_dynamic)
        .map(|(f, id)| {
            let mut type_params = Vec::new();
            if f.dim > 0 {
                type_params.push(KeyValuePair {
                    key: "dim".into(),
                    value: f.dim.to_string(),
                });
            }
            if f.max_length > 0 {
                type_params.push(KeyValuePair {
                    key: "max_length".into(),
                    value: f.max_length.to_string(),
                });
            }
            milvus::FieldSchema {
                field_id: id,
                name: f.name.clone(),
                is_primary_key: f.is_primary_key,
                auto_id: f.auto_id,
                description: f.description.clone(),
                data_type: f.data_type,
                type_params,
                ..milvus::FieldSchema::default()
            }
        })
        .collect();
    #[allow(deprecated)]
    milvus::CollectionSchema {
        name: ours.name,
        description: ours.description,
        auto_id: ours.fields.iter().any(|f| f.auto_id),
        enable_dynamic_field: ours.fields.iter().any(|f| f.is_dynamic),
        fields,
        ..milvus::CollectionSchema::default()
    }
}

/// The Milvus field id of a field of ours, by position.
pub fn field_id(schema: &milvus_like_api::schema::CollectionSchema, name: &str) -> i64 {
    schema
        .fields()
        .iter()
        .position(|f| f.name == name)
        .map_or(0, |i| FIRST_FIELD_ID + i as i64)
}

/// Milvus's index parameters (`index_type`, `metric_type`, `params` as JSON
/// or flattened) as our metric and index. `AUTOINDEX` is HNSW with the
/// defaults.
pub fn index_from_milvus(params: &[KeyValuePair]) -> Result<(Metric, IndexSpec), Refusal> {
    let mut kind = None;
    let mut metric = None;
    let mut m = None;
    let mut ef_construction = None;
    let mut numbers = Vec::new();
    for KeyValuePair { key, value } in params {
        match key.as_str() {
            "index_type" => kind = Some(value.trim().to_ascii_uppercase()),
            "metric_type" => metric = Some(value.trim().to_owned()),
            "params" => {
                let parsed: serde_json::Value = serde_json::from_str(value).map_err(|e| {
                    Refusal::invalid(format!("index params {value:?} are not JSON: {e}"))
                })?;
                let Some(object) = parsed.as_object() else {
                    return Err(Refusal::invalid(format!(
                        "index params {value:?} are not a JSON object"
                    )));
                };
                for (k, v) in object {
                    let text = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
                    numbers.push((k.clone(), text));
                }
            }
            _ => numbers.push((key.clone(), value.clone())),
        }
    }
    for (key, value) in numbers {
        let number = value.trim().parse::<u32>().map_err(|_| {
            Refusal::invalid(format!(
                "index parameter {key} is {value:?}, not a whole number"
            ))
        });
        match key.as_str() {
            "M" => m = Some(number?),
            "efConstruction" => ef_construction = Some(number?),
            other => {
                return Err(Refusal::unsupported(format!(
                    "the index parameter {other:?}; HNSW takes M and efConstruction"
                )));
            }
        }
    }
    let metric = match metric.as_deref() {
        // Milvus's default for float vectors.
        None | Some("") => Metric::Cosine,
        Some(name) => name.parse::<Metric>().map_err(|_| {
            Refusal::unsupported(format!("the metric type {name:?}; it is L2, IP or COSINE"))
        })?,
    };
    let index = match kind.as_deref() {
        None | Some("" | "AUTOINDEX" | "HNSW") => IndexSpec::hnsw(
            m.unwrap_or(milvus_like_api::schema::HNSW_DEFAULT_M),
            ef_construction.unwrap_or(milvus_like_api::schema::HNSW_DEFAULT_EF_CONSTRUCTION),
        )
        .map_err(|e| Refusal::invalid(e.to_string()))?,
        Some("FLAT") if m.is_none() && ef_construction.is_none() => IndexSpec::Flat,
        Some("FLAT") => return Err(Refusal::invalid("a FLAT index takes no parameters")),
        Some(other) => {
            return Err(Refusal::unsupported(format!(
                "the index type {other}; it builds HNSW (and AUTOINDEX as HNSW) and FLAT"
            )));
        }
    };
    Ok((metric, index))
}

/// What `DescribeIndex` reports of an index: Milvus's keys.
pub fn index_to_milvus(metric: Metric, index: IndexSpec) -> Vec<KeyValuePair> {
    let pair = |key: &str, value: String| KeyValuePair {
        key: key.into(),
        value,
    };
    let mut out = vec![
        pair("index_type", index.name().into()),
        pair("metric_type", metric.name().into()),
    ];
    if let IndexSpec::Hnsw { m, ef_construction } = index {
        out.push(pair("M", m.to_string()));
        out.push(pair("efConstruction", ef_construction.to_string()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(name: &str, t: DataType) -> milvus::FieldSchema {
        milvus::FieldSchema {
            name: name.into(),
            data_type: t.into(),
            ..milvus::FieldSchema::default()
        }
    }

    fn encoded(fields: Vec<milvus::FieldSchema>) -> Vec<u8> {
        milvus::CollectionSchema {
            name: "c".into(),
            fields,
            ..milvus::CollectionSchema::default()
        }
        .encode_to_vec()
    }

    fn kv(key: &str, value: &str) -> KeyValuePair {
        KeyValuePair {
            key: key.into(),
            value: value.into(),
        }
    }

    #[test]
    fn a_milvus_schema_becomes_ours_and_what_we_lack_is_refused_by_name() {
        let mut id = field("id", DataType::Int64);
        id.is_primary_key = true;
        id.auto_id = true;
        let mut v = field("v", DataType::FloatVector);
        v.type_params = vec![kv("dim", "8")];
        let mut t = field("title", DataType::VarChar);
        t.type_params = vec![kv("max_length", "64")];
        let ours = from_milvus("c", &encoded(vec![id.clone(), v.clone(), t])).expect("valid");
        assert_eq!(ours.fields.len(), 3);
        assert!(ours.fields[0].auto_id && ours.fields[0].is_primary_key);
        assert_eq!((ours.fields[1].dim, ours.fields[2].max_length), (8, 64));
        let described = to_milvus(&CollectionInfo {
            schema: Some(ours),
            ..CollectionInfo::default()
        });
        assert_eq!(described.fields[1].field_id, 101);
        assert!(described.fields[0].auto_id);
        assert_eq!(described.fields[1].type_params, vec![kv("dim", "8")]);

        let array = field("tags", DataType::Array);
        let e =
            from_milvus("c", &encoded(vec![id.clone(), v.clone(), array])).expect_err("refused");
        assert!(e.0.reason.contains("the data type Array"), "{}", e.0.reason);
        let dynamic = milvus::CollectionSchema {
            name: "c".into(),
            fields: vec![id.clone(), v.clone()],
            enable_dynamic_field: true,
            ..milvus::CollectionSchema::default()
        };
        let ours = from_milvus("c", &dynamic.encode_to_vec()).expect("valid");
        let meta = ours.fields.last().expect("a field");
        assert!(meta.is_dynamic && meta.name == "$meta");
        let described = to_milvus(&CollectionInfo {
            schema: Some(ours),
            ..CollectionInfo::default()
        });
        assert!(described.enable_dynamic_field);
        assert_eq!(described.fields.len(), 2, "the dynamic field is not shown");
        assert_eq!(e.code(), 1100);
        let mut pk = field("id", DataType::Double);
        pk.is_primary_key = true;
        let e = from_milvus("c", &encoded(vec![pk, v.clone()])).expect_err("refused");
        assert!(e.0.reason.contains("Double primary keys"), "{}", e.0.reason);
        let mut n = field("n", DataType::Int32);
        n.nullable = true;
        let e = from_milvus("c", &encoded(vec![id.clone(), v.clone(), n])).expect_err("refused");
        assert!(
            e.0.reason.contains("nullable fields (field \"n\")"),
            "{}",
            e.0.reason
        );
        let e = from_milvus("other", &encoded(vec![id, v])).expect_err("refused");
        assert!(e.0.reason.contains("named \"c\""), "{}", e.0.reason);
        let e = from_milvus("c", b"\xff\xff").expect_err("refused");
        assert!(e.0.reason.contains("not a valid"), "{}", e.0.reason);
    }

    #[test]
    fn index_parameters_in_milvus_terms() {
        let (metric, index) = index_from_milvus(&[
            kv("index_type", "HNSW"),
            kv("metric_type", "L2"),
            kv("params", r#"{"M": 8, "efConstruction": "64"}"#),
        ])
        .expect("valid");
        assert_eq!(metric, Metric::L2);
        assert_eq!(
            index,
            IndexSpec::Hnsw {
                m: 8,
                ef_construction: 64
            }
        );
        let (metric, index) = index_from_milvus(&[kv("index_type", "AUTOINDEX")]).expect("valid");
        assert_eq!((metric, index), (Metric::Cosine, IndexSpec::default()));
        let (_, index) =
            index_from_milvus(&[kv("index_type", "FLAT"), kv("metric_type", "IP")]).expect("valid");
        assert_eq!(index, IndexSpec::Flat);
        let e = index_from_milvus(&[kv("index_type", "IVF_FLAT")]).expect_err("refused");
        assert!(e.0.reason.contains("index type IVF_FLAT"), "{}", e.0.reason);
        let e = index_from_milvus(&[kv("metric_type", "HAMMING")]).expect_err("refused");
        assert!(e.0.reason.contains("\"HAMMING\""), "{}", e.0.reason);
        let e = index_from_milvus(&[kv("params", r#"{"nlist": 128}"#)]).expect_err("refused");
        assert!(e.0.reason.contains("\"nlist\""), "{}", e.0.reason);
        let e = index_from_milvus(&[kv("params", r#"{"M": 1000}"#)]).expect_err("refused");
        assert!(e.0.reason.contains("M is 1000"), "{}", e.0.reason);
    }
}
