//! hnswlib's HNSW graph, the reference implementation of the algorithm (C++,
//! header-only, vendored in `vendor/hnswlib` with its Apache-2.0 licence; the
//! same library Milvus's own HNSW index is built on), behind a safe API.
//!
//! The graph is hnswlib's, built and searched by its code; two things are ours:
//! - distances: hnswlib is given a space whose distance function calls
//!   `milvus-like-distance`'s kernels (chosen at run time for the CPU's widest
//!   SIMD), so the binary runs on any x86-64 and is as fast as one compiled for
//!   the machine (hnswlib's own kernels are chosen at compile time);
//! - the search breadth: hnswlib keeps one `ef` per index, which concurrent
//!   searches at different breadths would race on, so the search is hnswlib's
//!   `searchKnn` with `ef` passed per call (`cpp/shim.cpp`).
//!
//! A graph's rows are numbered `0..len()` in the order they were added; a
//! graph stored by [`Graph::save`] is checked when read back
//! ([`Graph::load`]): every link in range, the layout of the given dimension
//! and `M`, so that a damaged or hostile file is refused, not followed.
//!
//! This crate has `unsafe` code: the C interface passes vectors, results and
//! callbacks by address. Every call checks lengths first; the C++ side turns
//! every exception into an error.

#![allow(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]

use std::ffi::{CString, c_char, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::ptr::NonNull;

use milvus_like_distance::kernels;

/// What the graph's distance computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Distance {
    /// The squared Euclidean distance.
    L2sq,
    /// `1 - dot`: the distance of unit vectors under inner product (and of
    /// any vectors under Milvus's IP, as hnswlib's `ip` space does).
    OneMinusDot,
}

/// Why hnswlib refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A vector of the wrong length, or a query.
    #[error("a vector of {got} floats given to a graph of dimension {dim}")]
    Dimension { got: usize, dim: usize },
    /// A parameter out of range (dimension 0, M below 2).
    #[error("{0}")]
    Params(String),
    /// What hnswlib said (out of memory, a file it cannot read, a full graph).
    #[error("hnswlib: {0}")]
    Hnswlib(String),
}

type Result<T> = std::result::Result<T, Error>;

#[repr(C)]
struct RawGraph {
    _opaque: [u8; 0],
}

type RawDistance = unsafe extern "C" fn(*const c_void, *const c_void, *const c_void) -> f32;
type RawKeep = unsafe extern "C" fn(*const c_void, usize) -> bool;

unsafe extern "C" {
    fn ml_hnsw_new(
        dim: usize,
        distance: RawDistance,
        capacity: usize,
        m: usize,
        ef_construction: usize,
        seed: usize,
        error: *mut c_char,
        error_capacity: usize,
    ) -> *mut RawGraph;
    fn ml_hnsw_free(graph: *mut RawGraph);
    fn ml_hnsw_len(graph: *const RawGraph) -> usize;
    fn ml_hnsw_reserve(
        graph: *mut RawGraph,
        capacity: usize,
        error: *mut c_char,
        error_capacity: usize,
    ) -> i32;
    fn ml_hnsw_set_ef_construction(graph: *mut RawGraph, ef_construction: usize);
    fn ml_hnsw_add(
        graph: *mut RawGraph,
        vector: *const f32,
        label: usize,
        error: *mut c_char,
        error_capacity: usize,
    ) -> i32;
    fn ml_hnsw_search(
        graph: *const RawGraph,
        query: *const f32,
        k: usize,
        ef: usize,
        keep: Option<RawKeep>,
        context: *const c_void,
        labels: *mut usize,
        distances: *mut f32,
        found: *mut usize,
        error: *mut c_char,
        error_capacity: usize,
    ) -> i32;
    fn ml_hnsw_save(
        graph: *const RawGraph,
        path: *const c_char,
        error: *mut c_char,
        error_capacity: usize,
    ) -> i32;
    fn ml_hnsw_load(
        path: *const c_char,
        dim: usize,
        m: usize,
        distance: RawDistance,
        capacity: usize,
        error: *mut c_char,
        error_capacity: usize,
    ) -> *mut RawGraph;
}

