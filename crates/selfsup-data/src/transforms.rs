//! Random augmentations (torchvision v1 semantics) composed into pipelines.

use crate::error::{DataError, Result};
use crate::ops;
use crate::pixels::{ImageView, RgbImage};
use crate::rng::SampleRng;

/// Per-channel normalisation applied after the u8 ops (`ToTensor` + `Normalize`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Normalization {
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl Normalization {
    /// LightlySSL's default (`IMAGENET_NORMALIZE`).
    pub const IMAGENET: Self = Normalization {
        mean: [0.485, 0.456, 0.406],
        std: [0.229, 0.224, 0.225],
    };
    pub const CIFAR10: Self = Normalization {
        mean: [0.4914, 0.4822, 0.4465],
        std: [0.2470, 0.2435, 0.2616],
    };
}

/// One random augmentation step on a u8 RGB image.
#[derive(Clone, Debug, PartialEq)]
pub enum Transform {
    /// `T.RandomResizedCrop(size, scale, ratio, antialias=True)`, bilinear.
    RandomResizedCrop {
        size: (usize, usize),
        scale: (f64, f64),
        ratio: (f64, f64),
    },
    /// `T.RandomCrop(size, padding)`: zero-pad every side by `padding`, then crop `size` at a
    /// uniformly drawn offset (top, then left).
    RandomCrop {
        size: (usize, usize),
        padding: usize,
    },
    /// `T.Resize(size)` (shorter side) + `T.CenterCrop(size)`; deterministic.
    ResizeCenterCrop { size: usize },
    /// `T.RandomHorizontalFlip(p)`.
    HorizontalFlip { p: f64 },
    /// `T.RandomApply([T.ColorJitter(brightness, contrast, saturation, hue)], p)`;
    /// a zero strength disables that adjustment.
    ColorJitter {
        brightness: f64,
        contrast: f64,
        saturation: f64,
        hue: f64,
        p: f64,
    },
    /// `T.RandomGrayscale(p)` (3 output channels).
    RandomGrayscale { p: f64 },
    /// With probability `p`, `T.GaussianBlur(kernel_size, sigma=(lo, hi))`.
    GaussianBlur {
        kernel_size: usize,
        sigma: (f64, f64),
        p: f64,
    },
    /// `T.RandomSolarize(threshold, p)`.
    Solarize { threshold: u8, p: f64 },
}

/// Crop box chosen by [`sample_resized_crop`]: `(top, left, height, width)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CropBox {
    pub top: usize,
    pub left: usize,
    pub height: usize,
    pub width: usize,
}

/// `RandomResizedCrop.get_params`: 10 attempts at a box with area fraction in
/// `scale` and log-uniform aspect ratio in `ratio`, then a centre-crop fallback.
pub fn sample_resized_crop(
    h: usize,
    w: usize,
    scale: (f64, f64),
    ratio: (f64, f64),
    rng: &mut SampleRng,
) -> CropBox {
    let area = (h * w) as f64;
    let (log_lo, log_hi) = (ratio.0.ln(), ratio.1.ln());
    for _ in 0..10 {
        let target_area = area * rng.uniform(scale.0, scale.1);
        let aspect = rng.uniform(log_lo, log_hi).exp();
        let cw = (target_area * aspect).sqrt().round_ties_even() as usize;
        let ch = (target_area / aspect).sqrt().round_ties_even() as usize;
        if cw > 0 && cw <= w && ch > 0 && ch <= h {
            let top = rng.below((h - ch + 1) as u64) as usize;
            let left = rng.below((w - cw + 1) as u64) as usize;
            return CropBox {
                top,
                left,
                height: ch,
                width: cw,
            };
        }
    }
    let in_ratio = w as f64 / h as f64;
    let (ch, cw) = if in_ratio < ratio.0 {
        ((w as f64 / ratio.0).round_ties_even() as usize, w)
    } else if in_ratio > ratio.1 {
        (h, (h as f64 * ratio.1).round_ties_even() as usize)
    } else {
        (h, w)
    };
    CropBox {
        top: (h - ch) / 2,
        left: (w - cw) / 2,
        height: ch,
        width: cw,
    }
}

