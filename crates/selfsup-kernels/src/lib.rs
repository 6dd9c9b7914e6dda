//! selfsup's own CPU kernels for the ResNet hot paths, plugged into burn through its
//! backend-extension mechanism (`#[backend_extension(Flex, Autodiff)]`) with a hand-written
//! backward, so they take part in autodiff like burn's own ops.
//!
//! [`conv2d`] and [`batch_norm`] (fused with the ReLU after it) are the ResNet entry points;
//! [`gelu`], [`softmax_last`] and [`dropout`] the Transformer's. They fall back to burn's ops on
//! other devices or dtypes, or when [`set_enabled(false)`](set_enabled) / `SELFSUP_KERNELS=burn`
//! asks for burn's ops.

pub mod batch_norm;
pub mod conv;
pub mod elementwise;
pub mod layer_norm;

use std::sync::atomic::{AtomicU8, Ordering};

use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::{FlexTensor, Layout};
use burn::backend::ops::{ConvOptions, FloatTensorOps, ModuleOps};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Flex, backend_extension};
use burn::prelude::*;
use burn_std::{Bytes, DType, Shape};

use batch_norm::BnShape;
use burn::nn::BatchNorm;
use conv::ConvGeometry;

/// 2-D convolution (groups 1, dilation 1, no bias, symmetric padding) with its two gradients.
#[backend_extension(Flex, Autodiff)]
pub trait ConvKernels: burn::backend::Backend {
    /// `[B, C, H, W] ⊛ [Cout, C, KH, KW] → [B, Cout, OH, OW]`.
    fn conv2d_nchw(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        stride: usize,
        padding: usize,
    ) -> FloatTensor<Self>;
    /// ∂L/∂x from ∂L/∂y (`x` gives the input shape).
    fn conv2d_nchw_input_grad(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        stride: usize,
        padding: usize,
    ) -> FloatTensor<Self>;
    /// ∂L/∂weight from ∂L/∂y (`weight` gives the kernel shape).
    fn conv2d_nchw_weight_grad(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        stride: usize,
        padding: usize,
    ) -> FloatTensor<Self>;
}

