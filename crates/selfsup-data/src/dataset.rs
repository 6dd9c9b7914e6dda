//! Opening a dataset: decode once into a compact cache file, then memory-map it.
//!
//! Cache file layout (little endian):
//! - header, 64 bytes: magic `SSDCACHE`, version u32, pad u32, image count u64,
//!   entries offset u64, class-names offset u64, skipped count u64, fingerprint u64,
//!   total length u64;
//! - every image's bytes, back to back: HWC RGB8 pixels, or a JPEG file (see [`CacheFormat`]);
//! - one 36-byte entry per image: byte offset u64, h u32, w u32,
//!   label u32 (`u32::MAX` = none), source input u32, source record u32 (`u32::MAX` = none),
//!   byte length u32, format u32 (0 = pixels, 1 = JPEG);
//! - class names: count u32, then (length u32, UTF-8 bytes) each.

use std::fs;
use std::io::{Cursor, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;
use rayon::prelude::*;

use crate::error::{DataError, IoContext, Result};
use crate::pixels::{ImageView, RgbImage};
use crate::sources::{self, Decoded, Layout, Listing, SourceRef, Split};

const MAGIC: &[u8; 8] = b"SSDCACHE";
const VERSION: u32 = 2;
const HEADER_LEN: usize = 64;
const ENTRY_LEN: usize = 36;
const FORMAT_PIXELS: u32 = 0;
const FORMAT_JPEG: u32 = 1;
/// `CacheFormat::Auto` keeps JPEG files as JPEG from this many stored pixels on (96×96): below
/// it decoding would cost more than the pixels' disk (CIFAR-sized JPEGs stay pixels).
const JPEG_MIN_PIXELS: u64 = 96 * 96;
/// Quality of JPEG entries re-encoded after downscaling (FFCV's default).
const JPEG_QUALITY: u8 = 90;
const NONE_U32: u32 = u32::MAX;
/// Images decoded per parallel batch while building the cache; bounds memory (a batch of
/// decoded images is held until written).
const DECODE_CHUNK: usize = 256;

/// How [`open_dataset`] caches decoded pixels.
#[derive(Clone, Debug, Default)]
pub struct CacheOptions {
    /// Directory for cache files (created if missing; must be outside the dataset).
    /// `None` decodes into memory on every open.
    pub cache_dir: Option<PathBuf>,
    /// Skip undecodable image files (counted in [`ImageDataset::num_skipped`])
    /// instead of failing.
    pub skip_corrupt: bool,
    /// Images whose shorter side is longer are stored downscaled to it (aspect kept; JPEGs
    /// decoded at a reduced DCT scale first), so the cache grows with the number of images, not
    /// with their pixels. `None` keeps full resolution.
    pub max_short_side: Option<u32>,
    pub format: CacheFormat,
}

/// How images are stored in the cache (`data.cache_format`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheFormat {
    /// Photos stay JPEG: a JPEG file whose stored image has at least 96×96 pixels is kept as
    /// its own bytes when the bound did not shrink it, else re-encoded (quality 90) after
    /// downscaling, and decoded on every read, as FFCV stores photos; so the cache takes about
    /// the source's disk. Everything else is stored as pixels.
    #[default]
    Auto,
    /// Decoded RGB8 pixels for every image: no decoding per read, the most disk.
    Pixels,
}

enum Storage {
    Mapped(Mmap),
    Owned(Vec<u8>),
}

/// A decoded dataset: every image as HWC RGB8 in one (usually memory-mapped) buffer.
pub struct ImageDataset {
    storage: Arc<Storage>,
    /// Entries in the buffer (all of them, whatever `rows` selects).
    len: usize,
    entries_off: usize,
    class_names: Vec<String>,
    inputs: Arc<Vec<PathBuf>>,
    num_skipped: usize,
    cache_file: Option<PathBuf>,
    /// A view's entries, in order ([`select`](Self::select)); `None`: all of them.
    rows: Option<Arc<[usize]>>,
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
}

impl ImageDataset {
    fn bytes(&self) -> &[u8] {
        match self.storage.as_ref() {
            Storage::Mapped(m) => m,
            Storage::Owned(v) => v,
        }
    }

