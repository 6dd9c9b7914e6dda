//! Every command on any modality, behind one object-safe interface ([`AnyModality`]), so a
//! program picks the modality at run time from a config's or a checkpoint's method name
//! (the `selfsup` crate lists the modalities; nothing here names one).

use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::time::Instant;

use selfsup_data::Split;
use selfsup_eval::{LinearProbeConfig, SubsetSpec};
use selfsup_methods::registry::MethodSet;
use serde::Serialize;
use serde_json::{Value, json};

use crate::bail;
use crate::checkpoint::Checkpoint;
use crate::config::{RawConfig, RunConfig};
use crate::downstream::{self, KnnFigures, LinearFigures, Loaded};
use crate::error::{Context, Result};
use crate::finetune;
use crate::modality::{Init, Modality, TaskOptions};
use crate::pretrain::{PretrainSummary, RunOptions};
use crate::prove::{self, ProveOptions};
use crate::recipe::{self, Recipe};
use crate::report::{self, ReportOptions, ReportSummary};

/// Which checkpoint and data a downstream command evaluates, and how.
#[derive(Debug, Clone)]
pub struct EvalRequest {
    pub task: TaskOptions,
    /// Hold out this stratified fraction of the training samples as the queries instead of
    /// the test split.
    pub validation: Option<f64>,
    /// Evaluate the same architecture at random initialisation (seeded by `train.seed`).
    pub random_init: bool,
}

/// `finetune`'s two modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinetuneMode {
    /// A linear classifier on frozen embeddings.
    Linear,
    /// Encoder and linear head trained together.
    Full,
}

impl FinetuneMode {
    pub fn name(self) -> &'static str {
        match self {
            FinetuneMode::Linear => "linear",
            FinetuneMode::Full => "full",
        }
    }
}

/// A `finetune` run: which labels, which mode, which encoder, which recipe.
#[derive(Debug, Clone)]
pub struct FinetuneRequest {
    pub subset: SubsetSpec,
    pub mode: FinetuneMode,
    /// The same architecture from random initialisation (seeded by the recipe's seed).
    pub from_scratch: bool,
    pub recipe: Recipe,
    pub quiet: bool,
}

/// What `embed` wrote.
#[derive(Debug, Clone, Serialize)]
pub struct EmbedSummary {
    pub images: usize,
    pub dim: usize,
    pub files: Vec<PathBuf>,
    pub random_init: bool,
}

/// A modality with every command, chosen at run time.
pub trait AnyModality: Sync {
    /// `image`, `audio`, `text`.
    fn name(&self) -> &'static str;
    /// Its `method.name`s.
    fn methods(&self) -> Vec<&'static str>;
    /// Every key a config of this modality may hold with `method`.
    fn config_keys(&self, method: &str) -> Vec<String>;
    /// Checks a config (file and overrides) before any work; returns it as stored TOML.
    fn check_config(&self, raw: &RawConfig) -> Result<String>;
    fn pretrain(&self, raw: &RawConfig, options: RunOptions) -> Result<PretrainSummary>;
    fn knn(
        &self,
        checkpoint: Checkpoint,
        request: &EvalRequest,
        k: Option<usize>,
        temperature: Option<f64>,
    ) -> Result<KnnFigures>;
    fn linear(
        &self,
        checkpoint: Checkpoint,
        request: &EvalRequest,
        epochs: usize,
        lr: f32,
    ) -> Result<LinearFigures>;
    fn embed(
        &self,
        checkpoint: Checkpoint,
        request: &EvalRequest,
        split: Split,
        limit: Option<usize>,
        out: &Path,
    ) -> Result<EmbedSummary>;
    fn finetune(
        &self,
        checkpoint: Checkpoint,
        task: &TaskOptions,
        request: &FinetuneRequest,
    ) -> Result<Value>;
    /// `options.recipe` without defaults; `options.out_dir` empty: the checkpoint's run
    /// directory.
    fn prove(
        &self,
        checkpoint: Checkpoint,
        task: &TaskOptions,
        options: ProveOptions,
    ) -> Result<Value>;
    fn report(
        &self,
        options: &ReportOptions,
        checkpoint: Option<Checkpoint>,
        task: &TaskOptions,
    ) -> Result<ReportSummary>;
    fn export(&self, checkpoint: Checkpoint, format: &str, out: &Path) -> Result<Value>;
}

