//! SimSiam (Chen & He 2021): BYOL without a momentum network; the stop-gradient on the target
//! branch alone prevents collapse.

use burn::prelude::*;
use selfsup_models::{Backbone, BackboneConfig, MlpHead, MlpHeadConfig};

use crate::loss::negative_cosine_similarity;
use crate::method::{Progress, SslMethod, StepOutput, head_both, project_two_views};

#[derive(Debug, Clone)]
pub struct SimSiamConfig {
    pub backbone: BackboneConfig,
    /// Projection widths (hidden…, output), every Linear followed by BN (the last too) as
    /// SimSiamProjectionHead.
    pub projection_dims: Vec<usize>,
    /// Prediction head widths after the projection: bottleneck…, output = projection output.
    pub prediction_dims: Vec<usize>,
}

#[derive(Module, Debug)]
pub struct SimSiam {
    pub backbone: Backbone,
    pub projector: MlpHead,
    pub predictor: MlpHead,
}

impl SimSiamConfig {
    pub fn init(&self, device: &Device) -> SimSiam {
        let backbone = self.backbone.init(device);
        let mut dims = vec![backbone.out_dim()];
        dims.extend(&self.projection_dims);
        let mut pred = vec![*self.projection_dims.last().expect("projection dims")];
        pred.extend(&self.prediction_dims);
        SimSiam {
            backbone,
            projector: MlpHeadConfig::new(dims)
                .with_last_batch_norm(true)
                .init(device),
            predictor: MlpHeadConfig::new(pred).init(device),
        }
    }
}

impl SslMethod for SimSiam {
    type Input = crate::method::ImageViews;
    type Backbone = Backbone;
    type Update = ();

    fn backbone(&self) -> &Backbone {
        &self.backbone
    }

    fn train_step(&self, views: Vec<Tensor<4>>, _: &Progress) -> StepOutput<()> {
        let (z_a, z_b) = project_two_views("SimSiam", &self.backbone, &self.projector, views);
        let (p_a, p_b) = head_both(&self.predictor, z_a.clone(), z_b.clone());
        let loss = (negative_cosine_similarity(p_a, z_b.clone().detach())
            + negative_cosine_similarity(p_b, z_a.clone().detach()))
        .mul_scalar(0.5);
        StepOutput {
            loss,
            z_a: z_a.detach(),
            z_b: z_b.detach(),
            update: (),
        }
    }

    fn update(self, _: (), _: &Progress) -> Self {
        self
    }
}
