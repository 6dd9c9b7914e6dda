//! Pretext and downstream models around an [`AudioEncoder`].

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use selfsup_data::SampleRng;

use crate::encoder::{AudioEncoder, AudioEncoderConfig, FrameBatch, mean_pool};
use crate::features::Spectrogram;
use crate::loss::{Reconstruction, cpc_info_nce_loss, masked_frame_loss};
use crate::masking::SpanMaskConfig;

/// Encoder + a linear head predicting every frame's log-mel vector from the context, trained
/// on spans masked by `mask` (masked input frames are set to 0, the per-bin mean of normalised
/// features).
#[derive(Module, Debug)]
pub struct MaskedFrameModel {
    pub backbone: AudioEncoder,
    pub head: Linear,
    #[module(skip)]
    pub mask: SpanMaskConfig,
    #[module(skip)]
    pub reconstruction: Reconstruction,
}

/// Clips with spans blanked, and where.
pub struct MaskedClips {
    pub inputs: Vec<Spectrogram>,
    /// Per clip, `true` at masked frames.
    pub masks: Vec<Vec<bool>>,
}

impl MaskedFrameModel {
    pub fn new(
        encoder: &AudioEncoderConfig,
        mask: SpanMaskConfig,
        reconstruction: Reconstruction,
        device: &Device,
    ) -> Self {
        Self {
            backbone: encoder.init(device),
            head: LinearConfig::new(encoder.d_model, encoder.n_mels).init(device),
            mask,
            reconstruction,
        }
    }

    /// `clips` with spans masked; clip `i`'s mask is drawn from
    /// `SampleRng::for_sample(seed, step, i, 0)`.
    pub fn mask_clips(&self, clips: &[Spectrogram], (seed, step): (u64, u64)) -> MaskedClips {
        let mut inputs = clips.to_vec();
        let mut masks = Vec::with_capacity(clips.len());
        for (i, clip) in inputs.iter_mut().enumerate() {
            let m = self.mask.sample(
                clip.frames,
                &mut SampleRng::for_sample(seed, step, i as u64, 0),
            );
            for (frame, _) in m.iter().enumerate().filter(|(_, on)| **on) {
                clip.data[frame * clip.n_mels..(frame + 1) * clip.n_mels].fill(0.0);
            }
            masks.push(m);
        }
        MaskedClips { inputs, masks }
    }

    /// Predicted log-mel frames `[B, T, n_mels]` for a batch of (masked) inputs, and the
    /// encoder's context `[B, T, d_model]`.
    pub fn predict(&self, inputs: &FrameBatch) -> (Tensor<3>, Tensor<3>) {
        let context = self
            .backbone
            .forward(inputs.features.clone(), inputs.pad_mask.clone())
            .context;
        (self.head.forward(context.clone()), context)
    }

    /// The loss on masked frames only (see [`mask_clips`](Self::mask_clips) for the masks).
    pub fn loss(&self, clips: &[Spectrogram], seed_step: (u64, u64), device: &Device) -> Tensor<1> {
        self.loss_and_embedding(clips, seed_step, device).0
    }

    /// The loss and the utterance embeddings (context mean-pooled over valid frames) of the
    /// masked inputs.
    pub fn loss_and_embedding(
        &self,
        clips: &[Spectrogram],
        seed_step: (u64, u64),
        device: &Device,
    ) -> (Tensor<1>, Tensor<2>) {
        let target = FrameBatch::collate(clips, device);
        let t = target.features.dims()[1];
        let MaskedClips { inputs, masks } = self.mask_clips(clips, seed_step);
        let mut masked = vec![false; clips.len() * t];
        for (i, m) in masks.iter().enumerate() {
            masked[i * t..i * t + m.len()].copy_from_slice(m);
        }
        let input = FrameBatch::collate(&inputs, device);
        let masked =
            Tensor::<2, Bool>::from_data(TensorData::new(masked, [clips.len(), t]), device);
        let (prediction, context) = self.predict(&input);
        let loss = masked_frame_loss(prediction, target.features, masked, self.reconstruction);
        (loss, mean_pool(context, &input.lengths))
    }
}

/// Causal encoder + one linear predictor per step ahead (CPC).
#[derive(Module, Debug)]
pub struct CpcModel {
    pub backbone: AudioEncoder,
    pub predictors: Vec<Linear>,
    /// InfoNCE temperature.
    pub temperature: f64,
}

