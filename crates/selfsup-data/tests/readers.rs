//! Dataset readers and the decoded cache, on real shared data and on crafted files.

use std::fs;
use std::io::Write;
use std::path::Path;

use selfsup_data::{CacheFormat, CacheOptions, DataError, Split, open_dataset};

mod common;

fn cached(dir: &Path) -> CacheOptions {
    CacheOptions {
        cache_dir: Some(dir.to_path_buf()),
        skip_corrupt: false,
        max_short_side: None,
        format: CacheFormat::Pixels,
    }
}

#[test]
fn cifar10_jpeg_test_split() {
    let cache = tempfile::tempdir().unwrap();
    let t = std::time::Instant::now();
    let ds = open_dataset(&common::cifar10_dir(), Split::Test, &cached(cache.path())).unwrap();
    println!("decoded + cached 10k CIFAR JPEGs in {:.2?}", t.elapsed());
    assert_eq!(ds.len(), 10_000);
    let classes = [
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    ];
    assert_eq!(ds.class_names(), classes);
    let mut counts = [0usize; 10];
    for i in 0..ds.len() {
        counts[ds.label(i).unwrap() as usize] += 1;
        let img = ds.image(i);
        let img = img.view();
        assert_eq!((img.h, img.w, img.data.len()), (32, 32, 3072));
    }
    assert_eq!(counts, [1000; 10]);
    assert!(
        ds.path(0).ends_with("airplane/0000.jpg"),
        "{}",
        ds.path(0).display()
    );
    assert_eq!(ds.num_skipped(), 0);

    // Second open maps the same cache file and sees identical pixels.
    let again = open_dataset(&common::cifar10_dir(), Split::Test, &cached(cache.path())).unwrap();
    assert_eq!(again.cache_file(), ds.cache_file());
    assert_eq!(again.image(1234), ds.image(1234));
}

/// Writes CIFAR-10 binary records from (label, HWC image) pairs.
fn write_cifar_batch(path: &Path, records: &[(u8, Vec<u8>)]) {
    let mut f = fs::File::create(path).unwrap();
    for (label, hwc) in records {
        let mut rec = vec![*label];
        for c in 0..3 {
            rec.extend(hwc.chunks_exact(3).map(|p| p[c]));
        }
        f.write_all(&rec).unwrap();
    }
}

#[test]
fn cifar_binary_roundtrip_from_real_images() {
    let cifar = common::cifar10_dir();
    let picks = ["cat/0000.jpg", "ship/0001.jpg", "truck/0005.jpg"];
    let records: Vec<(u8, Vec<u8>)> = picks
        .iter()
        .zip([3u8, 8, 9])
        .map(|(p, l)| {
            (
                l,
                image::open(cifar.join("test").join(p))
                    .unwrap()
                    .into_rgb8()
                    .into_raw(),
            )
        })
        .collect();
    let tmp = tempfile::tempdir().unwrap();
    let bin = tmp.path().join("data/cifar-10-batches-bin");
    fs::create_dir_all(&bin).unwrap();
    write_cifar_batch(&bin.join("test_batch.bin"), &records);
    write_cifar_batch(&bin.join("data_batch_1.bin"), &records[..2]);
    write_cifar_batch(&bin.join("data_batch_2.bin"), &records[2..]);

    let test = open_dataset(
        &tmp.path().join("data"),
        Split::Test,
        &CacheOptions::default(),
    )
    .unwrap();
    assert_eq!(test.len(), 3);
    for (i, (label, hwc)) in records.iter().enumerate() {
        assert_eq!(test.label(i), Some(*label as u32));
        assert_eq!(test.image(i).view().data, &hwc[..]);
    }
    assert!(test.path(2).to_string_lossy().ends_with("test_batch.bin#2"));
    assert_eq!(test.class_names().len(), 10);
    let train = open_dataset(&bin, Split::Train, &CacheOptions::default()).unwrap();
    assert_eq!(train.len(), 3);
    assert_eq!(train.image(2).view().data, &records[2].1[..]);

    // A truncated batch is refused with its path.
    fs::write(bin.join("test_batch.bin"), vec![0u8; 3000]).unwrap();
    let err = open_dataset(&bin, Split::Test, &CacheOptions::default())
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("test_batch.bin") && err.contains("3073"),
        "{err}"
    );
}

