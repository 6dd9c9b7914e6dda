//! Finding a dataset's files and turning them into decoded images.
//!
//! Three layouts are detected: image-folder trees, CIFAR-10 binary batches and
//! IDX (MNIST-style) files.  Listing is cheap (stat only) and yields the
//! fingerprint the cache is keyed by; decoding happens only when the cache is built.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use crate::error::{DataError, IoContext, Result};

/// Which half of a dataset to open.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Split {
    Train,
    Test,
}

impl Split {
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "test",
        }
    }
}

const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png", "bmp", "gif", "tif", "tiff", "webp"];
const CIFAR_RECORD: usize = 1 + 3 * 32 * 32;
/// Refuse IDX payloads above 16 GiB before reading anything.
const IDX_MAX_BYTES: u64 = 16 << 30;

/// Where one image comes from: an index into [`Listing::inputs`] and, for
/// binary formats, the record number inside that file.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SourceRef {
    pub input: u32,
    pub record: Option<u32>,
}

/// A listed (not yet decoded) dataset.
pub(crate) struct Listing {
    /// Short name of the layout, part of the cache file name.
    pub kind: &'static str,
    pub root: PathBuf,
    pub class_names: Vec<String>,
    pub layout: Layout,
    /// Every file that contributes data, for the fingerprint.
    pub inputs: Vec<PathBuf>,
}

pub(crate) enum Layout {
    /// Encoded image files with optional labels.
    Files(Vec<(PathBuf, Option<u32>)>),
    /// CIFAR-10 binary batch files.
    Cifar(Vec<PathBuf>),
    /// IDX images and labels file.
    Idx { images: PathBuf, labels: PathBuf },
}

/// One decoded image, HWC RGB8.
pub(crate) struct Decoded {
    pub h: u32,
    pub w: u32,
    pub pixels: Vec<u8>,
    pub label: Option<u32>,
    pub source: SourceRef,
}

