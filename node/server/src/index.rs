//! HNSW indexes of flushed insert logs (issue 15): built by a data node off the
//! ingest path, stored in object storage beside the file they index, loaded by
//! the query nodes that serve the file.
//!
//! Three libraries can hold the graph ([`Engine`]): hnswlib (C++, the
//! reference implementation and Milvus's own, vendored in
//! `milvus-like-hnswlib`; the default of a build with the `hnswlib` feature,
//! which the images, the benchmarks and the tests use), USearch (C++, the
//! `usearch` feature, the default before hnswlib: its blobs still load) and
//! `hnsw_rs` (pure Rust, so that the first build command needs no C++
//! compiler). A blob says which one built it; a node without that engine
//! searches the file exactly instead (the blob is refused as unsupported).
//! All return Milvus's scores ([`crate::search`]).
//!
//! A stored index is one blob: a header (magic, format version, metric, engine,
//! dimension, rows, parameters, `r2`), the engine's serialized graph in two
//! parts, and a CRC32 of all that. Format 1 (before the engine byte) is
//! `hnsw_rs`'s.

use std::path::{Path, PathBuf};

use milvus_like_api::schema::{HNSW_DEFAULT_EF_CONSTRUCTION, HNSW_DEFAULT_M, IndexSpec, Metric};
use milvus_like_api::vectors::Floats;
use milvus_like_distance::dot;

use crate::search::SearchError;

#[cfg(feature = "hnswlib")]
mod hnswlib_graph;
mod rs_graph;
#[cfg(feature = "usearch")]
mod usearch_graph;

const MAGIC: &[u8; 8] = b"MLHNSW\x00\x01";
/// Bumped when the blob's layout changes; versions this build cannot read are
/// refused (and the file searched exactly).
pub const FORMAT_VERSION: u32 = 2;
/// Format 1's header; format 2 adds the engine byte.
const HEADER_BYTES_V1: usize = 8 + 4 + 1 + 4 + 8 + 4 + 4 + 4 + 8 + 8;
/// Rows added between two looks at the build's stop signal.
const STOP_CHECK_ROWS: usize = 2_048;

/// Asked between batches of rows during a build: `true` stops it.
type Stop<'a> = &'a dyn Fn() -> bool;

/// Which rows a search may return (by row number); `None`: all.
pub type Keep<'a> = Option<&'a (dyn Fn(usize) -> bool + Sync)>;

/// How an HNSW graph is built (Milvus's names: `M`, `efConstruction`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HnswParams {
    /// Links per node (layer 0 keeps twice as many); 2..=256.
    pub m: u32,
    pub ef_construction: u32,
}

impl Default for HnswParams {
    fn default() -> Self {
        Self {
            m: HNSW_DEFAULT_M,
            ef_construction: HNSW_DEFAULT_EF_CONSTRUCTION,
        }
    }
}

/// The library that holds a graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// `hnsw_rs`, always built in.
    HnswRs,
    /// USearch, built in with the `usearch` feature.
    Usearch,
    /// hnswlib, built in with the `hnswlib` feature.
    Hnswlib,
}

impl Engine {
    /// The engine new indexes are built with: hnswlib where it is built in,
    /// else USearch where it is, else `hnsw_rs`.
    pub const fn best() -> Self {
        if cfg!(feature = "hnswlib") {
            Self::Hnswlib
        } else if cfg!(feature = "usearch") {
            Self::Usearch
        } else {
            Self::HnswRs
        }
    }

    /// Whether this build can build and read graphs of this engine.
    pub const fn available(self) -> bool {
        match self {
            Self::HnswRs => true,
            Self::Usearch => cfg!(feature = "usearch"),
            Self::Hnswlib => cfg!(feature = "hnswlib"),
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            Self::HnswRs => "hnsw_rs",
            Self::Usearch => "usearch",
            Self::Hnswlib => "hnswlib",
        }
    }

    fn code(self) -> u8 {
        match self {
            Self::HnswRs => 1,
            Self::Usearch => 2,
            Self::Hnswlib => 3,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(Self::HnswRs),
            2 => Some(Self::Usearch),
            3 => Some(Self::Hnswlib),
            _ => None,
        }
    }

