//! What a pretrained encoder is worth, for any modality: a checkpoint's task opened on its
//! labelled data ([`open`]), its frozen embeddings, kNN and linear-probe accuracy, and the
//! embeddings written for users' own analysis. `--validation F` holds out a stratified
//! fraction of the training samples as the queries, for every command and modality alike.

use std::path::{Path, PathBuf};

use burn::module::Module;
use selfsup_data::Split;
use selfsup_eval::{
    Features, KnnConfig, LinearProbeConfig, SubsetSpec, knn_classify, linear_probe, select_labels,
    stratified_subset,
};
use serde::Serialize;

use crate::bail;
use crate::checkpoint::{self, Checkpoint};
use crate::config::{EvalConfig, RunConfig};
use crate::error::{Context, Result};
use crate::modality::{DownstreamTask, Init, Modality, TaskOptions, TaskSource, article};
pub use crate::recipe::check_validation_fraction;

/// The checkpoint at `path`, read and checked.
pub fn read_checkpoint(path: &Path) -> Result<Checkpoint> {
    if !path.is_file() {
        bail!(
            "checkpoint {} not found (pass a RUN_DIR/checkpoints/epoch_NNNN.safetensors written by `selfsup pretrain`)",
            path.display()
        );
    }
    checkpoint::load(path)
}

/// The run directory of a checkpoint (`RUN/checkpoints/epoch_N.safetensors` → `RUN`).
pub fn run_dir_of(checkpoint: &Path) -> PathBuf {
    checkpoint
        .parent()
        .and_then(Path::parent)
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf()
}

/// A checkpoint of modality `M` with its config and the data to evaluate it on.
pub fn source<M: Modality>(checkpoint: Checkpoint, options: TaskOptions) -> Result<TaskSource<M>> {
    let mut config = RunConfig::<M>::from_stored(
        &checkpoint.state.config,
        &format!("checkpoint {}", checkpoint.path.display()),
    )
    .with_context(|| format!("checkpoint {}: its config", checkpoint.path.display()))?;
    if let Some(d) = &options.device {
        crate::device::select(d)?;
        config.train.device = d.clone();
    }
    let data_path = options
        .data
        .clone()
        .unwrap_or_else(|| PathBuf::from(&config.data.path));
    if options.pooling.is_some() && M::NAME != "text" {
        bail!(
            "--pooling is for text checkpoints; {} is {} run (`{}`)",
            checkpoint.path.display(),
            article(M::NAME),
            config.method_name()
        );
    }
    Ok(TaskSource {
        run_dir: run_dir_of(&checkpoint.path),
        checkpoint,
        config,
        data_path,
        options,
    })
}

/// A task with the rows it is evaluated on: the training rows (all, or those left after a
/// validation hold-out) and the queries (the test split, or the held-out training rows).
pub struct Eval<T: DownstreamTask> {
    pub task: T,
    train: Vec<usize>,
    test: (Split, Vec<usize>),
    train_labels: Vec<Option<u32>>,
    test_labels: Vec<Option<u32>>,
    /// Samples per inference batch (`eval.batch_size`).
    pub batch_size: usize,
    /// The run's kNN settings (`eval.knn_k`, `eval.knn_temperature`).
    pub knn_k: usize,
    pub knn_temperature: f64,
    /// The held-out fraction of the training samples, when the queries are those.
    pub validation: Option<f64>,
}

/// A checkpoint's task, ready to evaluate.
pub struct Loaded<M: Modality> {
    pub source: TaskSource<M>,
    pub eval: Eval<M::Task>,
}

/// Opens `source`'s task; with `validation`, a stratified fraction of the training samples
/// (seeded by the run's `train.seed`) replaces the test split.
pub fn open<M: Modality>(source: TaskSource<M>, validation: Option<f64>) -> Result<Loaded<M>> {
    let task = M::open_task(&source)?;
    let c = &source.config;
    let eval = Eval::new(task, c.eval.batch_size, validation, c.train.seed)?
        .with_knn(c.eval.knn_k, c.eval.knn_temperature);
    Ok(Loaded { source, eval })
}

