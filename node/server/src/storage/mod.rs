//! Segment files in object storage: insert logs (a flushed segment's rows) and
//! delete logs (primary keys deleted at a timestamp), as Parquet files that any
//! Parquet reader opens. The layout is described in [`format`]; reading a whole
//! collection back with its deletes applied is in [`content`].
//!
//! Two backends behind [`ObjectStore`]: a local directory (standalone mode, unit
//! tests) and an S3-compatible bucket (AWS, MinIO). A delete log is written with
//! one `put`; an insert log is streamed as it is encoded (one `put` below 8 MiB, a
//! multipart upload above). Both backends make either visible atomically, on the
//! `put` or on completing the upload: a reader sees the whole file or none of it.
//! A write returns once the file is durable: S3 acknowledges only then, and a local
//! file is fsynced with its directories first.

pub mod content;
pub mod format;
#[cfg(test)]
mod tests;
mod vector_pages;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use milvus_like_api::retry::Transient;
use milvus_like_api::schema::CollectionSchema;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, RetryConfig};

use crate::columns::RowBatch;
use crate::keys::{Keys, KeysRef};
use format::FormatError;
pub use format::VectorLayout;

pub use content::{
    CollectionContent, KeyBlocks, batch_checksum, fnv1a, for_each_live_batch, read_collection,
    read_collection_blocks, row_checksum,
};

/// Where segment files live. Its `Debug` form hides the secret key.
#[derive(Clone, PartialEq, Eq)]
pub enum StorageConfig {
    /// Files under a local directory.
    Local { root: PathBuf },
    /// An S3-compatible bucket (AWS, MinIO). The bucket must exist.
    S3 {
        /// `http://127.0.0.1:9000`, `https://s3.eu-west-1.amazonaws.com`.
        endpoint: String,
        bucket: String,
        region: String,
        access_key: String,
        secret_key: String,
        /// Allow a plain-HTTP endpoint (MinIO in tests).
        allow_http: bool,
    },
}

impl std::fmt::Debug for StorageConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Local { root } => f.debug_struct("Local").field("root", root).finish(),
            Self::S3 {
                endpoint,
                bucket,
                region,
                access_key,
                secret_key: _,
                allow_http,
            } => f
                .debug_struct("S3")
                .field("endpoint", endpoint)
                .field("bucket", bucket)
                .field("region", region)
                .field("access_key", access_key)
                .field("secret_key", &"<redacted>")
                .field("allow_http", allow_http)
                .finish(),
        }
    }
}

/// Requests to S3 are retried inside the client on connection errors, timeouts and
/// 5xx answers, with exponential backoff from 100 ms, this many times...
const S3_MAX_RETRIES: usize = 5;
/// ...or until this much time has passed. The caller then gets a transient error
/// and decides (the data node retries its flush; a CLI reports it).
const S3_RETRY_TIMEOUT: Duration = Duration::from_secs(30);

/// Reads and writes the segment files of every collection.
#[derive(Debug, Clone)]
pub struct SegmentStore {
    store: Arc<dyn ObjectStore>,
    /// `local:/data/segments`, `s3://bucket at http://...`: for logs and errors.
    description: String,
    /// The directory of a local store, whose files are fsynced once written.
    local_root: Option<PathBuf>,
}

/// Why a storage call failed. Every message names the path (or the store).
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The store could not be set up: an unusable directory or S3 settings.
    #[error("cannot open segment storage {what}: {reason}")]
    Config { what: String, reason: String },
    /// Not a valid object path (empty segment, `..`, ...).
    #[error("invalid segment file path {path:?}: {reason}")]
    InvalidPath { path: String, reason: String },
    /// The file does not exist.
    #[error("{path} does not exist in {store}")]
    NotFound { path: String, store: String },
    /// Reading or writing the object failed. `transient` when retrying may help:
    /// network errors, timeouts and 5xx answers that outlasted the client's own
    /// retries; not for refused credentials, 4xx answers or local I/O errors
    /// such as a permission denied.
    #[error("{op} {path} in {store}: {source}")]
    Object {
        op: &'static str,
        path: String,
        store: String,
        transient: bool,
        #[source]
        source: Box<object_store::Error>,
    },
    /// The file is not Parquet we can read: truncated, overwritten with junk, nulls.
    #[error("{path} is not a readable segment file: {reason}")]
    Corrupt { path: String, reason: String },
    /// A readable file whose columns are not those expected.
    #[error("{path} is not {expected}: {reason}")]
    SchemaMismatch {
        path: String,
        /// `an insert log of collection "books"`, `a delete log`.
        expected: String,
        reason: String,
    },
    /// The rows handed to a write do not fit the schema, or the lengths differ.
    #[error("cannot write {path}: {reason}")]
    InvalidInput { path: String, reason: String },
}

