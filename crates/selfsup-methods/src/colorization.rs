//! Colorization (Zhang et al. 2016): the ResNet encoder sees the lightness L* of an image (as a
//! grey image in the run's normalisation) and an upsampling decoder on its last feature map
//! predicts the a*b* chroma: either regressed at every pixel (their baseline) or, as their
//! method does, classified over quantised a*b* bins at half resolution with rebalanced soft
//! targets (`crate::ab_bins`), turned back into colours by the annealed mean.
//!
//! Views arrive normalised with the dataset mean/std; they are un-normalised to sRGB and
//! converted to CIE Lab (selfsup-data's `lab`) on the host. The encoder's input is the grey
//! image R = G = B = L*/100, normalised with the dataset mean/std; evaluation feeds the encoder
//! the same grey image (selfsup-data's `EncoderInput::Lightness`), never colour.

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::relu;
use selfsup_data::lab::{lab_to_rgb, rgb_to_lab};
use selfsup_models::{Backbone, BackboneConfig, ResNet, ResNetConfig};
use serde::{Deserialize, Serialize};

use crate::MethodError;
use crate::ab_bins::{ANNEALED_TEMPERATURE, AbBins, SOFT_NEIGHBOURS, block_means};
use crate::loss::{AB_SCALE, ab_classification_loss, ab_regression_loss};
use crate::method::{
    ImageContext, ImageMethodConfig, ImageViewKind, Progress, SslMethod, StepOutput, one_view,
};
use crate::registry::MethodSettings;

#[derive(Debug, Clone)]
/// The module's build settings, resolved from [`ColorizationConfig`] and the run: the ResNet,
/// the views' normalisation and the target (with the colour prior's bin weights).
pub struct ColorizationModelConfig {
    pub backbone: ResNetConfig,
    /// The normalisation of the views (to recover sRGB).
    pub mean: [f32; 3],
    pub std: [f32; 3],
    pub target: ChromaTarget,
}

/// `method.colorization_target`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChromaTargetKind {
    /// Mean squared error on a*b* at every pixel.
    Regression,
    /// Zhang et al.'s cross-entropy over quantised a*b* bins with soft, rebalanced targets.
    Classification,
}

/// Colorization's `[method]` settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ColorizationConfig {
    pub colorization_target: ChromaTargetKind,
    /// Classification: λ of the class rebalancing, mixing the colour prior with a uniform
    /// distribution (1 = no rebalancing; Zhang et al. use 0.5).
    pub colorization_rebalance: f64,
}

impl Default for ColorizationConfig {
    fn default() -> Self {
        Self {
            colorization_target: ChromaTargetKind::Regression,
            colorization_rebalance: 0.5,
        }
    }
}

/// Training images the colour prior of the class rebalancing is counted on.
const PRIOR_IMAGES: usize = 5000;

impl ColorizationConfig {
    /// The target; with classification, the rebalancing weights come from the colour prior of
    /// up to [`PRIOR_IMAGES`] of the context's training images (evenly spaced: the same on
    /// resume), and without training images every bin weighs 1 (enough to load a model).
    pub fn target(&self, ctx: &ImageContext) -> ChromaTarget {
        match (self.colorization_target, ctx.images) {
            (ChromaTargetKind::Regression, _) => ChromaTarget::Regression,
            (ChromaTargetKind::Classification, None) => ChromaTarget::unweighted_classification(),
            (ChromaTargetKind::Classification, Some((dataset, images))) => {
                let step = images.div_ceil(PRIOR_IMAGES).max(1);
                let bins = AbBins::srgb();
                let counts = bins.count_images((0..images).step_by(step).map(|i| dataset.image(i)));
                ChromaTarget::Classification {
                    bin_weights: bins.rebalancing_weights(&counts, self.colorization_rebalance),
                }
            }
        }
    }

    /// The module's build settings for the run `ctx`.
    pub fn model_config(&self, ctx: &ImageContext) -> ColorizationModelConfig {
        let BackboneConfig::ResNet(backbone) = ctx.backbone else {
            panic!("colorization needs a ResNet backbone (ColorizationConfig::check)");
        };
        ColorizationModelConfig {
            backbone: backbone.clone(),
            mean: ctx.mean,
            std: ctx.std,
            target: self.target(ctx),
        }
    }
}

impl MethodSettings for ColorizationConfig {
    const NAME: &'static str = "colorization";

