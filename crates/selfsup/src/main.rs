//! `selfsup`: self-supervised pretraining and evaluation from the command line, a thin layer
//! over the library (`selfsup::Pretrain`, `selfsup::Evaluate`, `selfsup::report`).
//!
//! Every subcommand's last line on stdout is one JSON object with its figures.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use selfsup::{
    Evaluate, FinetuneMode, FinetuneRequest, Pretrain, ProveOptions, QuickstartOptions, Recipe,
    ReportOptions, Result, Split, TaskOptions,
};
use serde_json::Value;

/// mimalloc, with freed memory kept mapped: see [`selfsup::alloc`].
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "selfsup",
    version,
    about = "Self-supervised learning: pretrain encoders on unlabeled images, audio or text, evaluate with few labels"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Pretrain an encoder without labels (images: SimCLR, MoCo, …; audio: masked_frames, cpc,
    /// audio_simclr; text: mlm, causal_lm, electra).
    Pretrain(PretrainCmd),
    /// Evaluate a checkpoint's frozen encoder (any modality).
    #[command(subcommand)]
    Eval(EvalCmd),
    /// Write a checkpoint's embeddings of a dataset split, with labels and sample names.
    Embed {
        #[command(flatten)]
        common: EvalCommon,
        #[arg(long, value_enum, default_value = "test")]
        split: SplitArg,
        /// FILE.safetensors (embeddings, labels, paths in metadata) or FILE.npy (+ FILE.labels.npy, FILE.paths.txt).
        #[arg(long)]
        out: PathBuf,
        /// Only N samples, evenly spaced over the split (so every class of a folder dataset shows up).
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
    },
    /// Write a checkpoint's encoder for another framework (image ResNets: torchvision).
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
    /// map of test embeddings, pictures of what the model sees, few-label tables (prove*.json).
    Report(ReportCmd),
    /// Train a classifier on a stratified subset of the training labels, on the checkpoint's
    /// encoder (or from scratch), and test it on the whole test split.
    Finetune(FinetuneCmd),
    /// Pretrained vs from scratch with few labels: kNN, linear probe, fine-tune and scratch at
    /// each label subset; writes RUN/prove.md and RUN/prove.json.
    Prove(ProveCmd),
    /// Install Fashion-MNIST if missing, pretrain a small encoder for a few minutes, and compare
    /// its kNN accuracy with the same encoder at random initialisation.
    Quickstart {
        /// Run directory.
        #[arg(long, default_value = "runs/quickstart")]
        out: PathBuf,
        /// Override a value of configs/quickstart_fashion_mnist.toml (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
        /// Start over even if --out holds an earlier quickstart run.
        #[arg(long)]
        fresh: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum SplitArg {
    Train,
    Test,
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

/// The checkpoint and data of a downstream command.
#[derive(Args)]
struct TaskArgs {
    /// A checkpoint written by `selfsup pretrain` (RUN_DIR/checkpoints/epoch_NNNN.safetensors).
    #[arg(long)]
    checkpoint: PathBuf,
    /// Labelled dataset with train and test splits; default: the checkpoint's data.path.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Compute device (default: the checkpoint's train.device): cpu, vulkan, libtorch (CPU), cuda (LibTorch on the GPU).
    #[arg(long)]
    device: Option<String>,
    /// Images: skip unreadable files (counted) instead of stopping.
    #[arg(long)]
    skip_corrupt: bool,
    /// Text checkpoints: the sequence embedding, `cls` ([CLS] output), `mean` (mean over the
    /// tokens) or `last` (the last token's output). Default: the checkpoint's text.pooling.
    #[arg(long)]
    pooling: Option<String>,
}

impl TaskArgs {
    fn evaluate(&self) -> Evaluate {
        let mut e = Evaluate::checkpoint(&self.checkpoint)
            .skip_corrupt(self.skip_corrupt)
            .pooling(self.pooling.clone());
        if let Some(d) = &self.data {
            e = e.data(d);
        }
        if let Some(d) = &self.device {
            e = e.device(d);
        }
        e
    }
}

#[derive(Args)]
struct EvalCommon {
    #[command(flatten)]
    task: TaskArgs,
    /// Evaluate the same architecture at random initialisation instead of the checkpoint's weights.
    #[arg(long)]
    random_init: bool,
    /// Leave the test split alone: hold out this stratified fraction of the train split
    /// (seeded by train.seed) as the queries and use the rest as the labelled train set, for
    /// choosing hyper-parameters.
    #[arg(long, value_name = "FRACTION", allow_negative_numbers = true)]
    validation: Option<f64>,
}

impl EvalCommon {
    fn evaluate(&self) -> Evaluate {
        self.task
            .evaluate()
            .random_init(self.random_init)
            .validation(self.validation)
    }
}

#[derive(Subcommand)]
enum EvalCmd {
    /// Weighted kNN on L2-normalised embeddings (cosine similarity).
    Knn {
        #[command(flatten)]
        common: EvalCommon,
        #[arg(long)]
        k: Option<usize>,
        #[arg(long)]
        temperature: Option<f64>,
    },
    /// Linear classifier on frozen embeddings.
    Linear {
        #[command(flatten)]
        common: EvalCommon,
        #[arg(long, default_value_t = 30)]
        epochs: usize,
        #[arg(long, default_value_t = 1e-3)]
        lr: f32,
    },
}

/// Training settings shared by `finetune` and `prove`.
#[derive(Args, Clone)]
struct RecipeArgs {
    /// Labelled samples per batch (full mode and the linear probe). Default: 64 for images,
    /// 32 for audio and text.
    #[arg(long)]
    batch_size: Option<usize>,
    /// Peak learning rate of the head (full mode; cosine decay to 0). Default: 0.05 (SGD, no
    /// warm-up) for images, 5e-4 (AdamW, 10 % warm-up) for audio, 1e-4 (AdamW, 10 % warm-up)
    /// for text.
    #[arg(long, allow_negative_numbers = true)]
    lr: Option<f64>,
    /// Backbone learning rate = lr × this, for a pretrained backbone (full mode): the new,
    /// randomly initialised head learns at the full rate while the pretrained features adapt
    /// more slowly. From scratch the backbone always gets the full lr (this flag is ignored),
    /// so the baseline is not handicapped. Default: 0.5 for images, 1 for audio and text.
    #[arg(long, allow_negative_numbers = true)]
    backbone_lr_mult: Option<f64>,
    /// Weight decay (full mode). Default: 5e-4 (SGD) for images, 0.01 (AdamW) for audio and
    /// text.
    #[arg(long, allow_negative_numbers = true)]
    weight_decay: Option<f64>,
    /// Optimizer steps of full mode, exactly (--budget is then ignored). Default: whole epochs
    /// over the labelled subset, max(1, round(S / labels)) of them with floor(labels / batch)
    /// batches each (drop_last), times --budget; S = 20000 for images (280 steps at 500
    /// labels, 312 at 5,000), 7500 for audio (150 steps at 50 labels), 10000 for text (280
    /// steps at 250 labels).
    #[arg(long)]
    steps: Option<usize>,
    /// Multiplier of the default number of steps (`--budget 3`: 840 at 500 labels).
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    budget: f64,
    /// Epochs of the linear probe on frozen features (Adam, lr 1e-3, standardised features).
    #[arg(long, default_value_t = 100)]
    linear_epochs: usize,
    /// Seeds the label subset, the head, the random init (--from-scratch), order and augmentation.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// LP-FT (Kumar et al. 2022), full mode: start the head from a linear probe
    /// (--linear-epochs, Adam lr 1e-3, unnormalised features) on the frozen encoder's
    /// embeddings of the labelled samples instead of at random, then fine-tune as usual.
    /// Applies alike to a pretrained encoder and to --from-scratch.
    #[arg(long)]
    lp_ft: bool,
    /// Score on a stratified fraction of the *training* samples held out (chosen by the
    /// checkpoint's train.seed, the same for every --seed, as `eval knn --validation`) instead
    /// of the test split; label subsets are drawn from the other training samples.
    #[arg(long, allow_negative_numbers = true)]
    validation: Option<f64>,
}

impl RecipeArgs {
    fn recipe(&self) -> Recipe {
        Recipe {
            batch_size: self.batch_size,
            lr: self.lr,
            backbone_lr_mult: self.backbone_lr_mult,
            weight_decay: self.weight_decay,
            steps: self.steps,
            budget: self.budget,
            linear_epochs: self.linear_epochs,
            seed: self.seed,
            lp_ft: self.lp_ft,
            validation: self.validation,
            ..Recipe::default()
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum ModeArg {
    /// Linear classifier on frozen features.
    Linear,
    /// Backbone and linear head trained together.
    Full,
}

#[derive(Args)]
struct FinetuneCmd {
    #[command(flatten)]
    task: TaskArgs,
    /// Fraction of each class's training labels to use, in (0, 1] (e.g. 0.01, 0.1, 1).
    #[arg(
        long,
        conflicts_with = "labels_per_class",
        allow_negative_numbers = true
    )]
    label_fraction: Option<f64>,
    /// Training labels per class (instead of --label-fraction).
    #[arg(long)]
    labels_per_class: Option<usize>,
    /// `linear`: linear classifier on frozen features; `full`: fine-tune backbone and head.
    #[arg(long, value_enum, default_value = "full")]
    mode: ModeArg,
    /// Train the same architecture from random initialisation (seeded by --seed) with the same
    /// recipe and budget; the backbone then gets the full --lr (no --backbone-lr-mult).
    #[arg(long)]
    from_scratch: bool,
    #[command(flatten)]
    recipe: RecipeArgs,
    /// No per-step progress on stderr.
    #[arg(long)]
    quiet: bool,
}

#[derive(Args)]
struct ProveCmd {
    #[command(flatten)]
    task: TaskArgs,
    /// Label fractions, comma-separated, each in (0, 1]. Default 0.01,0.1 when
    /// --labels-per-class is not given either.
    #[arg(long, value_delimiter = ',', allow_hyphen_values = true)]
    fractions: Vec<f64>,
    /// Labels per class, comma-separated (e.g. 5): subsets besides (or instead of) --fractions.
    #[arg(long, value_delimiter = ',')]
    labels_per_class: Vec<usize>,
    /// Seeds, comma-separated (e.g. 0,1,2): every figure per seed, then mean ± std.
    /// Default: --seed.
    #[arg(long, value_delimiter = ',')]
    seeds: Vec<u64>,
    #[command(flatten)]
    recipe: RecipeArgs,
    /// Where to write prove.md and prove.json (prove_budgetB.* when --budget is not 1);
    /// default: the checkpoint's run directory.
    #[arg(long)]
    out: Option<PathBuf>,
    /// No per-step progress on stderr.
    #[arg(long)]
    quiet: bool,
}

#[derive(Args)]
struct ReportCmd {
    /// Run directory written by `selfsup pretrain --out` (metrics.jsonl, checkpoints/).
    run_dir: PathBuf,
    /// Checkpoint whose encoder embeds the test samples (default: the run's newest).
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// Labelled dataset with a test split (default: the checkpoint's data.path).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Test samples in the t-SNE map (stratified by class); 0 leaves the map out.
    #[arg(long, default_value_t = 2000)]
    points: usize,
}

fn to_json(v: impl serde::Serialize) -> Value {
    serde_json::to_value(v).expect("figures serialise")
}

fn pretrain(cmd: PretrainCmd) -> Result<Value> {
    let mut run = Pretrain::new(&cmd.out)
        .resume(cmd.resume)
        .quiet(cmd.quiet)
        .stop_after(cmd.stop_after);
    if let Some(c) = &cmd.config {
        run = run.config(c);
    }
    for o in &cmd.overrides {
        run = run.set(o);
    }
    if let Some(d) = &cmd.data {
        run = run.data(d);
    }
    if cmd.skip_corrupt {
        run = run.set("data.skip_corrupt=true");
    }
    let s = run.run()?;
    if selfsup::dist::is_writer() {
        eprintln!(
            "pretrained {} epochs ({} steps) in {:.1} min, {:.0} views/s; checkpoint {}",
            s.epochs,
            s.steps,
            s.train_seconds / 60.0,
            s.views_per_second,
            s.checkpoint.display()
        );
    }
    Ok(to_json(s))
}

fn eval(cmd: EvalCmd) -> Result<Value> {
    match cmd {
        EvalCmd::Knn {
            common,
            k,
            temperature,
        } => common.evaluate().knn_with(k, temperature).map(to_json),
        EvalCmd::Linear { common, epochs, lr } => common.evaluate().linear(epochs, lr).map(to_json),
    }
}

fn finetune(cmd: FinetuneCmd) -> Result<Value> {
    let subset =
        selfsup::selfsup_core::recipe::subset_spec(cmd.label_fraction, cmd.labels_per_class)?;
    let request = FinetuneRequest {
        subset,
        mode: match cmd.mode {
            ModeArg::Linear => FinetuneMode::Linear,
            ModeArg::Full => FinetuneMode::Full,
        },
        from_scratch: cmd.from_scratch,
        recipe: cmd.recipe.recipe(),
        quiet: cmd.quiet,
    };
    cmd.task.evaluate().finetune(&request)
}

fn prove(cmd: ProveCmd) -> Result<Value> {
    let options = ProveOptions {
        fractions: cmd.fractions,
        labels_per_class: cmd.labels_per_class,
        seeds: cmd.seeds,
        recipe: cmd.recipe.recipe(),
        out_dir: cmd.out.unwrap_or_default(),
        quiet: cmd.quiet,
        checkpoint: PathBuf::new(),
        data: PathBuf::new(),
        modality: "",
    };
    cmd.task.evaluate().prove(options)
}

fn main() {
    selfsup::alloc::keep_freed_memory();
    let cli = Cli::parse();
    // Under `mpirun`/`srun` every process joins the group; only `pretrain` is data-parallel.
    let membership = match selfsup::dist::init() {
        Ok(m) => m,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    let group = selfsup::dist::world();
    if group.world() > 1 && !matches!(cli.command, Command::Pretrain(_)) {
        eprintln!(
            "error: only `selfsup pretrain` runs on several processes; run this command without mpirun/srun"
        );
        group.abort(2);
    }
    let result = match cli.command {
        Command::Pretrain(c) => pretrain(c),
        Command::Eval(c) => eval(c),
        Command::Embed {
            common,
            split,
            out,
            limit,
        } => {
            let split = match split {
                SplitArg::Train => Split::Train,
                SplitArg::Test => Split::Test,
            };
            common.evaluate().embed(split, limit, &out).map(to_json)
        }
        Command::Export {
            checkpoint,
            format,
            out,
        } => Evaluate::checkpoint(checkpoint).export(&format, &out),
        Command::Report(c) => {
            let options = ReportOptions {
                run_dir: c.run_dir,
                points: c.points,
            };
            let task = TaskOptions {
                data: c.data,
                ..TaskOptions::default()
            };
            selfsup::report(&options, c.checkpoint.as_deref(), &task).map(to_json)
        }
        Command::Finetune(c) => finetune(c),
        Command::Prove(c) => prove(c),
        Command::Quickstart {
            out,
            overrides,
            fresh,
        } => selfsup::quickstart(&QuickstartOptions {
            out,
            overrides,
            fresh,
        })
        .map(to_json),
    };
    match result {
        Ok(v) => {
            if group.rank() == 0 {
                println!("{v}");
            }
            drop(membership);
        }
        Err(e) if group.world() > 1 => {
            eprintln!("error (rank {} of {}): {e}", group.rank(), group.world());
            // The other ranks may be waiting in a collective: end them all.
            group.abort(1);
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn finetune_flags_map_onto_the_recipe() {
        let cli = Cli::try_parse_from([
            "selfsup",
            "finetune",
            "--checkpoint",
            "c.safetensors",
            "--labels-per-class",
            "5",
            "--lr",
            "0.01",
            "--lp-ft",
            "--validation",
            "0.1",
            "--steps",
            "7",
        ])
        .unwrap();
        let Command::Finetune(c) = cli.command else {
            panic!("finetune")
        };
        let r = c.recipe.recipe();
        assert_eq!(
            (r.lr, r.steps, r.lp_ft, r.validation),
            (Some(0.01), Some(7), true, Some(0.1))
        );
        assert_eq!(c.labels_per_class, Some(5));
    }
}
