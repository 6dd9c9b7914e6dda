//! Text through the CLI on real SST-2 sentences: pretrain (mlm, causal_lm, electra) → checkpoint →
//! resume → finetune → prove → report, and each bad input named before work.

mod common;

use std::path::Path;

use common::*;

fn pretrain_cmd(cfg: &str, data: &Path, out: &Path, extra: &[&str]) -> std::process::Command {
    let corpus = format!(
        "text.corpus=[\"{}\", \"{}\"]",
        data.join("train.csv").display(),
        data.join("more.txt").display()
    );
    let mut cmd = bin();
    cmd.args(["pretrain", "--quiet", "--config"])
        .arg(config(cfg))
        .arg("--data")
        .arg(data)
        .arg("--out")
        .arg(out)
        .args(["--set", &corpus]);
    for s in TEXT_TINY.iter().chain(&["train.epochs=2"]).chain(extra) {
        cmd.args(["--set", s]);
    }
    cmd
}

fn pretrain(cfg: &str, data: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    run(&mut pretrain_cmd(cfg, data, out, extra))
}

fn epochs(run_dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run_dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["type"] == "epoch")
        .collect()
}

/// Interrupted after epoch 1 and resumed (with `out`'s tokenizer.json loaded through
/// `text.tokenizer`), a 2-epoch run of `cfg` ends with `out`'s epoch-2 checkpoint and tokenizer.
fn assert_resume_reproduces(cfg: &str, data: &Path, out: &Path, split: &Path) {
    let tokenizer = format!(
        "text.tokenizer=\"{}\"",
        out.join("tokenizer.json").display()
    );
    let o = run(pretrain_cmd(cfg, data, split, &[&tokenizer]).args(["--stop-after", "1"]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!split.join("checkpoints/epoch_0002.safetensors").exists());
    let o = run(bin()
        .args(["pretrain", "--quiet", "--resume", "--out"])
        .arg(split));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("resuming after epoch 1"),
        "{}",
        stderr(&o)
    );
    assert_same_tensors(
        &split.join("checkpoints/epoch_0002.safetensors"),
        &out.join("checkpoints/epoch_0002.safetensors"),
    );
    assert_eq!(
        std::fs::read_to_string(split.join("tokenizer.json")).unwrap(),
        std::fs::read_to_string(out.join("tokenizer.json")).unwrap()
    );
}

