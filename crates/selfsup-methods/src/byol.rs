//! BYOL (Grill et al. 2020): an online network with a predictor regresses a momentum target
//! network's projection of the other view (negative cosine similarity, symmetrised).

use burn::prelude::*;
use selfsup_models::{Backbone, BackboneConfig, MlpHead, MlpHeadConfig};

use crate::loss::negative_cosine_similarity;
use crate::method::{Progress, SslMethod, StepOutput, both_views, expect_views, head_both};
use crate::momentum::{cosine_momentum, ema_update, teacher_copy};

#[derive(Debug, Clone)]
pub struct ByolConfig {
    pub backbone: BackboneConfig,
    /// Projection head widths (hidden…, output), Linear-BN-ReLU-Linear as BYOLProjectionHead.
    pub projection_dims: Vec<usize>,
    /// Prediction head widths after the projection (hidden…, output = projection output).
    pub prediction_dims: Vec<usize>,
    /// EMA momentum of the target network: cosine schedule from start to end (BYOL: 0.996 → 1).
    pub momentum: [f64; 2],
}

#[derive(Module, Debug)]
pub struct Byol {
    pub backbone: Backbone,
    pub projector: MlpHead,
    pub predictor: MlpHead,
    pub teacher_backbone: Backbone,
    pub teacher_projector: MlpHead,
    #[module(skip)]
    pub momentum: [f64; 2],
}

impl ByolConfig {
    pub fn init(&self, device: &Device) -> Byol {
        let backbone = self.backbone.init(device);
        let mut dims = vec![backbone.out_dim()];
        dims.extend(&self.projection_dims);
        let head = MlpHeadConfig::new(dims);
        let projector = head.init(device);
        let mut pred = vec![*self.projection_dims.last().expect("projection dims")];
        pred.extend(&self.prediction_dims);
        Byol {
            teacher_backbone: teacher_copy(&backbone, self.backbone.init(device)),
            teacher_projector: teacher_copy(&projector, head.init(device)),
            backbone,
            projector,
            predictor: MlpHeadConfig::new(pred).init(device),
            momentum: self.momentum,
        }
    }
}

impl SslMethod for Byol {
    type Input = crate::method::ImageViews;
    type Backbone = Backbone;
    type Update = ();

    fn backbone(&self) -> &Backbone {
        &self.backbone
    }

    fn train_step(&self, views: Vec<Tensor<4>>, _: &Progress) -> StepOutput<()> {
        expect_views("BYOL", &views, 2);
        let [a, b]: [Tensor<4>; 2] = views.try_into().expect("two views");
        let (z_a, z_b) = both_views(a.clone(), b.clone(), |x| {
            self.projector.forward(self.backbone.forward(x))
        });
        let (p_a, p_b) = head_both(&self.predictor, z_a.clone(), z_b.clone());
        let (t_a, t_b) = both_views(a, b, |x| {
            self.teacher_projector
                .forward(self.teacher_backbone.forward(x))
                .detach()
        });
        let loss = (negative_cosine_similarity(p_a, t_b) + negative_cosine_similarity(p_b, t_a))
            .mul_scalar(0.5);
        StepOutput {
            loss,
            z_a: z_a.detach(),
            z_b: z_b.detach(),
            update: (),
        }
    }

    fn update(mut self, _: (), progress: &Progress) -> Self {
        let [start, end] = self.momentum;
        let m = cosine_momentum(progress.step + 1, progress.total_steps, start, end);
        self.teacher_backbone = ema_update(self.teacher_backbone, &self.backbone, m);
        self.teacher_projector = ema_update(self.teacher_projector, &self.projector, m);
        self
    }
}
