//! Pretext and downstream models around a [`TextEncoder`]: masked LM (BERT), causal LM (GPT)
//! and a sequence classifier.

use burn::module::Param;
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::gelu;
use selfsup_data::SampleRng;

use crate::encoder::{Pooling, TextEncoder, TextEncoderConfig, TokenBatch, pad_rows, pool};
use crate::loss::{IGNORE_INDEX, LmLoss, causal_lm_loss, masked_lm_loss};
use crate::masking::MlmMaskConfig;
use crate::tokenizer::SpecialIds;

/// BERT's prediction head: dense + GELU + LayerNorm, then a decoder tied to the encoder's token
/// embeddings with its own output bias.
#[derive(Module, Debug)]
pub struct LmHead {
    pub dense: Linear,
    pub norm: LayerNorm,
    pub bias: Param<Tensor<1>>,
}

impl LmHead {
    pub fn new(d_model: usize, vocab_size: usize, device: &Device) -> Self {
        Self {
            dense: LinearConfig::new(d_model, d_model).init(device),
            norm: LayerNormConfig::new(d_model).init(device),
            bias: Param::from_tensor(Tensor::zeros([vocab_size], device)),
        }
    }

    /// The decoder's input at every position, `[B, T, D]`.
    pub fn transform(&self, hidden: Tensor<3>) -> Tensor<3> {
        self.norm.forward(gelu(self.dense.forward(hidden)))
    }
}

/// Encoder + tied masked-LM head.
#[derive(Module, Debug)]
pub struct MlmModel {
    pub encoder: TextEncoder,
    pub head: LmHead,
}

impl MlmModel {
    /// `encoder.causal` is forced off: a masked token is predicted from both sides.
    pub fn new(encoder: &TextEncoderConfig, device: &Device) -> Self {
        Self {
            encoder: encoder.clone().with_causal(false).init(device),
            head: LmHead::new(encoder.d_model, encoder.vocab_size, device),
        }
    }

    /// Loss on the labelled positions of a masked batch (see [`MaskedBatch`]).
    pub fn loss(&self, batch: &MaskedBatch) -> LmLoss {
        let hidden = self.head.transform(self.encoder.forward(&batch.input));
        masked_lm_loss(
            hidden,
            &batch.labels,
            self.encoder.tokens.weight.val(),
            self.head.bias.val(),
        )
    }
}

/// Causal encoder + tied next-token head.
#[derive(Module, Debug)]
pub struct CausalLmModel {
    pub encoder: TextEncoder,
    pub head: LmHead,
}

impl CausalLmModel {
    /// `encoder.causal` is forced on: a position must not see the token it predicts.
    pub fn new(encoder: &TextEncoderConfig, device: &Device) -> Self {
        Self {
            encoder: encoder.clone().with_causal(true).init(device),
            head: LmHead::new(encoder.d_model, encoder.vocab_size, device),
        }
    }

    /// Next-token loss over `seqs` (each `[CLS] … [SEP]`), padded with `pad_id`.
    pub fn loss(&self, seqs: &[Vec<u32>], pad_id: u32, device: &Device) -> LmLoss {
        let batch = TokenBatch::collate(seqs, pad_id, None, device);
        let (ids, lengths, _) = pad_rows(seqs, pad_id, None);
        let hidden = self.head.transform(self.encoder.forward(&batch));
        causal_lm_loss(
            hidden,
            &ids,
            &lengths,
            self.encoder.tokens.weight.val(),
            self.head.bias.val(),
        )
    }
}

/// Encoder + pooling + a linear classifier.
#[derive(Module, Debug)]
pub struct TextClassifier {
    pub encoder: TextEncoder,
    pub head: Linear,
    #[module(skip)]
    pub pooling: Pooling,
}

impl TextClassifier {
    pub fn new(encoder: TextEncoder, classes: usize, pooling: Pooling, device: &Device) -> Self {
        Self {
            head: LinearConfig::new(encoder.d_model, classes).init(device),
            encoder,
            pooling,
        }
    }

    /// Class logits `[B, classes]`.
    pub fn forward(&self, batch: &TokenBatch) -> Tensor<2> {
        let hidden = self.encoder.forward(batch);
        self.head.forward(pool(hidden, batch, self.pooling))
    }
}

