//! The Transformer encoder shared by the text, audio and ViT models: burn's
//! `TransformerEncoder` module (its parameters, names and initialisation) run by
//! [`encoder_forward`], which computes what burn's `forward` does with selfsup's kernels for
//! the element-wise parts (GELU, softmax, dropout masks; see `selfsup_kernels::elementwise`) and LayerNorm,
//! and the config checks the modalities share.

use burn::nn::activation::Activation;
use burn::nn::attention::MultiHeadAttention;
use burn::nn::transformer::{PositionWiseFeedForward, TransformerEncoder, TransformerEncoderLayer};
use burn::prelude::*;
use burn::tensor::activation::quiet_softmax;
use selfsup_kernels::{attention, softmax_last};
pub use selfsup_kernels::{dropout, gelu, layer_norm};

/// burn's `TransformerEncoder::forward` (post- or pre-norm layers, padding and attention masks
/// filled with the layers' `min_float` before the softmax) on `x` `[B, T, D]`.
pub fn encoder_forward(
    encoder: &TransformerEncoder,
    x: Tensor<3>,
    mask_pad: Option<Tensor<2, Bool>>,
    mask_attn: Option<Tensor<3, Bool>>,
) -> Tensor<3> {
    encoder_forward_with(encoder, x, mask_pad, mask_attn, false)
}

/// [`encoder_forward`]; with `recompute_attention`, unmasked attention without dropout keeps
/// no attention weights for the backward, which recomputes them from the queries and keys
/// (`selfsup_kernels::attention`): less memory (the `[B, heads, T, T]` weights of every
/// layer), a little more compute.
pub fn encoder_forward_with(
    encoder: &TransformerEncoder,
    x: Tensor<3>,
    mask_pad: Option<Tensor<2, Bool>>,
    mask_attn: Option<Tensor<3, Bool>>,
    recompute_attention: bool,
) -> Tensor<3> {
    encoder.layers.iter().fold(x, |x, layer| {
        layer_forward(
            layer,
            x,
            mask_pad.clone(),
            mask_attn.clone(),
            recompute_attention,
        )
    })
}

fn layer_forward(
    layer: &TransformerEncoderLayer,
    x: Tensor<3>,
    mask_pad: Option<Tensor<2, Bool>>,
    mask_attn: Option<Tensor<3, Bool>>,
    recompute_attention: bool,
) -> Tensor<3> {
    let attn_in = if layer.norm_first {
        layer_norm(&layer.norm_2, x.clone())
    } else {
        x.clone()
    };
    let attn = self_attention(
        &layer.mha,
        attn_in,
        mask_pad,
        mask_attn,
        recompute_attention,
    );
    let mut x = x + dropout(&layer.dropout, attn);
    let ff_in = if layer.norm_first {
        layer_norm(&layer.norm_1, x.clone())
    } else {
        x = layer_norm(&layer.norm_1, x);
        x.clone()
    };
    let x = x + dropout(&layer.dropout, feed_forward(&layer.pwff, ff_in));
    if layer.norm_first {
        x
    } else {
        layer_norm(&layer.norm_2, x)
    }
}

