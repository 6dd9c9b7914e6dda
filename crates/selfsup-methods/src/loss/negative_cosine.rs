//! Negative cosine similarity: BYOL's and SimSiam's loss between a prediction and a target.

use burn::prelude::*;

use super::{check_pair, l2_normalize};

/// `-mean_i cos(p_i, z_i)` over `[N, D]` batches; returns a 1-element tensor in [-1, 1].
///
/// Equals `lightly.loss.NegativeCosineSimilarity()` (and, up to the affine map `2 + 2·loss`,
/// BYOL's normalised MSE). The stop-gradient on the target is the caller's: pass
/// `z.detach()`. Panics if the shapes differ or N < 1.
pub fn negative_cosine_similarity(p: Tensor<2>, z: Tensor<2>) -> Tensor<1> {
    check_pair("p", &p, "z", &z, 1);
    (l2_normalize(p) * l2_normalize(z)).sum_dim(1).mean().neg()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loss::test_util::*;

    #[test]
    fn matches_lightly_value_and_gradient() {
        let device = Device::flex().autodiff();
        for case in load("negative_cosine.json")["cases"].as_array().unwrap() {
            let n = case["n"].as_u64().unwrap() as usize;
            let d = case["d"].as_u64().unwrap() as usize;
            let p = tensor2(&case["p"], n, d, &device).require_grad();
            let z = tensor2(&case["z"], n, d, &device).require_grad();
            let loss = negative_cosine_similarity(p.clone(), z.clone());
            assert_loss_and_grads(case, loss, (&p, &z), ("grad_p", "grad_z"));
        }
    }

    #[test]
    fn identical_and_opposite_vectors() {
        let device = Device::flex();
        let a = Tensor::<2>::from_data(TensorData::new(vec![1.0f32, 2.0, -3.0], [1, 3]), &device);
        let same = negative_cosine_similarity(a.clone(), a.clone().mul_scalar(5.0));
        let opposite = negative_cosine_similarity(a.clone(), a.neg());
        assert!((same.into_scalar::<f32>() + 1.0).abs() < 1e-6);
        assert!((opposite.into_scalar::<f32>() - 1.0).abs() < 1e-6);
    }
}
