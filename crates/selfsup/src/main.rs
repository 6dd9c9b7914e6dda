//! `selfsup`: self-supervised pretraining and evaluation from the command line.
//!
//! Every subcommand's last line on stdout is one JSON object with its figures.

mod audio;
mod data;
mod downstream;
mod embed;
mod encoder;
mod export;
mod features;
mod finetune;
mod pretext;
mod pretrain;
mod prove;
mod quickstart;
mod report;
mod spectrogram_png;
mod text;
mod train_data;

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use selfsup_data::Split;
use selfsup_eval::{KnnConfig, LinearProbeConfig, knn_classify, linear_probe};
use serde_json::json;

use selfsup::{checkpoint, config, device};

use crate::config::Config;

/// mimalloc, with freed memory kept mapped: see [`selfsup::alloc`].
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "selfsup",
    version,
    about = "Self-supervised learning: pretrain encoders on unlabeled data, evaluate with few labels"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Pretrain an encoder without labels (images: SimCLR, MoCo, …; audio: masked_frames, cpc;
    /// text: mlm, causal_lm).
    Pretrain(PretrainCmd),
    /// Evaluate a checkpoint's frozen backbone.
    #[command(subcommand)]
    Eval(EvalCmd),
    /// Write backbone embeddings of a dataset split, with labels and source paths.
    Embed {
        #[command(flatten)]
        common: EvalCommon,
        /// `train` or `test`.
        #[arg(long, default_value = "test")]
        split: String,
        /// FILE.safetensors (embeddings, labels, paths in metadata) or FILE.npy (+ FILE.labels.npy, FILE.paths.txt).
        #[arg(long)]
        out: PathBuf,
        /// Only N images, evenly spaced over the split (so every class of a folder dataset shows up).
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
    },
    /// Write a checkpoint's backbone for another framework.
    Export {
        #[arg(long)]
        checkpoint: PathBuf,
        /// `torchvision`: parameter names and layouts of torchvision's ResNet (load_state_dict, strict=True).
        #[arg(long, default_value = "torchvision")]
        format: String,
        /// FILE.safetensors
        #[arg(long)]
        out: PathBuf,
    },
    /// HTML report of a run: loss, learning rate, kNN and collapse diagnostics per epoch, a t-SNE
    /// map of test embeddings, few-label tables (prove*.json).
    Report(report::ReportArgs),
    /// Train a classifier on a stratified subset of the training labels, on the checkpoint's
    /// encoder (or from scratch), and test it on the whole test split.
    Finetune(finetune::FinetuneArgs),
    /// Pretrained vs from scratch with few labels: kNN, linear probe, fine-tune and scratch at
    /// each label fraction; writes RUN/prove.md and RUN/prove.json.
    Prove(prove::ProveArgs),
    /// Install Fashion-MNIST if missing, pretrain a small encoder for a few minutes, and compare
    /// its kNN accuracy with the same encoder at random initialisation.
    Quickstart(quickstart::QuickstartArgs),
}

#[derive(Args)]
struct PretrainCmd {
    /// TOML config (see configs/); defaults apply to keys it omits.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Override a config value, e.g. --set train.epochs=10 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// Dataset path (same as --set data.path=PATH).
    #[arg(long)]
    data: Option<String>,
    /// Run directory for checkpoints and metrics.jsonl.
    #[arg(long, default_value = "runs/latest")]
    out: PathBuf,
    /// Continue the run in --out from its newest good checkpoint.
    #[arg(long)]
    resume: bool,
    /// Skip unreadable images (counted) instead of stopping at the first.
    #[arg(long)]
    skip_corrupt: bool,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    /// Stop after N epochs of this invocation (checkpointed); `--resume` continues the run.
    #[arg(long, value_name = "N")]
    stop_after: Option<usize>,
}

#[derive(Args)]
struct EvalCommon {
    /// A checkpoint written by `selfsup pretrain` (RUN_DIR/checkpoints/epoch_NNNN.safetensors).
    #[arg(long)]
    checkpoint: PathBuf,
    /// Labelled dataset with train and test splits; default: the checkpoint's data.path.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Evaluate the same architecture at random initialisation instead of the checkpoint's weights.
    #[arg(long)]
    random_init: bool,
    #[arg(long)]
    skip_corrupt: bool,
    /// Compute device (default: the checkpoint's train.device): cpu, vulkan, libtorch.
    #[arg(long)]
    device: Option<String>,
    /// Leave the test split alone: hold out this stratified fraction of the train split
    /// (seeded by train.seed) as the queries and use the rest as the labelled train set, for
    /// choosing hyper-parameters.
    #[arg(long, value_name = "FRACTION")]
    validation: Option<f64>,
}

