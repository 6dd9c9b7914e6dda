//! Triplet margin loss with in-batch negative mining.
//!
//! Distance choice: Euclidean distance between L2-normalised embeddings, so distances lie in
//! [0, 2] and a margin means the same thing whatever the embedding scale (as in FaceNet). It is a
//! monotone function of cosine similarity (`d^2 = 2 - 2 cos`), so mining uses cosine similarity.
//! Like `torch.nn.functional.pairwise_distance`, the distance is `||x - y + 1e-6||_2`; the small
//! offset keeps the gradient defined when two embeddings coincide.

use burn::prelude::*;
use selfsup_data::SplitMix64;

use super::{LossConfigError, check_pair, l2_normalize};

/// Offset added inside the distance, as `torch.nn.functional.pairwise_distance` does.
const DISTANCE_EPS: f64 = 1e-6;

/// How each anchor's negative is picked among the other images' views.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TripletMining {
    /// The candidate closest to the anchor (hardest negative).
    Hardest,
    /// A uniformly random candidate, reproducible from the seed.
    Random,
}

/// Validated triplet-loss hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TripletConfig {
    margin: f64,
    mining: TripletMining,
}

impl TripletConfig {
    /// `margin` must be finite and >= 0.
    pub fn new(margin: f64, mining: TripletMining) -> Result<Self, LossConfigError> {
        if margin.is_finite() && margin >= 0.0 {
            Ok(Self { margin, mining })
        } else {
            Err(LossConfigError::Margin(margin))
        }
    }

    pub fn margin(&self) -> f64 {
        self.margin
    }

    pub fn mining(&self) -> TripletMining {
        self.mining
    }

    /// See [`triplet_loss`].
    pub fn forward(&self, anchor: Tensor<2>, positive: Tensor<2>, seed: u64) -> Tensor<1> {
        triplet_loss(anchor, positive, self.margin, self.mining, seed)
    }
}

/// Mean over the batch of `max(0, d(a_i, p_i) - d(a_i, n_i) + margin)`; a 1-element tensor.
///
/// `anchor[i]` and `positive[i]` (both `[N, D]`, N >= 2) are two views of image i. The negative
/// n_i is one of the 2N-2 views of the other images (rows of `anchor` and `positive` other than
/// i), chosen by `mining` (see [`mine_negatives`]; `seed` only matters for `Random`).
pub fn triplet_loss(
    anchor: Tensor<2>,
    positive: Tensor<2>,
    margin: f64,
    mining: TripletMining,
    seed: u64,
) -> Tensor<1> {
    let negatives = mine_negatives(anchor.clone(), positive.clone(), mining, seed);
    triplet_loss_with_negatives(anchor, positive, negatives, margin)
}

/// For each anchor i, the index of its negative in the 2N candidates `cat([anchor, positive])`,
/// never i or i+N (the two views of image i). Shape `[N]`. No gradient flows through mining.
///
/// `Hardest` takes the candidate with the highest cosine similarity (smallest distance).
/// `Random` draws uniformly among the 2N-2 candidates from a SplitMix64 stream seeded by `seed`,
/// so the same seed and N give the same indices on every platform.
pub fn mine_negatives(
    anchor: Tensor<2>,
    positive: Tensor<2>,
    mining: TripletMining,
    seed: u64,
) -> Tensor<1, Int> {
    check_pair("anchor", &anchor, "positive", &positive, 2);
    let n = anchor.dims()[0];
    let device = anchor.device();
    match mining {
        TripletMining::Hardest => {
            let a = l2_normalize(anchor.detach());
            let candidates = Tensor::cat(vec![a.clone(), l2_normalize(positive.detach())], 0);
            let similarity = a.matmul(candidates.transpose()); // [N, 2N]
            // Rule out both views of the anchor's own image: columns i and i+N of row i.
            let own = Tensor::<2, Bool>::diag_mask([n, n], 0, &device).bool_not();
            let own = Tensor::cat(vec![own.clone(), own], 1);
            similarity
                .mask_fill(own, f32::NEG_INFINITY)
                .argmax(1)
                .reshape([n])
        }
        TripletMining::Random => {
            let mut rng = SplitMix64::from_state(seed);
            let indices: Vec<i64> = (0..n)
                .map(|i| {
                    // Position among the 2N-2 allowed candidates, then skip i and i+N.
                    let mut j = (rng.next_u64() % (2 * n as u64 - 2)) as usize;
                    if j >= i {
                        j += 1;
                    }
                    if j >= i + n {
                        j += 1;
                    }
                    j as i64
                })
                .collect();
            Tensor::from_data(TensorData::new(indices, [n]), &device)
        }
    }
}

