//! Helpers for the integration tests that run the `selfsup` binary on small real data.

#![allow(dead_code)] // each test file uses a different subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_selfsup"))
}

/// A fresh directory under the system temp dir, unique to this process and `name`.
pub fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("selfsup-it-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A small labelled image-folder tree: `per_class` real CIFAR-10 JPEGs of 3 classes per split.
pub fn small_dataset(dir: &Path, per_class: usize) -> PathBuf {
    let src = selfsup_data::data_root().join("cifar10");
    assert!(
        src.join("train").is_dir(),
        "CIFAR-10 image folder not found at {} (set SELFSUP_DATA)",
        src.display()
    );
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

/// `selfsup pretrain` arguments for a tiny, fast run (width-4 ResNet-18, batch 16).
pub fn tiny_pretrain_args(data: &Path, out: &Path) -> Vec<String> {
    [
        "pretrain",
        "--data",
        &data.display().to_string(),
        "--out",
        &out.display().to_string(),
        "--quiet",
        "--set",
        "model.width=4",
        "--set",
        "method.projection_dims=[16, 16]",
        "--set",
        "train.batch_size=16",
        "--set",
        "data.workers=1",
    ]
    .map(String::from)
    .to_vec()
}
