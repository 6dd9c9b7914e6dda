//! `selfsup pretrain`: self-supervised training of an encoder on unlabeled images, audio or
//! text.
//!
//! One loop ([`Session::train`]) serves every method and modality; a [`TrainData`] supplies
//! the batches and the per-epoch evaluation.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::optim::GradientsParams;
use burn::prelude::*;
use indicatif::{ProgressBar, ProgressStyle};
use selfsup_data::{LoaderConfig, Split, ViewLoader};
use selfsup_eval::{Features, KnnConfig, knn_classify};
use selfsup_methods::barlow_twins::BarlowTwinsConfig;
use selfsup_methods::byol::ByolConfig;
use selfsup_methods::dino::DinoConfig;
use selfsup_methods::loss::{TripletMining, VicRegWeights};
use selfsup_methods::method::{ImageViews, Progress, SslMethod, StepOutput};
use selfsup_methods::moco::MocoConfig;
use selfsup_methods::optim::{Optimizer, OptimizerConfig, OptimizerKind, cosine_with_warmup};
use selfsup_methods::rotation::RotationConfig;
use selfsup_methods::simclr::{ContrastiveObjective, SimClrConfig};
use selfsup_methods::simsiam::SimSiamConfig;
use selfsup_methods::vicreg::VicRegConfig;
use selfsup_models::{Backbone, NamedTensor, load_named_tensors, named_tensors};
use serde_json::json;

use crate::checkpoint::{self, FORMAT, RunState};
use crate::config::Config;
use crate::data;
use crate::device;
use crate::train_data::{Figures, TrainData, knn_figures};

pub struct PretrainArgs {
    pub config: Config,
    pub out: PathBuf,
    pub resume: bool,
    /// Where relative data paths are resolved.
    pub base_dir: PathBuf,
    /// Hide the progress bar (tests, logs).
    pub quiet: bool,
    /// Stop after this many epochs of this invocation; `--resume` continues the run.
    pub stop_after: Option<usize>,
}

pub struct PretrainSummary {
    pub epochs: usize,
    pub steps: usize,
    pub final_loss: f64,
    pub train_seconds: f64,
    pub views_per_second: f64,
    pub images: usize,
    pub checkpoint: PathBuf,
    /// Unreadable images skipped with `--skip-corrupt`.
    pub skipped_corrupt: usize,
}

pub fn simclr_config(config: &Config) -> Result<SimClrConfig> {
    let objective = match config.method.loss.as_str() {
        "nt_xent" => ContrastiveObjective::NtXent {
            temperature: config.method.temperature,
        },
        "triplet" => ContrastiveObjective::Triplet {
            margin: config.method.triplet_margin,
            mining: if config.method.triplet_mining == "random" {
                TripletMining::Random
            } else {
                TripletMining::Hardest
            },
        },
        other => bail!("config `method.loss`: unknown loss `{other}`"),
    };
    Ok(SimClrConfig {
        backbone: config.backbone_config()?,
        projection_dims: config.method.projection_dims.clone(),
        objective,
    })
}

pub fn optimizer(config: &Config) -> Result<Optimizer> {
    let o = &config.optim;
    let kind = match o.name.as_str() {
        "sgd" => OptimizerKind::Sgd {
            momentum: o.momentum,
            nesterov: false,
        },
        "lars" => OptimizerKind::Lars {
            momentum: o.momentum,
            eta: 0.02,
            clip: o.lars_clip_lr,
        },
        "adamw" => OptimizerKind::AdamW {
            beta1: o.betas[0],
            beta2: o.betas[1],
            eps: 1e-8,
        },
        other => bail!("config `optim.name`: unknown optimizer `{other}`"),
    };
    OptimizerConfig {
        kind,
        weight_decay: o.weight_decay,
        exclude_bias_and_norm: o.exclude_bias_and_norm,
    }
    .init()
    .map_err(|e| anyhow::anyhow!("config `optim`: {e}"))
}

fn prefixed(
    prefix: &str,
    t: std::collections::BTreeMap<String, NamedTensor>,
) -> impl Iterator<Item = (String, NamedTensor)> + '_ {
    t.into_iter()
        .map(move |(k, v)| (format!("{prefix}.{k}"), v))
}

