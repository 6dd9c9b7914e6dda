//! Barlow Twins (Zbontar et al. 2021): a backbone and projector trained so that the
//! cross-correlation of two views' embeddings approaches the identity.

use burn::prelude::*;
use selfsup_models::{Backbone, BackboneConfig, MlpHead, MlpHeadConfig};

use crate::loss::barlow_twins_loss;
use crate::method::{Progress, SslMethod, StepOutput, project_two_views};

#[derive(Debug, Clone)]
pub struct BarlowTwinsConfig {
    pub backbone: BackboneConfig,
    /// Projector widths (hidden…, output): Linear-BN-ReLU blocks then a plain Linear, as
    /// BarlowTwinsProjectionHead.
    pub projection_dims: Vec<usize>,
    /// Weight of the off-diagonal (redundancy-reduction) term; the paper's 5e-3.
    pub lambda: f64,
}

#[derive(Module, Debug)]
pub struct BarlowTwins {
    pub backbone: Backbone,
    pub projector: MlpHead,
    #[module(skip)]
    pub lambda: f64,
}

impl BarlowTwinsConfig {
    pub fn init(&self, device: &Device) -> BarlowTwins {
        let backbone = self.backbone.init(device);
        let mut dims = vec![backbone.out_dim()];
        dims.extend(&self.projection_dims);
        BarlowTwins {
            backbone,
            projector: MlpHeadConfig::new(dims).init(device),
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
        StepOutput {
            loss: barlow_twins_loss(z_a.clone(), z_b.clone(), self.lambda),
            z_a: z_a.detach(),
            z_b: z_b.detach(),
            update: (),
        }
    }

    fn update(self, _: (), _: &Progress) -> Self {
        self
    }
}
