//! `group_norm.wgsl`: a workgroup per (image, group), reducing in workgroup memory: what GPUs want.

use super::shape::{Norm, NormParams, OP};
use crate::error::Result;
use crate::gpu::Access::{Read, ReadWrite};
use crate::gpu::kernel::kernel;
use crate::gpu::kernel::params;
use crate::gpu::{Dispatch, Gpu, Kernel};

/// The kernel.
pub const KERNEL: Kernel = kernel!("group_norm", includes: [], workgroup: 256, params: Params,
    bindings: &[Read, Read, Read, ReadWrite]);

params! {
    /// Mirrors `Params` in group_norm.wgsl.
    pub struct Params { pub norm: NormParams, pub _pad: [u32; 2] }
}

/// One workgroup per (image, group).
pub(super) fn launch(gpu: &Gpu, label: &str, g: &Norm<'_>) -> Result<Dispatch> {
    let params = Params { norm: g.params(), _pad: [0; 2] };
    let tensors = [g.x, g.gamma, g.beta, g.out];
    Dispatch::new(gpu, &KERNEL, OP, label, &params, &tensors, (g.n * g.groups) as u64)
}
