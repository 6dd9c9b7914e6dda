//! `selfsup export --format torchvision`: a checkpoint's backbone as a safetensors file that
//! torchvision's ResNet (CIFAR stem swapped in where the run used it, `fc = Identity`) loads with
//! `strict=True`; see scripts/check_torchvision_export.py for the loading recipe.
//!
//! burn's Conv2d weights are `[out, in, kh, kw]` like PyTorch's, so tensors are copied unchanged;
//! only names differ: BatchNorm `gamma`/`beta` are PyTorch's `weight`/`bias`, the shortcut's
//! `downsample.conv`/`downsample.bn` are the `Sequential` indices `downsample.0`/`downsample.1`,
//! and PyTorch's BatchNorm has an int64 `num_batches_tracked` buffer burn does not keep.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use safetensors::tensor::{Dtype, TensorView};
use selfsup_core::{Result, TaskSource, bail};
use selfsup_models::{NamedTensor, ResNet, named_tensors};
use serde_json::json;

use crate::{Image, ImageConfig};

/// torchvision's name for a tensor of selfsup's ResNet (`layer1.0.downsample.bn.gamma` →
/// `layer1.0.downsample.1.weight`).
pub fn torchvision_name(name: &str) -> String {
    let name = name
        .replace(".downsample.conv.", ".downsample.0.")
        .replace(".downsample.bn.", ".downsample.1.");
    if let Some(module) = name.strip_suffix(".gamma") {
        format!("{module}.weight")
    } else if let Some(module) = name.strip_suffix(".beta") {
        format!("{module}.bias")
    } else {
        name
    }
}

/// One tensor of the export: f32 values or PyTorch's int64 `num_batches_tracked` scalar.
#[derive(Debug, Clone, PartialEq)]
pub enum ExportTensor {
    F32(NamedTensor),
    I64Scalar(i64),
}

impl ExportTensor {
    pub fn shape(&self) -> Vec<usize> {
        match self {
            ExportTensor::F32(t) => t.shape.clone(),
            ExportTensor::I64Scalar(_) => Vec::new(),
        }
    }
}

/// The backbone's tensors under torchvision's names. `num_batches_tracked` is set to the
/// run's optimizer steps (PyTorch only reads it when BatchNorm momentum is None).
pub fn torchvision_tensors(
    backbone: &ResNet,
    num_batches_tracked: i64,
) -> BTreeMap<String, ExportTensor> {
    let mut out = BTreeMap::new();
    for (name, tensor) in named_tensors(backbone) {
        if let Some(bn) = name.strip_suffix(".running_var") {
            out.insert(
                torchvision_name(&format!("{bn}.num_batches_tracked")),
                ExportTensor::I64Scalar(num_batches_tracked),
            );
        }
        out.insert(torchvision_name(&name), ExportTensor::F32(tensor));
    }
    out
}

/// Metadata torchvision users need to rebuild and feed the network (all values are strings,
/// as safetensors requires; lists are JSON).
pub fn metadata(config: &ImageConfig, checkpoint: &Path, epoch: usize) -> HashMap<String, String> {
    let m = &config.modality.model;
    let json = |v: &[f32]| serde_json::to_string(v).expect("f32 list serialises");
    HashMap::from([
        ("format".into(), "torchvision".into()),
        ("architecture".into(), m.backbone.as_str().into()),
        ("width".into(), m.width.to_string()),
        ("stem".into(), m.stem.as_str().into()),
        ("input_size".into(), config.data.input_size.to_string()),
        ("normalize_mean".into(), json(&config.data.mean)),
        ("normalize_std".into(), json(&config.data.std)),
        ("method".into(), config.method_name().into()),
        // What the encoder was trained on: `lightness` (colorization) = R = G = B = L*/100
        // before the normalisation, not the colour image.
        ("input".into(), encoder_input_name(config).into()),
        ("epoch".into(), epoch.to_string()),
        ("source_checkpoint".into(), checkpoint.display().to_string()),
    ])
}

fn encoder_input_name(config: &ImageConfig) -> &'static str {
    match crate::data::encoder_input(config) {
        selfsup_data::EncoderInput::Rgb => "rgb",
        selfsup_data::EncoderInput::Lightness => "lightness",
    }
}

