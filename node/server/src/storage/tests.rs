//! Segment files against the local filesystem in a temporary directory.

use milvus_like_api::proto::{self, DataType as D, DeleteLog, SegmentInfo};
use milvus_like_api::retry::Transient;
use milvus_like_api::schema::CollectionSchema;
use parquet::file::reader::{FileReader, SerializedFileReader};

use super::format::{
    FORMAT_VERSION, META_COLLECTION, META_FORMAT_VERSION, META_KIND, META_SCHEMA,
    META_VECTOR_ENCODING, ROW_GROUP_ROWS,
};
use super::*;
use crate::columns::Column;

fn field(name: &str, ty: D) -> proto::FieldSchema {
    proto::FieldSchema {
        name: name.into(),
        data_type: ty.into(),
        ..Default::default()
    }
}

/// Every field type: `id` INT64 pk, `vec` FLOAT_VECTOR(dim), then one of each scalar.
fn schema_with_dim(dim: u32) -> CollectionSchema {
    let mut id = field("id", D::Int64);
    id.is_primary_key = true;
    let mut vec = field("vec", D::FloatVector);
    vec.dim = dim;
    let mut title = field("title", D::Varchar);
    title.max_length = 64;
    CollectionSchema::try_from(proto::CollectionSchema {
        name: "books".into(),
        description: String::new(),
        fields: vec![
            id,
            vec,
            field("flag", D::Bool),
            field("tiny", D::Int8),
            field("small", D::Int16),
            field("year", D::Int32),
            field("score", D::Float),
            field("weight", D::Double),
            title,
        ],
        ..proto::CollectionSchema::default()
    })
    .expect("valid schema")
}

fn schema() -> CollectionSchema {
    schema_with_dim(128)
}

/// `n` rows with primary keys `first..first + n` and values derived from the key,
/// including the extremes of each integer type and non-ASCII strings.
fn rows(schema: &CollectionSchema, first: i64, n: usize) -> RowBatch {
    let (_, dim) = schema.vector_field();
    let keys: Vec<i64> = (first..first + n as i64).collect();
    let columns = schema
        .fields()
        .iter()
        .map(|f| match f.name.as_str() {
            "id" => Column::Long(keys.clone()),
            "vec" => Column::Vector {
                dim,
                values: keys
                    .iter()
                    .flat_map(|k| (0..dim).map(move |j| *k as f32 * 0.5 - j as f32 / 7.0))
                    .collect(),
            },
            "flag" => Column::Bool(keys.iter().map(|k| k % 3 == 0).collect()),
            "tiny" => Column::Int(
                keys.iter()
                    .map(|k| [-128, 127, 0, 5][*k as usize % 4])
                    .collect(),
            ),
            "small" => Column::Int(
                keys.iter()
                    .map(|k| [-32768, 32767, -1][*k as usize % 3])
                    .collect(),
            ),
            "year" => Column::Int(
                keys.iter()
                    .map(|k| [i32::MIN, i32::MAX, 1999][*k as usize % 3])
                    .collect(),
            ),
            "score" => Column::Float(keys.iter().map(|k| *k as f32 / 3.0).collect()),
            "weight" => Column::Double(keys.iter().map(|k| -(*k as f64) * 1e300).collect()),
            "title" => Column::Str(
                keys.iter()
                    .map(|k| match k % 3 {
                        0 => String::new(),
                        1 => format!("book {k}"),
                        _ => format!("Łódź – 東京 {k} \"quoted\""),
                    })
                    .collect(),
            ),
            other => panic!("no generator for field {other}"),
        })
        .collect();
    RowBatch {
        columns,
        num_rows: n,
    }
}

/// Rows `first..first + n` of `schema` as an Arrow batch in the current layout.
fn packed(
    schema: &CollectionSchema,
    first: i64,
    n: usize,
    timestamps: Vec<u64>,
) -> arrow_array::RecordBatch {
    format::insert_log_batch(
        schema,
        rows(schema, first, n),
        timestamps,
        VectorLayout::Packed,
    )
    .expect("batch")
}

fn local_store() -> (tempfile::TempDir, SegmentStore) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SegmentStore::open(&StorageConfig::Local {
        root: dir.path().join("segments"),
    })
    .expect("open local store");
    (dir, store)
}

