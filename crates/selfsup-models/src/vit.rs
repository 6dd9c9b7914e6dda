//! Vision Transformer (Dosovitskiy et al. 2021): non-overlapping patches embedded linearly,
//! position embeddings, pre-norm Transformer blocks (burn's `TransformerEncoder` with
//! `norm_first`), a final LayerNorm, and [CLS] or mean pooling.
//!
//! Besides `forward`, the pieces MAE needs are public: [`Vit::patchify`] (pixels → per-patch
//! vectors), [`Vit::embed_patches`] (patch tokens with positions) and [`Vit::encode`] (the
//! blocks on any subset of tokens).

use burn::module::{Param, ParamId};
use burn::nn::transformer::{TransformerEncoder, TransformerEncoderConfig};
use burn::nn::{Initializer, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

/// How the image feature is read off the token sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum VitPooling {
    /// A learned [CLS] token prepended to the patches; its output is the feature.
    #[default]
    Cls,
    /// The mean of the patch tokens' outputs (no [CLS] token).
    Mean,
}

/// Where position information comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum VitPositions {
    /// Fixed 2-D sine-cosine table (MAE's), not trained.
    #[default]
    Sincos,
    /// A trained table, initialised N(0, 0.02²).
    Learned,
}

#[derive(Config, Debug)]
pub struct VitConfig {
    #[config(default = 32)]
    pub image_size: usize,
    #[config(default = 4)]
    pub patch_size: usize,
    #[config(default = 3)]
    pub in_channels: usize,
    /// Token width (ViT-Tiny: 192).
    #[config(default = 192)]
    pub dim: usize,
    /// Transformer blocks (ViT-Tiny: 12).
    #[config(default = 12)]
    pub depth: usize,
    /// Attention heads (ViT-Tiny: 3); must divide `dim`.
    #[config(default = 3)]
    pub heads: usize,
    /// Hidden width of each block's MLP as a multiple of `dim`.
    #[config(default = 4.0)]
    pub mlp_ratio: f64,
    #[config(default = "VitPooling::Cls")]
    pub pooling: VitPooling,
    #[config(default = "VitPositions::Sincos")]
    pub positions: VitPositions,
    /// Keep no attention weights for the backward, recompute them there (as flash attention
    /// does): ViT-S/16 at 2×32 views of 224 px keeps 827 MB less for ~5 % more time.
    #[config(default = false)]
    pub recompute_attention: bool,
}

impl VitConfig {
    pub fn validate(&self) -> Result<(), crate::ModelError> {
        for (name, v) in [
            ("image_size", self.image_size),
            ("patch_size", self.patch_size),
            ("in_channels", self.in_channels),
            ("dim", self.dim),
            ("depth", self.depth),
            ("heads", self.heads),
        ] {
            if v == 0 {
                return Err(crate::ModelError::Config(format!(
                    "ViT {name} must be at least 1"
                )));
            }
        }
        if self.image_size % self.patch_size != 0 {
            return Err(crate::ModelError::Config(format!(
                "ViT patch_size {} must divide the image size {}",
                self.patch_size, self.image_size
            )));
        }
        if self.dim % self.heads != 0 {
            return Err(crate::ModelError::Config(format!(
                "ViT dim {} must be a multiple of heads {}",
                self.dim, self.heads
            )));
        }
        if self.positions == VitPositions::Sincos && self.dim % 4 != 0 {
            return Err(crate::ModelError::Config(format!(
                "ViT dim {} must be a multiple of 4 for sin-cos positions (two axes × sin, cos)",
                self.dim
            )));
        }
        if !(self.mlp_ratio.is_finite() && self.mlp_ratio > 0.0) {
            return Err(crate::ModelError::Config(format!(
                "ViT mlp_ratio must be positive, got {}",
                self.mlp_ratio
            )));
        }
        Ok(())
    }

    /// Patches per side.
    pub fn grid(&self) -> usize {
        self.image_size / self.patch_size
    }