impl Transient for StorageError {
    /// Network trouble, an overloaded or restarting server. Missing or corrupt
    /// files and schema mismatches are permanent.
    fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Object {
                transient: true,
                ..
            }
        )
    }
}

impl StorageError {
    fn format(path: &str, expected: impl FnOnce() -> String, e: FormatError) -> Self {
        let path = path.to_owned();
        match e {
            FormatError::InvalidInput(reason) => Self::InvalidInput { path, reason },
            FormatError::Corrupt(reason) => Self::Corrupt { path, reason },
            FormatError::SchemaMismatch(reason) => Self::SchemaMismatch {
                path,
                expected: expected(),
                reason,
            },
        }
    }
}

/// Whether an object store error is worth retrying. object_store keeps the HTTP
/// status private, so this walks the error's source chain: a transport error
/// (`HttpError`: connect, timeout, reset) is transient; an I/O error is transient
/// only for kinds that clear by themselves; an HTTP status (read from the
/// "status code: NNN" of the client's message) is transient for 5xx, 408 and
/// 429. A `Generic` error none of these explain counts as transient for a remote
/// store (a 200 answer with an error body, a malformed answer) and as permanent
/// for the local filesystem; the typed variants (not found, precondition,
/// permission, authentication, invalid path) are permanent.
fn is_transient(e: &object_store::Error) -> bool {
    use std::io::ErrorKind as K;
    let unexplained = match e {
        object_store::Error::Generic { store, .. } => *store != "LocalFileSystem",
        object_store::Error::JoinError { .. } => true,
        _ => return false,
    };
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = current {
        if err
            .downcast_ref::<object_store::client::HttpError>()
            .is_some()
        {
            return true;
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                K::Interrupted
                    | K::TimedOut
                    | K::WouldBlock
                    | K::ConnectionReset
                    | K::ConnectionAborted
                    | K::ConnectionRefused
                    | K::BrokenPipe
                    | K::StorageFull
                    | K::ResourceBusy
            );
        }
        if let Some(status) = http_status(&err.to_string()) {
            return status >= 500 || status == 408 || status == 429;
        }
        current = err.source();
    }
    unexplained
}

/// The status of object_store's "Server returned non-2xx status code: 503 ..." message.
fn http_status(message: &str) -> Option<u16> {
    let (_, rest) = message.split_once("status code: ")?;
    rest.get(..3)?.parse().ok()
}

impl SegmentStore {
    /// Opens the store. `Local` creates the directory; `S3` only checks the
    /// settings (the first request reaches the server).
    pub fn open(config: &StorageConfig) -> Result<Self, StorageError> {
        match config {
            StorageConfig::Local { root } => {
                let what = format!("directory {}", root.display());
                let fail = |reason: String| StorageError::Config {
                    what: what.clone(),
                    reason,
                };
                std::fs::create_dir_all(root).map_err(|e| fail(e.to_string()))?;
                let root = std::fs::canonicalize(root).map_err(|e| fail(e.to_string()))?;
                let store =
                    LocalFileSystem::new_with_prefix(&root).map_err(|e| fail(e.to_string()))?;
                let description = format!("local:{}", root.display());
                Ok(Self {
                    local_root: Some(root),
                    ..Self::from_store(Arc::new(store), description)
                })
            }
            StorageConfig::S3 {
                endpoint,
                bucket,
                region,
                access_key,
                secret_key,
                allow_http,
            } => {
                let retry = RetryConfig {
                    max_retries: S3_MAX_RETRIES,
                    retry_timeout: S3_RETRY_TIMEOUT,
                    ..RetryConfig::default()
                };
                let store = AmazonS3Builder::new()
                    .with_endpoint(endpoint)
                    .with_bucket_name(bucket)
                    .with_region(region)
                    .with_access_key_id(access_key)
                    .with_secret_access_key(secret_key)
                    .with_allow_http(*allow_http)
                    // Path-style requests (`endpoint/bucket/key`), which MinIO serves
                    // without DNS names per bucket.
                    .with_virtual_hosted_style_request(false)
                    .with_retry(retry)
                    .build()
                    .map_err(|e| StorageError::Config {
                        what: format!("bucket {bucket:?} at {endpoint}"),
                        reason: e.to_string(),
                    })?;
                Ok(Self::from_store(
                    Arc::new(store),
                    format!("s3://{bucket} at {endpoint}"),
                ))
            }
        }
    }

