//! `selfsup finetune`: train a classifier on a small labelled subset, on top of a checkpoint's
//! encoder (or the same architecture from scratch), and test it on the whole test split.
//!
//! Two modes:
//! - `linear`: a linear classifier on frozen backbone features (selfsup-eval's linear probe);
//! - `full`: the backbone plus a linear head trained end to end with SGD, a cosine schedule,
//!   crop-with-padding + flip augmentation, and a lower learning rate for a pretrained backbone.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::{Linear, LinearConfig};
use burn::optim::GradientsParams;
use burn::prelude::*;
use clap::{Args, ValueEnum};
use selfsup_data::{ImageDataset, LoaderConfig, Pipeline, ViewLoader};
use selfsup_eval::{
    Features, LinearProbeConfig, LinearProbeResult, SubsetSpec, linear_probe, stratified_subset,
    top_k_accuracy,
};
use selfsup_methods::optim::{OptimizerConfig, cosine_with_warmup};
use selfsup_models::{Backbone, load_named_tensors, named_tensors};
use serde_json::json;

use crate::config::Config;
use crate::downstream::{self, Init};
use crate::{data, device};

/// Labelled-sample presentations of the default budget: 40 epochs of 500 labels, 4 epochs of
/// 5,000 (the reference run's 280 and 312 steps at batch 64).
pub const DEFAULT_SAMPLES_SEEN: f64 = 20_000.0;
/// Padding of the `RandomCrop(input_size, padding)` training augmentation.
const CROP_PADDING: usize = 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Linear classifier on frozen backbone features.
    Linear,
    /// Backbone and linear head trained together.
    Full,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Linear => "linear",
            Mode::Full => "full",
        }
    }
}

/// A modality's defaults for the flags a user leaves out.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RecipeDefaults {
    pub batch_size: usize,
    pub lr: f64,
    pub backbone_lr_mult: f64,
    pub weight_decay: f64,
    /// Labelled-sample presentations of budget 1 (see `--steps`).
    pub samples_seen: f64,
}

impl RecipeDefaults {
    /// SGD (momentum 0.9) on images.
    pub const IMAGE: Self = Self {
        batch_size: 64,
        lr: 0.05,
        backbone_lr_mult: 0.5,
        weight_decay: 5e-4,
        samples_seen: DEFAULT_SAMPLES_SEEN,
    };
    /// AdamW on audio (the selfsup-audio FSDD recipe: 150 steps at 50 labels).
    pub const AUDIO: Self = Self {
        batch_size: 32,
        lr: 5e-4,
        backbone_lr_mult: 1.0,
        weight_decay: 0.01,
        samples_seen: 7_500.0,
    };
    /// AdamW on text: 280 steps at 250 labels (IMDB 1 %), 312 at 2,500.
    pub const TEXT: Self = Self {
        batch_size: 32,
        lr: 1e-4,
        backbone_lr_mult: 1.0,
        weight_decay: 0.01,
        samples_seen: 10_000.0,
    };
}

