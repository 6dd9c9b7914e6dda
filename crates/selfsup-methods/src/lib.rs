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
pub mod optim;
pub mod registry;
pub mod rotation;
pub mod simclr;
pub mod simsiam;
pub mod vicreg;

pub use error::MethodError;
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
