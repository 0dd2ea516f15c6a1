//! Distance kernels of `f32` vectors: the squared Euclidean distance and the dot
//! product, which is where a vector search spends most of its time (an HNSW
//! graph's build and search, the exact search of growing data).
//!
//! Each kernel is compiled three times: for AVX-512, for AVX2 with FMA, and for
//! the target's baseline (SSE2 on x86-64, NEON on aarch64). The widest one the
//! CPU has is chosen once, at the first call ([`kernels`]), so one binary is fast
//! on every machine it runs on. The sums run in independent lanes (a single
//! running sum would pin the compiler to its order and to one lane), so results
//! may differ from a sequential sum in the last bits.
//!
//! This is one of milvus-like's two library crates with `unsafe` code (the
//! other is `milvus-like-hnswlib`, hnswlib's C interface; the rest forbid it;
//! the node binary allows one libc call): a function compiled for CPU
//! features the build does not assume may only be called once the CPU is known
//! to have them, and USearch's metric callback receives vectors as addresses
//! (so it is installed here, [`use_in_usearch`], where the index's own
//! dimension and scalar type are checked, never handed out).

#![allow(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]

use std::sync::OnceLock;

/// A distance between two vectors of the same length.
pub type Kernel = fn(&[f32], &[f32]) -> f32;

/// The kernels this CPU runs, and the instruction set they were compiled for.
#[derive(Debug, Clone, Copy)]
pub struct Kernels {
    /// `sum((a[i] - b[i])^2)`.
    pub l2sq: Kernel,
    /// `sum(a[i] * b[i])`.
    pub dot: Kernel,
    /// `avx512`, `avx2` or `baseline`.
    pub isa: &'static str,
}

/// The fastest kernels this CPU has (chosen at the first call).
pub fn kernels() -> &'static Kernels {
    static CHOSEN: OnceLock<Kernels> = OnceLock::new();
    CHOSEN.get_or_init(choose)
}

/// The squared Euclidean distance of `a` and `b` (the shorter length counts).
pub fn l2sq(a: &[f32], b: &[f32]) -> f32 {
    (kernels().l2sq)(a, b)
}

/// The dot product of `a` and `b` (the shorter length counts).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    (kernels().dot)(a, b)
}

/// The kernels compiled for the target's baseline only (what [`kernels`] falls
/// back to; the reference the wider ones are compared with).
pub const BASELINE: Kernels = Kernels {
    l2sq: baseline::l2sq,
    dot: baseline::dot,
    isa: "baseline",
};

fn choose() -> Kernels {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return x86::AVX512;
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return x86::AVX2;
        }
    }
    BASELINE
}

/// Lanes of the baseline build: 16 floats (four SSE2 or NEON registers), so
/// consecutive additions do not wait for each other.
const BASELINE_LANES: usize = 16;

/// `sum(f(a[i], b[i]))` in `W` independent lanes, added up at the end (a fold
/// halving the lanes pairwise kept the compiler from vectorizing the loop).
#[inline(always)]
fn lanes<const W: usize>(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) -> f32 {
    let n = a.len().min(b.len());
    let (ca, ta) = a[..n].as_chunks::<W>();
    let (cb, tb) = b[..n].as_chunks::<W>();
    let mut acc = [0f32; W];
    for (x, y) in ca.iter().zip(cb) {
        for i in 0..W {
            acc[i] += f(x[i], y[i]);
        }
    }
    let sum: f32 = acc.iter().sum();
    ta.iter().zip(tb).fold(sum, |sum, (x, y)| sum + f(*x, *y))
}

#[inline(always)]
fn squared_difference(x: f32, y: f32) -> f32 {
    (x - y) * (x - y)
}

#[inline(always)]
fn product(x: f32, y: f32) -> f32 {
    x * y
}

mod baseline {
    use super::{BASELINE_LANES, lanes, product, squared_difference};

    pub(super) fn l2sq(a: &[f32], b: &[f32]) -> f32 {
        lanes::<BASELINE_LANES>(a, b, squared_difference)
    }