#[test]
fn fashion_mnist_idx_test_split() {
    let cache = tempfile::tempdir().unwrap();
    let ds = open_dataset(
        &common::fashion_mnist_dir(),
        Split::Test,
        &cached(cache.path()),
    )
    .unwrap();
    assert_eq!(ds.len(), 10_000);
    assert_eq!(ds.class_names().len(), 10);
    let img = ds.image(0);
    let img = img.view();
    assert_eq!((img.h, img.w), (28, 28));
    assert!(
        img.data
            .chunks_exact(3)
            .all(|p| p[0] == p[1] && p[1] == p[2]),
        "gray replicated to RGB"
    );
    let mut counts = [0usize; 10];
    (0..ds.len()).for_each(|i| counts[ds.label(i).unwrap() as usize] += 1);
    assert_eq!(counts, [1000; 10]);
    assert!(
        ds.path(5)
            .to_string_lossy()
            .ends_with("t10k-images-idx3-ubyte.gz#5")
    );
}

fn idx_header(ndim: u8, dims: &[u32]) -> Vec<u8> {
    let mut h = vec![0, 0, 8, ndim];
    dims.iter()
        .for_each(|d| h.extend_from_slice(&d.to_be_bytes()));
    h
}

#[test]
fn idx_absurd_or_inconsistent_headers_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let write_gz = |name: &str, bytes: &[u8]| {
        let mut enc = flate2::write::GzEncoder::new(
            fs::File::create(dir.join(name)).unwrap(),
            flate2::Compression::fast(),
        );
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap();
    };
    let mut labels = idx_header(1, &[2]);
    labels.extend([0, 1]);
    fs::write(dir.join("t10k-labels-idx1-ubyte"), &labels).unwrap();

    // ~4.3e9 images of 1000x1000: about 4e15 bytes claimed, 8 bytes present.
    let mut images = idx_header(3, &[u32::MAX, 1000, 1000]);
    images.extend([0u8; 8]);
    fs::write(dir.join("t10k-images-idx3-ubyte"), &images).unwrap();
    let err = open_dataset(dir, Split::Test, &CacheOptions::default())
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("t10k-images-idx3-ubyte") && err.contains("limit"),
        "{err}"
    );

    // Plausible header but more images than the (gzipped) file holds.
    fs::remove_file(dir.join("t10k-images-idx3-ubyte")).unwrap();
    let mut images = idx_header(3, &[1000, 28, 28]);
    images.extend(vec![7u8; 2 * 28 * 28]);
    write_gz("t10k-images-idx3-ubyte.gz", &images);
    let err = open_dataset(dir, Split::Test, &CacheOptions::default())
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("t10k-images-idx3-ubyte.gz") && err.contains("784016"),
        "{err}"
    );

    // Consistent files load; then a label count mismatch is refused.
    let mut images = idx_header(3, &[2, 28, 28]);
    images.extend(vec![7u8; 2 * 28 * 28]);
    write_gz("t10k-images-idx3-ubyte.gz", &images);
    let ds = open_dataset(dir, Split::Test, &CacheOptions::default()).unwrap();
    assert_eq!((ds.len(), ds.label(1)), (2, Some(1)));
    let mut labels = idx_header(1, &[3]);
    labels.extend([0, 1, 2]);
    fs::write(dir.join("t10k-labels-idx1-ubyte"), &labels).unwrap();
    let err = open_dataset(dir, Split::Test, &CacheOptions::default())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("3 labels for 2 images"), "{err}");
    // The train split is absent.
    let err = open_dataset(dir, Split::Train, &CacheOptions::default())
        .err()
        .unwrap();
    assert!(matches!(err, DataError::MissingSplit { .. }), "{err}");
}

fn save_png(path: &Path, img: impl Into<image::DynamicImage>) {
    img.into().save(path).unwrap();
}

/// A class folder tree with one good RGB image per class, in a temp dir.
fn small_tree() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    for class in ["b_class", "a_class"] {
        let d = tmp.path().join("train").join(class);
        fs::create_dir_all(&d).unwrap();
        save_png(
            &d.join("good.png"),
            image::RgbImage::from_fn(5, 4, |x, y| image::Rgb([x as u8 * 40, y as u8 * 50, 9])),
        );
    }
    tmp
}

