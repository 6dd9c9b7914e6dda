//! VICReg (Bardes et al. 2022): invariance between two views' embeddings, variance kept above
//! a floor per dimension, covariance between dimensions pushed to zero.

use burn::prelude::*;
use selfsup_models::{Backbone, MlpHead, MlpHeadConfig};
use serde::{Deserialize, Serialize};

use crate::MethodError;
use crate::loss::{VicRegWeights, vicreg_loss};
use crate::method::{
    ImageContext, ImageMethodConfig, Progress, SslMethod, StepOutput, global_batch,
    project_two_views,
};
use crate::registry::{MethodSettings, check_widths};

/// VICReg's `[method]` settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VicRegConfig {
    /// Expander widths (hidden…, output): Linear-BN-ReLU blocks then a plain Linear.
    pub projection_dims: Vec<usize>,
    /// Weights of the invariance, variance and covariance terms (the paper's 25, 25, 1).
    #[serde(rename = "vicreg_weights")]
    pub weights: [f64; 3],
}

impl Default for VicRegConfig {
    fn default() -> Self {
        Self {
            projection_dims: vec![512, 128],
            weights: [25.0, 25.0, 1.0],
        }
    }
}

impl VicRegConfig {
    /// The loss weights, with VICReg's variance floor ε = 1e-4.
    pub fn loss_weights(&self) -> VicRegWeights {
        let [invariance, variance, covariance] = self.weights;
        VicRegWeights {
            invariance,
            variance,
            covariance,
            eps: 1e-4,
        }
    }
}

impl MethodSettings for VicRegConfig {
    const NAME: &'static str = "vicreg";

    fn validate(&self) -> Result<(), MethodError> {
        check_widths("projection_dims", &self.projection_dims)?;
        if self.weights.iter().any(|w| !(w.is_finite() && *w >= 0.0)) {
            return Err(MethodError::setting(
                "vicreg_weights",
                format!("must all be ≥ 0, got {:?}", self.weights),
            ));
        }
        Ok(())
    }
}

#[derive(Module, Debug)]
pub struct VicReg {
    pub backbone: Backbone,
    pub projector: MlpHead,
    #[module(skip)]
    pub weights: VicRegWeights,
}

impl ImageMethodConfig for VicRegConfig {
    type Model = VicReg;

    fn init(&self, ctx: &ImageContext, device: &Device) -> VicReg {
        let backbone = ctx.backbone.init(device);
        let projector = MlpHeadConfig::on(backbone.out_dim(), &self.projection_dims);
        VicReg {
            backbone,
            projector: projector.init(device),
            weights: self.loss_weights(),
        }
    }
}

impl SslMethod for VicReg {
    type Input = crate::method::ImageViews;
    type Backbone = Backbone;
    type Update = ();

    fn backbone(&self) -> &Backbone {
        &self.backbone
    }

    fn train_step(&self, views: Vec<Tensor<4>>, _: &Progress) -> StepOutput<()> {
        let (z_a, z_b) = project_two_views("VICReg", &self.backbone, &self.projector, views);
        let (z_a, z_b) = (global_batch(z_a), global_batch(z_b));
        StepOutput::two_views(
            vicreg_loss(z_a.clone(), z_b.clone(), &self.weights),
            z_a,
            z_b,
            (),
        )
    }
}
