//! Where the one pretraining loop takes its batches and its per-epoch evaluation from: one
//! implementation per modality (images in `pretrain.rs`, audio in `audio.rs`, text in
//! `text.rs`).

use anyhow::Result;
use burn::prelude::*;
use selfsup_methods::method::SslMethod;

/// Named figures of one evaluation, merged into the epoch record of `metrics.jsonl`.
pub type Figures = serde_json::Map<String, serde_json::Value>;

pub trait TrainData<M: SslMethod> {
    /// Training samples (images, clips, documents) per epoch.
    fn samples(&self) -> usize;

    fn steps_per_epoch(&self) -> usize;

    /// What the throughput counts (`views`; `tokens` for text): the epoch record's
    /// `<unit>_per_second`.
    fn throughput_unit(&self) -> &'static str {
        "views"
    }

    /// The batches of epoch `epoch` (reproducible from the run's seed and the epoch), each with
    /// its size in [`throughput_unit`](Self::throughput_unit)s.
    fn epoch<'a>(
        &'a self,
        epoch: usize,
        device: &'a Device,
    ) -> Box<dyn Iterator<Item = (M::Input, usize)> + 'a>;

    /// Held-out figures of the model, every `train.knn_every` epochs: images and audio the
    /// test-split top-1 accuracy of a kNN classifier on the encoder's embeddings (`knn_top1`),
    /// text the language model's accuracy and perplexity on held-out documents.
    fn evaluate(&self, model: &M) -> Result<Figures>;
}

/// `{"knn_top1": top1}`.
pub fn knn_figures(top1: f64) -> Figures {
    let mut f = Figures::new();
    f.insert("knn_top1".into(), top1.into());
    f
}
