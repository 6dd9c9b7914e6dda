//! The config sections of image runs: `[augment]` (the views) and `[model]` (the encoder).

use selfsup_core::bail;
use selfsup_core::config::{DataConfig, probability};
use selfsup_core::{Error, Result};
use selfsup_models::{
    BackboneConfig, ResNetConfig, ResNetStem, VitConfig, VitPooling, VitPositions,
};
use serde::{Deserialize, Serialize};

/// `[augment]` and `[model]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ImageSettings {
    pub augment: AugmentConfig,
    pub model: ModelConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AugmentConfig {
    pub crop_scale: [f64; 2],
    pub hflip_prob: f64,
    /// Brightness, contrast, saturation, hue.
    pub color_jitter: [f64; 4],
    pub color_jitter_prob: f64,
    pub grayscale_prob: f64,
    pub blur_prob: f64,
    pub solarize_prob: f64,
    /// Multi-crop (DINO): this many small crops per image besides the two global views…
    pub local_crops: usize,
    /// …of this side (pixels)…
    pub local_crop_size: usize,
    /// …covering this fraction of the image (the global views use `crop_scale`).
    pub local_crop_scale: [f64; 2],
}

impl Default for AugmentConfig {
    /// SimCLR's recipe (Chen et al. 2020), as LightlySSL's `SimCLRTransform`.
    fn default() -> Self {
        Self {
            crop_scale: [0.08, 1.0],
            hflip_prob: 0.5,
            color_jitter: [0.8, 0.8, 0.8, 0.2],
            color_jitter_prob: 0.8,
            grayscale_prob: 0.2,
            blur_prob: 0.0,
            solarize_prob: 0.0,
            local_crops: 0,
            local_crop_size: 16,
            local_crop_scale: [0.05, 0.4],
        }
    }
}

/// `model.backbone`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum BackboneName {
    Resnet18,
    Resnet34,
    Resnet50,
    Vit,
}

impl BackboneName {
    pub fn as_str(self) -> &'static str {
        match self {
            BackboneName::Resnet18 => "resnet18",
            BackboneName::Resnet34 => "resnet34",
            BackboneName::Resnet50 => "resnet50",
            BackboneName::Vit => "vit",
        }
    }
}

/// `model.stem`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StemName {
    /// 3×3 conv, no max-pool.
    Cifar,
    /// 7×7 stride-2 conv and a max-pool.
    Imagenet,
}

impl StemName {
    pub fn as_str(self) -> &'static str {
        match self {
            StemName::Cifar => "cifar",
            StemName::Imagenet => "imagenet",
        }
    }
}

/// `model.vit_pooling`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PoolingName {
    /// The [CLS] token.
    Cls,
    /// The mean of the patch tokens.
    Mean,
}

/// `model.vit_positions`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PositionsName {
    /// A fixed 2-D sin-cos table.
    Sincos,
    Learned,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    pub backbone: BackboneName,
    /// ResNet: channels of the first stage (torchvision: 64).
    pub width: usize,
    pub stem: StemName,
    /// ViT (the image side is `data.input_size`): side of the square patches.
    pub vit_patch_size: usize,
    /// ViT token width (ViT-Tiny: 192).
    pub vit_dim: usize,
    /// ViT Transformer blocks (ViT-Tiny: 12).
    pub vit_depth: usize,
    /// ViT attention heads (ViT-Tiny: 3); must divide `vit_dim`.
    pub vit_heads: usize,
    /// ViT MLP hidden width as a multiple of `vit_dim`.
    pub vit_mlp_ratio: f64,
    pub vit_pooling: PoolingName,
    pub vit_positions: PositionsName,
    /// ViT: keep no attention weights for the backward and recompute them there, as PyTorch's
    /// flash attention does: less memory (ViT-S/16, 2×32 views at 224 px: 827 MB less),
    /// about 5 % more time.
    pub vit_recompute_attention: bool,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            backbone: BackboneName::Resnet18,
            width: 64,
            stem: StemName::Cifar,
            vit_patch_size: 4,
            vit_dim: 192,
            vit_depth: 12,
            vit_heads: 3,
            vit_mlp_ratio: 4.0,
            vit_pooling: PoolingName::Cls,
            vit_positions: PositionsName::Sincos,
            vit_recompute_attention: false,
        }
    }
}

impl ModelConfig {
    /// The encoder's architecture (a ViT's image side is `input_size`).
    pub fn backbone_config(&self, input_size: usize) -> Result<BackboneConfig> {
        match self.backbone {
            BackboneName::Vit => Ok(self.vit_config(input_size)?.into()),
            _ => Ok(self.resnet_config()?.into()),
        }
    }

