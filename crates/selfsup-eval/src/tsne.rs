//! 2-D maps of embeddings for plots: PCA to at most 50 dimensions, then Barnes-Hut t-SNE
//! (van der Maaten 2014) from the `bhtsne` crate, started from the PCA coordinates rather than at
//! random (bhtsne's parallel sums can still differ in the last bits between runs); plus
//! trustworthiness (Venna & Kaski 2001) to say how faithful a map is.

use std::ops::Div;

use crate::metrics::symmetric_eigen;
use crate::{EvalError, Features, Result};

#[derive(Clone, Debug, PartialEq)]
pub struct TsneConfig {
    /// Effective number of neighbours per point; the map needs more than 3 × perplexity points.
    pub perplexity: f32,
    /// PCA dimensions kept before t-SNE (as openTSNE / the usual recipe).
    pub pca_dims: usize,
    /// Gradient-descent iterations (the first 250 with early exaggeration).
    pub epochs: usize,
    /// Barnes-Hut accuracy/speed trade-off (> 0; 0.5 is standard).
    pub theta: f32,
}

impl Default for TsneConfig {
    fn default() -> Self {
        Self {
            perplexity: 30.0,
            pca_dims: 50,
            epochs: 1000,
            theta: 0.5,
        }
    }
}

/// Rows of `x` centred and projected on its `k` leading principal components (covariance with
/// the n − 1 denominator), with their variances. Each component's sign is fixed so that its
/// largest |loading| is positive, making the projection reproducible.
pub fn pca(x: &Features, k: usize) -> Result<(Features, Vec<f64>)> {
    x.validate("pca input")?;
    if k == 0 || k > x.dim {
        return Err(EvalError::InvalidArgument(format!(
            "PCA to {k} components of {}-dimensional data",
            x.dim
        )));
    }
    if x.n < 2 {
        return Err(EvalError::Empty("PCA needs at least 2 rows".into()));
    }
    let (n, d) = (x.n, x.dim);
    let mut mean = vec![0f64; d];
    for i in 0..n {
        for (m, &v) in mean.iter_mut().zip(x.row(i)) {
            *m += v as f64 / n as f64;
        }
    }
    let mut cov = vec![0f64; d * d];
    let mut centred = vec![0f64; d];
    for i in 0..n {
        for ((c, &v), m) in centred.iter_mut().zip(x.row(i)).zip(&mean) {
            *c = v as f64 - m;
        }
        for a in 0..d {
            for b in a..d {
                cov[a * d + b] += centred[a] * centred[b];
            }
        }
    }
    cov.iter_mut().for_each(|c| *c /= (n - 1) as f64);
    let (values, mut vectors) = symmetric_eigen(&cov, d)?;
    for comp in vectors.chunks_exact_mut(d).take(k) {
        let largest = comp
            .iter()
            .copied()
            .fold(0f64, |m, v| if v.abs() > m.abs() { v } else { m });
        if largest < 0.0 {
            comp.iter_mut().for_each(|v| *v = -*v);
        }
    }
    let mut out = Vec::with_capacity(n * k);
    for i in 0..n {
        let row = x.row(i);
        for comp in vectors.chunks_exact(d).take(k) {
            let dot: f64 = row
                .iter()
                .zip(&mean)
                .zip(comp)
                .map(|((&v, m), c)| (v as f64 - m) * c)
                .sum();
            out.push(dot as f32);
        }
    }
    Ok((Features::new(out, n, k)?, values[..k].to_vec()))
}

fn euclidean(a: &&[f32], b: &&[f32]) -> f32 {
    a.iter()
        .zip(b.iter())
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f32>()
        .sqrt()
}