/// Training-mode BatchNorm over `[B, C, H, W]` (batch statistics), optionally followed by ReLU.
#[backend_extension(Flex, Autodiff)]
pub trait BatchNormKernels: burn::backend::Backend {
    /// `(y, batch mean, biased batch variance)`; `y = [relu](γ·(x − mean)/√(var + ε) + β)`.
    fn batch_norm_train_nchw(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
        relu: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
    /// `(∂L/∂x, ∂L/∂γ, ∂L/∂β)` from `∂L/∂y` and the statistics the forward returned.
    #[allow(clippy::too_many_arguments)]
    fn batch_norm_train_nchw_grads(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        variance: FloatTensor<Self>,
        epsilon: f64,
        relu: bool,
        output_grad: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

/// Exact (erf) GELU, element-wise, with its gradient.
#[backend_extension(Flex, Autodiff)]
pub trait GeluKernels: burn::backend::Backend {
    fn gelu_erf(x: FloatTensor<Self>) -> FloatTensor<Self>;
    /// ∂L/∂x from ∂L/∂y.
    fn gelu_erf_grad(x: FloatTensor<Self>, output_grad: FloatTensor<Self>) -> FloatTensor<Self>;
}

/// `relu(a + b)` with the ReLU's gradient read from its output.
#[backend_extension(Flex, Autodiff)]
pub trait AddReluKernels: burn::backend::Backend {
    fn add_relu(a: FloatTensor<Self>, b: FloatTensor<Self>) -> FloatTensor<Self>;
    /// ∂L/∂(a + b) from the output `y` and ∂L/∂y.
    fn relu_grad_from_output(
        y: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
}

/// LayerNorm over the last axis with its three gradients.
#[backend_extension(Flex, Autodiff)]
pub trait LayerNormKernels: burn::backend::Backend {
    /// `(y, mean, rstd)`: `y = γ·(x − mean)·rstd + β`, `mean` and `rstd = 1/√(var + ε)` per row
    /// (shape `[rows]`, rows = all axes but the last).
    fn layer_norm_last(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
    /// `(∂L/∂x, ∂L/∂γ, ∂L/∂β)` from `∂L/∂y` and the statistics the forward returned.
    fn layer_norm_last_grads(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        rstd: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

/// Softmax of `scale · x` along the last axis, with its gradient (from the output).
#[backend_extension(Flex, Autodiff)]
pub trait SoftmaxKernels: burn::backend::Backend {
    fn softmax_last(x: FloatTensor<Self>, scale: f64) -> FloatTensor<Self>;
    /// ∂L/∂x from the softmax's output `y` and ∂L/∂y.
    fn softmax_last_grad(
        y: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        scale: f64,
    ) -> FloatTensor<Self>;
}

/// Scaled dot-product attention `softmax(scale·q·kᵀ)·v` on `[B, H, T, d]`, without masks. Its
/// backward recomputes the attention weights from `q` and `k` instead of keeping them, as flash
/// attention does: the `[B, H, T, T]` weights of every layer are otherwise the largest
/// activations a ViT keeps for its backward (ViT-S/16, 2×32 views: 715 MB).
#[backend_extension(Flex, Autodiff)]
pub trait AttentionKernels: burn::backend::Backend {
    fn attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        scale: f64,
    ) -> FloatTensor<Self>;
}

fn burn_options(stride: usize, padding: usize) -> ConvOptions<2> {
    ConvOptions::new([stride, stride], [padding, padding], [1, 1], 1)
}

/// The geometry and batch size of `x ⊛ weight`, when both are `f32` (the only dtype the
/// kernels cover).
fn flex_geometry(
    x: &FlexTensor,
    weight: &FlexTensor,
    stride: usize,
    padding: usize,
) -> Option<(ConvGeometry, usize)> {
    if x.dtype() != DType::F32 || weight.dtype() != DType::F32 {
        return None;
    }
    let xs = x.layout().shape();
    let ws = weight.layout().shape();
    let [batch, channels_in, height, width] = [xs[0], xs[1], xs[2], xs[3]];
    assert_eq!(
        ws[1], channels_in,
        "conv2d: weight has {} input channels, input has {channels_in}",
        ws[1]
    );
    Some((
        ConvGeometry {
            channels_in,
            height,
            width,
            channels_out: ws[0],
            kernel_h: ws[2],
            kernel_w: ws[3],
            stride,
            padding,
        },
        batch,
    ))
}

fn flex_f32(data: Vec<f32>, shape: [usize; 4]) -> FlexTensor {
    FlexTensor::new(
        Bytes::from_elems(data),
        Layout::contiguous(Shape::new(shape)),
        DType::F32,
    )
}

impl ConvKernels for Flex {
    fn conv2d_nchw(x: FlexTensor, weight: FlexTensor, stride: usize, padding: usize) -> FlexTensor {
        let Some((g, batch)) = flex_geometry(&x, &weight, stride, padding) else {
            return Flex::conv2d(x, weight, None, burn_options(stride, padding));
        };
        let (x, weight) = (x.to_contiguous(), weight.to_contiguous());
        let y = conv::conv2d_forward(&g, batch, x.storage(), weight.storage());
        flex_f32(y, [batch, g.channels_out, g.out_h(), g.out_w()])
    }

    fn conv2d_nchw_input_grad(
        x: FlexTensor,
        weight: FlexTensor,
        output_grad: FlexTensor,
        stride: usize,
        padding: usize,
    ) -> FlexTensor {
        let Some((g, batch)) = flex_geometry(&x, &weight, stride, padding) else {
            return Flex::conv2d_x_backward(x, weight, output_grad, burn_options(stride, padding));
        };
        let (weight, dy) = (weight.to_contiguous(), output_grad.to_contiguous());
        let dx = conv::conv2d_input_grad(&g, batch, weight.storage(), dy.storage());
        flex_f32(dx, [batch, g.channels_in, g.height, g.width])
    }

    fn conv2d_nchw_weight_grad(
        x: FlexTensor,
        weight: FlexTensor,
        output_grad: FlexTensor,
        stride: usize,
        padding: usize,
    ) -> FlexTensor {
        let Some((g, batch)) = flex_geometry(&x, &weight, stride, padding) else {
            return Flex::conv2d_weight_backward(
                x,
                weight,
                output_grad,
                burn_options(stride, padding),
            );
        };
        let (x, dy) = (x.to_contiguous(), output_grad.to_contiguous());
        let dw = conv::conv2d_weight_grad(&g, batch, x.storage(), dy.storage());
        flex_f32(dw, [g.channels_out, g.channels_in, g.kernel_h, g.kernel_w])
    }
}

fn bn_shape(x: &FlexTensor) -> BnShape {
    let xs = x.layout().shape();
    assert_eq!(
        xs.len(),
        4,
        "batch_norm_train_nchw: expected [B, C, H, W], got {xs:?}"
    );
    BnShape {
        batch: xs[0],
        channels: xs[1],
        pixels: xs[2] * xs[3],
    }
}

fn flex_vec(data: Vec<f32>) -> FlexTensor {
    let n = data.len();
    FlexTensor::new(
        Bytes::from_elems(data),
        Layout::contiguous(Shape::new([n])),
        DType::F32,
    )
}

fn same_shape(data: Vec<f32>, like: &FlexTensor) -> FlexTensor {
    FlexTensor::new(
        Bytes::from_elems(data),
        Layout::contiguous(like.layout().shape().clone()),
        DType::F32,
    )
}

fn last_axis(t: &FlexTensor) -> usize {
    *t.layout()
        .shape()
        .last()
        .expect("softmax_last: a tensor of rank >= 1")
}

fn assert_f32(t: &FlexTensor, op: &str) {
    assert!(
        t.dtype() == DType::F32,
        "{op}: f32 only (selfsup_kernels routes other dtypes to burn)"
    );
}

impl GeluKernels for Flex {
    fn gelu_erf(x: FlexTensor) -> FlexTensor {
        assert_f32(&x, "gelu_erf");
        let x = x.to_contiguous();
        same_shape(elementwise::gelu_forward(x.storage()), &x)
    }

    fn gelu_erf_grad(x: FlexTensor, output_grad: FlexTensor) -> FlexTensor {
        let (x, dy) = (x.to_contiguous(), output_grad.to_contiguous());
        same_shape(elementwise::gelu_backward(x.storage(), dy.storage()), &x)
    }
}

impl AddReluKernels for Flex {
    fn add_relu(a: FlexTensor, b: FlexTensor) -> FlexTensor {
        assert_f32(&a, "add_relu");
        assert_eq!(
            a.layout().shape(),
            b.layout().shape(),
            "add_relu: a and b differ in shape"
        );
        let (a, b) = (a.to_contiguous(), b.to_contiguous());
        same_shape(elementwise::add_relu_forward(a.storage(), b.storage()), &a)
    }

    fn relu_grad_from_output(y: FlexTensor, output_grad: FlexTensor) -> FlexTensor {
        let (y, dy) = (y.to_contiguous(), output_grad.to_contiguous());
        same_shape(
            elementwise::relu_backward_from_output(y.storage(), dy.storage()),
            &y,
        )
    }
}

impl SoftmaxKernels for Flex {
    fn softmax_last(x: FlexTensor, scale: f64) -> FlexTensor {
        assert_f32(&x, "softmax_last");
        let x = x.to_contiguous();
        let y = elementwise::softmax_rows(x.storage(), last_axis(&x), scale as f32);
        same_shape(y, &x)
    }

    fn softmax_last_grad(y: FlexTensor, output_grad: FlexTensor, scale: f64) -> FlexTensor {
        let (y, dy) = (y.to_contiguous(), output_grad.to_contiguous());
        let dx = elementwise::softmax_rows_backward(
            y.storage(),
            dy.storage(),
            last_axis(&y),
            scale as f32,
        );
        same_shape(dx, &y)
    }
}

/// `softmax(scale·q·kᵀ)` on any backend with the softmax kernel.
fn attention_weights<B: Backend + SoftmaxKernels>(
    q: B::FloatTensorPrimitive,
    k: B::FloatTensorPrimitive,
    scale: f64,
) -> B::FloatTensorPrimitive {
    B::softmax_last(B::float_matmul(q, B::float_swap_dims(k, 2, 3)), scale)
}

impl AttentionKernels for Flex {
    fn attention(q: FlexTensor, k: FlexTensor, v: FlexTensor, scale: f64) -> FlexTensor {
        Flex::float_matmul(attention_weights::<Flex>(q, k, scale), v)
    }
}

/// Records attention on the autodiff graph keeping `q`, `k`, `v` (which the layer's
/// projections made anyway), not the weights; the backward recomputes them.
#[derive(Debug)]
struct AttentionBackward;

impl<B: Backend + SoftmaxKernels> Backward<B, 3> for AttentionBackward {
    type State = (
        B::FloatTensorPrimitive,
        B::FloatTensorPrimitive,
        B::FloatTensorPrimitive,
        f64,
    );

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_q, node_k, node_v] = ops.parents;
        let d_out = grads.consume::<B>(&ops.node);
        let (q, k, v, scale) = ops.state;
        let p = attention_weights::<B>(q.clone(), k.clone(), scale);
        if let Some(node) = node_v {
            let d_v = B::float_matmul(B::float_swap_dims(p.clone(), 2, 3), d_out.clone());
            grads.register::<B>(node.id, d_v);
        }
        if node_q.is_none() && node_k.is_none() {
            return;
        }
        // ∂L/∂(q·kᵀ): the softmax's backward of ∂L/∂p = ∂L/∂out · vᵀ (its scale included).
        let d_p = B::float_matmul(d_out, B::float_swap_dims(v, 2, 3));
        let d_s = B::softmax_last_grad(p, d_p, scale);
        if let Some(node) = node_q {
            grads.register::<B>(node.id, B::float_matmul(d_s.clone(), k));
        }
        if let Some(node) = node_k {
            grads.register::<B>(node.id, B::float_matmul(B::float_swap_dims(d_s, 2, 3), q));
        }
    }
}

impl<B: Backend + AttentionKernels + SoftmaxKernels, C: CheckpointStrategy> AttentionKernels
    for Autodiff<B, C>
{
    fn attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        scale: f64,
    ) -> FloatTensor<Self> {
        match AttentionBackward
            .prepare::<C>([q.node(), k.node(), v.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (q, k, v) = (q.into_primitive(), k.into_primitive(), v.into_primitive());
                let out =
                    <B as AttentionKernels>::attention(q.clone(), k.clone(), v.clone(), scale);
                prep.finish((q, k, v, scale), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(<B as AttentionKernels>::attention(
                q.into_primitive(),
                k.into_primitive(),
                v.into_primitive(),
                scale,
            )),
        }
    }
}

/// Records GELU on the autodiff graph; the backward reads the checkpointed input.
#[derive(Debug)]
struct GeluBackward;

impl<B: Backend + GeluKernels> Backward<B, 1> for GeluBackward {
    type State = NodeId;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, ckpt: &mut Checkpointer) {
        let [node_x] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let x = ckpt.retrieve_node_output::<B::FloatTensorPrimitive>(ops.state);
        if let Some(node) = node_x {
            grads.register::<B>(node.id, B::gelu_erf_grad(x, grad));
        }
    }
}

impl<B: Backend + GeluKernels, C: CheckpointStrategy> GeluKernels for Autodiff<B, C> {
    fn gelu_erf(x: FloatTensor<Self>) -> FloatTensor<Self> {
        match GeluBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let state = prep.checkpoint(&x);
                prep.finish(state, B::gelu_erf(x.into_primitive()))
            }
            OpsKind::UnTracked(prep) => prep.finish(B::gelu_erf(x.into_primitive())),
        }
    }

    /// No double backward: computed untracked.
    fn gelu_erf_grad(x: FloatTensor<Self>, output_grad: FloatTensor<Self>) -> FloatTensor<Self> {
        FloatTensor::<Self>::new(B::gelu_erf_grad(
            x.into_primitive(),
            output_grad.into_primitive(),
        ))
    }
}

/// Records `relu(a + b)` on the autodiff graph; its output travels in the state. burn's
/// `relu(a + b)` keeps the sum for the backward, a tensor nobody else holds; the output is the
/// next block's input, which the next convolution keeps anyway, so keeping it costs nothing.
#[derive(Debug)]
struct AddReluBackward;

impl<B: Backend + AddReluKernels> Backward<B, 2> for AddReluBackward {
    type State = B::FloatTensorPrimitive;

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<B>(&ops.node);
        let dx = B::relu_grad_from_output(ops.state, grad);
        for parent in ops.parents.into_iter().flatten() {
            grads.register::<B>(parent.id, dx.clone());
        }
    }
}

impl<B: Backend + AddReluKernels, C: CheckpointStrategy> AddReluKernels for Autodiff<B, C> {
    fn add_relu(a: FloatTensor<Self>, b: FloatTensor<Self>) -> FloatTensor<Self> {
        match AddReluBackward
            .prepare::<C>([a.node(), b.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let y = B::add_relu(a.into_primitive(), b.into_primitive());
                prep.finish(y.clone(), y)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(B::add_relu(a.into_primitive(), b.into_primitive()))
            }
        }
    }

