//! Self-supervised pretraining: one loop ([`Run::train`]) for every method and modality. A
//! [`TrainData`] supplies the batches and the per-epoch evaluation; the run directory holds
//! `config.toml`, `metrics.jsonl` and `checkpoints/epoch_NNNN.safetensors`, and `--resume`
//! continues from the newest checkpoint that loads.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::optim::GradientsParams;
use burn::prelude::*;
use indicatif::{ProgressBar, ProgressStyle};
use selfsup_eval::Features;
use selfsup_methods::method::{Progress, SslMethod, StepOutput};
use selfsup_methods::optim::cosine_with_warmup;
use selfsup_models::{NamedTensor, load_named_tensors, named_tensors};
use serde::Serialize;
use serde_json::json;

use crate::bail;
use crate::checkpoint::{self, Checkpoint, FORMAT, RunState};
use crate::config::{RunConfig, Schema};
use crate::error::{Context, Error, Result};

/// Named figures of one evaluation, merged into the epoch record of `metrics.jsonl`.
pub type Figures = serde_json::Map<String, serde_json::Value>;

/// Where the one pretraining loop takes its batches and its per-epoch evaluation from: one
/// implementation per modality.
pub trait TrainData<M: SslMethod> {
    /// Training samples (images, clips, documents) per epoch.
    fn samples(&self) -> usize;

    fn steps_per_epoch(&self) -> usize;

    /// What the throughput counts (`views`; `tokens` for text): the epoch record's
    /// `<unit>_per_second`.
    fn throughput_unit(&self) -> &'static str {
        "views"
    }

    /// The batches of epoch `epoch` (reproducible from the run's seed and the epoch), each with
    /// its size in [`throughput_unit`](Self::throughput_unit)s.
    fn epoch<'a>(
        &'a self,
        epoch: usize,
        device: &'a Device,
    ) -> Box<dyn Iterator<Item = (M::Input, usize)> + 'a>;

    /// Whether [`epoch`](Self::epoch) yields only this data-parallel rank's part of each global
    /// batch (see `selfsup_data::Shard`); data that does not cannot train on several processes.
    fn sharded(&self) -> bool {
        false
    }

    /// Held-out figures of the model, every `train.knn_every` epochs: images and audio the
    /// test-split top-1 accuracy of a kNN classifier on the encoder's embeddings (`knn_top1`),
    /// text the language model's accuracy and perplexity on held-out documents.
    fn evaluate(&self, model: &M) -> Result<Figures>;
}

/// `{"knn_top1": top1}`.
pub fn knn_figures(top1: f64) -> Figures {
    let mut f = Figures::new();
    f.insert("knn_top1".into(), top1.into());
    f
}

/// How a pretraining run is started, besides its config.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The run directory.
    pub out: PathBuf,
    /// Continue the run in `out` from its newest checkpoint that loads.
    pub resume: bool,
    /// Where relative data paths are resolved (the current directory).
    pub base_dir: PathBuf,
    /// No progress bar.
    pub quiet: bool,
    /// Stop after this many epochs of this invocation; `resume` continues the run.
    pub stop_after: Option<usize>,
}

impl RunOptions {
    /// A fresh run into `out`, relative paths against the current directory, with a progress
    /// bar.
    pub fn new(out: impl Into<PathBuf>) -> Self {
        Self {
            out: out.into(),
            resume: false,
            base_dir: std::env::current_dir().unwrap_or_default(),
            quiet: false,
            stop_after: None,
        }
    }
}

/// What a pretraining run did.
#[derive(Debug, Clone, Serialize)]
pub struct PretrainSummary {
    /// Epochs completed in the run (this invocation and before).
    pub epochs: usize,
    pub steps: usize,
    pub final_loss: f64,
    pub train_seconds: f64,
    pub views_per_second: f64,
    /// Training samples per epoch.
    pub images: usize,
    /// The newest checkpoint.
    pub checkpoint: PathBuf,
    /// Unreadable images skipped with `--skip-corrupt`.
    pub skipped_corrupt: usize,
    pub run_dir: PathBuf,
}

/// A pretraining run handed to its modality: the config, the run directory, the checkpoint it
/// resumes from and the (autodiff) device.
pub struct Run<M: Schema> {
    pub config: RunConfig<M>,
    pub options: RunOptions,
    pub resumed: Option<Checkpoint>,
    pub device: Device,
    /// Unreadable samples the data skipped (`data.skip_corrupt`), for the start record.
    pub skipped_corrupt: usize,
}

/// Appends one JSON object per line to `metrics.jsonl` (on the writing rank; elsewhere a sink).
struct MetricsLog(Option<(std::fs::File, PathBuf)>);

