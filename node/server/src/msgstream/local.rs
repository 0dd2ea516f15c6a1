//! The embedded durable log of standalone mode: the insert, delete and dead-letter
//! logs in one redb file on local disk.
//!
//! Each channel of each log is a table from offset to payload, offsets from 0 with
//! no gaps. One writer thread takes every append waiting for it, writes them in one
//! transaction (fsync, quick repair on) and only then acknowledges them, so a kill -9
//! loses nothing acknowledged and costs one fsync per group, not per message. A
//! consumer reads committed records only. Retention follows the checkpoints: once a
//! checkpoint is committed, the records below it are dropped (standalone has one
//! data node, the only reader).
//!
//! The newest committed records of each channel also stay in memory ([`Tail`],
//! [`TAILS_BYTES`] shared by all tables) until the reader takes them, so that a
//! reader keeping up gets the payload the producer handed over instead of reading the
//! file back (a read transaction, a `pread` and a copy per record). A reader
//! further behind, or one that reads a record again, reads the file.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::{Notify, oneshot};

use super::{LogConsumer, LogProducer, LogRecord, Stream, StreamError};

/// `channels` -> the channel count; `end/{table}` -> the next offset of that table.
const META_TABLE: TableDefinition<&str, u64> = TableDefinition::new("log-meta");
/// The dead-letter table: offset -> `[key length u32 LE | key | payload]`. The
/// log tables (`insert-3`, `delete-0`): offset -> payload.
const DEAD_LETTER: &str = "dead-letter";
/// A writer transaction stops taking appends at this many bytes.
const GROUP_BYTES: usize = 32 << 20;
/// The most bytes of newest records kept in memory for the reader, shared
/// equally by the tables (8 MiB each at 3 channels), read or not.
const TAILS_BYTES: usize = 48 << 20;

/// What one table may keep when the logs have `channels` channels (an insert
/// and a delete table each).
fn tail_budget(channels: u32) -> usize {
    TAILS_BYTES / (2 * usize::try_from(channels.max(1)).unwrap_or(usize::MAX))
}
/// How long a consumer with nothing to read sleeps before looking again anyway.
const IDLE_POLL: Duration = Duration::from_millis(500);

fn table(name: &str) -> TableDefinition<'_, u64, &'static [u8]> {
    TableDefinition::new(name)
}

fn end_key(table: &str) -> String {
    format!("end/{table}")
}

/// Where an append goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Target {
    Log(Stream, u32),
    DeadLetter,
}

impl Target {
    /// The target of a table name (`insert-3`, `delete-0`, `dead-letter`).
    fn parse(table: &str) -> Option<Self> {
        if table == DEAD_LETTER {
            return Some(Self::DeadLetter);
        }
        let (stream, channel) = table.split_once('-')?;
        let stream = match stream {
            "insert" => Stream::Insert,
            "delete" => Stream::Delete,
            _ => return None,
        };
        Some(Self::Log(stream, channel.parse().ok()?))
    }

    fn table(self) -> String {
        match self {
            Self::Log(stream, channel) => format!("{}-{channel}", stream.name()),
            Self::DeadLetter => DEAD_LETTER.to_owned(),
        }
    }
}

enum Command {
    Append {
        target: Target,
        payload: Bytes,
        done: oneshot::Sender<Result<i64, StreamError>>,
    },
    /// Drop the records of a channel below an offset.
    Truncate {
        stream: Stream,
        channel: u32,
        below: u64,
    },
}

/// The newest committed records of one table, not taken by the reader yet:
/// offsets `first..first + records.len()`.
#[derive(Debug, Default)]
struct Tail {
    first: u64,
    records: VecDeque<Bytes>,
    bytes: usize,
}

impl Tail {
    /// Keeps a record just committed at `offset`, dropping the oldest beyond
    /// `budget` bytes (a reader that far behind reads the file; a record larger
    /// than the budget is not kept at all).
    fn push(&mut self, offset: u64, payload: Bytes, budget: usize) {
        if offset != self.first + self.records.len() as u64 {
            // The first record since the log was opened.
            self.records.clear();
            self.bytes = 0;
            self.first = offset;
        }
        self.bytes += payload.len();
        self.records.push_back(payload);
        while self.bytes > budget {
            self.pop_front();
        }
    }

