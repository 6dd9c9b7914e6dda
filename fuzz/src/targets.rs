//! One target per parser of outside input. Each writes the input where the parser expects
//! a file (a dataset tree, a config, a checkpoint) and calls the public entry point users
//! reach, so the fuzzed path is the real one (listing, decoding, caching, validation).

use std::collections::BTreeMap;
use std::io::{Cursor, Write};
use std::path::Path;

use selfsup::RawConfig;
use selfsup::checkpoint;
use selfsup_data::{CacheOptions, ImageDataset, Split, open_dataset};
use selfsup_models::NamedTensor;

use crate::{Outcome, Target};

pub fn all() -> Vec<Target> {
    vec![
        Target {
            name: "image_decode",
            run: image_decode,
            seeds: image_seeds,
            dictionary: &[
                b"\x89PNG\r\n\x1a\n",
                b"IHDR",
                b"IDAT",
                b"IEND",
                b"\xff\xd8\xff",
                b"\xff\xc0",
                b"\xff\xda",
                b"GIF89a",
                b"BM",
                b"II*\x00",
                b"RIFF",
                b"WEBPVP8L",
            ],
        },
        Target {
            name: "image_folder",
            run: image_folder,
            seeds: folder_seeds,
            dictionary: &[b"\x00", b"\x01", b"\x02", b"\x03", b"\x89PNG\r\n\x1a\n"],
        },
        Target {
            name: "cifar_binary",
            run: cifar_binary,
            seeds: cifar_seeds,
            dictionary: &[b"\x00", b"\x09", b"\x0a", b"\xff"],
        },
        Target {
            name: "idx",
            run: idx,
            seeds: idx_seeds,
            dictionary: &[
                b"\x00\x00\x08\x03",
                b"\x00\x00\x08\x01",
                b"\x00\x00\x0d\x03",
                b"\x1f\x8b\x08\x00",
                b"\xff\xff\xff\xff",
            ],
        },
        Target {
            name: "config",
            run: config,
            seeds: config_seeds,
            dictionary: CONFIG_TOKENS,
        },
        Target {
            name: "checkpoint",
            run: checkpoint_load,
            seeds: checkpoint_seeds,
            dictionary: &[
                b"\"dtype\":\"F32\"",
                b"\"dtype\":\"F64\"",
                b"\"dtype\":\"I64\"",
                b"\"shape\":[",
                b"\"data_offsets\":[",
                b"\"__metadata__\":{",
                b"\"crc32\":\"",
                b"\"selfsup\":\"",
                b"selfsup-checkpoint-v1",
                b"\\\"epoch\\\":",
                b"18446744073709551615",
                b"4294967296",
            ],
        },
    ]
}

fn refused(e: impl std::fmt::Display) -> Outcome {
    Outcome::Refused(e.to_string())
}

/// Every image of an opened dataset must be readable with the size it claims.
fn check_dataset(ds: &ImageDataset) {
    for i in 0..ds.len() {
        let img = ds.image(i);
        let img = img.view();
        assert_eq!(img.data.len(), img.h * img.w * 3, "image {i} size");
        assert!(img.h > 0 && img.w > 0, "image {i} is empty");
    }
}

fn open(root: &Path, split: Split, cache: Option<&Path>, skip_corrupt: bool) -> Outcome {
    let opts = CacheOptions {
        cache_dir: cache.map(Path::to_path_buf),
        skip_corrupt,
        max_short_side: None,
        ..Default::default()
    };
    match open_dataset(root, split, &opts) {
        Ok(ds) => {
            check_dataset(&ds);
            Outcome::Accepted
        }
        Err(e) => refused(e),
    }
}

const IMAGE_EXTENSIONS: &[&str] = &["png", "jpg", "bmp", "gif", "tif", "webp", "jpeg", "png"];

/// First byte: the file extension; the rest: the file. One image in one class folder.
fn image_decode(dir: &Path, input: &[u8]) -> Outcome {
    let (ext, bytes) = match input.split_first() {
        Some((e, rest)) => (IMAGE_EXTENSIONS[*e as usize % IMAGE_EXTENSIONS.len()], rest),
        None => ("png", input),
    };
    let class = dir.join("data/c");
    std::fs::create_dir_all(&class).unwrap();
    std::fs::write(class.join(format!("x.{ext}")), bytes).unwrap();
    open(&dir.join("data"), Split::Train, None, false)
}

fn encode(img: image::DynamicImage, format: image::ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, format).expect("encode seed image");
    out.into_inner()
}

fn sample_rgb(w: u32, h: u32) -> image::RgbImage {
    image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x * 50) as u8, (y * 60) as u8, (x * y * 7) as u8])
    })
}

