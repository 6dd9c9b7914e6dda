//! Optimizers for self-supervised pre-training (SGD, LARS, AdamW) and the learning-rate schedule.
//!
//! [`Optimizer::step`] walks a burn module with a [`burn::module::ModuleMapper`] and updates every
//! float parameter that has a gradient in the given [`GradientsParams`]. Its state (momentum
//! buffers, Adam moments, step counts) can be exported to plain `Vec<f32>`s keyed by the
//! parameter's module path and loaded back for a bit-exact resume; see [`Optimizer::state_dict`].

mod optimizer;
mod schedule;

pub use optimizer::{
    LARS_EPS, Optimizer, OptimizerConfig, OptimizerConfigError, OptimizerKind, StateDict,
    StateDictError,
};
pub use schedule::cosine_with_warmup;

pub use burn::optim::GradientsParams;