    /// No double backward: computed untracked.
    fn relu_grad_from_output(
        y: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        FloatTensor::<Self>::new(B::relu_grad_from_output(
            y.into_primitive(),
            output_grad.into_primitive(),
        ))
    }
}

/// Records the softmax on the autodiff graph; its output travels in the state (the backward
/// needs only it).
#[derive(Debug)]
struct SoftmaxBackward;

impl<B: Backend + SoftmaxKernels> Backward<B, 1> for SoftmaxBackward {
    type State = (B::FloatTensorPrimitive, f64);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (y, scale) = ops.state;
        if let Some(node) = node_x {
            grads.register::<B>(node.id, B::softmax_last_grad(y, grad, scale));
        }
    }
}

impl<B: Backend + SoftmaxKernels, C: CheckpointStrategy> SoftmaxKernels for Autodiff<B, C> {
    fn softmax_last(x: FloatTensor<Self>, scale: f64) -> FloatTensor<Self> {
        match SoftmaxBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let y = B::softmax_last(x.into_primitive(), scale);
                prep.finish((y.clone(), scale), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::softmax_last(x.into_primitive(), scale)),
        }
    }

    /// No double backward: computed untracked.
    fn softmax_last_grad(
        y: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        scale: f64,
    ) -> FloatTensor<Self> {
        FloatTensor::<Self>::new(B::softmax_last_grad(
            y.into_primitive(),
            output_grad.into_primitive(),
            scale,
        ))
    }
}

impl LayerNormKernels for Flex {
    fn layer_norm_last(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        epsilon: f64,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        assert!(
            [x.dtype(), gamma.dtype(), beta.dtype()] == [DType::F32; 3],
            "layer_norm_last: f32 only (selfsup_kernels::layer_norm routes other dtypes to burn)"
        );
        assert_eq!(
            last_axis(&x),
            gamma.layout().num_elements(),
            "layer_norm_last: the input's last axis is not gamma's length"
        );
        let [x, gamma, beta] = [x, gamma, beta].map(|t| t.to_contiguous());
        let (y, mean, rstd) =
            layer_norm::forward(x.storage(), gamma.storage(), beta.storage(), epsilon as f32);
        (same_shape(y, &x), flex_vec(mean), flex_vec(rstd))
    }