/// Pretrains with `config` into `options.out`: refuses to overwrite a run unless resuming
/// (then the checkpoint's config is authoritative), writes `config.toml`, and hands the run
/// to the modality.
pub fn pretrain<M: Modality>(config: RunConfig<M>, options: RunOptions) -> Result<PretrainSummary> {
    let out = options.out.clone();
    // With several processes rank 0 owns the run directory; the others read it.
    let writer = selfsup_dist::is_writer();
    if writer {
        std::fs::create_dir_all(&out)
            .with_context(|| format!("cannot create run directory {}", out.display()))?;
        crate::checkpoint::remove_partial_writes(&out)?;
    }
    let (config, resumed) = if options.resume {
        let c = crate::checkpoint::latest_good(&out)?
            .with_context(|| format!("--resume: no checkpoint in {}/checkpoints", out.display()))?;
        let saved = RunConfig::<M>::from_stored(&c.state.config, &c.path.display().to_string())?;
        if saved != config {
            eprintln!(
                "note: resuming with the checkpoint's config (it differs from the one given)"
            );
        }
        (saved, Some(c))
    } else {
        if !crate::checkpoint::list(&out).is_empty() {
            bail!(
                "{} already holds checkpoints; pass --resume to continue that run or choose another --out",
                out.display()
            );
        }
        (config, None)
    };
    if !options.resume && config.data.path.is_empty() {
        bail!("no dataset: set data.path in the config or pass --data PATH");
    }
    if writer {
        crate::fs::write_atomic(&out.join("config.toml"), config.to_toml().as_bytes())?;
    }
    selfsup_dist::world().barrier();
    selfsup_models::set_sync_batch_norm(config.train.sync_batch_norm);
    if config.train.deterministic {
        crate::device::use_deterministic_compute()?;
    }
    let device = crate::device::select(&config.train.device)?.autodiff();
    device.seed(config.train.seed);
    M::pretrain(crate::pretrain::Run {
        config,
        options,
        resumed,
        device,
        skipped_corrupt: 0,
    })
}

/// [`AnyModality`] for a [`Modality`].
pub struct Plugin<M>(PhantomData<fn() -> M>);

impl<M> Plugin<M> {
    pub const NEW: Self = Plugin(PhantomData);
}

fn init_of(random: bool, seed: u64) -> Init {
    if random {
        Init::Random { seed }
    } else {
        Init::Pretrained
    }
}

fn load<M: Modality>(
    checkpoint: Checkpoint,
    task: &TaskOptions,
    validation: Option<f64>,
) -> Result<Loaded<M>> {
    if let Some(f) = validation {
        downstream::check_validation_fraction(f)?;
    }
    downstream::open(
        downstream::source::<M>(checkpoint, task.clone())?,
        validation,
    )
}

