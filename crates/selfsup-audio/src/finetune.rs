//! Few-label fine-tuning of an [`AudioEncoder`] with a linear head, batching and cropping, and
//! utterance embeddings for kNN: the pieces the `selfsup` CLI and the examples share.

use std::time::Instant;

use burn::nn::Linear;
use burn::prelude::*;
use selfsup_data::SampleRng;
pub use selfsup_data::shuffled_batches;
use selfsup_eval::{Features, LinearProbeConfig, probed_linear_head};
pub use selfsup_methods::finetune::adamw;
use selfsup_methods::finetune::{ClassifierSchedule, EncoderWithHead, train_classifier};

use crate::encoder::{AudioEncoder, FrameBatch};
use crate::features::{SpecAugmentConfig, Spectrogram};
use crate::models::AudioClassifier;

/// A random `len`-frame window of a clip longer than that (shorter clips are kept whole).
pub fn random_crop(spec: &Spectrogram, len: usize, rng: &mut SampleRng) -> Spectrogram {
    if spec.frames <= len {
        return spec.clone();
    }
    spec.crop(rng.below((spec.frames - len + 1) as u64) as usize, len)
}

/// How [`finetune`] trains: AdamW, cosine schedule with 10 % warm-up, SpecAugment and random
/// crops on the labelled clips.
#[derive(Debug, Clone)]
pub struct FinetuneConfig {
    pub steps: usize,
    pub batch_size: usize,
    /// Peak learning rate of the head.
    pub lr: f64,
    /// The encoder learns at `lr × backbone_lr_mult`.
    pub backbone_lr_mult: f64,
    pub weight_decay: f64,
    /// Training crop length in frames.
    pub crop_frames: usize,
    pub augment: SpecAugmentConfig,
    /// Seeds the head, the batch order, the crops and the masks.
    pub seed: u64,
    pub classes: usize,
    /// LP-FT (Kumar et al. 2022): start the head from a linear probe (these settings; features
    /// used as they are) on the frozen encoder's embeddings of the whole labelled clips, instead
    /// of a random head, so that the first fine-tuning steps do not push a random head's
    /// gradients into the encoder.
    pub probe_head: Option<LinearProbeConfig>,
}

/// What one fine-tuning run measured.
#[derive(Debug, Clone)]
pub struct FinetuneResult {
    pub top1: f64,
    pub steps: usize,
    /// Mean training loss over the last 10 % of the steps.
    pub final_loss: f64,
    pub train_seconds: f64,
    pub test_seconds: f64,
}

/// Trains `encoder` (on an autodiff device) + a linear head on `train` and returns the top-1
/// accuracy on all of `test` (whole clips, no augmentation). Errors on a non-finite loss.
pub fn finetune(
    encoder: AudioEncoder,
    train: &[(Spectrogram, u32)],
    test: &[(Spectrogram, u32)],
    cfg: &FinetuneConfig,
    device: &Device,
) -> Result<FinetuneResult, String> {
    if train.is_empty() || test.is_empty() {
        return Err("fine-tuning needs labelled train clips and test clips".into());
    }
    device.seed(cfg.seed);
    let mut model = AudioClassifier::new(encoder, cfg.classes, device);
    if let Some(probe) = &cfg.probe_head {
        model.head = probed_head(&model.encoder, train, cfg.classes, probe, device)?;
    }
    let schedule = ClassifierSchedule {
        steps: cfg.steps,
        batch_size: cfg.batch_size,
        lr: cfg.lr,
        backbone_lr_mult: cfg.backbone_lr_mult,
        weight_decay: cfg.weight_decay,
        seed: cfg.seed,
    };
    let (model, trained) =
        train_classifier(model, train.len(), &schedule, device, |model, idx, step| {
            let mut rng = SampleRng::for_sample(cfg.seed, step as u64, 1, 2);
            let clips: Vec<Spectrogram> = idx
                .iter()
                .map(|&i| {
                    let mut s = random_crop(&train[i].0, cfg.crop_frames, &mut rng);
                    cfg.augment.apply(&mut s, &mut rng, 0.0);
                    s
                })
                .collect();
            let labels = idx.iter().map(|&i| train[i].1).collect();
            (model.forward(&FrameBatch::collate(&clips, device)), labels)
        })?;
    let t1 = Instant::now();
    let top1 = accuracy(&model.valid(), test, 64);
    Ok(FinetuneResult {
        top1,
        steps: trained.steps,
        final_loss: trained.final_loss,
        train_seconds: trained.train_seconds,
        test_seconds: t1.elapsed().as_secs_f64(),
    })
}

impl EncoderWithHead for AudioClassifier {
    type Encoder = AudioEncoder;

    fn map_parts(self, f: impl FnOnce(Self::Encoder, Linear) -> (Self::Encoder, Linear)) -> Self {
        let (encoder, head) = f(self.encoder, self.head);
        Self { encoder, head }
    }
}