#[test]
fn odd_pixel_formats_are_converted_not_dropped() {
    let tmp = small_tree();
    let d = tmp.path().join("train/a_class");
    save_png(
        &d.join("deep.png"),
        image::ImageBuffer::<image::Rgb<u16>, _>::from_fn(3, 2, |x, _| {
            image::Rgb([65535, (x * 257 * 100) as u16, 0])
        }),
    );
    save_png(
        &d.join("rgba.png"),
        image::RgbaImage::from_fn(2, 2, |_, _| image::Rgba([10, 20, 30, 0])),
    );
    save_png(
        &d.join("gray.png"),
        image::GrayImage::from_fn(7, 3, |_, _| image::Luma([77])),
    );
    let ds = open_dataset(tmp.path(), Split::Train, &CacheOptions::default()).unwrap();
    assert_eq!(ds.class_names(), ["a_class", "b_class"]);
    assert_eq!(ds.len(), 5);
    let by_name = |n: &str| (0..ds.len()).find(|&i| ds.path(i).ends_with(n)).unwrap();
    let deep = ds.image(by_name("deep.png"));
    let deep = deep.view();
    assert_eq!((deep.h, deep.w), (2, 3));
    assert_eq!(&deep.data[..6], &[255, 0, 0, 255, 100, 0]);
    assert_eq!(
        ds.image(by_name("rgba.png")).view().data,
        &[10, 20, 30].repeat(4)[..]
    );
    assert_eq!(ds.image(by_name("gray.png")).view().data, &[77u8; 63][..]);
    assert_eq!(ds.label(by_name("gray.png")), Some(0));
}

#[test]
fn corrupt_files_error_with_path_or_are_skipped() {
    let jpeg = fs::read(common::cifar10_dir().join("test/cat/0000.jpg")).unwrap();
    let bad_files: [(&str, &[u8]); 3] = [
        ("truncated.jpg", &jpeg[..jpeg.len() / 3]),
        ("empty.jpg", b""),
        ("notes.png", b"just some text\n"),
    ];
    for (name, bytes) in bad_files {
        let tmp = small_tree();
        let bad = tmp.path().join("train/b_class").join(name);
        fs::write(&bad, bytes).unwrap();
        let err = open_dataset(tmp.path(), Split::Train, &CacheOptions::default())
            .err()
            .unwrap_or_else(|| panic!("{name} accepted"));
        assert!(matches!(err, DataError::Corrupt { .. }), "{name}: {err}");
        assert!(
            err.to_string().contains(&bad.display().to_string()),
            "{name}: {err}"
        );
        let opts = CacheOptions {
            cache_dir: None,
            skip_corrupt: true,
            max_short_side: None,
            format: CacheFormat::Pixels,
        };
        let ds = open_dataset(tmp.path(), Split::Train, &opts).unwrap();
        assert_eq!((ds.len(), ds.num_skipped()), (2, 1), "{name}");
    }
}

#[test]
fn layout_errors_name_the_path() {
    let tmp = small_tree();
    let missing = tmp.path().join("nope");
    let err = open_dataset(&missing, Split::Train, &CacheOptions::default())
        .err()
        .unwrap();
    assert!(
        matches!(err, DataError::NotFound { .. }) && err.to_string().contains("nope"),
        "{err}"
    );

    let err = open_dataset(tmp.path(), Split::Test, &CacheOptions::default())
        .err()
        .unwrap();
    assert!(matches!(err, DataError::MissingSplit { .. }), "{err}");

    fs::create_dir_all(tmp.path().join("train/c_empty")).unwrap();
    let err = open_dataset(tmp.path(), Split::Train, &CacheOptions::default())
        .err()
        .unwrap();
    assert!(
        matches!(err, DataError::EmptyClass { .. }) && err.to_string().contains("c_empty"),
        "{err}"
    );
    fs::remove_dir(tmp.path().join("train/c_empty")).unwrap();

    let empty = tempfile::tempdir().unwrap();
    fs::write(empty.path().join("readme.txt"), "hi").unwrap();
    let err = open_dataset(empty.path(), Split::Train, &CacheOptions::default())
        .err()
        .unwrap();
    assert!(matches!(err, DataError::Empty { .. }), "{err}");

    // The cache must not live inside the dataset.
    let inside = cached(&tmp.path().join("train/.cache"));
    let err = open_dataset(tmp.path(), Split::Train, &inside)
        .err()
        .unwrap();
    assert!(matches!(err, DataError::CacheInsideDataset { .. }), "{err}");
}

#[test]
fn flat_folder_is_unlabelled() {
    let tmp = tempfile::tempdir().unwrap();
    for i in 0..3 {
        save_png(
            &tmp.path().join(format!("{i}.png")),
            image::RgbImage::new(4 + i, 6),
        );
    }
    let ds = open_dataset(tmp.path(), Split::Train, &CacheOptions::default()).unwrap();
    assert_eq!(ds.len(), 3);
    assert!(ds.class_names().is_empty());
    assert_eq!(ds.label(2), None);
    assert_eq!((ds.image(2).view().h, ds.image(2).view().w), (6, 6));
}

