//! The pretrained encoder of a checkpoint: what evaluation, fine-tuning, embedding and export
//! consume, whatever method trained it.
//!
//! Contract with every pretraining method: the online encoder's tensors are stored under
//! `model.backbone.*` and `Config::backbone_config` builds its architecture (ResNet or ViT).

use std::path::Path;

use anyhow::{Context, Result};
use selfsup_models::{Backbone, load_named_tensors};

use crate::checkpoint;
use crate::config::Config;
use crate::device;

/// The backbone and run config of a checkpoint. `device` overrides the config's `train.device`.
pub fn load_backbone(path: &Path, device: Option<&str>) -> Result<(Config, Backbone)> {
    let c = checkpoint::load(path)?;
    let mut config: Config = toml::from_str(&c.state.config)
        .with_context(|| format!("checkpoint {}: its config", path.display()))?;
    if config.is_audio() || config.is_text() {
        anyhow::bail!(
            "checkpoint {} is {} run (method `{}`): `finetune`, `prove` and `report` take it; `eval`, `embed` and `export` are for image encoders so far",
            path.display(),
            if config.is_audio() {
                "an audio"
            } else {
                "a text"
            },
            config.method.name
        );
    }
    if let Some(d) = device {
        config.train.device = d.to_string();
    }
    let dev = device::select(&config.train.device)?;
    let backbone = config.backbone_config()?.init(&dev);
    let backbone = load_named_tensors(backbone, &c.section("model"), "backbone.").map_err(|e| {
        anyhow::anyhow!(
            "checkpoint {} does not fit its backbone: {e}",
            path.display()
        )
    })?;
    Ok((config, backbone))
}

/// The same architecture at random initialisation (seeded by `train.seed`): the baseline.
pub fn random_init_backbone(config: &Config) -> Result<Backbone> {
    let dev = device::select(&config.train.device)?;
    dev.seed(config.train.seed);
    Ok(config.backbone_config()?.init(&dev))
}