/// Writes `tensors` and `metadata` as one safetensors file (atomically).
pub fn write(
    out: &Path,
    tensors: &BTreeMap<String, ExportTensor>,
    metadata: HashMap<String, String>,
) -> Result<()> {
    if out.extension().and_then(|x| x.to_str()) != Some("safetensors") {
        bail!("--out {}: use a .safetensors file name", out.display());
    }
    let bytes: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(name, t)| {
            let (dtype, data) = match t {
                ExportTensor::F32(t) => (
                    Dtype::F32,
                    t.values.iter().flat_map(|v| v.to_le_bytes()).collect(),
                ),
                ExportTensor::I64Scalar(v) => (Dtype::I64, v.to_le_bytes().to_vec()),
            };
            (name.clone(), dtype, t.shape(), data)
        })
        .collect();
    let views = bytes
        .iter()
        .map(|(name, dtype, shape, data)| {
            Ok((name.clone(), TensorView::new(*dtype, shape.clone(), data)?))
        })
        .collect::<Result<Vec<_>>>()?;
    let serialized = safetensors::serialize(views, Some(metadata))?;
    selfsup_core::fs::write_atomic(out, &serialized)
}

/// `selfsup export`: the checkpoint's ResNet in torchvision's layout (`format` =
/// `torchvision`), written to `out`.
pub fn export(source: &TaskSource<Image>, format: &str, out: &Path) -> Result<serde_json::Value> {
    if format != "torchvision" {
        bail!("--format `{format}` is not supported: use torchvision");
    }
    let config = &source.config;
    let m = &config.modality.model;
    let device = selfsup_core::device::select("cpu")?;
    let backbone = crate::task::load_backbone(source, &device)?;
    let checkpoint = &source.checkpoint.path;
    let Some(resnet) = backbone.as_resnet() else {
        bail!(
            "checkpoint {} holds a {} encoder; --format torchvision exports ResNets only (torchvision has no matching ViT layout). Use `selfsup embed` for its features",
            checkpoint.display(),
            m.backbone.as_str()
        );
    };
    let state = &source.checkpoint.state;
    let tensors = torchvision_tensors(resnet, state.global_step as i64);
    write(out, &tensors, metadata(config, checkpoint, state.epoch))?;
    eprintln!(
        "wrote {} tensors of {} (width {}, {} stem) in torchvision layout to {}",
        tensors.len(),
        m.backbone.as_str(),
        m.width,
        m.stem.as_str(),
        out.display()
    );
    Ok(
        json!({"format": format, "out": out, "tensors": tensors.len(),
        "architecture": m.backbone.as_str(), "width": m.width, "stem": m.stem.as_str()}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::prelude::Device;
    use selfsup_models::{ResNetConfig, ResNetStem};

    /// `[name, shape, dtype]` rows of torchvision's state_dict, from
    /// fixtures/make_torchvision_names.py.
    fn torchvision_rows(arch: &str) -> Vec<(String, Vec<usize>, String)> {
        let text = include_str!("../fixtures/torchvision_state_dict_names.json");
        let v: serde_json::Value = serde_json::from_str(text).unwrap();
        serde_json::from_value(v[arch].clone()).unwrap()
    }

    fn check_against_torchvision(depth: usize, arch: &str) {
        let backbone = ResNetConfig::new()
            .with_depth(depth)
            .with_stem(ResNetStem::Cifar)
            .init(&Device::flex());
        let ours: Vec<(String, Vec<usize>, String)> = torchvision_tensors(&backbone, 7)
            .into_iter()
            .map(|(name, t)| {
                let dtype = match t {
                    ExportTensor::F32(_) => "float32",
                    ExportTensor::I64Scalar(_) => "int64",
                };
                let shape = t.shape();
                (name, shape, dtype.to_string())
            })
            .collect();
        let mut expected = torchvision_rows(arch);
        expected.sort();
        assert_eq!(ours.len(), expected.len(), "{arch}: tensor count");
        for (o, e) in ours.iter().zip(&expected) {
            assert_eq!(o, e, "{arch}");
        }
    }

    #[test]
    fn resnet18_export_matches_torchvision_state_dict() {
        check_against_torchvision(18, "resnet18");
    }

    #[test]
    fn resnet50_export_matches_torchvision_state_dict() {
        check_against_torchvision(50, "resnet50");
    }

    #[test]
    fn names_are_mapped() {
        assert_eq!(torchvision_name("bn1.gamma"), "bn1.weight");
        assert_eq!(
            torchvision_name("layer3.0.downsample.bn.beta"),
            "layer3.0.downsample.1.bias"
        );
        assert_eq!(
            torchvision_name("layer3.0.downsample.conv.weight"),
            "layer3.0.downsample.0.weight"
        );
        assert_eq!(
            torchvision_name("layer4.1.bn3.running_mean"),
            "layer4.1.bn3.running_mean"
        );
    }
}
