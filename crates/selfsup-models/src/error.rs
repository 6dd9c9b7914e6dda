//! What can be wrong with a model's configuration or the tensors loaded into it.

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ModelError {
    /// An architecture setting that cannot work, named.
    #[error("{0}")]
    Config(String),
    /// Stored tensors that do not fit the module (missing, unexpected or of another shape).
    #[error("{0}")]
    Tensors(String),
}
