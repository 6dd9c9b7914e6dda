//! Classification metrics and collapse diagnostics for embeddings.

use crate::{EvalError, Features, Result};

fn check_labels(preds_len: usize, labels: &[u32]) -> Result<()> {
    if labels.is_empty() {
        return Err(EvalError::Empty("no labels".into()));
    }
    if preds_len != labels.len() {
        return Err(EvalError::DimMismatch(format!(
            "{preds_len} predictions for {} labels",
            labels.len()
        )));
    }
    Ok(())
}

/// Fraction of `predictions` equal to `labels`.
pub fn accuracy(predictions: &[u32], labels: &[u32]) -> Result<f64> {
    check_labels(predictions.len(), labels)?;
    let correct = predictions
        .iter()
        .zip(labels)
        .filter(|(p, l)| p == l)
        .count();
    Ok(correct as f64 / labels.len() as f64)
}

/// Index of the maximum of each row of a row-major `? × num_classes` matrix
/// (lowest index wins ties; NaN never wins).
pub fn argmax_rows(scores: &[f32], num_classes: usize) -> Vec<u32> {
    scores
        .chunks_exact(num_classes)
        .map(|row| {
            let mut best = 0usize;
            for (c, &v) in row.iter().enumerate() {
                if v > row[best] || row[best].is_nan() {
                    best = c;
                }
            }
            best as u32
        })
        .collect()
}

/// Top-k accuracy from a row-major `n × num_classes` score matrix: a sample is
/// correct when its label is among the first `k` classes after a stable sort by
/// descending score (ties go to the lower class index, as [`argmax_rows`]).
pub fn top_k_accuracy(scores: &[f32], num_classes: usize, labels: &[u32], k: usize) -> Result<f64> {
    if num_classes == 0 || !scores.len().is_multiple_of(num_classes) {
        return Err(EvalError::DimMismatch(format!(
            "scores length {} is not a multiple of num_classes {num_classes}",
            scores.len()
        )));
    }
    check_labels(scores.len() / num_classes, labels)?;
    if k == 0 {
        return Err(EvalError::InvalidArgument("k must be > 0".into()));
    }
    let mut correct = 0usize;
    for (row, &l) in scores.chunks_exact(num_classes).zip(labels) {
        let l = l as usize;
        if l >= num_classes {
            return Err(EvalError::InvalidArgument(format!(
                "label {l} >= num_classes {num_classes}"
            )));
        }
        let s = row[l];
        let higher = row
            .iter()
            .enumerate()
            .filter(|&(c, &v)| v > s || (v == s && c < l))
            .count();
        if higher < k {
            correct += 1;
        }
    }
    Ok(correct as f64 / labels.len() as f64)
}

/// Confusion matrix, row-major `num_classes × num_classes`: entry
/// `[true * num_classes + pred]` counts samples of class `true` predicted as `pred`.
pub fn confusion_matrix(
    predictions: &[u32],
    labels: &[u32],
    num_classes: usize,
) -> Result<Vec<u64>> {
    check_labels(predictions.len(), labels)?;
    let mut m = vec![0u64; num_classes * num_classes];
    for (&p, &l) in predictions.iter().zip(labels) {
        let (p, l) = (p as usize, l as usize);
        if p >= num_classes || l >= num_classes {
            return Err(EvalError::InvalidArgument(format!(
                "class {} >= num_classes {num_classes}",
                p.max(l)
            )));
        }
        m[l * num_classes + p] += 1;
    }
    Ok(m)
}

/// Mean over dimensions of the per-dimension standard deviation (unbiased,
/// `n - 1`, as `torch.std`) of the L2-normalised embeddings. Collapse → 0;
/// uniformly spread embeddings → about `1/sqrt(dim)`. Needs `n >= 2`.
pub fn embedding_std(z: &Features) -> Result<f64> {
    z.validate("embeddings")?;
    if z.n < 2 {
        return Err(EvalError::Empty(
            "embedding_std needs at least 2 samples".into(),
        ));
    }
    let zn = z.l2_normalized();
    let d = z.dim;
    let mut mean = vec![0.0f64; d];
    for row in zn.data.chunks_exact(d) {
        for (m, &v) in mean.iter_mut().zip(row) {
            *m += v as f64;
        }
    }
    mean.iter_mut().for_each(|m| *m /= z.n as f64);
    let mut var = vec![0.0f64; d];
    for row in zn.data.chunks_exact(d) {
        for ((s, &v), m) in var.iter_mut().zip(row).zip(&mean) {
            let c = v as f64 - m;
            *s += c * c;
        }
    }
    Ok(var
        .iter()
        .map(|s| (s / (z.n - 1) as f64).sqrt())
        .sum::<f64>()
        / d as f64)
}