/// Everything in `dir`, by name.
fn names_in(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn segment(paths: &[&str]) -> SegmentInfo {
    SegmentInfo {
        segment_id: 1,
        collection_id: 7,
        insert_log_paths: paths.iter().map(|p| (*p).to_owned()).collect(),
        ..Default::default()
    }
}

fn delete_log(path: &str) -> DeleteLog {
    DeleteLog {
        collection_id: 7,
        path: path.into(),
        ..Default::default()
    }
}

#[test]
fn paths_follow_the_layout() {
    assert_eq!(
        SegmentStore::insert_log_path(7, 8, 9, 10),
        "insert_log/7/8/9/10.parquet"
    );
    assert_eq!(
        SegmentStore::delete_log_path(7, 8, 2, 10),
        "delete_log/7/8/2/10.parquet"
    );
}

#[tokio::test]
async fn every_type_round_trips() {
    let (_dir, store) = local_store();
    let schema = schema();
    let batch = rows(&schema, 1, 300);
    let timestamps: Vec<u64> = (0..300).map(|i| 1000 + i * 3).collect();
    let path = SegmentStore::insert_log_path(7, 8, 9, 1);
    let written = store
        .write_insert_log(&path, &schema, &batch, &timestamps)
        .await
        .expect("write");
    assert!(written > 0);
    let (read, read_ts) = store.read_insert_log(&path, &schema).await.expect("read");
    assert_eq!(read, batch);
    assert_eq!(read_ts, timestamps);
    assert!(
        store.describe().starts_with("local:"),
        "{}",
        store.describe()
    );
}

#[tokio::test]
async fn an_empty_batch_round_trips() {
    let (_dir, store) = local_store();
    let schema = schema_with_dim(4);
    let empty = RowBatch::empty(&schema);
    store
        .write_insert_log("insert_log/empty.parquet", &schema, &empty, &[])
        .await
        .expect("write");
    let (read, ts) = store
        .read_insert_log("insert_log/empty.parquet", &schema)
        .await
        .expect("read");
    assert_eq!(read, empty);
    assert!(ts.is_empty());
}

#[tokio::test]
async fn large_files_are_split_into_row_groups() {
    let (dir, store) = local_store();
    let schema = schema_with_dim(2);
    let n = 2 * ROW_GROUP_ROWS + 1000;
    let batch = rows(&schema, 0, n);
    let timestamps = vec![42; n];
    let path = "insert_log/big.parquet";
    store
        .write_insert_log(path, &schema, &batch, &timestamps)
        .await
        .expect("write");
    let file = std::fs::File::open(dir.path().join("segments").join(path)).expect("open");
    let reader = SerializedFileReader::new(file).expect("parquet");
    assert_eq!(reader.metadata().num_row_groups(), 3);
    let (read, _) = store.read_insert_log(path, &schema).await.expect("read");
    assert_eq!(read, batch);
}

/// Batches cut across row groups (slices starting inside their parent's
/// buffer) give each row group's vector chunk exactly its rows.
#[test]
fn vector_pages_of_several_row_groups_hold_the_rows_of_each() {
    // 16 KiB rows: about a thousand to a row group, 64 to a page; batches cut
    // across row groups are slices that start inside their parent's buffer.
    let schema = schema_with_dim(4096);
    let sizes = [700, 1, 1799, 3];
    let mut first = 0;
    let mut batches = Vec::new();
    for n in sizes {
        batches.push(packed(
            &schema,
            first,
            n,
            (0..n as u64).map(|i| first as u64 + i + 1).collect(),
        ));
        first += n as i64;
    }
    let mut file = Vec::new();
    format::encode_insert_log(&schema, &batches, &mut file, VectorLayout::Packed).expect("encode");
    let file = bytes::Bytes::from(file);
    let meta =
        parquet::file::serialized_reader::SerializedFileReader::new(file.clone()).expect("reader");
    use parquet::file::reader::FileReader as _;
    assert!(meta.metadata().num_row_groups() > 1, "several row groups");
    let (read, timestamps) = format::decode_insert_log(&schema, file).expect("decode");
    let total: usize = sizes.iter().sum();
    assert_eq!(read.num_rows, total);
    assert_eq!(read, rows(&schema, 0, total));
    assert_eq!(timestamps, (1..=total as u64).collect::<Vec<_>>());
}

/// A vector column is written as pages cut from the Arrow buffers of several
/// batches: its offset index lets a reader start in the middle of the chunk, and
/// every page holds whole rows.
#[test]
fn vector_pages_are_whole_rows_and_indexed() {
    use arrow_array::{Array, FixedSizeBinaryArray};
    use parquet::arrow::arrow_reader::{
        ArrowReaderOptions, ParquetRecordBatchReaderBuilder, RowSelection, RowSelector,
    };
    use parquet::file::metadata::PageIndexPolicy;

    let schema = schema_with_dim(100);
    let row_bytes = 100 * 4;
    let sizes = [3000, 1, 5000];
    let mut first = 0;
    let batches: Vec<_> = sizes
        .iter()
        .map(|n| {
            let batch = packed(&schema, first, *n, vec![9; *n]);
            first += *n as i64;
            batch
        })
        .collect();
    let total: usize = sizes.iter().sum();
    let mut file = Vec::new();
    format::encode_insert_log(&schema, &batches, &mut file, VectorLayout::Packed).expect("encode");
    let file = bytes::Bytes::from(file);

    let options = ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Required);
    let builder = ParquetRecordBatchReaderBuilder::try_new_with_options(file.clone(), options)
        .expect("reader");
    let meta = builder.metadata().clone();
    assert_eq!(meta.num_row_groups(), 1);
    let vec_leaf = meta
        .file_metadata()
        .schema_descr()
        .columns()
        .iter()
        .position(|c| c.path().string() == "vec")
        .expect("vec leaf");
    let index = meta.page_index_for_row_group(0);
    let pages = &index
        .offset_index(vec_leaf)
        .expect("offset index")
        .page_locations;
    // Pages of 1 MiB of whole rows, each taking rows from as many batches as it
    // needs (the 1-row batch does not make a page of its own).
    let per_page = (1 << 20) / row_bytes;
    let expected: Vec<usize> = (0..total.div_ceil(per_page))
        .map(|p| (total - p * per_page).min(per_page))
        .collect();
    assert_eq!(pages.len(), expected.len());
    let mut first_row = 0;
    for (page, rows) in pages.iter().zip(&expected) {
        assert_eq!(page.first_row_index, first_row as i64);
        first_row += rows;
    }
    let chunk = meta.row_group(0).column(vec_leaf);
    assert_eq!(pages[0].offset, chunk.data_page_offset());
    assert_eq!(
        pages
            .iter()
            .map(|p| i64::from(p.compressed_page_size))
            .sum::<i64>(),
        chunk.compressed_size()
    );

    // Rows 4000..4010 (on the third page) through the page index alone.
    let selection = RowSelection::from(vec![
        RowSelector::skip(4000),
        RowSelector::select(10),
        RowSelector::skip(total - 4010),
    ]);
    let read: Vec<_> = builder
        .with_row_selection(selection)
        .build()
        .expect("reader")
        .collect::<Result<_, _>>()
        .expect("rows");
    let vectors: Vec<f32> = read
        .iter()
        .flat_map(|b| {
            let column = b.column_by_name("vec").expect("vec");
            let values = column
                .as_any()
                .downcast_ref::<FixedSizeBinaryArray>()
                .expect("packed");
            (0..values.len())
                .flat_map(|i| {
                    values
                        .value(i)
                        .chunks_exact(4)
                        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                        .collect::<Vec<_>>()
                })
                .collect::<Vec<_>>()
        })
        .collect();
    let Column::Vector { values, .. } = &rows(&schema, 4000, 10).columns[1] else {
        panic!("the second field is the vector");
    };
    assert_eq!(vectors, values.to_vec());

    let (all, timestamps) = format::decode_insert_log(&schema, file).expect("decode");
    assert_eq!(timestamps, vec![9; total]);
    assert_eq!(all, rows(&schema, 0, total));
}

