//! SimSiam (Chen & He 2021): BYOL without a momentum network; the stop-gradient on the target
//! branch alone prevents collapse.

use burn::prelude::*;
use selfsup_models::{Backbone, MlpHead, MlpHeadConfig};
use serde::{Deserialize, Serialize};

use crate::MethodError;
use crate::loss::negative_cosine_similarity;
use crate::method::{
    ImageContext, ImageMethodConfig, Progress, SslMethod, StepOutput, head_both, project_two_views,
};
use crate::registry::{MethodSettings, check_prediction_dims};

/// SimSiam's `[method]` settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimSiamConfig {
    /// Projection widths (hidden…, output), every Linear followed by BN (the last too) as
    /// SimSiamProjectionHead.
    pub projection_dims: Vec<usize>,
    /// Prediction head widths after the projection: bottleneck…, output = projection output.
    pub prediction_dims: Vec<usize>,
}

impl Default for SimSiamConfig {
    fn default() -> Self {
        Self {
            projection_dims: vec![512, 128],
            prediction_dims: vec![512, 128],
        }
    }
}

impl MethodSettings for SimSiamConfig {
    const NAME: &'static str = "simsiam";

    fn validate(&self) -> Result<(), MethodError> {
        check_prediction_dims(&self.projection_dims, &self.prediction_dims)?;
        Ok(())
    }
}

#[derive(Module, Debug)]
pub struct SimSiam {
    pub backbone: Backbone,
    pub projector: MlpHead,
    pub predictor: MlpHead,
}

impl ImageMethodConfig for SimSiamConfig {
    type Model = SimSiam;

    fn init(&self, ctx: &ImageContext, device: &Device) -> SimSiam {
        let backbone = ctx.backbone.init(device);
        let projector = MlpHeadConfig::on(backbone.out_dim(), &self.projection_dims);
        let projection_out = *self.projection_dims.last().expect("projection dims");
        SimSiam {
            backbone,
            projector: projector.with_last_batch_norm(true).init(device),
            predictor: MlpHeadConfig::on(projection_out, &self.prediction_dims).init(device),
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
        StepOutput::two_views(loss, z_a, z_b, ())
    }
}