/// RankMe effective rank (Garrido et al. 2023) of the raw embedding matrix:
/// `exp(-Σ p_i log p_i)` with `p_i = σ_i / Σσ + 1e-7` and `σ` its singular
/// values. The singular values are square roots of the eigenvalues of the
/// smaller of `ZᵀZ` (dim × dim) and `ZZᵀ` (n × n), computed in f64 with a
/// Jacobi eigen-solver (intended for min(n, dim) ≤ 2048).
pub fn rankme(z: &Features) -> Result<f64> {
    z.validate("embeddings")?;
    if z.n == 0 {
        return Err(EvalError::Empty("rankme needs at least 1 sample".into()));
    }
    let (n, d) = (z.n, z.dim);
    let m = n.min(d);
    let mut g = vec![0.0f64; m * m];
    if d <= n {
        for row in z.data.chunks_exact(d) {
            for i in 0..d {
                let ri = row[i] as f64;
                if ri == 0.0 {
                    continue;
                }
                let gi = &mut g[i * d..(i + 1) * d];
                for j in i..d {
                    gi[j] += ri * row[j] as f64;
                }
            }
        }
    } else {
        for i in 0..n {
            for j in i..n {
                g[i * n + j] = z
                    .row(i)
                    .iter()
                    .zip(z.row(j))
                    .map(|(&a, &b)| a as f64 * b as f64)
                    .sum();
            }
        }
    }
    for i in 0..m {
        for j in 0..i {
            g[i * m + j] = g[j * m + i];
        }
    }
    let sv: Vec<f64> = symmetric_eigenvalues(&g, m)?
        .into_iter()
        .map(|e| e.max(0.0).sqrt())
        .collect();
    let total: f64 = sv.iter().sum();
    if total == 0.0 {
        return Ok(1.0f64.min(m as f64)); // all-zero embeddings: degenerate
    }
    const EPS: f64 = 1e-7;
    let h: f64 = sv
        .iter()
        .map(|s| {
            let p = s / total + EPS;
            -p * p.ln()
        })
        .sum();
    Ok(h.exp())
}

/// Eigenvalues (descending) of a symmetric `n × n` row-major matrix, by the
/// cyclic Jacobi method in f64. Only the upper triangle need be meaningful
/// (the matrix is symmetrised from it).
pub fn symmetric_eigenvalues(a: &[f64], n: usize) -> Result<Vec<f64>> {
    Ok(symmetric_eigen(a, n)?.0)
}

/// Eigenvalues (descending) and their unit eigenvectors (row `k` of the row-major `n × n`
/// second value belongs to eigenvalue `k`) of a symmetric matrix, as [`symmetric_eigenvalues`].
pub fn symmetric_eigen(a: &[f64], n: usize) -> Result<(Vec<f64>, Vec<f64>)> {
    if a.len() != n * n {
        return Err(EvalError::DimMismatch(format!(
            "matrix has {} entries, expected {n}²",
            a.len()
        )));
    }
    let mut a: Vec<f64> = a.to_vec();
    for i in 0..n {
        for j in 0..i {
            a[i * n + j] = a[j * n + i];
        }
    }
    // Accumulated rotations: column k of `v` is the eigenvector of a[k][k].
    let mut v: Vec<f64> = (0..n * n)
        .map(|i| if i / n == i % n { 1.0 } else { 0.0 })
        .collect();
    let frob: f64 = a.iter().map(|v| v * v).sum::<f64>().sqrt();
    if frob == 0.0 {
        return Ok((vec![0.0; n], v));
    }
    for _sweep in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|i| ((i + 1)..n).map(move |j| (i, j)))
            .map(|(i, j)| a[i * n + j].powi(2))
            .sum();
        if off.sqrt() <= 1e-15 * frob {
            break;
        }
        for p in 0..n {
            for q in (p + 1)..n {
                let apq = a[p * n + q];
                if apq.abs() <= 1e-300 {
                    continue;
                }
                let app = a[p * n + p];
                let aqq = a[q * n + q];
                let theta = (aqq - app) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                // Rotate rows/cols p and q (A ← Jᵀ A J, V ← V J).
                for k in 0..n {
                    let akp = a[k * n + p];
                    let akq = a[k * n + q];
                    a[k * n + p] = c * akp - s * akq;
                    a[k * n + q] = s * akp + c * akq;
                    let vkp = v[k * n + p];
                    let vkq = v[k * n + q];
                    v[k * n + p] = c * vkp - s * vkq;
                    v[k * n + q] = s * vkp + c * vkq;
                }
                for k in 0..n {
                    let apk = a[p * n + k];
                    let aqk = a[q * n + k];
                    a[p * n + k] = c * apk - s * aqk;
                    a[q * n + k] = s * apk + c * aqk;
                }
            }
        }
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&x, &y| {
        a[y * n + y]
            .partial_cmp(&a[x * n + x])
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let values = order.iter().map(|&k| a[k * n + k]).collect();
    let vectors = order
        .iter()
        .flat_map(|&k| (0..n).map(|r| v[r * n + k]).collect::<Vec<_>>())
        .collect();
    Ok((values, vectors))
}

