//! Backbone features of a whole dataset split, for kNN, linear probes and diagnostics.

use std::path::Path;
use std::sync::Arc;

use anyhow::Result;
use burn::prelude::*;
use selfsup_data::{ImageDataset, LoaderConfig, Pipeline, Split, ViewLoader};
use selfsup_eval::Features;
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

/// Labelled features of the train and test splits of `data_path`, with the config's eval
/// transform, batch size, loader threads and device: what kNN and linear probes consume.
pub fn train_test(
    config: &Config,
    backbone: &Backbone,
    data_path: &Path,
    cache: &Path,
    skip_corrupt: bool,
) -> Result<[(Features, Vec<u32>); 2]> {
    let pipe = data::eval_pipeline(config)?;
    let dev = device::select(&config.train.device)?;
    let split = |split: Split| -> Result<(Features, Vec<u32>)> {
        let dataset = data::open(data_path, split, cache, skip_corrupt)?;
        let (features, labels) = extract_all(
            backbone,
            dataset,
            pipe.clone(),
            config.eval.batch_size,
            config.data.workers,
            &dev,
        )?;
        Ok((features, require_labels(labels)?))
    };
    Ok([split(Split::Train)?, split(Split::Test)?])
}
