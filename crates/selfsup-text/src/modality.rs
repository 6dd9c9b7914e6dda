//! Text as a selfsup modality ([`Text`]): the pretraining corpus (CSV/TSV columns or one
//! document per line, every Nth document held out), the run's WordPiece tokenizer (trained at
//! the start, or loaded, and kept as RUN/tokenizer.json), masked- or causal-LM batches for the
//! one training loop with held-out accuracy and perplexity per epoch, and the few-label
//! classification task (a folder holding labelled train and test CSV/TSV files).

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::prelude::*;
use selfsup_core::config::{RunConfig, Schema};
use selfsup_core::modality::{DownstreamTask, Init, Modality, TaskSource, fresh_encoder};
use selfsup_core::pretrain::{Figures, Run, TrainData};
use selfsup_core::recipe::RecipeDefaults;
use selfsup_core::{Error, PretrainSummary, Result, bail};
use selfsup_data::{Split, shuffled_batches};
use selfsup_methods::method::SslMethod;
use selfsup_models::load_named_tensors;
use serde::{Deserialize, Serialize};

use crate::TextError;
use crate::dataset::{TextFormat, TextSource};
use crate::electra::ElectraModel;
use crate::encoder::{Pooling, PositionInit, TextEncoder, TextEncoderConfig, TokenBatch};
use crate::methods::TextMethod;
use crate::models::{LmBatch, LmMetrics, LmModel, Objective};
use crate::tokenizer::{SpecialIds, TextTokenizer, WordPieceConfig};

/// Text: `[text]` and `[text_encoder]`, the methods of [`TextMethod`].
pub struct Text;

/// A run config of a text method.
pub type TextRunConfig = RunConfig<Text>;

/// `[text]` and `[text_encoder]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TextSettings {
    pub text: TextConfig,
    pub text_encoder: TextEncoderSettings,
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
    /// Sequence embedding for kNN, linear probes and fine-tuning: `cls`, `mean` or `last` (the
    /// last token, GPT's choice for a causal encoder).
    pub pooling: String,
}

impl Default for TextConfig {
    /// An 8,000-token WordPiece vocabulary, 128 tokens; 1 % held out.
    fn default() -> Self {
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
    /// The learned position table's start: `normal` (BERT's N(0, 0.02)) or `sinusoidal`.
    pub position_init: String,
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
            position_init: "normal".into(),
        }
    }
}

impl TextConfig {
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
            .map_err(|e| Error::msg(format!("config `text.pooling`: {e}")))
    }
}

