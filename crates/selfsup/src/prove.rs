//! `selfsup prove`: does pretraining pay off with few labels? At each label fraction: kNN of
//! the random-init and the pretrained encoder, a linear probe, a full fine-tune, and the same
//! architecture trained from scratch with the same recipe and budget.
//!
//! Output schema (`prove.json`, also the last stdout line), read by `selfsup report`:
//! ```text
//! { "checkpoint", "data", "budget", "seed", "recipe": {lr, backbone_lr_mult, weight_decay,
//!   batch_size, linear_epochs, steps (null = default rule)}, "test_images", "seconds",
//!   "rows": [ { "fraction", "labels", "steps", "budget",
//!               "knn_random_init_top1", "knn_top1", "linear_top1", "linear_top5",
//!               "finetune_top1", "finetune_top5", "scratch_top1", "scratch_top5",
//!               "finetune_seconds", "scratch_seconds" } ],
//!   "files": [markdown, json] }
//! ```
//! Accuracies are fractions in [0, 1] on the whole test split; top-5 is null with ≤ 5 classes.
//! kNN uses the labelled subset as its memory bank.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use selfsup_data::Split;
use selfsup_eval::{Features, KnnConfig, SubsetSpec, knn_classify, select_labels};
use selfsup_models::Backbone;
use serde_json::{Value, json};

use crate::finetune::{self, Recipe};
use crate::{data, device, encoder, features};

#[derive(Args)]
pub struct ProveArgs {
    /// A checkpoint written by `selfsup pretrain`.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Labelled dataset with train and test splits; default: the checkpoint's data.path.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Label fractions, comma-separated, each in (0, 1].
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "0.01,0.1",
        allow_hyphen_values = true
    )]
    pub fractions: Vec<f64>,
    #[command(flatten)]
    pub recipe: Recipe,
    /// Where to write prove.md and prove.json (prove_budgetB.* when --budget is not 1);
    /// default: the checkpoint's run directory.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Compute device (default: the checkpoint's train.device): cpu, vulkan, libtorch.
    #[arg(long)]
    pub device: Option<String>,
    #[arg(long)]
    pub skip_corrupt: bool,
    /// No per-step progress on stderr.
    #[arg(long)]
    pub quiet: bool,
}

/// `prove` or `prove_budget3` / `prove_budget1.5`: several budgets can share a run directory.
fn file_stem(budget: f64) -> String {
    if budget == 1.0 {
        "prove".into()
    } else {
        format!("prove_budget{budget}")
    }
}

fn pct(v: &Value) -> String {
    v.as_f64()
        .map(|x| format!("{:.1}", 100.0 * x))
        .unwrap_or_else(|| "–".into())
}

fn markdown(result: &Value) -> String {
    let mut md = format!(
        "# Few labels: pretrained vs from scratch\n\n\
         Checkpoint `{}`, data `{}`, budget ×{}, seed {}. Top-1 % on the whole test split ({} images).\n\
         Recipe: {}.\n\n\
         | labels | kNN random init | kNN | linear probe | fine-tune | scratch | fine-tune − scratch | steps | fine-tune / scratch time (s) |\n\
         |---|---|---|---|---|---|---|---|---|\n",
        result["checkpoint"].as_str().unwrap_or(""),
        result["data"].as_str().unwrap_or(""),
        result["budget"],
        result["seed"],
        result["test_images"],
        result["recipe"],
    );
    for r in result["rows"].as_array().into_iter().flatten() {
        let gap = match (r["finetune_top1"].as_f64(), r["scratch_top1"].as_f64()) {
            (Some(f), Some(s)) => format!("{:+.1}", 100.0 * (f - s)),
            _ => "–".into(),
        };
        md.push_str(&format!(
            "| {:.3}% ({}) | {} | {} | {} | {} | {} | {} | {} | {:.0} / {:.0} |\n",
            100.0 * r["fraction"].as_f64().unwrap_or(0.0),
            r["labels"],
            pct(&r["knn_random_init_top1"]),
            pct(&r["knn_top1"]),
            pct(&r["linear_top1"]),
            pct(&r["finetune_top1"]),
            pct(&r["scratch_top1"]),
            gap,
            r["steps"],
            r["finetune_seconds"].as_f64().unwrap_or(0.0),
            r["scratch_seconds"].as_f64().unwrap_or(0.0),
        ));
    }
    md
}

