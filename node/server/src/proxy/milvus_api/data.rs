//! Column data between Milvus's `FieldData` and ours, and the query vectors
//! of a Milvus search (a serialized `PlaceholderGroup`). Types are checked
//! against the schema by the proxy's own insert path; here only the shapes
//! we do not take (nulls, other vector kinds) are refused. JSON travels as
//! bytes in Milvus's messages and as text in ours.

use milvus_like_api::milvus_proto::common::{PlaceholderGroup, PlaceholderType};
use milvus_like_api::milvus_proto::schema::{
    self as milvus, field_data::Field, scalar_field::Data as Scalar, vector_field::Data as Vector,
};
use milvus_like_api::proto::{self, field_data::Data};
use milvus_like_api::schema::{CollectionSchema, FieldType};
use milvus_like_api::vectors::Floats;
use prost::Message;

use super::refusal::Refusal;
use super::schema::{field_id, type_name};

/// Milvus's columns as ours.
pub fn columns_from_milvus(
    columns: Vec<milvus::FieldData>,
) -> Result<Vec<proto::FieldData>, Refusal> {
    columns.into_iter().map(column_from_milvus).collect()
}

fn column_from_milvus(c: milvus::FieldData) -> Result<proto::FieldData, Refusal> {
    let name = c.field_name;
    if c.valid_data.iter().any(|v| !v) {
        return Err(Refusal::unsupported(format!(
            "null values (column {name:?})"
        )));
    }
    let unsupported =
        || Refusal::unsupported(format!("{} data (column {name:?})", type_name(c.r#type)));
    let data = match c.field {
        Some(Field::Scalars(s)) => match s.data {
            Some(Scalar::BoolData(a)) => Data::Bools(proto::BoolArray { values: a.data }),
            Some(Scalar::IntData(a)) => Data::Ints(proto::IntArray { values: a.data }),
            Some(Scalar::LongData(a)) => Data::Longs(proto::LongArray { values: a.data }),
            Some(Scalar::FloatData(a)) => Data::Floats(proto::FloatArray { values: a.data }),
            Some(Scalar::DoubleData(a)) => Data::Doubles(proto::DoubleArray { values: a.data }),
            Some(Scalar::StringData(a)) => Data::Strings(proto::StringArray { values: a.data }),
            Some(Scalar::JsonData(a)) => Data::Strings(proto::StringArray {
                values: a
                    .data
                    .into_iter()
                    .enumerate()
                    .map(|(row, bytes)| {
                        String::from_utf8(bytes).map_err(|_| {
                            Refusal::invalid(format!(
                                "column {name:?} row {row}: JSON that is not UTF-8"
                            ))
                        })
                    })
                    .collect::<Result<_, _>>()?,
            }),
            _ => return Err(unsupported()),
        },
        Some(Field::Vectors(v)) => match v.data {
            Some(Vector::FloatVector(a)) => Data::FloatVectors(proto::FloatVectorArray {
                dim: u32::try_from(v.dim).map_err(|_| {
                    Refusal::invalid(format!("column {name:?} has dimension {}", v.dim))
                })?,
                values: a.data.into(),
            }),
            _ => return Err(unsupported()),
        },
        Some(Field::StructArrays(_)) | None => return Err(unsupported()),
    };
    Ok(proto::FieldData {
        field_name: name,
        data: Some(data),
    })
}

/// Our columns as Milvus's, typed and numbered by the schema.
pub fn columns_to_milvus(
    schema: &CollectionSchema,
    columns: Vec<proto::FieldData>,
) -> Vec<milvus::FieldData> {
    columns
        .into_iter()
        .map(|c| column_to_milvus(schema, c))
        .collect()
}

fn column_to_milvus(schema: &CollectionSchema, c: proto::FieldData) -> milvus::FieldData {
    let field = schema.fields().iter().find(|f| f.name == c.field_name);
    let ty = field.map(|f| f.ty);
    let data_type = match ty {
        Some(FieldType::Bool) => milvus::DataType::Bool,
        Some(FieldType::Int8) => milvus::DataType::Int8,
        Some(FieldType::Int16) => milvus::DataType::Int16,
        Some(FieldType::Int32) => milvus::DataType::Int32,
        Some(FieldType::Int64) => milvus::DataType::Int64,
        Some(FieldType::Float) => milvus::DataType::Float,
        Some(FieldType::Double) => milvus::DataType::Double,
        Some(FieldType::VarChar { .. }) => milvus::DataType::VarChar,
        Some(FieldType::Json) => milvus::DataType::Json,
        Some(FieldType::FloatVector { .. }) => milvus::DataType::FloatVector,
        None => milvus::DataType::None,
    };
    let scalar = |data| Some(Field::Scalars(milvus::ScalarField { data: Some(data) }));
    let data = match c.data {
        Some(Data::Bools(a)) => scalar(Scalar::BoolData(milvus::BoolArray { data: a.values })),
        Some(Data::Ints(a)) => scalar(Scalar::IntData(milvus::IntArray { data: a.values })),
        Some(Data::Longs(a)) => scalar(Scalar::LongData(milvus::LongArray { data: a.values })),
        Some(Data::Floats(a)) => scalar(Scalar::FloatData(milvus::FloatArray { data: a.values })),
        Some(Data::Doubles(a)) => {
            scalar(Scalar::DoubleData(milvus::DoubleArray { data: a.values }))
        }
        Some(Data::Strings(a)) if ty == Some(FieldType::Json) => {
            scalar(Scalar::JsonData(milvus::JsonArray {
                data: a.values.into_iter().map(String::into_bytes).collect(),
            }))
        }
        Some(Data::Strings(a)) => {
            scalar(Scalar::StringData(milvus::StringArray { data: a.values }))
        }
        Some(Data::FloatVectors(a)) => Some(Field::Vectors(milvus::VectorField {
            dim: i64::from(a.dim),
            data: Some(Vector::FloatVector(milvus::FloatArray {
                data: a.values.to_vec(),
            })),
        })),
        None => None,
    };
    milvus::FieldData {
        r#type: data_type.into(),
        field_id: field_id(schema, &c.field_name),
        is_dynamic: field.is_some_and(|f| f.is_dynamic),
        field_name: c.field_name,
        field: data,
        ..milvus::FieldData::default()
    }
}

/// Appends the values of rows `skip..` of `src` to `dst` (the hits of one
/// query after another, each past the search's offset).
pub fn append_rows(dst: &mut Option<Data>, src: Data, skip: usize) {
    fn tail<T>(mut values: Vec<T>, skip: usize) -> Vec<T> {
        values.drain(..skip.min(values.len()));
        values
    }
    macro_rules! extend {
        ($variant:ident, $array:ident, $a:expr) => {{
            let values = tail($a.values, skip);
            match dst {
                Some(Data::$variant(d)) => d.values.extend(values),
                _ => *dst = Some(Data::$variant(proto::$array { values })),
            }
        }};
    }
    match src {
        Data::Bools(a) => extend!(Bools, BoolArray, a),
        Data::Ints(a) => extend!(Ints, IntArray, a),
        Data::Longs(a) => extend!(Longs, LongArray, a),
        Data::Floats(a) => extend!(Floats, FloatArray, a),
        Data::Doubles(a) => extend!(Doubles, DoubleArray, a),
        Data::Strings(a) => extend!(Strings, StringArray, a),
        Data::FloatVectors(a) => {
            let dim = a.dim;
            let bytes = a.values.into_le_bytes();
            let from = skip.saturating_mul(dim as usize * 4).min(bytes.len());
            // Whole floats: `from` is a multiple of 4 within the bytes.
            let values = Floats::from_le_bytes(bytes.slice(from..)).unwrap_or_default();
            match dst {
                Some(Data::FloatVectors(d)) => d.values.extend(&values),
                _ => *dst = Some(Data::FloatVectors(proto::FloatVectorArray { dim, values })),
            }
        }
    }
}

/// The query vectors of a search: one placeholder of float vectors, each
/// `dim` little-endian f32s.
pub fn query_vectors(group: &[u8], dim: u32) -> Result<proto::FloatVectorArray, Refusal> {
    let group = PlaceholderGroup::decode(group).map_err(|e| {
        Refusal::invalid(format!(
            "the search's placeholder group is not a valid PlaceholderGroup: {e}"
        ))
    })?;
    let [placeholder] = group.placeholders.as_slice() else {
        return Err(Refusal::invalid(format!(
            "a search takes one placeholder of query vectors, not {}",
            group.placeholders.len()
        )));
    };
    if placeholder.r#type != PlaceholderType::FloatVector as i32 {
        let name = PlaceholderType::try_from(placeholder.r#type).map_or_else(
            |_| placeholder.r#type.to_string(),
            |t| t.as_str_name().to_owned(),
        );
        return Err(Refusal::unsupported(format!(
            "searching with {name} queries; the collection holds FloatVector"
        )));
    }
    if placeholder.values.is_empty() {
        return Err(Refusal::invalid("the search has no query vectors"));
    }
    let width = dim as usize * 4;
    let mut values = Vec::with_capacity(placeholder.values.len() * width);
    for (i, bytes) in placeholder.values.iter().enumerate() {
        if bytes.len() != width {
            return Err(Refusal::invalid(format!(
                "query vector {} has dimension {}, the collection has dimension {dim}",
                i + 1,
                bytes.len() as f64 / 4.0
            )));
        }
        values.extend_from_slice(bytes);
    }
    let values = Floats::from_le_bytes(values.into())
        .map_err(|e| Refusal::invalid(format!("the query vectors: {e}")))?;
    Ok(proto::FloatVectorArray { dim, values })
}

#[cfg(test)]
mod tests {
    use super::*;
    use milvus_like_api::milvus_proto::common::PlaceholderValue;

    fn group(values: Vec<Vec<u8>>, t: PlaceholderType) -> Vec<u8> {
        PlaceholderGroup {
            placeholders: vec![PlaceholderValue {
                tag: "$0".into(),
                r#type: t.into(),
                values,
                element_level: false,
            }],
        }
        .encode_to_vec()
    }

    fn le(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn query_vectors_are_read_and_wrong_ones_named() {
        let g = group(
            vec![le(&[1.0, 2.0]), le(&[3.0, 4.0])],
            PlaceholderType::FloatVector,
        );
        let v = query_vectors(&g, 2).expect("valid");
        assert_eq!(v.values.to_vec(), vec![1.0, 2.0, 3.0, 4.0]);
        let g = group(vec![le(&[1.0, 2.0, 3.0])], PlaceholderType::FloatVector);
        let e = query_vectors(&g, 2).expect_err("refused");
        assert_eq!(
            e.0.reason,
            "query vector 1 has dimension 3, the collection has dimension 2"
        );
        let g = group(vec![vec![0u8; 1]], PlaceholderType::BinaryVector);
        assert!(
            query_vectors(&g, 8)
                .expect_err("refused")
                .0
                .reason
                .contains("BinaryVector")
        );
        assert!(query_vectors(b"\xff", 2).is_err());
    }

    #[test]
    fn hits_of_several_queries_append_past_the_offset() {
        let mut dst = None;
        append_rows(
            &mut dst,
            Data::Longs(proto::LongArray {
                values: vec![1, 2, 3],
            }),
            1,
        );
        append_rows(
            &mut dst,
            Data::Longs(proto::LongArray { values: vec![4, 5] }),
            1,
        );
        assert_eq!(
            dst,
            Some(Data::Longs(proto::LongArray {
                values: vec![2, 3, 5]
            }))
        );
        let mut dst = None;
        let v = |values: Vec<f32>| {
            Data::FloatVectors(proto::FloatVectorArray {
                dim: 2,
                values: values.into(),
            })
        };
        append_rows(&mut dst, v(vec![1.0, 1.0, 2.0, 2.0]), 1);
        append_rows(&mut dst, v(vec![3.0, 3.0]), 0);
        assert_eq!(dst, Some(v(vec![2.0, 2.0, 3.0, 3.0])));
    }

    #[test]
    fn columns_go_both_ways_and_nulls_are_refused() {
        let milvus_column = milvus::FieldData {
            r#type: milvus::DataType::Int64.into(),
            field_name: "id".into(),
            field: Some(Field::Scalars(milvus::ScalarField {
                data: Some(Scalar::LongData(milvus::LongArray { data: vec![1, 2] })),
            })),
            ..milvus::FieldData::default()
        };
        let ours = columns_from_milvus(vec![milvus_column.clone()]).expect("valid");
        assert_eq!(
            ours[0].data,
            Some(Data::Longs(proto::LongArray { values: vec![1, 2] }))
        );
        let schema = CollectionSchema::vectors_only("c", 2).expect("schema");
        let back = columns_to_milvus(&schema, ours);
        assert_eq!(back[0].field, milvus_column.field);
        assert_eq!((back[0].field_id, back[0].r#type), (100, 5));
        let mut nulls = milvus_column;
        nulls.valid_data = vec![true, false];
        let e = columns_from_milvus(vec![nulls]).expect_err("refused");
        assert!(
            e.0.reason.contains("null values (column \"id\")"),
            "{}",
            e.0.reason
        );
    }
}
