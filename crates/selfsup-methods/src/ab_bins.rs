//! Colorization as classification (Zhang et al. 2016, §2.1–2.2): the a*b* plane quantised into
//! bins of side 10, each pixel's colour soft-encoded over its 5 nearest bins (Gaussian, σ = 5),
//! rare colours up-weighted by the inverse of a smoothed, uniform-mixed prior, and predictions
//! turned back into colours by the annealed mean (T = 0.38).
//!
//! The bins are every grid cell (a*, b* rounded to multiples of 10) that some 8-bit sRGB colour
//! falls into: 261 cells. Zhang et al.'s 313 came from a looser gamut estimate; the method is the
//! same, only the count of never-seen outer bins differs.

use std::sync::OnceLock;

use selfsup_data::ImageRef;
use selfsup_data::lab::rgb_to_lab;

/// Side of a bin in a*b* units.
pub const BIN_SIZE: f32 = 10.0;
/// Bins each pixel's colour is spread over.
pub const SOFT_NEIGHBOURS: usize = 5;
/// Width of the soft-encoding Gaussian and of the prior's smoothing kernel, a*b* units.
pub const SIGMA: f32 = 5.0;
/// Zhang et al.'s annealed-mean temperature: between the mean (T = 1, desaturated) and the
/// mode (T → 0, patchy).
pub const ANNEALED_TEMPERATURE: f32 = 0.38;

/// Grid cells span a*, b* ∈ [-120, 120]: indices -12..=12 along each axis.
const GRID_HALF: i32 = 12;
const GRID_SIDE: usize = (2 * GRID_HALF + 1) as usize;

/// The quantised a*b* gamut: bin centres and a grid lookup from cell to bin.
#[derive(Debug, Clone)]
pub struct AbBins {
    centres: Vec<[f32; 2]>,
    /// `GRID_SIDE²` cells, row = a index, column = b index; the bin in that cell, if any.
    cell_bin: Vec<Option<u32>>,
}

fn cell_index(v: f32) -> i32 {
    (v / BIN_SIZE).round() as i32
}

fn grid_slot(ai: i32, bi: i32) -> Option<usize> {
    let range = -GRID_HALF..=GRID_HALF;
    (range.contains(&ai) && range.contains(&bi))
        .then(|| (ai + GRID_HALF) as usize * GRID_SIDE + (bi + GRID_HALF) as usize)
}