/// Row positions in `union` (ascending dataset indices) of each index of `subset`.
fn positions(union: &[usize], subset: &[usize]) -> Vec<usize> {
    subset
        .iter()
        .map(|i| union.binary_search(i).expect("subset ⊂ union"))
        .collect()
}

/// Train features of the labelled images (`union`, ascending) and test features of every image.
struct SplitFeatures {
    train: Features,
    test: Features,
}

pub fn run(args: ProveArgs) -> Result<Value> {
    // Everything that can be wrong with the arguments is reported before any work.
    if args.fractions.is_empty() {
        bail!("--fractions: give at least one fraction, e.g. 0.01,0.1");
    }
    if let Some(bad) = args.fractions.iter().find(|&&f| !(f > 0.0 && f <= 1.0)) {
        bail!("--fractions: {bad} is not in (0, 1]");
    }
    let specs: Vec<SubsetSpec> = args
        .fractions
        .iter()
        .map(|&f| SubsetSpec::Fraction(f))
        .collect();
    let recipe = &args.recipe;
    recipe.validate()?;
    let src = finetune::load_source(
        &args.checkpoint,
        args.data.as_deref(),
        args.device.as_deref(),
        recipe.seed,
        false,
    )?;
    let out_dir = match &args.out {
        Some(d) => d.clone(),
        None => args
            .checkpoint
            .parent()
            .and_then(Path::parent)
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf(),
    };
    std::fs::create_dir_all(&out_dir)
        .with_context(|| format!("--out: cannot create {}", out_dir.display()))?;
    let stem = file_stem(recipe.budget);
    let (md_path, json_path) = (
        out_dir.join(format!("{stem}.md")),
        out_dir.join(format!("{stem}.json")),
    );

    let t_all = Instant::now();
    let config = &src.config;
    let random_init = encoder::random_init_backbone(config)?;
    let train = data::open(&src.data_path, Split::Train, &src.cache, args.skip_corrupt)?;
    let test = data::open(&src.data_path, Split::Test, &src.cache, args.skip_corrupt)?;
    let train_labels = finetune::split_labels(&train, "train")?;
    let test_labels = finetune::split_labels(&test, "test")?;
    let subsets = specs
        .iter()
        .map(|&s| finetune::label_subset(&train_labels, s, recipe.seed))
        .collect::<Result<Vec<_>>>()?;
    let mut union: Vec<usize> = subsets.iter().flatten().copied().collect();
    union.sort_unstable();
    union.dedup();

    // Frozen features, extracted once per encoder and shared by kNN and the linear probe.
    let dev = device::select(&config.train.device)?;
    let pipe = data::eval_pipeline(config)?;
    let extract = |backbone: &Backbone, what: &str| -> Result<SplitFeatures> {
        let t = Instant::now();
        let (b, w) = (config.eval.batch_size, config.data.workers);
        let (train_f, _) = features::extract(
            backbone,
            train.clone(),
            Some(union.clone()),
            pipe.clone(),
            b,
            w,
            &dev,
        )?;
        let (test_f, _) = features::extract_all(backbone, test.clone(), pipe.clone(), b, w, &dev)?;
        eprintln!(
            "{what} features: {} train + {} test images in {:.0} s",
            train_f.n,
            test_f.n,
            t.elapsed().as_secs_f64()
        );
        Ok(SplitFeatures {
            train: train_f,
            test: test_f,
        })
    };
    let pretrained_f = extract(&src.backbone, "pretrained")?;
    let random_f = extract(&random_init, "random-init")?;
    let knn_cfg = KnnConfig {
        k: config.eval.knn_k,
        temperature: config.eval.knn_temperature as f32,
        ..Default::default()
    };
    let knn = |f: &SplitFeatures, rows: &[usize], labels: &[u32]| -> Result<f64> {
        let r = knn_classify(
            &f.train.select(rows),
            labels,
            &f.test,
            &test_labels,
            &knn_cfg,
        )?;
        Ok(r.top1)
    };

    let recipe_json = json!({
        "lr": recipe.lr, "backbone_lr_mult": recipe.backbone_lr_mult,
        "weight_decay": recipe.weight_decay, "momentum": 0.9, "batch_size": recipe.batch_size,
        "linear_epochs": recipe.linear_epochs, "steps": recipe.steps,
        "augmentation": "RandomCrop(input_size, padding=4) + HorizontalFlip",
    });
    let mut result = json!({
        "checkpoint": args.checkpoint, "data": src.data_path, "budget": recipe.budget,
        "seed": recipe.seed, "recipe": recipe_json, "test_images": test.len(),
        "rows": [], "files": [md_path, json_path],
    });
    for (&fraction, subset) in args.fractions.iter().zip(&subsets) {
        let labels = select_labels(&train_labels, subset);
        let rows = positions(&union, subset);
        eprintln!(
            "fraction {fraction}: {} labels, {} steps",
            subset.len(),
            recipe.steps_for(subset.len())
        );
        // Each figure is saved as soon as it exists (null until then): on a busy machine a
        // row takes long, and an interrupted run keeps what it measured.
        let save = |result: &mut Value, row: Value| -> Result<()> {
            let rows = result["rows"].as_array_mut().expect("rows");
            match rows.iter_mut().find(|r| r["fraction"] == json!(fraction)) {
                Some(r) => {
                    for (k, v) in row.as_object().expect("object") {
                        r[k] = v.clone();
                    }
                }
                None => rows.push(row),
            }
            result["seconds"] = json!(t_all.elapsed().as_secs_f64());
            std::fs::write(&json_path, serde_json::to_string_pretty(result)? + "\n")
                .with_context(|| format!("cannot write {}", json_path.display()))?;
            std::fs::write(&md_path, markdown(result))
                .with_context(|| format!("cannot write {}", md_path.display()))
        };
        let knn_random_init_top1 = knn(&random_f, &rows, &labels)?;
        let knn_top1 = knn(&pretrained_f, &rows, &labels)?;
        let linear = finetune::train_linear(
            &pretrained_f.train.select(&rows),
            &labels,
            &pretrained_f.test,
            &test_labels,
            recipe,
        )?;
        eprintln!(
            "  kNN random init {:.2}%, kNN {:.2}%, linear probe {:.2}%",
            100.0 * knn_random_init_top1,
            100.0 * knn_top1,
            100.0 * linear.test_top1
        );
        let steps = recipe.steps_for(subset.len());
        save(
            &mut result,
            json!({
                "fraction": fraction, "labels": subset.len(), "steps": steps,
                "budget": recipe.budget, "batch_size": recipe.batch_for(subset.len()),
                "knn_random_init_top1": knn_random_init_top1, "knn_top1": knn_top1,
                "linear_top1": linear.test_top1, "linear_top5": linear.test_top5,
                "finetune_top1": null, "finetune_top5": null,
                "scratch_top1": null, "scratch_top5": null,
                "finetune_seconds": null, "scratch_seconds": null,
                "finetune_final_loss": null, "scratch_final_loss": null,
            }),
        )?;
        // The same recipe and budget on the pretrained encoder, then from random initialisation.
        for (name, backbone, pretrained) in [
            ("finetune", &src.backbone, true),
            ("scratch", &random_init, false),
        ] {
            eprintln!(
                "  {}",
                if pretrained {
                    "fine-tuning the pretrained encoder"
                } else {
                    "training from scratch"
                }
            );
            let r = finetune::train_full(
                config,
                backbone,
                pretrained,
                train.clone(),
                subset,
                test.clone(),
                recipe,
                args.quiet,
            )?;
            eprintln!("  {name} {:.2}%", 100.0 * r.top1);
            save(
                &mut result,
                json!({
                    format!("{name}_top1"): r.top1,
                    format!("{name}_top5"): r.top5,
                    format!("{name}_seconds"): r.train_seconds + r.test_seconds,
                    format!("{name}_final_loss"): r.final_loss,
                }),
            )?;
        }
    }
    eprint!("{}", markdown(&result));
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_in_file_names() {
        assert_eq!(file_stem(1.0), "prove");
        assert_eq!(file_stem(3.0), "prove_budget3");
        assert_eq!(file_stem(1.5), "prove_budget1.5");
    }

    #[test]
    fn subset_rows_in_the_union() {
        assert_eq!(positions(&[2, 5, 7, 9], &[5, 9]), vec![1, 3]);
    }
}
