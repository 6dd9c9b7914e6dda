//! Config sections of audio runs (`method.name` = masked_frames, cpc or audio_simclr): `[audio]` for the
//! clips, log-mel features and pretext masks, `[audio_encoder]` for the conv + Transformer
//! encoder. Image runs ignore both.

use anyhow::{Result, bail};
use selfsup_audio::{AudioEncoderConfig, LogMelConfig, Reconstruction, SpanMaskConfig};
use serde::{Deserialize, Serialize};

/// The audio pretext methods.
pub const AUDIO_METHODS: [&str; 3] = ["masked_frames", "cpc", "audio_simclr"];

pub fn is_audio_method(name: &str) -> bool {
    AUDIO_METHODS.contains(&name)
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AudioConfig {
    /// Clips are decoded to mono at this rate (Hz), resampled when they differ.
    pub sample_rate: u32,
    pub n_fft: usize,
    /// Window and hop of the STFT, in samples.
    pub win_length: usize,
    pub hop_length: usize,
    pub n_mels: usize,
    /// Random crop (frames) of every training clip, pretraining and fine-tuning.
    pub crop_frames: usize,
    /// Non-empty: that speaker's clips (both splits) are the test set and training never sees
    /// them; empty: the manifest's `split` column (FSDD: takes 0–4 are test).
    pub heldout_speaker: String,
    /// masked_frames: fraction of each clip's frames masked…
    pub mask_ratio: f64,
    /// …in spans of min..=max frames…
    pub mask_span: [usize; 2],
    /// …reconstructed with `l1` or `l2` on masked frames only.
    pub reconstruction: String,
    /// cpc: frames ahead predicted (one predictor each); the temperature is method.temperature.
    pub cpc_steps: usize,
}

impl Default for AudioConfig {
    /// 8 kHz speech (FSDD): 25 ms windows, 10 ms hop, 40 mels; 1 s crops; 15 % masked in spans
    /// of 5–10 frames.
    fn default() -> Self {
        let m = LogMelConfig::speech_8k();
        Self {
            sample_rate: m.sample_rate,
            n_fft: m.n_fft,
            win_length: m.win_length,
            hop_length: m.hop_length,
            n_mels: m.n_mels,
            crop_frames: 100,
            heldout_speaker: String::new(),
            mask_ratio: 0.15,
            mask_span: [5, 10],
            reconstruction: "l1".into(),
            cpc_steps: 4,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AudioEncoderSettings {
    /// Width of the conv front end and the Transformer.
    pub d_model: usize,
    pub conv_layers: usize,
    /// Frames each convolution sees (odd).
    pub conv_kernel: usize,
    /// Transformer layers, heads and feed-forward width.
    pub n_layers: usize,
    pub n_heads: usize,
    pub d_ff: usize,
    pub dropout: f64,
}

impl Default for AudioEncoderSettings {
    fn default() -> Self {
        let e = AudioEncoderConfig::new(40);
        Self {
            d_model: e.d_model,
            conv_layers: e.conv_layers,
            conv_kernel: e.conv_kernel,
            n_layers: e.n_layers,
            n_heads: e.n_heads,
            d_ff: e.d_ff,
            dropout: e.dropout,
        }
    }
}

impl AudioConfig {
    pub fn logmel(&self) -> LogMelConfig {
        LogMelConfig {
            sample_rate: self.sample_rate,
            n_fft: self.n_fft,
            win_length: self.win_length,
            hop_length: self.hop_length,
            n_mels: self.n_mels,
            ..LogMelConfig::speech_8k()
        }
    }

    pub fn span_mask(&self) -> Result<SpanMaskConfig> {
        let [lo, hi] = self.mask_span;
        SpanMaskConfig::new(self.mask_ratio, lo, hi)
            .map_err(|e| anyhow::anyhow!("config `audio.mask_ratio` / `audio.mask_span`: {e}"))
    }

    pub fn reconstruction(&self) -> Result<Reconstruction> {
        match self.reconstruction.as_str() {
            "l1" => Ok(Reconstruction::L1),
            "l2" => Ok(Reconstruction::L2),
            other => bail!("config `audio.reconstruction`: `{other}` is not one of l1, l2"),
        }
    }

    /// Every value, each error naming its key.
    pub fn validate(&self, method: &str) -> Result<()> {
        self.logmel()
            .validate()
            .map_err(|e| anyhow::anyhow!("config `audio` log-mel settings: {e}"))?;
        if self.crop_frames < 2 {
            bail!(
                "config `audio.crop_frames` must be at least 2, got {}",
                self.crop_frames
            );
        }
        self.span_mask()?;
        self.reconstruction()?;
        if self.cpc_steps == 0 {
            bail!("config `audio.cpc_steps` must be at least 1");
        }
        if method == "cpc" && self.cpc_steps >= self.crop_frames {
            bail!(
                "config `audio.cpc_steps` ({}) must be below `audio.crop_frames` ({}): CPC predicts within the crop",
                self.cpc_steps,
                self.crop_frames
            );
        }
        Ok(())
    }
}

impl AudioEncoderSettings {
    /// The encoder for `n_mels` input bins; errors name the `audio_encoder` key.
    pub fn encoder_config(&self, n_mels: usize) -> Result<AudioEncoderConfig> {
        let c = AudioEncoderConfig::new(n_mels)
            .with_d_model(self.d_model)
            .with_conv_layers(self.conv_layers)
            .with_conv_kernel(self.conv_kernel)
            .with_n_layers(self.n_layers)
            .with_n_heads(self.n_heads)
            .with_d_ff(self.d_ff)
            .with_dropout(self.dropout);
        c.validate()
            .map_err(|e| anyhow::anyhow!("config `audio_encoder`: {e}"))?;
        Ok(c)
    }
}