/// A 2-D t-SNE map (`n × 2`) of the rows of `x`.
pub fn tsne_2d(x: &Features, config: &TsneConfig) -> Result<Features> {
    x.validate("t-SNE input")?;
    if !(config.perplexity > 0.0 && config.theta > 0.0) {
        return Err(EvalError::InvalidArgument(format!(
            "t-SNE needs perplexity > 0 and theta > 0 (got {} and {})",
            config.perplexity, config.theta
        )));
    }
    // bhtsne's own check (it panics): every point needs 3 × perplexity neighbours.
    let needed = 3 * config.perplexity as usize + 1;
    if x.n < needed {
        return Err(EvalError::InvalidArgument(format!(
            "t-SNE with perplexity {} needs at least {needed} points, got {}",
            config.perplexity, x.n
        )));
    }
    let (reduced, _) = pca(x, config.pca_dims.max(2).min(x.dim))?;
    // PCA initialisation scaled to a standard deviation of 1e-4 along the first axis
    // (openTSNE's default), which keeps the global layout and needs no random seed.
    let first_std = (0..reduced.n)
        .map(|i| (reduced.row(i)[0] as f64).powi(2))
        .sum::<f64>()
        .div(reduced.n as f64)
        .sqrt()
        .max(f64::MIN_POSITIVE);
    let second = |i: usize| reduced.row(i).get(1).copied().unwrap_or(0.0);
    let init: Vec<f32> = (0..reduced.n)
        .flat_map(|i| [reduced.row(i)[0], second(i)])
        .map(|v| (v as f64 * 1e-4 / first_std) as f32)
        .collect();
    let rows: Vec<&[f32]> = reduced.data.chunks_exact(reduced.dim).collect();
    let mut tsne = bhtsne::tSNE::<f32, &[f32], 2>::new(&rows);
    tsne.perplexity(config.perplexity)
        .epochs(config.epochs)
        .initial_embedding(init)
        .barnes_hut(config.theta, euclidean);
    Features::new(tsne.embedding(), x.n, 2)
}

/// Squared Euclidean distances from row `i` to every row.
fn distances_from(x: &Features, i: usize) -> Vec<f32> {
    let a = x.row(i);
    (0..x.n)
        .map(|j| a.iter().zip(x.row(j)).map(|(p, q)| (p - q) * (p - q)).sum())
        .collect()
}

/// Indices of the other rows by increasing distance from row `i` (ties by index).
fn neighbours_by_distance(x: &Features, i: usize) -> Vec<usize> {
    let d = distances_from(x, i);
    let mut order: Vec<usize> = (0..x.n).filter(|&j| j != i).collect();
    order.sort_by(|&a, &b| d[a].total_cmp(&d[b]).then(a.cmp(&b)));
    order
}

/// Trustworthiness of the map `low` of `high` for `k` neighbours, in [0, 1] (1: every
/// neighbour in the map is a neighbour in the original space); Euclidean in both, as
/// scikit-learn's `trustworthiness`. O(n² log n): meant for a few thousand points.
pub fn trustworthiness(high: &Features, low: &Features, k: usize) -> Result<f64> {
    if high.n != low.n {
        return Err(EvalError::DimMismatch(format!(
            "{} points in the original space, {} in the map",
            high.n, low.n
        )));
    }
    let n = high.n;
    if k == 0 || 2 * k >= n {
        return Err(EvalError::InvalidArgument(format!(
            "trustworthiness needs 0 < k < n/2 (k = {k}, n = {n})"
        )));
    }
    let mut penalty = 0f64;
    let mut rank = vec![0usize; n];
    for i in 0..n {
        // rank[j] = position (1-based) of j among i's neighbours in the original space.
        for (r, j) in neighbours_by_distance(high, i).into_iter().enumerate() {
            rank[j] = r + 1;
        }
        for &j in neighbours_by_distance(low, i).iter().take(k) {
            penalty += rank[j].saturating_sub(k) as f64;
        }
    }
    let (n, k) = (n as f64, k as f64);
    Ok(1.0 - penalty * 2.0 / (n * k * (2.0 * n - 3.0 * k - 1.0)))
}

