//! `selfsup prove`: does pretraining pay off with few labels? For each label subset (label
//! fractions and/or labels per class) and each seed: kNN of the random-init and the pretrained
//! encoder, a linear probe, a full fine-tune, and the same architecture trained from scratch
//! with the same recipe and budget; then mean ± sample std over the seeds. Any modality.
//!
//! Output schema (`prove.json`, also the last stdout line), read by `selfsup report`:
//! ```text
//! { "checkpoint", "data", "modality", "budget", "seeds", "recipe": {lr, backbone_lr_mult,
//!   weight_decay, batch_size, linear_epochs, steps (null = default rule), augmentation},
//!   "test_images", "seconds",
//!   "rows": [ { "subset", "fraction" | "labels_per_class", "seed", "labels", "steps", "budget",
//!               "knn_random_init_top1", "knn_top1", "linear_top1", "linear_top5",
//!               "finetune_top1", "finetune_top5", "scratch_top1", "scratch_top5",
//!               "finetune_seconds", "scratch_seconds" } ],
//!   "summary": [ { "subset", "seeds", "<metric>_mean", "<metric>_std" for each top-1,
//!                  "gap_mean" (fine-tune − scratch) } ],
//!   "files": [markdown, json] }
//! ```
//! Accuracies are fractions in [0, 1] on the whole test split; top-5 is null with ≤ 5 classes.
//! kNN uses the labelled subset as its memory bank.

use std::path::PathBuf;
use std::time::Instant;

use selfsup_eval::{Features, SubsetSpec, knn_classify, linear_probe, select_labels};
use serde_json::{Value, json};

use crate::bail;
use crate::downstream::Eval;
use crate::error::{Context, Result};
use crate::finetune;
use crate::modality::{DownstreamTask, Init};
use crate::recipe::{self, Recipe};

/// What `prove` compares.
#[derive(Debug, Clone)]
pub struct ProveOptions {
    /// Label fractions, each in (0, 1].
    pub fractions: Vec<f64>,
    /// Labels per class (subsets besides, or instead of, the fractions).
    pub labels_per_class: Vec<usize>,
    /// Every figure per seed, then mean ± std; empty: the recipe's seed.
    pub seeds: Vec<u64>,
    pub recipe: Recipe,
    /// Where prove.md and prove.json go (prove_budgetB.* when the budget is not 1).
    pub out_dir: PathBuf,
    /// No per-step progress on stderr.
    pub quiet: bool,
    /// Recorded in the result files.
    pub checkpoint: PathBuf,
    pub data: PathBuf,
    pub modality: &'static str,
}