impl<T: DownstreamTask> Eval<T> {
    /// `task` evaluated in batches of `batch_size`; with `validation`, a stratified fraction
    /// of the training samples (seeded by `seed`) replaces the test split. kNN defaults to
    /// k = 200, T = 0.1 ([`Eval::with_knn`]).
    pub fn new(task: T, batch_size: usize, validation: Option<f64>, seed: u64) -> Result<Self> {
        let all_train = task.labels(Split::Train);
        let (train, test) = match validation {
            None => (
                (0..task.len(Split::Train)).collect(),
                (Split::Test, (0..task.len(Split::Test)).collect()),
            ),
            Some(fraction) => {
                let labels = require_labels(&all_train, "train")?;
                let (bank, held_out) = validation_rows(&labels, fraction, seed)?;
                (bank, (Split::Train, held_out))
            }
        };
        let pick = |labels: &[Option<u32>], rows: &[usize]| -> Vec<Option<u32>> {
            rows.iter().map(|&r| labels[r]).collect()
        };
        let train_labels = pick(&all_train, &train);
        let test_labels = match test.0 {
            Split::Train => pick(&all_train, &test.1),
            Split::Test => task.labels(Split::Test),
        };
        Ok(Self {
            task,
            train,
            test,
            train_labels,
            test_labels,
            batch_size,
            knn_k: 200,
            knn_temperature: 0.1,
            validation,
        })
    }

    /// kNN with `k` neighbours at `temperature`.
    pub fn with_knn(mut self, k: usize, temperature: f64) -> Self {
        self.knn_k = k;
        self.knn_temperature = temperature;
        self
    }

    /// The kNN settings of [`Eval::with_knn`].
    pub fn knn_config(&self) -> KnnConfig {
        knn_config(self.knn_k, self.knn_temperature)
    }

    /// Training samples in use.
    pub fn train_len(&self) -> usize {
        self.train.len()
    }

    /// Queries (test samples, or held-out training samples).
    pub fn test_len(&self) -> usize {
        self.test.1.len()
    }

    /// The task's training rows of `subset` (rows of this evaluation's training set).
    pub fn train_rows(&self, subset: &[usize]) -> Vec<usize> {
        subset.iter().map(|&i| self.train[i]).collect()
    }

    /// The split and rows of the queries.
    pub fn test_rows(&self) -> (Split, Vec<usize>) {
        self.test.clone()
    }

    pub fn train_labels(&self) -> Result<Vec<u32>> {
        require_labels(&self.train_labels, "train")
    }

    pub fn test_labels(&self) -> Result<Vec<u32>> {
        require_labels(&self.test_labels, self.queries())
    }

    /// Classes of the task (at least those its labels name).
    pub fn classes(&self) -> usize {
        let seen = self
            .train_labels
            .iter()
            .chain(&self.test_labels)
            .flatten()
            .max()
            .map_or(0, |&m| m as usize + 1);
        self.task.class_names().len().max(seen)
    }

    /// What the queries are, for messages.
    pub fn queries(&self) -> &'static str {
        if self.validation.is_some() {
            "held-out train (validation)"
        } else {
            "test"
        }
    }

    /// Frozen embeddings of the training rows `subset` (all when `None`) and of every query,
    /// by the pretrained or a random-init encoder.
    pub fn features(&self, init: Init, subset: Option<&[usize]>) -> Result<(Features, Features)> {
        let encoder = self.task.encoder(init, self.task.device())?;
        let rows = match subset {
            Some(s) => self.train_rows(s),
            None => self.train.clone(),
        };
        let train = features_of(&self.task, &encoder, Split::Train, &rows, self.batch_size)?;
        let (split, test_rows) = self.test_rows();
        let test = features_of(&self.task, &encoder, split, &test_rows, self.batch_size)?;
        Ok((train, test))
    }
}

