//! The few-label task behind `selfsup finetune` and `selfsup prove`, whatever the modality: its
//! labels, frozen features of the pretrained (or a random-init) encoder, and full fine-tuning.
//! Images implement it here; audio in `audio.rs`, text in `text.rs`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use selfsup_data::{ImageDataset, Split};
use selfsup_eval::Features;
use selfsup_models::Backbone;

use crate::audio::AudioTask;
use crate::checkpoint;
use crate::config::Config;
pub use crate::finetune::FullResult;
use crate::finetune::{Recipe, RecipeDefaults, split_labels, train_full};
use crate::text::TextTask;
use crate::{data, device, encoder, features};

/// Which encoder a figure is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Init {
    /// The checkpoint's.
    Pretrained,
    /// The same architecture at random initialisation (the from-scratch baseline).
    Random { seed: u64 },
}

pub trait Downstream {
    fn train_labels(&self) -> &[u32];
    fn test_labels(&self) -> &[u32];
    /// How full fine-tuning augments and optimises, for result files.
    fn augmentation(&self) -> String;
    /// Frozen features of the training samples `train_rows` (in that order) and of the whole
    /// test split.
    fn features(&self, init: Init, train_rows: &[usize]) -> Result<(Features, Features)>;
    /// Encoder + linear head trained on `subset` of the training split, tested on all of the
    /// test split. A pretrained encoder learns at `lr × backbone_lr_mult`, a random one at `lr`.
    fn finetune(
        &self,
        init: Init,
        subset: &[usize],
        recipe: &Recipe,
        quiet: bool,
    ) -> Result<FullResult>;
}

/// A checkpoint's task, ready to run.
pub struct LoadedTask {
    pub task: Box<dyn Downstream>,
    pub config: Config,
    pub defaults: RecipeDefaults,
    pub data_path: PathBuf,
    /// `image`, `audio` or `text`.
    pub modality: &'static str,
}

/// The task of `checkpoint` (dispatch on its config's method): its data (default: the
/// config's `data.path`) opened and labelled. `device` overrides `train.device`; the
/// recipe's `pooling` (text only) overrides `text.pooling`, its `validation` (images only)
/// replaces the test split by held-out training images.
pub fn load_task(
    checkpoint: &Path,
    data: Option<&Path>,
    device: Option<&str>,
    skip_corrupt: bool,
    recipe: &Recipe,
) -> Result<LoadedTask> {
    let pooling = recipe.pooling.as_deref();
    if !checkpoint.is_file() {
        bail!(
            "checkpoint {} not found (pass a RUN_DIR/checkpoints/epoch_NNNN.safetensors written by `selfsup pretrain`)",
            checkpoint.display()
        );
    }
    let c = checkpoint::load(checkpoint)?;
    let mut config: Config = toml::from_str(&c.state.config)
        .with_context(|| format!("checkpoint {}: its config", checkpoint.display()))?;
    if let Some(d) = device {
        config.train.device = d.to_string();
    }
    let data_path = data
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(&config.data.path));
    if pooling.is_some() && !config.is_text() {
        bail!(
            "--pooling is for text checkpoints; {} is a `{}` run",
            checkpoint.display(),
            config.method.name
        );
    }
    if recipe.validation.is_some() && (config.is_text() || config.is_audio()) {
        bail!(
            "--validation is implemented for image checkpoints; {} is a `{}` run",
            checkpoint.display(),
            config.method.name
        );
    }
    if config.is_text() {
        let task = TextTask::new(&c, config.clone(), &data_path, pooling)?;
        return Ok(LoadedTask {
            task: Box::new(task),
            config,
            defaults: RecipeDefaults::TEXT,
            data_path,
            modality: "text",
        });
    }
    if config.is_audio() {
        let task = AudioTask::new(&c, config.clone(), &data_path)?;
        return Ok(LoadedTask {
            task: Box::new(task),
            config,
            defaults: RecipeDefaults::AUDIO,
            data_path,
            modality: "audio",
        });
    }
    drop(c);
    let (config, pretrained) = encoder::load_backbone(checkpoint, device)?;
    let run_dir = checkpoint.parent().and_then(Path::parent);
    let cache = data::cache_dir(&config, run_dir);
    let train = data::open(&data_path, Split::Train, &cache, skip_corrupt)?;
    let (train, test) = match recipe.validation {
        None => (
            train,
            data::open(&data_path, Split::Test, &cache, skip_corrupt)?,
        ),
        Some(fraction) => {
            let labels = split_labels(&train, "train")?;
            let (bank, held_out) = features::validation_rows(&labels, fraction, config.train.seed)?;
            (
                Arc::new(train.select(&bank)),
                Arc::new(train.select(&held_out)),
            )
        }
    };
    let task = ImageTask {
        train_labels: split_labels(&train, "train")?,
        test_labels: split_labels(&test, "test")?,
        dev: device::select(&config.train.device)?,
        config: config.clone(),
        pretrained,
        train,
        test,
    };
    Ok(LoadedTask {
        task: Box::new(task),
        config,
        defaults: RecipeDefaults::IMAGE,
        data_path,
        modality: "image",
    })
}

struct ImageTask {
    config: Config,
    pretrained: Backbone,
    train: Arc<ImageDataset>,
    test: Arc<ImageDataset>,
    train_labels: Vec<u32>,
    test_labels: Vec<u32>,
    dev: burn::prelude::Device,
}

impl ImageTask {
    fn with_backbone<T>(&self, init: Init, f: impl FnOnce(&Backbone) -> Result<T>) -> Result<T> {
        match init {
            Init::Pretrained => f(&self.pretrained),
            Init::Random { seed } => {
                let mut config = self.config.clone();
                config.train.seed = seed;
                f(&encoder::random_init_backbone(&config)?)
            }
        }
    }
}

impl Downstream for ImageTask {
    fn train_labels(&self) -> &[u32] {
        &self.train_labels
    }

    fn test_labels(&self) -> &[u32] {
        &self.test_labels
    }

    fn augmentation(&self) -> String {
        "RandomCrop(input_size, padding=4) + HorizontalFlip; SGD momentum 0.9".into()
    }

    fn features(&self, init: Init, train_rows: &[usize]) -> Result<(Features, Features)> {
        let (b, w) = (self.config.eval.batch_size, self.config.data.workers);
        let pipe = data::eval_pipeline(&self.config)?;
        self.with_backbone(init, |backbone| {
            let (train, _) = features::extract(
                backbone,
                self.train.clone(),
                Some(train_rows.to_vec()),
                pipe.clone(),
                b,
                w,
                &self.dev,
            )?;
            let (test, _) =
                features::extract_all(backbone, self.test.clone(), pipe.clone(), b, w, &self.dev)?;
            Ok((train, test))
        })
    }

    fn finetune(
        &self,
        init: Init,
        subset: &[usize],
        recipe: &Recipe,
        quiet: bool,
    ) -> Result<FullResult> {
        self.with_backbone(init, |backbone| {
            train_full(
                &self.config,
                backbone,
                init == Init::Pretrained,
                self.train.clone(),
                subset,
                self.test.clone(),
                recipe,
                quiet,
            )
        })
    }
}
