//! The Transformer's element-wise hot paths on `f32` slices: exact (erf) GELU and its
//! derivative, row softmax and its backward, and dropout masks; and the ResNet's residual
//! sum + ReLU.
//!
//! On flex, burn evaluates `erf` and `exp` one scalar libm call at a time and draws dropout
//! masks from one ChaCha stream on one thread; in a BERT-mini MLM step those three took about
//! 30 % of the samples (`perf`, bench/NOTES.md) while the matrix products ran on both cores.
//! Here `exp` and `erf` are branch-free polynomials the compiler vectorises, every pass is split
//! over rayon jobs, and mask bits come from a counter-based hash, so any chunk can be drawn on
//! any thread and the mask depends only on the seed.

use rayon::prelude::*;

/// Elements per rayon job: large enough to amortise scheduling, small enough to spread a
/// `[32, 128, 256]` activation over several jobs.
const CHUNK: usize = 1 << 14;

/// Adds 1.5·2²³ to round a float of magnitude below 2²² to the nearest integer, which then
/// sits in the low mantissa bits (no float-to-int conversion instruction).
const ROUND: f32 = 12_582_912.0;

/// `eˣ` to about 2 ulp (Cephes' `expf` polynomial), branch-free; 0 below −87.3 (where eˣ
/// leaves the normal floats) and e⁸⁸ above 88. Never a subnormal: a subnormal in a softmax
/// row (every padded key) or a GELU tail slowed the matrix products that read them 2.4×.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let input = x;
    let x = x.clamp(-87.3, 88.0);
    // x = n·ln 2 + r, |r| ≤ ln 2 / 2; ln 2 split in two so that n·C1 is exact.
    let shifted = x * std::f32::consts::LOG2_E + ROUND;
    let n = shifted - ROUND;
    let r = x - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 1.666_666_5e-1)
        * r
        + 5.000_000_1e-1;
    let p = p * r * r + r + 1.0;
    let n_int = shifted.to_bits() as i32 - ROUND.to_bits() as i32;
    let y = p * f32::from_bits(((n_int + 127) << 23) as u32);
    // NaN stays NaN (the comparison is false), so a diverging run is still caught.
    if input < -87.3 { 0.0 } else { y }
}

/// `erf(x)` with absolute error below 3e−7, branch-free: the Maclaurin series to x²¹ for
/// |x| < 1 (where `1 − …` below would cancel), Abramowitz & Stegun 7.1.26 (1.5e−7) beyond.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let a = x.abs();
    let x2 = x * x;
    // (2/√π)·(−1)ⁿ / (n!·(2n+1)), n = 10 … 0.
    const SERIES: [f32; 11] = [
        1.480_719_3e-8,
        -1.636_584_5e-7,
        1.646_211_4e-6,
        -1.492_565e-5,
        1.205_533_3e-4,
        -8.548_327e-4,
        5.223_977_6e-3,
        -2.686_617e-2,
        1.128_379_2e-1,
        -3.761_263_9e-1,
        1.128_379_2,
    ];
    let series = x * SERIES.iter().fold(0.0f32, |acc, &c| acc * x2 + c);
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = ((((1.061_405_4 * t - 1.453_152_1) * t + 1.421_413_7) * t - 0.284_496_74) * t
        + 0.254_829_6)
        * t;
    let tail = (1.0 - poly * exp(-x2)).copysign(x);
    if a < 1.0 { series } else { tail }
}

const FRAC_1_SQRT_2: f32 = std::f32::consts::FRAC_1_SQRT_2;
/// 1/√(2π).
const FRAC_1_SQRT_2PI: f32 = 0.398_942_3;

/// A new `n`-element output filled in parallel: `fill(start, piece)` writes elements
/// `start..start + piece.len()`, pieces being `job` long (the last may be shorter). Each kernel
/// reads its inputs at the same offsets.
fn par_fill(n: usize, job: usize, fill: impl Fn(usize, &mut [f32]) + Sync) -> Vec<f32> {
    let mut out = vec![0.0f32; n];
    out.par_chunks_mut(job)
        .enumerate()
        .for_each(|(i, piece)| fill(i * job, piece));
    out
}

