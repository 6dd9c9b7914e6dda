//! Pooling of variable-length sequences (text tokens, audio frames) to one vector each.

use burn::prelude::*;

/// Mean of `x` `[B, T, D]` over the first `lengths[b]` positions of each row → `[B, D]`
/// (right padding is left out).
pub fn mean_pool(x: Tensor<3>, lengths: &[usize]) -> Tensor<2> {
    let [b, t, d] = x.dims();
    assert_eq!(lengths.len(), b, "one length per row");
    let mut weights = vec![0.0f32; b * t];
    for (row, &len) in lengths.iter().enumerate() {
        assert!((1..=t).contains(&len), "length {len} outside 1..={t}");
        weights[row * t..row * t + len].fill(1.0 / len as f32);
    }
    let w = Tensor::<3>::from_data(TensorData::new(weights, [b, t, 1]), &x.device());
    (x * w).sum_dim(1).reshape([b, d])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_pool_averages_valid_positions() {
        let device = Device::flex();
        let x = Tensor::<3>::from_data(
            TensorData::new((0..12).map(|v| v as f32).collect::<Vec<_>>(), [2, 3, 2]),
            &device,
        );
        let p = mean_pool(x, &[3, 1])
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        assert_eq!(p, [2.0, 3.0, 6.0, 7.0]);
    }
}