/// Small images of every format and pixel type the reader converts.
fn sample_images() -> Vec<(u8, Vec<u8>)> {
    use image::{DynamicImage as D, ImageFormat as F};
    let rgb = sample_rgb(5, 4);
    let rgba = image::RgbaImage::from_fn(4, 3, |x, y| image::Rgba([x as u8 * 60, y as u8, 9, 128]));
    let rgb16 = image::ImageBuffer::<image::Rgb<u16>, _>::from_fn(3, 2, |x, _| {
        image::Rgb([65535, (x * 25700) as u16, 0])
    });
    let gray = image::GrayImage::from_fn(3, 3, |x, y| image::Luma([(x + y) as u8 * 40]));
    vec![
        (0, encode(D::ImageRgb8(rgb.clone()), F::Png)),
        (0, encode(D::ImageRgba8(rgba.clone()), F::Png)),
        (0, encode(D::ImageRgb16(rgb16), F::Png)),
        (0, encode(D::ImageLuma8(gray), F::Png)),
        (1, encode(D::ImageRgb8(sample_rgb(8, 8)), F::Jpeg)),
        (2, encode(D::ImageRgb8(rgb.clone()), F::Bmp)),
        (3, encode(D::ImageRgba8(rgba), F::Gif)),
        (4, encode(D::ImageRgb8(rgb.clone()), F::Tiff)),
        (5, encode(D::ImageRgb8(rgb), F::WebP)),
    ]
}

fn image_seeds() -> Vec<Vec<u8>> {
    let mut seeds: Vec<Vec<u8>> = sample_images()
        .into_iter()
        .map(|(ext, bytes)| [vec![ext], bytes].concat())
        .collect();
    seeds.push(b"\x00just some text".to_vec());
    seeds
}

/// The input is a list of entries `[op][name][len: u16 le][len bytes]` building a dataset
/// tree: op % 4 = 0 a file in train/<class>/, 1 a file in test/<class>/, 2 a file at the
/// root, 3 an empty train/<class>/ folder. Both splits are opened, strict and skipping
/// corrupt files (through the on-disk cache).
fn image_folder(dir: &Path, input: &[u8]) -> Outcome {
    let root = dir.join("data");
    std::fs::create_dir_all(&root).unwrap();
    let mut rest = input;
    while rest.len() >= 4 {
        let (op, name) = (rest[0], rest[1]);
        let len = (u16::from_le_bytes([rest[2], rest[3]]) as usize).min(rest.len() - 4);
        let content = &rest[4..4 + len];
        rest = &rest[4 + len..];
        let class = ["a", "b", "c", "d"][name as usize % 4];
        let file = format!(
            "f{}.{}",
            name / 4,
            IMAGE_EXTENSIONS[name as usize % IMAGE_EXTENSIONS.len()]
        );
        let folder = match op % 4 {
            0 => root.join("train").join(class),
            1 => root.join("test").join(class),
            2 => root.clone(),
            _ => {
                std::fs::create_dir_all(root.join("train").join(class)).unwrap();
                continue;
            }
        };
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join(file), content).unwrap();
    }
    let cache = dir.join("cache");
    let mut outcomes = Vec::new();
    for split in [Split::Train, Split::Test] {
        outcomes.push(open(&root, split, None, false));
        outcomes.push(open(&root, split, Some(&cache), true));
    }
    outcomes
        .into_iter()
        .find(|o| matches!(o, Outcome::Refused(_)))
        .unwrap_or(Outcome::Accepted)
}

fn folder_entry(op: u8, name: u8, content: &[u8]) -> Vec<u8> {
    let mut v = vec![op, name];
    v.extend_from_slice(&(content.len() as u16).to_le_bytes());
    v.extend_from_slice(content);
    v
}

fn folder_seeds() -> Vec<Vec<u8>> {
    let images = sample_images();
    let png = &images[0].1;
    let jpg = &images[4].1;
    vec![
        // train/{a,b}, test/{a,b}: a labelled tree.
        [
            folder_entry(0, 0, png),
            folder_entry(0, 1, jpg),
            folder_entry(1, 0, png),
            folder_entry(1, 1, png),
        ]
        .concat(),
        // A flat folder of unlabelled images, one of them RGBA, one 16-bit.
        [
            folder_entry(2, 0, png),
            folder_entry(2, 4, &images[1].1),
            folder_entry(2, 8, &images[2].1),
        ]
        .concat(),
        // A corrupt file and an empty class folder beside good ones.
        [
            folder_entry(0, 0, png),
            folder_entry(0, 4, b"not an image"),
            folder_entry(0, 9, &jpg[..jpg.len() / 2]),
            folder_entry(1, 0, png),
            folder_entry(3, 2, b""),
        ]
        .concat(),
    ]
}

