//! Parquet files with one column per schema field, named as the field. Vectors
//! are `FixedSizeList` or `List` of float32 (or float64, converted), or
//! `FixedSizeBinary(dim * 4)` of little-endian float32s (segment files); integer
//! columns of any width are taken if the values fit the field; a `_ts` column
//! (the segment files' timestamps) is ignored, so segment files and exports load
//! back as they are.

use std::fs::File;
use std::path::Path;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, UInt8Type, UInt16Type,
    UInt32Type, UInt64Type,
};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::DataType;
use bytes::Bytes;
use milvus_like_api::schema::{CollectionSchema, FieldSchema, FieldType};
use milvus_like_api::vectors::Floats;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};

use super::{KeyCounter, RowSource, check_int, check_length, map_columns, wrong_dim};
use crate::cli::error::CliError;
use crate::columns::{Column, RowBatch};
use crate::storage::format::TS_COLUMN;

pub struct ParquetSource {
    reader: ParquetRecordBatchReader,
    file: String,
    schema: CollectionSchema,
    columns: Vec<Option<usize>>,
    total: u64,
    read: u64,
    keys: Option<KeyCounter>,
}

impl std::fmt::Debug for ParquetSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParquetSource")
            .field("file", &self.file)
            .field("read", &self.read)
            .finish_non_exhaustive()
    }
}

impl ParquetSource {
    pub fn open(
        path: &Path,
        schema: &CollectionSchema,
        id_start: Option<i64>,
        batch_rows: usize,
    ) -> Result<Self, CliError> {
        let name = path.display().to_string();
        let file = File::open(path)
            .map_err(|e| CliError::bad_input(format!("cannot open {name}: {e}")))?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| {
            CliError::bad_input(format!("{name} is not a readable Parquet file: {e}"))
        })?;
        let total = u64::try_from(builder.metadata().file_metadata().num_rows()).unwrap_or(0);
        let names: Vec<String> = builder
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let columns = map_columns(&name, &names, schema, id_start.is_some(), &[TS_COLUMN])?;
        let reader = builder
            .with_batch_size(batch_rows.max(1))
            .build()
            .map_err(|e| CliError::bad_input(format!("{name} cannot be read: {e}")))?;
        Ok(Self {
            reader,
            file: name,
            schema: schema.clone(),
            columns,
            total,
            read: 0,
            keys: id_start.map(KeyCounter::new),
        })
    }
}

impl RowSource for ParquetSource {
    fn total_rows(&self) -> Option<u64> {
        Some(self.total)
    }

    /// Batches come as the reader's batch size (`batch_rows` when opened).
    fn next_batch(&mut self, _max_rows: usize) -> Result<Option<RowBatch>, CliError> {
        let batch = match self.reader.next() {
            None => return Ok(None),
            Some(Err(e)) => {
                return Err(CliError::bad_input(format!(
                    "{} cannot be read after row {}: {e}",
                    self.file, self.read
                )));
            }
            Some(Ok(b)) => b,
        };
        let rows = convert(&self.file, self.read, &batch, &self.schema, &self.columns)?;
        self.read += batch.num_rows() as u64;
        let mut rows = rows;
        if let Some(keys) = &mut self.keys
            && let Some(pk) = self.schema.fields().iter().position(|f| f.is_primary_key)
            && self.columns[pk].is_none()
        {
            rows.columns[pk] = Column::Long(keys.take(rows.num_rows)?);
        }
        Ok(Some(rows))
    }
}

/// One record batch as rows of the schema; `first_row` numbers rows in messages.
pub fn convert(
    file: &str,
    first_row: u64,
    batch: &RecordBatch,
    schema: &CollectionSchema,
    columns: &[Option<usize>],
) -> Result<RowBatch, CliError> {
    let n = batch.num_rows();
    let mut out = Vec::with_capacity(columns.len());
    for (field, source) in schema.fields().iter().zip(columns) {
        let column = match source {
            Some(i) => column(field, batch.column(*i), n).map_err(|(row, m)| {
                CliError::bad_input(match row {
                    Some(r) => format!("{file} row {}: {m}", first_row + r as u64),
                    None => format!("{file}: {m}"),
                })
            })?,
            None => Column::empty(field.ty),
        };
        out.push(column);
    }
    Ok(RowBatch {
        columns: out,
        num_rows: n,
    })
}

