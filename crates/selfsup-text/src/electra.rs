//! ELECTRA (Clark et al., 2020): replaced-token detection. A small masked-LM generator fills
//! the masked positions with tokens sampled from its predictions; the encoder being pretrained
//! (the discriminator) reads the corrupted text and tells, at every position, whether the
//! token is the original. Every token is a target, where BERT's MLM learns from the 15 % it
//! masks; the generator is trained with MLM beside it and thrown away afterwards.

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use selfsup_data::SampleRng;
use selfsup_models::transformer::gelu;

use crate::encoder::{TextEncoder, TextEncoderConfig, TokenBatch};
use crate::loss::{IGNORE_INDEX, LmLoss, ReplacedTokenLoss, replaced_token_loss};
pub use crate::models::ElectraObjective;
use crate::models::{LmBatch, LmMetrics, LmModel, Objective};
use crate::tokenizer::SpecialIds;

/// ELECTRA's discriminator head: dense + GELU, then one logit per position.
#[derive(Module, Debug)]
pub struct ReplacedTokenHead {
    pub dense: Linear,
    pub out: Linear,
}

impl ReplacedTokenHead {
    pub fn new(d_model: usize, device: &Device) -> Self {
        Self {
            dense: LinearConfig::new(d_model, d_model).init(device),
            out: LinearConfig::new(d_model, 1).init(device),
        }
    }

    /// Logits `[B, T]` ("replaced" when positive) of encoder outputs `[B, T, D]`.
    pub fn forward(&self, hidden: Tensor<3>) -> Tensor<2> {
        let [b, t, _] = hidden.dims();
        self.out
            .forward(gelu(self.dense.forward(hidden)))
            .reshape([b, t])
    }
}

/// The discriminator (`backbone.*` in checkpoints, what fine-tuning loads), its detection head
/// and the generator (`generator.*`).
#[derive(Module, Debug)]
pub struct ElectraModel {
    pub backbone: TextEncoder,
    pub head: ReplacedTokenHead,
    pub generator: LmModel,
    pub discriminator_weight: f64,
}

/// One ELECTRA step's losses.
pub struct ElectraLoss {
    /// `generator MLM + discriminator_weight × detection`.
    pub loss: Tensor<1>,
    pub generator: LmLoss,
    pub detection: ReplacedTokenLoss,
}

impl ElectraModel {
    pub fn new(encoder: &TextEncoderConfig, objective: &ElectraObjective, device: &Device) -> Self {
        let backbone = encoder.clone().with_causal(false).init(device);
        Self {
            head: ReplacedTokenHead::new(backbone.d_model, device),
            generator: LmModel::new(
                &objective.generator_config(encoder),
                &Objective::Masked(objective.mask),
                device,
            ),
            backbone,
            discriminator_weight: objective.discriminator_weight,
        }
    }

    /// Discriminator outputs `[B, T, D]` on the corrupted text and the step's losses. The
    /// replacements are drawn from the generator's (detached) predictions with the batch's
    /// `sampling_seed`, so a step is reproducible; a sample equal to the original token counts
    /// as original, as in ELECTRA.
    pub fn forward(&self, batch: &LmBatch) -> (Tensor<3>, ElectraLoss) {
        let generator = self.generator.loss(batch);
        let [b, t] = batch.input.ids.dims();
        let vocab = self.backbone.vocab_size();
        let logits = generator
            .logits
            .clone()
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .expect("f32 generator logits");
        let mut rng = SampleRng::from_key(&[batch.sampling_seed]);
        let samples = sample_tokens(&logits, vocab, &mut rng);
        let mut ids = batch
            .input
            .ids
            .clone()
            .into_data()
            .convert::<i64>()
            .try_into_vec::<i64>()
            .expect("i64 token ids");
        let mut replaced = vec![false; b * t];
        let masked = batch
            .labels
            .iter()
            .enumerate()
            .filter(|(_, l)| **l != IGNORE_INDEX);
        for ((pos, &original), &sample) in masked.zip(&samples) {
            ids[pos] = sample as i64;
            replaced[pos] = sample as i64 != original;
        }
        let valid: Vec<bool> = batch
            .input
            .lengths
            .iter()
            .flat_map(|&len| (0..t).map(move |i| i < len))
            .collect();
        let corrupted = TokenBatch {
            ids: Tensor::from_data(TensorData::new(ids, [b, t]), &batch.input.ids.device()),
            pad_mask: batch.input.pad_mask.clone(),
            lengths: batch.input.lengths.clone(),
        };
        let hidden = self.backbone.forward(&corrupted);
        let detection = replaced_token_loss(self.head.forward(hidden.clone()), &replaced, &valid);
        let loss = generator.loss.clone() + detection.loss.clone() * self.discriminator_weight;
        (
            hidden,
            ElectraLoss {
                loss,
                generator,
                detection,
            },
        )
    }

    /// The generator's MLM figures and the discriminator's detection accuracy (share of
    /// non-padding tokens classified right) on `seqs`, masks and samples drawn from `(seed,
    /// epoch 0)`. Call it on a [`valid`](burn::module::Module::valid) model.
    pub fn evaluate(
        &self,
        seqs: &[Vec<u32>],
        objective: &Objective,
        special: &SpecialIds,
        seed: u64,
        batch: usize,
    ) -> (LmMetrics, f64) {
        let (mut correct, mut count) = (0usize, 0usize);
        let lm = LmMetrics::from_batches(
            objective
                .evaluation_batches(seqs, special, &self.backbone, seed, batch)
                .map(|b| {
                    let out = self.forward(&b).1;
                    correct += out.detection.correct();
                    count += out.detection.count();
                    out.generator
                })
                .collect::<Vec<_>>(),
        );
        (lm, correct as f64 / count.max(1) as f64)
    }
}

