//! Language-modelling losses, one per file, each checked against a PyTorch fixture
//! (`fixtures/make_lm_fixtures.py`).

pub mod causal_lm;
pub mod mlm;
pub mod replaced_token;

pub use causal_lm::{causal_lm_loss, next_token_labels};
pub use mlm::{LmLoss, masked_lm_loss};
pub use replaced_token::{ReplacedTokenLoss, replaced_token_loss};

/// Label of a position that carries no loss (PyTorch's `cross_entropy` default).
pub const IGNORE_INDEX: i64 = -100;
