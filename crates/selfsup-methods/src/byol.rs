//! BYOL (Grill et al. 2020): an online network with a predictor regresses a momentum target
//! network's projection of the other view (negative cosine similarity, symmetrised).

use burn::prelude::*;
use selfsup_models::{Backbone, MlpHead, MlpHeadConfig};
use serde::{Deserialize, Serialize};

use crate::MethodError;
use crate::loss::negative_cosine_similarity;
use crate::method::{
    ImageContext, ImageMethodConfig, Progress, SslMethod, StepOutput, both_views, expect_views,
    head_both,
};
use crate::momentum::{cosine_momentum, ema_update, teacher_copy};
use crate::registry::{MethodSettings, check_momentum, check_prediction_dims};

/// BYOL's `[method]` settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ByolConfig {
    /// Projection head widths (hidden…, output), Linear-BN-ReLU-Linear as BYOLProjectionHead.
    pub projection_dims: Vec<usize>,
    /// Prediction head widths after the projection (hidden…, output = projection output).
    pub prediction_dims: Vec<usize>,
    /// EMA momentum of the target network: cosine schedule from start to end (BYOL: 0.996 → 1).
    #[serde(rename = "ema_momentum")]
    pub momentum: [f64; 2],
}

impl Default for ByolConfig {
    fn default() -> Self {
        Self {
            projection_dims: vec![512, 128],
            prediction_dims: vec![512, 128],
            momentum: [0.99, 1.0],
        }
    }
}

impl MethodSettings for ByolConfig {
    const NAME: &'static str = "byol";

    fn validate(&self) -> Result<(), MethodError> {
        check_prediction_dims(&self.projection_dims, &self.prediction_dims)?;
        check_momentum("ema_momentum", self.momentum)
    }
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

impl ImageMethodConfig for ByolConfig {
    type Model = Byol;

    fn init(&self, ctx: &ImageContext, device: &Device) -> Byol {
        let backbone = ctx.backbone.init(device);
        let head = MlpHeadConfig::on(backbone.out_dim(), &self.projection_dims);
        let projector = head.init(device);
        let projection_out = *self.projection_dims.last().expect("projection dims");
        Byol {
            teacher_backbone: teacher_copy(&backbone, ctx.backbone.init(device)),
            teacher_projector: teacher_copy(&projector, head.init(device)),
            backbone,
            projector,
            predictor: MlpHeadConfig::on(projection_out, &self.prediction_dims).init(device),
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
        StepOutput::two_views(loss, z_a, z_b, ())
    }

    fn update(mut self, _: (), progress: &Progress) -> Self {
        let [start, end] = self.momentum;
        let m = cosine_momentum(progress.step + 1, progress.total_steps, start, end);
        self.teacher_backbone = ema_update(self.teacher_backbone, &self.backbone, m);
        self.teacher_projector = ema_update(self.teacher_projector, &self.projector, m);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optim::{GradientsParams, OptimizerConfig};
    use burn::module::{ModuleVisitor, Param};
    use selfsup_models::{ResNetConfig, named_tensors};

    struct TrackedParams(usize);
    impl ModuleVisitor for TrackedParams {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            // `is_tracked`, not `is_require_grad`: the latter is true for leaves only, and a
            // tracked non-leaf value is what leaked.
            self.0 += param.val().is_tracked() as usize;
        }
    }

    /// The target network must stay out of autograd through the training loop's steps (train
    /// step, backward, optimizer, finite check, EMA): a tracked target value chains every step's
    /// graph to the next, and no backward pass ever frees it (BYOL and MoCo grew by ~700 MB per
    /// step at batch 256 until the EMA detached the teacher's value).
    #[test]
    fn target_network_stays_untracked_through_training_steps() {
        let device = Device::flex().autodiff();
        let backbone = selfsup_models::BackboneConfig::ResNet(ResNetConfig::new().with_width(4));
        let mut byol = ByolConfig {
            projection_dims: vec![8, 8],
            prediction_dims: vec![4, 8],
            momentum: [0.99, 1.0],
        }
        .init(&ImageContext::new(&backbone), &device);
        let mut optim = OptimizerConfig::sgd_momentum(5e-4, false).init().unwrap();
        let view = || {
            Tensor::<4>::random(
                [4, 3, 16, 16],
                burn::tensor::Distribution::Normal(0.0, 1.0),
                &device,
            )
        };
        for step in 0..3 {
            let progress = Progress {
                step,
                total_steps: 3,
                steps_per_epoch: 3,
                seed: 0,
            };
            let out = byol.train_step(vec![view(), view()], &progress);
            let grads = GradientsParams::from_grads(out.loss.backward(), &byol);
            byol = optim.step(0.1, byol, grads);
            let _ = named_tensors(&byol);
            byol = byol.update((), &progress);
            let mut t = TrackedParams(0);
            byol.teacher_backbone.visit(&mut t);
            byol.teacher_projector.visit(&mut t);
            assert_eq!(
                t.0, 0,
                "step {step}: target parameters are in the autodiff graph"
            );
            let mut s = TrackedParams(0);
            byol.backbone.visit(&mut s);
            assert!(s.0 > 0, "the online network trains");
            let target_out = byol.teacher_backbone.forward(view());
            assert!(
                !target_out.is_tracked(),
                "step {step}: the target's forward pass is tracked"
            );
        }
    }
}
