//! Linear probe on frozen features: multinomial logistic regression (softmax
//! cross-entropy) trained with Adam or SGD, full-batch or mini-batch.
//!
//! Gradients are computed in closed form (`∂L/∂W = (P − Y)ᵀ X / B + λW`), in
//! f32, parallelised over fixed 64-sample blocks whose partial gradients are
//! summed in a fixed order, so results are deterministic for a seed whatever
//! the thread count. Parameters start at zero (the problem is convex), so
//! full-batch training has no randomness at all; the seed only drives the
//! mini-batch shuffling.

use rayon::prelude::*;

use crate::rng::SplitMix64;
use crate::{EvalError, Features, Result, metrics};

/// Feature preprocessing, fitted on the train set and applied to both sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Normalization {
    None,
    /// Per-dimension zero mean / unit (population) std; zero-variance
    /// dimensions are only centred (as sklearn `StandardScaler`).
    #[default]
    Standardize,
    /// Each row scaled to unit L2 norm.
    L2,
}

/// Optimiser, with PyTorch semantics (`torch.optim.Adam` / `SGD`, weight
/// decay added to the gradient of the weights; the bias is not decayed).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Optimizer {
    Adam { beta1: f32, beta2: f32, eps: f32 },
    Sgd { momentum: f32 },
}

impl Optimizer {
    pub fn adam() -> Self {
        Optimizer::Adam {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        }
    }
    pub fn sgd(momentum: f32) -> Self {
        Optimizer::Sgd { momentum }
    }
}

/// Linear-probe settings. Defaults: Adam, lr 1e-3, 30 epochs, batch 256,
/// no weight decay, standardised features, seed 0.
#[derive(Clone, Debug)]
pub struct LinearProbeConfig {
    pub epochs: usize,
    /// `None` = full batch (one step per epoch).
    pub batch_size: Option<usize>,
    pub lr: f32,
    pub weight_decay: f32,
    pub optimizer: Optimizer,
    pub normalization: Normalization,
    pub seed: u64,
    /// `None` = `max(label) + 1` over train and test labels.
    pub num_classes: Option<usize>,
}

impl Default for LinearProbeConfig {
    fn default() -> Self {
        Self {
            epochs: 30,
            batch_size: Some(256),
            lr: 1e-3,
            weight_decay: 0.0,
            optimizer: Optimizer::adam(),
            normalization: Normalization::Standardize,
            seed: 0,
            num_classes: None,
        }
    }
}

/// Output of [`linear_probe`].
#[derive(Clone, Debug)]
pub struct LinearProbeResult {
    pub train_top1: f64,
    pub test_top1: f64,
    /// Only when there are more than 5 classes.
    pub test_top5: Option<f64>,
    /// Mean cross-entropy on the (whole) train set with the final parameters,
    /// without the weight-decay term.
    pub train_loss: f64,
    pub test_predictions: Vec<u32>,
    pub num_classes: usize,
    /// `num_classes × dim`, row-major; applies to *normalised* features.
    pub weights: Vec<f32>,
    pub bias: Vec<f32>,
}

