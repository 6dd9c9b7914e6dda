//! Pooling of variable-length sequences (text tokens, audio frames) to one vector each.

use burn::prelude::*;

/// Mean of `x` `[B, T, D]` over the first `lengths[b]` positions of each row → `[B, D]`
/// (right padding is left out).
pub fn mean_pool(x: Tensor<3>, lengths: &[usize]) -> Tensor<2> {
    let [b, t, d] = x.dims();
    check_lengths(lengths, b, t);
    let mut weights = vec![0.0f32; b * t];
    for (row, &len) in lengths.iter().enumerate() {
        weights[row * t..row * t + len].fill(1.0 / len as f32);
    }
    let w = Tensor::<3>::from_data(TensorData::new(weights, [b, t, 1]), &x.device());
    (x * w).sum_dim(1).reshape([b, d])
}

/// The output at the last non-padding position of each row of `x` `[B, T, D]` → `[B, D]`: the
/// only position that sees the whole sequence under a causal mask (GPT's classifier input).
pub fn last_pool(x: Tensor<3>, lengths: &[usize]) -> Tensor<2> {
    let [b, t, d] = x.dims();
    check_lengths(lengths, b, t);
    let rows: Vec<i64> = lengths
        .iter()
        .enumerate()
        .map(|(row, &len)| (row * t + len - 1) as i64)
        .collect();
    let rows = Tensor::<1, Int>::from_data(TensorData::new(rows, [b]), &x.device());
    x.reshape([b * t, d]).select(0, rows)
}

/// Panics unless there is one length per row, each in `1..=t`.
fn check_lengths(lengths: &[usize], b: usize, t: usize) {
    assert_eq!(lengths.len(), b, "one length per row");
    for &len in lengths {
        assert!((1..=t).contains(&len), "length {len} outside 1..={t}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pools_read_only_the_valid_positions() {
        let device = Device::flex();
        // Rows [[0,1],[2,3],[4,5]] (length 3) and [[6,7],[8,9],[10,11]] (length 1).
        let x = Tensor::<3>::from_data(
            TensorData::new((0..12).map(|v| v as f32).collect::<Vec<_>>(), [2, 3, 2]),
            &device,
        );
        let values = |p: Tensor<2>| p.into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(values(mean_pool(x.clone(), &[3, 1])), [2.0, 3.0, 6.0, 7.0]);
        assert_eq!(values(last_pool(x, &[3, 1])), [4.0, 5.0, 6.0, 7.0]);
    }
}
