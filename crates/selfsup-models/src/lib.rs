//! Backbones and heads for selfsup.
//!
//! - [`resnet`]: ResNet-18/34/50 with the CIFAR stem (3×3 conv, no max-pool) or the ImageNet
//!   stem (7×7 stride-2 conv + max-pool), and a width multiplier (`width` = channels of the
//!   first stage; 64 is torchvision's).
//! - [`vit`]: Vision Transformer (patch embedding, sin-cos or learned positions, pre-norm
//!   blocks, [CLS] or mean pooling), with the pieces MAE needs.
//! - [`backbone`]: [`Backbone`], either of the two, which every consumer uses.
//! - [`transformer`]: the size checks the text and audio Transformer encoders share.
//! - [`heads`]: MLP projection / prediction heads (Linear-BN-ReLU-…-Linear), as LightlySSL's
//!   `ProjectionHead` family.
//!
//! Every model maps `[batch, 3, H, W]` images to `[batch, dim]` features.

pub mod backbone;
mod error;
pub mod heads;
pub mod named;
pub mod norm;
pub mod pool;
pub mod resnet;
pub mod transformer;
pub mod vit;

pub use backbone::{Backbone, BackboneConfig};
pub use error::ModelError;
pub use heads::{MlpHead, MlpHeadConfig};
pub use named::{NamedTensor, load_named_tensors, named_tensors};
pub use norm::{SyncBatchNorm, set_sync_batch_norm};
pub use pool::{last_pool, mean_pool};
pub use resnet::{ResNet, ResNetConfig, ResNetStem};
pub use transformer::validate_encoder_sizes;
pub use vit::{Vit, VitConfig, VitPooling, VitPositions};