/// Room for hnswlib's messages.
const ERROR_BYTES: usize = 512;

/// A buffer hnswlib writes its message into, and the message.
struct Message([u8; ERROR_BYTES]);

impl Message {
    fn new() -> Self {
        Self([0; ERROR_BYTES])
    }

    fn ptr(&mut self) -> *mut c_char {
        self.0.as_mut_ptr().cast()
    }

    fn error(&self) -> Error {
        let end = self.0.iter().position(|b| *b == 0).unwrap_or(ERROR_BYTES);
        Error::Hnswlib(String::from_utf8_lossy(&self.0[..end]).into_owned())
    }

    fn check(&self, code: i32) -> Result<()> {
        if code == 0 { Ok(()) } else { Err(self.error()) }
    }
}

/// The two vectors hnswlib passes a distance function, and their dimension.
///
/// # Safety
/// `dim` points to a `usize`, `a` and `b` to that many floats each, aligned
/// for `f32`, alive for the call: what the shim's space promises (its
/// parameter is its dimension; hnswlib passes stored vectors, which sit at a
/// multiple of four bytes into a `malloc`ed block, and queries, which are
/// ours).
unsafe fn vectors<'a>(
    a: *const c_void,
    b: *const c_void,
    dim: *const c_void,
) -> (&'a [f32], &'a [f32]) {
    // SAFETY: the function's contract.
    unsafe {
        let dim = *dim.cast::<usize>();
        (
            std::slice::from_raw_parts(a.cast::<f32>(), dim),
            std::slice::from_raw_parts(b.cast::<f32>(), dim),
        )
    }
}

unsafe extern "C" fn l2sq(a: *const c_void, b: *const c_void, dim: *const c_void) -> f32 {
    // SAFETY: called by hnswlib only, as `vectors` requires.
    let (a, b) = unsafe { vectors(a, b, dim) };
    (kernels().l2sq)(a, b)
}

unsafe extern "C" fn one_minus_dot(a: *const c_void, b: *const c_void, dim: *const c_void) -> f32 {
    // SAFETY: called by hnswlib only, as `vectors` requires.
    let (a, b) = unsafe { vectors(a, b, dim) };
    1.0 - (kernels().dot)(a, b)
}

fn raw(distance: Distance) -> RawDistance {
    match distance {
        Distance::L2sq => l2sq,
        Distance::OneMinusDot => one_minus_dot,
    }
}

/// Which rows a search may return.
type KeepFn<'a> = &'a (dyn Fn(usize) -> bool + Sync);