    /// Removes temporary files that processes no longer running left in a local
    /// store (a crash or kill in the middle of a write); returns how many. Only
    /// on Linux, where `/proc` tells which processes run; elsewhere, and for
    /// object stores, removes nothing.
    pub async fn remove_stale_temporaries(&self) -> Result<usize, StorageError> {
        let Some(root) = self.local_root.clone() else {
            return Ok(0);
        };
        if !cfg!(target_os = "linux") {
            return Ok(0);
        }
        tokio::task::spawn_blocking(move || {
            remove_stale_temporaries_under(&root, std::path::Path::new("/proc"))
        })
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)))
        .map_err(|e| self.object_error("remove stale temporary files", "/", local_store_error(e)))
    }

    /// Wraps any object store (in-memory or throttled ones in tests).
    pub fn from_store(store: Arc<dyn ObjectStore>, description: impl Into<String>) -> Self {
        Self {
            store,
            description: description.into(),
            local_root: None,
        }
    }

    /// Whether the store answers: lists the top of the tree (cheap; for readiness).
    pub async fn probe(&self) -> Result<(), StorageError> {
        self.store
            .list_with_delimiter(None)
            .await
            .map(drop)
            .map_err(|e| self.object_error("list", "/", e))
    }

    /// Where the files live: `local:/data/segments`, `s3://bucket at http://...`.
    pub fn describe(&self) -> String {
        self.description.clone()
    }

    /// `insert_log/{collection}/{partition}/{segment}/{log_id}.parquet`
    pub fn insert_log_path(collection: i64, partition: i64, segment: i64, log_id: i64) -> String {
        format!("insert_log/{collection}/{partition}/{segment}/{log_id}.parquet")
    }

    /// `delete_log/{collection}/{partition}/{channel}/{log_id}.parquet`
    pub fn delete_log_path(collection: i64, partition: i64, channel: u32, log_id: i64) -> String {
        format!("delete_log/{collection}/{partition}/{channel}/{log_id}.parquet")
    }

    /// Writes `rows` (columns in schema field order) and each row's timestamp as one
    /// Parquet insert log at `path`, replacing any file there. Returns the bytes
    /// written. Copies the rows; [`SegmentStore::write_insert`] writes rows already
    /// handed over to an [`InsertLog`].
    pub async fn write_insert_log(
        &self,
        path: &str,
        schema: &CollectionSchema,
        rows: &RowBatch,
        timestamps: &[u64],
    ) -> Result<u64, StorageError> {
        let mut log = InsertLog::new(schema);
        log.push(rows.clone(), timestamps.to_vec())
            .map_err(|reason| StorageError::InvalidInput {
                path: path.to_owned(),
                reason,
            })?;
        self.write_insert(path, &log).await
    }

    /// Writes `log` as one Parquet insert log at `path`, replacing any file there.
    /// Returns the bytes written. The log is not consumed, so a failed write can
    /// be retried. The file is encoded on blocking threads and streamed to the
    /// store as it is encoded ([`LocalSink`] for a local directory, [`UploadSink`]
    /// for S3): it is never held whole in memory.
    #[tracing::instrument(level = "debug", skip_all, fields(path = %path, rows = log.num_rows))]
    pub async fn write_insert(&self, path: &str, log: &InsertLog) -> Result<u64, StorageError> {
        let location = object_path(path)?;
        let started = Instant::now();
        let owned = log.clone();
        let local = self
            .local_root
            .as_ref()
            .map(|root| root.join(location.as_ref()));
        let store = self.store.clone();
        let target = location.clone();
        let outcome = tokio::task::spawn_blocking(move || match local {
            Some(file) => LocalSink::write(&file, |sink| owned.encode_into(sink)),
            None => UploadSink::write(store, target, |sink| owned.encode_into(sink)),
        })
        .await;
        let written = match outcome {
            Ok((Ok(()), written)) => {
                self.make_durable(path, &location).await?;
                written
            }
            Ok((Err(SinkError::Store(e)), _)) => return Err(self.object_error("write", path, e)),
            Ok((Err(SinkError::Format(e)), _)) => {
                return Err(StorageError::format(
                    path,
                    || format!("an insert log of collection {:?}", log.schema.name),
                    e,
                ));
            }
            Err(e) => {
                return Err(StorageError::InvalidInput {
                    path: path.to_owned(),
                    reason: format!("the Parquet encoder failed: {e}"),
                });
            }
        };
        tracing::debug!(bytes = written, elapsed = ?started.elapsed(), "wrote {path}");
        Ok(written)
    }

    /// Reads an insert log of `schema`: its rows and their timestamps.
    #[tracing::instrument(level = "debug", skip_all, fields(path = %path))]
    pub async fn read_insert_log(
        &self,
        path: &str,
        schema: &CollectionSchema,
    ) -> Result<(RowBatch, Vec<u64>), StorageError> {
        let bytes = self.get(path).await?;
        let owned = schema.clone();
        decode_off_thread(path, move || format::decode_insert_log(&owned, bytes))
            .await?
            .map_err(|e| {
                StorageError::format(
                    path,
                    || format!("an insert log of collection {:?}", schema.name),
                    e,
                )
            })
    }

    /// Writes (primary key, delete timestamp) records as one Parquet delete log.
    /// Returns the bytes written.
    #[tracing::instrument(level = "debug", skip_all, fields(path = %path, rows = tracing::field::Empty))]
    pub async fn write_delete_log<'a>(
        &self,
        path: &str,
        primary_keys: impl Into<KeysRef<'a>>,
        timestamps: &[u64],
    ) -> Result<u64, StorageError> {
        let primary_keys = primary_keys.into();
        tracing::Span::current().record("rows", primary_keys.len());
        let location = object_path(path)?;
        let encoded = format::encode_delete_log(primary_keys, timestamps)
            .map_err(|e| StorageError::format(path, delete_log_expected, e))?;
        self.put(path, &location, encoded).await
    }

    /// Reads a delete log: primary keys and their delete timestamps.
    #[tracing::instrument(level = "debug", skip_all, fields(path = %path))]
    pub async fn read_delete_log(&self, path: &str) -> Result<(Keys, Vec<u64>), StorageError> {
        let bytes = self.get(path).await?;
        decode_off_thread(path, move || format::decode_delete_log(bytes))
            .await?
            .map_err(|e| StorageError::format(path, delete_log_expected, e))
    }

    /// Writes an opaque file (an index), durably; returns its size.
    pub async fn write_blob(&self, path: &str, bytes: Vec<u8>) -> Result<u64, StorageError> {
        let location = object_path(path)?;
        self.put(path, &location, bytes).await
    }

    /// Reads an opaque file whole.
    pub async fn read_blob(&self, path: &str) -> Result<Bytes, StorageError> {
        self.get(path).await
    }

    /// Deletes the file at `path`; one already absent counts as deleted.
    pub async fn delete_file(&self, path: &str) -> Result<(), StorageError> {
        let location = object_path(path)?;
        match self.store.delete(&location).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.object_error("delete", path, e)),
        }
    }

    async fn put(
        &self,
        path: &str,
        location: &ObjectPath,
        encoded: Vec<u8>,
    ) -> Result<u64, StorageError> {
        let started = Instant::now();
        let len = encoded.len() as u64;
        self.store
            .put(location, PutPayload::from(Bytes::from(encoded)))
            .await
            .map_err(|e| self.object_error("write", path, e))?;
        self.make_durable(path, location).await?;
        tracing::debug!(bytes = len, elapsed = ?started.elapsed(), "wrote {path}");
        Ok(len)
    }

    /// Makes a file just written to a local store durable before anyone commits
    /// its path: object_store's `LocalFileSystem` renames a complete file into
    /// place but never fsyncs, so after a power loss a committed checkpoint could
    /// point past rows that are in no file. Syncs the file, then its directory and
    /// each one above it up to the root (new segment directories are created by
    /// the write). S3 answers a put only once the object is durable: nothing to do.
    async fn make_durable(&self, path: &str, location: &ObjectPath) -> Result<(), StorageError> {
        let Some(root) = self.local_root.clone() else {
            return Ok(());
        };
        let file = root.join(location.as_ref());
        let synced = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            std::fs::File::open(&file)?.sync_all()?;
            let mut dir = file.parent();
            while let Some(d) = dir.filter(|d| d.starts_with(&root)) {
                std::fs::File::open(d)?.sync_all()?;
                dir = d.parent();
            }
            Ok(())
        })
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        synced.map_err(|e| self.object_error("sync", path, local_store_error(e)))
    }

    async fn get(&self, path: &str) -> Result<Bytes, StorageError> {
        let location = object_path(path)?;
        let result = self
            .store
            .get(&location)
            .await
            .map_err(|e| self.object_error("read", path, e))?;
        result
            .bytes()
            .await
            .map_err(|e| self.object_error("read", path, e))
    }

    fn object_error(&self, op: &'static str, path: &str, e: object_store::Error) -> StorageError {
        // A write that finds nothing means the bucket is missing: an Object error.
        if let (object_store::Error::NotFound { .. }, "read") = (&e, op) {
            return StorageError::NotFound {
                path: path.to_owned(),
                store: self.description.clone(),
            };
        }
        StorageError::Object {
            op,
            path: path.to_owned(),
            store: self.description.clone(),
            transient: is_transient(&e),
            source: Box::new(e),
        }
    }
}

