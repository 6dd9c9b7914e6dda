//! MoCo v2 (Chen et al. 2020): a query encoder trained with InfoNCE against keys from a momentum
//! encoder, with negatives from a queue of earlier keys. Symmetrised as in LightlySSL's CIFAR-10
//! benchmark (both views serve as query and as key); the keys of both views are enqueued.

use burn::module::{Param, ParamId};
use burn::prelude::*;
use selfsup_models::{Backbone, MlpHead, MlpHeadConfig};
use serde::{Deserialize, Serialize};

use crate::MethodError;
use crate::loss::{enqueue, info_nce_queue_loss, random_queue};
use crate::method::{
    ImageContext, ImageMethodConfig, Progress, SslMethod, StepOutput, both_views, expect_views,
};
use crate::momentum::{cosine_momentum, ema_update, teacher_copy};
use crate::registry::{MethodSettings, check_momentum, check_positive, check_widths};

/// MoCo's `[method]` settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MocoConfig {
    /// Projection head widths after the backbone (hidden…, output); no BatchNorm (MoCo v2).
    pub projection_dims: Vec<usize>,
    /// InfoNCE temperature.
    pub temperature: f64,
    /// Keys in the queue of negatives.
    pub queue_size: usize,
    /// EMA momentum of the key encoder, start and end of a cosine schedule (MoCo: fixed 0.99).
    #[serde(rename = "ema_momentum")]
    pub momentum: [f64; 2],
}

impl Default for MocoConfig {
    fn default() -> Self {
        Self {
            projection_dims: vec![512, 128],
            temperature: 0.5,
            queue_size: 4096,
            momentum: [0.99, 1.0],
        }
    }
}

impl MethodSettings for MocoConfig {
    const NAME: &'static str = "moco";

    fn validate(&self) -> Result<(), MethodError> {
        check_widths("projection_dims", &self.projection_dims)?;
        check_positive("temperature", self.temperature)?;
        check_momentum("ema_momentum", self.momentum)
    }
}

#[derive(Debug, Clone, Copy)]
pub struct MocoParams {
    pub temperature: f64,
    pub momentum: [f64; 2],
}

#[derive(Module, Debug)]
pub struct Moco {
    pub backbone: Backbone,
    pub projector: MlpHead,
    pub teacher_backbone: Backbone,
    pub teacher_projector: MlpHead,
    /// `[K, D]` L2-normalised keys, newest first.
    pub queue: Param<Tensor<2>>,
    #[module(skip)]
    pub params: MocoParams,
}

impl ImageMethodConfig for MocoConfig {
    type Model = Moco;

    fn check(&self, ctx: &ImageContext) -> Result<(), MethodError> {
        if self.queue_size < 2 * ctx.batch_size {
            return Err(MethodError::setting(
                "queue_size",
                format!(
                    "must hold at least the keys of one step (2 × train.batch_size = {}), got {}",
                    2 * ctx.batch_size,
                    self.queue_size
                ),
            ));
        }
        Ok(())
    }

    fn init(&self, ctx: &ImageContext, device: &Device) -> Moco {
        let backbone = ctx.backbone.init(device);
        let head =
            MlpHeadConfig::on(backbone.out_dim(), &self.projection_dims).with_batch_norm(false);
        let projector = head.init(device);
        let teacher_backbone = teacher_copy(&backbone, ctx.backbone.init(device));
        let teacher_projector = teacher_copy(&projector, head.init(device));
        let dim = *self.projection_dims.last().expect("projection dims");
        Moco {
            backbone,
            projector,
            teacher_backbone,
            teacher_projector,
            queue: Param::initialized(ParamId::new(), random_queue(self.queue_size, dim, device)),
            params: MocoParams {
                temperature: self.temperature,
                momentum: self.momentum,
            },
        }
    }
}

impl SslMethod for Moco {
    type Input = crate::method::ImageViews;
    type Backbone = Backbone;
    /// The keys of both views, to enqueue.
    type Update = Tensor<2>;

    fn backbone(&self) -> &Backbone {
        &self.backbone
    }

    fn train_step(&self, views: Vec<Tensor<4>>, _: &Progress) -> StepOutput<Tensor<2>> {
        expect_views("MoCo", &views, 2);
        let [a, b]: [Tensor<4>; 2] = views.try_into().expect("two views");
        let (q_a, q_b) = both_views(a.clone(), b.clone(), |x| {
            self.projector.forward(self.backbone.forward(x))
        });
        let (k_a, k_b) = both_views(a, b, |x| {
            self.teacher_projector
                .forward(self.teacher_backbone.forward(x))
                .detach()
        });
        let [q_a, q_b, k_a, k_b] = [q_a, q_b, k_a, k_b].map(crate::method::global_batch);
        let queue = self.queue.val();
        let t = self.params.temperature;
        let loss = (info_nce_queue_loss(q_a.clone(), k_b.clone(), queue.clone(), t)
            + info_nce_queue_loss(q_b.clone(), k_a.clone(), queue, t))
        .mul_scalar(0.5);
        StepOutput::two_views(loss, q_a, q_b, Tensor::cat(vec![k_b, k_a], 0))
    }

    fn update(mut self, keys: Tensor<2>, progress: &Progress) -> Self {
        let [start, end] = self.params.momentum;
        let m = cosine_momentum(progress.step + 1, progress.total_steps, start, end);
        self.teacher_backbone = ema_update(self.teacher_backbone, &self.backbone, m);
        self.teacher_projector = ema_update(self.teacher_projector, &self.projector, m);
        let (id, queue, mapper) = self.queue.consume();
        self.queue = Param::from_mapped_value(id, enqueue(queue, keys), mapper);
        self
    }
}
