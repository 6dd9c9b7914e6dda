//! Rotation prediction (Gidaris et al. 2018): the backbone sees each image at 0°, 90°, 180°
//! and 270°, and a linear classifier on its features names the rotation.

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use selfsup_models::{Backbone, BackboneConfig};

use crate::loss::{rotate_four_ways, rotation_loss};
use crate::method::{Progress, SslMethod, StepOutput, one_view};

#[derive(Debug, Clone)]
pub struct RotationConfig {
    pub backbone: BackboneConfig,
}

#[derive(Module, Debug)]
pub struct Rotation {
    pub backbone: Backbone,
    /// Backbone features → 4 rotation logits.
    pub head: Linear,
}

impl RotationConfig {
    pub fn init(&self, device: &Device) -> Rotation {
        let backbone = self.backbone.init(device);
        Rotation {
            head: LinearConfig::new(backbone.out_dim(), 4).init(device),
            backbone,
        }
    }
}

impl SslMethod for Rotation {
    type Input = crate::method::ImageViews;
    type Update = ();
    type Backbone = Backbone;

    fn backbone(&self) -> &Backbone {
        &self.backbone
    }

    /// One view of N images; the four rotations go through the backbone as one batch of 4N.
    /// The diagnostics compare the 0° and 180° features of each image.
    fn train_step(&self, views: Vec<Tensor<4>>, _: &Progress) -> StepOutput<()> {
        let x = one_view("rotation", views);
        let n = x.dims()[0];
        let (rotated, labels) = rotate_four_ways(x);
        let features = self.backbone.forward(rotated);
        let loss = rotation_loss(self.head.forward(features.clone()), labels);
        StepOutput {
            loss,
            z_a: features.clone().narrow(0, 0, n).detach(),
            z_b: features.narrow(0, 2 * n, n).detach(),
            update: (),
        }
    }

    fn update(self, _: (), _: &Progress) -> Self {
        self
    }
}
