//! Helpers shared by the CLI integration tests: the built binary, scratch directories, a
//! small real image-folder dataset, checkpoint tensors, and the last-line JSON result.
#![allow(dead_code)] // each test file uses a different subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_selfsup"))
}

pub fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("selfsup-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub fn cifar_root() -> PathBuf {
    let root = selfsup_data::data_root().join("cifar10");
    assert!(
        root.join("train").is_dir(),
        "CIFAR-10 image folder not found at {} (set SELFSUP_DATA)",
        root.display()
    );
    root
}

/// A small labelled image-folder tree: `per_class` real CIFAR-10 JPEGs of 3 classes per split.
pub fn small_dataset(dir: &Path, per_class: usize) -> PathBuf {
    let src = cifar_root();
    let root = dir.join("data");
    for split in ["train", "test"] {
        for class in ["airplane", "cat", "ship"] {
            let to = root.join(split).join(class);
            std::fs::create_dir_all(&to).unwrap();
            for i in 0..per_class {
                let name = format!("{i:04}.jpg");
                std::fs::copy(src.join(split).join(class).join(&name), to.join(&name)).unwrap();
            }
        }
    }
    root
}

/// Every tensor of a checkpoint by name (safetensors, f32).
pub fn read_tensors(path: &Path) -> std::collections::BTreeMap<String, Vec<f32>> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(name, view)| {
            let values = view
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect();
            (name, values)
        })
        .collect()
}

/// Every tensor of checkpoint `got` equals (to 1e-5) the same-named tensor of `want`.
pub fn assert_same_tensors(got: &Path, want: &Path) {
    let got = read_tensors(got);
    let want = read_tensors(want);
    assert_eq!(got.len(), want.len());
    for (name, values) in &want {
        let max_diff = values
            .iter()
            .zip(&got[name])
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(
            max_diff <= 1e-5,
            "{name} differs by {max_diff} after resume"
        );
    }
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("run selfsup")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The last stdout line, parsed as the command's JSON result.
pub fn last_json(o: &Output) -> serde_json::Value {
    let out = String::from_utf8_lossy(&o.stdout);
    let line = out
        .lines()
        .last()
        .unwrap_or_else(|| panic!("no stdout; stderr: {}", stderr(o)));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("last line `{line}` is not JSON: {e}"))
}

/// Every accuracy of every `prove` row is present and in [0, 1].
pub fn assert_prove_rows_are_accuracies(rows: &[serde_json::Value]) {
    for r in rows {
        for k in [
            "knn_random_init_top1",
            "knn_top1",
            "linear_top1",
            "finetune_top1",
            "scratch_top1",
        ] {
            let v = r[k].as_f64().unwrap_or_else(|| panic!("{k} missing: {r}"));
            assert!((0.0..=1.0).contains(&v), "{k} = {v}");
        }
    }
}

