//! Rows in columns, checked against a collection schema.
//!
//! The proxy turns a client's `InsertRequest` into a [`RowBatch`] (rejecting bad
//! input with the field and row at fault); the data node turns every consumed
//! `InsertBatch` into one again (the log may hold junk, too) and appends it to a
//! segment buffer; the flush writes it as Parquet.

use milvus_like_api::proto::{self, FieldData, InsertBatch, field_data::Data};
use milvus_like_api::schema::{CollectionSchema, FieldSchema, FieldType};
use milvus_like_api::vectors::Floats;
use milvus_like_api::wire;

use crate::keys::KeysRef;

/// One column's values. INT8, INT16 and INT32 are held as `i32` (as on the wire).
#[derive(Debug, Clone, PartialEq)]
pub enum Column {
    Bool(Vec<bool>),
    Int(Vec<i32>),
    Long(Vec<i64>),
    Float(Vec<f32>),
    Double(Vec<f64>),
    Str(Vec<String>),
    /// Row-major: row i is floats `i * dim..(i + 1) * dim`, held as the
    /// little-endian bytes they were received in.
    Vector {
        dim: u32,
        values: Floats,
    },
}

/// Why a column was refused. The message names the field and, where it applies, the row.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ColumnError(pub String);

/// A JSON value of `field` at `row`: valid JSON of at most
/// [`MAX_JSON_BYTES`](milvus_like_api::schema::MAX_JSON_BYTES), and an object
/// in the dynamic field.
fn check_json(field: &FieldSchema, row: usize, text: &str) -> Result<(), ColumnError> {
    let name = &field.name;
    let max = milvus_like_api::schema::MAX_JSON_BYTES;
    if text.len() > max {
        return Err(ColumnError(format!(
            "field {name:?} row {row}: {} bytes of JSON is more than {max}",
            text.len()
        )));
    }
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| ColumnError(format!("field {name:?} row {row}: not JSON: {e}")))?;
    if field.is_dynamic && !value.is_object() {
        return Err(ColumnError(format!(
            "field {name:?} row {row}: the dynamic field holds a JSON object, not {text}"
        )));
    }
    Ok(())
}

