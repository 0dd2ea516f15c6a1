//! The Parquet layout of segment files: encoding [`RowBatch`]es and delete records
//! to bytes and back. Pure and synchronous; the store runs it on blocking threads.
//!
//! Insert log: one column per schema field, in schema order, named after the field,
//! then [`TS_COLUMN`]. Delete log: [`PK_COLUMN`] then [`TS_COLUMN`]. Every column is
//! non-nullable:
//!
//! | field type   | Arrow type                                         |
//! |--------------|----------------------------------------------------|
//! | BOOL         | Boolean                                            |
//! | INT8/16/32   | Int8 / Int16 / Int32                               |
//! | INT64        | Int64                                              |
//! | FLOAT/DOUBLE | Float32 / Float64                                  |
//! | VARCHAR      | Utf8                                               |
//! | FLOAT_VECTOR | FixedSizeBinary(dim * 4): the row's dim float32s,   |
//! |              | little-endian, one after the other (Milvus's layout)|
//! | `_ts`        | UInt64 (Parquet INT64 annotated UINT_64): the TSO   |
//! |              | timestamp of the row's insert or of the delete     |
//!
//! zstd compression, except for vectors (uncompressed: embeddings do not
//! compress); row groups of at most [`ROW_GROUP_ROWS`] rows or
//! [`ROW_GROUP_BYTES`] bytes; dictionary encoding only for VARCHAR columns; no
//! statistics for the vector column. The footer's key-value metadata names the
//! kind of file, the format version, the collection, its schema and how to read
//! the vector column (see [`META_KIND`] and friends), for people opening a file
//! with other tools.
//!
//! Format versions: 1 stored vectors as `FixedSizeList<Float32>(dim)`, whose
//! Parquet form carries a repetition and a definition level per float (the
//! encoder spent half its time on them); 2 stores each vector as one
//! fixed-size binary value. Readers take both; exports (`milvus-like export`)
//! keep the list layout, which every tool reads as floats.

use std::sync::Arc;

use arrow_array::{
    Array, ArrayRef, BooleanArray, FixedSizeBinaryArray, FixedSizeListArray, Float32Array,
    Float64Array, Int8Array, Int16Array, Int32Array, Int64Array, RecordBatch, StringArray,
    UInt64Array,
};
use arrow_buffer::Buffer;
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use bytes::Bytes;
use milvus_like_api::schema::{CollectionSchema, FieldType};
use milvus_like_api::vectors::Floats;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::arrow_writer::{ArrowColumnChunk, ArrowRowGroupWriterFactory, compute_leaves};
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::column::writer::ColumnCloseResult;
use parquet::errors::ParquetError;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::{ColumnDescPtr, ColumnPath, SchemaDescriptor};

use super::vector_pages::VectorChunk;
use crate::columns::{Column, RowBatch};
use crate::keys::{Keys, KeysRef};

/// The per-row timestamp column of both kinds of file. Field names may not take it.
pub const TS_COLUMN: &str = "_ts";
/// The primary key column of a delete log.
pub const PK_COLUMN: &str = "pk";
/// Most rows in one row group.
pub const ROW_GROUP_ROWS: usize = 64 * 1024;
/// Largest (estimated, encoded) row group.
pub const ROW_GROUP_BYTES: usize = 16 << 20;
/// Rows handed to the Parquet writer per call.
const WRITE_SLICE_ROWS: usize = 4096;
/// Rows per decoded batch when reading.
const READ_BATCH_ROWS: usize = 8192;

/// Key-value metadata keys of the Parquet footer.
pub const META_KIND: &str = "milvus_like.kind";
pub const META_FORMAT_VERSION: &str = "milvus_like.format_version";
pub const META_COLLECTION: &str = "milvus_like.collection";
pub const META_SCHEMA: &str = "milvus_like.schema";
/// How to read the vector column, e.g. `{"field":"vec","dim":128,"type":"float32",
/// "byte_order":"little"}`.
pub const META_VECTOR_ENCODING: &str = "milvus_like.vector_encoding";
/// The version of the file layout this build writes.
pub const FORMAT_VERSION: u32 = 2;

/// How a FLOAT_VECTOR column is laid out in Arrow (and so in Parquet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VectorLayout {
    /// `FixedSizeBinary(dim * 4)`: one value per vector, its floats little-endian.
    /// Insert logs from format version 2 on.
    Packed,
    /// `FixedSizeList<Float32>(dim)`: insert logs of format version 1, and exports.
    List,
}