/// Training settings shared by `finetune` and `prove`.
#[derive(Args, Clone, Debug)]
pub struct Recipe {
    /// Labelled samples per batch (full mode and the linear probe). Default: 64 for images,
    /// 32 for audio and text.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Peak learning rate of the head (full mode; cosine decay to 0). Default: 0.05 (SGD, no
    /// warm-up) for images, 5e-4 (AdamW, 10 % warm-up) for audio, 1e-4 (AdamW, 10 % warm-up)
    /// for text.
    #[arg(long, allow_negative_numbers = true)]
    pub lr: Option<f64>,
    /// Backbone learning rate = lr × this, for a pretrained backbone (full mode): the new,
    /// randomly initialised head learns at the full rate while the pretrained features adapt
    /// more slowly. From scratch the backbone always gets the full lr (this flag is ignored),
    /// so the baseline is not handicapped. Default: 0.5 for images, 1 for audio and text.
    #[arg(long, allow_negative_numbers = true)]
    pub backbone_lr_mult: Option<f64>,
    /// Weight decay (full mode). Default: 5e-4 (SGD) for images, 0.01 (AdamW) for audio and
    /// text.
    #[arg(long, allow_negative_numbers = true)]
    pub weight_decay: Option<f64>,
    /// Optimizer steps of full mode, exactly (--budget is then ignored). Default: whole epochs
    /// over the labelled subset, max(1, round(S / labels)) of them with floor(labels / batch)
    /// batches each (drop_last), times --budget; S = 20000 for images (280 steps at 500
    /// labels, 312 at 5,000), 7500 for audio (150 steps at 50 labels), 10000 for text (280
    /// steps at 250 labels).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Multiplier of the default number of steps (`--budget 3`: 840 at 500 labels).
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    pub budget: f64,
    /// Epochs of the linear probe on frozen features (Adam, lr 1e-3, standardised features).
    #[arg(long, default_value_t = 100)]
    pub linear_epochs: usize,
    /// Seeds the label subset, the head, the random init (--from-scratch), order and augmentation.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Text checkpoints: the sequence embedding, `cls` ([CLS] output), `mean` (mean over the
    /// tokens) or `last` (the last token's output). Default: the checkpoint's text.pooling.
    #[arg(long)]
    pub pooling: Option<String>,
    /// LP-FT (Kumar et al. 2022), images and audio, full mode: start the head from a linear
    /// probe (--linear-epochs, Adam lr 1e-3, unnormalised features) on the frozen encoder's
    /// embeddings of the labelled samples instead of at random, then fine-tune as usual.
    /// Applies alike to a pretrained encoder and to --from-scratch (the scratch head is probed
    /// on random features).
    #[arg(long)]
    pub lp_ft: bool,
    /// Images: score on a stratified fraction of the *training* images held out (chosen by the
    /// checkpoint's train.seed, the same for every --seed, as `eval knn --validation`) instead
    /// of the test split; label subsets are drawn from the other training images. For choosing
    /// a recipe without looking at the test split (e.g. 0.1: 5,000 CIFAR-10 images).
    #[arg(long, allow_negative_numbers = true)]
    pub validation: Option<f64>,
    /// Filled in from the checkpoint's modality.
    #[arg(skip = RecipeDefaults::IMAGE)]
    pub defaults: RecipeDefaults,
}

impl Recipe {
    /// Errors name the flag; checked before any work.
    pub fn validate(&self) -> Result<()> {
        if self.batch_size == Some(0) {
            bail!("--batch-size must be ≥ 1");
        }
        if let Some(lr) = self.lr.filter(|lr| !(*lr > 0.0 && lr.is_finite())) {
            bail!("--lr must be a finite number > 0, got {lr}");
        }
        if let Some(m) = self
            .backbone_lr_mult
            .filter(|m| !(*m >= 0.0 && m.is_finite()))
        {
            bail!("--backbone-lr-mult must be a finite number ≥ 0, got {m}");
        }
        if let Some(wd) = self.weight_decay.filter(|w| !(*w >= 0.0 && w.is_finite())) {
            bail!("--weight-decay must be ≥ 0, got {wd}");
        }
        if self.steps == Some(0) {
            bail!("--steps must be ≥ 1");
        }
        if !(self.budget > 0.0 && self.budget.is_finite()) {
            bail!("--budget must be a number > 0, got {}", self.budget);
        }
        if self.linear_epochs == 0 {
            bail!("--linear-epochs must be ≥ 1");
        }
        if let Some(f) = self.validation {
            crate::features::check_validation_fraction(f)?;
        }
        Ok(())
    }

    /// This recipe with a modality's defaults; refuses flags the modality does not implement.
    pub fn for_modality(&self, defaults: RecipeDefaults, modality: &str) -> Result<Recipe> {
        if self.lp_ft && modality == "text" {
            bail!(
                "--lp-ft is implemented for image and audio checkpoints; this checkpoint is {modality}"
            );
        }
        Ok(Recipe {
            defaults,
            ..self.clone()
        })
    }

