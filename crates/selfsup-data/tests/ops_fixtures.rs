//! The deterministic op cores against torchvision outputs stored by
//! `fixtures/make_aug_fixtures.py`.

use std::collections::BTreeMap;
use std::path::Path;

use selfsup_data::{ImageView, RgbImage, ops};
use serde_json::Value;

mod common;

struct Fixtures {
    json: Value,
    blob: Vec<u8>,
}

impl Fixtures {
    fn load() -> Self {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
        let text = std::fs::read_to_string(dir.join("aug_fixtures.json"))
            .expect("fixtures/aug_fixtures.json missing; run make_aug_fixtures.py");
        let blob =
            std::fs::read(dir.join("aug_fixtures.bin")).expect("fixtures/aug_fixtures.bin missing");
        Fixtures {
            json: serde_json::from_str(&text).unwrap(),
            blob,
        }
    }

    /// (shape, bytes) of a stored array.
    fn array(&self, name: &str) -> (Vec<usize>, &[u8]) {
        let a = &self.json["arrays"][name];
        let shape: Vec<usize> = a["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap() as usize)
            .collect();
        let elem = if a["dtype"] == "float32" { 4 } else { 1 };
        let off = a["offset"].as_u64().unwrap() as usize;
        let len = shape.iter().product::<usize>() * elem;
        (shape, &self.blob[off..off + len])
    }

    fn image(&self, name: &str) -> RgbImage {
        let (shape, bytes) = self.array(name);
        RgbImage::new(shape[0], shape[1], bytes.to_vec())
    }
}

fn max_abs_diff(a: &[u8], b: &[u8]) -> u8 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| x.abs_diff(*y))
        .max()
        .unwrap_or(0)
}

fn run_u8_op(op: &str, p: &Value, input: ImageView) -> RgbImage {
    let f = |k: &str| p[k].as_f64().unwrap();
    let u = |k: &str| p[k].as_u64().unwrap() as usize;
    let mut img = input.to_owned();
    match op {
        "resized_crop" => {
            return ops::resized_crop(
                input,
                u("top"),
                u("left"),
                u("height"),
                u("width"),
                u("out_h"),
                u("out_w"),
            );
        }
        "resize_center_crop" => return ops::resize_center_crop(input, u("size")),
        "padded_crop" => {
            return ops::padded_crop(
                input,
                u("padding"),
                u("top"),
                u("left"),
                u("height"),
                u("width"),
            );
        }
        "gaussian_blur" => return ops::gaussian_blur(input, u("kernel_size"), f("sigma")),
        "adjust_brightness" => ops::adjust_brightness(&mut img, f("factor")),
        "adjust_contrast" => ops::adjust_contrast(&mut img, f("factor")),
        "adjust_saturation" => ops::adjust_saturation(&mut img, f("factor")),
        "adjust_hue" => ops::adjust_hue(&mut img, f("factor")),
        "rgb_to_grayscale" => ops::rgb_to_grayscale(&mut img),
        "solarize" => ops::solarize(&mut img, u("threshold") as u8),
        "hflip" => ops::hflip(&mut img),
        other => panic!("fixture op {other} has no Rust counterpart"),
    }
    img
}

/// Every u8 op within 1 of torchvision (float rounding at .5 / truncation
/// boundaries), and at most 1% of values differing at all.
#[test]
fn u8_ops_match_torchvision() {
    let fx = Fixtures::load();
    let mut worst: BTreeMap<String, (u8, usize, usize)> = BTreeMap::new();
    for case in fx.json["cases"].as_array().unwrap() {
        let op = case["op"].as_str().unwrap();
        if op == "normalize" {
            continue;
        }
        let input = fx.image(case["input"].as_str().unwrap());
        let expected = fx.image(case["output"].as_str().unwrap());
        let got = run_u8_op(op, &case["params"], input.view());
        assert_eq!(
            (got.h, got.w),
            (expected.h, expected.w),
            "{op} {}: output size",
            case["params"]
        );
        let diff = max_abs_diff(&got.data, &expected.data);
        let n_diff = got
            .data
            .iter()
            .zip(&expected.data)
            .filter(|(a, b)| a != b)
            .count();
        assert!(
            diff <= 1,
            "{op} {} on {}: max abs diff {diff} > 1",
            case["params"],
            case["input"]
        );
        assert!(
            n_diff * 100 <= got.data.len(),
            "{op} {}: {n_diff} of {} values differ",
            case["params"],
            got.data.len()
        );
        let w = worst.entry(op.to_string()).or_default();
        *w = (w.0.max(diff), w.1 + n_diff, w.2 + got.data.len());
    }
    for (op, (d, n, total)) in &worst {
        println!("{op:20} max |diff| {d}  differing values {n}/{total}");
    }
    assert_eq!(
        worst.len(),
        11,
        "every op family must be covered by fixtures"
    );
}

#[test]
fn normalize_matches_torchvision() {
    let fx = Fixtures::load();
    let mut checked = 0;
    for case in fx.json["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["op"] == "normalize")
    {
        let p = &case["params"];
        let vec3 =
            |k: &str| -> [f32; 3] { std::array::from_fn(|i| p[k][i].as_f64().unwrap() as f32) };
        let input = fx.image(case["input"].as_str().unwrap());
        let (_, bytes) = fx.array(case["output"].as_str().unwrap());
        let expected: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        let mut got = vec![0.0; expected.len()];
        ops::normalize_into(input.view(), vec3("mean"), vec3("std"), &mut got);
        let diff = got
            .iter()
            .zip(&expected)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(diff <= 1e-5, "normalize max diff {diff}");
        checked += 1;
    }
    assert!(checked > 0);
}

/// Our JPEG decoder (image crate) against PIL's decode of the same CIFAR files.
/// Decoders differ in IDCT/upsampling details, so this bounds the mean difference.
#[test]
fn jpeg_decode_close_to_pil() {
    let fx = Fixtures::load();
    let root = common::cifar10_dir().parent().unwrap().to_path_buf();
    for (k, rel) in fx.json["sources"].as_array().unwrap().iter().enumerate() {
        let rel = rel.as_str().unwrap();
        let name = format!("in_{}", rel.replace('/', "_").replace(".jpg", ""));
        let pil = fx.image(&name);
        let ours = image::open(root.join(rel)).unwrap().into_rgb8();
        let mean = ours
            .as_raw()
            .iter()
            .zip(&pil.data)
            .map(|(a, b)| a.abs_diff(*b) as f64)
            .sum::<f64>()
            / pil.data.len() as f64;
        let max = max_abs_diff(ours.as_raw(), &pil.data);
        println!("jpeg {k} {rel}: mean |diff| {mean:.3}, max {max}");
        assert!(
            mean < 2.0,
            "{rel}: decoded JPEG differs from PIL by {mean} on average"
        );
    }
}
