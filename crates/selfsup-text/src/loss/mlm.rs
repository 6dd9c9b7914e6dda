//! Masked-language-model loss with a decoder tied to the input embeddings (BERT).

use burn::prelude::*;

use super::IGNORE_INDEX;

/// A language-model loss and what it was computed on.
pub struct LmLoss {
    /// Mean cross-entropy over the labelled positions; a 1-element tensor.
    pub loss: Tensor<1>,
    /// Logits `[M, V]` of the M labelled positions.
    pub logits: Tensor<2>,
    /// Their target ids.
    pub targets: Vec<i64>,
}

impl LmLoss {
    /// Labelled positions whose arg-max logit is the target.
    pub fn correct(&self) -> usize {
        let predicted = self
            .logits
            .clone()
            .argmax(1)
            .into_data()
            .convert::<i64>()
            .try_into_vec::<i64>()
            .expect("argmax ids");
        predicted
            .iter()
            .zip(&self.targets)
            .filter(|(p, t)| p == t)
            .count()
    }

    pub fn count(&self) -> usize {
        self.targets.len()
    }
}

/// `cross_entropy(hidden[m] · Wᵀ + b, labels[m])` averaged over the positions m whose label is
/// not [`IGNORE_INDEX`]: PyTorch's `F.cross_entropy(hidden @ W.T + b, labels)`, where `W` is
/// the `[V, D]` token-embedding matrix (tied decoder) and `b` a `[V]` output bias.
///
/// `hidden` is `[B, T, D]` and `labels` has `B · T` entries in row-major order. Only the
/// labelled rows are decoded, so unlabelled positions get exactly zero gradient and cost no
/// `D × V` product. Panics if no position is labelled or a label is outside `0..V`.
pub fn masked_lm_loss(
    hidden: Tensor<3>,
    labels: &[i64],
    decoder_weight: Tensor<2>,
    decoder_bias: Tensor<1>,
) -> LmLoss {
    let [b, t, d] = hidden.dims();
    let [v, dw] = decoder_weight.dims();
    assert_eq!(d, dw, "hidden size {d} differs from the decoder's {dw}");
    assert_eq!(labels.len(), b * t, "one label per position ({b} x {t})");
    let (rows, targets): (Vec<i64>, Vec<i64>) = labels
        .iter()
        .enumerate()
        .filter(|(_, l)| **l != IGNORE_INDEX)
        .map(|(i, &l)| {
            assert!(
                (0..v as i64).contains(&l),
                "label {l} at position {i} outside the vocabulary 0..{v}"
            );
            (i as i64, l)
        })
        .unzip();
    assert!(!rows.is_empty(), "no labelled position: nothing to predict");
    let m = rows.len();
    let device = hidden.device();
    let selected = hidden.reshape([b * t, d]).select(
        0,
        Tensor::<1, Int>::from_data(TensorData::new(rows, [m]), &device),
    );
    let logits = selected.matmul(decoder_weight.transpose()) + decoder_bias.unsqueeze::<2>();
    let target_ids = Tensor::<1, Int>::from_data(TensorData::new(targets.clone(), [m]), &device);
    // log-softmax with the row max subtracted (exact, and stable for large logits).
    let row_max = logits.clone().max_dim(1).detach();
    let log_sum_exp = (logits.clone() - row_max.clone()).exp().sum_dim(1).log() + row_max;
    let target_logit = logits.clone().gather(1, target_ids.unsqueeze_dim::<2>(1));
    let loss = (log_sum_exp - target_logit).mean();
    LmLoss {
        loss,
        logits: logits.detach(),
        targets,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::Value;

    pub(crate) fn floats(v: &Value) -> Vec<f32> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect()
    }

    pub(crate) fn ints(v: &Value) -> Vec<i64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_i64().unwrap())
            .collect()
    }

    pub(crate) fn assert_close(what: &str, got: &[f32], want: &[f32]) {
        assert_eq!(got.len(), want.len(), "{what}: length");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g - w).abs() <= 1e-4 * (1.0 + w.abs()),
                "{what}[{i}]: got {g}, want {w}"
            );
        }
    }

    pub(crate) fn fixture() -> Value {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/lm_losses.json");
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    /// Leaf tensors of one fixture case: hidden `[B, T, D]`, weight `[V, D]`, bias `[V]`.
    pub(crate) fn leaves(case: &Value, device: &Device) -> (Tensor<3>, Tensor<2>, Tensor<1>) {
        let u = |k: &str| case[k].as_u64().unwrap() as usize;
        let (b, t, d, v) = (u("b"), u("t"), u("d"), u("v"));
        let h = Tensor::<3>::from_data(TensorData::new(floats(&case["hidden"]), [b, t, d]), device);
        let w = Tensor::<2>::from_data(TensorData::new(floats(&case["weight"]), [v, d]), device);
        let bias = Tensor::<1>::from_data(TensorData::new(floats(&case["bias"]), [v]), device);
        (h.require_grad(), w.require_grad(), bias.require_grad())
    }

    pub(crate) fn grad<const D: usize>(x: &Tensor<D>, grads: &burn::tensor::Gradients) -> Vec<f32> {
        x.grad(grads)
            .unwrap()
            .into_data()
            .try_into_vec::<f32>()
            .unwrap()
    }

    #[test]
    fn matches_pytorch_value_and_gradients() {
        let device = Device::flex().autodiff();
        let fixture = fixture();
        for case in fixture["mlm"].as_array().unwrap() {
            let (h, w, bias) = leaves(case, &device);
            let out = masked_lm_loss(h.clone(), &ints(&case["labels"]), w.clone(), bias.clone());
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
            assert_close(
                "grad_bias",
                &grad(&bias, &grads),
                &floats(&case["grad_bias"]),
            );
            assert_eq!(out.correct(), case["correct"].as_u64().unwrap() as usize);
        }
    }

    #[test]
    fn unmasked_positions_carry_no_loss() {
        // Changing the hidden state of an unlabelled position changes neither the loss nor
        // gets any gradient; every labelled position gets some.
        let device = Device::flex().autodiff();
        let (b, t, d, v) = (2, 5, 4, 7);
        let values: Vec<f32> = (0..b * t * d)
            .map(|i| ((i * 37 % 23) as f32 - 11.0) / 7.0)
            .collect();
        let w = Tensor::<2>::from_data(
            TensorData::new(
                (0..v * d)
                    .map(|i| ((i * 13 % 17) as f32 - 8.0) / 9.0)
                    .collect::<Vec<_>>(),
                [v, d],
            ),
            &device,
        );
        let bias = Tensor::<1>::zeros([v], &device);
        let mut labels = vec![IGNORE_INDEX; b * t];
        labels[1] = 3;
        labels[7] = 0;
        labels[9] = 6;
        let run = |values: Vec<f32>| {
            let h =
                Tensor::<3>::from_data(TensorData::new(values, [b, t, d]), &device).require_grad();
            let out = masked_lm_loss(h.clone(), &labels, w.clone(), bias.clone());
            let grads = out.loss.backward();
            (out.loss.into_scalar::<f32>(), grad(&h, &grads))
        };
        let (loss, g) = run(values.clone());
        for (pos, label) in labels.iter().enumerate() {
            let row = &g[pos * d..(pos + 1) * d];
            if *label == IGNORE_INDEX {
                assert!(
                    row.iter().all(|x| *x == 0.0),
                    "position {pos}: gradient {row:?}"
                );
            } else {
                assert!(
                    row.iter().any(|x| x.abs() > 1e-4),
                    "position {pos}: no gradient"
                );
            }
        }
        let mut changed = values;
        for x in &mut changed[2 * d..3 * d] {
            *x += 5.0; // position 2 is unlabelled
        }
        assert_eq!(run(changed).0, loss);
    }
}
