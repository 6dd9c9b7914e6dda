//! The audio pretext methods: each one's typed `[method]` settings, and its model as an
//! [`SslMethod`], so selfsup's one training loop runs it. A batch is a list of (cropped,
//! normalised) spectrograms; the models collate it themselves.

use burn::prelude::*;
use selfsup_methods::MethodError;
use selfsup_methods::method::{Progress, SslMethod, StepOutput};
use selfsup_methods::method_set;
use selfsup_methods::registry::{MethodSettings, check_positive, check_widths};
use serde::{Deserialize, Serialize};

use crate::encoder::{AudioEncoder, AudioEncoderConfig, FrameBatch};
use crate::features::Spectrogram;
use crate::loss::Reconstruction;
use crate::masking::SpanMaskConfig;
use crate::models::{AudioViewConfig, ContrastiveAudioModel, CpcModel, MaskedFrameModel};

/// An audio method's settings: how its model is built on the run's encoder.
pub trait AudioMethodConfig: MethodSettings {
    type Model: SslMethod<Input = Vec<Spectrogram>, Backbone = AudioEncoder>;

    /// The encoder must not see the frames it predicts (CPC).
    const CAUSAL: bool = false;

    /// Settings that depend on the rest of the run (the crop length); errors name the key.
    fn check(&self, _crop_frames: usize) -> Result<(), MethodError> {
        Ok(())
    }

    fn init(&self, encoder: &AudioEncoderConfig, device: &Device) -> Self::Model;
}

/// Receives the chosen audio method's settings ([`AudioMethod::visit`]).
pub trait AudioMethodVisitor {
    type Output;
    fn visit<C: AudioMethodConfig>(self, config: &C) -> Self::Output;
}

method_set! {
    /// The audio methods: `method.name` and the settings of each.
    pub enum AudioMethod: AudioMethodVisitor {
        MaskedFrames(MaskedFramesConfig),
        Cpc(CpcConfig),
        AudioSimClr(AudioSimClrConfig),
    }
}

/// Masked-frame reconstruction's `[method]` settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MaskedFramesConfig {
    /// Fraction of each clip's frames masked…
    pub mask_ratio: f64,
    /// …in spans of min..=max frames…
    pub mask_span: [usize; 2],
    /// …reconstructed with `l1` or `l2` on the masked frames only.
    pub reconstruction: Reconstruction,
}

impl Default for MaskedFramesConfig {
    /// 15 % of the frames in spans of 5–10, L1.
    fn default() -> Self {
        Self {
            mask_ratio: 0.15,
            mask_span: [5, 10],
            reconstruction: Reconstruction::L1,
        }
    }
}

impl MaskedFramesConfig {
    pub fn span_mask(&self) -> Result<SpanMaskConfig, MethodError> {
        let [lo, hi] = self.mask_span;
        SpanMaskConfig::new(self.mask_ratio, lo, hi)
            .map_err(|e| MethodError::setting("mask_ratio` / `method.mask_span", e.to_string()))
    }
}

impl MethodSettings for MaskedFramesConfig {
    const NAME: &'static str = "masked_frames";

    fn validate(&self) -> Result<(), MethodError> {
        self.span_mask().map(|_| ())
    }
}

impl AudioMethodConfig for MaskedFramesConfig {
    type Model = MaskedFrameModel;

    fn init(&self, encoder: &AudioEncoderConfig, device: &Device) -> MaskedFrameModel {
        let mask = self.span_mask().expect("validated span mask");
        MaskedFrameModel::new(encoder, mask, self.reconstruction, device)
    }
}

/// CPC's `[method]` settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CpcConfig {
    /// InfoNCE temperature.
    pub temperature: f64,
    /// Frames ahead predicted (one predictor each).
    pub cpc_steps: usize,
}

impl Default for CpcConfig {
    fn default() -> Self {
        Self {
            temperature: 0.5,
            cpc_steps: 4,
        }
    }
}

impl MethodSettings for CpcConfig {
    const NAME: &'static str = "cpc";

