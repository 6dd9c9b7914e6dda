//! The MPI process group through rsmpi.

use std::sync::Mutex;

use mpi::collective::SystemOperation;
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;

use crate::{Collective, DistError};

pub use mpi::environment::Universe;

/// `MPI_COMM_WORLD`. Calls are serialised through the mutex (MPI initialised with
/// `MPI_THREAD_SERIALIZED`): autodiff may run a collective from another thread than the one
/// that started MPI.
pub struct MpiWorld {
    comm: Mutex<SimpleCommunicator>,
    rank: usize,
    size: usize,
}

// SAFETY: the communicator is a handle to MPI_COMM_WORLD; every use holds the mutex, and MPI
// was initialised with MPI_THREAD_SERIALIZED, which allows calls from any thread one at a time.
unsafe impl Send for MpiWorld {}
unsafe impl Sync for MpiWorld {}

pub fn join() -> Result<(Universe, MpiWorld), DistError> {
    let (universe, level) = mpi::initialize_with_threading(mpi::Threading::Serialized)
        .ok_or_else(|| DistError::Launch("MPI was already initialised in this process".into()))?;
    if level < mpi::Threading::Serialized {
        return Err(DistError::Launch(format!(
            "this MPI library offers thread level {level:?}; selfsup needs MPI_THREAD_SERIALIZED"
        )));
    }
    let comm = universe.world();
    let (rank, size) = (comm.rank() as usize, comm.size() as usize);
    Ok((
        universe,
        MpiWorld {
            comm: Mutex::new(comm),
            rank,
            size,
        },
    ))
}

impl MpiWorld {
    fn comm(&self) -> std::sync::MutexGuard<'_, SimpleCommunicator> {
        self.comm.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Collective for MpiWorld {
    fn rank(&self) -> usize {
        self.rank
    }
    fn world(&self) -> usize {
        self.size
    }
    fn engine(&self) -> &'static str {
        "mpi"
    }
    fn all_reduce_sum(&self, data: &mut [f32]) {
        let send = data.to_vec();
        self.comm()
            .all_reduce_into(&send[..], data, SystemOperation::sum());
    }
    fn all_gather(&self, data: &[f32]) -> Vec<f32> {
        let mut out = vec![0.0f32; data.len() * self.size];
        self.comm().all_gather_into(data, &mut out[..]);
        out
    }
    fn broadcast(&self, data: &mut [u8], root: usize) {
        self.comm()
            .process_at_rank(root as i32)
            .broadcast_into(data);
    }
    fn barrier(&self) {
        self.comm().barrier();
    }
    fn abort(&self, code: i32) -> ! {
        self.comm().abort(code)
    }
}
