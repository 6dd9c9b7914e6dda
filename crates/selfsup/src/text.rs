//! Text in the CLI: the pretraining corpus (CSV/TSV columns or one document per line, every Nth
//! document held out), the run's WordPiece tokenizer (trained at the start, or loaded, and kept
//! as RUN/tokenizer.json), masked- or causal-LM batches for the one training loop with held-out
//! accuracy and perplexity per epoch, and the few-label classification task of `finetune` /
//! `prove` (a folder holding labelled train and test CSV/TSV files).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::prelude::*;
use selfsup_data::shuffled_batches;
use selfsup_eval::{Features, SubsetSpec, stratified_subset, top_k_accuracy};
use selfsup_methods::finetune::ClassifierSchedule;
use selfsup_models::{load_named_tensors, named_tensors};
use selfsup_text::{
    LmBatch, LmModel, Objective, Pooling, SpecialIds, TextEncoder, TextEncoderConfig, TextError,
    TextFormat, TextSource, TextTokenizer,
};

use crate::checkpoint;
use crate::config::Config;
use crate::device;
use crate::downstream::{Downstream, FullResult, Init};
use crate::finetune::Recipe;
use crate::pretrain::{PretrainSummary, Session};
use crate::train_data::{Figures, TrainData};

/// Held-out masks come from their own stream, not the training masks' (mixed into the seed).
const HELDOUT_MASK_SEED: u64 = 0x6865_6c64;

fn text_error(e: TextError) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

fn resolve(base: &Path, path: &str) -> PathBuf {
    let p = PathBuf::from(path);
    if p.is_absolute() { p } else { base.join(p) }
}

/// A file of documents: a `.csv` / `.tsv` file's `text.text_column` (and, with `labelled`, its
/// `text.label_column`), any other file one document per line.
fn source(path: &Path, config: &Config, labelled: bool) -> TextSource {
    let delimited = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv") || e.eq_ignore_ascii_case("tsv"));
    if delimited {
        TextSource::delimited(
            path,
            &config.text.text_column,
            labelled.then_some(config.text.label_column.as_str()),
        )
    } else {
        TextSource::lines(path)
    }
}

/// The pretraining documents of `text.corpus` (default: the downstream training file), in file
/// order, split into training and held-out ones: document i (from 1, over all files) is held
/// out when `i % text.heldout_every == 0`. Refuses the downstream test file.
fn read_corpus(config: &Config, base: &Path) -> Result<(Vec<String>, Vec<String>)> {
    let data = config.data_path(base);
    let files: Vec<PathBuf> = if config.text.corpus.is_empty() {
        vec![data.join(&config.text.train_file)]
    } else {
        config
            .text
            .corpus
            .iter()
            .map(|c| resolve(base, c))
            .collect()
    };
    let test = data.join(&config.text.test_file).canonicalize().ok();
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
            if i % config.text.heldout_every == 0 {
                heldout.push(doc.text);
            } else {
                train.push(doc.text);
            }
        }
    }
    if heldout.is_empty() {
        bail!(
            "config `text.heldout_every` = {} leaves no held-out document in a corpus of {i}; lower it",
            config.text.heldout_every
        );
    }
    Ok((train, heldout))
}

