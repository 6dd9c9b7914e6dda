//! Few-label fine-tuning, the same for every modality: a recipe (each modality's defaults for
//! what the user leaves out), a stratified label subset, LP-FT's probed head, and one
//! classifier loop ([`selfsup_methods::finetune::train_classifier`]) over the task's augmented
//! batches, tested on the whole test split (or the held-out validation rows).

use std::time::Instant;

use burn::module::{Module, ModuleDisplay};
use burn::nn::{Linear, LinearConfig};
use selfsup_eval::{LinearProbeConfig, SubsetSpec, stratified_subset, top_k_accuracy};
use selfsup_methods::finetune::{
    ClassifierOptimizer, ClassifierSchedule, EncoderWithHead, train_classifier,
};
use serde::Serialize;
use serde_json::json;

use crate::bail;
use crate::downstream::{Eval, features_of};
use crate::error::{Context, Error, Result};
use crate::modality::{DownstreamTask, Init};

/// A modality's defaults for the settings a user leaves out.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RecipeDefaults {
    pub batch_size: usize,
    pub lr: f64,
    pub backbone_lr_mult: f64,
    pub weight_decay: f64,
    /// Labelled-sample presentations of budget 1 (see [`Recipe::steps_for`]).
    pub samples_seen: f64,
    pub optimizer: ClassifierOptimizer,
    /// Warm-up as a fraction of the steps.
    pub warmup_fraction: f64,
}

impl RecipeDefaults {
    /// SGD (momentum 0.9) on images: 40 epochs of 500 labels, 4 epochs of 5,000 (the reference
    /// run's 280 and 312 steps at batch 64).
    pub const IMAGE: Self = Self {
        batch_size: 64,
        lr: 0.05,
        backbone_lr_mult: 0.5,
        weight_decay: 5e-4,
        samples_seen: 20_000.0,
        optimizer: ClassifierOptimizer::SgdMomentum,
        warmup_fraction: 0.0,
    };
    /// AdamW on audio (the FSDD recipe: 150 steps at 50 labels).
    pub const AUDIO: Self = Self {
        batch_size: 32,
        lr: 5e-4,
        backbone_lr_mult: 1.0,
        weight_decay: 0.01,
        samples_seen: 7_500.0,
        optimizer: ClassifierOptimizer::AdamW,
        warmup_fraction: 0.1,
    };
    /// AdamW on text: 280 steps at 250 labels (IMDB 1 %), 312 at 2,500.
    pub const TEXT: Self = Self {
        batch_size: 32,
        lr: 1e-4,
        backbone_lr_mult: 1.0,
        weight_decay: 0.01,
        samples_seen: 10_000.0,
        optimizer: ClassifierOptimizer::AdamW,
        warmup_fraction: 0.1,
    };
}

/// How `finetune` and `prove` train; `None` takes the modality's default.
#[derive(Clone, Debug, PartialEq)]
pub struct Recipe {
    /// Labelled samples per batch (fine-tuning and the linear probe).
    pub batch_size: Option<usize>,
    /// Peak learning rate of the head (cosine decay to 0).
    pub lr: Option<f64>,
    /// A pretrained encoder learns at `lr × backbone_lr_mult`; from scratch always at `lr`.
    pub backbone_lr_mult: Option<f64>,
    pub weight_decay: Option<f64>,
    /// Optimizer steps, exactly (`budget` is then ignored).
    pub steps: Option<usize>,
    /// Multiplier of the default number of steps.
    pub budget: f64,
    /// Epochs of the linear probe on frozen features (Adam, lr 1e-3).
    pub linear_epochs: usize,
    /// Seeds the label subset, the head, the random init, the order and the augmentation.
    pub seed: u64,
    /// LP-FT (Kumar et al. 2022): the head starts as a linear probe on the frozen encoder's
    /// embeddings of the labelled samples, for the pretrained and the scratch arm alike.
    pub lp_ft: bool,
    /// Score on this stratified fraction of the training samples, held out by the run's
    /// `train.seed`, instead of the test split.
    pub validation: Option<f64>,
    /// The modality's defaults (set by the task).
    pub defaults: RecipeDefaults,
}