    fn layer_norm_last_grads(
        x: FlexTensor,
        gamma: FlexTensor,
        mean: FlexTensor,
        rstd: FlexTensor,
        output_grad: FlexTensor,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let [x, gamma, mean, rstd, dy] =
            [x, gamma, mean, rstd, output_grad].map(|t| t.to_contiguous());
        let (dx, dgamma, dbeta) = layer_norm::backward(
            x.storage(),
            gamma.storage(),
            mean.storage(),
            rstd.storage(),
            dy.storage(),
        );
        (same_shape(dx, &x), flex_vec(dgamma), flex_vec(dbeta))
    }
}

/// Registers each tracked parent's gradient (`grads_out[i]` for `parents[i]`, the ids of an
/// op's `ops.parents`).
fn register_parent_grads<B: Backend, const N: usize>(
    parents: [Option<NodeId>; N],
    grads_out: [B::FloatTensorPrimitive; N],
    grads: &mut Gradients,
) {
    for (parent, g) in parents.into_iter().zip(grads_out) {
        if let Some(id) = parent {
            grads.register::<B>(id, g);
        }
    }
}

/// Records the LayerNorm on the autodiff graph keeping the input and γ (checkpointed) and the
/// per-row statistics (state), not burn's centred and normalised copies of the input.
#[derive(Debug)]
struct LayerNormBackward;

impl<B: Backend + LayerNormKernels> Backward<B, 3> for LayerNormBackward {
    type State = (
        [NodeId; 2],
        B::FloatTensorPrimitive,
        B::FloatTensorPrimitive,
    );

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, ckpt: &mut Checkpointer) {
        let grad = grads.consume::<B>(&ops.node);
        let ([x_id, gamma_id], mean, rstd) = ops.state;
        let x = ckpt.retrieve_node_output::<B::FloatTensorPrimitive>(x_id);
        let gamma = ckpt.retrieve_node_output::<B::FloatTensorPrimitive>(gamma_id);
        let (dx, dgamma, dbeta) = B::layer_norm_last_grads(x, gamma, mean, rstd, grad);
        let parents = ops.parents.map(|p| p.map(|node| node.id));
        register_parent_grads::<B, 3>(parents, [dx, dgamma, dbeta], grads);
    }
}

impl<B: Backend + LayerNormKernels, C: CheckpointStrategy> LayerNormKernels for Autodiff<B, C> {
    fn layer_norm_last(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let untracked = FloatTensor::<Self>::new;
        match LayerNormBackward
            .prepare::<C>([x.node(), gamma.node(), beta.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let ids = [prep.checkpoint(&x), prep.checkpoint(&gamma)];
                let (y, mean, rstd) = B::layer_norm_last(
                    x.into_primitive(),
                    gamma.into_primitive(),
                    beta.into_primitive(),
                    epsilon,
                );
                let state = (ids, mean.clone(), rstd.clone());
                (prep.finish(state, y), untracked(mean), untracked(rstd))
            }
            OpsKind::UnTracked(prep) => {
                let (y, mean, rstd) = B::layer_norm_last(
                    x.into_primitive(),
                    gamma.into_primitive(),
                    beta.into_primitive(),
                    epsilon,
                );
                (prep.finish(y), untracked(mean), untracked(rstd))
            }
        }
    }

    /// No double backward: computed untracked.
    fn layer_norm_last_grads(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        rstd: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let (dx, dgamma, dbeta) = B::layer_norm_last_grads(
            x.into_primitive(),
            gamma.into_primitive(),
            mean.into_primitive(),
            rstd.into_primitive(),
            output_grad.into_primitive(),
        );
        let wrap = FloatTensor::<Self>::new;
        (wrap(dx), wrap(dgamma), wrap(dbeta))
    }
}

impl BatchNormKernels for Flex {
    fn batch_norm_train_nchw(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        epsilon: f64,
        relu: bool,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        assert!(
            [x.dtype(), gamma.dtype(), beta.dtype()] == [DType::F32; 3],
            "batch_norm_train_nchw: f32 only (selfsup_kernels::batch_norm routes other dtypes to burn)"
        );
        let sh = bn_shape(&x);
        let (x, gamma, beta) = (
            x.to_contiguous(),
            gamma.to_contiguous(),
            beta.to_contiguous(),
        );
        let (mean, var) = batch_norm::channel_stats(&sh, x.storage());
        let (scale, shift) =
            batch_norm::scale_shift(gamma.storage(), beta.storage(), &mean, &var, epsilon);
        let y = batch_norm::affine(&sh, x.storage(), &scale, &shift, relu);
        (same_shape(y, &x), flex_vec(mean), flex_vec(var))
    }

    fn batch_norm_train_nchw_grads(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        mean: FlexTensor,
        variance: FlexTensor,
        epsilon: f64,
        relu: bool,
        output_grad: FlexTensor,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let sh = bn_shape(&x);
        let [x, gamma, beta, mean, variance, dy] =
            [x, gamma, beta, mean, variance, output_grad].map(|t| t.to_contiguous());
        let (dx, dgamma, dbeta) = batch_norm::backward(
            &sh,
            x.storage(),
            dy.storage(),
            gamma.storage(),
            beta.storage(),
            mean.storage(),
            variance.storage(),
            epsilon,
            relu,
        );
        (same_shape(dx, &x), flex_vec(dgamma), flex_vec(dbeta))
    }
}

/// Records the fused BatchNorm(+ReLU) on the autodiff graph; the batch statistics travel in the
/// state (they are outputs of the op, not recomputed).
#[derive(Debug)]
struct BatchNormBackward;

impl<B: Backend + BatchNormKernels> Backward<B, 3> for BatchNormBackward {
    type State = (
        [NodeId; 3],
        B::FloatTensorPrimitive,
        B::FloatTensorPrimitive,
        f64,
        bool,
    );

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, ckpt: &mut Checkpointer) {
        let grad = grads.consume::<B>(&ops.node);
        let ([x_id, gamma_id, beta_id], mean, variance, epsilon, relu) = ops.state;
        let x = ckpt.retrieve_node_output::<B::FloatTensorPrimitive>(x_id);
        let gamma = ckpt.retrieve_node_output::<B::FloatTensorPrimitive>(gamma_id);
        let beta = ckpt.retrieve_node_output::<B::FloatTensorPrimitive>(beta_id);
        let (dx, dgamma, dbeta) =
            B::batch_norm_train_nchw_grads(x, gamma, beta, mean, variance, epsilon, relu, grad);
        let parents = ops.parents.map(|p| p.map(|node| node.id));
        register_parent_grads::<B, 3>(parents, [dx, dgamma, dbeta], grads);
    }
}