/// What is wrong, and at which row of the batch when it is one row's fault.
type Fault = (Option<usize>, String);

fn column(field: &FieldSchema, array: &ArrayRef, n: usize) -> Result<Column, Fault> {
    let name = &field.name;
    if array.null_count() > 0 {
        let row = (0..n).find(|i| array.is_null(*i));
        return Err((
            row,
            format!("field {name:?} is null; every field needs a value"),
        ));
    }
    let wrong = || {
        (
            None,
            format!(
                "column {name:?} is {}, which does not fit the field's type {}",
                array.data_type(),
                field.ty.name()
            ),
        )
    };
    let row_fault = |(row, m): (usize, String)| (Some(row), m);
    Ok(match field.ty {
        FieldType::Bool => match array.as_boolean_opt() {
            Some(a) => Column::Bool(a.iter().map(|v| v.unwrap_or(false)).collect()),
            None => return Err(wrong()),
        },
        FieldType::Int8 | FieldType::Int16 | FieldType::Int32 | FieldType::Int64 => {
            let values = integers(array).ok_or_else(wrong)?.map_err(row_fault)?;
            for (row, x) in values.iter().enumerate() {
                check_int(name, *x, field.ty).map_err(|m| (Some(row), m))?;
            }
            if field.ty == FieldType::Int64 {
                Column::Long(values)
            } else {
                Column::Int(values.iter().map(|x| *x as i32).collect())
            }
        }
        FieldType::Float => Column::Float(floats(array).ok_or_else(wrong)?),
        FieldType::Double => Column::Double(match array.data_type() {
            DataType::Float64 => array.as_primitive::<Float64Type>().values().to_vec(),
            DataType::Float32 => array
                .as_primitive::<Float32Type>()
                .values()
                .iter()
                .map(|x| f64::from(*x))
                .collect(),
            _ => return Err(wrong()),
        }),
        FieldType::VarChar { .. } | FieldType::Json => {
            let strings: Vec<String> = if let Some(a) = array.as_string_opt::<i32>() {
                a.iter().map(|s| s.unwrap_or_default().to_owned()).collect()
            } else if let Some(a) = array.as_string_opt::<i64>() {
                a.iter().map(|s| s.unwrap_or_default().to_owned()).collect()
            } else {
                return Err(wrong());
            };
            // JSON text is checked by the proxy, which names the row.
            if let FieldType::VarChar { max_length } = field.ty {
                for (row, s) in strings.iter().enumerate() {
                    check_length(name, s, max_length).map_err(|m| (Some(row), m))?;
                }
            }
            Column::Str(strings)
        }
        FieldType::FloatVector { dim } => vectors(field, array, n, dim)?,
    })
}

/// Any integer column as i64; `None` for other types, a row fault for a u64 past i64.
fn integers(array: &ArrayRef) -> Option<Result<Vec<i64>, (usize, String)>> {
    fn widen<T: arrow_array::ArrowPrimitiveType>(a: &ArrayRef) -> Vec<i64>
    where
        T::Native: Into<i64>,
    {
        a.as_primitive::<T>()
            .values()
            .iter()
            .map(|x| (*x).into())
            .collect()
    }
    Some(Ok(match array.data_type() {
        DataType::Int8 => widen::<Int8Type>(array),
        DataType::Int16 => widen::<Int16Type>(array),
        DataType::Int32 => widen::<Int32Type>(array),
        DataType::Int64 => array.as_primitive::<Int64Type>().values().to_vec(),
        DataType::UInt8 => widen::<UInt8Type>(array),
        DataType::UInt16 => widen::<UInt16Type>(array),
        DataType::UInt32 => widen::<UInt32Type>(array),
        DataType::UInt64 => {
            let mut out = Vec::with_capacity(array.len());
            for (row, x) in array
                .as_primitive::<UInt64Type>()
                .values()
                .iter()
                .enumerate()
            {
                match i64::try_from(*x) {
                    Ok(v) => out.push(v),
                    Err(_) => return Some(Err((row, format!("{x} does not fit INT64")))),
                }
            }
            out
        }
        _ => return None,
    }))
}