/// Pages are cut from the buffer only where the column's settings ask for what
/// a cut page is; a vector column set to zstd, a bloom filter or another
/// encoding goes through the column writer, which honours the setting, and
/// reads back the same.
#[test]
fn vector_columns_set_otherwise_keep_the_column_writer() {
    use parquet::basic::{Compression, Encoding, ZstdLevel};
    use parquet::file::metadata::ColumnChunkMetaData;
    use parquet::file::properties::{WriterProperties, WriterPropertiesBuilder};
    use parquet::schema::types::ColumnPath;

    let schema = schema_with_dim(8);
    let n = 3000;
    let batch = packed(&schema, 0, n, vec![5; n]);
    let props = || format::writer_properties(Vec::new(), Some(&schema), VectorLayout::Packed);
    let encode = |props: WriterProperties| {
        let file = format::encode_with(
            Vec::new(),
            format::insert_log_schema(&schema, VectorLayout::Packed),
            std::slice::from_ref(&batch),
            props,
            1,
        )
        .expect("encode");
        let reader = SerializedFileReader::new(bytes::Bytes::from(file.clone())).expect("parquet");
        let vector = reader.metadata().row_group(0).column(1).clone();
        (file, vector)
    };
    let (_, cut) = encode(props());
    assert_eq!(cut.compression(), Compression::UNCOMPRESSED);
    assert_eq!(cut.bloom_filter_offset(), None);

    type Setting = fn(WriterPropertiesBuilder, ColumnPath) -> WriterPropertiesBuilder;
    type Honoured = fn(&ColumnChunkMetaData) -> bool;
    let settings: [(&str, Setting, Honoured); 3] = [
        (
            "zstd",
            |b, c| b.set_column_compression(c, Compression::ZSTD(ZstdLevel::default())),
            |m| matches!(m.compression(), Compression::ZSTD(_)),
        ),
        (
            "bloom filter",
            |b, c| b.set_column_bloom_filter_enabled(c, true),
            |m| m.bloom_filter_offset().is_some(),
        ),
        (
            "delta encoding",
            |b, c| b.set_column_encoding(c, Encoding::DELTA_BYTE_ARRAY),
            |m| m.encodings().any(|e| e == Encoding::DELTA_BYTE_ARRAY),
        ),
    ];
    for (name, set, honoured) in settings {
        let (file, vector) = encode(set(props().into_builder(), ColumnPath::from("vec")).build());
        assert!(honoured(&vector), "{name}: {vector:?}");
        let (read, _) =
            format::decode_insert_log(&schema, bytes::Bytes::from(file)).expect("decode");
        assert_eq!(read, rows(&schema, 0, n), "{name}");
    }
}

/// However many threads encode a file, its bytes are the same (row groups are
/// written in order).
#[test]
fn the_file_does_not_depend_on_the_number_of_encoders() {
    let schema = schema_with_dim(2);
    let n = 2 * ROW_GROUP_ROWS + 1000;
    let batch = packed(&schema, 0, n, vec![7; n]);
    let encode = |encoders| {
        format::encode_with(
            Vec::new(),
            format::insert_log_schema(&schema, VectorLayout::Packed),
            std::slice::from_ref(&batch),
            format::writer_properties(Vec::new(), Some(&schema), VectorLayout::Packed),
            encoders,
        )
        .expect("encode")
    };
    let one = encode(1);
    assert_eq!(one, encode(2));
    assert_eq!(one, encode(3));
    let reader = SerializedFileReader::new(bytes::Bytes::from(one)).expect("parquet");
    assert_eq!(reader.metadata().num_row_groups(), 3);
}