fn save_checkpoint<M: SslMethod>(
    out: &Path,
    config: &Config,
    model: &M,
    optim: &Optimizer,
    epoch: usize,
    step: usize,
) -> Result<PathBuf> {
    let mut tensors: std::collections::BTreeMap<String, NamedTensor> =
        prefixed("model", named_tensors(model)).collect();
    for (k, (shape, values)) in optim.state_dict() {
        tensors.insert(format!("optim.{k}"), NamedTensor { shape, values });
    }
    let state = RunState {
        format: FORMAT.into(),
        method: config.method.name.clone(),
        epoch,
        global_step: step,
        config: config.to_toml(),
    };
    let path = checkpoint::epoch_path(out, epoch);
    checkpoint::save(&path, &state, &tensors)?;
    Ok(path)
}

/// Appends one JSON object per line to `metrics.jsonl`.
struct MetricsLog(std::fs::File, PathBuf);

impl MetricsLog {
    fn open(out: &Path) -> Result<Self> {
        let path = out.join("metrics.jsonl");
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        Ok(Self(f, path))
    }
    fn write(&mut self, v: serde_json::Value) -> Result<()> {
        // One write per record, so a kill rarely leaves half a line (resume repairs it anyway).
        self.0
            .write_all(format!("{v}\n").as_bytes())
            .with_context(|| format!("cannot append to {}", self.1.display()))
    }
}

fn to_features(z: Tensor<2>) -> Result<Features> {
    let [n, d] = z.dims();
    Ok(Features::new(
        z.into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .expect("f32"),
        n,
        d,
    )?)
}

/// Collapse diagnostics on one batch's projections: per-dimension std of the L2-normalised
/// embeddings (1/sqrt(d) when spread, 0 when collapsed), effective rank, alignment, uniformity.
/// Alignment only when `z_b` is a second view of `z_a`'s samples (`paired`).
fn diagnostics(z_a: Tensor<2>, z_b: Tensor<2>, paired: bool) -> Result<serde_json::Value> {
    let a = to_features(z_a)?.l2_normalized();
    let alignment = if paired {
        let b = to_features(z_b)?.l2_normalized();
        Some(selfsup_eval::alignment(&a, &b, 2.0)?)
    } else {
        None
    };
    Ok(json!({
        "embedding_std": selfsup_eval::embedding_std(&a)?,
        "effective_rank": selfsup_eval::rankme(&a)?,
        "alignment": alignment,
        "uniformity": selfsup_eval::uniformity(&a, 2.0)?,
        "dim": a.dim,
    }))
}

pub fn knn_eval(
    config: &Config,
    backbone: &selfsup_models::Backbone,
    data_path: &Path,
    cache: &Path,
) -> Result<(f64, usize)> {
    let [(ftrain, ltrain), (ftest, ltest)] =
        crate::features::train_test(config, backbone, data_path, cache, config.data.skip_corrupt)?;
    let cfg = KnnConfig {
        k: config.eval.knn_k,
        temperature: config.eval.knn_temperature as f32,
        ..Default::default()
    };
    let r = knn_classify(&ftrain, &ltrain, &ftest, &ltest, &cfg)?;
    Ok((r.top1, ftest.n))
}

/// The config a checkpoint was written with.
fn checkpoint_config(c: &checkpoint::Checkpoint) -> Result<Config> {
    toml::from_str(&c.state.config).context("checkpoint config")
}

/// `model` with the checkpoint's `model.*` tensors (teacher, queue and center included).
fn restore_model<M: SslMethod>(model: M, c: &checkpoint::Checkpoint) -> Result<M> {
    load_named_tensors(model, &c.section("model"), "").map_err(|e| {
        anyhow::anyhow!(
            "checkpoint {} does not fit its model: {e}",
            c.path.display()
        )
    })
}

fn last_good_text(last_ckpt: &Path) -> String {
    if last_ckpt.as_os_str().is_empty() {
        "none (no epoch finished)".to_string()
    } else {
        last_ckpt.display().to_string()
    }
}