/// Colour-jitter factors in application order, as `T.ColorJitter.get_params` draws them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Jitter {
    Brightness(f64),
    Contrast(f64),
    Saturation(f64),
    Hue(f64),
}

/// Random order of the four adjustments; factors uniform in `[max(0, 1-s), 1+s]`
/// (hue: `[-s, s]`); adjustments with strength 0 are left out.
pub fn sample_color_jitter(
    brightness: f64,
    contrast: f64,
    saturation: f64,
    hue: f64,
    rng: &mut SampleRng,
) -> Vec<Jitter> {
    let mut order = [0usize, 1, 2, 3];
    rng.shuffle(&mut order);
    let mut factor = |s: f64| rng.uniform((1.0 - s).max(0.0), 1.0 + s);
    let b = factor(brightness);
    let c = factor(contrast);
    let s = factor(saturation);
    let h = rng.uniform(-hue, hue);
    order
        .iter()
        .filter_map(|&k| match k {
            0 if brightness > 0.0 => Some(Jitter::Brightness(b)),
            1 if contrast > 0.0 => Some(Jitter::Contrast(c)),
            2 if saturation > 0.0 => Some(Jitter::Saturation(s)),
            3 if hue > 0.0 => Some(Jitter::Hue(h)),
            _ => None,
        })
        .collect()
}

impl Transform {
    /// The steps that only read their input (crops and resizes) applied to a view; `None`
    /// (and nothing drawn from `rng`) for the others.
    fn apply_crop(&self, img: ImageView, rng: &mut SampleRng) -> Option<RgbImage> {
        Some(match *self {
            Transform::RandomResizedCrop { size, scale, ratio } => {
                let b = sample_resized_crop(img.h, img.w, scale, ratio, rng);
                ops::resized_crop(img, b.top, b.left, b.height, b.width, size.0, size.1)
            }
            Transform::RandomCrop { size, padding } => {
                let (ph, pw) = (img.h + 2 * padding, img.w + 2 * padding);
                assert!(
                    size.0 <= ph && size.1 <= pw,
                    "RandomCrop {size:?} larger than the {ph}x{pw} padded image"
                );
                let top = rng.below((ph - size.0 + 1) as u64) as usize;
                let left = rng.below((pw - size.1 + 1) as u64) as usize;
                ops::padded_crop(img, padding, top, left, size.0, size.1)
            }
            Transform::ResizeCenterCrop { size } => ops::resize_center_crop(img, size),
            _ => return None,
        })
    }

    /// [`Self::apply`] to a borrowed image: copies it only for the steps that change their
    /// input in place.
    pub fn apply_to_view(&self, img: ImageView, rng: &mut SampleRng) -> RgbImage {
        self.apply_crop(img, rng)
            .unwrap_or_else(|| self.apply(img.to_owned(), rng))
    }

    /// Applies this step to `img`, drawing randomness from `rng`.
    pub fn apply(&self, img: RgbImage, rng: &mut SampleRng) -> RgbImage {
        if let Some(out) = self.apply_crop(img.view(), rng) {
            return out;
        }
        match *self {
            Transform::RandomResizedCrop { .. }
            | Transform::RandomCrop { .. }
            | Transform::ResizeCenterCrop { .. } => unreachable!("handled by apply_crop"),
            Transform::HorizontalFlip { p } => {
                let mut img = img;
                if rng.chance(p) {
                    ops::hflip(&mut img);
                }
                img
            }
            Transform::ColorJitter {
                brightness,
                contrast,
                saturation,
                hue,
                p,
            } => {
                let mut img = img;
                if rng.chance(p) {
                    for j in sample_color_jitter(brightness, contrast, saturation, hue, rng) {
                        match j {
                            Jitter::Brightness(f) => ops::adjust_brightness(&mut img, f),
                            Jitter::Contrast(f) => ops::adjust_contrast(&mut img, f),
                            Jitter::Saturation(f) => ops::adjust_saturation(&mut img, f),
                            Jitter::Hue(f) => ops::adjust_hue(&mut img, f),
                        }
                    }
                }
                img
            }
            Transform::RandomGrayscale { p } => {
                let mut img = img;
                if rng.chance(p) {
                    ops::rgb_to_grayscale(&mut img);
                }
                img
            }
            Transform::GaussianBlur {
                kernel_size,
                sigma,
                p,
            } => {
                if rng.chance(p) {
                    let s = rng.uniform(sigma.0, sigma.1);
                    ops::gaussian_blur(img.view(), kernel_size, s)
                } else {
                    img
                }
            }
            Transform::Solarize { threshold, p } => {
                let mut img = img;
                if rng.chance(p) {
                    ops::solarize(&mut img, threshold);
                }
                img
            }
        }
    }