/// A local write goes to a temporary file renamed into place: a second write
/// replaces the first, and nothing else is left in the directory.
#[tokio::test]
async fn a_local_write_replaces_the_file_and_leaves_nothing_else() {
    let (dir, store) = local_store();
    let schema = schema_with_dim(4);
    let path = SegmentStore::insert_log_path(1, 2, 3, 4);
    for first in [0, 100] {
        store
            .write_insert_log(&path, &schema, &rows(&schema, first, 5), &[9; 5])
            .await
            .expect("write");
    }
    let (read, _) = store.read_insert_log(&path, &schema).await.expect("read");
    assert_eq!(read, rows(&schema, 100, 5));
    let file = dir.path().join("segments").join(&path);
    assert_eq!(
        names_in(file.parent().expect("directory")),
        vec!["4.parquet".to_owned()]
    );
}

/// A full disk under a local write: the encoder sees its write fail and reports
/// an error of its own, but the write fails with the disk's error (transient: the
/// flush is retried), and no temporary file is left behind.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_local_write_error_is_kept_as_the_disk_error() {
    use std::io::Write as _;

    let (dir, store) = local_store();
    let target = dir.path().join("segments").join("1").join("4.parquet");
    let (outcome, _) = LocalSink::write(&target, |sink| {
        sink.file = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .expect("/dev/full");
        sink.write_all(&[7; 4096])
            .map_err(|e| FormatError::InvalidInput(format!("the encoder's own error: {e}")))
    });
    let Err(SinkError::Store(e)) = outcome else {
        panic!("expected the disk's error, got {outcome:?}");
    };
    let message = e.to_string();
    let error = store.object_error("write", "1/4.parquet", e);
    assert!(error.is_transient(), "a full disk is transient: {error}");
    assert!(
        !message.contains("encoder's own"),
        "the disk's error, not the encoder's: {message}"
    );
    assert!(names_in(target.parent().expect("directory")).is_empty());
}

/// A write that fails in the encoder leaves no temporary file.
#[tokio::test]
async fn a_failed_local_write_leaves_no_temporary_file() {
    use std::io::Write as _;

    let dir = tempfile::tempdir().expect("tempdir");
    let target = dir.path().join("4.parquet");
    let (outcome, written) = LocalSink::write(&target, |sink| {
        sink.write_all(&[1; 100]).expect("a local write");
        Err(FormatError::InvalidInput("refused".into()))
    });
    assert!(matches!(outcome, Err(SinkError::Format(_))), "{outcome:?}");
    assert_eq!(written, 100);
    assert!(names_in(dir.path()).is_empty());
}

/// Temporary files of processes that no longer run (and of an earlier run with
/// this pid) are removed at start; those of running processes, of this run, and
/// every other file stay.
#[test]
fn stale_temporary_files_are_removed_and_nothing_else() {
    let dir = tempfile::tempdir().expect("tempdir");
    let proc_root = dir.path().join("proc");
    let root = dir.path().join("segments");
    let deep = root.join("1").join("2");
    std::fs::create_dir_all(&deep).expect("directories");
    std::fs::create_dir_all(proc_root.join("77")).expect("a running process");
    let ours = temporary_name(&deep.join("9.parquet"));
    let ours = ours
        .file_name()
        .expect("a name")
        .to_string_lossy()
        .into_owned();
    let pid = std::process::id();
    let keep = [
        "4.parquet".to_owned(),
        ".4.parquet.77-1f-0.tmp".to_owned(), // process 77 runs
        ours,                                // this run
        ".notes.tmp".to_owned(),             // not one of ours
        ".4.parquet.x-1-0.tmp".to_owned(),
    ];
    let remove = [
        ".4.parquet.78-1f-0.tmp".to_owned(), // process 78 is gone
        format!(".5.parquet.{pid}-1-3.tmp"), // this pid, an earlier run
    ];
    for name in keep.iter().chain(&remove) {
        std::fs::write(deep.join(name), b"x").expect("write");
    }
    std::fs::write(root.join(".6.parquet.79-2-0.tmp"), b"x").expect("write");
    let removed = super::remove_stale_temporaries_under(&root, &proc_root).expect("removed");
    assert_eq!(removed, 3);
    let mut expected = keep.to_vec();
    expected.sort();
    assert_eq!(names_in(&deep), expected);
    assert_eq!(names_in(&root), vec!["1".to_owned()]);
}

