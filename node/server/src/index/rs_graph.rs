//! The graph of `hnsw_rs` (pure Rust: the engine of a build without a C++
//! compiler). Its distances are adapted to Milvus's scores:
//! - L2: the squared Euclidean distance, as is.
//! - COSINE: vectors are normalized at build time, queries at search time, and
//!   the distance is `1 - dot` (clamped at 0), so the score is `1 - distance`.
//! - IP: the distance must not be negative, so it is `r2 - dot(x, q')` where
//!   `r2` is the largest squared norm in the file and `q'` the query scaled to
//!   norm `sqrt(r2)` (then `|dot| <= r2`); the score is `(r2 - distance) / s`
//!   with `s` the query's scale.
//!
//! `hnsw_rs` reads and writes files only, so (de)serializing goes through a
//! scratch directory; the blob is checked (CRC) before `hnsw_rs` reads it, since
//! `hnsw_rs` exits the process on some corrupt input.

use std::path::Path;

use anndists::dist::Distance;
use hnsw_rs::prelude::{AnnT, FilterT, Hnsw, HnswIo};
use milvus_like_api::schema::Metric;

use super::{HnswParams, IndexError, STOP_CHECK_ROWS, Scratch, Stop, dot, unit};

/// `hnsw_rs` dumps only indexes of this many layers (its maximum).
const MAX_LAYERS: usize = 16;

/// Squared Euclidean distance (Milvus's L2 score).
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct L2Squared;

impl Distance<f32> for L2Squared {
    fn eval(&self, a: &[f32], b: &[f32]) -> f32 {
        milvus_like_distance::l2sq(a, b)
    }
}

/// `1 - dot` of unit vectors, never negative.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct UnitCosine;

impl Distance<f32> for UnitCosine {
    fn eval(&self, a: &[f32], b: &[f32]) -> f32 {
        (1.0 - dot(a, b)).max(0.0)
    }
}

/// `r2 - dot`, never negative when no vector is longer than `sqrt(r2)`.
#[derive(Debug, Clone, Copy)]
pub(super) struct ShiftedInnerProduct {
    r2: f32,
}

impl Distance<f32> for ShiftedInnerProduct {
    fn eval(&self, a: &[f32], b: &[f32]) -> f32 {
        (self.r2 - dot(a, b)).max(0.0)
    }
}

enum Graph {
    L2(Hnsw<'static, f32, L2Squared>),
    Cosine(Hnsw<'static, f32, UnitCosine>),
    InnerProduct(Hnsw<'static, f32, ShiftedInnerProduct>),
}

pub(super) struct RsGraph {
    graph: Graph,
    /// IP only: the largest squared norm.
    r2: f32,
}

impl RsGraph {
    pub(super) fn build(
        metric: Metric,
        dim: usize,
        floats: &[f32],
        params: HnswParams,
        stop: Stop<'_>,
    ) -> Result<Self, IndexError> {
        let rows = floats.len() / dim;
        let (m, efc) = (params.m as usize, params.ef_construction as usize);
        let mut r2 = 0.0f32;
        let graph = match metric {
            Metric::L2 => {
                let h = Hnsw::new(m, rows, MAX_LAYERS, efc, L2Squared);
                insert_all(&h, floats, dim, stop)?;
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
                insert_all(&h, floats, dim, stop)?;
                Graph::InnerProduct(h)
            }
        };
        Ok(Self { graph, r2 })
    }

    /// The largest squared norm (IP), stored in the blob's header.
    pub(super) fn r2(&self) -> f32 {
        self.r2
    }

    pub(super) fn rows(&self) -> usize {
        match &self.graph {
            Graph::L2(h) => h.get_nb_point(),
            Graph::Cosine(h) => h.get_nb_point(),
            Graph::InnerProduct(h) => h.get_nb_point(),
        }
    }

    pub(super) fn search(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        keep: super::Keep<'_>,
    ) -> Vec<(usize, f32)> {
        let keep = keep.map(KeepFilter);
        let filter = keep.as_ref().map(|k| k as &dyn FilterT);
        match &self.graph {
            Graph::L2(h) => h
                .search_filter(query, k, ef, filter)
                .into_iter()
                .map(|n| (n.d_id, n.distance))
                .collect(),
            Graph::Cosine(h) => h
                .search_filter(&unit(query), k, ef, filter)
                .into_iter()
                .map(|n| (n.d_id, 1.0 - n.distance))
                .collect(),
            Graph::InnerProduct(h) => {
                let n = super::norm(query);
                let scale = if n > 0.0 { self.r2.sqrt() / n } else { 0.0 };
                let scaled: Vec<f32> = query.iter().map(|x| x * scale).collect();
                h.search_filter(&scaled, k, ef, filter)
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
        }
    }

    /// `hnsw_rs`'s graph and data files.
    pub(super) fn to_parts(&self, scratch: &Path) -> Result<(Vec<u8>, Vec<u8>), IndexError> {
        let dir = Scratch::new(scratch)?;
        let base = match &self.graph {
            Graph::L2(h) => h.file_dump(dir.path(), "index"),
            Graph::Cosine(h) => h.file_dump(dir.path(), "index"),
            Graph::InnerProduct(h) => h.file_dump(dir.path(), "index"),
        }
        .map_err(|e| IndexError::Io(format!("dump: {e}")))?;
        let read = |ext: &str| {
            std::fs::read(dir.path().join(format!("{base}.hnsw.{ext}")))
                .map_err(|e| IndexError::Io(format!("read the dumped {ext} file: {e}")))
        };
        Ok((read("graph")?, read("data")?))
    }

    /// Reads what [`RsGraph::to_parts`] wrote (the blob's CRC already checked).
    pub(super) fn from_parts(
        metric: Metric,
        r2: f32,
        graph: &[u8],
        data: &[u8],
        scratch: &Path,
    ) -> Result<Self, IndexError> {
        let dir = Scratch::new(scratch)?;
        let write = |ext: &str, b: &[u8]| {
            std::fs::write(dir.path().join(format!("index.hnsw.{ext}")), b)
                .map_err(|e| IndexError::Io(format!("write the {ext} file: {e}")))
        };
        write("graph", graph)?;
        write("data", data)?;
        // `hnsw_rs` ties a loaded graph to its loader (only needed when it maps
        // the files, which it does not here); the loader is small, so it is
        // leaked to give the graph a 'static lifetime without unsafe code.
        let io: &'static mut HnswIo = Box::leak(Box::new(HnswIo::new(dir.path(), "index")));
        let load_err = |e: anyhow::Error| IndexError::Corrupt(format!("load: {e}"));
        let graph = match metric {
            Metric::L2 => Graph::L2(io.load_hnsw::<f32, L2Squared>().map_err(load_err)?),
            Metric::Cosine => Graph::Cosine(io.load_hnsw::<f32, UnitCosine>().map_err(load_err)?),
            Metric::InnerProduct => Graph::InnerProduct(
                io.load_hnsw_with_dist::<f32, ShiftedInnerProduct>(ShiftedInnerProduct { r2 })
                    .map_err(load_err)?,
            ),
        };
        Ok(Self { graph, r2 })
    }
}

fn insert_all<D: Distance<f32> + Send + Sync>(
    h: &Hnsw<'static, f32, D>,
    floats: &[f32],
    dim: usize,
    stop: Stop<'_>,
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

struct KeepFilter<'a>(&'a (dyn Fn(usize) -> bool + Sync));

impl FilterT for KeepFilter<'_> {
    fn hnsw_filter(&self, id: &usize) -> bool {
        (self.0)(*id)
    }
}
