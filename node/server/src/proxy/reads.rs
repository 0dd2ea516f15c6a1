//! Reads through the proxy: a search, count or query asks each query node
//! serving channels of the collection (the data coordinator's
//! `GetShardLeaders`) once, for all of its channels, and merges their answers.
//! Every channel must be answered: a node that refuses (a channel moved, still
//! loading, node gone) has its channels retried once with fresh leaders, and if
//! that still fails the whole read fails with `Unavailable` naming them. A
//! partial answer is never returned.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use milvus_like_api::leader_pool::LeaderPool;
use milvus_like_api::proto::data_coord_client::DataCoordClient;
use milvus_like_api::proto::query_node_client::QueryNodeClient;
use milvus_like_api::proto::{self, ConsistencyLevel, ShardLeader};
use milvus_like_api::schema::{CollectionSchema, Metric};
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::columns::Column;
use crate::datacoord::channels::Clients;
use crate::keys::{self, KeyRef, KeysRef};
use crate::querynode::MAX_QUERY_ROWS;
use crate::search::{Hit, merge_with};

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
            // Query answers may be large (up to 16,384 rows with vectors).
            clients: Clients::new(|channel| {
                QueryNodeClient::new(channel).max_decoding_message_size(super::MAX_REQUEST_BYTES)
            }),
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

    pub async fn get(&self, collection: i64, fresh: bool) -> Result<Vec<ShardLeader>, Status> {
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

    /// Runs `call` once against each query node serving channels of
    /// `collection` (all at once), with the leaders of the channels it serves;
    /// a node that fails with a retriable code is asked again once, its
    /// channels with fresh leaders. Every channel is answered exactly once, or
    /// the read fails.
    pub async fn fan_out<T, F, Fut>(&self, collection: i64, call: F) -> Result<Vec<T>, Status>
    where
        T: Answer,
        F: Fn(QueryNodeClient<Channel>, Vec<ShardLeader>) -> Fut,
        Fut: std::future::Future<Output = Result<T, Status>>,
    {
        let leaders = self.get(collection, false).await?;
        let groups = by_node(&leaders);
        let first =
            futures::future::join_all(groups.iter().map(|group| self.ask(group, &call))).await;
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
        let mut again = Vec::new();
        for (result, group) in first.into_iter().zip(&groups) {
            match result {
                Ok(answer) => out.push(answer),
                Err(status) if !retriable(&status) => return Err(status),
                Err(status) => {
                    for leader in group {
                        let Some(now) = fresh.iter().find(|l| l.channel == leader.channel) else {
                            return Err(channel_failed(&[leader.channel], &status));
                        };
                        again.push(now.clone());
                    }
                }
            }
        }
        for group in by_node(&again) {
            let answer = self.ask(&group, &call).await.map_err(|status| {
                self.forget(collection);
                channel_failed(&channels_of(&group), &status)
            })?;
            out.push(answer);
        }
        Ok(out)
    }

    /// `call` against the query node that serves the channels of `group`,
    /// whose answer must cover exactly them.
    async fn ask<T, F, Fut>(&self, group: &[ShardLeader], call: &F) -> Result<T, Status>
    where
        T: Answer,
        F: Fn(QueryNodeClient<Channel>, Vec<ShardLeader>) -> Fut,
        Fut: std::future::Future<Output = Result<T, Status>>,
    {
        let Some(leader) = group.first() else {
            return Err(Status::internal("a read asked a query node for no channel"));
        };
        if let Some(down) = group.iter().find(|l| !l.unavailable.is_empty()) {
            return Err(Status::unavailable(down.unavailable.clone()));
        }
        let client = self.clients.get(&leader.address).ok_or_else(|| {
            Status::unavailable(format!(
                "query node {} has a bad address {:?}",
                leader.node_id, leader.address
            ))
        })?;
        let answer = call(client, group.to_vec()).await?;
        let asked = channels_of(group);
        let mut answered = answer.channels().to_vec();
        answered.sort_unstable();
        if answered != asked {
            return Err(Status::internal(format!(
                "query node {} answered for channels {answered:?}, asked for {asked:?} (a partial answer is refused)",
                leader.node_id
            )));
        }
        Ok(answer)
    }
}

