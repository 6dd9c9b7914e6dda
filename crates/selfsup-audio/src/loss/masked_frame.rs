//! Masked-frame reconstruction loss (Mockingjay / TERA style).

use burn::prelude::*;

/// Distance between predicted and target frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reconstruction {
    L1,
    L2,
}

/// Mean reconstruction error over the masked frames only; returns a 1-element tensor.
///
/// `prediction` and `target` are `[B, T, F]`, `masked` is `[B, T]` (true where the frame was
/// masked in the input and must be reconstructed; padding frames must be false). The loss is
/// `Σ_{masked (b,t)} Σ_f d(pred, target) / (n_masked · F)` with `d = |·|` (L1) or `(·)²` (L2).
/// Unmasked frames add nothing to the value and get an exactly zero gradient, whatever their
/// value (even inf/NaN). With no masked frame the loss
/// is 0.
///
/// Panics if the shapes disagree.
pub fn masked_frame_loss(
    prediction: Tensor<3>,
    target: Tensor<3>,
    masked: Tensor<2, Bool>,
    kind: Reconstruction,
) -> Tensor<1> {
    let dims = prediction.dims();
    assert_eq!(
        dims,
        target.dims(),
        "prediction and target must have the same shape [B, T, F]"
    );
    let [b, t, f] = dims;
    assert_eq!(
        masked.dims(),
        [b, t],
        "masked must be [B, T] = [{b}, {t}], got {:?}",
        masked.dims()
    );
    let target = target.detach();
    // Unmasked predictions are swapped for the target before any arithmetic, so their error is
    // exactly 0 and no inf/NaN there can leak into the value or the gradient.
    let unmasked = masked
        .clone()
        .bool_not()
        .unsqueeze_dim::<3>(2)
        .expand([b, t, f]);
    let diff = prediction.mask_where(unmasked, target.clone()) - target;
    let error = match kind {
        Reconstruction::L1 => diff.abs(),
        Reconstruction::L2 => diff.square(),
    };
    let count = masked.float().sum().clamp_min(1.0).mul_scalar(f as f32);
    error.sum().div(count.detach())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| (((i as u32).wrapping_mul(2654435761) ^ seed) % 1000) as f32 / 250.0 - 2.0)
            .collect()
    }

    // B = 2, T = 4, F = 3; frames (0,1), (0,2) and (1,3) masked.
    const MASK: [bool; 8] = [false, true, true, false, false, false, false, true];

    fn hand_loss(pred: &[f32], target: &[f32], kind: Reconstruction) -> f32 {
        let mut sum = 0.0;
        for (i, (p, t)) in pred.iter().zip(target).enumerate() {
            if MASK[i / 3] {
                sum += match kind {
                    Reconstruction::L1 => (p - t).abs(),
                    Reconstruction::L2 => (p - t).powi(2),
                };
            }
        }
        sum / (3.0 * 3.0)
    }

    #[test]
    fn value_matches_hand_computation_and_ignores_unmasked_frames() {
        let device = Device::flex().autodiff();
        let target_v = values(24, 7);
        for kind in [Reconstruction::L1, Reconstruction::L2] {
            let pred_v = values(24, 1);
            // Same masked frames, wildly different unmasked ones (one is +inf).
            let mut other_v = pred_v.clone();
            for (i, v) in other_v.iter_mut().enumerate() {
                if !MASK[i / 3] {
                    *v = if i == 0 {
                        f32::INFINITY
                    } else {
                        *v * 100.0 + 5.0
                    };
                }
            }
            let mask =
                Tensor::<2, Bool>::from_data(TensorData::new(MASK.to_vec(), [2, 4]), &device);
            let target =
                Tensor::<3>::from_data(TensorData::new(target_v.clone(), [2, 4, 3]), &device);
            let mut results = Vec::new();
            for p in [&pred_v, &other_v] {
                let pred = Tensor::<3>::from_data(TensorData::new(p.clone(), [2, 4, 3]), &device)
                    .require_grad();
                let loss = masked_frame_loss(pred.clone(), target.clone(), mask.clone(), kind);
                let grads = loss.backward();
                let g = pred
                    .grad(&grads)
                    .unwrap()
                    .into_data()
                    .try_to_vec::<f32>()
                    .unwrap();
                for (i, gi) in g.iter().enumerate() {
                    if !MASK[i / 3] {
                        assert_eq!(*gi, 0.0, "{kind:?}: gradient at unmasked element {i}");
                    } else {
                        assert!(
                            gi.abs() > 0.0,
                            "{kind:?}: no gradient at masked element {i}"
                        );
                    }
                }
                results.push(loss.into_scalar::<f32>());
            }
            let want = hand_loss(&pred_v, &target_v, kind);
            assert!(
                (results[0] - want).abs() < 1e-5,
                "{kind:?}: {} vs {want}",
                results[0]
            );
            assert_eq!(
                results[0], results[1],
                "{kind:?}: unmasked frames changed the loss"
            );
        }
    }

    #[test]
    fn no_masked_frame_is_zero_loss() {
        let device = Device::flex();
        let loss = masked_frame_loss(
            Tensor::ones([1, 3, 2], &device),
            Tensor::zeros([1, 3, 2], &device),
            Tensor::<2, Bool>::from_data(TensorData::new(vec![false; 3], [1, 3]), &device),
            Reconstruction::L2,
        );
        assert_eq!(loss.into_scalar::<f32>(), 0.0);
    }
}
