//! Image datasets and augmentation pipelines from a run's config.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use selfsup_core::config::DataConfig;
use selfsup_core::{Context, Result};
use selfsup_data::{
    CacheOptions, EncoderInput, ImageDataset, Normalization, Pipeline, Split, Transform,
    open_dataset,
};
use selfsup_methods::method::ImageViewKind;

use crate::ImageConfig;

/// Decoded-image cache beside the run directories (`<out>/../.cache`), unless configured.
pub fn cache_dir(config: &ImageConfig, run_dir: Option<&Path>) -> PathBuf {
    if !config.data.cache_dir.is_empty() {
        return PathBuf::from(&config.data.cache_dir);
    }
    match run_dir.and_then(Path::parent) {
        Some(parent) if !parent.as_os_str().is_empty() => parent.join(".cache"),
        _ => PathBuf::from("runs/.cache"),
    }
}

/// One split of the dataset at `path`, decoded once into the cache.
pub fn open(
    path: &Path,
    split: Split,
    cache: &Path,
    skip_corrupt: bool,
    config: &DataConfig,
) -> Result<Arc<ImageDataset>> {
    let opts = CacheOptions {
        cache_dir: Some(cache.to_path_buf()),
        skip_corrupt,
        max_short_side: Some(config.max_short_side()),
        format: config.cache_format,
    };
    let ds = open_dataset(path, split, &opts).with_context(|| {
        format!(
            "cannot open the {split:?} split of dataset {}",
            path.display()
        )
    })?;
    if ds.num_skipped() > 0 {
        eprintln!(
            "warning: skipped {} unreadable image(s) in {} (--skip-corrupt)",
            ds.num_skipped(),
            path.display()
        );
    }
    Ok(Arc::new(ds))
}

pub fn normalization(config: &ImageConfig) -> Normalization {
    Normalization {
        mean: config.data.mean,
        std: config.data.std,
    }
}

/// One pipeline per view: two global views, then `augment.local_crops` small crops
/// (`local_crop_size` px, `local_crop_scale`) with the same colour augmentations (multi-crop).
/// Methods that predict something about one image (rotation, MAE, colorization) get one view:
/// a random resized crop (`crop_scale`) and the flip, no colour augmentation (it would change
/// what they predict).
pub fn view_pipelines(config: &ImageConfig, views: ImageViewKind) -> Result<Vec<Pipeline>> {
    let a = &config.modality.augment;
    if views == ImageViewKind::OneView {
        let s = config.data.input_size;
        let [lo, hi] = a.crop_scale;
        let steps = vec![
            Transform::RandomResizedCrop {
                size: (s, s),
                scale: (lo, hi),
                ratio: (3.0 / 4.0, 4.0 / 3.0),
            },
            Transform::HorizontalFlip { p: a.hflip_prob },
        ];
        return Ok(vec![Pipeline::new(steps, normalization(config))?]);
    }
    let global = view_pipeline(config, config.data.input_size, a.crop_scale)?;
    let mut pipes = vec![global.clone(), global];
    if a.local_crops > 0 {
        let local = view_pipeline(config, a.local_crop_size, a.local_crop_scale)?;
        pipes.extend(std::iter::repeat_n(local, a.local_crops));
    }
    Ok(pipes)
}

/// Random crop of side `s` covering `scale` of the image, then the configured flips, colour
/// jitter, grayscale, blur and solarisation.
fn view_pipeline(config: &ImageConfig, s: usize, scale: [f64; 2]) -> Result<Pipeline> {
    let a = &config.modality.augment;
    let [b, c, sat, hue] = a.color_jitter;
    let mut steps = vec![
        Transform::RandomResizedCrop {
            size: (s, s),
            scale: (scale[0], scale[1]),
            ratio: (3.0 / 4.0, 4.0 / 3.0),
        },
        Transform::HorizontalFlip { p: a.hflip_prob },
        Transform::ColorJitter {
            brightness: b,
            contrast: c,
            saturation: sat,
            hue,
            p: a.color_jitter_prob,
        },
        Transform::RandomGrayscale {
            p: a.grayscale_prob,
        },
    ];
    if a.blur_prob > 0.0 {
        // SimCLR: kernel 10% of the image side (odd), sigma in [0.1, 2.0].
        let k = ((s as f64 * 0.1) as usize) | 1;
        steps.push(Transform::GaussianBlur {
            kernel_size: k.max(3),
            sigma: (0.1, 2.0),
            p: a.blur_prob,
        });
    }
    if a.solarize_prob > 0.0 {
        steps.push(Transform::Solarize {
            threshold: 128,
            p: a.solarize_prob,
        });
    }
    Ok(Pipeline::new(steps, normalization(config))?)
}

/// What the run's encoder takes (its method's [`ImageMethodConfig::ENCODER_INPUT`]): a
/// colorization encoder was pretrained on L* alone, so every evaluation (kNN, probes,
/// fine-tuning, embeddings) feeds it L*, and its random-init and from-scratch baselines too,
/// as Zhang et al. (2016) evaluate their encoder on grey images.
///
/// [`ImageMethodConfig::ENCODER_INPUT`]: selfsup_methods::method::ImageMethodConfig::ENCODER_INPUT
pub fn encoder_input(config: &ImageConfig) -> EncoderInput {
    crate::method_traits(&config.method).input
}

/// The evaluation view (resize, centre crop, normalise) as the run's encoder takes it (see
/// [`encoder_input`]); pictures of the images themselves ask for `EncoderInput::Rgb`.
pub fn eval_pipeline(config: &ImageConfig) -> Result<Pipeline> {
    Ok(
        Pipeline::eval(config.data.input_size, normalization(config))?
            .with_input(encoder_input(config)),
    )
}

/// Fine-tuning's training view: `RandomCrop(input_size, padding = 4)` and a flip.
pub fn crop_flip_pipeline(config: &ImageConfig) -> Result<Pipeline> {
    Ok(
        Pipeline::crop_flip(config.data.input_size, CROP_PADDING, normalization(config))?
            .with_input(encoder_input(config)),
    )
}

/// Padding of fine-tuning's `RandomCrop(input_size, padding)`.
const CROP_PADDING: usize = 4;

#[cfg(test)]
mod tests {
    use super::*;
    use selfsup_data::{ImageView, SampleRng};

    /// The shipped colorization config's encoder sees R = G = B (L*); SimCLR's sees colour.
    #[test]
    fn colorization_encoders_are_evaluated_on_lightness() {
        let configs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
        let pixels: Vec<u8> = (0..32 * 32)
            .flat_map(|i| [(i % 256) as u8, (i * 7 % 256) as u8, (255 - i % 256) as u8])
            .collect();
        let img = ImageView {
            h: 32,
            w: 32,
            data: &pixels,
        };
        for (file, grey) in [
            ("colorization_cifar10.toml", true),
            ("simclr_cifar10.toml", false),
        ] {
            let config = ImageConfig::load(Some(&configs.join(file)), &[]).unwrap();
            let pipe = eval_pipeline(&config).unwrap();
            let mut out = vec![0f32; pipe.output_len()];
            pipe.apply_into(img, &mut SampleRng::from_key(&[0]), &mut out);
            let norm = normalization(&config);
            let plane = 32 * 32;
            let unnormalised = |c: usize, p: usize| out[c * plane + p] * norm.std[c] + norm.mean[c];
            let same = (0..plane)
                .all(|p| (1..3).all(|c| (unnormalised(c, p) - unnormalised(0, p)).abs() < 1e-5));
            assert_eq!(same, grey, "{file}");
        }
    }
}