fn is_image_file(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

fn is_hidden(p: &Path) -> bool {
    p.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.'))
}

fn read_dir_sorted(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).at(dir)? {
        let p = entry.at(dir)?.path();
        if !is_hidden(&p) {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}

/// All image files under `dir`, recursively, sorted by path.
fn images_under(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in read_dir_sorted(dir)? {
        if p.is_dir() {
            out.extend(images_under(&p)?);
        } else if is_image_file(&p) {
            out.push(p);
        }
    }
    Ok(out)
}

fn first_existing(dir: &Path, names: &[String]) -> Option<PathBuf> {
    names.iter().map(|n| dir.join(n)).find(|p| p.is_file())
}

/// Detects the layout under `path` and lists the requested split.
pub(crate) fn list(path: &Path, split: Split) -> Result<Listing> {
    if !path.exists() {
        return Err(DataError::NotFound {
            path: path.to_path_buf(),
        });
    }
    if !path.is_dir() {
        return Err(DataError::Format {
            path: path.to_path_buf(),
            format: "dataset",
            reason: "expected a directory, not a file".into(),
        });
    }
    let nested = path.join("cifar-10-batches-bin");
    if nested.is_dir() {
        return list(&nested, split);
    }
    if let Some(l) = list_cifar(path, split)? {
        return Ok(l);
    }
    if let Some(l) = list_idx(path, split)? {
        return Ok(l);
    }
    list_folder(path, split)
}

fn list_cifar(dir: &Path, split: Split) -> Result<Option<Listing>> {
    let train: Vec<PathBuf> = (1..=5)
        .map(|i| dir.join(format!("data_batch_{i}.bin")))
        .filter(|p| p.is_file())
        .collect();
    let test = dir.join("test_batch.bin");
    if train.is_empty() && !test.is_file() {
        return Ok(None);
    }
    let files = match split {
        Split::Train => train,
        Split::Test if test.is_file() => vec![test],
        Split::Test => vec![],
    };
    if files.is_empty() {
        return Err(DataError::MissingSplit {
            path: dir.join(if split == Split::Train {
                "data_batch_1.bin"
            } else {
                "test_batch.bin"
            }),
            split: split.name(),
        });
    }
    let meta = dir.join("batches.meta.txt");
    let class_names = if meta.is_file() {
        fs::read_to_string(&meta)
            .at(&meta)?
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect()
    } else {
        (0..10).map(|i| i.to_string()).collect()
    };
    let mut inputs = files.clone();
    if meta.is_file() {
        inputs.push(meta);
    }
    Ok(Some(Listing {
        kind: "cifar",
        root: dir.to_path_buf(),
        class_names,
        layout: Layout::Cifar(files),
        inputs,
    }))
}

fn list_idx(dir: &Path, split: Split) -> Result<Option<Listing>> {
    let variants = |stem: &str| vec![stem.to_string(), format!("{stem}.gz")];
    let prefix = match split {
        Split::Train => "train",
        Split::Test => "t10k",
    };
    let any_idx = ["train", "t10k"]
        .iter()
        .any(|p| first_existing(dir, &variants(&format!("{p}-images-idx3-ubyte"))).is_some());
    if !any_idx {
        return Ok(None);
    }
    let images_name = format!("{prefix}-images-idx3-ubyte");
    let labels_name = format!("{prefix}-labels-idx1-ubyte");
    let images =
        first_existing(dir, &variants(&images_name)).ok_or_else(|| DataError::MissingSplit {
            path: dir.join(&images_name),
            split: split.name(),
        })?;
    let labels =
        first_existing(dir, &variants(&labels_name)).ok_or_else(|| DataError::MissingSplit {
            path: dir.join(&labels_name),
            split: split.name(),
        })?;
    Ok(Some(Listing {
        kind: "idx",
        root: dir.to_path_buf(),
        class_names: Vec::new(), // filled from the labels once decoded
        inputs: vec![images.clone(), labels.clone()],
        layout: Layout::Idx { images, labels },
    }))
}

fn list_folder(path: &Path, split: Split) -> Result<Listing> {
    let has_splits = path.join("train").is_dir() || path.join("test").is_dir();
    let root = if has_splits {
        let r = path.join(split.name());
        if !r.is_dir() {
            return Err(DataError::MissingSplit {
                path: r,
                split: split.name(),
            });
        }
        r
    } else {
        path.to_path_buf()
    };
    let class_dirs: Vec<PathBuf> = read_dir_sorted(&root)?
        .into_iter()
        .filter(|p| p.is_dir())
        .collect();
    let mut items = Vec::new();
    let mut class_names = Vec::new();
    if class_dirs.is_empty() {
        items.extend(
            read_dir_sorted(&root)?
                .into_iter()
                .filter(|p| is_image_file(p))
                .map(|p| (p, None)),
        );
    } else {
        for (label, dir) in class_dirs.iter().enumerate() {
            let files = images_under(dir)?;
            if files.is_empty() {
                return Err(DataError::EmptyClass { path: dir.clone() });
            }
            class_names.push(
                dir.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned(),
            );
            items.extend(files.into_iter().map(|p| (p, Some(label as u32))));
        }
    }
    if items.is_empty() {
        return Err(DataError::Empty { path: root });
    }
    let inputs = items.iter().map(|(p, _)| p.clone()).collect();
    Ok(Listing {
        kind: "folder",
        root,
        class_names,
        layout: Layout::Files(items),
        inputs,
    })
}

/// FNV-1a over the layout kind, split and each input's path, size and mtime.
pub(crate) fn fingerprint(
    listing: &Listing,
    split: Split,
    skip_corrupt: bool,
    max_short_side: Option<u32>,
    jpeg_entries: bool,
) -> Result<u64> {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    let mut eat = |bytes: &[u8]| {
        for &b in bytes {
            h ^= b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    eat(listing.kind.as_bytes());
    eat(split.name().as_bytes());
    eat(&[skip_corrupt as u8]);
    // Full-resolution caches keep their old keys (nothing to add).
    if let Some(side) = max_short_side {
        eat(b"max_short_side");
        eat(&side.to_le_bytes());
    }
    if jpeg_entries {
        eat(b"jpeg_entries");
    }
    eat(listing.root.to_string_lossy().as_bytes());
    for p in &listing.inputs {
        let meta = fs::metadata(p).at(p)?;
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        eat(p.to_string_lossy().as_bytes());
        eat(&meta.len().to_le_bytes());
        eat(&mtime.to_le_bytes());
    }
    if let Layout::Files(items) = &listing.layout {
        for (_, label) in items {
            eat(&label.map_or(u32::MAX, |l| l).to_le_bytes());
        }
    }
    Ok(h)
}

/// `(h, w)` scaled so that the shorter side is `side` (rounded, at least 1), if it is longer.
pub fn bounded_size(h: u32, w: u32, side: Option<u32>) -> (u32, u32) {
    match side {
        Some(side) if h.min(w) > side => {
            let scale = side as f64 / h.min(w) as f64;
            let fit = |x: u32| ((x as f64 * scale).round() as u32).max(1);
            if h <= w {
                (side, fit(w))
            } else {
                (fit(h), side)
            }
        }
        _ => (h, w),
    }
}

/// RGB8 pixels `(h, w)` downscaled to [`bounded_size`] (area-averaging filter).
fn downscale(h: u32, w: u32, pixels: Vec<u8>, side: Option<u32>) -> (u32, u32, Vec<u8>) {
    let (nh, nw) = bounded_size(h, w, side);
    if (nh, nw) == (h, w) {
        return (h, w, pixels);
    }
    let img = image::RgbImage::from_raw(w, h, pixels).expect("h·w·3 pixels");
    let small = image::imageops::resize(&img, nw, nh, image::imageops::FilterType::Triangle);
    (nh, nw, small.into_raw())
}

/// A decoded record (CIFAR, IDX) bounded like files are.
pub(crate) fn bounded(d: Decoded, side: Option<u32>) -> Decoded {
    let (h, w, pixels) = downscale(d.h, d.w, d.pixels, side);
    Decoded { h, w, pixels, ..d }
}

/// A JPEG decoded at the smallest DCT scale (1/8 … 1) that keeps the shorter side at least
/// `side`, as RGB8; `None` when this decoder cannot (then the general path decodes it and
/// reports any damage).
fn decode_jpeg_scaled(path: &Path, side: u32) -> Option<(u32, u32, Vec<u8>)> {
    let file = std::io::BufReader::new(fs::File::open(path).ok()?);
    let mut decoder = jpeg_decoder::Decoder::new(file);
    decoder.read_info().ok()?;
    let info = decoder.info()?;
    let (h, w) = (info.height as u32, info.width as u32);
    if h.min(w) <= side * 2 {
        return None;
    }
    let (want_h, want_w) = bounded_size(h, w, Some(side));
    decoder.scale(want_w as u16, want_h as u16).ok()?;
    let pixels = decoder.decode().ok()?;
    let info = decoder.info()?;
    let (h, w) = (info.height as u32, info.width as u32);
    let rgb = match info.pixel_format {
        jpeg_decoder::PixelFormat::RGB24 => pixels,
        jpeg_decoder::PixelFormat::L8 => pixels.iter().flat_map(|&v| [v, v, v]).collect(),
        _ => return None,
    };
    (rgb.len() == (h * w * 3) as usize).then_some((h, w, rgb))
}

pub(crate) fn is_jpeg_file(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("jpg") || e.eq_ignore_ascii_case("jpeg"))
}

/// One image file decoded to RGB8 (grayscale, alpha and 16-bit converted), its shorter side
/// bounded.
pub(crate) struct FileImage {
    pub h: u32,
    pub w: u32,
    pub pixels: Vec<u8>,
    /// Whether the bound made it smaller than the file's own size.
    pub resized: bool,
}

/// Decodes one image file to RGB8 (grayscale, alpha and 16-bit are converted), its shorter
/// side bounded by `max_short_side`.
pub(crate) fn decode_file(path: &Path, max_short_side: Option<u32>) -> Result<FileImage> {
    let scaled = match max_short_side {
        Some(side) if is_jpeg_file(path) => decode_jpeg_scaled(path, side),
        _ => None,
    };
    // A scaled JPEG decode only happens for images at least twice the bound.
    let (resized, (h, w, pixels)) = match scaled {
        Some(decoded) => (true, decoded),
        None => {
            let (h, w, pixels) = decode_full(path)?;
            (bounded_size(h, w, max_short_side) != (h, w), (h, w, pixels))
        }
    };
    let (h, w, pixels) = downscale(h, w, pixels, max_short_side);
    Ok(FileImage {
        h,
        w,
        pixels,
        resized,
    })
}

fn decode_full(path: &Path) -> Result<(u32, u32, Vec<u8>)> {
    let corrupt = |reason: String| DataError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let reader = image::ImageReader::open(path)
        .at(path)?
        .with_guessed_format()
        .at(path)?;
    let img = reader.decode().map_err(|e| corrupt(e.to_string()))?;
    if img.width() == 0 || img.height() == 0 {
        return Err(corrupt("image has zero size".into()));
    }
    let rgb = img.into_rgb8();
    Ok((rgb.height(), rgb.width(), rgb.into_raw()))
}

/// Reads a whole file, transparently gunzipping `*.gz`, never reading past `limit` bytes.
fn read_maybe_gz(path: &Path, limit: u64) -> Result<Vec<u8>> {
    let file = fs::File::open(path).at(path)?;
    let mut out = Vec::new();
    if path.extension().is_some_and(|e| e == "gz") {
        flate2::read::GzDecoder::new(file)
            .take(limit)
            .read_to_end(&mut out)
            .at(path)?;
    } else {
        file.take(limit).read_to_end(&mut out).at(path)?;
    }
    Ok(out)
}

/// Parses an IDX header of unsigned-byte data: returns (dims, header length).
fn idx_header(path: &Path, bytes: &[u8], want_ndim: u8) -> Result<(Vec<u64>, usize)> {
    let bad = |reason: String| DataError::Format {
        path: path.to_path_buf(),
        format: "IDX",
        reason,
    };
    if bytes.len() < 4 || bytes[0] != 0 || bytes[1] != 0 {
        return Err(bad("missing IDX magic (00 00 type ndim)".into()));
    }
    if bytes[2] != 0x08 {
        return Err(bad(format!(
            "element type 0x{:02x} unsupported; only unsigned bytes (0x08)",
            bytes[2]
        )));
    }
    if bytes[3] != want_ndim {
        return Err(bad(format!(
            "expected {want_ndim} dimensions, header says {}",
            bytes[3]
        )));
    }
    let header_len = 4 + 4 * want_ndim as usize;
    if bytes.len() < header_len {
        return Err(bad("truncated header".into()));
    }
    let dims: Vec<u64> = bytes[4..header_len]
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as u64)
        .collect();
    Ok((dims, header_len))
}

/// Reads an IDX file after validating its header against a size limit and the
/// actual payload length; absurd headers are refused before any big allocation.
fn read_idx(path: &Path, want_ndim: u8) -> Result<(Vec<u64>, Vec<u8>)> {
    let bad = |reason: String| DataError::Format {
        path: path.to_path_buf(),
        format: "IDX",
        reason,
    };
    let head = read_maybe_gz(path, 4 + 4 * want_ndim as u64)?;
    let (dims, header_len) = idx_header(path, &head, want_ndim)?;
    let payload = dims.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d)).filter(|&n| n <= IDX_MAX_BYTES).ok_or_else(|| {
        bad(format!("header dimensions {dims:?} claim more than the {IDX_MAX_BYTES}-byte limit; the file is corrupt or not IDX"))
    })?;
    let total = header_len as u64 + payload;
    if path.extension().is_none_or(|e| e != "gz") {
        let on_disk = fs::metadata(path).at(path)?.len();
        if on_disk != total {
            return Err(bad(format!(
                "header dimensions {dims:?} need {total} bytes but the file holds {on_disk}"
            )));
        }
    }
    // One byte past the claim reveals trailing garbage.
    let bytes = read_maybe_gz(path, total + 1)?;
    if bytes.len() as u64 != total {
        return Err(bad(format!(
            "header dimensions {dims:?} need {total} bytes but the data holds {}",
            bytes.len()
        )));
    }
    Ok((dims, bytes[header_len..].to_vec()))
}