/// Embeddings of `rows` of `split` by `encoder` in inference mode.
pub fn features_of<T: DownstreamTask>(
    task: &T,
    encoder: &T::Encoder,
    split: Split,
    rows: &[usize],
    batch_size: usize,
) -> Result<Features> {
    let encoder = encoder.valid();
    let dim = task.embed_dim();
    let mut data = Vec::with_capacity(rows.len() * dim);
    for batch in task.batches(split, rows, batch_size, task.device())? {
        let z = task.forward(&encoder, batch);
        data.extend(
            z.into_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .expect("f32 features"),
        );
    }
    Ok(Features::new(data, rows.len(), dim)?)
}

/// Every label, or an error naming the first unlabelled sample.
pub fn require_labels(labels: &[Option<u32>], split: &str) -> Result<Vec<u32>> {
    labels
        .iter()
        .enumerate()
        .map(|(i, l)| {
            l.with_context(|| {
                format!("{split} sample {i} has no label; evaluation needs a labelled split (images: ROOT/<split>/<class>/...)")
            })
        })
        .collect()
}

/// The train split's rows cut for validation: (the rest, a stratified, seeded `fraction` held
/// out). The one rule behind every `--validation`.
pub fn validation_rows(
    labels: &[u32],
    fraction: f64,
    seed: u64,
) -> Result<(Vec<usize>, Vec<usize>)> {
    check_validation_fraction(fraction)?;
    let held_out = stratified_subset(labels, SubsetSpec::Fraction(fraction), seed)?;
    let mut is_held_out = vec![false; labels.len()];
    for &i in &held_out {
        is_held_out[i] = true;
    }
    let rest = (0..labels.len()).filter(|&i| !is_held_out[i]).collect();
    Ok((rest, held_out))
}

/// kNN accuracy of frozen embeddings.
#[derive(Debug, Clone, Serialize)]
pub struct KnnFigures {
    pub knn_top1: f64,
    pub knn_top5: Option<f64>,
    pub k: usize,
    pub temperature: f64,
    /// Queries.
    pub images: usize,
    pub train_images: usize,
    pub random_init: bool,
    pub validation: Option<f64>,
}

fn knn_config(k: usize, temperature: f64) -> KnnConfig {
    KnnConfig {
        k,
        temperature: temperature as f32,
        ..Default::default()
    }
}

/// Weighted kNN (cosine) of the training embeddings against the queries', with `k`
/// neighbours at `temperature`.
pub fn knn<T: DownstreamTask>(
    eval: &Eval<T>,
    init: Init,
    k: usize,
    temperature: f64,
) -> Result<KnnFigures> {
    if k == 0 || !(temperature > 0.0) {
        bail!("--k must be ≥ 1 and --temperature > 0 (got k={k}, temperature={temperature})");
    }
    let (train, test) = eval.features(init, None)?;
    let config = &knn_config(k, temperature);
    let r = knn_classify(
        &train,
        &eval.train_labels()?,
        &test,
        &eval.test_labels()?,
        config,
    )?;
    for n in &r.notes {
        eprintln!("note: {n}");
    }
    Ok(KnnFigures {
        knn_top1: r.top1,
        knn_top5: r.top5,
        k: r.k,
        temperature,
        images: test.n,
        train_images: train.n,
        random_init: init != Init::Pretrained,
        validation: eval.validation,
    })
}

/// kNN top-1 of `task`'s pretrained encoder on its test split with a run's `[eval]` settings:
/// the per-epoch figure of image and audio pretraining.
pub fn epoch_knn<T: DownstreamTask>(task: T, eval: &EvalConfig, seed: u64) -> Result<f64> {
    let e = Eval::new(task, eval.batch_size, None, seed)?;
    Ok(knn(&e, Init::Pretrained, eval.knn_k, eval.knn_temperature)?.knn_top1)
}