/// Bytes of one part of a multipart upload (S3 wants at least 5 MiB); a file
/// smaller than this goes up in one `put`.
const PART_BYTES: usize = 8 << 20;
/// Parts of one file uploading at once.
const PARTS_IN_FLIGHT: usize = 2;
/// Memory one insert-log write holds besides the rows it writes: the row groups
/// the Parquet encoders hold, the part being filled and the parts uploading. A
/// data node counts it against its memory limit.
pub const WRITE_MEMORY_BYTES: u64 =
    (format::ENCODE_MEMORY_BYTES + PART_BYTES * (1 + PARTS_IN_FLIGHT)) as u64;

/// Why a streamed write failed.
#[derive(Debug)]
enum SinkError {
    Format(FormatError),
    Store(object_store::Error),
}

/// A `std::io::Write` into an object store, for an encoder on a blocking thread:
/// the bytes go through object_store's `BufWriter` (one `put` for a small file; a
/// multipart upload of [`PART_BYTES`] parts, [`PARTS_IN_FLIGHT`] at a time, for a
/// large one), so at most a few parts are held in memory. The object appears,
/// whole, only when [`UploadSink::finish`] completes.
struct UploadSink {
    runtime: tokio::runtime::Handle,
    writer: object_store::buffered::BufWriter,
    written: u64,
    /// The store's error behind a failed write, kept for the caller (the encoder
    /// only sees an I/O error).
    failed: Option<object_store::Error>,
}

