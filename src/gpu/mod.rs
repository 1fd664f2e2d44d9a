//! GPU plumbing: the device context, tensors, and the timestamp profiler.

mod context;
pub mod profiler;
mod tensor;

pub(crate) use context::CachedPipeline;
pub use context::{
    DeviceOptions, Fault, Gpu, describe, enumerate_adapters, parse_backend, parse_switch,
};
pub use tensor::Tensor;