pub fn run(args: PretrainArgs) -> Result<PretrainSummary> {
    let PretrainArgs {
        mut config,
        out,
        resume,
        base_dir,
        quiet,
        stop_after,
    } = args;
    std::fs::create_dir_all(&out)
        .with_context(|| format!("cannot create run directory {}", out.display()))?;
    checkpoint::remove_partial_writes(&out)?;

    // Resume: the checkpoint's config is authoritative (the schedule depends on it).
    let resumed = if resume {
        let c = checkpoint::latest_good(&out)?
            .with_context(|| format!("--resume: no checkpoint in {}/checkpoints", out.display()))?;
        let saved = checkpoint_config(&c)?;
        if saved != config {
            eprintln!(
                "note: resuming with the checkpoint's config (it differs from the one given)"
            );
        }
        config = saved;
        Some(c)
    } else {
        if !checkpoint::list(&out).is_empty() {
            bail!(
                "{} already holds checkpoints; pass --resume to continue that run or choose another --out",
                out.display()
            );
        }
        None
    };
    let config_file = out.join("config.toml");
    std::fs::write(&config_file, config.to_toml())
        .with_context(|| format!("cannot write {}", config_file.display()))?;
    if config.train.deterministic {
        device::use_deterministic_compute()?;
    }
    let device = device::select(&config.train.device)?.autodiff();
    device.seed(config.train.seed);

    let mut session = Session {
        config,
        out,
        resumed,
        quiet,
        stop_after,
        skipped_corrupt: 0,
    };
    if session.config.is_audio() {
        return crate::audio::pretrain(session, &base_dir, &device);
    }
    if session.config.is_text() {
        return crate::text::pretrain(session, &base_dir, &device);
    }
    let config = &session.config.clone();
    let data_path = config.data_path(&base_dir);
    let cache = data::cache_dir(config, Some(&session.out));
    let dataset = data::open(&data_path, Split::Train, &cache, config.data.skip_corrupt)?;
    let batch_size = config.train.batch_size;
    let images = if config.data.limit > 0 {
        config.data.limit.min(dataset.len())
    } else {
        dataset.len()
    };
    if images < batch_size {
        bail!(
            "the dataset {} has {images} training images, fewer than train.batch_size = {batch_size}",
            data_path.display()
        );
    }
    let pipelines = data::view_pipelines(config)?;
    let loader = ViewLoader::new(
        dataset.clone(),
        pipelines,
        LoaderConfig {
            batch_size,
            shuffle: true,
            drop_last: true,
            seed: config.train.seed,
            num_workers: config.data.workers,
            prefetch: 4,
            subset: (config.data.limit > 0).then(|| (0..images).collect()),
        },
    )?;
    session.skipped_corrupt = dataset.num_skipped();
    let data = &ImageData {
        config: config.clone(),
        data_path,
        cache,
        images,
        loader,
    };
    let c = config;
    let backbone = c.backbone_config()?;
    let m = &c.method;
    // Each method's module is built here from its config keys; the loop below is generic.
    match m.name.as_str() {
        "simclr" => session.train(simclr_config(c)?.init(&device), data, &device),
        "moco" => session.train(
            MocoConfig {
                backbone,
                projection_dims: m.projection_dims.clone(),
                temperature: m.temperature,
                queue_size: m.queue_size,
                momentum: m.ema_momentum,
            }
            .init(&device),
            data,
            &device,
        ),
        "byol" => session.train(
            ByolConfig {
                backbone,
                projection_dims: m.projection_dims.clone(),
                prediction_dims: m.prediction_dims.clone(),
                momentum: m.ema_momentum,
            }
            .init(&device),
            data,
            &device,
        ),
        "simsiam" => session.train(
            SimSiamConfig {
                backbone,
                projection_dims: m.projection_dims.clone(),
                prediction_dims: m.prediction_dims.clone(),
            }
            .init(&device),
            data,
            &device,
        ),
        "barlowtwins" => session.train(
            BarlowTwinsConfig {
                backbone,
                projection_dims: m.projection_dims.clone(),
                lambda: m.barlow_lambda,
            }
            .init(&device),
            data,
            &device,
        ),
        "vicreg" => {
            let [invariance, variance, covariance] = m.vicreg_weights;
            session.train(
                VicRegConfig {
                    backbone,
                    projection_dims: m.projection_dims.clone(),
                    weights: VicRegWeights {
                        invariance,
                        variance,
                        covariance,
                        eps: 1e-4,
                    },
                }
                .init(&device),
                data,
                &device,
            )
        }
        "dino" => session.train(
            DinoConfig {
                backbone,
                head_dims: m.projection_dims.clone(),
                student_temperature: m.temperature,
                teacher_temperature: m.teacher_temperature,
                teacher_temperature_warmup_epochs: m.teacher_temperature_warmup_epochs,
                center_momentum: m.center_momentum,
                momentum: m.ema_momentum,
            }
            .init(&device),
            data,
            &device,
        ),
        "rotation" => session.train(RotationConfig { backbone }.init(&device), data, &device),
        "mae" => session.train(crate::pretext::mae_config(c)?.init(&device), data, &device),
        "colorization" => session.train(
            crate::pretext::colorization_config(c, Some((&dataset, images)))?.init(&device),
            data,
            &device,
        ),
        other => bail!("config `method.name`: unknown method `{other}`"),
    }
}

