//! `linear_reduce.wgsl`: the GPU family's kernel for layers with few tokens, a workgroup per (8 tokens, output
//! feature) splitting the dot products over its 64 invocations.

use super::layout::{PARAMS, Params};
use super::tokens::KERNEL;
use crate::gpu::Kernel;
use crate::gpu::kernel::kernel;

/// The GPU family's kernel for layers with few tokens: a workgroup per (8 tokens, output feature) splitting the
/// input features (`linear_reduce.wgsl`).
pub const REDUCE_KERNEL: Kernel = kernel!("linear_reduce", includes: [PARAMS], workgroup: 64,
    params: Params, bindings: KERNEL.bindings);

/// Workgroups for `b` x `m` tokens of `n_out` outputs: one per (b, 8 tokens, output feature).
pub(super) fn workgroups(b: usize, m: usize, n_out: usize) -> u64 {
    (b * m.div_ceil(8) * n_out) as u64
}
