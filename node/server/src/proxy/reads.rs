//! Reads through the proxy: a search or count asks the query node serving each
//! channel of the collection (the data coordinator's `GetShardLeaders`) and
//! merges their answers. Every channel must answer: a channel that refuses
//! (moved, still loading, node gone) gets one retry with fresh leaders, and if it
//! still fails the whole read fails with `Unavailable` naming it. A partial
//! answer is never returned.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use milvus_like_api::leader_pool::LeaderPool;
use milvus_like_api::proto::data_coord_client::DataCoordClient;
use milvus_like_api::proto::query_node_client::QueryNodeClient;
use milvus_like_api::proto::{self, ConsistencyLevel, ShardLeader};
use milvus_like_api::schema::Metric;
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::datacoord::channels::Clients;
use crate::search::{Hit, merge};

/// How long the query node of a channel is trusted without asking again.
const LEADER_CACHE_TTL: Duration = Duration::from_secs(10);

/// Where each loaded collection's channels are served, cached.
#[derive(Debug)]
pub struct Leaders {
    datacoord: LeaderPool,
    /// The channel count: every read needs an answer from each.
    channels: u32,
    cache: Mutex<HashMap<i64, (Instant, Vec<ShardLeader>)>>,
    clients: Clients<QueryNodeClient<Channel>>,
}

impl Leaders {
    pub fn new(datacoord: LeaderPool, channels: u32) -> Self {
        Self {
            datacoord,
            channels,
            cache: Mutex::new(HashMap::new()),
            clients: Clients::new(QueryNodeClient::new),
        }
    }

    fn cached(&self, collection: i64) -> Option<Vec<ShardLeader>> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let (at, leaders) = cache.get(&collection)?;
        (at.elapsed() < LEADER_CACHE_TTL).then(|| leaders.clone())
    }

    pub fn forget(&self, collection: i64) {
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&collection);
    }

    async fn get(&self, collection: i64, fresh: bool) -> Result<Vec<ShardLeader>, Status> {
        if !fresh && let Some(leaders) = self.cached(collection) {
            return Ok(leaders);
        }
        let leaders = self
            .datacoord
            .call(Duration::from_secs(10), |ch| async move {
                DataCoordClient::new(ch)
                    .get_shard_leaders(proto::GetShardLeadersRequest {
                        collection_id: collection,
                    })
                    .await
            })
            .await?
            .into_inner()
            .leaders;
        covers_every_channel(&leaders, self.channels, collection)?;
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(collection, (Instant::now(), leaders.clone()));
        Ok(leaders)
    }

    /// Runs `call` against the query node of every channel of `collection`, all
    /// at once; a channel that fails with a retriable code is tried once more
    /// with fresh leaders. Answers in channel order.
    pub async fn fan_out<T, F, Fut>(&self, collection: i64, call: F) -> Result<Vec<T>, Status>
    where
        F: Fn(QueryNodeClient<Channel>, ShardLeader) -> Fut,
        Fut: std::future::Future<Output = Result<T, Status>>,
    {
        let leaders = self.get(collection, false).await?;
        let first =
            futures::future::join_all(leaders.iter().map(|leader| self.ask(leader, &call))).await;
        if first
            .iter()
            .all(|r| r.as_ref().err().is_none_or(|s| !retriable(s)))
        {
            return first.into_iter().collect();
        }
        // Some channel moved or its node is gone: ask again, retry those once.
        let fresh = self.get(collection, true).await.inspect_err(|_| {
            self.forget(collection);
        })?;
        let mut out = Vec::with_capacity(first.len());
        for (result, leader) in first.into_iter().zip(&leaders) {
            match result {
                Ok(answer) => out.push(answer),
                Err(status) if !retriable(&status) => return Err(status),
                Err(status) => {
                    let Some(now) = fresh.iter().find(|l| l.channel == leader.channel) else {
                        return Err(channel_failed(leader.channel, &status));
                    };
                    let answer = self.ask(now, &call).await.map_err(|again| {
                        self.forget(collection);
                        channel_failed(leader.channel, &again)
                    })?;
                    out.push(answer);
                }
            }
        }
        Ok(out)
    }

    /// `call` against the query node of one channel, if one serves it.
    async fn ask<T, F, Fut>(&self, leader: &ShardLeader, call: &F) -> Result<T, Status>
    where
        F: Fn(QueryNodeClient<Channel>, ShardLeader) -> Fut,
        Fut: std::future::Future<Output = Result<T, Status>>,
    {
        if !leader.unavailable.is_empty() {
            return Err(Status::unavailable(leader.unavailable.clone()));
        }
        let client = self.clients.get(&leader.address).ok_or_else(|| {
            Status::unavailable(format!(
                "query node {} has a bad address {:?}",
                leader.node_id, leader.address
            ))
        })?;
        call(client, leader.clone()).await
    }
}

/// One leader per channel, in channel order: anything else would make a read
/// that misses channels.
fn covers_every_channel(
    leaders: &[ShardLeader],
    channels: u32,
    collection: i64,
) -> Result<(), Status> {
    if leaders.len() == channels as usize && leaders.iter().zip(0..).all(|(l, ch)| l.channel == ch)
    {
        return Ok(());
    }
    Err(Status::internal(format!(
        "the data coordinator named query nodes for channels {:?} of collection {collection}, not for each of 0..{channels}",
        leaders.iter().map(|l| l.channel).collect::<Vec<_>>()
    )))
}

