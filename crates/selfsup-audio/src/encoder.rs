//! Frame encoder: a 1-D convolutional front end over log-mel frames, sinusoidal positions, a
//! small Transformer encoder, and mean pooling over an utterance's valid frames.

use burn::nn::attention::generate_autoregressive_mask;
use burn::nn::conv::{Conv1d, Conv1dConfig};
use burn::nn::transformer::{TransformerEncoder, TransformerEncoderConfig};
use burn::nn::{
    LayerNorm, LayerNormConfig, PaddingConfig1d, PositionalEncoding, PositionalEncodingConfig,
};
use burn::prelude::*;
use selfsup_models::transformer::{encoder_forward, gelu, layer_norm};

pub use selfsup_models::mean_pool;
use selfsup_models::validate_encoder_sizes;

use crate::features::Spectrogram;

/// Sizes of an [`AudioEncoder`]. The defaults are a ~0.1 M-parameter model that trains on a
/// CPU in minutes.
#[derive(Config, Debug)]
pub struct AudioEncoderConfig {
    /// Input features per frame (mel bins).
    pub n_mels: usize,
    /// Width of the conv front end and of the Transformer.
    #[config(default = 64)]
    pub d_model: usize,
    #[config(default = 2)]
    pub conv_layers: usize,
    /// Frames each convolution sees (odd, so that the non-causal front end stays centred).
    #[config(default = 5)]
    pub conv_kernel: usize,
    #[config(default = 2)]
    pub n_layers: usize,
    #[config(default = 4)]
    pub n_heads: usize,
    #[config(default = 128)]
    pub d_ff: usize,
    #[config(default = 0.1)]
    pub dropout: f64,
    /// Longest input the positional table covers.
    #[config(default = 1024)]
    pub max_frames: usize,
    /// Frame t sees only frames <= t (left-padded convolutions, masked attention), as CPC's
    /// autoregressive context needs.
    #[config(default = false)]
    pub causal: bool,
}

impl AudioEncoderConfig {
    pub fn validate(&self) -> Result<(), selfsup_models::ModelError> {
        let positive = [
            ("n_mels", self.n_mels),
            ("d_model", self.d_model),
            ("conv_layers", self.conv_layers),
            ("n_layers", self.n_layers),
            ("n_heads", self.n_heads),
            ("d_ff", self.d_ff),
            ("max_frames", self.max_frames),
        ];
        if self.conv_kernel % 2 == 0 {
            return Err(selfsup_models::ModelError::Config(format!(
                "encoder conv_kernel must be odd, got {}",
                self.conv_kernel
            )));
        }
        validate_encoder_sizes(&positive, self.d_model, self.n_heads, self.dropout)
    }

    /// Panics on an invalid config; call [`validate`](Self::validate) first to report it.
    pub fn init(&self, device: &Device) -> AudioEncoder {
        self.validate().expect("valid encoder config");
        let k = self.conv_kernel;
        let padding = if self.causal {
            PaddingConfig1d::Explicit(k - 1, 0)
        } else {
            PaddingConfig1d::Explicit(k / 2, k / 2)
        };
        let convs = (0..self.conv_layers)
            .map(|i| {
                let c_in = if i == 0 { self.n_mels } else { self.d_model };
                Conv1dConfig::new(c_in, self.d_model, k)
                    .with_padding(padding.clone())
                    .init(device)
            })
            .collect();
        AudioEncoder {
            convs,
            conv_norm: LayerNormConfig::new(self.d_model).init(device),
            positions: PositionalEncodingConfig::new(self.d_model)
                .with_max_sequence_size(self.max_frames)
                .init(device),
            transformer: TransformerEncoderConfig::new(
                self.d_model,
                self.d_ff,
                self.n_heads,
                self.n_layers,
            )
            .with_dropout(self.dropout)
            .with_norm_first(true)
            .init(device),
            norm: LayerNormConfig::new(self.d_model).init(device),
            d_model: self.d_model,
            causal: self.causal,
        }
    }
}

#[derive(Module, Debug)]
pub struct AudioEncoder {
    pub convs: Vec<Conv1d>,
    pub conv_norm: LayerNorm,
    pub positions: PositionalEncoding,
    pub transformer: TransformerEncoder,
    pub norm: LayerNorm,
    pub d_model: usize,
    pub causal: bool,
}

/// What the encoder computes for a batch.
pub struct EncoderOutput {
    /// Per-frame conv encodings `[B, T, d_model]` (CPC's z).
    pub latents: Tensor<3>,
    /// Transformer outputs `[B, T, d_model]` (CPC's context c).
    pub context: Tensor<3>,
}

impl AudioEncoder {
    /// `features` `[B, T, n_mels]`, `pad_mask` `[B, T]` true at padding frames.
    pub fn forward(&self, features: Tensor<3>, pad_mask: Tensor<2, Bool>) -> EncoderOutput {
        let [b, t, _] = features.dims();
        // Padding frames are zeroed after every convolution so that a clip's encoding does not
        // depend on what it is batched with (the convolution would spread its bias into them).
        let valid = pad_mask.clone().bool_not().float().reshape([b, 1, t]);
        let mut x = features.swap_dims(1, 2) * valid.clone(); // [B, F, T]
        for conv in &self.convs {
            x = gelu(conv.forward(x)) * valid.clone();
        }
        let latents = layer_norm(&self.conv_norm, x.swap_dims(1, 2));
        let causal_mask = self
            .causal
            .then(|| generate_autoregressive_mask(b, t, &latents.device()));
        let context = layer_norm(
            &self.norm,
            encoder_forward(
                &self.transformer,
                self.positions.forward(latents.clone()),
                Some(pad_mask),
                causal_mask,
            ),
        );
        EncoderOutput { latents, context }
    }

