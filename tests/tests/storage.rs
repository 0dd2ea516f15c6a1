//! Segment files in real object storage: a MinIO server (S3 API) and a local
//! directory hold the same insert and delete logs, read back with deletes applied.

use milvus_like_api::proto::{self, DataType, DeleteLog, FieldSchema, SegmentInfo};
use milvus_like_api::retry::Transient;
use milvus_like_api::schema::CollectionSchema;
use milvus_like_node::columns::{Column, RowBatch};
use milvus_like_node::keys::Keys;
use milvus_like_node::storage::{
    SegmentStore, StorageConfig, StorageError, batch_checksum, read_collection,
};
use milvus_like_tests::TestDir;
use milvus_like_tests::minio::MinIO;

const DIM: u32 = 128;

/// `id` INT64 primary key, `vec` FLOAT_VECTOR(128), `title` VARCHAR.
fn schema() -> CollectionSchema {
    let mut proto = milvus_like_tests::test_schema("books", DIM);
    proto.fields.push(FieldSchema {
        name: "title".into(),
        data_type: DataType::Varchar.into(),
        max_length: 100,
        ..FieldSchema::default()
    });
    CollectionSchema::try_from(proto).expect("valid schema")
}

/// A float in [0, 1) that looks random (it compresses like real embeddings: not at all).
fn noise(seed: u64) -> f32 {
    let mut x = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (x >> 40) as f32 / (1u64 << 24) as f32
}

/// Rows with keys `first..first + n`.
fn rows(first: i64, n: usize) -> RowBatch {
    let keys: Vec<i64> = (first..first + n as i64).collect();
    RowBatch {
        columns: vec![
            Column::Long(keys.clone()),
            Column::Vector {
                dim: DIM,
                values: keys
                    .iter()
                    .flat_map(|k| (0..DIM).map(move |j| noise(*k as u64 * 1024 + u64::from(j))))
                    .collect(),
            },
            Column::Str(keys.iter().map(|k| format!("title {k}")).collect()),
        ],
        num_rows: n,
    }
}

fn segment(id: i64, paths: Vec<String>) -> SegmentInfo {
    SegmentInfo {
        segment_id: id,
        collection_id: 1,
        partition_id: 2,
        state: proto::SegmentState::Flushed.into(),
        insert_log_paths: paths,
        ..SegmentInfo::default()
    }
}

/// Writes two segments (one of 20,000 rows, ~9 MB, and one of 1,000) and a delete
/// log, reads them back, and checks the content of the collection.
async fn round_trip(store: &SegmentStore) {
    let schema = schema();
    let big = rows(0, 20_000);
    let small = rows(20_000, 1_000);
    let big_path = SegmentStore::insert_log_path(1, 2, 10, 100);
    let small_path = SegmentStore::insert_log_path(1, 2, 11, 101);
    let bytes = store
        .write_insert_log(&big_path, &schema, &big, &vec![1_000; 20_000])
        .await
        .expect("write the big insert log");
    // Above the 8 MiB part size: the insert log went up as a multipart upload.
    assert!(bytes > 8 << 20, "{bytes} bytes for 20,000 128-d vectors");
    store
        .write_insert_log(&small_path, &schema, &small, &vec![2_000; 1_000])
        .await
        .expect("write the small insert log");

    let (read, ts) = store
        .read_insert_log(&small_path, &schema)
        .await
        .expect("read back");
    assert_eq!(read, small);
    assert_eq!(ts, vec![2_000; 1_000]);

    // Keys 0..100 deleted after their insert; key 20_000 deleted before its insert.
    let delete_path = SegmentStore::delete_log_path(1, 2, 0, 102);
    let mut keys: Vec<i64> = (0..100).collect();
    let mut dts = vec![1_500; 100];
    keys.push(20_000);
    dts.push(1_500);
    store
        .write_delete_log(&delete_path, &keys, &dts)
        .await
        .expect("write the delete log");
    assert_eq!(
        store
            .read_delete_log(&delete_path)
            .await
            .expect("read back"),
        (Keys::Int(keys), dts)
    );

    let content = read_collection(
        store,
        &schema,
        &[segment(10, vec![big_path]), segment(11, vec![small_path])],
        &[DeleteLog {
            collection_id: 1,
            partition_id: 2,
            channel: 0,
            path: delete_path,
            num_rows: 101,
            checkpoint: None,
        }],
        3,
    )
    .await
    .expect("read the collection");
    let live: Vec<usize> = (100..20_000).collect();
    let expected =
        batch_checksum(&schema, &big.take(&live)).wrapping_add(batch_checksum(&schema, &small));
    assert_eq!(content.rows, 19_900 + 1_000);
    assert_eq!(content.deleted, 100);
    assert_eq!(content.checksum, expected);
    assert_eq!(content.sample.len(), 3);
    assert!(
        content.sample[0].starts_with("id=100, vec=["),
        "{:?}",
        content.sample
    );

    let err = store
        .read_insert_log("insert_log/1/2/99/1.parquet", &schema)
        .await
        .expect_err("a missing file");
    assert!(matches!(err, StorageError::NotFound { .. }), "{err:?}");
    assert!(!err.is_transient());
}

