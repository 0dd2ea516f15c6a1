//! Deterministic test rows and what reading them back must give.

use std::collections::{HashMap, HashSet};

use milvus_like_api::proto::{self, ListSegmentsResponse};
use milvus_like_api::schema::CollectionSchema;
use milvus_like_node::columns::{Column, RowBatch};
use milvus_like_node::keys::KeysRef;
use milvus_like_node::storage::{SegmentStore, row_checksum};

/// A minimal valid schema: INT64 primary key `id`, FLOAT_VECTOR `vec` of `dim`.
pub fn test_schema(name: &str, dim: u32) -> proto::CollectionSchema {
    use proto::{DataType, FieldSchema};
    proto::CollectionSchema {
        name: name.into(),
        description: String::new(),
        fields: vec![
            FieldSchema {
                name: "id".into(),
                data_type: DataType::Int64.into(),
                is_primary_key: true,
                ..FieldSchema::default()
            },
            FieldSchema {
                name: "vec".into(),
                data_type: DataType::FloatVector.into(),
                dim,
                ..FieldSchema::default()
            },
        ],
        metric_type: proto::MetricType::L2.into(),
        index: None,
    }
}

/// Rows of the [`test_schema`] shape: the primary keys, and vectors of `dim` derived
/// from them.
pub fn rows(pks: &[i64], dim: u32) -> RowBatch {
    let mut values = Vec::with_capacity(pks.len() * dim as usize);
    for pk in pks {
        for j in 0..i64::from(dim) {
            values.push(((pk * 31 + j * 7) % 1000) as f32 / 1000.0);
        }
    }
    RowBatch {
        columns: vec![
            Column::Long(pks.to_vec()),
            Column::Vector {
                dim,
                values: values.into(),
            },
        ],
        num_rows: pks.len(),
    }
}

/// Row count and checksum of the rows of `pks` whose keys are not deleted.
pub fn expected(
    schema: &CollectionSchema,
    dim: u32,
    pks: &[i64],
    deleted: &HashSet<i64>,
) -> (u64, u64) {
    let live: Vec<i64> = pks
        .iter()
        .copied()
        .filter(|pk| !deleted.contains(pk))
        .collect();
    let batch = rows(&live, dim);
    let sum = (0..live.len()).fold(0u64, |acc, i| {
        acc.wrapping_add(row_checksum(schema, &batch, i))
    });
    (live.len() as u64, sum)
}

/// Every primary key in the committed insert logs of `listed`, with how often it
/// occurs (deletes not applied).
pub async fn committed_keys(
    store: &SegmentStore,
    schema: &CollectionSchema,
    listed: &ListSegmentsResponse,
) -> HashMap<i64, u32> {
    let mut counts = HashMap::new();
    for segment in &listed.segments {
        for path in &segment.insert_log_paths {
            let (batch, _) = store
                .read_insert_log(path, schema)
                .await
                .unwrap_or_else(|e| panic!("read insert log {path}: {e}"));
            let KeysRef::Int(keys) = batch.primary_keys(schema) else {
                panic!("{path}: the test collections have INT64 keys");
            };
            for pk in keys {
                *counts.entry(*pk).or_insert(0) += 1;
            }
        }
    }
    counts
}
