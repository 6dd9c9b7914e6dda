//! Pretext and downstream models around an [`AudioEncoder`].

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use selfsup_data::SampleRng;

use selfsup_methods::loss::nt_xent_loss;
use selfsup_models::{MlpHead, MlpHeadConfig};

use crate::encoder::{AudioEncoder, AudioEncoderConfig, FrameBatch, mean_pool};
use crate::features::{SpecAugmentConfig, Spectrogram};
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

/// How a contrastive view of a clip is drawn: a random window of `min_crop..=1` of its frames,
/// a loudness shift (a constant in `±max_gain` added to the normalised log-mel), then
/// SpecAugment masks filled with 0 (the per-bin mean of normalised features).
#[derive(Debug, Clone, PartialEq)]
pub struct AudioViewConfig {
    pub min_crop: f64,
    pub max_gain: f32,
    pub augment: SpecAugmentConfig,
}

impl AudioViewConfig {
    /// 60–100 % windows, ±0.5 gain, two frequency bands and two time spans.
    pub fn speech() -> Self {
        Self {
            min_crop: 0.6,
            max_gain: 0.5,
            augment: SpecAugmentConfig::speech(),
        }
    }

    pub fn view(&self, clip: &Spectrogram, rng: &mut SampleRng) -> Spectrogram {
        let len = ((clip.frames as f64 * rng.uniform(self.min_crop, 1.0)).ceil() as usize)
            .clamp(1, clip.frames.max(1));
        let start = rng.below((clip.frames - len) as u64 + 1) as usize;
        let mut view = clip.crop(start, len);
        let gain = rng.uniform(-self.max_gain as f64, self.max_gain as f64) as f32;
        view.data.iter_mut().for_each(|v| *v += gain);
        self.augment.apply(&mut view, rng, 0.0);
        view
    }
}

/// Contrastive utterance embeddings (SimCLR on spectrograms, as COLA / BYOL-A's setting): two
/// views of each clip, the encoder's mean-pooled context through a projection head, NT-Xent
/// between the views of the batch.
#[derive(Module, Debug)]
pub struct ContrastiveAudioModel {
    pub backbone: AudioEncoder,
    pub projection: MlpHead,
    #[module(skip)]
    pub temperature: f64,
    #[module(skip)]
    pub views: AudioViewConfig,
}

impl ContrastiveAudioModel {
    /// `projection_dims`: the head's widths after the encoder (hidden…, output).
    pub fn new(
        encoder: &AudioEncoderConfig,
        projection_dims: &[usize],
        temperature: f64,
        views: AudioViewConfig,
        device: &Device,
    ) -> Self {
        Self {
            backbone: encoder.init(device),
            projection: MlpHeadConfig::on(encoder.d_model, projection_dims).init(device),
            temperature,
            views,
        }
    }

    /// Pooled utterance embeddings `[B, d_model]`.
    pub fn embed(&self, batch: &FrameBatch) -> Tensor<2> {
        let out = self
            .backbone
            .forward(batch.features.clone(), batch.pad_mask.clone());
        mean_pool(out.context, &batch.lengths)
    }

    /// The NT-Xent loss and both views' pooled embeddings; clip `i`'s view `v` (1 or 2) is
    /// drawn from `SampleRng::for_sample(seed, step, i, v)`.
    pub fn loss_and_embeddings(
        &self,
        clips: &[Spectrogram],
        (seed, step): (u64, u64),
        device: &Device,
    ) -> (Tensor<1>, Tensor<2>, Tensor<2>) {
        let n = clips.len();
        // Both views in one batch: one encoder pass, and the head's BatchNorm sees both.
        let views: Vec<Spectrogram> = (1..=2u64)
            .flat_map(|v| {
                clips.iter().enumerate().map(move |(i, clip)| {
                    self.views
                        .view(clip, &mut SampleRng::for_sample(seed, step, i as u64, v))
                })
            })
            .collect();
        let h = self.embed(&FrameBatch::collate(&views, device));
        let z = self.projection.forward(h.clone());
        let d = z.dims()[1];
        let loss = nt_xent_loss(
            z.clone().slice([0..n, 0..d]),
            z.slice([n..2 * n, 0..d]),
            self.temperature,
        );
        let e = h.dims()[1];
        (
            loss,
            h.clone().slice([0..n, 0..e]),
            h.slice([n..2 * n, 0..e]),
        )
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

        let mut contrastive =
            ContrastiveAudioModel::new(&cfg, &[32, 16], 0.5, AudioViewConfig::speech(), &device);
        let mut optim = adamw();
        let mut losses = Vec::new();
        for _ in 0..60 {
            // Same views every step.
            let (loss, _, _) = contrastive.loss_and_embeddings(&data, (1, 0), &device);
            losses.push(loss.clone().into_scalar::<f32>());
            let grads = GradientsParams::from_grads(loss.backward(), &contrastive);
            contrastive = optim.step(3e-3, contrastive, grads);
        }
        assert!(losses[59] < 0.5 * losses[0], "contrastive loss {losses:?}");
    }

    #[test]
    fn contrastive_views_are_windows_shifted_and_masked() {
        let clip = &clips(1, 8)[0];
        let views = AudioViewConfig {
            min_crop: 0.6,
            max_gain: 0.5,
            augment: SpecAugmentConfig {
                freq_masks: 0,
                max_freq_width: 0,
                time_masks: 0,
                max_time_width: 0,
                max_time_fraction: 0.0,
            },
        };
        for seed in 0..20 {
            let v = views.view(clip, &mut SampleRng::for_sample(seed, 0, 0, 1));
            assert!(v.frames >= (0.6 * clip.frames as f64).ceil() as usize);
            assert!(v.frames <= clip.frames);
            // Some window of the clip plus one constant within ±0.5.
            let shifted_window = (0..=clip.frames - v.frames).any(|s| {
                let gain = v.data[0] - clip.data[s * 8];
                gain.abs() <= 0.5 + 1e-6
                    && v.data
                        .iter()
                        .zip(&clip.data[s * 8..])
                        .all(|(a, b)| (a - b - gain).abs() < 1e-5)
            });
            assert!(shifted_window, "seed {seed}: not a shifted window");
        }
    }
}
