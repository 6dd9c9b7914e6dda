//! The few-label fine-tuning loop of every modality: batches of the labelled subset (the
//! modality supplies them, augmented, with their labels), cross-entropy on a linear head, a
//! cosine schedule, and the encoder at a lower learning rate than the new head. Images use
//! SGD with momentum and no warm-up, the Transformer encoders of audio and text AdamW with
//! 10 % warm-up ([`ClassifierOptimizer`]).

use std::time::Instant;

use burn::module::Module;
use burn::nn::Linear;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::GradientsParams;
use burn::prelude::*;

use crate::MethodError;
use crate::optim::{Optimizer, OptimizerConfig, OptimizerKind, cosine_with_warmup};

/// AdamW (β = 0.9, 0.98, ε = 1e-8), no weight decay on biases and norms: the Transformer
/// recipe of the audio and text encoders.
pub fn adamw(weight_decay: f64) -> Optimizer {
    OptimizerConfig {
        kind: OptimizerKind::AdamW {
            beta1: 0.9,
            beta2: 0.98,
            eps: 1e-8,
        },
        weight_decay,
        exclude_bias_and_norm: true,
    }
    .init()
    .expect("valid AdamW config")
}

/// An encoder with a linear classification head, taken apart for the two learning rates.
pub trait EncoderWithHead: Module + Sized {
    type Encoder: Module;
    /// `self` with its encoder and head replaced by `f(encoder, head)`.
    fn map_parts(self, f: impl FnOnce(Self::Encoder, Linear) -> (Self::Encoder, Linear)) -> Self;
}

/// The optimizer of [`train_classifier`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClassifierOptimizer {
    /// SGD, momentum 0.9, weight decay on every parameter (the image recipe).
    SgdMomentum,
    /// [`adamw`] (the audio and text recipe).
    AdamW,
}

/// How [`train_classifier`] trains.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClassifierSchedule {
    pub steps: usize,
    /// Linear warm-up steps before the cosine decay.
    pub warmup_steps: usize,
    /// Peak learning rate of the head.
    pub lr: f64,
    /// The encoder learns at `lr × backbone_lr_mult`.
    pub backbone_lr_mult: f64,
    pub weight_decay: f64,
    pub optimizer: ClassifierOptimizer,
}

/// What [`train_classifier`] measured.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassifierTraining {
    pub steps: usize,
    /// Mean training loss over the last 10 % of the steps.
    pub final_loss: f64,
    pub train_seconds: f64,
}

/// Trains `model` (on an autodiff device) for `schedule.steps` steps, one batch of `batches`
/// each; `logits(model, batch)` returns the batch's logits `[B, classes]` and class ids.
/// `progress(step, loss, lr)` hears of every step. Errors when the batches run out or on a
/// non-finite loss.
pub fn train_classifier<M: EncoderWithHead, B>(
    mut model: M,
    batches: impl Iterator<Item = B>,
    schedule: &ClassifierSchedule,
    device: &Device,
    mut logits: impl FnMut(&M, B) -> (Tensor<2>, Vec<u32>),
    mut progress: impl FnMut(usize, f64, f64),
) -> Result<(M, ClassifierTraining), MethodError> {
    let s = schedule;
    let mut optim = match s.optimizer {
        ClassifierOptimizer::AdamW => adamw(s.weight_decay),
        ClassifierOptimizer::SgdMomentum => OptimizerConfig::sgd_momentum(s.weight_decay, false)
            .init()
            .map_err(|e| MethodError::Optimizer(e.to_string()))?,
    };
    let ce = CrossEntropyLossConfig::new().init(device);
    let t0 = Instant::now();
    let mut losses = Vec::with_capacity(s.steps);
    for (step, batch) in batches.take(s.steps).enumerate() {
        let (out, labels) = logits(&model, batch);
        let labels: Vec<i64> = labels.into_iter().map(i64::from).collect();
        let n = labels.len();
        let targets = Tensor::<1, Int>::from_data(TensorData::new(labels, [n]), device);
        let loss = ce.forward(out, targets);
        let value = loss.clone().into_scalar::<f32>() as f64;
        let lr = cosine_with_warmup(step, s.steps, s.warmup_steps, s.lr, 0.0);
        if !value.is_finite() {
            return Err(MethodError::Training(format!(
                "fine-tuning loss is {value} at step {} (lr {lr:.3e}); lower --lr",
                step + 1
            )));
        }
        losses.push(value);
        let mut grads = loss.backward();
        model = model.map_parts(|encoder, head| {
            let g_encoder = GradientsParams::from_module(&mut grads, &encoder);
            let g_head = GradientsParams::from_module(&mut grads, &head);
            (
                optim.step(lr * s.backbone_lr_mult, encoder, g_encoder),
                optim.step(lr, head, g_head),
            )
        });
        progress(step + 1, value, lr);
    }
    if losses.len() < s.steps {
        return Err(MethodError::Training(format!(
            "fine-tuning ran out of batches after {} of {} steps (the labelled subset yields no full batch)",
            losses.len(),
            s.steps
        )));
    }
    let tail = &losses[losses.len() - losses.len().div_ceil(10)..];
    Ok((
        model,
        ClassifierTraining {
            steps: losses.len(),
            final_loss: tail.iter().sum::<f64>() / tail.len().max(1) as f64,
            train_seconds: t0.elapsed().as_secs_f64(),
        },
    ))
}
