//! Row-major `f32` feature matrix.

use crate::{EvalError, Result};

/// A row-major `n × dim` matrix of `f32` features (one row per sample).
#[derive(Clone, Debug, PartialEq)]
pub struct Features {
    pub data: Vec<f32>,
    pub n: usize,
    pub dim: usize,
}

impl Features {
    /// Build from a row-major buffer; errors if `data.len() != n * dim` or `dim == 0`.
    pub fn new(data: Vec<f32>, n: usize, dim: usize) -> Result<Self> {
        if dim == 0 {
            return Err(EvalError::InvalidArgument("feature dim must be > 0".into()));
        }
        if data.len() != n * dim {
            return Err(EvalError::DimMismatch(format!(
                "data has {} values, expected n*dim = {}*{} = {}",
                data.len(),
                n,
                dim,
                n * dim
            )));
        }
        Ok(Self { data, n, dim })
    }

    /// Copy from a slice.
    pub fn from_slice(data: &[f32], n: usize, dim: usize) -> Result<Self> {
        Self::new(data.to_vec(), n, dim)
    }

    /// Row `i`.
    #[inline]
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Checks the buffer length invariant (fields are public).
    pub fn validate(&self, what: &str) -> Result<()> {
        if self.dim == 0 {
            return Err(EvalError::InvalidArgument(format!(
                "{what}: dim must be > 0"
            )));
        }
        if self.data.len() != self.n * self.dim {
            return Err(EvalError::DimMismatch(format!(
                "{what}: data has {} values, expected {}*{}",
                self.data.len(),
                self.n,
                self.dim
            )));
        }
        Ok(())
    }

    /// Checks a train/test pair for a classifier: both well-formed and non-empty, the same
    /// dimension, and one train label per train sample.
    pub fn validate_pair(train: &Features, train_labels: &[u32], test: &Features) -> Result<()> {
        train.validate("train features")?;
        test.validate("test features")?;
        if train.n == 0 {
            return Err(EvalError::Empty("train set has no samples".into()));
        }
        if test.n == 0 {
            return Err(EvalError::Empty("test set has no samples".into()));
        }
        if train.dim != test.dim {
            return Err(EvalError::DimMismatch(format!(
                "train dim {} != test dim {}",
                train.dim, test.dim
            )));
        }
        if train_labels.len() != train.n {
            return Err(EvalError::DimMismatch(format!(
                "{} train labels for {} train samples",
                train_labels.len(),
                train.n
            )));
        }
        Ok(())
    }

    /// Rows at `indices` (in that order), e.g. for label subsets.
    pub fn select(&self, indices: &[usize]) -> Features {
        let mut data = Vec::with_capacity(indices.len() * self.dim);
        for &i in indices {
            data.extend_from_slice(self.row(i));
        }
        Features {
            data,
            n: indices.len(),
            dim: self.dim,
        }
    }

    /// Copy with every row scaled to unit L2 norm (norm clamped at 1e-12, as
    /// `torch.nn.functional.normalize`).
    pub fn l2_normalized(&self) -> Features {
        let mut out = self.clone();
        out.l2_normalize_in_place();
        out
    }

    pub fn l2_normalize_in_place(&mut self) {
        if self.dim == 0 {
            return;
        }
        for row in self.data.chunks_exact_mut(self.dim) {
            let norm = row
                .iter()
                .map(|&v| (v as f64) * (v as f64))
                .sum::<f64>()
                .sqrt();
            let inv = 1.0 / norm.max(1e-12);
            for v in row.iter_mut() {
                *v = (*v as f64 * inv) as f32;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_checks_len() {
        assert!(Features::new(vec![0.0; 6], 2, 3).is_ok());
        assert!(matches!(
            Features::new(vec![0.0; 5], 2, 3),
            Err(EvalError::DimMismatch(_))
        ));
        assert!(Features::new(vec![], 0, 0).is_err());
    }

    #[test]
    fn normalize_and_select() {
        let f = Features::new(vec![3.0, 4.0, 0.0, 0.0], 2, 2).unwrap();
        let g = f.l2_normalized();
        assert_eq!(g.row(0), &[0.6, 0.8]);
        assert_eq!(g.row(1), &[0.0, 0.0]);
        let s = f.select(&[1, 0]);
        assert_eq!(s.data, vec![0.0, 0.0, 3.0, 4.0]);
    }
}
