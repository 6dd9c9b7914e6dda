//! BERT's dynamic masking: each epoch every sequence gets a fresh mask drawn from a seeded
//! stream, so the model sees different masked positions of the same text across epochs.

use selfsup_data::SampleRng;

use crate::loss::IGNORE_INDEX;
use crate::tokenizer::SpecialIds;

/// Which tokens are masked and what replaces them. Of the selected tokens, `mask_fraction`
/// become `[MASK]`, `random_fraction` a random non-special token and the rest stay unchanged;
/// the loss is computed on every selected token.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MlmMaskConfig {
    /// Probability that a (non-special) token is selected.
    pub probability: f64,
    pub mask_fraction: f64,
    pub random_fraction: f64,
}

impl Default for MlmMaskConfig {
    /// BERT's recipe: 15 % of tokens; 80 % `[MASK]`, 10 % random, 10 % unchanged.
    fn default() -> Self {
        Self {
            probability: 0.15,
            mask_fraction: 0.8,
            random_fraction: 0.1,
        }
    }
}

/// A masked sequence: model input and per-position labels (the original id where selected,
/// [`IGNORE_INDEX`] elsewhere).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaskedSequence {
    pub input: Vec<u32>,
    pub labels: Vec<i64>,
}

impl MlmMaskConfig {
    pub fn validate(&self) -> Result<(), String> {
        let unit = |name: &str, v: f64| {
            if (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                Err(format!("mlm {name} must be in [0, 1], got {v}"))
            }
        };
        unit("probability", self.probability)?;
        unit("mask_fraction", self.mask_fraction)?;
        unit("random_fraction", self.random_fraction)?;
        if self.probability == 0.0 {
            return Err("mlm probability must be > 0: no token would carry a loss".into());
        }
        if self.mask_fraction + self.random_fraction > 1.0 + 1e-12 {
            return Err(format!(
                "mlm mask_fraction + random_fraction must be <= 1, got {} + {}",
                self.mask_fraction, self.random_fraction
            ));
        }
        Ok(())
    }

    /// Masks `ids` with draws from `rng`. `[PAD]`, `[CLS]` and `[SEP]` are never selected;
    /// random replacements are drawn uniformly from the non-special ids below `vocab_size`.
    pub fn apply(
        &self,
        ids: &[u32],
        special: &SpecialIds,
        vocab_size: usize,
        rng: &mut SampleRng,
    ) -> MaskedSequence {
        let is_special = |id: u32| {
            id == special.pad
                || id == special.unk
                || id == special.cls
                || id == special.sep
                || id == special.mask
        };
        let mut input = ids.to_vec();
        let mut labels = vec![IGNORE_INDEX; ids.len()];
        for (i, &id) in ids.iter().enumerate() {
            let structural = id == special.pad || id == special.cls || id == special.sep;
            if structural || !rng.chance(self.probability) {
                continue;
            }
            labels[i] = id as i64;
            let u = rng.unit();
            if u < self.mask_fraction {
                input[i] = special.mask;
            } else if u < self.mask_fraction + self.random_fraction {
                input[i] = loop {
                    let r = rng.below(vocab_size as u64) as u32;
                    if !is_special(r) {
                        break r;
                    }
                };
            }
        }
        MaskedSequence { input, labels }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPECIAL: SpecialIds = SpecialIds {
        pad: 0,
        unk: 1,
        cls: 2,
        sep: 3,
        mask: 4,
    };

    /// `[CLS] w… [SEP] [PAD]…` rows of length 64 with 50 word ids in 5..1000.
    fn rows(n: usize) -> Vec<Vec<u32>> {
        (0..n)
            .map(|r| {
                let mut v = vec![2u32];
                v.extend((0..50).map(|j| 5 + ((r * 131 + j * 17) % 995) as u32));
                v.push(3);
                v.resize(64, 0);
                v
            })
            .collect()
    }

    #[test]
    fn proportions_follow_the_recipe() {
        let cfg = MlmMaskConfig::default();
        let (mut words, mut selected, mut masked, mut random, mut kept) = (0, 0, 0, 0, 0);
        for (r, ids) in rows(2000).iter().enumerate() {
            let m = cfg.apply(
                ids,
                &SPECIAL,
                1000,
                &mut SampleRng::for_sample(3, 0, r as u64, 0),
            );
            for (i, (&orig, (&inp, &label))) in
                ids.iter().zip(m.input.iter().zip(&m.labels)).enumerate()
            {
                if orig <= 3 {
                    assert_eq!(label, IGNORE_INDEX, "special token at {i} selected");
                    assert_eq!(inp, orig, "special token at {i} changed");
                    continue;
                }
                words += 1;
                if label == IGNORE_INDEX {
                    assert_eq!(inp, orig, "unselected token changed");
                    continue;
                }
                assert_eq!(label, orig as i64, "label is the original id");
                selected += 1;
                if inp == 4 {
                    masked += 1;
                } else if inp == orig {
                    kept += 1;
                } else {
                    assert!(
                        inp >= 5 && inp < 1000,
                        "random id {inp} special or out of range"
                    );
                    random += 1;
                }
            }
        }
        // 100,000 words: the selected share has std 0.0011, the sub-shares about 0.003.
        let p = selected as f64 / words as f64;
        assert!((p - 0.15).abs() < 0.005, "selected {p}");
        let f = |n: usize| n as f64 / selected as f64;
        assert!((f(masked) - 0.8).abs() < 0.01, "[MASK] {}", f(masked));
        // A random draw equal to the original (1 in 995) counts as kept.
        assert!((f(random) - 0.1).abs() < 0.01, "random {}", f(random));
        assert!((f(kept) - 0.1).abs() < 0.01, "kept {}", f(kept));
    }

    #[test]
    fn masks_are_seeded_and_change_every_epoch() {
        let cfg = MlmMaskConfig::default();
        let ids = &rows(1)[0];
        let draw = |epoch| {
            cfg.apply(
                ids,
                &SPECIAL,
                1000,
                &mut SampleRng::for_sample(7, epoch, 0, 0),
            )
        };
        assert_eq!(draw(0), draw(0));
        assert_ne!(draw(0).labels, draw(1).labels);
    }

    #[test]
    fn configurable_fractions_and_bad_values() {
        let all_mask = MlmMaskConfig {
            probability: 1.0,
            mask_fraction: 1.0,
            random_fraction: 0.0,
        };
        let ids = &rows(1)[0];
        let m = all_mask.apply(ids, &SPECIAL, 1000, &mut SampleRng::for_sample(1, 0, 0, 0));
        assert!(m.input[1..51].iter().all(|&t| t == 4));
        assert_eq!(m.labels.iter().filter(|&&l| l != IGNORE_INDEX).count(), 50);
        let bad = MlmMaskConfig {
            mask_fraction: 0.95,
            ..Default::default()
        };
        assert!(
            bad.validate()
                .unwrap_err()
                .contains("mask_fraction + random_fraction")
        );
        let bad = MlmMaskConfig {
            probability: 1.5,
            ..Default::default()
        };
        assert!(bad.validate().unwrap_err().contains("probability"));
        assert!(MlmMaskConfig::default().validate().is_ok());
    }
}
