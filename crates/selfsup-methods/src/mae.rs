//! MAE (He et al. 2022): a ViT encoder sees only the visible patches (a random `1 - ratio`
//! of them per image), a light Transformer decoder fills the hidden positions with a learned
//! mask token and predicts their pixels, and the loss is the error on the hidden patches.
//!
//! Differences from the paper's code: the decoder does not receive the [CLS] token (it carries
//! no pixels to reconstruct), and patch order is kept by gathering instead of shuffling.

use burn::module::{Param, ParamId};
use burn::nn::transformer::TransformerEncoder;
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;
use selfsup_models::transformer::{encoder_forward, layer_norm};
use selfsup_models::vit::{sincos_2d, token_param, transformer};
use selfsup_models::{Backbone, BackboneConfig, Vit, VitConfig};
use serde::{Deserialize, Serialize};

use crate::MethodError;
use crate::loss::{PatchMask, mae_loss, mae_target};
use crate::method::{
    ImageContext, ImageMethodConfig, ImageViewKind, Progress, SslMethod, StepOutput, one_view,
};
use crate::registry::MethodSettings;

/// MAE's `[method]` settings; the encoder is the run's ViT (`model.backbone = "vit"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MaeConfig {
    /// Fraction of each image's patches hidden from the encoder (MAE: 0.75).
    pub mask_ratio: f64,
    /// Reconstruct per-patch normalised pixels (MAE's default) instead of raw ones.
    pub norm_pix_loss: bool,
    /// Decoder token width, blocks and heads.
    pub decoder_dim: usize,
    pub decoder_depth: usize,
    pub decoder_heads: usize,
}

