//! Self-supervised methods for images, their losses and optimizers, and the registry every
//! modality's methods use ([`registry`], [`method_set!`]).

pub mod ab_bins;
pub mod barlow_twins;
pub mod byol;
pub mod colorization;
pub mod dino;
mod error;
pub mod finetune;
pub mod loss;
pub mod mae;
pub mod method;
pub mod moco;
pub mod momentum;
pub mod registry;
pub mod rotation;
pub mod simclr;
pub mod simsiam;
pub mod vicreg;

pub use error::MethodError;
/// The optimizers and learning-rate schedule, which live in the bottom-layer crate
/// `selfsup-optim` (shared with selfsup-eval's linear probe).
pub use selfsup_optim as optim;

/// docs/adding-a-method.md, whose code blocks run as this crate's doctests.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/adding-a-method.md")]
pub struct AddingAMethod;
use method::ImageMethodVisitor;

method_set! {
    /// The image methods: `method.name` and the settings of each.
    pub enum ImageMethod: ImageMethodVisitor {
        SimClr(simclr::SimClrConfig),
        Moco(moco::MocoConfig),
        Byol(byol::ByolConfig),
        SimSiam(simsiam::SimSiamConfig),
        BarlowTwins(barlow_twins::BarlowTwinsConfig),
        VicReg(vicreg::VicRegConfig),
        Dino(dino::DinoConfig),
        Rotation(rotation::RotationConfig),
        Mae(mae::MaeConfig),
        Colorization(colorization::ColorizationConfig),
    }
}

#[cfg(test)]
mod tests {
    use burn::nn::{Linear, LinearConfig};
    use burn::prelude::*;

    use crate::optim::{GradientsParams, OptimizerConfig};

    #[derive(Module, Debug)]
    enum Head {
        Wide(Linear),
        Narrow(Linear),
    }

    #[derive(Module, Debug)]
    struct Net {
        head: Head,
        out: Linear,
    }

    /// selfsup-optim keys its state by module path, skipping enum variants with its own copy
    /// of selfsup-models' rule (the bottom-layer crate cannot depend on selfsup-models): the
    /// keys must be the tensor names checkpoints use.
    #[test]
    fn optimizer_state_keys_are_checkpoint_paths() {
        let device = Device::flex().autodiff();
        for head in [
            Head::Wide(LinearConfig::new(3, 4).init(&device)),
            Head::Narrow(LinearConfig::new(3, 2).init(&device)),
        ] {
            let width = match &head {
                Head::Wide(_) => 4,
                Head::Narrow(_) => 2,
            };
            let net = Net {
                head,
                out: LinearConfig::new(width, 1).init(&device),
            };
            let names: Vec<String> = selfsup_models::named::named_tensors(&net)
                .into_keys()
                .collect();
            let x = Tensor::<2>::ones([5, 3], &device);
            let hidden = match &net.head {
                Head::Wide(l) | Head::Narrow(l) => l.forward(x),
            };
            let grads = GradientsParams::from_grads(net.out.forward(hidden).sum().backward(), &net);
            let mut optim = OptimizerConfig::sgd_momentum(0.0, false).init().unwrap();
            let _ = optim.step(0.1, net, grads);
            let mut keys: Vec<String> = optim
                .state_dict()
                .into_keys()
                .filter_map(|k| k.strip_suffix(".step").map(str::to_string))
                .collect();
            keys.sort();
            assert_eq!(keys, names);
            assert_eq!(
                names,
                ["head.bias", "head.weight", "out.bias", "out.weight"]
            );
        }
    }
}
