//! Transformer text encoder: token + learned position embeddings, burn's `TransformerEncoder`
//! (post-norm as BERT, or pre-norm), optional causal mask, and [CLS] or mean pooling.

use burn::module::Param;
use burn::nn::attention::generate_autoregressive_mask;
use burn::nn::transformer::{TransformerEncoder, TransformerEncoderConfig};
use burn::nn::{
    Dropout, DropoutConfig, Embedding, EmbeddingConfig, Initializer, LayerNorm, LayerNormConfig,
};
use burn::prelude::*;
use selfsup_models::transformer::{dropout, encoder_forward, layer_norm};
use selfsup_models::{last_pool, mean_pool, validate_encoder_sizes};

/// Sizes of a [`TextEncoder`]; the defaults are BERT-mini (4 layers, 256 wide, 4 heads,
/// 128 tokens; 5.2 M parameters with an 8,000-token vocabulary).
#[derive(Config, Debug)]
pub struct TextEncoderConfig {
    pub vocab_size: usize,
    #[config(default = 256)]
    pub d_model: usize,
    #[config(default = 4)]
    pub n_layers: usize,
    #[config(default = 4)]
    pub n_heads: usize,
    #[config(default = 1024)]
    pub d_ff: usize,
    /// Longest input (the position table's size).
    #[config(default = 128)]
    pub max_len: usize,
    #[config(default = 0.1)]
    pub dropout: f64,
    /// Pre-norm blocks (and a final LayerNorm) instead of BERT's post-norm.
    #[config(default = false)]
    pub norm_first: bool,
    /// Position t attends only to positions <= t (GPT-style language modelling).
    #[config(default = false)]
    pub causal: bool,
    /// How the (learned) position table starts.
    #[config(default = "PositionInit::Normal")]
    pub position_init: PositionInit,
}

/// The starting values of a [`TextEncoder`]'s learned position table.
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum PositionInit {
    /// N(0, 0.02), as BERT: unrelated random vectors, so attention must learn the order.
    Normal,
    /// The Transformer's sinusoids (Vaswani et al., 2017), scaled to the token embeddings'
    /// std of 0.02: position t + k is a fixed rotation of position t, so one attention map can
    /// look at "the previous token" at every t from the first step.
    Sinusoidal,
}

impl std::str::FromStr for PositionInit {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "normal" => Ok(Self::Normal),
            "sinusoidal" => Ok(Self::Sinusoidal),
            _ => Err(format!(
                "position_init must be \"normal\" or \"sinusoidal\", got {s:?}"
            )),
        }
    }
}

/// `[len, d]` sinusoids: `sin(t / 10000^(2i/d))` at column 2i, `cos` at 2i + 1, times `scale`.
pub fn sinusoid_table(len: usize, d: usize, scale: f32) -> Vec<f32> {
    let mut table = vec![0f32; len * d];
    for t in 0..len {
        for c in 0..d {
            let frequency = 10000f64.powf(-((c / 2 * 2) as f64) / d as f64);
            let angle = t as f64 * frequency;
            let v = if c % 2 == 0 { angle.sin() } else { angle.cos() };
            table[t * d + c] = (v as f32) * scale;
        }
    }
    table
}

impl TextEncoderConfig {
    pub fn validate(&self) -> Result<(), selfsup_models::ModelError> {
        let positive = [
            ("vocab_size", self.vocab_size),
            ("d_model", self.d_model),
            ("n_layers", self.n_layers),
            ("n_heads", self.n_heads),
            ("d_ff", self.d_ff),
            ("max_len", self.max_len),
        ];
        validate_encoder_sizes(&positive, self.d_model, self.n_heads, self.dropout)
    }

