//! BatchNorm for the ResNet and the heads, synchronised across data-parallel ranks where
//! [`set_sync_batch_norm`] asks for it (PyTorch's `SyncBatchNorm`): batch statistics over the
//! global batch, the same as one process training on it.

use std::sync::atomic::{AtomicU8, Ordering};

use burn::nn::BatchNorm;
use burn::prelude::*;
use selfsup_dist::ops::all_reduce_sum;
use serde::{Deserialize, Serialize};

/// Which BatchNorm layers compute their statistics over the global batch when several
/// processes train together (`train.sync_batch_norm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncBatchNorm {
    /// Each rank normalises with its own shard's statistics (PyTorch DDP's default).
    #[default]
    Off,
    /// The projection and prediction heads only.
    Head,
    /// Every BatchNorm, backbone and heads.
    All,
}

/// Where a BatchNorm layer sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Backbone,
    Head,
}

static SYNC: AtomicU8 = AtomicU8::new(0);

/// Sets which layers synchronise, for the whole process (it is a property of the run, like its
/// process group).
pub fn set_sync_batch_norm(sync: SyncBatchNorm) {
    SYNC.store(sync as u8, Ordering::Relaxed);
}

fn synchronised(part: Part) -> bool {
    match SYNC.load(Ordering::Relaxed) {
        x if x == SyncBatchNorm::All as u8 => true,
        x if x == SyncBatchNorm::Head as u8 => part == Part::Head,
        _ => false,
    }
}

/// Whether `bn` trains (autodiff device, layer not frozen, as burn's BatchNorm decides) with
/// synchronised statistics.
fn synchronised_training(bn: &BatchNorm, device: &Device, part: Part) -> bool {
    device.is_autodiff() && bn.training.is_enabled() && synchronised(part)
}

/// `bn` (then ReLU when `relu`) on `[B, C, H, W]`: over the global batch when training and
/// `part` is synchronised, else [`selfsup_kernels::batch_norm`]. A synchronised layer computes
/// the same way with one process as with several, so a run gives the same numbers whatever
/// the number of processes (and resumes across them).
pub fn batch_norm(bn: &BatchNorm, x: Tensor<4>, relu: bool, part: Part) -> Tensor<4> {
    if synchronised_training(bn, &x.device(), part) {
        let y = global_batch_norm(bn, x);
        return if relu {
            burn::tensor::activation::relu(y)
        } else {
            y
        };
    }
    selfsup_kernels::batch_norm(bn, x, relu)
}

/// [`batch_norm`] on `[B, D]` (a head's features).
pub fn batch_norm_1d(bn: &BatchNorm, x: Tensor<2>, part: Part) -> Tensor<2> {
    let [b, d] = x.dims();
    if synchronised_training(bn, &x.device(), part) {
        return global_batch_norm(bn, x.reshape([b, d, 1, 1])).reshape([b, d]);
    }
    bn.forward(x)
}

/// Training-mode BatchNorm with the mean and (biased) variance of every rank's `x`, two passes
/// for accuracy; running statistics updated from them as burn's BatchNorm does.
fn global_batch_norm(bn: &BatchNorm, x: Tensor<4>) -> Tensor<4> {
    let [b, c, h, w] = x.dims();
    let count = (b * h * w * selfsup_dist::world().world()) as f64;
    let channel_sums = |t: Tensor<4>| t.sum_dim(0).sum_dim(2).sum_dim(3).reshape([c]);
    let mean = all_reduce_sum(channel_sums(x.clone())).div_scalar(count);
    let centred = x - mean.clone().reshape([1, c, 1, 1]);
    let var = all_reduce_sum(channel_sums(centred.clone().powi_scalar(2))).div_scalar(count);
    let scale = var.clone().add_scalar(bn.epsilon).sqrt().recip() * bn.gamma.val();
    let y = centred * scale.reshape([1, c, 1, 1]) + bn.beta.val().reshape([1, c, 1, 1]);
    selfsup_kernels::update_running_stats(bn, mean, var, &y.device());
    y
}