impl TextEncoderSettings {
    /// The encoder for `vocab_size` tokens and sequences of up to `max_len`; errors name the
    /// `text_encoder` key.
    pub fn encoder_config(&self, vocab_size: usize, max_len: usize) -> Result<TextEncoderConfig> {
        let c =
            TextEncoderConfig::new(vocab_size)
                .with_d_model(self.d_model)
                .with_n_layers(self.n_layers)
                .with_n_heads(self.n_heads)
                .with_d_ff(self.d_ff)
                .with_max_len(max_len)
                .with_dropout(self.dropout)
                .with_norm_first(self.norm_first)
                .with_position_init(self.position_init.parse::<PositionInit>().map_err(|e| {
                    Error::msg(format!("config `text_encoder.position_init`: {e}"))
                })?);
        c.validate()
            .map_err(|e| Error::msg(format!("config `text_encoder`: {e}")))?;
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

/// Key moves of this version: the masking settings belong to the mlm method now.
const MOVED: &[(&str, &str, &[&str])] = &[
    ("text.mask_probability", "method.mask_probability", &["mlm"]),
    ("text.mask_fraction", "method.mask_fraction", &["mlm"]),
    ("text.random_fraction", "method.random_fraction", &["mlm"]),
];

impl Schema for Text {
    const NAME: &'static str = "text";
    type Settings = TextSettings;
    type Method = TextMethod;
    const MOVED_KEYS: &'static [(&'static str, &'static str, &'static [&'static str])] = MOVED;

    fn validate(config: &TextRunConfig) -> Result<()> {
        let t = &config.modality.text;
        if t.heldout_every < 2 {
            bail!(
                "config `text.heldout_every` must be at least 2 (every Nth document is held out), got {}",
                t.heldout_every
            );
        }
        if !(3..=4096).contains(&t.max_len) {
            bail!(
                "config `text.max_len` must be within [3, 4096] ([CLS], a token and [SEP] at least), got {}",
                t.max_len
            );
        }
        if !(6..=1_000_000).contains(&t.vocab_size) {
            bail!(
                "config `text.vocab_size` must be within [6, 1000000] (5 special tokens and at least one word), got {}",
                t.vocab_size
            );
        }
        for (key, v) in [
            ("text.text_column", &t.text_column),
            ("text.label_column", &t.label_column),
            ("text.train_file", &t.train_file),
            ("text.test_file", &t.test_file),
        ] {
            if v.trim().is_empty() {
                bail!("config `{key}` must not be empty");
            }
        }
        if t.corpus.iter().any(|c| c.trim().is_empty()) {
            bail!("config `text.corpus` holds an empty path: {:?}", t.corpus);
        }
        if t.pooling()? == Pooling::Cls && config.method.objective().is_causal() {
            bail!(
                "config `text.pooling` = \"cls\" with {}: under the causal mask position 0 sees only [CLS]; use \"mean\" or \"last\"",
                config.method_name()
            );
        }
        // The vocabulary's size is known once the tokenizer is; any valid size checks the rest.
        config
            .modality
            .text_encoder
            .encoder_config(t.vocab_size, t.max_len)?;
        Ok(())
    }
}

impl Modality for Text {
    type Task = TextTask;
    const RECIPE: RecipeDefaults = RecipeDefaults::TEXT;

    fn pretrain(run: Run<Self>) -> Result<PretrainSummary> {
        pretrain(run)
    }

    fn open_task(source: &TaskSource<Self>) -> Result<TextTask> {
        TextTask::open(source)
    }
}

/// Held-out masks come from their own stream, not the training masks' (mixed into the seed).
const HELDOUT_MASK_SEED: u64 = 0x6865_6c64;

fn text_error(e: TextError) -> Error {
    Error::other(e)
}

fn resolve(base: &Path, path: &str) -> PathBuf {
    let p = PathBuf::from(path);
    if p.is_absolute() { p } else { base.join(p) }
}

/// A file of documents: a `.csv` / `.tsv` file's `text.text_column` (and, with `labelled`, its
/// `text.label_column`), any other file one document per line.
fn source(path: &Path, config: &TextConfig, labelled: bool) -> TextSource {
    let delimited = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv") || e.eq_ignore_ascii_case("tsv"));
    if delimited {
        TextSource::delimited(
            path,
            &config.text_column,
            labelled.then_some(config.label_column.as_str()),
        )
    } else {
        TextSource::lines(path)
    }
}

/// The pretraining documents of `text.corpus` (default: the downstream training file), in file
/// order, split into training and held-out ones: document i (from 1, over all files) is held
/// out when `i % text.heldout_every == 0`. Refuses the downstream test file.
fn read_corpus(run: &TextRunConfig, base: &Path) -> Result<(Vec<String>, Vec<String>)> {
    let data = run.data_path(base);
    let config = &run.modality.text;
    let files: Vec<PathBuf> = if config.corpus.is_empty() {
        vec![data.join(&config.train_file)]
    } else {
        config.corpus.iter().map(|c| resolve(base, c)).collect()
    };
    let test = data.join(&config.test_file).canonicalize().ok();
    let (mut train, mut heldout) = (Vec::new(), Vec::new());
    let mut i = 0usize;
    for file in &files {
        if test.is_some() && file.canonicalize().ok() == test {
            bail!(
                "config `text.corpus`: {} is the downstream test split (data.path / text.test_file); pretraining never reads test texts",
                file.display()
            );
        }
        for doc in source(file, config, false)
            .documents()
            .map_err(text_error)?
        {
            let doc = doc.map_err(text_error)?;
            i += 1;
            if i % config.heldout_every == 0 {
                heldout.push(doc.text);
            } else {
                train.push(doc.text);
            }
        }
    }
    if heldout.is_empty() {
        bail!(
            "config `text.heldout_every` = {} leaves no held-out document in a corpus of {i}; lower it",
            config.heldout_every
        );
    }
    Ok((train, heldout))
}

/// The run's tokenizer, written to `out/tokenizer.json`: `text.tokenizer` when set, the run's
/// own file when resuming, else a WordPiece vocabulary trained on `texts`.
fn run_tokenizer(
    config: &TextConfig,
    base: &Path,
    out: &Path,
    resumed: bool,
    texts: &[String],
) -> Result<TextTokenizer> {
    let saved = out.join("tokenizer.json");
    let max_len = config.max_len;
    let tokenizer = if !config.tokenizer.is_empty() {
        let path = resolve(base, &config.tokenizer);
        TextTokenizer::load(&path, max_len)
            .map_err(|e| Error::msg(format!("config `text.tokenizer`: {e}")))?
    } else if resumed && saved.is_file() {
        return TextTokenizer::load(&saved, max_len).map_err(text_error);
    } else {
        let t0 = Instant::now();
        let t =
            TextTokenizer::train(texts.iter(), &config.wordpiece(), max_len).map_err(text_error)?;
        eprintln!(
            "trained a WordPiece vocabulary of {} tokens on {} documents in {:.1} s",
            t.vocab_size(),
            texts.len(),
            t0.elapsed().as_secs_f64()
        );
        t
    };
    tokenizer.save(&saved).map_err(text_error)?;
    Ok(tokenizer)
}

/// The encoder of a text config for `vocab_size` tokens (causal for causal_lm).
pub fn encoder_config(config: &TextRunConfig, vocab_size: usize) -> Result<TextEncoderConfig> {
    Ok(config
        .modality
        .text_encoder
        .encoder_config(vocab_size, config.modality.text.max_len)?
        .with_causal(config.method.objective().is_causal()))
}

/// Pretraining batches: shuffled documents, masked afresh each epoch (mlm) or shifted
/// (causal_lm); evaluation on the held-out documents with fixed masks.
struct TextData {
    config: TextRunConfig,
    train: Vec<Vec<u32>>,
    heldout: Vec<Vec<u32>>,
    special: SpecialIds,
    vocab_size: usize,
    objective: Objective,
}

impl<M: TextPretext> TrainData<M> for TextData {
    fn samples(&self) -> usize {
        self.train.len()
    }

    fn steps_per_epoch(&self) -> usize {
        self.train.len() / self.config.train.batch_size
    }

    fn throughput_unit(&self) -> &'static str {
        "tokens"
    }

    fn epoch<'a>(
        &'a self,
        epoch: usize,
        device: &'a Device,
    ) -> Box<dyn Iterator<Item = (LmBatch, usize)> + 'a> {
        let seed = self.config.train.seed;
        let batches = shuffled_batches(
            self.train.len(),
            self.config.train.batch_size,
            seed,
            epoch as u64,
        );
        Box::new(batches.into_iter().map(move |idx| {
            let seqs: Vec<Vec<u32>> = idx.iter().map(|&i| self.train[i].clone()).collect();
            let tokens = seqs.iter().map(Vec::len).sum();
            let batch = self.objective.batch(
                &seqs,
                &idx,
                &self.special,
                self.vocab_size,
                (seed, epoch as u64),
                device,
            );
            (batch, tokens)
        }))
    }

