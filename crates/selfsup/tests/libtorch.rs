//! The LibTorch backend against flex, in builds with `--features tch` (`scripts/build_tch.sh
//! --test` runs it on this machine's CPU with the libtorch of PyPI's torch wheel): one SimCLR
//! training step (forward, NT-Xent, backward, SGD with momentum and weight decay) from the same
//! weights on the same views gives the same loss and the same updated weights, BatchNorm
//! statistics included, within 1e-4 relative (1e-6 absolute for tensors still below 1e-2), for
//! a ResNet-18 and a ViT.
#![cfg(feature = "tch")]
// burn 0.22 marks burn-tch deprecated (in favour of CubeCL backends that cannot build offline).
#![allow(deprecated)]

use std::collections::BTreeMap;

use burn::prelude::*;
use selfsup_methods::method::{ImageContext, ImageMethodConfig, Progress, SslMethod};
use selfsup_methods::optim::{GradientsParams, OptimizerConfig};
use selfsup_methods::simclr::SimClrConfig;
use selfsup_models::{
    BackboneConfig, NamedTensor, ResNetConfig, VitConfig, load_named_tensors, named_tensors,
};

type Tensors = BTreeMap<String, NamedTensor>;

/// One step on `device` from `weights` (the model's own initialisation when `None`): the loss,
/// the weights it started from, the weights after the optimizer step.
fn step(
    backbone: &BackboneConfig,
    device: &Device,
    weights: Option<&Tensors>,
    views: &[Vec<f32>],
    shape: [usize; 4],
) -> (f32, Tensors, Tensors) {
    let ad = device.clone().autodiff();
    ad.seed(0);
    let config = SimClrConfig {
        projection_dims: vec![32, 16],
        ..SimClrConfig::default()
    };
    let mut model = config.init(&ImageContext::new(backbone), &ad);
    if let Some(w) = weights {
        model = load_named_tensors(model, w, "").unwrap();
    }
    let start = named_tensors(&model);
    let views = views
        .iter()
        .map(|v| Tensor::<4>::from_data(TensorData::new(v.clone(), shape), &ad))
        .collect();
    let progress = Progress {
        step: 0,
        total_steps: 1,
        steps_per_epoch: 1,
        seed: 0,
    };
    let out = model.train_step(views, &progress);
    let loss = out.loss.clone().into_scalar::<f32>();
    let grads = GradientsParams::from_grads(out.loss.backward(), &model);
    let mut optim = OptimizerConfig::sgd_momentum(5e-4, true).init().unwrap();
    let model = optim.step(0.1, model, grads);
    (loss, start, named_tensors(&model))
}

fn views(shape: [usize; 4]) -> Vec<Vec<f32>> {
    let n: usize = shape.iter().product();
    (0..2)
        .map(|v| {
            (0..n)
                .map(|i| ((i * 7919 + v * 104729) % 1000) as f32 / 500.0 - 1.0)
                .collect()
        })
        .collect()
}

fn same_step(name: &str, backbone: BackboneConfig, side: usize) {
    let shape = [8, 3, side, side];
    let views = views(shape);
    let (flex_loss, start, flex) = step(&backbone, &Device::flex(), None, &views, shape);
    let (torch_loss, torch_start, torch) =
        step(&backbone, &Device::libtorch(), Some(&start), &views, shape);
    assert_eq!(
        start, torch_start,
        "{name}: both sides start from the same weights"
    );
    let rel = (flex_loss - torch_loss).abs() / flex_loss.abs();
    assert!(
        rel < 1e-4,
        "{name}: loss flex {flex_loss} vs libtorch {torch_loss}"
    );
    assert_eq!(flex.len(), torch.len());
    let mut changed = 0;
    for (key, a) in &flex {
        let b = &torch[key];
        // Relative to the tensor's largest value; a tensor still near zero after one step (a
        // LayerNorm shift, ~1e-7) is held to 1e-6 absolute instead.
        let scale = a.values.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-2);
        let diff = a
            .values
            .iter()
            .zip(&b.values)
            .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
        assert!(
            diff <= 1e-4 * scale,
            "{name}: {key} differs by {diff} (scale {scale})"
        );
        changed += usize::from(a.values != start[key].values);
    }
    assert!(
        changed > flex.len() / 2,
        "{name}: the step moved {changed} of {} tensors",
        flex.len()
    );
}

#[test]
fn simclr_step_on_libtorch_matches_flex_resnet18() {
    same_step("resnet18", ResNetConfig::new().with_width(8).into(), 16);
}

#[test]
fn simclr_step_on_libtorch_matches_flex_vit() {
    let vit = VitConfig::new()
        .with_image_size(16)
        .with_patch_size(4)
        .with_dim(32)
        .with_depth(2)
        .with_heads(2);
    same_step("vit", vit.into(), 16);
}

/// The device names: `libtorch` is its CPU; `cuda` runs on a GPU or says none is visible.
#[test]
fn device_names_are_checked() {
    use selfsup::selfsup_core::device::select;
    assert!(select("libtorch").is_ok());
    if let Err(e) = select("cuda") {
        let e = e.to_string();
        assert!(
            e.contains("LibTorch sees no CUDA GPU") && e.contains("`cuda`"),
            "{e}"
        );
    }
}