/// Leave-one-out majority vote of the `k` nearest points of the map: how well the map
/// separates the classes (ties go to the smallest label).
pub fn map_knn_accuracy(map: &Features, labels: &[u32], k: usize) -> Result<f64> {
    if labels.len() != map.n || map.n <= k || k == 0 {
        return Err(EvalError::InvalidArgument(format!(
            "map kNN needs one label per point and 0 < k < n (k = {k}, n = {}, labels {})",
            map.n,
            labels.len()
        )));
    }
    let classes = labels.iter().max().map_or(0, |m| *m as usize + 1);
    let correct = (0..map.n)
        .filter(|&i| {
            let mut votes = vec![0usize; classes];
            for &j in neighbours_by_distance(map, i).iter().take(k) {
                votes[labels[j] as usize] += 1;
            }
            let best = (0..classes).max_by_key(|&c| (votes[c], std::cmp::Reverse(c)));
            best == Some(labels[i] as usize)
        })
        .count();
    Ok(correct as f64 / map.n as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use selfsup_data::SplitMix64;

    fn fixture() -> serde_json::Value {
        serde_json::from_str(include_str!("../fixtures/tsne_fixture.json")).unwrap()
    }

    fn floats(v: &serde_json::Value) -> Vec<f32> {
        serde_json::from_value(v.clone()).unwrap()
    }

    #[test]
    fn trustworthiness_matches_sklearn() {
        let f = fixture();
        for case in f["trustworthiness"].as_array().unwrap() {
            let n = case["n"].as_u64().unwrap() as usize;
            let d = case["high_dim"].as_u64().unwrap() as usize;
            let k = case["k"].as_u64().unwrap() as usize;
            let high = Features::new(floats(&case["high"]), n, d).unwrap();
            let low = Features::new(floats(&case["low"]), n, 2).unwrap();
            let ours = trustworthiness(&high, &low, k).unwrap();
            let expected = case["value"].as_f64().unwrap();
            assert!(
                (ours - expected).abs() < 1e-9,
                "k={k}: {ours} vs {expected}"
            );
        }
    }

    #[test]
    fn pca_matches_sklearn() {
        let f = &fixture()["pca"];
        let (n, d, k) = (
            f["n"].as_u64().unwrap() as usize,
            f["dim"].as_u64().unwrap() as usize,
            f["k"].as_u64().unwrap() as usize,
        );
        let x = Features::new(floats(&f["x"]), n, d).unwrap();
        let (proj, var) = pca(&x, k).unwrap();
        let expected_var: Vec<f64> =
            serde_json::from_value(f["explained_variance"].clone()).unwrap();
        for (a, b) in var.iter().zip(&expected_var) {
            assert!((a - b).abs() < 1e-4 * b, "variance {a} vs {b}");
        }
        for (a, b) in proj.data.iter().zip(floats(&f["projection"])) {
            assert!((a - b).abs() < 1e-4, "projection {a} vs {b}");
        }
    }

    /// Standard normal by Box–Muller from selfsup-data's SplitMix64.
    fn normal(rng: &mut SplitMix64) -> f32 {
        let u = |r: &mut SplitMix64| ((r.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        let (a, b) = (u(rng), u(rng));
        ((-2.0 * a.ln()).sqrt() * (2.0 * std::f64::consts::PI * b).cos()) as f32
    }

    #[test]
    fn separated_clusters_stay_separated() {
        // 6 Gaussian clusters in 40-D (unit noise, centres 10 apart): the 2-D map must keep
        // them apart and keep neighbourhoods.
        let (clusters, per, dim) = (6, 50, 40);
        let mut rng = SplitMix64::new(3);
        let centres: Vec<Vec<f32>> = (0..clusters)
            .map(|_| {
                (0..dim)
                    .map(|_| 10.0 * normal(&mut rng) / 2f32.sqrt())
                    .collect()
            })
            .collect();
        let mut data = Vec::new();
        let mut labels = Vec::new();
        for (c, centre) in centres.iter().enumerate() {
            for _ in 0..per {
                data.extend(centre.iter().map(|m| m + normal(&mut rng)));
                labels.push(c as u32);
            }
        }
        let x = Features::new(data, clusters * per, dim).unwrap();
        let map = tsne_2d(&x, &TsneConfig::default()).unwrap();
        assert!(map.data.iter().all(|v| v.is_finite()));
        let acc = map_knn_accuracy(&map, &labels, 5).unwrap();
        assert!(acc >= 0.99, "kNN accuracy in the map {acc}");
        let t = trustworthiness(&x, &map, 10).unwrap();
        assert!(t > 0.9, "trustworthiness {t}");
    }

    #[test]
    fn too_few_points_is_an_error() {
        let x = Features::new(vec![0.5; 20 * 4], 20, 4).unwrap();
        let err = tsne_2d(&x, &TsneConfig::default()).unwrap_err();
        assert!(err.to_string().contains("at least 91 points"), "{err}");
    }
}