    pub fn batch_size(&self) -> usize {
        self.batch_size.unwrap_or(self.defaults.batch_size)
    }

    pub fn lr(&self) -> f64 {
        self.lr.unwrap_or(self.defaults.lr)
    }

    pub fn backbone_lr_mult(&self) -> f64 {
        self.backbone_lr_mult
            .unwrap_or(self.defaults.backbone_lr_mult)
    }

    pub fn weight_decay(&self) -> f64 {
        self.weight_decay.unwrap_or(self.defaults.weight_decay)
    }

    /// The batch size used for `labels` samples: smaller subsets train on all of them at once.
    pub fn batch_for(&self, labels: usize) -> usize {
        self.batch_size().min(labels)
    }

    /// Steps of full mode for `labels` labelled samples (see `--steps`).
    pub fn steps_for(&self, labels: usize) -> usize {
        if let Some(s) = self.steps {
            return s;
        }
        let batches = labels / self.batch_for(labels);
        let epochs = (self.defaults.samples_seen / labels as f64)
            .round()
            .max(1.0);
        ((epochs * batches as f64 * self.budget).round() as usize).max(1)
    }

    /// The settings as used, for result files.
    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "lr": self.lr(), "backbone_lr_mult": self.backbone_lr_mult(),
            "weight_decay": self.weight_decay(), "batch_size": self.batch_size(),
            "linear_epochs": self.linear_epochs, "steps": self.steps, "budget": self.budget,
            "lp_ft": self.lp_ft, "validation": self.validation,
        })
    }

    pub fn linear_probe_config(&self) -> LinearProbeConfig {
        LinearProbeConfig {
            epochs: self.linear_epochs,
            batch_size: Some(self.batch_size()),
            seed: self.seed,
            ..Default::default()
        }
    }
}

/// Validates `--label-fraction` / `--labels-per-class` (exactly one is given).
pub fn subset_spec(fraction: Option<f64>, per_class: Option<usize>) -> Result<SubsetSpec> {
    match (fraction, per_class) {
        (Some(f), None) if f > 0.0 && f <= 1.0 => Ok(SubsetSpec::Fraction(f)),
        (Some(f), None) => bail!("--label-fraction must be in (0, 1], got {f}"),
        (None, Some(0)) => bail!("--labels-per-class must be ≥ 1"),
        (None, Some(n)) => Ok(SubsetSpec::PerClass(n)),
        _ => bail!("give exactly one of --label-fraction F or --labels-per-class N"),
    }
}

/// Every label of a split; fine-tuning needs them all.
pub fn split_labels(dataset: &ImageDataset, what: &str) -> Result<Vec<u32>> {
    (0..dataset.len())
        .map(|i| {
            dataset.label(i).with_context(|| {
                format!(
                    "{what} image {} has no label; fine-tuning needs a labelled split (ROOT/<split>/<class>/...)",
                    dataset.path(i).display()
                )
            })
        })
        .collect()
}

/// The labelled subset (ascending dataset indices) for a spec and seed.
pub fn label_subset(labels: &[u32], spec: SubsetSpec, seed: u64) -> Result<Vec<usize>> {
    Ok(stratified_subset(labels, spec, seed)?)
}

/// A backbone and a linear classification head.
#[derive(Module, Debug)]
pub struct Classifier {
    pub backbone: Backbone,
    pub head: Linear,
}

/// Figures of one training run of full mode.
#[derive(Clone, Debug)]
pub struct FullResult {
    pub top1: f64,
    /// Only with more than 5 classes.
    pub top5: Option<f64>,
    pub steps: usize,
    /// Mean training loss over the last 10% of the steps.
    pub final_loss: f64,
    pub train_seconds: f64,
    pub test_seconds: f64,
}

/// `backbone`'s weights in a fresh, trainable (autodiff) copy on `device`.
fn trainable_copy(config: &Config, backbone: &Backbone, device: &Device) -> Result<Backbone> {
    let fresh = config.backbone_config()?.init(device);
    load_named_tensors(fresh, &named_tensors(backbone), "")
        .map_err(|e| anyhow::anyhow!("copying the backbone for training: {e}"))
}