/// `selfsup prove` on 5 labels per class and 50 % of a sequence (audio or text) checkpoint,
/// short budgets; checks the modality, one row per subset and seed, and that every row holds
/// accuracies. Returns the JSON result.
pub fn prove_small(ckpt: &Path, modality: &str, seeds: &str, steps: usize) -> serde_json::Value {
    let o = run(bin()
        .args(["prove", "--quiet", "--checkpoint"])
        .arg(ckpt)
        .args(["--labels-per-class", "5", "--fractions", "0.5"])
        .args(["--seeds", seeds, "--steps", &steps.to_string()])
        .args(["--linear-epochs", "5"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let j = last_json(&o);
    assert_eq!(j["modality"], modality);
    let rows = j["rows"].as_array().unwrap();
    assert_eq!(
        rows.len(),
        2 * seeds.split(',').count(),
        "2 subsets × seeds"
    );
    assert_prove_rows_are_accuracies(rows);
    j
}

/// `eval knn`, `eval linear` and `embed` on a checkpoint of any modality: figures over the
/// `train` training and `test` test samples, embeddings with one name and label per sample.
pub fn assert_frozen_commands_work(ckpt: &Path, dir: &Path, train: u64, test: u64) {
    let ok = |cmd: &mut Command| {
        let o = run(cmd);
        assert!(o.status.success(), "{}", stderr(&o));
        last_json(&o)
    };
    let j = ok(bin()
        .args(["eval", "knn", "--k", "3", "--checkpoint"])
        .arg(ckpt));
    assert_eq!(
        (j["train_images"].as_u64(), j["images"].as_u64()),
        (Some(train), Some(test)),
        "{j}"
    );
    assert!(
        (0.0..=1.0).contains(&j["knn_top1"].as_f64().unwrap()),
        "{j}"
    );
    let j = ok(bin()
        .args(["eval", "linear", "--epochs", "3", "--checkpoint"])
        .arg(ckpt));
    assert!(
        (0.0..=1.0).contains(&j["linear_top1"].as_f64().unwrap()),
        "{j}"
    );
    let out = dir.join("embeddings.npy");
    let j = ok(bin()
        .args(["embed", "--split", "train", "--limit", "4", "--checkpoint"])
        .arg(ckpt)
        .arg("--out")
        .arg(&out));
    assert_eq!(j["images"], 4, "{j}");
    let names = std::fs::read_to_string(dir.join("embeddings.paths.txt")).unwrap();
    assert_eq!(names.lines().count(), 4, "{names}");
    let labels = std::fs::read(dir.join("embeddings.labels.npy")).unwrap();
    assert_eq!(
        labels.len() % 64,
        32,
        "4 int64 labels after a 64-byte-aligned header"
    );
}

/// `export` refuses a checkpoint it cannot write, naming its modality.
pub fn assert_export_refuses(ckpt: &Path, says: &str) {
    let out = ckpt.with_file_name("export.safetensors");
    let o = run(bin()
        .args(["export", "--checkpoint"])
        .arg(ckpt)
        .arg("--out")
        .arg(&out));
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains(says) && e.contains("torchvision") && e.contains("selfsup embed"),
        "{e}"
    );
    assert!(!out.exists());
}

pub fn tiny_args<'a>(data: &'a Path, out: &'a Path) -> Vec<String> {
    vec![
        "pretrain".into(),
        "--data".into(),
        data.display().to_string(),
        "--out".into(),
        out.display().to_string(),
        "--quiet".into(),
        "--set".into(),
        "model.width=4".into(),
        "--set".into(),
        "method.projection_dims=[16, 16]".into(),
        "--set".into(),
        "train.batch_size=16".into(),
        "--set".into(),
        "data.workers=1".into(),
    ]
}

/// A manifest of real FSDD clips (absolute paths): digits 0–2, 6 train clips and 3 test clips
/// each, from the official split.
pub fn tiny_fsdd(dir: &Path) -> PathBuf {
    let root = selfsup_data::data_root().join("fsdd");
    let text = std::fs::read_to_string(root.join("labels.csv"))
        .unwrap_or_else(|e| panic!("FSDD labels.csv under {}: {e}", root.display()));
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (path, label, speaker, split) = (col("path"), col("label"), col("speaker"), col("split"));
    let mut out = String::from("path,label,speaker,split\n");
    let mut counts = std::collections::BTreeMap::new();
    for line in lines {
        let f: Vec<&str> = line.split(',').collect();
        if !["0", "1", "2"].contains(&f[label]) {
            continue;
        }
        let want = if f[split] == "train" { 6 } else { 3 };
        let n = counts.entry((f[label], f[split])).or_insert(0);
        if *n < want {
            *n += 1;
            out.push_str(&format!(
                "{},{},{},{}\n",
                root.join(f[path]).display(),
                f[label],
                f[speaker],
                f[split]
            ));
        }
    }
    let manifest = dir.join("fsdd_tiny.csv");
    std::fs::write(&manifest, out).unwrap();
    manifest
}

/// A labelled folder of real SST-2 sentences: `train.csv` (the first 80 training sentences),
/// `test.csv` (the first 30 dev sentences), and `more.txt` (the next 40 training sentences, one
/// per line) for a second, plain-text corpus file.
pub fn tiny_sst2(dir: &Path) -> PathBuf {
    let root = selfsup_data::data_root().join("text/sst2");
    let read = |name: &str| {
        std::fs::read_to_string(root.join(name))
            .unwrap_or_else(|e| panic!("SST-2 {name} under {}: {e}", root.display()))
    };
    let data = dir.join("sst2");
    std::fs::create_dir_all(&data).unwrap();
    let train = read("train.csv");
    let lines: Vec<&str> = train.lines().collect();
    std::fs::write(data.join("train.csv"), lines[..81].join("\n") + "\n").unwrap();
    let more: Vec<String> = lines[81..121]
        .iter()
        .map(|l| {
            let text = l.rsplit_once(',').unwrap().0;
            text.trim_matches('"').replace("\"\"", "\"")
        })
        .collect();
    std::fs::write(data.join("more.txt"), more.join("\n") + "\n").unwrap();
    let dev = read("dev.csv");
    let dev: Vec<&str> = dev.lines().take(31).collect();
    std::fs::write(data.join("test.csv"), dev.join("\n") + "\n").unwrap();
    data
}

/// A shipped config file (configs/NAME).
pub fn config(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../../configs/{name}"))
}

/// A tiny audio encoder and batch for the 18 training clips of [`tiny_fsdd`].
pub const AUDIO_TINY: [&str; 10] = [
    "train.batch_size=6",
    "train.knn_every=1",
    "eval.knn_k=3",
    "audio_encoder.d_model=16",
    "audio_encoder.d_ff=32",
    "audio_encoder.n_heads=2",
    "audio_encoder.n_layers=1",
    "audio.crop_frames=40",
    "optim.warmup_epochs=0",
    "train.seed=3",
];

/// A tiny vocabulary, encoder and batch for the 80 training sentences of [`tiny_sst2`] (no
/// dropout: a resumed run must match the uninterrupted one exactly).
pub const TEXT_TINY: [&str; 13] = [
    "train.batch_size=16",
    "train.seed=5",
    "eval.batch_size=16",
    "optim.warmup_epochs=0",
    "text.vocab_size=300",
    "text.min_frequency=1",
    "text.max_len=24",
    "text.heldout_every=10",
    "text_encoder.d_model=32",
    "text_encoder.n_heads=2",
    "text_encoder.n_layers=1",
    "text_encoder.d_ff=64",
    "text_encoder.dropout=0.0",
];
