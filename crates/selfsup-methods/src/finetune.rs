//! The few-label fine-tuning loop shared by the modalities whose encoders are fine-tuned with
//! AdamW (audio, text): shuffled batches of the labelled subset, cross-entropy on a linear
//! head, a cosine schedule with 10 % warm-up, and the encoder at a lower learning rate than
//! the new head. The modality supplies the batches' logits (collation, augmentation).

use std::time::Instant;

use burn::module::Module;
use burn::nn::Linear;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::GradientsParams;
use burn::prelude::*;
use selfsup_data::shuffled_batches;

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

/// How [`train_classifier`] trains.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClassifierSchedule {
    pub steps: usize,
    pub batch_size: usize,
    /// Peak learning rate of the head.
    pub lr: f64,
    /// The encoder learns at `lr × backbone_lr_mult`.
    pub backbone_lr_mult: f64,
    pub weight_decay: f64,
    /// Seeds the batch order (the caller seeds the head and its augmentation).
    pub seed: u64,
}

/// What [`train_classifier`] measured.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassifierTraining {
    pub steps: usize,
    /// Mean training loss over the last 10 % of the steps.
    pub final_loss: f64,
    pub train_seconds: f64,
}

/// Trains `model` (on an autodiff device) for `schedule.steps` steps on batches of the indices
/// `0..n_train`; `logits(model, indices, step)` returns the batch's logits `[B, classes]` and
/// class ids. Errors on an empty training set or a non-finite loss.
pub fn train_classifier<M: EncoderWithHead>(
    mut model: M,
    n_train: usize,
    schedule: &ClassifierSchedule,
    device: &Device,
    mut logits: impl FnMut(&M, &[usize], usize) -> (Tensor<2>, Vec<u32>),
) -> Result<(M, ClassifierTraining), String> {
    if n_train == 0 {
        return Err("fine-tuning needs labelled training samples".into());
    }
    let s = schedule;
    let mut optim = adamw(s.weight_decay);
    let ce = CrossEntropyLossConfig::new().init(device);
    let t0 = Instant::now();
    let mut losses = Vec::with_capacity(s.steps);
    let batches = (0u64..).flat_map(|pass| shuffled_batches(n_train, s.batch_size, s.seed, pass));
    for (step, idx) in batches.take(s.steps).enumerate() {
        let (out, labels) = logits(&model, &idx, step);
        let labels: Vec<i64> = labels.into_iter().map(i64::from).collect();
        let n = labels.len();
        let targets = Tensor::<1, Int>::from_data(TensorData::new(labels, [n]), device);
        let loss = ce.forward(out, targets);
        let value = loss.clone().into_scalar::<f32>() as f64;
        let lr = cosine_with_warmup(step, s.steps, s.steps / 10, s.lr, 0.0);
        if !value.is_finite() {
            return Err(format!(
                "fine-tuning loss is {value} at step {} (lr {lr:.3e}); lower --lr",
                step + 1
            ));
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
