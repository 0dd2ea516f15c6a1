//! The search kernels of the read path (docs/read-path-design.md, step 3): an
//! exact top-k over a block of vectors, and the merge of several top-k lists
//! into one. Query nodes search growing data and small segments with the first
//! and merge per-segment results with the second; the proxy merges the query
//! nodes' answers with the second.
//!
//! Scores follow Milvus: L2 is the squared Euclidean distance (smaller is
//! nearer); IP is the inner product and COSINE the cosine similarity (larger is
//! nearer). Equal scores are ordered by id, so that every result is
//! deterministic. A cosine against a zero vector scores 0.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashSet};

use milvus_like_api::schema::Metric;
use milvus_like_api::vectors::Floats;
use milvus_like_distance::{as_floats, dot, l2sq};

use crate::keys::{Key, KeyRef, KeysRef};

/// One result: a row's id (its primary key) and its score against the query.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub id: Key,
    pub score: f32,
}

/// Whether `a` comes before `b` in a result of `metric`: nearer first, then the
/// smaller id.
pub fn order(metric: Metric, a: &Hit, b: &Hit) -> Ordering {
    by_score(metric, a.score, b.score).then_with(|| a.id.cmp(&b.id))
}

fn by_score(metric: Metric, a: f32, b: f32) -> Ordering {
    match metric {
        Metric::L2 => a.total_cmp(&b),
        Metric::InnerProduct | Metric::Cosine => b.total_cmp(&a),
    }
}

/// The score of `row` against `query` (same length) under `metric`;
/// `query_norm` is the query's Euclidean norm (used by COSINE only).
fn score(metric: Metric, query: &[f32], query_norm: f32, row: &[f32]) -> f32 {
    match metric {
        Metric::L2 => l2sq(query, row),
        Metric::InnerProduct => dot(query, row),
        Metric::Cosine => {
            let denominator = query_norm * dot(row, row).sqrt();
            if denominator == 0.0 {
                0.0
            } else {
                dot(query, row) / denominator
            }
        }
    }
}

/// A hit (with its row) in a heap whose top is the worst kept hit; its key
/// borrowed, so that a search copies only the keys it returns.
struct Kept<'a> {
    score: f32,
    key: KeyRef<'a>,
    row: usize,
    metric: Metric,
}

impl Kept<'_> {
    fn order(&self, other: &Self) -> Ordering {
        by_score(self.metric, self.score, other.score).then_with(|| self.key.cmp(&other.key))
    }
}

impl PartialEq for Kept<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Kept<'_> {}

impl PartialOrd for Kept<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Kept<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.order(other)
    }
}

/// Why a search was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SearchError {
    #[error("the query has {got} numbers; the vectors have dimension {dim}")]
    WrongDimension { got: usize, dim: usize },
    #[error("the block holds {floats} floats for {rows} ids at dimension {dim}")]
    BadBlock {
        floats: usize,
        rows: usize,
        dim: usize,
    },
    #[error("the index could not be searched: {0}")]
    Index(String),
}

/// The `k` rows of `vectors` (row-major, `dim` floats each; row `i` has id
/// `ids[i]`) nearest to `query` under `metric`, nearest first, among the rows
/// `visible` keeps (deleted or too new rows are left out by it).
pub fn flat_top_k<'a>(
    metric: Metric,
    dim: usize,
    vectors: &Floats,
    ids: impl Into<KeysRef<'a>>,
    query: &[f32],
    k: usize,
    visible: impl Fn(usize) -> bool,
) -> Result<Vec<Hit>, SearchError> {
    let hits = flat_top_k_rows(metric, dim, vectors, ids, query, k, visible)?;
    Ok(hits.into_iter().map(|(hit, _)| hit).collect())
}

