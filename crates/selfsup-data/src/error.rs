//! The crate's error type: every variant names the offending path and says what to do.

use std::path::PathBuf;

/// Errors from opening, decoding and caching datasets.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error(
        "dataset path {path} does not exist; check the path (tests find shared data via SELFSUP_DATA)"
    )]
    NotFound { path: PathBuf },

    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "no images found in {path}; expected train/<class>/*.jpg, <class>/*.jpg, a folder of images, \
         CIFAR-10 *.bin batches or IDX (*-idx3-ubyte[.gz]) files"
    )]
    Empty { path: PathBuf },

    #[error("class folder {path} contains no images; add images or remove the folder")]
    EmptyClass { path: PathBuf },

    #[error("split folder {path} is missing (needed for the {split} split)")]
    MissingSplit { path: PathBuf, split: &'static str },

    #[error("cannot decode image {path}: {reason}; fix or delete the file, or set skip_corrupt")]
    Corrupt { path: PathBuf, reason: String },

    #[error("invalid {format} file {path}: {reason}")]
    Format {
        path: PathBuf,
        format: &'static str,
        reason: String,
    },

    #[error(
        "cache directory {path} is inside the dataset folder {dataset}; choose a cache directory outside it"
    )]
    CacheInsideDataset { path: PathBuf, dataset: PathBuf },

    #[error("invalid pipeline: {0}")]
    Pipeline(String),
}

pub type Result<T, E = DataError> = std::result::Result<T, E>;

/// Attaches a path to an `io::Error`.
pub(crate) trait IoContext<T> {
    fn at(self, path: &std::path::Path) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: &std::path::Path) -> Result<T> {
        self.map_err(|source| DataError::Io {
            path: path.to_path_buf(),
            source,
        })
    }
}