    /// Output size if this step fixes it.
    fn output_size(&self) -> Option<(usize, usize)> {
        match *self {
            Transform::RandomResizedCrop { size, .. } | Transform::RandomCrop { size, .. } => {
                Some(size)
            }
            Transform::ResizeCenterCrop { size } => Some((size, size)),
            _ => None,
        }
    }

    fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(DataError::Pipeline(m));
        let prob_ok = |p: f64| (0.0..=1.0).contains(&p);
        match *self {
            Transform::RandomResizedCrop { size, scale, ratio }
                if size.0 == 0
                    || size.1 == 0
                    || !(scale.0 > 0.0 && scale.0 <= scale.1)
                    || !(ratio.0 > 0.0 && ratio.0 <= ratio.1) =>
            {
                return bad(format!(
                    "RandomResizedCrop needs a non-empty size, 0 < scale_lo <= scale_hi, 0 < ratio_lo <= ratio_hi: {self:?}"
                ));
            }
            Transform::ResizeCenterCrop { size: 0 } => return bad("ResizeCenterCrop size 0".into()),
            Transform::RandomCrop { size, .. } if size.0 == 0 || size.1 == 0 => {
                return bad(format!("RandomCrop needs a non-empty size: {self:?}"));
            }
            Transform::ColorJitter { hue, p, .. } if !(0.0..=0.5).contains(&hue) || !prob_ok(p) => {
                return bad(format!(
                    "ColorJitter needs hue in [0, 0.5] and p in [0, 1]: {self:?}"
                ));
            }
            Transform::GaussianBlur {
                kernel_size,
                sigma,
                p,
            } if kernel_size % 2 == 0 || !(sigma.0 > 0.0 && sigma.0 <= sigma.1) || !prob_ok(p) => {
                return bad(format!(
                    "GaussianBlur needs an odd kernel, 0 < sigma_lo <= sigma_hi, p in [0, 1]: {self:?}"
                ));
            }
            Transform::HorizontalFlip { p }
            | Transform::RandomGrayscale { p }
            | Transform::Solarize { p, .. }
                if !prob_ok(p) =>
            {
                return bad(format!("probability out of [0, 1]: {self:?}"));
            }
            _ => {}
        }
        Ok(())
    }
}

/// What a [`Pipeline`] hands the encoder after its u8 steps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EncoderInput {
    /// The RGB image, normalised per channel.
    #[default]
    Rgb,
    /// The grey image R = G = B = L*/100 (CIE Lab, D65), normalised per channel: the input of a
    /// colorization encoder, which never saw colour during pretraining.
    Lightness,
}

/// A list of [`Transform`]s followed by normalisation to f32 CHW.
/// The last geometric step (crop/resize) fixes the output size.
#[derive(Clone, Debug, PartialEq)]
pub struct Pipeline {
    steps: Vec<Transform>,
    norm: Normalization,
    out_size: (usize, usize),
    input: EncoderInput,
}

impl Pipeline {
    /// Validates the steps; at least one must fix the output size so views batch.
    pub fn new(steps: Vec<Transform>, norm: Normalization) -> Result<Self> {
        for s in &steps {
            s.validate()?;
        }
        let out_size = steps
            .iter()
            .rev()
            .find_map(Transform::output_size)
            .ok_or_else(|| {
                DataError::Pipeline(
                    "pipeline needs a RandomResizedCrop or ResizeCenterCrop to fix the output size"
                        .into(),
                )
            })?;
        Ok(Pipeline {
            steps,
            norm,
            out_size,
            input: EncoderInput::Rgb,
        })
    }