/// The file opens with the parquet crate's generic reader, with the documented
/// columns, types, compression and metadata.
#[tokio::test]
async fn files_open_with_a_plain_parquet_reader() {
    use arrow_schema::DataType as A;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    let (dir, store) = local_store();
    let schema = schema();
    let path = SegmentStore::insert_log_path(7, 8, 9, 2);
    store
        .write_insert_log(&path, &schema, &rows(&schema, 0, 10), &[5; 10])
        .await
        .expect("write");
    let file_path = dir.path().join("segments").join(&path);

    let reader =
        SerializedFileReader::new(std::fs::File::open(&file_path).expect("open")).expect("parquet");
    let meta = reader.metadata();
    assert_eq!(meta.file_metadata().num_rows(), 10);
    let kv: std::collections::HashMap<_, _> = meta
        .file_metadata()
        .key_value_metadata()
        .expect("key-value metadata")
        .iter()
        .map(|kv| (kv.key.as_str(), kv.value.clone().unwrap_or_default()))
        .collect();
    assert_eq!(kv[META_KIND], "insert_log");
    assert_eq!(kv[META_COLLECTION], "books");
    assert_eq!(
        kv[META_SCHEMA],
        "id:INT64:pk,vec:FLOAT_VECTOR(128),flag:BOOL,tiny:INT8,small:INT16,year:INT32,\
         score:FLOAT,weight:DOUBLE,title:VARCHAR(64)"
    );
    assert_eq!(kv[META_FORMAT_VERSION], "2");
    assert_eq!(
        kv[META_VECTOR_ENCODING],
        r#"{"field":"vec","dim":128,"type":"float32","byte_order":"little"}"#
    );
    let row_group = meta.row_group(0);
    for column in row_group.columns() {
        // Vectors are stored uncompressed (embeddings do not compress); the rest zstd.
        let expected = if column.column_path().string() == "vec" {
            parquet::basic::Compression::UNCOMPRESSED
        } else {
            parquet::basic::Compression::ZSTD(Default::default())
        };
        assert_eq!(column.compression(), expected, "{}", column.column_path());
    }
    // The vector's leaf: no statistics (the writer's per-column setting took).
    let leaf = row_group
        .columns()
        .iter()
        .find(|c| c.column_path().string() == "vec")
        .expect("vec leaf");
    assert!(leaf.statistics().is_none());

    let arrow =
        ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&file_path).expect("open"))
            .expect("arrow reader");
    let types: Vec<(String, A, bool)> = arrow
        .schema()
        .fields()
        .iter()
        .map(|f| (f.name().clone(), f.data_type().clone(), f.is_nullable()))
        .collect();
    let vector = A::FixedSizeBinary(128 * 4);
    assert_eq!(
        types,
        vec![
            ("id".into(), A::Int64, false),
            ("vec".into(), vector, false),
            ("flag".into(), A::Boolean, false),
            ("tiny".into(), A::Int8, false),
            ("small".into(), A::Int16, false),
            ("year".into(), A::Int32, false),
            ("score".into(), A::Float32, false),
            ("weight".into(), A::Float64, false),
            ("title".into(), A::Utf8, false),
            ("_ts".into(), A::UInt64, false),
        ]
    );
    // Read as the footer says: row 3's vector is its 128 little-endian floats.
    let batches: Vec<_> = arrow
        .build()
        .expect("reader")
        .map(|b| b.expect("batch"))
        .collect();
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 10);
    let packed = batches[0]
        .column(1)
        .as_any()
        .downcast_ref::<arrow_array::FixedSizeBinaryArray>()
        .expect("packed vectors");
    let floats: Vec<f32> = packed
        .value(3)
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
        .collect();
    let Column::Vector { values, .. } = &rows(&schema, 0, 10).columns[1] else {
        panic!("vec is the second field");
    };
    assert_eq!(
        floats,
        values.row(128, 3).expect("row 3").collect::<Vec<f32>>()
    );
}

/// Files of format version 1 (vectors as lists of floats) are read as they were.
#[tokio::test]
async fn format_version_1_files_stay_readable() {
    let (dir, store) = local_store();
    let schema = schema();
    let batch = rows(&schema, 100, 300);
    let timestamps: Vec<u64> = (0..300).collect();
    let mut old = InsertLog::with_layout(&schema, VectorLayout::List);
    old.push(batch.clone(), timestamps.clone()).expect("push");
    let path = "insert_log/v1.parquet";
    store.write_insert(path, &old).await.expect("write");

    let file = std::fs::File::open(dir.path().join("segments").join(path)).expect("open");
    let reader = SerializedFileReader::new(file).expect("parquet");
    let meta = reader.metadata().file_metadata();
    let version = meta
        .key_value_metadata()
        .and_then(|kv| kv.iter().find(|kv| kv.key == META_FORMAT_VERSION))
        .and_then(|kv| kv.value.clone());
    assert_eq!(version.as_deref(), Some("1"));
    assert_eq!(
        meta.schema_descr().column(1).path().string(),
        "vec.list.item"
    );

    let (read, read_ts) = store.read_insert_log(path, &schema).await.expect("read v1");
    assert_eq!(read, batch);
    assert_eq!(read_ts, timestamps);
}

/// A file of a newer format version is refused with the reason, not misread.
#[tokio::test]
async fn newer_format_versions_are_refused() {
    use parquet::file::metadata::KeyValue;

    let (dir, store) = local_store();
    let schema = schema();
    let arrow = packed(&schema, 0, 2, vec![1, 2]);
    let path = "insert_log/v9.parquet";
    let full = dir.path().join("segments").join(path);
    std::fs::create_dir_all(full.parent().expect("parent")).expect("mkdir");
    let props = format::writer_properties(
        vec![KeyValue::new(META_FORMAT_VERSION.into(), "9".to_owned())],
        Some(&schema),
        VectorLayout::Packed,
    );
    let mut w = parquet::arrow::ArrowWriter::try_new(
        std::fs::File::create(&full).expect("create"),
        arrow.schema(),
        Some(props),
    )
    .expect("writer");
    w.write(&arrow).expect("write");
    w.close().expect("close");

    let e = store
        .read_insert_log(path, &schema)
        .await
        .expect_err("version 9");
    assert!(
        e.to_string().contains(&format!(
            "the file has format version 9, written by a newer milvus-like; this one reads \
             versions 1 to {FORMAT_VERSION}"
        )),
        "{e}"
    );
}

