//! VICReg (Bardes et al. 2022): invariance between two views' embeddings, variance kept above
//! a floor per dimension, covariance between dimensions pushed to zero.

use burn::prelude::*;
use selfsup_models::{Backbone, BackboneConfig, MlpHead, MlpHeadConfig};

use crate::loss::{VicRegWeights, vicreg_loss};
use crate::method::{Progress, SslMethod, StepOutput, project_two_views};

#[derive(Debug, Clone)]
pub struct VicRegConfig {
    pub backbone: BackboneConfig,
    /// Expander widths (hidden…, output): Linear-BN-ReLU blocks then a plain Linear.
    pub projection_dims: Vec<usize>,
    pub weights: VicRegWeights,
}

#[derive(Module, Debug)]
pub struct VicReg {
    pub backbone: Backbone,
    pub projector: MlpHead,
    #[module(skip)]
    pub weights: VicRegWeights,
}

impl VicRegConfig {
    pub fn init(&self, device: &Device) -> VicReg {
        let backbone = self.backbone.init(device);
        let mut dims = vec![backbone.out_dim()];
        dims.extend(&self.projection_dims);
        VicReg {
            backbone,
            projector: MlpHeadConfig::new(dims).init(device),
            weights: self.weights,
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
        StepOutput {
            loss: vicreg_loss(z_a.clone(), z_b.clone(), &self.weights),
            z_a: z_a.detach(),
            z_b: z_b.detach(),
            update: (),
        }
    }

    fn update(self, _: (), _: &Progress) -> Self {
        self
    }
}
