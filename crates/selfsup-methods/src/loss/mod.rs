//! Self-supervised training losses.
//!
//! Each loss is a pure function over burn tensors (works on any device, autodiff or not) plus,
//! where a loss has hyper-parameters, a small validating config whose `new` returns
//! [`LossConfigError`] for bad values.

mod barlow_twins;
mod colorization;
mod dino;
mod info_nce_queue;
mod mae;
mod negative_cosine;
mod nt_xent;
mod rotation;
mod triplet;
mod vicreg;

pub use barlow_twins::{barlow_twins_loss, check_lambda};
pub use colorization::{AB_SCALE, ab_classification_loss, ab_regression_loss};
pub use dino::{check_dino, dino_center_update, dino_loss, teacher_temperature};
pub use info_nce_queue::{InfoNceQueueConfig, enqueue, info_nce_queue_loss, random_queue};
pub use mae::{PatchMask, mae_loss, mae_target};
pub use negative_cosine::negative_cosine_similarity;
pub use nt_xent::{NtXentConfig, nt_xent_loss};
pub use rotation::{rotate_four_ways, rotation_loss};
pub use triplet::{
    TripletConfig, TripletMining, mine_negatives, triplet_loss, triplet_loss_with_negatives,
};
pub use vicreg::{VicRegWeights, vicreg_loss};

use burn::prelude::*;

/// A rejected loss hyper-parameter or input.
#[derive(Debug, Clone, PartialEq)]
pub enum LossConfigError {
    /// `temperature` must be finite and > 0.
    Temperature(f64),
    /// `margin` must be finite and >= 0.
    Margin(f64),
    /// A queue of negatives needs at least one entry.
    QueueSize(usize),
    /// A loss term's weight (named) must be finite and >= 0 (a momentum: within [0, 1]).
    Weight(&'static str, f64),
}

impl core::fmt::Display for LossConfigError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Temperature(t) => write!(f, "temperature must be finite and > 0, got {t}"),
            Self::Margin(m) => write!(f, "margin must be finite and >= 0, got {m}"),
            Self::QueueSize(k) => write!(f, "the queue needs at least 1 entry, got {k}"),
            Self::Weight(name, w) => write!(f, "{name} must be finite and >= 0, got {w}"),
        }
    }
}

impl std::error::Error for LossConfigError {}

/// Row-wise L2 normalisation, `x / max(||x||, 1e-12)` like `torch.nn.functional.normalize`.
pub fn l2_normalize(x: Tensor<2>) -> Tensor<2> {
    let norm = x.clone().square().sum_dim(1).sqrt().clamp_min(1e-12);
    x / norm
}

/// Panics unless two embedding batches have the same `[N, D]` shape with N >= `min_rows`.
pub(crate) fn check_pair(
    name_a: &str,
    a: &Tensor<2>,
    name_b: &str,
    b: &Tensor<2>,
    min_rows: usize,
) {
    let (da, db) = (a.dims(), b.dims());
    assert_eq!(
        da, db,
        "{name_a} and {name_b} must have the same shape [N, D], got {da:?} and {db:?}"
    );
    assert!(
        da[0] >= min_rows,
        "{name_a} must have at least {min_rows} rows (N), got {}",
        da[0]
    );
}

#[cfg(test)]
pub(crate) mod test_util {
    use burn::prelude::*;
    use serde_json::Value;

    pub fn load(name: &str) -> Value {
        let path = format!("{}/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        serde_json::from_str(&text).unwrap()
    }

    pub fn floats(v: &Value) -> Vec<f32> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect()
    }

    pub fn tensor2(v: &Value, n: usize, d: usize, device: &Device) -> Tensor<2> {
        Tensor::from_data(TensorData::new(floats(v), [n, d]), device)
    }

    /// Checks a loss value and the gradients of its two inputs against a fixture case:
    /// `case["loss"]`, `case[grad_keys.0]`, `case[grad_keys.1]`.
    pub fn assert_loss_and_grads(
        case: &Value,
        loss: Tensor<1>,
        inputs: (&Tensor<2>, &Tensor<2>),
        grad_keys: (&str, &str),
    ) {
        let grads = loss.backward();
        assert_loss_value(case, loss);
        assert_grad(case, &grads, inputs.0, grad_keys.0);
        assert_grad(case, &grads, inputs.1, grad_keys.1);
    }

    /// [`assert_loss_and_grads`] for a loss of one input tensor of any rank.
    pub fn assert_loss_and_grad<const D: usize>(
        case: &Value,
        loss: Tensor<1>,
        input: &Tensor<D>,
        grad_key: &str,
    ) {
        let grads = loss.backward();
        assert_loss_value(case, loss);
        assert_grad(case, &grads, input, grad_key);
    }

    fn assert_loss_value(case: &Value, loss: Tensor<1>) {
        let value = loss.into_data().try_to_vec::<f32>().unwrap();
        assert_close(
            "loss",
            &value,
            &[case["loss"].as_f64().unwrap() as f32],
            1e-5,
        );
    }

    fn assert_grad<const D: usize>(
        case: &Value,
        grads: &burn::tensor::Gradients,
        input: &Tensor<D>,
        key: &str,
    ) {
        let g = input
            .grad(grads)
            .unwrap()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        assert_close(key, &g, &floats(&case[key]), 1e-5);
    }

    pub fn assert_close(what: &str, got: &[f32], want: &[f32], tol: f32) {
        assert_eq!(got.len(), want.len(), "{what}: length");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g - w).abs() <= tol * (1.0 + w.abs()),
                "{what}[{i}]: got {g}, want {w}"
            );
        }
    }
}