    /// Panics on an invalid config; call [`validate`](Self::validate) first to report it.
    pub fn init(&self, device: &Device) -> TextEncoder {
        self.validate().expect("valid text encoder config");
        // BERT's N(0, 0.02) embeddings: with the tied decoder, N(0, 1) would start the MLM
        // logits at a scale of sqrt(d_model).
        let embedding = |n| {
            EmbeddingConfig::new(n, self.d_model)
                .with_initializer(Initializer::Normal {
                    mean: 0.0,
                    std: 0.02,
                })
                .init(device)
        };
        let mut positions = embedding(self.max_len);
        if self.position_init == PositionInit::Sinusoidal {
            // Each sinusoid has mean square 1/2, so × 0.02·√2 gives the tokens' std.
            let table = sinusoid_table(self.max_len, self.d_model, 0.02 * std::f32::consts::SQRT_2);
            positions.weight = Param::from_tensor(Tensor::from_data(
                TensorData::new(table, [self.max_len, self.d_model]),
                device,
            ));
        }
        TextEncoder {
            tokens: embedding(self.vocab_size),
            positions,
            embed_norm: LayerNormConfig::new(self.d_model).init(device),
            dropout: DropoutConfig::new(self.dropout).init(),
            transformer: TransformerEncoderConfig::new(
                self.d_model,
                self.d_ff,
                self.n_heads,
                self.n_layers,
            )
            .with_dropout(self.dropout)
            .with_norm_first(self.norm_first)
            .init(device),
            final_norm: self
                .norm_first
                .then(|| LayerNormConfig::new(self.d_model).init(device)),
            d_model: self.d_model,
            causal: self.causal,
        }
    }
}

#[derive(Module, Debug)]
pub struct TextEncoder {
    /// `[vocab_size, d_model]`; the language-model heads decode with this matrix too.
    pub tokens: Embedding,
    pub positions: Embedding,
    pub embed_norm: LayerNorm,
    pub dropout: Dropout,
    pub transformer: TransformerEncoder,
    pub final_norm: Option<LayerNorm>,
    pub d_model: usize,
    pub causal: bool,
}

/// How a sequence becomes one vector for classification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pooling {
    /// The output at `[CLS]` (position 0), as BERT.
    #[default]
    Cls,
    /// The mean of the outputs at the non-padding positions.
    Mean,
    /// The output at the last non-padding position (`[SEP]`), as GPT's classifier: under a
    /// causal mask the one position that has seen the whole text.
    Last,
}

impl std::str::FromStr for Pooling {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "cls" => Ok(Self::Cls),
            "mean" => Ok(Self::Mean),
            "last" => Ok(Self::Last),
            _ => Err(format!(
                "pooling must be \"cls\", \"mean\" or \"last\", got {s:?}"
            )),
        }
    }
}

impl TextEncoder {
    /// Contextual outputs `[B, T, d_model]` of `batch`. Panics if `T` exceeds the position
    /// table.
    pub fn forward(&self, batch: &TokenBatch) -> Tensor<3> {
        let [b, t] = batch.ids.dims();
        let max_len = self.positions.weight.dims()[0];
        assert!(
            t <= max_len,
            "sequence of {t} tokens exceeds the encoder's max_len {max_len}; truncate it"
        );
        let device = batch.ids.device();
        let positions = self
            .positions
            .weight
            .val()
            .slice([0..t])
            .reshape([1, t, self.d_model]);
        let x = self.tokens.forward(batch.ids.clone()) + positions;
        let x = dropout(&self.dropout, layer_norm(&self.embed_norm, x));
        let causal_mask = self
            .causal
            .then(|| generate_autoregressive_mask(b, t, &device));
        let out = encoder_forward(
            &self.transformer,
            x,
            Some(batch.pad_mask.clone()),
            causal_mask,
        );
        match &self.final_norm {
            Some(norm) => layer_norm(norm, out),
            None => out,
        }
    }

    /// One vector `[B, d_model]` per sequence.
    pub fn embed(&self, batch: &TokenBatch, pooling: Pooling) -> Tensor<2> {
        pool(self.forward(batch), batch, pooling)
    }

    pub fn vocab_size(&self) -> usize {
        self.tokens.weight.dims()[0]
    }
}

/// Pools encoder outputs `[B, T, D]` to `[B, D]`.
pub fn pool(hidden: Tensor<3>, batch: &TokenBatch, pooling: Pooling) -> Tensor<2> {
    let [b, _, d] = hidden.dims();
    match pooling {
        Pooling::Cls => hidden.slice([0..b, 0..1]).reshape([b, d]),
        Pooling::Mean => mean_pool(hidden, &batch.lengths),
        Pooling::Last => last_pool(hidden, &batch.lengths),
    }
}

