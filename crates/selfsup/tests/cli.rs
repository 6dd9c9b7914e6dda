//! End-to-end checks of the `selfsup` binary on small real data (CIFAR-10 JPEGs copied into a
//! temporary image-folder tree): pretraining, checkpoints and resume, evaluation, and the error
//! message for each kind of bad input.

mod common;

use std::path::{Path, PathBuf};

use common::*;

#[test]
fn pretrain_resume_and_evaluate() {
    let dir = scratch("e2e");
    let data = small_dataset(&dir, 16);
    let out = dir.join("run");
    let mut args = tiny_args(&data, &out);
    args.extend([
        "--set".into(),
        "train.epochs=2".into(),
        "--set".into(),
        "train.knn_every=1".into(),
    ]);
    let args = args;

    // An uninterrupted 2-epoch run, for reference.
    let reference_out = dir.join("reference");
    let o = run(bin()
        .args(&tiny_args(&data, &reference_out))
        .args(["--set", "train.epochs=2"]));
    assert!(o.status.success(), "{}", stderr(&o));

    // The same run stopped after its first epoch, then resumed to the end.
    let o = run(bin().args(&args).args(["--stop-after", "1"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let j = last_json(&o);
    assert_eq!(j["epochs"], 1);
    assert_eq!(j["steps"], 3); // 48 images / batch 16
    assert!(out.join("checkpoints/epoch_0001.safetensors").exists());
    assert!(!out.join("checkpoints/epoch_0002.safetensors").exists());

    // A second pretrain into the same directory without --resume is refused.
    let o = run(bin().args(&args));
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--resume"), "{}", stderr(&o));

    let o = run(bin().args(&args).arg("--resume"));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("resuming after epoch 1"),
        "{}",
        stderr(&o)
    );
    assert_eq!(last_json(&o)["steps"], 6);

    // Resuming continues exactly where the run stopped: same data order, optimiser state and
    // BatchNorm statistics, so the weights match the uninterrupted run's.
    assert_same_tensors(
        &out.join("checkpoints/epoch_0002.safetensors"),
        &reference_out.join("checkpoints/epoch_0002.safetensors"),
    );

    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    let epochs: Vec<serde_json::Value> = metrics
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["type"] == "epoch")
        .collect();
    assert!(!epochs.is_empty());
    let e = &epochs[0];
    assert!(e["loss"].as_f64().unwrap().is_finite());
    assert!(e["diagnostics"]["effective_rank"].as_f64().unwrap() > 1.0);
    assert!(
        e["knn_top1"].as_f64().is_some(),
        "knn_every=1 logs kNN accuracy: {e}"
    );

    let ckpt = out.join("checkpoints/epoch_0001.safetensors");
    let o = run(bin()
        .args(["eval", "knn", "--checkpoint"])
        .arg(&ckpt)
        .arg("--data")
        .arg(&data)
        .args(["--k", "10"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let j = last_json(&o);
    assert_eq!(j["images"], 48);
    let acc = j["knn_top1"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&acc));

    // Validation: a stratified quarter of the 48 train images (4 of each of the 3 classes) are
    // the queries, the other 36 the bank; the test split is not read.
    let knn_validation = |fraction: &str| {
        run(bin()
            .args(["eval", "knn", "--checkpoint"])
            .arg(&ckpt)
            .arg("--data")
            .arg(&data)
            .args(["--k", "10", "--validation", fraction]))
    };
    let o = knn_validation("0.25");
    assert!(o.status.success(), "{}", stderr(&o));
    let j = last_json(&o);
    assert_eq!(
        (j["images"].as_u64(), j["train_images"].as_u64()),
        (Some(12), Some(36))
    );
    assert!(
        stderr(&o).contains("held-out train (validation)"),
        "{}",
        stderr(&o)
    );
    let o = knn_validation("1");
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("--validation must be a fraction in (0, 1)"),
        "{}",
        stderr(&o)
    );

    let o = run(bin()
        .args(["eval", "linear", "--checkpoint"])
        .arg(&ckpt)
        .arg("--data")
        .arg(&data)
        .args(["--epochs", "5"]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(last_json(&o)["linear_top1"].as_f64().is_some());

    // Embeddings: safetensors with labels and paths, and .npy files.
    let emb = dir.join("emb.safetensors");
    let o = run(bin()
        .args(["embed", "--checkpoint"])
        .arg(&ckpt)
        .arg("--data")
        .arg(&data)
        .arg("--out")
        .arg(&emb));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(last_json(&o)["images"], 48);
    let bytes = std::fs::read(&emb).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(st.tensor("embeddings").unwrap().shape(), &[48, 32]); // width 4 → 32-d features
    let labels: Vec<i64> = st
        .tensor("labels")
        .unwrap()
        .data()
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(labels.iter().filter(|&&l| l == 1).count(), 16); // 16 test images of class 1 (cat)
    let paths: Vec<String> =
        serde_json::from_str(&meta.metadata().as_ref().unwrap()["paths"]).unwrap();
    assert!(paths[16].ends_with("test/cat/0000.jpg"), "{}", paths[16]);
    let npy = dir.join("emb.npy");
    let o = run(bin()
        .args(["embed", "--checkpoint"])
        .arg(&ckpt)
        .arg("--data")
        .arg(&data)
        .arg("--out")
        .arg(&npy));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read(&npy).unwrap().len(), 128 + 48 * 32 * 4);
    assert_eq!(
        std::fs::read_to_string(dir.join("emb.paths.txt"))
            .unwrap()
            .lines()
            .count(),
        48
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_inputs_are_named() {
    let dir = scratch("bad");
    let data = small_dataset(&dir, 6);

    // Missing dataset path.
    let o = run(bin()
        .args(["pretrain", "--data", "/nonexistent/images", "--out"])
        .arg(dir.join("r0")));
    assert!(!o.status.success());
    assert!(stderr(&o).contains("/nonexistent/images"), "{}", stderr(&o));

    // Unknown config key, with the closest valid one.
    let cfg = dir.join("typo.toml");
    std::fs::write(&cfg, "[optim]\nlearning_rate = 0.1\n").unwrap();
    let o = run(bin()
        .args(["pretrain", "--config"])
        .arg(&cfg)
        .arg("--data")
        .arg(&data));
    assert!(
        stderr(&o).contains("optim.learning_rate") && stderr(&o).contains("did you mean"),
        "{}",
        stderr(&o)
    );

    // Invalid value.
    let o = run(bin()
        .args(["pretrain", "--set", "train.batch_size=0", "--data"])
        .arg(&data));
    assert!(stderr(&o).contains("train.batch_size"), "{}", stderr(&o));

    // A corrupt image: named by default, skipped and counted with --skip-corrupt.
    let bad = data.join("train/cat/9999.jpg");
    std::fs::write(&bad, b"not a jpeg at all").unwrap();
    let mut args = tiny_args(&data, &dir.join("r1"));
    args.extend([
        "--set".into(),
        "train.epochs=1".into(),
        "--set".into(),
        "train.batch_size=4".into(),
    ]);
    let o = run(bin().args(&args));
    assert!(!o.status.success());
    assert!(stderr(&o).contains("9999.jpg"), "{}", stderr(&o));
    let mut skip = tiny_args(&data, &dir.join("r2"));
    skip.extend([
        "--set".into(),
        "train.epochs=1".into(),
        "--set".into(),
        "train.batch_size=4".into(),
        "--skip-corrupt".into(),
    ]);
    let o = run(bin().args(&skip));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("skipped 1 unreadable"),
        "{}",
        stderr(&o)
    );
    std::fs::remove_file(&bad).unwrap();

    // An empty class folder.
    std::fs::create_dir_all(data.join("train/empty_class")).unwrap();
    let o = run(bin().args(&tiny_args(&data, &dir.join("r3"))));
    assert!(stderr(&o).contains("empty_class"), "{}", stderr(&o));
    std::fs::remove_dir(data.join("train/empty_class")).unwrap();

    // A diverging learning rate stops with the step and the value.
    let mut nan = tiny_args(&data, &dir.join("r4"));
    nan.extend([
        "--set".into(),
        "optim.lr=1e30".into(),
        "--set".into(),
        "train.epochs=2".into(),
        "--set".into(),
        "train.batch_size=6".into(),
    ]);
    let o = run(bin().args(&nan));
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("loss is NaN") || e.contains("loss is inf"),
        "{e}"
    );
    assert!(e.contains("step"), "{e}");

    // Missing and corrupt checkpoints.
    let o = run(bin()
        .args(["eval", "knn", "--checkpoint"])
        .arg(dir.join("none.safetensors")));
    assert!(stderr(&o).contains("none.safetensors"), "{}", stderr(&o));
    let junk = dir.join("junk.safetensors");
    std::fs::write(&junk, b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":").unwrap();
    let o = run(bin().args(["eval", "knn", "--checkpoint"]).arg(&junk));
    assert!(
        stderr(&o).contains("junk.safetensors") && stderr(&o).contains("corrupt"),
        "{}",
        stderr(&o)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The `epoch` records of a run's metrics.jsonl.
fn epoch_records(out: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["type"] == "epoch")
        .collect()
}

/// The `--set`s that shrink `method`'s run to a tiny one (width-4 backbone, 16-d heads, a
/// one-block ViT), chosen by the keys its settings have, so a new method needs no entry here.
fn method_sets(method: &str) -> Vec<String> {
    let keys = selfsup::modality_of_method(method)
        .unwrap()
        .config_keys(method);
    let has = |k: &str| keys.iter().any(|key| key == k);
    let mut sets = vec![
        format!("method.name={method}"),
        "optim.lr=0.03".into(),
        "model.vit_dim=16".into(),
        "model.vit_depth=1".into(),
        "model.vit_heads=2".into(),
    ];
    if has("method.projection_dims") {
        // DINO's head: hidden, bottleneck, prototypes; the others: hidden, output.
        sets.push(if method == "dino" {
            "method.projection_dims=[32, 8, 64]".into()
        } else {
            "method.projection_dims=[16, 16]".into()
        });
    }
    // What these methods need besides their defaults: a ViT (MAE), and settings under which
    // their losses fall within six tiny epochs (a new method needs an entry only if its
    // defaults do not do).
    sets.extend(
        match method {
            "dino" => &[
                "method.temperature=0.1",
                "augment.local_crops=2",
                "augment.local_crop_size=16",
            ][..],
            "moco" => &["method.temperature=0.2", "method.ema_momentum=[0.99, 0.99]"][..],
            "rotation" => &["optim.lr=0.05"][..],
            "mae" => &["model.backbone=vit"][..],
            _ => &[][..],
        }
        .iter()
        .map(|s| s.to_string()),
    );
    for (key, value) in [
        ("method.prediction_dims", "[8, 16]"),
        ("method.queue_size", "32"),
        ("method.decoder_dim", "16"),
        ("method.decoder_heads", "2"),
        ("method.decoder_depth", "1"),
    ] {
        if has(key) {
            sets.push(format!("{key}={value}"));
        }
    }
    sets
}

/// Every registered image method, at its defaults shrunk by `method_sets` (its shipped config
/// is checked by `every_method_has_a_config_that_loads`), trains a few steps end to end (6 epochs of 3 steps): finite losses
/// whose mean over epochs 2-6 is below epoch 1's (two-view methods), collapse diagnostics logged, the online
/// encoder stored as `model.backbone.*` (what evaluation loads) and evaluable.
///
/// MoCo is held to finite losses only: on 48 images with a width-4 network its embeddings start
/// nearly parallel (no BatchNorm in its head), every logit is alike and the loss stays at
/// log(K + 1) for the few steps a test can afford. LightlySSL's MoCo does the same in this
/// regime (same architecture, images and settings in PyTorch: 2.9 in epoch 1, then log(K + 1)
/// through epoch 6). Its loss has value and gradient fixtures, and its state is checked by
/// `moco_resume_restores_teacher_and_queue`.
#[test]
fn every_image_method_trains_a_few_steps() {
    let dir = scratch("zoo");
    let data = small_dataset(&dir, 16);
    let methods = selfsup::modality_of_method("simclr").unwrap().methods();
    assert!(methods.len() >= 10, "{methods:?}");
    for method in methods {
        let out = dir.join(method);
        let mut cmd = bin();
        // tiny_args' SimCLR head widths are not every method's keys: method_sets sets them.
        let args = tiny_args(&data, &out);
        let head = args
            .iter()
            .position(|a| a.starts_with("method.projection_dims"))
            .unwrap();
        let args: Vec<&String> = args
            .iter()
            .enumerate()
            .filter(|(i, _)| *i + 1 != head && *i != head)
            .map(|(_, a)| a)
            .collect();
        cmd.args(args).args(["--set", "train.epochs=6"]);
        for s in method_sets(method) {
            cmd.args(["--set", &s]);
        }
        let o = run(&mut cmd);
        assert!(o.status.success(), "{method}: {}", stderr(&o));
        let epochs = epoch_records(&out);
        assert_eq!(epochs.len(), 6, "{method}");
        let losses: Vec<f64> = epochs.iter().map(|e| e["loss"].as_f64().unwrap()).collect();
        let later = losses[1..].iter().sum::<f64>() / 5.0;
        // Predictive one-view methods (no second view, so no alignment logged) learn slower at
        // this size; tests/pretext.rs trains each with settings under which its loss falls.
        let one_view = epochs[0]["diagnostics"]["alignment"].is_null();
        assert!(
            losses.iter().all(|l| l.is_finite())
                && (method == "moco" || one_view || later < losses[0]),
            "{method}: epoch losses {losses:?}"
        );
        for e in &epochs {
            let d = &e["diagnostics"];
            for key in ["embedding_std", "effective_rank", "uniformity"] {
                assert!(
                    d[key].as_f64().is_some_and(f64::is_finite),
                    "{method}: {key} in {e}"
                );
            }
        }
        let ckpt = out.join("checkpoints/epoch_0006.safetensors");
        assert!(
            read_tensors(&ckpt)
                .keys()
                .any(|k| k.starts_with("model.backbone.")),
            "{method}: the online encoder must be stored as model.backbone.*"
        );
        let o = run(bin()
            .args(["eval", "knn", "--checkpoint"])
            .arg(&ckpt)
            .arg("--data")
            .arg(&data)
            .args(["--k", "10"]));
        assert!(o.status.success(), "{method}: {}", stderr(&o));
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Every registered method of every modality has a shipped config naming it that loads, and
/// every shipped config loads.
#[test]
fn every_method_has_a_config_that_loads() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
    let mut named = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "toml") {
            let (raw, modality) = selfsup::load_config(Some(&p), &[])
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            modality
                .check_config(&raw)
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            named.insert(raw.method_name().unwrap());
        }
    }
    for m in selfsup::modalities() {
        for method in m.methods() {
            assert!(
                named.contains(method),
                "no config in configs/ names method `{method}`"
            );
        }
    }
}

/// DINO on a ViT with local crops smaller than the global views (the ViT resizes its position
/// table to each crop's patch grid) trains, as configs/dino_vits16_imagenet.toml does at 224 px.
#[test]
fn dino_trains_a_vit_on_global_and_local_crops() {
    let dir = scratch("dino-vit");
    let data = small_dataset(&dir, 8);
    let out = dir.join("run");
    let mut args = tiny_args(&data, &out);
    // Without tiny_args' last three settings (SimCLR head widths, batch, workers): set below.
    args.truncate(args.len() - 6);
    for s in [
        "method.name=dino",
        "method.projection_dims=[32, 16, 64]",
        "model.backbone=vit",
        "model.vit_patch_size=4",
        "model.vit_dim=16",
        "model.vit_depth=1",
        "model.vit_heads=2",
        "augment.local_crops=2",
        "augment.local_crop_size=16",
        "train.batch_size=8",
        "data.workers=1",
        "train.epochs=1",
    ] {
        args.extend(["--set".into(), s.into()]);
    }
    let o = run(bin().args(&args));
    assert!(o.status.success(), "{}", stderr(&o));
    let epochs = epoch_records(&out);
    assert!(epochs[0]["loss"].as_f64().unwrap().is_finite());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A momentum method resumes exactly: the EMA teacher and the queue of keys are part of the
/// checkpoint, so a run stopped after epoch 1 and resumed ends with the uninterrupted run's
/// weights, teacher and queue.
#[test]
fn moco_resume_restores_teacher_and_queue() {
    let dir = scratch("moco-resume");
    let data = small_dataset(&dir, 16);
    let sets = method_sets("moco");
    let args = |out: &Path| {
        let mut a = tiny_args(&data, out);
        a.extend(["--set".into(), "train.epochs=2".into()]);
        for s in &sets {
            a.extend(["--set".into(), s.clone()]);
        }
        a
    };
    let reference_out = dir.join("reference");
    let o = run(bin().args(args(&reference_out)));
    assert!(o.status.success(), "{}", stderr(&o));
    let out = dir.join("run");
    let o = run(bin().args(args(&out)).args(["--stop-after", "1"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(bin().args(args(&out)).arg("--resume"));
    assert!(o.status.success(), "{}", stderr(&o));

    let epoch1 = read_tensors(&out.join("checkpoints/epoch_0001.safetensors"));
    let epoch2 = out.join("checkpoints/epoch_0002.safetensors");
    for name in ["model.queue", "model.teacher_backbone.conv1.weight"] {
        let later = &read_tensors(&epoch2)[name];
        assert_ne!(&epoch1[name], later, "{name} must change during epoch 2");
    }
    assert_same_tensors(
        &epoch2,
        &reference_out.join("checkpoints/epoch_0002.safetensors"),
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// An easy labelled image-folder tree: 32×32 PNGs whose class is their dominant colour
/// (red, green, blue) under strong per-pixel noise; `per_class` images per class and split.
fn colour_dataset(dir: &Path, per_class: usize) -> PathBuf {
    let root = dir.join("colours");
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut noise = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % 96) as u8
    };
    for split in ["train", "test"] {
        for (c, class) in ["red", "green", "blue"].iter().enumerate() {
            let to = root.join(split).join(class);
            std::fs::create_dir_all(&to).unwrap();
            for i in 0..per_class {
                let img = image::RgbImage::from_fn(32, 32, |_, _| {
                    image::Rgb(std::array::from_fn(|ch| {
                        if ch == c { 150u8 } else { 40 }.saturating_add(noise())
                    }))
                });
                img.save(to.join(format!("{i:03}.png"))).unwrap();
            }
        }
    }
    root
}

/// A one-epoch tiny pretraining run on `data`; its checkpoint.
fn tiny_checkpoint(data: &Path, out: &Path) -> PathBuf {
    let o = run(bin()
        .args(&tiny_args(data, out))
        .args(["--set", "train.epochs=1"]));
    assert!(o.status.success(), "{}", stderr(&o));
    out.join("checkpoints/epoch_0001.safetensors")
}

#[test]
fn finetune_and_prove_end_to_end() {
    let dir = scratch("finetune");
    let data = colour_dataset(&dir, 16);
    let ckpt = tiny_checkpoint(&data, &dir.join("run"));
    let finetune = |extra: &[&str]| {
        let o = run(bin()
            .args(["finetune", "--quiet", "--checkpoint"])
            .arg(&ckpt)
            .arg("--data")
            .arg(&data)
            .args(["--batch-size", "16"])
            .args(extra));
        assert!(o.status.success(), "{}", stderr(&o));
        last_json(&o)
    };

    // Full fine-tuning on 8 labels per class: the colour classes are easy, far above the 1/3
    // of chance, on all 48 test images.
    let j = finetune(&["--labels-per-class", "8", "--steps", "30", "--mode", "full"]);
    assert_eq!(j["mode"], "full");
    assert_eq!(j["labels"], 24);
    assert_eq!(j["labels_per_class"], 8);
    assert_eq!(j["steps"], 30);
    assert_eq!(j["test_images"], 48);
    assert_eq!(j["backbone_lr_mult"], 0.5);
    assert!(j["top5"].is_null(), "3 classes have no top-5: {j}");
    let top1 = j["top1"].as_f64().unwrap();
    assert!(top1 >= 0.8, "fine-tuned top-1 {top1} on an easy task");

    // From scratch: same recipe, full lr for the backbone.
    let j = finetune(&["--label-fraction", "0.5", "--steps", "30", "--from-scratch"]);
    assert_eq!(j["from_scratch"], true);
    assert_eq!(j["backbone_lr_mult"], 1.0);
    assert_eq!(j["labels"], 24);
    assert!(j["top1"].as_f64().unwrap() > 0.5, "{j}");

    // LP-FT: the head starts as a linear probe on the frozen features, so one step at a
    // vanishing lr already classifies the easy colours; a random head at the same settings
    // stays near chance.
    let tiny_lr = ["--labels-per-class", "8", "--steps", "1", "--lr", "1e-7"];
    let j = finetune(&[&tiny_lr[..], &["--lp-ft", "--linear-epochs", "500"]].concat());
    assert_eq!(j["lp_ft"], true);
    let probed = j["top1"].as_f64().unwrap();
    assert!(probed >= 0.8, "LP-FT head after one tiny step: {j}");
    let j = finetune(&tiny_lr);
    assert_eq!(j["lp_ft"], false);
    let random = j["top1"].as_f64().unwrap();
    assert!(
        random < probed - 0.2,
        "random head {random} vs probed {probed}"
    );

    // --validation: a stratified quarter of the 48 training images (4 per class) is scored
    // instead of the test split, and the labels come from the other 36.
    let j = finetune(&[
        "--label-fraction",
        "0.5",
        "--steps",
        "30",
        "--validation",
        "0.25",
    ]);
    assert_eq!(j["validation"], 0.25);
    assert_eq!(j["test_images"], 12);
    assert_eq!(j["train_images"], 36);
    assert_eq!(j["labels"], 18);
    assert!(j["top1"].as_f64().unwrap() >= 0.8, "{j}");

    // Linear classifier on frozen features; default steps follow the documented rule.
    let j = finetune(&["--label-fraction", "0.5", "--mode", "linear"]);
    assert_eq!(j["mode"], "linear");
    assert_eq!(j["linear_epochs"], 100);
    assert!(j["top1"].as_f64().unwrap() >= 0.8, "{j}");

    // prove: every baseline at two fractions; budget 2 goes into the file names.
    let out = dir.join("prove");
    let o = run(bin()
        .args(["prove", "--quiet", "--checkpoint"])
        .arg(&ckpt)
        .arg("--data")
        .arg(&data)
        .args([
            "--fractions",
            "0.25,1",
            "--batch-size",
            "8",
            "--budget",
            "2",
        ])
        .args(["--steps", "10", "--linear-epochs", "20", "--out"])
        .arg(&out));
    assert!(o.status.success(), "{}", stderr(&o));
    let j = last_json(&o);
    assert_eq!(j["budget"], 2.0);
    let rows = j["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["labels"], 12);
    assert_eq!(rows[1]["labels"], 48);
    assert_eq!(rows[0]["steps"], 10); // --steps is exact; --budget scales only the default
    assert_prove_rows_are_accuracies(rows);
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("prove_budget2.json")).unwrap())
            .unwrap();
    assert_eq!(saved["rows"], j["rows"]);
    let md = std::fs::read_to_string(out.join("prove_budget2.md")).unwrap();
    assert!(
        md.contains("| fine-tune |") && md.lines().count() >= 8,
        "{md}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn finetune_bad_inputs_are_named_before_work() {
    let dir = scratch("finetune-bad");
    let missing = dir.join("none.safetensors");
    let fails_with = |args: &[&str], needle: &str| {
        let o = run(bin().args(args));
        assert!(!o.status.success(), "{args:?} succeeded");
        assert!(stderr(&o).contains(needle), "{args:?}: {}", stderr(&o));
    };
    let ck = missing.to_str().unwrap();
    for f in ["0", "1.5", "-0.1"] {
        fails_with(
            &["finetune", "--checkpoint", ck, "--label-fraction", f],
            "--label-fraction must be in (0, 1]",
        );
    }
    fails_with(
        &["finetune", "--checkpoint", ck, "--labels-per-class", "0"],
        "--labels-per-class must be ≥ 1",
    );
    fails_with(
        &["finetune", "--checkpoint", ck],
        "exactly one of --label-fraction",
    );
    // One bad recipe flag on an otherwise well-formed command.
    let flag_fails_with = |flag: &[&str], needle: &str| {
        let base = ["finetune", "--checkpoint", ck, "--label-fraction", "0.1"];
        fails_with(&[&base[..], flag].concat(), needle);
    };
    flag_fails_with(&["--mode", "half"], "invalid value 'half' for '--mode");
    flag_fails_with(&["--budget", "0"], "--budget must be");
    for f in ["0", "1", "-0.2"] {
        flag_fails_with(
            &["--validation", f],
            "--validation must be a fraction in (0, 1)",
        );
    }
    fails_with(
        &["finetune", "--checkpoint", ck, "--label-fraction", "0.1"],
        "none.safetensors not found",
    );
    fails_with(
        &["prove", "--checkpoint", ck, "--fractions", "-0.01,2"],
        "--fractions: -0.01 is not in (0, 1]",
    );
    fails_with(
        &["prove", "--checkpoint", ck, "--fractions", "0.01"],
        "none.safetensors not found",
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
