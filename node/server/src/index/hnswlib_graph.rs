//! The graph of hnswlib (C++, `milvus-like-hnswlib`, behind the `hnswlib`
//! feature): the engine new indexes are built with where it is built in, as
//! it builds and searches fastest (`docs/benchmarks.md`).
//!
//! Scores: L2 is the squared Euclidean distance as is. IP is `1 - dot`, so
//! the score is `1 - distance`; COSINE is IP over vectors normalized at build
//! time and queries normalized at search time (as USearch's graphs are).

use std::path::Path;

use milvus_like_api::schema::Metric;
use milvus_like_hnswlib::{Distance, Graph};

use super::{
    HnswParams, IndexError, Scratch, Stop, add_in_parallel, as_stored, query_as_stored, score_of,
};

/// Draws the nodes' levels (hnswlib's default): the same rows make the same
/// graph.
const SEED: usize = 100;

pub(super) struct HlGraph {
    graph: Graph,
    metric: Metric,
}

fn distance(metric: Metric) -> Distance {
    match metric {
        Metric::L2 => Distance::L2sq,
        Metric::InnerProduct | Metric::Cosine => Distance::OneMinusDot,
    }
}

fn engine_err(what: &str) -> impl Fn(milvus_like_hnswlib::Error) -> IndexError + '_ {
    move |e| IndexError::Engine(format!("{what}: {e}"))
}

/// Adds `floats` (rows of `dim`) as rows `first..`, every thread of the pool
/// at once.
fn add_rows(
    graph: &Graph,
    first: usize,
    dim: usize,
    floats: &[f32],
    stop: Stop<'_>,
) -> Result<(), IndexError> {
    add_in_parallel(first, dim, floats, stop, |row, v| graph.add(row, v))
}

impl HlGraph {
    pub(super) fn build(
        metric: Metric,
        dim: usize,
        floats: &[f32],
        params: HnswParams,
        stop: Stop<'_>,
    ) -> Result<Self, IndexError> {
        let graph = Graph::new(
            dim,
            distance(metric),
            floats.len() / dim,
            params.m as usize,
            params.ef_construction as usize,
            SEED,
        )
        .map_err(engine_err("create"))?;
        let mut units = Vec::new();
        add_rows(
            &graph,
            0,
            dim,
            as_stored(metric, dim, floats, &mut units),
            stop,
        )?;
        Ok(Self { graph, metric })
    }

    /// Adds `floats` as the rows after the last, with the build's
    /// `ef_construction` (not stored with the graph), on the current thread
    /// pool like [`HlGraph::build`].
    pub(super) fn extend(
        &mut self,
        dim: usize,
        floats: &[f32],
        params: HnswParams,
        stop: Stop<'_>,
    ) -> Result<(), IndexError> {
        let start = self.graph.len();
        self.graph
            .reserve(start + floats.len() / dim)
            .map_err(engine_err("reserve"))?;
        self.graph
            .set_ef_construction(params.ef_construction as usize);
        let mut units = Vec::new();
        let floats = as_stored(self.metric, dim, floats, &mut units);
        add_rows(&self.graph, start, dim, floats, stop)
    }

    pub(super) fn rows(&self) -> usize {
        self.graph.len()
    }

    pub(super) fn search(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        keep: super::Keep<'_>,
    ) -> Result<Vec<(usize, f32)>, IndexError> {
        let query = query_as_stored(self.metric, query);
        let found = self
            .graph
            .search(&query, k, ef, keep)
            .map_err(engine_err("search"))?;
        Ok(found
            .into_iter()
            .map(|(row, d)| (row, score_of(self.metric, d)))
            .collect())
    }

    /// hnswlib's file of the graph (its vectors included), made in `scratch`.
    pub(super) fn to_bytes(&self, scratch: &Path) -> Result<Vec<u8>, IndexError> {
        let dir = Scratch::new(scratch)?;
        let path = dir.path().join("graph.hnswlib");
        self.graph.save(&path).map_err(engine_err("save"))?;
        std::fs::read(&path).map_err(|e| IndexError::Io(format!("read {}: {e}", path.display())))
    }

    /// Reads what [`HlGraph::to_bytes`] wrote (the blob's CRC already
    /// checked); the graph is checked again against `dim` and `params`.
    pub(super) fn from_bytes(
        metric: Metric,
        dim: usize,
        params: HnswParams,
        bytes: &[u8],
        scratch: &Path,
    ) -> Result<Self, IndexError> {
        let dir = Scratch::new(scratch)?;
        let path = dir.path().join("graph.hnswlib");
        std::fs::write(&path, bytes)
            .map_err(|e| IndexError::Io(format!("write {}: {e}", path.display())))?;
        let graph = Graph::load(&path, dim, params.m as usize, distance(metric), 0)
            .map_err(|e| IndexError::Corrupt(e.to_string()))?;
        Ok(Self { graph, metric })
    }
}