impl MetricsLog {
    fn open(out: &Path, writer: bool) -> Result<Self> {
        if !writer {
            return Ok(Self(None));
        }
        let path = out.join("metrics.jsonl");
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        Ok(Self(Some((f, path))))
    }

    fn write(&mut self, v: serde_json::Value) -> Result<()> {
        let Some((file, path)) = &mut self.0 else {
            return Ok(());
        };
        // One write per record, so a kill rarely leaves half a line (resume repairs it anyway).
        file.write_all(format!("{v}\n").as_bytes())
            .with_context(|| format!("cannot append to {}", path.display()))
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

fn last_good_text(last_ckpt: &Path) -> String {
    if last_ckpt.as_os_str().is_empty() {
        "none (no epoch finished)".to_string()
    } else {
        last_ckpt.display().to_string()
    }
}

/// `model` with the checkpoint's `model.*` tensors (teacher, queue and center included).
fn restore_model<S: SslMethod>(model: S, c: &Checkpoint) -> Result<S> {
    load_named_tensors(model, &c.section("model"), "").map_err(|e| {
        Error::msg(format!(
            "checkpoint {} does not fit its model: {e}",
            c.path.display()
        ))
    })
}

/// The process's peak resident memory so far (Linux `VmHWM`), `None` where unknown.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// A queued training step whose loss and model-state check the host has not read yet.
struct PendingStep {
    epoch: usize,
    /// Step within the epoch (0-based).
    index: usize,
    /// Global step after this one (1-based).
    step: usize,
    lr: f64,
    n_views: usize,
    loss: Tensor<1>,
    /// Zero when every float tensor of the model was finite after this step's update.
    finite: Tensor<1>,
    /// Since the previous step was queued (with the device kept busy, the step's time).
    seconds: f64,
}

impl PendingStep {
    /// Reads the step back: stops the run on a non-finite loss or model state (naming the step
    /// and the last good checkpoint), else logs it and returns its loss.
    fn resolve<S: SslMethod>(
        self,
        model: &S,
        log: &mut MetricsLog,
        pb: &ProgressBar,
        last_ckpt: &Path,
    ) -> Result<f64> {
        let (epoch, index, step, lr) = (self.epoch + 1, self.index + 1, self.step, self.lr);
        let loss = self.loss.into_scalar::<f32>() as f64;
        if !loss.is_finite() {
            pb.abandon();
            bail!(
                "loss is {loss} at epoch {epoch} step {index} (global step {step}, lr {lr:.3e}); stopping. \
                 The last good checkpoint is {}. Lower optim.lr or check the data.",
                last_good_text(last_ckpt)
            );
        }
        // A finite loss can hide a diverged model (e.g. BatchNorm running variances overflowed
        // to inf); no checkpoint is written from it.
        if !self.finite.into_scalar::<f32>().is_finite() {
            pb.abandon();
            // The model has moved on by one step since; the bad tensor stays bad.
            let tensors = named_tensors(model);
            let what = match checkpoint::first_non_finite(&tensors) {
                Some((name, value)) => format!("model tensor `{name}` is {value}"),
                None => "a model tensor is NaN or inf".to_string(),
            };
            bail!(
                "{what} after epoch {epoch} step {index} (global step {step}, lr {lr:.3e}); stopping. \
                 The last good checkpoint is {}. Lower optim.lr or check the data.",
                last_good_text(last_ckpt)
            );
        }
        let dt = self.seconds;
        pb.inc(1);
        pb.set_message(format!(
            "loss {loss:.4} lr {lr:.4} {:.0} views/s",
            self.n_views as f64 / dt.max(1e-9)
        ));
        log.write(json!({"type": "step", "epoch": epoch, "step": step, "loss": loss, "lr": lr, "step_seconds": dt}))?;
        Ok(loss)
    }
}

/// Averages the gradients over the data-parallel ranks, in one all-reduce of a flat buffer
/// built on the device (parameters in module order, the same on every rank; the step's loss
/// rides along), and returns the mean loss. With each rank's loss a term of the objective (see
/// `selfsup_dist::ops`), the mean gradient is the single-process gradient of the global batch.
/// The buffer stays on the device: on a GPU, NCCL reduces it in place with no host copy.
fn average_over_ranks<M: Module>(
    model: &M,
    grads: &mut GradientsParams,
    loss: Tensor<1>,
) -> Tensor<1> {
    struct Flatten<'a> {
        grads: &'a mut GradientsParams,
        parts: Vec<Tensor<1>>,
        taken: Vec<(burn::module::ParamId, Vec<usize>)>,
    }
    impl burn::module::ModuleVisitor for Flatten<'_> {
        fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
            if let Some(g) = self.grads.remove::<D>(param.id) {
                let dims = g.dims().to_vec();
                self.parts.push(g.reshape([dims.iter().product::<usize>()]));
                self.taken.push((param.id, dims));
            }
        }
    }
    struct Restore<'a> {
        grads: &'a mut GradientsParams,
        flat: &'a Tensor<1>,
        offset: usize,
        taken: std::vec::IntoIter<(burn::module::ParamId, Vec<usize>)>,
    }
    impl burn::module::ModuleVisitor for Restore<'_> {
        fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
            if self
                .taken
                .as_slice()
                .first()
                .is_some_and(|(id, _)| *id == param.id)
            {
                let (id, dims) = self.taken.next().expect("checked");
                let n: usize = dims.iter().product();
                let g = self
                    .flat
                    .clone()
                    .slice(self.offset..self.offset + n)
                    .reshape::<D, _>(<[usize; D]>::try_from(dims).expect("rank D"));
                self.offset += n;
                self.grads.register::<D>(id, g);
            }
        }
    }
    let group = selfsup_dist::world();
    let mut flatten = Flatten {
        grads,
        parts: Vec::new(),
        taken: Vec::new(),
    };
    model.visit(&mut flatten);
    let Flatten {
        grads,
        mut parts,
        taken,
    } = flatten;
    parts.push(loss.without_autodiff());
    let flat = selfsup_dist::ops::all_reduce_sum(Tensor::cat(parts, 0))
        .mul_scalar(1.0 / group.world() as f32);
    let total = flat.dims()[0];
    let mut restore = Restore {
        grads,
        flat: &flat,
        offset: 0,
        taken: taken.into_iter(),
    };
    model.visit(&mut restore);
    flat.slice(total - 1..total)
}