/// Decodes IDX images + labels into RGB images; returns them and the class count.
pub(crate) fn decode_idx(
    images: &Path,
    labels: &Path,
    inputs_index: usize,
) -> Result<(Vec<Decoded>, usize)> {
    let (idims, pixels) = read_idx(images, 3)?;
    let (ldims, label_bytes) = read_idx(labels, 1)?;
    if idims[0] != ldims[0] {
        return Err(DataError::Format {
            path: labels.to_path_buf(),
            format: "IDX",
            reason: format!(
                "{} labels for {} images in {}",
                ldims[0],
                idims[0],
                images.display()
            ),
        });
    }
    let (h, w) = (idims[1] as usize, idims[2] as usize);
    let plane = h * w;
    let decoded = pixels
        .chunks_exact(plane.max(1))
        .zip(&label_bytes)
        .enumerate()
        .map(|(i, (gray, &label))| Decoded {
            h: h as u32,
            w: w as u32,
            pixels: gray.iter().flat_map(|&g| [g, g, g]).collect(),
            label: Some(label as u32),
            source: SourceRef {
                input: inputs_index as u32,
                record: Some(i as u32),
            },
        })
        .collect();
    let num_classes = label_bytes
        .iter()
        .copied()
        .max()
        .map_or(0, |m| m as usize + 1);
    Ok((decoded, num_classes))
}