impl UploadSink {
    /// Streams what `encode` writes to `location`, on a blocking thread of the
    /// runtime; the object appears only if everything was written. Returns the
    /// outcome and the bytes written.
    fn write(
        store: Arc<dyn ObjectStore>,
        location: ObjectPath,
        encode: impl FnOnce(&mut Self) -> Result<(), FormatError>,
    ) -> (Result<(), SinkError>, u64) {
        let mut sink = Self::new(store, location);
        let outcome = match encode(&mut sink) {
            Ok(()) => sink.finish().map_err(SinkError::Store),
            Err(e) => {
                sink.abort();
                Err(sink
                    .failed
                    .take()
                    .map_or(SinkError::Format(e), SinkError::Store))
            }
        };
        (outcome, sink.written)
    }

    /// Call from the runtime (it keeps a handle to drive the upload).
    fn new(store: Arc<dyn ObjectStore>, location: ObjectPath) -> Self {
        Self {
            runtime: tokio::runtime::Handle::current(),
            writer: object_store::buffered::BufWriter::with_capacity(store, location, PART_BYTES)
                .with_max_concurrency(PARTS_IN_FLIGHT),
            written: 0,
            failed: None,
        }
    }

    fn finish(&mut self) -> Result<(), object_store::Error> {
        use tokio::io::AsyncWriteExt as _;
        self.runtime
            .block_on(self.writer.shutdown())
            .map_err(store_error)
    }

