//! Collectives for data-parallel training, the way PyTorch's `torch.distributed` offers them:
//! one process group per process ([`world`]), a single-process group by default, MPI when the
//! process was started by `mpirun` or Slurm's `srun` (feature `mpi`, through rsmpi).
//!
//! [`Collective`] is the host-side interface (all-reduce, all-gather, broadcast, barrier on
//! `f32`/byte buffers); [`ops`] has the differentiable tensor collectives that global-batch
//! losses and SyncBatchNorm are built from.

// burn 0.22 marks burn-tch deprecated; LibTorch is the GPU path that builds offline here (see
// selfsup_core::device), and `ops` gives it the collectives.
#![cfg_attr(feature = "tch", allow(deprecated))]

pub mod ops;

#[cfg(feature = "mpi")]
mod mpi_engine;
#[cfg(feature = "nccl")]
mod nccl_engine;

use std::sync::OnceLock;

/// A failure to join the process group.
#[derive(Debug, thiserror::Error)]
pub enum DistError {
    #[error("{0}")]
    Launch(String),
}

/// A process group: `world` processes, this one `rank`, collectives over all of them. Every rank
/// must call the same collectives in the same order with buffers of the same length.
pub trait Collective: Send + Sync {
    fn rank(&self) -> usize;
    fn world(&self) -> usize;
    /// `"local"` or `"mpi"`.
    fn engine(&self) -> &'static str;
    /// Element-wise sum over ranks, in place, on every rank.
    fn all_reduce_sum(&self, data: &mut [f32]);
    /// Every rank's `data` (all of the same length), concatenated in rank order.
    fn all_gather(&self, data: &[f32]) -> Vec<f32>;
    /// `root`'s `data` on every rank.
    fn broadcast(&self, data: &mut [u8], root: usize);
    fn barrier(&self);
    /// Ends every rank's process with `code` (MPI_Abort): what a rank that fails calls, so that
    /// no other rank waits for it in a collective.
    fn abort(&self, code: i32) -> !;
}

/// The single-process group: every collective is the identity.
#[derive(Debug, Default)]
pub struct Local;

impl Collective for Local {
    fn rank(&self) -> usize {
        0
    }
    fn world(&self) -> usize {
        1
    }
    fn engine(&self) -> &'static str {
        "local"
    }
    fn all_reduce_sum(&self, _: &mut [f32]) {}
    fn all_gather(&self, data: &[f32]) -> Vec<f32> {
        data.to_vec()
    }
    fn broadcast(&self, _: &mut [u8], _: usize) {}
    fn barrier(&self) {}
    fn abort(&self, code: i32) -> ! {
        std::process::exit(code)
    }
}

static WORLD: OnceLock<Box<dyn Collective>> = OnceLock::new();

/// This process's group: the one [`init`] joined, else the single-process [`Local`].
pub fn world() -> &'static dyn Collective {
    WORLD.get_or_init(|| Box::new(Local)).as_ref()
}

/// Whether training runs its collectives: with several processes, or with one when
/// `SELFSUP_COLLECTIVES=always` is set (then every collective runs over the one-process group,
/// which checks a device engine such as NCCL end to end on a single GPU).
pub fn active() -> bool {
    static FORCED: OnceLock<bool> = OnceLock::new();
    world().world() > 1
        || *FORCED.get_or_init(|| std::env::var("SELFSUP_COLLECTIVES").is_ok_and(|v| v == "always"))
}

/// Whether this is the process that writes (checkpoints, metrics, reports): rank 0.
pub fn is_writer() -> bool {
    world().rank() == 0
}

/// The launcher's world size, from the variables `mpirun` (OpenMPI, MPICH/Hydra) and Slurm's
/// `srun` set, or `None` when the process was started on its own.
pub fn launcher_world_size() -> Option<(String, usize)> {
    [
        "OMPI_COMM_WORLD_SIZE",
        "PMI_SIZE",
        "PMIX_SIZE",
        "SLURM_NTASKS",
    ]
    .iter()
    .find_map(|k| {
        let v = std::env::var(k).ok()?;
        Some((k.to_string(), v.parse().ok()?))
    })
    .filter(|(k, n)| *n > 1 || k != "SLURM_NTASKS")
}

/// This process's index among the launcher's processes on the same machine (OpenMPI, MPICH/Hydra,
/// Slurm, torchrun), or `None` when started on its own: which GPU a rank takes.
pub fn launcher_local_rank() -> Option<usize> {
    [
        "OMPI_COMM_WORLD_LOCAL_RANK",
        "MPI_LOCALRANKID",
        "SLURM_LOCALID",
        "LOCAL_RANK",
    ]
    .iter()
    .find_map(|k| std::env::var(k).ok()?.parse().ok())
}

/// Holds the process group open; dropping it leaves the group (MPI_Finalize). Keep it alive
/// until the process is done with collectives (the end of `main`).
pub struct Membership {
    #[cfg(feature = "mpi")]
    _mpi: Option<mpi_engine::Universe>,
}

/// Joins the process group the launcher set up: MPI under `mpirun`/`srun` (one rank per
/// process, rank and world size from MPI), otherwise the single-process group. Call once,
/// before any training.
pub fn init() -> Result<Membership, DistError> {
    let launched = launcher_world_size();
    #[cfg(feature = "mpi")]
    if let Some(_) = launched {
        let (universe, world) = mpi_engine::join()?;
        WORLD
            .set(Box::new(world))
            .map_err(|_| DistError::Launch("the process group was already set up".into()))?;
        return Ok(Membership {
            _mpi: Some(universe),
        });
    }
    #[cfg(not(feature = "mpi"))]
    if let Some((var, n)) = launched {
        if n > 1 {
            return Err(DistError::Launch(format!(
                "started as one of {n} processes ({var}={n}), but this selfsup was built without MPI: \
                 build with `cargo build --release --features mpi` (needs libopenmpi-dev and libclang-dev)"
            )));
        }
    }
    let _ = launched;
    Ok(Membership {
        #[cfg(feature = "mpi")]
        _mpi: None,
    })
}

/// Sets the process group by hand (tests, embedding applications with their own launcher).
pub fn set_world(group: Box<dyn Collective>) -> Result<(), DistError> {
    WORLD
        .set(group)
        .map_err(|_| DistError::Launch("the process group was already set up".into()))
}