/// Zero when every float tensor of `model` (BatchNorm statistics included) is finite, NaN
/// otherwise: `sum(0 * t)` per tensor, computed on the device so that checking costs no copy.
fn finite_probe<M: Module>(model: &M) -> Tensor<1> {
    struct Probe(Option<Tensor<1>>);
    impl burn::module::ModuleVisitor for Probe {
        fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
            let zero = param.val().mul_scalar(0.0).sum();
            self.0 = Some(match self.0.take() {
                Some(acc) => acc + zero,
                None => zero,
            });
        }
    }
    let valid = model.valid();
    let mut probe = Probe(None);
    valid.visit(&mut probe);
    probe
        .0
        .unwrap_or_else(|| Tensor::zeros([1], &valid.devices()[0]))
}

impl<M: Schema> Run<M> {
    /// Where relative paths of the config are resolved.
    pub fn base_dir(&self) -> &Path {
        &self.options.base_dir
    }

    /// The run directory.
    pub fn out(&self) -> &Path {
        &self.options.out
    }

    fn save_checkpoint<S: SslMethod>(
        &self,
        model: &S,
        optim: &selfsup_methods::optim::Optimizer,
        epoch: usize,
        step: usize,
    ) -> Result<PathBuf> {
        let mut tensors: std::collections::BTreeMap<String, NamedTensor> = named_tensors(model)
            .into_iter()
            .map(|(k, v)| (format!("model.{k}"), v))
            .collect();
        for (k, (shape, values)) in optim.state_dict() {
            tensors.insert(format!("optim.{k}"), NamedTensor { shape, values });
        }
        let state = RunState {
            format: FORMAT.into(),
            method: self.config.method_name().to_string(),
            epoch,
            global_step: step,
            config: self.config.to_toml(),
        };
        let path = checkpoint::epoch_path(self.out(), epoch);
        checkpoint::save(&path, &state, &tensors)?;
        Ok(path)
    }

