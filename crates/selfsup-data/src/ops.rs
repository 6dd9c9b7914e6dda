//! Deterministic cores of the augmentations: each takes its parameters explicitly.
//!
//! They reproduce torchvision's v1 *tensor* functions on uint8 images
//! (`torchvision.transforms.functional` given a uint8 CHW tensor), including
//! where torchvision truncates (colour blends, `convert_image_dtype`) and where
//! it rounds half-to-even (resize, blur).  Arithmetic is f32 as in torch.  The
//! fixtures in `fixtures/` hold torchvision's outputs for these functions.

use crate::pixels::{ImageView, RgbImage};

/// torchvision's `rgb_to_grayscale` weights for tensors (0.2989, not PIL's 0.299).
const LUMA: [f32; 3] = [0.2989, 0.587, 0.114];

/// Per-output-pixel taps of torch's antialiased bilinear resize along one axis
/// (`interpolate(mode="bilinear", antialias=True, align_corners=False)`):
/// a triangle filter widened by the downscale factor, normalised to sum 1.
struct AxisTaps {
    start: Vec<usize>,
    len: Vec<usize>,
    /// `weights[o * stride + k]` is the weight of input `start[o] + k`.
    weights: Vec<f32>,
    stride: usize,
}

fn antialias_taps(in_size: usize, out_size: usize) -> AxisTaps {
    let scale = in_size as f32 / out_size as f32;
    let (support, inv_scale) = if scale >= 1.0 {
        (scale, 1.0 / scale)
    } else {
        (1.0, 1.0)
    };
    let stride = (support.ceil() as usize) * 2 + 1;
    let mut taps = AxisTaps {
        start: Vec::with_capacity(out_size),
        len: Vec::with_capacity(out_size),
        weights: vec![0.0; out_size * stride],
        stride,
    };
    for o in 0..out_size {
        let center = scale * (o as f32 + 0.5);
        // `as i64` truncates toward zero like the C++ static_cast in torch.
        let lo = ((center - support + 0.5) as i64).max(0) as usize;
        let hi = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
        let len = hi - lo;
        let w = &mut taps.weights[o * stride..o * stride + len];
        let mut total = 0.0f32;
        for (k, wk) in w.iter_mut().enumerate() {
            let x = ((k + lo) as f32 - center + 0.5) * inv_scale;
            *wk = (1.0 - x.abs()).max(0.0);
            total += *wk;
        }
        if total != 0.0 {
            w.iter_mut().for_each(|wk| *wk /= total);
        }
        taps.start.push(lo);
        taps.len.push(len);
    }
    taps
}

fn round_u8(v: f32) -> u8 {
    v.round_ties_even().clamp(0.0, 255.0) as u8
}

/// `F.resized_crop(img, top, left, height, width, [out_h, out_w], antialias=True)`:
/// crops the box and resizes it with antialiased bilinear interpolation.
/// Panics if the box leaves the image (torchvision would zero-pad).
pub fn resized_crop(
    img: ImageView,
    top: usize,
    left: usize,
    height: usize,
    width: usize,
    out_h: usize,
    out_w: usize,
) -> RgbImage {
    assert!(
        height > 0 && width > 0 && top + height <= img.h && left + width <= img.w,
        "crop box ({top},{left},{height},{width}) outside {}x{} image",
        img.h,
        img.w
    );
    assert!(out_h > 0 && out_w > 0, "resize target must be non-empty");
    let tx = antialias_taps(width, out_w);
    let ty = antialias_taps(height, out_h);
    // Horizontal pass first (as torch does), kept in f32 without rounding.
    let mut rows = vec![0.0f32; height * out_w * 3];
    for y in 0..height {
        let src = &img.data[((top + y) * img.w + left) * 3..((top + y) * img.w + left + width) * 3];
        let dst = &mut rows[y * out_w * 3..(y + 1) * out_w * 3];
        for ox in 0..out_w {
            let w = &tx.weights[ox * tx.stride..ox * tx.stride + tx.len[ox]];
            let mut acc = [0.0f32; 3];
            for (k, &wk) in w.iter().enumerate() {
                let p = &src[(tx.start[ox] + k) * 3..(tx.start[ox] + k) * 3 + 3];
                acc[0] += wk * p[0] as f32;
                acc[1] += wk * p[1] as f32;
                acc[2] += wk * p[2] as f32;
            }
            dst[ox * 3..ox * 3 + 3].copy_from_slice(&acc);
        }
    }
    let mut out = vec![0u8; out_h * out_w * 3];
    let row_len = out_w * 3;
    let mut acc = vec![0.0f32; row_len];
    for oy in 0..out_h {
        acc.iter_mut().for_each(|a| *a = 0.0);
        let w = &ty.weights[oy * ty.stride..oy * ty.stride + ty.len[oy]];
        for (k, &wk) in w.iter().enumerate() {
            let src = &rows[(ty.start[oy] + k) * row_len..(ty.start[oy] + k + 1) * row_len];
            acc.iter_mut().zip(src).for_each(|(a, &s)| *a += wk * s);
        }
        out[oy * row_len..(oy + 1) * row_len]
            .iter_mut()
            .zip(&acc)
            .for_each(|(o, &a)| *o = round_u8(a));
    }
    RgbImage::new(out_h, out_w, out)
}