    fn entry(&self, i: usize) -> &[u8] {
        assert!(
            i < self.len(),
            "image index {i} out of range for dataset of {}",
            self.len()
        );
        let i = self.rows.as_ref().map_or(i, |rows| rows[i]);
        let off = self.entries_off + i * ENTRY_LEN;
        &self.bytes()[off..off + ENTRY_LEN]
    }

    pub fn len(&self) -> usize {
        self.rows.as_ref().map_or(self.len, |rows| rows.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A view of images `rows` of this dataset (in that order, repeats allowed), sharing its
    /// buffer: image `k` of the view is image `rows[k]` here. Class names are kept whole.
    /// Panics on an index out of range.
    pub fn select(&self, rows: &[usize]) -> ImageDataset {
        let n = self.len();
        if let Some(&bad) = rows.iter().find(|&&r| r >= n) {
            panic!("row {bad} out of range for a dataset of {n} images");
        }
        let rows: Arc<[usize]> = match &self.rows {
            Some(mine) => rows.iter().map(|&r| mine[r]).collect(),
            None => rows.into(),
        };
        ImageDataset {
            storage: self.storage.clone(),
            len: self.len,
            entries_off: self.entries_off,
            class_names: self.class_names.clone(),
            inputs: self.inputs.clone(),
            num_skipped: self.num_skipped,
            cache_file: self.cache_file.clone(),
            rows: Some(rows),
        }
    }

    /// Image `i` as HWC RGB8: borrowed from the cache, or decoded from its JPEG entry.
    pub fn image(&self, i: usize) -> ImageRef<'_> {
        let e = self.entry(i);
        let (off, h, w, len) = (
            u64_at(e, 0) as usize,
            u32_at(e, 8) as usize,
            u32_at(e, 12) as usize,
            u32_at(e, 28) as usize,
        );
        let data = &self.bytes()[off..off + len];
        if u32_at(e, 32) == FORMAT_PIXELS {
            return ImageRef::Cached(ImageView { h, w, data });
        }
        let decoded = image::load_from_memory_with_format(data, image::ImageFormat::Jpeg)
            .map(|img| img.into_rgb8())
            .ok()
            .filter(|img| (img.height() as usize, img.width() as usize) == (h, w))
            .unwrap_or_else(|| {
                panic!(
                    "the JPEG of image {i} ({}) in the cache {} does not decode to {h}x{w}; \
                     delete the cache file to rebuild it",
                    self.path(i).display(),
                    self.cache_file
                        .as_deref()
                        .map_or("<memory>".into(), |p| p.display().to_string()),
                )
            });
        ImageRef::Decoded(RgbImage::new(h, w, decoded.into_raw()))
    }

    /// Class index of image `i`; `None` for unlabelled folders.
    pub fn label(&self, i: usize) -> Option<u32> {
        Some(u32_at(self.entry(i), 16)).filter(|&l| l != NONE_U32)
    }

    /// Class names indexed by label (sorted folder names, `batches.meta.txt`, or "0".."K-1").
    pub fn class_names(&self) -> &[String] {
        &self.class_names
    }

    /// Source file of image `i`, or `file#record` for binary formats.
    pub fn path(&self, i: usize) -> PathBuf {
        let e = self.entry(i);
        let input = &self.inputs[u32_at(e, 20) as usize];
        match u32_at(e, 24) {
            NONE_U32 => input.clone(),
            rec => PathBuf::from(format!("{}#{rec}", input.display())),
        }
    }

    /// Number of corrupt files skipped (only with `skip_corrupt`).
    pub fn num_skipped(&self) -> usize {
        self.num_skipped
    }

    /// The cache file backing this dataset, if any.
    pub fn cache_file(&self) -> Option<&Path> {
        self.cache_file.as_deref()
    }

    /// How many images are stored as JPEG (the rest as pixels).
    pub fn num_jpeg_entries(&self) -> usize {
        (0..self.len())
            .filter(|&i| u32_at(self.entry(i), 32) == FORMAT_JPEG)
            .count()
    }
}

/// An image of an [`ImageDataset`]: the cache's own pixels, or pixels decoded from a JPEG entry.
#[derive(Clone, Debug)]
pub enum ImageRef<'a> {
    Cached(ImageView<'a>),
    Decoded(RgbImage),
}

impl ImageRef<'_> {
    pub fn view(&self) -> ImageView<'_> {
        match self {
            ImageRef::Cached(v) => *v,
            ImageRef::Decoded(img) => img.view(),
        }
    }
}