/// [`flat_top_k`], each hit with its row in `vectors`.
pub fn flat_top_k_rows<'a>(
    metric: Metric,
    dim: usize,
    vectors: &Floats,
    ids: impl Into<KeysRef<'a>>,
    query: &[f32],
    k: usize,
    visible: impl Fn(usize) -> bool,
) -> Result<Vec<(Hit, usize)>, SearchError> {
    let ids = ids.into();
    if query.len() != dim {
        return Err(SearchError::WrongDimension {
            got: query.len(),
            dim,
        });
    }
    if vectors.len() != ids.len() * dim {
        return Err(SearchError::BadBlock {
            floats: vectors.len(),
            rows: ids.len(),
            dim,
        });
    }
    if k == 0 || dim == 0 {
        return Ok(Vec::new());
    }
    let query_norm = dot(query, query).sqrt();
    // The block's floats in place where they are aligned (Arrow buffers are);
    // else each row is decoded into `scratch` first.
    let floats = as_floats(vectors.as_le_bytes());
    let mut scratch = Vec::with_capacity(if floats.is_some() { 0 } else { dim });
    let mut heap: BinaryHeap<Kept> = BinaryHeap::with_capacity(k + 1);
    for (i, key) in ids.iter().enumerate() {
        if !visible(i) {
            continue;
        }
        let row = match floats {
            Some(floats) => &floats[i * dim..(i + 1) * dim],
            None => {
                scratch.clear();
                scratch.extend(vectors.row(dim, i).into_iter().flatten());
                &scratch
            }
        };
        let kept = Kept {
            score: score(metric, query, query_norm, row),
            key,
            row: i,
            metric,
        };
        if heap.len() < k {
            heap.push(kept);
        } else if let Some(worst) = heap.peek()
            && kept.order(worst) == Ordering::Less
        {
            heap.pop();
            heap.push(kept);
        }
    }
    Ok(heap
        .into_sorted_vec()
        .into_iter()
        .map(|k| {
            let hit = Hit {
                id: k.key.to_owned(),
                score: k.score,
            };
            (hit, k.row)
        })
        .collect())
}

/// The best `k` of several results (each ordered by [`order`]), nearest first.
/// An id in more than one list counts once, with its best score: a row seen by
/// two sources (growing data and the segment that replaced it) is one row.
pub fn merge(metric: Metric, lists: &[Vec<Hit>], k: usize) -> Vec<Hit> {
    let lists: Vec<Vec<(Hit, ())>> = lists
        .iter()
        .map(|l| l.iter().map(|h| (h.clone(), ())).collect())
        .collect();
    merge_with(metric, &lists, k)
        .into_iter()
        .map(|(hit, ())| hit)
        .collect()
}

