//! Barlow Twins (Zbontar et al. 2021): a backbone and projector trained so that the
//! cross-correlation of two views' embeddings approaches the identity.

use burn::prelude::*;
use selfsup_models::{Backbone, MlpHead, MlpHeadConfig};
use serde::{Deserialize, Serialize};

use crate::MethodError;
use crate::loss::barlow_twins_loss;
use crate::method::{
    ImageContext, ImageMethodConfig, Progress, SslMethod, StepOutput, global_batch,
    project_two_views,
};
use crate::registry::{MethodSettings, check_non_negative, check_widths};

/// Barlow Twins' `[method]` settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BarlowTwinsConfig {
    /// Projector widths (hidden…, output): Linear-BN-ReLU blocks then a plain Linear, as
    /// BarlowTwinsProjectionHead.
    pub projection_dims: Vec<usize>,
    /// Weight of the off-diagonal (redundancy-reduction) term; the paper's 5e-3.
    #[serde(rename = "barlow_lambda")]
    pub lambda: f64,
}

impl Default for BarlowTwinsConfig {
    fn default() -> Self {
        Self {
            projection_dims: vec![512, 128],
            lambda: 5e-3,
        }
    }
}

impl MethodSettings for BarlowTwinsConfig {
    const NAME: &'static str = "barlowtwins";

    fn validate(&self) -> Result<(), MethodError> {
        check_widths("projection_dims", &self.projection_dims)?;
        check_non_negative("barlow_lambda", self.lambda)
    }
}

#[derive(Module, Debug)]
pub struct BarlowTwins {
    pub backbone: Backbone,
    pub projector: MlpHead,
    #[module(skip)]
    pub lambda: f64,
}

impl ImageMethodConfig for BarlowTwinsConfig {
    type Model = BarlowTwins;

    fn init(&self, ctx: &ImageContext, device: &Device) -> BarlowTwins {
        let backbone = ctx.backbone.init(device);
        let projector = MlpHeadConfig::on(backbone.out_dim(), &self.projection_dims);
        BarlowTwins {
            backbone,
            projector: projector.init(device),
            lambda: self.lambda,
        }
    }
}

impl SslMethod for BarlowTwins {
    type Input = crate::method::ImageViews;
    type Backbone = Backbone;
    type Update = ();

    fn backbone(&self) -> &Backbone {
        &self.backbone
    }

    fn train_step(&self, views: Vec<Tensor<4>>, _: &Progress) -> StepOutput<()> {
        let (z_a, z_b) = project_two_views("Barlow Twins", &self.backbone, &self.projector, views);
        let (z_a, z_b) = (global_batch(z_a), global_batch(z_b));
        StepOutput::two_views(
            barlow_twins_loss(z_a.clone(), z_b.clone(), self.lambda),
            z_a,
            z_b,
            (),
        )
    }
}