impl<M: Modality> AnyModality for Plugin<M> {
    fn name(&self) -> &'static str {
        M::NAME
    }

    fn methods(&self) -> Vec<&'static str> {
        M::Method::names()
    }

    fn config_keys(&self, method: &str) -> Vec<String> {
        let mut keys = RunConfig::<M>::known_keys();
        keys.push("method.name".into());
        keys.extend(
            M::Method::keys(method)
                .unwrap_or_default()
                .into_iter()
                .map(|k| format!("method.{k}")),
        );
        keys
    }

    fn check_config(&self, raw: &RawConfig) -> Result<String> {
        Ok(RunConfig::<M>::from_raw(raw)?.to_toml())
    }

    fn pretrain(&self, raw: &RawConfig, options: RunOptions) -> Result<PretrainSummary> {
        let config = if options.resume && raw.table.is_empty() {
            // `--resume` alone: the checkpoint's config is used.
            RunConfig::<M>::default()
        } else {
            RunConfig::<M>::from_raw(raw)?
        };
        pretrain(config, options)
    }

    fn knn(
        &self,
        checkpoint: Checkpoint,
        request: &EvalRequest,
        k: Option<usize>,
        temperature: Option<f64>,
    ) -> Result<KnnFigures> {
        let loaded = load::<M>(checkpoint, &request.task, request.validation)?;
        let e = &loaded.eval;
        let (k, t) = (
            k.unwrap_or(e.knn_k),
            temperature.unwrap_or(e.knn_temperature),
        );
        let seed = loaded.source.config.train.seed;
        let figures = downstream::knn(e, init_of(request.random_init, seed), k, t)?;
        eprintln!(
            "kNN (k={}, T={}) top-1 {:.2}% on {} {} samples",
            figures.k,
            figures.temperature,
            100.0 * figures.knn_top1,
            figures.images,
            loaded.eval.queries()
        );
        Ok(figures)
    }

    fn linear(
        &self,
        checkpoint: Checkpoint,
        request: &EvalRequest,
        epochs: usize,
        lr: f32,
    ) -> Result<LinearFigures> {
        let loaded = load::<M>(checkpoint, &request.task, request.validation)?;
        let seed = loaded.source.config.train.seed;
        let config = LinearProbeConfig {
            epochs,
            lr,
            seed,
            ..Default::default()
        };
        let figures =
            downstream::linear(&loaded.eval, init_of(request.random_init, seed), &config)?;
        eprintln!(
            "linear probe top-1 {:.2}% on {} {} samples (train {:.2}%)",
            100.0 * figures.linear_top1,
            figures.images,
            loaded.eval.queries(),
            100.0 * figures.train_top1
        );
        Ok(figures)
    }

    fn embed(
        &self,
        checkpoint: Checkpoint,
        request: &EvalRequest,
        split: Split,
        limit: Option<usize>,
        out: &Path,
    ) -> Result<EmbedSummary> {
        if limit == Some(0) {
            crate::bail!("--limit must be at least 1");
        }
        let mut task = request.task.clone();
        task.unlabelled = true;
        let source = downstream::source::<M>(checkpoint, task)?;
        let seed = source.config.train.seed;
        let batch = source.config.eval.batch_size;
        let t = M::open_task(&source)?;
        let e = downstream::embed(&t, init_of(request.random_init, seed), split, limit, batch)?;
        let (n, dim) = (e.features.n, e.features.dim);
        let files = crate::embeddings::write(out, &e)?;
        eprintln!(
            "wrote {n} embeddings of dimension {dim} to {}",
            files
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        Ok(EmbedSummary {
            images: n,
            dim,
            files,
            random_init: request.random_init,
        })
    }

    fn finetune(
        &self,
        checkpoint: Checkpoint,
        task: &TaskOptions,
        request: &FinetuneRequest,
    ) -> Result<Value> {
        request.recipe.validate()?;
        let checkpoint_path = checkpoint.path.clone();
        let loaded = load::<M>(checkpoint, task, request.recipe.validation)?;
        let recipe = &request.recipe.with_defaults(M::RECIPE);
        let eval = &loaded.eval;
        let train_labels = eval.train_labels()?;
        let test_len = eval.test_len();
        let subset = recipe::label_subset(&train_labels, request.subset, recipe.seed)?;
        let init = init_of(request.from_scratch, recipe.seed);
        let what = if request.from_scratch {
            "from scratch"
        } else {
            "pretrained"
        };
        eprintln!(
            "{} labels of {} ({what}, {} mode)",
            subset.len(),
            train_labels.len(),
            request.mode.name()
        );
        let mut out = json!({
            "mode": request.mode.name(), "from_scratch": request.from_scratch, "labels": subset.len(),
            "train_images": train_labels.len(), "test_images": test_len, "seed": recipe.seed,
            "batch_size": recipe.batch_for(subset.len()), "checkpoint": checkpoint_path,
            "data": loaded.source.data_path, "modality": M::NAME, "validation": recipe.validation,
        });
        match request.subset {
            SubsetSpec::Fraction(f) => out["label_fraction"] = json!(f),
            SubsetSpec::PerClass(n) => out["labels_per_class"] = json!(n),
        }
        let scored = eval.queries();
        match request.mode {
            FinetuneMode::Full => {
                let r = finetune::finetune(eval, init, &subset, recipe, request.quiet)?;
                eprintln!(
                    "fine-tuned {} steps in {:.1} min: top-1 {:.2}% on {test_len} {scored} samples",
                    r.steps,
                    r.train_seconds / 60.0,
                    100.0 * r.top1,
                );
                let backbone_lr_mult = if request.from_scratch {
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
            FinetuneMode::Linear => {
                let t0 = Instant::now();
                let (ftr, fte) = eval.features(init, Some(&subset))?;
                let ltr = downstream::labels_of(&train_labels, &subset);
                let r = selfsup_eval::linear_probe(
                    &ftr,
                    &ltr,
                    &fte,
                    &eval.test_labels()?,
                    &recipe.linear_probe_config(),
                )?;
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

    fn prove(
        &self,
        checkpoint: Checkpoint,
        task: &TaskOptions,
        mut options: ProveOptions,
    ) -> Result<Value> {
        options.recipe.validate()?;
        if options.out_dir.as_os_str().is_empty() {
            options.out_dir = downstream::run_dir_of(&checkpoint.path);
        }
        options.checkpoint = checkpoint.path.clone();
        let loaded = load::<M>(checkpoint, task, options.recipe.validation)?;
        options.recipe = options.recipe.with_defaults(M::RECIPE);
        options.data = loaded.source.data_path.clone();
        options.modality = M::NAME;
        prove::prove(&loaded.eval, &options)
    }

    fn report(
        &self,
        options: &ReportOptions,
        checkpoint: Option<Checkpoint>,
        task: &TaskOptions,
    ) -> Result<ReportSummary> {
        let loaded = match checkpoint {
            Some(c) if options.points == 0 => {
                // Only pictures need the data then: a run whose data moved still gets its plots.
                let path = c.path.clone();
                load::<M>(c, task, None)
                    .map_err(|e| {
                        eprintln!(
                            "warning: leaving out the pictures of {}: {e}",
                            path.display()
                        )
                    })
                    .ok()
            }
            Some(c) => Some(load::<M>(c, task, None)?),
            None => None,
        };
        report::report::<M>(options, loaded.as_ref())
    }

    fn export(&self, checkpoint: Checkpoint, format: &str, out: &Path) -> Result<Value> {
        let task = TaskOptions {
            device: Some("cpu".into()),
            ..TaskOptions::default()
        };
        let source = downstream::source::<M>(checkpoint, task)?;
        M::export(&source, format, out)
    }
}
