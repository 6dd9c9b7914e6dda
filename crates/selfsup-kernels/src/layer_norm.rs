//! LayerNorm over the last axis on `f32` rows, forward and backward, each one pass per row.
//!
//! burn 0.22's autodiff runs `layer_norm` as its default composite (mean, subtract, square,
//! mean, add ε, sqrt, divide, scale, shift): nine passes forward, and the centred and the
//! normalised input both kept for the backward. Here the forward keeps only the per-row mean
//! and 1/σ beside the input, which the layer before has made anyway; a ViT has two of these per
//! block.

use rayon::prelude::*;

/// Rows per rayon job: as many as the element-wise row kernels give a job.
fn rows_per_job(width: usize) -> usize {
    crate::elementwise::rows_per_job(width) / width.max(1)
}

fn check_rows(n: usize, width: usize, op: &str) -> usize {
    assert!(
        width > 0 && n % width == 0,
        "{op}: {n} values are not rows of {width}"
    );
    n / width
}

/// `(y, mean, rstd)` of `y = γ·(x − mean)·rstd + β` per row of `gamma.len()` elements, with
/// `mean` and `rstd = 1/√(var + ε)` (biased variance) per row.
pub fn forward(
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    epsilon: f32,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let width = gamma.len();
    assert_eq!(
        beta.len(),
        width,
        "layer_norm: gamma and beta differ in length"
    );
    let rows = check_rows(x.len(), width, "layer_norm");
    let mut y = vec![0.0f32; x.len()];
    let mut mean = vec![0.0f32; rows];
    let mut rstd = vec![0.0f32; rows];
    let job = rows_per_job(width);
    y.par_chunks_mut(job * width)
        .zip(mean.par_chunks_mut(job))
        .zip(rstd.par_chunks_mut(job))
        .zip(x.par_chunks(job * width))
        .for_each(|(((y, mean), rstd), x)| {
            let rows = y.chunks_exact_mut(width).zip(x.chunks_exact(width));
            for (((y, x), mean), rstd) in rows.zip(mean.iter_mut()).zip(rstd.iter_mut()) {
                let m = x.iter().sum::<f32>() / width as f32;
                let var = x.iter().map(|&v| (v - m) * (v - m)).sum::<f32>() / width as f32;
                let r = 1.0 / (var + epsilon).sqrt();
                for (((y, &x), &g), &b) in y.iter_mut().zip(x).zip(gamma).zip(beta) {
                    *y = (x - m) * r * g + b;
                }
                (*mean, *rstd) = (m, r);
            }
        });
    (y, mean, rstd)
}