/// [`merge`] of hits that carry where they came from (`T`), kept with them.
pub fn merge_with<T: Clone>(metric: Metric, lists: &[Vec<(Hit, T)>], k: usize) -> Vec<(Hit, T)> {
    let mut all: Vec<&(Hit, T)> = lists.iter().flatten().collect();
    all.sort_by(|a, b| order(metric, &a.0, &b.0));
    let mut seen = HashSet::new();
    all.into_iter()
        .filter(|hit| seen.insert(&hit.0.id))
        .take(k)
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, RngSeed};

    use super::*;

    const METRICS: [Metric; 3] = [Metric::L2, Metric::InnerProduct, Metric::Cosine];

    /// Every row scored in f64 and sorted: the oracle.
    fn brute_force(
        metric: Metric,
        dim: usize,
        values: &[f32],
        ids: &[i64],
        query: &[f32],
    ) -> Vec<(i64, f64)> {
        let q: Vec<f64> = query.iter().map(|x| f64::from(*x)).collect();
        let qn = q.iter().map(|x| x * x).sum::<f64>().sqrt();
        let mut all: Vec<(i64, f64)> = ids
            .iter()
            .enumerate()
            .map(|(i, &id)| {
                let v: Vec<f64> = values[i * dim..(i + 1) * dim]
                    .iter()
                    .map(|x| f64::from(*x))
                    .collect();
                let dot: f64 = q.iter().zip(&v).map(|(a, b)| a * b).sum();
                let s = match metric {
                    Metric::L2 => q.iter().zip(&v).map(|(a, b)| (a - b) * (a - b)).sum(),
                    Metric::InnerProduct => dot,
                    Metric::Cosine => {
                        let vn = v.iter().map(|x| x * x).sum::<f64>().sqrt();
                        if qn * vn == 0.0 { 0.0 } else { dot / (qn * vn) }
                    }
                };
                (id, s)
            })
            .collect();
        all.sort_by(|a, b| match metric {
            Metric::L2 => a.1.total_cmp(&b.1),
            _ => b.1.total_cmp(&a.1),
        });
        all
    }

    fn block() -> impl Strategy<Value = (usize, Vec<f32>, Vec<f32>, usize)> {
        (1usize..12, 0usize..80).prop_flat_map(|(dim, rows)| {
            // Small integers: scores are exact in f32, so ties are real ties.
            let number = (-4i8..=4).prop_map(f32::from);
            (
                Just(dim),
                prop::collection::vec(number.clone(), rows * dim),
                prop::collection::vec(number, dim),
                0usize..20,
            )
        })
    }

    proptest! {
        #![proptest_config(Config {
            cases: 256,
            rng_seed: RngSeed::Fixed(15),
            ..Config::default()
        })]

        /// The kept hits are the oracle's best k, in its order (ties by id),
        /// with the same scores; invisible rows never appear.
        #[test]
        fn flat_top_k_is_the_brute_force_top_k((dim, values, query, k) in block(), hidden in any::<u64>()) {
            let rows = values.len() / dim;
            let ids: Vec<i64> = (0..rows as i64).map(|i| 1000 - 3 * i).collect();
            let visible = |i: usize| hidden >> (i % 64) & 1 == 0;
            let floats = Floats::from(values.as_slice());
            for metric in METRICS {
                let got = flat_top_k(metric, dim, &floats, &ids, &query, k, visible).expect("search");
                let kept: Vec<f32> = values.chunks(dim).enumerate().filter(|(i, _)| visible(*i)).flat_map(|(_, r)| r.to_vec()).collect();
                let kept_ids: Vec<i64> = ids.iter().enumerate().filter(|(i, _)| visible(*i)).map(|(_, id)| *id).collect();
                let oracle = brute_force(metric, dim, &kept, &kept_ids, &query);
                prop_assert_eq!(got.len(), k.min(oracle.len()));
                for (hit, (id, s)) in got.iter().zip(&oracle) {
                    prop_assert!((f64::from(hit.score) - s).abs() <= 1e-4 * s.abs().max(1.0), "{metric:?}: {hit:?} vs {s}");
                    // Same score at this rank: the oracle may order ties another way.
                    let tied: Vec<i64> = oracle.iter().filter(|(_, t)| (t - s).abs() <= 1e-4 * s.abs().max(1.0)).map(|(i, _)| *i).collect();
                    prop_assert!(tied.iter().any(|t| hit.id == *t), "{metric:?}: {hit:?} not among {tied:?} ({id})");
                }
                for pair in got.windows(2) {
                    prop_assert_ne!(order(metric, &pair[0], &pair[1]), Ordering::Greater);
                }
            }
        }

        /// Searching parts and merging equals searching the whole.
        #[test]
        fn merged_parts_are_the_whole((dim, values, query, k) in block(), cut in any::<prop::sample::Index>()) {
            let rows = values.len() / dim;
            let ids: Vec<i64> = (0..rows as i64).collect();
            let at = cut.index(rows + 1);
            for metric in METRICS {
                let whole = flat_top_k(metric, dim, &Floats::from(values.as_slice()), &ids, &query, k, |_| true).expect("whole");
                let parts = [
                    flat_top_k(metric, dim, &Floats::from(&values[..at * dim]), &ids[..at], &query, k, |_| true).expect("first"),
                    flat_top_k(metric, dim, &Floats::from(&values[at * dim..]), &ids[at..], &query, k, |_| true).expect("second"),
                ];
                prop_assert_eq!(merge(metric, &parts, k), whole);
            }
        }

        /// Vectors at an address no float may be read from (a block cut from a
        /// message at any byte) are decoded, with the same answer.
        #[test]
        fn misaligned_vectors_are_searched_alike((dim, values, query, k) in block()) {
            let ids: Vec<i64> = (0..(values.len() / dim) as i64).collect();
            let mut shifted = vec![0u8];
            shifted.extend(values.iter().flat_map(|v| v.to_le_bytes()));
            let shifted = Floats::from_le_bytes(bytes::Bytes::from(shifted).slice(1..)).expect("whole floats");
            prop_assert!(as_floats(shifted.as_le_bytes()).is_none() || values.is_empty());
            for metric in METRICS {
                let aligned = flat_top_k(metric, dim, &Floats::from(values.as_slice()), &ids, &query, k, |_| true).expect("aligned");
                let decoded = flat_top_k(metric, dim, &shifted, &ids, &query, k, |_| true).expect("misaligned");
                prop_assert_eq!(decoded, aligned);
            }
        }
    }

    #[test]
    fn scores_are_milvus_s() {
        let vectors = Floats::from(vec![3.0f32, 4.0, 0.0, 0.0, -1.0, 0.0]);
        let query = [1.0f32, 0.0];
        let hits = |metric| {
            flat_top_k(metric, 2, &vectors, &[7, 8, 9], &query, 3, |_| true).expect("search")
        };
        let l2 = hits(Metric::L2);
        assert_eq!(
            l2.iter()
                .map(|h| (h.id.clone(), h.score))
                .collect::<Vec<_>>(),
            [(Key::Int(8), 1.0), (Key::Int(9), 4.0), (Key::Int(7), 20.0)]
        );
        let ip = hits(Metric::InnerProduct);
        assert_eq!(
            ip.iter()
                .map(|h| (h.id.clone(), h.score))
                .collect::<Vec<_>>(),
            [(Key::Int(7), 3.0), (Key::Int(8), 0.0), (Key::Int(9), -1.0)]
        );
        let cosine = hits(Metric::Cosine);
        assert_eq!(
            cosine
                .iter()
                .map(|h| (h.id.clone(), h.score))
                .collect::<Vec<_>>(),
            [(Key::Int(7), 0.6), (Key::Int(8), 0.0), (Key::Int(9), -1.0)]
        );
    }

    #[test]
    fn a_row_seen_twice_counts_once_with_its_best_score() {
        let a = vec![
            Hit {
                id: Key::Int(1),
                score: 0.5,
            },
            Hit {
                id: Key::Int(2),
                score: 2.0,
            },
        ];
        let b = vec![
            Hit {
                id: Key::Int(1),
                score: 0.1,
            },
            Hit {
                id: Key::Int(3),
                score: 1.0,
            },
        ];
        assert_eq!(
            merge(Metric::L2, &[a, b], 10),
            [
                Hit {
                    id: Key::Int(1),
                    score: 0.1
                },
                Hit {
                    id: Key::Int(3),
                    score: 1.0
                },
                Hit {
                    id: Key::Int(2),
                    score: 2.0
                }
            ]
        );
    }

    #[test]
    fn bad_shapes_are_refused() {
        let vectors = Floats::from(vec![1.0f32; 6]);
        assert_eq!(
            flat_top_k(Metric::L2, 3, &vectors, &[1, 2], &[1.0, 2.0], 1, |_| true),
            Err(SearchError::WrongDimension { got: 2, dim: 3 })
        );
        assert_eq!(
            flat_top_k(Metric::L2, 3, &vectors, &[1], &[1.0, 2.0, 3.0], 1, |_| true),
            Err(SearchError::BadBlock {
                floats: 6,
                rows: 1,
                dim: 3
            })
        );
        assert_eq!(
            flat_top_k(Metric::L2, 3, &vectors, &[1, 2], &[0.0; 3], 0, |_| true),
            Ok(vec![])
        );
    }
}