/// `x·Φ(x)` with Φ the standard normal CDF (GELU without the tanh approximation).
pub fn gelu_forward(x: &[f32]) -> Vec<f32> {
    par_fill(x.len(), CHUNK, |start, y| {
        for (y, &x) in y.iter_mut().zip(&x[start..]) {
            *y = 0.5 * x * (1.0 + erf(x * FRAC_1_SQRT_2));
        }
    })
}

/// `dy · (Φ(x) + x·φ(x))`: the gradient of [`gelu_forward`] at `x`.
pub fn gelu_backward(x: &[f32], dy: &[f32]) -> Vec<f32> {
    assert_eq!(
        x.len(),
        dy.len(),
        "gelu_backward: x and dy differ in length"
    );
    par_fill(x.len(), CHUNK, |start, dx| {
        for ((dx, &x), &dy) in dx.iter_mut().zip(&x[start..]).zip(&dy[start..]) {
            let cdf = 0.5 * (1.0 + erf(x * FRAC_1_SQRT_2));
            let pdf = FRAC_1_SQRT_2PI * exp(-0.5 * x * x);
            *dx = dy * (cdf + x * pdf);
        }
    })
}

/// `max(a + b, 0)`: a ResNet block's residual sum and ReLU in one pass.
pub fn add_relu_forward(a: &[f32], b: &[f32]) -> Vec<f32> {
    assert_eq!(a.len(), b.len(), "add_relu: a and b differ in length");
    par_fill(a.len(), CHUNK, |start, y| {
        for ((y, &a), &b) in y.iter_mut().zip(&a[start..]).zip(&b[start..]) {
            *y = (a + b).max(0.0);
        }
    })
}

/// `dy` where the ReLU's output `y` is positive, else 0: the gradient of a ReLU read from its
/// output (`y > 0` exactly where the input was), so the input need not be kept.
pub fn relu_backward_from_output(y: &[f32], dy: &[f32]) -> Vec<f32> {
    assert_eq!(
        y.len(),
        dy.len(),
        "relu_backward: y and dy differ in length"
    );
    par_fill(y.len(), CHUNK, |start, dx| {
        for ((dx, &y), &dy) in dx.iter_mut().zip(&y[start..]).zip(&dy[start..]) {
            *dx = if y > 0.0 { dy } else { 0.0 };
        }
    })
}

/// Elements per rayon job for rows of `len` elements: whole rows, about [`CHUNK`] in all.
pub(crate) fn rows_per_job(len: usize) -> usize {
    (CHUNK / len.max(1)).max(1) * len.max(1)
}

/// Softmax of `scale · x` along each row of `len` elements (`scale` > 0).
pub fn softmax_rows(x: &[f32], len: usize, scale: f32) -> Vec<f32> {
    assert!(scale > 0.0, "softmax_rows: scale must be > 0, got {scale}");
    assert!(
        len > 0 && x.len() % len == 0,
        "softmax_rows: {} values are not rows of {len}",
        x.len()
    );
    par_fill(x.len(), rows_per_job(len), |start, y| {
        for (y, x) in y.chunks_exact_mut(len).zip(x[start..].chunks_exact(len)) {
            let max = x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) * scale;
            let mut sum = 0.0f32;
            for (y, &x) in y.iter_mut().zip(x) {
                *y = exp(x * scale - max);
                sum += *y;
            }
            let inv = 1.0 / sum;
            y.iter_mut().for_each(|y| *y *= inv);
        }
    })
}

/// Gradient of `softmax(scale · x)` from its output `y` and `dy`:
/// `scale · y ⊙ (dy − Σ dy ⊙ y)` per row.
pub fn softmax_rows_backward(y: &[f32], dy: &[f32], len: usize, scale: f32) -> Vec<f32> {
    assert_eq!(
        y.len(),
        dy.len(),
        "softmax_rows_backward: y and dy differ in length"
    );
    par_fill(y.len(), rows_per_job(len), |start, dx| {
        let rows = y[start..]
            .chunks_exact(len)
            .zip(dy[start..].chunks_exact(len));
        for (dx, (y, dy)) in dx.chunks_exact_mut(len).zip(rows) {
            let dot: f32 = y.iter().zip(dy).map(|(y, d)| y * d).sum();
            for ((dx, &y), &dy) in dx.iter_mut().zip(y).zip(dy) {
                *dx = scale * y * (dy - dot);
            }
        }
    })
}