#[test]
fn cache_is_rebuilt_when_a_source_changes() {
    let tmp = small_tree();
    let cache = tempfile::tempdir().unwrap();
    let first = open_dataset(tmp.path(), Split::Train, &cached(cache.path())).unwrap();
    let first_file = first.cache_file().unwrap().to_path_buf();
    assert!(first_file.starts_with(cache.path()));
    let reopened = open_dataset(tmp.path(), Split::Train, &cached(cache.path())).unwrap();
    assert_eq!(reopened.cache_file(), Some(first_file.as_path()));

    // Same size, new content: mtime (and here size) changes the fingerprint.
    let changed = tmp.path().join("train/a_class/good.png");
    save_png(
        &changed,
        image::RgbImage::from_fn(5, 4, |_, _| image::Rgb([200, 100, 50])),
    );
    let rebuilt = open_dataset(tmp.path(), Split::Train, &cached(cache.path())).unwrap();
    assert_ne!(rebuilt.cache_file(), Some(first_file.as_path()));
    assert_eq!(&rebuilt.image(0).view().data[..3], &[200, 100, 50]);

    // A damaged cache file is rebuilt, not trusted.
    let f = rebuilt.cache_file().unwrap().to_path_buf();
    drop(rebuilt);
    let len = fs::metadata(&f).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&f)
        .unwrap()
        .set_len(len - 5)
        .unwrap();
    let healed = open_dataset(tmp.path(), Split::Train, &cached(cache.path())).unwrap();
    assert_eq!(&healed.image(0).view().data[..3], &[200, 100, 50]);
    assert!(
        fs::read_dir(cache.path()).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .contains(".tmp"))
    );
}

/// `select` is a view: image k of it is image rows[k] of the parent (pixels, label, path),
/// views of views compose, and an index past the end is refused.
#[test]
fn select_is_a_view_of_the_chosen_rows() {
    let tmp = small_tree();
    let d = tmp.path().join("train/b_class");
    save_png(
        &d.join("other.png"),
        image::RgbImage::from_fn(3, 3, |_, _| image::Rgb([1, 2, 3])),
    );
    let ds = open_dataset(tmp.path(), Split::Train, &CacheOptions::default()).unwrap();
    assert_eq!(ds.len(), 3);
    let view = ds.select(&[2, 0, 2]);
    assert_eq!(view.len(), 3);
    assert_eq!(view.class_names(), ds.class_names());
    for (k, r) in [2usize, 0, 2].into_iter().enumerate() {
        assert_eq!(view.image(k).view().data, ds.image(r).view().data);
        assert_eq!(
            (view.image(k).view().h, view.image(k).view().w),
            (ds.image(r).view().h, ds.image(r).view().w)
        );
        assert_eq!(view.label(k), ds.label(r));
        assert_eq!(view.path(k), ds.path(r));
    }
    let nested = view.select(&[1]);
    assert_eq!(nested.len(), 1);
    assert_eq!(nested.path(0), ds.path(0));
    let past_end = std::panic::catch_unwind(|| view.select(&[3]));
    assert!(past_end.is_err(), "row 3 of a 3-image view");
}

/// Large images are cached with their shorter side bounded: a JPEG through the reduced-scale
/// DCT decode, a PNG through the full decode, both then resized; the JPEG's pixels are close to
/// a full decode resized the same way, and the cache key changes with the bound.
#[test]
fn large_images_are_cached_with_a_bounded_short_side() {
    let src = tempfile::tempdir().unwrap();
    let dir = src.path().join("c");
    fs::create_dir_all(&dir).unwrap();
    let img = image::RgbImage::from_fn(1600, 1200, |x, y| {
        image::Rgb([
            (x / 7 % 256) as u8,
            (y / 5 % 256) as u8,
            ((x + y) / 11 % 256) as u8,
        ])
    });
    img.save(dir.join("big.jpg")).unwrap();
    image::RgbImage::from_fn(300, 900, |x, y| image::Rgb([x as u8, y as u8, 7]))
        .save(dir.join("tall.png"))
        .unwrap();
    let cache = tempfile::tempdir().unwrap();
    let bounded = CacheOptions {
        max_short_side: Some(100),
        ..cached(cache.path())
    };
    let ds = open_dataset(src.path(), Split::Train, &bounded).unwrap();
    let (jpg, png) = (ds.image(0), ds.image(1));
    let (jpg, png) = (jpg.view(), png.view());
    assert_eq!((jpg.h, jpg.w), (100, 133));
    assert_eq!((png.h, png.w), (300, 100));

    let full = image::open(dir.join("big.jpg")).unwrap().into_rgb8();
    let reference = image::imageops::resize(&full, 133, 100, image::imageops::FilterType::Triangle);
    let mean_diff = jpg
        .data
        .iter()
        .zip(reference.as_raw())
        .map(|(&a, &b)| (a as f64 - b as f64).abs())
        .sum::<f64>()
        / jpg.data.len() as f64;
    assert!(
        mean_diff < 3.0,
        "mean |Δ| {mean_diff} levels against a full decode"
    );

    // Small images are untouched, and the bound is part of the cache key.
    let small = CacheOptions {
        max_short_side: Some(2000),
        ..cached(cache.path())
    };
    let ds = open_dataset(src.path(), Split::Train, &small).unwrap();
    assert_eq!((ds.image(0).view().h, ds.image(0).view().w), (1200, 1600));
    assert_eq!(fs::read_dir(cache.path()).unwrap().count(), 2);
}