impl Default for Recipe {
    fn default() -> Self {
        Self {
            batch_size: None,
            lr: None,
            backbone_lr_mult: None,
            weight_decay: None,
            steps: None,
            budget: 1.0,
            linear_epochs: 100,
            seed: 0,
            lp_ft: false,
            validation: None,
            defaults: RecipeDefaults::IMAGE,
        }
    }
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
            crate::downstream::check_validation_fraction(f)?;
        }
        Ok(())
    }

    /// This recipe with a modality's defaults.
    pub fn with_defaults(&self, defaults: RecipeDefaults) -> Recipe {
        Recipe {
            defaults,
            ..self.clone()
        }
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

    /// Fine-tuning steps for `labels` labelled samples: `steps` when set, else whole epochs
    /// over the subset, max(1, round(samples_seen / labels)) of them with floor(labels /
    /// batch) batches each, times `budget`.
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

    fn schedule(&self, init: Init, labels: usize) -> ClassifierSchedule {
        let steps = self.steps_for(labels);
        ClassifierSchedule {
            steps,
            warmup_steps: (steps as f64 * self.defaults.warmup_fraction) as usize,
            lr: self.lr(),
            backbone_lr_mult: match init {
                Init::Pretrained => self.backbone_lr_mult(),
                Init::Random { .. } => 1.0,
            },
            weight_decay: self.weight_decay(),
            optimizer: self.defaults.optimizer,
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

/// The labelled subset (ascending rows) for a spec and seed.
pub fn label_subset(labels: &[u32], spec: SubsetSpec, seed: u64) -> Result<Vec<usize>> {
    Ok(stratified_subset(labels, spec, seed)?)
}

/// An encoder and a linear classification head.
#[derive(Module, Debug)]
pub struct Classifier<E: Module + ModuleDisplay> {
    pub encoder: E,
    pub head: Linear,
}

impl<E: Module + ModuleDisplay> EncoderWithHead for Classifier<E> {
    type Encoder = E;

    fn map_parts(self, f: impl FnOnce(E, Linear) -> (E, Linear)) -> Self {
        let (encoder, head) = f(self.encoder, self.head);
        Self { encoder, head }
    }
}

/// Figures of one fine-tuning run.
#[derive(Clone, Debug, Serialize)]
pub struct FinetuneResult {
    pub top1: f64,
    /// Only with more than 5 classes.
    pub top5: Option<f64>,
    pub steps: usize,
    /// Mean training loss over the last 10 % of the steps.
    pub final_loss: f64,
    pub train_seconds: f64,
    pub test_seconds: f64,
}

/// Top-1 and (with more than 5 classes) top-5 accuracy of `scores` (row-major, `classes`
/// per sample).
pub fn top1_top5(scores: &[f32], classes: usize, labels: &[u32]) -> Result<(f64, Option<f64>)> {
    let top1 = top_k_accuracy(scores, classes, labels, 1)?;
    let top5 = (classes > 5)
        .then(|| top_k_accuracy(scores, classes, labels, 5))
        .transpose()?;
    Ok((top1, top5))
}

/// The encoder (`init`) and a linear head trained end to end on the training rows `subset`
/// of `eval`, then tested on all of its test rows.
pub fn finetune<T: DownstreamTask>(
    eval: &Eval<T>,
    init: Init,
    subset: &[usize],
    recipe: &Recipe,
    quiet: bool,
) -> Result<FinetuneResult> {
    let task = &eval.task;
    let classes = eval.classes();
    if classes < 2 {
        bail!("fine-tuning needs at least 2 classes, the data has {classes}");
    }
    let train_labels = eval.train_labels()?;
    let rows = eval.train_rows(subset);
    let ad = task.device().clone().autodiff();
    let encoder = task.encoder(init, &ad)?;
    // LP-FT applies to both arms alike: a scratch encoder's head is probed on its random
    // features just as a pretrained one's. The features come before the seed below, so the
    // run's random stream (dropout) is the same with and without LP-FT.
    let frozen = if recipe.lp_ft {
        let frozen = task.encoder(init, task.device())?;
        Some(features_of(
            task,
            &frozen,
            selfsup_data::Split::Train,
            &rows,
            eval.batch_size,
        )?)
    } else {
        None
    };
    ad.seed(recipe.seed);
    let head = match frozen {
        Some(features) => {
            let labels: Vec<u32> = subset.iter().map(|&i| train_labels[i]).collect();
            selfsup_eval::probed_linear_head(
                &features,
                &labels,
                classes,
                &recipe.linear_probe_config(),
                &ad,
            )
            .context("LP-FT linear probe")?
        }
        None => LinearConfig::new(task.embed_dim(), classes).init(&ad),
    };
    let batch_size = recipe.batch_for(subset.len());
    let schedule = recipe.schedule(init, subset.len());
    let total = schedule.steps;
    let t0 = Instant::now();
    let batches = task.train_batches(&rows, batch_size, recipe.seed, &ad)?;
    let (model, trained) = train_classifier(
        Classifier { encoder, head },
        batches,
        &schedule,
        &ad,
        |m: &Classifier<T::Encoder>, (batch, labels)| {
            (m.head.forward(task.forward(&m.encoder, batch)), labels)
        },
        |step, loss, lr| {
            if !quiet && (step % 50 == 0 || step == total) {
                eprintln!(
                    "  step {step}/{total} loss {loss:.4} lr {lr:.4} ({:.0} s)",
                    t0.elapsed().as_secs_f64()
                );
            }
        },
    )
    .map_err(Error::from)?;

    let t1 = Instant::now();
    let model = model.valid();
    let model = model.to_device(task.device());
    let (split, test_rows) = eval.test_rows();
    let mut scores = Vec::with_capacity(test_rows.len() * classes);
    for batch in task.batches(split, &test_rows, eval.batch_size, task.device())? {
        let logits = model.head.forward(task.forward(&model.encoder, batch));
        scores.extend(
            logits
                .into_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .expect("f32 logits"),
        );
    }
    let (top1, top5) = top1_top5(&scores, classes, &eval.test_labels()?)?;
    Ok(FinetuneResult {
        top1,
        top5,
        steps: trained.steps,
        final_loss: trained.final_loss,
        train_seconds: trained.train_seconds,
        test_seconds: t1.elapsed().as_secs_f64(),
    })
}