    fn evaluate(&self, model: &M) -> Result<Figures> {
        Ok(model.heldout_figures(self))
    }
}

/// A text pretext model the training loop runs on [`TextData`]'s batches.
trait TextPretext: SslMethod<Input = LmBatch> {
    /// Held-out figures (`heldout_accuracy`, `heldout_perplexity`, `heldout_loss`,
    /// `heldout_tokens` of the language model; ELECTRA adds `heldout_detection_accuracy`).
    fn heldout_figures(&self, data: &TextData) -> Figures;
}

impl TextData {
    /// `(seed, batch size)` of the held-out evaluation: masks from their own stream.
    fn heldout_draw(&self) -> (u64, usize) {
        (
            self.config.train.seed ^ HELDOUT_MASK_SEED,
            self.config.eval.batch_size,
        )
    }
}

fn lm_figures(m: &LmMetrics) -> Figures {
    let mut f = Figures::new();
    f.insert("heldout_accuracy".into(), m.accuracy.into());
    f.insert("heldout_perplexity".into(), m.perplexity.into());
    f.insert("heldout_loss".into(), m.loss.into());
    f.insert("heldout_tokens".into(), m.tokens.into());
    f
}

impl TextPretext for LmModel {
    fn heldout_figures(&self, data: &TextData) -> Figures {
        let (seed, batch) = data.heldout_draw();
        lm_figures(&self.valid().evaluate(
            &data.heldout,
            &data.objective,
            &data.special,
            seed,
            batch,
        ))
    }
}

/// The generator's masked-LM figures and the discriminator's detection accuracy.
impl TextPretext for ElectraModel {
    fn heldout_figures(&self, data: &TextData) -> Figures {
        let (seed, batch) = data.heldout_draw();
        let (lm, detection) =
            self.valid()
                .evaluate(&data.heldout, &data.objective, &data.special, seed, batch);
        let mut f = lm_figures(&lm);
        f.insert("heldout_detection_accuracy".into(), detection.into());
        f
    }
}

