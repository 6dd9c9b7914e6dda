//! Every subcommand on every modality, through the library API on tiny real data: the table
//! "What works for which modality" of the README. Each cell is either exercised here with its
//! figures checked, or refused with the message checked.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use selfsup::{
    Evaluate, FinetuneMode, FinetuneRequest, Pretrain, PretrainSummary, ProveOptions, Recipe,
    ReportOptions, Split, SubsetSpec, TaskOptions,
};

/// What a modality's tiny run looks like.
struct Case {
    modality: &'static str,
    run: PathBuf,
    checkpoint: PathBuf,
    train: usize,
    test: usize,
    classes: usize,
}

fn pretrain(run: Pretrain, out: &Path) -> PretrainSummary {
    let s = run
        .quiet(true)
        .run()
        .unwrap_or_else(|e| panic!("{}: {e}", out.display()));
    assert!(s.final_loss.is_finite() && s.steps > 0, "{s:?}");
    s
}

fn image(dir: &Path) -> (Case, PathBuf) {
    let data = small_dataset(dir, 8);
    let out = dir.join("image");
    let s = pretrain(
        Pretrain::new(&out)
            .data(&data)
            .set("model.width=4")
            .set("method.projection_dims=[16, 16]")
            .set("train.batch_size=8")
            .set("train.epochs=1")
            .set("data.workers=1")
            .set("eval.knn_k=5"),
        &out,
    );
    let case = Case {
        modality: "image",
        run: out,
        checkpoint: s.checkpoint,
        train: 24,
        test: 24,
        classes: 3,
    };
    (case, data)
}

fn audio(dir: &Path) -> (Case, PathBuf) {
    let data = tiny_fsdd(dir);
    let out = dir.join("audio");
    let mut run = Pretrain::new(&out)
        .config(config("masked_frames_fsdd.toml"))
        .data(&data);
    for s in AUDIO_TINY
        .iter()
        .chain(&["train.epochs=1", "method.mask_span=[3, 6]"])
    {
        run = run.set(s);
    }
    let s = pretrain(run, &out);
    let case = Case {
        modality: "audio",
        run: out,
        checkpoint: s.checkpoint,
        train: 18,
        test: 9,
        classes: 3,
    };
    (case, data)
}

fn text(dir: &Path) -> (Case, PathBuf) {
    let data = tiny_sst2(dir);
    let out = dir.join("text");
    let mut run = Pretrain::new(&out)
        .config(config("mlm_text.toml"))
        .data(&data)
        .set(&format!(
            "text.corpus=[\"{}\"]",
            data.join("train.csv").display()
        ));
    for s in TEXT_TINY.iter().chain(&["train.epochs=1"]) {
        run = run.set(s);
    }
    let s = pretrain(run, &out);
    let case = Case {
        modality: "text",
        run: out,
        checkpoint: s.checkpoint,
        train: 80,
        test: 30,
        classes: 2,
    };
    (case, data)
}

fn accuracy(v: &serde_json::Value, key: &str) -> f64 {
    let a = v[key].as_f64().unwrap_or_else(|| panic!("{key} in {v}"));
    assert!((0.0..=1.0).contains(&a), "{key} = {a}");
    a
}

fn finetune(
    eval: &Evaluate,
    subset: SubsetSpec,
    mode: FinetuneMode,
    recipe: Recipe,
) -> serde_json::Value {
    eval.finetune(&FinetuneRequest {
        subset,
        mode,
        from_scratch: false,
        recipe,
        quiet: true,
    })
    .unwrap()
}