impl AbBins {
    /// The bins of the 8-bit sRGB gamut (computed once per process, all 2^24 colours).
    pub fn srgb() -> &'static AbBins {
        static BINS: OnceLock<AbBins> = OnceLock::new();
        BINS.get_or_init(|| {
            let mut occupied = vec![false; GRID_SIDE * GRID_SIDE];
            let mut rgb = [0f32; 3];
            for r in 0..256 {
                rgb[0] = r as f32 / 255.0;
                for g in 0..256 {
                    rgb[1] = g as f32 / 255.0;
                    for b in 0..256 {
                        rgb[2] = b as f32 / 255.0;
                        let [_, a, bb] = rgb_to_lab(rgb);
                        let slot = grid_slot(cell_index(a), cell_index(bb))
                            .expect("sRGB a*b* lies within ±120");
                        occupied[slot] = true;
                    }
                }
            }
            Self::from_cells(&occupied)
        })
    }

    fn from_cells(occupied: &[bool]) -> AbBins {
        let mut centres = Vec::new();
        let mut cell_bin = vec![None; GRID_SIDE * GRID_SIDE];
        for (slot, _) in occupied.iter().enumerate().filter(|(_, o)| **o) {
            let ai = (slot / GRID_SIDE) as i32 - GRID_HALF;
            let bi = (slot % GRID_SIDE) as i32 - GRID_HALF;
            cell_bin[slot] = Some(centres.len() as u32);
            centres.push([ai as f32 * BIN_SIZE, bi as f32 * BIN_SIZE]);
        }
        AbBins { centres, cell_bin }
    }

    pub fn len(&self) -> usize {
        self.centres.len()
    }

    pub fn is_empty(&self) -> bool {
        self.centres.is_empty()
    }

    pub fn centres(&self) -> &[[f32; 2]] {
        &self.centres
    }

    /// The `SOFT_NEIGHBOURS` bins nearest to `ab` (nearest first) with Gaussian weights
    /// `exp(-d²/2σ²)` normalised to sum to 1.
    pub fn soft_encode(&self, ab: [f32; 2]) -> [(u32, f32); SOFT_NEIGHBOURS] {
        let dist2 = |q: usize| {
            let c = self.centres[q];
            (c[0] - ab[0]).powi(2) + (c[1] - ab[1]).powi(2)
        };
        // Bins outside the 7×7 cells around `ab`'s cell are more than 2.5 bins away, so when
        // 5 bins lie within that distance they are the 5 nearest; else search every bin.
        const RADIUS: i32 = 3;
        let reach = (RADIUS as f32 - 0.5) * BIN_SIZE;
        let (ac, bc) = (cell_index(ab[0]), cell_index(ab[1]));
        let mut candidates: Vec<(f32, u32)> = Vec::with_capacity(49);
        for ai in ac - RADIUS..=ac + RADIUS {
            for bi in bc - RADIUS..=bc + RADIUS {
                if let Some(q) = grid_slot(ai, bi).and_then(|s| self.cell_bin[s]) {
                    candidates.push((dist2(q as usize), q));
                }
            }
        }
        let within = candidates
            .iter()
            .filter(|(d, _)| *d <= reach * reach)
            .count();
        if within < SOFT_NEIGHBOURS {
            candidates = (0..self.len()).map(|q| (dist2(q), q as u32)).collect();
        }
        candidates.sort_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)));
        let mut out = [(0u32, 0f32); SOFT_NEIGHBOURS];
        let mut total = 0.0;
        // Relative to the nearest: far outside the gamut every exp(-d²/2σ²) underflows.
        let nearest = candidates[0].0;
        for (slot, (d2, q)) in out.iter_mut().zip(&candidates) {
            let w = (-(d2 - nearest) / (2.0 * SIGMA * SIGMA)).exp();
            *slot = (*q, w);
            total += w;
        }
        for slot in &mut out {
            slot.1 /= total;
        }
        out
    }

    /// The bin of `ab`'s nearest centre.
    pub fn nearest(&self, ab: [f32; 2]) -> u32 {
        self.soft_encode(ab)[0].0
    }

    /// Per-bin class-rebalancing weights `w ∝ ((1-λ)·p̃ + λ/Q)^-1` (λ ∈ (0, 1]), normalised so that
    /// `Σ p̃_q w_q = 1`, where p̃ is `counts` (hard bin assignments) normalised and smoothed
    /// with a Gaussian of width σ over the a*b* plane. λ = 1 gives every bin weight 1.
    pub fn rebalancing_weights(&self, counts: &[f64], lambda: f64) -> Vec<f32> {
        assert_eq!(counts.len(), self.len(), "one count per bin");
        assert!(
            lambda > 0.0 && lambda <= 1.0,
            "λ must be in (0, 1]: at 0 unseen bins get infinite weight"
        );
        let total: f64 = counts.iter().sum();
        assert!(total > 0.0, "the prior needs at least one pixel");
        let q = self.len();
        let s2 = 2.0 * (SIGMA as f64).powi(2);
        let mut smoothed: Vec<f64> = (0..q)
            .map(|i| {
                let ci = self.centres[i];
                (0..q)
                    .map(|j| {
                        let cj = self.centres[j];
                        let d2 =
                            ((ci[0] - cj[0]) as f64).powi(2) + ((ci[1] - cj[1]) as f64).powi(2);
                        counts[j] / total * (-d2 / s2).exp()
                    })
                    .sum::<f64>()
            })
            .collect();
        let norm: f64 = smoothed.iter().sum();
        smoothed.iter_mut().for_each(|p| *p /= norm);
        let raw: Vec<f64> = smoothed
            .iter()
            .map(|p| 1.0 / ((1.0 - lambda) * p + lambda / q as f64))
            .collect();
        let expectation: f64 = smoothed.iter().zip(&raw).map(|(p, w)| p * w).sum();
        raw.iter().map(|w| (w / expectation) as f32).collect()
    }

    /// Hard bin counts of the a*b* colours of `images`' pixels, each image first averaged over
    /// 2×2 blocks as the classification target is ([`block_means`]).
    pub fn count_images<'a>(&self, images: impl IntoIterator<Item = ImageRef<'a>>) -> Vec<f64> {
        let mut counts = vec![0f64; self.len()];
        let mut ab = Vec::new();
        for img in images {
            let img = img.view();
            ab.clear();
            ab.extend(img.data.chunks_exact(3).map(|p| {
                let [_, a, b] = rgb_to_lab([p[0], p[1], p[2]].map(|v| v as f32 / 255.0));
                [a, b]
            }));
            for colour in block_means(img.h, img.w, |y, x| ab[y * img.w + x]) {
                counts[self.nearest(colour) as usize] += 1.0;
            }
        }
        counts
    }

    /// Expected colour under `softmax(logits / T)` over the bins (the annealed mean).
    pub fn annealed_mean(&self, logits: &[f32], temperature: f32) -> [f32; 2] {
        assert_eq!(logits.len(), self.len(), "one logit per bin");
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut total = 0.0;
        let mut ab = [0f32; 2];
        for (l, c) in logits.iter().zip(&self.centres) {
            let p = ((l - max) / temperature).exp();
            total += p;
            ab[0] += p * c[0];
            ab[1] += p * c[1];
        }
        [ab[0] / total, ab[1] / total]
    }
}

