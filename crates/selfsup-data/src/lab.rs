//! sRGB ↔ CIE L*a*b* (D65 white), as `skimage.color.rgb2lab` / `lab2rgb`: the colour space of
//! the colorization pretext task (the model sees L, predicts a and b).

/// sRGB → XYZ for linear RGB, D65 (skimage's `xyz_from_rgb`).
const XYZ_FROM_RGB: [[f64; 3]; 3] = [
    [0.412453, 0.357580, 0.180423],
    [0.212671, 0.715160, 0.072169],
    [0.019334, 0.119193, 0.950227],
];
/// D65 reference white (2° observer).
const WHITE: [f64; 3] = [0.95047, 1.0, 1.08883];

fn srgb_to_linear(c: f64) -> f64 {
    if c > 0.04045 {
        ((c + 0.055) / 1.055).powf(2.4)
    } else {
        c / 12.92
    }
}

fn linear_to_srgb(c: f64) -> f64 {
    if c > 0.0031308 {
        1.055 * c.powf(1.0 / 2.4) - 0.055
    } else {
        12.92 * c
    }
}

/// One sRGB pixel with channels in [0, 1] → (L in [0, 100], a, b).
pub fn rgb_to_lab(rgb: [f32; 3]) -> [f32; 3] {
    let lin = rgb.map(|c| srgb_to_linear(c as f64));
    let f = |i: usize| {
        let t = (0..3).map(|j| XYZ_FROM_RGB[i][j] * lin[j]).sum::<f64>() / WHITE[i];
        if t > 0.008856 {
            t.cbrt()
        } else {
            7.787 * t + 16.0 / 116.0
        }
    };
    let (fx, fy, fz) = (f(0), f(1), f(2));
    [
        (116.0 * fy - 16.0) as f32,
        (500.0 * (fx - fy)) as f32,
        (200.0 * (fy - fz)) as f32,
    ]
}

/// (L, a, b) → sRGB in [0, 1] (out-of-gamut values clipped, negative Z clamped as skimage).
pub fn lab_to_rgb(lab: [f32; 3]) -> [f32; 3] {
    let [l, a, b] = lab.map(|v| v as f64);
    let fy = (l + 16.0) / 116.0;
    let f = [fy + a / 500.0, fy, (fy - b / 200.0).max(0.0)];
    let xyz: Vec<f64> = (0..3)
        .map(|i| {
            let c = f[i].powi(3);
            let t = if c > 0.008856 {
                c
            } else {
                (f[i] - 16.0 / 116.0) / 7.787
            };
            t * WHITE[i]
        })
        .collect();
    // Inverse of XYZ_FROM_RGB (skimage's rgb_from_xyz).
    const RGB_FROM_XYZ: [[f64; 3]; 3] = [
        [3.240481340, -1.537151516, -0.498536326],
        [-0.969254949, 1.875990001, 0.041555926],
        [0.055646639, -0.204041338, 1.057311069],
    ];
    let mut out = [0f32; 3];
    for (i, o) in out.iter_mut().enumerate() {
        let lin = (0..3).map(|j| RGB_FROM_XYZ[i][j] * xyz[j]).sum::<f64>();
        *o = linear_to_srgb(lin.max(0.0)).clamp(0.0, 1.0) as f32;
    }
    out
}

/// The grey image R = G = B = L*/100 of `img`, normalised with `mean`/`std` into f32 CHW `out`
/// (len 3·h·w): what a colorization encoder is pretrained on, and so what it is evaluated on.
pub fn lightness_into(img: crate::ImageView, mean: [f32; 3], std: [f32; 3], out: &mut [f32]) {
    let plane = img.h * img.w;
    assert_eq!(
        out.len(),
        3 * plane,
        "lightness output buffer has wrong length"
    );
    for (i, p) in img.data.chunks_exact(3).enumerate() {
        let l = rgb_to_lab([p[0], p[1], p[2]].map(|v| v as f32 / 255.0))[0] / 100.0;
        for c in 0..3 {
            out[c * plane + i] = (l - mean[c]) / std[c];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lightness_input_is_normalised_l_star_in_every_channel() {
        // White, black and pure red (L* 100, 0, 53.24 by the D65 tables), one row of 3 pixels.
        let data = vec![255, 255, 255, 0, 0, 0, 255, 0, 0];
        let img = crate::ImageView {
            h: 1,
            w: 3,
            data: &data,
        };
        let (mean, std) = ([0.5, 0.4, 0.3], [0.2, 0.25, 0.5]);
        let mut out = vec![0.0; 9];
        lightness_into(img, mean, std, &mut out);
        for c in 0..3 {
            for (i, l) in [1.0f32, 0.0, 0.5324].into_iter().enumerate() {
                let want = (l - mean[c]) / std[c];
                let got = out[c * 3 + i];
                assert!(
                    (got - want).abs() < 1e-3,
                    "channel {c} pixel {i}: {got} vs {want}"
                );
            }
        }
    }

    #[test]
    fn matches_skimage_and_round_trips() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/lab.json");
        let f: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let get = |k: &str| -> Vec<f32> {
            f[k].as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect()
        };
        let (rgb, lab) = (get("rgb"), get("lab"));
        assert!(rgb.len() >= 3 * 20);
        for (p, want) in rgb.chunks(3).zip(lab.chunks(3)) {
            let got = rgb_to_lab([p[0], p[1], p[2]]);
            for c in 0..3 {
                assert!(
                    (got[c] - want[c]).abs() < 2e-3,
                    "rgb {p:?}: lab {got:?}, skimage {want:?}"
                );
            }
            let back = lab_to_rgb(got);
            for c in 0..3 {
                assert!(
                    (back[c] - p[c]).abs() < 1e-4,
                    "rgb {p:?} → {got:?} → {back:?}"
                );
            }
        }
        // Hand values: white is L 100, a = b = 0; black is 0; pure sRGB red is
        // (53.24, 80.09, 67.20) in every Lab table for D65.
        let w = rgb_to_lab([1.0, 1.0, 1.0]);
        assert!(
            (w[0] - 100.0).abs() < 1e-3 && w[1].abs() < 1e-2 && w[2].abs() < 1e-2,
            "{w:?}"
        );
        assert_eq!(rgb_to_lab([0.0, 0.0, 0.0]), [0.0, 0.0, 0.0]);
        let r = rgb_to_lab([1.0, 0.0, 0.0]);
        assert!(
            (r[0] - 53.24).abs() < 0.01
                && (r[1] - 80.09).abs() < 0.01
                && (r[2] - 67.20).abs() < 0.01,
            "{r:?}"
        );
    }
}
