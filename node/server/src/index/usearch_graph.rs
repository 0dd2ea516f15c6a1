//! The graph of USearch (C++, behind the `usearch` feature: the engine of every
//! build with a C++ compiler, the images and the tests among them).
//!
//! Scores: L2 is USearch's squared Euclidean distance as is. IP is USearch's
//! `1 - dot`, so the score is `1 - distance`; COSINE is IP over vectors
//! normalized at build time and queries normalized at search time.
//!
//! Two things of USearch's shape the wrapper:
//! - a search takes one of the thread contexts reserved ahead and fails when
//!   none is free, so searches take a slot of [`Slots`] first (and wait for one);
//! - the search breadth (`ef`) is a setting of the index, not of a search, so
//!   searches at the breadth the index is set to share a read lock, and a search
//!   at another breadth changes it under the write lock and runs alone.

use std::sync::{Condvar, Mutex, RwLock};

use milvus_like_api::schema::Metric;
use milvus_like_distance::{NotF32, RawMetric, use_in_usearch};
use usearch::{Index, IndexOptions, MetricKind, ScalarKind};

use super::{HnswParams, IndexError, Stop, add_in_parallel, as_stored, query_as_stored, score_of};

/// Searches one loaded index runs at once (more wait for a slot).
fn search_slots() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get() * 2)
        .unwrap_or(4)
        .clamp(4, 64)
}

pub(super) struct UsGraph {
    index: Index,
    metric: Metric,
    /// Held for reading by searches at the index's current breadth, for
    /// writing by the one that changes it.
    breadth: RwLock<()>,
    slots: Slots,
}

fn kind(metric: Metric) -> MetricKind {
    match metric {
        Metric::L2 => MetricKind::L2sq,
        Metric::InnerProduct | Metric::Cosine => MetricKind::IP,
    }
}

/// Replaces USearch's distance function of `kind(metric)` with ours, the same
/// distance in `f32` lanes of the CPU's widest SIMD (USearch's own sums `f32`
/// vectors in `f64`, at half the lanes). Not saved with the graph: set after
/// every build and load. Refuses a graph whose vectors are not `f32`.
fn use_our_kernels(index: &mut Index, metric: Metric) -> Result<(), IndexError> {
    let raw = match metric {
        Metric::L2 => RawMetric::L2sq,
        Metric::InnerProduct | Metric::Cosine => RawMetric::OneMinusDot,
    };
    use_in_usearch(index, raw).map_err(|NotF32(kind)| {
        IndexError::Corrupt(format!("the graph holds {kind:?} vectors, not f32"))
    })
}

fn engine_err<E: std::fmt::Display>(what: &str) -> impl Fn(E) -> IndexError + '_ {
    move |e| IndexError::Engine(format!("{what}: {e}"))
}

/// Adds `floats` (rows of `dim`) under keys from `first` on, every thread of
/// the pool at once.
fn add_rows(
    index: &Index,
    first: u64,
    dim: usize,
    floats: &[f32],
    stop: Stop<'_>,
) -> Result<(), IndexError> {
    let first = usize::try_from(first).map_err(engine_err("add"))?;
    add_in_parallel(first, dim, floats, stop, |row, v| index.add(row as u64, v))
}

impl UsGraph {
    pub(super) fn build(
        metric: Metric,
        dim: usize,
        floats: &[f32],
        params: HnswParams,
        stop: Stop<'_>,
    ) -> Result<Self, IndexError> {
        let rows = floats.len() / dim;
        let options = IndexOptions {
            dimensions: dim,
            metric: kind(metric),
            quantization: ScalarKind::F32,
            connectivity: params.m as usize,
            expansion_add: params.ef_construction as usize,
            expansion_search: 0,
            multi: false,
        };
        let mut index = Index::new(&options).map_err(engine_err("create"))?;
        use_our_kernels(&mut index, metric)?;
        // Every thread of the pool adds at once, the caller's among them.
        let threads = rayon::current_num_threads() + 1;
        index
            .reserve_capacity_and_threads(rows.max(1), threads)
            .map_err(engine_err("reserve"))?;
        let mut units = Vec::new();
        add_rows(
            &index,
            0,
            dim,
            as_stored(metric, dim, floats, &mut units),
            stop,
        )?;
        Self::serving(index, metric)
    }