impl PartialEq for ImageRef<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.view() == other.view()
    }
}

/// Opens the `split` of the dataset at `path`, auto-detecting its layout:
/// `path/{train,test}/<class>/*`, `path/<class>/*` (one split; `split` is ignored),
/// a flat folder of unlabelled images, CIFAR-10 binary batches (also under
/// `cifar-10-batches-bin/`), or IDX files (`train-*`/`t10k-*`, optionally `.gz`).
/// With a cache directory, images are decoded once (in parallel) and later opens
/// memory-map the cache until the source files change.
pub fn open_dataset(path: &Path, split: Split, opts: &CacheOptions) -> Result<ImageDataset> {
    let listing = sources::list(path, split)?;
    let fingerprint = sources::fingerprint(
        &listing,
        split,
        opts.skip_corrupt,
        opts.max_short_side,
        opts.format == CacheFormat::Auto,
    )?;
    let Some(cache_dir) = &opts.cache_dir else {
        let mut cursor = Cursor::new(Vec::new());
        write_cache(
            &listing,
            opts,
            fingerprint,
            &mut cursor,
            Path::new("<memory>"),
        )?;
        return parse(
            Storage::Owned(cursor.into_inner()),
            listing.inputs,
            fingerprint,
            None,
        )
        .map_err(|reason| DataError::Format {
            path: path.to_path_buf(),
            format: "in-memory cache",
            reason,
        });
    };
    fs::create_dir_all(cache_dir).at(cache_dir)?;
    let (cache_abs, data_abs) = (
        cache_dir.canonicalize().at(cache_dir)?,
        path.canonicalize().at(path)?,
    );
    if cache_abs.starts_with(&data_abs) {
        return Err(DataError::CacheInsideDataset {
            path: cache_dir.clone(),
            dataset: path.to_path_buf(),
        });
    }
    let file = cache_dir.join(format!(
        "{}-{}-{fingerprint:016x}.sscache",
        listing.kind,
        split.name()
    ));
    if file.is_file() {
        // A cache that fails validation (e.g. truncated by a crash) is rebuilt.
        if let Ok(ds) = map(&file, &listing.inputs, fingerprint) {
            return Ok(ds);
        }
    }
    let tmp = cache_dir.join(format!(
        ".{}.tmp-{}",
        file.file_name().unwrap().to_string_lossy(),
        std::process::id()
    ));
    let built = (|| {
        let mut out = std::io::BufWriter::new(fs::File::create(&tmp).at(&tmp)?);
        write_cache(&listing, opts, fingerprint, &mut out, &tmp)?;
        out.into_inner()
            .map_err(|e| e.into_error())
            .at(&tmp)?
            .sync_all()
            .at(&tmp)?;
        fs::rename(&tmp, &file).at(&file)
    })();
    if let Err(e) = built {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    map(&file, &listing.inputs, fingerprint).map_err(|reason| DataError::Format {
        path: file.clone(),
        format: "cache",
        reason: format!("{reason}; delete the file to rebuild"),
    })
}

fn map(file: &Path, inputs: &[PathBuf], fingerprint: u64) -> Result<ImageDataset, String> {
    let f = fs::File::open(file).map_err(|e| e.to_string())?;
    // SAFETY: cache files are written once under a unique name and never modified
    // in place (rebuilds go through a temporary file and rename).
    let mmap = unsafe { Mmap::map(&f) }.map_err(|e| e.to_string())?;
    parse(
        Storage::Mapped(mmap),
        inputs.to_vec(),
        fingerprint,
        Some(file.to_path_buf()),
    )
}

/// Validates a cache buffer completely so later accessors can index without checks failing.
fn parse(
    storage: Storage,
    inputs: Vec<PathBuf>,
    fingerprint: u64,
    cache_file: Option<PathBuf>,
) -> Result<ImageDataset, String> {
    let b: &[u8] = match &storage {
        Storage::Mapped(m) => m,
        Storage::Owned(v) => v,
    };
    if b.len() < HEADER_LEN || &b[..8] != MAGIC || u32_at(b, 8) != VERSION {
        return Err("not a selfsup cache file of this version".into());
    }
    let (len, entries_off, names_off) = (
        u64_at(b, 16) as usize,
        u64_at(b, 24) as usize,
        u64_at(b, 32) as usize,
    );
    let num_skipped = u64_at(b, 40) as usize;
    if u64_at(b, 48) != fingerprint || u64_at(b, 56) != b.len() as u64 {
        return Err("fingerprint or length mismatch".into());
    }
    if len
        .checked_mul(ENTRY_LEN)
        .and_then(|n| n.checked_add(entries_off))
        != Some(names_off)
        || names_off + 4 > b.len()
    {
        return Err("inconsistent section offsets".into());
    }
    for i in 0..len {
        let e = &b[entries_off + i * ENTRY_LEN..entries_off + (i + 1) * ENTRY_LEN];
        let (off, h, w, len, format) = (
            u64_at(e, 0) as usize,
            u32_at(e, 8) as usize,
            u32_at(e, 12) as usize,
            u32_at(e, 28) as usize,
            u32_at(e, 32),
        );
        let consistent = match format {
            FORMAT_PIXELS => h.checked_mul(w).and_then(|n| n.checked_mul(3)) == Some(len),
            FORMAT_JPEG => h > 0 && w > 0,
            _ => false,
        };
        if !consistent
            || off < HEADER_LEN
            || off.checked_add(len).is_none_or(|end| end > entries_off)
            || u32_at(e, 20) as usize >= inputs.len()
        {
            return Err(format!("entry {i} out of bounds"));
        }
    }
    let count = u32_at(b, names_off) as usize;
    let mut pos = names_off + 4;
    let mut class_names = Vec::with_capacity(count.min(1 << 16));
    for _ in 0..count {
        let n = b
            .get(pos..pos + 4)
            .map(|s| u32_at(s, 0) as usize)
            .ok_or("truncated class names")?;
        let name = b.get(pos + 4..pos + 4 + n).ok_or("truncated class names")?;
        class_names.push(String::from_utf8_lossy(name).into_owned());
        pos += 4 + n;
    }
    Ok(ImageDataset {
        storage: Arc::new(storage),
        len,
        entries_off,
        class_names,
        inputs: Arc::new(inputs),
        num_skipped,
        cache_file,
        rows: None,
    })
}

/// Streams decoded images into cache layout.
struct CacheWriter<'w, W: Write + Seek> {
    out: &'w mut W,
    path: &'w Path,
    offset: u64,
    entries: Vec<u8>,
    count: u64,
}

