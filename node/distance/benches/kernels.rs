//! The distance kernels against a plain sequential sum (what the exact search
//! of growing data ran before this crate) and against each other, in one run:
//!
//!   cargo bench -p milvus-like-distance [-- ROUNDS]
//!
//! For each dimension, every kernel scores one query against 10,000 vectors
//! (40 MB at 1,024 dimensions: beyond the caches, as a search's rows are), ROUNDS
//! times (default 20); the best round is printed in nanoseconds per vector and
//! in GB/s of vectors read.

use std::hint::black_box;
use std::time::{Duration, Instant};

use milvus_like_distance::{BASELINE, Kernel, kernels};

const ROWS: usize = 10_000;

fn sequential_l2sq(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

fn sequential_dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Deterministic values in [-1, 1).
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// The best of `rounds` passes of `kernel` over every row.
fn best(kernel: Kernel, query: &[f32], rows: &[f32], rounds: usize) -> Duration {
    let dim = query.len();
    (0..rounds)
        .map(|_| {
            let start = Instant::now();
            let mut sum = 0f32;
            for row in rows.chunks_exact(dim) {
                sum += kernel(black_box(query), black_box(row));
            }
            black_box(sum);
            start.elapsed()
        })
        .min()
        .unwrap_or_default()
}

fn main() {
    let rounds: usize = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .and_then(|a| a.parse().ok())
        .unwrap_or(20);
    let chosen = kernels();
    println!(
        "{ROWS} vectors a pass, best of {rounds} passes; chosen kernels: {}",
        chosen.isa
    );
    println!(
        "{:>5} {:>5} {:>22} {:>10} {:>8}",
        "dim", "op", "kernel", "ns/vector", "GB/s"
    );
    for dim in [128, 384, 768, 1024] {
        let query = values(dim, 1);
        let rows = values(dim * ROWS, 2);
        let sets: [(&str, Kernel, Kernel); 3] = [
            ("sequential sum", sequential_l2sq, sequential_dot),
            ("baseline lanes", BASELINE.l2sq, BASELINE.dot),
            (chosen.isa, chosen.l2sq, chosen.dot),
        ];
        for (op, pick) in [("l2sq", 0), ("dot", 1)] {
            for (name, l2sq, dot) in sets {
                let kernel = if pick == 0 { l2sq } else { dot };
                let took = best(kernel, &query, &rows, rounds);
                let ns = took.as_nanos() as f64 / ROWS as f64;
                let gbps = (dim * 4 * ROWS) as f64 / took.as_secs_f64() / 1e9;
                println!("{dim:>5} {op:>5} {name:>22} {ns:>10.1} {gbps:>8.1}");
            }
        }
    }
}