/// eval knn / eval linear / embed / finetune / prove / report / export on one modality.
fn every_subcommand(case: &Case, data: &Path, dir: &Path) {
    let m = case.modality;
    let eval = Evaluate::checkpoint(&case.checkpoint).data(data);

    // eval knn: the pretrained and the random-init encoder, test split and validation.
    let knn = eval.knn_with(Some(3), None).unwrap();
    assert_eq!(
        (knn.train_images, knn.images),
        (case.train, case.test),
        "{m}"
    );
    assert!((0.0..=1.0).contains(&knn.knn_top1), "{m}");
    let random = eval
        .clone()
        .random_init(true)
        .knn_with(Some(3), None)
        .unwrap();
    assert!(
        random.random_init && (0.0..=1.0).contains(&random.knn_top1),
        "{m}"
    );
    let v = eval
        .clone()
        .validation(Some(0.25))
        .knn_with(Some(3), None)
        .unwrap();
    assert_eq!(
        v.train_images + v.images,
        case.train,
        "{m}: validation splits the train split"
    );
    assert_eq!(v.validation, Some(0.25));

    // eval linear.
    let lin = eval.linear(5, 1e-3).unwrap();
    assert!(
        (0.0..=1.0).contains(&lin.linear_top1) && lin.images == case.test,
        "{m}"
    );

    // embed: the whole test split, and 4 evenly spaced training samples as .npy.
    let st = dir.join(format!("{m}.safetensors"));
    let e = eval.embed(Split::Test, None, &st).unwrap();
    assert_eq!(e.images, case.test, "{m}");
    let tensors = read_tensors(&st);
    assert_eq!(tensors["embeddings"].len(), case.test * e.dim, "{m}");
    let npy = dir.join(format!("{m}.npy"));
    let e = eval.embed(Split::Train, Some(4), &npy).unwrap();
    assert_eq!(
        (e.images, e.files.len()),
        (4, 3),
        "{m}: .npy, .labels.npy, .paths.txt"
    );
    let names = std::fs::read_to_string(npy.with_extension("paths.txt")).unwrap();
    assert_eq!(names.lines().count(), 4, "{m}: {names}");

    // finetune: full mode on a label fraction and on labels per class, LP-FT, validation,
    // from scratch, and the linear mode.
    let short = Recipe {
        steps: Some(2),
        linear_epochs: 5,
        ..Recipe::default()
    };
    let j = finetune(
        &eval,
        SubsetSpec::Fraction(0.5),
        FinetuneMode::Full,
        short.clone(),
    );
    assert_eq!(
        (j["modality"].as_str(), j["steps"].as_u64()),
        (Some(m), Some(2)),
        "{j}"
    );
    assert_eq!(j["labels"].as_u64(), Some(case.train as u64 / 2), "{j}");
    accuracy(&j, "top1");
    let lp_ft = Recipe {
        lp_ft: true,
        validation: Some(0.25),
        ..short.clone()
    };
    let j = finetune(&eval, SubsetSpec::PerClass(2), FinetuneMode::Full, lp_ft);
    assert_eq!(j["labels"].as_u64(), Some(2 * case.classes as u64), "{j}");
    assert_eq!(
        (j["lp_ft"].as_bool(), j["validation"].as_f64()),
        (Some(true), Some(0.25)),
        "{j}"
    );
    assert_eq!(
        j["test_images"].as_u64().unwrap() + j["train_images"].as_u64().unwrap(),
        case.train as u64
    );
    accuracy(&j, "top1");
    let scratch = eval
        .finetune(&FinetuneRequest {
            subset: SubsetSpec::PerClass(2),
            mode: FinetuneMode::Full,
            from_scratch: true,
            recipe: short.clone(),
            quiet: true,
        })
        .unwrap();
    assert_eq!(
        (
            scratch["from_scratch"].as_bool(),
            scratch["backbone_lr_mult"].as_f64()
        ),
        (Some(true), Some(1.0))
    );
    let j = finetune(
        &eval,
        SubsetSpec::PerClass(2),
        FinetuneMode::Linear,
        short.clone(),
    );
    accuracy(&j, "top1");

    // prove: one subset, one seed, every figure.
    let out = dir.join(format!("prove-{m}"));
    let p = eval
        .prove(ProveOptions {
            fractions: vec![],
            labels_per_class: vec![2],
            seeds: vec![0],
            recipe: short,
            out_dir: out.clone(),
            quiet: true,
            checkpoint: PathBuf::new(),
            data: PathBuf::new(),
            modality: "",
        })
        .unwrap();
    assert_eq!(p["modality"], m);
    let rows = p["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1);
    for key in [
        "knn_random_init_top1",
        "knn_top1",
        "linear_top1",
        "finetune_top1",
        "scratch_top1",
    ] {
        accuracy(&rows[0], key);
    }
    assert!(out.join("prove.md").is_file() && out.join("prove.json").is_file());

    // report: plots, the t-SNE map of test embeddings.
    let r = selfsup::report(
        &ReportOptions {
            run_dir: case.run.clone(),
            points: case.test.min(20),
        },
        None,
        &TaskOptions {
            data: Some(data.to_path_buf()),
            ..TaskOptions::default()
        },
    )
    .unwrap();
    assert!(
        r.plots.iter().any(|p| p == "training.png")
            && r.plots.iter().any(|p| p == "tsne.png")
            // Stratified by class: each class's share rounds up.
            && r.map_points.is_some_and(|n| (case.test.min(20)..=case.test).contains(&n)),
        "{m}: {r:?}"
    );
    assert!(r.report.is_file());

    // export: torchvision layout for image ResNets; other modalities are refused by name.
    let exported = dir.join(format!("{m}-export.safetensors"));
    match (m, eval.export("torchvision", &exported)) {
        ("image", Ok(j)) => {
            assert_eq!(j["architecture"], "resnet18");
            assert!(exported.is_file());
        }
        ("image", Err(e)) => panic!("image export: {e}"),
        (_, Ok(j)) => panic!("{m} export succeeded: {j}"),
        (_, Err(e)) => {
            let e = e.to_string();
            assert!(
                e.contains(&format!(
                    "is a{} {m} run",
                    if m == "audio" { "n" } else { "" }
                )) && e.contains("torchvision")
                    && e.contains("selfsup embed"),
                "{e}"
            );
            assert!(!exported.exists());
        }
    }
}

#[test]
fn image_every_subcommand() {
    let dir = scratch("modalities-image");
    let (case, data) = image(&dir);
    every_subcommand(&case, &data, &dir);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn audio_every_subcommand() {
    let dir = scratch("modalities-audio");
    let (case, data) = audio(&dir);
    every_subcommand(&case, &data, &dir);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn text_every_subcommand() {
    let dir = scratch("modalities-text");
    let (case, data) = text(&dir);
    every_subcommand(&case, &data, &dir);
    // --pooling is a text option; the other modalities refuse it by name.
    let mean = Evaluate::checkpoint(&case.checkpoint)
        .data(&data)
        .pooling(Some("mean".into()))
        .knn_with(Some(3), None)
        .unwrap();
    assert_eq!(mean.images, case.test);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn pooling_is_refused_for_images() {
    let dir = scratch("modalities-pooling");
    let (case, data) = image(&dir);
    let e = Evaluate::checkpoint(&case.checkpoint)
        .data(&data)
        .pooling(Some("mean".into()))
        .knn()
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("--pooling is for text checkpoints") && e.contains("an image run"),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