impl<B: Backend + BatchNormKernels, C: CheckpointStrategy> BatchNormKernels for Autodiff<B, C> {
    fn batch_norm_train_nchw(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
        relu: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let untracked = FloatTensor::<Self>::new;
        match BatchNormBackward
            .prepare::<C>([x.node(), gamma.node(), beta.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let ids = [
                    prep.checkpoint(&x),
                    prep.checkpoint(&gamma),
                    prep.checkpoint(&beta),
                ];
                let (y, mean, var) = B::batch_norm_train_nchw(
                    x.into_primitive(),
                    gamma.into_primitive(),
                    beta.into_primitive(),
                    epsilon,
                    relu,
                );
                let state = (ids, mean.clone(), var.clone(), epsilon, relu);
                (prep.finish(state, y), untracked(mean), untracked(var))
            }
            OpsKind::UnTracked(prep) => {
                let (y, mean, var) = B::batch_norm_train_nchw(
                    x.into_primitive(),
                    gamma.into_primitive(),
                    beta.into_primitive(),
                    epsilon,
                    relu,
                );
                (prep.finish(y), untracked(mean), untracked(var))
            }
        }
    }

    /// No double backward: computed untracked.
    fn batch_norm_train_nchw_grads(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        variance: FloatTensor<Self>,
        epsilon: f64,
        relu: bool,
        output_grad: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let (dx, dgamma, dbeta) = B::batch_norm_train_nchw_grads(
            x.into_primitive(),
            gamma.into_primitive(),
            beta.into_primitive(),
            mean.into_primitive(),
            variance.into_primitive(),
            epsilon,
            relu,
            output_grad.into_primitive(),
        );
        let wrap = FloatTensor::<Self>::new;
        (wrap(dx), wrap(dgamma), wrap(dbeta))
    }
}

/// Records the conv on the autodiff graph; its backward runs the inner backend's gradient kernels.
#[derive(Debug)]
struct Conv2dBackward;

impl<B: Backend + ConvKernels> Backward<B, 2> for Conv2dBackward {
    type State = (NodeId, NodeId, usize, usize);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, ckpt: &mut Checkpointer) {
        let [node_x, node_weight] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x_state, weight_state, stride, padding) = ops.state;
        let x = ckpt.retrieve_node_output::<B::FloatTensorPrimitive>(x_state);
        let weight = ckpt.retrieve_node_output::<B::FloatTensorPrimitive>(weight_state);
        if let Some(node) = node_x {
            let dx =
                B::conv2d_nchw_input_grad(x.clone(), weight.clone(), grad.clone(), stride, padding);
            grads.register::<B>(node.id, dx);
        }
        if let Some(node) = node_weight {
            let dw = B::conv2d_nchw_weight_grad(x, weight, grad, stride, padding);
            grads.register::<B>(node.id, dw);
        }
    }
}

impl<B: Backend + ConvKernels, C: CheckpointStrategy> ConvKernels for Autodiff<B, C> {
    fn conv2d_nchw(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        stride: usize,
        padding: usize,
    ) -> FloatTensor<Self> {
        match Conv2dBackward
            .prepare::<C>([x.node(), weight.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                let weight_state = prep.checkpoint(&weight);
                let y =
                    B::conv2d_nchw(x.into_primitive(), weight.into_primitive(), stride, padding);
                prep.finish((x_state, weight_state, stride, padding), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::conv2d_nchw(
                x.into_primitive(),
                weight.into_primitive(),
                stride,
                padding,
            )),
        }
    }

    /// Gradients of gradients are not needed (no double backward): computed untracked.
    fn conv2d_nchw_input_grad(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        stride: usize,
        padding: usize,
    ) -> FloatTensor<Self> {
        FloatTensor::<Self>::new(B::conv2d_nchw_input_grad(
            x.into_primitive(),
            weight.into_primitive(),
            output_grad.into_primitive(),
            stride,
            padding,
        ))
    }

    fn conv2d_nchw_weight_grad(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        stride: usize,
        padding: usize,
    ) -> FloatTensor<Self> {
        FloatTensor::<Self>::new(B::conv2d_nchw_weight_grad(
            x.into_primitive(),
            weight.into_primitive(),
            output_grad.into_primitive(),
            stride,
            padding,
        ))
    }
}

const UNSET: u8 = 0;
const ON: u8 = 1;
const OFF: u8 = 2;
static ENABLED: AtomicU8 = AtomicU8::new(UNSET);

/// Whether [`conv2d`] uses selfsup's kernels: on unless `SELFSUP_KERNELS=burn` or
/// [`set_enabled(false)`](set_enabled).
pub fn enabled() -> bool {
    match ENABLED.load(Ordering::Relaxed) {
        ON => true,
        OFF => false,
        _ => {
            let on = std::env::var("SELFSUP_KERNELS").map_or(true, |v| v != "burn");
            ENABLED.store(if on { ON } else { OFF }, Ordering::Relaxed);
            on
        }
    }
}

/// Switches selfsup's kernels on or off for the whole process (benchmarks compare both).
pub fn set_enabled(on: bool) {
    ENABLED.store(if on { ON } else { OFF }, Ordering::Relaxed);
}

/// Whether selfsup's kernels can run on `device` (the flex CPU backend, with or without autodiff).
pub fn supports(device: &Device) -> bool {
    device.clone().without_autodiff() == Device::flex()
}

/// 2-D convolution without bias (groups 1, dilation 1, symmetric `padding`): selfsup's kernel on
/// the flex backend, burn's `conv2d` elsewhere or when switched off. Differentiable either way.
pub fn conv2d(x: Tensor<4>, weight: Tensor<4>, stride: usize, padding: usize) -> Tensor<4> {
    if enabled() && supports(&x.device()) {
        Tensor::from_dispatch(<Dispatch as ConvKernels>::conv2d_nchw(
            x.into_dispatch(),
            weight.into_dispatch(),
            stride,
            padding,
        ))
    } else {
        burn::tensor::module::conv2d(x, weight, None, burn_options(stride, padding))
    }
}

/// Whether the f32 kernels (element-wise, BatchNorm) take `x`: switched on, on flex, in f32.
fn kernels_take<const D: usize>(x: &Tensor<D>) -> bool {
    enabled() && supports(&x.device()) && x.dtype() == burn::tensor::DType::F32
}

/// Exact GELU, `x·Φ(x)`: selfsup's kernel on flex in f32 (vectorised, parallel; erf to 3e−7),
/// burn's `gelu` elsewhere. Differentiable either way.
pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if kernels_take(&x) {
        Tensor::from_dispatch(<Dispatch as GeluKernels>::gelu_erf(x.into_dispatch()))
    } else {
        burn::tensor::activation::gelu(x)
    }
}

