//! `selfsup report`, `selfsup export --format torchvision` and `selfsup embed --limit` on a tiny
//! real run.

mod common;

use common::*;

/// Width and height of a PNG file, after checking its signature and IHDR chunk.
fn png_size(path: &std::path::Path) -> (u32, u32) {
    let b = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(
        &b[..8],
        b"\x89PNG\r\n\x1a\n",
        "{} is not a PNG",
        path.display()
    );
    assert_eq!(&b[12..16], b"IHDR");
    let be = |i: usize| u32::from_be_bytes(b[i..i + 4].try_into().unwrap());
    (be(16), be(20))
}

#[test]
fn report_export_and_limited_embed() {
    let dir = scratch("report");
    let data = small_dataset(&dir, 16);
    let out = dir.join("run");
    let o = run(bin().args(tiny_args(&data, &out)).args([
        "--set",
        "train.epochs=2",
        "--set",
        "train.knn_every=1",
    ]));
    assert!(o.status.success(), "{}", stderr(&o));
    std::fs::write(
        out.join("prove.json"),
        r#"{"budget": 1, "rows": [{"fraction": 0.01, "labels": 500, "linear_top1": 0.4321, "knn_top1": 0.4012}]}"#,
    )
    .unwrap();

    // The report: html referencing every plot, plots as real PNGs, the prove table rendered.
    let o = run(bin().arg("report").arg(&out).args(["--points", "48"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let j = last_json(&o);
    assert_eq!(j["map_points"], 48);
    let trust = j["map_trustworthiness"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&trust), "{trust}");
    let html = std::fs::read_to_string(out.join("report/report.html")).unwrap();
    for png in ["training.png", "knn.png", "diagnostics.png", "tsne.png"] {
        assert!(
            html.contains(&format!("src=\"{png}\"")),
            "report.html lacks {png}"
        );
        let (w, h) = png_size(&out.join("report").join(png));
        assert!(w >= 800 && h >= 400, "{png} is {w}×{h}");
    }
    assert_eq!(j["plots"].as_array().unwrap().len(), 4);
    assert!(
        html.contains("43.21%") && html.contains("prove.json"),
        "prove table missing"
    );
    assert!(html.contains("simclr"));

    // A directory that is not a run is refused by name.
    let o = run(bin().arg("report").arg(&data));
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("metrics.jsonl not found"),
        "{}",
        stderr(&o)
    );

    // torchvision export: renamed tensors, int64 num_batches_tracked, metadata to rebuild it.
    let ckpt = out.join("checkpoints/epoch_0002.safetensors");
    let tv = dir.join("tv.safetensors");
    let o = run(bin()
        .args(["export", "--format", "torchvision", "--checkpoint"])
        .arg(&ckpt)
        .arg("--out")
        .arg(&tv));
    assert!(o.status.success(), "{}", stderr(&o));
    let bytes = std::fs::read(&tv).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(st.len(), 120); // torchvision resnet18's state_dict without fc
    assert_eq!(
        st.tensor("layer2.0.downsample.0.weight").unwrap().shape(),
        &[8, 4, 1, 1]
    );
    assert_eq!(st.tensor("layer4.1.bn2.weight").unwrap().shape(), &[32]);
    let nbt = st.tensor("bn1.num_batches_tracked").unwrap();
    assert_eq!(nbt.dtype(), safetensors::Dtype::I64);
    assert_eq!(nbt.data(), 6i64.to_le_bytes()); // 2 epochs × 3 steps
    assert!(
        st.names()
            .iter()
            .all(|n| !n.contains("gamma") && !n.contains(".bn."))
    );
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let meta = meta.metadata().clone().unwrap();
    assert_eq!(meta["architecture"], "resnet18");
    assert_eq!(meta["width"], "4");
    assert_eq!(meta["stem"], "cifar");
    let mean: Vec<f32> = serde_json::from_str(&meta["normalize_mean"]).unwrap();
    assert_eq!(mean.len(), 3);
    // A SimCLR encoder takes colour (a colorization one would say `lightness`).
    assert_eq!(meta["input"], "rgb");

    let o = run(bin()
        .args(["export", "--format", "onnx", "--checkpoint"])
        .arg(&ckpt)
        .arg("--out")
        .arg(&tv));
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--format `onnx`"), "{}", stderr(&o));

    // embed --limit: evenly spaced, so all three classes show up.
    let emb = dir.join("emb.safetensors");
    let o = run(bin()
        .args(["embed", "--limit", "6", "--checkpoint"])
        .arg(&ckpt)
        .arg("--out")
        .arg(&emb));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(last_json(&o)["images"], 6);
    let bytes = std::fs::read(&emb).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let paths: Vec<String> =
        serde_json::from_str(&meta.metadata().as_ref().unwrap()["paths"]).unwrap();
    for class in ["airplane", "cat", "ship"] {
        assert_eq!(
            paths
                .iter()
                .filter(|p| p.contains(&format!("/{class}/")))
                .count(),
            2,
            "{paths:?}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