/// The input is `data_batch_1.bin`; with a first byte 'M', the bytes up to the first
/// newline-newline become `batches.meta.txt` instead.
fn cifar_binary(dir: &Path, input: &[u8]) -> Outcome {
    let root = dir.join("cifar");
    std::fs::create_dir_all(&root).unwrap();
    let mut batch = input;
    if let Some(rest) = input.strip_prefix(b"M")
        && let Some(end) = rest.windows(2).position(|w| w == b"\n\n")
    {
        std::fs::write(root.join("batches.meta.txt"), &rest[..end]).unwrap();
        batch = &rest[end + 2..];
    }
    std::fs::write(root.join("data_batch_1.bin"), batch).unwrap();
    open(&root, Split::Train, None, false)
}

fn cifar_record(label: u8) -> Vec<u8> {
    let mut rec = vec![label];
    rec.extend((0..3 * 32 * 32).map(|i| (i * 7 % 251) as u8));
    rec
}

fn cifar_seeds() -> Vec<Vec<u8>> {
    vec![
        cifar_record(3),
        [cifar_record(0), cifar_record(9)].concat(),
        [b"Mairplane\ncat\n\n".to_vec(), cifar_record(1)].concat(),
    ]
}

/// `[mode][images length: u16 le][images file][labels file]`; mode % 3: 0 plain files,
/// 1 both gzipped, 2 the raw bytes under `.gz` names (a broken gzip stream).
fn idx(dir: &Path, input: &[u8]) -> Outcome {
    if input.len() < 3 {
        return Outcome::Refused("input too short for the idx target".into());
    }
    let mode = input[0] % 3;
    let n = (u16::from_le_bytes([input[1], input[2]]) as usize).min(input.len() - 3);
    let (images, labels) = input[3..].split_at(n);
    let root = dir.join("idx");
    std::fs::create_dir_all(&root).unwrap();
    let suffix = if mode == 0 { "" } else { ".gz" };
    for (name, bytes) in [
        ("train-images-idx3-ubyte", images),
        ("train-labels-idx1-ubyte", labels),
    ] {
        let path = root.join(format!("{name}{suffix}"));
        if mode == 1 {
            let mut enc = flate2::write::GzEncoder::new(
                std::fs::File::create(&path).unwrap(),
                flate2::Compression::fast(),
            );
            enc.write_all(bytes).unwrap();
            enc.finish().unwrap();
        } else {
            std::fs::write(&path, bytes).unwrap();
        }
    }
    open(&root, Split::Train, None, false)
}

fn idx_file(ndim_dims: &[u32], payload: &[u8]) -> Vec<u8> {
    let mut v = vec![0, 0, 8, ndim_dims.len() as u8];
    for d in ndim_dims {
        v.extend_from_slice(&d.to_be_bytes());
    }
    v.extend_from_slice(payload);
    v
}

fn idx_input(mode: u8, images: &[u8], labels: &[u8]) -> Vec<u8> {
    let mut v = vec![mode];
    v.extend_from_slice(&(images.len() as u16).to_le_bytes());
    v.extend_from_slice(images);
    v.extend_from_slice(labels);
    v
}

fn idx_seeds() -> Vec<Vec<u8>> {
    let pixels: Vec<u8> = (0..2 * 4 * 4).map(|i| i as u8 * 8).collect();
    let images = idx_file(&[2, 4, 4], &pixels);
    let labels = idx_file(&[2], &[0, 7]);
    // A header claiming 4.3e9 images of 1000×1000 (4e15 bytes) with 8 bytes present.
    let absurd = idx_file(&[u32::MAX, 1000, 1000], &[0; 8]);
    vec![
        idx_input(0, &images, &labels),
        idx_input(1, &images, &labels),
        idx_input(2, &images, &labels),
        idx_input(0, &absurd, &labels),
        idx_input(1, &absurd, &labels),
    ]
}

const CONFIG_TOKENS: &[&[u8]] = &[
    b"\n[data]\n",
    b"\n[augment]\n",
    b"\n[model]\n",
    b"\n[method]\n",
    b"\n[optim]\n",
    b"\n[train]\n",
    b"\n[eval]\n",
    b" = ",
    b"=",
    b"[",
    b"]",
    b"\"",
    b"'",
    b",",
    b"nan",
    b"inf",
    b"-inf",
    b"-1",
    b"0",
    b"1e400",
    b"18446744073709551616",
    b"true",
    b"1979-05-27",
    b"{ a = 1 }",
    b"\n#--set\n",
    b"batch_size",
    b"train.batch_size=",
    b"method.temperature=",
    b"model.backbone=",
    b"data.path=",
    b"data.input_size=",
    b"augment.crop_scale=",
    b"method.projection_dims=",
    b"optim.warmup_epochs=",
    b"train.deterministic=",
];

