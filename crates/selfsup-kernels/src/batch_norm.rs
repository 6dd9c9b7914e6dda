//! Training-mode BatchNorm over NCHW `f32` slices, optionally fused with the ReLU after it.
//!
//! burn's default `batch_norm_train` (which flex keeps) computes each per-channel mean by
//! swapping batch and channel axes, which copies the activation, and its backward does so for
//! two more tensors, with a fresh allocation per elementwise step. Here the statistics and their
//! gradient sums are read in place (one channel per rayon job, `batch` contiguous runs each) and
//! the output or input gradient is written in one pass (one sample per job).

use rayon::prelude::*;

/// `[batch, channels, pixels]` of an NCHW activation (pixels = H·W).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BnShape {
    pub batch: usize,
    pub channels: usize,
    pub pixels: usize,
}

impl BnShape {
    fn count(&self) -> f64 {
        (self.batch * self.pixels) as f64
    }
    fn sample_len(&self) -> usize {
        self.channels * self.pixels
    }
    /// The `batch` contiguous runs of channel `c`.
    fn runs<'a>(&self, t: &'a [f32], c: usize) -> impl Iterator<Item = &'a [f32]> {
        let (p, s) = (self.pixels, self.sample_len());
        (0..self.batch).map(move |b| &t[b * s + c * p..b * s + (c + 1) * p])
    }
}

/// Per-channel batch mean and biased variance (what running statistics and the backward use),
/// two-pass in f64.
pub fn channel_stats(sh: &BnShape, x: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let n = sh.count();
    let stats: Vec<(f32, f32)> = (0..sh.channels)
        .into_par_iter()
        .map(|c| {
            let sum: f64 = sh.runs(x, c).map(|r| lane_sum(r, |v| v)).sum();
            let mean = sum / n;
            let sq: f64 = sh
                .runs(x, c)
                .map(|r| lane_sum(r, |v| (v - mean) * (v - mean)))
                .sum();
            (mean as f32, (sq / n) as f32)
        })
        .collect();
    stats.into_iter().unzip()
}

/// Independent partial sums per loop: with a single accumulator every add waits for the one
/// before (the loop runs at the add's latency, unvectorised); with 16 lanes it vectorises.
/// (Changes the order of the f64/f32 sums, not what they sum.)
const LANES: usize = 16;

/// `Σ f(v)` over `run` in f64, in [`LANES`] partial sums.
fn lane_sum(run: &[f32], f: impl Fn(f64) -> f64) -> f64 {
    let mut acc = [0.0f64; LANES];
    let chunks = run.chunks_exact(LANES);
    let tail: f64 = chunks.remainder().iter().map(|&v| f(v as f64)).sum();
    for chunk in chunks {
        for (a, &v) in acc.iter_mut().zip(chunk) {
            *a += f(v as f64);
        }
    }
    acc.iter().sum::<f64>() + tail
}

/// `(Σ f(x, d).0, Σ f(x, d).1)` over two runs of equal length in f32, in [`LANES`] partial sums.
fn lane_sum_pairs(xs: &[f32], ds: &[f32], f: impl Fn(f32, f32) -> (f32, f32)) -> (f32, f32) {
    let (mut acc1, mut acc2) = ([0.0f32; LANES], [0.0f32; LANES]);
    let (xc, dc) = (xs.chunks_exact(LANES), ds.chunks_exact(LANES));
    let (mut t1, mut t2) = (0.0f32, 0.0f32);
    for (&x, &d) in xc.remainder().iter().zip(dc.remainder()) {
        let (u, v) = f(x, d);
        t1 += u;
        t2 += v;
    }
    for (xs, ds) in xc.zip(dc) {
        for i in 0..LANES {
            let (u, v) = f(xs[i], ds[i]);
            acc1[i] += u;
            acc2[i] += v;
        }
    }
    (acc1.iter().sum::<f32>() + t1, acc2.iter().sum::<f32>() + t2)
}

/// Per-channel `scale = γ/√(var+ε)` and `shift = β − mean·scale`, so that `bn(x) = x·scale + shift`.
pub fn scale_shift(
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    var: &[f32],
    epsilon: f64,
) -> (Vec<f32>, Vec<f32>) {
    (0..gamma.len())
        .map(|c| {
            let inv_std = 1.0 / (var[c] as f64 + epsilon).sqrt();
            let scale = gamma[c] as f64 * inv_std;
            (
                scale as f32,
                (beta[c] as f64 - mean[c] as f64 * scale) as f32,
            )
        })
        .unzip()
}