#[derive(Subcommand)]
enum EvalCmd {
    /// Weighted kNN on L2-normalised backbone features (cosine similarity).
    Knn {
        #[command(flatten)]
        common: EvalCommon,
        #[arg(long)]
        k: Option<usize>,
        #[arg(long)]
        temperature: Option<f64>,
    },
    /// Linear classifier on frozen backbone features.
    Linear {
        #[command(flatten)]
        common: EvalCommon,
        #[arg(long, default_value_t = 30)]
        epochs: usize,
        #[arg(long, default_value_t = 1e-3)]
        lr: f32,
    },
}

fn print_json(v: serde_json::Value) {
    println!("{v}");
}

fn pretrain_cmd(cmd: PretrainCmd) -> Result<()> {
    let mut overrides = cmd.overrides;
    if let Some(d) = cmd.data {
        overrides.push(format!("data.path=\"{d}\""));
    }
    if cmd.skip_corrupt {
        overrides.push("data.skip_corrupt=true".into());
    }
    let config = Config::load(cmd.config.as_deref(), &overrides)?;
    if config.data.path.is_empty() && !cmd.resume {
        anyhow::bail!("no dataset: set data.path in the config or pass --data PATH");
    }
    let summary = pretrain::run(pretrain::PretrainArgs {
        config,
        out: cmd.out.clone(),
        resume: cmd.resume,
        base_dir: std::env::current_dir()?,
        quiet: cmd.quiet,
        stop_after: cmd.stop_after,
    })?;
    eprintln!(
        "pretrained {} epochs ({} steps) in {:.1} min, {:.0} views/s; checkpoint {}",
        summary.epochs,
        summary.steps,
        summary.train_seconds / 60.0,
        summary.views_per_second,
        summary.checkpoint.display()
    );
    print_json(json!({
        "epochs": summary.epochs, "steps": summary.steps, "final_loss": summary.final_loss,
        "train_seconds": summary.train_seconds, "views_per_second": summary.views_per_second,
        "images": summary.images, "skipped_corrupt": summary.skipped_corrupt,
        "checkpoint": summary.checkpoint, "run_dir": cmd.out,
    }));
    Ok(())
}

struct EvalData {
    config: Config,
    backbone: selfsup_models::Backbone,
    data_path: PathBuf,
    cache: PathBuf,
}

fn eval_setup(common: &EvalCommon) -> Result<EvalData> {
    let (config, mut backbone) =
        encoder::load_backbone(&common.checkpoint, common.device.as_deref())?;
    if common.random_init {
        backbone = encoder::random_init_backbone(&config)?;
    }
    let data_path = match &common.data {
        Some(d) => d.clone(),
        None => PathBuf::from(&config.data.path),
    };
    let run_dir = common.checkpoint.parent().and_then(Path::parent);
    let cache = data::cache_dir(&config, run_dir);
    Ok(EvalData {
        config,
        backbone,
        data_path,
        cache,
    })
}

fn eval_features(
    e: &EvalData,
    common: &EvalCommon,
) -> Result<[(selfsup_eval::Features, Vec<u32>); 2]> {
    let skip = common.skip_corrupt;
    match common.validation {
        Some(f) => {
            features::train_validation(&e.config, &e.backbone, &e.data_path, &e.cache, skip, f)
        }
        None => features::train_test(&e.config, &e.backbone, &e.data_path, &e.cache, skip),
    }
}

/// What the evaluated queries are: the test split, or the held-out part of the train split.
fn query_split(common: &EvalCommon) -> &'static str {
    if common.validation.is_some() {
        "held-out train (validation)"
    } else {
        "test"
    }
}

fn eval_cmd(cmd: EvalCmd) -> Result<()> {
    match cmd {
        EvalCmd::Knn {
            common,
            k,
            temperature,
        } => {
            let e = eval_setup(&common)?;
            let k = k.unwrap_or(e.config.eval.knn_k);
            let t = temperature.unwrap_or(e.config.eval.knn_temperature);
            if k == 0 || !(t > 0.0) {
                anyhow::bail!("--k must be ≥ 1 and --temperature > 0 (got k={k}, temperature={t})");
            }
            let [(ftr, ltr), (fte, lte)] = eval_features(&e, &common)?;
            let r = knn_classify(
                &ftr,
                &ltr,
                &fte,
                &lte,
                &KnnConfig {
                    k,
                    temperature: t as f32,
                    ..Default::default()
                },
            )?;
            for n in &r.notes {
                eprintln!("note: {n}");
            }
            eprintln!(
                "kNN (k={}, T={t}) top-1 {:.2}% on {} {} images",
                r.k,
                100.0 * r.top1,
                fte.n,
                query_split(&common)
            );
            print_json(
                json!({"knn_top1": r.top1, "knn_top5": r.top5, "k": r.k, "temperature": t,
                "images": fte.n, "train_images": ftr.n, "random_init": common.random_init,
                "validation": common.validation}),
            );
        }
        EvalCmd::Linear { common, epochs, lr } => {
            let e = eval_setup(&common)?;
            let [(ftr, ltr), (fte, lte)] = eval_features(&e, &common)?;
            let cfg = LinearProbeConfig {
                epochs,
                lr,
                seed: e.config.train.seed,
                ..Default::default()
            };
            let r = linear_probe(&ftr, &ltr, &fte, &lte, &cfg)?;
            eprintln!(
                "linear probe top-1 {:.2}% on {} {} images (train {:.2}%)",
                100.0 * r.test_top1,
                fte.n,
                query_split(&common),
                100.0 * r.train_top1
            );
            print_json(
                json!({"linear_top1": r.test_top1, "linear_top5": r.test_top5, "train_top1": r.train_top1,
                "images": fte.n, "train_images": ftr.n, "epochs": epochs, "random_init": common.random_init,
                "validation": common.validation}),
            );
        }
    }
    Ok(())
}