    pub(super) fn dot(a: &[f32], b: &[f32]) -> f32 {
        lanes::<BASELINE_LANES>(a, b, product)
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! Hand-written with intrinsics: the compiler's auto-vectorization of
    //! [`super::lanes`] keeps the lanes in registers too narrow for these CPUs.

    use std::arch::x86_64::*;

    use super::Kernels;

    /// Chosen only once the CPU reported AVX-512F.
    pub(super) const AVX512: Kernels = Kernels {
        l2sq: l2sq_avx512,
        dot: dot_avx512,
        isa: "avx512",
    };

    /// Chosen only once the CPU reported AVX2 and FMA.
    pub(super) const AVX2: Kernels = Kernels {
        l2sq: l2sq_avx2,
        dot: dot_avx2,
        isa: "avx2",
    };

    fn l2sq_avx512(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: reachable only through `AVX512`, which `choose` returns only
        // when the CPU has AVX-512F.
        unsafe { sum_avx512::<true>(a, b) }
    }

    fn dot_avx512(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: as for `l2sq_avx512`.
        unsafe { sum_avx512::<false>(a, b) }
    }

    fn l2sq_avx2(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: reachable only through `AVX2`, which `choose` returns only
        // when the CPU has AVX2 and FMA.
        unsafe { sum_avx2::<true>(a, b) }
    }

    fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: as for `l2sq_avx2`.
        unsafe { sum_avx2::<false>(a, b) }
    }

    /// `sum((a - b)^2)` when `L2`, else `sum(a * b)`: 32 floats a round in two
    /// registers, then 16, then the last 0..16 under a mask.
    #[target_feature(enable = "avx512f")]
    fn sum_avx512<const L2: bool>(a: &[f32], b: &[f32]) -> f32 {
        #[target_feature(enable = "avx512f")]
        #[inline]
        fn term<const L2: bool>(x: __m512, y: __m512, acc: __m512) -> __m512 {
            if L2 {
                let d = _mm512_sub_ps(x, y);
                _mm512_fmadd_ps(d, d, acc)
            } else {
                _mm512_fmadd_ps(x, y, acc)
            }
        }
        let n = a.len().min(b.len());
        let (a, b) = (&a[..n], &b[..n]);
        let (mut s0, mut s1) = (_mm512_setzero_ps(), _mm512_setzero_ps());
        let (ca, rest_a) = a.as_chunks::<32>();
        let (cb, rest_b) = b.as_chunks::<32>();
        for (x, y) in ca.iter().zip(cb) {
            // SAFETY: each chunk holds 32 floats; the loads read 16 at offsets
            // 0 and 16 (unaligned loads).
            unsafe {
                s0 = term::<L2>(_mm512_loadu_ps(x.as_ptr()), _mm512_loadu_ps(y.as_ptr()), s0);
                s1 = term::<L2>(
                    _mm512_loadu_ps(x.as_ptr().add(16)),
                    _mm512_loadu_ps(y.as_ptr().add(16)),
                    s1,
                );
            }
        }
        let (ca, rest_a) = rest_a.as_chunks::<16>();
        let (cb, rest_b) = rest_b.as_chunks::<16>();
        for (x, y) in ca.iter().zip(cb) {
            // SAFETY: each chunk holds 16 floats.
            unsafe {
                s0 = term::<L2>(_mm512_loadu_ps(x.as_ptr()), _mm512_loadu_ps(y.as_ptr()), s0)
            };
        }
        let tail = rest_a.len().min(rest_b.len());
        if tail > 0 {
            let mask: __mmask16 = (1u32 << tail).wrapping_sub(1) as __mmask16;
            // SAFETY: the mask lets through the first `tail` floats only, which
            // both slices hold; masked-out lanes are not read.
            unsafe {
                s1 = term::<L2>(
                    _mm512_maskz_loadu_ps(mask, rest_a.as_ptr()),
                    _mm512_maskz_loadu_ps(mask, rest_b.as_ptr()),
                    s1,
                );
            }
        }
        _mm512_reduce_add_ps(_mm512_add_ps(s0, s1))
    }