/// A batch masked for MLM: the model's input and per-position labels (row-major, padding and
/// unselected positions [`IGNORE_INDEX`]).
#[derive(Debug, Clone)]
pub struct MaskedBatch {
    pub input: TokenBatch,
    pub labels: Vec<i64>,
}

impl MaskedBatch {
    /// Masks every sequence with its own stream `SampleRng::for_sample(seed, epoch, index, 0)`
    /// (`indices[i]` is sequence i's index in the corpus), so a sequence's mask depends on the
    /// seed, the epoch and the sequence only, not on batching. If no position of the whole batch
    /// was selected (short texts), the first word of the first sequence is, so that every batch
    /// has a loss.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        seqs: &[Vec<u32>],
        indices: &[usize],
        mask: &MlmMaskConfig,
        special: &SpecialIds,
        vocab_size: usize,
        (seed, epoch): (u64, u64),
        device: &Device,
    ) -> Self {
        assert_eq!(seqs.len(), indices.len(), "one corpus index per sequence");
        let mut inputs = Vec::with_capacity(seqs.len());
        let mut labels = Vec::with_capacity(seqs.len());
        for (s, &i) in seqs.iter().zip(indices) {
            let m = mask.apply(
                s,
                special,
                vocab_size,
                &mut SampleRng::for_sample(seed, epoch, i as u64, 0),
            );
            inputs.push(m.input);
            labels.push(m.labels);
        }
        if labels.iter().flatten().all(|&l| l == IGNORE_INDEX) && seqs[0].len() > 2 {
            labels[0][1] = seqs[0][1] as i64;
            inputs[0][1] = special.mask;
        }
        let input = TokenBatch::collate(&inputs, special.pad, None, device);
        let t = input.ids.dims()[1];
        let mut flat = vec![IGNORE_INDEX; seqs.len() * t];
        for (row, l) in labels.iter().enumerate() {
            flat[row * t..row * t + l.len()].copy_from_slice(l);
        }
        Self {
            input,
            labels: flat,
        }
    }
}

/// Language-model figures on held-out text.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LmMetrics {
    /// Mean cross-entropy per predicted token (nats).
    pub loss: f64,
    /// Share of predicted tokens whose arg-max is right.
    pub accuracy: f64,
    /// `exp(loss)`.
    pub perplexity: f64,
    /// Tokens predicted.
    pub tokens: usize,
}

impl LmMetrics {
    /// Token-weighted mean of per-batch losses.
    pub fn from_batches(batches: impl IntoIterator<Item = LmLoss>) -> Self {
        let (mut sum, mut correct, mut tokens) = (0.0f64, 0usize, 0usize);
        for b in batches {
            let n = b.count();
            correct += b.correct();
            sum += b.loss.clone().into_scalar::<f32>() as f64 * n as f64;
            tokens += n;
        }
        assert!(tokens > 0, "no token was predicted");
        let loss = sum / tokens as f64;
        Self {
            loss,
            accuracy: correct as f64 / tokens as f64,
            perplexity: loss.exp(),
            tokens,
        }
    }
}

impl MlmModel {
    /// MLM loss, accuracy and perplexity on `seqs` with fixed masks (`seed`, epoch 0), so that
    /// evaluations at different steps score the same positions.
    pub fn evaluate(
        &self,
        seqs: &[Vec<u32>],
        mask: &MlmMaskConfig,
        special: &SpecialIds,
        seed: u64,
        batch: usize,
        device: &Device,
    ) -> LmMetrics {
        let vocab = self.encoder.vocab_size();
        let indices: Vec<usize> = (0..seqs.len()).collect();
        LmMetrics::from_batches(seqs.chunks(batch).zip(indices.chunks(batch)).map(|(s, i)| {
            self.loss(&MaskedBatch::new(
                s,
                i,
                mask,
                special,
                vocab,
                (seed, 0),
                device,
            ))
        }))
    }
}

