//! A modality is a plug-in: images, audio and text each implement [`Modality`] in their own
//! crate (how to open a dataset, make training batches, build the encoder, embed a split, and
//! the few-label task), and every subcommand works on any of them through this interface.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::prelude::*;
use selfsup_data::Split;

use selfsup_models::{load_named_tensors, named_tensors};

use crate::checkpoint::Checkpoint;
use crate::config::{RunConfig, Schema};
use crate::error::{Error, Result};
use crate::pretrain::{PretrainSummary, Run};
pub use crate::recipe::Init;
use crate::recipe::RecipeDefaults;

/// One kind of data selfsup learns from: its config ([`Schema`]) and what it does.
pub trait Modality: Schema {
    /// The few-label task of a checkpoint.
    type Task: DownstreamTask;
    /// How its encoders are fine-tuned when the user gives no setting.
    const RECIPE: RecipeDefaults;

    /// Opens the training data, builds the configured method and runs [`Run::train`].
    fn pretrain(run: Run<Self>) -> Result<PretrainSummary>;

    /// The labelled task of a checkpoint: its encoder and the data in `source`.
    fn open_task(source: &TaskSource<Self>) -> Result<Self::Task>;

    /// Pictures `selfsup report` adds for this run (what the model sees or reconstructs),
    /// written into `out_dir`.
    fn report_pictures(
        _source: &TaskSource<Self>,
        _task: &Self::Task,
        _out_dir: &Path,
    ) -> Result<Vec<Picture>> {
        Ok(Vec::new())
    }

    /// `selfsup export --format F`: the checkpoint's encoder for another framework, written to
    /// `out`; returns the figures to print.
    fn export(source: &TaskSource<Self>, format: &str, _out: &Path) -> Result<serde_json::Value> {
        crate::bail!(
            "checkpoint {} is {} run (`{}`): `export --format {format}` writes image encoders (ResNets) in torchvision's layout only; use `selfsup embed` for this encoder's features",
            source.checkpoint.path.display(),
            article(Self::NAME),
            source.config.method_name()
        )
    }
}

/// "an image", "an audio", "a text".
pub fn article(modality: &str) -> String {
    match modality.chars().next() {
        Some('a' | 'e' | 'i' | 'o' | 'u') => format!("an {modality}"),
        _ => format!("a {modality}"),
    }
}

/// A picture for the report: a PNG in the report folder and what it shows.
#[derive(Debug, Clone)]
pub struct Picture {
    pub file: String,
    pub title: String,
    pub caption: String,
}

/// Where a task comes from: a checkpoint, its run's config and directory, and the data.
pub struct TaskSource<M: Modality> {
    pub checkpoint: Checkpoint,
    pub config: RunConfig<M>,
    /// The run directory (the checkpoint's `../..`): tokenizers and caches live beside it.
    pub run_dir: PathBuf,
    /// The labelled data (default: the config's `data.path`).
    pub data_path: PathBuf,
    pub options: TaskOptions,
}

/// Settings of a downstream task that are not in the run's config.
#[derive(Debug, Clone, Default)]
pub struct TaskOptions {
    /// Labelled data; default: the checkpoint's `data.path`.
    pub data: Option<PathBuf>,
    /// Compute device; default: the checkpoint's `train.device`.
    pub device: Option<String>,
    /// Images: skip unreadable files (counted) instead of stopping.
    pub skip_corrupt: bool,
    /// Text: the sequence embedding (`cls`, `mean`, `last`); default: `text.pooling`.
    pub pooling: Option<String>,
    /// Allow unlabelled data (embeddings of an unlabelled folder).
    pub unlabelled: bool,
}

/// A checkpoint's encoder and labelled data, as every downstream command uses them: frozen
/// embeddings, augmented training batches and the classifier's forward pass. Rows index a
/// split in the dataset's order.
pub trait DownstreamTask: Send + Sync {
    /// The encoder module (a ResNet or ViT, the audio or text Transformer).
    type Encoder: Module + burn::module::ModuleDisplay + 'static;
    /// One batch on a device, ready for [`DownstreamTask::forward`].
    type Batch;

    /// Samples of `split`.
    fn len(&self, split: Split) -> usize;
    /// The label of every sample of `split` (`None`: unlabelled).
    fn labels(&self, split: Split) -> Vec<Option<u32>>;
    /// Class names by id.
    fn class_names(&self) -> Vec<String>;
    /// A name for each of `rows` of `split` (its file, or file and line), for embedding files.
    fn sample_names(&self, split: Split, rows: &[usize]) -> Vec<String>;
    /// How fine-tuning augments, for result files.
    fn augmentation(&self) -> String;
    /// The device the task computes on (without autodiff).
    fn device(&self) -> &Device;
    /// Width of the encoder's embedding.
    fn embed_dim(&self) -> usize;
    /// The pretrained encoder, or the same architecture at random initialisation, as a fresh
    /// module on `device` (training on an autodiff device does not touch the task's copy).
    fn encoder(&self, init: Init, device: &Device) -> Result<Self::Encoder>;
    /// Evaluation batches (no augmentation) of `rows` of `split`, in order, at most
    /// `batch_size` each.
    fn batches<'a>(
        &'a self,
        split: Split,
        rows: &'a [usize],
        batch_size: usize,
        device: &'a Device,
    ) -> Result<Box<dyn Iterator<Item = Self::Batch> + 'a>>;
    /// Augmented training batches of `batch_size` samples of the training `rows` with their
    /// labels, epoch after epoch without end (full batches only), reproducible from `seed`.
    fn train_batches<'a>(
        &'a self,
        rows: &'a [usize],
        batch_size: usize,
        seed: u64,
        device: &'a Device,
    ) -> Result<Box<dyn Iterator<Item = (Self::Batch, Vec<u32>)> + 'a>>;
    /// The encoder's embedding `[B, embed_dim]` of a batch.
    fn forward(&self, encoder: &Self::Encoder, batch: Self::Batch) -> Tensor<2>;
}

/// The encoder of `init` as a fresh module on `device` (training on an autodiff device then
/// leaves the task's copy alone): `pretrained`'s weights copied into a new `build(device)`, or
/// `build(device)` at random initialisation seeded by `seed`. The device is seeded either way
/// (0 for the copy), so whatever draws from it next draws the same numbers.
pub fn fresh_encoder<E: Module>(
    init: Init,
    device: &Device,
    pretrained: &E,
    build: impl FnOnce(&Device) -> E,
) -> Result<E> {
    device.seed(match init {
        Init::Random { seed } => seed,
        Init::Pretrained => 0,
    });
    let fresh = build(device);
    match init {
        Init::Random { .. } => Ok(fresh),
        Init::Pretrained => load_named_tensors(fresh, &named_tensors(pretrained), "")
            .map_err(|e| Error::msg(format!("copying the encoder: {e}"))),
    }
}