    /// As [`sum_avx512`] in AVX2 registers: 16 floats a round in two, then 8,
    /// then the last 0..8 one by one.
    #[target_feature(enable = "avx2,fma")]
    fn sum_avx2<const L2: bool>(a: &[f32], b: &[f32]) -> f32 {
        #[target_feature(enable = "avx2,fma")]
        #[inline]
        fn term<const L2: bool>(x: __m256, y: __m256, acc: __m256) -> __m256 {
            if L2 {
                let d = _mm256_sub_ps(x, y);
                _mm256_fmadd_ps(d, d, acc)
            } else {
                _mm256_fmadd_ps(x, y, acc)
            }
        }
        let n = a.len().min(b.len());
        let (a, b) = (&a[..n], &b[..n]);
        let (mut s0, mut s1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let (ca, rest_a) = a.as_chunks::<16>();
        let (cb, rest_b) = b.as_chunks::<16>();
        for (x, y) in ca.iter().zip(cb) {
            // SAFETY: each chunk holds 16 floats; the loads read 8 at offsets 0
            // and 8 (unaligned loads).
            unsafe {
                s0 = term::<L2>(_mm256_loadu_ps(x.as_ptr()), _mm256_loadu_ps(y.as_ptr()), s0);
                s1 = term::<L2>(
                    _mm256_loadu_ps(x.as_ptr().add(8)),
                    _mm256_loadu_ps(y.as_ptr().add(8)),
                    s1,
                );
            }
        }
        let (ca, rest_a) = rest_a.as_chunks::<8>();
        let (cb, rest_b) = rest_b.as_chunks::<8>();
        for (x, y) in ca.iter().zip(cb) {
            // SAFETY: each chunk holds 8 floats.
            unsafe {
                s0 = term::<L2>(_mm256_loadu_ps(x.as_ptr()), _mm256_loadu_ps(y.as_ptr()), s0)
            };
        }
        let s = _mm256_add_ps(s0, s1);
        let s = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps::<1>(s));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps::<0b01>(s, s));
        let tail = rest_a
            .iter()
            .zip(rest_b)
            .map(|(x, y)| if L2 { (x - y) * (x - y) } else { x * y });
        tail.fold(_mm_cvtss_f32(s), |sum, t| sum + t)
    }
}

/// `bytes` as floats, when they are little-endian floats at an address a float
/// may be read from (as Arrow buffers are); `None` otherwise (the caller then
/// decodes them one by one).
pub fn as_floats(bytes: &[u8]) -> Option<&[f32]> {
    let start = bytes.as_ptr().cast::<f32>();
    if cfg!(target_endian = "big") || !bytes.len().is_multiple_of(4) || !start.is_aligned() {
        return None;
    }
    // SAFETY: `start` is aligned for f32 and the `len / 4` floats lie within
    // `bytes`, borrowed for the result's lifetime; every bit pattern is a valid
    // f32, and on a little-endian target these are the floats the bytes encode.
    Some(unsafe { std::slice::from_raw_parts(start, bytes.len() / 4) })
}

/// What USearch's metric computes.
#[cfg(feature = "usearch")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawMetric {
    /// The squared Euclidean distance.
    L2sq,
    /// `1 - dot`: the distance of unit vectors under inner product.
    OneMinusDot,
}

/// A metric callback over vectors given by address (USearch's custom metric).
#[cfg(feature = "usearch")]
type RawCallback = Box<dyn Fn(*const f32, *const f32) -> f32 + Send + Sync>;

/// The callback computing `metric` over `dim`-float vectors with this CPU's
/// kernels.
///
/// # Safety
/// Every call of the callback must pass the addresses of `dim` readable
/// floats each.
#[cfg(feature = "usearch")]
unsafe fn raw_metric(metric: RawMetric, dim: usize) -> RawCallback {
    let kernels = kernels();
    let vectors = move |a: *const f32, b: *const f32| {
        // SAFETY: the contract of `raw_metric`: both addresses hold `dim`
        // floats, alive for the call.
        unsafe {
            (
                std::slice::from_raw_parts(a, dim),
                std::slice::from_raw_parts(b, dim),
            )
        }
    };
    match metric {
        RawMetric::L2sq => {
            let l2sq = kernels.l2sq;
            Box::new(move |a, b| {
                let (a, b) = vectors(a, b);
                l2sq(a, b)
            })
        }
        RawMetric::OneMinusDot => {
            let dot = kernels.dot;
            Box::new(move |a, b| {
                let (a, b) = vectors(a, b);
                1.0 - dot(a, b)
            })
        }
    }
}

/// Why [`use_in_usearch`] refused an index.
#[cfg(feature = "usearch")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotF32(pub usearch::ScalarKind);

