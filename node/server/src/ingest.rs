//! Which records of the insert and delete logs count: the checks every reader of
//! the logs applies, so that the data nodes (which write the records into files)
//! and the query nodes to come (which serve the same records from the stream
//! until those files exist) agree on every record.
//!
//! A record is either taken, junk (dead-lettered by the data node, skipped by
//! every reader), or not checkable now because a coordinator did not answer
//! (read again later: dropping it would take rows out of the collection).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::Either;

use milvus_like_api::leader_pool::LeaderPool;
use milvus_like_api::proto::data_coord_client::DataCoordClient;
use milvus_like_api::proto::{DeleteBatch, InsertBatch, ListSegmentsRequest};
use milvus_like_api::root_coord_link::RootCoordLink;
use milvus_like_api::schema::CollectionSchema;

use crate::columns::RowBatch;
use crate::keys::Keys;
use crate::msgstream::{LogRecord, Stream};

/// What a record of the logs is.
#[derive(Debug)]
pub enum Checked {
    /// An insert batch whose rows fit its collection's schema and whose segment
    /// is one the data coordinator made for the batch's collection, partition and
    /// channel. The batch's columns moved into `rows`.
    Insert {
        batch: InsertBatch,
        schema: CollectionSchema,
        rows: RowBatch,
    },
    /// A delete batch of one kind of keys; they moved into `keys`.
    Delete { batch: DeleteBatch, keys: Keys },
    /// Not a record any reader may take, and why.
    Junk(String),
}

/// A coordinator did not answer (away, slow, or failing): the record may be fine;
/// read it again later. Says what could not be checked.
#[derive(Debug)]
pub struct Later(pub String);

/// Where a segment belongs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SegmentHome {
    collection: i64,
    partition: i64,
    channel: u32,
}

/// Checks records against the root coordinator's schemas and the data
/// coordinator's segments (both cached).
#[derive(Debug)]
pub struct RecordChecker {
    root: Arc<RootCoordLink>,
    datacoord: LeaderPool,
    /// Where each segment seen in the log belongs, as the data coordinator lists
    /// it. Listed once per collection and new segment.
    segments: std::sync::Mutex<HashMap<i64, SegmentHome>>,
}

/// Why a batch could not be checked.
enum CheckError {
    Unreachable(String),
    Refused(String),
}

impl RecordChecker {
    pub fn new(root: Arc<RootCoordLink>, datacoord: LeaderPool) -> Self {
        Self {
            root,
            datacoord,
            segments: std::sync::Mutex::default(),
        }
    }

