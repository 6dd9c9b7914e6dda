//! The parts of the `selfsup` CLI that read outside input (config files and `--set`
//! overrides, checkpoints) as a library, so the fuzz targets in `fuzz/` can drive them.

pub mod alloc;
pub mod audio_config;
pub mod checkpoint;
pub mod config;
pub mod device;
pub mod runlog;
pub mod text_config;