/// hnswlib's filter: `context` is a `&KeepFn` for the call's duration.
unsafe extern "C" fn keep_row(context: *const c_void, label: usize) -> bool {
    // SAFETY: `Graph::search` passes the address of a `KeepFn` it holds
    // until the search returns.
    let keep = unsafe { *context.cast::<KeepFn<'_>>() };
    // A panic must not cross into C++: the row is then left out.
    catch_unwind(AssertUnwindSafe(|| keep(label))).unwrap_or(false)
}

/// An HNSW graph of `f32` vectors under one [`Distance`].
#[derive(Debug)]
pub struct Graph {
    raw: NonNull<RawGraph>,
    dim: usize,
}

// SAFETY: hnswlib's graph has no thread affinity; `add` and `search` lock what
// they change (`addPoint` takes per-node and global locks, a search only
// reads), and everything that reallocates (`reserve`) or changes settings
// takes `&mut self`.
unsafe impl Send for Graph {}
// SAFETY: as above: the `&self` methods are safe to run concurrently.
unsafe impl Sync for Graph {}

impl Drop for Graph {
    fn drop(&mut self) {
        // SAFETY: made by `ml_hnsw_new` or `ml_hnsw_load`, freed once.
        unsafe { ml_hnsw_free(self.raw.as_ptr()) }
    }
}

fn check_params(dim: usize, m: usize) -> Result<()> {
    if dim == 0 {
        return Err(Error::Params("the dimension must be at least 1".into()));
    }
    if !(2..=10_000).contains(&m) {
        return Err(Error::Params(format!("M must be 2..=10000, not {m}")));
    }
    Ok(())
}

impl Graph {
    /// An empty graph with room for `capacity` rows (more need
    /// [`Graph::reserve`]); `seed` draws the nodes' levels.
    pub fn new(
        dim: usize,
        distance: Distance,
        capacity: usize,
        m: usize,
        ef_construction: usize,
        seed: usize,
    ) -> Result<Self> {
        check_params(dim, m)?;
        let mut message = Message::new();
        // SAFETY: plain values and a buffer of ERROR_BYTES.
        let raw = unsafe {
            ml_hnsw_new(
                dim,
                raw(distance),
                capacity,
                m,
                ef_construction,
                seed,
                message.ptr(),
                ERROR_BYTES,
            )
        };
        let raw = NonNull::new(raw).ok_or_else(|| message.error())?;
        Ok(Self { raw, dim })
    }

    /// Rows added so far.
    pub fn len(&self) -> usize {
        // SAFETY: a live graph.
        unsafe { ml_hnsw_len(self.raw.as_ptr()) }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Makes room for `capacity` rows in all (nothing if there is).
    pub fn reserve(&mut self, capacity: usize) -> Result<()> {
        let mut message = Message::new();
        // SAFETY: a live graph, borrowed mutably: no search or insertion runs.
        let code =
            unsafe { ml_hnsw_reserve(self.raw.as_ptr(), capacity, message.ptr(), ERROR_BYTES) };
        message.check(code)
    }

    /// The breadth of the searches that place new rows (not stored with the
    /// graph: set it again after a load before adding rows).
    pub fn set_ef_construction(&mut self, ef_construction: usize) {
        // SAFETY: a live graph, borrowed mutably.
        unsafe { ml_hnsw_set_ef_construction(self.raw.as_ptr(), ef_construction) }
    }

    /// Adds `vector` as row `row`. Safe from many threads at once; the graph
    /// must have room ([`Graph::reserve`]), rows must be distinct.
    pub fn add(&self, row: usize, vector: &[f32]) -> Result<()> {
        if vector.len() != self.dim {
            return Err(Error::Dimension {
                got: vector.len(),
                dim: self.dim,
            });
        }
        let mut message = Message::new();
        // SAFETY: a live graph; `vector` holds `dim` floats (checked), which
        // hnswlib copies.
        let code = unsafe {
            ml_hnsw_add(
                self.raw.as_ptr(),
                vector.as_ptr(),
                row,
                message.ptr(),
                ERROR_BYTES,
            )
        };
        message.check(code)
    }

    /// The `k` nearest rows to `query` that `keep` accepts (all when `None`),
    /// as (row, distance), nearest first, searching `max(ef, k)` wide.
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        keep: Option<KeepFn<'_>>,
    ) -> Result<Vec<(usize, f32)>> {
        if query.len() != self.dim {
            return Err(Error::Dimension {
                got: query.len(),
                dim: self.dim,
            });
        }
        let k = k.min(self.len());
        let mut labels = vec![0usize; k];
        let mut distances = vec![0f32; k];
        let mut found = 0usize;
        let mut message = Message::new();
        let (callback, context): (Option<RawKeep>, *const c_void) = match &keep {
            Some(keep) => (Some(keep_row), std::ptr::from_ref(keep).cast()),
            None => (None, std::ptr::null()),
        };
        // SAFETY: a live graph; `query` holds `dim` floats (checked); the
        // result buffers hold `k` entries, the most the shim writes; `context`
        // is the address of `keep`, alive until this returns.
        let code = unsafe {
            ml_hnsw_search(
                self.raw.as_ptr(),
                query.as_ptr(),
                k,
                ef,
                callback,
                context,
                labels.as_mut_ptr(),
                distances.as_mut_ptr(),
                &raw mut found,
                message.ptr(),
                ERROR_BYTES,
            )
        };
        message.check(code)?;
        let found = found.min(k);
        Ok(labels.into_iter().zip(distances).take(found).collect())
    }

    /// Writes the graph (vectors included) to `path` in hnswlib's format.
    pub fn save(&self, path: &Path) -> Result<()> {
        let path = c_path(path)?;
        let mut message = Message::new();
        // SAFETY: a live graph; a NUL-terminated path.
        let code =
            unsafe { ml_hnsw_save(self.raw.as_ptr(), path.as_ptr(), message.ptr(), ERROR_BYTES) };
        message.check(code)
    }

    /// Reads what [`Graph::save`] wrote, with room for `capacity` rows, and
    /// checks it: a graph of `dim` and `m`, every link to a node of the graph,
    /// each of the rows `0..len()` once. Anything else is refused.
    pub fn load(
        path: &Path,
        dim: usize,
        m: usize,
        distance: Distance,
        capacity: usize,
    ) -> Result<Self> {
        check_params(dim, m)?;
        let c = c_path(path)?;
        let mut message = Message::new();
        // SAFETY: a NUL-terminated path, plain values, a buffer of ERROR_BYTES.
        let raw = unsafe {
            ml_hnsw_load(
                c.as_ptr(),
                dim,
                m,
                raw(distance),
                capacity,
                message.ptr(),
                ERROR_BYTES,
            )
        };
        let raw = NonNull::new(raw).ok_or_else(|| message.error())?;
        Ok(Self { raw, dim })
    }
}

fn c_path(path: &Path) -> Result<CString> {
    CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| Error::Params(format!("{} has a NUL byte", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
                let mut z = s;
                z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                ((z ^ (z >> 31)) >> 40) as f32 / (1u64 << 24) as f32 - 0.5
            })
            .collect()
    }

    fn exact(data: &[f32], dim: usize, query: &[f32], k: usize) -> Vec<usize> {
        let mut all: Vec<(usize, f32)> = data
            .chunks_exact(dim)
            .enumerate()
            .map(|(i, v)| (i, milvus_like_distance::l2sq(v, query)))
            .collect();
        all.sort_by(|a, b| a.1.total_cmp(&b.1));
        all.into_iter().take(k).map(|(i, _)| i).collect()
    }

    fn graph(data: &[f32], dim: usize) -> Graph {
        let g = Graph::new(dim, Distance::L2sq, data.len() / dim, 16, 100, 100).expect("new");
        // Rows added from the end: nodes and rows numbered differently.
        for (i, v) in data.chunks_exact(dim).enumerate().rev() {
            g.add(i, v).expect("add");
        }
        g
    }

    #[test]
    fn finds_the_exact_neighbours_and_honours_the_filter() {
        let dim = 16;
        let data = random(2_000 * dim, 1);
        let g = graph(&data, dim);
        assert_eq!(g.len(), 2_000);
        let mut hits = 0;
        for q in 0..50 {
            let query = &data[q * 7 * dim..(q * 7 + 1) * dim];
            let found = g.search(query, 10, 64, None).expect("search");
            assert_eq!(found[0], (q * 7, 0.0), "a stored row is its own nearest");
            let truth = exact(&data, dim, query, 10);
            hits += found.iter().filter(|(r, _)| truth.contains(r)).count();
            assert!(found.windows(2).all(|w| w[0].1 <= w[1].1), "nearest first");
        }
        assert!(hits >= 490, "recall {hits}/500");
        let odd = |row: usize| row % 2 == 1;
        let found = g
            .search(&data[..dim], 10, 64, Some(&odd))
            .expect("filtered");
        assert_eq!(found.len(), 10);
        assert!(found.iter().all(|(r, _)| r % 2 == 1), "{found:?}");
        let none = |_: usize| false;
        assert!(
            g.search(&data[..dim], 10, 64, Some(&none))
                .expect("none")
                .is_empty()
        );
        assert_eq!(
            g.search(&data[..3], 10, 64, None),
            Err(Error::Dimension { got: 3, dim })
        );
        assert_eq!(
            g.add(5_000, &data[..3]),
            Err(Error::Dimension { got: 3, dim })
        );
    }

    #[test]
    fn a_full_graph_refuses_rows_until_it_grows() {
        let dim = 8;
        let data = random(300 * dim, 2);
        let mut g = Graph::new(dim, Distance::L2sq, 200, 8, 50, 1).expect("new");
        for (i, v) in data.chunks_exact(dim).take(200).enumerate() {
            g.add(i, v).expect("add");
        }
        let full = g.add(200, &data[200 * dim..201 * dim]).expect_err("full");
        assert!(matches!(full, Error::Hnswlib(_)), "{full}");
        g.reserve(300).expect("reserve");
        for (i, v) in data.chunks_exact(dim).enumerate().skip(200) {
            g.add(i, v).expect("add");
        }
        let q = &data[250 * dim..251 * dim];
        assert_eq!(g.search(q, 1, 32, None).expect("search")[0].0, 250);
    }

    #[test]
    fn a_saved_graph_loads_back_the_same_and_damage_is_refused() {
        let dim = 12;
        let data = random(1_000 * dim, 3);
        let g = graph(&data, dim);
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("g.bin");
        g.save(&path).expect("save");
        let back = Graph::load(&path, dim, 16, Distance::L2sq, 1_000).expect("load");
        for q in [0, 17, 999] {
            let query = &data[q * dim..(q + 1) * dim];
            assert_eq!(
                back.search(query, 5, 32, None).expect("search"),
                g.search(query, 5, 32, None).expect("search")
            );
        }
        // Another M or dimension than the file's is refused.
        assert!(Graph::load(&path, dim, 8, Distance::L2sq, 0).is_err());
        assert!(Graph::load(&path, dim + 1, 16, Distance::L2sq, 0).is_err());
        // A link pointing outside the graph is refused, whatever it is.
        let mut bytes = std::fs::read(&path).expect("read");
        let header = 8 * 6 + 4 + 4 + 8 * 3 + 8 + 8;
        let first_link = header + 4;
        bytes[first_link..first_link + 4].copy_from_slice(&50_000u32.to_le_bytes());
        std::fs::write(&path, &bytes).expect("write");
        let refused = Graph::load(&path, dim, 16, Distance::L2sq, 0).expect_err("damaged");
        assert!(refused.to_string().contains("outside"), "{refused}");
        // A truncated file.
        std::fs::write(&path, &bytes[..bytes.len() / 2]).expect("write");
        assert!(Graph::load(&path, dim, 16, Distance::L2sq, 0).is_err());
        assert!(Graph::load(&dir.path().join("missing"), dim, 16, Distance::L2sq, 0).is_err());
    }

    #[test]
    fn concurrent_adds_and_searches() {
        let dim = 8;
        let data = random(4_000 * dim, 4);
        let g = Graph::new(dim, Distance::OneMinusDot, 4_000, 16, 64, 7).expect("new");
        std::thread::scope(|s| {
            for t in 0..4 {
                let (g, data) = (&g, &data);
                s.spawn(move || {
                    for i in (t..4_000).step_by(4) {
                        g.add(i, &data[i * dim..(i + 1) * dim]).expect("add");
                        if i % 97 == 0 {
                            g.search(&data[..dim], 5, 16, None).expect("search");
                        }
                    }
                });
            }
        });
        assert_eq!(g.len(), 4_000);
    }
}
