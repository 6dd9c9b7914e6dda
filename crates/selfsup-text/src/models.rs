//! Pretext and downstream models around a [`TextEncoder`]: a language model (masked, BERT; or
//! causal, GPT: the same tied head, the encoder with or without its causal mask) and a sequence
//! classifier.

use burn::module::Param;
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;
use selfsup_data::SampleRng;
use selfsup_models::transformer::{gelu, layer_norm};

use crate::encoder::{TextEncoder, TextEncoderConfig, TokenBatch, pad_rows};
use crate::loss::{IGNORE_INDEX, LmLoss, masked_lm_loss, next_token_labels};
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
        layer_norm(&self.norm, gelu(self.dense.forward(hidden)))
    }
}

/// What a language model learns to predict.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Objective {
    /// BERT: the selected tokens of a dynamically masked input, from both sides.
    Masked(MlmMaskConfig),
    /// GPT: every next token, with a causal encoder.
    NextToken,
    /// ELECTRA: whether each token of a masked input filled in by a generator is original.
    ReplacedToken(ElectraObjective),
}

impl Objective {
    /// The batch of `seqs` (corpus indices `indices`) for this objective; masks are drawn from
    /// `(seed, epoch)` and each sequence's index (see [`LmBatch::masked`]).
    #[allow(clippy::too_many_arguments)]
    pub fn batch(
        &self,
        seqs: &[Vec<u32>],
        indices: &[usize],
        special: &SpecialIds,
        vocab_size: usize,
        seed_epoch: (u64, u64),
        device: &Device,
    ) -> LmBatch {
        match self {
            Self::Masked(mask) | Self::ReplacedToken(ElectraObjective { mask, .. }) => {
                LmBatch::masked(seqs, indices, mask, special, vocab_size, seed_epoch, device)
            }
            Self::NextToken => LmBatch::next_token(seqs, special.pad, device),
        }
    }

    pub fn is_causal(&self) -> bool {
        matches!(self, Self::NextToken)
    }

    /// `seqs` in batches of `batch` for scoring `encoder`'s model: masks and samples drawn from
    /// `(seed, epoch 0)` and each sequence's index in `seqs`, so that evaluations at different
    /// steps score the same positions.
    pub fn evaluation_batches<'a>(
        &'a self,
        seqs: &'a [Vec<u32>],
        special: &'a SpecialIds,
        encoder: &TextEncoder,
        seed: u64,
        batch: usize,
    ) -> impl Iterator<Item = LmBatch> + 'a {
        let vocab = encoder.vocab_size();
        let device = encoder.tokens.weight.device();
        let batch = batch.max(1);
        seqs.chunks(batch).enumerate().map(move |(n, s)| {
            let indices: Vec<usize> = (n * batch..n * batch + s.len()).collect();
            self.batch(s, &indices, special, vocab, (seed, 0), &device)
        })
    }
}

/// ELECTRA's settings as the model sees them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ElectraObjective {
    /// The generator's input: which tokens are masked (and so replaced by samples).
    pub mask: MlmMaskConfig,
    /// The generator's width and feed-forward size as a share of the discriminator's.
    pub generator_width: f64,
    /// Weight of the detection loss against the generator's MLM loss (ELECTRA: 50).
    pub discriminator_weight: f64,
}

impl ElectraObjective {
    /// The generator for `discriminator`: the same depth, vocabulary and positions at
    /// `generator_width` of its width and feed-forward size, one attention head per 64 dims
    /// (ELECTRA's rule), never causal.
    pub fn generator_config(&self, discriminator: &TextEncoderConfig) -> TextEncoderConfig {
        let scaled = |n: usize| ((n as f64 * self.generator_width).round() as usize).max(1);
        let d_model = scaled(discriminator.d_model);
        discriminator
            .clone()
            .with_d_model(d_model)
            .with_d_ff(scaled(discriminator.d_ff))
            .with_n_heads(if d_model % 64 == 0 { d_model / 64 } else { 1 })
            .with_causal(false)
    }
}

/// Encoder + tied language-model head. The checkpoint names are `backbone.*` (the encoder that
/// fine-tuning loads) and `head.*`.
#[derive(Module, Debug)]
pub struct LmModel {
    pub backbone: TextEncoder,
    pub head: LmHead,
}

impl LmModel {
    /// The model for `objective`: the encoder's causal mask is on for next-token prediction
    /// (a position must not see the token it predicts) and off for masked tokens (predicted
    /// from both sides), whatever `encoder.causal` says.
    pub fn new(encoder: &TextEncoderConfig, objective: &Objective, device: &Device) -> Self {
        Self {
            backbone: encoder
                .clone()
                .with_causal(objective.is_causal())
                .init(device),
            head: LmHead::new(encoder.d_model, encoder.vocab_size, device),
        }
    }

    /// Encoder outputs `[B, T, D]` and the loss on the labelled positions of `batch`.
    pub fn forward(&self, batch: &LmBatch) -> (Tensor<3>, LmLoss) {
        let hidden = self.backbone.forward(&batch.input);
        let loss = masked_lm_loss(
            self.head.transform(hidden.clone()),
            &batch.labels,
            self.backbone.tokens.weight.val(),
            self.head.bias.val(),
        );
        (hidden, loss)
    }

    pub fn loss(&self, batch: &LmBatch) -> LmLoss {
        self.forward(batch).1
    }