#[test]
fn mlm_pretrain_resume_finetune_prove_report() {
    let dir = scratch("text");
    let data = tiny_sst2(&dir);
    let out = dir.join("run");
    let o = pretrain("mlm_text.toml", &data, &out, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let j = last_json(&o);
    // 80 + 40 documents, every 10th held out: 108 train, 6 steps of 16 per epoch.
    assert_eq!(j["images"], 108, "{j}");
    assert_eq!(j["steps"], 12, "{j}");
    assert!(j["final_loss"].as_f64().unwrap().is_finite(), "{j}");
    let records = epochs(&out);
    assert_eq!(records.len(), 2);
    for e in &records {
        let acc = e["heldout_accuracy"]
            .as_f64()
            .expect("held-out MLM accuracy");
        let ppl = e["heldout_perplexity"]
            .as_f64()
            .expect("held-out perplexity");
        assert!((0.0..=1.0).contains(&acc), "{e}");
        assert!(ppl > 1.0 && ppl.is_finite(), "{e}");
        assert!(e["heldout_tokens"].as_u64().unwrap() > 0, "{e}");
        assert!(e["tokens_per_second"].as_f64().unwrap() > 0.0, "{e}");
        assert!(e["diagnostics"]["alignment"].is_null(), "one view: {e}");
    }
    // Two epochs of a 300-token language: the held-out loss comes down.
    assert!(
        records[1]["heldout_loss"].as_f64() < records[0]["heldout_loss"].as_f64(),
        "{records:?}"
    );
    // The run's tokenizer is a tokenizer.json the Python libraries read (WordPiece, specials).
    let tok: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("tokenizer.json")).unwrap())
            .unwrap();
    assert_eq!(tok["model"]["type"], "WordPiece");
    assert_eq!(tok["model"]["vocab"]["[MASK]"], 4);
    let ckpt = out.join("checkpoints/epoch_0002.safetensors");
    let tensors = read_tensors(&ckpt);
    let vocab = tok["model"]["vocab"].as_object().unwrap().len();
    assert_eq!(tensors["model.backbone.tokens.weight"].len(), vocab * 32);
    assert_eq!(tensors["model.head.bias"].len(), vocab);
    assert!(tensors.keys().any(|k| k.starts_with("optim.")));

    assert_resume_reproduces("mlm_text.toml", &data, &out, &dir.join("split"));

    // finetune: 5 labels per class, pretrained, from scratch, linear, mean pooling.
    let finetune = |extra: &[&str]| {
        let o = run(bin()
            .args(["finetune", "--quiet", "--checkpoint"])
            .arg(&ckpt)
            .args(["--labels-per-class", "5", "--steps", "3"])
            .args(extra));
        assert!(o.status.success(), "{extra:?}: {}", stderr(&o));
        last_json(&o)
    };
    let j = finetune(&[]);
    assert_eq!(j["modality"], "text");
    assert_eq!(j["labels"], 10);
    assert_eq!(j["test_images"], 30);
    assert_eq!(j["steps"], 3);
    assert_eq!(j["lr"], 1e-4, "the text default");
    assert!((0.0..=1.0).contains(&j["top1"].as_f64().unwrap()), "{j}");
    let j = finetune(&["--from-scratch", "--seed", "1", "--pooling", "mean"]);
    assert_eq!(j["from_scratch"], true);
    assert_eq!(j["backbone_lr_mult"], 1.0);
    let j = finetune(&["--mode", "linear", "--linear-epochs", "5"]);
    assert!((0.0..=1.0).contains(&j["top1"].as_f64().unwrap()), "{j}");
    // LP-FT and --validation work for text as for the other modalities: 25 % of the 80
    // training sentences (stratified) are the queries.
    let j = finetune(&["--lp-ft", "--linear-epochs", "5", "--validation", "0.25"]);
    assert_eq!(
        (j["test_images"].as_u64(), j["train_images"].as_u64()),
        (Some(20), Some(60)),
        "{j}"
    );
    assert_eq!(
        (j["lp_ft"].as_bool(), j["steps"].as_u64()),
        (Some(true), Some(3)),
        "{j}"
    );

    // prove: 5 per class and 50 %, one seed.
    prove_small(&ckpt, "text", "0", 2);
    let md = std::fs::read_to_string(out.join("prove.md")).unwrap();
    assert!(md.contains("| 5/class (10) | 1 |"), "{md}");

    // report: loss curves, the held-out figures and the t-SNE of test sentences.
    let o = run(bin().args(["report"]).arg(&out).args(["--points", "20"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let plots = last_json(&o)["plots"].to_string();
    assert!(
        plots.contains("tsne.png") && plots.contains("heldout.png"),
        "{plots}"
    );
    // Frozen-encoder commands work on text checkpoints too; export says what it supports.
    assert_frozen_commands_work(&ckpt, &out, 80, 30);
    assert_export_refuses(&ckpt, "a text run");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn causal_lm_pretrains_and_finetunes_with_mean_pooling() {
    let dir = scratch("text-causal");
    let data = tiny_sst2(&dir);
    let out = dir.join("causal");
    let o = pretrain("causal_text.toml", &data, &out, &["train.epochs=1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let e = &epochs(&out)[0];
    let ppl = e["heldout_perplexity"]
        .as_f64()
        .expect("held-out perplexity");
    assert!(ppl > 1.0 && ppl.is_finite(), "{e}");
    let ckpt = out.join("checkpoints/epoch_0001.safetensors");
    let o = run(bin()
        .args(["finetune", "--quiet", "--checkpoint"])
        .arg(&ckpt)
        .args(["--labels-per-class", "4", "--steps", "2"]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(last_json(&o)["labels"], 8);
    // [CLS] pooling of a causal encoder would see one token.
    let o = run(bin()
        .args(["finetune", "--quiet", "--checkpoint"])
        .arg(&ckpt)
        .args([
            "--labels-per-class",
            "4",
            "--steps",
            "2",
            "--pooling",
            "cls",
        ]));
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--pooling mean"), "{}", stderr(&o));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn electra_pretrains_resumes_and_finetunes_its_discriminator() {
    let dir = scratch("text-electra");
    let data = tiny_sst2(&dir);
    let out = dir.join("electra");
    let o = pretrain("electra_text.toml", &data, &out, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    for e in epochs(&out) {
        let detection = e["heldout_detection_accuracy"]
            .as_f64()
            .expect("held-out detection accuracy");
        assert!((0.0..=1.0).contains(&detection), "{e}");
        let ppl = e["heldout_perplexity"]
            .as_f64()
            .expect("generator perplexity");
        assert!(ppl > 1.0 && ppl.is_finite(), "{e}");
    }
    // The encoder (discriminator) is `backbone.*`, the generator a quarter as wide (32 -> 8).
    let ckpt = out.join("checkpoints/epoch_0002.safetensors");
    let tensors = read_tensors(&ckpt);
    let vocab = tensors["model.backbone.tokens.weight"].len() / 32;
    assert_eq!(
        tensors["model.generator.backbone.tokens.weight"].len(),
        vocab * 8
    );
    assert_eq!(tensors["model.head.out.weight"].len(), 32);
    // The replacements are drawn from seeded streams: stopped after epoch 1 and resumed, the
    // run ends with the same weights.
    assert_resume_reproduces("electra_text.toml", &data, &out, &dir.join("split"));
    // Fine-tuning loads the discriminator.
    let o = run(bin()
        .args(["finetune", "--quiet", "--checkpoint"])
        .arg(&ckpt)
        .args(["--labels-per-class", "4", "--steps", "2"]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(last_json(&o)["labels"], 8);
    // Bad ELECTRA settings are named before any work.
    for (setting, needle) in [
        ("method.generator_width=0", "method.generator_width"),
        (
            "method.discriminator_weight=-1",
            "method.discriminator_weight",
        ),
        ("method.mask_probability=0", "method.mask_probability"),
    ] {
        let bad = dir.join("bad");
        let o = pretrain("electra_text.toml", &data, &bad, &[setting]);
        assert!(!o.status.success(), "{setting} succeeded");
        assert!(stderr(&o).contains(needle), "{setting}: {}", stderr(&o));
        assert!(!bad.join("checkpoints").exists());
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_text_inputs_are_named() {
    let dir = scratch("text-bad");
    let data = tiny_sst2(&dir);
    let fails_with = |extra: &[&str], out: &str, needles: &[&str]| {
        let o = pretrain("mlm_text.toml", &data, &dir.join(out), extra);
        assert!(!o.status.success(), "{extra:?} succeeded");
        for n in needles {
            assert!(stderr(&o).contains(n), "{extra:?}: {}", stderr(&o));
        }
    };
    // Missing column: named, with the columns present.
    fails_with(
        &["text.text_column=\"review\""],
        "a",
        &[
            "no column named \"review\"",
            "train.csv",
            "\"text\", \"label\"",
        ],
    );
    // Bad UTF-8: the file and the line.
    let bad = dir.join("latin1.txt");
    std::fs::write(&bad, b"fine\nalso fine\ncaf\xe9 au lait\n").unwrap();
    let bad_corpus = format!("text.corpus=[\"{}\"]", bad.display());
    fails_with(&[&bad_corpus], "b", &["latin1.txt line 3", "UTF-8"]);
    // Empty corpus.
    let empty = dir.join("empty.txt");
    std::fs::write(&empty, "\n  \n").unwrap();
    let empty_corpus = format!("text.corpus=[\"{}\"]", empty.display());
    fails_with(&[&empty_corpus], "c", &["empty.txt", "empty corpus"]);
    // The downstream test split is never pretrained on.
    let test_corpus = format!("text.corpus=[\"{}\"]", data.join("test.csv").display());
    fails_with(&[&test_corpus], "d", &["never reads test texts"]);
    // Bad config values, each named before any work.
    fails_with(
        &["method.mask_probability=1.5"],
        "e",
        &["method.mask_probability"],
    );
    fails_with(
        &["method.mask_fraction=0.95"],
        "f",
        &["mask_fraction + random_fraction"],
    );
    fails_with(
        &["text_encoder.n_heads=3"],
        "g",
        &["text_encoder", "n_heads"],
    );
    fails_with(&["text.pooling=\"max\""], "h", &["text.pooling"]);
    fails_with(
        &["text_encoder.position_init=\"rope\""],
        "h2",
        &["text_encoder.position_init", "sinusoidal"],
    );
    fails_with(&["text.max_len=2"], "i", &["text.max_len"]);
    fails_with(
        &["text.heldout_every=1000"],
        "j",
        &["text.heldout_every", "no held-out"],
    );
    fails_with(
        &["train.batch_size=200"],
        "k",
        &["fewer than train.batch_size"],
    );
    fails_with(
        &["text.vocab_sise=50"],
        "l",
        &["did you mean `text.vocab_size`"],
    );
    // Another method's keys in the file are refused, naming the method.
    fails_with(
        &["method.name=\"causal_lm\""],
        "m",
        &[
            "is a setting of mlm, electra, not of causal_lm",
            "remove it or set method.name",
        ],
    );
    let o = pretrain(
        "causal_text.toml",
        &data,
        &dir.join("m2"),
        &["text.pooling=\"cls\""],
    );
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("text.pooling") && stderr(&o).contains("causal"),
        "{}",
        stderr(&o)
    );
    let missing = format!("text.tokenizer=\"{}\"", dir.join("nope.json").display());
    fails_with(&[&missing], "n", &["text.tokenizer", "nope.json"]);
    for out in ["a", "b", "c", "d"] {
        assert!(
            !dir.join(out).join("checkpoints").exists(),
            "{out}: no checkpoint after an error"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
