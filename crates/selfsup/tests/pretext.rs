//! The predictive pretext methods through the CLI: rotation and colorization (ResNet) and MAE
//! (ViT) pretrain a
//! few steps, and their encoders go through kNN, linear evaluation and fine-tuning like the
//! contrastive ones.

mod common;

use common::*;
use std::path::Path;

/// `selfsup report --points 0` on a run; the picture grid it wrote, decoded.
fn report_pictures(out: &Path, data: &Path, file: &str) -> image::RgbImage {
    let o = run(bin()
        .arg("report")
        .arg(out)
        .args(["--points", "0", "--data"])
        .arg(data));
    assert!(o.status.success(), "{}", stderr(&o));
    let j = last_json(&o);
    assert!(
        j["plots"].as_array().unwrap().iter().any(|p| p == file),
        "{j}"
    );
    let html = std::fs::read_to_string(out.join("report/report.html")).unwrap();
    assert!(html.contains(file), "report.html must show {file}");
    let img = image::open(out.join("report").join(file))
        .unwrap()
        .to_rgb8();
    // 8 rows (test images) × 3 columns of 32×32 images drawn 4× with 4-pixel gaps.
    assert_eq!(img.dimensions(), (3 * 132 + 4, 8 * 132 + 4));
    img
}

/// Pixels of the 128×128 cell at (`row`, `col`) of a picture grid.
fn cell(img: &image::RgbImage, row: u32, col: u32) -> Vec<[u8; 3]> {
    let (x0, y0) = (4 + col * 132, 4 + row * 132);
    (0..128)
        .flat_map(|y| (0..128).map(move |x| img.get_pixel(x0 + x, y0 + y).0))
        .collect()
}

fn epoch_losses(out: &Path) -> Vec<f64> {
    std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["type"] == "epoch")
        .map(|v| v["loss"].as_f64().unwrap())
        .collect()
}

/// Pretrains `epochs` epochs with `sets` on `data`, then checks the encoder through
/// `eval knn`, `eval linear` (also at random init) and `finetune` and returns the last
/// checkpoint.
fn pretrain_and_evaluate(
    data: &Path,
    out: &Path,
    epochs: usize,
    sets: &[&str],
) -> std::path::PathBuf {
    let mut cmd = bin();
    cmd.arg("pretrain")
        .arg("--data")
        .arg(data)
        .arg("--out")
        .arg(out)
        .args([
            "--quiet",
            "--set",
            "train.batch_size=16",
            "--set",
            "data.workers=1",
        ])
        .args(["--set", &format!("train.epochs={epochs}")]);
    for s in sets {
        cmd.args(["--set", s]);
    }
    let o = run(&mut cmd);
    assert!(o.status.success(), "{sets:?}: {}", stderr(&o));
    let j = last_json(&o);
    assert_eq!(j["epochs"], epochs);
    // 48 images, batch 16, one view each: 3 steps and 48 views per epoch.
    assert_eq!(j["steps"], 3 * epochs);
    let losses = epoch_losses(out);
    assert_eq!(losses.len(), epochs);
    assert!(losses.iter().all(|l| l.is_finite()), "{losses:?}");
    let ckpt = out.join(format!("checkpoints/epoch_{epochs:04}.safetensors"));
    for (args, key) in [
        (vec!["eval", "knn", "--k", "10"], "knn_top1"),
        (vec!["eval", "linear", "--epochs", "5"], "linear_top1"),
        (
            vec!["eval", "linear", "--epochs", "5", "--random-init"],
            "linear_top1",
        ),
        (
            vec![
                "finetune",
                "--quiet",
                "--mode",
                "full",
                "--steps",
                "3",
                "--batch-size",
                "8",
                "--label-fraction",
                "0.5",
            ],
            "top1",
        ),
    ] {
        let o = run(bin()
            .args(&args)
            .arg("--checkpoint")
            .arg(&ckpt)
            .arg("--data")
            .arg(data));
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        let j = last_json(&o);
        let top1 = j[key].as_f64().unwrap_or_else(|| panic!("{args:?}: {j}"));
        assert!((0.0..=1.0).contains(&top1), "{args:?}: {top1}");
    }
    ckpt
}