    /// Loss, accuracy and perplexity on `seqs` in batches of `batch`, masks (MLM) drawn from
    /// `(seed, epoch 0)`, so that evaluations at different steps score the same positions. Call
    /// it on a [`valid`](burn::module::Module::valid) model (no dropout).
    pub fn evaluate(
        &self,
        seqs: &[Vec<u32>],
        objective: &Objective,
        special: &SpecialIds,
        seed: u64,
        batch: usize,
    ) -> LmMetrics {
        LmMetrics::from_batches(
            objective
                .evaluation_batches(seqs, special, &self.backbone, seed, batch)
                .map(|b| self.loss(&b)),
        )
    }
}

/// A language-model batch: the model's input and per-position labels (row-major; padding and
/// positions without a target are [`IGNORE_INDEX`]).
#[derive(Debug, Clone)]
pub struct LmBatch {
    pub input: TokenBatch,
    pub labels: Vec<i64>,
    /// Seeds what a step draws besides the masks (ELECTRA's replacement samples).
    pub sampling_seed: u64,
}

impl LmBatch {
    /// Next-token prediction: the input unchanged, each position labelled with the token after
    /// it in its row.
    pub fn next_token(seqs: &[Vec<u32>], pad_id: u32, device: &Device) -> Self {
        let (ids, lengths, t) = pad_rows(seqs, pad_id, None);
        Self {
            input: TokenBatch::collate(seqs, pad_id, None, device),
            labels: next_token_labels(&ids, &lengths, t),
            sampling_seed: 0,
        }
    }

    /// Masks every sequence with its own stream `SampleRng::for_sample(seed, epoch, index, 0)`
    /// (`indices[i]` is sequence i's index in the corpus), so a sequence's mask depends on the
    /// seed, the epoch and the sequence only, not on batching; the sampling seed comes from
    /// stream 1 of the first sequence. If no position of the whole batch
    /// was selected (short texts), the first word of the first sequence is, so that every batch
    /// has a loss.
    #[allow(clippy::too_many_arguments)]
    pub fn masked(
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
            sampling_seed: SampleRng::for_sample(seed, epoch, indices[0] as u64, 1).next_u64(),
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::Pooling;
    use burn::optim::GradientsParams;
    use selfsup_methods::optim::{OptimizerConfig, OptimizerKind};

    pub(crate) const SPECIAL: SpecialIds = SpecialIds {
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
    pub(crate) fn corpus(n: usize) -> Vec<Vec<u32>> {
        (0..n)
            .map(|i| {
                let mut s = vec![2];
                s.extend((0..8 + i % 5).map(|j| 5 + ((i * 3 + j) % 25) as u32));
                s.push(3);
                s
            })
            .collect()
    }

    pub(crate) fn adamw() -> selfsup_methods::optim::Optimizer {
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
        // (objective, steps, accuracy after, perplexity after / before at most); MLM learns
        // from 15 % of the tokens per step, next-token prediction from all of them.
        for (objective, steps, accuracy, ratio) in [
            (Objective::Masked(MlmMaskConfig::default()), 200, 0.5, 0.5),
            (Objective::NextToken, 60, 0.6, 0.3),
        ] {
            let mut model = LmModel::new(&tiny(), &objective, &device);
            let mut optim = adamw();
            let before = model.valid().evaluate(&data, &objective, &SPECIAL, 9, 16);
            for epoch in 0..steps {
                let batch = objective.batch(&data, &idx, &SPECIAL, 30, (1, epoch), &device);
                let loss = model.loss(&batch).loss;
                let grads = GradientsParams::from_grads(loss.backward(), &model);
                model = optim.step(3e-3, model, grads);
            }
            let after = model.valid().evaluate(&data, &objective, &SPECIAL, 9, 16);
            assert!(before.perplexity > 15.0, "{objective:?}: {before:?}");
            assert!(
                after.accuracy > accuracy && after.perplexity < ratio * before.perplexity,
                "{objective:?}: {before:?} -> {after:?}"
            );
        }
    }

    #[test]
    fn next_token_batch_labels_the_following_token() {
        let device = Device::flex();
        let b = LmBatch::next_token(&[vec![2, 7, 8, 3], vec![2, 9, 3]], 0, &device);
        let i = IGNORE_INDEX;
        assert_eq!(b.labels, [7, 8, 3, i, 9, 3, i, i]);
        assert_eq!(b.input.lengths, [4, 3]);
    }

    #[test]
    fn masked_batch_labels_follow_padding_and_are_batch_independent() {
        let device = Device::flex();
        let data = corpus(4);
        let all = LmBatch::masked(
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
        let alone = LmBatch::masked(
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
        let mlm = LmModel::new(&tiny(), &Objective::NextToken, &device);
        assert!(mlm.backbone.causal);
        let clf = selfsup_core::finetune::Classifier {
            encoder: mlm.backbone.clone(),
            head: LinearConfig::new(mlm.backbone.d_model, 2).init(&device),
        };
        let batch = TokenBatch::collate(&corpus(3), 0, None, &device);
        let logits = clf.head.forward(clf.encoder.embed(&batch, Pooling::Mean));
        assert_eq!(logits.dims(), [3, 2]);
        assert_eq!(clf.encoder.num_params(), mlm.backbone.num_params());
    }
}
