//! selfsup: self-supervised learning in Rust. Pretrain an encoder on unlabeled images, speech
//! or text, then show what it learned with a handful of labels.
//!
//! ```no_run
//! # fn main() -> selfsup::Result<()> {
//! // SimCLR on a folder of images, then kNN accuracy of the frozen encoder.
//! let run = selfsup::Pretrain::new("runs/demo")
//!     .method("simclr")
//!     .data("path/to/images")
//!     .set("train.epochs=10")
//!     .run()?;
//! let knn = selfsup::Evaluate::checkpoint(&run.checkpoint).knn()?;
//! println!("kNN top-1 {:.1} %", 100.0 * knn.knn_top1);
//! # Ok(())
//! # }
//! ```
//!
//! The system lives in [`selfsup_core`] (the loop, checkpoints, configs, evaluation); each
//! modality is a plug-in crate ([`selfsup_image`], [`selfsup_audio`], [`selfsup_text`]). This
//! crate lists them, picks one by method or checkpoint, and offers the builders below; the
//! `selfsup` command is a thin layer over them.

pub mod alloc;
mod quickstart;

use std::path::{Path, PathBuf};

pub use quickstart::{QuickstartOptions, QuickstartSummary, quickstart};
pub use selfsup_audio::Audio;
pub use selfsup_core::checkpoint::{self, Checkpoint};
pub use selfsup_core::downstream::{KnnFigures, LinearFigures};
pub use selfsup_core::plugin::{EmbedSummary, EvalRequest, FinetuneMode, FinetuneRequest};
pub use selfsup_core::prove::ProveOptions;
pub use selfsup_core::recipe::Recipe;
pub use selfsup_core::report::{ReportOptions, ReportSummary};
pub use selfsup_core::{
    AnyModality, Error, Plugin, PretrainSummary, RawConfig, Result, RunOptions, TaskOptions,
};
pub use selfsup_core::{bail, config::keys::closest};
pub use selfsup_data::Split;
/// Data-parallel process groups: [`dist::init`] under `mpirun`/`srun`, [`dist::world`].
pub use selfsup_dist as dist;
pub use selfsup_eval::SubsetSpec;
pub use selfsup_image::Image;
pub use selfsup_text::Text;
pub use {selfsup_audio, selfsup_core, selfsup_image, selfsup_text};

static IMAGE: Plugin<Image> = Plugin::NEW;
static AUDIO: Plugin<Audio> = Plugin::NEW;
static TEXT: Plugin<Text> = Plugin::NEW;

/// Every modality of this build.
pub fn modalities() -> [&'static dyn AnyModality; 3] {
    [&IMAGE, &AUDIO, &TEXT]
}

/// The modality whose methods include `method`.
pub fn modality_of_method(method: &str) -> Result<&'static dyn AnyModality> {
    if let Some(m) = modalities()
        .into_iter()
        .find(|m| m.methods().contains(&method))
    {
        return Ok(m);
    }
    let all: Vec<String> = modalities()
        .iter()
        .flat_map(|m| m.methods())
        .map(String::from)
        .collect();
    bail!(
        "config `method.name`: unknown method `{method}`; did you mean `{}`? Available: {}",
        closest(method, &all),
        all.join(", ")
    )
}

/// The modality of a checkpoint (by the method that wrote it).
pub fn modality_of_checkpoint(c: &Checkpoint) -> Result<&'static dyn AnyModality> {
    modality_of_method(&c.state.method).map_err(|e| {
        Error::msg(format!(
            "checkpoint {}: {e}; it was written by a selfsup with other methods",
            c.path.display()
        ))
    })
}

/// A config file (or defaults) with `--set` overrides, its modality chosen by `method.name`.
pub fn load_config(
    path: Option<&Path>,
    overrides: &[String],
) -> Result<(RawConfig, &'static dyn AnyModality)> {
    let raw = RawConfig::load(path)?.with_overrides(overrides)?;
    let modality = modality_of_method(&raw.method_name()?)?;
    Ok((raw, modality))
}

