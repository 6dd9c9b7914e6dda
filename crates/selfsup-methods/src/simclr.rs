//! SimCLR (Chen et al. 2020): a backbone and a projection head trained so that two augmented
//! views of one image land close together and views of other images far apart.
//!
//! The objective is NT-Xent (the paper's) or a triplet loss over the same two views.

use burn::prelude::*;
use selfsup_models::{Backbone, MlpHead, MlpHeadConfig};
use serde::{Deserialize, Serialize};

use crate::MethodError;
use crate::loss::{TripletMining, nt_xent_loss, triplet_loss};
use crate::method::{
    ImageContext, ImageMethodConfig, Progress, SslMethod, StepOutput, expect_views,
};
use crate::registry::MethodSettings;

/// What pulls the two views together.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ContrastiveObjective {
    NtXent { temperature: f64 },
    Triplet { margin: f64, mining: TripletMining },
}

/// `method.loss`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SimClrLoss {
    /// NT-Xent (InfoNCE over the 2N views), the paper's.
    NtXent,
    /// Triplet margin loss: the other view is the positive, a mined in-batch view the negative.
    Triplet,
}

/// SimCLR's `[method]` settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimClrConfig {
    pub loss: SimClrLoss,
    /// NT-Xent temperature.
    pub temperature: f64,
    /// Projection head widths after the backbone's output: hidden…, output.
    pub projection_dims: Vec<usize>,
    /// Triplet loss: the margin…
    pub triplet_margin: f64,
    /// …and the negative: `hardest` or `random`.
    pub triplet_mining: TripletMining,
}

impl Default for SimClrConfig {
    /// The reference recipe's: NT-Xent at T = 0.5, a 512-128 projection.
    fn default() -> Self {
        Self {
            loss: SimClrLoss::NtXent,
            temperature: 0.5,
            projection_dims: vec![512, 128],
            triplet_margin: 0.2,
            triplet_mining: TripletMining::Hardest,
        }
    }
}

impl SimClrConfig {
    pub fn objective(&self) -> ContrastiveObjective {
        match self.loss {
            SimClrLoss::NtXent => ContrastiveObjective::NtXent {
                temperature: self.temperature,
            },
            SimClrLoss::Triplet => ContrastiveObjective::Triplet {
                margin: self.triplet_margin,
                mining: self.triplet_mining,
            },
        }
    }
}

impl MethodSettings for SimClrConfig {
    const NAME: &'static str = "simclr";

    fn validate(&self) -> Result<(), MethodError> {
        crate::registry::check_positive("temperature", self.temperature)?;
        crate::registry::check_widths("projection_dims", &self.projection_dims)?;
        crate::registry::check_non_negative("triplet_margin", self.triplet_margin)
    }
}

impl ImageMethodConfig for SimClrConfig {
    type Model = SimClr;

    fn init(&self, ctx: &ImageContext, device: &Device) -> SimClr {
        let backbone = ctx.backbone.init(device);
        let projector = MlpHeadConfig::on(backbone.out_dim(), &self.projection_dims);
        SimClr {
            backbone,
            projector: projector.init(device),
            objective: self.objective(),
        }
    }
}

#[derive(Module, Debug)]
pub struct SimClr {
    pub backbone: Backbone,
    pub projector: MlpHead,
    #[module(skip)]
    pub objective: ContrastiveObjective,
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
        let z_a = crate::method::global_batch(z.clone().narrow(0, 0, n));
        let z_b = crate::method::global_batch(z.narrow(0, n, n));
        let loss = match objective {
            ContrastiveObjective::NtXent { temperature } => {
                nt_xent_loss(z_a.clone(), z_b.clone(), temperature)
            }
            ContrastiveObjective::Triplet { margin, mining } => {
                triplet_loss(z_a.clone(), z_b.clone(), margin, mining, seed)
            }
        };
        StepOutput::two_views(loss, z_a, z_b, ())
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
}