    fn pop_front(&mut self) -> Option<Bytes> {
        let record = self.records.pop_front()?;
        self.bytes -= record.len();
        self.first += 1;
        Some(record)
    }

    /// The record at `offset`, if held; it and every record before it are
    /// dropped (the log has one reader, which reads in order).
    fn take(&mut self, offset: u64) -> Option<Bytes> {
        let skip = usize::try_from(offset.checked_sub(self.first)?).ok()?;
        if skip >= self.records.len() {
            return None;
        }
        for _ in 0..skip {
            self.pop_front();
        }
        self.pop_front()
    }

    /// Drops the records below `below` (a checkpoint passed them).
    fn drop_below(&mut self, below: u64) {
        while self.first < below && self.pop_front().is_some() {}
    }
}

/// What the writer thread shares with the producers and consumers.
#[derive(Debug)]
struct Shared {
    db: Arc<redb::Database>,
    path: PathBuf,
    /// The next offset of every table with records, as committed.
    ends: Mutex<HashMap<Target, u64>>,
    /// Fires after every commit and every assignment change.
    appended: Notify,
    /// The newest committed records of each log table, for the reader.
    tails: Mutex<HashMap<Target, Tail>>,
    /// Channels of each log (0 before `ensure`).
    channels: std::sync::atomic::AtomicU32,
    /// Why the last group failed to commit; `None` after a successful one.
    last_error: Mutex<Option<String>>,
}