    fn validate(&self) -> Result<(), MethodError> {
        check_positive("temperature", self.temperature)?;
        if self.cpc_steps == 0 {
            return Err(MethodError::setting("cpc_steps", "must be at least 1"));
        }
        Ok(())
    }
}

impl AudioMethodConfig for CpcConfig {
    type Model = CpcModel;

    const CAUSAL: bool = true;

    fn check(&self, crop_frames: usize) -> Result<(), MethodError> {
        if self.cpc_steps >= crop_frames {
            return Err(MethodError::setting(
                "cpc_steps",
                format!(
                    "({}) must be below `audio.crop_frames` ({crop_frames}): CPC predicts within the crop",
                    self.cpc_steps
                ),
            ));
        }
        Ok(())
    }

    fn init(&self, encoder: &AudioEncoderConfig, device: &Device) -> CpcModel {
        CpcModel::new(encoder, self.cpc_steps, self.temperature, device)
    }
}

/// Contrastive audio (two SpecAugment views, NT-Xent) `[method]` settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AudioSimClrConfig {
    /// NT-Xent temperature.
    pub temperature: f64,
    /// Projection head widths after the encoder (hidden…, output).
    pub projection_dims: Vec<usize>,
}

impl Default for AudioSimClrConfig {
    fn default() -> Self {
        Self {
            temperature: 0.5,
            projection_dims: vec![512, 128],
        }
    }
}

impl MethodSettings for AudioSimClrConfig {
    const NAME: &'static str = "audio_simclr";

    fn validate(&self) -> Result<(), MethodError> {
        check_positive("temperature", self.temperature)?;
        check_widths("projection_dims", &self.projection_dims)
    }
}

impl AudioMethodConfig for AudioSimClrConfig {
    type Model = ContrastiveAudioModel;

    fn init(&self, encoder: &AudioEncoderConfig, device: &Device) -> ContrastiveAudioModel {
        ContrastiveAudioModel::new(
            encoder,
            &self.projection_dims,
            self.temperature,
            AudioViewConfig::speech(),
            device,
        )
    }
}

impl SslMethod for MaskedFrameModel {
    type Input = Vec<Spectrogram>;
    type Update = ();
    type Backbone = AudioEncoder;
    const PAIRED_VIEWS: bool = false;

    fn backbone(&self) -> &AudioEncoder {
        &self.backbone
    }

    /// Masks are drawn from the run's seed and the global step.
    fn train_step(&self, clips: Vec<Spectrogram>, progress: &Progress) -> StepOutput<()> {
        let device = self.head.weight.device();
        let (loss, z) =
            self.loss_and_embedding(&clips, (progress.seed, progress.step as u64), &device);
        StepOutput::one_view(loss, z, ())
    }
}

impl SslMethod for CpcModel {
    type Input = Vec<Spectrogram>;
    type Update = ();
    type Backbone = AudioEncoder;
    const PAIRED_VIEWS: bool = false;

    fn backbone(&self) -> &AudioEncoder {
        &self.backbone
    }

    fn train_step(&self, clips: Vec<Spectrogram>, _: &Progress) -> StepOutput<()> {
        let device = self.predictors[0].weight.device();
        let (loss, z) = self.loss_and_embedding(&FrameBatch::collate(&clips, &device));
        StepOutput::one_view(loss, z, ())
    }
}

impl SslMethod for ContrastiveAudioModel {
    type Input = Vec<Spectrogram>;
    type Update = ();
    type Backbone = AudioEncoder;
    const PAIRED_VIEWS: bool = true;

    fn backbone(&self) -> &AudioEncoder {
        &self.backbone
    }

    /// Views are drawn from the run's seed and the global step.
    fn train_step(&self, clips: Vec<Spectrogram>, progress: &Progress) -> StepOutput<()> {
        let device = self.projection.layers[0].linear.weight.device();
        let (loss, z_a, z_b) =
            self.loss_and_embeddings(&clips, (progress.seed, progress.step as u64), &device);
        StepOutput {
            loss,
            z_a: z_a.detach(),
            z_b: z_b.detach(),
            update: (),
        }
    }
}