/// Everything a run needs besides the method's module and its data.
pub(crate) struct Session {
    pub(crate) config: Config,
    pub(crate) out: PathBuf,
    pub(crate) resumed: Option<checkpoint::Checkpoint>,
    pub(crate) quiet: bool,
    pub(crate) stop_after: Option<usize>,
    /// Unreadable images skipped with `--skip-corrupt`.
    pub(crate) skipped_corrupt: usize,
}

/// Images: augmented views from the loader, kNN on backbone features of both splits.
struct ImageData {
    config: Config,
    data_path: PathBuf,
    cache: PathBuf,
    images: usize,
    loader: ViewLoader,
}

impl<M: SslMethod<Input = ImageViews, Backbone = Backbone>> TrainData<M> for ImageData {
    fn samples(&self) -> usize {
        self.images
    }

    fn steps_per_epoch(&self) -> usize {
        self.loader.num_batches()
    }

    fn epoch<'a>(
        &'a self,
        epoch: usize,
        device: &'a Device,
    ) -> Box<dyn Iterator<Item = (ImageViews, usize)> + 'a> {
        Box::new(self.loader.epoch(epoch as u64).map(move |batch| {
            let n_views: usize = batch.view_shapes.iter().map(|s| s[0]).sum();
            let views = batch
                .views
                .into_iter()
                .zip(&batch.view_shapes)
                .map(|(v, shape)| Tensor::<4>::from_data(TensorData::new(v, *shape), device))
                .collect();
            (views, n_views)
        }))
    }

    fn evaluate(&self, model: &M) -> Result<Figures> {
        let (top1, _) = knn_eval(&self.config, model.backbone(), &self.data_path, &self.cache)?;
        Ok(knn_figures(top1))
    }
}

impl Session {
    /// The training loop, the same for every method and modality: batch → loss → optimizer
    /// step → the method's non-gradient update; metrics, diagnostics, evaluation and
    /// checkpoints per epoch.
    pub(crate) fn train<M, D>(
        self,
        mut model: M,
        data: &D,
        device: &Device,
    ) -> Result<PretrainSummary>
    where
        M: SslMethod,
        D: TrainData<M>,
    {
        let Session {
            config,
            out,
            resumed,
            quiet,
            stop_after,
            skipped_corrupt,
        } = self;
        let images = data.samples();
        let steps_per_epoch = data.steps_per_epoch();
        let total_steps = steps_per_epoch * config.train.epochs;
        let warmup_steps = (config.optim.warmup_epochs * steps_per_epoch as f64).round() as usize;

        let mut optim = optimizer(&config)?;
        let (start_epoch, mut step) = match &resumed {
            Some(c) => {
                model = restore_model(model, c)?;
                let state = c
                    .section("optim")
                    .into_iter()
                    .map(|(k, t)| (k, (t.shape, t.values)))
                    .collect();
                optim
                    .load_state_dict(&state)
                    .map_err(|e| anyhow::anyhow!("checkpoint optimizer state: {e:?}"))?;
                eprintln!(
                    "resuming after epoch {} (step {})",
                    c.state.epoch, c.state.global_step
                );
                (c.state.epoch, c.state.global_step)
            }
            None => (0, 0),
        };
        if resumed.is_some() {
            selfsup::runlog::drop_partial_last_line(&out.join("metrics.jsonl"))?;
        }
        let mut log = MetricsLog::open(&out)?;
        if let Some(c) = &resumed {
            // Records after this one replace any the interrupted run wrote past its checkpoint.
            log.write(json!({"type": "resume", "epoch": c.state.epoch, "step": c.state.global_step, "checkpoint": c.path}))?;
        } else {
            log.write(json!({"type": "start", "images": images, "skipped_corrupt": skipped_corrupt,
            "compute_threads": rayon::current_num_threads(), "steps_per_epoch": steps_per_epoch, "epochs": config.train.epochs,
            "params_backbone": model.backbone().num_params(), "params_model": model.num_params(), "config": config}))?;
        }

        let pb = if quiet {
            ProgressBar::hidden()
        } else {
            ProgressBar::new(total_steps as u64)
        };
        pb.set_style(
            ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} ETA {eta}")
                .expect("progress template")
                .progress_chars("=> "),
        );
        pb.set_position(step as u64);

