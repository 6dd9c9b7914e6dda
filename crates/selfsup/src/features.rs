//! Backbone features of a whole dataset split, for kNN, linear probes and diagnostics.

use std::path::Path;
use std::sync::Arc;

use anyhow::Result;
use burn::prelude::*;
use selfsup_data::{ImageDataset, LoaderConfig, Pipeline, Split, ViewLoader};
use selfsup_eval::{Features, SubsetSpec, select_labels, stratified_subset};
use selfsup_models::Backbone;

use crate::config::Config;
use crate::{data, device};

/// Features of every image in dataset order, with labels where the dataset has them.
pub fn extract_all(
    backbone: &Backbone,
    dataset: Arc<ImageDataset>,
    pipeline: Pipeline,
    batch_size: usize,
    workers: usize,
    device: &Device,
) -> Result<(Features, Vec<Option<u32>>)> {
    extract(
        backbone, dataset, None, pipeline, batch_size, workers, device,
    )
}

/// Features of the images `subset` (in its order; `None`: all), with their labels.
pub fn extract(
    backbone: &Backbone,
    dataset: Arc<ImageDataset>,
    subset: Option<Vec<usize>>,
    pipeline: Pipeline,
    batch_size: usize,
    workers: usize,
    device: &Device,
) -> Result<(Features, Vec<Option<u32>>)> {
    // Inference mode: running BN statistics, no autodiff graph.
    let model = backbone.valid();
    let n = subset.as_ref().map_or(dataset.len(), Vec::len);
    let config = LoaderConfig {
        batch_size,
        shuffle: false,
        drop_last: false,
        seed: 0,
        num_workers: workers,
        prefetch: 4,
        subset,
    };
    let loader = ViewLoader::new(dataset, vec![pipeline], config)?;
    let mut data = Vec::with_capacity(n * backbone.out_dim());
    let mut labels = Vec::with_capacity(n);
    for batch in loader.epoch(0) {
        let shape = batch.view_shapes[0];
        let x = Tensor::<4>::from_data(
            TensorData::new(batch.views.into_iter().next().unwrap(), shape),
            device,
        );
        let f = model.forward(x);
        data.extend(f.into_data().try_to_vec::<f32>().expect("f32 features"));
        labels.extend(batch.labels);
    }
    let dim = backbone.out_dim();
    Ok((Features::new(data, n, dim)?, labels))
}

/// Evaluation needs every image labelled.
pub fn require_labels(labels: Vec<Option<u32>>) -> Result<Vec<u32>> {
    labels
        .into_iter()
        .enumerate()
        .map(|(i, l)| {
            l.ok_or_else(|| anyhow::anyhow!("image {i} has no label; evaluation needs a labelled split (ROOT/<split>/<class>/...)"))
        })
        .collect()
}

/// Labelled features of one split with the config's eval transform, batch size, loader threads
/// and device.
fn labelled_split(
    config: &Config,
    backbone: &Backbone,
    data_path: &Path,
    cache: &Path,
    skip_corrupt: bool,
    split: Split,
) -> Result<(Features, Vec<u32>)> {
    let dataset = data::open(data_path, split, cache, skip_corrupt)?;
    let (features, labels) = extract_all(
        backbone,
        dataset,
        data::eval_pipeline(config)?,
        config.eval.batch_size,
        config.data.workers,
        &device::select(&config.train.device)?,
    )?;
    Ok((features, require_labels(labels)?))
}

/// Labelled features of the train and test splits of `data_path`: what kNN and linear probes
/// consume.
pub fn train_test(
    config: &Config,
    backbone: &Backbone,
    data_path: &Path,
    cache: &Path,
    skip_corrupt: bool,
) -> Result<[(Features, Vec<u32>); 2]> {
    let split = |s| labelled_split(config, backbone, data_path, cache, skip_corrupt, s);
    Ok([split(Split::Train)?, split(Split::Test)?])
}

/// The train split cut in two for choosing hyper-parameters without the test images: a
/// stratified, seeded `fraction` of it as the queries (second), the rest as the labelled bank
/// (first), in the shape `train_test` returns.
pub fn train_validation(
    config: &Config,
    backbone: &Backbone,
    data_path: &Path,
    cache: &Path,
    skip_corrupt: bool,
    fraction: f64,
) -> Result<[(Features, Vec<u32>); 2]> {
    check_validation_fraction(fraction)?;
    let (features, labels) = labelled_split(
        config,
        backbone,
        data_path,
        cache,
        skip_corrupt,
        Split::Train,
    )?;
    let (bank, held_out) = validation_rows(&labels, fraction, config.train.seed)?;
    let pick = |idx: &[usize]| (features.select(idx), select_labels(&labels, idx));
    Ok([pick(&bank), pick(&held_out)])
}

/// Refuses a `--validation` value that is not a fraction in (0, 1), before any work.
pub fn check_validation_fraction(fraction: f64) -> Result<()> {
    if !(fraction > 0.0 && fraction < 1.0) {
        anyhow::bail!(
            "--validation must be a fraction in (0, 1) of the train split, got {fraction}"
        );
    }
    Ok(())
}

/// The train split's rows cut for validation: (the rest, a stratified, seeded `fraction` held
/// out). The one rule behind `eval knn --validation` and `finetune`/`prove --validation`.
pub fn validation_rows(
    labels: &[u32],
    fraction: f64,
    seed: u64,
) -> Result<(Vec<usize>, Vec<usize>)> {
    check_validation_fraction(fraction)?;
    let held_out = stratified_subset(labels, SubsetSpec::Fraction(fraction), seed)?;
    let mut is_held_out = vec![false; labels.len()];
    for &i in &held_out {
        is_held_out[i] = true;
    }
    let rest = (0..labels.len()).filter(|&i| !is_held_out[i]).collect();
    Ok((rest, held_out))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The held-out rows are a per-class fraction, the rest is exactly the complement, and
    /// the cut depends on the seed only (not on anything a fine-tuning --seed changes).
    #[test]
    fn validation_rows_partition_the_split_per_class() {
        let labels: Vec<u32> = (0..60).map(|i| (i % 3) as u32).collect();
        let (rest, held) = validation_rows(&labels, 0.2, 7).unwrap();
        assert_eq!(held.len(), 12);
        for c in 0..3 {
            assert_eq!(held.iter().filter(|&&i| labels[i] == c).count(), 4);
        }
        let mut all: Vec<usize> = rest.iter().chain(&held).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..60).collect::<Vec<_>>());
        assert_eq!(validation_rows(&labels, 0.2, 7).unwrap().1, held);
        assert_ne!(validation_rows(&labels, 0.2, 8).unwrap().1, held);
        let e = validation_rows(&labels, 1.0, 7).unwrap_err().to_string();
        assert!(e.contains("--validation"), "{e}");
    }
}