/// The open log. Dropping the last handle stops the writer thread (after the
/// appends already queued) and closes the file.
#[derive(Debug)]
struct Inner {
    shared: Arc<Shared>,
    /// `None` only while dropping.
    writer: Option<std::sync::mpsc::Sender<Command>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::ops::Deref for Inner {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.shared
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the queue ends the writer thread once it has written what is queued.
        drop(self.writer.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Inner {
    fn send(&self, command: Command) -> Result<(), StreamError> {
        self.writer
            .as_ref()
            .ok_or_else(|| self.error("the log is closing"))?
            .send(command)
            .map_err(|_| self.error("the writer thread has stopped"))
    }
}

fn local_error(path: &Path, reason: impl std::fmt::Display) -> StreamError {
    StreamError::Local {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

impl Shared {
    fn error(&self, reason: impl std::fmt::Display) -> StreamError {
        local_error(&self.path, reason)
    }

    fn ends(&self) -> MutexGuard<'_, HashMap<Target, u64>> {
        self.ends.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn tails(&self) -> MutexGuard<'_, HashMap<Target, Tail>> {
        self.tails.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps what `group` committed (its appends at `offsets`) for the reader.
    fn keep(&self, group: &[Command], offsets: &[u64]) {
        let budget = tail_budget(self.channels.load(std::sync::atomic::Ordering::Acquire));
        let mut tails = self.tails();
        let mut offsets = offsets.iter();
        for command in group {
            match command {
                Command::Append {
                    target, payload, ..
                } => {
                    let Some(&offset) = offsets.next() else { break };
                    if matches!(target, Target::Log(..)) {
                        tails
                            .entry(*target)
                            .or_default()
                            .push(offset, payload.clone(), budget);
                    }
                }
                Command::Truncate {
                    stream,
                    channel,
                    below,
                } => {
                    if let Some(tail) = tails.get_mut(&Target::Log(*stream, *channel)) {
                        tail.drop_below(*below);
                    }
                }
            }
        }
    }
}

/// The embedded log. Cheap to clone; one per process (the file is locked).
#[derive(Debug, Clone)]
pub struct LocalLog {
    inner: Arc<Inner>,
}

impl LocalLog {
    /// Opens (or creates) the log file and starts its writer thread.
    pub fn open(path: &Path) -> Result<Self, StreamError> {
        let error = |reason: String| local_error(path, reason);
        let db = redb::Database::builder()
            .set_cache_size(32 << 20)
            .create(path)
            .map_err(|e| match e {
                redb::DatabaseError::DatabaseAlreadyOpen => error(
                    "it is in use by another process (is a standalone server already running on this data dir?)"
                        .into(),
                ),
                other => error(other.to_string()),
            })?;
        let mut ends = HashMap::new();
        let channels;
        {
            let mut txn = db.begin_write().map_err(|e| error(e.to_string()))?;
            txn.set_quick_repair(true);
            txn.open_table(META_TABLE)
                .map_err(|e| error(e.to_string()))?;
            txn.commit().map_err(|e| error(e.to_string()))?;
            let read = db.begin_read().map_err(|e| error(e.to_string()))?;
            let meta = read
                .open_table(META_TABLE)
                .map_err(|e| error(e.to_string()))?;
            channels = meta
                .get("channels")
                .map_err(|e| error(e.to_string()))?
                .map_or(0, |v| u32::try_from(v.value()).unwrap_or(u32::MAX));
            // Every table's end, whatever the channel count says.
            for entry in meta
                .range("end/".."end0")
                .map_err(|e| error(e.to_string()))?
            {
                let (k, v) = entry.map_err(|e| error(e.to_string()))?;
                let name = k.value().trim_start_matches("end/").to_owned();
                let target = Target::parse(&name).ok_or_else(|| {
                    error(format!("unknown table {name:?} in the log's metadata"))
                })?;
                ends.insert(target, v.value());
            }
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let shared = Arc::new(Shared {
            db: Arc::new(db),
            path: path.to_owned(),
            ends: Mutex::new(ends),
            appended: Notify::new(),
            tails: Mutex::new(HashMap::new()),
            channels: std::sync::atomic::AtomicU32::new(channels),
            last_error: Mutex::new(None),
        });
        let writer = shared.clone();
        let thread = std::thread::Builder::new()
            .name("embedded-log-writer".into())
            .spawn(move || write_loop(&writer, &rx))
            .map_err(|e| error(format!("cannot start the writer thread: {e}")))?;
        tracing::info!(path = %path.display(), "opened the embedded log");
        Ok(Self {
            inner: Arc::new(Inner {
                shared,
                writer: Some(tx),
                thread: Some(thread),
            }),
        })
    }

    /// The dead-lettered messages from `from` on, at most `limit`: offset, key, payload.
    pub fn dead_letters(
        &self,
        from: u64,
        limit: usize,
    ) -> Result<Vec<(u64, String, Vec<u8>)>, StreamError> {
        let inner = &self.inner;
        let read = inner.db.begin_read().map_err(|e| inner.error(e))?;
        let table = match read.open_table(table(DEAD_LETTER)) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(inner.error(e)),
        };
        let mut out = Vec::new();
        for entry in table.range(from..).map_err(|e| inner.error(e))?.take(limit) {
            let (k, v) = entry.map_err(|e| inner.error(e))?;
            let raw = v.value();
            let len = raw
                .get(..4)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .map_or(0, |b| u32::from_le_bytes(b) as usize);
            let key = raw.get(4..4 + len).unwrap_or_default();
            let payload = raw.get(4 + len..).unwrap_or_default();
            out.push((
                k.value(),
                String::from_utf8_lossy(key).into_owned(),
                payload.to_vec(),
            ));
        }
        Ok(out)
    }
}

/// The writer thread: groups waiting appends into one transaction each. Ends when
/// the log is dropped.
fn write_loop(inner: &Shared, rx: &std::sync::mpsc::Receiver<Command>) {
    while let Ok(first) = rx.recv() {
        let mut bytes = match &first {
            Command::Append { payload, .. } => payload.len(),
            Command::Truncate { .. } => 0,
        };
        let mut group = vec![first];
        while bytes < GROUP_BYTES
            && let Ok(next) = rx.try_recv()
        {
            if let Command::Append { payload, .. } = &next {
                bytes += payload.len();
            }
            group.push(next);
        }
        let mut ends = inner.ends().clone();
        match write_group(&inner.db, &group, &mut ends) {
            Ok(offsets) => {
                inner.keep(&group, &offsets);
                *inner.ends() = ends;
                *inner.last_error.lock().unwrap_or_else(|p| p.into_inner()) = None;
                let mut offsets = offsets.into_iter();
                for command in group {
                    if let Command::Append { done, .. } = command
                        && let Some(offset) = offsets.next()
                    {
                        let _ = done.send(Ok(i64::try_from(offset).unwrap_or(i64::MAX)));
                    }
                }
                inner.appended.notify_waiters();
            }
            Err(e) => {
                let reason = e.to_string();
                *inner.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason.clone());
                tracing::error!(path = %inner.path.display(), error = %reason, "embedded log write failed; nothing of this group is acknowledged");
                for command in group {
                    if let Command::Append { done, .. } = command {
                        let _ = done.send(Err(inner.error(&reason)));
                    }
                }
            }
        }
    }
}

/// Writes one group in one transaction; returns the offset of each append, in order.
fn write_group(
    db: &redb::Database,
    group: &[Command],
    ends: &mut HashMap<Target, u64>,
) -> Result<Vec<u64>, redb::Error> {
    let mut txn = db.begin_write()?;
    txn.set_quick_repair(true);
    let mut offsets = Vec::new();
    let mut touched = Vec::new();
    for command in group {
        match command {
            Command::Append {
                target, payload, ..
            } => {
                let end = ends.entry(*target).or_insert(0);
                let offset = *end;
                txn.open_table(table(&target.table()))?
                    .insert(offset, payload.as_ref())?;
                *end += 1;
                offsets.push(offset);
                if !touched.contains(target) {
                    touched.push(*target);
                }
            }
            Command::Truncate {
                stream,
                channel,
                below,
            } => {
                let name = Target::Log(*stream, *channel).table();
                txn.open_table(table(&name))?
                    .retain_in(..*below, |_, _| false)?;
            }
        }
    }
    {
        let mut meta = txn.open_table(META_TABLE)?;
        for target in touched {
            meta.insert(end_key(&target.table()).as_str(), ends[&target])?;
        }
    }
    txn.commit()?;
    Ok(offsets)
}

#[async_trait::async_trait]
impl super::Log for LocalLog {
    fn describe(&self) -> String {
        format!("embedded log file {}", self.inner.path.display())
    }

    async fn ensure(&self, channels: u32) -> Result<(), StreamError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut txn = inner.db.begin_write().map_err(|e| inner.error(e))?;
            txn.set_quick_repair(true);
            {
                let mut meta = txn.open_table(META_TABLE).map_err(|e| inner.error(e))?;
                let existing = meta
                    .get("channels")
                    .map_err(|e| inner.error(e))?
                    .map(|v| v.value());
                match existing {
                    Some(n) if n == u64::from(channels) => return Ok(()),
                    Some(n) => {
                        return Err(StreamError::PartitionMismatch {
                            topic: inner.path.display().to_string(),
                            actual: usize::try_from(n).unwrap_or(usize::MAX),
                            expected: channels,
                        });
                    }
                    None => {
                        meta.insert("channels", u64::from(channels))
                            .map_err(|e| inner.error(e))?;
                    }
                }
            }
            txn.commit().map_err(|e| inner.error(e))?;
            inner
                .channels
                .store(channels, std::sync::atomic::Ordering::Release);
            tracing::info!(channels, path = %inner.path.display(), "created the embedded insert and delete logs");
            Ok(())
        })
        .await
        .map_err(|e| self.inner.error(e))?
    }

    async fn channel_count(&self) -> Result<u32, StreamError> {
        match self
            .inner
            .channels
            .load(std::sync::atomic::Ordering::Acquire)
        {
            0 => Err(StreamError::MissingTopic(
                self.inner.path.display().to_string(),
            )),
            n => Ok(n),
        }
    }

    /// Ready while the writer thread runs and its last group committed.
    async fn probe(&self) -> Result<(), StreamError> {
        let finished = self
            .inner
            .thread
            .as_ref()
            .is_none_or(std::thread::JoinHandle::is_finished);
        if finished {
            return Err(self.inner.error("the writer thread has stopped"));
        }
        let failed = self
            .inner
            .last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        match failed {
            Some(reason) => Err(self.inner.error(format!("the last write failed: {reason}"))),
            None => Ok(()),
        }
    }

    fn producer(&self) -> Result<Arc<dyn LogProducer>, StreamError> {
        Ok(Arc::new(LocalProducer {
            inner: self.inner.clone(),
        }))
    }

    fn consumer(
        &self,
        _group: &str,
        _prefetch_bytes: u64,
    ) -> Result<Arc<dyn LogConsumer>, StreamError> {
        Ok(Arc::new(LocalConsumer {
            inner: self.inner.clone(),
            cursors: Mutex::new(Cursors::default()),
        }))
    }
}

#[derive(Debug)]
struct LocalProducer {
    inner: Arc<Inner>,
}

impl LocalProducer {
    async fn append(&self, target: Target, payload: Bytes) -> Result<i64, StreamError> {
        super::check_size(&payload)?;
        let (done, acked) = oneshot::channel();
        self.inner.send(Command::Append {
            target,
            payload,
            done,
        })?;
        acked.await.map_err(|_| {
            self.inner
                .error("the writer thread stopped before committing")
        })?
    }
}

#[async_trait::async_trait]
impl LogProducer for LocalProducer {
    async fn send(&self, stream: Stream, channel: u32, payload: Bytes) -> Result<i64, StreamError> {
        let channels = self
            .inner
            .channels
            .load(std::sync::atomic::Ordering::Acquire);
        if channel >= channels {
            return Err(self.inner.error(format!(
                "channel {channel} does not exist; the log has channels 0..{channels}"
            )));
        }
        self.append(Target::Log(stream, channel), payload).await
    }

