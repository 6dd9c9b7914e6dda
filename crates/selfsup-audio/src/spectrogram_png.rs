//! Log-mel spectrogram pictures for audio reports: rows of clips side by side, low frequencies
//! at the bottom, masked frames in blue.

use std::path::Path;

use selfsup_core::{Context, Error, Result};

use crate::features::Spectrogram;

const SCALE_X: u32 = 2;
const SCALE_Y: u32 = 3;
const GAP: u32 = 6;
const MASKED: [u8; 3] = [60, 160, 200];

/// Black → purple → orange → pale yellow (magma-like), for `v` in [0, 1].
fn colour(v: f32) -> [u8; 3] {
    let stops = [
        (0.0, [0.0, 0.0, 4.0]),
        (0.35, [114.0, 31.0, 129.0]),
        (0.7, [241.0, 96.0, 93.0]),
        (1.0, [252.0, 253.0, 191.0]),
    ];
    let v = v.clamp(0.0, 1.0);
    for w in stops.windows(2) {
        let ((a, ca), (b, cb)) = (w[0], w[1]);
        if v <= b {
            let t = (v - a) / (b - a);
            return [0, 1, 2].map(|i| (ca[i] + t * (cb[i] - ca[i])) as u8);
        }
    }
    [252, 253, 191]
}

/// The 1st and 99th percentiles of every value: the colour range.
fn range(rows: &[Vec<Spectrogram>]) -> (f32, f32) {
    let mut v: Vec<f32> = rows
        .iter()
        .flatten()
        .flat_map(|s| s.data.iter().copied())
        .filter(|x| x.is_finite())
        .collect();
    if v.is_empty() {
        return (0.0, 1.0);
    }
    v.sort_by(f32::total_cmp);
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    let (lo, hi) = (at(0.01), at(0.99));
    (lo, if hi > lo { hi } else { lo + 1.0 })
}

/// Writes `rows` (each the same clips, e.g. input / masked input / reconstruction) as one PNG;
/// frame `t` of clip `c` with `masks[c][t]` is painted blue in the rows of `masked_rows` and
/// underlined in blue in those of `underlined_rows`.
pub fn write(
    path: &Path,
    rows: &[Vec<Spectrogram>],
    masks: &[Vec<bool>],
    masked_rows: &[usize],
    underlined_rows: &[usize],
) -> Result<(u32, u32)> {
    let clips = &rows[0];
    let n_mels = clips[0].n_mels as u32;
    let width = clips
        .iter()
        .map(|s| s.frames as u32 * SCALE_X + GAP)
        .sum::<u32>()
        - GAP;
    // The last row keeps its gap when it is underlined.
    let height = rows.len() as u32 * (n_mels * SCALE_Y + GAP);
    let (lo, hi) = range(rows);
    let mut img = image::RgbImage::from_pixel(width, height, image::Rgb([255, 255, 255]));
    for (r, row) in rows.iter().enumerate() {
        let y0 = r as u32 * (n_mels * SCALE_Y + GAP);
        let mut x0 = 0;
        for (c, s) in row.iter().enumerate() {
            for t in 0..s.frames {
                let is_masked = masks.get(c).is_some_and(|m| m.get(t) == Some(&true));
                let blank = masked_rows.contains(&r) && is_masked;
                if underlined_rows.contains(&r) && is_masked {
                    for dx in 0..SCALE_X {
                        for dy in 1..GAP - 1 {
                            let y = y0 + n_mels * SCALE_Y + dy;
                            img.put_pixel(x0 + t as u32 * SCALE_X + dx, y, image::Rgb(MASKED));
                        }
                    }
                }
                for m in 0..s.n_mels {
                    let rgb = if blank {
                        MASKED
                    } else {
                        colour((s.frame(t)[m] - lo) / (hi - lo))
                    };
                    for dx in 0..SCALE_X {
                        for dy in 0..SCALE_Y {
                            let y = y0 + (n_mels - 1 - m as u32) * SCALE_Y + dy;
                            img.put_pixel(x0 + t as u32 * SCALE_X + dx, y, image::Rgb(rgb));
                        }
                    }
                }
            }
            x0 += s.frames as u32 * SCALE_X + GAP;
        }
    }
    img.save(path)
        .map_err(Error::other)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok((width, height))
}
