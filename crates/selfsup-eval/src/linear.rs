//! Linear probe on frozen features: multinomial logistic regression (softmax
//! cross-entropy) trained with Adam or SGD, full-batch or mini-batch.
//!
//! The classifier is a burn [`Linear`] trained on `Device::flex()` tensors (the features
//! are one `[n, dim]` tensor, mini-batches are row selections of it) by selfsup-optim's
//! [`Optimizer`](selfsup_optim::Optimizer) — the same implementation that pre-trains and
//! fine-tunes — with gradients from burn's autodiff. Parameters start at zero (the problem is
//! convex), so full-batch training has no randomness at all; the seed only drives the
//! mini-batch shuffling (selfsup-data's `SplitMix64`). Repeated runs give identical weights.

use burn::module::Param;
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::prelude::{Device, Int, Tensor, TensorData};
use burn::tensor::activation::log_softmax;
use selfsup_data::SplitMix64;
use selfsup_optim::{GradientsParams, OptimizerConfig, OptimizerKind};

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
/// decay added to the gradient of the weights; the bias is not decayed): selfsup-optim's
/// [`OptimizerKind::Adam`] / [`OptimizerKind::Sgd`] (no Nesterov term).
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
    let optim = optimizer(cfg)?;

    let (xtr, xte) = normalize(train, test, cfg.normalization);
    let device = Device::flex();
    let xtr = to_tensor(xtr, &device);
    let head = train_head(&xtr, train_labels, c, cfg, optim);

    let train_scores = scores(&head, xtr);
    let test_scores = scores(&head, to_tensor(xte, &device));
    let train_loss = mean_cross_entropy(&train_scores, train_labels, c);
    let train_pred = metrics::argmax_rows(&train_scores, c);
    let test_predictions = metrics::argmax_rows(&test_scores, c);
    let train_top1 = metrics::accuracy(&train_pred, train_labels)?;
    let test_top1 = metrics::accuracy(&test_predictions, test_labels)?;
    let test_top5 = if c > 5 {
        Some(metrics::top_k_accuracy(&test_scores, c, test_labels, 5)?)
    } else {
        None
    };
    // burn's Linear holds [dim, classes]; the result is [classes, dim].
    let weights = host(head.weight.val().inner().transpose());
    let bias = host(
        head.bias
            .as_ref()
            .expect("the probe has a bias")
            .val()
            .inner(),
    );
    Ok(LinearProbeResult {
        train_top1,
        test_top1,
        test_top5,
        train_loss,
        test_predictions,
        num_classes: c,
        weights,
        bias,
    })
}

/// The f64 a user meant by an f32 setting (`1e-3f32` → `0.001`, not `0.0010000000474974513`),
/// so the optimizer's f64 arithmetic (bias corrections `1 - β^t`) matches PyTorch's on the
/// same numbers.
fn widen(x: f32) -> f64 {
    x.to_string().parse().unwrap_or(x as f64)
}

/// selfsup-optim's optimizer for `cfg` (its hyper-parameters validated).
fn optimizer(cfg: &LinearProbeConfig) -> Result<selfsup_optim::Optimizer> {
    let kind = match cfg.optimizer {
        Optimizer::Adam { beta1, beta2, eps } => OptimizerKind::Adam {
            beta1: widen(beta1),
            beta2: widen(beta2),
            eps: widen(eps),
        },
        Optimizer::Sgd { momentum } => OptimizerKind::Sgd {
            momentum: widen(momentum),
            nesterov: false,
        },
    };
    OptimizerConfig {
        kind,
        weight_decay: widen(cfg.weight_decay),
        // The bias (the only 1-D parameter) is not decayed.
        exclude_bias_and_norm: true,
    }
    .init()
    .map_err(|e| EvalError::InvalidArgument(e.to_string()))
}

fn to_tensor(x: Features, device: &Device) -> Tensor<2> {
    Tensor::from_data(TensorData::new(x.data, [x.n, x.dim]), device)
}

/// Trains the zero-initialised `[dim → classes]` head on the (normalised) train features
/// `features` `[n, dim]` with `optim`.
fn train_head(
    features: &Tensor<2>,
    labels: &[u32],
    classes: usize,
    cfg: &LinearProbeConfig,
    mut optim: selfsup_optim::Optimizer,
) -> Linear {
    let lr = widen(cfg.lr);
    let device = &features.device();
    let [n, dim] = features.dims();
    let targets: Vec<i64> = labels.iter().map(|&y| y as i64).collect();
    let targets = Tensor::<1, Int>::from_data(TensorData::new(targets, [n]), device);
    let mut head = LinearConfig::new(dim, classes)
        .with_initializer(Initializer::Zeros)
        .init(&device.clone().autodiff());

    let mut rng = SplitMix64::new(cfg.seed);
    let mut order: Vec<usize> = (0..n).collect();
    let bs = cfg.batch_size.unwrap_or(n).min(n);
    for _epoch in 0..cfg.epochs {
        if cfg.batch_size.is_some() {
            rng.shuffle(&mut order);
        }
        for batch in order.chunks(bs) {
            let (xb, yb) = if cfg.batch_size.is_none() {
                // Full batch, in order: the tensors as they are.
                (features.clone(), targets.clone())
            } else {
                let idx: Vec<i64> = batch.iter().map(|&i| i as i64).collect();
                let idx = Tensor::<1, Int>::from_data(TensorData::new(idx, [batch.len()]), device);
                (
                    features.clone().select(0, idx.clone()),
                    targets.clone().select(0, idx),
                )
            };
            let loss = cross_entropy(head.forward(xb), yb);
            let grads = GradientsParams::from_grads(loss.backward(), &head);
            head = optim.step(lr, head, grads);
        }
    }
    head
}

