//! Causal (next-token, GPT-style) language-model loss: position t predicts token t + 1.

use burn::prelude::*;

use super::IGNORE_INDEX;
use super::mlm::{LmLoss, masked_lm_loss};

/// Labels for next-token prediction over right-padded rows of width `t`: position `i < len - 1`
/// of a row of length `len` is labelled with the row's token `i + 1`; the last token and the
/// padding carry no loss. `ids` holds the rows in row-major order.
pub fn next_token_labels(ids: &[u32], lengths: &[usize], t: usize) -> Vec<i64> {
    assert_eq!(
        ids.len(),
        lengths.len() * t,
        "ids must be {} rows of {t}",
        lengths.len()
    );
    let mut labels = vec![IGNORE_INDEX; ids.len()];
    for (row, &len) in lengths.iter().enumerate() {
        assert!(len <= t, "length {len} longer than the row width {t}");
        for i in 0..len.saturating_sub(1) {
            labels[row * t + i] = ids[row * t + i + 1] as i64;
        }
    }
    labels
}

/// Mean next-token cross-entropy over every position that has a next token, decoded with the
/// tied embedding matrix: the masked-LM loss with [`next_token_labels`] as labels (the same as
/// Hugging Face's shifted `GPT2LMHeadModel` loss). `hidden` must come from a causal encoder,
/// or a position sees the token it predicts.
pub fn causal_lm_loss(
    hidden: Tensor<3>,
    ids: &[u32],
    lengths: &[usize],
    decoder_weight: Tensor<2>,
    decoder_bias: Tensor<1>,
) -> LmLoss {
    let t = hidden.dims()[1];
    masked_lm_loss(
        hidden,
        &next_token_labels(ids, lengths, t),
        decoder_weight,
        decoder_bias,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loss::mlm::tests::{assert_close, fixture, floats, grad, ints, leaves};

    #[test]
    fn labels_are_the_next_token_within_each_row() {
        let ids = [2, 10, 11, 3, 0, 2, 12, 3, 0, 0];
        let labels = next_token_labels(&ids, &[4, 3], 5);
        let i = IGNORE_INDEX;
        assert_eq!(labels, [10, 11, 3, i, i, 12, 3, i, i, i]);
    }

    #[test]
    fn matches_pytorch_shifted_loss() {
        let device = Device::flex().autodiff();
        let fixture = fixture();
        for case in fixture["causal"].as_array().unwrap() {
            let (h, w, bias) = leaves(case, &device);
            let ids: Vec<u32> = ints(&case["ids"]).iter().map(|&x| x as u32).collect();
            let lengths: Vec<usize> = ints(&case["lengths"]).iter().map(|&x| x as usize).collect();
            let out = causal_lm_loss(h.clone(), &ids, &lengths, w.clone(), bias.clone());
            let grads = out.loss.backward();
            assert_close(
                "loss",
                &[out.loss.clone().into_scalar::<f32>()],
                &[case["loss"].as_f64().unwrap() as f32],
            );
            assert_close(
                "grad_hidden",
                &grad(&h, &grads),
                &floats(&case["grad_hidden"]),
            );
            assert_close(
                "grad_weight",
                &grad(&w, &grads),
                &floats(&case["grad_weight"]),
            );
        }
    }
}