/// Trains `backbone` + a linear head on `train[subset]` and tests on all of `test`.
/// `pretrained` selects the backbone lr multiplier (scratch trains at the full lr).
#[allow(clippy::too_many_arguments)]
pub fn train_full(
    config: &Config,
    backbone: &Backbone,
    pretrained: bool,
    train: Arc<ImageDataset>,
    subset: &[usize],
    test: Arc<ImageDataset>,
    recipe: &Recipe,
    quiet: bool,
) -> Result<FullResult> {
    let dev = device::select(&config.train.device)?;
    let ad = dev.clone().autodiff();
    let num_classes = train.class_names().len().max(test.class_names().len());
    if num_classes < 2 {
        bail!("fine-tuning needs at least 2 classes, the dataset has {num_classes}");
    }
    ad.seed(recipe.seed);
    let head = if recipe.lp_ft {
        // LP-FT applies to both arms alike: a scratch encoder's head is probed on its random
        // features just as a pretrained one's.
        probed_head(
            config,
            backbone,
            &train,
            subset,
            num_classes,
            recipe,
            &dev,
            &ad,
        )?
    } else {
        LinearConfig::new(backbone.out_dim(), num_classes).init(&ad)
    };
    let mut model = Classifier {
        backbone: trainable_copy(config, backbone, &ad)?,
        head,
    };
    let batch_size = recipe.batch_for(subset.len());
    let total_steps = recipe.steps_for(subset.len());
    let pipe = Pipeline::crop_flip(
        config.data.input_size,
        CROP_PADDING,
        data::normalization(config),
    )?
    .with_input(data::encoder_input(config));
    let loader = ViewLoader::new(
        train,
        vec![pipe],
        LoaderConfig {
            batch_size,
            shuffle: true,
            drop_last: true,
            seed: recipe.seed,
            num_workers: config.data.workers,
            prefetch: 4,
            subset: Some(subset.to_vec()),
        },
    )?;
    let mut optim = OptimizerConfig::sgd_momentum(recipe.weight_decay(), false)
        .init()
        .map_err(|e| anyhow::anyhow!("fine-tuning optimizer: {e}"))?;
    let backbone_mult = if pretrained {
        recipe.backbone_lr_mult()
    } else {
        1.0
    };
    let ce = CrossEntropyLossConfig::new().init(&ad);

    let t0 = Instant::now();
    let mut step = 0;
    let mut losses = Vec::with_capacity(total_steps);
    'epochs: for epoch in 0.. {
        for batch in loader.epoch(epoch) {
            let lr = cosine_with_warmup(step, total_steps, 0, recipe.lr(), 0.0);
            let shape = batch.view_shapes[0];
            let x = Tensor::<4>::from_data(
                TensorData::new(batch.views.into_iter().next().unwrap(), shape),
                &ad,
            );
            let y: Vec<i64> = batch
                .labels
                .iter()
                .map(|l| l.expect("subset images are labelled") as i64)
                .collect();
            let y = Tensor::<1, Int>::from_data(TensorData::new(y, [shape[0]]), &ad);
            let logits = model.head.forward(model.backbone.forward(x));
            let loss = ce.forward(logits, y);
            let loss_value = loss.clone().into_scalar::<f32>() as f64;
            if !loss_value.is_finite() {
                bail!(
                    "fine-tuning loss is {loss_value} at step {} (lr {lr:.3e}); lower --lr",
                    step + 1
                );
            }
            let mut grads = loss.backward();
            let g_backbone = GradientsParams::from_module(&mut grads, &model.backbone);
            let g_head = GradientsParams::from_module(&mut grads, &model.head);
            model.backbone = optim.step(lr * backbone_mult, model.backbone, g_backbone);
            model.head = optim.step(lr, model.head, g_head);
            losses.push(loss_value);
            step += 1;
            if !quiet && (step % 50 == 0 || step == total_steps) {
                eprintln!(
                    "  step {step}/{total_steps} loss {loss_value:.4} lr {lr:.4} ({:.0} s)",
                    t0.elapsed().as_secs_f64()
                );
            }
            if step == total_steps {
                break 'epochs;
            }
        }
        if step == 0 {
            bail!("the labelled subset yields no batch (batch size {batch_size})");
        }
    }
    let train_seconds = t0.elapsed().as_secs_f64();
    let tail = &losses[losses.len() - losses.len().div_ceil(10)..];
    let final_loss = tail.iter().sum::<f64>() / tail.len() as f64;

    let t1 = Instant::now();
    let (top1, top5) = test_classifier(config, &model, test, &dev)?;
    Ok(FullResult {
        top1,
        top5,
        steps: step,
        final_loss,
        train_seconds,
        test_seconds: t1.elapsed().as_secs_f64(),
    })
}

