//! A timestamp client that merges concurrent callers' requests into batched RPCs.
//!
//! Like TiDB PD's client: callers enqueue `(count, reply)`; one background task takes
//! everything queued, asks the root coordinator for the sum in one request, and
//! cuts the returned contiguous range into each caller's share, in queue order.
//! Only one request is in flight, so a caller's next request always lands in a
//! later one and gets larger timestamps; while a request is in flight the queue
//! fills up, which is what makes the batches large under load.
//!
//! Requests go as messages on one `AllocTimestampStream` kept open to the leader
//! (as PD's client does): no HTTP/2 stream is set up per request. When the stream
//! fails, that batch is asked for with the unary `AllocTimestamp` through a
//! [`LeaderPool`], which follows the active root coordinator and retries; the next
//! batch opens a new stream.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tonic::Status;

use crate::leader_pool::LeaderPool;
use crate::proto::root_coord_client::RootCoordClient;
use crate::proto::{AllocTimestampRequest, AllocTimestampResponse};
use crate::retry::Transient;
use crate::timestamp::{MAX_LOGICAL, Timestamp};

/// Largest `count` one `AllocTimestamp` call may ask for.
pub const MAX_TIMESTAMP_COUNT: u32 = 1 << 18;

#[derive(Debug, Clone, thiserror::Error)]
pub enum TsoError {
    #[error("timestamp count {0} is out of range 1..={MAX_TIMESTAMP_COUNT}")]
    BadCount(u32),
    #[error("invalid root coordinator endpoint {0:?}")]
    BadEndpoint(String),
    #[error("no root coordinator answered before the retry deadline: {0}")]
    Unavailable(Status),
    #[error("root coordinator refused the request: {0}")]
    Refused(Status),
    #[error("root coordinator sent a malformed answer: {0}")]
    Malformed(String),
    #[error("the TSO client was shut down")]
    Closed,
}

/// The status a service answers with when it could not get timestamps: the root
/// coordinator's own answer when there is one, else what the failure means.
impl From<TsoError> for Status {
    fn from(e: TsoError) -> Self {
        match e {
            TsoError::Unavailable(s) | TsoError::Refused(s) => s,
            TsoError::BadCount(_) => Status::invalid_argument(e.to_string()),
            TsoError::Closed => Status::unavailable(e.to_string()),
            TsoError::BadEndpoint(_) | TsoError::Malformed(_) => Status::internal(e.to_string()),
        }
    }
}

/// A contiguous range of timestamps owned by one caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampRange {
    pub first: Timestamp,
    pub count: u32,
}

impl TimestampRange {
    pub fn last(&self) -> Timestamp {
        Timestamp::from_u64(self.first.as_u64() + u64::from(self.count) - 1)
    }
}

#[derive(Debug, Clone)]
pub struct TsoClientConfig {
    /// Give up on a batch when no leader answered for this long.
    pub retry_deadline: Duration,
    /// Timeout of one RPC.
    pub rpc_timeout: Duration,
    /// Most queued requests merged into one RPC.
    pub max_batch_requests: usize,
}

impl Default for TsoClientConfig {
    fn default() -> Self {
        Self {
            retry_deadline: Duration::from_secs(30),
            rpc_timeout: Duration::from_secs(3),
            max_batch_requests: 10_000,
        }
    }
}

struct Pending {
    count: u32,
    reply: oneshot::Sender<Result<TimestampRange, TsoError>>,
}

/// Cheap to clone; every clone feeds the same batching task.
#[derive(Debug, Clone)]
pub struct TsoClient {
    queue: mpsc::UnboundedSender<Pending>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("count", &self.count)
            .finish()
    }
}

impl TsoClient {
    /// Starts the batching task on the current Tokio runtime. Endpoints look like
    /// `http://127.0.0.1:19530`; connections are made lazily.
    pub fn connect(endpoints: &[String], config: TsoClientConfig) -> Result<Self, TsoError> {
        let pool = LeaderPool::new(endpoints, config.rpc_timeout)
            .map_err(|e| TsoError::BadEndpoint(e.0))?;
        let (queue, rx) = mpsc::unbounded_channel();
        tokio::spawn(run_batcher(pool, rx, config));
        Ok(Self { queue })
    }

    /// One timestamp.
    pub async fn timestamp(&self) -> Result<Timestamp, TsoError> {
        Ok(self.timestamps(1).await?.first)
    }

    /// `count` contiguous timestamps.
    pub async fn timestamps(&self, count: u32) -> Result<TimestampRange, TsoError> {
        if count == 0 || count > MAX_TIMESTAMP_COUNT {
            return Err(TsoError::BadCount(count));
        }
        let (reply, rx) = oneshot::channel();
        self.queue
            .send(Pending { count, reply })
            .map_err(|_| TsoError::Closed)?;
        rx.await.map_err(|_| TsoError::Closed)?
    }
}

/// An open `AllocTimestampStream` to the presumed leader.
struct TsoStream {
    requests: mpsc::Sender<AllocTimestampRequest>,
    answers: tonic::Streaming<AllocTimestampResponse>,
}

impl TsoStream {
    /// Opens a stream to the leader (following redirects, within `deadline`).
    async fn open(pool: &LeaderPool, deadline: Duration) -> Result<Self, Status> {
        pool.call(deadline, |channel| async move {
            let (requests, outgoing) = mpsc::channel(1);
            let answers = RootCoordClient::new(channel)
                .alloc_timestamp_stream(tokio_stream::wrappers::ReceiverStream::new(outgoing))
                .await?
                .into_inner();
            Ok(Self { requests, answers })
        })
        .await
    }

