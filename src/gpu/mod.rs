//! The GPU layer: the device context, tensors, kernels and their pipeline cache, dispatches, uniform windows,
//! the roofline and the timestamp profiler. It knows no operation: `ops` builds on it, never the reverse.

pub(crate) mod check;
mod context;
mod dispatch;
pub(crate) mod kernel;
pub mod profiler;
pub mod roofline;
pub mod template;
mod tensor;
pub(crate) mod windows;

pub use context::{
    DeviceOptions, Fault, Gpu, Precision, describe, enumerate_adapters, parse_backend,
    parse_conv_tile, parse_switch,
};
pub use dispatch::{Cost, Dispatch, grid};
pub(crate) use dispatch::{LaunchSpec, workgroups_for};
pub use kernel::{Access, COMMON_WGSL, Kernel, KernelChoice, UNIFORM_WINDOW};
pub(crate) use kernel::{WINDOW_FLOATS, windows_then};
pub use tensor::{DType, Tensor};

/// Locks a mutex whose data stays valid if a holder panicked (the device's caches and fault records).
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
