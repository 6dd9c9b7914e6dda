//! The pictures `selfsup report` draws for the predictive image methods: for MAE (masked
//! input | reconstruction | original) and for colorization (grey input | predicted colours |
//! original), one row per test image.

use std::path::Path;

use burn::prelude::*;
use selfsup_core::{Context, DownstreamTask, Error, Picture, Result, TaskSource};
use selfsup_data::{EncoderInput, SampleRng, Split};
use selfsup_methods::ImageMethod;
use selfsup_methods::colorization::{Colorization, lab_pictures, lab_split};
use selfsup_methods::mae::Mae;
use selfsup_methods::method::ImageMethodConfig;
use selfsup_models::load_named_tensors;

use crate::task::ImageTask;
use crate::{Image, backbone_config, context, data};

/// Images in a picture grid and the magnification of each 32×32 cell.
const ROWS: usize = 8;
const ZOOM: usize = 4;
const GAP: usize = 4;

/// For an MAE or colorization run, writes `out_dir/<method>_pictures.png` from the task's
/// checkpoint on the first image of each of `ROWS` classes of the test split; nothing for
/// other methods.
pub fn write(source: &TaskSource<Image>, task: &ImageTask, out_dir: &Path) -> Result<Vec<Picture>> {
    let config = &source.config;
    let method = config.method_name();
    if !matches!(
        config.method,
        ImageMethod::Mae(_) | ImageMethod::Colorization(_)
    ) {
        return Ok(Vec::new());
    }
    let ckpt = &source.checkpoint.path;
    let dev = task.device().clone();
    let dataset = task.dataset(Split::Test).clone();
    // One image per class where labels allow, so the rows differ.
    let mut picked: Vec<usize> = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for i in 0..dataset.len() {
        if picked.len() == ROWS {
            break;
        }
        if seen.insert(dataset.label(i)) || dataset.label(i).is_none() {
            picked.push(i);
        }
    }
    for i in 0..dataset.len() {
        if picked.len() == ROWS {
            break;
        }
        if !picked.contains(&i) {
            picked.push(i);
        }
    }
    // The grid shows the images themselves, in colour, whatever the encoder is fed.
    let pipeline = data::eval_pipeline(config)?.with_input(EncoderInput::Rgb);
    let s = config.data.input_size;
    let mut pixels = vec![0f32; picked.len() * 3 * s * s];
    let mut rng = SampleRng::for_sample(0, 0, 0, 0);
    for (row, &i) in picked.iter().enumerate() {
        let len = 3 * s * s;
        pipeline.apply_into(
            dataset.image(i).view(),
            &mut rng,
            &mut pixels[row * len..(row + 1) * len],
        );
    }
    let n = picked.len();
    let x = Tensor::<4>::from_data(TensorData::new(pixels, [n, 3, s, s]), &dev);
    let norm = data::normalization(config);
    let model_tensors = source.checkpoint.section("model");
    let fit = |e: selfsup_models::ModelError| {
        Error::msg(format!(
            "checkpoint {} does not fit its model: {e}",
            ckpt.display()
        ))
    };
    let backbone = backbone_config(config)?;
    let ctx = context(config, &backbone, None);
    let (columns, caption): (Vec<Vec<Vec<f32>>>, String) = if let ImageMethod::Mae(m) =
        &config.method
    {
        let mae: Mae = load_named_tensors(m.init(&ctx, &dev), &model_tensors, "").map_err(fit)?;
        let mae = mae.valid();
        let mask = mae.mask(n, config.train.seed);
        let vit = mae.vit();
        let patches = vit.patchify(x.clone());
        let (pred, _) = mae.predict(x.clone(), &mask);
        let [_, np, p] = patches.dims();
        let orig = patches
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .expect("f32");
        let pred = pred
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .expect("f32");
        let (mut masked, mut recon) = (orig.clone(), orig.clone());
        for (b, hidden) in mask.hidden.iter().enumerate() {
            for &k in hidden {
                let at = (b * np + k) * p;
                let patch = &orig[at..at + p];
                // With norm_pix_loss the prediction is in per-patch normalised units: shown with
                // the true patch's mean and variance, as MAE's own visualisation does.
                let (mean, sd) = if m.norm_pix_loss {
                    let mean = patch.iter().sum::<f32>() / p as f32;
                    let var = patch.iter().map(|v| (v - mean).powi(2)).sum::<f32>()
                        / (p as f32 - 1.0).max(1.0);
                    (mean, (var + 1e-6).sqrt())
                } else {
                    (0.0, 1.0)
                };
                for j in 0..p {
                    recon[at + j] = pred[at + j] * sd + mean;
                    masked[at + j] = f32::NAN; // drawn grey
                }
            }
        }
        let to_pictures = |v: Vec<f32>| -> Vec<Vec<f32>> {
            let img = vit.unpatchify(Tensor::from_data(TensorData::new(v, [n, np, p]), &dev));
            normalised_to_pictures(img, &norm)
        };
        (
            vec![to_pictures(masked), to_pictures(recon), to_pictures(orig)],
            format!(
                "MAE on {n} test images (rows). Columns: input with {:.0}% of the patches hidden (grey), \
                 reconstruction (hidden patches predicted, visible ones copied), original.",
                100.0 * m.mask_ratio
            ),
        )
    } else if let ImageMethod::Colorization(m) = &config.method {
        let model: Colorization =
            load_named_tensors(m.init(&ctx, &dev), &model_tensors, "").map_err(fit)?;
        let model = model.valid();
        let normalization = selfsup_methods::colorization::Normalization {
            mean: norm.mean,
            std: norm.std,
        };
        let (grey, target, lightness) = lab_split(x, &normalization);
        let pred = model.predict_ab(grey);
        let zero = Tensor::<4>::zeros(target.dims(), &dev);
        (
            vec![
                lab_pictures(&lightness, zero),
                lab_pictures(&lightness, pred),
                lab_pictures(&lightness, target),
            ],
            format!(
                "Colorization on {n} test images (rows). Columns: the encoder's input (L* only), \
                 predicted colours (L* with the predicted a*b*), original."
            ),
        )
    } else {
        return Ok(Vec::new());
    };
    let file = format!("{method}_pictures.png");
    write_grid(&out_dir.join(&file), &columns, s)?;
    Ok(vec![Picture {
        file,
        title: "Pictures".into(),
        caption: format!(
            "{caption} Checkpoint {} (epoch {}).",
            ckpt.display(),
            source.checkpoint.state.epoch
        ),
    }])
}

