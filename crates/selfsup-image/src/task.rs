//! The few-label task of an image checkpoint: its backbone and the train and test splits of
//! a labelled image dataset.

use std::sync::Arc;

use burn::prelude::*;
use selfsup_core::modality::{DownstreamTask, Init, fresh_encoder};
use selfsup_core::{Error, Result, TaskSource};
use selfsup_data::{ImageDataset, LoaderConfig, Pipeline, Split, ViewLoader};
use selfsup_models::{Backbone, BackboneConfig, load_named_tensors};

use crate::{ImageConfig, backbone_config, data};

/// A backbone and two image splits.
pub struct ImageTask {
    config: ImageConfig,
    architecture: BackboneConfig,
    pretrained: Backbone,
    train: Arc<ImageDataset>,
    test: Arc<ImageDataset>,
    device: Device,
    eval_pipeline: Pipeline,
    train_pipeline: Pipeline,
}

impl ImageTask {
    /// The task of `pretrained` (built from `config`) on the two splits.
    pub fn new(
        config: ImageConfig,
        pretrained: Backbone,
        train: Arc<ImageDataset>,
        test: Arc<ImageDataset>,
        device: Device,
    ) -> Result<Self> {
        Ok(Self {
            architecture: backbone_config(&config)?,
            eval_pipeline: data::eval_pipeline(&config)?,
            train_pipeline: data::crop_flip_pipeline(&config)?,
            config,
            pretrained,
            train,
            test,
            device,
        })
    }

    /// The checkpoint's backbone (`model.backbone.*`, whatever method trained it) and the
    /// splits of the source's data.
    pub fn open(source: &TaskSource<crate::Image>) -> Result<Self> {
        let config = source.config.clone();
        let device = selfsup_core::device::select(&config.train.device)?;
        let pretrained = load_backbone(source, &device)?;
        let cache = data::cache_dir(&config, Some(&source.run_dir));
        let skip = source.options.skip_corrupt;
        let train = data::open(&source.data_path, Split::Train, &cache, skip, &config.data)?;
        let test = data::open(&source.data_path, Split::Test, &cache, skip, &config.data)?;
        Self::new(config, pretrained, train, test, device)
    }

    pub fn config(&self) -> &ImageConfig {
        &self.config
    }

    /// The split's dataset.
    pub fn dataset(&self, split: Split) -> &Arc<ImageDataset> {
        match split {
            Split::Train => &self.train,
            Split::Test => &self.test,
        }
    }

    pub fn pretrained(&self) -> &Backbone {
        &self.pretrained
    }
}

/// The backbone of an image checkpoint on `device`.
pub fn load_backbone(source: &TaskSource<crate::Image>, device: &Device) -> Result<Backbone> {
    let fresh = backbone_config(&source.config)?.init(device);
    load_named_tensors(fresh, &source.checkpoint.section("model"), "backbone.").map_err(|e| {
        Error::msg(format!(
            "checkpoint {} does not fit its backbone: {e}",
            source.checkpoint.path.display()
        ))
    })
}

fn to_tensor(views: Vec<Vec<f32>>, shape: [usize; 4], device: &Device) -> Tensor<4> {
    let v = views.into_iter().next().expect("one view");
    Tensor::<4>::from_data(TensorData::new(v, shape), device)
}

impl DownstreamTask for ImageTask {
    type Encoder = Backbone;
    type Batch = Tensor<4>;

    fn len(&self, split: Split) -> usize {
        self.dataset(split).len()
    }

    fn labels(&self, split: Split) -> Vec<Option<u32>> {
        let ds = self.dataset(split);
        (0..ds.len()).map(|i| ds.label(i)).collect()
    }

    fn class_names(&self) -> Vec<String> {
        let (a, b) = (self.train.class_names(), self.test.class_names());
        if a.len() >= b.len() {
            a.to_vec()
        } else {
            b.to_vec()
        }
    }

    fn sample_names(&self, split: Split, rows: &[usize]) -> Vec<String> {
        let ds = self.dataset(split);
        rows.iter()
            .map(|&i| ds.path(i).display().to_string())
            .collect()
    }

    fn augmentation(&self) -> String {
        "RandomCrop(input_size, padding=4) + HorizontalFlip; SGD momentum 0.9".into()
    }

    fn device(&self) -> &Device {
        &self.device
    }

    fn embed_dim(&self) -> usize {
        self.pretrained.out_dim()
    }

    fn encoder(&self, init: Init, device: &Device) -> Result<Backbone> {
        fresh_encoder(init, device, &self.pretrained, |d| {
            self.architecture.init(d)
        })
    }

    fn batches<'a>(
        &'a self,
        split: Split,
        rows: &'a [usize],
        batch_size: usize,
        device: &'a Device,
    ) -> Result<Box<dyn Iterator<Item = Tensor<4>> + 'a>> {
        let loader = ViewLoader::new(
            self.dataset(split).clone(),
            vec![self.eval_pipeline.clone()],
            LoaderConfig {
                batch_size,
                shuffle: false,
                drop_last: false,
                seed: 0,
                num_workers: self.config.data.workers,
                prefetch: 4,
                subset: Some(rows.to_vec()),
                shard: Default::default(),
            },
        )?;
        Ok(Box::new(loader.epoch(0).map(move |b| {
            to_tensor(b.views, b.view_shapes[0], device)
        })))
    }

    fn train_batches<'a>(
        &'a self,
        rows: &'a [usize],
        batch_size: usize,
        seed: u64,
        device: &'a Device,
    ) -> Result<Box<dyn Iterator<Item = (Tensor<4>, Vec<u32>)> + 'a>> {
        let loader = ViewLoader::new(
            self.train.clone(),
            vec![self.train_pipeline.clone()],
            LoaderConfig {
                batch_size,
                shuffle: true,
                drop_last: true,
                seed,
                num_workers: self.config.data.workers,
                prefetch: 4,
                subset: Some(rows.to_vec()),
                shard: Default::default(),
            },
        )?;
        if loader.num_batches() == 0 {
            selfsup_core::bail!(
                "the labelled subset yields no batch ({} samples, batch size {batch_size})",
                rows.len()
            );
        }
        Ok(Box::new((0u64..).flat_map(move |epoch| {
            loader.epoch(epoch).map(move |b| {
                let labels = b
                    .labels
                    .iter()
                    .map(|l| l.expect("fine-tuning rows are labelled"))
                    .collect();
                (to_tensor(b.views, b.view_shapes[0], device), labels)
            })
        })))
    }

    fn forward(&self, encoder: &Backbone, batch: Tensor<4>) -> Tensor<2> {
        encoder.forward(batch)
    }
}