/// Whether a channel's failure may pass with fresh leaders.
fn retriable(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable | Code::FailedPrecondition | Code::Cancelled | Code::Unknown
    )
}

fn channel_failed(channel: u32, status: &Status) -> Status {
    let message = format!("channel {channel} could not be read: {}", status.message());
    match status.code() {
        Code::DeadlineExceeded => Status::deadline_exceeded(message),
        Code::InvalidArgument => Status::invalid_argument(message),
        _ => Status::unavailable(message),
    }
}

/// Where and when a read happens, the same for every channel.
#[derive(Debug, Clone, Copy)]
pub struct ReadPlan {
    pub collection: i64,
    pub level: ConsistencyLevel,
    pub guarantee_ts: u64,
    pub timeout_ms: u32,
}

impl ReadPlan {
    /// The read on the channel `leader` serves.
    pub fn at(&self, leader: &ShardLeader) -> Option<proto::ReadAt> {
        Some(proto::ReadAt {
            collection_id: self.collection,
            channel: leader.channel,
            consistency: self.level as i32,
            guarantee_ts: self.guarantee_ts,
            timeout_ms: self.timeout_ms,
            epoch: leader.epoch,
        })
    }
}

/// One search answer per query, merged over the channels' answers.
pub fn merge_channels(
    metric: Metric,
    answers: &[proto::SearchChannelResponse],
    queries: usize,
    k: usize,
) -> Result<Vec<proto::SearchHits>, Status> {
    (0..queries)
        .map(|q| {
            let lists = answers
                .iter()
                .map(|a| {
                    let hits = a.results.get(q).ok_or_else(|| {
                        Status::internal(format!(
                            "a query node answered {} of {queries} queries",
                            a.results.len()
                        ))
                    })?;
                    if hits.ids.len() != hits.scores.len() {
                        return Err(Status::internal("a query node answered ids without scores"));
                    }
                    Ok(hits
                        .ids
                        .iter()
                        .zip(&hits.scores)
                        .map(|(&id, &score)| Hit { id, score })
                        .collect::<Vec<_>>())
                })
                .collect::<Result<Vec<_>, Status>>()?;
            let merged = merge(metric, &lists, k);
            Ok(proto::SearchHits {
                ids: merged.iter().map(|h| h.id).collect(),
                scores: merged.iter().map(|h| h.score).collect(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(lists: &[&[(i64, f32)]]) -> proto::SearchChannelResponse {
        proto::SearchChannelResponse {
            results: lists
                .iter()
                .map(|l| proto::SearchHits {
                    ids: l.iter().map(|h| h.0).collect(),
                    scores: l.iter().map(|h| h.1).collect(),
                })
                .collect(),
            metric: "L2".into(),
            read_ts: 1,
        }
    }

    #[test]
    fn channels_merge_per_query_nearest_first() {
        let a = answer(&[&[(1, 0.5), (2, 2.0)], &[(5, 1.0)]]);
        let b = answer(&[&[(3, 0.1), (4, 3.0)], &[(6, 0.2), (7, 4.0)]]);
        let merged = merge_channels(Metric::L2, &[a, b], 2, 2).expect("accepted");
        assert_eq!(merged[0].ids, [3, 1]);
        assert_eq!(merged[0].scores, [0.1, 0.5]);
        assert_eq!(merged[1].ids, [6, 5]);
    }

    #[test]
    fn a_short_or_malformed_answer_is_an_error_not_a_partial_result() {
        let a = answer(&[&[(1, 0.5)]]);
        let b = answer(&[&[(3, 0.1)], &[(6, 0.2)]]);
        let e = merge_channels(Metric::L2, &[a, b.clone()], 2, 2).expect_err("refused");
        assert_eq!(e.code(), Code::Internal);
        let mut bad = b;
        bad.results[0].scores.clear();
        assert!(merge_channels(Metric::L2, &[bad], 1, 2).is_err());
    }

    #[test]
    fn leaders_must_name_every_channel_once_in_order() {
        let leader = |channel| ShardLeader {
            channel,
            ..ShardLeader::default()
        };
        assert!(covers_every_channel(&[leader(0), leader(1)], 2, 7).is_ok());
        for bad in [
            vec![leader(0)],
            vec![leader(1), leader(0)],
            vec![leader(0), leader(0)],
        ] {
            let e = covers_every_channel(&bad, 2, 7).expect_err("partial");
            assert_eq!(e.code(), Code::Internal, "{bad:?}");
        }
    }

    #[test]
    fn only_placement_failures_are_retried() {
        assert!(retriable(&Status::unavailable("node gone")));
        assert!(retriable(&Status::failed_precondition("moved")));
        assert!(!retriable(&Status::invalid_argument("wrong dimension")));
        assert!(!retriable(&Status::deadline_exceeded("slow")));
        let e = channel_failed(3, &Status::failed_precondition("not followed"));
        assert_eq!(e.code(), Code::Unavailable);
        assert!(e.message().contains("channel 3"), "{}", e.message());
    }
}