/// Train a linear classifier on `train` and evaluate on `test`.
/// For label subsets, pass `train.select(&idx)` and `select_labels(labels, &idx)`.
pub fn linear_probe(
    train: &Features,
    train_labels: &[u32],
    test: &Features,
    test_labels: &[u32],
    cfg: &LinearProbeConfig,
) -> Result<LinearProbeResult> {
    Features::validate_pair(train, train_labels, test)?;
    if test_labels.len() != test.n {
        return Err(EvalError::DimMismatch(format!(
            "labels ({} train, {} test) do not match samples ({} train, {} test)",
            train_labels.len(),
            test_labels.len(),
            train.n,
            test.n
        )));
    }
    if cfg.batch_size == Some(0) {
        return Err(EvalError::InvalidArgument("batch_size must be > 0".into()));
    }
    if cfg.lr.is_nan()
        || cfg.lr <= 0.0
        || !cfg.lr.is_finite()
        || cfg.weight_decay.is_nan()
        || cfg.weight_decay < 0.0
    {
        return Err(EvalError::InvalidArgument(format!(
            "need lr > 0 and weight_decay >= 0, got {} and {}",
            cfg.lr, cfg.weight_decay
        )));
    }
    let max_label = train_labels
        .iter()
        .chain(test_labels)
        .copied()
        .max()
        .unwrap_or(0) as usize;
    let c = match cfg.num_classes {
        Some(c) if c <= max_label => {
            return Err(EvalError::InvalidArgument(format!(
                "num_classes = {c} but a label is {max_label}"
            )));
        }
        Some(c) => c,
        None => max_label + 1,
    };
    let d = train.dim;

    let (xtr, xte) = normalize(train, test, cfg.normalization);

    let mut w = vec![0.0f32; c * d];
    let mut b = vec![0.0f32; c];
    let mut state = OptState::new(c * d + c);
    let mut rng = SplitMix64::new(cfg.seed);
    let mut order: Vec<usize> = (0..train.n).collect();
    let bs = cfg.batch_size.unwrap_or(train.n).min(train.n);

    for _epoch in 0..cfg.epochs {
        if cfg.batch_size.is_some() {
            rng.shuffle(&mut order);
        }
        for batch in order.chunks(bs) {
            let (mut gw, gb, _) = grad(&xtr, train_labels, batch, &w, &b, c);
            if cfg.weight_decay > 0.0 {
                for (g, &wv) in gw.iter_mut().zip(&w) {
                    *g += cfg.weight_decay * wv;
                }
            }
            state.step(cfg, &mut w, &mut b, &gw, &gb);
        }
    }

    let all: Vec<usize> = (0..train.n).collect();
    let (_, _, train_loss) = grad(&xtr, train_labels, &all, &w, &b, c);
    let train_pred = metrics::argmax_rows(&logits(&xtr, &w, &b, c), c);
    let test_scores = logits(&xte, &w, &b, c);
    let test_predictions = metrics::argmax_rows(&test_scores, c);
    let train_top1 = metrics::accuracy(&train_pred, train_labels)?;
    let test_top1 = metrics::accuracy(&test_predictions, test_labels)?;
    let test_top5 = if c > 5 {
        Some(metrics::top_k_accuracy(&test_scores, c, test_labels, 5)?)
    } else {
        None
    };
    Ok(LinearProbeResult {
        train_top1,
        test_top1,
        test_top5,
        train_loss,
        test_predictions,
        num_classes: c,
        weights: w,
        bias: b,
    })
}

fn normalize(train: &Features, test: &Features, how: Normalization) -> (Features, Features) {
    match how {
        Normalization::None => (train.clone(), test.clone()),
        Normalization::L2 => (train.l2_normalized(), test.l2_normalized()),
        Normalization::Standardize => {
            let d = train.dim;
            let n = train.n as f64;
            let mut mean = vec![0.0f64; d];
            for row in train.data.chunks_exact(d) {
                for (m, &v) in mean.iter_mut().zip(row) {
                    *m += v as f64;
                }
            }
            mean.iter_mut().for_each(|m| *m /= n);
            let mut var = vec![0.0f64; d];
            for row in train.data.chunks_exact(d) {
                for ((s, &v), m) in var.iter_mut().zip(row).zip(&mean) {
                    *s += (v as f64 - m).powi(2);
                }
            }
            let inv: Vec<f64> = var
                .iter()
                .map(|s| {
                    let sd = (s / n).sqrt();
                    if sd > 1e-12 { 1.0 / sd } else { 1.0 }
                })
                .collect();
            let apply = |f: &Features| {
                let mut out = f.clone();
                for row in out.data.chunks_exact_mut(d) {
                    for ((v, m), s) in row.iter_mut().zip(&mean).zip(&inv) {
                        *v = ((*v as f64 - m) * s) as f32;
                    }
                }
                out
            };
            (apply(train), apply(test))
        }
    }
}

