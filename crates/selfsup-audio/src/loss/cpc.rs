//! CPC InfoNCE (van den Oord et al. 2018): predict latent frames k steps ahead.

use burn::prelude::*;

/// Mean over prediction steps `k = 1..=K` of the InfoNCE loss of step k; a 1-element tensor.
///
/// `latents` is `[B, T, D]` (the per-frame encodings z), `predictions[k-1]` is `[B, T, D]`: row
/// `(b, t)` is the prediction, made from the context at time t, of `z[b, t + k]`. `lengths[b]`
/// is the number of valid frames of utterance b. For step k every valid anchor `(b, t)` with
/// `t + k < lengths[b]` is scored against the targets `z[b', t' + k]` of all anchors of that
/// step (its own target is the positive; the others — other times of the same utterance and
/// other utterances — are the negatives) with logits `p · z / temperature`, and the loss of the
/// step is the mean cross-entropy over its anchors. Steps without an anchor are left out.
///
/// Panics if shapes disagree, `lengths` does not have B entries within `1..=T`, no step has an
/// anchor, or `temperature` is not finite and > 0.
pub fn cpc_info_nce_loss(
    predictions: &[Tensor<3>],
    latents: Tensor<3>,
    lengths: &[usize],
    temperature: f64,
) -> Tensor<1> {
    assert!(
        temperature.is_finite() && temperature > 0.0,
        "temperature must be finite and > 0, got {temperature}"
    );
    let [b, t, d] = latents.dims();
    assert_eq!(
        lengths.len(),
        b,
        "lengths must have one entry per utterance (B = {b})"
    );
    assert!(
        lengths.iter().all(|&l| (1..=t).contains(&l)),
        "lengths must be in 1..=T ({t}), got {lengths:?}"
    );
    let device = latents.device();
    let z = latents.reshape([b * t, d]);
    let mut losses = Vec::new();
    for (i, prediction) in predictions.iter().enumerate() {
        assert_eq!(
            prediction.dims(),
            [b, t, d],
            "predictions[{i}] must have the shape of latents [B, T, D]"
        );
        let k = i + 1;
        let anchors: Vec<i64> = (0..b)
            .flat_map(|u| (0..lengths[u].saturating_sub(k)).map(move |s| (u * t + s) as i64))
            .collect();
        if anchors.is_empty() {
            continue;
        }
        let n = anchors.len();
        let targets: Vec<i64> = anchors.iter().map(|&a| a + k as i64).collect();
        let index = |v: Vec<i64>| Tensor::<1, Int>::from_data(TensorData::new(v, [n]), &device);
        let p = prediction
            .clone()
            .reshape([b * t, d])
            .select(0, index(anchors));
        let zk = z.clone().select(0, index(targets));
        let positive = (p.clone() * zk.clone()).sum_dim(1).div_scalar(temperature); // [n, 1]
        let logits = p.matmul(zk.transpose()).div_scalar(temperature); // [n, n]
        let row_max = logits.clone().max_dim(1).detach();
        let log_sum_exp = (logits - row_max.clone()).exp().sum_dim(1).log() + row_max;
        losses.push((log_sum_exp - positive).mean());
    }
    assert!(
        !losses.is_empty(),
        "no prediction step has an anchor: every utterance is shorter than 2 frames"
    );
    let steps = losses.len();
    Tensor::cat(losses, 0).sum().div_scalar(steps as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn tensor3(v: &Value, dims: [usize; 3], device: &Device) -> Tensor<3> {
        let data: Vec<f32> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect();
        Tensor::from_data(TensorData::new(data, dims), device)
    }

    fn assert_close(what: &str, got: &[f32], want: &Value) {
        let want = want.as_array().unwrap();
        assert_eq!(got.len(), want.len(), "{what}: length");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            let w = w.as_f64().unwrap() as f32;
            assert!(
                (g - w).abs() <= 1e-5 * (1.0 + w.abs()),
                "{what}[{i}]: got {g}, want {w}"
            );
        }
    }

    #[test]
    fn matches_pytorch_value_and_gradients() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/cpc.json");
        let fixture: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let device = Device::flex().autodiff();
        for case in fixture["cases"].as_array().unwrap() {
            let u = |k: &str| case[k].as_u64().unwrap() as usize;
            let dims = [u("b"), u("t"), u("d")];
            let lengths: Vec<usize> = case["lengths"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as usize)
                .collect();
            let latents = tensor3(&case["latents"], dims, &device).require_grad();
            let predictions: Vec<Tensor<3>> = case["predictions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| tensor3(p, dims, &device).require_grad())
                .collect();
            let temperature = case["temperature"].as_f64().unwrap();
            let loss = cpc_info_nce_loss(&predictions, latents.clone(), &lengths, temperature);
            let grads = loss.backward();
            let value = loss.into_scalar::<f32>();
            assert_close("loss", &[value], &Value::Array(vec![case["loss"].clone()]));
            // A step without anchors leaves its predictions out of the graph: zero gradient.
            let g = |x: &Tensor<3>| match x.grad(&grads) {
                Some(g) => g.into_data().try_to_vec::<f32>().unwrap(),
                None => vec![0.0; dims.iter().product()],
            };
            assert_close("grad_latents", &g(&latents), &case["grad_latents"]);
            for (k, p) in predictions.iter().enumerate() {
                assert_close(
                    &format!("grad_predictions[{k}]"),
                    &g(p),
                    &case["grad_predictions"][k],
                );
            }
        }
    }

    #[test]
    fn perfect_predictions_give_low_loss() {
        // One-hot latents (all distinct); predicting 20 × the true next latent makes the
        // positive logit 20 and every negative 0, so the loss is ln(1 + 9e-20) ≈ 0, while
        // predicting the current frame instead scores a negative at 20 and the positive at 0
        // (a loss near 20 for every anchor but the first of each clip).
        let device = Device::flex();
        let eye: Vec<f32> = (0..144)
            .map(|i| if i % 13 == 0 { 1.0 } else { 0.0 })
            .collect();
        let z = Tensor::<3>::from_data(TensorData::new(eye, [2, 6, 12]), &device);
        let next = Tensor::cat(
            vec![
                z.clone().slice([0..2, 1..6, 0..12]),
                Tensor::zeros([2, 1, 12], &device),
            ],
            1,
        );
        let good = cpc_info_nce_loss(&[next.mul_scalar(20.0)], z.clone(), &[6, 6], 1.0);
        let wrong = cpc_info_nce_loss(&[z.clone().mul_scalar(20.0)], z, &[6, 6], 1.0);
        let (good, wrong) = (good.into_scalar::<f32>(), wrong.into_scalar::<f32>());
        assert!(good < 1e-6, "good {good}");
        assert!(wrong > 10.0, "wrong {wrong}");
    }

    #[test]
    #[should_panic(expected = "no prediction step has an anchor")]
    fn too_short_panics() {
        let device = Device::flex();
        let z = Tensor::<3>::zeros([2, 3, 4], &device);
        cpc_info_nce_loss(&[z.clone()], z, &[1, 1], 1.0);
    }
}
