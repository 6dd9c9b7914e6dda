//! Differentiable collectives on tensors, the pieces global-batch losses and SyncBatchNorm are
//! made of. Convention (as in PyTorch DDP): every rank's loss is a term of one objective, the
//! sum over ranks; parameter gradients are then averaged over ranks. Under it the gradient of
//! a sum over ranks is that sum again, so [`all_reduce_sum`]'s backward is an all-reduce of the
//! gradient, and [`all_gather_rows`] hands each rank the gradient of every rank's loss with
//! respect to its own rows.
//!
//! They run on the `cpu` (flex) device through the host group (MPI), and with feature `tch` on
//! LibTorch tensors: CPU ones through the host group, CUDA ones through NCCL (feature `nccl`).
//! With one process they are the identity, unless [`crate::active`] is forced.

#[cfg(feature = "tch")]
use burn::backend::LibTorch;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops};
use burn::backend::flex::{FlexTensor, Layout};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Flex, backend_extension};
use burn::prelude::*;
use burn_std::{Bytes, DType};

use crate::world;

/// Sum over ranks.
#[backend_extension(Flex, LibTorch: cfg(feature = "tch"), Autodiff)]
pub trait CollectiveOps: burn::backend::Backend {
    /// `Σ_ranks x` on every rank (`x` of the same shape everywhere).
    fn all_reduce_sum(x: FloatTensor<Self>) -> FloatTensor<Self>;
}

impl CollectiveOps for Flex {
    fn all_reduce_sum(x: FlexTensor) -> FlexTensor {
        assert!(
            x.dtype() == DType::F32,
            "all_reduce_sum: f32 tensors only, got {:?}",
            x.dtype()
        );
        let x = x.to_contiguous();
        let mut values = x.storage::<f32>().to_vec();
        world().all_reduce_sum(&mut values);
        FlexTensor::new(
            Bytes::from_elems(values),
            Layout::contiguous(x.layout().shape().clone()),
            DType::F32,
        )
    }
}

#[cfg(feature = "tch")]
impl CollectiveOps for LibTorch {
    fn all_reduce_sum(x: burn::backend::libtorch::TchTensor) -> burn::backend::libtorch::TchTensor {
        assert!(
            x.tensor.kind() == tch::Kind::Float,
            "all_reduce_sum: f32 tensors only, got {:?}",
            x.tensor.kind()
        );
        let out = match x.tensor.device() {
            #[cfg(feature = "nccl")]
            tch::Device::Cuda(index) => {
                // A tensor of its own to reduce in place: the input's storage may be shared.
                let out = x.tensor.contiguous().copy();
                // SAFETY: `out` is a live contiguous f32 CUDA tensor of `numel` elements on
                // `index`, returned below (its memory outlives the queued all-reduce).
                unsafe {
                    crate::nccl_engine::all_reduce_sum_f32(
                        out.data_ptr() as *mut f32,
                        out.numel(),
                        index as i32,
                    )
                };
                out
            }
            #[cfg(not(feature = "nccl"))]
            tch::Device::Cuda(index) => panic!(
                "collectives on CUDA tensors (cuda:{index}) need a build with NCCL: \
                 scripts/build_tch.sh builds it (feature `nccl`)"
            ),
            _ => {
                let shape = x.tensor.size();
                let mut values = Vec::<f32>::try_from(x.tensor.flatten(0, -1))
                    .expect("an f32 CPU tensor reads as Vec<f32>");
                world().all_reduce_sum(&mut values);
                tch::Tensor::from_slice(&values).reshape(&shape)
            }
        };
        burn::backend::libtorch::TchTensor::new(out)
    }
}

#[derive(Debug)]
struct AllReduceSumBackward;

impl<B: Backend + CollectiveOps> Backward<B, 1> for AllReduceSumBackward {
    type State = ();

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        if let Some(node) = node_x {
            grads.register::<B>(node.id, B::all_reduce_sum(grad));
        }
    }
}

impl<B: Backend + CollectiveOps, C: CheckpointStrategy> CollectiveOps for Autodiff<B, C> {
    fn all_reduce_sum(x: FloatTensor<Self>) -> FloatTensor<Self> {
        AllReduceSumBackward
            .prepare::<C>([x.node()])
            // Communication, not recomputable: never re-run in a checkpointed backward.
            .compute_bound()
            .stateless(B::all_reduce_sum(x.into_primitive()))
    }
}

/// `Σ_ranks x`, differentiable (the backward all-reduces the gradient). The identity with one
/// process (unless [`crate::active`] is forced).
pub fn all_reduce_sum<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if !crate::active() {
        return x;
    }
    Tensor::from_dispatch(<Dispatch as CollectiveOps>::all_reduce_sum(
        x.into_dispatch(),
    ))
}

/// The rows of every rank's `x` (each `[n, d]`, the same `n` everywhere), in rank order: the
/// global batch. Differentiable: each rank's rows get the gradient of every rank's loss. The
/// identity with one process.
pub fn all_gather_rows(x: Tensor<2>) -> Tensor<2> {
    let w = world();
    if !crate::active() {
        return x;
    }
    let [n, d] = x.dims();
    let device = x.device();
    // This rank's rows in place, zeros elsewhere, summed over ranks.
    let mut parts = Vec::with_capacity(3);
    if w.rank() > 0 {
        parts.push(Tensor::<2>::zeros([w.rank() * n, d], &device));
    }
    parts.push(x);
    if w.rank() + 1 < w.world() {
        parts.push(Tensor::<2>::zeros(
            [(w.world() - w.rank() - 1) * n, d],
            &device,
        ));
    }
    all_reduce_sum(Tensor::cat(parts, 0))
}