#[tokio::test]
async fn segment_files_round_trip_through_minio() {
    let dir = TestDir::new("storage-minio");
    let minio = MinIO::start(dir.path()).expect("minio starts");
    minio.bucket("segments").expect("create bucket");
    minio.bucket("segments").expect("creating it again is fine");
    let store = SegmentStore::open(&minio.storage_config("segments")).expect("open S3 store");
    assert!(
        store
            .describe()
            .starts_with("s3://segments at http://127.0.0.1:"),
        "{}",
        store.describe()
    );
    round_trip(&store).await;
    // The bytes really are in MinIO's bucket (single-drive layout: one directory per object).
    assert!(
        dir.path()
            .join("minio/data/segments/insert_log/1/2/10/100.parquet")
            .exists()
    );
}

#[tokio::test]
async fn segment_files_round_trip_through_a_local_directory() {
    let dir = TestDir::new("storage-local");
    let root = dir.path().join("segments");
    let store =
        SegmentStore::open(&StorageConfig::Local { root: root.clone() }).expect("open local store");
    round_trip(&store).await;
    assert!(root.join("insert_log/1/2/10/100.parquet").is_file());
}

#[tokio::test]
async fn minio_errors_are_classified() {
    let dir = TestDir::new("storage-minio-errors");
    let mut minio = MinIO::start(dir.path()).expect("minio starts");
    minio.bucket("segments").expect("create bucket");
    let store = SegmentStore::open(&minio.storage_config("segments")).expect("open S3 store");
    let path = SegmentStore::delete_log_path(1, 2, 0, 1);
    store
        .write_delete_log(&path, &[1], &[2])
        .await
        .expect("write");

    // A missing bucket and refused credentials are permanent.
    let missing = SegmentStore::open(&minio.storage_config("no-such-bucket")).expect("open");
    let err = missing
        .write_delete_log(&path, &[1], &[2])
        .await
        .expect_err("no bucket");
    assert!(!err.is_transient(), "{err:?}");
    assert!(err.to_string().contains(&path), "{err}");
    // The same through a streamed insert log (its error comes out of the upload).
    let schema = schema();
    let insert_path = SegmentStore::insert_log_path(1, 2, 10, 1);
    let err = missing
        .write_insert_log(&insert_path, &schema, &rows(0, 10), &[1; 10])
        .await
        .expect_err("no bucket");
    assert!(!err.is_transient(), "{err:?}");
    assert!(err.to_string().contains(&insert_path), "{err}");
    let mut config = minio.storage_config("segments");
    if let StorageConfig::S3 { secret_key, .. } = &mut config {
        *secret_key = "wrong".into();
    }
    let refused = SegmentStore::open(&config).expect("open");
    let err = refused
        .read_delete_log(&path)
        .await
        .expect_err("bad credentials");
    assert!(!err.is_transient(), "{err:?}");

    // A server that is down is transient; after its restart the file is there.
    minio.kill9().expect("kill -9");
    let err = store.read_delete_log(&path).await.expect_err("server down");
    assert!(err.is_transient(), "{err:?}");
    assert!(err.to_string().contains(&path), "{err}");
    let err = store
        .write_insert_log(&insert_path, &schema, &rows(0, 10), &[1; 10])
        .await
        .expect_err("server down");
    assert!(err.is_transient(), "{err:?}");
    assert!(err.to_string().contains(&insert_path), "{err}");
    minio.restart().expect("restart");
    assert_eq!(
        store
            .read_delete_log(&path)
            .await
            .expect("read after restart"),
        (Keys::Int(vec![1]), vec![2])
    );
}