    pub fn vit_config(&self, input_size: usize) -> Result<VitConfig> {
        for (key, v, max) in [
            ("model.vit_patch_size", self.vit_patch_size, 4096),
            ("model.vit_dim", self.vit_dim, 65536),
            ("model.vit_depth", self.vit_depth, 256),
            ("model.vit_heads", self.vit_heads, 1024),
        ] {
            if !(1..=max).contains(&v) {
                bail!("config `{key}` must be within [1, {max}], got {v}");
            }
        }
        if input_size % self.vit_patch_size != 0 {
            bail!(
                "config `model.vit_patch_size` = {} must divide `data.input_size` = {input_size}",
                self.vit_patch_size
            );
        }
        if self.vit_dim % self.vit_heads != 0 {
            bail!(
                "config `model.vit_dim` = {} must be a multiple of `model.vit_heads` = {}",
                self.vit_dim,
                self.vit_heads
            );
        }
        if self.vit_positions == PositionsName::Sincos && self.vit_dim % 4 != 0 {
            bail!(
                "config `model.vit_dim` = {} must be a multiple of 4 for sin-cos positions",
                self.vit_dim
            );
        }
        let r = self.vit_mlp_ratio;
        if !(r.is_finite() && r > 0.0 && r <= 64.0) {
            bail!("config `model.vit_mlp_ratio` must be within (0, 64], got {r}");
        }
        Ok(VitConfig::new()
            .with_image_size(input_size)
            .with_patch_size(self.vit_patch_size)
            .with_dim(self.vit_dim)
            .with_depth(self.vit_depth)
            .with_heads(self.vit_heads)
            .with_mlp_ratio(r)
            .with_pooling(match self.vit_pooling {
                PoolingName::Cls => VitPooling::Cls,
                PoolingName::Mean => VitPooling::Mean,
            })
            .with_positions(match self.vit_positions {
                PositionsName::Sincos => VitPositions::Sincos,
                PositionsName::Learned => VitPositions::Learned,
            })
            .with_recompute_attention(self.vit_recompute_attention))
    }

    /// The ResNet architecture; an error for a ViT run (callers that need a ResNet, such as
    /// the torchvision export, say so).
    pub fn resnet_config(&self) -> Result<ResNetConfig> {
        let depth = match self.backbone {
            BackboneName::Resnet18 => 18,
            BackboneName::Resnet34 => 34,
            BackboneName::Resnet50 => 50,
            BackboneName::Vit => bail!("config `model.backbone` = \"vit\" is not a ResNet"),
        };
        if !(1..=4096).contains(&self.width) {
            bail!(
                "config `model.width` must be within [1, 4096], got {}",
                self.width
            );
        }
        Ok(ResNetConfig::new()
            .with_depth(depth)
            .with_width(self.width)
            .with_stem(match self.stem {
                StemName::Cifar => ResNetStem::Cifar,
                StemName::Imagenet => ResNetStem::Imagenet,
            }))
    }
}

impl ImageSettings {
    /// Every value of `[augment]` and `[model]`; each error names its key.
    pub fn validate(&self, data: &DataConfig) -> Result<()> {
        let a = &self.augment;
        let [lo, hi] = a.crop_scale;
        if !(lo > 0.0 && lo <= hi && hi <= 1.0) {
            bail!("config `augment.crop_scale` must satisfy 0 < min ≤ max ≤ 1, got [{lo}, {hi}]");
        }
        probability("augment.hflip_prob", a.hflip_prob)?;
        probability("augment.color_jitter_prob", a.color_jitter_prob)?;
        probability("augment.grayscale_prob", a.grayscale_prob)?;
        probability("augment.blur_prob", a.blur_prob)?;
        probability("augment.solarize_prob", a.solarize_prob)?;
        let [b, c, s, h] = a.color_jitter;
        if !(b >= 0.0 && c >= 0.0 && s >= 0.0 && b.is_finite() && c.is_finite() && s.is_finite())
            || !(0.0..=0.5).contains(&h)
        {
            bail!(
                "config `augment.color_jitter` needs brightness, contrast, saturation ≥ 0 and hue in [0, 0.5], got {:?}",
                a.color_jitter
            );
        }
        if a.local_crop_size < 8 || a.local_crop_size > data.input_size {
            bail!(
                "config `augment.local_crop_size` must be within [8, data.input_size = {}], got {}",
                data.input_size,
                a.local_crop_size
            );
        }
        let [lo, hi] = a.local_crop_scale;
        if !(lo > 0.0 && lo <= hi && hi <= 1.0) {
            bail!(
                "config `augment.local_crop_scale` must satisfy 0 < min ≤ max ≤ 1, got [{lo}, {hi}]"
            );
        }
        self.model
            .backbone_config(data.input_size)
            .map_err(|e| Error::msg(e.to_string()))?;
        Ok(())
    }
}
