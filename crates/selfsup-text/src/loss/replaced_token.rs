//! Replaced-token-detection loss (ELECTRA's discriminator): every token is a binary target,
//! original or replaced by the generator.

use burn::prelude::*;
use burn::tensor::activation::log_sigmoid;

/// The detection loss and what it was computed on.
pub struct ReplacedTokenLoss {
    /// Mean binary cross-entropy over the scored positions; a 1-element tensor.
    pub loss: Tensor<1>,
    /// Logits `[N]` of the N scored positions (detached).
    pub logits: Tensor<1>,
    /// Whether each was replaced.
    pub replaced: Vec<bool>,
}

impl ReplacedTokenLoss {
    /// Scored positions classified right (logit > 0 means "replaced").
    pub fn correct(&self) -> usize {
        let logits = self
            .logits
            .clone()
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .expect("f32 logits");
        logits
            .iter()
            .zip(&self.replaced)
            .filter(|(x, r)| (**x > 0.0) == **r)
            .count()
    }

    pub fn count(&self) -> usize {
        self.replaced.len()
    }
}

/// `binary_cross_entropy_with_logits(logits[valid], replaced[valid])`: PyTorch's (and Hugging
/// Face's `ElectraForPreTraining`) mean over the positions where `valid` is true.
///
/// `logits` is `[B, T]`; `replaced` and `valid` have `B · T` entries in row-major order.
/// Panics if no position is valid.
pub fn replaced_token_loss(
    logits: Tensor<2>,
    replaced: &[bool],
    valid: &[bool],
) -> ReplacedTokenLoss {
    let [b, t] = logits.dims();
    assert_eq!(replaced.len(), b * t, "one target per position ({b} x {t})");
    assert_eq!(
        valid.len(),
        b * t,
        "one validity flag per position ({b} x {t})"
    );
    let (rows, targets): (Vec<i64>, Vec<bool>) = valid
        .iter()
        .zip(replaced)
        .enumerate()
        .filter(|(_, (v, _))| **v)
        .map(|(i, (_, &r))| (i as i64, r))
        .unzip();
    assert!(!rows.is_empty(), "no valid position: nothing to detect");
    let n = rows.len();
    let device = logits.device();
    let x = logits.reshape([b * t]).select(
        0,
        Tensor::<1, Int>::from_data(TensorData::new(rows, [n]), &device),
    );
    let y = Tensor::<1>::from_data(
        TensorData::new(
            targets
                .iter()
                .map(|&r| if r { 1.0f32 } else { 0.0 })
                .collect(),
            [n],
        ),
        &device,
    );
    // -[y log σ(x) + (1 - y) log σ(-x)], with log σ computed stably.
    let loss = -(y.clone() * log_sigmoid(x.clone())
        + (y.neg() + 1.0) * log_sigmoid(x.clone().neg()))
    .mean();
    ReplacedTokenLoss {
        loss,
        logits: x.detach(),
        replaced: targets,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loss::mlm::tests::{assert_close, fixture, floats, grad};

    #[test]
    fn matches_pytorch_value_and_gradient() {
        let device = Device::flex().autodiff();
        let fixture = fixture();
        for case in fixture["replaced"].as_array().unwrap() {
            let u = |k: &str| case[k].as_u64().unwrap() as usize;
            let (b, t) = (u("b"), u("t"));
            let logits =
                Tensor::<2>::from_data(TensorData::new(floats(&case["logits"]), [b, t]), &device)
                    .require_grad();
            let replaced: Vec<bool> = case["replaced"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_bool().unwrap())
                .collect();
            let valid: Vec<bool> = case["lengths"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|n| {
                    let n = n.as_u64().unwrap() as usize;
                    (0..t).map(move |i| i < n)
                })
                .collect();
            let out = replaced_token_loss(logits.clone(), &replaced, &valid);
            let grads = out.loss.backward();
            assert_close(
                "loss",
                &[out.loss.clone().into_scalar::<f32>()],
                &[case["loss"].as_f64().unwrap() as f32],
            );
            // Padding gets exactly zero gradient (PyTorch's selected positions only).
            assert_close(
                "grad_logits",
                &grad(&logits, &grads),
                &floats(&case["grad_logits"]),
            );
            assert_eq!(out.correct(), case["correct"].as_u64().unwrap() as usize);
            assert_eq!(out.count(), valid.iter().filter(|v| **v).count());
        }
    }
}
