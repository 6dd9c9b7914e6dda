//! Where the one pretraining loop takes its batches and its per-epoch evaluation from: one
//! implementation per modality (images in `pretrain.rs`, audio in `audio.rs`).

use anyhow::Result;
use burn::prelude::*;

pub trait TrainData {
    /// A batch as the method takes it (`SslMethod::Input`).
    type Input;
    /// The encoder the evaluation reads (`SslMethod::Backbone`).
    type Backbone;

    /// Training samples (images, clips) per epoch.
    fn samples(&self) -> usize;

    fn steps_per_epoch(&self) -> usize;

    /// The batches of epoch `epoch` (reproducible from the run's seed and the epoch), each with
    /// its number of views (samples × views per sample), for the throughput figures.
    fn epoch<'a>(
        &'a self,
        epoch: usize,
        device: &'a Device,
    ) -> Box<dyn Iterator<Item = (Self::Input, usize)> + 'a>;

    /// Test-split top-1 accuracy of a kNN classifier on the encoder's embeddings (training
    /// split as memory bank); logged as `knn_top1` every `train.knn_every` epochs.
    fn evaluate(&self, backbone: &Self::Backbone) -> Result<f64>;
}