/// burn's `MultiHeadAttention::forward(MhaInput::self_attn(x))`, context only; the 1/√d_k
/// scale is applied inside the softmax kernel, after the masks (a masked score becomes
/// `min_float/√d_k` instead of `min_float`: zero weight either way).
fn self_attention(
    mha: &MultiHeadAttention,
    x: Tensor<3>,
    mask_pad: Option<Tensor<2, Bool>>,
    mask_attn: Option<Tensor<3, Bool>>,
    recompute: bool,
) -> Tensor<3> {
    let [b, t, d] = x.dims();
    let heads = |linear: &burn::nn::Linear| {
        linear
            .forward(x.clone())
            .reshape([b, t, mha.n_heads, mha.d_k])
            .swap_dims(1, 2)
    };
    let (q, k, v) = (heads(&mha.query), heads(&mha.key), heads(&mha.value));
    let scale = 1.0 / (mha.d_k as f64).sqrt();
    let weights_dropped = mha.dropout.prob > 0.0 && q.device().is_autodiff();
    let unmasked = mask_pad.is_none() && mask_attn.is_none();
    let context = if recompute && unmasked && !mha.quiet_softmax && !weights_dropped {
        attention(q, k, v, scale)
    } else {
        let mut scores = q.matmul(k.transpose());
        if let Some(mask) = mask_pad {
            scores = scores.mask_fill(mask.reshape([b, 1, 1, t]), mha.min_float);
        }
        if let Some(mask) = mask_attn {
            scores = scores.mask_fill(mask.reshape([b, 1, t, t]), mha.min_float);
        }
        let weights = if mha.quiet_softmax {
            quiet_softmax(scores.mul_scalar(scale), 3)
        } else {
            softmax_last(scores, scale)
        };
        dropout(&mha.dropout, weights).matmul(v)
    };
    mha.output
        .forward(context.swap_dims(1, 2).reshape([b, t, d]))
}

fn feed_forward(pwff: &PositionWiseFeedForward, x: Tensor<3>) -> Tensor<3> {
    let x = pwff.linear_inner.forward(x);
    let x = match &pwff.activation {
        Activation::Gelu(g) if !g.approximate => gelu(x),
        other => other.forward(x),
    };
    pwff.linear_outer.forward(dropout(&pwff.dropout, x))
}