/// `CacheFormat::Auto` keeps photos as JPEG: one the bound shrinks is re-encoded (close to the
/// pixels a pixel cache holds), one it leaves whole is stored as the file's own bytes (decoding
/// to exactly the file's pixels); small JPEGs and PNGs stay pixels. The cache is then a fraction
/// of the pixel cache, and reopening it (memory-mapped) reads the same images.
#[test]
fn photos_are_cached_as_jpeg_by_default() {
    let src = tempfile::tempdir().unwrap();
    let dir = src.path().join("c");
    fs::create_dir_all(&dir).unwrap();
    let scene = |w: u32, h: u32| {
        image::RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([
                (x / 7 % 256) as u8,
                (y / 5 % 256) as u8,
                ((x + y) / 11 % 256) as u8,
            ])
        })
    };
    let save_jpeg = |img: &image::RgbImage, name: &str| {
        let file = fs::File::create(dir.join(name)).unwrap();
        image::codecs::jpeg::JpegEncoder::new_with_quality(file, 85)
            .encode_image(img)
            .unwrap();
    };
    save_jpeg(&scene(1600, 1200), "a_big.jpg");
    save_jpeg(&scene(110, 100), "b_whole.jpg");
    save_jpeg(&scene(40, 40), "c_small.jpg");
    scene(300, 300).save(dir.join("d_plain.png")).unwrap();

    let cache = tempfile::tempdir().unwrap();
    let pixels = CacheOptions {
        max_short_side: Some(120),
        ..cached(cache.path())
    };
    let auto = CacheOptions {
        format: CacheFormat::Auto,
        ..pixels.clone()
    };
    let reference = open_dataset(src.path(), Split::Train, &pixels).unwrap();
    let ds = open_dataset(src.path(), Split::Train, &auto).unwrap();
    assert_eq!(ds.len(), 4);
    assert_eq!(ds.num_jpeg_entries(), 2, "the big and the whole JPEG");
    assert_eq!(reference.num_jpeg_entries(), 0);

    let (big, want) = (ds.image(0), reference.image(0));
    let (big, want) = (big.view(), want.view());
    assert_eq!((big.h, big.w), (120, 160));
    assert_eq!((want.h, want.w), (120, 160));
    let mean_diff = big
        .data
        .iter()
        .zip(want.data)
        .map(|(&a, &b)| (a as f64 - b as f64).abs())
        .sum::<f64>()
        / big.data.len() as f64;
    assert!(
        mean_diff < 2.0,
        "re-encoded JPEG entry: mean |Δ| {mean_diff} levels against the pixel cache"
    );
    assert_ne!(
        mean_diff, 0.0,
        "a re-encoded entry is not the pixels themselves"
    );

    let file_pixels = image::open(dir.join("b_whole.jpg")).unwrap().into_rgb8();
    assert_eq!(ds.image(1).view().data, file_pixels.as_raw().as_slice());
    assert_eq!(ds.image(1), reference.image(1));
    let source = fs::read(dir.join("b_whole.jpg")).unwrap();
    let cache_bytes = fs::read(ds.cache_file().unwrap()).unwrap();
    assert!(
        cache_bytes.windows(source.len()).any(|w| w == source),
        "a JPEG the bound leaves whole is stored as its own bytes"
    );
    for i in [2, 3] {
        assert_eq!(ds.image(i), reference.image(i), "image {i} stays pixels");
    }

    let (auto_len, pixel_len) = (
        cache_bytes.len(),
        fs::metadata(reference.cache_file().unwrap()).unwrap().len() as usize,
    );
    assert!(
        auto_len * 2 < pixel_len,
        "JPEG entries {auto_len} bytes, pixels {pixel_len} bytes"
    );
    let again = open_dataset(src.path(), Split::Train, &auto).unwrap();
    assert_eq!(
        again.cache_file(),
        ds.cache_file(),
        "the same cache, reopened"
    );
    for i in 0..4 {
        assert_eq!(again.image(i), ds.image(i));
    }
}