/// Alignment (Wang & Isola 2020): `E ‖f(x) − f(y)‖^α` over positive pairs
/// (row `i` of `x` with row `i` of `y`), after L2-normalising both; `α = 2`
/// is the usual choice.
pub fn alignment(x: &Features, y: &Features, alpha: f64) -> Result<f64> {
    x.validate("x")?;
    y.validate("y")?;
    if x.n != y.n || x.dim != y.dim {
        return Err(EvalError::DimMismatch(format!(
            "x is {}×{}, y is {}×{}",
            x.n, x.dim, y.n, y.dim
        )));
    }
    if x.n == 0 {
        return Err(EvalError::Empty("alignment needs at least 1 pair".into()));
    }
    let (xn, yn) = (x.l2_normalized(), y.l2_normalized());
    let s: f64 = (0..x.n)
        .map(|i| {
            let d2: f64 = xn
                .row(i)
                .iter()
                .zip(yn.row(i))
                .map(|(&a, &b)| (a as f64 - b as f64).powi(2))
                .sum();
            d2.sqrt().powf(alpha)
        })
        .sum();
    Ok(s / x.n as f64)
}

/// Uniformity (Wang & Isola 2020): `log E_{i<j} exp(−t ‖f(x_i) − f(x_j)‖²)`
/// over all distinct pairs of L2-normalised rows (`torch.pdist`), usually
/// `t = 2`. O(n² · dim): subsample large sets first. Needs `n >= 2`.
pub fn uniformity(x: &Features, t: f64) -> Result<f64> {
    x.validate("x")?;
    if x.n < 2 {
        return Err(EvalError::Empty(
            "uniformity needs at least 2 samples".into(),
        ));
    }
    let xn = x.l2_normalized();
    let n = x.n;
    // log-mean-exp for numerical stability.
    let vals: Vec<f64> = (0..n)
        .flat_map(|i| ((i + 1)..n).map(move |j| (i, j)))
        .map(|(i, j)| {
            let d2: f64 = xn
                .row(i)
                .iter()
                .zip(xn.row(j))
                .map(|(&a, &b)| (a as f64 - b as f64).powi(2))
                .sum();
            -t * d2
        })
        .collect();
    let m = vals.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let s: f64 = vals.iter().map(|v| (v - m).exp()).sum();
    Ok(m + (s / vals.len() as f64).ln())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accuracy_topk_confusion() {
        assert_eq!(accuracy(&[0, 1, 2, 2], &[0, 1, 1, 2]).unwrap(), 0.75);
        assert!(accuracy(&[0], &[0, 1]).is_err());
        let scores = [0.1, 0.5, 0.4, /**/ 0.9, 0.05, 0.05];
        assert_eq!(argmax_rows(&scores, 3), vec![1, 0]);
        assert_eq!(top_k_accuracy(&scores, 3, &[2, 2], 1).unwrap(), 0.0);
        assert_eq!(top_k_accuracy(&scores, 3, &[2, 2], 2).unwrap(), 0.5); // row 2: class 2 ties class 1, ranks third
        assert_eq!(top_k_accuracy(&scores, 3, &[0, 0], 1).unwrap(), 0.5);
        // tie between classes 1 and 2: the lower index ranks first.
        let tied = [0.0, 0.5, 0.5];
        assert_eq!(top_k_accuracy(&tied, 3, &[1], 1).unwrap(), 1.0);
        assert_eq!(top_k_accuracy(&tied, 3, &[2], 1).unwrap(), 0.0);
        let cm = confusion_matrix(&[0, 1, 2, 2], &[0, 1, 1, 2], 3).unwrap();
        assert_eq!(cm, vec![1, 0, 0, 0, 1, 1, 0, 0, 1]);
        assert!(confusion_matrix(&[3], &[0], 3).is_err());
    }

    #[test]
    fn jacobi_known_eigenvalues() {
        let a = [2.0, 1.0, 0.0, 1.0, 2.0, 0.0, 0.0, 0.0, 5.0];
        let ev = symmetric_eigenvalues(&a, 3).unwrap();
        for (e, x) in ev.iter().zip([5.0, 3.0, 1.0]) {
            assert!((e - x).abs() < 1e-12, "{ev:?}");
        }
    }

    #[test]
    fn collapse_diagnostics_extremes() {
        // Fully collapsed: all rows identical.
        let z = Features::new([1.0f32, 2.0, 3.0].repeat(10), 10, 3).unwrap();
        assert!(embedding_std(&z).unwrap() < 1e-7);
        assert!((rankme(&z).unwrap() - 1.0).abs() < 1e-5);
        // Orthonormal rows: rank = dim, std.
        let eye = Features::new(vec![1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0], 3, 3).unwrap();
        assert!((rankme(&eye).unwrap() - 3.0).abs() < 1e-5);
        assert!(alignment(&eye, &eye, 2.0).unwrap().abs() < 1e-12);
        // pairwise squared distance 2 -> uniformity = -4.
        assert!((uniformity(&eye, 2.0).unwrap() + 4.0).abs() < 1e-9);
        // n < dim path (Gram matrix).
        let wide = Features::new(vec![1.0, 0.0, 0.0, 0.0, 0.0, 2.0, 0.0, 0.0], 2, 4).unwrap();
        let p = [1.0 / 3.0 + 1e-7, 2.0 / 3.0 + 1e-7];
        let want = (-p.iter().map(|p: &f64| p * p.ln()).sum::<f64>()).exp();
        assert!((rankme(&wide).unwrap() - want).abs() < 1e-9);
    }
}