    fn validate(&self) -> Result<(), MethodError> {
        if !(self.colorization_rebalance > 0.0 && self.colorization_rebalance <= 1.0) {
            return Err(MethodError::setting(
                "colorization_rebalance",
                format!(
                    "(λ) must be within (0, 1] (1 = no rebalancing), got {}",
                    self.colorization_rebalance
                ),
            ));
        }
        Ok(())
    }
}

impl ImageMethodConfig for ColorizationConfig {
    type Model = Colorization;

    const VIEWS: ImageViewKind = ImageViewKind::OneView;

    const ENCODER_INPUT: selfsup_data::EncoderInput = selfsup_data::EncoderInput::Lightness;

    fn check(&self, ctx: &ImageContext) -> Result<(), MethodError> {
        match ctx.backbone {
            BackboneConfig::ResNet(_) => Ok(()),
            _ => Err(MethodError::Setting {
                key: "model.backbone".into(),
                message: "= `vit`: colorization decodes a ResNet's feature map; use resnet18, resnet34 or resnet50".into(),
            }),
        }
    }

    fn init(&self, ctx: &ImageContext, device: &Device) -> Colorization {
        self.model_config(ctx).init(device)
    }
}

/// What the decoder predicts and the loss compares it with.
#[derive(Debug, Clone, PartialEq)]
pub enum ChromaTarget {
    /// a*b*/110 at every pixel; mean squared error.
    Regression,
    /// Logits over [`AbBins::srgb`] at half the input resolution; cross-entropy against the
    /// soft-encoded colour of each 2×2 block, weighted by `bin_weights` of its nearest bin
    /// ([`AbBins::rebalancing_weights`]; all 1 for no rebalancing).
    Classification { bin_weights: Vec<f32> },
}