#[inline]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

/// Row-major `n × c` logits.
fn logits(x: &Features, w: &[f32], b: &[f32], c: usize) -> Vec<f32> {
    let d = x.dim;
    let mut out = vec![0.0f32; x.n * c];
    out.par_chunks_mut(c)
        .zip(x.data.par_chunks(d))
        .for_each(|(o, row)| {
            for k in 0..c {
                o[k] = b[k] + dot(&w[k * d..(k + 1) * d], row);
            }
        });
    out
}

const BLOCK: usize = 64;

/// Mean softmax-CE gradient over `batch` (weights `c × d`, bias `c`) and mean loss.
fn grad(
    x: &Features,
    y: &[u32],
    batch: &[usize],
    w: &[f32],
    b: &[f32],
    c: usize,
) -> (Vec<f32>, Vec<f32>, f64) {
    let d = x.dim;
    let partials: Vec<(Vec<f32>, Vec<f32>, f64)> = batch
        .par_chunks(BLOCK)
        .map(|blk| {
            let mut gw = vec![0.0f32; c * d];
            let mut gb = vec![0.0f32; c];
            let mut loss = 0.0f64;
            let mut z = vec![0.0f32; c];
            for &i in blk {
                let row = x.row(i);
                for k in 0..c {
                    z[k] = b[k] + dot(&w[k * d..(k + 1) * d], row);
                }
                let m = z.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                let mut s = 0.0f32;
                for v in z.iter_mut() {
                    *v = (*v - m).exp();
                    s += *v;
                }
                let yi = y[i] as usize;
                loss += (s.ln() - (z[yi].ln())) as f64;
                let inv = 1.0 / s;
                for k in 0..c {
                    let g = z[k] * inv - if k == yi { 1.0 } else { 0.0 };
                    gb[k] += g;
                    for (gv, &xv) in gw[k * d..(k + 1) * d].iter_mut().zip(row) {
                        *gv += g * xv;
                    }
                }
            }
            (gw, gb, loss)
        })
        .collect();
    let mut gw = vec![0.0f32; c * d];
    let mut gb = vec![0.0f32; c];
    let mut loss = 0.0f64;
    for (pw, pb, pl) in partials {
        gw.iter_mut().zip(&pw).for_each(|(a, v)| *a += v);
        gb.iter_mut().zip(&pb).for_each(|(a, v)| *a += v);
        loss += pl;
    }
    let inv = 1.0 / batch.len() as f32;
    gw.iter_mut().for_each(|v| *v *= inv);
    gb.iter_mut().for_each(|v| *v *= inv);
    (gw, gb, loss / batch.len() as f64)
}

struct OptState {
    m: Vec<f32>,
    v: Vec<f32>,
    t: i32,
}

impl OptState {
    fn new(p: usize) -> Self {
        Self {
            m: vec![0.0; p],
            v: vec![0.0; p],
            t: 0,
        }
    }

    fn step(
        &mut self,
        cfg: &LinearProbeConfig,
        w: &mut [f32],
        b: &mut [f32],
        gw: &[f32],
        gb: &[f32],
    ) {
        self.t += 1;
        let params = w.iter_mut().chain(b.iter_mut());
        let grads = gw.iter().chain(gb.iter());
        let lr = cfg.lr;
        match cfg.optimizer {
            Optimizer::Adam { beta1, beta2, eps } => {
                let bc1 = 1.0 - beta1.powi(self.t);
                let bc2_sqrt = (1.0 - beta2.powi(self.t)).sqrt();
                let step = lr / bc1;
                for (((p, &g), m), v) in params
                    .zip(grads)
                    .zip(self.m.iter_mut())
                    .zip(self.v.iter_mut())
                {
                    *m = beta1 * *m + (1.0 - beta1) * g;
                    *v = beta2 * *v + (1.0 - beta2) * g * g;
                    let denom = v.sqrt() / bc2_sqrt + eps;
                    *p -= step * *m / denom;
                }
            }
            Optimizer::Sgd { momentum } => {
                for ((p, &g), buf) in params.zip(grads).zip(self.m.iter_mut()) {
                    *buf = if momentum > 0.0 {
                        momentum * *buf + g
                    } else {
                        g
                    };
                    *p -= lr * *buf;
                }
            }
        }
    }
}