    fn abort(&mut self) {
        if let Err(e) = self.runtime.block_on(self.writer.abort()) {
            tracing::debug!(error = %e, "aborting an upload failed");
        }
    }
}

impl std::io::Write for UploadSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        use tokio::io::AsyncWriteExt as _;
        if self.failed.is_some() {
            return Err(std::io::Error::other("the upload failed"));
        }
        if let Err(e) = self.runtime.block_on(self.writer.write_all(buf)) {
            let message = e.to_string();
            self.failed = Some(store_error(e));
            return Err(std::io::Error::other(message));
        }
        self.written += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Bytes written to a local file between two starts of its writeback.
const WRITEBACK_BYTES: u64 = 16 << 20;

/// A `std::io::Write` into a local file, without object_store's upload buffer
/// (one copy less). The file is written under a temporary name beside its
/// target; every [`WRITEBACK_BYTES`] a helper thread `fdatasync`s what is
/// written so far, so that the disk works while the encoder does, and the final
/// fsync finds little left. Complete and synced, the file is renamed into place
/// (the caller then syncs its directories).
struct LocalSink {
    file: std::fs::File,
    written: u64,
    synced_at: u64,
    /// The first write error, as the disk gave it: the encoder sees the write fail
    /// but reports an error of its own, which would hide a full disk (transient)
    /// behind a format error (permanent).
    failed: Option<std::io::Error>,
    /// Wakes the helper; it syncs once per wake-up, however many were sent.
    writeback: Option<std::sync::mpsc::SyncSender<()>>,
    helper: Option<std::thread::JoinHandle<()>>,
}

/// A temporary file that is removed when this is dropped before
/// [`Temporary::rename_to`] succeeded: on any error, and on a panic of the encoder.
struct Temporary(Option<PathBuf>);

impl Temporary {
    fn rename_to(&mut self, target: &std::path::Path) -> std::io::Result<()> {
        if let Some(path) = &self.0 {
            std::fs::rename(path, target)?;
        }
        self.0 = None;
        Ok(())
    }
}

impl Drop for Temporary {
    fn drop(&mut self) {
        if let Some(path) = self.0.take()
            && let Err(e) = std::fs::remove_file(&path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(error = %e, path = %path.display(), "could not remove a temporary segment file; it is removed at the next start");
        }
    }
}

impl LocalSink {
    /// Writes what `encode` writes to `target` (replacing any file there), synced.
    fn write(
        target: &std::path::Path,
        encode: impl FnOnce(&mut Self) -> Result<(), FormatError>,
    ) -> (Result<(), SinkError>, u64) {
        let mut written = 0;
        let outcome = (|| {
            if let Some(dir) = target.parent() {
                std::fs::create_dir_all(dir).map_err(local_error)?;
            }
            let path = temporary_name(target);
            let mut sink = Self::create(&path).map_err(local_error)?;
            let mut temporary = Temporary(Some(path));
            let encoded = encode(&mut sink);
            written = sink.written;
            if let Some(e) = sink.failed.take() {
                return Err(local_error(e));
            }
            let synced = sink.finish();
            encoded.map_err(SinkError::Format)?;
            synced.map_err(local_error)?;
            temporary.rename_to(target).map_err(local_error)
        })();
        (outcome, written)
    }