/// LP-FT's starting head (on `ad`): a linear probe (`recipe.linear_probe_config()`) on the
/// frozen `backbone`'s features of `train[subset]` (eval view, no augmentation).
#[allow(clippy::too_many_arguments)]
fn probed_head(
    config: &Config,
    backbone: &Backbone,
    train: &Arc<ImageDataset>,
    subset: &[usize],
    num_classes: usize,
    recipe: &Recipe,
    dev: &Device,
    ad: &Device,
) -> Result<Linear> {
    let (features, labels) = crate::features::extract(
        backbone,
        train.clone(),
        Some(subset.to_vec()),
        data::eval_pipeline(config)?,
        config.eval.batch_size,
        config.data.workers,
        dev,
    )?;
    let labels: Vec<u32> = labels
        .into_iter()
        .map(|l| l.expect("subset images are labelled"))
        .collect();
    selfsup_eval::probed_linear_head(
        &features,
        &labels,
        num_classes,
        &recipe.linear_probe_config(),
        ad,
    )
    .context("LP-FT linear probe")
}

/// Top-1 and (with more than 5 classes) top-5 accuracy on the whole split, BatchNorm in
/// inference mode (running statistics).
fn test_classifier(
    config: &Config,
    model: &Classifier,
    test: Arc<ImageDataset>,
    dev: &Device,
) -> Result<(f64, Option<f64>)> {
    let labels = split_labels(&test, "test")?;
    let model = model.valid();
    let num_classes = model.head.weight.dims()[1];
    let loader = ViewLoader::eval(
        test,
        data::eval_pipeline(config)?,
        config.eval.batch_size,
        config.data.workers,
    )?;
    let mut scores = Vec::with_capacity(labels.len() * num_classes);
    for batch in loader.epoch(0) {
        let shape = batch.view_shapes[0];
        let x = Tensor::<4>::from_data(
            TensorData::new(batch.views.into_iter().next().unwrap(), shape),
            dev,
        );
        let logits = model.head.forward(model.backbone.forward(x));
        scores.extend(logits.into_data().try_to_vec::<f32>().expect("f32 logits"));
    }
    let top1 = top_k_accuracy(&scores, num_classes, &labels, 1)?;
    let top5 = (num_classes > 5)
        .then(|| top_k_accuracy(&scores, num_classes, &labels, 5))
        .transpose()?;
    Ok((top1, top5))
}

/// Linear probe on frozen features of the labelled subset, tested on the whole test split.
pub fn train_linear(
    train: &Features,
    train_labels: &[u32],
    test: &Features,
    test_labels: &[u32],
    recipe: &Recipe,
) -> Result<LinearProbeResult> {
    Ok(linear_probe(
        train,
        train_labels,
        test,
        test_labels,
        &recipe.linear_probe_config(),
    )?)
}