    async fn dead_letter(&self, key: &str, payload: &[u8]) -> Result<(), StreamError> {
        let mut record = Vec::with_capacity(4 + key.len() + payload.len());
        record.extend_from_slice(&u32::try_from(key.len()).unwrap_or(u32::MAX).to_le_bytes());
        record.extend_from_slice(key.as_bytes());
        record.extend_from_slice(payload);
        self.append(Target::DeadLetter, record.into())
            .await
            .map(drop)
    }
}

/// A read position. A read counts only if its cursor is still there, unchanged,
/// when it returns; one that raced an `assign` elsewhere is thrown away (one that
/// raced an `assign` to the same offset reads the same record anyway).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cursor {
    stream: Stream,
    channel: u32,
    next: u64,
}

#[derive(Debug, Default)]
struct Cursors {
    list: Vec<Cursor>,
    /// Where the next read starts, so channels take turns.
    turn: usize,
}

#[derive(Debug)]
struct LocalConsumer {
    inner: Arc<Inner>,
    cursors: Mutex<Cursors>,
}

impl LocalConsumer {
    fn cursors(&self) -> MutexGuard<'_, Cursors> {
        self.cursors.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Where [`Shared::read_tail`] found the next record.
enum TailRead {
    /// The record at a cursor's position.
    Found(Cursor, Bytes),
    /// Cursor `i` of those asked has a record that is not in memory any more:
    /// read the file from that cursor on.
    File(usize),
    /// No cursor has a committed record to read.
    Nothing,
}

impl Shared {
    /// The record at the first cursor (in order) that has one, from memory.
    fn read_tail(&self, cursors: &[Cursor]) -> TailRead {
        let mut tails = self.tails();
        for (i, cursor) in cursors.iter().enumerate() {
            let target = Target::Log(cursor.stream, cursor.channel);
            if let Some(payload) = tails.get_mut(&target).and_then(|t| t.take(cursor.next)) {
                return TailRead::Found(*cursor, payload);
            }
            if cursor.next < self.ends().get(&target).copied().unwrap_or(0) {
                return TailRead::File(i);
            }
        }
        TailRead::Nothing
    }
}

/// The first record at or after each cursor's position, trying them in order.
fn read_first(
    db: &redb::Database,
    cursors: &[Cursor],
) -> Result<Option<(Cursor, u64, Bytes)>, redb::Error> {
    let read = db.begin_read()?;
    for cursor in cursors {
        let name = Target::Log(cursor.stream, cursor.channel).table();
        let table = match read.open_table(table(&name)) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => continue,
            Err(e) => return Err(e.into()),
        };
        if let Some(entry) = table.range(cursor.next..)?.next() {
            let (k, v) = entry?;
            return Ok(Some((*cursor, k.value(), Bytes::from(v.value().to_vec()))));
        }
    }
    Ok(None)
}