/// `n` indices spread evenly over `0..len` (all of them when `n ≥ len`).
fn evenly_spaced(len: usize, n: usize) -> Vec<usize> {
    let n = n.min(len);
    (0..n).map(|i| i * len / n).collect()
}

fn embed_cmd(common: EvalCommon, split: &str, out: &Path, limit: Option<usize>) -> Result<()> {
    if limit == Some(0) {
        anyhow::bail!("--limit must be at least 1");
    }
    let split = match split {
        "train" => Split::Train,
        "test" => Split::Test,
        other => anyhow::bail!("--split `{other}`: use train or test"),
    };
    let e = eval_setup(&common)?;
    let dataset = data::open(&e.data_path, split, &e.cache, common.skip_corrupt)?;
    let dev = device::select(&e.config.train.device)?;
    let pipe = data::eval_pipeline(&e.config)?;
    let indices = match limit {
        Some(n) => evenly_spaced(dataset.len(), n),
        None => (0..dataset.len()).collect(),
    };
    let paths = indices
        .iter()
        .map(|&i| dataset.path(i).display().to_string())
        .collect();
    let class_names = dataset.class_names().to_vec();
    let (features, labels) = features::extract(
        &e.backbone,
        dataset,
        Some(indices),
        pipe,
        e.config.eval.batch_size,
        e.config.data.workers,
        &dev,
    )?;
    let (n, dim) = (features.n, features.dim);
    let written = embed::write(
        out,
        &embed::Embeddings {
            features,
            labels,
            paths,
            class_names,
        },
    )?;
    eprintln!(
        "wrote {n} embeddings of dimension {dim} to {}",
        written
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    print_json(
        json!({"images": n, "dim": dim, "files": written, "random_init": common.random_init}),
    );
    Ok(())
}

fn export_cmd(checkpoint: &Path, format: &str, out: &Path) -> Result<()> {
    if format != "torchvision" {
        anyhow::bail!("--format `{format}` is not supported: use torchvision");
    }
    let (config, backbone) = encoder::load_backbone(checkpoint, Some("cpu"))?;
    let Some(resnet) = backbone.as_resnet() else {
        anyhow::bail!(
            "checkpoint {} holds a {} encoder; --format torchvision exports ResNets only (torchvision has no matching ViT layout). Use `selfsup embed` for its features",
            checkpoint.display(),
            config.model.backbone
        );
    };
    let state = checkpoint::load(checkpoint)?.state;
    let tensors = export::torchvision_tensors(resnet, state.global_step as i64);
    export::write(
        out,
        &tensors,
        export::metadata(&config, checkpoint, state.epoch),
    )?;
    eprintln!(
        "wrote {} tensors of {} (width {}, {} stem) in torchvision layout to {}",
        tensors.len(),
        config.model.backbone,
        config.model.width,
        config.model.stem,
        out.display()
    );
    print_json(
        json!({"format": format, "out": out, "tensors": tensors.len(),
        "architecture": config.model.backbone, "width": config.model.width, "stem": config.model.stem}),
    );
    Ok(())
}

fn main() {
    selfsup::alloc::keep_freed_memory();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Pretrain(c) => pretrain_cmd(c),
        Command::Eval(c) => eval_cmd(c),
        Command::Quickstart(a) => quickstart::run(a),
        Command::Embed {
            common,
            split,
            out,
            limit,
        } => embed_cmd(common, &split, &out, limit),
        Command::Export {
            checkpoint,
            format,
            out,
        } => export_cmd(&checkpoint, &format, &out),
        Command::Report(a) => report::run(a),
        Command::Finetune(a) => finetune::run(a).map(print_json),
        Command::Prove(a) => prove::run(a).map(print_json),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
