//! Few-label fine-tuning of an [`AudioEncoder`] with a linear head, batching and cropping, and
//! utterance embeddings for kNN: the pieces the `selfsup` CLI and the examples share.

use std::time::Instant;

use burn::nn::Linear;
use burn::prelude::*;
use selfsup_data::SampleRng;
pub use selfsup_data::shuffled_batches;
use selfsup_eval::Features;
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
    let model = AudioClassifier::new(encoder, cfg.classes, device);
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
