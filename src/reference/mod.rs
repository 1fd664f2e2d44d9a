//! Plain CPU implementations of every kernel: the tests' ground truth. Written for clarity, not speed: direct
//! loops over the definitions, f64 accumulation, and algorithms chosen to differ from the kernels' (a full
//! softmax where the kernel streams, sorting where the kernel bisects), so that a shared mistake is unlikely.
//!
//! Inputs are f32 (what the GPU sees); outputs are f64, so a test measures the GPU's error alone.

pub mod ddim;
pub mod graph;
pub mod nn;
pub mod winograd;
