//! GPU plumbing: the device context, tensors, and dispatch-grid helpers.

mod context;
mod tensor;

pub use context::{DeviceOptions, Gpu, describe, enumerate_adapters, parse_backend};
pub(crate) use context::CachedPipeline;
pub use tensor::Tensor;