/// A float32 or float64 column (or list items) as f32.
fn floats(array: &dyn Array) -> Option<Vec<f32>> {
    match array.data_type() {
        DataType::Float32 => Some(array.as_primitive::<Float32Type>().values().to_vec()),
        DataType::Float64 => Some(
            array
                .as_primitive::<Float64Type>()
                .values()
                .iter()
                .map(|x| *x as f32)
                .collect(),
        ),
        _ => None,
    }
}

fn vectors(field: &FieldSchema, array: &ArrayRef, n: usize, dim: u32) -> Result<Column, Fault> {
    let name = &field.name;
    let d = dim as usize;
    if let DataType::FixedSizeBinary(width) = array.data_type() {
        return packed_vectors(name, array, n, dim, *width);
    }
    // The items of rows 0..n, row-major, after checking each row's length.
    let items: ArrayRef = match array.data_type() {
        DataType::FixedSizeList(_, size) => {
            let list = array.as_fixed_size_list();
            if usize::try_from(*size).ok() != Some(d) {
                return Err((
                    None,
                    wrong_dim(name, usize::try_from(*size).unwrap_or(0), dim),
                ));
            }
            let start = list.value_offset_at(0);
            list.values().slice(start, n * d)
        }
        DataType::List(_) => {
            let list = array.as_list::<i32>();
            let offsets = list.value_offsets();
            list_items(name, dim, offsets.iter().map(|o| *o as i64), list.values())?
        }
        DataType::LargeList(_) => {
            let list = array.as_list::<i64>();
            let offsets = list.value_offsets();
            list_items(name, dim, offsets.iter().copied(), list.values())?
        }
        other => {
            return Err((
                None,
                format!(
                    "column {name:?} is {other}; a vector column is a list of float32 \
                     (FixedSizeList or List) or FixedSizeBinary(dim * 4)"
                ),
            ));
        }
    };
    if items.null_count() > 0 {
        let at = (0..items.len()).find(|i| items.is_null(*i)).unwrap_or(0);
        return Err((
            Some(at / d.max(1)),
            format!("field {name:?} holds a null number"),
        ));
    }
    let values = floats(items.as_ref()).ok_or_else(|| {
        (
            None,
            format!(
                "column {name:?} holds {} numbers; vectors are float32 (or float64)",
                items.data_type()
            ),
        )
    })?;
    finite_vectors(name, dim, values.into())
}

/// Vectors packed as the segment files hold them: each row `dim` little-endian
/// float32s in one fixed-size binary value.
fn packed_vectors(
    name: &str,
    array: &ArrayRef,
    n: usize,
    dim: u32,
    width: i32,
) -> Result<Column, Fault> {
    let d = dim as usize;
    if usize::try_from(width).ok() != Some(d * 4) {
        return Err((
            None,
            format!(
                "column {name:?} is FixedSizeBinary({width}); FLOAT_VECTOR({dim}) packs \
                 {} bytes of little-endian float32 per row",
                d * 4
            ),
        ));
    }
    let packed = array.as_fixed_size_binary();
    if let Some(row) = (0..packed.len()).find(|i| packed.is_null(*i)) {
        return Err((Some(row), format!("field {name:?} holds a null vector")));
    }
    if packed.values().len() < n * d * 4 {
        return Err((
            None,
            format!("column {name:?} holds fewer vectors than the batch has rows"),
        ));
    }
    let bytes = Bytes::from(packed.values().slice_with_length(0, n * d * 4));
    let values =
        Floats::from_le_bytes(bytes).map_err(|e| (None, format!("column {name:?}: {e}")))?;
    finite_vectors(name, dim, values)
}

fn finite_vectors(name: &str, dim: u32, values: Floats) -> Result<Column, Fault> {
    if let Some(i) = values.first_non_finite() {
        return Err((
            Some(i / (dim as usize).max(1)),
            format!("field {name:?}: the vector holds a NaN or infinite number"),
        ));
    }
    Ok(Column::Vector { dim, values })
}