/// Mean softmax cross-entropy of `logits` `[b, classes]` against `targets` `[b]`.
fn cross_entropy(logits: Tensor<2>, targets: Tensor<1, Int>) -> Tensor<1> {
    let b = targets.dims()[0];
    log_softmax(logits, 1)
        .gather(1, targets.reshape([b, 1]))
        .mean()
        .neg()
}

/// Row-major `n × classes` logits of the trained head on `input` `[n, dim]`.
fn scores(head: &Linear, input: Tensor<2>) -> Vec<f32> {
    let weight = head.weight.val().inner();
    let bias = head
        .bias
        .as_ref()
        .expect("the probe has a bias")
        .val()
        .inner();
    host(input.matmul(weight) + bias.unsqueeze())
}

fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .try_to_vec::<f32>()
        .expect("flex float tensors are f32")
}

/// Mean cross-entropy of row-major `scores` (f64 log-sum-exp per row).
fn mean_cross_entropy(scores: &[f32], labels: &[u32], classes: usize) -> f64 {
    let total: f64 = scores
        .chunks_exact(classes)
        .zip(labels)
        .map(|(z, &y)| {
            let m = z.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
            let s: f64 = z.iter().map(|&v| (v as f64 - m).exp()).sum();
            m + s.ln() - z[y as usize] as f64
        })
        .sum();
    total / labels.len() as f64
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
        let logits = head.forward(input).into_data().try_to_vec::<f32>().unwrap();
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

    /// One full-batch SGD step from zero, worked out by hand: the softmax is uniform, so
    /// `W = -lr · (1/c - Y)ᵀ X / n` and `b = -lr · mean(1/c - Y)`; and the reported train
    /// loss is the mean cross-entropy of the returned parameters.
    #[test]
    fn one_sgd_step_is_the_softmax_gradient() {
        let (n, d, c) = (20, 5, 3);
        let (x, y) = blobs(n, d, c, 1);
        let lr = 0.5;
        let cfg = LinearProbeConfig {
            epochs: 1,
            batch_size: None,
            lr: lr as f32,
            optimizer: Optimizer::sgd(0.0),
            normalization: Normalization::None,
            ..Default::default()
        };
        let r = linear_probe(&x, &y, &x, &y, &cfg).unwrap();
        for k in 0..c {
            let resid = |i: usize| 1.0 / c as f64 - if y[i] as usize == k { 1.0 } else { 0.0 };
            let gb = (0..n).map(resid).sum::<f64>() / n as f64;
            assert!((r.bias[k] as f64 + lr * gb).abs() < 1e-6, "bias {k}");
            for j in 0..d {
                let g = (0..n)
                    .map(|i| resid(i) * x.data[i * d + j] as f64)
                    .sum::<f64>()
                    / n as f64;
                let got = r.weights[k * d + j] as f64;
                assert!(
                    (got + lr * g).abs() < 1e-5,
                    "w[{k}][{j}]: {got} vs {}",
                    -lr * g
                );
            }
        }
        let loss = (0..n)
            .map(|i| {
                let z: Vec<f64> = (0..c)
                    .map(|k| {
                        r.bias[k] as f64
                            + (0..d)
                                .map(|j| r.weights[k * d + j] as f64 * x.data[i * d + j] as f64)
                                .sum::<f64>()
                    })
                    .collect();
                z.iter().map(|v| v.exp()).sum::<f64>().ln() - z[y[i] as usize]
            })
            .sum::<f64>()
            / n as f64;
        assert!(
            (loss - r.train_loss).abs() < 1e-5,
            "{loss} vs {}",
            r.train_loss
        );
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
        // Optimiser hyper-parameters are checked by selfsup-optim.
        let bad = LinearProbeConfig {
            optimizer: Optimizer::Adam {
                beta1: 1.0,
                beta2: 0.999,
                eps: 1e-8,
            },
            ..Default::default()
        };
        assert!(matches!(
            linear_probe(&x, &y, &x, &y, &bad),
            Err(EvalError::InvalidArgument(m)) if m.contains("beta1")
        ));
    }
}