impl ChromaTarget {
    /// Classification without rebalancing (enough to load a model and draw its pictures).
    pub fn unweighted_classification() -> Self {
        ChromaTarget::Classification {
            bin_weights: vec![1.0; AbBins::srgb().len()],
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Normalization {
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

/// One upsampling stage: nearest ×2, 3×3 conv, BatchNorm, ReLU.
#[derive(Module, Debug)]
pub struct UpBlock {
    pub conv: Conv2d,
    pub bn: BatchNorm,
}

/// The encoder's last feature map → upsampling stages halving the channels, then a conv to
/// the outputs: regression, log2(stride) stages and a 3×3 conv to `[N, 2, H, W]` scaled a*b*;
/// classification, one stage fewer and a 1×1 conv to `[N, Q, H/2, W/2]` bin logits.
#[derive(Module, Debug)]
pub struct ColorDecoder {
    pub up: Vec<UpBlock>,
    pub out: Conv2d,
}

fn conv3(c_in: usize, c_out: usize, device: &Device) -> Conv2d {
    Conv2dConfig::new([c_in, c_out], [3, 3])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .init(device)
}

/// Nearest-neighbour ×2 upsampling from reshapes (differentiable on every backend).
fn upsample2(x: Tensor<4>) -> Tensor<4> {
    let [n, c, h, w] = x.dims();
    x.reshape([n, c, h, 1, w, 1])
        .repeat_dim(3, 2)
        .repeat_dim(5, 2)
        .reshape([n, c, 2 * h, 2 * w])
}

impl ColorDecoder {
    /// `out`'s input channel count is replaced by the last stage's.
    pub fn new(in_channels: usize, stages: usize, mut out: Conv2dConfig, device: &Device) -> Self {
        let mut c = in_channels;
        let up = (0..stages)
            .map(|_| {
                let next = (c / 2).max(8);
                let block = UpBlock {
                    conv: conv3(c, next, device),
                    bn: BatchNormConfig::new(next).init(device),
                };
                c = next;
                block
            })
            .collect();
        out.channels[0] = c;
        Self {
            up,
            out: out.init(device),
        }
    }

    pub fn forward(&self, mut x: Tensor<4>) -> Tensor<4> {
        for b in &self.up {
            x = relu(b.bn.forward(b.conv.forward(upsample2(x))));
        }
        self.out.forward(x)
    }
}

#[derive(Module, Debug)]
pub struct Colorization {
    /// The ResNet encoder (always the `ResNet` variant).
    pub backbone: Backbone,
    pub decoder: ColorDecoder,
    #[module(skip)]
    pub norm: Normalization,
    #[module(skip)]
    pub target: ChromaTarget,
}

impl ColorizationModelConfig {
    pub fn init(&self, device: &Device) -> Colorization {
        let stages = match self.backbone.stem {
            selfsup_models::ResNetStem::Cifar => 3,
            selfsup_models::ResNetStem::Imagenet => 5,
        };
        let (stages, out) = match &self.target {
            ChromaTarget::Regression => (
                stages,
                Conv2dConfig::new([0, 2], [3, 3])
                    .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1)),
            ),
            ChromaTarget::Classification { bin_weights } => {
                assert_eq!(
                    bin_weights.len(),
                    AbBins::srgb().len(),
                    "one weight per bin"
                );
                (
                    stages - 1,
                    Conv2dConfig::new([0, bin_weights.len()], [1, 1]),
                )
            }
        };
        Colorization {
            decoder: ColorDecoder::new(self.backbone.out_dim(), stages, out, device),
            backbone: BackboneConfig::ResNet(self.backbone.clone()).init(device),
            norm: Normalization {
                mean: self.mean,
                std: self.std,
            },
            target: self.target.clone(),
        }
    }
}

/// Normalised RGB views `[N, 3, H, W]` → (the encoder's grey input `[N, 3, H, W]`, the scaled
/// a*b* target `[N, 2, H, W]`, L* `[N, H, W]` row-major for rebuilding pictures).
pub fn lab_split(x: Tensor<4>, norm: &Normalization) -> (Tensor<4>, Tensor<4>, Vec<f32>) {
    let [n, _, h, w] = x.dims();
    let device = x.device();
    let lab = lab_planes(x, norm);
    (
        Tensor::from_data(TensorData::new(lab.grey, [n, 3, h, w]), &device),
        Tensor::from_data(TensorData::new(lab.ab, [n, 2, h, w]), &device),
        lab.lightness,
    )
}

/// A batch in Lab on the host, row-major: the encoder's grey input `[N, 3, H, W]`, scaled a*b*
/// `[N, 2, H, W]` and L* `[N, H, W]`.
struct LabPlanes {
    grey: Vec<f32>,
    ab: Vec<f32>,
    lightness: Vec<f32>,
}

fn lab_planes(x: Tensor<4>, norm: &Normalization) -> LabPlanes {
    let [n, c, h, w] = x.dims();
    assert_eq!(c, 3, "colorization needs RGB images, got {c} channels");
    let v = x
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .expect("f32 views");
    let hw = h * w;
    let mut grey = vec![0f32; n * 3 * hw];
    let mut ab = vec![0f32; n * 2 * hw];
    let mut lightness = vec![0f32; n * hw];
    for i in 0..n {
        for p in 0..hw {
            let rgb: [f32; 3] = std::array::from_fn(|ch| {
                (v[(i * 3 + ch) * hw + p] * norm.std[ch] + norm.mean[ch]).clamp(0.0, 1.0)
            });
            let [l, a, b] = rgb_to_lab(rgb);
            lightness[i * hw + p] = l;
            for ch in 0..3 {
                grey[(i * 3 + ch) * hw + p] = (l / 100.0 - norm.mean[ch]) / norm.std[ch];
            }
            ab[(i * 2) * hw + p] = a / AB_SCALE;
            ab[(i * 2 + 1) * hw + p] = b / AB_SCALE;
        }
    }
    LabPlanes {
        grey,
        ab,
        lightness,
    }
}

/// The classification targets of scaled a*b* planes `[N, 2, H, W]`: for each 2×2 block, its
/// mean colour's [`SOFT_NEIGHBOURS`] nearest bins `[N, K, H/2, W/2]` and their soft-encoding
/// weights times the nearest bin's rebalancing weight.
pub fn class_targets(
    ab: &[f32],
    [n, h, w]: [usize; 3],
    bin_weights: &[f32],
) -> (Vec<i64>, Vec<f32>) {
    let bins = AbBins::srgb();
    let plane = (h / 2) * (w / 2);
    let mut idx = vec![0i64; n * SOFT_NEIGHBOURS * plane];
    let mut weight = vec![0f32; n * SOFT_NEIGHBOURS * plane];
    for i in 0..n {
        let pixel = |y: usize, x: usize| {
            let at = y * w + x;
            [
                ab[(i * 2) * h * w + at] * AB_SCALE,
                ab[(i * 2 + 1) * h * w + at] * AB_SCALE,
            ]
        };
        for (block, colour) in block_means(h, w, pixel).enumerate() {
            let soft = bins.soft_encode(colour);
            let rebalance = bin_weights[soft[0].0 as usize];
            for (k, (q, wt)) in soft.into_iter().enumerate() {
                let at = (i * SOFT_NEIGHBOURS + k) * plane + block;
                idx[at] = q as i64;
                weight[at] = wt * rebalance;
            }
        }
    }
    (idx, weight)
}

/// sRGB pictures `[N][H·W·3]` (interleaved, in [0, 1]) from L* and scaled a*b* maps.
pub fn lab_pictures(lightness: &[f32], ab: Tensor<4>) -> Vec<Vec<f32>> {
    let [n, _, h, w] = ab.dims();
    let hw = h * w;
    let ab = ab
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .expect("f32");
    (0..n)
        .map(|i| {
            (0..hw)
                .flat_map(|p| {
                    lab_to_rgb([
                        lightness[i * hw + p],
                        ab[(i * 2) * hw + p] * AB_SCALE,
                        ab[(i * 2 + 1) * hw + p] * AB_SCALE,
                    ])
                })
                .collect()
        })
        .collect()
}

impl Colorization {
    pub fn resnet(&self) -> &ResNet {
        self.backbone
            .as_resnet()
            .expect("colorization's backbone is a ResNet (built by ColorizationConfig::init)")
    }

    /// The decoder's output for the encoder input `grey` (scaled a*b* `[N, 2, H, W]` or bin
    /// logits `[N, Q, H/2, W/2]`, by [`ChromaTarget`]), and the pooled encoder features.
    pub fn predict(&self, grey: Tensor<4>) -> (Tensor<4>, Tensor<2>) {
        let features = self.resnet().forward_features(grey);
        let [n, c, _, _] = features.dims();
        let pooled = features
            .clone()
            .flatten::<3>(2, 3)
            .mean_dim(2)
            .reshape([n, c]);
        (self.decoder.forward(features), pooled)
    }

    /// Predicted scaled a*b* `[N, 2, H, W]` at the input's resolution: the regression output,
    /// or the annealed mean of the bin logits upsampled ×2.
    pub fn predict_ab(&self, grey: Tensor<4>) -> Tensor<4> {
        let (out, _) = self.predict(grey);
        if self.target == ChromaTarget::Regression {
            return out;
        }
        let [n, q, h, w] = out.dims();
        let device = out.device();
        let logits = out
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .expect("f32 logits");
        let bins = AbBins::srgb();
        let plane = h * w;
        let mut ab = vec![0f32; n * 2 * plane];
        let mut pixel = vec![0f32; q];
        for i in 0..n {
            for p in 0..plane {
                for (k, v) in pixel.iter_mut().enumerate() {
                    *v = logits[(i * q + k) * plane + p];
                }
                let [a, b] = bins.annealed_mean(&pixel, ANNEALED_TEMPERATURE);
                ab[(i * 2) * plane + p] = a / AB_SCALE;
                ab[(i * 2 + 1) * plane + p] = b / AB_SCALE;
            }
        }
        upsample2(Tensor::from_data(
            TensorData::new(ab, [n, 2, h, w]),
            &device,
        ))
    }
}

impl SslMethod for Colorization {
    type Input = crate::method::ImageViews;
    type Update = ();
    type Backbone = Backbone;
    /// One view: `z_b` repeats `z_a`, so alignment is not measured.
    const PAIRED_VIEWS: bool = false;

    fn backbone(&self) -> &Backbone {
        &self.backbone
    }

    /// One view. Both diagnostic embeddings are the pooled encoder features of the grey
    /// input (there is no second view to align).
    fn train_step(&self, views: Vec<Tensor<4>>, _: &Progress) -> StepOutput<()> {
        let x = one_view("colorization", views);
        let [n, _, h, w] = x.dims();
        let device = x.device();
        let lab = lab_planes(x, &self.norm);
        let grey = Tensor::from_data(TensorData::new(lab.grey, [n, 3, h, w]), &device);
        let (pred, pooled) = self.predict(grey);
        let loss = match &self.target {
            ChromaTarget::Regression => {
                let target = Tensor::from_data(TensorData::new(lab.ab, [n, 2, h, w]), &device);
                ab_regression_loss(pred, target)
            }
            ChromaTarget::Classification { bin_weights } => {
                let (idx, weight) = class_targets(&lab.ab, [n, h, w], bin_weights);
                let shape = [n, SOFT_NEIGHBOURS, h / 2, w / 2];
                ab_classification_loss(
                    pred,
                    Tensor::from_data(TensorData::new(idx, shape), &device),
                    Tensor::from_data(TensorData::new(weight, shape), &device),
                )
            }
        };
        StepOutput::one_view(loss, pooled, ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoder_restores_the_input_resolution_and_lab_split_round_trips() {
        let device = Device::flex();
        let config = ColorizationModelConfig {
            backbone: ResNetConfig::new().with_width(4),
            mean: [0.5, 0.4, 0.3],
            std: [0.2, 0.25, 0.3],
            target: ChromaTarget::Regression,
        };
        let model = config.init(&device);
        // Pixels chosen in sRGB, normalised as the loader does.
        let rgb: Vec<f32> = (0..2 * 3 * 16 * 16)
            .map(|i| ((i * 37) % 101) as f32 / 100.0)
            .collect();
        let normalised: Vec<f32> = rgb
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let ch = (i / 256) % 3;
                (v - config.mean[ch]) / config.std[ch]
            })
            .collect();
        let x = Tensor::<4>::from_data(TensorData::new(normalised, [2, 3, 16, 16]), &device);
        let (grey, target, lightness) = lab_split(x, &model.norm);
        let (pred, pooled) = model.predict(grey);
        assert_eq!(pred.dims(), [2, 2, 16, 16]);
        assert_eq!(pooled.dims(), [2, 32]);
        // L* and the true a*b* give the original pixels back.
        let pictures = lab_pictures(&lightness, target);
        for (i, pic) in pictures.iter().enumerate() {
            for p in 0..256 {
                for ch in 0..3 {
                    let want = rgb[(i * 3 + ch) * 256 + p];
                    assert!((pic[p * 3 + ch] - want).abs() < 1e-3, "image {i} pixel {p}");
                }
            }
        }
    }

    #[test]
    fn classification_predicts_bin_logits_at_half_resolution_and_trains() {
        let device = Device::flex().autodiff();
        let bins = AbBins::srgb();
        let mut bin_weights = vec![1.0; bins.len()];
        let red = {
            let [_, a, b] = rgb_to_lab([1.0, 0.0, 0.0]);
            bins.nearest([a, b]) as usize
        };
        bin_weights[red] = 3.0;
        let config = ColorizationModelConfig {
            backbone: ResNetConfig::new().with_width(4),
            mean: [0.0; 3],
            std: [1.0; 3],
            target: ChromaTarget::Classification { bin_weights },
        };
        let model = config.init(&device);
        // Two 8×8 images: pure red, then left half grey and right half red.
        let mut rgb = vec![0f32; 2 * 3 * 64];
        for p in 0..64 {
            rgb[p] = 1.0;
            let v = if p % 8 < 4 { [0.5; 3] } else { [1.0, 0.0, 0.0] };
            for ch in 0..3 {
                rgb[(3 + ch) * 64 + p] = v[ch];
            }
        }
        let x = Tensor::<4>::from_data(TensorData::new(rgb, [2, 3, 8, 8]), &device);
        let ChromaTarget::Classification { bin_weights } = &model.target else {
            unreachable!()
        };
        let lab = lab_planes(x.clone(), &model.norm);
        let (idx, weight) = class_targets(&lab.ab, [2, 8, 8], bin_weights);
        assert_eq!(idx.len(), 2 * SOFT_NEIGHBOURS * 16);
        // Every red block: nearest bin red, weights summing to red's rebalancing weight 3.
        for p in 0..16 {
            assert_eq!(idx[p], red as i64);
            let sum: f32 = (0..SOFT_NEIGHBOURS).map(|k| weight[k * 16 + p]).sum();
            assert!((sum - 3.0).abs() < 1e-5, "block {p}: {sum}");
        }
        // The second image's first block is grey: weight 1.
        let second = SOFT_NEIGHBOURS * 16;
        let sum: f32 = (0..SOFT_NEIGHBOURS).map(|k| weight[second + k * 16]).sum();
        assert!((sum - 1.0).abs() < 1e-5);

        let (grey, _, _) = lab_split(x.clone(), &model.norm);
        let (logits, _) = model.predict(grey.clone());
        assert_eq!(logits.dims(), [2, bins.len(), 4, 4]);
        assert_eq!(model.predict_ab(grey).dims(), [2, 2, 8, 8]);
        let progress = Progress {
            step: 0,
            total_steps: 1,
            steps_per_epoch: 1,
            seed: 0,
        };
        let loss = model
            .train_step(vec![x], &progress)
            .loss
            .into_scalar::<f32>();
        // Untrained logits are near uniform: the cross-entropy is near ln Q per unit weight.
        assert!(
            loss.is_finite() && loss > 0.5 * (bins.len() as f32).ln(),
            "{loss}"
        );
    }
}
