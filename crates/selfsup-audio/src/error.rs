//! Errors of the audio pipeline; each names the file, field or step and what to do.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    #[error("{}: cannot open: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not a readable WAV file ({reason}); re-export it as RIFF/WAVE PCM or float", path.display())]
    Unreadable { path: PathBuf, reason: String },
    #[error("{}: truncated WAV: {reason}; the file ends before its data chunk does — re-copy or re-export it", path.display())]
    Truncated { path: PathBuf, reason: String },
    #[error("{}: unsupported WAV format ({reason}); supported are PCM 8/16/24/32-bit and 32-bit float", path.display())]
    Unsupported { path: PathBuf, reason: String },
    #[error("{}: zero-length clip (no samples); remove it from the dataset", path.display())]
    Empty { path: PathBuf },
    #[error("resampling {from} Hz -> {to} Hz failed: {reason}")]
    Resample { from: u32, to: u32, reason: String },
    #[error("{}{}: {reason}", path.display(), line.map(|l| format!(" line {l}")).unwrap_or_default())]
    Manifest {
        path: PathBuf,
        line: Option<u64>,
        reason: String,
    },
    #[error("{}: no clips found: {reason}", path.display())]
    NoClips { path: PathBuf, reason: String },
    #[error("invalid {field}: {reason}")]
    Config { field: &'static str, reason: String },
}

pub type Result<T> = std::result::Result<T, AudioError>;