/// Decodes one CIFAR-10 binary batch (records of label + R, G, B planes of 32x32).
pub(crate) fn decode_cifar(
    path: &Path,
    file_index: usize,
    num_classes: usize,
) -> Result<Vec<Decoded>> {
    let bytes = fs::read(path).at(path)?;
    let bad = |reason: String| DataError::Format {
        path: path.to_path_buf(),
        format: "CIFAR-10 binary",
        reason,
    };
    if bytes.is_empty() || bytes.len() % CIFAR_RECORD != 0 {
        return Err(bad(format!(
            "size {} is not a positive multiple of the {CIFAR_RECORD}-byte record",
            bytes.len()
        )));
    }
    let plane = 32 * 32;
    bytes
        .chunks_exact(CIFAR_RECORD)
        .enumerate()
        .map(|(i, rec)| {
            let label = rec[0] as u32;
            if label as usize >= num_classes {
                return Err(bad(format!(
                    "record {i} has label {label}, but there are {num_classes} classes"
                )));
            }
            let chw = &rec[1..];
            let mut pixels = Vec::with_capacity(3 * plane);
            for p in 0..plane {
                pixels.extend_from_slice(&[chw[p], chw[plane + p], chw[2 * plane + p]]);
            }
            Ok(Decoded {
                h: 32,
                w: 32,
                pixels,
                label: Some(label),
                source: SourceRef {
                    input: file_index as u32,
                    record: Some(i as u32),
                },
            })
        })
        .collect()
}
