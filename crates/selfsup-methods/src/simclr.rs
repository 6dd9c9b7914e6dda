//! SimCLR (Chen et al. 2020): a backbone and a projection head trained so that two augmented
//! views of one image land close together and views of other images far apart.
//!
//! The objective is NT-Xent (the paper's) or a triplet loss over the same two views.

use burn::prelude::*;
use selfsup_models::{MlpHead, MlpHeadConfig, ResNet, ResNetConfig};

use crate::loss::{TripletMining, nt_xent_loss, triplet_loss};

/// What pulls the two views together.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ContrastiveObjective {
    NtXent { temperature: f64 },
    Triplet { margin: f64, mining: TripletMining },
}

#[derive(Debug, Clone)]
pub struct SimClrConfig {
    pub backbone: ResNetConfig,
    /// Projection head widths after the backbone's output: hidden…, output.
    pub projection_dims: Vec<usize>,
    pub objective: ContrastiveObjective,
}

#[derive(Module, Debug)]
pub struct SimClr {
    pub backbone: ResNet,
    pub projector: MlpHead,
}

impl SimClrConfig {
    pub fn init(&self, device: &Device) -> SimClr {
        let backbone = self.backbone.init(device);
        let mut dims = vec![backbone.out_dim];
        dims.extend(&self.projection_dims);
        SimClr {
            backbone,
            projector: MlpHeadConfig::new(dims).init(device),
        }
    }
}

/// What one training step computed, besides the loss to differentiate.
pub struct StepOutput {
    pub loss: Tensor<1>,
    /// Projections of the two views (detached), for diagnostics.
    pub z_a: Tensor<2>,
    pub z_b: Tensor<2>,
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
    ) -> StepOutput {
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
        }
    }
}