        let mut last_ckpt = checkpoint::list(&out)
            .first()
            .map(|(_, p)| p.clone())
            .unwrap_or_default();
        let mut final_loss = f64::NAN;
        let mut train_seconds = 0.0;
        let mut views = 0usize;
        let end_epoch = match stop_after {
            Some(n) => (start_epoch + n).min(config.train.epochs),
            None => config.train.epochs,
        };
        for epoch in start_epoch..end_epoch {
            pb.set_prefix(format!("epoch {}/{}", epoch + 1, config.train.epochs));
            let epoch_start = Instant::now();
            let mut loss_sum = 0.0;
            let mut diag = serde_json::Value::Null;
            let mut epoch_views = 0usize;
            for (i, (inputs, n_views)) in data.epoch(epoch, device).enumerate() {
                let t0 = Instant::now();
                let lr = cosine_with_warmup(
                    step,
                    total_steps,
                    warmup_steps,
                    config.optim.lr,
                    config.optim.final_lr,
                );
                let progress = Progress {
                    step,
                    total_steps,
                    steps_per_epoch,
                    seed: config.train.seed,
                };
                let StepOutput {
                    loss: loss_tensor,
                    z_a,
                    z_b,
                    update,
                } = model.train_step(inputs, &progress);
                let loss: f64 = loss_tensor.clone().into_scalar::<f32>() as f64;
                if !loss.is_finite() {
                    pb.abandon();
                    bail!(
                        "loss is {loss} at epoch {} step {} (global step {}, lr {lr:.3e}); stopping. \
                     The last good checkpoint is {}. Lower optim.lr or check the data.",
                        epoch + 1,
                        i + 1,
                        step + 1,
                        last_good_text(&last_ckpt)
                    );
                }
                if i + 1 == steps_per_epoch {
                    diag = diagnostics(z_a, z_b, M::PAIRED_VIEWS)?;
                }
                let grads = GradientsParams::from_grads(loss_tensor.backward(), &model);
                model = optim.step(lr, model, grads);
                // A finite loss can hide a diverged model (e.g. BatchNorm running variances
                // overflowed to inf); check the whole state so no step goes on from it.
                if let Some((name, value)) = checkpoint::first_non_finite(&named_tensors(&model)) {
                    pb.abandon();
                    bail!(
                        "model tensor `{name}` is {value} after epoch {} step {} (global step {}, lr {lr:.3e}); stopping. \
                     The last good checkpoint is {}. Lower optim.lr or check the data.",
                        epoch + 1,
                        i + 1,
                        step + 1,
                        last_good_text(&last_ckpt)
                    );
                }
                // After the parameters moved: EMA teacher, queue, center.
                model = model.update(update, &progress);
                step += 1;
                loss_sum += loss;
                let dt = t0.elapsed().as_secs_f64();
                views += n_views;
                epoch_views += n_views;
                pb.inc(1);
                pb.set_message(format!(
                    "loss {loss:.4} lr {lr:.4} {:.0} views/s",
                    n_views as f64 / dt
                ));
                log.write(json!({"type": "step", "epoch": epoch + 1, "step": step, "loss": loss, "lr": lr, "step_seconds": dt}))?;
            }
            let epoch_seconds = epoch_start.elapsed().as_secs_f64();
            train_seconds += epoch_seconds;
            final_loss = loss_sum / steps_per_epoch as f64;
            let throughput = epoch_views as f64 / epoch_seconds;
            let mut record = json!({"type": "epoch", "epoch": epoch + 1, "step": step, "loss": final_loss, "seconds": epoch_seconds,
            "views_per_second": throughput, "diagnostics": diag});
            let unit = data.throughput_unit();
            if unit != "views" {
                record[format!("{unit}_per_second")] = json!(throughput);
            }
            if config.train.knn_every > 0 && (epoch + 1) % config.train.knn_every == 0 {
                let figures = data.evaluate(&model)?;
                let shown: Vec<String> = figures.iter().map(|(k, v)| format!("{k} {v}")).collect();
                pb.println(format!("epoch {}: {}", epoch + 1, shown.join(", ")));
                for (k, v) in figures {
                    record[k] = v;
                }
            }
            if let Some(rank) = record["diagnostics"]["effective_rank"].as_f64() {
                if rank < 2.0 {
                    pb.println(format!("warning: epoch {}: effective rank of the embeddings is {rank:.2}: the representation is collapsing", epoch + 1));
                }
            }
            log.write(record)?;
            if (epoch + 1) % config.train.checkpoint_every == 0 || epoch + 1 == end_epoch {
                last_ckpt = save_checkpoint(&out, &config, &model, &optim, epoch + 1, step)?;
            }
        }
        pb.finish_and_clear();
        Ok(PretrainSummary {
            epochs: end_epoch,
            steps: step,
            final_loss,
            train_seconds,
            views_per_second: if train_seconds > 0.0 {
                views as f64 / train_seconds
            } else {
                0.0
            },
            images,
            checkpoint: last_ckpt,
            skipped_corrupt,
        })
    }
}
