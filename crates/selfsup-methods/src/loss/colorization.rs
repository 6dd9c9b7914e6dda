//! Colorization as regression (the regression baseline of Zhang et al. 2016): the mean squared
//! error between predicted and true a*b* chroma, both scaled by 1/110 (the a*, b* range of
//! sRGB is about ±110), over every pixel.

use burn::prelude::*;

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
}
