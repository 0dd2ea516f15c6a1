//! HNSW indexes of flushed insert logs (issue 15): built by a data node off the
//! ingest path, stored in object storage beside the file they index, loaded by
//! the query nodes that serve the file.
//!
//! The graph is `hnsw_rs`'s (pure Rust, so the first build command needs no C++
//! compiler). Its distances are adapted to Milvus's scores ([`crate::search`]):
//! - L2: the squared Euclidean distance, as is.
//! - COSINE: vectors are normalized at build time, queries at search time, and
//!   the distance is `1 - dot` (clamped at 0), so the score is `1 - distance`.
//! - IP: the distance must not be negative, so it is `r2 - dot(x, q')` where
//!   `r2` is the largest squared norm in the file and `q'` the query scaled to
//!   norm `sqrt(r2)` (then `|dot| <= r2`); the score is `(r2 - distance) / s`
//!   with `s` the query's scale.
//!
//! A stored index is one blob: a header (magic, format version, metric,
//! dimension, rows, parameters, `r2`), `hnsw_rs`'s graph and data files, and a
//! CRC32 of all that. `hnsw_rs` reads and writes files only, so (de)serializing
//! goes through a scratch directory; a blob is checked before `hnsw_rs` reads
//! it, since `hnsw_rs` exits the process on some corrupt input.

use std::path::{Path, PathBuf};

use anndists::dist::Distance;
use hnsw_rs::prelude::{AnnT, FilterT, Hnsw, HnswIo};
use milvus_like_api::schema::{HNSW_DEFAULT_EF_CONSTRUCTION, HNSW_DEFAULT_M, IndexSpec, Metric};
use milvus_like_api::vectors::Floats;

use crate::search::SearchError;

/// `hnsw_rs` dumps only indexes of this many layers (its maximum).
const MAX_LAYERS: usize = 16;
const MAGIC: &[u8; 8] = b"MLHNSW\x00\x01";
/// Bumped when the blob's layout changes; older versions are refused (rebuilt).
pub const FORMAT_VERSION: u32 = 1;
const HEADER_BYTES: usize = 8 + 4 + 1 + 4 + 8 + 4 + 4 + 4 + 8 + 8;

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

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("{0}")]
    Params(String),
    #[error("{rows} rows are not whole vectors of dimension {dim}")]
    Shape { rows: usize, dim: usize },
    #[error("the index blob is not valid: {0}")]
    Corrupt(String),
    #[error("the index files could not be written or read: {0}")]
    Io(String),
    #[error("the build was stopped")]
    Stopped,
}

impl HnswParams {
    /// The schema's rules ([`IndexSpec::hnsw`]).
    pub fn check(&self) -> Result<(), IndexError> {
        IndexSpec::hnsw(self.m, self.ef_construction)
            .map(drop)
            .map_err(|e| IndexError::Params(e.to_string()))
    }
}

/// Squared Euclidean distance (Milvus's L2 score).
#[derive(Debug, Default, Clone, Copy)]
pub struct L2Squared;

impl Distance<f32> for L2Squared {
    fn eval(&self, a: &[f32], b: &[f32]) -> f32 {
        lanes(a, b, |x, y| (x - y) * (x - y))
    }
}

/// `1 - dot` of unit vectors, never negative.
#[derive(Debug, Default, Clone, Copy)]
pub struct UnitCosine;

impl Distance<f32> for UnitCosine {
    fn eval(&self, a: &[f32], b: &[f32]) -> f32 {
        (1.0 - dot(a, b)).max(0.0)
    }
}

/// `r2 - dot`, never negative when no vector is longer than `sqrt(r2)`.
#[derive(Debug, Clone, Copy)]
pub struct ShiftedInnerProduct {
    pub r2: f32,
}