/// Every named size at least 1, `d_model` a multiple of `n_heads` (attention splits the width
/// evenly over the heads) and `dropout` in [0, 1); the messages name the offending field.
pub fn validate_encoder_sizes(
    sizes: &[(&str, usize)],
    d_model: usize,
    n_heads: usize,
    dropout: f64,
) -> Result<(), crate::ModelError> {
    if let Some((name, _)) = sizes.iter().find(|(_, v)| *v == 0) {
        return Err(crate::ModelError::Config(format!(
            "encoder {name} must be > 0"
        )));
    }
    if n_heads == 0 || d_model % n_heads != 0 {
        return Err(crate::ModelError::Config(format!(
            "encoder d_model ({d_model}) must be a multiple of n_heads ({n_heads})"
        )));
    }
    if !(0.0..1.0).contains(&dropout) {
        return Err(crate::ModelError::Config(format!(
            "encoder dropout must be in [0, 1), got {dropout}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{encoder_forward, encoder_forward_with, validate_encoder_sizes};
    use burn::nn::attention::generate_autoregressive_mask;
    use burn::nn::transformer::{TransformerEncoderConfig, TransformerEncoderInput};
    use burn::prelude::*;
    use burn::tensor::Distribution;

    fn max_abs_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
        (a - b).abs().max().into_scalar()
    }

    /// Without dropout, the output and the gradients of the input and of every weight equal
    /// burn's `TransformerEncoder::forward`, post- and pre-norm, with a padding mask (the
    /// second sequence is 3 tokens shorter) and with a causal mask.
    #[test]
    fn encoder_forward_matches_burn_values_and_gradients() {
        let device = Device::flex().autodiff();
        let (b, t, d) = (2, 9, 16);
        for (norm_first, padded) in [(false, true), (true, true), (false, false), (true, false)] {
            for causal in [false, true] {
                device.seed(7);
                let encoder = TransformerEncoderConfig::new(d, 32, 4, 2)
                    .with_dropout(0.0)
                    .with_norm_first(norm_first)
                    .init(&device);
                let x = Tensor::<3>::random([b, t, d], Distribution::Normal(0.0, 1.0), &device);
                let dy = Tensor::<3>::random([b, t, d], Distribution::Normal(0.0, 1.0), &device);
                let pad = Tensor::<2, Bool>::from_data(
                    TensorData::new(
                        (0..b * t)
                            .map(|i| i / t == 1 && i % t >= t - 3)
                            .collect::<Vec<_>>(),
                        [b, t],
                    ),
                    &device,
                );
                let attn = causal.then(|| generate_autoregressive_mask(b, t, &device));
                let pad = padded.then_some(pad);
                let run = |ours: bool| {
                    let x = x.clone().require_grad();
                    let y = if ours {
                        encoder_forward_with(&encoder, x.clone(), pad.clone(), attn.clone(), true)
                    } else {
                        let mut input = TransformerEncoderInput::new(x.clone());
                        if let Some(p) = pad.clone() {
                            input = input.mask_pad(p);
                        }
                        if let Some(a) = attn.clone() {
                            input = input.mask_attn(a);
                        }
                        encoder.forward(input)
                    };
                    let grads = (y.clone() * dy.clone()).sum().backward();
                    let layer = &encoder.layers[0];
                    (
                        y.inner(),
                        x.grad(&grads).unwrap(),
                        layer.mha.query.weight.val().grad(&grads).unwrap(),
                        layer.mha.key.weight.val().grad(&grads).unwrap(),
                        layer.mha.value.weight.val().grad(&grads).unwrap(),
                        layer.pwff.linear_inner.weight.val().grad(&grads).unwrap(),
                    )
                };
                let (y, gx, gq, gk, gv, gff) = run(true);
                let (y_ref, gx_ref, gq_ref, gk_ref, gv_ref, gff_ref) = run(false);
                let what = format!("norm_first {norm_first}, padded {padded}, causal {causal}");
                assert!(max_abs_diff(y, y_ref) < 1e-5, "{what}: output");
                assert!(max_abs_diff(gx, gx_ref) < 1e-4, "{what}: input grad");
                assert!(max_abs_diff(gq, gq_ref) < 1e-4, "{what}: query grad");
                assert!(max_abs_diff(gk, gk_ref) < 1e-4, "{what}: key grad");
                assert!(max_abs_diff(gv, gv_ref) < 1e-4, "{what}: value grad");
                assert!(
                    max_abs_diff(gff, gff_ref) < 1e-4,
                    "{what}: feed-forward grad"
                );
            }
        }
    }

    /// With dropout on, training outputs differ from inference and from each other (fresh
    /// masks), and a frozen (valid) encoder ignores dropout as burn's does. (That a seed repeats
    /// the masks is `selfsup_kernels::elementwise`'s test plus the CLI's resume test: burn's
    /// generator is process-global, so a unit test running beside others cannot pin it.)
    #[test]
    fn dropout_only_while_training() {
        let device = Device::flex().autodiff();
        let encoder = TransformerEncoderConfig::new(16, 32, 4, 1)
            .with_dropout(0.3)
            .init(&device);
        let x = Tensor::<3>::random([2, 5, 16], Distribution::Normal(0.0, 1.0), &device);
        let a = encoder_forward(&encoder, x.clone(), None, None);
        let b = encoder_forward(&encoder, x.clone(), None, None);
        assert!(max_abs_diff(a.clone(), b) > 1e-3);
        let valid = encoder.valid();
        let inner = x.inner();
        let eval = encoder_forward(&valid, inner.clone(), None, None);
        let reference = valid.forward(TransformerEncoderInput::new(inner));
        assert!(max_abs_diff(eval.clone(), reference) < 1e-5);
        assert!(max_abs_diff(a.inner(), eval) > 1e-3);
    }

    #[test]
    fn names_the_field_that_is_wrong() {
        let ok = validate_encoder_sizes(&[("d_model", 8), ("n_layers", 2)], 8, 2, 0.1);
        assert_eq!(ok, Ok(()));
        let zero = validate_encoder_sizes(&[("d_model", 8), ("n_layers", 0)], 8, 2, 0.1);
        assert_eq!(
            zero.unwrap_err().to_string(),
            "encoder n_layers must be > 0"
        );
        let heads = validate_encoder_sizes(&[], 10, 4, 0.1)
            .unwrap_err()
            .to_string();
        assert_eq!(
            heads,
            "encoder d_model (10) must be a multiple of n_heads (4)"
        );
        let dropout = validate_encoder_sizes(&[], 8, 2, 1.0)
            .unwrap_err()
            .to_string();
        assert_eq!(dropout, "encoder dropout must be in [0, 1), got 1");
    }
}
