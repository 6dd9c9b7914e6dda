//! Errors of the text pipeline; each names the file, line, column or field and what to do.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum TextError {
    #[error("{}: cannot read: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} line {line}: not valid UTF-8 ({reason}); re-encode the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)", path.display())]
    BadEncoding {
        path: PathBuf,
        line: u64,
        reason: String,
    },
    #[error("{}: no column named {column:?} (the header has {present:?}); set the {role} column to one of these", path.display())]
    MissingColumn {
        path: PathBuf,
        column: String,
        role: &'static str,
        present: Vec<String>,
    },
    #[error("{} line {line}: {reason}", path.display())]
    BadRecord {
        path: PathBuf,
        line: u64,
        reason: String,
    },
    #[error("{}: empty corpus: {reason}", path.display())]
    EmptyCorpus { path: PathBuf, reason: String },
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("invalid {field}: {reason}")]
    Config { field: &'static str, reason: String },
}

pub type Result<T> = std::result::Result<T, TextError>;