/// A pretraining run, built up from defaults: a method or a config file, the data, any
/// `key=value` override, and the run directory.
#[derive(Debug, Clone)]
pub struct Pretrain {
    config: Option<PathBuf>,
    overrides: Vec<String>,
    options: RunOptions,
}

impl Pretrain {
    /// A run into `out` with the default config (SimCLR, ResNet-18, CIFAR recipe).
    pub fn new(out: impl Into<PathBuf>) -> Self {
        Self {
            config: None,
            overrides: Vec::new(),
            options: RunOptions::new(out),
        }
    }

    /// Start from a TOML config file (see configs/); later settings override it.
    pub fn config(mut self, path: impl Into<PathBuf>) -> Self {
        self.config = Some(path.into());
        self
    }

    /// `method.name` (simclr, moco, …, masked_frames, cpc, audio_simclr, mlm, causal_lm, electra).
    pub fn method(self, name: &str) -> Self {
        self.set(&format!("method.name=\"{name}\""))
    }

    /// `data.path`: the dataset.
    pub fn data(self, path: impl AsRef<Path>) -> Self {
        self.set(&format!("data.path=\"{}\"", path.as_ref().display()))
    }

    /// Any config value, `key=value` (`train.epochs=10`, `model.stem=imagenet`).
    pub fn set(mut self, assignment: &str) -> Self {
        self.overrides.push(assignment.to_string());
        self
    }

    /// Continue the run in the run directory from its newest good checkpoint.
    pub fn resume(mut self, resume: bool) -> Self {
        self.options.resume = resume;
        self
    }

    /// No progress bar.
    pub fn quiet(mut self, quiet: bool) -> Self {
        self.options.quiet = quiet;
        self
    }

    /// Stop after `epochs` epochs of this invocation (checkpointed; resume continues).
    pub fn stop_after(mut self, epochs: Option<usize>) -> Self {
        self.options.stop_after = epochs;
        self
    }

    /// Where relative paths of the config are resolved (default: the current directory).
    pub fn base_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.options.base_dir = dir.into();
        self
    }

    /// Runs it: every setting is checked before any work.
    pub fn run(self) -> Result<PretrainSummary> {
        let raw = RawConfig::load(self.config.as_deref())?.with_overrides(&self.overrides)?;
        let modality = match (self.options.resume, self.config.is_none()) {
            // `--resume` without a config: the run's own checkpoint says what it is.
            (true, true) => match checkpoint::latest_good(&self.options.out)? {
                Some(c) => modality_of_checkpoint(&c)?,
                None => modality_of_method(&raw.method_name()?)?,
            },
            _ => modality_of_method(&raw.method_name()?)?,
        };
        modality.pretrain(&raw, self.options)
    }
}

/// `Pretrain::new(out).data(data).method(method).run()`: one call for the common case.
pub fn pretrain(
    out: impl Into<PathBuf>,
    data: impl AsRef<Path>,
    method: &str,
) -> Result<PretrainSummary> {
    Pretrain::new(out).data(data).method(method).run()
}

/// What a checkpoint's encoder is worth: kNN, linear probe, embeddings, few-label
/// fine-tuning, `prove`, export, for any modality.
#[derive(Debug, Clone)]
pub struct Evaluate {
    checkpoint: PathBuf,
    request: EvalRequest,
}

impl Evaluate {
    /// The checkpoint at `path` (RUN/checkpoints/epoch_NNNN.safetensors), on its own data.
    pub fn checkpoint(path: impl Into<PathBuf>) -> Self {
        Self {
            checkpoint: path.into(),
            request: EvalRequest {
                task: TaskOptions::default(),
                validation: None,
                random_init: false,
            },
        }
    }

    /// Labelled data other than the checkpoint's `data.path`.
    pub fn data(mut self, path: impl Into<PathBuf>) -> Self {
        self.request.task.data = Some(path.into());
        self
    }

    /// Compute device other than the checkpoint's `train.device`.
    pub fn device(mut self, name: &str) -> Self {
        self.request.task.device = Some(name.to_string());
        self
    }

    /// Hold out this stratified fraction of the training samples as the queries.
    pub fn validation(mut self, fraction: Option<f64>) -> Self {
        self.request.validation = fraction;
        self
    }