#[async_trait::async_trait]
impl LogConsumer for LocalConsumer {
    fn assign(&self, channel: u32, insert_next: i64, delete_next: i64) -> Result<(), StreamError> {
        let mut cursors = self.cursors();
        cursors.list.retain(|c| c.channel != channel);
        for (stream, next) in [(Stream::Insert, insert_next), (Stream::Delete, delete_next)] {
            cursors.list.push(Cursor {
                stream,
                channel,
                next: u64::try_from(next).unwrap_or(0),
            });
        }
        drop(cursors);
        self.inner.appended.notify_waiters();
        Ok(())
    }

    fn unassign(&self, channel: u32) -> Result<(), StreamError> {
        self.cursors().list.retain(|c| c.channel != channel);
        Ok(())
    }

    async fn recv(&self) -> Result<LogRecord<'_>, StreamError> {
        loop {
            let notified = self.inner.appended.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let order: Vec<Cursor> = {
                let mut cursors = self.cursors();
                let n = cursors.list.len();
                cursors.turn = cursors.turn.wrapping_add(1);
                let start = if n == 0 { 0 } else { cursors.turn % n };
                cursors.list[start..]
                    .iter()
                    .chain(&cursors.list[..start])
                    .copied()
                    .collect()
            };
            let found = match self.inner.read_tail(&order) {
                TailRead::Found(cursor, payload) => Some((cursor, cursor.next, payload)),
                TailRead::Nothing => None,
                TailRead::File(from) => {
                    let db = self.inner.db.clone();
                    let rest = order[from..].to_vec();
                    tokio::task::spawn_blocking(move || read_first(&db, &rest))
                        .await
                        .map_err(|e| self.inner.error(e))?
                        .map_err(|e| self.inner.error(e))?
                }
            };
            if let Some((read_at, offset, payload)) = found {
                let mut cursors = self.cursors();
                if let Some(c) = cursors.list.iter_mut().find(|c| **c == read_at) {
                    c.next = offset + 1;
                    return Ok(LogRecord::shared(
                        read_at.stream,
                        read_at.channel,
                        i64::try_from(offset).unwrap_or(i64::MAX),
                        payload,
                    ));
                }
                continue;
            }
            tokio::select! {
                () = notified => {}
                () = tokio::time::sleep(IDLE_POLL) => {}
            }
        }
    }

    async fn high_watermark(&self, stream: Stream, channel: u32) -> Result<i64, StreamError> {
        let end = self
            .inner
            .ends()
            .get(&Target::Log(stream, channel))
            .copied()
            .unwrap_or(0);
        Ok(i64::try_from(end).unwrap_or(i64::MAX))
    }

    fn checkpointed(&self, channel: u32, insert_next: i64, delete_next: i64) {
        for (stream, next) in [(Stream::Insert, insert_next), (Stream::Delete, delete_next)] {
            let below = u64::try_from(next).unwrap_or(0);
            if below > 0
                && let Err(e) = self.inner.send(Command::Truncate {
                    stream,
                    channel,
                    below,
                })
            {
                tracing::warn!(error = %e, channel, "cannot drop consumed log records");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Log, MAX_MESSAGE_BYTES};
    use super::*;

    /// A log file in a directory removed when the returned guard drops.
    fn temp(name: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::Builder::new()
            .prefix(&format!("milvus-like-local-log-{name}-"))
            .tempdir()
            .expect("temp dir");
        let path = dir.path().join("log.redb");
        (dir, path)
    }

    async fn next(consumer: &dyn LogConsumer) -> (Stream, u32, i64, Vec<u8>) {
        let r = tokio::time::timeout(Duration::from_secs(5), consumer.recv())
            .await
            .expect("a record within 5 s")
            .expect("recv");
        (r.stream, r.channel, r.offset, r.payload().to_vec())
    }

    #[tokio::test]
    async fn appends_are_read_back_in_order_and_survive_reopen() {
        let (_dir, path) = temp("reopen");
        {
            let log = LocalLog::open(&path).expect("open");
            log.ensure(2).await.expect("ensure");
            assert_eq!(log.channel_count().await.expect("count"), 2);
            let producer = log.producer().expect("producer");
            let sends = (0..50u8).map(|i| {
                let producer = producer.clone();
                async move {
                    producer
                        .send(Stream::Insert, 1, Bytes::copy_from_slice(&[i]))
                        .await
                }
            });
            let offsets: Vec<i64> = futures::future::try_join_all(sends).await.expect("sends");
            let mut sorted = offsets.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, (0..50).collect::<Vec<i64>>());
            assert_eq!(
                producer
                    .send(Stream::Delete, 1, Bytes::from_static(b"d"))
                    .await
                    .expect("send"),
                0
            );
        }
        let log = LocalLog::open(&path).expect("reopen");
        assert!(matches!(
            log.ensure(3).await,
            Err(StreamError::PartitionMismatch { actual: 2, .. })
        ));
        let consumer = log.consumer("g", 0).expect("consumer");
        assert_eq!(
            consumer
                .high_watermark(Stream::Insert, 1)
                .await
                .expect("hw"),
            50
        );
        consumer.assign(1, 10, 0).expect("assign");
        let mut inserts = Vec::new();
        let mut deletes = 0;
        while inserts.len() < 40 || deletes < 1 {
            let (stream, channel, offset, payload) = next(consumer.as_ref()).await;
            assert_eq!(channel, 1);
            match stream {
                Stream::Insert => inserts.push((offset, payload)),
                Stream::Delete => deletes += 1,
            }
        }
        assert_eq!(
            inserts.iter().map(|(o, _)| *o).collect::<Vec<_>>(),
            (10..50).collect::<Vec<i64>>()
        );
        // Appends after open get the next offsets.
        let producer = log.producer().expect("producer");
        assert_eq!(
            producer
                .send(Stream::Insert, 1, Bytes::from_static(b"x"))
                .await
                .expect("send"),
            50
        );
        assert_eq!(next(consumer.as_ref()).await.2, 50);
    }

    #[tokio::test]
    async fn checkpoints_drop_consumed_records_and_reassignment_restarts() {
        let (_dir, path) = temp("truncate");
        let log = LocalLog::open(&path).expect("open");
        log.ensure(1).await.expect("ensure");
        let producer = log.producer().expect("producer");
        for i in 0..10u8 {
            producer
                .send(Stream::Insert, 0, Bytes::copy_from_slice(&[i]))
                .await
                .expect("send");
        }
        let consumer = log.consumer("g", 0).expect("consumer");
        consumer.assign(0, 0, 0).expect("assign");
        for i in 0..10 {
            assert_eq!(next(consumer.as_ref()).await.2, i);
        }
        consumer.checkpointed(0, 6, 0);
        // The truncation is applied with the next group.
        producer
            .send(Stream::Insert, 0, Bytes::from_static(b"n"))
            .await
            .expect("send");
        consumer.assign(0, 0, 0).expect("re-assign");
        // Below the checkpoint is gone: reading resumes at the first kept record.
        assert_eq!(next(consumer.as_ref()).await.2, 6);
        consumer.unassign(0).expect("unassign");
        assert!(
            tokio::time::timeout(Duration::from_millis(700), consumer.recv())
                .await
                .is_err(),
            "nothing is read from an unassigned channel"
        );
    }

    #[test]
    fn a_tail_keeps_the_newest_records_until_taken() {
        let mut tail = Tail::default();
        let mib = |i: u8| Bytes::from(vec![i; 1 << 20]);
        for i in 0..10u8 {
            tail.push(u64::from(i), mib(i), 8 << 20);
        }
        // 8 MiB kept: records 2..10.
        assert_eq!(
            (tail.first, tail.records.len(), tail.bytes),
            (2, 8, 8 << 20)
        );
        assert_eq!(tail.take(1), None, "dropped for room");
        assert_eq!(tail.take(10), None, "not written yet");
        assert_eq!(tail.take(4).map(|r| r[0]), Some(4));
        assert_eq!(
            tail.take(3),
            None,
            "taken records and those before them are gone"
        );
        assert_eq!((tail.first, tail.records.len()), (5, 5));
        tail.drop_below(7);
        assert_eq!(tail.take(7).map(|r| r[0]), Some(7));
        // A record after a gap starts afresh.
        tail.push(20, Bytes::from_static(b"x"), 8 << 20);
        assert_eq!((tail.first, tail.records.len(), tail.bytes), (20, 1, 1));
        assert_eq!(tail.take(20), Some(Bytes::from_static(b"x")));
        // A record over the budget is not kept.
        tail.push(21, mib(21), 1000);
        assert_eq!((tail.records.len(), tail.bytes), (0, 0));
        assert_eq!(tail.take(21), None);
    }

    #[test]
    fn all_tails_together_stay_within_their_budget() {
        assert_eq!(tail_budget(0), TAILS_BYTES / 2);
        assert_eq!(tail_budget(3), 8 << 20);
        for channels in [1, 3, 4, 64, 1024] {
            assert!(tail_budget(channels) * 2 * channels as usize <= TAILS_BYTES);
        }
    }

    /// A reader further behind than the tail reads the file, then the tail, in order.
    #[tokio::test]
    async fn a_reader_behind_the_tail_reads_the_file_then_memory() {
        let (_dir, path) = temp("behind");
        let log = LocalLog::open(&path).expect("open");
        log.ensure(1).await.expect("ensure");
        let producer = log.producer().expect("producer");
        let payload = |i: u8| Bytes::from(vec![i; (1 << 20) + usize::from(i)]);
        for i in 0..12u8 {
            producer
                .send(Stream::Insert, 0, payload(i))
                .await
                .expect("send");
        }
        let consumer = log.consumer("g", 0).expect("consumer");
        consumer.assign(0, 0, 0).expect("assign");
        for i in 0..12u8 {
            let record = consumer.recv().await.expect("recv");
            assert_eq!(record.offset, i64::from(i));
            assert!(record.payload() == payload(i), "record {i}");
        }
        producer
            .send(Stream::Insert, 0, payload(12))
            .await
            .expect("send");
        assert!(consumer.recv().await.expect("recv").payload() == payload(12));
    }

    #[tokio::test]
    async fn dead_letters_and_limits() {
        let (_dir, path) = temp("dead");
        let log = LocalLog::open(&path).expect("open");
        log.ensure(1).await.expect("ensure");
        assert!(matches!(
            LocalLog::open(&path),
            Err(StreamError::Local { reason, .. }) if reason.contains("in use")
        ));
        let producer = log.producer().expect("producer");
        producer
            .dead_letter("Insert/0/7: junk", b"\xff\x00")
            .await
            .expect("dead letter");
        let dead = log.dead_letters(0, 10).expect("read");
        assert_eq!(
            dead,
            vec![(0, "Insert/0/7: junk".to_owned(), vec![0xff, 0])]
        );
        let big = vec![0u8; MAX_MESSAGE_BYTES + 1];
        assert!(matches!(
            producer
                .send(Stream::Insert, 0, Bytes::copy_from_slice(&big))
                .await,
            Err(StreamError::TooLarge { .. })
        ));
    }
}