    /// Decodes and checks a record read from `record.channel`. Decodes before it
    /// waits, so the check does not hold the record.
    pub fn check(
        &self,
        record: &LogRecord<'_>,
    ) -> impl std::future::Future<Output = Result<Checked, Later>> + Send + '_ {
        let channel = record.channel;
        match record.stream {
            Stream::Insert => Either::Left(self.insert(channel, record.decode())),
            Stream::Delete => {
                Either::Right(std::future::ready(Ok(delete(channel, record.decode()))))
            }
        }
    }

    async fn insert(
        &self,
        channel: u32,
        decoded: Result<InsertBatch, prost::DecodeError>,
    ) -> Result<Checked, Later> {
        let mut batch = match decoded {
            Ok(b) => b,
            Err(e) => return Ok(Checked::Junk(format!("not an InsertBatch: {e}"))),
        };
        if batch.channel != channel {
            return Ok(Checked::Junk(format!(
                "batch for channel {} on channel {channel}",
                batch.channel
            )));
        }
        if batch.segment_id <= 0 || batch.first_ts == 0 {
            return Ok(Checked::Junk("batch without segment or timestamp".into()));
        }
        let checked = match self.schema(batch.collection_id).await {
            Ok(schema) => self.check_segment(&batch).await.map(|()| schema),
            Err(e) => Err(e),
        };
        let schema = match checked {
            Ok(schema) => schema,
            Err(CheckError::Refused(reason)) => return Ok(Checked::Junk(reason)),
            Err(CheckError::Unreachable(reason)) => return Err(Later(reason)),
        };
        let columns = std::mem::take(&mut batch.columns);
        Ok(
            match RowBatch::from_wire(&schema, columns, batch.num_rows as usize) {
                Ok(rows) => Checked::Insert {
                    batch,
                    schema,
                    rows,
                },
                Err(e) => Checked::Junk(e.to_string()),
            },
        )
    }

    /// The schema of a collection, from the root coordinator (cached there). A
    /// batch is junk only when the root coordinator answers that its collection
    /// does not exist, or its schema is invalid.
    async fn schema(&self, collection: i64) -> Result<CollectionSchema, CheckError> {
        let info = self.root.collection(collection).await.map_err(|s| {
            let reason = format!("collection {collection}: {}", s.message());
            if s.code() == tonic::Code::NotFound {
                CheckError::Refused(reason)
            } else {
                CheckError::Unreachable(reason)
            }
        })?;
        let schema = info
            .schema
            .ok_or_else(|| CheckError::Refused("the collection has no schema".into()))?;
        CollectionSchema::try_from(schema).map_err(|e| CheckError::Refused(e.to_string()))
    }

    /// Checks that the batch's segment is one the data coordinator made, for the
    /// batch's collection, partition and channel (the coordinator lists a segment
    /// before any proxy may write to it).
    async fn check_segment(&self, b: &InsertBatch) -> Result<(), CheckError> {
        let cached = self.cached_segment(b.segment_id);
        let home = match cached {
            Some(home) => home,
            None => {
                self.list_segments(b.collection_id).await?;
                self.cached_segment(b.segment_id).ok_or_else(|| {
                    CheckError::Refused(format!(
                        "segment {} is not a segment of collection {}",
                        b.segment_id, b.collection_id
                    ))
                })?
            }
        };
        let claimed = SegmentHome {
            collection: b.collection_id,
            partition: b.partition_id,
            channel: b.channel,
        };
        if home == claimed {
            Ok(())
        } else {
            Err(CheckError::Refused(format!(
                "segment {} belongs to collection {} partition {} channel {}, not to the batch's \
                 collection {} partition {} channel {}",
                b.segment_id,
                home.collection,
                home.partition,
                home.channel,
                claimed.collection,
                claimed.partition,
                claimed.channel
            )))
        }
    }

    fn cached_segment(&self, id: i64) -> Option<SegmentHome> {
        self.segments
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .copied()
    }

    async fn list_segments(&self, collection: i64) -> Result<(), CheckError> {
        let listed = self
            .datacoord
            .call(Duration::from_secs(10), |c| async move {
                DataCoordClient::new(c)
                    .list_segments(ListSegmentsRequest {
                        collection_id: collection,
                    })
                    .await
            })
            .await
            .map_err(|s| {
                CheckError::Unreachable(format!(
                    "listing the segments of collection {collection}: {}",
                    s.message()
                ))
            })?
            .into_inner();
        let mut segments = self.segments.lock().unwrap_or_else(|p| p.into_inner());
        for s in listed.segments {
            segments.insert(
                s.segment_id,
                SegmentHome {
                    collection: s.collection_id,
                    partition: s.partition_id,
                    channel: s.channel,
                },
            );
        }
        Ok(())
    }
}

fn delete(channel: u32, decoded: Result<DeleteBatch, prost::DecodeError>) -> Checked {
    match decoded {
        Err(e) => Checked::Junk(format!("not a DeleteBatch: {e}")),
        Ok(b) if b.channel != channel => Checked::Junk(format!(
            "batch for channel {} on channel {channel}",
            b.channel
        )),
        Ok(b) if b.first_ts == 0 => Checked::Junk("delete batch without timestamp".into()),
        Ok(mut b) => {
            let ints = std::mem::take(&mut b.primary_keys);
            let strings = std::mem::take(&mut b.string_keys);
            match Keys::from_wire(ints, strings) {
                Ok(keys) => Checked::Delete { batch: b, keys },
                Err(e) => Checked::Junk(e.to_string()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delete_batches_name_their_channel_and_carry_a_timestamp() {
        let batch = |channel, first_ts| DeleteBatch {
            channel,
            first_ts,
            primary_keys: vec![1, 2],
            ..DeleteBatch::default()
        };
        assert!(matches!(
            delete(3, Ok(batch(3, 10))),
            Checked::Delete { keys: Keys::Int(k), .. } if k == [1, 2]
        ));
        let junk = |c: Checked| match c {
            Checked::Junk(reason) => reason,
            _ => panic!("expected junk"),
        };
        assert!(junk(delete(3, Ok(batch(2, 10)))).contains("channel 2 on channel 3"));
        assert!(junk(delete(3, Ok(batch(3, 0)))).contains("without timestamp"));
        let mixed = DeleteBatch {
            string_keys: vec!["a".into()],
            ..batch(3, 10)
        };
        assert!(junk(delete(3, Ok(mixed))).contains("mixed"));
        let undecodable = <DeleteBatch as prost::Message>::decode(&b"\xff\xff\xff"[..]);
        assert!(junk(delete(3, undecodable)).starts_with("not a DeleteBatch"));
    }
}