    fn create(path: &std::path::Path) -> std::io::Result<Self> {
        let file = std::fs::File::create(path)?;
        let syncing = file.try_clone()?;
        let (writeback, wanted) = std::sync::mpsc::sync_channel::<()>(1);
        let helper = std::thread::Builder::new()
            .name("segment-writeback".into())
            .spawn(move || {
                // Errors surface in the final sync; this one only starts the disk early.
                while wanted.recv().is_ok() {
                    let _ = syncing.sync_data();
                }
            })?;
        Ok(Self {
            file,
            written: 0,
            synced_at: 0,
            failed: None,
            writeback: Some(writeback),
            helper: Some(helper),
        })
    }

    /// Stops the helper and syncs the whole file.
    fn finish(&mut self) -> std::io::Result<()> {
        self.writeback = None;
        if let Some(helper) = self.helper.take() {
            let _ = helper.join();
        }
        self.file.sync_all()
    }
}

impl Drop for LocalSink {
    fn drop(&mut self) {
        self.writeback = None;
        if let Some(helper) = self.helper.take() {
            let _ = helper.join();
        }
    }
}

impl std::io::Write for LocalSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = match self.file.write(buf) {
            Ok(n) => n,
            Err(e) => {
                if self.failed.is_none() && e.kind() != std::io::ErrorKind::Interrupted {
                    self.failed = Some(std::io::Error::new(e.kind(), e.to_string()));
                }
                return Err(e);
            }
        };
        self.written += n as u64;
        if self.written - self.synced_at >= WRITEBACK_BYTES {
            self.synced_at = self.written;
            if let Some(writeback) = &self.writeback {
                // Full: a sync is pending already and will cover these bytes too.
                let _ = writeback.try_send(());
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `dir/.name.<pid>-<run>-<n>.tmp` beside `target`: unique in this process
/// (`run` tells it from an earlier process with the same pid), hidden.
/// [`stale_temporary`] recognises the name.
fn temporary_name(target: &std::path::Path) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    target.with_file_name(format!(
        ".{name}.{}-{:x}-{n}.tmp",
        std::process::id(),
        this_run()
    ))
}

/// Tells this process from earlier ones with the same pid (a restarted container
/// often runs as pid 1 again): the time it first asked, in nanoseconds.
fn this_run() -> u64 {
    static RUN: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *RUN.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
    })
}

/// Whether `name` is a temporary file name of [`temporary_name`] left by a process
/// that is no longer running: one of this pid but another run, or one whose pid
/// has no entry under `proc_root`.
fn stale_temporary(name: &str, proc_root: &std::path::Path) -> bool {
    let Some(rest) = name.strip_prefix('.').and_then(|n| n.strip_suffix(".tmp")) else {
        return false;
    };
    let Some((_, tail)) = rest.rsplit_once('.') else {
        return false;
    };
    let mut parts = tail.split('-');
    let (Some(pid), Some(run), Some(n), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let (Ok(pid), Ok(run), Ok(_)) = (
        pid.parse::<u32>(),
        u64::from_str_radix(run, 16),
        n.parse::<u64>(),
    ) else {
        return false;
    };
    if pid == std::process::id() {
        run != this_run()
    } else {
        !proc_root.join(pid.to_string()).exists()
    }
}

/// Removes the stale temporary files under `root` (see [`stale_temporary`]);
/// returns how many. Unreadable directories are skipped.
fn remove_stale_temporaries_under(
    root: &std::path::Path,
    proc_root: &std::path::Path,
) -> std::io::Result<usize> {
    let mut removed = 0;
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                dirs.push(entry.path());
            } else if kind.is_file()
                && entry
                    .file_name()
                    .to_str()
                    .is_some_and(|name| stale_temporary(name, proc_root))
            {
                std::fs::remove_file(entry.path())?;
                removed += 1;
            }
        }
    }
    Ok(removed)
}

/// An I/O error of our own local-file code, as object_store's `LocalFileSystem`
/// reports its own: the transient/permanent classification reads either alike.
fn local_store_error(e: std::io::Error) -> object_store::Error {
    object_store::Error::Generic {
        store: "LocalFileSystem",
        source: Box::new(e),
    }
}