/// One token per row of `logits` (`[M, vocab]`, row-major), drawn from the row's softmax.
pub fn sample_tokens(logits: &[f32], vocab: usize, rng: &mut SampleRng) -> Vec<u32> {
    assert_eq!(logits.len() % vocab, 0, "logits are rows of {vocab}");
    let mut weights = vec![0f64; vocab];
    logits
        .chunks(vocab)
        .map(|row| {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut total = 0.0;
            for (w, &x) in weights.iter_mut().zip(row) {
                *w = ((x - max) as f64).exp();
                total += *w;
            }
            let mut u = rng.unit() * total;
            for (id, w) in weights.iter().enumerate() {
                if u < *w {
                    return id as u32;
                }
                u -= w;
            }
            // Rounding left u at the end: the last token with any weight.
            weights.iter().rposition(|w| *w > 0.0).unwrap_or(0) as u32
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::masking::MlmMaskConfig;
    use crate::models::tests::{SPECIAL, adamw, corpus};
    use burn::optim::GradientsParams;

    #[test]
    fn samples_follow_the_softmax() {
        let mut rng = SampleRng::from_key(&[7]);
        // Row 0: token 2 certain; row 1: p = softmax(0, ln 3) = (1/4, 3/4).
        let logits = [-1e4f32, -1e4, 0.0, 0.0, 3f32.ln(), -f32::INFINITY];
        let mut ones = 0;
        for _ in 0..4000 {
            let s = sample_tokens(&logits, 3, &mut rng);
            assert_eq!(s[0], 2);
            assert!(s[1] < 2, "token 2 of row 1 has probability 0");
            ones += (s[1] == 1) as usize;
        }
        let p = ones as f64 / 4000.0;
        assert!((p - 0.75).abs() < 0.03, "P(token 1) = {p}");
    }

    #[test]
    fn generator_is_the_scaled_discriminator() {
        let disc = TextEncoderConfig::new(8000);
        let e = ElectraObjective {
            mask: MlmMaskConfig::default(),
            generator_width: 0.25,
            discriminator_weight: 50.0,
        };
        let g = e.generator_config(&disc);
        assert_eq!(
            (g.d_model, g.d_ff, g.n_heads, g.n_layers, g.vocab_size),
            (64, 256, 1, 4, 8000)
        );
        assert!(g.validate().is_ok());
    }

    /// On `corpus`'s grammar (after word w comes w + 1) a replaced token breaks the pattern, so
    /// it is detectable from its neighbours.
    #[test]
    fn discriminator_learns_to_detect_replacements() {
        let device = Device::flex().autodiff();
        device.seed(3);
        let encoder = TextEncoderConfig::new(30)
            .with_d_model(32)
            .with_n_layers(1)
            .with_n_heads(2)
            .with_d_ff(64)
            .with_max_len(16)
            .with_dropout(0.0);
        // A generator of width 16 and a high mask rate: many replacements to detect.
        let objective = ElectraObjective {
            mask: MlmMaskConfig {
                probability: 0.3,
                mask_fraction: 1.0,
                random_fraction: 0.0,
            },
            generator_width: 0.5,
            discriminator_weight: 50.0,
        };
        let o = Objective::ReplacedToken(objective);
        let data = corpus(32);
        let idx: Vec<usize> = (0..data.len()).collect();
        let mut model = ElectraModel::new(&encoder, &objective, &device);
        assert_eq!(model.generator.backbone.d_model, 16);
        let mut optim = adamw();
        let score = |m: &ElectraModel| m.valid().evaluate(&data, &o, &SPECIAL, 9, 16);
        let (lm_before, _) = score(&model);
        // The same batch twice gives the same corruption (seeded sampling).
        let batch = o.batch(&data, &idx, &SPECIAL, 30, (1, 0), &device);
        let (a, b) = (model.forward(&batch).1, model.forward(&batch).1);
        assert_eq!(a.detection.replaced, b.detection.replaced);
        let mut first = None;
        for epoch in 0..300 {
            let batch = o.batch(&data, &idx, &SPECIAL, 30, (1, epoch), &device);
            let out = model.forward(&batch).1;
            first.get_or_insert(out.detection.loss.clone().into_scalar::<f32>());
            let grads = GradientsParams::from_grads(out.loss.backward(), &model);
            model = optim.step(3e-3, model, grads);
        }
        let (lm_after, detect_after) = score(&model);
        let last = model
            .forward(&o.batch(&data, &idx, &SPECIAL, 30, (1, 300), &device))
            .1;
        // Replacements of an untrained generator are ~uniform, so the share of originals
        // after training (generator right) stays below 1: detection must use the context.
        let replaced_share = last.detection.replaced.iter().filter(|r| **r).count() as f64
            / last.detection.count() as f64;
        assert!(replaced_share > 0.05, "replaced share {replaced_share}");
        assert!(
            detect_after > 1.0 - replaced_share / 2.0,
            "detection accuracy {detect_after} vs always-original {}",
            1.0 - replaced_share
        );
        let last = last.detection.loss.into_scalar::<f32>();
        assert!(
            last < 0.5 * first.unwrap(),
            "detection loss {first:?} -> {last}"
        );
        // The generator learns the language too.
        assert!(
            lm_after.perplexity < 0.5 * lm_before.perplexity,
            "{lm_before:?} -> {lm_after:?}"
        );
    }
}
