//! Insert load through a proxy, for the benchmark binaries: `clients` tasks send
//! batches of 128-d rows of random vectors, spread over one or more collections.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use bytes::Bytes;
use http_body::Frame;
use http_body_util::StreamBody;
use milvus_like_api::proto::{self, FieldData};
use milvus_like_api::schema::CollectionSchema;
use milvus_like_node::columns::Column;
use prost::Message as _;
use tonic::transport::Channel;

/// The dimension of the load's vectors.
pub const DIM: usize = 128;
/// Bytes of one row as the client sends it: i64 pk + 128 f32.
pub const ROW_BYTES: u64 = 8 + 4 * DIM as u64;

/// xorshift64*: deterministic vector values that do not compress (like real
/// embeddings), cheap enough not to weigh on the client.
struct Rng(u64);

impl Rng {
    fn next_f32(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let v = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d);
        (v >> 40) as f32 / (1u64 << 24) as f32
    }
}

/// `rows` vectors of [`DIM`] floats in [0, 1), the same for the same `seed`.
pub fn vectors(rows: usize, seed: u64) -> Vec<f32> {
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    (0..rows * DIM).map(|_| rng.next_f32()).collect()
}

/// What [`insert`] sends: `rows` rows with keys from `first_pk` on, in requests of
/// `batch` rows; batch `b` goes to `collections[b % collections.len()]`, and
/// client `c` sends batches `c`, `c + clients`, ... one request at a time.
#[derive(Debug, Clone)]
pub struct InsertLoad {
    pub collections: Vec<String>,
    pub clients: usize,
    pub batch: usize,
    pub first_pk: i64,
    pub rows: u64,
}

/// What an [`insert`] took.
#[derive(Debug, Clone)]
pub struct Inserted {
    pub rows: u64,
    /// From the first send to the last acknowledgement.
    pub elapsed: Duration,
    /// Each request's time from send to acknowledgement, sorted.
    pub latencies: Vec<Duration>,
}

impl Inserted {
    pub fn rows_per_s(&self) -> f64 {
        self.rows as f64 / self.elapsed.as_secs_f64()
    }

    /// Client payload (pk + vector) MiB/s.
    pub fn mib_per_s(&self) -> f64 {
        (self.rows * ROW_BYTES) as f64 / (1024.0 * 1024.0) / self.elapsed.as_secs_f64()
    }

    /// The `q` quantile of the request latencies (nearest rank; zero when none).
    pub fn latency(&self, q: f64) -> Duration {
        quantile(&self.latencies, q)
    }
}

/// The `q` quantile (nearest rank) of sorted `v`; zero when `v` is empty.
pub fn quantile(v: &[Duration], q: f64) -> Duration {
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len().max(1));
    v.get(rank - 1).copied().unwrap_or_default()
}

/// Inserts `load` through the proxy at `proxy`, every collection of `schema`'s
/// fields; timed from the first send to the last acknowledgement. Vector payloads
/// are generated and encoded before the clock starts (two per client, reused;
/// keys are fresh, see `send_insert`). Every row must be acknowledged.
pub async fn insert(
    proxy: &Channel,
    schema: &CollectionSchema,
    load: &InsertLoad,
) -> anyhow::Result<Inserted> {
    ensure!(
        load.clients > 0 && load.batch > 0 && !load.collections.is_empty(),
        "an insert load needs clients, a batch size and a collection"
    );
    let batch = load.batch as u64;
    let batches = load.rows.div_ceil(batch);
    let start = Arc::new(tokio::sync::Barrier::new(load.clients + 1));
    let mut tasks = Vec::new();
    for client_no in 0..load.clients {
        let mine: Vec<(String, i64, usize)> = (client_no as u64..batches)
            .step_by(load.clients)
            .map(|b| {
                let lo = b * batch;
                let n = (load.rows - lo).min(batch) as usize;
                let collection = &load.collections[(b as usize) % load.collections.len()];
                (collection.clone(), load.first_pk + lo as i64, n)
            })
            .collect();
        let templates: Vec<FieldData> = (0..2)
            .map(|k| {
                let values = vectors(load.batch, (client_no * 2 + k + 1) as u64);
                Column::Vector {
                    dim: DIM as u32,
                    values: values.into(),
                }
                .into_field_data(&schema.vector_field().0.name)
            })
            .collect();
        let encoded: Vec<Bytes> = templates.iter().map(encode_column).collect();
        let mut channel = proxy.clone();
        let full = load.batch;
        let key_name = schema.primary_key().name.clone();
        let start = start.clone();
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            let mut acked = 0u64;
            let mut latencies = Vec::with_capacity(mine.len());
            for (i, (collection, lo, n)) in mine.into_iter().enumerate() {
                let vectors = if n == full {
                    encoded[i % encoded.len()].clone()
                } else {
                    let mut short = templates[i % templates.len()].clone();
                    truncate_vectors(&mut short, n);
                    encode_column(&short)
                };
                let pks: Vec<i64> = (lo..lo + n as i64).collect();
                let request = proto::InsertRequest {
                    collection,
                    partition: String::new(),
                    columns: vec![Column::Long(pks).into_field_data(&key_name)],
                    num_rows: u32::try_from(n)?,
                };
                let sent = Instant::now();
                let resp = send_insert(&mut channel, &request, vectors)
                    .await
                    .context("insert refused")?;
                latencies.push(sent.elapsed());
                ensure!(
                    resp.inserted == n as u64,
                    "inserted {} of {n}",
                    resp.inserted
                );
                acked += n as u64;
            }
            anyhow::Ok((acked, latencies))
        }));
    }
    start.wait().await;
    let t = Instant::now();
    let mut acked = 0;
    let mut latencies = Vec::new();
    for task in tasks {
        let (rows, times) = task.await.context("insert task panicked")??;
        acked += rows;
        latencies.extend(times);
    }
    let elapsed = t.elapsed();
    ensure!(
        acked == load.rows,
        "acknowledged {acked} of {} rows",
        load.rows
    );
    latencies.sort_unstable();
    Ok(Inserted {
        rows: load.rows,
        elapsed,
        latencies,
    })
}