/// `[N, 3, H, W]` in the run's normalisation → `[N][H·W·3]` sRGB in [0, 1] (NaN kept).
fn normalised_to_pictures(x: Tensor<4>, norm: &selfsup_data::Normalization) -> Vec<Vec<f32>> {
    let [n, _, h, w] = x.dims();
    let v = x
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .expect("f32");
    let hw = h * w;
    (0..n)
        .map(|i| {
            (0..hw)
                .flat_map(|p| {
                    let v = &v;
                    (0..3).map(move |c| v[(i * 3 + c) * hw + p] * norm.std[c] + norm.mean[c])
                })
                .collect()
        })
        .collect()
}

/// A PNG with one row per image and one column per entry of `columns` (each `[N][s·s·3]`),
/// every pixel drawn `ZOOM`×`ZOOM`; NaN pixels are grey, others clipped to [0, 1].
fn write_grid(path: &Path, columns: &[Vec<Vec<f32>>], s: usize) -> Result<()> {
    let rows = columns[0].len();
    let cell = s * ZOOM;
    let width = columns.len() * (cell + GAP) + GAP;
    let height = rows * (cell + GAP) + GAP;
    let mut img =
        image::RgbImage::from_pixel(width as u32, height as u32, image::Rgb([255, 255, 255]));
    for (col, pics) in columns.iter().enumerate() {
        for (row, pic) in pics.iter().enumerate() {
            let (x0, y0) = (GAP + col * (cell + GAP), GAP + row * (cell + GAP));
            for y in 0..cell {
                for x in 0..cell {
                    let p = ((y / ZOOM) * s + x / ZOOM) * 3;
                    let rgb: [u8; 3] = std::array::from_fn(|c| {
                        let v = pic[p + c];
                        if v.is_nan() {
                            128
                        } else {
                            (v.clamp(0.0, 1.0) * 255.0).round() as u8
                        }
                    });
                    img.put_pixel((x0 + x) as u32, (y0 + y) as u32, image::Rgb(rgb));
                }
            }
        }
    }
    img.save(path)
        .map_err(Error::other)
        .with_context(|| format!("cannot write {}", path.display()))
}