/// A query node's answer to a read: it names the channels it covers.
pub trait Answer {
    fn channels(&self) -> &[u32];
}

impl Answer for proto::SearchChannelResponse {
    fn channels(&self) -> &[u32] {
        &self.channels
    }
}

impl Answer for proto::CountChannelResponse {
    fn channels(&self) -> &[u32] {
        &self.channels
    }
}

impl Answer for proto::QueryChannelResponse {
    fn channels(&self) -> &[u32] {
        &self.channels
    }
}

/// The leaders grouped by the query node serving them (its address), in the
/// order of their first channels; a channel with no node is a group alone.
fn by_node(leaders: &[ShardLeader]) -> Vec<Vec<ShardLeader>> {
    let mut groups: Vec<Vec<ShardLeader>> = Vec::new();
    for leader in leaders {
        let serving = leader.unavailable.is_empty();
        match groups
            .iter_mut()
            .find(|g| serving && g[0].unavailable.is_empty() && g[0].address == leader.address)
        {
            Some(group) => group.push(leader.clone()),
            None => groups.push(vec![leader.clone()]),
        }
    }
    groups
}

fn channels_of(group: &[ShardLeader]) -> Vec<u32> {
    let mut channels: Vec<u32> = group.iter().map(|l| l.channel).collect();
    channels.sort_unstable();
    channels
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

fn channel_failed(channels: &[u32], status: &Status) -> Status {
    let message = match channels {
        [one] => format!("channel {one} could not be read: {}", status.message()),
        many => format!("channels {many:?} could not be read: {}", status.message()),
    };
    match status.code() {
        Code::DeadlineExceeded => Status::deadline_exceeded(message),
        Code::InvalidArgument => Status::invalid_argument(message),
        _ => Status::unavailable(message),
    }
}

/// The next offsets, per channel, above every write this proxy acknowledged:
/// what a SESSION read waits for.
#[derive(Debug, Default)]
pub struct Written {
    next: Mutex<HashMap<u32, (i64, i64)>>,
}

impl Written {
    /// A write at `offset` of `stream` on `channel` was acknowledged.
    pub fn record(&self, stream: crate::msgstream::Stream, channel: u32, offset: i64) {
        let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
        let (insert, delete) = next.entry(channel).or_default();
        let slot = match stream {
            crate::msgstream::Stream::Insert => insert,
            crate::msgstream::Stream::Delete => delete,
        };
        *slot = (*slot).max(offset + 1);
    }

    pub fn snapshot(&self) -> HashMap<u32, (i64, i64)> {
        self.next.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Where and when a read happens, the same for every channel.
#[derive(Debug, Clone)]
pub struct ReadPlan {
    pub collection: i64,
    pub level: ConsistencyLevel,
    pub guarantee_ts: u64,
    pub timeout_ms: u32,
    /// SESSION: the offsets to wait for, per channel ([`Written`]).
    pub session: HashMap<u32, (i64, i64)>,
}

impl ReadPlan {
    /// The timestamp a read was answered at: the oldest of the channels'.
    pub fn read_ts(&self, answered: impl Iterator<Item = u64>) -> u64 {
        answered.min().unwrap_or(self.guarantee_ts)
    }

    /// The reads on the channels of `leaders`.
    pub fn at_each(&self, leaders: &[ShardLeader]) -> Vec<proto::ReadAt> {
        leaders.iter().map(|leader| self.at(leader)).collect()
    }

    /// The read on the channel `leader` serves.
    pub fn at(&self, leader: &ShardLeader) -> proto::ReadAt {
        let (session_insert_next, session_delete_next) = self
            .session
            .get(&leader.channel)
            .copied()
            .unwrap_or_default();
        proto::ReadAt {
            collection_id: self.collection,
            channel: leader.channel,
            consistency: self.level as i32,
            guarantee_ts: self.guarantee_ts,
            timeout_ms: self.timeout_ms,
            epoch: leader.epoch,
            session_insert_next,
            session_delete_next,
        }
    }
}

/// The output columns of a read (schema positions) and their names.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub columns: Vec<usize>,
    pub names: Vec<String>,
}

/// A query node's columns, checked against the schema: `positions` says
/// which field each is, and each must hold `rows` values.
fn read_columns(
    schema: &CollectionSchema,
    positions: &[usize],
    wire: &[proto::FieldData],
    rows: usize,
) -> Result<Vec<Column>, Status> {
    if wire.len() != positions.len() {
        return Err(Status::internal(format!(
            "a query node answered {} columns, not {}",
            wire.len(),
            positions.len()
        )));
    }
    positions
        .iter()
        .zip(wire)
        .map(|(&p, data)| {
            let field = schema
                .fields()
                .get(p)
                .filter(|f| f.name == data.field_name)
                .ok_or_else(|| {
                    Status::internal(format!(
                        "a query node answered column {:?} where another was due",
                        data.field_name
                    ))
                })?;
            Column::from_field_data(field, data.data.clone(), rows)
                .map_err(|e| Status::internal(format!("a query node answered a bad column: {e}")))
        })
        .collect()
}

/// Column `position` of the rows `picks` (answer, row) of several answers'
/// columns, for the wire.
fn gather_wire(
    schema: &CollectionSchema,
    position: usize,
    sources: &[&Column],
    picks: &[(usize, usize)],
) -> Result<proto::FieldData, Status> {
    let field = schema
        .fields()
        .get(position)
        .ok_or_else(|| Status::internal(format!("no field at position {position}")))?;
    let column = Column::gather(field.ty, sources, picks)
        .map_err(|e| Status::internal(format!("query nodes answered bad columns: {e}")))?;
    Ok(column.into_field_data(&field.name))
}

/// The metric the query nodes scored with (the one they loaded the
/// collection with, which a cached schema may not know yet after its index
/// was dropped and chosen again); the schema's when none answered. Answers of
/// different metrics cannot be merged.
pub fn answers_metric(
    schema: &CollectionSchema,
    answers: &[proto::SearchChannelResponse],
) -> Result<Metric, Status> {
    let mut metrics = answers.iter().map(|a| {
        a.metric
            .parse::<Metric>()
            .map_err(|e| Status::internal(format!("a query node answered {e}")))
    });
    let Some(first) = metrics.next().transpose()? else {
        return Ok(schema.metric);
    };
    for metric in metrics {
        if metric? != first {
            return Err(Status::unavailable(
                "the query nodes answered with different metrics (the collection's index changed during the search); search again",
            ));
        }
    }
    Ok(first)
}

/// One search answer per query, merged over the channels' answers, with the
/// `output` columns of each hit.
pub fn merge_channels(
    schema: &CollectionSchema,
    metric: Metric,
    output: &[usize],
    answers: &[proto::SearchChannelResponse],
    queries: usize,
    k: usize,
) -> Result<Vec<proto::SearchHits>, Status> {
    (0..queries)
        .map(|q| {
            let mut lists = Vec::with_capacity(answers.len());
            let mut fields = Vec::with_capacity(answers.len());
            for (a, answer) in answers.iter().enumerate() {
                let hits = answer.results.get(q).ok_or_else(|| {
                    Status::internal(format!(
                        "a query node answered {} of {queries} queries",
                        answer.results.len()
                    ))
                })?;
                let ids = keys::from_wire(hits.ids.clone(), hits.string_ids.clone())
                    .map_err(|e| Status::internal(format!("a query node answered {e}")))?;
                if ids.len() != hits.scores.len() {
                    return Err(Status::internal("a query node answered ids without scores"));
                }
                fields.push(read_columns(schema, output, &hits.fields, ids.len())?);
                lists.push(
                    ids.into_iter()
                        .zip(&hits.scores)
                        .enumerate()
                        .map(|(row, (id, &score))| (Hit { id, score }, (a, row)))
                        .collect::<Vec<_>>(),
                );
            }
            let merged = merge_with(metric, &lists, k);
            let picks: Vec<(usize, usize)> = merged.iter().map(|(_, at)| *at).collect();
            let fields = output
                .iter()
                .enumerate()
                .map(|(i, &position)| {
                    let sources: Vec<&Column> = fields.iter().filter_map(|f| f.get(i)).collect();
                    gather_wire(schema, position, &sources, &picks)
                })
                .collect::<Result<_, _>>()?;
            let (ids, string_ids) = keys::to_wire(merged.iter().map(|(h, _)| &h.id));
            Ok(proto::SearchHits {
                ids,
                string_ids,
                scores: merged.iter().map(|(h, _)| h.score).collect(),
                fields,
            })
        })
        .collect()
}

/// The channels' query answers (each in primary key order, `columns` the
/// schema positions of their columns, the primary key first) merged in primary
/// key order: `limit` rows after `offset`, or with no limit all of them, and
/// an error when they are more than a query returns.
pub fn merge_rows(
    schema: &CollectionSchema,
    columns: &[usize],
    answers: &[proto::QueryChannelResponse],
    offset: usize,
    limit: Option<usize>,
) -> Result<(usize, Vec<proto::FieldData>), Status> {
    let read: Vec<Vec<Column>> = answers
        .iter()
        .map(|a| read_columns(schema, columns, &a.columns, a.num_rows as usize))
        .collect::<Result<_, _>>()?;
    let mut rows: Vec<(KeyRef<'_>, usize, usize)> = Vec::new();
    for (a, cols) in read.iter().enumerate() {
        let keys = match cols.first() {
            Some(column @ (Column::Long(_) | Column::Str(_))) => KeysRef::of(Some(column)),
            _ => return Err(Status::internal("a query node answered no primary keys")),
        };
        rows.extend(keys.iter().enumerate().map(|(row, pk)| (pk, a, row)));
    }
    rows.sort_unstable();
    let max = MAX_QUERY_ROWS as usize;
    if limit.is_none() && rows.len() > max {
        return Err(Status::invalid_argument(format!(
            "the filter keeps more than {max} rows; set a limit (and page with offset) or narrow the filter"
        )));
    }
    let picks: Vec<(usize, usize)> = rows
        .iter()
        .skip(offset)
        .take(limit.unwrap_or(max))
        .map(|&(_, a, row)| (a, row))
        .collect();
    let wire = columns
        .iter()
        .enumerate()
        .map(|(i, &position)| {
            let sources: Vec<&Column> = read.iter().filter_map(|cols| cols.get(i)).collect();
            gather_wire(schema, position, &sources, &picks)
        })
        .collect::<Result<_, _>>()?;
    Ok((picks.len(), wire))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::source::tests::minimal;

    fn answer(lists: &[&[(i64, f32)]]) -> proto::SearchChannelResponse {
        proto::SearchChannelResponse {
            results: lists
                .iter()
                .map(|l| proto::SearchHits {
                    ids: l.iter().map(|h| h.0).collect(),
                    string_ids: Vec::new(),
                    scores: l.iter().map(|h| h.1).collect(),
                    fields: vec![
                        Column::Long(l.iter().map(|h| h.0 * 10).collect()).into_field_data("id"),
                    ],
                })
                .collect(),
            metric: "L2".into(),
            read_ts: 1,
            channels: vec![0],
        }
    }

    #[test]
    fn channels_merge_per_query_nearest_first() {
        let a = answer(&[&[(1, 0.5), (2, 2.0)], &[(5, 1.0)]]);
        let b = answer(&[&[(3, 0.1), (4, 3.0)], &[(6, 0.2), (7, 4.0)]]);
        let merged =
            merge_channels(&minimal(2), Metric::L2, &[0], &[a, b], 2, 2).expect("accepted");
        assert_eq!(merged[0].ids, [3, 1]);
        assert_eq!(merged[0].scores, [0.1, 0.5]);
        assert_eq!(merged[1].ids, [6, 5]);
        // The output fields follow their hits.
        assert_eq!(
            merged[1].fields,
            [Column::Long(vec![60, 50]).into_field_data("id")]
        );
    }

    #[test]
    fn a_short_or_malformed_answer_is_an_error_not_a_partial_result() {
        let a = answer(&[&[(1, 0.5)]]);
        let b = answer(&[&[(3, 0.1)], &[(6, 0.2)]]);
        let schema = minimal(2);
        let e =
            merge_channels(&schema, Metric::L2, &[0], &[a, b.clone()], 2, 2).expect_err("refused");
        assert_eq!(e.code(), Code::Internal);
        let mut bad = b.clone();
        bad.results[0].scores.clear();
        assert!(merge_channels(&schema, Metric::L2, &[0], &[bad], 1, 2).is_err());
        let e = merge_channels(&schema, Metric::L2, &[1], std::slice::from_ref(&b), 1, 2)
            .expect_err("wrong column");
        assert!(e.message().contains("another was due"), "{e}");
        let mut short = b;
        short.results[0].fields[0] = Column::Long(vec![]).into_field_data("id");
        assert!(merge_channels(&schema, Metric::L2, &[0], &[short], 1, 2).is_err());
    }

    fn rows(keys: &[i64]) -> proto::QueryChannelResponse {
        proto::QueryChannelResponse {
            columns: vec![Column::Long(keys.to_vec()).into_field_data("id")],
            num_rows: keys.len() as u32,
            read_ts: 1,
            channels: vec![0],
        }
    }

    #[test]
    fn query_answers_merge_in_key_order_with_offset_and_limit() {
        let schema = minimal(2);
        let answers = [rows(&[1, 4, 9]), rows(&[2, 3])];
        let (n, columns) = merge_rows(&schema, &[0], &answers, 1, Some(3)).expect("merged");
        assert_eq!(n, 3);
        assert_eq!(columns, [Column::Long(vec![2, 3, 4]).into_field_data("id")]);
        let (n, _) = merge_rows(&schema, &[0], &answers, 0, None).expect("merged");
        assert_eq!(n, 5);
        let many: Vec<i64> = (0..=i64::from(MAX_QUERY_ROWS)).collect();
        let e = merge_rows(&schema, &[0], &[rows(&many)], 0, None).expect_err("too many");
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(e.message().contains("set a limit"), "{e}");
        let (n, _) = merge_rows(&schema, &[0], &[rows(&many)], 0, Some(10)).expect("limited");
        assert_eq!(n, 10);
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
        let e = channel_failed(&[3], &Status::failed_precondition("not followed"));
        assert_eq!(e.code(), Code::Unavailable);
        assert!(e.message().contains("channel 3"), "{}", e.message());
        let e = channel_failed(&[1, 3], &Status::unavailable("node gone"));
        assert!(e.message().contains("channels [1, 3]"), "{}", e.message());
    }

    #[test]
    fn each_query_node_is_asked_once_for_the_channels_it_serves() {
        let leader = |channel, address: &str, unavailable: &str| ShardLeader {
            channel,
            address: address.to_owned(),
            unavailable: unavailable.to_owned(),
            ..ShardLeader::default()
        };
        let leaders = [
            leader(0, "a:1", ""),
            leader(1, "b:1", ""),
            leader(2, "a:1", ""),
            leader(3, "", "no query node serves channel 3"),
            leader(4, "", "no query node serves channel 4"),
            leader(5, "b:1", ""),
        ];
        let groups: Vec<Vec<u32>> = by_node(&leaders).iter().map(|g| channels_of(g)).collect();
        assert_eq!(groups, [vec![0, 2], vec![1, 5], vec![3], vec![4]]);
    }
}
