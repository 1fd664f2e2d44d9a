//! GPU plumbing: the device context, tensors, and dispatch-grid helpers.

mod context;
mod tensor;

pub(crate) use context::CachedPipeline;
pub use context::{DeviceOptions, Gpu, describe, enumerate_adapters, parse_backend};
pub use tensor::Tensor;
