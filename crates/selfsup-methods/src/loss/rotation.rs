//! Rotation prediction (Gidaris et al. 2018): every image is shown at 0°, 90°, 180° and 270°
//! and a classifier names the rotation; the loss is the cross-entropy of that 4-way choice.

use burn::nn::loss::CrossEntropyLossConfig;
use burn::prelude::*;

/// The four rotations of a `[N, C, H, W]` batch of square images stacked as `[4N, C, H, W]`
/// (all 0° images, then 90°, 180°, 270° counter-clockwise, as `torch.rot90(x, k, (2, 3))`),
/// and the rotation index `k` of each row.
pub fn rotate_four_ways(x: Tensor<4>) -> (Tensor<4>, Tensor<1, Int>) {
    let [n, _, h, w] = x.dims();
    assert_eq!(h, w, "rotation prediction needs square images, got {h}×{w}");
    let device = x.device();
    let r90 = x.clone().flip([3]).swap_dims(2, 3);
    let r180 = x.clone().flip([2, 3]);
    let r270 = x.clone().swap_dims(2, 3).flip([3]);
    let labels: Vec<i64> = (0..4).flat_map(|k| std::iter::repeat_n(k, n)).collect();
    (
        Tensor::cat(vec![x, r90, r180, r270], 0),
        Tensor::from_data(TensorData::new(labels, [4 * n]), &device),
    )
}

/// Mean cross-entropy of `[M, 4]` rotation logits against the rotation indices.
pub fn rotation_loss(logits: Tensor<2>, labels: Tensor<1, Int>) -> Tensor<1> {
    let [m, k] = logits.dims();
    assert_eq!(k, 4, "rotation logits must have 4 columns, got {k}");
    assert_eq!(labels.dims(), [m], "one rotation label per row of logits");
    CrossEntropyLossConfig::new()
        .init(&logits.device())
        .forward(logits, labels)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loss::test_util::{assert_close, assert_loss_and_grad, floats, load, tensor2};

    #[test]
    fn rotations_and_loss_match_pytorch() {
        let device = Device::flex().autodiff();
        let f = load("rotation.json");
        let [n, c, s] = [0, 1, 2].map(|i| f["image_shape"][i].as_u64().unwrap() as usize);
        let x =
            Tensor::<4>::from_data(TensorData::new(floats(&f["images"]), [n, c, s, s]), &device);
        let (rotated, labels) = rotate_four_ways(x);
        assert_close(
            "rotated",
            &rotated.into_data().try_to_vec::<f32>().unwrap(),
            &floats(&f["rotated"]),
            0.0,
        );
        let want: Vec<i64> = f["labels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect();
        assert_eq!(
            labels
                .clone()
                .into_data()
                .convert::<i64>()
                .try_to_vec::<i64>()
                .unwrap(),
            want
        );

        let m = 4 * n;
        let logits = tensor2(&f["logits"], m, 4, &device).require_grad();
        let loss = rotation_loss(logits.clone(), labels);
        assert_loss_and_grad(&f, loss, &logits, "grad_logits");
    }
}
