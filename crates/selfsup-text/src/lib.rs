//! Text for selfsup: WordPiece tokenization (Hugging Face `tokenizers`, `tokenizer.json`),
//! CSV/TSV and line-per-document datasets with a streaming reader, a Transformer encoder
//! (BERT-mini default, causal option, [CLS] or mean pooling), BERT's dynamic masking, and the
//! masked-LM and causal-LM losses with tied decoders, ELECTRA's replaced-token detection, the language model as an `SslMethod` for
//! selfsup's training loop, and few-label fine-tuning.

pub mod dataset;
pub mod electra;
pub mod encoder;
pub mod error;
pub mod loss;
pub mod masking;
pub mod methods;
pub mod modality;
pub mod models;
pub mod tokenizer;

pub use dataset::{Document, Documents, TextDataset, TextFormat, TextSource};
pub use electra::{ElectraModel, ElectraObjective, ReplacedTokenHead};
pub use encoder::{Pooling, TextEncoder, TextEncoderConfig, TokenBatch, pad_rows, pool};
pub use error::{Result, TextError};
pub use loss::{
    IGNORE_INDEX, LmLoss, ReplacedTokenLoss, causal_lm_loss, masked_lm_loss, next_token_labels,
    replaced_token_loss,
};
pub use masking::{MaskedSequence, MlmMaskConfig};
pub use methods::{TextMethod, TextMethodConfig};
pub use modality::{Text, TextSettings, TextTask};
pub use models::{LmBatch, LmHead, LmMetrics, LmModel, Objective};
pub use tokenizer::{SPECIAL_TOKENS, SpecialIds, TextTokenizer, WordPieceConfig};

/// A scratch directory removed on drop (tests only; `tempfile` as a dev-dependency would change
/// the features of crates burn shares and force a full burn rebuild).
#[cfg(test)]
pub(crate) struct ScratchDir(pub std::path::PathBuf);

#[cfg(test)]
impl ScratchDir {
    pub fn new() -> Self {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "selfsup-text-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

#[cfg(test)]
impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