    /// The same architecture at random initialisation instead of the checkpoint's weights.
    pub fn random_init(mut self, random: bool) -> Self {
        self.request.random_init = random;
        self
    }

    /// Skip unreadable images (counted) instead of stopping.
    pub fn skip_corrupt(mut self, skip: bool) -> Self {
        self.request.task.skip_corrupt = skip;
        self
    }

    /// Text: the sequence embedding (`cls`, `mean`, `last`).
    pub fn pooling(mut self, pooling: Option<String>) -> Self {
        self.request.task.pooling = pooling;
        self
    }

    fn open(&self) -> Result<(Checkpoint, &'static dyn AnyModality)> {
        let c = selfsup_core::downstream::read_checkpoint(&self.checkpoint)?;
        let m = modality_of_checkpoint(&c)?;
        Ok((c, m))
    }

    /// Weighted kNN with the checkpoint's `eval.knn_k` and `eval.knn_temperature`.
    pub fn knn(&self) -> Result<KnnFigures> {
        self.knn_with(None, None)
    }

    /// Weighted kNN with `k` and `temperature` when given.
    pub fn knn_with(&self, k: Option<usize>, temperature: Option<f64>) -> Result<KnnFigures> {
        let (c, m) = self.open()?;
        m.knn(c, &self.request, k, temperature)
    }

    /// A linear classifier on frozen embeddings of every training sample.
    pub fn linear(&self, epochs: usize, lr: f32) -> Result<LinearFigures> {
        let (c, m) = self.open()?;
        m.linear(c, &self.request, epochs, lr)
    }

    /// Embeddings of `split` (of `limit` evenly spaced samples) written to `out`
    /// (.safetensors, or .npy with .labels.npy and .paths.txt).
    pub fn embed(&self, split: Split, limit: Option<usize>, out: &Path) -> Result<EmbedSummary> {
        let (c, m) = self.open()?;
        m.embed(c, &self.request, split, limit, out)
    }

    /// A classifier on a label subset, tested on the queries; the figures as JSON.
    pub fn finetune(&self, request: &FinetuneRequest) -> Result<serde_json::Value> {
        request.recipe.validate()?;
        let (c, m) = self.open()?;
        let recipe = Recipe {
            validation: self.request.validation.or(request.recipe.validation),
            ..request.recipe.clone()
        };
        m.finetune(
            c,
            &self.request.task,
            &FinetuneRequest {
                recipe,
                ..request.clone()
            },
        )
    }

    /// Pretrained against scratch at each label subset and seed; prove.json's contents.
    pub fn prove(&self, mut options: ProveOptions) -> Result<serde_json::Value> {
        options.subsets()?;
        let (c, m) = self.open()?;
        options.recipe.validation = self.request.validation.or(options.recipe.validation);
        m.prove(c, &self.request.task, options)
    }

    /// The encoder for another framework (`torchvision`: ResNets in torchvision's layout).
    pub fn export(&self, format: &str, out: &Path) -> Result<serde_json::Value> {
        let (c, m) = self.open()?;
        m.export(c, format, out)
    }
}

/// `RUN_DIR/report/report.html`: plots from metrics.jsonl, the prove tables, and with a
/// checkpoint (default: the run's newest) a t-SNE map of its test embeddings and the
/// modality's pictures.
pub fn report(
    options: &ReportOptions,
    checkpoint: Option<&Path>,
    task: &TaskOptions,
) -> Result<ReportSummary> {
    let path = match checkpoint {
        Some(p) => Some(p.to_path_buf()),
        None => checkpoint::list(&options.run_dir)
            .into_iter()
            .next()
            .map(|(_, p)| p),
    };
    let checkpoint = path
        .as_deref()
        .map(selfsup_core::downstream::read_checkpoint)
        .transpose()?;
    let modality = match &checkpoint {
        Some(c) => modality_of_checkpoint(c)?,
        None => match selfsup_core::report::run_method(&options.run_dir) {
            Some(method) => modality_of_method(&method)?,
            None => &IMAGE,
        },
    };
    modality.report(options, checkpoint, task)
}
