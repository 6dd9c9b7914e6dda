//! Optimizers for selfsup (SGD, LARS, Adam, AdamW) and the learning-rate schedule: the one
//! implementation behind self-supervised pre-training, fine-tuning (through
//! `selfsup_methods::optim`, a re-export of this crate) and selfsup-eval's linear probe.
//!
//! [`Optimizer::step`] walks a burn module with a [`burn::module::ModuleMapper`] and updates every
//! float parameter that has a gradient in the given [`GradientsParams`]. Its state (momentum
//! buffers, Adam moments, step counts) can be exported to plain `Vec<f32>`s keyed by the
//! parameter's module path and loaded back for a bit-exact resume; see [`Optimizer::state_dict`].
//!
//! This crate sits in the bottom layer (it depends on burn only), beside selfsup-kernels,
//! selfsup-data and selfsup-eval.

mod optimizer;
mod schedule;

pub use optimizer::{
    LARS_EPS, Optimizer, OptimizerConfig, OptimizerConfigError, OptimizerKind, StateDict,
    StateDictError,
};
pub use schedule::cosine_with_warmup;

pub use burn::optim::GradientsParams;