/// A linear head `[d_model → classes]` fitted by a linear probe on `encoder`'s frozen
/// embeddings (inference mode, whole clips) of `train`, on `device`.
fn probed_head(
    encoder: &AudioEncoder,
    train: &[(Spectrogram, u32)],
    classes: usize,
    probe: &LinearProbeConfig,
    device: &Device,
) -> Result<Linear, String> {
    let specs: Vec<Spectrogram> = train.iter().map(|c| c.0.clone()).collect();
    let labels: Vec<u32> = train.iter().map(|c| c.1).collect();
    let feats = embed_all(encoder, &specs, 64);
    probed_linear_head(&feats, &labels, classes, probe, device)
        .map_err(|e| format!("LP-FT linear probe: {e}"))
}

/// Top-1 accuracy of `model` on whole clips.
pub fn accuracy(model: &AudioClassifier, test: &[(Spectrogram, u32)], batch: usize) -> f64 {
    let device = model.head.weight.device();
    let mut correct = 0usize;
    for chunk in test.chunks(batch.max(1)) {
        let specs: Vec<Spectrogram> = chunk.iter().map(|c| c.0.clone()).collect();
        let pred = model
            .forward(&FrameBatch::collate(&specs, &device))
            .argmax(1)
            .into_data()
            .convert::<i64>()
            .try_to_vec::<i64>()
            .expect("i64 predictions");
        correct += pred
            .iter()
            .zip(chunk)
            .filter(|(p, c)| **p == c.1 as i64)
            .count();
    }
    correct as f64 / test.len() as f64
}

/// Utterance embeddings (mean-pooled context, inference mode) of whole clips, in order.
pub fn embed_all(encoder: &AudioEncoder, specs: &[Spectrogram], batch: usize) -> Features {
    let encoder = encoder.valid();
    let device = encoder.norm.gamma.device();
    let mut values = Vec::with_capacity(specs.len() * encoder.d_model);
    for chunk in specs.chunks(batch.max(1)) {
        let z = encoder.embed(&FrameBatch::collate(chunk, &device));
        values.extend(
            z.into_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .expect("f32"),
        );
    }
    Features::new(values, specs.len(), encoder.d_model).expect("one embedding per clip")
}

#[cfg(test)]
mod tests {
    use selfsup_eval::{Normalization, linear_probe};

    use super::*;

    /// The probed head, placed in the classifier, reproduces the linear probe's own logits on
    /// the frozen embeddings (so the [classes, dim] → [dim, classes] layout is right).
    #[test]
    fn probed_head_carries_the_probe_weights() {
        let device = Device::flex().autodiff();
        device.seed(3);
        let (n_mels, classes) = (8, 3);
        let cfg = crate::AudioEncoderConfig::new(n_mels)
            .with_d_model(16)
            .with_d_ff(32)
            .with_n_layers(1);
        let encoder = cfg.init(&device);
        // Class c: a sine over mel bins with a class-specific frequency.
        let train: Vec<(Spectrogram, u32)> = (0..12)
            .map(|i| {
                let (c, frames) = ((i % classes) as u32, 10 + i);
                let data = (0..frames * n_mels)
                    .map(|j| ((1.0 + c as f32) * 0.5 * (j % n_mels) as f32 + 0.1 * i as f32).sin())
                    .collect();
                let spec = Spectrogram {
                    frames,
                    n_mels,
                    data,
                };
                (spec, c)
            })
            .collect();
        let probe = LinearProbeConfig {
            epochs: 200,
            lr: 1e-2,
            ..Default::default()
        };
        let head = probed_head(&encoder, &train, classes, &probe, &device).unwrap();
        assert_eq!(head.weight.dims(), [16, classes]);

        // Independent route: the probe's weights applied by hand to the embeddings.
        let specs: Vec<Spectrogram> = train.iter().map(|c| c.0.clone()).collect();
        let labels: Vec<u32> = train.iter().map(|c| c.1).collect();
        let feats = embed_all(&encoder, &specs, 64);
        let fit = linear_probe(
            &feats,
            &labels,
            &feats,
            &labels,
            &LinearProbeConfig {
                normalization: Normalization::None,
                num_classes: Some(classes),
                ..probe
            },
        )
        .unwrap();
        assert!(fit.train_top1 > 0.5, "the probe learns: {}", fit.train_top1);
        let model = AudioClassifier { encoder, head }.valid();
        let logits = model
            .forward(&FrameBatch::collate(&specs, &model.head.weight.device()))
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap();
        for i in 0..train.len() {
            let x = &feats.data[i * 16..(i + 1) * 16];
            for c in 0..classes {
                let w = &fit.weights[c * 16..(c + 1) * 16];
                let by_hand: f32 = fit.bias[c] + w.iter().zip(x).map(|(a, b)| a * b).sum::<f32>();
                let got = logits[i * classes + c];
                assert!(
                    (got - by_hand).abs() < 1e-4,
                    "clip {i} class {c}: {got} vs {by_hand}"
                );
            }
        }
    }
}