fn local_error(e: std::io::Error) -> SinkError {
    SinkError::Store(local_store_error(e))
}

/// The object store error inside an I/O error of the upload writer (or a generic
/// one around the I/O error when there is none).
fn store_error(e: std::io::Error) -> object_store::Error {
    if !e
        .get_ref()
        .is_some_and(|inner| inner.is::<object_store::Error>())
    {
        return generic(e);
    }
    let kind = e.kind();
    match e
        .into_inner()
        .map(|inner| inner.downcast::<object_store::Error>())
    {
        Some(Ok(store)) => *store,
        Some(Err(other)) => generic(std::io::Error::new(kind, other)),
        None => generic(std::io::Error::from(kind)),
    }
}

fn generic(e: std::io::Error) -> object_store::Error {
    object_store::Error::Generic {
        store: "upload",
        source: Box::new(e),
    }
}

/// Rows on their way to one insert log: Arrow record batches that took over the
/// memory of the [`RowBatch`]es pushed (no copy). Cloning shares that memory, so a
/// data node keeps its buffer in this form and retries a failed write with it.
#[derive(Debug, Clone)]
pub struct InsertLog {
    schema: CollectionSchema,
    layout: VectorLayout,
    batches: Vec<arrow_array::RecordBatch>,
    num_rows: usize,
    bytes: usize,
}

impl InsertLog {
    /// A log in the current format.
    pub fn new(schema: &CollectionSchema) -> Self {
        Self::with_layout(schema, VectorLayout::Packed)
    }

    /// A log whose vectors are laid out as `layout`: [`VectorLayout::List`]
    /// writes format version 1, for tests of old files and for benchmarks.
    pub fn with_layout(schema: &CollectionSchema, layout: VectorLayout) -> Self {
        Self {
            schema: schema.clone(),
            layout,
            batches: Vec::new(),
            num_rows: 0,
            bytes: 0,
        }
    }

    /// Appends rows (columns in schema field order) and each row's timestamp.
    /// Refuses, with the reason, rows that do not fit the schema; the log is then
    /// unchanged.
    pub fn push(&mut self, rows: RowBatch, timestamps: Vec<u64>) -> Result<(), String> {
        let batch = format::insert_log_batch(&self.schema, rows, timestamps, self.layout)
            .map_err(FormatError::into_message)?;
        self.num_rows += batch.num_rows();
        self.bytes += batch.get_array_memory_size();
        self.batches.push(batch);
        Ok(())
    }

    pub fn num_rows(&self) -> usize {
        self.num_rows
    }

    /// Memory held by the rows (allocated, not only used).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Encodes the log as one Parquet insert-log file into `sink`, on the calling
    /// thread (what [`SegmentStore::write_insert`] streams to the store). The
    /// ingest benchmark times it into `std::io::sink()` to separate encoding
    /// from I/O.
    pub fn encode<W: std::io::Write + Send>(&self, sink: W) -> Result<(), String> {
        self.encode_into(sink).map_err(FormatError::into_message)
    }

    fn encode_into<W: std::io::Write + Send>(&self, sink: W) -> Result<(), FormatError> {
        format::encode_insert_log(&self.schema, &self.batches, sink, self.layout)
    }
}

fn delete_log_expected() -> String {
    "a delete log".to_owned()
}

fn object_path(path: &str) -> Result<ObjectPath, StorageError> {
    let invalid = |reason: String| StorageError::InvalidPath {
        path: path.to_owned(),
        reason,
    };
    let parsed = ObjectPath::parse(path).map_err(|e| invalid(e.to_string()))?;
    if parsed.filename().is_none() {
        return Err(invalid("it names no file".into()));
    }
    Ok(parsed)
}

/// Decodes off the async threads (it is CPU-heavy). A panic inside (the decoder
/// meeting junk it does not expect) becomes a `Corrupt` error for `path`.
async fn decode_off_thread<T: Send + 'static>(
    path: &str,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, StorageError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| StorageError::Corrupt {
            path: path.to_owned(),
            reason: format!("the Parquet decoder failed: {e}"),
        })
}
