//! `group_norm.wgsl`: a workgroup per (image, group), reducing in workgroup memory: what GPUs want.

use bytemuck::{Pod, Zeroable};

use super::shape::{Norm, OP};
use crate::error::Result;
use crate::gpu::Access::{Read, ReadWrite};
use crate::gpu::kernel::kernel;
use crate::gpu::{Dispatch, Gpu, Kernel};

/// The kernel.
pub const KERNEL: Kernel = kernel!("group_norm", includes: [], workgroup: 256, params: Params,
    bindings: &[Read, Read, Read, ReadWrite]);

/// Mirrors `Params` in group_norm.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct Params {
    pub batch: u32,
    pub c: u32,
    pub hw: u32,
    pub groups: u32,
    pub eps: f32,
    pub silu: u32,
    pub _pad: [u32; 2],
}

/// One workgroup per (image, group).
pub(super) fn launch(gpu: &Gpu, label: &str, g: &Norm<'_>) -> Result<Dispatch> {
    let params = Params {
        batch: g.n as u32,
        c: g.c as u32,
        hw: g.hw as u32,
        groups: g.groups as u32,
        eps: g.eps,
        silu: g.silu as u32,
        _pad: [0; 2],
    };
    let tensors = [g.x, g.gamma, g.beta, g.out];
    Dispatch::new(gpu, &KERNEL, OP, label, &params, &tensors, (g.n * g.groups) as u64)
}