/// Pretraining for `mlm`, `causal_lm` and `electra`: the run's loop on token batches.
fn pretrain(run: Run<Text>) -> Result<PretrainSummary> {
    let config = run.config.clone();
    let base_dir = run.base_dir().to_path_buf();
    let (train_texts, heldout_texts) = read_corpus(&config, &base_dir)?;
    let tokenizer = run_tokenizer(
        &config.modality.text,
        &base_dir,
        run.out(),
        run.resumed.is_some(),
        &train_texts,
    )?;
    // data.limit: the first N pretraining documents only (quick runs; the tokenizer and the
    // held-out documents stay those of the whole corpus).
    let mut train_texts = train_texts;
    if config.data.limit > 0 {
        train_texts.truncate(config.data.limit);
    }
    let t0 = Instant::now();
    let train = tokenizer.encode_batch(&train_texts).map_err(text_error)?;
    let heldout = tokenizer.encode_batch(&heldout_texts).map_err(text_error)?;
    eprintln!(
        "{} pretraining documents ({} tokens) and {} held out, encoded in {:.1} s",
        train.len(),
        train.iter().map(Vec::len).sum::<usize>(),
        heldout.len(),
        t0.elapsed().as_secs_f64()
    );
    if train.len() < config.train.batch_size {
        bail!(
            "the text corpus has {} pretraining documents, fewer than train.batch_size = {}",
            train.len(),
            config.train.batch_size
        );
    }
    let vocab_size = tokenizer.vocab_size();
    let encoder = encoder_config(&config, vocab_size)?;
    let objective = config.method.objective();
    let data = TextData {
        config: config.clone(),
        train,
        heldout,
        special: tokenizer.special(),
        vocab_size,
        objective,
    };
    let device = run.device.clone();
    match objective {
        Objective::ReplacedToken(electra) => {
            run.train(ElectraModel::new(&encoder, &electra, &device), &data)
        }
        _ => run.train(LmModel::new(&encoder, &objective, &device), &data),
    }
}

/// Texts and integer labels of a labelled CSV/TSV split.
fn labelled_split(config: &TextConfig, path: &Path) -> Result<(Vec<String>, Vec<u32>)> {
    let src = source(path, config, true);
    if src.format == TextFormat::Lines {
        bail!(
            "text data {}: a labelled split must be a .csv or .tsv file with the columns `{}` and `{}` (text.text_column, text.label_column)",
            path.display(),
            config.text_column,
            config.label_column
        );
    }
    let data = src.load().map_err(text_error)?;
    let labels = data.labels.expect("a delimited source with a label column");
    Ok((data.texts, labels))
}

/// The few-label classification task of a text checkpoint: its encoder and tokenizer, and
/// the labelled files `text.train_file` and `text.test_file` of the data folder.
pub struct TextTask {
    config: TextRunConfig,
    encoder_config: TextEncoderConfig,
    pretrained: TextEncoder,
    train: Vec<Vec<u32>>,
    train_labels: Vec<u32>,
    test: Vec<Vec<u32>>,
    test_labels: Vec<u32>,
    train_file: PathBuf,
    test_file: PathBuf,
    classes: usize,
    pooling: Pooling,
    pad_id: u32,
    device: Device,
}

impl TextTask {
    /// The checkpoint's encoder and tokenizer (RUN/tokenizer.json beside RUN/checkpoints/), and
    /// the labelled files of the source's data folder; `--pooling` overrides `text.pooling`.
    pub fn open(source: &TaskSource<Text>) -> Result<Self> {
        let config = source.config.clone();
        let t = &config.modality.text;
        let device = selfsup_core::device::select(&config.train.device)?;
        let c = &source.checkpoint;
        let tokenizer_path = source.run_dir.join("tokenizer.json");
        if !tokenizer_path.is_file() {
            bail!(
                "{} not found: a text checkpoint needs its run's tokenizer (`selfsup pretrain` writes RUN/tokenizer.json beside RUN/checkpoints/)",
                tokenizer_path.display()
            );
        }
        let tokenizer = TextTokenizer::load(&tokenizer_path, t.max_len).map_err(text_error)?;
        let encoder_config = encoder_config(&config, tokenizer.vocab_size())?;
        let pretrained = load_named_tensors(
            encoder_config.init(&device),
            &c.section("model"),
            "backbone.",
        )
        .map_err(|e| {
            Error::msg(format!(
                "checkpoint {} does not fit its text encoder (and {}): {e}",
                c.path.display(),
                tokenizer_path.display()
            ))
        })?;
        let pooling = match &source.options.pooling {
            Some(p) => p
                .parse::<Pooling>()
                .map_err(|e| Error::msg(format!("--pooling: {e}")))?,
            None => t.pooling()?,
        };
        if pooling == Pooling::Cls && encoder_config.causal {
            bail!(
                "[CLS] pooling of a causal encoder sees only the first token; use --pooling mean or last"
            );
        }
        let data_path = &source.data_path;
        if !data_path.is_dir() {
            bail!(
                "text data `{}`: expected a folder holding {} and {} (text.train_file, text.test_file)",
                data_path.display(),
                t.train_file,
                t.test_file
            );
        }
        let (train_file, test_file) = (data_path.join(&t.train_file), data_path.join(&t.test_file));
        let (train_texts, train_labels) = labelled_split(t, &train_file)?;
        let (test_texts, test_labels) = labelled_split(t, &test_file)?;
        let classes = train_labels
            .iter()
            .chain(&test_labels)
            .max()
            .map_or(0, |&m| m as usize + 1);
        if classes < 2 {
            bail!(
                "text data {}: classification needs at least 2 classes (labels 0, 1, …)",
                data_path.display()
            );
        }
        let t0 = Instant::now();
        let train = tokenizer.encode_batch(&train_texts).map_err(text_error)?;
        let test = tokenizer.encode_batch(&test_texts).map_err(text_error)?;
        eprintln!(
            "{} train and {} test texts of {} encoded in {:.1} s",
            train.len(),
            test.len(),
            data_path.display(),
            t0.elapsed().as_secs_f64()
        );
        Ok(Self {
            config,
            encoder_config,
            pretrained,
            train,
            train_labels,
            test,
            test_labels,
            train_file,
            test_file,
            classes,
            pooling,
            pad_id: tokenizer.special().pad,
            device,
        })
    }

