//! Masked autoencoding (He et al. 2022): a random subset of patches is hidden, the model
//! reconstructs their pixels, and the loss is the mean squared error over the hidden patches
//! only, optionally against per-patch normalised pixels.

use burn::prelude::*;

use selfsup_data::SplitMix64;

/// Which patches of each image are hidden: the same plan drives the encoder (visible patches
/// only), the decoder (un-shuffling) and the loss (masked patches only).
#[derive(Debug, Clone, PartialEq)]
pub struct PatchMask {
    pub batch: usize,
    pub patches: usize,
    /// Per image, the visible patches' indices in ascending order (`keep` of them).
    pub visible: Vec<Vec<usize>>,
    /// Per image, the hidden patches' indices in ascending order.
    pub hidden: Vec<Vec<usize>>,
}

impl PatchMask {
    /// Hides `round(patches · ratio)` patches of each of `batch` images, chosen uniformly at
    /// random from a SplitMix64 stream seeded by `seed` (the same plan on every platform).
    /// At least one patch stays visible.
    pub fn random(batch: usize, patches: usize, ratio: f64, seed: u64) -> Self {
        assert!(
            (0.0..1.0).contains(&ratio),
            "mask ratio must be within [0, 1), got {ratio}"
        );
        let n_hidden = ((patches as f64 * ratio).round() as usize).min(patches - 1);
        let mut rng = SplitMix64::from_state(seed);
        let mut visible = Vec::with_capacity(batch);
        let mut hidden = Vec::with_capacity(batch);
        for _ in 0..batch {
            // Fisher-Yates: the first n_hidden of the permutation are hidden.
            let mut order: Vec<usize> = (0..patches).collect();
            for i in (1..patches).rev() {
                let j = (rng.next_u64() % (i as u64 + 1)) as usize;
                order.swap(i, j);
            }
            let mut h = order[..n_hidden].to_vec();
            let mut v = order[n_hidden..].to_vec();
            h.sort_unstable();
            v.sort_unstable();
            hidden.push(h);
            visible.push(v);
        }
        Self {
            batch,
            patches,
            visible,
            hidden,
        }
    }

    pub fn num_visible(&self) -> usize {
        self.visible.first().map_or(0, Vec::len)
    }

    /// `[batch, patches]`: 1 where a patch is hidden, 0 where visible (MAE's `mask`).
    pub fn hidden_indicator(&self, device: &Device) -> Tensor<2> {
        let mut m = vec![0f32; self.batch * self.patches];
        for (b, h) in self.hidden.iter().enumerate() {
            for &p in h {
                m[b * self.patches + p] = 1.0;
            }
        }
        Tensor::from_data(TensorData::new(m, [self.batch, self.patches]), device)
    }

    /// Gather indices `[batch, visible, dim]` selecting the visible tokens along dim 1.
    pub fn visible_index(&self, dim: usize, device: &Device) -> Tensor<3, Int> {
        let k = self.num_visible();
        let idx: Vec<i64> = self
            .visible
            .iter()
            .flat_map(|v| v.iter().flat_map(|&p| std::iter::repeat_n(p as i64, dim)))
            .collect();
        Tensor::from_data(TensorData::new(idx, [self.batch, k, dim]), device)
    }

    /// Gather indices `[batch, patches, dim]` that put `cat([visible tokens, hidden tokens])`
    /// (each group in ascending patch order) back in patch order.
    pub fn restore_index(&self, dim: usize, device: &Device) -> Tensor<3, Int> {
        let mut idx = Vec::with_capacity(self.batch * self.patches * dim);
        for (v, h) in self.visible.iter().zip(&self.hidden) {
            let mut slot = vec![0i64; self.patches];
            for (i, &p) in v.iter().chain(h).enumerate() {
                slot[p] = i as i64;
            }
            for s in slot {
                idx.extend(std::iter::repeat_n(s, dim));
            }
        }
        Tensor::from_data(
            TensorData::new(idx, [self.batch, self.patches, dim]),
            device,
        )
    }
}

/// The reconstruction target: `patches` (`[B, N, P]`), or, with `norm_pix`, each patch
/// normalised by its own mean and (unbiased) variance, `(x - mean) / sqrt(var + 1e-6)`.
pub fn mae_target(patches: Tensor<3>, norm_pix: bool) -> Tensor<3> {
    if !norm_pix {
        return patches;
    }
    let p = patches.dims()[2];
    let mean = patches.clone().mean_dim(2);
    let centred = patches - mean;
    let var = centred.clone().square().sum_dim(2) / (p as f64 - 1.0).max(1.0);
    centred / (var + 1e-6).sqrt()
}