impl<'w, W: Write + Seek> CacheWriter<'w, W> {
    fn new(out: &'w mut W, path: &'w Path) -> Result<Self> {
        out.write_all(&[0u8; HEADER_LEN]).at(path)?;
        Ok(CacheWriter {
            out,
            path,
            offset: HEADER_LEN as u64,
            entries: Vec::new(),
            count: 0,
        })
    }

    fn push(&mut self, d: &Decoded) -> Result<()> {
        self.push_bytes(d, &d.pixels, FORMAT_PIXELS)
    }

    /// An entry for `d` holding `bytes` in `format` (`d.pixels` unused).
    fn push_bytes(&mut self, d: &Decoded, bytes: &[u8], format: u32) -> Result<()> {
        let len = u32::try_from(bytes.len()).map_err(|_| DataError::Format {
            path: self.path.to_path_buf(),
            format: "cache",
            reason: format!(
                "image {} takes {} bytes, over the 4 GiB an entry can hold; lower data.max_side",
                self.count,
                bytes.len()
            ),
        })?;
        self.out.write_all(bytes).at(self.path)?;
        self.entries.extend_from_slice(&self.offset.to_le_bytes());
        for v in [
            d.h,
            d.w,
            d.label.unwrap_or(NONE_U32),
            d.source.input,
            d.source.record.unwrap_or(NONE_U32),
            len,
            format,
        ] {
            self.entries.extend_from_slice(&v.to_le_bytes());
        }
        self.offset += bytes.len() as u64;
        self.count += 1;
        Ok(())
    }

