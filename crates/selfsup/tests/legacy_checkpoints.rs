//! Checkpoints written by selfsup before the library core (the binary of commit a99feeb, main
//! of 2026-12-07) still load: an image, an audio and a text run in fixtures/legacy, each with
//! what that binary computed from it. Their configs hold keys this version moved or dropped.
//!
//! Regenerate (only with a binary built from that commit):
//! `SELFSUP_LEGACY_BIN=/path/to/old/selfsup SELFSUP_LEGACY_OUT=crates/selfsup/tests/fixtures/legacy
//!  cargo test --release -p selfsup --test legacy_checkpoints -- --ignored make_legacy_fixtures`

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use selfsup::{Evaluate, FinetuneMode, FinetuneRequest, Recipe, Split, SubsetSpec};

/// The fixture runs, copied to scratch (evaluation writes caches beside a run directory).
fn fixture_runs(dir: &Path) -> PathBuf {
    let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/legacy");
    let to = dir.join("legacy");
    for entry in walk(&from) {
        let rel = entry.strip_prefix(&from).unwrap();
        std::fs::create_dir_all(to.join(rel).parent().unwrap()).unwrap();
        std::fs::copy(&entry, to.join(rel)).unwrap();
    }
    to
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// `finetune --mode linear` as the fixtures ran it.
fn linear(ckpt: &Path, data: &Path, per_class: usize) -> serde_json::Value {
    Evaluate::checkpoint(ckpt)
        .data(data)
        .finetune(&FinetuneRequest {
            subset: SubsetSpec::PerClass(per_class),
            mode: FinetuneMode::Linear,
            from_scratch: false,
            recipe: Recipe {
                linear_epochs: 20,
                ..Recipe::default()
            },
            quiet: true,
        })
        .unwrap()
}

#[test]
fn checkpoints_of_the_previous_version_load_and_evaluate_the_same() {
    let dir = scratch("legacy");
    let runs = fixture_runs(&dir);

    // Image: the same embeddings, bit for bit up to float rounding, and the same kNN.
    let data = small_dataset(&dir, 8);
    let ckpt = runs.join("image/checkpoints/epoch_0001.safetensors");
    let eval = Evaluate::checkpoint(&ckpt).data(&data);
    let out = dir.join("embeddings.safetensors");
    let e = eval.embed(Split::Test, None, &out).unwrap();
    assert_eq!((e.images, e.dim), (24, 16));
    let (got, want) = (
        read_tensors(&out),
        read_tensors(&runs.join("image/test_embeddings.safetensors")),
    );
    let (got, want) = (&got["embeddings"], &want["embeddings"]);
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() <= 1e-5 * scale, "{g} vs {w}");
    }
    let knn = eval.knn().unwrap();
    assert_eq!(
        knn.knn_top1,
        json(&runs.join("image/knn.json"))["knn_top1"]
            .as_f64()
            .unwrap()
    );

    // Audio (its masking keys were under [audio] then) and text (under [text], with its
    // run's tokenizer.json): the linear probe of the previous version's figures.
    let manifest = tiny_fsdd(&dir);
    let j = linear(
        &runs.join("audio/checkpoints/epoch_0001.safetensors"),
        &manifest,
        4,
    );
    let want = json(&runs.join("audio/linear.json"));
    assert_eq!(
        (&j["top1"], &j["labels"], &j["modality"]),
        (&want["top1"], &want["labels"], &want["modality"])
    );
    let sst = tiny_sst2(&dir);
    let j = linear(
        &runs.join("text/checkpoints/epoch_0001.safetensors"),
        &sst,
        5,
    );
    let want = json(&runs.join("text/linear.json"));
    assert_eq!(
        (&j["top1"], &j["labels"], &j["modality"]),
        (&want["top1"], &want["labels"], &want["modality"])
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

fn legacy() -> Command {
    Command::new(std::env::var("SELFSUP_LEGACY_BIN").expect("SELFSUP_LEGACY_BIN"))
}

fn ok(cmd: &mut Command) -> serde_json::Value {
    let o = cmd.env("RAYON_NUM_THREADS", "1").output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    last_json(&o)
}

/// `finetune --mode linear` of the legacy binary on `per_class` labels per class, saved to `out`.
fn linear_fixture(ckpt: &Path, data: &Path, per_class: &str, out: &Path) {
    let j = ok(legacy()
        .args([
            "finetune",
            "--quiet",
            "--mode",
            "linear",
            "--linear-epochs",
            "20",
        ])
        .args(["--labels-per-class", per_class, "--checkpoint"])
        .arg(ckpt)
        .arg("--data")
        .arg(data));
    std::fs::write(out, j.to_string() + "\n").unwrap();
}

/// Writes fixtures/legacy with the binary in SELFSUP_LEGACY_BIN (see the module docs).
#[test]
#[ignore]
fn make_legacy_fixtures() {
    let fixtures = PathBuf::from(std::env::var("SELFSUP_LEGACY_OUT").expect("SELFSUP_LEGACY_OUT"));
    let dir = scratch("legacy-make");
    let copy = |from: PathBuf, to: PathBuf| {
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(from, to).unwrap();
    };
    // Images: SimCLR, ResNet-18 width 2, one epoch on 24 real CIFAR-10 images.
    let data = small_dataset(&dir, 8);
    let out = dir.join("image");
    ok(legacy()
        .args(["pretrain", "--quiet", "--data"])
        .arg(&data)
        .arg("--out")
        .arg(&out)
        .args([
            "--set",
            "model.width=2",
            "--set",
            "method.projection_dims=[8, 8]",
            "--set",
            "train.batch_size=8",
            "--set",
            "train.epochs=1",
            "--set",
            "data.workers=1",
            "--set",
            "eval.knn_k=5",
        ]));
    let img = fixtures.join("image/checkpoints/epoch_0001.safetensors");
    copy(out.join("checkpoints/epoch_0001.safetensors"), img.clone());
    ok(legacy()
        .args(["embed", "--checkpoint"])
        .arg(&img)
        .arg("--data")
        .arg(&data)
        .args(["--split", "test", "--out"])
        .arg(fixtures.join("image/test_embeddings.safetensors")));
    let knn = ok(legacy()
        .args(["eval", "knn", "--checkpoint"])
        .arg(&img)
        .arg("--data")
        .arg(&data));
    std::fs::write(fixtures.join("image/knn.json"), knn.to_string() + "\n").unwrap();

    // Audio: masked_frames, a tiny encoder, one epoch on 18 FSDD clips.
    let manifest = tiny_fsdd(&dir);
    let out = dir.join("audio");
    let mut cmd = legacy();
    cmd.args(["pretrain", "--quiet", "--config"])
        .arg(config("masked_frames_fsdd.toml"))
        .arg("--data")
        .arg(&manifest)
        .arg("--out")
        .arg(&out);
    // The masking keys were under [audio] then.
    for s in AUDIO_TINY
        .iter()
        .chain(&["train.epochs=1", "audio.mask_span=[3, 6]"])
    {
        cmd.args(["--set", s]);
    }
    ok(&mut cmd);
    let aud = fixtures.join("audio/checkpoints/epoch_0001.safetensors");
    copy(out.join("checkpoints/epoch_0001.safetensors"), aud.clone());
    linear_fixture(&aud, &manifest, "4", &fixtures.join("audio/linear.json"));

    // Text: MLM, a tiny encoder and vocabulary, one epoch on 80 SST-2 sentences.
    let sst = tiny_sst2(&dir);
    let out = dir.join("text");
    let mut cmd = legacy();
    cmd.args(["pretrain", "--quiet", "--config"])
        .arg(config("mlm_text.toml"))
        .arg("--data")
        .arg(&sst)
        .arg("--out")
        .arg(&out);
    let corpus = format!("text.corpus=[\"{}\"]", sst.join("train.csv").display());
    cmd.args(["--set", &corpus]);
    for s in TEXT_TINY.iter().chain(&["train.epochs=1"]) {
        cmd.args(["--set", s]);
    }
    ok(&mut cmd);
    let txt = fixtures.join("text/checkpoints/epoch_0001.safetensors");
    copy(out.join("checkpoints/epoch_0001.safetensors"), txt.clone());
    copy(
        out.join("tokenizer.json"),
        fixtures.join("text/tokenizer.json"),
    );
    linear_fixture(&txt, &sst, "5", &fixtures.join("text/linear.json"));
}