/// `y = x·scale + shift` per channel, then `max(y, 0)` when `relu`.
pub fn affine(sh: &BnShape, x: &[f32], scale: &[f32], shift: &[f32], relu: bool) -> Vec<f32> {
    let mut y = vec![0.0f32; x.len()];
    let p = sh.pixels;
    y.par_chunks_mut(sh.sample_len())
        .zip(x.par_chunks(sh.sample_len()))
        .for_each(|(y_b, x_b)| {
            for c in 0..sh.channels {
                let (a, s) = (scale[c], shift[c]);
                let ys = &mut y_b[c * p..(c + 1) * p];
                let xs = &x_b[c * p..(c + 1) * p];
                if relu {
                    ys.iter_mut()
                        .zip(xs)
                        .for_each(|(y, &x)| *y = (x * a + s).max(0.0));
                } else {
                    ys.iter_mut().zip(xs).for_each(|(y, &x)| *y = x * a + s);
                }
            }
        });
    y
}

/// Gradients of `y = [relu](bn_train(x; γ, β))` given `dy`: `(dx, dγ, dβ)`. With `relu`, the
/// mask `y > 0` is recomputed from `x` (so only `x` needs keeping for the backward).
#[allow(clippy::too_many_arguments)]
pub fn backward(
    sh: &BnShape,
    x: &[f32],
    dy: &[f32],
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    var: &[f32],
    epsilon: f64,
    relu: bool,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let n = sh.count();
    let inv_std: Vec<f32> = var
        .iter()
        .map(|&v| (1.0 / (v as f64 + epsilon).sqrt()) as f32)
        .collect();
    let (scale, shift) = scale_shift(gamma, beta, mean, var, epsilon);
    // Σ g and Σ g·x̂ per channel, g = dy masked by the ReLU.
    let sums: Vec<(f32, f32)> = (0..sh.channels)
        .into_par_iter()
        .map(|c| {
            let (m, is, a, s) = (mean[c], inv_std[c], scale[c], shift[c]);
            let (mut sg, mut sgx) = (0.0f64, 0.0f64);
            for (xr, dr) in sh.runs(x, c).zip(sh.runs(dy, c)) {
                let (g1, g2) = lane_sum_pairs(xr, dr, |xv, d| {
                    let g = if relu && xv * a + s <= 0.0 { 0.0 } else { d };
                    (g, g * (xv - m) * is)
                });
                sg += g1 as f64;
                sgx += g2 as f64;
            }
            (sg as f32, sgx as f32)
        })
        .collect();
    let (dbeta, dgamma): (Vec<f32>, Vec<f32>) = sums.iter().copied().unzip();
    let mut dx = vec![0.0f32; x.len()];
    let p = sh.pixels;
    dx.par_chunks_mut(sh.sample_len())
        .zip(x.par_chunks(sh.sample_len()))
        .zip(dy.par_chunks(sh.sample_len()))
        .for_each(|((dx_b, x_b), dy_b)| {
            for c in 0..sh.channels {
                let (m, is, a, s) = (mean[c], inv_std[c], scale[c], shift[c]);
                let mean_g = (dbeta[c] as f64 / n) as f32;
                let mean_gx = (dgamma[c] as f64 / n) as f32;
                let k = gamma[c] * is;
                let range = c * p..(c + 1) * p;
                for ((d, &xv), &g) in dx_b[range.clone()]
                    .iter_mut()
                    .zip(&x_b[range.clone()])
                    .zip(&dy_b[range])
                {
                    let g = if relu && xv * a + s <= 0.0 { 0.0 } else { g };
                    *d = k * (g - mean_g - (xv - m) * is * mean_gx);
                }
            }
        });
    (dx, dgamma, dbeta)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lane-summed statistics against the plain two-pass definition in f64, including a
    /// channel whose mean (10,000) is large against its spread (0.01), where a one-pass
    /// Σx² − (Σx)²/n would lose most of the variance's digits even in f64.
    #[test]
    fn channel_stats_match_the_two_pass_definition() {
        let sh = BnShape {
            batch: 3,
            channels: 2,
            pixels: 37,
        };
        let noise = crate::conv::tests::pseudo_random(2 * sh.batch * sh.pixels, 12345);
        let mut noise = noise.into_iter();
        let mut x = vec![0.0f32; sh.batch * sh.sample_len()];
        for b in 0..sh.batch {
            for p in 0..sh.pixels {
                x[b * sh.sample_len() + p] = noise.next().unwrap() + 0.3;
                x[b * sh.sample_len() + sh.pixels + p] = 10_000.0 + 0.005 * noise.next().unwrap();
            }
        }
        let (mean, var) = channel_stats(&sh, &x);
        for c in 0..sh.channels {
            let vals: Vec<f64> = sh.runs(&x, c).flatten().map(|&v| v as f64).collect();
            let m = vals.iter().sum::<f64>() / vals.len() as f64;
            let v = vals.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / vals.len() as f64;
            assert!(
                (mean[c] as f64 - m).abs() <= 1e-6 * m.abs().max(1.0),
                "mean {c}"
            );
            assert!(
                (var[c] as f64 - v).abs() <= 1e-4 * v,
                "var {c}: {} vs {v}",
                var[c]
            );
        }
    }
}