    /// One vector per utterance: [`forward`](Self::forward)'s context averaged over valid frames.
    pub fn embed(&self, batch: &FrameBatch) -> Tensor<2> {
        let out = self.forward(batch.features.clone(), batch.pad_mask.clone());
        mean_pool(out.context, &batch.lengths)
    }
}

/// Spectrograms padded with zeros to the longest one.
#[derive(Debug, Clone)]
pub struct FrameBatch {
    /// `[B, T, n_mels]`.
    pub features: Tensor<3>,
    /// `[B, T]`, true at padding frames.
    pub pad_mask: Tensor<2, Bool>,
    pub lengths: Vec<usize>,
}

impl FrameBatch {
    /// Panics if `specs` is empty, a spectrogram has no frame, or `n_mels` differ.
    pub fn collate(specs: &[Spectrogram], device: &Device) -> Self {
        assert!(!specs.is_empty(), "cannot collate an empty batch");
        let n_mels = specs[0].n_mels;
        let t = specs.iter().map(|s| s.frames).max().unwrap();
        let b = specs.len();
        let mut data = vec![0.0f32; b * t * n_mels];
        let mut pad = vec![true; b * t];
        for (row, s) in specs.iter().enumerate() {
            assert_eq!(s.n_mels, n_mels, "spectrograms with different n_mels");
            assert!(s.frames > 0, "a spectrogram without frames");
            data[row * t * n_mels..row * t * n_mels + s.data.len()].copy_from_slice(&s.data);
            pad[row * t..row * t + s.frames].fill(false);
        }
        Self {
            features: Tensor::from_data(TensorData::new(data, [b, t, n_mels]), device),
            pad_mask: Tensor::from_data(TensorData::new(pad, [b, t]), device),
            lengths: specs.iter().map(|s| s.frames).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(frames: usize, n_mels: usize, seed: usize) -> Spectrogram {
        Spectrogram {
            frames,
            n_mels,
            data: (0..frames * n_mels)
                .map(|i| (((i + seed) * 7919 % 101) as f32 - 50.0) / 25.0)
                .collect(),
        }
    }

    #[test]
    fn padding_does_not_change_an_utterance_embedding() {
        // Non-causal: a clip's embedding is the same alone and batched with a longer clip.
        let device = Device::flex();
        let enc = AudioEncoderConfig::new(8).with_dropout(0.0).init(&device);
        let short = spec(5, 8, 1);
        let long = spec(12, 8, 2);
        let alone = enc.embed(&FrameBatch::collate(std::slice::from_ref(&short), &device));
        let batched = enc.embed(&FrameBatch::collate(&[short, long], &device));
        let a = alone.into_data().try_to_vec::<f32>().unwrap();
        let b = batched.into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(b.len(), 2 * 64);
        for (x, y) in a.iter().zip(&b[..64]) {
            assert!((x - y).abs() < 1e-4, "{x} vs {y}");
        }
    }

    #[test]
    fn causal_encoder_does_not_look_ahead() {
        let device = Device::flex();
        let enc = AudioEncoderConfig::new(8)
            .with_dropout(0.0)
            .with_causal(true)
            .init(&device);
        let a = spec(10, 8, 3);
        let mut b = a.clone();
        for v in &mut b.data[6 * 8..] {
            *v += 3.0; // change frames 6..10 only
        }
        let out = |s: &Spectrogram| {
            let batch = FrameBatch::collate(std::slice::from_ref(s), &device);
            let o = enc.forward(batch.features, batch.pad_mask);
            (
                o.latents.into_data().try_to_vec::<f32>().unwrap(),
                o.context.into_data().try_to_vec::<f32>().unwrap(),
            )
        };
        let (za, ca) = out(&a);
        let (zb, cb) = out(&b);
        let d = 64;
        for (name, x, y) in [("latents", &za, &zb), ("context", &ca, &cb)] {
            for i in 0..6 * d {
                assert!((x[i] - y[i]).abs() < 1e-5, "{name} frame {} changed", i / d);
            }
            assert!(
                (6 * d..10 * d).any(|i| (x[i] - y[i]).abs() > 1e-3),
                "{name}: no effect"
            );
        }
    }

    #[test]
    fn bad_configs_are_named() {
        assert!(
            AudioEncoderConfig::new(40)
                .with_n_heads(5)
                .validate()
                .unwrap_err()
                .to_string()
                .contains("n_heads")
        );
        assert!(
            AudioEncoderConfig::new(40)
                .with_conv_kernel(4)
                .validate()
                .unwrap_err()
                .to_string()
                .contains("conv_kernel")
        );
        assert!(
            AudioEncoderConfig::new(0)
                .validate()
                .unwrap_err()
                .to_string()
                .contains("n_mels")
        );
    }
}