impl CausalLmModel {
    /// Next-token loss, accuracy and perplexity on `seqs`.
    pub fn evaluate(
        &self,
        seqs: &[Vec<u32>],
        pad_id: u32,
        batch: usize,
        device: &Device,
    ) -> LmMetrics {
        LmMetrics::from_batches(seqs.chunks(batch).map(|s| self.loss(s, pad_id, device)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::optim::GradientsParams;
    use selfsup_methods::optim::{OptimizerConfig, OptimizerKind};

    const SPECIAL: SpecialIds = SpecialIds {
        pad: 0,
        unk: 1,
        cls: 2,
        sep: 3,
        mask: 4,
    };

    fn tiny() -> TextEncoderConfig {
        TextEncoderConfig::new(30)
            .with_d_model(32)
            .with_n_layers(1)
            .with_n_heads(2)
            .with_d_ff(64)
            .with_max_len(16)
            .with_dropout(0.0)
    }

    /// Sequences of a deterministic grammar: after word w comes w + 1 (cycling in 5..30).
    fn corpus(n: usize) -> Vec<Vec<u32>> {
        (0..n)
            .map(|i| {
                let mut s = vec![2];
                s.extend((0..8 + i % 5).map(|j| 5 + ((i * 3 + j) % 25) as u32));
                s.push(3);
                s
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
    fn mlm_and_causal_lm_learn_a_predictable_language() {
        let device = Device::flex().autodiff();
        device.seed(0);
        let data = corpus(32);
        let idx: Vec<usize> = (0..data.len()).collect();
        let mask = MlmMaskConfig::default();
        let mut mlm = MlmModel::new(&tiny(), &device);
        let mut optim = adamw();
        let before = mlm.evaluate(&data, &mask, &SPECIAL, 9, 16, &device);
        for epoch in 0..60 {
            let batch = MaskedBatch::new(&data, &idx, &mask, &SPECIAL, 30, (1, epoch), &device);
            let loss = mlm.loss(&batch).loss;
            let grads = GradientsParams::from_grads(loss.backward(), &mlm);
            mlm = optim.step(3e-3, mlm, grads);
        }
        let after = mlm.evaluate(&data, &mask, &SPECIAL, 9, 16, &device);
        assert!(before.perplexity > 15.0, "{before:?}");
        assert!(
            after.accuracy > 0.5 && after.perplexity < 0.5 * before.perplexity,
            "{before:?} -> {after:?}"
        );

        let mut clm = CausalLmModel::new(&tiny(), &device);
        let mut optim = adamw();
        let before = clm.evaluate(&data, 0, 16, &device);
        for _ in 0..60 {
            let loss = clm.loss(&data, 0, &device).loss;
            let grads = GradientsParams::from_grads(loss.backward(), &clm);
            clm = optim.step(3e-3, clm, grads);
        }
        let after = clm.evaluate(&data, 0, 16, &device);
        assert!(
            after.accuracy > 0.6 && after.perplexity < 0.3 * before.perplexity,
            "{before:?} -> {after:?}"
        );
    }

    #[test]
    fn masked_batch_labels_follow_padding_and_are_batch_independent() {
        let device = Device::flex();
        let data = corpus(4);
        let all = MaskedBatch::new(
            &data,
            &[0, 1, 2, 3],
            &MlmMaskConfig::default(),
            &SPECIAL,
            30,
            (5, 2),
            &device,
        );
        let t = all.input.ids.dims()[1];
        assert_eq!(all.labels.len(), 4 * t);
        for (row, s) in data.iter().enumerate() {
            assert!(
                all.labels[row * t + s.len()..(row + 1) * t]
                    .iter()
                    .all(|&l| l == IGNORE_INDEX)
            );
        }
        // Sequence 2 masked alone (same corpus index) gets the same labels.
        let alone = MaskedBatch::new(
            &data[2..3],
            &[2],
            &MlmMaskConfig::default(),
            &SPECIAL,
            30,
            (5, 2),
            &device,
        );
        assert_eq!(
            alone.labels[..data[2].len()],
            all.labels[2 * t..2 * t + data[2].len()]
        );
    }

    #[test]
    fn classifier_and_lm_share_the_encoder_parameters() {
        let device = Device::flex();
        let mlm = MlmModel::new(&tiny(), &device);
        let clf = TextClassifier::new(mlm.encoder.clone(), 2, Pooling::Mean, &device);
        let batch = TokenBatch::collate(&corpus(3), 0, None, &device);
        assert_eq!(clf.forward(&batch).dims(), [3, 2]);
        assert_eq!(clf.encoder.num_params(), mlm.encoder.num_params());
    }
}
