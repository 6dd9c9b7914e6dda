//! Rotation prediction (Gidaris et al. 2018): the backbone sees each image at 0°, 90°, 180°
//! and 270°, and a linear classifier on its features names the rotation.

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use selfsup_models::Backbone;
use serde::{Deserialize, Serialize};

use crate::loss::{rotate_four_ways, rotation_loss};
use crate::method::{
    ImageContext, ImageMethodConfig, ImageViewKind, Progress, SslMethod, StepOutput, one_view,
};
use crate::registry::MethodSettings;

/// Rotation's `[method]` settings: none besides the name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RotationConfig {}

impl MethodSettings for RotationConfig {
    const NAME: &'static str = "rotation";
}

#[derive(Module, Debug)]
pub struct Rotation {
    pub backbone: Backbone,
    /// Backbone features → 4 rotation logits.
    pub head: Linear,
}

impl ImageMethodConfig for RotationConfig {
    type Model = Rotation;

    const VIEWS: ImageViewKind = ImageViewKind::OneView;

    fn init(&self, ctx: &ImageContext, device: &Device) -> Rotation {
        let backbone = ctx.backbone.init(device);
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
        let (z_a, z_b) = (
            features.clone().narrow(0, 0, n),
            features.narrow(0, 2 * n, n),
        );
        StepOutput::two_views(loss, z_a, z_b, ())
    }
}