impl Distance<f32> for ShiftedInnerProduct {
    fn eval(&self, a: &[f32], b: &[f32]) -> f32 {
        (self.r2 - dot(a, b)).max(0.0)
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    lanes(a, b, |x, y| x * y)
}

/// Sum of `f(a[i], b[i])` in 8 independent lanes: unlike one running sum (whose
/// order the compiler must keep), this compiles to SIMD. Most of a graph's build
/// and search time is spent here.
#[inline]
fn lanes(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) -> f32 {
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| f(*x, *y))
        .sum();
    let mut acc = [0f32; 8];
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += f(x[i], y[i]);
        }
    }
    acc.iter().sum::<f32>() + tail
}

fn norm(v: &[f32]) -> f32 {
    dot(v, v).sqrt()
}

enum Graph {
    L2(Hnsw<'static, f32, L2Squared>),
    Cosine(Hnsw<'static, f32, UnitCosine>),
    InnerProduct(Hnsw<'static, f32, ShiftedInnerProduct>),
}

/// An HNSW index of one file's vectors; ids are row numbers in the file.
pub struct HnswIndex {
    metric: Metric,
    dim: usize,
    rows: usize,
    params: HnswParams,
    /// IP only: the largest squared norm.
    r2: f32,
    graph: Graph,
}

impl std::fmt::Debug for HnswIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HnswIndex")
            .field("metric", &self.metric)
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

fn unit(v: &[f32]) -> Vec<f32> {
    let n = norm(v);
    if n > 0.0 {
        v.iter().map(|x| x / n).collect()
    } else {
        v.to_vec()
    }
}

impl HnswIndex {
    /// Builds the graph of `vectors` (rows of `dim` floats) on the current thread
    /// pool (`rayon`; the caller bounds it). `stop` is asked between batches of
    /// rows: when it says so, the build ends with [`IndexError::Stopped`].
    pub fn build(
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
        let floats = vectors.to_vec();
        let rows = floats.len() / dim;
        let (m, efc) = (params.m as usize, params.ef_construction as usize);
        let mut r2 = 0.0f32;
        let graph = match metric {
            Metric::L2 => {
                let h = Hnsw::new(m, rows, MAX_LAYERS, efc, L2Squared);
                insert_all(&h, &floats, dim, stop)?;
                Graph::L2(h)
            }
            Metric::Cosine => {
                let units: Vec<f32> = floats.chunks_exact(dim).flat_map(unit).collect();
                let h = Hnsw::new(m, rows, MAX_LAYERS, efc, UnitCosine);
                insert_all(&h, &units, dim, stop)?;
                Graph::Cosine(h)
            }
            Metric::InnerProduct => {
                r2 = floats
                    .chunks_exact(dim)
                    .map(|v| dot(v, v))
                    .fold(0.0f32, f32::max)
                    .max(f32::MIN_POSITIVE);
                let h = Hnsw::new(m, rows, MAX_LAYERS, efc, ShiftedInnerProduct { r2 });
                insert_all(&h, &floats, dim, stop)?;
                Graph::InnerProduct(h)
            }
        };
        Ok(Self {
            metric,
            dim,
            rows,
            params,
            r2,
            graph,
        })
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn metric(&self) -> Metric {
        self.metric
    }

    /// The `k` nearest rows to `query` that `keep` accepts, as (row, Milvus
    /// score), nearest first; `ef` is the search breadth (at least `k`).
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        keep: &(dyn Fn(usize) -> bool + Sync),
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
        let filter = Keep(keep);
        let ef = ef.max(k);
        Ok(match &self.graph {
            Graph::L2(h) => h
                .search_filter(query, k, ef, Some(&filter))
                .into_iter()
                .map(|n| (n.d_id, n.distance))
                .collect(),
            Graph::Cosine(h) => h
                .search_filter(&unit(query), k, ef, Some(&filter))
                .into_iter()
                .map(|n| (n.d_id, 1.0 - n.distance))
                .collect(),
            Graph::InnerProduct(h) => {
                let n = norm(query);
                let scale = if n > 0.0 { self.r2.sqrt() / n } else { 0.0 };
                let scaled: Vec<f32> = query.iter().map(|x| x * scale).collect();
                h.search_filter(&scaled, k, ef, Some(&filter))
                    .into_iter()
                    .map(|nb| {
                        let score = if scale > 0.0 {
                            (self.r2 - nb.distance) / scale
                        } else {
                            0.0
                        };
                        (nb.d_id, score)
                    })
                    .collect()
            }
        })
    }

    /// Where this process keeps the files `hnsw_rs` reads and writes on their
    /// way to and from a blob.
    pub fn scratch_root() -> PathBuf {
        std::env::temp_dir().join("milvus-like-index")
    }

    /// The stored form: header, graph and data files, CRC32. `scratch` is a
    /// directory of this process's own (created and removed here).
    pub fn to_bytes(&self, scratch: &Path) -> Result<Vec<u8>, IndexError> {
        let dir = Scratch::new(scratch)?;
        let base = match &self.graph {
            Graph::L2(h) => h.file_dump(&dir.0, "index"),
            Graph::Cosine(h) => h.file_dump(&dir.0, "index"),
            Graph::InnerProduct(h) => h.file_dump(&dir.0, "index"),
        }
        .map_err(|e| IndexError::Io(format!("dump: {e}")))?;
        let read = |ext: &str| {
            std::fs::read(dir.0.join(format!("{base}.hnsw.{ext}")))
                .map_err(|e| IndexError::Io(format!("read the dumped {ext} file: {e}")))
        };
        let (graph, data) = (read("graph")?, read("data")?);
        let mut out = Vec::with_capacity(HEADER_BYTES + graph.len() + data.len() + 4);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.push(metric_code(self.metric));
        out.extend_from_slice(&(self.dim as u32).to_le_bytes());
        out.extend_from_slice(&(self.rows as u64).to_le_bytes());
        out.extend_from_slice(&self.params.m.to_le_bytes());
        out.extend_from_slice(&self.params.ef_construction.to_le_bytes());
        out.extend_from_slice(&self.r2.to_le_bytes());
        out.extend_from_slice(&(graph.len() as u64).to_le_bytes());
        out.extend_from_slice(&(data.len() as u64).to_le_bytes());
        out.extend_from_slice(&graph);
        out.extend_from_slice(&data);
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        Ok(out)
    }

    /// Reads a blob made by [`HnswIndex::to_bytes`], checked first.
    pub fn from_bytes(bytes: &[u8], scratch: &Path) -> Result<Self, IndexError> {
        let corrupt = |why: &str| IndexError::Corrupt(why.to_owned());
        if bytes.len() < HEADER_BYTES + 4 {
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
        if version != FORMAT_VERSION {
            return Err(IndexError::Corrupt(format!(
                "format version {version}, this build reads {FORMAT_VERSION}"
            )));
        }
        let metric = match r.take(1)?[0] {
            1 => Metric::L2,
            2 => Metric::InnerProduct,
            3 => Metric::Cosine,
            other => return Err(IndexError::Corrupt(format!("unknown metric code {other}"))),
        };
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
        let dir = Scratch::new(scratch)?;
        let write = |ext: &str, b: &[u8]| {
            std::fs::write(dir.0.join(format!("index.hnsw.{ext}")), b)
                .map_err(|e| IndexError::Io(format!("write the {ext} file: {e}")))
        };
        write("graph", graph_bytes)?;
        write("data", data_bytes)?;
        // `hnsw_rs` ties a loaded graph to its loader (only needed when it maps
        // the files, which it does not here); the loader is small, so it is
        // leaked to give the graph a 'static lifetime without unsafe code.
        let io: &'static mut HnswIo = Box::leak(Box::new(HnswIo::new(&dir.0, "index")));
        let load_err = |e: anyhow::Error| IndexError::Corrupt(format!("load: {e}"));
        let graph = match metric {
            Metric::L2 => Graph::L2(io.load_hnsw::<f32, L2Squared>().map_err(load_err)?),
            Metric::Cosine => Graph::Cosine(io.load_hnsw::<f32, UnitCosine>().map_err(load_err)?),
            Metric::InnerProduct => Graph::InnerProduct(
                io.load_hnsw_with_dist::<f32, ShiftedInnerProduct>(ShiftedInnerProduct { r2 })
                    .map_err(load_err)?,
            ),
        };
        let index = Self {
            metric,
            dim,
            rows,
            params,
            r2,
            graph,
        };
        let loaded = match &index.graph {
            Graph::L2(h) => h.get_nb_point(),
            Graph::Cosine(h) => h.get_nb_point(),
            Graph::InnerProduct(h) => h.get_nb_point(),
        };
        if loaded != rows {
            return Err(IndexError::Corrupt(format!(
                "the header says {rows} rows, the graph holds {loaded}"
            )));
        }
        Ok(index)
    }
}

/// Rows inserted between two looks at `stop`.
const STOP_CHECK_ROWS: usize = 2_048;

fn insert_all<D: Distance<f32> + Send + Sync>(
    h: &Hnsw<'static, f32, D>,
    floats: &[f32],
    dim: usize,
    stop: &dyn Fn() -> bool,
) -> Result<(), IndexError> {
    let items: Vec<(&[f32], usize)> = floats.chunks_exact(dim).zip(0..).collect();
    for batch in items.chunks(STOP_CHECK_ROWS) {
        if stop() {
            return Err(IndexError::Stopped);
        }
        h.parallel_insert_slice(&batch.to_vec());
    }
    Ok(())
}

struct Keep<'a>(&'a (dyn Fn(usize) -> bool + Sync));

impl FilterT for Keep<'_> {
    fn hnsw_filter(&self, id: &usize) -> bool {
        (self.0)(*id)
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

/// A fresh directory under `root`, removed when dropped.
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
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
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
    fn recall(metric: Metric) -> f64 {
        let (rows, dim, k) = (2_000, 16, 10);
        let data = random(rows, dim, 7);
        let floats = Floats::from(data.clone());
        let index = HnswIndex::build(metric, dim, &floats, HnswParams::default(), &|| false)
            .expect("build");
        let keys: Vec<i64> = (0..rows as i64).collect();
        let keep = |i: usize| !i.is_multiple_of(5);
        let queries = random(50, dim, 11);
        let mut found = 0;
        for q in queries.chunks_exact(dim) {
            let exact: Vec<Hit> =
                flat_top_k(metric, dim, &floats, &keys, q, k, keep).expect("flat");
            let got = index.search(q, k, 64, &keep).expect("search");
            assert!(
                got.iter().all(|(row, _)| keep(*row)),
                "a filtered row came back"
            );
            for (row, score) in &got {
                let want = exact.iter().find(|h| h.id == *row as i64);
                if let Some(h) = want {
                    assert!(
                        (h.score - score).abs() < 1e-3,
                        "{metric}: {} vs {score}",
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
        for metric in [Metric::L2, Metric::InnerProduct, Metric::Cosine] {
            let r = recall(metric);
            assert!(r >= 0.9, "{metric}: recall@10 {r}");
        }
    }

    #[test]
    fn a_stored_index_loads_back_the_same_and_damage_is_refused() {
        let (rows, dim) = (500, 8);
        let data = Floats::from(random(rows, dim, 3));
        let scratch = tempfile::tempdir().expect("scratch");
        for metric in [Metric::L2, Metric::InnerProduct, Metric::Cosine] {
            let index = HnswIndex::build(
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
            let q = random(1, dim, 99);
            let all = |_: usize| true;
            assert_eq!(
                index.search(&q, 10, 32, &all),
                loaded.search(&q, 10, 32, &all)
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
        assert!(matches!(
            HnswIndex::build(Metric::L2, 5, &data, bad_m, &go_on),
            Err(IndexError::Params(_))
        ));
        assert!(matches!(
            HnswIndex::build(Metric::L2, 3, &data, HnswParams::default(), &go_on),
            Err(IndexError::Shape { .. })
        ));
        assert!(matches!(
            HnswIndex::build(Metric::L2, 5, &data, HnswParams::default(), &|| true),
            Err(IndexError::Stopped)
        ));
    }
}