/// [`triplet_loss`] with the negatives given explicitly as indices into `cat([anchor, positive])`
/// (shape `[N]`, as returned by [`mine_negatives`]). Embeddings are L2-normalised first; the
/// result matches `torch.nn.TripletMarginLoss(margin)` on the normalised triplets.
///
/// Panics on mismatched shapes, a wrong number of indices or a negative / non-finite margin.
pub fn triplet_loss_with_negatives(
    anchor: Tensor<2>,
    positive: Tensor<2>,
    negative_indices: Tensor<1, Int>,
    margin: f64,
) -> Tensor<1> {
    check_pair("anchor", &anchor, "positive", &positive, 2);
    if let Err(e) = TripletConfig::new(margin, TripletMining::Hardest) {
        panic!("triplet_loss: {e}");
    }
    let n = anchor.dims()[0];
    assert_eq!(
        negative_indices.dims(),
        [n],
        "negative_indices must have one index per anchor row ({n})"
    );
    let a = l2_normalize(anchor);
    let p = l2_normalize(positive);
    let negative = Tensor::cat(vec![a.clone(), p.clone()], 0).select(0, negative_indices);
    let d_ap = distance(a.clone(), p);
    let d_an = distance(a, negative);
    (d_ap - d_an).add_scalar(margin).clamp_min(0.0).mean()
}

/// Row-wise `||x - y + eps||_2`, shape `[N, 1]`.
fn distance(x: Tensor<2>, y: Tensor<2>) -> Tensor<2> {
    (x - y).add_scalar(DISTANCE_EPS).square().sum_dim(1).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loss::test_util::*;

    fn indices(t: Tensor<1, Int>) -> Vec<i64> {
        t.into_data().try_to_vec_as::<i64>().unwrap()
    }

    #[test]
    fn matches_torch_triplet_margin_loss() {
        let device = Device::flex().autodiff();
        let fixture = load("triplet.json");
        for case in fixture["cases"].as_array().unwrap() {
            let (n, d) = (
                case["n"].as_u64().unwrap() as usize,
                case["d"].as_u64().unwrap() as usize,
            );
            let margin = case["margin"].as_f64().unwrap();
            let want_idx: Vec<i64> = case["negative_indices"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_i64().unwrap())
                .collect();
            let anchor = tensor2(&case["anchor"], n, d, &device).require_grad();
            let positive = tensor2(&case["positive"], n, d, &device).require_grad();

            let loss = if case["mining"] == "hardest" {
                // Hardest mining is deterministic: the full API must pick the same negatives.
                let mined =
                    mine_negatives(anchor.clone(), positive.clone(), TripletMining::Hardest, 0);
                assert_eq!(indices(mined), want_idx, "hardest negatives");
                triplet_loss(
                    anchor.clone(),
                    positive.clone(),
                    margin,
                    TripletMining::Hardest,
                    0,
                )
            } else {
                let idx = Tensor::from_data(TensorData::new(want_idx, [n]), &device);
                triplet_loss_with_negatives(anchor.clone(), positive.clone(), idx, margin)
            };
            assert_loss_and_grads(
                case,
                loss,
                (&anchor, &positive),
                ("grad_anchor", "grad_positive"),
            );
        }
    }

    #[test]
    fn random_mining_is_seeded_and_skips_own_image() {
        let device = Device::flex();
        let n = 5;
        let x = Tensor::<2>::random([n, 3], burn::tensor::Distribution::Default, &device);
        let mine = |seed| {
            indices(mine_negatives(
                x.clone(),
                x.clone(),
                TripletMining::Random,
                seed,
            ))
        };
        assert_eq!(mine(7), mine(7));
        assert_ne!(mine(7), mine(8));
        for seed in 0..50 {
            for (i, j) in mine(seed).into_iter().enumerate() {
                assert!(j >= 0 && (j as usize) < 2 * n && j as usize != i && j as usize != i + n);
            }
        }
    }

    #[test]
    fn config_rejects_bad_margin() {
        assert_eq!(
            TripletConfig::new(-1.0, TripletMining::Hardest),
            Err(LossConfigError::Margin(-1.0))
        );
        assert!(TripletConfig::new(f64::INFINITY, TripletMining::Random).is_err());
        assert!(TripletConfig::new(0.0, TripletMining::Random).is_ok());
    }

    #[test]
    #[should_panic(expected = "anchor must have at least 2 rows")]
    fn single_row_panics() {
        let device = Device::flex();
        triplet_loss(
            Tensor::zeros([1, 3], &device),
            Tensor::zeros([1, 3], &device),
            0.5,
            TripletMining::Hardest,
            0,
        );
    }
}
