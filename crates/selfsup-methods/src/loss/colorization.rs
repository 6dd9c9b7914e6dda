//! Colorization losses (Zhang et al. 2016). Regression (their baseline): the mean squared
//! error between predicted and true a*b* chroma, both scaled by 1/110 (the a*, b* range of
//! sRGB is about ±110), over every pixel. Classification (their method): cross-entropy between
//! per-pixel logits over quantised a*b* bins and the soft-encoded true colour, each pixel
//! weighted by its colour's rarity (`crate::ab_bins` builds the targets).

use burn::prelude::*;
use burn::tensor::activation::log_softmax;

/// Scale between a*b* units and the regression targets.
pub const AB_SCALE: f32 = 110.0;

/// `mean((pred - target)²)` over `[N, 2, H, W]` scaled chroma maps.
pub fn ab_regression_loss(pred: Tensor<4>, target: Tensor<4>) -> Tensor<1> {
    assert_eq!(
        pred.dims(),
        target.dims(),
        "predicted and true chroma must have the same [N, 2, H, W] shape"
    );
    assert_eq!(pred.dims()[1], 2, "chroma maps have 2 channels (a*, b*)");
    (pred - target.detach()).square().mean()
}

/// `-Σ_k targets[n,k,h,w] · log softmax(logits)[n, bins[n,k,h,w], h, w]`, averaged over the
/// `N·H·W` pixels. `logits` is `[N, Q, H, W]`; each pixel's target is sparse: `K` bin indices
/// `bins` `[N, K, H, W]` with weights `targets` (the soft encoding, summing to 1, times the
/// pixel's rebalancing weight).
pub fn ab_classification_loss(
    logits: Tensor<4>,
    bins: Tensor<4, Int>,
    targets: Tensor<4>,
) -> Tensor<1> {
    let [n, q, h, w] = logits.dims();
    assert_eq!(
        bins.dims(),
        targets.dims(),
        "target bins and weights must have the same [N, K, H, W] shape"
    );
    let [bn, _, bh, bw] = bins.dims();
    assert_eq!(
        [bn, bh, bw],
        [n, h, w],
        "targets cover [N, H, W] = {:?} pixels, logits {:?} (with {q} bins)",
        [bn, bh, bw],
        [n, h, w]
    );
    let picked = log_softmax(logits, 1).gather(1, bins);
    (picked * targets.detach())
        .sum()
        .neg()
        .div_scalar((n * h * w) as f32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loss::test_util::{assert_loss_and_grad, floats, load};

    #[test]
    fn matches_pytorch_mse() {
        let device = Device::flex().autodiff();
        let f = load("colorization.json");
        let shape = [2, 2, 3, 3];
        let pred = Tensor::<4>::from_data(TensorData::new(floats(&f["pred"]), shape), &device)
            .require_grad();
        let target = Tensor::<4>::from_data(TensorData::new(floats(&f["target"]), shape), &device);
        let loss = ab_regression_loss(pred.clone(), target);
        assert_loss_and_grad(&f, loss, &pred, "grad_pred");
    }

    #[test]
    fn classification_matches_pytorch_weighted_cross_entropy() {
        let device = Device::flex().autodiff();
        let f = &load("colorization.json")["classification"];
        let dims = |k: &str| -> [usize; 4] {
            let v: Vec<usize> = f[k]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as usize)
                .collect();
            v.try_into().unwrap()
        };
        let logits = Tensor::<4>::from_data(
            TensorData::new(floats(&f["logits"]), dims("logits_shape")),
            &device,
        )
        .require_grad();
        let ints: Vec<i64> = f["bins"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_i64().unwrap())
            .collect();
        let bins = Tensor::<4, Int>::from_data(TensorData::new(ints, dims("bins_shape")), &device);
        let targets = Tensor::<4>::from_data(
            TensorData::new(floats(&f["targets"]), dims("bins_shape")),
            &device,
        );
        let loss = ab_classification_loss(logits.clone(), bins, targets);
        assert_loss_and_grad(f, loss, &logits, "grad_logits");
    }
}