#[derive(Args)]
pub struct FinetuneArgs {
    /// A checkpoint written by `selfsup pretrain` (its backbone and data settings are used).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Labelled dataset with train and test splits; default: the checkpoint's data.path.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Fraction of each class's training labels to use, in (0, 1] (e.g. 0.01, 0.1, 1).
    #[arg(
        long,
        conflicts_with = "labels_per_class",
        allow_negative_numbers = true
    )]
    pub label_fraction: Option<f64>,
    /// Training labels per class (instead of --label-fraction).
    #[arg(long)]
    pub labels_per_class: Option<usize>,
    /// `linear`: linear classifier on frozen features; `full`: fine-tune backbone and head.
    #[arg(long, value_enum, default_value = "full")]
    pub mode: Mode,
    /// Train the same architecture from random initialisation (seeded by --seed) with the same
    /// recipe and budget; the backbone then gets the full --lr (no --backbone-lr-mult).
    #[arg(long)]
    pub from_scratch: bool,
    #[command(flatten)]
    pub recipe: Recipe,
    /// Compute device (default: the checkpoint's train.device): cpu, vulkan, libtorch.
    #[arg(long)]
    pub device: Option<String>,
    #[arg(long)]
    pub skip_corrupt: bool,
    /// No per-step progress on stderr.
    #[arg(long)]
    pub quiet: bool,
}