/// `(∂L/∂x, ∂L/∂γ, ∂L/∂β)` from `∂L/∂y` and the forward's `mean` and `rstd`: with
/// `x̂ = (x − mean)·rstd` and `g = γ ⊙ ∂L/∂y`, `∂L/∂x = rstd·(g − mean(g) − x̂·mean(g ⊙ x̂))`
/// per row; `∂L/∂γ = Σ_rows ∂L/∂y ⊙ x̂`, `∂L/∂β = Σ_rows ∂L/∂y`.
pub fn backward(
    x: &[f32],
    gamma: &[f32],
    mean: &[f32],
    rstd: &[f32],
    dy: &[f32],
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let width = gamma.len();
    let rows = check_rows(x.len(), width, "layer_norm backward");
    assert_eq!(
        dy.len(),
        x.len(),
        "layer_norm backward: x and dy differ in length"
    );
    assert!(
        mean.len() == rows && rstd.len() == rows,
        "layer_norm backward: statistics for {} rows, input has {rows}",
        mean.len()
    );
    let job = rows_per_job(width);
    let mut dx = vec![0.0f32; x.len()];
    // Each job sums ∂L/∂γ and ∂L/∂β over its rows; the partial sums are added at the end.
    let partials: Vec<(Vec<f32>, Vec<f32>)> = dx
        .par_chunks_mut(job * width)
        .zip(x.par_chunks(job * width))
        .zip(dy.par_chunks(job * width))
        .zip(mean.par_chunks(job).zip(rstd.par_chunks(job)))
        .map(|(((dx, x), dy), (mean, rstd))| {
            let mut dgamma = vec![0.0f32; width];
            let mut dbeta = vec![0.0f32; width];
            let rows = dx
                .chunks_exact_mut(width)
                .zip(x.chunks_exact(width))
                .zip(dy.chunks_exact(width));
            for (((dx, x), dy), (&m, &r)) in rows.zip(mean.iter().zip(rstd)) {
                let (mut sum_g, mut sum_gx) = (0.0f32, 0.0f32);
                for i in 0..width {
                    let xhat = (x[i] - m) * r;
                    let g = gamma[i] * dy[i];
                    sum_g += g;
                    sum_gx += g * xhat;
                    dgamma[i] += dy[i] * xhat;
                    dbeta[i] += dy[i];
                }
                let (mean_g, mean_gx) = (sum_g / width as f32, sum_gx / width as f32);
                for i in 0..width {
                    let xhat = (x[i] - m) * r;
                    dx[i] = r * (gamma[i] * dy[i] - mean_g - xhat * mean_gx);
                }
            }
            (dgamma, dbeta)
        })
        .collect();
    let (mut dgamma, mut dbeta) = (vec![0.0f32; width], vec![0.0f32; width]);
    for (g, b) in partials {
        dgamma.iter_mut().zip(g).for_each(|(a, v)| *a += v);
        dbeta.iter_mut().zip(b).for_each(|(a, v)| *a += v);
    }
    (dx, dgamma, dbeta)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic values in about [−2, 2] with a per-row offset, so rows differ in mean.
    fn values(n: usize, salt: u32) -> Vec<f32> {
        (0..n)
            .map(|i| {
                let h = (i as u32).wrapping_mul(2_654_435_761).wrapping_add(salt) >> 8;
                (h % 4001) as f32 / 1000.0 - 2.0 + (i / 7) as f32 * 0.01
            })
            .collect()
    }

    /// The loss `Σ w ⊙ layer_norm(x)` in f64, for finite differences.
    fn loss64(x: &[f32], gamma: &[f32], beta: &[f32], w: &[f32], eps: f64) -> f64 {
        let width = gamma.len();
        x.chunks(width)
            .zip(w.chunks(width))
            .map(|(x, w)| {
                let m = x.iter().map(|&v| v as f64).sum::<f64>() / width as f64;
                let var = x.iter().map(|&v| (v as f64 - m).powi(2)).sum::<f64>() / width as f64;
                let r = 1.0 / (var + eps).sqrt();
                (0..width)
                    .map(|i| {
                        w[i] as f64 * ((x[i] as f64 - m) * r * gamma[i] as f64 + beta[i] as f64)
                    })
                    .sum::<f64>()
            })
            .sum()
    }

    /// With γ = 1, β = 0 each output row has mean 0 and variance var/(var + ε), and the
    /// statistics returned are the row's.
    #[test]
    fn forward_normalises_each_row() {
        let (rows, width) = (37, 24);
        let x = values(rows * width, 3);
        let (y, mean, rstd) = forward(&x, &vec![1.0; width], &vec![0.0; width], 1e-5);
        for r in 0..rows {
            let row = &x[r * width..(r + 1) * width];
            let m = row.iter().map(|&v| v as f64).sum::<f64>() / width as f64;
            let var = row.iter().map(|&v| (v as f64 - m).powi(2)).sum::<f64>() / width as f64;
            assert!((mean[r] as f64 - m).abs() < 1e-5, "row {r} mean");
            assert!(
                (rstd[r] as f64 - 1.0 / (var + 1e-5).sqrt()).abs() < 1e-4,
                "row {r} rstd"
            );
            let out = &y[r * width..(r + 1) * width];
            let out_mean = out.iter().map(|&v| v as f64).sum::<f64>() / width as f64;
            let out_var = out
                .iter()
                .map(|&v| (v as f64 - out_mean).powi(2))
                .sum::<f64>()
                / width as f64;
            assert!(out_mean.abs() < 1e-5, "row {r}: output mean {out_mean}");
            assert!(
                (out_var - var / (var + 1e-5)).abs() < 1e-4,
                "row {r}: output var {out_var}"
            );
        }
    }

    /// The three gradients match central finite differences of the f64 loss.
    #[test]
    fn backward_matches_finite_differences() {
        let (rows, width, eps) = (5, 12, 1e-5);
        let x = values(rows * width, 11);
        let gamma: Vec<f32> = values(width, 5).iter().map(|v| 1.0 + 0.3 * v).collect();
        let beta = values(width, 9);
        let w = values(rows * width, 21);
        let (_, mean, rstd) = forward(&x, &gamma, &beta, eps as f32);
        let (dx, dgamma, dbeta) = backward(&x, &gamma, &mean, &rstd, &w);
        let h = 1e-2f32;
        let numeric = |which: usize, i: usize| {
            let (mut xp, mut gp, mut bp) = (x.clone(), gamma.clone(), beta.clone());
            let (mut xm, mut gm, mut bm) = (x.clone(), gamma.clone(), beta.clone());
            match which {
                0 => (xp[i] += h, xm[i] -= h),
                1 => (gp[i] += h, gm[i] -= h),
                _ => (bp[i] += h, bm[i] -= h),
            };
            (loss64(&xp, &gp, &bp, &w, eps) - loss64(&xm, &gm, &bm, &w, eps)) / (2.0 * h as f64)
        };
        for (which, grad) in [(0, &dx), (1, &dgamma), (2, &dbeta)] {
            for (i, &g) in grad.iter().enumerate() {
                let n = numeric(which, i);
                assert!(
                    (g as f64 - n).abs() < 2e-3 * n.abs().max(1.0),
                    "gradient {which}[{i}]: kernel {g}, finite differences {n}"
                );
            }
        }
    }
}
