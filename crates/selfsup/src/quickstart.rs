//! The quickstart: the whole loop on a fresh machine in a few minutes: Fashion-MNIST
//! (installed from Debian when missing), a short SimCLR pretraining of a small ResNet on CPU,
//! and kNN accuracy of the pretrained encoder next to the same encoder at random initialisation.

use std::path::{Path, PathBuf};
use std::time::Instant;

use selfsup_core::{Context, Result, bail};

use crate::{Evaluate, Pretrain};

/// How the quickstart runs.
#[derive(Debug, Clone)]
pub struct QuickstartOptions {
    /// Run directory.
    pub out: PathBuf,
    /// Overrides of configs/quickstart_fashion_mnist.toml.
    pub overrides: Vec<String>,
    /// Start over even if `out` holds an earlier quickstart run.
    pub fresh: bool,
}

/// What the quickstart measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct QuickstartSummary {
    pub knn_top1: f64,
    pub knn_top1_random_init: f64,
    pub images: usize,
    pub pretrain_seconds: f64,
    pub total_seconds: f64,
    pub views_per_second: f64,
    pub checkpoint: PathBuf,
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

/// Installs Fashion-MNIST if missing, pretrains for a few minutes (or resumes an earlier
/// quickstart in `options.out`), and compares kNN accuracy with random initialisation.
pub fn quickstart(options: &QuickstartOptions) -> Result<QuickstartSummary> {
    let start = Instant::now();
    let data_dir = ensure_fashion_mnist()?;
    let recipe_path =
        std::env::temp_dir().join(format!("selfsup-quickstart-{}.toml", std::process::id()));
    std::fs::write(&recipe_path, RECIPE)
        .with_context(|| format!("cannot write {}", recipe_path.display()))?;
    let out = &options.out;
    if options.fresh && out.join("checkpoints").exists() {
        std::fs::remove_dir_all(out.join("checkpoints"))?;
        let _ = std::fs::remove_file(out.join("metrics.jsonl"));
    }
    let resume = !crate::checkpoint::list(out).is_empty();
    let mut run = Pretrain::new(out).config(&recipe_path).data(&data_dir);
    for o in &options.overrides {
        run = run.set(o);
    }
    eprintln!(
        "quickstart: SimCLR on Fashion-MNIST ({}), run dir {}",
        data_dir.display(),
        out.display()
    );
    let summary = run.resume(resume).run();
    let _ = std::fs::remove_file(&recipe_path);
    let summary = summary?;
    eprintln!("kNN evaluation on the 10,000 test images…");
    let eval = Evaluate::checkpoint(&summary.checkpoint);
    let pretrained = eval.knn()?;
    let random = eval.clone().random_init(true).knn()?;
    let total = start.elapsed().as_secs_f64();
    eprintln!(
        "kNN top-1: pretrained {:.2}%  vs  random init {:.2}%  ({:+.2} points); {:.1} min in all",
        100.0 * pretrained.knn_top1,
        100.0 * random.knn_top1,
        100.0 * (pretrained.knn_top1 - random.knn_top1),
        total / 60.0
    );
    Ok(QuickstartSummary {
        knn_top1: pretrained.knn_top1,
        knn_top1_random_init: random.knn_top1,
        images: pretrained.images,
        pretrain_seconds: summary.train_seconds,
        total_seconds: total,
        views_per_second: summary.views_per_second,
        checkpoint: summary.checkpoint,
    })
}