/// `F.resize(img, size, antialias=True)` (shorter side to `size`) then `F.center_crop(size)`.
pub fn resize_center_crop(img: ImageView, size: usize) -> RgbImage {
    let (h, w) = (img.h, img.w);
    // torchvision: the long side is int(size * long / short), truncated.
    let (new_h, new_w) = if h <= w {
        (size, (size as f64 * w as f64 / h as f64) as usize)
    } else {
        ((size as f64 * h as f64 / w as f64) as usize, size)
    };
    let resized = resized_crop(img, 0, 0, h, w, new_h, new_w);
    let top = ((new_h - size) as f64 / 2.0).round_ties_even() as usize;
    let left = ((new_w - size) as f64 / 2.0).round_ties_even() as usize;
    crop(resized.view(), top, left, size, size)
}

/// Plain in-bounds crop.
pub fn crop(img: ImageView, top: usize, left: usize, height: usize, width: usize) -> RgbImage {
    assert!(
        top + height <= img.h && left + width <= img.w,
        "crop outside image"
    );
    let mut data = Vec::with_capacity(height * width * 3);
    for y in top..top + height {
        data.extend_from_slice(&img.data[(y * img.w + left) * 3..(y * img.w + left + width) * 3]);
    }
    RgbImage::new(height, width, data)
}

/// `F.crop(F.pad(img, padding, fill=0), top, left, height, width)`: a crop of the image
/// zero-padded by `padding` on every side; `top`/`left` are in padded coordinates.
pub fn padded_crop(
    img: ImageView,
    padding: usize,
    top: usize,
    left: usize,
    height: usize,
    width: usize,
) -> RgbImage {
    assert!(
        top + height <= img.h + 2 * padding && left + width <= img.w + 2 * padding,
        "crop ({top},{left},{height},{width}) outside the {}x{} image padded by {padding}",
        img.h,
        img.w
    );
    let mut data = vec![0u8; height * width * 3];
    for (y, row) in data.chunks_exact_mut(width * 3).enumerate() {
        // Source row in unpadded coordinates; rows in the padding stay zero.
        let Some(sy) = (top + y).checked_sub(padding).filter(|&sy| sy < img.h) else {
            continue;
        };
        // Columns [x0, x1) of the output fall inside the image.
        let x0 = padding.saturating_sub(left).min(width);
        let x1 = (img.w + padding).saturating_sub(left).min(width).max(x0);
        let sx0 = left + x0 - padding;
        row[x0 * 3..x1 * 3]
            .copy_from_slice(&img.data[(sy * img.w + sx0) * 3..(sy * img.w + sx0 + x1 - x0) * 3]);
    }
    RgbImage::new(height, width, data)
}

pub fn hflip(img: &mut RgbImage) {
    for row in img.data.chunks_exact_mut(img.w * 3) {
        let (mut i, mut j) = (0, img.w.saturating_sub(1));
        while i < j {
            for c in 0..3 {
                row.swap(i * 3 + c, j * 3 + c);
            }
            i += 1;
            j -= 1;
        }
    }
}

