//! `selfsup quickstart`: the whole loop on a fresh machine in a few minutes: Fashion-MNIST
//! (installed from Debian when missing), a short SimCLR pretraining of a small ResNet on CPU,
//! and kNN accuracy of the pretrained encoder next to the same encoder at random initialisation.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::json;

use crate::config::Config;
use crate::pretrain;

#[derive(Args)]
pub struct QuickstartArgs {
    /// Run directory.
    #[arg(long, default_value = "runs/quickstart")]
    out: PathBuf,
    /// Override a value of configs/quickstart_fashion_mnist.toml (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// Start over even if --out holds an earlier quickstart run.
    #[arg(long)]
    fresh: bool,
}

/// The quickstart recipe, compiled in so the command works from any directory.
const RECIPE: &str = include_str!("../../../configs/quickstart_fashion_mnist.toml");

fn fashion_mnist_present(dir: &Path) -> bool {
    ["train-images-idx3-ubyte", "t10k-images-idx3-ubyte"]
        .iter()
        .all(|f| dir.join(f).exists() || dir.join(format!("{f}.gz")).exists())
}

/// Fashion-MNIST from Debian's `dataset-fashion-mnist` package, installed if missing.
fn ensure_fashion_mnist() -> Result<PathBuf> {
    let dir = selfsup_data::fashion_mnist_dir();
    if fashion_mnist_present(&dir) {
        return Ok(dir);
    }
    eprintln!(
        "Fashion-MNIST not found in {}; installing Debian's dataset-fashion-mnist",
        dir.display()
    );
    let apt = |args: &[&str]| -> Result<bool> {
        Ok(std::process::Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .context("cannot run apt-get")?
            .success())
    };
    if !apt(&["install", "-y", "-q", "dataset-fashion-mnist"])? {
        apt(&["update", "-q"])?;
        if !apt(&["install", "-y", "-q", "dataset-fashion-mnist"])? {
            bail!(
                "could not install dataset-fashion-mnist (run `apt-get install -y dataset-fashion-mnist` as root, \
                 or point SELFSUP_FASHION_MNIST at a folder with the IDX files)"
            );
        }
    }
    if !fashion_mnist_present(&dir) {
        bail!(
            "dataset-fashion-mnist is installed but {} holds no IDX files",
            dir.display()
        );
    }
    Ok(dir)
}

pub fn run(args: QuickstartArgs) -> Result<()> {
    let start = Instant::now();
    let data_dir = ensure_fashion_mnist()?;
    let recipe: toml::Table =
        toml::from_str(RECIPE).expect("built-in quickstart recipe is valid TOML");
    let recipe_path =
        std::env::temp_dir().join(format!("selfsup-quickstart-{}.toml", std::process::id()));
    std::fs::write(&recipe_path, toml::to_string(&recipe)?)?;
    let mut overrides = vec![format!("data.path=\"{}\"", data_dir.display())];
    overrides.extend(args.overrides);
    let config = Config::load(Some(&recipe_path), &overrides)?;
    let _ = std::fs::remove_file(&recipe_path);
    if args.fresh && args.out.join("checkpoints").exists() {
        std::fs::remove_dir_all(args.out.join("checkpoints"))?;
        let _ = std::fs::remove_file(args.out.join("metrics.jsonl"));
    }
    let resume = !crate::checkpoint::list(&args.out).is_empty();
    eprintln!(
        "quickstart: SimCLR on {} Fashion-MNIST images, ResNet-18 width {}, {} epochs (run dir {})",
        config.data.limit,
        config.model.width,
        config.train.epochs,
        args.out.display()
    );
    let summary = pretrain::run(pretrain::PretrainArgs {
        config: config.clone(),
        out: args.out.clone(),
        resume,
        base_dir: std::env::current_dir()?,
        quiet: false,
        stop_after: None,
    })?;
    let cache = crate::data::cache_dir(&config, Some(&args.out));
    let data_path = config.data_path(Path::new("."));
    eprintln!(
        "kNN evaluation (k={}, T={}) on the 10,000 test images…",
        config.eval.knn_k, config.eval.knn_temperature
    );
    let (_, backbone) = crate::encoder::load_backbone(&summary.checkpoint, None)?;
    let (pretrained, images) = pretrain::knn_eval(&config, &backbone, &data_path, &cache)?;
    let random = crate::encoder::random_init_backbone(&config)?;
    let (random_top1, _) = pretrain::knn_eval(&config, &random, &data_path, &cache)?;
    let total = start.elapsed().as_secs_f64();
    eprintln!(
        "kNN top-1: pretrained {:.2}%  vs  random init {:.2}%  ({:+.2} points); {:.1} min in all",
        100.0 * pretrained,
        100.0 * random_top1,
        100.0 * (pretrained - random_top1),
        total / 60.0
    );
    println!(
        "{}",
        json!({"knn_top1": pretrained, "knn_top1_random_init": random_top1, "images": images,
            "pretrain_seconds": summary.train_seconds, "total_seconds": total, "views_per_second": summary.views_per_second,
            "checkpoint": summary.checkpoint})
    );
    Ok(())
}
