//! The encoder every consumer uses, whatever its architecture: pretraining methods, kNN and
//! linear evaluation, fine-tuning, embedding. Tensor paths skip the variant
//! ([`crate::named::is_variant_segment`]), so a ResNet's tensors keep the names they had
//! before ViTs existed.

use burn::prelude::*;

use crate::{ResNet, ResNetConfig, Vit, VitConfig};

#[derive(Module, Debug)]
pub enum Backbone {
    ResNet(ResNet),
    Vit(Vit),
}

impl Backbone {
    /// `[batch, C, H, W]` images → `[batch, out_dim]` features.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        match self {
            Backbone::ResNet(m) => m.forward(x),
            Backbone::Vit(m) => m.forward(x),
        }
    }

    pub fn out_dim(&self) -> usize {
        match self {
            Backbone::ResNet(m) => m.out_dim,
            Backbone::Vit(m) => m.dim,
        }
    }

    pub fn as_resnet(&self) -> Option<&ResNet> {
        match self {
            Backbone::ResNet(m) => Some(m),
            Backbone::Vit(_) => None,
        }
    }

    pub fn as_vit(&self) -> Option<&Vit> {
        match self {
            Backbone::Vit(m) => Some(m),
            Backbone::ResNet(_) => None,
        }
    }
}

/// The architecture of a [`Backbone`].
#[derive(Debug, Clone)]
pub enum BackboneConfig {
    ResNet(ResNetConfig),
    Vit(VitConfig),
}

impl BackboneConfig {
    pub fn validate(&self) -> Result<(), crate::ModelError> {
        match self {
            BackboneConfig::ResNet(c) => c.validate(),
            BackboneConfig::Vit(c) => c.validate(),
        }
    }

    pub fn out_dim(&self) -> usize {
        match self {
            BackboneConfig::ResNet(c) => c.out_dim(),
            BackboneConfig::Vit(c) => c.dim,
        }
    }

    pub fn init(&self, device: &Device) -> Backbone {
        match self {
            BackboneConfig::ResNet(c) => Backbone::ResNet(c.init(device)),
            BackboneConfig::Vit(c) => Backbone::Vit(c.init(device)),
        }
    }
}

impl From<ResNetConfig> for BackboneConfig {
    fn from(c: ResNetConfig) -> Self {
        BackboneConfig::ResNet(c)
    }
}

impl From<VitConfig> for BackboneConfig {
    fn from(c: VitConfig) -> Self {
        BackboneConfig::Vit(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{load_named_tensors, named_tensors};

    #[test]
    fn resnet_paths_do_not_name_the_variant() {
        let device = Device::flex();
        let config = ResNetConfig::new().with_width(4);
        let plain = named_tensors(&config.init(&device));
        let wrapped = BackboneConfig::from(config).init(&device);
        let names = named_tensors(&wrapped);
        assert_eq!(
            names.keys().collect::<Vec<_>>(),
            plain.keys().collect::<Vec<_>>()
        );
        // A plain ResNet's tensors load into the enum and give the same features.
        let restored = load_named_tensors(
            BackboneConfig::from(ResNetConfig::new().with_width(4)).init(&device),
            &names,
            "",
        )
        .unwrap();
        assert_eq!(named_tensors(&restored), names);
        let vit = BackboneConfig::from(
            VitConfig::new()
                .with_image_size(8)
                .with_dim(8)
                .with_heads(2)
                .with_depth(1),
        )
        .init(&device);
        let vit_names = named_tensors(&vit);
        assert!(
            vit_names.contains_key("patch_embed.weight"),
            "{:?}",
            vit_names.keys()
        );
        assert!(
            vit_names.contains_key("blocks.layers.0.mha.query.weight"),
            "{:?}",
            vit_names.keys()
        );
        let err = load_named_tensors(vit, &names, "").unwrap_err().to_string();
        assert!(err.contains("missing tensor `patch_embed.weight`"), "{err}");
    }
}
