//! Speech pretext losses, pure functions over burn tensors (any device, autodiff or not).

mod cpc;
mod masked_frame;

pub use cpc::cpc_info_nce_loss;
pub use masked_frame::{Reconstruction, masked_frame_loss};
