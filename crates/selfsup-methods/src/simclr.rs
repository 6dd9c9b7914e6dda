//! SimCLR (Chen et al. 2020): a backbone and a projection head trained so that two augmented
//! views of one image land close together and views of other images far apart.
//!
//! The objective is NT-Xent (the paper's) or a triplet loss over the same two views.

use burn::prelude::*;
use selfsup_models::{Backbone, BackboneConfig, MlpHead, MlpHeadConfig};

use crate::loss::{TripletMining, nt_xent_loss, triplet_loss};
use crate::method::{Progress, SslMethod, StepOutput, expect_views};

/// What pulls the two views together.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ContrastiveObjective {
    NtXent { temperature: f64 },
    Triplet { margin: f64, mining: TripletMining },
}

#[derive(Debug, Clone)]
pub struct SimClrConfig {
    pub backbone: BackboneConfig,
    /// Projection head widths after the backbone's output: hidden…, output.
    pub projection_dims: Vec<usize>,
    pub objective: ContrastiveObjective,
}

#[derive(Module, Debug)]
pub struct SimClr {
    pub backbone: Backbone,
    pub projector: MlpHead,
    #[module(skip)]
    pub objective: ContrastiveObjective,
}

impl SimClrConfig {
    pub fn init(&self, device: &Device) -> SimClr {
        let backbone = self.backbone.init(device);
        let mut dims = vec![backbone.out_dim()];
        dims.extend(&self.projection_dims);
        SimClr {
            backbone,
            projector: MlpHeadConfig::new(dims).init(device),
            objective: self.objective,
        }
    }
}

impl SimClr {
    /// Both views go through the network as one batch of 2N, so BatchNorm statistics are
    /// computed over all views (SimCLR's global BN) and each op runs on tensors twice as large.
    pub fn step(
        &self,
        view_a: Tensor<4>,
        view_b: Tensor<4>,
        objective: ContrastiveObjective,
        seed: u64,
    ) -> StepOutput<()> {
        let n = view_a.dims()[0];
        let z = self
            .projector
            .forward(self.backbone.forward(Tensor::cat(vec![view_a, view_b], 0)));
        let z_a = z.clone().narrow(0, 0, n);
        let z_b = z.narrow(0, n, n);
        let loss = match objective {
            ContrastiveObjective::NtXent { temperature } => {
                nt_xent_loss(z_a.clone(), z_b.clone(), temperature)
            }
            ContrastiveObjective::Triplet { margin, mining } => {
                triplet_loss(z_a.clone(), z_b.clone(), margin, mining, seed)
            }
        };
        StepOutput {
            loss,
            z_a: z_a.detach(),
            z_b: z_b.detach(),
            update: (),
        }
    }
}

impl SslMethod for SimClr {
    type Input = crate::method::ImageViews;
    type Backbone = Backbone;
    type Update = ();

    fn backbone(&self) -> &Backbone {
        &self.backbone
    }

    fn train_step(&self, views: Vec<Tensor<4>>, progress: &Progress) -> StepOutput<()> {
        expect_views("SimCLR", &views, 2);
        let [a, b]: [Tensor<4>; 2] = views.try_into().expect("two views");
        // Triplet mining draws from a per-step seed.
        let seed = progress.seed ^ (progress.step as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.step(a, b, self.objective, seed)
    }

    fn update(self, _: (), _: &Progress) -> Self {
        self
    }
}