    /// Panics on an invalid config; call [`validate`](Self::validate) first to report it.
    pub fn init(&self, device: &Device) -> Vit {
        self.validate().expect("valid ViT config");
        let grid = self.grid();
        let n = grid * grid;
        let positions = match self.positions {
            VitPositions::Sincos => Param::initialized(
                ParamId::new(),
                Tensor::<2>::from_data(
                    TensorData::new(sincos_2d(self.dim, grid), [n, self.dim]),
                    device,
                )
                .reshape([1, n, self.dim]),
            )
            .set_require_grad(false),
            VitPositions::Learned => token_param([1, n, self.dim], device),
        };
        Vit {
            patch_embed: LinearConfig::new(
                self.patch_size * self.patch_size * self.in_channels,
                self.dim,
            )
            .init(device),
            cls_token: (self.pooling == VitPooling::Cls)
                .then(|| token_param([1, 1, self.dim], device)),
            positions,
            blocks: transformer(self.dim, self.depth, self.heads, self.mlp_ratio, device),
            norm: LayerNormConfig::new(self.dim).init(device),
            patch_size: self.patch_size,
            image_size: self.image_size,
            dim: self.dim,
            recompute_attention: self.recompute_attention,
        }
    }
}

/// Pre-norm Transformer blocks without dropout (ViT/MAE pretraining uses none).
pub fn transformer(
    dim: usize,
    depth: usize,
    heads: usize,
    mlp_ratio: f64,
    device: &Device,
) -> TransformerEncoder {
    TransformerEncoderConfig::new(dim, (dim as f64 * mlp_ratio).round() as usize, heads, depth)
        .with_dropout(0.0)
        .with_norm_first(true)
        .with_layer_norm_eps(1e-6)
        .init(device)
}

/// A trainable token or table, N(0, 0.02²) as timm/MAE initialise them.
pub fn token_param(shape: [usize; 3], device: &Device) -> Param<Tensor<3>> {
    Initializer::Normal {
        mean: 0.0,
        std: 0.02,
    }
    .init(shape, device)
}

/// MAE's fixed 2-D sine-cosine position table, `[grid², dim]` row-major: the first half of
/// each row encodes the patch's column, the second half its row; within a half, sines then
/// cosines of `pos · 10000^(-i/(dim/4))`.
pub fn sincos_2d(dim: usize, grid: usize) -> Vec<f32> {
    let quarter = dim / 4;
    let mut out = Vec::with_capacity(grid * grid * dim);
    let encode = |pos: usize, out: &mut Vec<f32>| {
        for f in [f64::sin, f64::cos] {
            for i in 0..quarter {
                let omega = 1.0 / 10000f64.powf(i as f64 / quarter as f64);
                out.push(f(pos as f64 * omega) as f32);
            }
        }
    };
    for row in 0..grid {
        for col in 0..grid {
            encode(col, &mut out);
            encode(row, &mut out);
        }
    }
    out
}

#[derive(Module, Debug)]
pub struct Vit {
    /// Linear map of a flattened patch (`patch_size² · channels`, see [`Vit::patchify`]) to a
    /// token: the same as a conv with kernel = stride = patch size.
    pub patch_embed: Linear,
    pub cls_token: Option<Param<Tensor<3>>>,
    /// `[1, patches, dim]`; not trained when sin-cos.
    pub positions: Param<Tensor<3>>,
    pub blocks: TransformerEncoder,
    pub norm: LayerNorm,
    pub patch_size: usize,
    pub image_size: usize,
    pub dim: usize,
    pub recompute_attention: bool,
}

impl Vit {
    pub fn num_patches(&self) -> usize {
        let g = self.image_size / self.patch_size;
        g * g
    }

    /// `[B, C, H, W]` → `[B, patches, p·p·C]`, patches in row-major order and each patch's
    /// values ordered (row, column, channel) as MAE's `patchify`.
    pub fn patchify(&self, x: Tensor<4>) -> Tensor<3> {
        let [b, c, h, w] = x.dims();
        let p = self.patch_size;
        assert!(
            h % p == 0 && w % p == 0,
            "ViT with {p}-pixel patches got {h}×{w} images (sides must be multiples of {p})"
        );
        let (gh, gw) = (h / p, w / p);
        x.reshape([b, c, gh, p, gw, p])
            .permute([0, 2, 4, 3, 5, 1])
            .reshape([b, gh * gw, p * p * c])
    }