    fn seqs(&self, split: Split) -> &[Vec<u32>] {
        match split {
            Split::Train => &self.train,
            Split::Test => &self.test,
        }
    }
}

impl DownstreamTask for TextTask {
    type Encoder = TextEncoder;
    type Batch = TokenBatch;

    fn len(&self, split: Split) -> usize {
        self.seqs(split).len()
    }

    fn labels(&self, split: Split) -> Vec<Option<u32>> {
        let l = match split {
            Split::Train => &self.train_labels,
            Split::Test => &self.test_labels,
        };
        l.iter().map(|&l| Some(l)).collect()
    }

    /// The label ids.
    fn class_names(&self) -> Vec<String> {
        (0..self.classes).map(|c| c.to_string()).collect()
    }

    /// `FILE:ROW` (row 1 is the first text after the header).
    fn sample_names(&self, split: Split, rows: &[usize]) -> Vec<String> {
        let file = match split {
            Split::Train => &self.train_file,
            Split::Test => &self.test_file,
        };
        rows.iter()
            .map(|r| format!("{}:{}", file.display(), r + 1))
            .collect()
    }

    fn augmentation(&self) -> String {
        format!(
            "none ({} tokens, {:?} pooling); AdamW (β 0.9, 0.98), 10 % warm-up",
            self.config.modality.text.max_len, self.pooling
        )
    }

    fn device(&self) -> &Device {
        &self.device
    }

    fn embed_dim(&self) -> usize {
        self.encoder_config.d_model
    }

    fn encoder(&self, init: Init, device: &Device) -> Result<TextEncoder> {
        fresh_encoder(init, device, &self.pretrained, |d| {
            self.encoder_config.init(d)
        })
    }

    fn batches<'a>(
        &'a self,
        split: Split,
        rows: &'a [usize],
        batch_size: usize,
        device: &'a Device,
    ) -> Result<Box<dyn Iterator<Item = TokenBatch> + 'a>> {
        let seqs = self.seqs(split);
        Ok(Box::new(rows.chunks(batch_size.max(1)).map(move |chunk| {
            let batch: Vec<Vec<u32>> = chunk.iter().map(|&i| seqs[i].clone()).collect();
            TokenBatch::collate(&batch, self.pad_id, None, device)
        })))
    }

    fn train_batches<'a>(
        &'a self,
        rows: &'a [usize],
        batch_size: usize,
        seed: u64,
        device: &'a Device,
    ) -> Result<Box<dyn Iterator<Item = (TokenBatch, Vec<u32>)> + 'a>> {
        let batches =
            (0u64..).flat_map(move |pass| shuffled_batches(rows.len(), batch_size, seed, pass));
        Ok(Box::new(batches.map(move |idx| {
            let seqs: Vec<Vec<u32>> = idx.iter().map(|&i| self.train[rows[i]].clone()).collect();
            let labels = idx.iter().map(|&i| self.train_labels[rows[i]]).collect();
            (
                TokenBatch::collate(&seqs, self.pad_id, None, device),
                labels,
            )
        })))
    }

    fn forward(&self, encoder: &TextEncoder, batch: TokenBatch) -> Tensor<2> {
        encoder.embed(&batch, self.pooling)
    }
}
