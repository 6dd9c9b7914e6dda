//! Evaluation of frozen embeddings for selfsup.
//!
//! Works on plain `f32` feature matrices ([`Features`], row-major `n × dim`) and
//! `u32` class labels, independent of any model:
//!
//! * [`knn`]: weighted kNN classifier (InstDisc / LightlySSL `knn_predict`).
//! * [`linear`]: linear probe (multinomial logistic regression, Adam/SGD).
//! * [`metrics`]: top-k accuracy, confusion matrix, collapse diagnostics
//!   (embedding std, RankMe, alignment, uniformity).
//! * [`subset`]: stratified, seeded label-subset selection.
//! * [`tsne`]: PCA, 2-D t-SNE maps and their trustworthiness.

pub mod features;
pub mod knn;
pub mod linear;
pub mod metrics;
pub mod subset;
pub mod tsne;

pub use features::Features;
pub use knn::{KnnConfig, KnnResult, MatmulBackend, knn_classify, knn_scores};
pub use linear::{
    LinearProbeConfig, LinearProbeResult, Normalization, Optimizer, linear_probe,
    probed_linear_head,
};
pub use metrics::{
    accuracy, alignment, confusion_matrix, embedding_std, rankme, symmetric_eigen,
    symmetric_eigenvalues, top_k_accuracy, uniformity,
};
pub use subset::{SubsetSpec, select_labels, stratified_subset};
pub use tsne::{TsneConfig, map_knn_accuracy, pca, trustworthiness, tsne_2d};

/// Errors returned by evaluation routines.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum EvalError {
    #[error("empty input: {0}")]
    Empty(String),
    #[error("dimension mismatch: {0}")]
    DimMismatch(String),
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

pub type Result<T> = std::result::Result<T, EvalError>;
