//! The compute device named by `train.device`: burn 0.22 picks the backend at run time from
//! the device, so one binary serves CPU and, when built with the features, GPU or libtorch.

use anyhow::{Result, bail};
use burn::prelude::*;

pub const DEVICES: &str = "cpu, vulkan (feature `gpu`), libtorch, libtorch-cuda (feature `tch`)";

pub fn select(name: &str) -> Result<Device> {
    match name {
        "cpu" | "flex" => Ok(Device::flex()),
        #[cfg(feature = "gpu")]
        "vulkan" | "gpu" => Ok(Device::vulkan(burn::tensor::DeviceKind::DefaultDevice)),
        #[cfg(feature = "tch")]
        "libtorch" => Ok(Device::libtorch()),
        #[cfg(feature = "tch")]
        "libtorch-cuda" => Ok(Device::libtorch_cuda(0usize)),
        #[cfg(not(feature = "gpu"))]
        "vulkan" | "gpu" => bail!("device `{name}` needs a build with `--features gpu`"),
        #[cfg(not(feature = "tch"))]
        "libtorch" | "libtorch-cuda" => {
            bail!("device `{name}` needs a build with `--features tch`")
        }
        other => bail!("config `train.device`: unknown device `{other}`; available: {DEVICES}"),
    }
}
