//! Config sections of text runs (`method.name` = mlm or causal_lm): `[text]` for the corpus,
//! the tokenizer, the masking and the downstream files, `[text_encoder]` for the Transformer.
//! Image and audio runs ignore both.

use anyhow::{Result, bail};
use selfsup_text::{MlmMaskConfig, Objective, Pooling, TextEncoderConfig, WordPieceConfig};
use serde::{Deserialize, Serialize};

/// The text pretext methods: masked (BERT) and causal (GPT) language modelling.
pub const TEXT_METHODS: [&str; 2] = ["mlm", "causal_lm"];

pub fn is_text_method(name: &str) -> bool {
    TEXT_METHODS.contains(&name)
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TextConfig {
    /// Pretraining documents: CSV/TSV files (their `text_column`; labels are never read) or
    /// plain-text files, one document per line. Relative paths resolve like `data.path`.
    /// Empty: the downstream `train_file`.
    pub corpus: Vec<String>,
    /// Every Nth corpus document (the N-th, 2N-th, …, counted over the files in order) is held
    /// out of pretraining; the per-epoch evaluation scores the language model on them.
    pub heldout_every: usize,
    pub text_column: String,
    /// Integer class ids of the downstream files (`finetune`, `prove`).
    pub label_column: String,
    /// Downstream files inside `data.path` (or `--data`): labelled training and test split.
    pub train_file: String,
    pub test_file: String,
    /// A `tokenizer.json` to use; empty: train a WordPiece vocabulary on the pretraining
    /// documents at the start of the run. Either way the run keeps it as RUN/tokenizer.json.
    pub tokenizer: String,
    pub vocab_size: usize,
    pub min_frequency: u64,
    pub lowercase: bool,
    /// Tokens per sequence, [CLS] and [SEP] included (longer texts are truncated).
    pub max_len: usize,
    /// mlm: share of tokens selected…
    pub mask_probability: f64,
    /// …of which this share becomes [MASK]…
    pub mask_fraction: f64,
    /// …and this share a random token (the rest stay unchanged).
    pub random_fraction: f64,
    /// Sequence embedding for kNN, linear probes and fine-tuning: `cls`, `mean` or `last` (the last token, GPT's choice for a causal encoder).
    pub pooling: String,
}

impl Default for TextConfig {
    /// BERT's masking recipe, an 8,000-token WordPiece vocabulary, 128 tokens; 1 % held out.
    fn default() -> Self {
        let mask = MlmMaskConfig::default();
        let wp = WordPieceConfig::default();
        Self {
            corpus: Vec::new(),
            heldout_every: 100,
            text_column: "text".into(),
            label_column: "label".into(),
            train_file: "train.csv".into(),
            test_file: "test.csv".into(),
            tokenizer: String::new(),
            vocab_size: wp.vocab_size,
            min_frequency: wp.min_frequency,
            lowercase: wp.lowercase,
            max_len: 128,
            mask_probability: mask.probability,
            mask_fraction: mask.mask_fraction,
            random_fraction: mask.random_fraction,
            pooling: "cls".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TextEncoderSettings {
    pub d_model: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub d_ff: usize,
    pub dropout: f64,
    /// Pre-norm blocks (and a final LayerNorm) instead of BERT's post-norm.
    pub norm_first: bool,
}

impl Default for TextEncoderSettings {
    /// BERT-mini: 4 layers, 256 wide, 4 heads, 1024 feed-forward.
    fn default() -> Self {
        let e = TextEncoderConfig::new(1);
        Self {
            d_model: e.d_model,
            n_layers: e.n_layers,
            n_heads: e.n_heads,
            d_ff: e.d_ff,
            dropout: e.dropout,
            norm_first: e.norm_first,
        }
    }
}

impl TextConfig {
    pub fn mask(&self) -> MlmMaskConfig {
        MlmMaskConfig {
            probability: self.mask_probability,
            mask_fraction: self.mask_fraction,
            random_fraction: self.random_fraction,
        }
    }

    /// What `method` predicts.
    pub fn objective(&self, method: &str) -> Objective {
        if method == "causal_lm" {
            Objective::NextToken
        } else {
            Objective::Masked(self.mask())
        }
    }

    pub fn wordpiece(&self) -> WordPieceConfig {
        WordPieceConfig {
            vocab_size: self.vocab_size,
            min_frequency: self.min_frequency,
            lowercase: self.lowercase,
        }
    }

    pub fn pooling(&self) -> Result<Pooling> {
        self.pooling
            .parse::<Pooling>()
            .map_err(|e| anyhow::anyhow!("config `text.pooling`: {e}"))
    }

    /// Every value, each error naming its key.
    pub fn validate(&self, method: &str) -> Result<()> {
        self.mask().validate().map_err(|e| {
            anyhow::anyhow!(
                "config `text.mask_probability` / `text.mask_fraction` / `text.random_fraction`: {e}"
            )
        })?;
        if self.heldout_every < 2 {
            bail!(
                "config `text.heldout_every` must be at least 2 (every Nth document is held out), got {}",
                self.heldout_every
            );
        }
        if !(3..=4096).contains(&self.max_len) {
            bail!(
                "config `text.max_len` must be within [3, 4096] ([CLS], a token and [SEP] at least), got {}",
                self.max_len
            );
        }
        if !(6..=1_000_000).contains(&self.vocab_size) {
            bail!(
                "config `text.vocab_size` must be within [6, 1000000] (5 special tokens and at least one word), got {}",
                self.vocab_size
            );
        }
        for (key, v) in [
            ("text.text_column", &self.text_column),
            ("text.label_column", &self.label_column),
            ("text.train_file", &self.train_file),
            ("text.test_file", &self.test_file),
        ] {
            if v.trim().is_empty() {
                bail!("config `{key}` must not be empty");
            }
        }
        if self.corpus.iter().any(|c| c.trim().is_empty()) {
            bail!(
                "config `text.corpus` holds an empty path: {:?}",
                self.corpus
            );
        }
        if self.pooling()? == Pooling::Cls && self.objective(method).is_causal() {
            bail!(
                "config `text.pooling` = \"cls\" with {method}: under the causal mask position 0 sees only [CLS]; use \"mean\" or \"last\""
            );
        }
        Ok(())
    }
}

impl TextEncoderSettings {
    /// The encoder for `vocab_size` tokens and sequences of up to `max_len`; errors name the
    /// `text_encoder` key.
    pub fn encoder_config(&self, vocab_size: usize, max_len: usize) -> Result<TextEncoderConfig> {
        let c = TextEncoderConfig::new(vocab_size)
            .with_d_model(self.d_model)
            .with_n_layers(self.n_layers)
            .with_n_heads(self.n_heads)
            .with_d_ff(self.d_ff)
            .with_max_len(max_len)
            .with_dropout(self.dropout)
            .with_norm_first(self.norm_first);
        c.validate()
            .map_err(|e| anyhow::anyhow!("config `text_encoder`: {e}"))?;
        for (key, v, max) in [
            ("d_model", self.d_model, 16384),
            ("n_layers", self.n_layers, 256),
            ("d_ff", self.d_ff, 65536),
        ] {
            if v > max {
                bail!("config `text_encoder.{key}` must be at most {max}, got {v}");
            }
        }
        Ok(c)
    }
}