#[tokio::test]
async fn delete_logs_round_trip() {
    let (_dir, store) = local_store();
    let path = SegmentStore::delete_log_path(7, 8, 1, 3);
    let keys = vec![5, -1, i64::MAX, 5];
    let ts = vec![10, 20, u64::MAX, 0];
    store
        .write_delete_log(&path, &keys, &ts)
        .await
        .expect("write");
    assert_eq!(
        store.read_delete_log(&path).await.expect("read"),
        (Keys::Int(keys), ts.clone())
    );
    // VARCHAR keys: the file's key column is Utf8, and says so when read.
    let path = SegmentStore::delete_log_path(7, 8, 1, 4);
    let keys = vec![
        "doc-1".to_owned(),
        String::new(),
        "ünïcode".to_owned(),
        "5".to_owned(),
    ];
    store
        .write_delete_log(&path, &keys[..], &ts)
        .await
        .expect("write");
    assert_eq!(
        store.read_delete_log(&path).await.expect("read"),
        (Keys::Str(keys), ts)
    );
}

#[tokio::test]
async fn deletes_hide_only_older_rows() {
    let (_dir, store) = local_store();
    let schema = schema_with_dim(4);
    // pk 1 at ts 10 and again at ts 30; pk 2 at ts 10; pk 3 at ts 10; pk 4 at ts 50.
    let first = rows(&schema, 1, 3);
    let mut second = rows(&schema, 1, 1);
    second.append(rows(&schema, 4, 1)).expect("append");
    store
        .write_insert_log("insert_log/a.parquet", &schema, &first, &[10, 10, 10])
        .await
        .expect("write");
    store
        .write_insert_log("insert_log/b.parquet", &schema, &second, &[30, 50])
        .await
        .expect("write");
    // pk 1 deleted at 20: only its ts-10 copy goes. pk 2 deleted at 5, before its
    // insert: it stays. pk 3 deleted at 10, the insert's own ts: not newer, stays.
    // pk 4 deleted at 40 and at 60 (two logs): the newest decides, it goes.
    store
        .write_delete_log("delete_log/x.parquet", &[1, 2, 3, 4], &[20, 5, 10, 40])
        .await
        .expect("write");
    store
        .write_delete_log("delete_log/y.parquet", &[4], &[60])
        .await
        .expect("write");

    let content = read_collection(
        &store,
        &schema,
        &[
            segment(&["insert_log/a.parquet"]),
            segment(&["insert_log/b.parquet"]),
        ],
        &[
            delete_log("delete_log/x.parquet"),
            delete_log("delete_log/y.parquet"),
        ],
        10,
    )
    .await
    .expect("read collection");
    assert_eq!(content.rows, 3, "{content:?}");
    assert_eq!(content.deleted, 2);
    let expected = batch_checksum(&schema, &first.take(&[1, 2]))
        .wrapping_add(batch_checksum(&schema, &second.take(&[0])));
    assert_eq!(content.checksum, expected);
    assert_eq!(content.sample.len(), 3);
    assert!(
        content.sample[0].starts_with("id=2, vec=["),
        "{}",
        content.sample[0]
    );
    assert!(content.sample[2].starts_with("id=1,") && content.sample[2].ends_with("_ts=30"));

    // Delete logs listed on a segment count too; a path given twice is read once.
    let mut with_paths = segment(&["insert_log/a.parquet", "insert_log/a.parquet"]);
    with_paths.delete_log_paths = vec!["delete_log/x.parquet".into()];
    let again = read_collection(
        &store,
        &schema,
        &[with_paths],
        &[delete_log("delete_log/x.parquet")],
        1,
    )
    .await
    .expect("read collection");
    assert_eq!((again.rows, again.deleted, again.sample.len()), (2, 1, 1));
}

#[tokio::test]
async fn checksum_ignores_row_order_file_split_and_timestamps() {
    let (_dir, store) = local_store();
    let schema = schema_with_dim(8);
    let all = rows(&schema, 100, 90);
    store
        .write_insert_log("insert_log/one.parquet", &schema, &all, &[1; 90])
        .await
        .expect("write");
    // The same rows reversed, over three files, at other timestamps.
    let reversed: Vec<usize> = (0..90).rev().collect();
    for (i, chunk) in reversed.chunks(30).enumerate() {
        store
            .write_insert_log(
                &format!("insert_log/part{i}.parquet"),
                &schema,
                &all.take(chunk),
                &[7; 30],
            )
            .await
            .expect("write");
    }
    let one = read_collection(
        &store,
        &schema,
        &[segment(&["insert_log/one.parquet"])],
        &[],
        0,
    )
    .await
    .expect("read");
    let split = read_collection(
        &store,
        &schema,
        &[
            segment(&["insert_log/part2.parquet", "insert_log/part0.parquet"]),
            segment(&["insert_log/part1.parquet"]),
        ],
        &[],
        0,
    )
    .await
    .expect("read");
    assert_eq!(one.rows, 90);
    assert_eq!((one.rows, one.checksum), (split.rows, split.checksum));
    assert_eq!(one.checksum, batch_checksum(&schema, &all));
    assert!(one.sample.is_empty());

    // Any value change shows: one bit of one float, or one string.
    let mut changed = all.clone();
    if let Column::Float(v) = &mut changed.columns[6] {
        v[17] = f32::from_bits(v[17].to_bits() ^ 1);
    }
    assert_ne!(batch_checksum(&schema, &changed), one.checksum);
    let mut changed = all.clone();
    if let Column::Str(v) = &mut changed.columns[8] {
        v[3].push(' ');
    }
    assert_ne!(batch_checksum(&schema, &changed), one.checksum);
    // Swapping values between two fields of a row changes it too.
    assert_ne!(
        row_checksum(&schema, &all, 0),
        row_checksum(&schema, &all, 1),
        "different rows hash differently"
    );
}

