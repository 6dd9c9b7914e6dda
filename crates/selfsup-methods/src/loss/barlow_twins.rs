//! Barlow Twins (Zbontar et al. 2021): the cross-correlation of two views' standardised
//! embeddings is pushed to the identity.

use burn::prelude::*;

use super::{LossConfigError, check_pair};

/// `Σ_i (1 - C_ii)² + λ Σ_{i≠j} C_ij²` with `C = A_normᵀ B_norm / N` (`[D, D]`); returns a
/// 1-element tensor.
///
/// Each of `z_a`, `z_b` (`[N, D]`) is standardised per dimension over the batch like
/// `F.batch_norm(training=True)` (biased variance, eps 1e-5), as
/// `lightly.loss.BarlowTwinsLoss(lambda_param)`; the paper uses λ = 5e-3.
///
/// Panics if the shapes differ or N < 2 (a batch of one has no variance).
pub fn barlow_twins_loss(z_a: Tensor<2>, z_b: Tensor<2>, lambda: f64) -> Tensor<1> {
    check_pair("z_a", &z_a, "z_b", &z_b, 2);
    let [n, d] = z_a.dims();
    let device = z_a.device();
    let c = standardize(z_a)
        .transpose()
        .matmul(standardize(z_b))
        .div_scalar(n as f64); // [D, D]
    let off_diagonal = Tensor::<2, Bool>::diag_mask([d, d], 0, &device);
    let diagonal = off_diagonal.clone().bool_not();
    let on_diag = c.clone().mask_fill(off_diagonal, 1.0).sub_scalar(1.0);
    let off_diag = c.mask_fill(diagonal, 0.0);
    on_diag.square().sum() + off_diag.square().sum().mul_scalar(lambda)
}

/// Per-dimension `(x - mean) / sqrt(var + 1e-5)` over the batch, with the biased variance.
pub(crate) fn standardize(x: Tensor<2>) -> Tensor<2> {
    let mean = x.clone().mean_dim(0);
    let centered = x - mean;
    let var = centered.clone().square().mean_dim(0);
    centered / var.add_scalar(1e-5).sqrt()
}

/// Validated λ (weight of the redundancy-reduction term): finite and >= 0.
pub fn check_lambda(lambda: f64) -> Result<f64, LossConfigError> {
    if lambda.is_finite() && lambda >= 0.0 {
        Ok(lambda)
    } else {
        Err(LossConfigError::Weight("lambda", lambda))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loss::test_util::*;

    #[test]
    fn matches_lightly_value_and_gradient() {
        let device = Device::flex().autodiff();
        for case in load("barlow_twins.json")["cases"].as_array().unwrap() {
            let n = case["n"].as_u64().unwrap() as usize;
            let d = case["d"].as_u64().unwrap() as usize;
            let lambda = case["lambda"].as_f64().unwrap();
            let z_a = tensor2(&case["z_a"], n, d, &device).require_grad();
            let z_b = tensor2(&case["z_b"], n, d, &device).require_grad();
            let loss = barlow_twins_loss(z_a.clone(), z_b.clone(), lambda);
            assert_loss_and_grads(case, loss, (&z_a, &z_b), ("grad_z_a", "grad_z_b"));
        }
    }

    #[test]
    fn lambda_is_validated() {
        assert!(check_lambda(5e-3).is_ok());
        assert_eq!(
            check_lambda(-1.0),
            Err(LossConfigError::Weight("lambda", -1.0))
        );
    }
}