/// torchvision's uint8 grayscale: `(0.2989 r + 0.587 g + 0.114 b)` truncated.
fn luma_u8(p: &[u8]) -> u8 {
    (LUMA[0] * p[0] as f32 + LUMA[1] * p[1] as f32 + LUMA[2] * p[2] as f32) as u8
}

/// `F.rgb_to_grayscale(img, num_output_channels=3)`.
pub fn rgb_to_grayscale(img: &mut RgbImage) {
    for p in img.data.chunks_exact_mut(3) {
        let l = luma_u8(p);
        p.fill(l);
    }
}

/// torchvision `_blend`: `(ratio * x + (1 - ratio) * other).clamp(0, 255)` truncated to u8.
#[inline]
fn blend(x: u8, other_scaled: f32, ratio: f32) -> u8 {
    (ratio * x as f32 + other_scaled).clamp(0.0, 255.0) as u8
}

/// `F.adjust_brightness`: blend with black.
pub fn adjust_brightness(img: &mut RgbImage, factor: f64) {
    let ratio = factor as f32;
    img.data.iter_mut().for_each(|x| *x = blend(*x, 0.0, ratio));
}

/// `F.adjust_contrast`: blend with the mean of the (truncated u8) grayscale image.
pub fn adjust_contrast(img: &mut RgbImage, factor: f64) {
    let n = (img.h * img.w).max(1);
    let sum: f64 = img.data.chunks_exact(3).map(|p| luma_u8(p) as f64).sum();
    let mean = (sum / n as f64) as f32;
    let other = (1.0 - factor) as f32 * mean;
    let ratio = factor as f32;
    img.data
        .iter_mut()
        .for_each(|x| *x = blend(*x, other, ratio));
}

/// `F.adjust_saturation`: blend each pixel with its own grayscale value.
pub fn adjust_saturation(img: &mut RgbImage, factor: f64) {
    let ratio = factor as f32;
    let other_w = (1.0 - factor) as f32;
    for p in img.data.chunks_exact_mut(3) {
        let other = other_w * luma_u8(p) as f32;
        for x in p.iter_mut() {
            *x = blend(*x, other, ratio);
        }
    }
}

/// `F.adjust_hue`: rotate hue by `factor` turns (in [-0.5, 0.5]) in HSV space,
/// with torchvision's float conversions (`/255` in, `*255.999` truncated out).
pub fn adjust_hue(img: &mut RgbImage, factor: f64) {
    assert!(
        (-0.5..=0.5).contains(&factor),
        "hue factor {factor} not in [-0.5, 0.5]"
    );
    let shift = factor as f32;
    for p in img.data.chunks_exact_mut(3) {
        let (r, g, b) = (
            p[0] as f32 / 255.0,
            p[1] as f32 / 255.0,
            p[2] as f32 / 255.0,
        );
        let (h, s, v) = rgb_to_hsv(r, g, b);
        let h = h + shift;
        let h = h - h.floor(); // Python-style `% 1.0`
        let rgb = hsv_to_rgb(h, s, v);
        for (x, c) in p.iter_mut().zip(rgb) {
            *x = (c * 255.999) as u8;
        }
    }
}

/// torchvision `_rgb2hsv` for one pixel.
fn rgb_to_hsv(r: f32, g: f32, b: f32) -> (f32, f32, f32) {
    let maxc = r.max(g).max(b);
    let minc = r.min(g).min(b);
    let eqc = maxc == minc;
    let cr = maxc - minc;
    let s = cr / if eqc { 1.0 } else { maxc };
    let div = if eqc { 1.0 } else { cr };
    let (rc, gc, bc) = ((maxc - r) / div, (maxc - g) / div, (maxc - b) / div);
    let h = if maxc == r {
        bc - gc
    } else if maxc == g {
        2.0 + rc - bc
    } else {
        4.0 + gc - rc
    };
    let h = (h / 6.0 + 1.0) % 1.0; // torch.fmod; the argument is positive here
    (h, s, maxc)
}

