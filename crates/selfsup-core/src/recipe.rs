//! How few-label fine-tuning and probes train: a [`Recipe`] of the user's settings over each
//! modality's [`RecipeDefaults`], and the stratified label subsets they train on.

use selfsup_eval::{LinearProbeConfig, SubsetSpec, stratified_subset};
use selfsup_methods::finetune::{ClassifierOptimizer, ClassifierSchedule};
use serde_json::json;

use crate::bail;
use crate::error::Result;

/// Which encoder a figure is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Init {
    /// The checkpoint's.
    Pretrained,
    /// The same architecture at random initialisation (the from-scratch baseline).
    Random { seed: u64 },
}

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
            check_validation_fraction(f)?;
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

    /// The fine-tuning schedule for `labels` labelled samples of a pretrained or random encoder.
    pub fn schedule(&self, init: Init, labels: usize) -> ClassifierSchedule {
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

/// Refuses a `--validation` value that is not a fraction in (0, 1), before any work.
pub fn check_validation_fraction(fraction: f64) -> Result<()> {
    if !(fraction > 0.0 && fraction < 1.0) {
        bail!("--validation must be a fraction in (0, 1) of the train split, got {fraction}");
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn recipe() -> Recipe {
        Recipe {
            backbone_lr_mult: Some(0.1),
            ..Recipe::default()
        }
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
        let audio = recipe().with_defaults(RecipeDefaults::AUDIO);
        assert_eq!(audio.steps_for(50), 150);
        assert_eq!(audio.batch_for(270), 32);
        assert_eq!(audio.steps_for(270), 28 * 8);
        // Text: IMDB 1 % (250 labels) and 10 % (2,500), batch 32.
        let text = recipe().with_defaults(RecipeDefaults::TEXT);
        assert_eq!(text.steps_for(250), 40 * 7);
        assert_eq!(text.steps_for(2500), 4 * 78);
        // Warm-up: 10 % of the steps for AdamW, none for the image SGD recipe.
        assert_eq!(text.schedule(Init::Pretrained, 2500).warmup_steps, 31);
        assert_eq!(recipe().schedule(Init::Pretrained, 500).warmup_steps, 0);
        // From scratch the backbone learns at the full rate.
        assert_eq!(
            recipe()
                .schedule(Init::Random { seed: 0 }, 500)
                .backbone_lr_mult,
            1.0
        );
        assert_eq!(
            recipe().schedule(Init::Pretrained, 500).backbone_lr_mult,
            0.1
        );
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