    /// Whether a graph of this engine, stored and read back, can take more
    /// rows ([`HnswIndex::extend`]).
    pub const fn grows(self) -> bool {
        matches!(self, Self::Usearch | Self::Hnswlib)
    }

    /// Every engine this build has, the best first.
    pub fn built_in() -> Vec<Self> {
        [Self::Hnswlib, Self::Usearch, Self::HnswRs]
            .into_iter()
            .filter(|e| e.available())
            .collect()
    }
}

impl std::fmt::Display for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("{0}")]
    Params(String),
    #[error("{rows} rows are not whole vectors of dimension {dim}")]
    Shape { rows: usize, dim: usize },
    #[error("the index blob is not valid: {0}")]
    Corrupt(String),
    #[error(
        "the index was built by {0}, which this build of milvus-like lacks (build it with --features {0})"
    )]
    Unsupported(Engine),
    #[error("the index files could not be written or read: {0}")]
    Io(String),
    #[error("the graph library failed: {0}")]
    Engine(String),
    #[error("the build was stopped")]
    Stopped,
    #[error("a graph of {0} cannot take more rows")]
    CannotGrow(Engine),
}

impl HnswParams {
    /// The schema's rules ([`IndexSpec::hnsw`]).
    pub fn check(&self) -> Result<(), IndexError> {
        IndexSpec::hnsw(self.m, self.ef_construction)
            .map(drop)
            .map_err(|e| IndexError::Params(e.to_string()))
    }
}

fn norm(v: &[f32]) -> f32 {
    dot(v, v).sqrt()
}

fn unit(v: &[f32]) -> Vec<f32> {
    let n = norm(v);
    if n > 0.0 {
        v.iter().map(|x| x / n).collect()
    } else {
        v.to_vec()
    }
}

/// `vectors` as floats: in place where the bytes are aligned (an insert log
/// read back is), else decoded into `decoded`.
fn in_place<'a>(vectors: &'a Floats, decoded: &'a mut Vec<f32>) -> &'a [f32] {
    match milvus_like_distance::as_floats(vectors.as_le_bytes()) {
        Some(floats) => floats,
        None => {
            *decoded = vectors.to_vec();
            decoded
        }
    }
}

/// Adds `floats` (rows of `dim`) as rows `first..` with `add`, every thread
/// of the current pool at once, looking at `stop` between batches of rows:
/// how the C++ graphs, safe to add to from many threads, are built and grown.
#[cfg(any(feature = "usearch", feature = "hnswlib"))]
fn add_in_parallel<E: std::fmt::Display + Send>(
    first: usize,
    dim: usize,
    floats: &[f32],
    stop: Stop<'_>,
    add: impl Fn(usize, &[f32]) -> Result<(), E> + Sync,
) -> Result<(), IndexError> {
    use rayon::prelude::*;
    let rows: Vec<(usize, &[f32])> = (first..).zip(floats.chunks_exact(dim)).collect();
    for batch in rows.chunks(STOP_CHECK_ROWS) {
        if stop() {
            return Err(IndexError::Stopped);
        }
        batch
            .par_iter()
            .try_for_each(|(row, v)| add(*row, v))
            .map_err(|e| IndexError::Engine(format!("add: {e}")))?;
    }
    Ok(())
}

/// `floats` (rows of `dim`) as a graph of `metric` holds them: their unit
/// vectors for COSINE (made in `units`), else as they are.
#[cfg(any(feature = "usearch", feature = "hnswlib"))]
fn as_stored<'a>(
    metric: Metric,
    dim: usize,
    floats: &'a [f32],
    units: &'a mut Vec<f32>,
) -> &'a [f32] {
    if metric == Metric::Cosine {
        *units = floats.chunks_exact(dim).flat_map(unit).collect();
        units
    } else {
        floats
    }
}

/// A query as a graph of `metric` compares it with its rows: a unit vector
/// for COSINE.
#[cfg(any(feature = "usearch", feature = "hnswlib"))]
fn query_as_stored(metric: Metric, query: &[f32]) -> std::borrow::Cow<'_, [f32]> {
    if metric == Metric::Cosine {
        std::borrow::Cow::Owned(unit(query))
    } else {
        std::borrow::Cow::Borrowed(query)
    }
}

