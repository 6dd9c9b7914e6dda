//! The compute device named by `train.device`: burn 0.22 picks the backend at run time from
//! the device, so one binary serves CPU and, when built with the features, GPU or libtorch.

use crate::bail;
use crate::error::Result;
use burn::prelude::*;

pub const DEVICES: &str = "cpu, vulkan (feature `gpu`), libtorch (its CPU), cuda (LibTorch on the first GPU, or on GPU `local rank` when the launcher started several processes on the machine; feature `tch`)";

// burn 0.22 marks burn-tch deprecated in favour of CubeCL's CUDA backend, which cannot build
// offline (it downloads LLVM at build time); LibTorch is the GPU path that builds here.
#[cfg_attr(feature = "tch", allow(deprecated))]
pub fn select(name: &str) -> Result<Device> {
    match name {
        "cpu" | "flex" => Ok(Device::flex()),
        #[cfg(feature = "gpu")]
        "vulkan" | "gpu" => Ok(Device::vulkan(burn::tensor::DeviceKind::DefaultDevice)),
        #[cfg(feature = "tch")]
        "libtorch" => Ok(Device::libtorch()),
        #[cfg(feature = "tch")]
        "cuda" | "libtorch-cuda" => {
            if !tch::Cuda::is_available() {
                bail!(
                    "device `{name}`: LibTorch sees no CUDA GPU (no driver, no GPU, or a CPU-only libtorch on LD_LIBRARY_PATH); use `cpu` or `libtorch` here"
                );
            }
            // One process per GPU, as torchrun and DDP do: rank `i` of a machine takes GPU `i`.
            let gpus = tch::Cuda::device_count().max(1) as usize;
            Ok(Device::libtorch_cuda(
                selfsup_dist::launcher_local_rank().unwrap_or(0) % gpus,
            ))
        }
        #[cfg(not(feature = "gpu"))]
        "vulkan" | "gpu" => bail!("device `{name}` needs a build with `--features gpu`"),
        #[cfg(not(feature = "tch"))]
        "libtorch" | "libtorch-cuda" | "cuda" => {
            bail!(
                "device `{name}` needs a build with LibTorch: scripts/build_tch.sh (`--features tch`)"
            )
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