    /// The same steps, handing the encoder `input` (RGB by default).
    pub fn with_input(mut self, input: EncoderInput) -> Self {
        self.input = input;
        self
    }

    /// SimCLR view as LightlySSL's `SimCLRTransform` (cj_strength 1.0: jitter
    /// 0.8/0.8/0.8/0.2 with p 0.8, grayscale 0.2, sigma 0.1-2).  `blur_prob` is 0.0
    /// for 32x32 CIFAR.  The blur kernel spans ~10% of the image (odd, >= 3) as in
    /// the SimCLR paper; LightlySSL instead uses PIL's radius-sigma blur.
    pub fn simclr(input_size: usize, blur_prob: f64, norm: Normalization) -> Result<Self> {
        let kernel_size = ((input_size as f64 * 0.1) as usize / 2 * 2 + 1).max(3);
        let mut steps = vec![
            Transform::RandomResizedCrop {
                size: (input_size, input_size),
                scale: (0.08, 1.0),
                ratio: (3.0 / 4.0, 4.0 / 3.0),
            },
            Transform::HorizontalFlip { p: 0.5 },
            Transform::ColorJitter {
                brightness: 0.8,
                contrast: 0.8,
                saturation: 0.8,
                hue: 0.2,
                p: 0.8,
            },
            Transform::RandomGrayscale { p: 0.2 },
        ];
        if blur_prob > 0.0 {
            steps.push(Transform::GaussianBlur {
                kernel_size,
                sigma: (0.1, 2.0),
                p: blur_prob,
            });
        }
        Pipeline::new(steps, norm)
    }

    /// Evaluation view: resize the shorter side to `input_size`, centre crop, normalise.
    pub fn eval(input_size: usize, norm: Normalization) -> Result<Self> {
        Pipeline::new(vec![Transform::ResizeCenterCrop { size: input_size }], norm)
    }

    /// Supervised training view (the usual CIFAR recipe): resize to the evaluation view
    /// (identity for images already `input_size` square), `RandomCrop(input_size, padding)`
    /// with zero padding, horizontal flip with p 0.5, normalise.
    pub fn crop_flip(input_size: usize, padding: usize, norm: Normalization) -> Result<Self> {
        Pipeline::new(
            vec![
                Transform::ResizeCenterCrop { size: input_size },
                Transform::RandomCrop {
                    size: (input_size, input_size),
                    padding,
                },
                Transform::HorizontalFlip { p: 0.5 },
            ],
            norm,
        )
    }

    /// Output `(height, width)`.
    pub fn output_size(&self) -> (usize, usize) {
        self.out_size
    }

    /// Number of f32 values one output holds (3 * h * w).
    pub fn output_len(&self) -> usize {
        3 * self.out_size.0 * self.out_size.1
    }

    /// Runs the u8 steps (no normalisation).
    pub fn augment(&self, img: ImageView, rng: &mut SampleRng) -> RgbImage {
        // `new` guarantees at least one step; the first reads `img` without copying it
        // when it is a crop, as it usually is.
        let (first, rest) = self.steps.split_first().expect("a pipeline has steps");
        let start = first.apply_to_view(img, rng);
        rest.iter().fold(start, |acc, s| s.apply(acc, rng))
    }

    /// Runs the pipeline and writes normalised f32 CHW into `out` (len [`Self::output_len`]).
    pub fn apply_into(&self, img: ImageView, rng: &mut SampleRng, out: &mut [f32]) {
        let aug = self.augment(img, rng);
        assert_eq!(
            (aug.h, aug.w),
            self.out_size,
            "pipeline output size changed after its last crop step"
        );
        match self.input {
            EncoderInput::Rgb => {
                ops::normalize_into(aug.view(), self.norm.mean, self.norm.std, out)
            }
            EncoderInput::Lightness => {
                crate::lab::lightness_into(aug.view(), self.norm.mean, self.norm.std, out)
            }
        }
    }
}