    /// Inverse of [`patchify`](Self::patchify): `[B, patches, p·p·C]` → `[B, C, H, W]`.
    pub fn unpatchify(&self, x: Tensor<3>) -> Tensor<4> {
        let [b, n, d] = x.dims();
        let p = self.patch_size;
        let c = d / (p * p);
        let g = (n as f64).sqrt().round() as usize;
        x.reshape([b, g, g, p, p, c])
            .permute([0, 5, 1, 3, 2, 4])
            .reshape([b, c, g * p, g * p])
    }

    /// Patch tokens with their positions, `[B, patches, dim]` (no [CLS]). Images of another
    /// size than `image_size` (DINO's local crops) get the position table resized to their
    /// patch grid, bicubic, as DINO's `interpolate_pos_encoding` does.
    pub fn embed_patches(&self, x: Tensor<4>) -> Tensor<3> {
        let [_, _, h, w] = x.dims();
        let tokens = self.patch_embed.forward(self.patchify(x));
        tokens + self.positions_for(h / self.patch_size, w / self.patch_size)
    }

    /// The position table for a `rows × cols` patch grid, `[1, rows·cols, dim]`.
    pub fn positions_for(&self, rows: usize, cols: usize) -> Tensor<3> {
        let g = self.image_size / self.patch_size;
        let table = self.positions.val();
        if (rows, cols) == (g, g) {
            return table;
        }
        let d = self.dim;
        let grid = table.reshape([1, g, g, d]).permute([0, 3, 1, 2]);
        let resized = burn::tensor::module::interpolate(
            grid,
            burn::tensor::ops::InterpolateOptions::new(burn::tensor::ops::InterpolateMode::Bicubic)
                .with_align_corners(false)
                .with_output_size([rows, cols]),
        );
        resized.permute([0, 2, 3, 1]).reshape([1, rows * cols, d])
    }

    /// The blocks and final norm on `tokens` (`[B, n, dim]`, any subset of patch tokens),
    /// with the [CLS] token prepended when the pooling uses one: `[B, n (+1), dim]`.
    pub fn encode(&self, tokens: Tensor<3>) -> Tensor<3> {
        let tokens = match &self.cls_token {
            Some(cls) => {
                let b = tokens.dims()[0];
                Tensor::cat(vec![cls.val().repeat_dim(0, b), tokens], 1)
            }
            None => tokens,
        };
        crate::transformer::layer_norm(
            &self.norm,
            crate::transformer::encoder_forward_with(
                &self.blocks,
                tokens,
                None,
                None,
                self.recompute_attention,
            ),
        )
    }

    /// The patch tokens of an [`encode`](Self::encode) output (the [CLS] token dropped).
    pub fn patch_outputs(&self, encoded: Tensor<3>) -> Tensor<3> {
        let [_, n, _] = encoded.dims();
        match self.cls_token {
            Some(_) => encoded.narrow(1, 1, n - 1),
            None => encoded,
        }
    }

    /// The image feature of an [`encode`](Self::encode) output: [CLS] or mean of patches.
    pub fn pool(&self, encoded: Tensor<3>) -> Tensor<2> {
        let [b, _, d] = encoded.dims();
        match self.cls_token {
            Some(_) => encoded.narrow(1, 0, 1).reshape([b, d]),
            None => encoded.mean_dim(1).reshape([b, d]),
        }
    }

    /// `[B, C, H, W]` → `[B, dim]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        self.pool(self.encode(self.embed_patches(x)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Smaller images (DINO's local crops) take the position table resized to their patch
    /// grid; at the native size it is the table itself; the learned table gets gradients from
    /// either.
    #[test]
    fn other_image_sizes_get_resized_positions() {
        let device = Device::flex().autodiff();
        let vit = VitConfig::new()
            .with_image_size(16)
            .with_patch_size(4)
            .with_dim(8)
            .with_depth(1)
            .with_heads(2)
            .with_pooling(VitPooling::Mean)
            .with_positions(VitPositions::Learned)
            .init(&device);
        let table = vit.positions.val();
        let same = vit.positions_for(4, 4);
        assert_eq!((same - table.clone()).abs().max().into_scalar::<f32>(), 0.0);
        let small = vit.positions_for(2, 2);
        assert_eq!(small.dims(), [1, 4, 8]);
        let x = Tensor::<4>::random([2, 3, 8, 8], burn::tensor::Distribution::Default, &device);
        let y = vit.forward(x);
        assert_eq!(y.dims(), [2, 8]);
        // Not `y.sum()`: each token leaves the final LayerNorm (γ 1, β 0 at init) summing to
        // zero, so that sum is constant and its gradient only rounding noise (sometimes 0).
        let grads = (y.clone() * y).sum().backward();
        let g = vit
            .positions
            .val()
            .grad(&grads)
            .expect("positions get a gradient");
        assert!(g.abs().sum().into_scalar::<f32>() > 0.0);
    }