    fn finish(self, class_names: &[String], num_skipped: u64, fingerprint: u64) -> Result<()> {
        let entries_off = self.offset;
        let names_off = entries_off + self.entries.len() as u64;
        let mut names = (class_names.len() as u32).to_le_bytes().to_vec();
        for n in class_names {
            names.extend_from_slice(&(n.len() as u32).to_le_bytes());
            names.extend_from_slice(n.as_bytes());
        }
        let total = names_off + names.len() as u64;
        self.out.write_all(&self.entries).at(self.path)?;
        self.out.write_all(&names).at(self.path)?;
        let mut header = Vec::with_capacity(HEADER_LEN);
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&VERSION.to_le_bytes());
        header.extend_from_slice(&0u32.to_le_bytes());
        for v in [
            self.count,
            entries_off,
            names_off,
            num_skipped,
            fingerprint,
            total,
        ] {
            header.extend_from_slice(&v.to_le_bytes());
        }
        self.out.seek(SeekFrom::Start(0)).at(self.path)?;
        self.out.write_all(&header).at(self.path)?;
        self.out.flush().at(self.path)
    }
}

/// Decodes everything in `listing` into `out` in cache layout.
fn write_cache<W: Write + Seek>(
    listing: &Listing,
    opts: &CacheOptions,
    fingerprint: u64,
    out: &mut W,
    out_path: &Path,
) -> Result<()> {
    let skip_corrupt = opts.skip_corrupt;
    let mut writer = CacheWriter::new(out, out_path)?;
    let mut class_names = listing.class_names.clone();
    let mut skipped = 0u64;
    match &listing.layout {
        Layout::Files(items) => {
            for (chunk_no, chunk) in items.chunks(DECODE_CHUNK).enumerate() {
                let decoded: Vec<Result<(Decoded, Option<Vec<u8>>)>> = chunk
                    .par_iter()
                    .enumerate()
                    .map(|(k, (path, label))| {
                        let img = sources::decode_file(path, opts.max_short_side)?;
                        let jpeg = jpeg_entry(path, &img, opts.format)?;
                        let input = (chunk_no * DECODE_CHUNK + k) as u32;
                        let d = Decoded {
                            h: img.h,
                            w: img.w,
                            pixels: if jpeg.is_some() {
                                Vec::new()
                            } else {
                                img.pixels
                            },
                            label: *label,
                            source: SourceRef {
                                input,
                                record: None,
                            },
                        };
                        Ok((d, jpeg))
                    })
                    .collect();
                for d in decoded {
                    match d {
                        Ok((d, Some(jpeg))) => writer.push_bytes(&d, &jpeg, FORMAT_JPEG)?,
                        Ok((d, None)) => writer.push(&d)?,
                        Err(DataError::Corrupt { .. }) if skip_corrupt => skipped += 1,
                        Err(e) => return Err(e),
                    }
                }
            }
            if writer.count == 0 {
                return Err(DataError::Empty {
                    path: listing.root.clone(),
                });
            }
        }
        Layout::Cifar(files) => {
            for (i, f) in files.iter().enumerate() {
                for d in sources::decode_cifar(f, i, class_names.len())? {
                    writer.push(&sources::bounded(d, opts.max_short_side))?;
                }
            }
        }
        Layout::Idx { images, labels } => {
            let (decoded, num_classes) = sources::decode_idx(images, labels, 0)?;
            if decoded.is_empty() {
                return Err(DataError::Empty {
                    path: images.clone(),
                });
            }
            class_names = (0..num_classes).map(|c| c.to_string()).collect();
            for d in decoded {
                writer.push(&sources::bounded(d, opts.max_short_side))?;
            }
        }
    }
    writer.finish(&class_names, skipped, fingerprint)
}

/// The JPEG bytes to store for the image file at `path` (decoded and bounded as `img`), or
/// `None` to store its pixels. A file the bound left whole is kept as it is (its decode is
/// the one the pixels came from); a downscaled one is re-encoded.
fn jpeg_entry(
    path: &Path,
    img: &sources::FileImage,
    format: CacheFormat,
) -> Result<Option<Vec<u8>>> {
    let photo = sources::is_jpeg_file(path) && img.h as u64 * img.w as u64 >= JPEG_MIN_PIXELS;
    if format != CacheFormat::Auto || !photo {
        return Ok(None);
    }
    if !img.resized {
        return fs::read(path).at(path).map(Some);
    }
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, JPEG_QUALITY)
        .encode(&img.pixels, img.w, img.h, image::ExtendedColorType::Rgb8)
        .map_err(|e| DataError::Corrupt {
            path: path.to_path_buf(),
            reason: format!("cannot re-encode it for the cache: {e}"),
        })?;
    Ok(Some(out))
}