/// `column` encoded as one `columns` entry of an `InsertRequest` (key, length and
/// body): appended to an encoded request, it adds that column.
fn encode_column(column: &FieldData) -> Bytes {
    let request = proto::InsertRequest {
        columns: vec![column.clone()],
        ..Default::default()
    };
    Bytes::from(request.encode_to_vec())
}

/// Sends `request` with the encoded column `vectors` appended (a protobuf parser
/// appends a repeated field's entries in the order they come, wherever they are in
/// the message) as one unary `Proxy/Insert` call, and reads its answer.
///
/// The load generator's answer to what the raw producer it is compared with does:
/// that producer sends payloads built before the clock starts, from memory, without
/// copying them. Here too the vector bytes are encoded once and handed to the
/// HTTP/2 connection as they are (tonic's generated client would clone the column,
/// encode it again and copy it into a new buffer for every request); the proxy
/// receives the same bytes either way. The keys are encoded fresh each time.
async fn send_insert(
    channel: &mut Channel,
    request: &proto::InsertRequest,
    vectors: Bytes,
) -> anyhow::Result<proto::InsertResponse> {
    use http_body_util::BodyExt as _;
    use tonic::codegen::Service as _;

    let len = request.encoded_len() + vectors.len();
    let mut head = Vec::with_capacity(5 + request.encoded_len());
    head.push(0); // not compressed
    head.extend_from_slice(&u32::try_from(len)?.to_be_bytes());
    request.encode(&mut head)?;
    let frames =
        [Bytes::from(head), vectors].map(|b| Ok::<_, std::convert::Infallible>(Frame::data(b)));
    let body = tonic::body::Body::new(StreamBody::new(futures::stream::iter(frames)));
    let http = tonic::codegen::http::Request::post(INSERT_PATH)
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(body)?;
    futures::future::poll_fn(|cx| channel.poll_ready(cx))
        .await
        .context("connect to the proxy")?;
    let response = channel.call(http).await.context("send the insert")?;
    let (parts, body) = response.into_parts();
    let collected = body.collect().await.context("read the insert's answer")?;
    // A refusal may come as headers alone (trailers-only) or in the trailers.
    let status = collected
        .trailers()
        .and_then(tonic::Status::from_header_map)
        .or_else(|| tonic::Status::from_header_map(&parts.headers))
        .context("an answer without a grpc-status")?;
    if status.code() != tonic::Code::Ok {
        return Err(status.into());
    }
    let bytes = collected.to_bytes();
    let message = bytes
        .get(5..)
        .context("an answer shorter than its gRPC frame header")?;
    Ok(proto::InsertResponse::decode(message)?)
}

/// The gRPC path of the proxy's `Insert`.
const INSERT_PATH: &str = "/milvuslike.v1.Proxy/Insert";

/// Keeps the first `rows` vectors of a vector column.
fn truncate_vectors(col: &mut FieldData, rows: usize) {
    if let Some(proto::field_data::Data::FloatVectors(v)) = col.data.as_mut() {
        v.values.truncate(rows * DIM);
    }
}