impl Default for MaeConfig {
    fn default() -> Self {
        Self {
            mask_ratio: 0.75,
            norm_pix_loss: true,
            decoder_dim: 128,
            decoder_depth: 2,
            decoder_heads: 4,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct MaeParams {
    pub mask_ratio: f64,
    pub norm_pix_loss: bool,
}

#[derive(Module, Debug)]
pub struct Mae {
    /// The ViT encoder (always the `Vit` variant).
    pub backbone: Backbone,
    pub decoder_embed: Linear,
    pub mask_token: Param<Tensor<3>>,
    /// Fixed sin-cos table `[1, patches, decoder_dim]`.
    pub decoder_positions: Param<Tensor<3>>,
    pub decoder: TransformerEncoder,
    pub decoder_norm: LayerNorm,
    /// Decoder tokens → patch pixels (`patch² · channels`).
    pub decoder_pred: Linear,
    #[module(skip)]
    pub params: MaeParams,
}

impl MethodSettings for MaeConfig {
    const NAME: &'static str = "mae";

    fn validate(&self) -> Result<(), MethodError> {
        if !(0.0..1.0).contains(&self.mask_ratio) {
            return Err(MethodError::setting(
                "mask_ratio",
                format!("must be within [0, 1), got {}", self.mask_ratio),
            ));
        }
        if self.decoder_dim == 0 || self.decoder_depth == 0 || self.decoder_heads == 0 {
            return Err(MethodError::setting(
                "decoder_dim",
                "`method.decoder_depth` and `method.decoder_heads` must be at least 1",
            ));
        }
        if self.decoder_dim % self.decoder_heads != 0 || self.decoder_dim % 4 != 0 {
            return Err(MethodError::setting(
                "decoder_dim",
                format!(
                    "= {} must be a multiple of 4 and of `method.decoder_heads` = {}",
                    self.decoder_dim, self.decoder_heads
                ),
            ));
        }
        Ok(())
    }
}

impl ImageMethodConfig for MaeConfig {
    type Model = Mae;

    const VIEWS: ImageViewKind = ImageViewKind::OneView;

    fn check(&self, ctx: &ImageContext) -> Result<(), MethodError> {
        match ctx.backbone {
            BackboneConfig::Vit(_) => Ok(()),
            _ => Err(MethodError::Setting {
                key: "model.backbone".into(),
                message: "must be \"vit\" for mae (it hides patches from a ViT encoder); set model.backbone = \"vit\"".into(),
            }),
        }
    }

    fn init(&self, ctx: &ImageContext, device: &Device) -> Mae {
        let BackboneConfig::Vit(encoder) = ctx.backbone else {
            panic!("mae needs a ViT backbone (MaeConfig::check)");
        };
        self.build(encoder, device)
    }
}

impl MaeConfig {
    /// The module on `encoder`, a ViT.
    pub fn build(&self, e: &VitConfig, device: &Device) -> Mae {
        self.validate().expect("valid MAE config");
        e.validate().expect("valid ViT config");
        let grid = e.grid();
        let n = grid * grid;
        let dd = self.decoder_dim;
        Mae {
            backbone: BackboneConfig::Vit(e.clone()).init(device),
            decoder_embed: LinearConfig::new(e.dim, dd).init(device),
            mask_token: token_param([1, 1, dd], device),
            decoder_positions: Param::initialized(
                ParamId::new(),
                Tensor::<2>::from_data(TensorData::new(sincos_2d(dd, grid), [n, dd]), device)
                    .reshape([1, n, dd]),
            )
            .set_require_grad(false),
            decoder: transformer(dd, self.decoder_depth, self.decoder_heads, 4.0, device),
            decoder_norm: LayerNormConfig::new(dd).init(device),
            decoder_pred: LinearConfig::new(dd, e.patch_size * e.patch_size * e.in_channels)
                .init(device),
            params: MaeParams {
                mask_ratio: self.mask_ratio,
                norm_pix_loss: self.norm_pix_loss,
            },
        }
    }
}

impl Mae {
    pub fn vit(&self) -> &Vit {
        self.backbone
            .as_vit()
            .expect("MAE's backbone is a ViT (built by MaeConfig::init)")
    }

    /// A mask plan for a batch of `batch` images at this model's ratio.
    pub fn mask(&self, batch: usize, seed: u64) -> PatchMask {
        PatchMask::random(
            batch,
            self.vit().num_patches(),
            self.params.mask_ratio,
            seed,
        )
    }

    /// Encodes the visible patches of `x` and decodes every patch: the predicted patches
    /// `[B, patches, p²·C]` (in the target's space: normalised per patch with `norm_pix_loss`)
    /// and the encoder's pooled feature of the visible patches.
    pub fn predict(&self, x: Tensor<4>, mask: &PatchMask) -> (Tensor<3>, Tensor<2>) {
        let vit = self.vit();
        let device = x.device();
        let tokens = vit.embed_patches(x);
        let [b, n, d] = tokens.dims();
        let encoded = vit.encode(tokens.gather(1, mask.visible_index(d, &device)));
        let pooled = vit.pool(encoded.clone());
        let visible = self.decoder_embed.forward(vit.patch_outputs(encoded));
        let dd = visible.dims()[2];
        let hidden = self
            .mask_token
            .val()
            .repeat_dim(0, b)
            .repeat_dim(1, n - mask.num_visible());
        let all = Tensor::cat(vec![visible, hidden], 1).gather(1, mask.restore_index(dd, &device))
            + self.decoder_positions.val();
        let decoded = layer_norm(
            &self.decoder_norm,
            encoder_forward(&self.decoder, all, None, None),
        );
        (self.decoder_pred.forward(decoded), pooled)
    }

    /// The reconstruction loss of `x` under `mask`, and the pooled visible-patch features.
    pub fn loss(&self, x: Tensor<4>, mask: &PatchMask) -> (Tensor<1>, Tensor<2>) {
        let target = mae_target(self.vit().patchify(x.clone()), self.params.norm_pix_loss);
        let (pred, pooled) = self.predict(x, mask);
        let hidden = mask.hidden_indicator(&pred.device());
        (mae_loss(pred, target, hidden), pooled)
    }
}

impl SslMethod for Mae {
    type Input = crate::method::ImageViews;
    type Update = ();
    type Backbone = Backbone;
    /// One view: `z_b` repeats `z_a`, so alignment is not measured.
    const PAIRED_VIEWS: bool = false;

    fn backbone(&self) -> &Backbone {
        &self.backbone
    }

    /// One view; the mask is drawn from the run's seed and the step. Both diagnostic
    /// embeddings are the pooled visible-patch features (there is no second view to align).
    fn train_step(&self, views: Vec<Tensor<4>>, progress: &Progress) -> StepOutput<()> {
        let x = one_view("MAE", views);
        let seed = progress.seed ^ (progress.step as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mask = self.mask(x.dims()[0], seed);
        let (loss, pooled) = self.loss(x, &mask);
        StepOutput::one_view(loss, pooled, ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_patches_do_not_reach_the_encoder() {
        let device = Device::flex().autodiff();
        let encoder = VitConfig::new()
            .with_image_size(8)
            .with_patch_size(2)
            .with_dim(16)
            .with_depth(1)
            .with_heads(2);
        let config = MaeConfig {
            decoder_dim: 8,
            decoder_depth: 1,
            decoder_heads: 2,
            mask_ratio: 0.75,
            norm_pix_loss: true,
        };
        let mae = config.build(&encoder, &device);
        let x = Tensor::<4>::random(
            [2, 3, 8, 8],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &device,
        );
        let mask = mae.mask(2, 5);
        assert_eq!(mask.num_visible(), 4);
        // Changing the pixels of hidden patches leaves the encoder's features unchanged.
        let (_, pooled) = mae.predict(x.clone(), &mask);
        let vit = mae.vit();
        let mut patches = vit
            .patchify(x.clone())
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let p = 12;
        for (b, h) in mask.hidden.iter().enumerate() {
            for &i in h {
                for v in &mut patches[(b * 16 + i) * p..(b * 16 + i + 1) * p] {
                    *v += 3.0;
                }
            }
        }
        let x2 = vit.unpatchify(Tensor::from_data(
            TensorData::new(patches, [2, 16, p]),
            &device,
        ));
        let (_, pooled2) = mae.predict(x2, &mask);
        assert_eq!(
            pooled.into_data().try_to_vec::<f32>().unwrap(),
            pooled2.into_data().try_to_vec::<f32>().unwrap()
        );
    }
}
