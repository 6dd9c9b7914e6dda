//! The library's error: a message that names the file, key, flag or step concerned and says
//! what to do, with the lower crates' errors kept as its source.

use std::fmt::Display;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting, argument or input that cannot work; the message names it.
    #[error("{0}")]
    Invalid(String),
    /// A failure with what was being done when it happened.
    #[error("{context}: {source}")]
    Context {
        context: String,
        #[source]
        source: Box<Error>,
    },
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Data(#[from] selfsup_data::DataError),
    #[error(transparent)]
    Eval(#[from] selfsup_eval::EvalError),
    #[error(transparent)]
    Methods(#[from] selfsup_methods::MethodError),
    #[error(transparent)]
    Models(#[from] selfsup_models::ModelError),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    #[error(transparent)]
    TomlParse(#[from] toml::de::Error),
    #[error(transparent)]
    TomlWrite(#[from] toml::ser::Error),
    #[error(transparent)]
    Safetensors(#[from] safetensors::SafeTensorError),
    /// An error of a modality crate (audio, text), kept whole.
    #[error(transparent)]
    Other(Box<dyn std::error::Error + Send + Sync>),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An [`Error::Invalid`] with this message.
    pub fn msg(message: impl Display) -> Self {
        Error::Invalid(message.to_string())
    }

    /// Any other error, kept as the source.
    pub fn other(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Error::Other(Box::new(e))
    }
}

impl From<String> for Error {
    fn from(message: String) -> Self {
        Error::Invalid(message)
    }
}

/// What was being done when an error happened, as anyhow's `context` does.
pub trait Context<T> {
    fn context(self, context: impl Display) -> Result<T>;
    fn with_context<C: Display>(self, context: impl FnOnce() -> C) -> Result<T>;
}

impl<T, E: Into<Error>> Context<T> for std::result::Result<T, E> {
    fn context(self, context: impl Display) -> Result<T> {
        self.map_err(|e| Error::Context {
            context: context.to_string(),
            source: Box::new(e.into()),
        })
    }

    fn with_context<C: Display>(self, context: impl FnOnce() -> C) -> Result<T> {
        self.map_err(|e| Error::Context {
            context: context().to_string(),
            source: Box::new(e.into()),
        })
    }
}

impl<T> Context<T> for Option<T> {
    fn context(self, context: impl Display) -> Result<T> {
        self.ok_or_else(|| Error::msg(context))
    }

    fn with_context<C: Display>(self, context: impl FnOnce() -> C) -> Result<T> {
        self.ok_or_else(|| Error::msg(context()))
    }
}

/// Returns early with an [`Error::Invalid`] formatted like `format!`.
#[macro_export]
macro_rules! bail {
    ($($arg:tt)*) => {
        return Err($crate::Error::Invalid(format!($($arg)*)))
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_chains_read_outermost_first() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let e = Err::<(), _>(io)
            .context("cannot read config.toml")
            .context("loading the run")
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "loading the run: cannot read config.toml: no such file"
        );
        let none: Option<u8> = None;
        assert_eq!(none.context("missing").unwrap_err().to_string(), "missing");
    }
}