#[test]
fn checksum_is_the_documented_hash() {
    // One INT64 pk (1) and a 1-d vector (0.0): bytes 01 00.. 1f 00 00 00 00 1f.
    let mut id = field("id", D::Int64);
    id.is_primary_key = true;
    let mut vec = field("v", D::FloatVector);
    vec.dim = 1;
    let schema = CollectionSchema::try_from(proto::CollectionSchema {
        name: "c".into(),
        description: String::new(),
        fields: vec![id, vec],
        ..proto::CollectionSchema::default()
    })
    .expect("schema");
    let batch = RowBatch {
        columns: vec![
            Column::Long(vec![1]),
            Column::Vector {
                dim: 1,
                values: vec![0.0].into(),
            },
        ],
        num_rows: 1,
    };
    let bytes = [1u8, 0, 0, 0, 0, 0, 0, 0, 0x1f, 0, 0, 0, 0, 0x1f];
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    assert_eq!(row_checksum(&schema, &batch, 0), h);
    // Past the end: no panic.
    let _ = row_checksum(&schema, &batch, 5);
}

#[tokio::test]
async fn a_missing_file_is_a_permanent_not_found() {
    let (_dir, store) = local_store();
    let err = store
        .read_insert_log("insert_log/nope.parquet", &schema())
        .await
        .expect_err("missing");
    assert!(matches!(err, StorageError::NotFound { .. }), "{err:?}");
    assert!(!err.is_transient());
    assert!(err.to_string().contains("insert_log/nope.parquet"), "{err}");
    let err = read_collection(
        &store,
        &schema(),
        &[],
        &[delete_log("delete_log/nope.parquet")],
        0,
    )
    .await
    .expect_err("missing delete log");
    assert!(err.to_string().contains("delete_log/nope.parquet"), "{err}");
}

#[tokio::test]
async fn corrupt_files_are_reported_not_panicked_on() {
    let (dir, store) = local_store();
    let schema = schema_with_dim(4);
    let root = dir.path().join("segments");
    std::fs::create_dir_all(root.join("insert_log")).expect("mkdir");
    std::fs::write(
        root.join("insert_log/junk.parquet"),
        b"this is not parquet at all",
    )
    .expect("write");
    std::fs::write(root.join("insert_log/empty.parquet"), b"").expect("write");

    store
        .write_insert_log(
            "insert_log/good.parquet",
            &schema,
            &rows(&schema, 0, 500),
            &[1; 500],
        )
        .await
        .expect("write");
    let good = std::fs::read(root.join("insert_log/good.parquet")).expect("read");
    // Cut off the footer; then keep the footer but garble the data pages.
    std::fs::write(
        root.join("insert_log/truncated.parquet"),
        &good[..good.len() / 2],
    )
    .expect("write");
    let mut garbled = good.clone();
    for b in &mut garbled[4..good.len() / 2] {
        *b = b.wrapping_mul(31).wrapping_add(7);
    }
    std::fs::write(root.join("insert_log/garbled.parquet"), &garbled).expect("write");

    for name in ["junk", "empty", "truncated", "garbled"] {
        let path = format!("insert_log/{name}.parquet");
        let err = store
            .read_insert_log(&path, &schema)
            .await
            .expect_err("corrupt file must be refused");
        assert!(
            matches!(err, StorageError::Corrupt { .. }),
            "{name}: {err:?}"
        );
        assert!(!err.is_transient());
        assert!(err.to_string().contains(&path), "{err}");
    }
}