/// `relu(a + b)` (a ResNet block's residual output): on flex in f32 one pass whose backward
/// reads the output instead of keeping the sum (one activation less per block), burn's ops
/// elsewhere. Differentiable either way.
pub fn add_relu<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> Tensor<D> {
    if kernels_take(&a) && b.dtype() == burn::tensor::DType::F32 {
        Tensor::from_dispatch(<Dispatch as AddReluKernels>::add_relu(
            a.into_dispatch(),
            b.into_dispatch(),
        ))
    } else {
        burn::tensor::activation::relu(a + b)
    }
}

/// `ln.forward(x)` (LayerNorm over the last axis): on flex in f32 with a bias, one op that keeps
/// the input and per-row statistics for its backward ([`LayerNormKernels`]); burn's
/// `LayerNorm` elsewhere. Differentiable either way.
pub fn layer_norm<const D: usize>(ln: &burn::nn::LayerNorm, x: Tensor<D>) -> Tensor<D> {
    if !kernels_take(&x) {
        return ln.forward(x);
    }
    let (Some(beta), Some(epsilon)) = (ln.beta.as_ref(), layer_norm_epsilon(ln)) else {
        return ln.forward(x);
    };
    let (y, _, _) = <Dispatch as LayerNormKernels>::layer_norm_last(
        x.into_dispatch(),
        ln.gamma.val().into_dispatch(),
        beta.val().into_dispatch(),
        epsilon,
    );
    Tensor::from_dispatch(y)
}

/// `ln`'s ε. burn keeps it private; its display (`ModuleDisplay::custom_content`) writes it
/// with `f64`'s `Display`, which reads back exactly. `None` (and burn's own forward) if a
/// later burn changes that.
pub fn layer_norm_epsilon(ln: &burn::nn::LayerNorm) -> Option<f64> {
    use burn::module::{Content, DisplaySettings, ModuleDisplay};
    let content = ln.custom_content(Content::new(DisplaySettings::new()))?;
    content
        .attributes
        .iter()
        .find(|a| a.name == "epsilon")
        .and_then(|a| a.value.parse().ok())
}

/// `softmax(scale · x)` along the last axis (`scale` > 0; attention's 1/√d_k folded in):
/// selfsup's kernel on flex in f32, burn's `softmax` elsewhere. Differentiable either way.
pub fn softmax_last<const D: usize>(x: Tensor<D>, scale: f64) -> Tensor<D> {
    assert!(scale > 0.0, "softmax_last: scale must be > 0, got {scale}");
    if kernels_take(&x) {
        Tensor::from_dispatch(<Dispatch as SoftmaxKernels>::softmax_last(
            x.into_dispatch(),
            scale,
        ))
    } else {
        burn::tensor::activation::softmax(x.mul_scalar(scale), D - 1)
    }
}

/// `softmax(scale·q·kᵀ)·v` on `[B, H, T, d]` (no mask, no dropout on the weights): on flex in
/// f32 an op whose backward recomputes the weights instead of keeping them ([`AttentionKernels`]),
/// burn's ops elsewhere. Differentiable either way.
pub fn attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, scale: f64) -> Tensor<4> {
    assert!(scale > 0.0, "attention: scale must be > 0, got {scale}");
    if kernels_take(&q) {
        Tensor::from_dispatch(<Dispatch as AttentionKernels>::attention(
            q.into_dispatch(),
            k.into_dispatch(),
            v.into_dispatch(),
            scale,
        ))
    } else {
        softmax_last(q.matmul(k.transpose()), scale).matmul(v)
    }
}

/// What `d.forward(x)` does (inverted dropout while training on an autodiff device), with the
/// mask from [`elementwise::dropout_mask`] on flex: drawn in parallel, seeded by two draws
/// from burn's generator (so `Device::seed` still makes runs repeatable).
pub fn dropout<const D: usize>(d: &burn::nn::Dropout, x: Tensor<D>) -> Tensor<D> {
    let device = x.device();
    if !d.training.is_enabled() || !device.is_autodiff() || d.prob == 0.0 {
        return x;
    }
    if !kernels_take(&x) {
        return d.forward(x);
    }
    let draws = Tensor::<1>::random(
        [2],
        burn::tensor::Distribution::Uniform(0.0, 16_777_216.0),
        &device.clone().without_autodiff(),
    )
    .into_data()
    .convert::<f32>()
    .try_into_vec::<f32>()
    .expect("two f32 draws");
    let seed = ((draws[0] as u64) << 24) | draws[1] as u64;
    let dims = x.dims();
    let mask = elementwise::dropout_mask(dims.iter().product(), 1.0 - d.prob, seed);
    x * Tensor::<D>::from_data(TensorData::new(mask, dims), &device)
}

/// `bn` (then ReLU when `relu`) on `[B, C, H, W]`: selfsup's fused kernel when `bn` trains
/// (autodiff device, layer not frozen) on flex in f32, burn's BatchNorm (+ relu) otherwise.
/// Running statistics are updated as burn's `BatchNorm::forward` does.
pub fn batch_norm(bn: &BatchNorm, x: Tensor<4>, relu: bool) -> Tensor<4> {
    let fused = kernels_take(&x) && x.device().is_autodiff() && bn.training.is_enabled();
    if fused {
        return batch_norm_fused(bn, x, relu);
    }
    let y = bn.forward(x);
    if relu {
        burn::tensor::activation::relu(y)
    } else {
        y
    }
}