/// The items of a variable-length list column whose every row must hold `dim` numbers.
fn list_items(
    name: &str,
    dim: u32,
    offsets: impl Iterator<Item = i64>,
    values: &ArrayRef,
) -> Result<ArrayRef, Fault> {
    let offsets: Vec<i64> = offsets.collect();
    for (row, w) in offsets.windows(2).enumerate() {
        let len = usize::try_from(w[1] - w[0]).unwrap_or(0);
        if len != dim as usize {
            return Err((Some(row), wrong_dim(name, len, dim)));
        }
    }
    let start = offsets.first().copied().unwrap_or(0);
    let end = offsets.last().copied().unwrap_or(0);
    Ok(values.slice(
        usize::try_from(start).unwrap_or(0),
        usize::try_from(end - start).unwrap_or(0),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::source::tests::{minimal, schema};
    use arrow_array::builder::{FixedSizeListBuilder, Float32Builder, ListBuilder};
    use arrow_array::{Int32Array, Int64Array, StringArray, UInt64Array};
    use arrow_schema::{Field, Schema};
    use std::sync::Arc;

    fn write(path: &Path, batch: &RecordBatch) {
        let file = File::create(path).expect("create");
        let mut w =
            parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).expect("writer");
        w.write(batch).expect("write");
        w.close().expect("close");
    }

    fn fixed(rows: &[&[f32]], dim: i32) -> ArrayRef {
        let mut b = FixedSizeListBuilder::new(Float32Builder::new(), dim);
        for r in rows {
            b.values().append_slice(r);
            b.append(true);
        }
        Arc::new(b.finish())
    }

    fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
        let fields: Vec<Field> = columns
            .iter()
            .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
            .collect();
        RecordBatch::try_new(
            Arc::new(Schema::new(fields)),
            columns.into_iter().map(|(_, a)| a).collect(),
        )
        .expect("batch")
    }

    fn read_all(
        path: &Path,
        s: &CollectionSchema,
        id_start: Option<i64>,
    ) -> Result<Vec<RowBatch>, CliError> {
        let mut src = ParquetSource::open(path, s, id_start, 2)?;
        let mut out = Vec::new();
        while let Some(b) = src.next_batch(2)? {
            out.push(b);
        }
        Ok(out)
    }

    #[test]
    fn columns_are_read_by_name_in_batches() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("rows.parquet");
        write(
            &path,
            &batch(vec![
                ("vector", fixed(&[&[1., 2.], &[3., 4.], &[5., 6.]], 2)),
                ("_ts", Arc::new(UInt64Array::from(vec![1u64, 2, 3]))),
                ("id", Arc::new(Int32Array::from(vec![7, 8, 9]))),
            ]),
        );
        let batches = read_all(&path, &minimal(2), None).expect("valid");
        assert_eq!(batches.len(), 2);
        assert_eq!(batches[0].columns[0], Column::Long(vec![7, 8]));
        assert_eq!(
            batches[1].columns[1],
            Column::Vector {
                dim: 2,
                values: vec![5., 6.].into()
            }
        );
    }

    /// Rows (at least one) as FixedSizeBinary of their little-endian bytes.
    fn packed(rows: &[&[f32]]) -> ArrayRef {
        let bytes = rows
            .iter()
            .map(|r| r.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>());
        Arc::new(arrow_array::FixedSizeBinaryArray::try_from_iter(bytes).expect("packed"))
    }

    /// Segment files pack each vector as little-endian float32 bytes.
    #[test]
    fn packed_vectors_are_read_as_floats_and_checked() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("segment.parquet");
        write(
            &path,
            &batch(vec![
                ("id", Arc::new(Int64Array::from(vec![1, 2, 3]))),
                ("vector", packed(&[&[1.5, -2.], &[0., 3.25], &[7., 8.]])),
            ]),
        );
        let batches = read_all(&path, &minimal(2), None).expect("valid");
        assert_eq!(
            batches[0].columns[1],
            Column::Vector {
                dim: 2,
                values: vec![1.5, -2., 0., 3.25].into()
            }
        );
        assert_eq!(
            batches[1].columns[1],
            Column::Vector {
                dim: 2,
                values: vec![7., 8.].into()
            }
        );
        let wide = dir.path().join("wide.parquet");
        write(
            &wide,
            &batch(vec![
                ("id", Arc::new(Int64Array::from(vec![1]))),
                ("vector", packed(&[&[1., 2., 3.]])),
            ]),
        );
        let e = read_all(&wide, &minimal(2), None).expect_err("12 bytes for dim 2");
        assert!(
            e.message.ends_with(
                "column \"vector\" is FixedSizeBinary(12); FLOAT_VECTOR(2) packs 8 bytes \
                 of little-endian float32 per row"
            ),
            "{}",
            e.message
        );
        let nan = dir.path().join("nan.parquet");
        write(
            &nan,
            &batch(vec![
                ("id", Arc::new(Int64Array::from(vec![1, 2]))),
                ("vector", packed(&[&[1., 2.], &[f32::NAN, 0.]])),
            ]),
        );
        let e = read_all(&nan, &minimal(2), None).expect_err("NaN");
        assert_eq!(
            e.message,
            format!(
                "{} row 1: field \"vector\": the vector holds a NaN or infinite number",
                nan.display()
            )
        );
    }

    #[test]
    fn list_vectors_of_the_wrong_length_name_the_row() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("short.parquet");
        let mut lists = ListBuilder::new(Float32Builder::new());
        for r in [&[1f32, 2.][..], &[1., 2.], &[1., 2.], &[3.]] {
            lists.values().append_slice(r);
            lists.append(true);
        }
        write(
            &path,
            &batch(vec![
                ("id", Arc::new(Int64Array::from(vec![1, 2, 3, 4]))),
                ("vector", Arc::new(lists.finish())),
            ]),
        );
        let e = read_all(&path, &minimal(2), None).expect_err("short vector");
        assert_eq!(e.code, crate::cli::error::ExitCode::BadInput);
        assert_eq!(
            e.message,
            format!(
                "{} row 3: field \"vector\" has 1 numbers, the collection wants 2",
                path.display()
            )
        );
    }

    #[test]
    fn unknown_columns_wrong_types_and_junk_are_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let extra = dir.path().join("extra.parquet");
        write(
            &extra,
            &batch(vec![
                ("id", Arc::new(Int64Array::from(vec![1]))),
                ("vector", fixed(&[&[1., 2.]], 2)),
                ("colour", Arc::new(StringArray::from(vec!["red"]))),
            ]),
        );
        let e = read_all(&extra, &minimal(2), None).expect_err("unknown column");
        assert!(
            e.message
                .contains("column \"colour\" is not a field of collection \"docs\""),
            "{}",
            e.message
        );
        let wide = dir.path().join("wide.parquet");
        write(
            &wide,
            &batch(vec![
                ("id", Arc::new(Int64Array::from(vec![1]))),
                ("vector", fixed(&[&[1., 2., 3.]], 3)),
            ]),
        );
        let e = read_all(&wide, &minimal(2), None).expect_err("dim 3");
        assert!(
            e.message
                .ends_with("field \"vector\" has 3 numbers, the collection wants 2"),
            "{}",
            e.message
        );
        let typed = dir.path().join("typed.parquet");
        write(
            &typed,
            &batch(vec![
                ("id", Arc::new(Int64Array::from(vec![1]))),
                ("vector", fixed(&[&[1., 2.]], 2)),
                ("title", Arc::new(StringArray::from(vec!["a"]))),
                ("year", Arc::new(Int64Array::from(vec![1 << 20]))),
            ]),
        );
        let e = read_all(&typed, &schema(2), None).expect_err("year too big");
        assert_eq!(
            e.message,
            format!(
                "{} row 0: field \"year\": 1048576 does not fit INT16",
                typed.display()
            )
        );
        let junk = dir.path().join("junk.parquet");
        std::fs::write(&junk, b"not parquet at all").expect("write");
        let e = read_all(&junk, &minimal(2), None).expect_err("junk");
        assert!(
            e.message.contains("is not a readable Parquet file"),
            "{}",
            e.message
        );
    }
}
