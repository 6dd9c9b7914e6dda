//! Colorization (Zhang et al. 2016, regression variant): the ResNet encoder sees the lightness
//! L* of an image (as a grey image in the run's normalisation) and an upsampling decoder on its
//! last feature map predicts the a*b* chroma of every pixel.
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

use crate::loss::{AB_SCALE, ab_regression_loss};
use crate::method::{Progress, SslMethod, StepOutput, one_view};

#[derive(Debug, Clone)]
pub struct ColorizationConfig {
    pub backbone: ResNetConfig,
    /// The normalisation of the views (to recover sRGB).
    pub mean: [f32; 3],
    pub std: [f32; 3],
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

/// The encoder's last feature map (stride s) → `[N, 2, H, W]` scaled a*b*: log2(s) stages
/// halving the channels, then a 3×3 conv to 2 channels.
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
    pub fn new(in_channels: usize, stride: usize, device: &Device) -> Self {
        let stages = stride.trailing_zeros() as usize;
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
        Self {
            up,
            out: conv3(c, 2, device),
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
}

impl ColorizationConfig {
    pub fn init(&self, device: &Device) -> Colorization {
        let stride = match self.backbone.stem {
            selfsup_models::ResNetStem::Cifar => 8,
            selfsup_models::ResNetStem::Imagenet => 32,
        };
        Colorization {
            decoder: ColorDecoder::new(self.backbone.out_dim(), stride, device),
            backbone: BackboneConfig::ResNet(self.backbone.clone()).init(device),
            norm: Normalization {
                mean: self.mean,
                std: self.std,
            },
        }
    }
}

/// Normalised RGB views `[N, 3, H, W]` → (the encoder's grey input `[N, 3, H, W]`, the scaled
/// a*b* target `[N, 2, H, W]`, L* `[N, H, W]` row-major for rebuilding pictures).
pub fn lab_split(x: Tensor<4>, norm: &Normalization) -> (Tensor<4>, Tensor<4>, Vec<f32>) {
    let [n, c, h, w] = x.dims();
    assert_eq!(c, 3, "colorization needs RGB images, got {c} channels");
    let device = x.device();
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
    (
        Tensor::from_data(TensorData::new(grey, [n, 3, h, w]), &device),
        Tensor::from_data(TensorData::new(ab, [n, 2, h, w]), &device),
        lightness,
    )
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

    /// Predicted scaled a*b* `[N, 2, H, W]` for the encoder input `grey`, and the pooled
    /// encoder features.
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
        let (grey, target, _) = lab_split(x, &self.norm);
        let (pred, pooled) = self.predict(grey);
        StepOutput::one_view(ab_regression_loss(pred, target), pooled, ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoder_restores_the_input_resolution_and_lab_split_round_trips() {
        let device = Device::flex();
        let config = ColorizationConfig {
            backbone: ResNetConfig::new().with_width(4),
            mean: [0.5, 0.4, 0.3],
            std: [0.2, 0.25, 0.3],
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
}