/// [`batch_norm`]'s training path through [`BatchNormKernels`] (flex or autodiff-on-flex, f32).
fn batch_norm_fused(bn: &BatchNorm, x: Tensor<4>, relu: bool) -> Tensor<4> {
    let device = x.device();
    let (y, mean, var) = <Dispatch as BatchNormKernels>::batch_norm_train_nchw(
        x.into_dispatch(),
        bn.gamma.val().into_dispatch(),
        bn.beta.val().into_dispatch(),
        bn.epsilon,
        relu,
    );
    let (mean, var) = (
        Tensor::<1>::from_dispatch(mean),
        Tensor::<1>::from_dispatch(var),
    );
    update_running_stats(bn, mean, var, &device);
    Tensor::from_dispatch(y)
}

/// Moves `bn`'s running statistics towards a batch's `mean` and (biased) `var` by its
/// momentum, as burn's `BatchNorm::forward` does in training.
pub fn update_running_stats(bn: &BatchNorm, mean: Tensor<1>, var: Tensor<1>, device: &Device) {
    let m = bn.momentum;
    let running_mean = bn.running_mean.value_sync().to_device(device);
    let running_var = bn.running_var.value_sync().to_device(device);
    bn.running_mean
        .update((running_mean.mul_scalar(1.0 - m) + mean.detach().mul_scalar(m)).detach());
    bn.running_var
        .update((running_var.mul_scalar(1.0 - m) + var.detach().mul_scalar(m)).detach());
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    fn burn_conv(x: Tensor<4>, w: Tensor<4>, stride: usize, padding: usize) -> Tensor<4> {
        burn::tensor::module::conv2d(x, w, None, burn_options(stride, padding))
    }

    fn assert_close<const D: usize>(a: Tensor<D>, b: Tensor<D>, tol: f32, what: &str) {
        assert_eq!(a.dims(), b.dims(), "{what}: shapes");
        let diff: f32 = (a - b.clone()).abs().max().into_scalar();
        let scale: f32 = b.abs().max().into_scalar();
        assert!(
            diff <= tol * scale.max(1.0),
            "{what}: max |diff| {diff} (scale {scale})"
        );
    }

    /// Values and both gradients equal burn's conv2d + autodiff on ResNet's conv shapes.
    #[test]
    fn matches_burn_conv2d_values_and_gradients() {
        let device = Device::flex().autodiff();
        // (batch, c_in, c_out, size, kernel, stride, padding): stem, 3×3 s1/s2, 1×1 s2 shortcut.
        let cases = [
            (4, 3, 8, 12, 3, 1, 1),
            (3, 8, 16, 9, 3, 2, 1),
            (3, 8, 16, 8, 1, 2, 0),
            (2, 16, 16, 5, 3, 1, 1),
            (2, 4, 6, 6, 1, 1, 0),
            (2, 3, 8, 15, 7, 2, 3),
        ];
        for (batch, cin, cout, size, k, stride, padding) in cases {
            let what = format!("b{batch} c{cin}->{cout} {size}px k{k} s{stride} p{padding}");
            let x = Tensor::<4>::random([batch, cin, size, size], Distribution::Default, &device);
            let w = Tensor::<4>::random([cout, cin, k, k], Distribution::Default, &device);
            let dy_dims = burn_conv(x.clone(), w.clone(), stride, padding).dims();
            let dy = Tensor::<4>::random(dy_dims, Distribution::Normal(0.0, 1.0), &device);

            let run = |fast: bool| {
                let (x, w) = (x.clone().require_grad(), w.clone().require_grad());
                let y = if fast {
                    Tensor::from_dispatch(<Dispatch as ConvKernels>::conv2d_nchw(
                        x.clone().into_dispatch(),
                        w.clone().into_dispatch(),
                        stride,
                        padding,
                    ))
                } else {
                    burn_conv(x.clone(), w.clone(), stride, padding)
                };
                let grads = (y.clone() * dy.clone()).sum().backward();
                let (gx, gw) = (x.grad(&grads).unwrap(), w.grad(&grads).unwrap());
                (y.inner(), gx, gw)
            };
            let (y, gx, gw) = run(true);
            let (y_ref, gx_ref, gw_ref) = run(false);
            assert_close(y, y_ref, 1e-5, &format!("{what} forward"));
            assert_close(gx, gx_ref, 1e-5, &format!("{what} input grad"));
            assert_close(gw, gw_ref, 1e-5, &format!("{what} weight grad"));
        }
    }

    /// Values and the gradients of input, γ and β equal burn's `LayerNorm` (its composite ops
    /// under autodiff) for ε 1e−5 (burn's default) and 1e−6 (the ViT's), with γ and β away
    /// from 1 and 0; without a bias burn's own forward runs.
    #[test]
    fn layer_norm_matches_burn_values_and_gradients() {
        use burn::nn::LayerNormConfig;
        let shift =
            |device: &Device| Tensor::<1>::random([24], Distribution::Normal(0.0, 0.3), device);
        let device = Device::flex().autodiff();
        for (epsilon, bias) in [(1e-5, true), (1e-6, true), (1e-5, false)] {
            let what = format!("epsilon {epsilon}, bias {bias}");
            let mut ln = LayerNormConfig::new(24)
                .with_epsilon(epsilon)
                .with_bias(bias)
                .init(&device);
            assert_eq!(
                layer_norm_epsilon(&ln),
                Some(epsilon),
                "{what}: epsilon read back"
            );
            ln.gamma = ln
                .gamma
                .map(|g| (g + shift(&device)).detach().require_grad());
            ln.beta = ln
                .beta
                .map(|b| b.map(|b| (b + shift(&device)).detach().require_grad()));
            // Rows with different means and scales. Both sides round the row mean in f32, so a
            // row whose offset is many times its spread differs by that ratio times an ulp:
            // offsets up to 5 with spreads down to 0.01 failed the 1e-5 bound once in three runs
            // (2e-5); offsets N(0, 1) with spreads from 0.1 keep the ratio near 30.
            let x = Tensor::<3>::random([4, 9, 24], Distribution::Normal(0.0, 1.0), &device)
                .mul(Tensor::<3>::random(
                    [4, 9, 1],
                    Distribution::Uniform(0.1, 3.0),
                    &device,
                ))
                .add(Tensor::<3>::random(
                    [4, 9, 1],
                    Distribution::Normal(0.0, 1.0),
                    &device,
                ));
            let dy = Tensor::<3>::random([4, 9, 24], Distribution::Normal(0.0, 1.0), &device);
            let run = |fused: bool| {
                let x = x.clone().require_grad();
                let y = if fused {
                    layer_norm(&ln, x.clone())
                } else {
                    ln.forward(x.clone())
                };
                let grads = (y.clone() * dy.clone()).sum().backward();
                let beta_grad = ln.beta.as_ref().map(|b| b.val().grad(&grads).unwrap());
                (
                    y.inner(),
                    x.grad(&grads).unwrap(),
                    ln.gamma.val().grad(&grads).unwrap(),
                    beta_grad,
                )
            };
            let (y, gx, gg, gb) = run(true);
            let (y_ref, gx_ref, gg_ref, gb_ref) = run(false);
            assert_close(y, y_ref, 1e-5, &format!("{what}: forward"));
            assert_close(gx, gx_ref, 1e-4, &format!("{what}: grad x"));
            assert_close(gg, gg_ref, 1e-4, &format!("{what}: grad gamma"));
            if let (Some(gb), Some(gb_ref)) = (gb, gb_ref) {
                assert_close(gb, gb_ref, 1e-5, &format!("{what}: grad beta"));
            }
        }
    }

    /// The fused residual `relu(a + b)` equals burn's add then relu, values and both gradients
    /// exactly (the same f32 operations; the ReLU mask read from the output is the input's).
    #[test]
    fn add_relu_matches_burn_and_keeps_only_its_output() {
        let device = Device::flex().autodiff();
        let a = Tensor::<4>::random([3, 4, 5, 5], Distribution::Normal(0.0, 1.0), &device);
        // Some sums exactly 0, where the ReLU's gradient convention matters.
        let b = Tensor::<4>::random([3, 4, 5, 5], Distribution::Normal(0.0, 1.0), &device)
            .mask_where(
                Tensor::<4>::random([3, 4, 5, 5], Distribution::Default, &device).lower_elem(0.1),
                a.clone().neg(),
            );
        let dy = Tensor::<4>::random([3, 4, 5, 5], Distribution::Normal(0.0, 1.0), &device);
        let run = |fused: bool| {
            let (a, b) = (a.clone().require_grad(), b.clone().require_grad());
            let y = if fused {
                add_relu(a.clone(), b.clone())
            } else {
                burn::tensor::activation::relu(a.clone() + b.clone())
            };
            let grads = (y.clone() * dy.clone()).sum().backward();
            (y.inner(), a.grad(&grads).unwrap(), b.grad(&grads).unwrap())
        };
        let (y, ga, gb) = run(true);
        let (y_ref, ga_ref, gb_ref) = run(false);
        assert_close(y, y_ref, 0.0, "forward");
        assert_close(ga, ga_ref, 0.0, "grad a");
        assert_close(gb, gb_ref, 0.0, "grad b");
        let zeros: f32 = (a + b).equal_elem(0.0).float().sum().into_scalar();
        assert!(zeros > 0.0, "the test has no sum at exactly 0");
    }

    /// Fused BatchNorm(+ReLU) equals burn's BatchNorm then relu: output, running statistics,
    /// and the gradients of x, γ and β.
    #[test]
    fn batch_norm_matches_burn_values_gradients_and_running_stats() {
        let device = Device::flex().autodiff();
        for (relu, dims) in [
            (true, [4, 3, 5, 5]),
            (false, [3, 6, 2, 3]),
            (true, [2, 5, 1, 1]),
            // 64-pixel runs: whole 16-lane chunks, no tail.
            (true, [3, 4, 8, 8]),
        ] {
            let what = format!("relu {relu} {dims:?}");
            let x = Tensor::<4>::random(dims, Distribution::Normal(0.5, 2.0), &device);
            let dy = Tensor::<4>::random(dims, Distribution::Normal(0.0, 1.0), &device);
            // Non-trivial γ, β so that the ReLU mask and the scale matter; two separate layers
            // so that each path updates its own running statistics.
            let c = dims[1];
            let gamma = Tensor::<1>::random([c], Distribution::Uniform(0.5, 1.5), &device);
            let beta = Tensor::<1>::random([c], Distribution::Uniform(-0.5, 0.5), &device);
            let init = || {
                let mut bn = burn::nn::BatchNormConfig::new(c).init(&device);
                bn.gamma = burn::module::Param::from_tensor(gamma.clone());
                bn.beta = burn::module::Param::from_tensor(beta.clone());
                bn
            };
            let (bn, bn_ref) = (init(), init());
            let run = |bn: &BatchNorm, fused: bool| {
                let x = x.clone().require_grad();
                let y = if fused {
                    batch_norm_fused(bn, x.clone(), relu)
                } else {
                    let y = bn.forward(x.clone());
                    if relu {
                        burn::tensor::activation::relu(y)
                    } else {
                        y
                    }
                };
                let grads = (y.clone() * dy.clone()).sum().backward();
                let gx = x.grad(&grads).unwrap();
                let gg = bn.gamma.val().grad(&grads).unwrap();
                let gb = bn.beta.val().grad(&grads).unwrap();
                (y.inner(), gx, gg, gb)
            };
            let (y, gx, gg, gb) = run(&bn, true);
            let (y_ref, gx_ref, gg_ref, gb_ref) = run(&bn_ref, false);
            assert_close(y, y_ref, 1e-5, &format!("{what} output"));
            assert_close(gx, gx_ref, 1e-4, &format!("{what} input grad"));
            let as4 = |t: Tensor<1>| t.reshape([1, 1, 1, dims[1]]);
            assert_close(as4(gg), as4(gg_ref), 1e-4, &format!("{what} gamma grad"));
            assert_close(as4(gb), as4(gb_ref), 1e-5, &format!("{what} beta grad"));
            let running = |bn: &BatchNorm| {
                Tensor::cat(vec![bn.running_mean.value(), bn.running_var.value()], 0)
                    .reshape([1, 1, 2, dims[1]])
            };
            assert_close(
                running(&bn),
                running(&bn_ref),
                1e-5,
                &format!("{what} running"),
            );
        }
    }

    #[test]
    fn falls_back_to_burn_when_switched_off() {
        let device = Device::flex();
        let x = Tensor::<4>::random([2, 3, 6, 6], Distribution::Default, &device);
        let w = Tensor::<4>::random([4, 3, 3, 3], Distribution::Default, &device);
        let expected = burn_conv(x.clone(), w.clone(), 1, 1);
        assert!(supports(&device) && supports(&device.clone().autodiff()));
        set_enabled(false);
        let off = conv2d(x.clone(), w.clone(), 1, 1);
        set_enabled(true);
        let on = conv2d(x, w, 1, 1);
        assert_close(off, expected.clone(), 0.0, "switched off");
        assert_close(on, expected, 1e-5, "switched on");
    }
}