impl ProveOptions {
    /// Every setting checked before any work; the subsets to run.
    pub fn subsets(&self) -> Result<Vec<SubsetSpec>> {
        if let Some(bad) = self.fractions.iter().find(|&&f| !(f > 0.0 && f <= 1.0)) {
            bail!("--fractions: {bad} is not in (0, 1]");
        }
        if self.labels_per_class.contains(&0) {
            bail!("--labels-per-class: every count must be ≥ 1");
        }
        let mut specs: Vec<SubsetSpec> = self
            .fractions
            .iter()
            .map(|&f| SubsetSpec::Fraction(f))
            .collect();
        specs.extend(
            self.labels_per_class
                .iter()
                .map(|&n| SubsetSpec::PerClass(n)),
        );
        if specs.is_empty() {
            specs = vec![SubsetSpec::Fraction(0.01), SubsetSpec::Fraction(0.1)];
        }
        self.recipe.validate()?;
        Ok(specs)
    }
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

/// The top-1 figures summarised over seeds.
const METRICS: [&str; 5] = [
    "knn_random_init_top1",
    "knn_top1",
    "linear_top1",
    "finetune_top1",
    "scratch_top1",
];

/// A subset's name in tables: `1%` or `5/class`.
fn subset_name(spec: SubsetSpec) -> String {
    match spec {
        SubsetSpec::Fraction(f) => format!("{}%", 100.0 * f),
        SubsetSpec::PerClass(n) => format!("{n}/class"),
    }
}

fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 {
        v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (m, var.sqrt())
}

/// Mean and sample std over the seeds of each subset's finished figures.
fn summarise(rows: &[Value]) -> Vec<Value> {
    let mut names: Vec<&str> = Vec::new();
    for r in rows {
        let n = r["subset"].as_str().unwrap_or("");
        if !names.contains(&n) {
            names.push(n);
        }
    }
    names
        .into_iter()
        .map(|name| {
            let of: Vec<&Value> = rows.iter().filter(|r| r["subset"] == name).collect();
            let mut s = json!({"subset": name, "seeds": of.len(), "labels": of[0]["labels"]});
            for m in METRICS {
                let v: Vec<f64> = of.iter().filter_map(|r| r[m].as_f64()).collect();
                if !v.is_empty() {
                    let (mean, std) = mean_std(&v);
                    s[format!("{m}_mean")] = json!(mean);
                    s[format!("{m}_std")] = json!(std);
                }
            }
            let gaps: Vec<f64> = of
                .iter()
                .filter_map(|r| Some(r["finetune_top1"].as_f64()? - r["scratch_top1"].as_f64()?))
                .collect();
            if !gaps.is_empty() {
                let (mean, std) = mean_std(&gaps);
                s["gap_mean"] = json!(mean);
                s["gap_std"] = json!(std);
            }
            s
        })
        .collect()
}

fn pm(s: &Value, key: &str) -> String {
    match (
        s[format!("{key}_mean")].as_f64(),
        s[format!("{key}_std")].as_f64(),
    ) {
        (Some(m), Some(sd)) => format!("{:.1} ± {:.1}", 100.0 * m, 100.0 * sd),
        _ => "–".into(),
    }
}

fn markdown(result: &Value) -> String {
    let mut md = format!(
        "# Few labels: pretrained vs from scratch\n\n\
         Checkpoint `{}`, data `{}`, budget ×{}, seeds {}. Top-1 % on {} ({} samples).\n\
         Recipe: {}.\n\n",
        result["checkpoint"].as_str().unwrap_or(""),
        result["data"].as_str().unwrap_or(""),
        result["budget"],
        result["seeds"],
        match result["recipe"]["validation"].as_f64() {
            Some(f) => format!("a held-out {f} of the training images (validation)"),
            None => "the whole test split".to_string(),
        },
        result["test_images"],
        result["recipe"],
    );
    md.push_str(
        "## Mean ± sample std over seeds\n\n\
         | labels | seeds | kNN random init | kNN | linear probe | fine-tune | scratch | fine-tune − scratch |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    for s in result["summary"].as_array().into_iter().flatten() {
        md.push_str(&format!(
            "| {} ({}) | {} | {} | {} | {} | {} | {} | {} |\n",
            s["subset"].as_str().unwrap_or(""),
            s["labels"],
            s["seeds"],
            pm(s, "knn_random_init_top1"),
            pm(s, "knn_top1"),
            pm(s, "linear_top1"),
            pm(s, "finetune_top1"),
            pm(s, "scratch_top1"),
            pm(s, "gap"),
        ));
    }
    md.push_str(
        "\n## Per seed\n\n\
         | labels | seed | kNN random init | kNN | linear probe | fine-tune | scratch | fine-tune − scratch | steps | fine-tune / scratch time (s) |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in result["rows"].as_array().into_iter().flatten() {
        let gap = match (r["finetune_top1"].as_f64(), r["scratch_top1"].as_f64()) {
            (Some(f), Some(s)) => format!("{:+.1}", 100.0 * (f - s)),
            _ => "–".into(),
        };
        md.push_str(&format!(
            "| {} ({}) | {} | {} | {} | {} | {} | {} | {} | {} | {:.0} / {:.0} |\n",
            r["subset"].as_str().unwrap_or(""),
            r["labels"],
            r["seed"],
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

/// The whole comparison on `eval` (its recipe defaults already applied to `options.recipe`),
/// saved as each figure exists; returns prove.json's contents.
pub fn prove<T: DownstreamTask>(eval: &Eval<T>, options: &ProveOptions) -> Result<Value> {
    let specs = options.subsets()?;
    let recipe = &options.recipe;
    let seeds = if options.seeds.is_empty() {
        vec![recipe.seed]
    } else {
        options.seeds.clone()
    };
    let out_dir = &options.out_dir;
    std::fs::create_dir_all(out_dir)
        .with_context(|| format!("--out: cannot create {}", out_dir.display()))?;
    let stem = file_stem(recipe.budget);
    let (md_path, json_path) = (
        out_dir.join(format!("{stem}.md")),
        out_dir.join(format!("{stem}.json")),
    );

    let t_all = Instant::now();
    let (train_labels, test_labels) = (&eval.train_labels()?, &eval.test_labels()?);
    let mut recipe_json = recipe.to_json();
    recipe_json["augmentation"] = json!(eval.task.augmentation());
    let mut result = json!({
        "checkpoint": options.checkpoint, "data": options.data, "modality": options.modality,
        "budget": recipe.budget, "seeds": seeds, "recipe": recipe_json,
        "test_images": test_labels.len(), "rows": [], "summary": [], "files": [md_path, json_path],
    });
    // Each figure is saved as soon as it exists (null until then): on a busy machine a row
    // takes long, and an interrupted run keeps what it measured.
    let save = |result: &mut Value, key: (&str, u64), row: Value| -> Result<()> {
        let rows = result["rows"].as_array_mut().expect("rows");
        let same = |r: &Value| r["subset"] == json!(key.0) && r["seed"] == json!(key.1);
        match rows.iter_mut().find(|r| same(r)) {
            Some(r) => {
                for (k, v) in row.as_object().expect("object") {
                    r[k] = v.clone();
                }
            }
            None => rows.push(row),
        }
        result["summary"] = json!(summarise(result["rows"].as_array().expect("rows")));
        result["seconds"] = json!(t_all.elapsed().as_secs_f64());
        crate::fs::write_atomic(
            &json_path,
            (serde_json::to_string_pretty(result)? + "\n").as_bytes(),
        )?;
        crate::fs::write_atomic(&md_path, markdown(result).as_bytes())
    };
    let knn_cfg = eval.knn_config();
    for &seed in &seeds {
        let recipe = &Recipe {
            seed,
            ..recipe.clone()
        };
        let subsets = specs
            .iter()
            .map(|&s| recipe::label_subset(train_labels, s, seed))
            .collect::<Result<Vec<_>>>()?;
        let mut union: Vec<usize> = subsets.iter().flatten().copied().collect();
        union.sort_unstable();
        union.dedup();
        // Frozen features, extracted once per encoder and seed, shared by kNN and the probe.
        let t = Instant::now();
        let (pre_train, pre_test) = eval.features(Init::Pretrained, Some(&union))?;
        let (rnd_train, rnd_test) = eval.features(Init::Random { seed }, Some(&union))?;
        eprintln!(
            "seed {seed}: features of {} train + {} test samples in {:.0} s",
            union.len(),
            test_labels.len(),
            t.elapsed().as_secs_f64()
        );
        for (&spec, subset) in specs.iter().zip(&subsets) {
            let name = subset_name(spec);
            let labels = select_labels(train_labels, subset);
            let rows = positions(&union, subset);
            let steps = recipe.steps_for(subset.len());
            eprintln!(
                "{name}, seed {seed}: {} labels, {steps} steps",
                subset.len()
            );
            let knn = |train: &Features, test: &Features| -> Result<f64> {
                Ok(knn_classify(&train.select(&rows), &labels, test, test_labels, &knn_cfg)?.top1)
            };
            let knn_random_init_top1 = knn(&rnd_train, &rnd_test)?;
            let knn_top1 = knn(&pre_train, &pre_test)?;
            let linear = linear_probe(
                &pre_train.select(&rows),
                &labels,
                &pre_test,
                test_labels,
                &recipe.linear_probe_config(),
            )?;
            eprintln!(
                "  kNN random init {:.2}%, kNN {:.2}%, linear probe {:.2}%",
                100.0 * knn_random_init_top1,
                100.0 * knn_top1,
                100.0 * linear.test_top1
            );
            let mut row = json!({
                "subset": name, "seed": seed, "labels": subset.len(), "steps": steps,
                "budget": recipe.budget, "batch_size": recipe.batch_for(subset.len()),
                "knn_random_init_top1": knn_random_init_top1, "knn_top1": knn_top1,
                "linear_top1": linear.test_top1, "linear_top5": linear.test_top5,
                "finetune_top1": null, "finetune_top5": null,
                "scratch_top1": null, "scratch_top5": null,
                "finetune_seconds": null, "scratch_seconds": null,
                "finetune_final_loss": null, "scratch_final_loss": null,
            });
            match spec {
                SubsetSpec::Fraction(f) => row["fraction"] = json!(f),
                SubsetSpec::PerClass(n) => row["labels_per_class"] = json!(n),
            }
            save(&mut result, (&name, seed), row)?;
            // The same recipe and budget on the pretrained encoder, then from random init.
            for (what, init) in [
                ("finetune", Init::Pretrained),
                ("scratch", Init::Random { seed }),
            ] {
                let r = finetune::finetune(eval, init, subset, recipe, options.quiet)?;
                eprintln!("  {what} {:.2}%", 100.0 * r.top1);
                save(
                    &mut result,
                    (&name, seed),
                    json!({
                        format!("{what}_top1"): r.top1,
                        format!("{what}_top5"): r.top5,
                        format!("{what}_seconds"): r.train_seconds + r.test_seconds,
                        format!("{what}_final_loss"): r.final_loss,
                    }),
                )?;
            }
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
    fn summary_is_mean_and_sample_std_over_seeds() {
        let rows = vec![
            json!({"subset": "5/class", "labels": 50, "finetune_top1": 0.5, "scratch_top1": 0.4}),
            json!({"subset": "5/class", "labels": 50, "finetune_top1": 0.7, "scratch_top1": 0.4}),
            json!({"subset": "10%", "labels": 270, "finetune_top1": 0.8, "scratch_top1": null}),
        ];
        let s = summarise(&rows);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0]["seeds"], 2);
        assert!((s[0]["finetune_top1_mean"].as_f64().unwrap() - 0.6).abs() < 1e-12);
        // sample std of (0.5, 0.7) = 0.1414…
        assert!((s[0]["finetune_top1_std"].as_f64().unwrap() - 0.02f64.sqrt()).abs() < 1e-12);
        assert!((s[0]["gap_mean"].as_f64().unwrap() - 0.2).abs() < 1e-12);
        assert!(s[1]["scratch_top1_mean"].is_null() && s[1]["gap_mean"].is_null());
    }

    #[test]
    fn subset_rows_in_the_union() {
        assert_eq!(positions(&[2, 5, 7, 9], &[5, 9]), vec![1, 3]);
    }
}
