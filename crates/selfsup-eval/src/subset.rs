//! Stratified, seeded label-subset selection (e.g. 1 % / 10 % label fine-tuning).

use std::collections::BTreeMap;

use selfsup_data::SplitMix64;

use crate::{EvalError, Result};

/// How many samples to keep per class.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SubsetSpec {
    /// Fraction `F ∈ (0, 1]` of each class: `round(F · n_c)`, at least 1.
    Fraction(f64),
    /// `N` samples per class (`N > 0`); a class with fewer keeps all of them.
    PerClass(usize),
}

/// Indices (ascending) of a stratified random subset of `labels`.
/// Deterministic for a given `(labels, spec, seed)` on every platform.
pub fn stratified_subset(labels: &[u32], spec: SubsetSpec, seed: u64) -> Result<Vec<usize>> {
    match spec {
        SubsetSpec::Fraction(f) if !(f > 0.0 && f <= 1.0) => {
            return Err(EvalError::InvalidArgument(format!(
                "fraction must be in (0, 1], got {f}"
            )));
        }
        SubsetSpec::PerClass(0) => {
            return Err(EvalError::InvalidArgument(
                "per-class count must be > 0".into(),
            ));
        }
        _ => {}
    }
    if labels.is_empty() {
        return Err(EvalError::Empty("no labels".into()));
    }
    let mut by_class: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    for (i, &l) in labels.iter().enumerate() {
        by_class.entry(l).or_default().push(i);
    }
    let mut out = Vec::new();
    for (class, mut idx) in by_class {
        let n_c = idx.len();
        let take = match spec {
            SubsetSpec::Fraction(f) => ((f * n_c as f64).round() as usize).clamp(1, n_c),
            SubsetSpec::PerClass(n) => n.min(n_c),
        };
        // Per-class stream so one class's choice doesn't depend on the others.
        let mut rng = SplitMix64::new(seed ^ (class as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        // Partial Fisher-Yates: first `take` positions are a uniform sample.
        for i in 0..take {
            let j = i + rng.below(n_c - i);
            idx.swap(i, j);
        }
        out.extend_from_slice(&idx[..take]);
    }
    out.sort_unstable();
    Ok(out)
}

/// Labels at `indices`.
pub fn select_labels(labels: &[u32], indices: &[usize]) -> Vec<u32> {
    indices.iter().map(|&i| labels[i]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels() -> Vec<u32> {
        // class 0: 100, class 1: 10, class 2: 1
        let mut l = vec![0u32; 100];
        l.extend([1u32; 10]);
        l.push(2);
        l
    }

    #[test]
    fn fraction_counts_and_min_one() {
        let l = labels();
        let s = stratified_subset(&l, SubsetSpec::Fraction(0.1), 7).unwrap();
        let sl = select_labels(&l, &s);
        let count = |c| sl.iter().filter(|&&x| x == c).count();
        assert_eq!((count(0), count(1), count(2)), (10, 1, 1));
        assert!(s.windows(2).all(|w| w[0] < w[1]));
        let all = stratified_subset(&l, SubsetSpec::Fraction(1.0), 7).unwrap();
        assert_eq!(all, (0..l.len()).collect::<Vec<_>>());
    }

    #[test]
    fn per_class_and_determinism() {
        let l = labels();
        let a = stratified_subset(&l, SubsetSpec::PerClass(5), 1).unwrap();
        let b = stratified_subset(&l, SubsetSpec::PerClass(5), 1).unwrap();
        let c = stratified_subset(&l, SubsetSpec::PerClass(5), 2).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.len(), 5 + 5 + 1);
    }

    #[test]
    fn invalid_specs() {
        let l = labels();
        for f in [0.0, -0.1, 1.5, f64::NAN] {
            assert!(stratified_subset(&l, SubsetSpec::Fraction(f), 0).is_err());
        }
        assert!(stratified_subset(&l, SubsetSpec::PerClass(0), 0).is_err());
        assert!(stratified_subset(&[], SubsetSpec::PerClass(1), 0).is_err());
    }
}