/// splitmix64's output function: a bijective mix whose outputs for consecutive inputs are
/// statistically independent.
#[inline(always)]
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Inverted-dropout multipliers for `n` elements: each is `1/keep` with probability `keep`,
/// else 0. Element `i` is decided by bits of `mix64(seed + ⌊i/2⌋·φ)` (the 64-bit golden-ratio
/// increment), so the mask is a function of `seed` alone, whatever the thread count.
pub fn dropout_mask(n: usize, keep: f64, seed: u64) -> Vec<f32> {
    assert!(
        keep > 0.0 && keep <= 1.0,
        "dropout keep probability {keep} outside (0, 1]"
    );
    const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;
    // Keep when the 32-bit draw is below keep·2³² (keep = 1 keeps everything).
    let threshold = (keep * 4_294_967_296.0) as u64;
    let value = (1.0 / keep) as f32;
    // CHUNK is even, so each job starts on a pair boundary.
    par_fill(n, CHUNK, |start, out| {
        let first_pair = (start / 2) as u64;
        for (p, pair) in out.chunks_mut(2).enumerate() {
            let bits = mix64(seed.wrapping_add((first_pair + p as u64).wrapping_mul(GOLDEN)));
            for (k, m) in pair.iter_mut().enumerate() {
                let draw = (bits >> (32 * k)) & 0xffff_ffff;
                *m = if draw < threshold { value } else { 0.0 };
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference values in f64 (std has no erf: a 40-term Maclaurin series, exact to 1e-10
    /// for |x| ≤ 4, ±1 beyond).
    fn erf64(x: f64) -> f64 {
        // erfc(4) = 1.5e-8: ±1 is exact enough beyond.
        if x.abs() > 4.0 {
            return x.signum();
        }
        let mut term = x;
        let mut sum = x;
        for n in 1..80 {
            term *= -x * x / n as f64;
            sum += term / (2 * n + 1) as f64;
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }

    fn grid() -> Vec<f32> {
        (-4000..=4000).map(|i| i as f32 / 500.0).collect()
    }

    #[test]
    fn exp_is_within_3_ulp_of_f64() {
        for x in (-8700..=8800).map(|i| i as f32 / 100.0) {
            let got = exp(x) as f64;
            let want = (x as f64).exp();
            let rel = ((got - want) / want).abs();
            assert!(
                rel < 3.0 * f32::EPSILON as f64,
                "exp({x}) = {got}, want {want}"
            );
        }
        assert_eq!(exp(0.0), 1.0);
        // Nothing subnormal: 0 from where eˣ would leave the normal range, and no NaN.
        for x in [-87.31f32, -90.0, -1e4, f32::NEG_INFINITY] {
            assert_eq!(exp(x), 0.0, "exp({x})");
        }
        for x in (-8730..=8800).map(|i| i as f32 / 100.0) {
            assert!(exp(x).is_normal(), "exp({x}) = {}", exp(x));
        }
        assert!(exp(f32::NAN).is_nan());
    }

    #[test]
    fn erf_is_within_3e_7_of_the_series() {
        for x in grid() {
            let err = (erf(x) as f64 - erf64(x as f64)).abs();
            assert!(err < 3e-7, "erf({x}) off by {err}");
        }
        assert_eq!(erf(0.0), 0.0);
        assert!(erf(-0.3) < 0.0);
    }

    #[test]
    fn gelu_and_its_gradient_match_f64() {
        let mut x = grid();
        // Far tails: exactly 0 (or −0) and no subnormals.
        x.extend([-14.0, -20.0, -100.0, 100.0]);
        let dy: Vec<f32> = x.iter().map(|v| 1.0 + 0.1 * v).collect();
        let y = gelu_forward(&x);
        let dx = gelu_backward(&x, &dy);
        for i in 0..x.len() {
            let v = x[i] as f64;
            let cdf = 0.5 * (1.0 + erf64(v / 2f64.sqrt()));
            let pdf = (-0.5 * v * v).exp() / (2.0 * std::f64::consts::PI).sqrt();
            // erf's 2e-7 times |x|/2, plus f32 rounding of values up to 8.
            let tol = 1e-6 * (1.0 + v.abs());
            assert!((y[i] as f64 - v * cdf).abs() < tol, "gelu({v})");
            let g = dy[i] as f64 * (cdf + v * pdf);
            assert!((dx[i] as f64 - g).abs() < tol, "gelu'({v})");
            for out in [y[i], dx[i]] {
                assert!(out == 0.0 || out.is_normal(), "subnormal at {v}: {out}");
            }
        }
    }

    #[test]
    fn softmax_rows_sum_to_one_and_match_the_definition() {
        let len = 7;
        let x: Vec<f32> = (0..len * 3000)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
            .collect();
        let scale = 0.5;
        let y = softmax_rows(&x, len, scale);
        for (row, out) in x.chunks(len).zip(y.chunks(len)) {
            let e: Vec<f64> = row
                .iter()
                .map(|&v| (scale as f64 * v as f64).exp())
                .collect();
            let s: f64 = e.iter().sum();
            for (o, e) in out.iter().zip(&e) {
                assert!((*o as f64 - e / s).abs() < 1e-6);
            }
        }
        // Masked entries (burn's min_float) get exactly no weight beside ordinary ones.
        let y = softmax_rows(&[1.0, -1e4, 2.0, -1e4], 4, 0.125);
        assert!(y[1] == 0.0 && y[3] == 0.0 && (y[0] + y[2] - 1.0).abs() < 1e-6);
    }

    #[test]
    fn softmax_backward_matches_finite_differences() {
        let len = 5;
        let x = [0.3f32, -1.2, 2.0, 0.0, 0.7];
        let dy = [0.5f32, -0.25, 1.0, 2.0, -1.5];
        let scale = 0.8;
        let y = softmax_rows(&x, len, scale);
        let dx = softmax_rows_backward(&y, &dy, len, scale);
        let loss = |x: &[f32]| -> f64 {
            let y = softmax_rows(x, len, scale);
            y.iter().zip(&dy).map(|(a, b)| *a as f64 * *b as f64).sum()
        };
        for i in 0..len {
            let h = 1e-2;
            let (mut up, mut down) = (x, x);
            up[i] += h;
            down[i] -= h;
            let fd = (loss(&up) - loss(&down)) / (2.0 * h as f64);
            assert!(
                (dx[i] as f64 - fd).abs() < 2e-3,
                "dx[{i}] {} vs {fd}",
                dx[i]
            );
        }
    }

    #[test]
    fn dropout_mask_keeps_the_right_share_and_depends_only_on_the_seed() {
        let n = 1_000_001;
        let mask = dropout_mask(n, 0.9, 42);
        let kept = mask.iter().filter(|&&m| m > 0.0).count() as f64 / n as f64;
        // Binomial std at n = 1e6: 0.0003.
        assert!((kept - 0.9).abs() < 0.0015, "kept {kept}");
        assert!(mask.iter().all(|&m| m == 0.0 || m == (1.0f64 / 0.9) as f32));
        // Mean multiplier 1: inverted dropout leaves the expectation unchanged.
        let mean: f64 = mask.iter().map(|&m| m as f64).sum::<f64>() / n as f64;
        assert!((mean - 1.0).abs() < 0.002, "mean {mean}");
        assert_eq!(mask, dropout_mask(n, 0.9, 42));
        let other = dropout_mask(n, 0.9, 43);
        let same = mask.iter().zip(&other).filter(|(a, b)| a == b).count() as f64 / n as f64;
        // Independent masks agree where both keep or both drop: 0.9² + 0.1² = 0.82.
        assert!((same - 0.82).abs() < 0.003, "agreement {same}");
        // Neighbouring elements are not correlated (each takes its own half of a draw).
        let both = mask
            .chunks_exact(2)
            .filter(|p| p[0] > 0.0 && p[1] > 0.0)
            .count() as f64
            / (n / 2) as f64;
        assert!((both - 0.81).abs() < 0.003, "pairs kept {both}");
        assert!(dropout_mask(1000, 1.0, 1).iter().all(|&m| m == 1.0));
    }
}
