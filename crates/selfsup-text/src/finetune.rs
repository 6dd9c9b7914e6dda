//! Few-label text classification on a [`TextEncoder`]: fine-tuning with a linear head (the
//! loop shared with audio, `selfsup_methods::finetune`), test accuracy, and pooled sequence
//! embeddings for kNN and linear probes.

use burn::nn::Linear;
use burn::prelude::*;
use selfsup_eval::Features;
use selfsup_methods::finetune::{
    ClassifierSchedule, ClassifierTraining, EncoderWithHead, train_classifier,
};

use crate::encoder::{Pooling, TextEncoder, TokenBatch};
use crate::models::TextClassifier;

impl EncoderWithHead for TextClassifier {
    type Encoder = TextEncoder;

    fn map_parts(self, f: impl FnOnce(Self::Encoder, Linear) -> (Self::Encoder, Linear)) -> Self {
        let (encoder, head) = f(self.encoder, self.head);
        Self {
            encoder,
            head,
            pooling: self.pooling,
        }
    }
}

/// Trains `encoder` (on an autodiff device, seeded here by `schedule.seed` for the head) + a
/// linear head over `classes` on the labelled token sequences `train`.
pub fn finetune(
    encoder: TextEncoder,
    train: &[(Vec<u32>, u32)],
    classes: usize,
    pooling: Pooling,
    pad_id: u32,
    schedule: &ClassifierSchedule,
    device: &Device,
) -> Result<(TextClassifier, ClassifierTraining), String> {
    device.seed(schedule.seed);
    let model = TextClassifier::new(encoder, classes, pooling, device);
    train_classifier(model, train.len(), schedule, device, |model, idx, _| {
        let seqs: Vec<Vec<u32>> = idx.iter().map(|&i| train[i].0.clone()).collect();
        let labels = idx.iter().map(|&i| train[i].1).collect();
        (
            model.forward(&TokenBatch::collate(&seqs, pad_id, None, device)),
            labels,
        )
    })
}

/// Class scores `[N × classes]` (row-major) of `model` on `seqs`, in batches of `batch`.
pub fn scores(model: &TextClassifier, seqs: &[Vec<u32>], pad_id: u32, batch: usize) -> Vec<f32> {
    let device = model.head.weight.device();
    let mut out = Vec::new();
    for chunk in seqs.chunks(batch.max(1)) {
        let logits = model.forward(&TokenBatch::collate(chunk, pad_id, None, &device));
        out.extend(
            logits
                .into_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .expect("f32 logits"),
        );
    }
    out
}

/// Pooled sequence embeddings (inference mode) of `seqs`, in order.
pub fn embed_all(
    encoder: &TextEncoder,
    seqs: &[Vec<u32>],
    pooling: Pooling,
    pad_id: u32,
    batch: usize,
) -> Features {
    let encoder = encoder.valid();
    let device = encoder.tokens.weight.device();
    let mut values = Vec::with_capacity(seqs.len() * encoder.d_model);
    for chunk in seqs.chunks(batch.max(1)) {
        let z = encoder.embed(&TokenBatch::collate(chunk, pad_id, None, &device), pooling);
        values.extend(
            z.into_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .expect("f32"),
        );
    }
    Features::new(values, seqs.len(), encoder.d_model).expect("one embedding per sequence")
}