/// Makes `index` compute `metric` with these kernels (USearch's own widens
/// `f32` to `f64`, at half the lanes). Not saved with the index: called after
/// every creation and load. Refuses an index whose vectors are not `f32`.
#[cfg(feature = "usearch")]
pub fn use_in_usearch(index: &mut usearch::Index, metric: RawMetric) -> Result<(), NotF32> {
    let scalar = index.scalar_kind();
    if scalar != usearch::ScalarKind::F32 {
        return Err(NotF32(scalar));
    }
    let dim = index.dimensions();
    // SAFETY: USearch calls a metric with its stored vectors and its queries,
    // which it holds (vectors) or checks (queries: `Vector length must match
    // index dimensionality`) to be `dimensions()` scalars of the index's
    // scalar kind, f32 as checked above.
    let callback = unsafe { raw_metric(metric, dim) };
    index.change_metric::<f32>(callback);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sequential_l2sq(a: &[f32], b: &[f32]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2))
            .sum()
    }

    fn sequential_dot(a: &[f32], b: &[f32]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(x, y)| f64::from(*x) * f64::from(*y))
            .sum()
    }

    /// Every kernel set this CPU can run, the widest last.
    fn runnable() -> Vec<Kernels> {
        let mut all = vec![BASELINE];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                all.push(x86::AVX2);
            }
            if std::arch::is_x86_feature_detected!("avx512f") {
                all.push(x86::AVX512);
            }
        }
        all
    }

    fn close(got: f32, want: f64, scale: f64) -> bool {
        (f64::from(got) - want).abs() <= 1e-5 * scale.max(1.0)
    }

    proptest! {
        #[test]
        fn kernels_match_a_sequential_sum(
            pairs in prop::collection::vec((-100f32..100.0, -100f32..100.0), 0..300)
        ) {
            let (a, b): (Vec<f32>, Vec<f32>) = pairs.into_iter().unzip();
            let scale: f64 = a.iter().chain(&b).map(|x| f64::from(*x).powi(2)).sum();
            for k in runnable() {
                prop_assert!(close((k.l2sq)(&a, &b), sequential_l2sq(&a, &b), 4.0 * scale), "{} l2sq", k.isa);
                prop_assert!(close((k.dot)(&a, &b), sequential_dot(&a, &b), scale), "{} dot", k.isa);
            }
        }
    }

    /// Every length up to 300, each slice followed by NaNs: a kernel reading a
    /// float past its slice answers NaN.
    #[test]
    fn no_kernel_reads_past_its_slices() {
        let values: Vec<f32> = (0..300).map(|i| (i % 7) as f32 - 3.0).collect();
        for n in 0..=300 {
            let mut a = values[..n].to_vec();
            let mut b: Vec<f32> = values[..n].iter().map(|v| v * 0.5).collect();
            a.extend([f32::NAN; 32]);
            b.extend([f32::NAN; 32]);
            let (a, b) = (&a[..n], &b[..n]);
            for k in runnable() {
                let l2 = (k.l2sq)(a, b);
                let dot = (k.dot)(a, b);
                assert!(
                    close(l2, sequential_l2sq(a, b), 1.0),
                    "{} l2sq of {n}: {l2}",
                    k.isa
                );
                assert!(
                    close(dot, sequential_dot(a, b), 1.0),
                    "{} dot of {n}: {dot}",
                    k.isa
                );
            }
        }
    }

    #[test]
    fn the_shorter_length_counts() {
        let (a, b) = ([1.0, 2.0, 3.0], [1.0, 1.0]);
        for k in runnable() {
            assert_eq!((k.l2sq)(&a, &b), 1.0, "{}", k.isa);
            assert_eq!((k.dot)(&a, &b), 3.0, "{}", k.isa);
        }
    }

    #[test]
    fn the_widest_instruction_set_is_chosen() {
        let widest = runnable().last().map(|k| k.isa);
        assert_eq!(Some(kernels().isa), widest);
    }

    #[cfg(feature = "usearch")]
    #[test]
    fn raw_metrics_read_dim_floats() {
        let a = [1.0f32, 0.0, 0.0, 9.0];
        let b = [0.0f32, 1.0, 0.0, 9.0];
        // SAFETY: called below with addresses of 4 >= 3 floats only.
        let l2 = unsafe { raw_metric(RawMetric::L2sq, 3) };
        assert_eq!(l2(a.as_ptr(), b.as_ptr()), 2.0);
        // SAFETY: as above.
        let ip = unsafe { raw_metric(RawMetric::OneMinusDot, 3) };
        assert_eq!(ip(a.as_ptr(), a.as_ptr()), 0.0);
        assert_eq!(ip(a.as_ptr(), b.as_ptr()), 1.0);
    }

    #[test]
    fn aligned_little_endian_bytes_are_floats() {
        let floats = [1.5f32, -2.0, 3.25, 0.0];
        // SAFETY: u8 has no alignment and every byte of an f32 is initialized.
        let bytes = unsafe { std::slice::from_raw_parts(floats.as_ptr().cast::<u8>(), 16) };
        if cfg!(target_endian = "little") {
            assert_eq!(as_floats(&bytes[..12]), Some(&floats[..3]));
        }
        assert_eq!(
            as_floats(&bytes[1..13]),
            None,
            "misaligned bytes taken as floats"
        );
        assert_eq!(as_floats(&bytes[..7]), None, "a partial float taken");
    }
}