    fn tiny(pooling: VitPooling, positions: VitPositions) -> VitConfig {
        VitConfig::new()
            .with_image_size(8)
            .with_patch_size(4)
            .with_dim(8)
            .with_depth(1)
            .with_heads(2)
            .with_pooling(pooling)
            .with_positions(positions)
    }

    #[test]
    fn patchify_orders_rows_columns_channels_and_inverts() {
        let device = Device::flex();
        let vit = tiny(VitPooling::Cls, VitPositions::Sincos).init(&device);
        // x[b, c, h, w] = 1000c + 10h + w: easy to read back.
        let vals: Vec<f32> = (0..2 * 3 * 8 * 8)
            .map(|i| {
                let (c, h, w) = ((i / 64) % 3, (i / 8) % 8, i % 8);
                (1000 * c + 10 * h + w) as f32
            })
            .collect();
        let x = Tensor::<4>::from_data(TensorData::new(vals, [2, 3, 8, 8]), &device);
        let p = vit.patchify(x.clone());
        assert_eq!(p.dims(), [2, 4, 48]);
        let v = p.clone().into_data().try_to_vec::<f32>().unwrap();
        // Patch 1 is the top-right block (rows 0..4, columns 4..8); its element (row 1,
        // column 2, channel 2) sits at (1·4 + 2)·3 + 2 = 20 and holds pixel (2, 1, 6).
        assert_eq!(v[48 + 20], 2016.0);
        // Patch 2 is bottom-left: element 0 is pixel (0, 4, 0).
        assert_eq!(v[2 * 48], 40.0);
        let back = vit.unpatchify(p);
        assert_eq!(
            back.into_data().try_to_vec::<f32>().unwrap(),
            x.into_data().try_to_vec::<f32>().unwrap()
        );
    }

    #[test]
    fn sincos_table_matches_hand_values() {
        // dim 8 → quarter 2, omegas 1 and 1/100.
        let t = sincos_2d(8, 2);
        // Patch 3 = (row 1, column 1): column half then row half.
        let row3 = &t[3 * 8..4 * 8];
        let expect = [
            1f64.sin(),
            0.01f64.sin(),
            1f64.cos(),
            0.01f64.cos(),
            1f64.sin(),
            0.01f64.sin(),
            1f64.cos(),
            0.01f64.cos(),
        ];
        for (a, b) in row3.iter().zip(expect) {
            assert!((*a as f64 - b).abs() < 1e-6, "{row3:?}");
        }
        // Patch 1 = (row 0, column 1).
        assert!((t[8] as f64 - 1f64.sin()).abs() < 1e-6);
        assert_eq!(t[8 + 4], 0.0);
    }

    #[test]
    fn forward_shapes_and_parameter_counts() {
        let device = Device::flex();
        for pooling in [VitPooling::Cls, VitPooling::Mean] {
            for positions in [VitPositions::Sincos, VitPositions::Learned] {
                let vit = tiny(pooling, positions).init(&device);
                let x = Tensor::<4>::ones([3, 3, 8, 8], &device);
                assert_eq!(vit.forward(x).dims(), [3, 8]);
            }
        }
        // ViT-Tiny/4 on 32×32: patch embed 48·192 + 192, 12 blocks, final norm 384, CLS 192
        // and the 64×192 position table (visited though fixed). A block is attention
        // 4·192² + 4·192, MLP 2·192·768 + 768 + 192 and two LayerNorms 4·192 = 444,864, the
        // block size of timm's vit_tiny_patch16_224 (5,717,416 parameters in all).
        let vit = VitConfig::new().init(&device);
        assert_eq!(
            vit.num_params(),
            48 * 192 + 192 + 12 * 444_864 + 384 + 192 + 64 * 192
        );
    }
}