/// The mean a*b* of each 2×2 block of an `h`×`w` image whose pixel (y, x) is `pixel(y, x)`,
/// blocks in row-major order (an odd last row or column is dropped): the colour a
/// classification target encodes.
pub fn block_means<F>(h: usize, w: usize, pixel: F) -> impl Iterator<Item = [f32; 2]>
where
    F: Fn(usize, usize) -> [f32; 2] + Copy,
{
    (0..h / 2).flat_map(move |y| {
        (0..w / 2).map(move |x| {
            let block =
                [(0, 0), (0, 1), (1, 0), (1, 1)].map(|(dy, dx)| pixel(2 * y + dy, 2 * x + dx));
            let s = block
                .iter()
                .fold([0f32; 2], |acc, v| [acc[0] + v[0], acc[1] + v[1]]);
            [s[0] / 4.0, s[1] / 4.0]
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use selfsup_data::ImageView;

    #[test]
    fn the_srgb_gamut_has_261_bins_on_the_10_grid() {
        let bins = AbBins::srgb();
        // numpy over all 2^24 sRGB colours with the same D65 formulas: 261 occupied cells,
        // a* centres -90..100, b* centres -110..90.
        assert_eq!(bins.len(), 261);
        let a: Vec<f32> = bins.centres().iter().map(|c| c[0]).collect();
        let b: Vec<f32> = bins.centres().iter().map(|c| c[1]).collect();
        assert_eq!(a.iter().copied().fold(f32::MAX, f32::min), -90.0);
        assert_eq!(a.iter().copied().fold(f32::MIN, f32::max), 100.0);
        assert_eq!(b.iter().copied().fold(f32::MAX, f32::min), -110.0);
        assert_eq!(b.iter().copied().fold(f32::MIN, f32::max), 90.0);
        // Grey is in its own bin at the origin.
        let grey = bins.nearest([0.3, -0.2]) as usize;
        assert_eq!(bins.centres()[grey], [0.0, 0.0]);
    }

    /// Bins, soft encodings and rebalancing weights against numpy written from the paper
    /// (fixtures/make_pretext_fixtures.py, `ab_bins`).
    #[test]
    fn matches_the_numpy_reference() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/ab_bins.json");
        let f: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let get = |k: &str| -> Vec<f64> {
            f[k].as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect()
        };
        let bins = AbBins::srgb();
        let centres: Vec<f64> = bins
            .centres()
            .iter()
            .flat_map(|c| c.map(f64::from))
            .collect();
        assert_eq!(centres, get("centres"));
        let (points, nearest, weights) = (get("points"), get("nearest"), get("weights"));
        for (i, p) in points.chunks(2).enumerate() {
            let got = bins.soft_encode([p[0] as f32, p[1] as f32]);
            for k in 0..SOFT_NEIGHBOURS {
                assert_eq!(
                    got[k].0 as f64,
                    nearest[i * 5 + k],
                    "point {i} neighbour {k}"
                );
                assert!((got[k].1 as f64 - weights[i * 5 + k]).abs() < 1e-5);
            }
        }
        let counts = get("counts");
        for lambda in [0.5, 0.1] {
            let want = get(&format!("rebalance_{lambda}"));
            let got = bins.rebalancing_weights(&counts, lambda);
            for (q, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (*g as f64 - w).abs() < 1e-4 * w.max(1.0),
                    "λ {lambda} bin {q}: {g} vs {w}"
                );
            }
        }
    }

    #[test]
    fn soft_encoding_matches_brute_force_gaussian_weights() {
        let bins = AbBins::srgb();
        for ab in [
            [3.0, 4.0],
            [-47.0, 12.5],
            [98.0, -60.0],
            [-85.0, -105.0],
            [0.0, 0.0],
        ] {
            let got = bins.soft_encode(ab);
            // Brute force over every bin, by hand.
            let mut all: Vec<(f32, usize)> = bins
                .centres()
                .iter()
                .enumerate()
                .map(|(q, c)| ((c[0] - ab[0]).powi(2) + (c[1] - ab[1]).powi(2), q))
                .collect();
            all.sort_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)));
            let w: Vec<f64> = all[..5]
                .iter()
                .map(|(d2, _)| (-(*d2 as f64) / 50.0).exp())
                .collect();
            let sum: f64 = w.iter().sum();
            for k in 0..5 {
                assert_eq!(got[k].0 as usize, all[k].1, "{ab:?} neighbour {k}");
                let want = (w[k] / sum) as f32;
                assert!((got[k].1 - want).abs() < 1e-6, "{ab:?} weight {k}");
            }
        }
        // On a bin centre: that bin, then its 4 edge neighbours at distance 10, each
        // exp(-100/50) = e^-2 of the centre's weight.
        let got = bins.soft_encode([20.0, 30.0]);
        let centre = 1.0 / (1.0 + 4.0 * (-2.0f32).exp());
        assert_eq!(bins.centres()[got[0].0 as usize], [20.0, 30.0]);
        assert!((got[0].1 - centre).abs() < 1e-6);
        for k in 1..5 {
            assert!((got[k].1 - centre * (-2.0f32).exp()).abs() < 1e-6);
        }
    }

    #[test]
    fn rebalancing_up_weights_rare_bins_and_has_unit_expectation() {
        let bins = AbBins::srgb();
        let grey = bins.nearest([0.0, 0.0]) as usize;
        let red = bins.nearest([60.0, 40.0]) as usize;
        let mut counts = vec![0.0; bins.len()];
        counts[grey] = 900.0;
        counts[red] = 100.0;
        let w = bins.rebalancing_weights(&counts, 0.5);
        assert!(w[red] > w[grey], "the rarer colour weighs more");
        // λ = 1: the uniform distribution alone, every weight 1.
        for v in bins.rebalancing_weights(&counts, 1.0) {
            assert!((v - 1.0).abs() < 1e-5);
        }
        // Small λ: bins far from any observed colour get about 1/λ·Q times the average.
        let w = bins.rebalancing_weights(&counts, 0.01);
        let far = bins.nearest([-80.0, -100.0]) as usize;
        assert!(w[far] > 50.0 * w[grey]);
    }

    #[test]
    fn annealed_mean_interpolates_between_the_mean_and_the_mode() {
        let bins = AbBins::srgb();
        let a = bins.nearest([0.0, 0.0]) as usize;
        let b = bins.nearest([40.0, 0.0]) as usize;
        let mut logits = vec![-1e9f32; bins.len()];
        logits[a] = 0.0;
        logits[b] = -0.5;
        // T = 1: p ∝ (1, e^-0.5); T → 0: the mode.
        let pb = (-0.5f32).exp() / (1.0 + (-0.5f32).exp());
        let mean = bins.annealed_mean(&logits, 1.0);
        assert!((mean[0] - 40.0 * pb).abs() < 1e-3 && mean[1].abs() < 1e-4);
        let sharp = bins.annealed_mean(&logits, 0.01);
        assert!(sharp[0].abs() < 1e-3);
        let annealed = bins.annealed_mean(&logits, ANNEALED_TEMPERATURE)[0];
        assert!(annealed > 0.0 && annealed < 40.0 * pb);
    }

    #[test]
    fn counts_average_2x2_blocks() {
        let bins = AbBins::srgb();
        // One 2×2 block of pure red: one pixel counted, in red's bin.
        let data = [255u8, 0, 0].repeat(4);
        let img = ImageView {
            h: 2,
            w: 2,
            data: &data,
        };
        let counts = bins.count_images([ImageRef::Cached(img)]);
        assert_eq!(counts.iter().sum::<f64>(), 1.0);
        let [_, a, b] = rgb_to_lab([1.0, 0.0, 0.0]);
        assert_eq!(counts[bins.nearest([a, b]) as usize], 1.0);
    }
}
