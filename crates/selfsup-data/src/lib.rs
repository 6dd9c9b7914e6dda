//! selfsup-data: datasets, decoded-image cache, augmentations and multi-view loading.
//!
//! Public API:
//! - Locating data: [`data_root`], [`fashion_mnist_dir`].
//! - Reading: [`open_dataset`]`(path, `[`Split`]`, &`[`CacheOptions`]`) -> Result<`[`ImageDataset`]`>`
//!   auto-detects image-folder trees, CIFAR-10 binary batches and IDX files, decodes once
//!   into a memory-mapped cache. [`ImageDataset`]: `len`, `image(i) -> `[`ImageRef`] (HWC RGB8, `.view()`),
//!   `label`, `class_names`, `path`, `num_skipped`.
//! - Augmenting: [`Transform`] steps composed into a [`Pipeline`] (with
//!   [`Pipeline::simclr`] and [`Pipeline::eval`] recipes); randomness from
//!   [`SampleRng`] keyed by (seed, epoch, sample, view). The deterministic cores in
//!   [`ops`] reproduce torchvision's v1 tensor functions (checked against fixtures).
//! - Loading: [`ViewLoader`] yields [`Batch`]es of normalised f32 NCHW views built
//!   on worker threads; [`ViewLoader::eval`] for in-order evaluation batches.
//! - Errors: [`DataError`], each naming the offending path.

mod dataset;
mod error;
pub mod lab;
mod loader;
pub mod ops;
mod pixels;
mod rng;
mod sources;
mod transforms;

use std::path::{Path, PathBuf};

pub use dataset::{CacheFormat, CacheOptions, ImageDataset, ImageRef, open_dataset};
pub use error::{DataError, Result};
pub use loader::{Batch, EpochBatches, LoaderConfig, Shard, ViewLoader};
pub use pixels::{ImageView, RgbImage};
pub use rng::{SampleRng, SplitMix64, shuffled_batches};
pub use sources::Split;
pub use transforms::{
    CropBox, EncoderInput, Jitter, Normalization, Pipeline, Transform, sample_color_jitter,
    sample_resized_crop,
};

/// Root of the shared data (`.../shared/data`): `$SELFSUP_DATA` if set, else the first
/// `shared/data` found walking up from the current directory, then from this crate's
/// manifest directory.  Falls back to `<repo>/../shared/data` (which may not exist;
/// callers report a missing path with its name).
pub fn data_root() -> PathBuf {
    if let Some(p) = std::env::var_os("SELFSUP_DATA") {
        return PathBuf::from(p);
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let starts = std::env::current_dir()
        .into_iter()
        .chain([manifest.to_path_buf()]);
    for start in starts {
        if let Some(found) = start
            .ancestors()
            .map(|a| a.join("shared/data"))
            .find(|p| p.is_dir())
        {
            return found;
        }
    }
    manifest.join("../../../shared/data")
}

/// Fashion-MNIST IDX folder: `$SELFSUP_FASHION_MNIST`, else Debian's
/// `/usr/share/datasets/fashion-mnist` (package `dataset-fashion-mnist`).
pub fn fashion_mnist_dir() -> PathBuf {
    std::env::var_os("SELFSUP_FASHION_MNIST")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/share/datasets/fashion-mnist"))
}
