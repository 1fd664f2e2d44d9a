//! `linear.wgsl`: 4 tokens x 4 output features per invocation, with arbitrary strides, so NCHW maps are read
//! as tokens without transposes.

use super::layout::{PARAMS, Params};
use crate::gpu::Access::{Read, ReadWrite};
use crate::gpu::kernel::kernel;
use crate::gpu::{Kernel, workgroups_for};

/// The kernel.
pub const KERNEL: Kernel = kernel!("linear", includes: [PARAMS], workgroup: 64, params: Params,
    bindings: &[Read, Read, Read, Read, ReadWrite]);

/// Workgroups for `b` x `m` tokens of `n_out` outputs: 4 tokens x 4 output features per invocation.
pub(super) fn workgroups(b: usize, m: usize, n_out: usize) -> u64 {
    let invocations = (b * m.div_ceil(4) * n_out.div_ceil(4)) as u64;
    workgroups_for(invocations, KERNEL.workgroup_size)
}