pub fn run(args: FinetuneArgs) -> Result<serde_json::Value> {
    let spec = subset_spec(args.label_fraction, args.labels_per_class)?;
    args.recipe.validate()?;
    let task = downstream::load_task(
        &args.checkpoint,
        args.data.as_deref(),
        args.device.as_deref(),
        args.skip_corrupt,
        &args.recipe,
    )?;
    let recipe = &args.recipe.for_modality(task.defaults, task.modality)?;
    let (train_labels, test_labels) = (task.task.train_labels(), task.task.test_labels());
    let subset = label_subset(train_labels, spec, recipe.seed)?;
    let init = if args.from_scratch {
        Init::Random { seed: recipe.seed }
    } else {
        Init::Pretrained
    };
    let what = if args.from_scratch {
        "from scratch"
    } else {
        "pretrained"
    };
    eprintln!(
        "{} labels of {} ({what}, {} mode)",
        subset.len(),
        train_labels.len(),
        args.mode.name()
    );
    let mut out = json!({
        "mode": args.mode.name(), "from_scratch": args.from_scratch, "labels": subset.len(),
        "train_images": train_labels.len(), "test_images": test_labels.len(), "seed": recipe.seed,
        "batch_size": recipe.batch_for(subset.len()), "checkpoint": args.checkpoint,
        "data": task.data_path, "modality": task.modality, "validation": recipe.validation,
    });
    match spec {
        SubsetSpec::Fraction(f) => out["label_fraction"] = json!(f),
        SubsetSpec::PerClass(n) => out["labels_per_class"] = json!(n),
    }
    let scored = if recipe.validation.is_some() {
        "held-out train (validation)"
    } else {
        "test"
    };
    match args.mode {
        Mode::Full => {
            let r = task.task.finetune(init, &subset, recipe, args.quiet)?;
            eprintln!(
                "fine-tuned {} steps in {:.1} min: top-1 {:.2}% on {} {scored} samples",
                r.steps,
                r.train_seconds / 60.0,
                100.0 * r.top1,
                test_labels.len()
            );
            let backbone_lr_mult = if args.from_scratch {
                1.0
            } else {
                recipe.backbone_lr_mult()
            };
            for (k, v) in [
                ("top1", json!(r.top1)),
                ("top5", json!(r.top5)),
                ("steps", json!(r.steps)),
                ("budget", json!(recipe.budget)),
                ("lr", json!(recipe.lr())),
                ("backbone_lr_mult", json!(backbone_lr_mult)),
                ("weight_decay", json!(recipe.weight_decay())),
                ("lp_ft", json!(recipe.lp_ft)),
                ("final_loss", json!(r.final_loss)),
                ("train_seconds", json!(r.train_seconds)),
                ("test_seconds", json!(r.test_seconds)),
            ] {
                out[k] = v;
            }
        }
        Mode::Linear => {
            let t0 = Instant::now();
            let (ftr, fte) = task.task.features(init, &subset)?;
            let ltr = selfsup_eval::select_labels(train_labels, &subset);
            let r = train_linear(&ftr, &ltr, &fte, test_labels, recipe)?;
            eprintln!(
                "linear classifier top-1 {:.2}% on {} {scored} samples (train {:.2}%)",
                100.0 * r.test_top1,
                fte.n,
                100.0 * r.train_top1
            );
            for (k, v) in [
                ("top1", json!(r.test_top1)),
                ("top5", json!(r.test_top5)),
                ("train_top1", json!(r.train_top1)),
                ("linear_epochs", json!(recipe.linear_epochs)),
                ("seconds", json!(t0.elapsed().as_secs_f64())),
            ] {
                out[k] = v;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recipe() -> Recipe {
        Recipe {
            batch_size: None,
            lr: None,
            backbone_lr_mult: Some(0.1),
            weight_decay: None,
            steps: None,
            budget: 1.0,
            linear_epochs: 100,
            seed: 0,
            pooling: None,
            lp_ft: false,
            validation: None,
            defaults: RecipeDefaults::IMAGE,
        }
    }

    #[test]
    fn lp_ft_is_refused_for_text() {
        let lp_ft = Recipe {
            lp_ft: true,
            ..recipe()
        };
        let e = lp_ft
            .for_modality(RecipeDefaults::TEXT, "text")
            .unwrap_err()
            .to_string();
        assert!(e.contains("--lp-ft") && e.contains("text"), "{e}");
        let audio = lp_ft.for_modality(RecipeDefaults::AUDIO, "audio").unwrap();
        assert!(audio.lp_ft);
        assert_eq!(audio.lr(), RecipeDefaults::AUDIO.lr);
        let image = lp_ft.for_modality(RecipeDefaults::IMAGE, "image").unwrap();
        assert!(image.lp_ft);
        assert_eq!(image.lr(), RecipeDefaults::IMAGE.lr);
    }

    /// The default budget reproduces the reference run's step counts.
    #[test]
    fn default_steps_match_the_reference_run() {
        let r = recipe();
        assert_eq!(r.steps_for(500), 280);
        assert_eq!(r.steps_for(5000), 312);
        let r3 = Recipe { budget: 3.0, ..r };
        assert_eq!(r3.steps_for(500), 840);
        assert_eq!(r3.steps_for(5000), 936);
        let fixed = Recipe {
            steps: Some(17),
            ..recipe()
        };
        assert_eq!(fixed.steps_for(500), 17);
        // Fewer labels than a batch: one batch of all of them per epoch.
        assert_eq!(recipe().batch_for(30), 30);
        assert_eq!(recipe().steps_for(30), 667);
        // Audio: 150 steps of all 50 labels (5 per digit), batch 32 at 270 labels.
        let audio = Recipe {
            defaults: RecipeDefaults::AUDIO,
            ..recipe()
        };
        assert_eq!(audio.steps_for(50), 150 * 1);
        assert_eq!(audio.batch_for(270), 32);
        assert_eq!(audio.steps_for(270), 28 * 8);
        // Text: IMDB 1 % (250 labels) and 10 % (2,500), batch 32.
        let text = Recipe {
            defaults: RecipeDefaults::TEXT,
            ..recipe()
        };
        assert_eq!(text.steps_for(250), 40 * 7);
        assert_eq!(text.steps_for(2500), 4 * 78);
    }

    #[test]
    fn subset_flags_are_validated() {
        assert!(subset_spec(Some(0.01), None).is_ok());
        assert!(subset_spec(Some(1.0), None).is_ok());
        for bad in [0.0, -0.5, 1.01, f64::NAN] {
            let e = subset_spec(Some(bad), None).unwrap_err().to_string();
            assert!(e.contains("--label-fraction"), "{e}");
        }
        let e = subset_spec(None, Some(0)).unwrap_err().to_string();
        assert!(e.contains("--labels-per-class"), "{e}");
        assert!(subset_spec(None, None).is_err());
    }
}