/// Milvus's score of a C++ graph's distance: L2's squared distance as is,
/// `1 - distance` for IP and COSINE (whose distance is `1 - dot`).
#[cfg(any(feature = "usearch", feature = "hnswlib"))]
fn score_of(metric: Metric, distance: f32) -> f32 {
    if metric == Metric::L2 {
        distance
    } else {
        1.0 - distance
    }
}

enum Graph {
    Rs(rs_graph::RsGraph),
    #[cfg(feature = "usearch")]
    Us(usearch_graph::UsGraph),
    #[cfg(feature = "hnswlib")]
    Hl(hnswlib_graph::HlGraph),
}

/// A fresh directory under `root`, removed when dropped: where a library
/// that reads and writes files only puts a graph on its way to or from a blob.
struct Scratch(PathBuf);

impl Scratch {
    fn new(root: &Path) -> Result<Self, IndexError> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = root.join(format!("hnsw-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .map_err(|e| IndexError::Io(format!("create {}: {e}", dir.display())))?;
        Ok(Self(dir))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An HNSW index of one file's vectors; ids are row numbers in the file.
pub struct HnswIndex {
    metric: Metric,
    dim: usize,
    rows: usize,
    params: HnswParams,
    engine: Engine,
    graph: Graph,
}

impl std::fmt::Debug for HnswIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HnswIndex")
            .field("metric", &self.metric)
            .field("engine", &self.engine)
            .field("dim", &self.dim)
            .field("rows", &self.rows)
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

fn metric_code(metric: Metric) -> u8 {
    match metric {
        Metric::L2 => 1,
        Metric::InnerProduct => 2,
        Metric::Cosine => 3,
    }
}

impl HnswIndex {
    /// Builds the graph of `vectors` (rows of `dim` floats) with the best engine
    /// ([`Engine::best`]) on the current thread pool (`rayon`; the caller bounds
    /// it). `stop` is asked between batches of rows: when it says so, the build
    /// ends with [`IndexError::Stopped`].
    pub fn build(
        metric: Metric,
        dim: usize,
        vectors: &Floats,
        params: HnswParams,
        stop: &dyn Fn() -> bool,
    ) -> Result<Self, IndexError> {
        Self::build_with(Engine::best(), metric, dim, vectors, params, stop)
    }

    /// [`HnswIndex::build`] with a chosen engine.
    pub fn build_with(
        engine: Engine,
        metric: Metric,
        dim: usize,
        vectors: &Floats,
        params: HnswParams,
        stop: &dyn Fn() -> bool,
    ) -> Result<Self, IndexError> {
        params.check()?;
        if dim == 0 || !vectors.len().is_multiple_of(dim) {
            return Err(IndexError::Shape {
                rows: vectors.len(),
                dim,
            });
        }
        let mut decoded = Vec::new();
        let floats = in_place(vectors, &mut decoded);
        let rows = floats.len() / dim;
        let graph = match engine {
            Engine::HnswRs => {
                Graph::Rs(rs_graph::RsGraph::build(metric, dim, floats, params, stop)?)
            }
            #[cfg(feature = "usearch")]
            Engine::Usearch => Graph::Us(usearch_graph::UsGraph::build(
                metric, dim, floats, params, stop,
            )?),
            #[cfg(not(feature = "usearch"))]
            Engine::Usearch => return Err(IndexError::Unsupported(engine)),
            #[cfg(feature = "hnswlib")]
            Engine::Hnswlib => Graph::Hl(hnswlib_graph::HlGraph::build(
                metric, dim, floats, params, stop,
            )?),
            #[cfg(not(feature = "hnswlib"))]
            Engine::Hnswlib => return Err(IndexError::Unsupported(engine)),
        };
        Ok(Self {
            metric,
            dim,
            rows,
            params,
            engine,
            graph,
        })
    }

    /// Adds `vectors` (rows of the index's dimension) as the rows after its
    /// last, numbered `rows()..`, with the parameters the graph was built with,
    /// on the current thread pool: a graph of a file grows into the graph of
    /// that file followed by others. USearch's and hnswlib's graphs grow; an
    /// `hnsw_rs` graph answers [`IndexError::CannotGrow`] (see [`Engine::grows`]).
    #[cfg_attr(
        not(any(feature = "usearch", feature = "hnswlib")),
        allow(unused_variables)
    )]
    pub fn extend(&mut self, vectors: &Floats, stop: Stop<'_>) -> Result<(), IndexError> {
        if !vectors.len().is_multiple_of(self.dim) {
            return Err(IndexError::Shape {
                rows: vectors.len(),
                dim: self.dim,
            });
        }
        let mut decoded = Vec::new();
        let floats = in_place(vectors, &mut decoded);
        match &mut self.graph {
            Graph::Rs(_) => Err(IndexError::CannotGrow(Engine::HnswRs)),
            #[cfg(feature = "usearch")]
            Graph::Us(g) => {
                g.extend(self.dim, floats, self.params, stop)?;
                self.rows += floats.len() / self.dim;
                Ok(())
            }
            #[cfg(feature = "hnswlib")]
            Graph::Hl(g) => {
                g.extend(self.dim, floats, self.params, stop)?;
                self.rows += floats.len() / self.dim;
                Ok(())
            }
        }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn metric(&self) -> Metric {
        self.metric
    }

    pub fn params(&self) -> HnswParams {
        self.params
    }

    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// The `k` nearest rows to `query` that `keep` accepts (every row when
    /// `None`, which spares a call per row visited), as (row, Milvus score),
    /// nearest first; `ef` is the search breadth (at least `k`).
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        keep: Keep<'_>,
    ) -> Result<Vec<(usize, f32)>, SearchError> {
        if query.len() != self.dim {
            return Err(SearchError::WrongDimension {
                got: query.len(),
                dim: self.dim,
            });
        }
        if k == 0 || self.rows == 0 {
            return Ok(Vec::new());
        }
        let ef = ef.max(k);
        match &self.graph {
            Graph::Rs(g) => Ok(g.search(query, k, ef, keep)),
            #[cfg(feature = "usearch")]
            Graph::Us(g) => g
                .search(query, k, ef, keep)
                .map_err(|e| SearchError::Index(e.to_string())),
            #[cfg(feature = "hnswlib")]
            Graph::Hl(g) => g
                .search(query, k, ef, keep)
                .map_err(|e| SearchError::Index(e.to_string())),
        }
    }

    /// Where this process keeps the files `hnsw_rs` reads and writes on their
    /// way to and from a blob.
    pub fn scratch_root() -> PathBuf {
        std::env::temp_dir().join("milvus-like-index")
    }

    /// The stored form: header, the graph's two parts, CRC32. `scratch` is a
    /// directory of this process's own (created and removed here).
    pub fn to_bytes(&self, scratch: &Path) -> Result<Vec<u8>, IndexError> {
        let (r2, (graph, data)) = match &self.graph {
            Graph::Rs(g) => (g.r2(), g.to_parts(scratch)?),
            #[cfg(feature = "usearch")]
            Graph::Us(g) => (0.0, (g.to_bytes()?, Vec::new())),
            #[cfg(feature = "hnswlib")]
            Graph::Hl(g) => (0.0, (g.to_bytes(scratch)?, Vec::new())),
        };
        let mut out = Vec::with_capacity(HEADER_BYTES_V1 + 1 + graph.len() + data.len() + 4);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.push(metric_code(self.metric));
        out.push(self.engine.code());
        out.extend_from_slice(&(self.dim as u32).to_le_bytes());
        out.extend_from_slice(&(self.rows as u64).to_le_bytes());
        out.extend_from_slice(&self.params.m.to_le_bytes());
        out.extend_from_slice(&self.params.ef_construction.to_le_bytes());
        out.extend_from_slice(&r2.to_le_bytes());
        out.extend_from_slice(&(graph.len() as u64).to_le_bytes());
        out.extend_from_slice(&(data.len() as u64).to_le_bytes());
        out.extend_from_slice(&graph);
        out.extend_from_slice(&data);
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        Ok(out)
    }

    /// [`HnswIndex::from_bytes`] on a blocking thread, with this process's
    /// scratch directory: how a stored index is read back.
    pub async fn decode(bytes: bytes::Bytes) -> Result<Self, IndexError> {
        let scratch = Self::scratch_root();
        tokio::task::spawn_blocking(move || Self::from_bytes(&bytes, &scratch))
            .await
            .map_err(|e| IndexError::Engine(format!("the read stopped: {e}")))?
    }

    /// Reads a blob made by [`HnswIndex::to_bytes`] (format 1 or 2), checked
    /// first.
    pub fn from_bytes(bytes: &[u8], scratch: &Path) -> Result<Self, IndexError> {
        Self::read_blob(bytes, scratch, Engine::available)
    }

    /// [`HnswIndex::from_bytes`] for a build that has the engines `available`
    /// says it has (tests stand in for a build without one).
    fn read_blob(
        bytes: &[u8],
        scratch: &Path,
        available: impl Fn(Engine) -> bool,
    ) -> Result<Self, IndexError> {
        let corrupt = |why: &str| IndexError::Corrupt(why.to_owned());
        if bytes.len() < HEADER_BYTES_V1 + 4 {
            return Err(corrupt("shorter than its header"));
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        let stored = u32::from_le_bytes(crc.try_into().map_err(|_| corrupt("no checksum"))?);
        if crc32fast::hash(body) != stored {
            return Err(corrupt("checksum mismatch"));
        }
        let mut r = Reader(body);
        if r.take(8)? != MAGIC {
            return Err(corrupt("not an HNSW index of milvus-like"));
        }
        let version = r.u32()?;
        if version == 0 || version > FORMAT_VERSION {
            return Err(IndexError::Corrupt(format!(
                "format version {version}, this build reads 1 to {FORMAT_VERSION}"
            )));
        }
        let metric = match r.take(1)?[0] {
            1 => Metric::L2,
            2 => Metric::InnerProduct,
            3 => Metric::Cosine,
            other => return Err(IndexError::Corrupt(format!("unknown metric code {other}"))),
        };
        let engine = if version == 1 {
            Engine::HnswRs
        } else {
            let code = r.take(1)?[0];
            Engine::from_code(code)
                .ok_or_else(|| IndexError::Corrupt(format!("unknown engine code {code}")))?
        };
        if !available(engine) {
            return Err(IndexError::Unsupported(engine));
        }
        let dim = r.u32()? as usize;
        let rows = usize::try_from(r.u64()?).map_err(|_| corrupt("row count"))?;
        let params = HnswParams {
            m: r.u32()?,
            ef_construction: r.u32()?,
        };
        let r2 = f32::from_le_bytes(r.array()?);
        let graph_len = usize::try_from(r.u64()?).map_err(|_| corrupt("graph length"))?;
        let data_len = usize::try_from(r.u64()?).map_err(|_| corrupt("data length"))?;
        let graph_bytes = r.take(graph_len)?;
        let data_bytes = r.take(data_len)?;
        if !r.0.is_empty() {
            return Err(corrupt("bytes after the data file"));
        }
        let graph = match engine {
            Engine::HnswRs => Graph::Rs(rs_graph::RsGraph::from_parts(
                metric,
                r2,
                graph_bytes,
                data_bytes,
                scratch,
            )?),
            #[cfg(feature = "usearch")]
            Engine::Usearch => Graph::Us(usearch_graph::UsGraph::from_bytes(
                metric,
                dim,
                graph_bytes,
            )?),
            #[cfg(not(feature = "usearch"))]
            Engine::Usearch => return Err(IndexError::Unsupported(engine)),
            #[cfg(feature = "hnswlib")]
            Engine::Hnswlib => Graph::Hl(hnswlib_graph::HlGraph::from_bytes(
                metric,
                dim,
                params,
                graph_bytes,
                scratch,
            )?),
            #[cfg(not(feature = "hnswlib"))]
            Engine::Hnswlib => return Err(IndexError::Unsupported(engine)),
        };
        let loaded = match &graph {
            Graph::Rs(g) => g.rows(),
            #[cfg(feature = "usearch")]
            Graph::Us(g) => g.rows(),
            #[cfg(feature = "hnswlib")]
            Graph::Hl(g) => g.rows(),
        };
        if loaded != rows {
            return Err(IndexError::Corrupt(format!(
                "the header says {rows} rows, the graph holds {loaded}"
            )));
        }
        Ok(Self {
            metric,
            dim,
            rows,
            params,
            engine,
            graph,
        })
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], IndexError> {
        if self.0.len() < n {
            return Err(IndexError::Corrupt("truncated".into()));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], IndexError> {
        self.take(N)?
            .try_into()
            .map_err(|_| IndexError::Corrupt("truncated".into()))
    }

    fn u32(&mut self) -> Result<u32, IndexError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, IndexError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::{Hit, flat_top_k};

    fn random(rows: usize, dim: usize, seed: u64) -> Vec<f32> {
        // splitmix64, to stay independent of rand's versions
        let mut s = seed;
        (0..rows * dim)
            .map(|_| {
                s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
                let mut z = s;
                z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                ((z ^ (z >> 31)) >> 40) as f32 / (1u64 << 24) as f32 - 0.5
            })
            .collect()
    }

    /// Recall@k of the index against the exact top-k, with every fifth row
    /// filtered out, and the index's scores equal to the exact ones.
    fn recall(engine: Engine, metric: Metric) -> f64 {
        let (rows, dim, k) = (2_000, 16, 10);
        let data = random(rows, dim, 7);
        let floats = Floats::from(data.clone());
        let index =
            HnswIndex::build_with(engine, metric, dim, &floats, HnswParams::default(), &|| {
                false
            })
            .expect("build");
        assert_eq!(index.engine(), engine);
        let keys: Vec<i64> = (0..rows as i64).collect();
        let keep = |i: usize| !i.is_multiple_of(5);
        let queries = random(50, dim, 11);
        let mut found = 0;
        for q in queries.chunks_exact(dim) {
            let exact: Vec<Hit> =
                flat_top_k(metric, dim, &floats, &keys, q, k, keep).expect("flat");
            let got = index.search(q, k, 64, Some(&keep)).expect("search");
            assert!(
                got.iter().all(|(row, _)| keep(*row)),
                "a filtered row came back"
            );
            for (row, score) in &got {
                let want = exact.iter().find(|h| h.id == *row as i64);
                if let Some(h) = want {
                    assert!(
                        (h.score - score).abs() < 1e-3,
                        "{engine} {metric}: {} vs {score}",
                        h.score
                    );
                    found += 1;
                }
            }
        }
        found as f64 / (50 * k) as f64
    }

    #[test]
    fn the_index_finds_the_exact_neighbours_for_every_metric() {
        for engine in Engine::built_in() {
            for metric in [Metric::L2, Metric::InnerProduct, Metric::Cosine] {
                let r = recall(engine, metric);
                assert!(r >= 0.9, "{engine} {metric}: recall@10 {r}");
            }
        }
    }

    /// A stored graph read back and grown by more rows finds the exact
    /// neighbours among all of them (the graph of a compacted segment); an
    /// engine that cannot grow a graph says so.
    #[test]
    fn a_stored_graph_grows_by_more_rows_and_finds_them() {
        let (first, more, dim, k) = (1_200, 800, 16, 10);
        let data = random(first + more, dim, 5);
        let (head, tail) = data.split_at(first * dim);
        let keys: Vec<i64> = (0..(first + more) as i64).collect();
        let all = Floats::from(data.clone());
        let scratch = tempfile::tempdir().expect("scratch");
        for engine in Engine::built_in() {
            for metric in [Metric::L2, Metric::InnerProduct, Metric::Cosine] {
                let params = HnswParams::default();
                let built = HnswIndex::build_with(
                    engine,
                    metric,
                    dim,
                    &Floats::from(head.to_vec()),
                    params,
                    &|| false,
                )
                .expect("build");
                let blob = built.to_bytes(scratch.path()).expect("to bytes");
                let mut index = HnswIndex::from_bytes(&blob, scratch.path()).expect("from bytes");
                let grown = index.extend(&Floats::from(tail.to_vec()), &|| false);
                if engine == Engine::HnswRs {
                    assert!(matches!(grown, Err(IndexError::CannotGrow(Engine::HnswRs))));
                    assert_eq!(index.rows(), first, "unchanged");
                    continue;
                }
                grown.expect("extend");
                assert_eq!(index.rows(), first + more);
                let (mut found, mut new_rows) = (0, 0);
                let queries = random(40, dim, 13);
                for q in queries.chunks_exact(dim) {
                    let exact = flat_top_k(metric, dim, &all, &keys, q, k, |_| true).expect("flat");
                    let got = index.search(q, k, 64, None).expect("search");
                    new_rows += got.iter().filter(|(row, _)| *row >= first).count();
                    found += got
                        .iter()
                        .filter(|(row, _)| exact.iter().any(|h| h.id == *row as i64))
                        .count();
                }
                let recall = found as f64 / (40 * k) as f64;
                assert!(recall >= 0.9, "{engine} {metric}: recall@10 {recall}");
                assert!(
                    new_rows > 0,
                    "{engine} {metric}: no added row was ever found"
                );
            }
        }
    }

    #[test]
    fn a_stored_index_loads_back_the_same_and_damage_is_refused() {
        let (rows, dim) = (500, 8);
        let data = Floats::from(random(rows, dim, 3));
        let scratch = tempfile::tempdir().expect("scratch");
        let cases = Engine::built_in().into_iter().flat_map(|engine| {
            [Metric::L2, Metric::InnerProduct, Metric::Cosine].map(|metric| (engine, metric))
        });
        for (engine, metric) in cases {
            let index = HnswIndex::build_with(
                engine,
                metric,
                dim,
                &data,
                HnswParams {
                    m: 8,
                    ef_construction: 64,
                },
                &|| false,
            )
            .expect("build");
            let bytes = index.to_bytes(scratch.path()).expect("to bytes");
            let loaded = HnswIndex::from_bytes(&bytes, scratch.path()).expect("from bytes");
            assert_eq!(loaded.rows(), rows);
            assert_eq!(loaded.metric(), metric);
            assert_eq!(loaded.engine(), engine);
            let q = random(1, dim, 99);
            // Asking nothing per row and accepting every row are the same search.
            let all = |_: usize| true;
            assert_eq!(
                index.search(&q, 10, 32, None),
                loaded.search(&q, 10, 32, Some(&all))
            );
            let mut damaged = bytes.clone();
            damaged[bytes.len() / 2] ^= 1;
            assert!(matches!(
                HnswIndex::from_bytes(&damaged, scratch.path()),
                Err(IndexError::Corrupt(_))
            ));
            assert!(HnswIndex::from_bytes(&bytes[..100], scratch.path()).is_err());
        }
        assert_eq!(
            std::fs::read_dir(scratch.path()).expect("dir").count(),
            0,
            "scratch left"
        );
    }

    #[test]
    fn bad_parameters_and_shapes_are_refused() {
        let data = Floats::from(vec![0.0; 10]);
        let bad_m = HnswParams {
            m: 1,
            ef_construction: 10,
        };
        let go_on = || false;
        let good = HnswParams::default();
        for engine in Engine::built_in() {
            assert!(matches!(
                HnswIndex::build_with(engine, Metric::L2, 5, &data, bad_m, &go_on),
                Err(IndexError::Params(_))
            ));
            assert!(matches!(
                HnswIndex::build_with(engine, Metric::L2, 3, &data, good, &go_on),
                Err(IndexError::Shape { .. })
            ));
            assert!(matches!(
                HnswIndex::build_with(engine, Metric::L2, 5, &data, good, &|| true),
                Err(IndexError::Stopped)
            ));
        }
    }

    /// Rewrites a format-2 blob as the format 1 of earlier builds (no engine
    /// byte), with a fresh checksum.
    fn as_format_1(blob: &[u8]) -> Vec<u8> {
        let body = &blob[..blob.len() - 4];
        let mut old = Vec::with_capacity(body.len());
        old.extend_from_slice(&body[..8]);
        old.extend_from_slice(&1u32.to_le_bytes());
        old.push(body[12]);
        old.extend_from_slice(&body[14..]);
        let crc = crc32fast::hash(&old);
        old.extend_from_slice(&crc.to_le_bytes());
        old
    }

    /// A small `hnsw_rs` index of 8-d rows, its blob, and the scratch
    /// directory it was written through.
    fn small_blob(rows: usize) -> (HnswIndex, Vec<u8>, tempfile::TempDir) {
        let data = Floats::from(random(rows, 8, 5));
        let scratch = tempfile::tempdir().expect("scratch");
        let params = HnswParams {
            m: 8,
            ef_construction: 32,
        };
        let index = HnswIndex::build_with(Engine::HnswRs, Metric::L2, 8, &data, params, &|| false)
            .expect("build");
        let blob = index.to_bytes(scratch.path()).expect("to bytes");
        (index, blob, scratch)
    }

    /// `blob` with another engine code in its header, and a fresh checksum.
    fn with_engine_code(blob: &[u8], code: u8) -> Vec<u8> {
        let mut out = blob[..blob.len() - 4].to_vec();
        out[13] = code;
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    #[test]
    fn blobs_of_earlier_builds_still_load_and_unknown_engines_are_refused() {
        let (index, blob, scratch) = small_blob(300);
        let dim = 8;
        let old = HnswIndex::from_bytes(&as_format_1(&blob), scratch.path()).expect("format 1");
        assert_eq!(old.engine(), Engine::HnswRs);
        let q = random(1, dim, 1);
        assert_eq!(old.search(&q, 5, 32, None), index.search(&q, 5, 32, None));

        let unknown = with_engine_code(&blob, 9);
        let err = HnswIndex::from_bytes(&unknown, scratch.path()).expect_err("engine 9");
        assert!(err.to_string().contains("unknown engine code 9"), "{err}");
    }

    /// A blob that says USearch built it: a build with USearch finds the graph
    /// is not one of its own (damaged); a build without it (the README's first
    /// command) refuses it as unsupported, and cannot build USearch graphs.
    #[test]
    fn a_usearch_blob_is_refused_by_a_build_without_usearch_and_checked_by_one_with_it() {
        let (_, blob, scratch) = small_blob(200);
        let relabelled = with_engine_code(&blob, Engine::Usearch.code());
        let without = HnswIndex::read_blob(&relabelled, scratch.path(), |e| e == Engine::HnswRs)
            .expect_err("no USearch");
        assert!(
            matches!(without, IndexError::Unsupported(Engine::Usearch)),
            "{without}"
        );
        assert!(
            without.to_string().contains("--features usearch"),
            "{without}"
        );
        let err =
            HnswIndex::from_bytes(&relabelled, scratch.path()).expect_err("not a USearch graph");
        let data = Floats::from(random(200, 8, 5));
        let built = HnswIndex::build_with(
            Engine::Usearch,
            Metric::L2,
            8,
            &data,
            HnswParams::default(),
            &|| false,
        );
        if cfg!(feature = "usearch") {
            assert!(matches!(err, IndexError::Corrupt(_)), "{err}");
            assert!(built.is_ok());
        } else {
            assert!(
                matches!(err, IndexError::Unsupported(Engine::Usearch)),
                "{err}"
            );
            assert!(matches!(
                built,
                Err(IndexError::Unsupported(Engine::Usearch))
            ));
        }
    }

    /// Many threads at once, at several breadths, more than the engine has
    /// search contexts: every answer is the one a lone search gives.
    #[test]
    fn concurrent_searches_at_different_breadths_answer_as_alone() {
        let (rows, dim) = (3_000, 16);
        let data = Floats::from(random(rows, dim, 21));
        let queries = random(40, dim, 22);
        for engine in Engine::built_in() {
            let index = HnswIndex::build_with(
                engine,
                Metric::L2,
                dim,
                &data,
                HnswParams::default(),
                &|| false,
            )
            .expect("build");
            let keep = |row: usize| !row.is_multiple_of(3);
            let efs = [10, 16, 40, 100];
            let alone: Vec<Vec<(usize, f32)>> = queries
                .chunks_exact(dim)
                .zip(efs.iter().cycle())
                .map(|(q, ef)| index.search(q, 10, *ef, Some(&keep)).expect("search"))
                .collect();
            std::thread::scope(|s| {
                let handles: Vec<_> = (0..24)
                    .map(|t| {
                        let (index, queries, alone) = (&index, &queries, &alone);
                        s.spawn(move || {
                            for (i, (q, ef)) in queries
                                .chunks_exact(dim)
                                .zip(efs.iter().cycle())
                                .enumerate()
                            {
                                if (i + t) % 2 == 0 {
                                    let got =
                                        index.search(q, 10, *ef, Some(&keep)).expect("search");
                                    assert_eq!(got, alone[i], "{engine}: query {i} at ef {ef}");
                                }
                            }
                        })
                    })
                    .collect();
                for h in handles {
                    h.join().expect("a search thread panicked");
                }
            });
        }
    }
}