/// torchvision `_hsv2rgb` for one pixel.
fn hsv_to_rgb(h: f32, s: f32, v: f32) -> [f32; 3] {
    let i = (h * 6.0).floor();
    let f = h * 6.0 - i;
    let p = (v * (1.0 - s)).clamp(0.0, 1.0);
    let q = (v * (1.0 - s * f)).clamp(0.0, 1.0);
    let t = (v * (1.0 - s * (1.0 - f))).clamp(0.0, 1.0);
    match (i as i32).rem_euclid(6) {
        0 => [v, t, p],
        1 => [q, v, p],
        2 => [p, v, t],
        3 => [p, q, v],
        4 => [t, p, v],
        _ => [v, p, q],
    }
}

/// `F.solarize`: invert every value >= threshold.
pub fn solarize(img: &mut RgbImage, threshold: u8) {
    img.data.iter_mut().for_each(|x| {
        if *x >= threshold {
            *x = 255 - *x
        }
    });
}

/// Reflect-padding index (`torch.nn.functional.pad(mode="reflect")`, edge not repeated),
/// folded repeatedly so kernels wider than the image still work.
fn reflect(i: isize, n: usize) -> usize {
    if n == 1 {
        return 0;
    }
    let period = 2 * (n as isize - 1);
    let m = i.rem_euclid(period);
    (if m < n as isize { m } else { period - m }) as usize
}

/// `F.gaussian_blur(img, [k, k], [sigma, sigma])`: separable Gaussian, reflect padding,
/// rounded half-to-even.  `kernel_size` must be odd.
pub fn gaussian_blur(img: ImageView, kernel_size: usize, sigma: f64) -> RgbImage {
    assert!(
        kernel_size % 2 == 1,
        "gaussian blur kernel size must be odd, got {kernel_size}"
    );
    let half = (kernel_size / 2) as isize;
    let sigma = sigma as f32;
    let mut kernel: Vec<f32> = (0..kernel_size)
        .map(|k| {
            let x = (k as isize - half) as f32 / sigma;
            (-0.5 * x * x).exp()
        })
        .collect();
    let total: f32 = kernel.iter().sum();
    kernel.iter_mut().for_each(|k| *k /= total);

    let (h, w) = (img.h, img.w);
    let mut tmp = vec![0.0f32; h * w * 3];
    for y in 0..h {
        for x in 0..w {
            let mut acc = [0.0f32; 3];
            for (k, &kw) in kernel.iter().enumerate() {
                let sx = reflect(x as isize + k as isize - half, w);
                let p = &img.data[(y * w + sx) * 3..(y * w + sx) * 3 + 3];
                acc[0] += kw * p[0] as f32;
                acc[1] += kw * p[1] as f32;
                acc[2] += kw * p[2] as f32;
            }
            tmp[(y * w + x) * 3..(y * w + x) * 3 + 3].copy_from_slice(&acc);
        }
    }
    let mut out = vec![0u8; h * w * 3];
    for y in 0..h {
        for x in 0..w * 3 {
            let mut acc = 0.0f32;
            for (k, &kw) in kernel.iter().enumerate() {
                let sy = reflect(y as isize + k as isize - half, h);
                acc += kw * tmp[sy * w * 3 + x];
            }
            out[y * w * 3 + x] = round_u8(acc);
        }
    }
    RgbImage::new(h, w, out)
}

/// `ToTensor` + `Normalize(mean, std)`: writes f32 CHW into `out` (len 3*h*w).
pub fn normalize_into(img: ImageView, mean: [f32; 3], std: [f32; 3], out: &mut [f32]) {
    let plane = img.h * img.w;
    assert_eq!(
        out.len(),
        3 * plane,
        "normalize output buffer has wrong length"
    );
    for c in 0..3 {
        let dst = &mut out[c * plane..(c + 1) * plane];
        for (d, p) in dst.iter_mut().zip(img.data.chunks_exact(3)) {
            *d = (p[c] as f32 / 255.0 - mean[c]) / std[c];
        }
    }
}