/// Why bytes could not be encoded or decoded; the caller adds the path.
#[derive(Debug)]
pub(super) enum FormatError {
    /// The rows handed to the writer do not fit the schema (caller's bug or junk).
    InvalidInput(String),
    /// The file is not readable Parquet, or holds values we never write.
    Corrupt(String),
    /// A readable file whose columns are not those of the schema.
    SchemaMismatch(String),
}

impl FormatError {
    /// The reason alone, for callers that add no path.
    pub(super) fn into_message(self) -> String {
        match self {
            Self::InvalidInput(m) | Self::Corrupt(m) | Self::SchemaMismatch(m) => m,
        }
    }
}

type FormatResult<T> = Result<T, FormatError>;

/// The Arrow type of a field.
fn arrow_type(ty: FieldType, layout: VectorLayout) -> DataType {
    match ty {
        FieldType::Bool => DataType::Boolean,
        FieldType::Int8 => DataType::Int8,
        FieldType::Int16 => DataType::Int16,
        FieldType::Int32 => DataType::Int32,
        FieldType::Int64 => DataType::Int64,
        FieldType::Float => DataType::Float32,
        FieldType::Double => DataType::Float64,
        FieldType::VarChar { .. } | FieldType::Json => DataType::Utf8,
        FieldType::FloatVector { dim } => match layout {
            VectorLayout::Packed => DataType::FixedSizeBinary(vector_size(dim).saturating_mul(4)),
            VectorLayout::List => DataType::FixedSizeList(vector_item(), vector_size(dim)),
        },
    }
}

/// The item field of a vector column: non-nullable Float32 named "item".
fn vector_item() -> Arc<Field> {
    Arc::new(Field::new_list_field(DataType::Float32, false))
}

/// Validated schemas keep dim <= MAX_DIM (32768), far below i32::MAX.
fn vector_size(dim: u32) -> i32 {
    i32::try_from(dim).unwrap_or(i32::MAX)
}

/// The Arrow schema of an insert log of `schema`, vectors laid out as `layout`.
pub fn insert_log_schema(schema: &CollectionSchema, layout: VectorLayout) -> SchemaRef {
    let mut fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| Field::new(&f.name, arrow_type(f.ty, layout), false))
        .collect();
    fields.push(Field::new(TS_COLUMN, DataType::UInt64, false));
    Arc::new(Schema::new(fields))
}

/// The Arrow schema of a delete log: the primary key (Int64, or Utf8 for
/// VARCHAR keys) and the delete's timestamp.
pub fn delete_log_schema(varchar: bool) -> SchemaRef {
    let key = if varchar {
        DataType::Utf8
    } else {
        DataType::Int64
    };
    Arc::new(Schema::new(vec![
        Field::new(PK_COLUMN, key, false),
        Field::new(TS_COLUMN, DataType::UInt64, false),
    ]))
}

