//! Audio through the CLI on a few real FSDD clips: pretrain (masked_frames, cpc) → finetune →
//! prove → report, and audio config errors named before work.

mod common;

use std::path::Path;

use common::*;

fn pretrain(cfg: &str, data: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let mut cmd = bin();
    cmd.args(["pretrain", "--quiet", "--config"])
        .arg(config(cfg))
        .arg("--data")
        .arg(data)
        .arg("--out")
        .arg(out);
    for s in AUDIO_TINY.iter().chain(&["train.epochs=1"]).chain(extra) {
        cmd.args(["--set", s]);
    }
    if cfg == "masked_frames_fsdd.toml" {
        cmd.args(["--set", "method.mask_span=[3, 6]"]);
    }
    run(&mut cmd)
}

#[test]
fn audio_pretrain_finetune_prove_report() {
    let dir = scratch("audio");
    let data = tiny_fsdd(&dir);
    let out = dir.join("run");
    let o = pretrain("masked_frames_fsdd.toml", &data, &out, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let j = last_json(&o);
    assert_eq!(j["steps"], 3, "18 clips / batch 6: {j}");
    assert_eq!(j["images"], 18);
    assert!(j["final_loss"].as_f64().unwrap().is_finite(), "{j}");
    let ckpt = out.join("checkpoints/epoch_0001.safetensors");
    let tensors = read_tensors(&ckpt);
    assert!(
        tensors
            .keys()
            .any(|k| k.starts_with("model.backbone.transformer."))
            && tensors.keys().any(|k| k.starts_with("model.head."))
            && tensors.keys().any(|k| k.starts_with("optim.")),
        "{:?}",
        tensors.keys().collect::<Vec<_>>()
    );
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    let epoch: serde_json::Value = metrics
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["type"] == "epoch")
        .expect("an epoch record");
    let knn = epoch["knn_top1"].as_f64().expect("kNN every epoch");
    assert!((0.0..=1.0).contains(&knn), "{epoch}");
    // One view per clip: no alignment, but the other diagnostics.
    assert!(epoch["diagnostics"]["alignment"].is_null(), "{epoch}");
    assert!(epoch["diagnostics"]["effective_rank"].as_f64().unwrap() >= 1.0);

    // finetune: 5 labels per digit (15 clips), pretrained and from scratch, on the 9 test clips.
    let finetune = |extra: &[&str]| {
        let o = run(bin()
            .args(["finetune", "--quiet", "--checkpoint"])
            .arg(&ckpt)
            .args(["--labels-per-class", "5", "--steps", "4"])
            .args(extra));
        assert!(o.status.success(), "{}", stderr(&o));
        last_json(&o)
    };
    let j = finetune(&[]);
    assert_eq!(j["modality"], "audio");
    assert_eq!(j["labels"], 15);
    assert_eq!(j["test_images"], 9);
    assert_eq!(j["steps"], 4);
    assert_eq!(j["lr"], 5e-4, "the audio default");
    assert!((0.0..=1.0).contains(&j["top1"].as_f64().unwrap()), "{j}");
    let j = finetune(&["--from-scratch", "--seed", "1"]);
    assert_eq!(j["from_scratch"], true);
    assert_eq!(j["backbone_lr_mult"], 1.0);
    let j = finetune(&["--mode", "linear", "--linear-epochs", "5"]);
    assert!((0.0..=1.0).contains(&j["top1"].as_f64().unwrap()), "{j}");
    // LP-FT (head from a probe on frozen features, then fine-tuning), both arms; the probe's
    // weight layout is checked in selfsup-audio's finetune tests.
    for extra in [&[][..], &["--from-scratch"][..]] {
        let j = finetune(&[&["--lp-ft", "--linear-epochs", "5"][..], extra].concat());
        assert_eq!(j["steps"], 4, "{j}");
        assert!((0.0..=1.0).contains(&j["top1"].as_f64().unwrap()), "{j}");
    }
    // --validation: 20 % of the 18 training clips (stratified: 1 per digit) are the queries,
    // labels come from the other 15 (5 per digit).
    let o = run(bin()
        .args(["finetune", "--quiet", "--steps", "2", "--checkpoint"])
        .arg(&ckpt)
        .args(["--labels-per-class", "4", "--validation", "0.2"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let j = last_json(&o);
    assert_eq!(
        (j["test_images"].as_u64(), j["train_images"].as_u64()),
        (Some(3), Some(15)),
        "{j}"
    );
    assert_eq!(j["validation"], 0.2);

    // prove: 5 per digit and 50 %, seeds 0 and 1, mean ± std per subset.
    let j = prove_small(&ckpt, "audio", "0,1", 3);
    let rows = j["rows"].as_array().unwrap();
    let summary = j["summary"].as_array().unwrap();
    assert_eq!(summary.len(), 2);
    assert_eq!(summary[0]["subset"], "50%");
    assert_eq!(summary[1]["subset"], "5/class");
    assert_eq!(summary[1]["seeds"], 2);
    let (a, b) = (
        rows[1]["finetune_top1"].as_f64().unwrap(),
        rows[3]["finetune_top1"].as_f64().unwrap(),
    );
    let mean = summary[1]["finetune_top1_mean"].as_f64().unwrap();
    assert!((mean - (a + b) / 2.0).abs() < 1e-9, "{mean} vs {a}, {b}");
    let md = std::fs::read_to_string(out.join("prove.md")).unwrap();
    assert!(md.contains("| 5/class (15) | 2 |"), "{md}");

    // report: the spectrogram picture (3 rows of 3 test clips) and the t-SNE of test clips.
    let o = run(bin().args(["report"]).arg(&out).args(["--points", "9"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let j = last_json(&o);
    let plots: Vec<&str> = j["plots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert!(
        plots.contains(&"spectrograms.png") && plots.contains(&"tsne.png"),
        "{plots:?}"
    );
    let png = image::open(out.join("report/spectrograms.png"))
        .unwrap()
        .to_rgb8();
    assert_eq!(
        png.height(),
        3 * (40 * 3 + 6),
        "input, masked input, reconstruction rows"
    );
    let masked = png.pixels().filter(|p| p.0 == [60, 160, 200]).count();
    assert!(masked > 0, "masked spans are painted");
    let html = std::fs::read_to_string(out.join("report/report.html")).unwrap();
    // Frozen-encoder commands work on audio checkpoints too; export says what it supports.
    assert_frozen_commands_work(&ckpt, &out, 18, 9);
    assert_export_refuses(&ckpt, "an audio run");
    assert!(
        html.contains("spectrograms.png") && html.contains("5/class"),
        "report html"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn cpc_pretrains_and_bad_audio_settings_are_named() {
    let dir = scratch("audio-cpc");
    let data = tiny_fsdd(&dir);
    let o = pretrain(
        "cpc_fsdd.toml",
        &data,
        &dir.join("cpc"),
        // The key's old place, moved to `method.cpc_steps` with a note.
        &["audio.cpc_steps=2"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("`audio.cpc_steps` is now `method.cpc_steps`"),
        "{}",
        stderr(&o)
    );
    let j = last_json(&o);
    assert_eq!(j["steps"], 3);
    assert!(j["final_loss"].as_f64().unwrap().is_finite(), "{j}");

    let fails_with = |extra: &[&str], out: &str, needle: &str| {
        let o = pretrain("masked_frames_fsdd.toml", &data, &dir.join(out), extra);
        assert!(!o.status.success(), "{extra:?} succeeded");
        assert!(stderr(&o).contains(needle), "{extra:?}: {}", stderr(&o));
    };
    fails_with(
        &["audio.heldout_speaker=\"nobody\""],
        "a",
        "audio.heldout_speaker",
    );
    fails_with(
        &["method.reconstruction=\"l3\""],
        "b",
        "method.reconstruction",
    );
    fails_with(&["audio_encoder.n_heads=3"], "c", "audio_encoder");
    fails_with(&["method.mask_ratio=1.5"], "d", "method.mask_ratio");
    // A key of another method is refused naming the method it belongs to.
    fails_with(
        &["method.cpc_steps=3"],
        "g",
        "a setting of cpc, not of masked_frames",
    );
    let o = pretrain(
        "cpc_fsdd.toml",
        &data,
        &dir.join("h"),
        &["audio.mask_span=[2, 3]"],
    );
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains(
            "`audio.mask_span` is now `method.mask_span`, a setting of masked_frames, not of cpc"
        ),
        "{}",
        stderr(&o)
    );
    fails_with(&["train.batch_size=64"], "e", "fewer than train.batch_size");
    let o = run(bin()
        .args(["pretrain", "--quiet", "--config"])
        .arg(config("masked_frames_fsdd.toml"))
        .arg("--data")
        .arg(dir.join("missing.csv"))
        .arg("--out")
        .arg(dir.join("f")));
    assert!(!o.status.success());
    assert!(stderr(&o).contains("missing.csv"), "{}", stderr(&o));
    std::fs::remove_dir_all(&dir).unwrap();
}