#[test]
fn rotation_pretrains_and_its_encoder_evaluates() {
    let dir = scratch("rotation");
    let data = small_dataset(&dir, 16);
    let out = dir.join("run");
    let ckpt = pretrain_and_evaluate(
        &data,
        &out,
        4,
        &["method.name=rotation", "model.width=4", "optim.lr=0.05"],
    );
    let losses = epoch_losses(&out);
    // Chance is ln 4 = 1.386; four epochs of 3 steps already move below it.
    assert!(losses[0] < 1.6 && losses[3] < losses[0], "{losses:?}");
    let names = read_tensors(&ckpt);
    assert!(names.contains_key("model.backbone.conv1.weight"));
    assert!(names.contains_key("model.head.weight"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn mae_pretrains_a_vit_whose_encoder_evaluates_and_export_refuses_it() {
    let dir = scratch("mae");
    let data = small_dataset(&dir, 16);
    let out = dir.join("run");
    let ckpt = pretrain_and_evaluate(
        &data,
        &out,
        3,
        &[
            "method.name=mae",
            "model.backbone=vit",
            "model.vit_dim=16",
            "model.vit_depth=1",
            "model.vit_heads=2",
            "method.decoder_dim=16",
            "method.decoder_depth=1",
            "method.decoder_heads=2",
            "optim.name=adamw",
            "optim.lr=1e-3",
        ],
    );
    let losses = epoch_losses(&out);
    assert!(losses[2] < losses[0], "{losses:?}");
    let names = read_tensors(&ckpt);
    for name in [
        "model.backbone.patch_embed.weight",
        "model.backbone.cls_token",
        "model.mask_token",
    ] {
        assert!(names.contains_key(name), "{name} not in {:?}", names.keys());
    }
    // The masked-input column hides 75% of each image (48 of 64 patches, drawn grey); the
    // original column is the test image itself.
    let img = report_pictures(&out, &data, "mae_pictures.png");
    for row in 0..8 {
        let grey = cell(&img, row, 0)
            .iter()
            .filter(|p| **p == [128, 128, 128])
            .count();
        assert!(grey >= 48 * 16 * 16, "row {row}: {grey} grey pixels");
        assert!(
            cell(&img, row, 2)
                .iter()
                .filter(|p| **p == [128, 128, 128])
                .count()
                < grey
        );
    }
    let o = run(bin()
        .args(["export", "--format", "torchvision", "--checkpoint"])
        .arg(&ckpt)
        .arg("--out")
        .arg(dir.join("vit.safetensors")));
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("vit") && err.contains("ResNets only"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn colorization_pretrains_and_its_encoder_evaluates() {
    let dir = scratch("colorization");
    let data = small_dataset(&dir, 16);
    let out = dir.join("run");
    let ckpt = pretrain_and_evaluate(
        &data,
        &out,
        3,
        &["method.name=colorization", "model.width=4", "optim.lr=0.05"],
    );
    let losses = epoch_losses(&out);
    assert!(losses[2] < losses[0], "{losses:?}");
    let names = read_tensors(&ckpt);
    assert!(names.contains_key("model.backbone.conv1.weight"));
    assert!(names.contains_key("model.decoder.out.weight"));
    // The input column is grey (R = G = B), the original column is not.
    let img = report_pictures(&out, &data, "colorization_pictures.png");
    for row in 0..8 {
        assert!(
            cell(&img, row, 0)
                .iter()
                .all(|p| p[0].abs_diff(p[1]) <= 1 && p[1].abs_diff(p[2]) <= 1)
        );
    }
    let coloured = (0..8)
        .flat_map(|row| cell(&img, row, 2))
        .filter(|p| p[0].abs_diff(p[2]) > 10)
        .count();
    assert!(coloured > 1000, "{coloured}");
    std::fs::remove_dir_all(&dir).unwrap();
}