/// LP-FT (Kumar et al. 2022): a burn `Linear` head `[dim → num_classes]` holding a linear probe
/// fitted on `features` of the labelled samples, to start fine-tuning from instead of random
/// weights. The features are used as they are (`cfg.normalization` is overridden to `None`):
/// the head will see them unnormalised. Only the weights are used, so the probe is scored on
/// its own train set. `device` must be an autodiff device: the head is trained afterwards.
pub fn probed_linear_head(
    features: &Features,
    labels: &[u32],
    num_classes: usize,
    cfg: &LinearProbeConfig,
    device: &burn::prelude::Device,
) -> Result<burn::nn::Linear> {
    use burn::module::Param;
    use burn::prelude::{Tensor, TensorData};

    let cfg = LinearProbeConfig {
        normalization: Normalization::None,
        num_classes: Some(num_classes),
        ..cfg.clone()
    };
    let fit = linear_probe(features, labels, features, labels, &cfg)?;
    // The probe's weights are [classes, dim]; burn's Linear holds [dim, classes].
    let weight = Tensor::<2>::from_data(
        TensorData::new(fit.weights, [num_classes, features.dim]),
        device,
    )
    .transpose()
    .require_grad();
    let bias =
        Tensor::<1>::from_data(TensorData::new(fit.bias, [num_classes]), device).require_grad();
    Ok(burn::nn::Linear {
        weight: Param::from_tensor(weight),
        bias: Some(Param::from_tensor(bias)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Gaussian blobs: class k centred at 3·e_k (+ noise).
    pub(crate) fn blobs(n: usize, d: usize, c: usize, seed: u64) -> (Features, Vec<u32>) {
        let mut r = SplitMix64::new(seed);
        let mut u = || ((r.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        let mut data = Vec::with_capacity(n * d);
        let mut labels = Vec::with_capacity(n);
        for i in 0..n {
            let k = i % c;
            labels.push(k as u32);
            for j in 0..d {
                let g = (-2.0 * u().ln()).sqrt() * (2.0 * std::f64::consts::PI * u()).cos();
                data.push((g + if j == k { 3.0 } else { 0.0 }) as f32);
            }
        }
        (Features::new(data, n, d).unwrap(), labels)
    }

    /// The burn head holds the probe fitted on raw features: its logits are the probe's
    /// `W·x + b` (weights [classes, dim] transposed into Linear's [dim, classes]), worked out
    /// here by hand from a second, identical fit.
    #[test]
    fn probed_linear_head_holds_the_raw_feature_probe() {
        use burn::prelude::{Device, Tensor, TensorData};

        let (x, y) = blobs(30, 5, 3, 4);
        let cfg = LinearProbeConfig {
            epochs: 20,
            batch_size: Some(8),
            ..Default::default()
        };
        let device = Device::flex().autodiff();
        let head = probed_linear_head(&x, &y, 3, &cfg, &device).unwrap();
        assert_eq!(head.weight.dims(), [5, 3]);
        let raw = LinearProbeConfig {
            normalization: Normalization::None,
            num_classes: Some(3),
            ..cfg.clone()
        };
        let fit = linear_probe(&x, &y, &x, &y, &raw).unwrap();
        assert!(fit.train_top1 > 0.9, "the probe learns: {}", fit.train_top1);
        let input = Tensor::<2>::from_data(TensorData::new(x.data.clone(), [30, 5]), &device);
        let logits = head.forward(input).into_data().to_vec::<f32>().unwrap();
        for i in 0..30 {
            for k in 0..3 {
                let by_hand = fit.bias[k]
                    + (0..5)
                        .map(|j| fit.weights[k * 5 + j] * x.data[i * 5 + j])
                        .sum::<f32>();
                let got = logits[i * 3 + k];
                assert!(
                    (got - by_hand).abs() < 1e-4,
                    "sample {i} class {k}: {got} vs {by_hand}"
                );
            }
        }
    }

    #[test]
    fn gradient_matches_finite_difference() {
        let (x, y) = blobs(20, 5, 3, 1);
        let c = 3;
        let w: Vec<f32> = (0..15).map(|i| (i as f32 * 0.37).sin() * 0.3).collect();
        let b = vec![0.1, -0.2, 0.05];
        let all: Vec<usize> = (0..20).collect();
        let (gw, gb, l0) = grad(&x, &y, &all, &w, &b, c);
        let h = 1e-2f32;
        for idx in [0usize, 7, 14] {
            let mut wp = w.clone();
            wp[idx] += h;
            let mut wm = w.clone();
            wm[idx] -= h;
            let fd = (grad(&x, &y, &all, &wp, &b, c).2 - grad(&x, &y, &all, &wm, &b, c).2)
                / (2.0 * h as f64);
            assert!(
                (fd - gw[idx] as f64).abs() < 2e-3,
                "w[{idx}]: fd {fd} vs {}",
                gw[idx]
            );
        }
        let mut bp = b.clone();
        bp[1] += h;
        let fd = (grad(&x, &y, &all, &w, &bp, c).2 - l0) / h as f64;
        assert!((fd - gb[1] as f64).abs() < 2e-2);
    }

    #[test]
    fn learns_blobs_and_is_deterministic() {
        let (x, y) = blobs(600, 8, 4, 2);
        let (xt, yt) = blobs(200, 8, 4, 3);
        let cfg = LinearProbeConfig {
            epochs: 20,
            batch_size: Some(64),
            lr: 1e-2,
            ..Default::default()
        };
        let r = linear_probe(&x, &y, &xt, &yt, &cfg).unwrap();
        assert!(r.test_top1 > 0.85, "{}", r.test_top1);
        assert!(r.train_top1 > 0.85);
        let r2 = linear_probe(&x, &y, &xt, &yt, &cfg).unwrap();
        assert_eq!(r.weights, r2.weights);
        for (norm, opt) in [
            (Normalization::L2, Optimizer::sgd(0.9)),
            (Normalization::None, Optimizer::sgd(0.0)),
        ] {
            let cfg = LinearProbeConfig {
                normalization: norm,
                optimizer: opt,
                lr: 0.1,
                weight_decay: 1e-4,
                ..cfg.clone()
            };
            let r = linear_probe(&x, &y, &xt, &yt, &cfg).unwrap();
            assert!(r.test_top1 > 0.8, "{norm:?}: {}", r.test_top1);
        }
    }

    #[test]
    fn validation() {
        let (x, y) = blobs(10, 3, 2, 1);
        let cfg = LinearProbeConfig::default();
        let x4 = Features::new(vec![0.0; 40], 10, 4).unwrap();
        assert!(matches!(
            linear_probe(&x, &y, &x4, &y, &cfg),
            Err(EvalError::DimMismatch(_))
        ));
        assert!(matches!(
            linear_probe(&x, &y[..5], &x, &y, &cfg),
            Err(EvalError::DimMismatch(_))
        ));
        let bad = LinearProbeConfig {
            batch_size: Some(0),
            ..Default::default()
        };
        assert!(linear_probe(&x, &y, &x, &y, &bad).is_err());
        let bad = LinearProbeConfig {
            num_classes: Some(1),
            ..Default::default()
        };
        assert!(linear_probe(&x, &y, &x, &y, &bad).is_err());
    }
}
