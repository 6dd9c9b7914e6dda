//! Backbone features of a whole dataset split, for kNN, linear probes and diagnostics.

use std::sync::Arc;

use anyhow::Result;
use burn::prelude::*;
use selfsup_data::{ImageDataset, Pipeline, ViewLoader};
use selfsup_eval::Features;
use selfsup_models::ResNet;

/// Features of every image (eval transform, no augmentation) and their labels, which
/// evaluation needs: an unlabeled split is an error.
pub fn extract(
    backbone: &ResNet,
    dataset: Arc<ImageDataset>,
    pipeline: Pipeline,
    batch_size: usize,
    workers: usize,
    device: &Device,
) -> Result<(Features, Vec<u32>)> {
    let (features, labels) = extract_all(backbone, dataset, pipeline, batch_size, workers, device)?;
    let labels = labels
        .into_iter()
        .enumerate()
        .map(|(i, l)| l.ok_or_else(|| anyhow::anyhow!("image {i} has no label; evaluation needs a labelled split (ROOT/<split>/<class>/...)")))
        .collect::<Result<_>>()?;
    Ok((features, labels))
}

/// Features of every image in dataset order, with labels where the dataset has them.
pub fn extract_all(
    backbone: &ResNet,
    dataset: Arc<ImageDataset>,
    pipeline: Pipeline,
    batch_size: usize,
    workers: usize,
    device: &Device,
) -> Result<(Features, Vec<Option<u32>>)> {
    // Inference mode: running BN statistics, no autodiff graph.
    let model = backbone.valid();
    let n = dataset.len();
    let loader = ViewLoader::eval(dataset, pipeline, batch_size, workers)?;
    let mut data = Vec::with_capacity(n * backbone.out_dim);
    let mut labels = Vec::with_capacity(n);
    for batch in loader.epoch(0) {
        let shape = batch.view_shapes[0];
        let x = Tensor::<4>::from_data(TensorData::new(batch.views.into_iter().next().unwrap(), shape), device);
        let f = model.forward(x);
        data.extend(f.into_data().try_to_vec::<f32>().expect("f32 features"));
        labels.extend(batch.labels);
    }
    let dim = backbone.out_dim;
    Ok((Features::new(data, n, dim)?, labels))
}