/// Token ids padded on the right to a common length.
#[derive(Debug, Clone)]
pub struct TokenBatch {
    /// `[B, T]`.
    pub ids: Tensor<2, Int>,
    /// `[B, T]`, true at padding.
    pub pad_mask: Tensor<2, Bool>,
    pub lengths: Vec<usize>,
}

impl TokenBatch {
    /// Pads `seqs` with `pad_id` to the longest one, or to `pad_to` when given (which must be
    /// at least the longest). Panics on an empty batch or an empty sequence.
    pub fn collate(seqs: &[Vec<u32>], pad_id: u32, pad_to: Option<usize>, device: &Device) -> Self {
        let (ids, lengths, t) = pad_rows(seqs, pad_id, pad_to);
        let b = seqs.len();
        let pad: Vec<bool> = lengths
            .iter()
            .flat_map(|&len| (0..t).map(move |i| i >= len))
            .collect();
        let ids: Vec<i64> = ids.into_iter().map(i64::from).collect();
        Self {
            ids: Tensor::from_data(TensorData::new(ids, [b, t]), device),
            pad_mask: Tensor::from_data(TensorData::new(pad, [b, t]), device),
            lengths,
        }
    }
}

/// Rows of `seqs` padded with `pad_id` to a common width, row-major; returns `(ids, lengths,
/// width)`.
pub fn pad_rows(
    seqs: &[Vec<u32>],
    pad_id: u32,
    pad_to: Option<usize>,
) -> (Vec<u32>, Vec<usize>, usize) {
    assert!(!seqs.is_empty(), "cannot collate an empty batch");
    assert!(
        seqs.iter().all(|s| !s.is_empty()),
        "a sequence without tokens"
    );
    let longest = seqs.iter().map(Vec::len).max().unwrap();
    let t = pad_to.unwrap_or(longest);
    assert!(
        t >= longest,
        "pad_to {t} is shorter than a sequence of {longest}"
    );
    let mut ids = vec![pad_id; seqs.len() * t];
    for (row, s) in seqs.iter().enumerate() {
        ids[row * t..row * t + s.len()].copy_from_slice(s);
    }
    (ids, seqs.iter().map(Vec::len).collect(), t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> TextEncoderConfig {
        TextEncoderConfig::new(50)
            .with_d_model(16)
            .with_n_layers(2)
            .with_n_heads(2)
            .with_d_ff(32)
            .with_max_len(12)
            .with_dropout(0.0)
    }

    fn values(x: Tensor<2>) -> Vec<f32> {
        x.into_data().try_into_vec::<f32>().unwrap()
    }

    #[test]
    fn padding_does_not_change_a_sequence_embedding() {
        let device = Device::flex();
        device.seed(1);
        let enc = tiny().init(&device);
        let short = vec![2, 10, 11, 3];
        let long = vec![2, 12, 13, 14, 15, 16, 3];
        for pooling in [Pooling::Cls, Pooling::Mean, Pooling::Last] {
            let alone = values(enc.embed(
                &TokenBatch::collate(&[short.clone()], 0, None, &device),
                pooling,
            ));
            let padded = values(enc.embed(
                &TokenBatch::collate(&[short.clone(), long.clone()], 0, Some(12), &device),
                pooling,
            ));
            for (x, y) in alone.iter().zip(&padded[..16]) {
                assert!((x - y).abs() < 1e-4, "{pooling:?}: {x} vs {y}");
            }
        }
    }

    #[test]
    fn causal_encoder_does_not_look_ahead() {
        let device = Device::flex();
        device.seed(2);
        let enc = tiny().with_causal(true).init(&device);
        let a = vec![2, 10, 11, 12, 13, 3];
        let mut b = a.clone();
        b[4] = 40;
        let out = |s: &Vec<u32>| {
            let h = enc.forward(&TokenBatch::collate(
                std::slice::from_ref(s),
                0,
                None,
                &device,
            ));
            h.into_data().try_into_vec::<f32>().unwrap()
        };
        let (x, y) = (out(&a), out(&b));
        let d = 16;
        for i in 0..4 * d {
            assert!((x[i] - y[i]).abs() < 1e-5, "position {} changed", i / d);
        }
        assert!(
            (4 * d..6 * d).any(|i| (x[i] - y[i]).abs() > 1e-3),
            "no effect at all"
        );
        // Without the causal mask, earlier positions do see the change.
        let enc = tiny().init(&device);
        let full = |s: &Vec<u32>| {
            enc.forward(&TokenBatch::collate(
                std::slice::from_ref(s),
                0,
                None,
                &device,
            ))
            .into_data()
            .try_into_vec::<f32>()
            .unwrap()
        };
        let (x, y) = (full(&a), full(&b));
        assert!((0..d).any(|i| (x[i] - y[i]).abs() > 1e-4));
    }

    #[test]
    fn collate_pads_right_and_bad_configs_are_named() {
        let (ids, lengths, t) = pad_rows(&[vec![5, 6], vec![7]], 0, Some(4));
        assert_eq!(
            (ids, lengths, t),
            (vec![5, 6, 0, 0, 7, 0, 0, 0], vec![2, 1], 4)
        );
        assert!(
            tiny()
                .with_n_heads(3)
                .validate()
                .unwrap_err()
                .to_string()
                .contains("n_heads")
        );
        assert!(
            TextEncoderConfig {
                vocab_size: 0,
                ..tiny()
            }
            .validate()
            .unwrap_err()
            .to_string()
            .contains("vocab_size")
        );
        assert_eq!("mean".parse::<Pooling>(), Ok(Pooling::Mean));
        assert_eq!("last".parse::<Pooling>(), Ok(Pooling::Last));
        assert!("max".parse::<Pooling>().unwrap_err().contains("cls"));
    }

    #[test]
    fn sinusoidal_positions_are_rotations_of_each_other_at_the_tokens_scale() {
        let (len, d) = (64, 16);
        let table = sinusoid_table(len, d, 1.0);
        // Hand-checked entries: t = 0 is [0, 1, 0, 1, …]; t = 1, pair 1: sin/cos(10000^(-2/16)).
        assert_eq!(&table[..4], &[0.0, 1.0, 0.0, 1.0]);
        let f = 10000f32.powf(-2.0 / 16.0);
        assert!((table[d + 2] - f.sin()).abs() < 1e-6 && (table[d + 3] - f.cos()).abs() < 1e-6);
        // <p_t, p_(t+k)> depends on k alone: one query/key map finds "k tokens back" anywhere.
        let dot = |a: usize, b: usize| -> f32 {
            (0..d).map(|c| table[a * d + c] * table[b * d + c]).sum()
        };
        for k in [1, 3, 10] {
            for t in [0, 7, 40] {
                assert!((dot(t, t + k) - dot(0, k)).abs() < 1e-3, "k {k}, t {t}");
            }
        }
        // In the encoder, scaled to the token embeddings' std (0.02) and still trained.
        let device = Device::flex().autodiff();
        let enc = tiny()
            .with_max_len(64)
            .with_position_init(PositionInit::Sinusoidal)
            .init(&device);
        let p = enc
            .positions
            .weight
            .val()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let std = (p.iter().map(|x| x * x).sum::<f32>() / p.len() as f32).sqrt();
        assert!((std - 0.02).abs() < 1e-3, "std {std}");
        assert!(enc.positions.weight.is_require_grad());
        assert!(
            "rope"
                .parse::<PositionInit>()
                .unwrap_err()
                .contains("sinusoidal")
        );
    }

    #[test]
    fn default_is_bert_mini() {
        let device = Device::flex();
        let enc = TextEncoderConfig::new(8000).init(&device);
        let params = enc.num_params();
        // 8000*256 + 128*256 embeddings, 4 layers of 4*256*256 + 2*256*1024 weights plus
        // biases and norms: 5.24 M.
        assert_eq!(
            params,
            2_048_000 + 32_768 + 512 + 4 * (4 * 65_792 + 525_568 + 1_024)
        );
    }
}
