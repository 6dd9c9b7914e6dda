//! The allocator setting every selfsup binary (the CLI, the benchmark) runs with.
//!
//! Each binary declares `#[global_allocator] static A: mimalloc::MiMalloc = mimalloc::MiMalloc;`
//! and calls [`keep_freed_memory`] first thing; the library itself does not impose an allocator.

unsafe extern "C" {
    /// From the mimalloc library that the `mimalloc` crate links.
    fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
}

/// `mi_option_purge_delay` in mimalloc v3's `mi_option_e` (libmimalloc-sys 0.1.49).
const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;

/// Training frees and re-allocates the same large activation buffers every step; returning them
/// to the OS in between (mimalloc's default after 10 ms) costs page faults and TLB shootdowns.
/// A user can still set `MIMALLOC_PURGE_DELAY`, which wins.
pub fn keep_freed_memory() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets a plain integer option; valid at any time.
        unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    }
}
