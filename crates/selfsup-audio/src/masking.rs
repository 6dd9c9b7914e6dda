//! Span masks over frames for masked-frame reconstruction.

use selfsup_data::SampleRng;

use crate::error::{AudioError, Result};

/// Mask about `ratio` of a clip's frames in non-overlapping, non-touching spans whose lengths
/// are uniform in `min_span..=max_span` (e.g. 15 % in spans of 5–10, as in Mockingjay/TERA-style
/// pretraining).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpanMaskConfig {
    pub ratio: f64,
    pub min_span: usize,
    pub max_span: usize,
}

impl SpanMaskConfig {
    pub fn new(ratio: f64, min_span: usize, max_span: usize) -> Result<Self> {
        if !(ratio > 0.0 && ratio < 1.0) {
            return Err(AudioError::Config {
                field: "mask ratio",
                reason: format!("must be in (0, 1), got {ratio}"),
            });
        }
        if min_span == 0 || min_span > max_span {
            return Err(AudioError::Config {
                field: "mask span",
                reason: format!("need 1 <= min_span <= max_span, got {min_span}..={max_span}"),
            });
        }
        Ok(Self {
            ratio,
            min_span,
            max_span,
        })
    }

    /// `true` at masked frames. With `target = max(1, round(ratio · frames))` the mask holds
    /// between `target` and `target + min_span - 1` frames in spans of `min_span..=max_span`
    /// (the last span is shortened towards the target, never below `min_span`). A clip too short
    /// for that gets as many spans as fit with a gap between them (at least one span, of at most
    /// `frames` frames).
    pub fn sample(&self, frames: usize, rng: &mut SampleRng) -> Vec<bool> {
        let mut mask = vec![false; frames];
        if frames == 0 {
            return mask;
        }
        let target = ((self.ratio * frames as f64).round() as usize).max(1);
        let mut spans = Vec::new();
        let mut total = 0;
        while total < target {
            let drawn =
                self.min_span + rng.below((self.max_span - self.min_span + 1) as u64) as usize;
            let len = drawn.min(target - total).max(self.min_span);
            spans.push(len);
            total += len;
        }
        // Spans need one free frame between neighbours.
        while spans.len() > 1 && total + spans.len() - 1 > frames {
            total -= spans.pop().unwrap();
        }
        if total > frames {
            spans[0] = frames;
            total = frames;
        }
        // Spread the free frames over the k + 1 gaps (the k - 1 inner ones already hold one).
        let k = spans.len();
        let spare = frames - total - (k - 1);
        let mut cuts: Vec<usize> = (0..k)
            .map(|_| rng.below(spare as u64 + 1) as usize)
            .collect();
        cuts.sort_unstable();
        let mut pos = 0;
        let mut prev_cut = 0;
        for (i, (&len, &cut)) in spans.iter().zip(&cuts).enumerate() {
            pos += cut - prev_cut + usize::from(i > 0);
            prev_cut = cut;
            mask[pos..pos + len].fill(true);
            pos += len;
        }
        mask
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runs(mask: &[bool]) -> Vec<usize> {
        let mut out = Vec::new();
        let mut n = 0;
        for &m in mask.iter().chain([&false]) {
            if m {
                n += 1;
            } else if n > 0 {
                out.push(n);
                n = 0;
            }
        }
        out
    }

    #[test]
    fn proportion_and_span_lengths() {
        let cfg = SpanMaskConfig::new(0.15, 5, 10).unwrap();
        let mut total_masked = 0usize;
        let mut total_frames = 0usize;
        let mut lengths = std::collections::BTreeSet::new();
        for seed in 0..500u64 {
            let frames = 40 + (seed as usize * 7) % 200;
            let mut rng = SampleRng::for_sample(seed, 0, 0, 0);
            let mask = cfg.sample(frames, &mut rng);
            assert_eq!(mask.len(), frames);
            let masked = mask.iter().filter(|&&m| m).count();
            let target = (0.15 * frames as f64).round() as usize;
            assert!(
                (target..target + 5).contains(&masked),
                "{frames} frames: {masked} masked, target {target}"
            );
            for r in runs(&mask) {
                assert!((5..=10).contains(&r), "span of {r}");
                lengths.insert(r);
            }
            total_masked += masked;
            total_frames += frames;
            let again = cfg.sample(frames, &mut SampleRng::for_sample(seed, 0, 0, 0));
            assert_eq!(mask, again);
        }
        let p = total_masked as f64 / total_frames as f64;
        assert!((0.145..0.18).contains(&p), "masked proportion {p}");
        // Every span length is used.
        assert_eq!(lengths.len(), 6);
    }

    #[test]
    fn positions_cover_the_whole_clip() {
        let cfg = SpanMaskConfig::new(0.15, 5, 10).unwrap();
        let mut hit = vec![0usize; 100];
        for seed in 0..400 {
            let mask = cfg.sample(100, &mut SampleRng::for_sample(seed, 1, 0, 0));
            for (h, m) in hit.iter_mut().zip(mask) {
                *h += usize::from(m);
            }
        }
        assert!(hit[0] > 0 && hit[99] > 0, "edges never masked");
        // Fewer hits right at the edges (a span must start at frame 0 to cover it); inside, all.
        assert!(hit[10..90].iter().all(|&h| h > 10), "{hit:?}");
    }

    #[test]
    fn short_clips_and_bad_configs() {
        let cfg = SpanMaskConfig::new(0.15, 5, 10).unwrap();
        let mut rng = SampleRng::for_sample(3, 0, 0, 0);
        assert_eq!(cfg.sample(3, &mut rng), vec![true; 3]);
        let m = cfg.sample(14, &mut rng);
        assert_eq!(runs(&m).len(), 1);
        assert_eq!(m.iter().filter(|&&x| x).count(), 5);
        assert!(cfg.sample(0, &mut rng).is_empty());
        assert!(SpanMaskConfig::new(0.0, 5, 10).is_err());
        assert!(SpanMaskConfig::new(0.2, 6, 5).is_err());
        assert!(SpanMaskConfig::new(0.2, 0, 5).is_err());
    }
}