/// A config file, then after a line `#--set` one `--set key=value` override per line.
/// An accepted config must survive its own round trip (what checkpoints store).
fn config(_dir: &Path, input: &[u8]) -> Outcome {
    let text = String::from_utf8_lossy(input);
    let (file, sets) = text.split_once("\n#--set\n").unwrap_or((&text, ""));
    let overrides: Vec<String> = sets.lines().map(String::from).collect();
    // What `selfsup pretrain --config F --set …` checks: the file, the overrides, the method's
    // modality, every value.
    let checked = RawConfig::parse(file, "fuzz.toml")
        .and_then(|raw| raw.with_overrides(&overrides))
        .and_then(|raw| {
            let modality = selfsup::modality_of_method(&raw.method_name()?)?;
            Ok((modality.check_config(&raw)?, modality))
        });
    match checked {
        Ok((stored, modality)) => {
            let again = RawConfig::parse(&stored, "round trip")
                .and_then(|raw| modality.check_config(&raw))
                .unwrap_or_else(|e| panic!("an accepted config does not re-parse: {e}"));
            assert_eq!(again, stored, "config round trip");
            Outcome::Accepted
        }
        Err(e) => refused(format!("{e}")),
    }
}

fn config_seeds() -> Vec<Vec<u8>> {
    let configs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs");
    let mut seeds: Vec<Vec<u8>> = ["simclr_cifar10.toml", "quickstart_fashion_mnist.toml"]
        .iter()
        .map(|f| std::fs::read(configs.join(f)).expect("shipped config"))
        .collect();
    seeds.push(
        b"[train]\nepochs = 3\nbatch_size = 64\n#--set\nmodel.stem=imagenet\nmethod.projection_dims=[64, 32]\ntrain.deterministic=true"
            .to_vec(),
    );
    seeds.push(b"[optim]\nlearning_rate = 0.1\n".to_vec());
    seeds.push(b"#--set\ntrain.batch_size=-3\naugment.crop_scale=[0.2, 1.5]".to_vec());
    seeds
}

fn state() -> checkpoint::RunState {
    checkpoint::RunState {
        format: checkpoint::FORMAT.into(),
        method: "simclr".into(),
        epoch: 1,
        global_step: 3,
        config: "[train]\nepochs = 2\n".into(),
    }
}

/// The input is a checkpoint file. An accepted one must save and load back identically.
fn checkpoint_load(dir: &Path, input: &[u8]) -> Outcome {
    let path = checkpoint::epoch_path(dir, 1);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, input).unwrap();
    match checkpoint::load(&path) {
        Ok(c) => {
            for (name, t) in &c.tensors {
                let n: usize = t.shape.iter().product();
                assert_eq!(
                    n,
                    t.values.len(),
                    "tensor {name}: shape and values disagree"
                );
            }
            let copy = checkpoint::epoch_path(dir, 2);
            checkpoint::save(&copy, &c.state, &c.tensors).expect("re-save a loaded checkpoint");
            let back = checkpoint::load(&copy).expect("load a re-saved checkpoint");
            assert_eq!(back.state, c.state);
            let bits = |t: &BTreeMap<String, NamedTensor>| -> Vec<(String, Vec<usize>, Vec<u32>)> {
                t.iter()
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            v.shape.clone(),
                            v.values.iter().map(|x| x.to_bits()).collect(),
                        )
                    })
                    .collect()
            };
            assert_eq!(
                bits(&back.tensors),
                bits(&c.tensors),
                "checkpoint round trip"
            );
            Outcome::Accepted
        }
        Err(e) => refused(format!("{e:#}")),
    }
}

fn checkpoint_seeds() -> Vec<Vec<u8>> {
    let dir = crate::scratch_dir("checkpoint-seeds");
    let path = checkpoint::epoch_path(&dir, 1);
    let mut tensors = BTreeMap::new();
    tensors.insert(
        "model.backbone.conv1.weight".to_string(),
        NamedTensor {
            shape: vec![2, 1, 2, 2],
            values: (0..8).map(|i| i as f32 * 0.25 - 1.0).collect(),
        },
    );
    tensors.insert(
        "optim.momentum.0".to_string(),
        NamedTensor {
            shape: vec![3],
            values: vec![0.5, -0.0, f32::MIN_POSITIVE],
        },
    );
    checkpoint::save(&path, &state(), &tensors).expect("write seed checkpoint");
    let good = std::fs::read(&path).unwrap();
    let empty = {
        checkpoint::save(&path, &state(), &BTreeMap::new()).unwrap();
        std::fs::read(&path).unwrap()
    };
    let _ = std::fs::remove_dir_all(&dir);
    vec![good.clone(), empty, good[..good.len() / 2].to_vec()]
}