/// `id:INT64:pk,vec:FLOAT_VECTOR(128),title:VARCHAR(200)`: the schema in one line.
pub fn schema_summary(schema: &CollectionSchema) -> String {
    schema
        .fields()
        .iter()
        .map(|f| {
            let ty = match f.ty {
                FieldType::VarChar { max_length } => format!("VARCHAR({max_length})"),
                FieldType::FloatVector { dim } => format!("FLOAT_VECTOR({dim})"),
                other => other.name().to_owned(),
            };
            let pk = if f.is_primary_key { ":pk" } else { "" };
            format!("{}:{ty}{pk}", f.name)
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The footer entry that tells other tools how to read `schema`'s vector column.
fn vector_encoding(schema: &CollectionSchema) -> KeyValue {
    let (field, dim) = schema.vector_field();
    KeyValue::new(
        META_VECTOR_ENCODING.into(),
        format!(
            "{{\"field\":{:?},\"dim\":{dim},\"type\":\"float32\",\"byte_order\":\"little\"}}",
            field.name
        ),
    )
}

/// The writer's settings: `metadata` in the footer, and per-column settings for
/// `schema`'s columns with vectors laid out as `layout`.
pub(crate) fn writer_properties(
    metadata: Vec<KeyValue>,
    schema: Option<&CollectionSchema>,
    layout: VectorLayout,
) -> WriterProperties {
    let mut props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_max_row_group_bytes(Some(ROW_GROUP_BYTES))
        .set_dictionary_enabled(false)
        .set_created_by(format!("milvus-like {}", env!("CARGO_PKG_VERSION")))
        .set_key_value_metadata(Some(metadata));
    for f in schema.map(CollectionSchema::fields).unwrap_or_default() {
        match f.ty {
            FieldType::VarChar { .. } => {
                props =
                    props.set_column_dictionary_enabled(ColumnPath::from(f.name.as_str()), true);
            }
            FieldType::FloatVector { .. } => {
                // Min/max of vectors' bytes or items say nothing useful, and
                // embeddings do not compress (zstd saved 13% at 4x the write time).
                let leaf = match layout {
                    VectorLayout::Packed => ColumnPath::from(f.name.as_str()),
                    VectorLayout::List => {
                        ColumnPath::new(vec![f.name.clone(), "list".into(), "item".into()])
                    }
                };
                props = props
                    .set_column_statistics_enabled(leaf.clone(), EnabledStatistics::None)
                    .set_column_compression(leaf, Compression::UNCOMPRESSED);
            }
            _ => {}
        }
    }
    props.build()
}

/// Threads encoding the row groups of one file, besides the thread writing them.
/// One: the encoding of a row group overlaps the writing of the one before.
/// Two encoders made an isolated flush faster still (52 against 92 ms of
/// encoding for 200,000 rows), but a data node then consumed 541k to 583k rows/s
/// instead of 741k to 829k: the second encoder took the core that decodes.
const ENCODERS: usize = 1;
/// Memory an encoder holds at most besides the rows it encodes: the row groups
/// being encoded and the one being written.
pub const ENCODE_MEMORY_BYTES: usize = (ENCODERS + 1) * ROW_GROUP_BYTES;

/// How many threads encode a file: `wanted`, or fewer when the machine has fewer
/// cores or the file fewer row groups.
fn encoders(row_groups: usize, wanted: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    wanted.min(cores).min(row_groups).max(1)
}

/// `batches` cut into row groups of at most [`ROW_GROUP_ROWS`] rows and about
/// [`ROW_GROUP_BYTES`] bytes (judged by the rows' size in memory, which is about
/// their encoded size: vectors are stored as they are).
fn row_groups(batches: &[RecordBatch]) -> Vec<Vec<RecordBatch>> {
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let bytes: usize = batches.iter().map(RecordBatch::get_array_memory_size).sum();
    let row_bytes = (bytes / rows.max(1)).max(1);
    let per_group = ROW_GROUP_ROWS.min(ROW_GROUP_BYTES / row_bytes).max(1);
    let mut groups = Vec::new();
    let mut group: Vec<RecordBatch> = Vec::new();
    let mut in_group = 0;
    for batch in batches {
        let mut offset = 0;
        while offset < batch.num_rows() {
            let n = (per_group - in_group).min(batch.num_rows() - offset);
            group.push(batch.slice(offset, n));
            in_group += n;
            offset += n;
            if in_group == per_group {
                groups.push(std::mem::take(&mut group));
                in_group = 0;
            }
        }
    }
    if !group.is_empty() {
        groups.push(group);
    }
    groups
}

/// How a file's Arrow fields map to its Parquet leaf columns, and which fields
/// skip the column writer: a required `FixedSizeBinary` field (a packed vector
/// column) whose settings ask for what a cut page is (PLAIN, uncompressed, no
/// statistics, no dictionary or bloom filter, an offset index) is written as pages cut from its buffer
/// ([`VectorChunk`]), of the column's page size.
struct Leaves {
    /// The field each leaf column belongs to.
    field_of: Vec<usize>,
    /// Per field, its leaf's descriptor and page size when its pages are cut
    /// from its buffer.
    direct: Vec<Option<(ColumnDescPtr, usize)>>,
}

impl Leaves {
    fn new(schema: &Schema, parquet: &SchemaDescriptor, props: &WriterProperties) -> Self {
        let field_of: Vec<usize> = (0..parquet.num_columns())
            .map(|leaf| parquet.get_column_root_idx(leaf))
            .collect();
        let direct = schema
            .fields()
            .iter()
            .enumerate()
            .map(|(field, f)| {
                let mut leaves = (0..field_of.len()).filter(|leaf| field_of[*leaf] == field);
                match (f.data_type(), leaves.next(), leaves.next()) {
                    (DataType::FixedSizeBinary(_), Some(leaf), None) => {
                        let column = parquet.column(leaf);
                        let path = column.path();
                        let cut = column.max_def_level() == 0
                            && column.max_rep_level() == 0
                            && props.compression(path) == Compression::UNCOMPRESSED
                            && props.statistics_enabled(path) == EnabledStatistics::None
                            && !props.dictionary_enabled(path)
                            && matches!(props.encoding(path), None | Some(Encoding::PLAIN))
                            && props.bloom_filter_properties(path).is_none()
                            && !props.offset_index_disabled();
                        let page_bytes = props.column_data_page_size_limit(path);
                        cut.then_some((column, page_bytes))
                    }
                    _ => None,
                }
            })
            .collect();
        Self { field_of, direct }
    }
}

/// One encoded column chunk of a row group, ready to splice into the file.
enum Chunk {
    /// Encoded by Parquet's column writer.
    Written(ArrowColumnChunk),
    /// Pages cut from a vector column's buffer.
    Vector(VectorChunk, ColumnCloseResult),
}

/// Encodes one row group's column chunks: vector columns as pages of their
/// buffers, the others with fresh column writers.
fn encode_row_group(
    factory: &ArrowRowGroupWriterFactory,
    schema: &Schema,
    leaves: &Leaves,
    index: usize,
    batches: &[RecordBatch],
) -> Result<Vec<Chunk>, ParquetError> {
    let mut writers = factory.create_column_writers(index)?;
    for batch in batches {
        // The writer computes definition levels (and, for a list layout,
        // repetition levels per vector component) for a whole write call:
        // slices keep them small and cached.
        let mut offset = 0;
        while offset < batch.num_rows() {
            let rows = WRITE_SLICE_ROWS.min(batch.num_rows() - offset);
            let slice = batch.slice(offset, rows);
            let mut next = 0;
            for (field, (f, column)) in schema.fields().iter().zip(slice.columns()).enumerate() {
                if leaves.direct[field].is_some() {
                    next += 1;
                    continue;
                }
                for leaf in compute_leaves(f, column)? {
                    writers
                        .get_mut(next)
                        .ok_or_else(|| {
                            ParquetError::General("more leaves than column writers".into())
                        })?
                        .write(&leaf)?;
                    next += 1;
                }
            }
            offset += rows;
        }
    }
    writers
        .into_iter()
        .enumerate()
        .map(|(leaf, writer)| {
            let field = leaves.field_of[leaf];
            let Some((column, page_bytes)) = &leaves.direct[field] else {
                return writer.close().map(Chunk::Written);
            };
            let arrays = batches
                .iter()
                .map(|batch| {
                    batch
                        .column(field)
                        .as_any()
                        .downcast_ref::<FixedSizeBinaryArray>()
                        .ok_or_else(|| {
                            ParquetError::General(format!(
                                "column {field} is not fixed-size binary"
                            ))
                        })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let (chunk, close) = VectorChunk::encode(column.clone(), *page_bytes, &arrays)?;
            Ok(Chunk::Vector(chunk, close))
        })
        .collect()
}

/// Encodes `batches` (all of `schema`) as one file into `sink`, with
/// [`ENCODERS`] threads.
fn encode<W: std::io::Write + Send>(
    sink: W,
    schema: SchemaRef,
    batches: &[RecordBatch],
    props: WriterProperties,
) -> FormatResult<W> {
    encode_with(sink, schema, batches, props, ENCODERS)
}

/// Bytes gathered before a write to the sink. Parquet's writer hands a spliced
/// column chunk on in 8 KiB pieces (`std::io::copy`); a write of 8 KiB costs a
/// file about twice what a write of 1 MiB does per byte (dd on this machine).
const SINK_BUFFER_BYTES: usize = 1 << 20;

/// Encodes `batches` (all of `schema`) as one file into `sink`. Row groups are
/// encoded by up to `encoders` threads (group i by thread i % n) while the
/// calling thread writes the finished ones to `sink` in order: at most n + 1
/// row groups are in memory at once. The bytes do not depend on `encoders`.
pub(super) fn encode_with<W: std::io::Write + Send>(
    sink: W,
    schema: SchemaRef,
    batches: &[RecordBatch],
    props: WriterProperties,
    encoders: usize,
) -> FormatResult<W> {
    let fail = |e: ParquetError| FormatError::InvalidInput(format!("encode Parquet: {e}"));
    let sink = std::io::BufWriter::with_capacity(SINK_BUFFER_BYTES, sink);
    let writer = ArrowWriter::try_new(sink, schema.clone(), Some(props)).map_err(fail)?;
    let (mut file, factory) = writer.into_serialized_writer().map_err(fail)?;
    let leaves = Leaves::new(&schema, file.schema_descr(), file.properties());
    let groups = row_groups(batches);
    let threads = self::encoders(groups.len(), encoders);
    std::thread::scope(|scope| -> FormatResult<()> {
        let mut finished = Vec::with_capacity(threads);
        for first in 0..threads {
            // A rendezvous: an encoder hands over a row group only when the
            // writer wants it, so none runs more than one row group ahead.
            let (done, chunks) = std::sync::mpsc::sync_channel(0);
            let (factory, schema, groups, leaves) = (&factory, &schema, &groups, &leaves);
            scope.spawn(move || {
                for index in (first..groups.len()).step_by(threads) {
                    let encoded = encode_row_group(factory, schema, leaves, index, &groups[index]);
                    let failed = encoded.is_err();
                    if done.send(encoded).is_err() || failed {
                        return;
                    }
                }
            });
            finished.push(chunks);
        }
        for index in 0..groups.len() {
            let chunks = finished[index % threads]
                .recv()
                .map_err(|_| FormatError::InvalidInput("a row group encoder stopped".into()))?
                .map_err(fail)?;
            let mut row_group = file.next_row_group().map_err(fail)?;
            for chunk in chunks {
                match chunk {
                    Chunk::Written(chunk) => chunk.append_to_row_group(&mut row_group),
                    Chunk::Vector(chunk, close) => row_group.append_column(&chunk, close),
                }
                .map_err(fail)?;
            }
            row_group.close().map_err(fail)?;
        }
        Ok(())
    })?;
    file.into_inner()
        .map_err(fail)?
        .into_inner()
        .map_err(|e| fail(e.into_error().into()))
}

/// Builds the Arrow record batch of an insert log, checking `rows` against the schema.
/// The columns' memory moves into the Arrow arrays without a copy (only INT8 and
/// INT16, held as `i32`, and VARCHAR are converted; and vectors on a big-endian
/// machine).
pub(super) fn insert_log_batch(
    schema: &CollectionSchema,
    rows: RowBatch,
    timestamps: Vec<u64>,
    layout: VectorLayout,
) -> FormatResult<RecordBatch> {
    let invalid = |m: String| FormatError::InvalidInput(m);
    let fields = schema.fields();
    if let Some(f) = fields.iter().find(|f| f.name == TS_COLUMN) {
        return Err(invalid(format!(
            "field {:?} has the name of the timestamp column; rename the field",
            f.name
        )));
    }
    if rows.columns.len() != fields.len() {
        return Err(invalid(format!(
            "the batch has {} columns but collection {:?} has {} fields",
            rows.columns.len(),
            schema.name,
            fields.len()
        )));
    }
    if timestamps.len() != rows.num_rows {
        return Err(invalid(format!(
            "{} timestamps for {} rows",
            timestamps.len(),
            rows.num_rows
        )));
    }
    let num_rows = rows.num_rows;
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(fields.len() + 1);
    for (f, column) in fields.iter().zip(rows.columns) {
        if column.len() != num_rows {
            return Err(invalid(format!(
                "field {:?} has {} values but the batch has {num_rows} rows",
                f.name,
                column.len(),
            )));
        }
        let narrow = |v: &[i32], lo: i32, hi: i32| match v.iter().position(|x| *x < lo || *x > hi) {
            Some(row) => Err(invalid(format!(
                "field {:?} row {row}: {} does not fit {}",
                f.name,
                v[row],
                f.ty.name()
            ))),
            None => Ok(()),
        };
        let array: ArrayRef = match (f.ty, column) {
            (FieldType::Bool, Column::Bool(v)) => Arc::new(BooleanArray::from(v)),
            (FieldType::Int8, Column::Int(v)) => {
                narrow(&v, i8::MIN.into(), i8::MAX.into())?;
                Arc::new(Int8Array::from_iter_values(v.iter().map(|x| *x as i8)))
            }
            (FieldType::Int16, Column::Int(v)) => {
                narrow(&v, i16::MIN.into(), i16::MAX.into())?;
                Arc::new(Int16Array::from_iter_values(v.iter().map(|x| *x as i16)))
            }
            (FieldType::Int32, Column::Int(v)) => Arc::new(Int32Array::from(v)),
            (FieldType::Int64, Column::Long(v)) => Arc::new(Int64Array::from(v)),
            (FieldType::Float, Column::Float(v)) => Arc::new(Float32Array::from(v)),
            (FieldType::Double, Column::Double(v)) => Arc::new(Float64Array::from(v)),
            (FieldType::VarChar { .. } | FieldType::Json, Column::Str(v)) => {
                Arc::new(StringArray::from_iter_values(v))
            }
            (FieldType::FloatVector { dim }, Column::Vector { dim: got, values }) => {
                if got != dim || values.len() != num_rows * dim as usize {
                    return Err(invalid(format!(
                        "field {:?} is FLOAT_VECTOR({dim}) but the batch holds {} floats of \
                         dimension {got} for {num_rows} rows",
                        f.name,
                        values.len(),
                    )));
                }
                let built: Result<ArrayRef, _> = match layout {
                    VectorLayout::Packed => FixedSizeBinaryArray::try_new(
                        vector_size(dim).saturating_mul(4),
                        Buffer::from(values.into_le_bytes()),
                        None,
                    )
                    .map(|a| Arc::new(a) as ArrayRef),
                    VectorLayout::List => FixedSizeListArray::try_new(
                        vector_item(),
                        vector_size(dim),
                        Arc::new(Float32Array::from(values.to_vec())),
                        None,
                    )
                    .map(|a| Arc::new(a) as ArrayRef),
                };
                built.map_err(|e| invalid(format!("field {:?}: {e}", f.name)))?
            }
            (ty, other) => {
                return Err(invalid(format!(
                    "field {:?} is {} but the batch holds a {} column",
                    f.name,
                    ty.name(),
                    column_kind(&other)
                )));
            }
        };
        arrays.push(array);
    }
    arrays.push(Arc::new(UInt64Array::from(timestamps)));
    RecordBatch::try_new(insert_log_schema(schema, layout), arrays)
        .map_err(|e| invalid(e.to_string()))
}

/// `rows` as an Arrow record batch of the schema's fields alone (an insert log
/// without its timestamp column, vectors as lists of floats), checked as
/// [`insert_log_batch`] checks them: what `milvus-like export` writes, and what
/// `insert --file` reads back.
pub fn rows_record_batch(schema: &CollectionSchema, rows: RowBatch) -> Result<RecordBatch, String> {
    let n = rows.num_rows;
    let batch = insert_log_batch(schema, rows, vec![0; n], VectorLayout::List)
        .map_err(FormatError::into_message)?;
    let fields: Vec<usize> = (0..schema.fields().len()).collect();
    batch.project(&fields).map_err(|e| e.to_string())
}

fn column_kind(c: &Column) -> &'static str {
    match c {
        Column::Bool(_) => "BOOL",
        Column::Int(_) => "32-bit integer",
        Column::Long(_) => "INT64",
        Column::Float(_) => "FLOAT",
        Column::Double(_) => "DOUBLE",
        Column::Str(_) => "VARCHAR",
        Column::Vector { .. } => "FLOAT_VECTOR",
    }
}

/// Encodes batches built by [`insert_log_batch`] with `layout` as one insert log
/// file into `sink`. Packed is the current format; List writes what format
/// version 1 wrote (for tests of old files).
pub(super) fn encode_insert_log<W: std::io::Write + Send>(
    schema: &CollectionSchema,
    batches: &[RecordBatch],
    sink: W,
    layout: VectorLayout,
) -> FormatResult<()> {
    let mut metadata = vec![
        KeyValue::new(META_KIND.into(), "insert_log".to_owned()),
        KeyValue::new(
            META_FORMAT_VERSION.into(),
            match layout {
                VectorLayout::Packed => FORMAT_VERSION,
                VectorLayout::List => 1,
            }
            .to_string(),
        ),
        KeyValue::new(META_COLLECTION.into(), schema.name.clone()),
        KeyValue::new(META_SCHEMA.into(), schema_summary(schema)),
    ];
    if layout == VectorLayout::Packed {
        metadata.push(vector_encoding(schema));
    }
    encode(
        sink,
        insert_log_schema(schema, layout),
        batches,
        writer_properties(metadata, Some(schema), layout),
    )
    .map(drop)
}

/// Encodes (primary key, timestamp) records as a delete log file.
pub(super) fn encode_delete_log(
    primary_keys: KeysRef<'_>,
    timestamps: &[u64],
) -> FormatResult<Vec<u8>> {
    if primary_keys.len() != timestamps.len() {
        return Err(FormatError::InvalidInput(format!(
            "{} primary keys but {} timestamps",
            primary_keys.len(),
            timestamps.len()
        )));
    }
    let (schema, keys): (_, ArrayRef) = match primary_keys {
        KeysRef::Int(k) => (
            delete_log_schema(false),
            Arc::new(Int64Array::from(k.to_vec())),
        ),
        KeysRef::Str(k) => (
            delete_log_schema(true),
            Arc::new(StringArray::from_iter_values(k)),
        ),
    };
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![keys, Arc::new(UInt64Array::from(timestamps.to_vec()))],
    )
    .map_err(|e| FormatError::InvalidInput(e.to_string()))?;
    let metadata = vec![
        KeyValue::new(META_KIND.into(), "delete_log".to_owned()),
        KeyValue::new(META_FORMAT_VERSION.into(), FORMAT_VERSION.to_string()),
    ];
    encode(
        Vec::new(),
        schema,
        &[batch],
        writer_properties(metadata, None, VectorLayout::Packed),
    )
}

/// Whether a file's column type is one we write for `expected`. A packed vector
/// column may also be format version 1's list of floats of the same dimension,
/// compared by size and item type only: the item's name and nullability may
/// differ in files written by other tools.
fn same_type(found: &DataType, expected: &DataType) -> bool {
    match (found, expected) {
        (DataType::FixedSizeList(a, n), DataType::FixedSizeBinary(bytes)) => {
            n.checked_mul(4) == Some(*bytes) && a.data_type() == &DataType::Float32
        }
        _ => found == expected,
    }
}

/// Refuses files of a format version newer than this build reads (a file
/// without one, from another tool, is read by its columns).
fn check_version(metadata: &parquet::file::metadata::FileMetaData) -> FormatResult<()> {
    let version = metadata
        .key_value_metadata()
        .and_then(|kv| kv.iter().find(|kv| kv.key == META_FORMAT_VERSION))
        .and_then(|kv| kv.value.as_deref());
    let Some(version) = version else {
        return Ok(());
    };
    match version.parse::<u32>() {
        Ok(v) if v <= FORMAT_VERSION => Ok(()),
        Ok(v) => Err(FormatError::SchemaMismatch(format!(
            "the file has format version {v}, written by a newer milvus-like; this one \
             reads versions 1 to {FORMAT_VERSION}"
        ))),
        Err(_) => Err(FormatError::Corrupt(format!(
            "the file's {META_FORMAT_VERSION} is {version:?}, not a number"
        ))),
    }
}

/// Opens `bytes` as Parquet, checks its columns against `expected` and returns
/// its record batches.
fn decode(bytes: Bytes, expected: &Schema) -> FormatResult<Vec<RecordBatch>> {
    let corrupt = |e: ParquetError| FormatError::Corrupt(e.to_string());
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .map_err(corrupt)?
        .with_batch_size(READ_BATCH_ROWS);
    check_version(builder.metadata().file_metadata())?;
    let found = builder.schema().clone();
    if found.fields().len() != expected.fields().len() {
        let names = |s: &Schema| {
            s.fields()
                .iter()
                .map(|f| f.name().as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        return Err(FormatError::SchemaMismatch(format!(
            "the file has columns [{}], expected [{}]",
            names(&found),
            names(expected)
        )));
    }
    for (i, (f, e)) in found.fields().iter().zip(expected.fields()).enumerate() {
        if f.name() != e.name() {
            return Err(FormatError::SchemaMismatch(format!(
                "column {i} is {:?}, expected {:?}",
                f.name(),
                e.name()
            )));
        }
        if !same_type(f.data_type(), e.data_type()) {
            return Err(FormatError::SchemaMismatch(format!(
                "column {:?} is {}, expected {}",
                f.name(),
                f.data_type(),
                e.data_type()
            )));
        }
    }
    let reader = builder.build().map_err(corrupt)?;
    reader
        .map(|batch| batch.map_err(|e| FormatError::Corrupt(e.to_string())))
        .collect()
}

/// Downcasts a decoded column, refusing nulls (we never write any).
fn values<'a, A: Array + 'static>(array: &'a ArrayRef, name: &str) -> FormatResult<&'a A> {
    if array.null_count() > 0 {
        return Err(FormatError::Corrupt(format!(
            "column {name:?} holds {} nulls",
            array.null_count()
        )));
    }
    array.as_any().downcast_ref::<A>().ok_or_else(|| {
        FormatError::Corrupt(format!(
            "column {name:?} did not decode as {}",
            array.data_type()
        ))
    })
}

/// Decodes one column of an insert log into a [`Column`] of the field's type.
fn decode_column(ty: FieldType, array: &ArrayRef, name: &str) -> FormatResult<Column> {
    Ok(match ty {
        FieldType::Bool => Column::Bool(
            values::<BooleanArray>(array, name)?
                .iter()
                .flatten()
                .collect(),
        ),
        FieldType::Int8 => Column::Int(
            values::<Int8Array>(array, name)?
                .values()
                .iter()
                .map(|v| i32::from(*v))
                .collect(),
        ),
        FieldType::Int16 => Column::Int(
            values::<Int16Array>(array, name)?
                .values()
                .iter()
                .map(|v| i32::from(*v))
                .collect(),
        ),
        FieldType::Int32 => Column::Int(values::<Int32Array>(array, name)?.values().to_vec()),
        FieldType::Int64 => Column::Long(values::<Int64Array>(array, name)?.values().to_vec()),
        FieldType::Float => Column::Float(values::<Float32Array>(array, name)?.values().to_vec()),
        FieldType::Double => Column::Double(values::<Float64Array>(array, name)?.values().to_vec()),
        FieldType::VarChar { .. } | FieldType::Json => {
            let a = values::<StringArray>(array, name)?;
            Column::Str((0..a.len()).map(|i| a.value(i).to_owned()).collect())
        }
        FieldType::FloatVector { dim } => {
            let (floats, vectors) = if let DataType::FixedSizeBinary(_) = array.data_type() {
                let packed = values::<FixedSizeBinaryArray>(array, name)?;
                let bytes = Bytes::from(packed.values().clone());
                let floats = Floats::from_le_bytes(bytes)
                    .map_err(|e| FormatError::Corrupt(format!("column {name:?}: {e}")))?;
                (floats, packed.len())
            } else {
                let list = values::<FixedSizeListArray>(array, name)?;
                let items = values::<Float32Array>(list.values(), name)?;
                (Floats::from(items.values().as_ref()), list.len())
            };
            if floats.len() != vectors * dim as usize {
                return Err(FormatError::Corrupt(format!(
                    "column {name:?} holds {} floats for {vectors} vectors of dimension {dim}",
                    floats.len(),
                )));
            }
            Column::Vector {
                dim,
                values: floats,
            }
        }
    })
}

fn decode_ts(array: &ArrayRef) -> FormatResult<&[u64]> {
    Ok(values::<UInt64Array>(array, TS_COLUMN)?.values())
}

/// Decodes an insert log of `schema`: its rows and their timestamps.
pub(super) fn decode_insert_log(
    schema: &CollectionSchema,
    bytes: Bytes,
) -> FormatResult<(RowBatch, Vec<u64>)> {
    let batches = decode(bytes, &insert_log_schema(schema, VectorLayout::Packed))?;
    let fields = schema.fields();
    let mut rows = RowBatch::empty(schema);
    let mut timestamps = Vec::new();
    for batch in batches {
        for ((f, array), column) in fields.iter().zip(batch.columns()).zip(&mut rows.columns) {
            column
                .append(decode_column(f.ty, array, &f.name)?)
                .map_err(|e| FormatError::Corrupt(format!("column {:?}: {e}", f.name)))?;
        }
        let ts = batch
            .columns()
            .get(fields.len())
            .ok_or_else(|| FormatError::Corrupt(format!("no {TS_COLUMN} column")))?;
        timestamps.extend_from_slice(decode_ts(ts)?);
        rows.num_rows += batch.num_rows();
    }
    Ok((rows, timestamps))
}

/// Decodes a delete log: primary keys and their delete timestamps.
/// The file's key column says which kind of keys it holds.
pub(super) fn decode_delete_log(bytes: Bytes) -> FormatResult<(Keys, Vec<u64>)> {
    let batches = match decode(bytes.clone(), &delete_log_schema(false)) {
        Err(FormatError::SchemaMismatch(_)) => decode(bytes, &delete_log_schema(true)),
        decoded => decoded,
    }?;
    let mut keys = Keys::default();
    let mut timestamps = Vec::new();
    for batch in batches {
        let [pk, ts] = batch.columns() else {
            return Err(FormatError::Corrupt(
                "a delete log batch without two columns".into(),
            ));
        };
        let batch_keys = match pk.data_type() {
            DataType::Utf8 => Keys::Str(
                values::<StringArray>(pk, PK_COLUMN)?
                    .iter()
                    .map(|k| k.unwrap_or_default().to_owned())
                    .collect(),
            ),
            _ => Keys::Int(values::<Int64Array>(pk, PK_COLUMN)?.values().to_vec()),
        };
        keys.extend(batch_keys)
            .map_err(|e| FormatError::Corrupt(e.to_string()))?;
        timestamps.extend_from_slice(decode_ts(ts)?);
    }
    Ok((keys, timestamps))
}