#[tokio::test]
async fn schema_mismatches_name_the_column() {
    let (_dir, store) = local_store();
    let schema = schema_with_dim(4);
    let path = "insert_log/s.parquet";
    store
        .write_insert_log(path, &schema, &rows(&schema, 0, 3), &[1; 3])
        .await
        .expect("write");

    let other_dim = schema_with_dim(8);
    let err = store
        .read_insert_log(path, &other_dim)
        .await
        .expect_err("dim differs");
    assert!(
        matches!(err, StorageError::SchemaMismatch { .. }),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains(path) && message.contains("\"vec\""),
        "{message}"
    );
    assert!(!err.is_transient());

    let mut id = field("id", D::Int64);
    id.is_primary_key = true;
    let mut vec = field("vec", D::FloatVector);
    vec.dim = 4;
    let fewer = CollectionSchema::try_from(proto::CollectionSchema {
        name: "books".into(),
        description: String::new(),
        fields: vec![id, vec],
        ..proto::CollectionSchema::default()
    })
    .expect("schema");
    let err = store
        .read_insert_log(path, &fewer)
        .await
        .expect_err("fewer fields");
    assert!(
        matches!(err, StorageError::SchemaMismatch { .. }),
        "{err:?}"
    );

    let err = store
        .read_delete_log(path)
        .await
        .expect_err("not a delete log");
    assert!(err.to_string().contains("is not a delete log"), "{err}");
    store
        .write_delete_log("delete_log/d.parquet", &[1], &[2])
        .await
        .expect("write");
    let err = store
        .read_insert_log("delete_log/d.parquet", &schema)
        .await
        .expect_err("not an insert log");
    assert!(
        matches!(err, StorageError::SchemaMismatch { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn bad_writes_are_refused_with_the_reason() {
    let (_dir, store) = local_store();
    let schema = schema_with_dim(4);
    let batch = rows(&schema, 0, 3);
    let refused = |r: Result<u64, StorageError>| match r {
        Err(e @ StorageError::InvalidInput { .. }) => e.to_string(),
        other => panic!("expected InvalidInput, got {other:?}"),
    };

    let m = refused(
        store
            .write_insert_log("insert_log/w.parquet", &schema, &batch, &[1, 2])
            .await,
    );
    assert!(m.contains("2 timestamps for 3 rows"), "{m}");

    let mut wrong_type = batch.clone();
    wrong_type.columns[2] = Column::Long(vec![1, 2, 3]);
    let m = refused(
        store
            .write_insert_log("insert_log/w.parquet", &schema, &wrong_type, &[1; 3])
            .await,
    );
    assert!(m.contains("\"flag\" is BOOL"), "{m}");

    let mut too_big = batch.clone();
    too_big.columns[3] = Column::Int(vec![0, 128, 0]);
    let m = refused(
        store
            .write_insert_log("insert_log/w.parquet", &schema, &too_big, &[1; 3])
            .await,
    );
    assert!(m.contains("\"tiny\" row 1: 128 does not fit INT8"), "{m}");

    let mut short = batch.clone();
    short.columns.pop();
    refused(
        store
            .write_insert_log("insert_log/w.parquet", &schema, &short, &[1; 3])
            .await,
    );

    let m = refused(
        store
            .write_delete_log("delete_log/w.parquet", &[1, 2], &[1])
            .await,
    );
    assert!(m.contains("2 primary keys but 1 timestamps"), "{m}");

    // A user field named `_ts` would clash with the timestamp column; schemas
    // refuse the name (see `milvus_like_api::schema::RESERVED_FIELD_NAMES`).
    let mut id = field("id", D::Int64);
    id.is_primary_key = true;
    let mut vec = field("vec", D::FloatVector);
    vec.dim = 1;
    let clash = CollectionSchema::try_from(proto::CollectionSchema {
        name: "c".into(),
        description: String::new(),
        fields: vec![id, vec, field("_ts", D::Int64)],
        ..proto::CollectionSchema::default()
    });
    assert!(clash.is_err(), "{clash:?}");

    for bad in ["", "a//b.parquet", "../up.parquet", "insert_log/../x"] {
        let err = store.read_delete_log(bad).await.expect_err("invalid path");
        assert!(
            matches!(err, StorageError::InvalidPath { .. }),
            "{bad:?}: {err:?}"
        );
    }
}

#[test]
fn http_status_is_read_from_object_store_messages() {
    assert_eq!(
        http_status(
            "Error performing PUT http://x in 1s - Server returned non-2xx status code: 503 Service Unavailable: "
        ),
        Some(503)
    );
    assert_eq!(
        http_status("Server returned non-2xx status code: 404 Not Found"),
        Some(404)
    );
    assert_eq!(http_status("connection refused"), None);
}

#[test]
fn local_io_errors_are_classified_by_kind() {
    let generic = |kind| object_store::Error::Generic {
        store: "LocalFileSystem",
        source: Box::new(std::io::Error::new(kind, "boom")),
    };
    assert!(is_transient(&generic(std::io::ErrorKind::TimedOut)));
    assert!(!is_transient(&generic(
        std::io::ErrorKind::PermissionDenied
    )));
    let unexplained = |store| object_store::Error::Generic {
        store,
        source: "something odd".into(),
    };
    assert!(!is_transient(&unexplained("LocalFileSystem")));
    assert!(is_transient(&unexplained("S3")));
    assert!(!is_transient(&object_store::Error::NotFound {
        path: "x".into(),
        source: "gone".into(),
    }));
}

#[test]
fn debug_output_hides_the_secret_key() {
    let config = StorageConfig::S3 {
        endpoint: "http://127.0.0.1:9000".into(),
        bucket: "b".into(),
        region: "us-east-1".into(),
        access_key: "user".into(),
        secret_key: "hunter2".into(),
        allow_http: true,
    };
    let shown = format!("{config:?}");
    assert!(
        shown.contains("user") && !shown.contains("hunter2"),
        "{shown}"
    );
}

#[test]
fn an_unusable_local_root_is_a_config_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").expect("write");
    let err = SegmentStore::open(&StorageConfig::Local {
        root: file.join("sub"),
    })
    .expect_err("not a dir");
    assert!(matches!(err, StorageError::Config { .. }), "{err:?}");
    assert!(err.to_string().contains("a-file"), "{err}");
}
