//! Image pretraining: augmented views from the loader for the one training loop, kNN on the
//! encoder's embeddings of both splits as the per-epoch evaluation.

use std::path::PathBuf;

use burn::prelude::*;
use selfsup_core::bail;
use selfsup_core::downstream;
use selfsup_core::pretrain::{Figures, TrainData, knn_figures};
use selfsup_core::{PretrainSummary, Result, Run};
use selfsup_data::{LoaderConfig, Split, ViewLoader};
use selfsup_methods::method::{ImageMethodConfig, ImageMethodVisitor, ImageViews, SslMethod};
use selfsup_models::Backbone;

use crate::task::ImageTask;
use crate::{Image, ImageConfig, backbone_config, context, data, method_traits};

/// Augmented views from the loader; kNN on backbone features of both splits.
struct ImageData {
    config: ImageConfig,
    data_path: PathBuf,
    cache: PathBuf,
    images: usize,
    loader: ViewLoader,
}

impl<M: SslMethod<Input = ImageViews, Backbone = Backbone>> TrainData<M> for ImageData {
    fn samples(&self) -> usize {
        self.images
    }

    fn steps_per_epoch(&self) -> usize {
        self.loader.num_batches()
    }

    fn epoch<'a>(
        &'a self,
        epoch: usize,
        device: &'a Device,
    ) -> Box<dyn Iterator<Item = (ImageViews, usize)> + 'a> {
        Box::new(self.loader.epoch(epoch as u64).map(move |batch| {
            let n_views: usize = batch.view_shapes.iter().map(|s| s[0]).sum();
            let views = batch
                .views
                .into_iter()
                .zip(&batch.view_shapes)
                .map(|(v, shape)| Tensor::<4>::from_data(TensorData::new(v, *shape), device))
                .collect();
            (views, n_views)
        }))
    }

    fn sharded(&self) -> bool {
        true
    }

    fn evaluate(&self, model: &M) -> Result<Figures> {
        let c = &self.config;
        let open = |split| {
            data::open(
                &self.data_path,
                split,
                &self.cache,
                c.data.skip_corrupt,
                &c.data,
            )
        };
        let task = ImageTask::new(
            c.clone(),
            model.backbone().clone(),
            open(Split::Train)?,
            open(Split::Test)?,
            selfsup_core::device::select(&c.train.device)?,
        )?;
        Ok(knn_figures(downstream::epoch_knn(
            task,
            &c.eval,
            c.train.seed,
        )?))
    }
}

/// Builds the configured method and runs the loop on it.
struct Train<'a> {
    run: Run<Image>,
    data: &'a ImageData,
    ctx: selfsup_methods::method::ImageContext<'a>,
}

impl ImageMethodVisitor for Train<'_> {
    type Output = Result<PretrainSummary>;
    fn visit<C: ImageMethodConfig>(self, c: &C) -> Result<PretrainSummary> {
        let model = c.init(&self.ctx, &self.run.device);
        self.run.train(model, self.data)
    }
}

pub(crate) fn pretrain(mut run: Run<Image>) -> Result<PretrainSummary> {
    let config = run.config.clone();
    let data_path = config.data_path(run.base_dir());
    let cache = data::cache_dir(&config, Some(run.out()));
    let dataset = data::open(
        &data_path,
        Split::Train,
        &cache,
        config.data.skip_corrupt,
        &config.data,
    )?;
    let batch_size = config.train.batch_size;
    let images = if config.data.limit > 0 {
        config.data.limit.min(dataset.len())
    } else {
        dataset.len()
    };
    if images < batch_size {
        bail!(
            "the dataset {} has {images} training images, fewer than train.batch_size = {batch_size}",
            data_path.display()
        );
    }
    let pipelines = data::view_pipelines(&config, method_traits(&config.method).views)?;
    let loader = ViewLoader::new(
        dataset.clone(),
        pipelines,
        LoaderConfig {
            batch_size,
            shuffle: true,
            drop_last: true,
            seed: config.train.seed,
            num_workers: config.data.workers,
            prefetch: 4,
            subset: (config.data.limit > 0).then(|| (0..images).collect()),
            shard: selfsup_data::Shard {
                rank: selfsup_dist::world().rank(),
                world: selfsup_dist::world().world(),
            },
        },
    )?;
    run.skipped_corrupt = dataset.num_skipped();
    let backbone = backbone_config(&config)?;
    let data = ImageData {
        config: config.clone(),
        data_path,
        cache,
        images,
        loader,
    };
    let ctx = context(&config, &backbone, Some((&dataset, images)));
    config.method.visit(Train {
        run,
        data: &data,
        ctx,
    })
}
