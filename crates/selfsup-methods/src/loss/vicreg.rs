//! VICReg (Bardes et al. 2022): invariance, variance and covariance terms on two views.

use burn::prelude::*;
use burn::tensor::activation::relu;

use super::{LossConfigError, check_pair};

/// The weights of VICReg's three terms and the variance term's ε.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VicRegWeights {
    /// λ on the mean squared error between the views (paper: 25).
    pub invariance: f64,
    /// μ on the hinge keeping every dimension's std above 1 (paper: 25).
    pub variance: f64,
    /// ν on the squared off-diagonal covariances (paper: 1).
    pub covariance: f64,
    /// Added to the variance before the square root (paper: 1e-4).
    pub eps: f64,
}

impl Default for VicRegWeights {
    fn default() -> Self {
        Self {
            invariance: 25.0,
            variance: 25.0,
            covariance: 1.0,
            eps: 1e-4,
        }
    }
}

impl VicRegWeights {
    /// Every weight finite and >= 0, ε finite and > 0.
    pub fn validate(&self) -> Result<(), LossConfigError> {
        for (name, w) in [
            ("invariance", self.invariance),
            ("variance", self.variance),
            ("covariance", self.covariance),
        ] {
            if !(w.is_finite() && w >= 0.0) {
                return Err(LossConfigError::Weight(name, w));
            }
        }
        if !(self.eps.is_finite() && self.eps > 0.0) {
            return Err(LossConfigError::Weight("eps", self.eps));
        }
        Ok(())
    }
}

/// VICReg loss of `[N, D]` embeddings of two views; returns a 1-element tensor.
///
/// `λ·mse(a, b) + μ·½(v(a) + v(b)) + ν·(c(a) + c(b))` with `v(x) = mean_d relu(1 - sqrt(var_d(x)
/// + ε))` (unbiased variance) and `c(x) = Σ_{i≠j} cov(x)_ij² / D` (covariance over N-1), exactly
/// `lightly.loss.VICRegLoss(lambda_param, mu_param, nu_param, eps)`.
///
/// Panics if the shapes differ or N < 2.
pub fn vicreg_loss(z_a: Tensor<2>, z_b: Tensor<2>, weights: &VicRegWeights) -> Tensor<1> {
    check_pair("z_a", &z_a, "z_b", &z_b, 2);
    let invariance = (z_a.clone() - z_b.clone()).square().mean();
    let variance = (variance_term(z_a.clone(), weights.eps)
        + variance_term(z_b.clone(), weights.eps))
    .mul_scalar(0.5);
    let covariance = covariance_term(z_a) + covariance_term(z_b);
    invariance.mul_scalar(weights.invariance)
        + variance.mul_scalar(weights.variance)
        + covariance.mul_scalar(weights.covariance)
}

/// `[N, D]` minus its per-dimension batch mean.
fn centered(x: Tensor<2>) -> Tensor<2> {
    let mean = x.clone().mean_dim(0);
    x - mean
}

fn variance_term(x: Tensor<2>, eps: f64) -> Tensor<1> {
    let n = x.dims()[0];
    let var = centered(x).square().sum_dim(0).div_scalar((n - 1) as f64);
    relu(var.add_scalar(eps).sqrt().neg().add_scalar(1.0)).mean()
}

fn covariance_term(x: Tensor<2>) -> Tensor<1> {
    let [n, d] = x.dims();
    let device = x.device();
    let x = centered(x);
    let cov = x.clone().transpose().matmul(x).div_scalar((n - 1) as f64);
    let diagonal = Tensor::<2, Bool>::diag_mask([d, d], 0, &device).bool_not();
    cov.mask_fill(diagonal, 0.0)
        .square()
        .sum()
        .div_scalar(d as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loss::test_util::*;

    #[test]
    fn matches_lightly_value_and_gradient() {
        let device = Device::flex().autodiff();
        for case in load("vicreg.json")["cases"].as_array().unwrap() {
            let n = case["n"].as_u64().unwrap() as usize;
            let d = case["d"].as_u64().unwrap() as usize;
            let z_a = tensor2(&case["z_a"], n, d, &device).require_grad();
            let z_b = tensor2(&case["z_b"], n, d, &device).require_grad();
            let loss = vicreg_loss(z_a.clone(), z_b.clone(), &VicRegWeights::default());
            assert_loss_and_grads(case, loss, (&z_a, &z_b), ("grad_z_a", "grad_z_b"));
        }
    }

    #[test]
    fn weights_are_validated() {
        assert!(VicRegWeights::default().validate().is_ok());
        let bad = VicRegWeights {
            covariance: -1.0,
            ..Default::default()
        };
        assert_eq!(
            bad.validate(),
            Err(LossConfigError::Weight("covariance", -1.0))
        );
    }
}