/// A linear classifier on frozen embeddings.
#[derive(Debug, Clone, Serialize)]
pub struct LinearFigures {
    pub linear_top1: f64,
    pub linear_top5: Option<f64>,
    pub train_top1: f64,
    pub images: usize,
    pub train_images: usize,
    pub epochs: usize,
    pub random_init: bool,
    pub validation: Option<f64>,
}

/// A linear probe trained on every training embedding, tested on the queries.
pub fn linear<T: DownstreamTask>(
    eval: &Eval<T>,
    init: Init,
    config: &LinearProbeConfig,
) -> Result<LinearFigures> {
    let (train, test) = eval.features(init, None)?;
    let r = linear_probe(
        &train,
        &eval.train_labels()?,
        &test,
        &eval.test_labels()?,
        config,
    )?;
    Ok(LinearFigures {
        linear_top1: r.test_top1,
        linear_top5: r.test_top5,
        train_top1: r.train_top1,
        images: test.n,
        train_images: train.n,
        epochs: config.epochs,
        random_init: init != Init::Pretrained,
        validation: eval.validation,
    })
}

/// The labels of `rows` of `labels` (a subset of a labelled split).
pub fn labels_of(labels: &[u32], rows: &[usize]) -> Vec<u32> {
    select_labels(labels, rows)
}

/// Embeddings of a split with their labels, sample names and the class names.
pub struct Embeddings {
    pub features: Features,
    pub labels: Vec<Option<u32>>,
    pub paths: Vec<String>,
    pub class_names: Vec<String>,
}

/// `n` indices spread evenly over `0..len` (all of them when `n ≥ len`).
pub fn evenly_spaced(len: usize, n: usize) -> Vec<usize> {
    let n = n.min(len);
    (0..n).map(|i| i * len / n).collect()
}

/// Embeddings of `split` (of `limit` samples evenly spaced over it, when given).
pub fn embed<T: DownstreamTask>(
    task: &T,
    init: Init,
    split: Split,
    limit: Option<usize>,
    batch_size: usize,
) -> Result<Embeddings> {
    if limit == Some(0) {
        bail!("--limit must be at least 1");
    }
    let len = task.len(split);
    let rows = match limit {
        Some(n) => evenly_spaced(len, n),
        None => (0..len).collect(),
    };
    let encoder = task.encoder(init, task.device())?;
    let features = features_of(task, &encoder, split, &rows, batch_size)?;
    let all = task.labels(split);
    Ok(Embeddings {
        features,
        labels: rows.iter().map(|&r| all[r]).collect(),
        paths: task.sample_names(split, &rows),
        class_names: task.class_names(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The held-out rows are a per-class fraction, the rest is exactly the complement, and
    /// the cut depends on the seed only (not on anything a fine-tuning --seed changes).
    #[test]
    fn validation_rows_partition_the_split_per_class() {
        let labels: Vec<u32> = (0..60).map(|i| (i % 3) as u32).collect();
        let (rest, held) = validation_rows(&labels, 0.2, 7).unwrap();
        assert_eq!(held.len(), 12);
        for c in 0..3 {
            assert_eq!(held.iter().filter(|&&i| labels[i] == c).count(), 4);
        }
        let mut all: Vec<usize> = rest.iter().chain(&held).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..60).collect::<Vec<_>>());
        assert_eq!(validation_rows(&labels, 0.2, 7).unwrap().1, held);
        assert_ne!(validation_rows(&labels, 0.2, 8).unwrap().1, held);
        let e = validation_rows(&labels, 1.0, 7).unwrap_err().to_string();
        assert!(e.contains("--validation"), "{e}");
    }

    #[test]
    fn evenly_spaced_covers_the_split() {
        assert_eq!(evenly_spaced(10, 3), vec![0, 3, 6]);
        assert_eq!(evenly_spaced(2, 5), vec![0, 1]);
    }
}
