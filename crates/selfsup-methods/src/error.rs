//! What can be wrong with a method's settings or a training run of this crate.

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MethodError {
    /// A `[method]` value that cannot work; `key` is the full config key.
    #[error("config `{key}` {message}")]
    Setting { key: String, message: String },
    #[error("config `method.name`: unknown method `{name}`; available: {available}")]
    UnknownMethod { name: String, available: String },
    /// An optimizer setting (`optim.*`) that cannot work.
    #[error("config `optim`: {0}")]
    Optimizer(String),
    /// A fine-tuning run that cannot go on (empty data, a non-finite loss).
    #[error("{0}")]
    Training(String),
    #[error(transparent)]
    Model(#[from] selfsup_models::ModelError),
}

impl MethodError {
    /// `config `method.<key>` <message>`.
    pub fn setting(key: &str, message: impl Into<String>) -> Self {
        MethodError::Setting {
            key: format!("method.{key}"),
            message: message.into(),
        }
    }
}