impl CpcModel {
    /// `encoder.causal` is forced on: the context must not see the frames it predicts.
    pub fn new(
        encoder: &AudioEncoderConfig,
        steps: usize,
        temperature: f64,
        device: &Device,
    ) -> Self {
        assert!(steps > 0, "CPC needs at least one prediction step");
        let encoder = encoder.clone().with_causal(true);
        Self {
            predictors: (0..steps)
                .map(|_| LinearConfig::new(encoder.d_model, encoder.d_model).init(device))
                .collect(),
            backbone: encoder.init(device),
            temperature,
        }
    }

    /// InfoNCE over the batch (negatives from other times and other clips).
    pub fn loss(&self, batch: &FrameBatch) -> Tensor<1> {
        self.loss_and_embedding(batch).0
    }

    /// The loss and the utterance embeddings (context mean-pooled over valid frames).
    pub fn loss_and_embedding(&self, batch: &FrameBatch) -> (Tensor<1>, Tensor<2>) {
        let out = self
            .backbone
            .forward(batch.features.clone(), batch.pad_mask.clone());
        let predictions: Vec<Tensor<3>> = self
            .predictors
            .iter()
            .map(|p| p.forward(out.context.clone()))
            .collect();
        let pooled = mean_pool(out.context, &batch.lengths);
        let loss = cpc_info_nce_loss(&predictions, out.latents, &batch.lengths, self.temperature);
        (loss, pooled)
    }
}

/// Encoder + mean pooling + a linear classifier.
#[derive(Module, Debug)]
pub struct AudioClassifier {
    pub encoder: AudioEncoder,
    pub head: Linear,
}

impl AudioClassifier {
    pub fn new(encoder: AudioEncoder, classes: usize, device: &Device) -> Self {
        Self {
            head: LinearConfig::new(encoder.d_model, classes).init(device),
            encoder,
        }
    }

    /// Class logits `[B, classes]`.
    pub fn forward(&self, batch: &FrameBatch) -> Tensor<2> {
        let out = self
            .encoder
            .forward(batch.features.clone(), batch.pad_mask.clone());
        self.head.forward(mean_pool(out.context, &batch.lengths))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::optim::GradientsParams;
    use selfsup_methods::optim::{OptimizerConfig, OptimizerKind};

    fn clips(n: usize, n_mels: usize) -> Vec<Spectrogram> {
        (0..n)
            .map(|i| {
                let frames = 12 + 3 * i;
                Spectrogram {
                    frames,
                    n_mels,
                    // A smooth, predictable pattern: a moving sine over mel bins.
                    data: (0..frames * n_mels)
                        .map(|j| {
                            let (t, m) = ((j / n_mels) as f32, (j % n_mels) as f32);
                            (0.4 * t + 0.7 * m + i as f32).sin()
                        })
                        .collect(),
                }
            })
            .collect()
    }

    fn adamw() -> selfsup_methods::optim::Optimizer {
        OptimizerConfig {
            kind: OptimizerKind::AdamW {
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
            },
            weight_decay: 0.0,
            exclude_bias_and_norm: true,
        }
        .init()
        .unwrap()
    }

    #[test]
    fn masked_frame_and_cpc_losses_go_down() {
        let device = Device::flex().autodiff();
        device.seed(0);
        let cfg = AudioEncoderConfig::new(8)
            .with_d_model(32)
            .with_d_ff(64)
            .with_n_layers(1)
            .with_dropout(0.0);
        let data = clips(4, 8);
        let mask = SpanMaskConfig::new(0.15, 2, 4).unwrap();

        let mut model = MaskedFrameModel::new(&cfg, mask, Reconstruction::L2, &device);
        let mut optim = adamw();
        let mut losses = Vec::new();
        for step in 0..60 {
            // Same masks every step, so the decrease is learning, not luck.
            let loss = model.loss(&data, (1, 0), &device);
            losses.push(loss.clone().into_scalar::<f32>());
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(3e-3, model, grads);
            let _ = step;
        }
        assert!(losses[59] < 0.5 * losses[0], "masked-frame loss {losses:?}");

        let mut cpc = CpcModel::new(&cfg, 2, 1.0, &device);
        let mut optim = adamw();
        let batch = FrameBatch::collate(&data, &device);
        let first = cpc.loss(&batch).into_scalar::<f32>();
        for _ in 0..60 {
            let loss = cpc.loss(&batch);
            let grads = GradientsParams::from_grads(loss.backward(), &cpc);
            cpc = optim.step(3e-3, cpc, grads);
        }
        let last = cpc.loss(&batch).into_scalar::<f32>();
        assert!(last < 0.7 * first, "CPC loss {first} -> {last}");
    }
}