impl Column {
    /// An empty column of the field's type.
    pub fn empty(ty: FieldType) -> Self {
        match ty {
            FieldType::Bool => Self::Bool(Vec::new()),
            FieldType::Int8 | FieldType::Int16 | FieldType::Int32 => Self::Int(Vec::new()),
            FieldType::Int64 => Self::Long(Vec::new()),
            FieldType::Float => Self::Float(Vec::new()),
            FieldType::Double => Self::Double(Vec::new()),
            FieldType::VarChar { .. } | FieldType::Json => Self::Str(Vec::new()),
            FieldType::FloatVector { dim } => Self::Vector {
                dim,
                values: Floats::default(),
            },
        }
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        match self {
            Self::Bool(v) => v.len(),
            Self::Int(v) => v.len(),
            Self::Long(v) => v.len(),
            Self::Float(v) => v.len(),
            Self::Double(v) => v.len(),
            Self::Str(v) => v.len(),
            Self::Vector { dim, values } => values.len() / (*dim).max(1) as usize,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes held in memory by the values (for buffer accounting).
    pub fn byte_size(&self) -> usize {
        match self {
            Self::Bool(v) => v.len(),
            Self::Int(v) => v.len() * 4,
            Self::Long(v) => v.len() * 8,
            Self::Float(v) => v.len() * 4,
            Self::Double(v) => v.len() * 8,
            Self::Str(v) => v.iter().map(|s| s.len() + 24).sum(),
            Self::Vector { values, .. } => values.len() * 4,
        }
    }

    /// Gives back spare capacity (decoders grow vectors by doubling; vectors
    /// are held at their size).
    pub fn shrink_to_fit(&mut self) {
        match self {
            Self::Bool(v) => v.shrink_to_fit(),
            Self::Int(v) => v.shrink_to_fit(),
            Self::Long(v) => v.shrink_to_fit(),
            Self::Float(v) => v.shrink_to_fit(),
            Self::Double(v) => v.shrink_to_fit(),
            Self::Str(v) => v.shrink_to_fit(),
            Self::Vector { .. } => {}
        }
    }

    /// Appends `other` (same type; checked by the caller's schema) to this column.
    pub fn append(&mut self, other: Column) -> Result<(), ColumnError> {
        match (self, other) {
            (Self::Bool(a), Self::Bool(b)) => a.extend(b),
            (Self::Int(a), Self::Int(b)) => a.extend(b),
            (Self::Long(a), Self::Long(b)) => a.extend(b),
            (Self::Float(a), Self::Float(b)) => a.extend(b),
            (Self::Double(a), Self::Double(b)) => a.extend(b),
            (Self::Str(a), Self::Str(b)) => a.extend(b),
            (Self::Vector { dim: d1, values: a }, Self::Vector { dim: d2, values: b })
                if *d1 == d2 =>
            {
                a.extend(&b)
            }
            _ => return Err(ColumnError("column types differ".into())),
        }
        Ok(())
    }

    /// Converts a wire column, checking it against `field` and `num_rows`.
    pub fn from_field_data(
        field: &FieldSchema,
        data: Option<Data>,
        num_rows: usize,
    ) -> Result<Self, ColumnError> {
        let name = &field.name;
        let wrong = |got: &str| {
            ColumnError(format!(
                "field {name:?} is {} but the request sent {got} values",
                field.ty.name()
            ))
        };
        let column = match (field.ty, data) {
            (_, None) => return Err(ColumnError(format!("field {name:?} has no values"))),
            (FieldType::Bool, Some(Data::Bools(a))) => Self::Bool(a.values),
            (FieldType::Int8 | FieldType::Int16 | FieldType::Int32, Some(Data::Ints(a))) => {
                let (lo, hi) = match field.ty {
                    FieldType::Int8 => (i32::from(i8::MIN), i32::from(i8::MAX)),
                    FieldType::Int16 => (i32::from(i16::MIN), i32::from(i16::MAX)),
                    _ => (i32::MIN, i32::MAX),
                };
                if let Some((row, v)) = a
                    .values
                    .iter()
                    .enumerate()
                    .find(|(_, v)| **v < lo || **v > hi)
                {
                    return Err(ColumnError(format!(
                        "field {name:?} row {row}: {v} does not fit {}",
                        field.ty.name()
                    )));
                }
                Self::Int(a.values)
            }
            (FieldType::Int64, Some(Data::Longs(a))) => Self::Long(a.values),
            (FieldType::Float, Some(Data::Floats(a))) => Self::Float(a.values),
            (FieldType::Double, Some(Data::Doubles(a))) => Self::Double(a.values),
            (FieldType::VarChar { max_length }, Some(Data::Strings(a))) => {
                if let Some((row, s)) = a
                    .values
                    .iter()
                    .enumerate()
                    .find(|(_, s)| s.len() > max_length as usize)
                {
                    return Err(ColumnError(format!(
                        "field {name:?} row {row}: {} bytes is longer than max_length {max_length}",
                        s.len()
                    )));
                }
                Self::Str(a.values)
            }
            (FieldType::Json, Some(Data::Strings(a))) => {
                for (row, text) in a.values.iter().enumerate() {
                    check_json(field, row, text)?;
                }
                Self::Str(a.values)
            }
            (FieldType::FloatVector { dim }, Some(Data::FloatVectors(a))) => {
                if a.dim != dim {
                    return Err(ColumnError(format!(
                        "field {name:?} has dimension {dim} but the request sent vectors of dimension {}",
                        a.dim
                    )));
                }
                if a.values.len() % dim as usize != 0 {
                    return Err(ColumnError(format!(
                        "field {name:?}: {} floats is not a whole number of {dim}-dimensional vectors",
                        a.values.len()
                    )));
                }
                if let Some(i) = a.values.first_non_finite() {
                    return Err(ColumnError(format!(
                        "field {name:?} row {}: the vector holds a NaN or infinite value",
                        i / dim as usize
                    )));
                }
                Self::Vector {
                    dim,
                    values: a.values,
                }
            }
            (_, Some(other)) => return Err(wrong(data_name(&other))),
        };
        if column.len() != num_rows {
            return Err(ColumnError(format!(
                "field {name:?} has {} values but the batch has {num_rows} rows",
                column.len()
            )));
        }
        Ok(column)
    }

    /// The values at `picks` (a source among `sources` and a row of it), in
    /// that order: a column of type `ty` gathered from several blocks. A pick
    /// out of range, or a source of another type, is an error.
    pub fn gather(
        ty: FieldType,
        sources: &[&Column],
        picks: &[(usize, usize)],
    ) -> Result<Column, ColumnError> {
        let bad = |s: usize, r: usize| {
            ColumnError(format!("no {} value at row {r} of block {s}", ty.name()))
        };
        macro_rules! scalar {
            ($variant:ident) => {{
                let values = picks
                    .iter()
                    .map(|&(s, r)| match sources.get(s) {
                        Some(Column::$variant(v)) => v.get(r).cloned().ok_or_else(|| bad(s, r)),
                        _ => Err(bad(s, r)),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Column::$variant(values)
            }};
        }
        Ok(match Column::empty(ty) {
            Column::Bool(_) => scalar!(Bool),
            Column::Int(_) => scalar!(Int),
            Column::Long(_) => scalar!(Long),
            Column::Float(_) => scalar!(Float),
            Column::Double(_) => scalar!(Double),
            Column::Str(_) => scalar!(Str),
            Column::Vector { dim, .. } => {
                let width = dim as usize;
                let mut bytes = Vec::with_capacity(picks.len() * width * 4);
                for &(s, r) in picks {
                    let row = match sources.get(s) {
                        Some(Column::Vector { dim: d, values }) if *d == dim => {
                            values.row_le_bytes(width, r)
                        }
                        _ => None,
                    };
                    bytes.extend_from_slice(row.ok_or_else(|| bad(s, r))?);
                }
                Column::Vector {
                    dim,
                    values: Floats::from_le_bytes(bytes.into())
                        .map_err(|_| ColumnError("vector bytes are not whole floats".into()))?,
                }
            }
        })
    }

    /// The wire form.
    pub fn to_field_data(&self, name: &str) -> FieldData {
        self.clone().into_field_data(name)
    }

    /// The wire form, moving the values.
    pub fn into_field_data(self, name: &str) -> FieldData {
        let data = match self {
            Self::Bool(values) => Data::Bools(proto::BoolArray { values }),
            Self::Int(values) => Data::Ints(proto::IntArray { values }),
            Self::Long(values) => Data::Longs(proto::LongArray { values }),
            Self::Float(values) => Data::Floats(proto::FloatArray { values }),
            Self::Double(values) => Data::Doubles(proto::DoubleArray { values }),
            Self::Str(values) => Data::Strings(proto::StringArray { values }),
            Self::Vector { dim, values } => {
                Data::FloatVectors(proto::FloatVectorArray { dim, values })
            }
        };
        FieldData {
            field_name: name.to_owned(),
            data: Some(data),
        }
    }
}

fn data_name(d: &Data) -> &'static str {
    match d {
        Data::Bools(_) => "BOOL",
        Data::Ints(_) => "INT32",
        Data::Longs(_) => "INT64",
        Data::Floats(_) => "FLOAT",
        Data::Doubles(_) => "DOUBLE",
        Data::Strings(_) => "VARCHAR",
        Data::FloatVectors(_) => "FLOAT_VECTOR",
    }
}

/// Rows of one collection in columns, in the schema's field order.
#[derive(Debug, Clone, PartialEq)]
pub struct RowBatch {
    /// `columns[i]` holds the values of `schema.fields()[i]`.
    pub columns: Vec<Column>,
    pub num_rows: usize,
}

impl RowBatch {
    /// An empty batch for the schema.
    pub fn empty(schema: &CollectionSchema) -> Self {
        Self {
            columns: schema
                .fields()
                .iter()
                .map(|f| Column::empty(f.ty))
                .collect(),
            num_rows: 0,
        }
    }

    /// Checks wire columns against the schema: every field exactly once, no unknown
    /// field, every column `num_rows` long and of the field's type.
    pub fn from_wire(
        schema: &CollectionSchema,
        columns: Vec<FieldData>,
        num_rows: usize,
    ) -> Result<Self, ColumnError> {
        if num_rows == 0 {
            return Err(ColumnError("the batch has no rows".into()));
        }
        let mut by_name: std::collections::HashMap<String, Option<Data>> =
            std::collections::HashMap::new();
        for c in columns {
            if schema.fields().iter().all(|f| f.name != c.field_name) {
                return Err(ColumnError(format!(
                    "field {:?} is not in the schema of collection {:?}",
                    c.field_name, schema.name
                )));
            }
            if by_name.insert(c.field_name.clone(), c.data).is_some() {
                return Err(ColumnError(format!(
                    "field {:?} appears more than once",
                    c.field_name
                )));
            }
        }
        let columns = schema
            .fields()
            .iter()
            .map(|f| match by_name.remove(&f.name) {
                Some(data) => Column::from_field_data(f, data, num_rows),
                // Rows that gave no key beyond the fields.
                None if f.is_dynamic => Ok(Column::Str(vec!["{}".to_owned(); num_rows])),
                None => Err(ColumnError(format!("field {:?} is missing", f.name))),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { columns, num_rows })
    }

    /// The primary keys (the schema's INT64 or VARCHAR primary key column).
    pub fn primary_keys<'a>(&'a self, schema: &CollectionSchema) -> KeysRef<'a> {
        KeysRef::of(self.columns.get(schema.primary_key_index()))
    }

    /// The vectors (the schema's FLOAT_VECTOR column) and their dimension.
    pub fn vectors<'a>(&'a self, schema: &CollectionSchema) -> Option<(usize, &'a Floats)> {
        let index = schema
            .fields()
            .iter()
            .position(|f| matches!(f.ty, FieldType::FloatVector { .. }))?;
        match self.columns.get(index) {
            Some(Column::Vector { dim, values }) => Some((*dim as usize, values)),
            _ => None,
        }
    }

    /// Gives back the columns' spare capacity.
    pub fn shrink_to_fit(&mut self) {
        self.columns.iter_mut().for_each(Column::shrink_to_fit);
    }

    /// Appends another batch of the same schema.
    pub fn append(&mut self, other: RowBatch) -> Result<(), ColumnError> {
        for (a, b) in self.columns.iter_mut().zip(other.columns) {
            a.append(b)?;
        }
        self.num_rows += other.num_rows;
        Ok(())
    }

    /// About the bytes one row of `schema` takes in memory with its timestamp,
    /// as [`Self::byte_size`] counts them (VARCHAR values at most 64 bytes).
    pub fn estimated_row_bytes(schema: &CollectionSchema) -> u64 {
        let values: u64 = schema
            .fields()
            .iter()
            .map(|f| match f.ty {
                FieldType::Bool => 1,
                FieldType::Int8 | FieldType::Int16 | FieldType::Int32 | FieldType::Float => 4,
                FieldType::Int64 | FieldType::Double => 8,
                FieldType::VarChar { max_length } => 24 + u64::from(max_length.min(64)),
                FieldType::Json => 24 + 64,
                FieldType::FloatVector { dim } => 4 * u64::from(dim),
            })
            .sum();
        // The row's slot in `byte_size` and its timestamp.
        values + 8 + 8
    }

    /// Bytes held in memory.
    pub fn byte_size(&self) -> usize {
        self.columns.iter().map(Column::byte_size).sum::<usize>() + self.num_rows * 8
    }

    /// The rows at `indices`, in that order (to split a batch by channel).
    pub fn take(&self, indices: &[usize]) -> RowBatch {
        self.take_columns(indices, true)
    }

    /// The encoded `InsertBatch` of `header` (its columns are ignored) holding
    /// the rows at `indices`: the bytes of `take(indices)` encoded, but each
    /// vector is copied once, from this batch straight into the message.
    pub fn encode_rows(
        &self,
        schema: &CollectionSchema,
        header: InsertBatch,
        indices: &[usize],
    ) -> Vec<u8> {
        let batch = InsertBatch {
            columns: self.take_columns(indices, false).into_wire(schema),
            ..header
        };
        let vectors: Vec<_> = self
            .columns
            .iter()
            .enumerate()
            .filter_map(|(i, c)| match c {
                Column::Vector { dim, values } => Some((
                    i,
                    wire::GatheredVectors {
                        dim: *dim,
                        values: values.as_le_bytes(),
                        rows: indices,
                    },
                )),
                _ => None,
            })
            .collect();
        wire::encode_insert_batch_gathering(&batch, &vectors)
    }

    /// The rows at `indices`; vector columns come back empty unless `vectors`.
    fn take_columns(&self, indices: &[usize], vectors: bool) -> RowBatch {
        let columns = self
            .columns
            .iter()
            .map(|c| match c {
                Column::Bool(v) => Column::Bool(indices.iter().map(|&i| v[i]).collect()),
                Column::Int(v) => Column::Int(indices.iter().map(|&i| v[i]).collect()),
                Column::Long(v) => Column::Long(indices.iter().map(|&i| v[i]).collect()),
                Column::Float(v) => Column::Float(indices.iter().map(|&i| v[i]).collect()),
                Column::Double(v) => Column::Double(indices.iter().map(|&i| v[i]).collect()),
                Column::Str(v) => Column::Str(indices.iter().map(|&i| v[i].clone()).collect()),
                Column::Vector { dim, .. } if !vectors => Column::Vector {
                    dim: *dim,
                    values: Floats::default(),
                },
                Column::Vector { dim, values } => Column::Vector {
                    dim: *dim,
                    values: values.gather_rows(*dim as usize, indices),
                },
            })
            .collect();
        RowBatch {
            columns,
            num_rows: indices.len(),
        }
    }

    /// The wire form, with field names from the schema.
    pub fn to_wire(&self, schema: &CollectionSchema) -> Vec<FieldData> {
        schema
            .fields()
            .iter()
            .zip(&self.columns)
            .map(|(f, c)| c.to_field_data(&f.name))
            .collect()
    }

    /// The wire form, moving the columns (no copy of the values).
    pub fn into_wire(self, schema: &CollectionSchema) -> Vec<FieldData> {
        schema
            .fields()
            .iter()
            .zip(self.columns)
            .map(|(f, c)| c.into_field_data(&f.name))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vector_field(dim: u32) -> FieldSchema {
        FieldSchema {
            name: "v".into(),
            ty: FieldType::FloatVector { dim },
            is_primary_key: false,
            auto_id: false,
            is_dynamic: false,
            description: String::new(),
        }
    }

    #[test]
    fn a_vector_with_a_nan_is_refused_naming_its_row() {
        let mut values = vec![1.0f32; 4 * 3000];
        values[4 * 2500 + 3] = f32::NAN;
        let data = Data::FloatVectors(proto::FloatVectorArray {
            dim: 4,
            values: values.into(),
        });
        let err = Column::from_field_data(&vector_field(4), Some(data), 3000)
            .expect_err("a NaN is refused");
        assert_eq!(
            err.0,
            "field \"v\" row 2500: the vector holds a NaN or infinite value"
        );
    }

    #[test]
    fn json_values_are_checked_and_the_dynamic_field_defaults_to_an_empty_object() {
        let mut wire =
            proto::CollectionSchema::from(&CollectionSchema::vectors_only("c", 1).expect("schema"));
        wire.fields.push(proto::FieldSchema {
            name: "doc".into(),
            data_type: proto::DataType::Json.into(),
            ..proto::FieldSchema::default()
        });
        wire.fields.push(proto::FieldSchema {
            name: "$meta".into(),
            data_type: proto::DataType::Json.into(),
            is_dynamic: true,
            ..proto::FieldSchema::default()
        });
        let schema = CollectionSchema::try_from(wire).expect("valid");
        let column = |name: &str, values: Vec<Data>| -> Vec<FieldData> {
            values
                .into_iter()
                .map(|data| FieldData {
                    field_name: name.into(),
                    data: Some(data),
                })
                .collect()
        };
        let strings = |v: &[&str]| {
            Data::Strings(proto::StringArray {
                values: v.iter().map(|s| (*s).to_owned()).collect(),
            })
        };
        let base = || {
            let mut c = column(
                "id",
                vec![Data::Longs(proto::LongArray { values: vec![1, 2] })],
            );
            c.extend(column(
                "vector",
                vec![Data::FloatVectors(proto::FloatVectorArray {
                    dim: 1,
                    values: vec![0.5, 1.5].into(),
                })],
            ));
            c
        };
        let mut ok = base();
        ok.extend(column("doc", vec![strings(&["[1, 2]", "\"text\""])]));
        let batch = RowBatch::from_wire(&schema, ok, 2).expect("valid");
        assert_eq!(
            batch.columns[3],
            Column::Str(vec!["{}".into(), "{}".into()])
        );

        let mut bad = base();
        bad.extend(column("doc", vec![strings(&["{}", "{oops"])]));
        let e = RowBatch::from_wire(&schema, bad, 2).expect_err("not JSON");
        assert!(e.0.starts_with("field \"doc\" row 1: not JSON"), "{}", e.0);
        let mut not_object = base();
        not_object.extend(column("doc", vec![strings(&["1", "2"])]));
        not_object.extend(column("$meta", vec![strings(&["{}", "[3]"])]));
        let e = RowBatch::from_wire(&schema, not_object, 2).expect_err("not an object");
        assert!(
            e.0.contains("row 1: the dynamic field holds a JSON object"),
            "{}",
            e.0
        );
        let mut large = base();
        let big = format!("\"{}\"", "x".repeat(70_000));
        large.extend(column("doc", vec![strings(&["{}", &big])]));
        let e = RowBatch::from_wire(&schema, large, 2).expect_err("too large");
        assert!(e.0.contains("is more than 65536"), "{}", e.0);
    }

    /// The proxy's messages are the taken rows, encoded.
    #[test]
    fn encoded_rows_are_the_taken_rows_encoded() {
        let schema = CollectionSchema::vectors_only("c", 2).expect("schema");
        let batch = RowBatch {
            columns: vec![
                Column::Long(vec![10, 11, 12]),
                Column::Vector {
                    dim: 2,
                    values: vec![0.0, 0.5, 1.0, 1.5, 2.0, 2.5].into(),
                },
            ],
            num_rows: 3,
        };
        let header = InsertBatch {
            collection_id: 7,
            segment_id: 9,
            first_ts: 100,
            num_rows: 3,
            ..InsertBatch::default()
        };
        for rows in [&[2, 0, 2][..], &[1], &[]] {
            let taken = InsertBatch {
                columns: batch.take(rows).into_wire(&schema),
                ..header.clone()
            };
            assert_eq!(
                batch.encode_rows(&schema, header.clone(), rows),
                prost::Message::encode_to_vec(&taken),
                "rows {rows:?}"
            );
        }
    }
}