    /// The training loop, the same for every method and modality: batch → loss → optimizer
    /// step → the method's non-gradient update; metrics, diagnostics, evaluation and
    /// checkpoints per epoch.
    pub fn train<S, D>(self, mut model: S, data: &D) -> Result<PretrainSummary>
    where
        S: SslMethod,
        D: TrainData<S>,
    {
        let config = &self.config;
        let out = self.out().to_path_buf();
        let device = &self.device;
        let images = data.samples();
        let steps_per_epoch = data.steps_per_epoch();
        let total_steps = steps_per_epoch * config.train.epochs;
        let warmup_steps = (config.optim.warmup_epochs * steps_per_epoch as f64).round() as usize;

        let mut optim = config.optimizer()?;
        let (start_epoch, mut step) = match &self.resumed {
            Some(c) => {
                model = restore_model(model, c)?;
                let state = c
                    .section("optim")
                    .into_iter()
                    .map(|(k, t)| (k, (t.shape, t.values)))
                    .collect();
                optim.load_state_dict(&state).map_err(|e| {
                    Error::msg(format!(
                        "checkpoint {}: optimizer state: {e:?}",
                        c.path.display()
                    ))
                })?;
                eprintln!(
                    "resuming after epoch {} (step {})",
                    c.state.epoch, c.state.global_step
                );
                (c.state.epoch, c.state.global_step)
            }
            None => (0, 0),
        };
        let group = selfsup_dist::world();
        let writer = group.rank() == 0;
        if group.world() > 1 && !data.sharded() {
            bail!(
                "{} data cannot be split over {} processes yet; train it with one process",
                M::NAME,
                group.world()
            );
        }
        if writer && self.resumed.is_some() {
            crate::runlog::drop_partial_last_line(&out.join("metrics.jsonl"))?;
        }
        let mut log = MetricsLog::open(&out, writer)?;
        if let Some(c) = &self.resumed {
            // Records after this one replace any the interrupted run wrote past its checkpoint.
            log.write(json!({"type": "resume", "epoch": c.state.epoch, "step": c.state.global_step, "checkpoint": c.path}))?;
        } else {
            log.write(json!({"type": "start", "modality": M::NAME, "images": images, "skipped_corrupt": self.skipped_corrupt,
            "compute_threads": rayon::current_num_threads(), "processes": group.world(), "collectives": group.engine(), "collectives_active": selfsup_dist::active(), "steps_per_epoch": steps_per_epoch, "epochs": config.train.epochs,
            "params_backbone": model.backbone().num_params(), "params_model": model.num_params(), "config": config.to_json()}))?;
        }

        let pb = if self.options.quiet || !writer {
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
        let end_epoch = match self.options.stop_after {
            Some(n) => (start_epoch + n).min(config.train.epochs),
            None => config.train.epochs,
        };
        for epoch in start_epoch..end_epoch {
            pb.set_prefix(format!("epoch {}/{}", epoch + 1, config.train.epochs));
            let epoch_start = Instant::now();
            let mut loss_sum = 0.0;
            let mut diag = serde_json::Value::Null;
            let mut epoch_views = 0usize;
            // Each step's loss and model-state check are read back one step late, so the device
            // always has the next step queued while the host waits (a read blocks until the
            // device has finished that step; on the CPU it costs nothing either way).
            let mut pending: Option<PendingStep> = None;
            let mut last_queued = epoch_start;
            for (i, (inputs, n_views)) in data.epoch(epoch, device).enumerate() {
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
                let mut loss = loss_tensor.clone().detach();
                if i + 1 == steps_per_epoch && writer {
                    diag = diagnostics(z_a, z_b, S::PAIRED_VIEWS)?;
                }
                let mut grads = GradientsParams::from_grads(loss_tensor.backward(), &model);
                if selfsup_dist::active() {
                    loss = average_over_ranks(&model, &mut grads, loss);
                }
                model = optim.step(lr, model, grads);
                let finite = finite_probe(&model);
                // After the parameters moved: EMA teacher, queue, center.
                model = model.update(update, &progress);
                step += 1;
                if let Some(done) = pending.take() {
                    loss_sum += done.resolve(&model, &mut log, &pb, &last_ckpt)?;
                }
                pending = Some(PendingStep {
                    epoch,
                    index: i,
                    step,
                    lr,
                    n_views,
                    loss,
                    finite,
                    seconds: last_queued.elapsed().as_secs_f64(),
                });
                last_queued = Instant::now();
                views += n_views * group.world();
                epoch_views += n_views * group.world();
            }
            if let Some(done) = pending.take() {
                loss_sum += done.resolve(&model, &mut log, &pb, &last_ckpt)?;
            }
            let epoch_seconds = epoch_start.elapsed().as_secs_f64();
            train_seconds += epoch_seconds;
            final_loss = loss_sum / steps_per_epoch as f64;
            let throughput = epoch_views as f64 / epoch_seconds;
            let mut record = json!({"type": "epoch", "epoch": epoch + 1, "step": step, "loss": final_loss, "seconds": epoch_seconds,
            "views_per_second": throughput, "diagnostics": diag, "peak_rss_bytes": peak_rss_bytes()});
            let unit = data.throughput_unit();
            if unit != "views" {
                record[format!("{unit}_per_second")] = json!(throughput);
            }
            if writer && config.train.knn_every > 0 && (epoch + 1) % config.train.knn_every == 0 {
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
                // Other ranks name the checkpoint rank 0 writes.
                last_ckpt = if writer {
                    self.save_checkpoint(&model, &optim, epoch + 1, step)?
                } else {
                    checkpoint::epoch_path(self.out(), epoch + 1)
                };
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
            skipped_corrupt: self.skipped_corrupt,
            run_dir: out,
        })
    }
}