    async fn alloc(&mut self, count: u32) -> Result<Timestamp, TsoError> {
        let closed = || TsoError::Unavailable(Status::unavailable("the timestamp stream closed"));
        self.requests
            .send(AllocTimestampRequest { count })
            .await
            .map_err(|_| closed())?;
        match self.answers.message().await {
            Ok(Some(answer)) => checked(count, &answer),
            Ok(None) => Err(closed()),
            Err(status) => Err(TsoError::Unavailable(status)),
        }
    }
}

/// How long a client whose server has no timestamp stream (an older version)
/// uses the unary call before it tries the stream again (the server may have been
/// upgraded meanwhile).
const UNSUPPORTED_RETRY: Duration = Duration::from_secs(60);

/// Asks for `count` timestamps on the open stream (opening one if there is none
/// and streams work). `None`: no answer on a stream; the caller asks with the
/// unary call instead. A server without the stream is asked again only after
/// [`UNSUPPORTED_RETRY`].
async fn stream_alloc(
    pool: &LeaderPool,
    stream: &mut Option<TsoStream>,
    unsupported: &mut Option<tokio::time::Instant>,
    count: u32,
    config: &TsoClientConfig,
) -> Option<Result<Timestamp, TsoError>> {
    if unsupported.is_some_and(|since| since.elapsed() < UNSUPPORTED_RETRY) {
        return None;
    }
    if stream.is_none() {
        match TsoStream::open(pool, config.rpc_timeout).await {
            Ok(s) => {
                *unsupported = None;
                *stream = Some(s);
            }
            Err(status) => {
                *unsupported =
                    (status.code() == tonic::Code::Unimplemented).then(tokio::time::Instant::now);
                tracing::debug!(%status, "cannot open a timestamp stream; asking with unary calls");
                return None;
            }
        }
    }
    let open = stream.as_mut()?;
    match tokio::time::timeout(config.rpc_timeout, open.alloc(count)).await {
        Ok(Ok(first)) => Some(Ok(first)),
        // A malformed answer is the server's fault, not the stream's.
        Ok(Err(e @ TsoError::Malformed(_))) => {
            *stream = None;
            Some(Err(e))
        }
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "the timestamp stream failed; asking with a unary call");
            *stream = None;
            None
        }
        Err(_) => {
            tracing::debug!(
                "the timestamp stream did not answer in time; asking with a unary call"
            );
            *stream = None;
            None
        }
    }
}

async fn run_batcher(
    pool: LeaderPool,
    mut rx: mpsc::UnboundedReceiver<Pending>,
    config: TsoClientConfig,
) {
    let mut stream: Option<TsoStream> = None;
    let mut unsupported = None;
    let mut carry: Option<Pending> = None;
    loop {
        let first = match carry.take() {
            Some(p) => p,
            None => match rx.recv().await {
                Some(p) => p,
                None => return,
            },
        };
        let mut total = first.count;
        let mut batch = vec![first];
        while batch.len() < config.max_batch_requests {
            match rx.try_recv() {
                Ok(p) if total + p.count <= MAX_TIMESTAMP_COUNT => {
                    total += p.count;
                    batch.push(p);
                }
                Ok(p) => {
                    carry = Some(p);
                    break;
                }
                Err(_) => break,
            }
        }
        let result = match stream_alloc(&pool, &mut stream, &mut unsupported, total, &config).await
        {
            Some(result) => result,
            None => alloc(&pool, total, config.retry_deadline).await,
        };
        match result {
            Ok(first) => {
                let mut next = first.as_u64();
                for p in batch {
                    let range = TimestampRange {
                        first: Timestamp::from_u64(next),
                        count: p.count,
                    };
                    next += u64::from(p.count);
                    // A caller that gave up has dropped its receiver; nothing to do.
                    let _ = p.reply.send(Ok(range));
                }
            }
            Err(e) => {
                for p in batch {
                    let _ = p.reply.send(Err(e.clone()));
                }
            }
        }
    }
}

async fn alloc(pool: &LeaderPool, count: u32, deadline: Duration) -> Result<Timestamp, TsoError> {
    let resp = pool
        .call(deadline, |channel| async move {
            RootCoordClient::new(channel)
                .alloc_timestamp(AllocTimestampRequest { count })
                .await
        })
        .await
        .map_err(|status| {
            if status.is_transient() {
                TsoError::Unavailable(status)
            } else {
                TsoError::Refused(status)
            }
        })?
        .into_inner();
    checked(count, &resp)
}

/// The first timestamp of an answer for `count`, if the answer is well formed:
/// `count` timestamps with one physical part, none of them zero.
fn checked(count: u32, answer: &AllocTimestampResponse) -> Result<Timestamp, TsoError> {
    let first = Timestamp::from_u64(answer.timestamp);
    if answer.count != count
        || first.logical() + u64::from(count) - 1 > MAX_LOGICAL
        || first.as_u64() == 0
    {
        return Err(TsoError::Malformed(format!(
            "asked for {count} timestamps, got {} from {first}",
            answer.count
        )));
    }
    Ok(first)
}

#[cfg(test)]
mod tests {
    use tonic::Code;

    use super::*;

    #[test]
    fn a_root_coordinator_answer_is_passed_on_and_the_rest_say_what_they_are() {
        let refused = Status::from(TsoError::Refused(Status::invalid_argument("count 0")));
        assert_eq!(refused.code(), Code::InvalidArgument);
        assert_eq!(refused.message(), "count 0");
        assert_eq!(
            Status::from(TsoError::BadCount(0)).code(),
            Code::InvalidArgument
        );
        assert_eq!(Status::from(TsoError::Closed).code(), Code::Unavailable);
        assert_eq!(
            Status::from(TsoError::Malformed("count 2 for 1".into())).code(),
            Code::Internal
        );
    }
}
