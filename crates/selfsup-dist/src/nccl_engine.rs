//! NCCL for CUDA tensors. One communicator per process, over the ranks of the host group
//! ([`world`]): rank 0 makes the unique id and broadcasts it over that group (MPI under
//! `mpirun`). Collectives run on the legacy default stream, the one LibTorch queues its work on,
//! so they are ordered with the step's kernels without a host synchronisation.

use std::ffi::c_int;
use std::sync::OnceLock;

use cudarc::nccl::{result, sys};

use crate::world;

struct Communicator(sys::ncclComm_t);

// SAFETY: an NCCL communicator may be used from any thread as long as calls are not concurrent;
// selfsup issues its collectives from the training thread only.
unsafe impl Send for Communicator {}
unsafe impl Sync for Communicator {}

static COMMUNICATOR: OnceLock<Communicator> = OnceLock::new();

/// Stops every rank with `message` (no rank may wait in a collective for one that failed).
fn fail(message: String) -> ! {
    let w = world();
    eprintln!("error: rank {} of {}: {message}", w.rank(), w.world());
    w.abort(1)
}

fn join(device: c_int) -> Communicator {
    // SAFETY: only probes whether the library can be opened.
    if !unsafe { sys::is_culib_present() } {
        fail(
            "NCCL (libnccl.so) was not found: install NCCL (Debian/NVIDIA `libnccl2` + `libnccl-dev`), or \
             put a libnccl.so link to PyTorch's nvidia/nccl/lib/libnccl.so.2 on LD_LIBRARY_PATH"
                .into(),
        );
    }
    // NCCL binds the communicator to the calling thread's current device.
    // SAFETY: plain runtime call with a device index LibTorch already uses.
    let set = unsafe { cudarc::runtime::sys::cudaSetDevice(device) };
    if set != cudarc::runtime::sys::cudaError::cudaSuccess {
        fail(format!("cudaSetDevice({device}) failed: {set:?}"));
    }
    let w = world();
    let mut id = [0u8; 128];
    if w.rank() == 0 {
        let unique = result::get_uniqueid()
            .unwrap_or_else(|e| fail(format!("ncclGetUniqueId failed: {e:?}")));
        for (b, c) in id.iter_mut().zip(unique.internal) {
            *b = c as u8;
        }
    }
    w.broadcast(&mut id, 0);
    let unique = sys::ncclUniqueId {
        internal: id.map(|b| b as _),
    };
    let mut comm = std::ptr::null_mut();
    // SAFETY: `comm` is written by NCCL; every rank calls this with the same id and size.
    unsafe { result::comm_init_rank(&mut comm, w.world() as c_int, unique, w.rank() as c_int) }
        .unwrap_or_else(|e| {
            fail(format!(
                "ncclCommInitRank (rank {} of {}, CUDA device {device}) failed: {e:?}",
                w.rank(),
                w.world()
            ))
        });
    Communicator(comm)
}

/// NCCL's version as `major.minor.patch` (`None` when the library is missing).
#[cfg(test)]
fn version() -> Option<String> {
    // SAFETY: only probes whether the library can be opened.
    if !unsafe { sys::is_culib_present() } {
        return None;
    }
    let v = result::get_nccl_version().ok()?;
    Some(format!("{}.{}.{}", v / 10000, v / 100 % 100, v % 100))
}

/// `Σ_ranks` of the `count` floats at `data` on CUDA device `device`, in place, queued on the
/// legacy default stream. Joins the communicator on first use (a collective: every rank calls
/// it at the same point).
///
/// # Safety
/// `data` must point to `count` f32 of device memory on `device` that stays allocated until the
/// stream's work is done (LibTorch's caching allocator keeps a live tensor's memory).
pub(crate) unsafe fn all_reduce_sum_f32(data: *mut f32, count: usize, device: c_int) {
    let comm = COMMUNICATOR.get_or_init(|| join(device));
    // SAFETY: per this function's contract; the null stream is the legacy default stream.
    unsafe {
        result::all_reduce(
            data as *const _,
            data as *mut _,
            count,
            sys::ncclDataType_t::ncclFloat32,
            sys::ncclRedOp_t::ncclSum,
            comm.0,
            std::ptr::null_mut(),
        )
    }
    .unwrap_or_else(|e| fail(format!("ncclAllReduce of {count} floats failed: {e:?}")));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The library loads through cudarc, reports a version and makes a unique id: the calls
    /// that need no GPU (`scripts/build_tch.sh --test` puts PyTorch's NCCL on the library path;
    /// the communicator and the all-reduce need a GPU: `scripts/nccl_check.sh`).
    #[test]
    fn nccl_loads_reports_its_version_and_makes_a_unique_id() {
        let v = version().expect("libnccl.so on the library path");
        let major: u32 = v.split('.').next().unwrap().parse().unwrap();
        assert!(major >= 2, "NCCL {v}");
        let id = result::get_uniqueid().expect("ncclGetUniqueId");
        assert!(id.internal.iter().any(|&b| b != 0), "an all-zero unique id");
        eprintln!("NCCL {v}");
    }
}