/// The run's tokenizer, written to `out/tokenizer.json`: `text.tokenizer` when set, the run's
/// own file when resuming, else a WordPiece vocabulary trained on `texts`.
fn run_tokenizer(
    config: &Config,
    base: &Path,
    out: &Path,
    resumed: bool,
    texts: &[String],
) -> Result<TextTokenizer> {
    let saved = out.join("tokenizer.json");
    let max_len = config.text.max_len;
    let tokenizer = if !config.text.tokenizer.is_empty() {
        let path = resolve(base, &config.text.tokenizer);
        TextTokenizer::load(&path, max_len)
            .map_err(|e| anyhow::anyhow!("config `text.tokenizer`: {e}"))?
    } else if resumed && saved.is_file() {
        return TextTokenizer::load(&saved, max_len).map_err(text_error);
    } else {
        let t0 = Instant::now();
        let t = TextTokenizer::train(texts.iter(), &config.text.wordpiece(), max_len)
            .map_err(text_error)?;
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
pub fn encoder_config(config: &Config, vocab_size: usize) -> Result<TextEncoderConfig> {
    Ok(config
        .text_encoder
        .encoder_config(vocab_size, config.text.max_len)?
        .with_causal(config.text.objective(&config.method.name).is_causal()))
}

/// Pretraining batches: shuffled documents, masked afresh each epoch (mlm) or shifted
/// (causal_lm); evaluation on the held-out documents with fixed masks.
struct TextData {
    config: Config,
    train: Vec<Vec<u32>>,
    heldout: Vec<Vec<u32>>,
    special: SpecialIds,
    vocab_size: usize,
    objective: Objective,
}

impl TrainData<LmModel> for TextData {
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

    fn evaluate(&self, model: &LmModel) -> Result<Figures> {
        let m = model.valid().evaluate(
            &self.heldout,
            &self.objective,
            &self.special,
            self.config.train.seed ^ HELDOUT_MASK_SEED,
            self.config.eval.batch_size,
        );
        let mut f = Figures::new();
        f.insert("heldout_accuracy".into(), m.accuracy.into());
        f.insert("heldout_perplexity".into(), m.perplexity.into());
        f.insert("heldout_loss".into(), m.loss.into());
        f.insert("heldout_tokens".into(), m.tokens.into());
        Ok(f)
    }
}

/// `selfsup pretrain` for `mlm` and `causal_lm`: the session's loop on token batches.
pub(crate) fn pretrain(
    session: Session,
    base_dir: &Path,
    device: &Device,
) -> Result<PretrainSummary> {
    let config = session.config.clone();
    let (train_texts, heldout_texts) = read_corpus(&config, base_dir)?;
    let tokenizer = run_tokenizer(
        &config,
        base_dir,
        &session.out,
        session.resumed.is_some(),
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
    let objective = config.text.objective(&config.method.name);
    let data = TextData {
        config: config.clone(),
        train,
        heldout,
        special: tokenizer.special(),
        vocab_size,
        objective,
    };
    session.train(LmModel::new(&encoder, &objective, device), &data, device)
}

/// Texts and integer labels of a labelled CSV/TSV split.
fn labelled_split(config: &Config, path: &Path) -> Result<(Vec<String>, Vec<u32>)> {
    let src = source(path, config, true);
    if src.format == TextFormat::Lines {
        bail!(
            "text data {}: a labelled split must be a .csv or .tsv file with the columns `{}` and `{}` (text.text_column, text.label_column)",
            path.display(),
            config.text.text_column,
            config.text.label_column
        );
    }
    let data = src.load().map_err(text_error)?;
    let labels = data.labels.expect("a delimited source with a label column");
    Ok((data.texts, labels))
}

/// The few-label classification task of a text checkpoint.
pub struct TextTask {
    config: Config,
    encoder_config: TextEncoderConfig,
    pretrained: TextEncoder,
    train: Vec<Vec<u32>>,
    train_labels: Vec<u32>,
    test: Vec<Vec<u32>>,
    test_labels: Vec<u32>,
    classes: usize,
    pooling: Pooling,
    pad_id: u32,
    dev: Device,
}

impl TextTask {
    /// The checkpoint's encoder and tokenizer (RUN/tokenizer.json beside RUN/checkpoints/), and
    /// the labelled files `text.train_file` and `text.test_file` in `data_path`. `pooling`
    /// overrides `text.pooling`.
    pub fn new(
        c: &checkpoint::Checkpoint,
        config: Config,
        data_path: &Path,
        pooling: Option<&str>,
    ) -> Result<Self> {
        let dev = device::select(&config.train.device)?;
        let run_dir = c
            .path
            .parent()
            .and_then(Path::parent)
            .unwrap_or(Path::new("."));
        let tokenizer_path = run_dir.join("tokenizer.json");
        if !tokenizer_path.is_file() {
            bail!(
                "{} not found: a text checkpoint needs its run's tokenizer (`selfsup pretrain` writes RUN/tokenizer.json beside RUN/checkpoints/)",
                tokenizer_path.display()
            );
        }
        let tokenizer =
            TextTokenizer::load(&tokenizer_path, config.text.max_len).map_err(text_error)?;
        let encoder_config = encoder_config(&config, tokenizer.vocab_size())?;
        let pretrained =
            load_named_tensors(encoder_config.init(&dev), &c.section("model"), "backbone.")
                .map_err(|e| {
                    anyhow::anyhow!(
                        "checkpoint {} does not fit its text encoder (and {}): {e}",
                        c.path.display(),
                        tokenizer_path.display()
                    )
                })?;
        let pooling = match pooling {
            Some(p) => p
                .parse::<Pooling>()
                .map_err(|e| anyhow::anyhow!("--pooling: {e}"))?,
            None => config.text.pooling()?,
        };
        if pooling == Pooling::Cls && encoder_config.causal {
            bail!(
                "[CLS] pooling of a causal encoder sees only the first token; use --pooling mean or last"
            );
        }
        if !data_path.is_dir() {
            bail!(
                "text data `{}`: expected a folder holding {} and {} (text.train_file, text.test_file)",
                data_path.display(),
                config.text.train_file,
                config.text.test_file
            );
        }
        let (train_texts, train_labels) =
            labelled_split(&config, &data_path.join(&config.text.train_file))?;
        let (test_texts, test_labels) =
            labelled_split(&config, &data_path.join(&config.text.test_file))?;
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
            classes,
            pooling,
            pad_id: tokenizer.special().pad,
            dev,
        })
    }

    /// The pretrained encoder, or the same architecture at random initialisation, on `dev`.
    fn encoder(&self, init: Init, dev: &Device) -> Result<TextEncoder> {
        let fresh = |seed: u64| {
            dev.seed(seed);
            self.encoder_config.init(dev)
        };
        match init {
            Init::Random { seed } => Ok(fresh(seed)),
            Init::Pretrained => load_named_tensors(fresh(0), &named_tensors(&self.pretrained), "")
                .map_err(|e| anyhow::anyhow!("copying the encoder: {e}")),
        }
    }

    fn embed(&self, encoder: &TextEncoder, seqs: &[Vec<u32>]) -> Features {
        selfsup_text::embed_all(
            encoder,
            seqs,
            self.pooling,
            self.pad_id,
            self.config.eval.batch_size,
        )
    }
}

impl Downstream for TextTask {
    fn train_labels(&self) -> &[u32] {
        &self.train_labels
    }

    fn test_labels(&self) -> &[u32] {
        &self.test_labels
    }

    fn augmentation(&self) -> String {
        format!(
            "none ({} tokens, {:?} pooling); AdamW (β 0.9, 0.98), 10 % warm-up",
            self.config.text.max_len, self.pooling
        )
    }

    fn features(&self, init: Init, train_rows: &[usize]) -> Result<(Features, Features)> {
        let encoder = self.encoder(init, &self.dev)?;
        let train: Vec<Vec<u32>> = train_rows.iter().map(|&i| self.train[i].clone()).collect();
        Ok((
            self.embed(&encoder, &train),
            self.embed(&encoder, &self.test),
        ))
    }

    fn finetune(
        &self,
        init: Init,
        subset: &[usize],
        recipe: &Recipe,
        _quiet: bool,
    ) -> Result<FullResult> {
        let ad = self.dev.clone().autodiff();
        let encoder = self.encoder(init, &ad)?;
        let train: Vec<(Vec<u32>, u32)> = subset
            .iter()
            .map(|&i| (self.train[i].clone(), self.train_labels[i]))
            .collect();
        let schedule = ClassifierSchedule {
            steps: recipe.steps_for(subset.len()),
            batch_size: recipe.batch_for(subset.len()),
            lr: recipe.lr(),
            backbone_lr_mult: match init {
                Init::Pretrained => recipe.backbone_lr_mult(),
                Init::Random { .. } => 1.0,
            },
            weight_decay: recipe.weight_decay(),
            seed: recipe.seed,
        };
        let (model, trained) = selfsup_text::finetune(
            encoder,
            &train,
            self.classes,
            self.pooling,
            self.pad_id,
            &schedule,
            &ad,
        )
        .map_err(anyhow::Error::msg)?;
        let t1 = Instant::now();
        let scores = selfsup_text::scores(
            &model.valid(),
            &self.test,
            self.pad_id,
            self.config.eval.batch_size,
        );
        let top = |k| top_k_accuracy(&scores, self.classes, &self.test_labels, k);
        Ok(FullResult {
            top1: top(1)?,
            top5: (self.classes > 5).then(|| top(5)).transpose()?,
            steps: trained.steps,
            final_loss: trained.final_loss,
            train_seconds: trained.train_seconds,
            test_seconds: t1.elapsed().as_secs_f64(),
        })
    }
}

/// Report: embeddings of up to `points` test texts (stratified by class), their labels, and
/// the class names (the label ids).
pub fn test_embeddings(
    c: &checkpoint::Checkpoint,
    config: &Config,
    data_path: &Path,
    points: usize,
) -> Result<(Features, Vec<u32>, Vec<String>)> {
    let task = TextTask::new(c, config.clone(), data_path, None)
        .with_context(|| format!("text data of checkpoint {}", c.path.display()))?;
    let n = task.test.len();
    let subset = if points < n {
        let spec = SubsetSpec::Fraction(points as f64 / n as f64);
        stratified_subset(&task.test_labels, spec, config.train.seed)?
    } else {
        (0..n).collect()
    };
    let seqs: Vec<Vec<u32>> = subset.iter().map(|&i| task.test[i].clone()).collect();
    let labels = subset.iter().map(|&i| task.test_labels[i]).collect();
    let feats = task.embed(&task.pretrained, &seqs);
    let names = (0..task.classes).map(|c| c.to_string()).collect();
    Ok((feats, labels, names))
}