    /// Adds `floats` as the rows after the last (keys `rows()..`), with the
    /// build's `ef_construction` (not stored with the graph), on the current
    /// thread pool like [`UsGraph::build`].
    pub(super) fn extend(
        &mut self,
        dim: usize,
        floats: &[f32],
        params: HnswParams,
        stop: Stop<'_>,
    ) -> Result<(), IndexError> {
        let start = self.index.size();
        let total = start + floats.len() / dim;
        self.index
            .change_expansion_add(params.ef_construction as usize);
        // As many thread contexts as the pool's adds and later searches need.
        let threads = (rayon::current_num_threads() + 1).max(search_slots());
        self.index
            .reserve_capacity_and_threads(total.max(1), threads)
            .map_err(engine_err("reserve"))?;
        let mut units = Vec::new();
        let floats = as_stored(self.metric, dim, floats, &mut units);
        add_rows(&self.index, start as u64, dim, floats, stop)
    }

    /// Ready for searches: as many thread contexts reserved as [`Slots`] lets
    /// searches run at once (a build reserves its own threads' only).
    fn serving(index: Index, metric: Metric) -> Result<Self, IndexError> {
        let slots = search_slots();
        index
            .reserve_capacity_and_threads(index.size().max(1), slots)
            .map_err(engine_err("reserve"))?;
        Ok(Self {
            index,
            metric,
            breadth: RwLock::new(()),
            slots: Slots::new(slots),
        })
    }

    pub(super) fn rows(&self) -> usize {
        self.index.size()
    }

    pub(super) fn search(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        keep: super::Keep<'_>,
    ) -> Result<Vec<(usize, f32)>, IndexError> {
        let query = query_as_stored(self.metric, query);
        let _slot = self.slots.take();
        let run = || {
            match keep {
                None => self.index.search(&query, k),
                Some(keep) => self
                    .index
                    .filtered_search(&query, k, |key| usize::try_from(key).is_ok_and(keep)),
            }
            .map_err(engine_err("search"))
        };
        let found = {
            let shared = self.breadth.read().unwrap_or_else(|e| e.into_inner());
            if self.index.expansion_search() == ef {
                run()
            } else {
                drop(shared);
                let _alone = self.breadth.write().unwrap_or_else(|e| e.into_inner());
                self.index.change_expansion_search(ef);
                run()
            }
        }?;
        Ok(found
            .keys
            .iter()
            .zip(&found.distances)
            .filter_map(|(key, d)| {
                let row = usize::try_from(*key).ok()?;
                Some((row, score_of(self.metric, *d)))
            })
            .collect())
    }

    pub(super) fn to_bytes(&self) -> Result<Vec<u8>, IndexError> {
        let mut out = vec![0u8; self.index.serialized_length()];
        self.index
            .save_to_buffer(&mut out)
            .map_err(engine_err("serialize"))?;
        Ok(out)
    }

    /// Reads what [`UsGraph::to_bytes`] wrote (the blob's CRC already checked).
    pub(super) fn from_bytes(metric: Metric, dim: usize, bytes: &[u8]) -> Result<Self, IndexError> {
        let mut index = Index::restore_from_buffer(bytes)
            .map_err(|e| IndexError::Corrupt(format!("usearch: {e}")))?;
        if index.dimensions() != dim || index.metric_kind() != kind(metric) {
            return Err(IndexError::Corrupt(format!(
                "the graph has dimension {} and metric {:?}, the header says {dim} and {metric}",
                index.dimensions(),
                index.metric_kind()
            )));
        }
        use_our_kernels(&mut index, metric)?;
        Self::serving(index, metric)
    }
}

/// A counting semaphore for threads that block anyway (searches run on
/// `spawn_blocking` threads).
struct Slots {
    free: Mutex<usize>,
    freed: Condvar,
}

struct Slot<'a>(&'a Slots);

impl Slots {
    fn new(n: usize) -> Self {
        Self {
            free: Mutex::new(n),
            freed: Condvar::new(),
        }
    }

    fn take(&self) -> Slot<'_> {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        while *free == 0 {
            free = self.freed.wait(free).unwrap_or_else(|e| e.into_inner());
        }
        *free -= 1;
        Slot(self)
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        *self.0.free.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        self.0.freed.notify_one();
    }
}
