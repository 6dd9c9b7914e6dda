//! The compute device named by `train.device`: burn 0.22 picks the backend at run time from
//! the device, so one binary serves CPU and, when built with the features, GPU or libtorch.

use crate::bail;
use crate::error::Result;
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

/// `train.deterministic`: run the CPU backend's compute on a single rayon thread. burn-flex
/// and gemm split reductions (large sums, matmul blocks) by the number of threads and by
/// rayon's work stealing, and float addition is not associative, so with several threads the
/// same run can round differently; with one every sum has a fixed order. Must be called before
/// any parallel compute (rayon's global pool is built once per process).
pub fn use_deterministic_compute() -> Result<()> {
    if let Err(e) = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build_global()
    {
        if rayon::current_num_threads() != 1 {
            bail!(
                "train.deterministic: cannot make compute single-threaded ({e}); the thread pool was already started"
            );
        }
    }
    Ok(())
}