/// MAE's loss: per-patch mean squared error between `pred` and `target` (`[B, N, P]`),
/// averaged over the patches where `hidden` (`[B, N]`, 1 = hidden) is 1. Visible patches
/// contribute nothing, not even gradient.
pub fn mae_loss(pred: Tensor<3>, target: Tensor<3>, hidden: Tensor<2>) -> Tensor<1> {
    assert_eq!(
        pred.dims(),
        target.dims(),
        "MAE prediction and target must have the same [B, N, P] shape"
    );
    let [b, n, _] = pred.dims();
    assert_eq!(hidden.dims(), [b, n], "MAE mask must be [B, N]");
    let per_patch = (pred - target.detach())
        .square()
        .mean_dim(2)
        .reshape([b, n]);
    (per_patch * hidden.clone()).sum() / hidden.sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loss::test_util::{assert_close, floats, load};

    #[test]
    fn masking_keeps_exactly_the_configured_number_of_patches() {
        for (patches, ratio, hidden) in
            [(64, 0.75, 48), (16, 0.75, 12), (49, 0.75, 37), (4, 0.9, 3)]
        {
            let m = PatchMask::random(5, patches, ratio, 7);
            for (v, h) in m.visible.iter().zip(&m.hidden) {
                assert_eq!(h.len(), hidden);
                assert_eq!(v.len(), patches - hidden);
                let mut all: Vec<usize> = v.iter().chain(h).copied().collect();
                all.sort_unstable();
                assert_eq!(
                    all,
                    (0..patches).collect::<Vec<_>>(),
                    "a partition of the patches"
                );
            }
            // Images get different masks (when there are many possible); the same seed gives
            // the same plan.
            if patches >= 16 {
                assert_ne!(m.hidden[0], m.hidden[1]);
            }
            assert_eq!(m, PatchMask::random(5, patches, ratio, 7));
            assert_ne!(m, PatchMask::random(5, patches, ratio, 8));
        }
    }

    #[test]
    fn gather_indices_select_and_restore() {
        let device = Device::flex();
        let m = PatchMask::random(2, 6, 0.5, 3);
        // Token value = 10·image + patch.
        let tokens = Tensor::<3>::from_data(
            TensorData::new(
                (0..12)
                    .map(|i| ((i / 6) * 10 + i % 6) as f32)
                    .collect::<Vec<_>>(),
                [2, 6, 1],
            ),
            &device,
        );
        let vis = tokens.clone().gather(1, m.visible_index(1, &device));
        let got = vis.clone().into_data().try_to_vec::<f32>().unwrap();
        let want: Vec<f32> = m
            .visible
            .iter()
            .enumerate()
            .flat_map(|(b, v)| v.iter().map(move |&p| (b * 10 + p) as f32))
            .collect();
        assert_eq!(got, want);
        let hid = tokens.clone().gather(
            1,
            Tensor::from_data(
                TensorData::new(
                    m.hidden
                        .iter()
                        .flatten()
                        .map(|&p| p as i64)
                        .collect::<Vec<_>>(),
                    [2, 3, 1],
                ),
                &device,
            ),
        );
        let back = Tensor::cat(vec![vis, hid], 1).gather(1, m.restore_index(1, &device));
        assert_eq!(
            back.into_data().try_to_vec::<f32>().unwrap(),
            tokens.into_data().try_to_vec::<f32>().unwrap()
        );
    }

    #[test]
    fn loss_matches_pytorch_and_ignores_visible_patches() {
        let device = Device::flex().autodiff();
        let f = load("mae.json");
        let [b, n, p] = [0, 1, 2].map(|i| f["shape"][i].as_u64().unwrap() as usize);
        let t3 =
            |k: &str| Tensor::<3>::from_data(TensorData::new(floats(&f[k]), [b, n, p]), &device);
        let hidden = Tensor::<2>::from_data(TensorData::new(floats(&f["mask"]), [b, n]), &device);
        for (norm_pix, key) in [(false, "plain"), (true, "norm_pix")] {
            let pred = t3("pred").require_grad();
            let target = mae_target(t3("target"), norm_pix);
            let loss = mae_loss(pred.clone(), target.clone(), hidden.clone());
            let grads = loss.backward();
            let case = &f[key];
            assert_close(
                key,
                &loss.clone().into_data().try_to_vec::<f32>().unwrap(),
                &[case["loss"].as_f64().unwrap() as f32],
                1e-5,
            );
            let g = pred
                .grad(&grads)
                .unwrap()
                .into_data()
                .try_to_vec::<f32>()
                .unwrap();
            assert_close(
                &format!("{key} grad_pred"),
                &g,
                &floats(&case["grad_pred"]),
                1e-5,
            );
            let mask = floats(&f["mask"]);
            for (i, gv) in g.iter().enumerate() {
                if mask[i / p] == 0.0 {
                    assert_eq!(*gv, 0.0, "gradient at a visible patch");
                }
            }
            // Arbitrary predictions at visible patches leave the loss unchanged.
            let noise: Vec<f32> = (0..b * n * p)
                .map(|i| {
                    if mask[i / p] == 0.0 {
                        100.0 + i as f32
                    } else {
                        0.0
                    }
                })
                .collect();
            let moved =
                t3("pred") + Tensor::<3>::from_data(TensorData::new(noise, [b, n, p]), &device);
            let loss2 = mae_loss(moved, target, hidden.clone());
            assert_eq!(
                loss2.into_data().try_to_vec::<f32>().unwrap(),
                loss.into_data().try_to_vec::<f32>().unwrap()
            );
        }
    }
}
