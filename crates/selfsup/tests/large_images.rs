//! A folder of large photos (2000×1500 JPEGs, generated here): the cache holds each image with
//! its shorter side bounded by `data.max_side` (default from `data.input_size`), so disk and
//! memory grow with the number of images, not their pixels.

mod common;

use std::path::Path;

use common::{bin, run, scratch, stderr};

/// `n` 2000×1500 JPEGs of smooth colour fields with noise (q85: about a megabyte each, like
/// camera photos), in two class folders under `train/` and `test/`; their total size in bytes.
fn photos(root: &Path, n: usize) -> u64 {
    let mut total = 0;
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut noise = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 59) as u8 // 0..31
    };
    for i in 0..n {
        let split = if i % 4 == 3 { "test" } else { "train" };
        let class = if i % 2 == 0 { "a" } else { "b" };
        let dir = root.join(split).join(class);
        std::fs::create_dir_all(&dir).unwrap();
        let img = image::RgbImage::from_fn(2000, 1500, |x, y| {
            let t = (i * 37) as u32;
            image::Rgb([
                ((x / 8 + t) % 200) as u8 + noise(),
                ((y / 6 + 2 * t) % 200) as u8 + noise(),
                (((x + y) / 14 + 3 * t) % 200) as u8 + noise(),
            ])
        });
        let path = dir.join(format!("{i:03}.jpg"));
        let file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        image::codecs::jpeg::JpegEncoder::new_with_quality(file, 85)
            .encode_image(&img)
            .unwrap();
        total += std::fs::metadata(&path).unwrap().len();
    }
    total
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| {
            let m = e.metadata().unwrap();
            if m.is_dir() {
                dir_bytes(&e.path())
            } else {
                m.len()
            }
        })
        .sum()
}

#[test]
fn large_photos_train_with_bounded_cache_and_memory() {
    let dir = scratch("large-photos");
    let data = dir.join("photos");
    let n = 48;
    let source = photos(&data, n);
    let cache = dir.join("cache");
    let out = dir.join("run");
    let o = run(bin()
        .args(["pretrain", "--quiet", "--data"])
        .arg(&data)
        .arg("--out")
        .arg(&out)
        .args([
            "--set",
            "data.input_size=224",
            "--set",
            "model.width=4",
            "--set",
            "method.projection_dims=[16, 16]",
            "--set",
            "train.batch_size=8",
            "--set",
            "train.epochs=1",
            "--set",
            "train.knn_every=0",
            "--set",
            "data.workers=1",
            "--set",
        ])
        .arg(format!("data.cache_dir={}", cache.display())));
    assert!(o.status.success(), "{}", stderr(&o));
    // Full-resolution pixels would be n · 2000 · 1500 · 3 = 432 MB; bounded to a shorter side
    // of 256 they are n · 256 · 341 · 3 = 12.6 MB (both splits), well under the JPEGs; kept as
    // re-encoded JPEGs (`data.cache_format = "auto"`) they are a fraction of that (0.5 MB
    // measured 2026-12-07).
    let cached = dir_bytes(&cache);
    let pixels = n as u64 * (256 * 342 * 3 + 64) + 64 * 1024;
    assert!(
        cached * 4 <= pixels && cached <= source,
        "cache {cached} bytes for {source} bytes of JPEGs (bounded pixels: {pixels})"
    );
    let epoch: serde_json::Value = std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|r| r["type"] == "epoch")
        .unwrap();
    let peak = epoch["peak_rss_bytes"].as_u64().expect("peak RSS on Linux");
    // Measured 2026-12-07 on the same 48 photos: 430 MB, nearly all of it the training step at
    // 224 px (building the cache alone peaks at 176 MB); the previous version cached 324 MB of
    // pixels and peaked at 679 MB. The cache build holds one chunk of 256 bounded images.
    assert!(peak < 600 << 20, "peak RSS {} MB", peak >> 20);
    eprintln!(
        "{n} photos: {source} bytes of JPEG, cache {cached} bytes, peak RSS {} MB",
        peak >> 20
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
