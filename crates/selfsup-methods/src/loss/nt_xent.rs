//! NT-Xent (normalised temperature-scaled cross-entropy), the SimCLR / InfoNCE loss.

use burn::prelude::*;

use super::{LossConfigError, check_pair, l2_normalize};

/// Validated NT-Xent hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NtXentConfig {
    temperature: f64,
}

impl NtXentConfig {
    /// `temperature` must be finite and > 0 (SimCLR uses 0.1–0.5).
    pub fn new(temperature: f64) -> Result<Self, LossConfigError> {
        if temperature.is_finite() && temperature > 0.0 {
            Ok(Self { temperature })
        } else {
            Err(LossConfigError::Temperature(temperature))
        }
    }

    pub fn temperature(&self) -> f64 {
        self.temperature
    }

    /// See [`nt_xent_loss`].
    pub fn forward(&self, z_a: Tensor<2>, z_b: Tensor<2>) -> Tensor<1> {
        nt_xent_loss(z_a, z_b, self.temperature)
    }
}

/// NT-Xent over the 2N views of a batch; returns a 1-element tensor.
///
/// `z_a[i]` and `z_b[i]` (both `[N, D]`) are two views of image i. Every view is L2-normalised,
/// the cosine similarities between all 2N views are divided by `temperature`, each view's
/// similarity to itself is excluded, and cross-entropy picks the other view of the same image as
/// the target among the remaining 2N-1. The result is the mean over the 2N views, which equals
/// `lightly.loss.NTXentLoss(temperature, memory_bank_size=0)`.
///
/// Panics if the shapes differ, N < 2 (no negatives) or `temperature` is not finite and > 0;
/// use [`NtXentConfig::new`] to validate the temperature up front.
pub fn nt_xent_loss(z_a: Tensor<2>, z_b: Tensor<2>, temperature: f64) -> Tensor<1> {
    check_pair("z_a", &z_a, "z_b", &z_b, 2);
    if let Err(e) = NtXentConfig::new(temperature) {
        panic!("nt_xent_loss: {e}");
    }
    let n = z_a.dims()[0];
    let device = z_a.device();
    let a = l2_normalize(z_a);
    let b = l2_normalize(z_b);

    // Logit of each view against its positive (the other view of the same image).
    let positive = (a.clone() * b.clone()).sum_dim(1).div_scalar(temperature); // [N, 1]
    let positive = Tensor::cat(vec![positive.clone(), positive], 0); // [2N, 1]

    let z = Tensor::cat(vec![a, b], 0); // [2N, D]
    let logits = z.clone().matmul(z.transpose()).div_scalar(temperature); // [2N, 2N]
    // A view is never its own negative: -inf drops it from the softmax with a zero gradient.
    let self_mask = Tensor::<2, Bool>::diag_mask([2 * n, 2 * n], 0, &device).bool_not();
    let logits = logits.mask_fill(self_mask, f32::NEG_INFINITY);

    // log-sum-exp with the row max subtracted for stability; the max only shifts, so no gradient.
    let row_max = logits.clone().max_dim(1).detach();
    let log_sum_exp = (logits - row_max.clone()).exp().sum_dim(1).log() + row_max; // [2N, 1]

    (log_sum_exp - positive).mean()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loss::test_util::*;

    #[test]
    fn matches_lightly_value_and_gradient() {
        let device = Device::flex().autodiff();
        let fixture = load("nt_xent.json");
        for case in fixture["cases"].as_array().unwrap() {
            let (n, d) = (
                case["n"].as_u64().unwrap() as usize,
                case["d"].as_u64().unwrap() as usize,
            );
            let t = case["temperature"].as_f64().unwrap();
            let z_a = tensor2(&case["z_a"], n, d, &device).require_grad();
            let z_b = tensor2(&case["z_b"], n, d, &device).require_grad();
            let loss = nt_xent_loss(z_a.clone(), z_b.clone(), t);
            assert_loss_and_grads(case, loss, (&z_a, &z_b), ("grad_z_a", "grad_z_b"));
        }
    }

    #[test]
    fn stable_at_tiny_temperature() {
        // Logits of ±1e4 would overflow exp() without the max subtraction.
        let device = Device::flex();
        let z_a = Tensor::<2>::from_data(
            TensorData::new(vec![1.0f32, 0.0, 0.0, 1.0], [2, 2]),
            &device,
        );
        let z_b = z_a.clone();
        let loss = nt_xent_loss(z_a, z_b, 1e-4).into_scalar::<f32>();
        assert!(loss.is_finite() && loss.abs() < 1e-3, "loss = {loss}");
    }

    #[test]
    fn config_rejects_bad_temperature() {
        assert_eq!(
            NtXentConfig::new(0.0),
            Err(LossConfigError::Temperature(0.0))
        );
        assert!(NtXentConfig::new(-0.1).is_err());
        assert!(NtXentConfig::new(f64::NAN).is_err());
        assert!(NtXentConfig::new(0.5).is_ok());
    }

    #[test]
    #[should_panic(expected = "z_a and z_b must have the same shape")]
    fn mismatched_shapes_panic() {
        let device = Device::flex();
        nt_xent_loss(
            Tensor::zeros([4, 3], &device),
            Tensor::zeros([4, 2], &device),
            0.5,
        );
    }
}
